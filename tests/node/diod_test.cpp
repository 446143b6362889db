// diod's 9P2000.L tools (Debian's diod package: /usr/sbin/diodls, /usr/sbin/diodcat) run
// for real against galaxy-node and galaxy-sched listening on loopback TCP with --auth none
// (testutil::start_daemon's default): what galaxy(4) and galaxy-node(4) promise under
// CLIENTS. diod's libnpclient sends Tversion "9P2000.L", a Tauth that must fail with
// Rlerror ENOENT ("auth not required", srv9p/errno.cpp), a Tattach without afid and
// n_uname = the caller's euid, then Tlopen/Treaddir or Tlopen/Tread. -a '' is needed: the
// trees have one root, and any other aname (diod's default is "ctl") is "file does not
// exist". Skipped, saying so, where the tools are not installed.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <map>

#include "tests/testmunge.hpp"
#include "tests/testutil.hpp"

namespace {

const std::string node_binary = GALAXY_BINARY_DIR "/galaxy-node";
const std::string sched_binary = GALAXY_BINARY_DIR "/galaxy-sched";

// The tool's path, or "" when it is not installed (Debian installs them in /usr/sbin).
std::string diod_tool(const std::string& name) {
  for (std::string dir : {"/usr/sbin/", "/usr/bin/", "/usr/local/sbin/", "/usr/local/bin/"}) {
    if (::access((dir + name).c_str(), X_OK) == 0) return dir + name;
  }
  return "";
}

// "tcp!127.0.0.1!PORT" as diod writes a server: "127.0.0.1:PORT".
std::string diod_server(const std::string& dial) {
  auto bang = dial.rfind('!');
  auto first = dial.find('!');
  return dial.substr(first + 1, bang - first - 1) + ":" + dial.substr(bang + 1);
}

// Runs a diod tool as diod(8)'s pages document it: -s HOST:PORT, -a '' (the root), and
// -t: the tool's own give-up time in seconds, so that a hung session is a failure.
testutil::run_result diod_run(const std::string& tool, const std::string& dial, std::vector<std::string> args,
                              const std::string& aname = "") {
  std::vector<std::string> argv{tool, "-s", diod_server(dial), "-a", aname, "-t", "20"};
  argv.insert(argv.end(), args.begin(), args.end());
  return testutil::run(argv);
}

#define SKIP_WITHOUT_DIOD()                                                                          \
  std::string diodls = diod_tool("diodls"), diodcat = diod_tool("diodcat");                          \
  if (diodls.empty() || diodcat.empty())                                                             \
  GTEST_SKIP() << "diod's diodls/diodcat not installed (Debian package diod; scripts/deps.sh installs it)"

// A daemon on loopback TCP with --auth none, in a temp dir.
struct daemon_in_dir {
  testutil::temp_dir dir;
  testutil::daemon_handle d;
  std::string start(std::vector<std::string> argv) {
    ::chmod(dir.file("").c_str(), 0711);
    auto h = testutil::start_daemon(std::move(argv));
    if (!h) return h.error();
    d = std::move(*h);
    return {};
  }
};

std::string lines_of(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

TEST(Diod, DiodlsAndDiodcatOnGalaxyNode) {
  SKIP_WITHOUT_DIOD();
  daemon_in_dir n;
  ASSERT_EQ(n.start({node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", n.dir.file("spool"), "--name", "n1"}),
            "");
  const std::string dial = n.d.dials.at(0);
  // diodls: the root's entries by Treaddir, in the tree's order ("." and ".." left out).
  auto ls = diod_run(diodls, dial, {});
  EXPECT_EQ(ls.status, 0) << ls.err;
  EXPECT_EQ(ls.out, lines_of({"status", "arch", "cpu", "mem", "labels", "ctl", "events", "task"})) << ls.err;
  auto ls_task = diod_run(diodls, dial, {"task"});
  EXPECT_EQ(ls_task.status, 0) << ls_task.err;
  EXPECT_EQ(ls_task.out, "clone\n") << ls_task.err;
  // diodcat: status is a synthetic file whose stat says length 0; it is read to the end.
  auto cat = diod_run(diodcat, dial, {"status"});
  EXPECT_EQ(cat.status, 0) << cat.err;
  EXPECT_TRUE(cat.out.starts_with("name=n1 ")) << cat.out << cat.err;
  EXPECT_TRUE(cat.out.ends_with("\n")) << cat.out;
  EXPECT_NE(cat.out.find(" state=up"), std::string::npos) << cat.out;
  // Errors reach the tools as errnos: a missing file, and an aname the tree lacks.
  auto missing = diod_run(diodcat, dial, {"nonesuch"});
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.err.find("No such file or directory"), std::string::npos) << missing.err;
  auto ctl_aname = diod_run(diodls, dial, {}, "ctl");
  EXPECT_NE(ctl_aname.status, 0);
  EXPECT_NE(ctl_aname.err.find("error attaching to aname='ctl'"), std::string::npos) << ctl_aname.err;
}

TEST(Diod, DiodlsLongWalksFromItsOpenDirectory) {
  // diodls -l reads the directory through one fid and walks from that open fid to each
  // entry to stat it (Tgetattr): 9P2000.L's exception to walk(5), as diod's server allows.
  SKIP_WITHOUT_DIOD();
  daemon_in_dir n;
  ASSERT_EQ(n.start({node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", n.dir.file("spool"), "--name", "n1"}),
            "");
  const std::string dial = n.d.dials.at(0);
  auto ls = diod_run(diodls, dial, {"-l"});
  EXPECT_EQ(ls.status, 0) << ls.err;
  EXPECT_EQ(ls.err.find("Device or resource busy"), std::string::npos) << ls.err;
  // One line per entry, as ls -l: mode, links, owner, group, size, date, name (diod's
  // format, "-r--r--r--.    1 root root            0 Dec  4 18:42 status").
  std::map<std::string, std::string> mode_of;
  for (std::size_t at = 0, nl; (nl = ls.out.find('\n', at)) != std::string::npos; at = nl + 1) {
    auto line = ls.out.substr(at, nl - at);
    auto sp = line.rfind(' ');
    if (sp != std::string::npos) mode_of[line.substr(sp + 1)] = line.substr(0, 10);
  }
  for (std::string name : {"status", "arch", "cpu", "mem", "labels", "ctl", "events", "task"}) {
    EXPECT_TRUE(mode_of.contains(name)) << name << " not in:\n" << ls.out << ls.err;
  }
  EXPECT_EQ(mode_of["status"], "-r--r--r--") << ls.out;
  EXPECT_EQ(mode_of["ctl"], "-rw-rw-r--") << ls.out;
  EXPECT_EQ(mode_of["task"], "dr-xr-xr-x") << ls.out;
}

TEST(Diod, DiodsMungeIsRefusedByAMungeListener) {
  // diod's client authenticates with a MUNGE credential whose payload is empty (diod's
  // libdiod/diod_auth.c): neither bound to the server's address nor carrying the afid's
  // challenge, so a --auth munge listener must refuse it, say why, and keep serving.
  // diodcat reads the default MUNGE socket (/run/munge/munge.socket.2, no option to
  // change it): it runs in a mount namespace of its own where a tmpfs over /run holds a
  // link from that name to this test's munged, which galaxy-node uses too.
  SKIP_WITHOUT_DIOD();
  REQUIRE_MUNGED();
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (unshare -m for diodcat's MUNGE socket)";
  testmunge::munged m;
  daemon_in_dir n;
  ASSERT_EQ(n.start({node_binary, "--listen", "tcp!127.0.0.1!0", "--auth", "munge", "--munge-socket", m.socket(),
                     "--spool", n.dir.file("spool"), "--name", "n1"}),
            "");
  const std::string dial = n.d.dials.at(0);
  auto r = testutil::run({"/usr/bin/unshare", "-m", "/bin/sh", "-c",
                          "mount --make-rprivate / && mount -t tmpfs tmpfs /run && mkdir /run/munge && "
                          "ln -s \"$1\" /run/munge/munge.socket.2 && shift && exec \"$@\"",
                          "sh", m.socket(), diodcat, "-s", diod_server(dial), "-a", "", "-t", "20", "status"});
  EXPECT_NE(r.status, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("name=n1"), std::string::npos) << r.out;
  // Its credential was made and sent, and refused by the node: the node's refusal ("not
  // bound to a server address") is EACCES. (Without a munged to reach, diodcat fails
  // before sending one: "Operation not permitted".)
  EXPECT_NE(r.err.find("error authenticating to server: Permission denied"), std::string::npos) << r.err;
  // The node still serves an authenticated client.
  auto cat = testutil::run({GALAXY_BINARY_DIR "/galaxy", "cat", "-a", dial, "--munge-socket", m.socket(), "status"});
  EXPECT_EQ(cat.status, 0) << cat.err;
  EXPECT_TRUE(cat.out.starts_with("name=n1 ")) << cat.out << cat.err;
}

TEST(Diod, DiodlsAndDiodcatOnGalaxySched) {
  SKIP_WITHOUT_DIOD();
  daemon_in_dir s;
  ASSERT_EQ(s.start({sched_binary, "--listen", "tcp!127.0.0.1!0", "--state", s.dir.file("state"), "--admin", "root"}),
            "");
  const std::string dial = s.d.dials.at(0);
  auto ls = diod_run(diodls, dial, {});
  EXPECT_EQ(ls.status, 0) << ls.err;
  for (std::string name : {"status", "ctl", "queue", "nodes", "jobs"}) {
    EXPECT_NE(ls.out.find(name + "\n"), std::string::npos) << name << " not in:\n" << ls.out << ls.err;
  }
  auto cat = diod_run(diodcat, dial, {"status"});
  EXPECT_EQ(cat.status, 0) << cat.err;
  EXPECT_TRUE(cat.out.starts_with("nodes_up=0 ")) << cat.out << cat.err;
  EXPECT_NE(cat.out.find(" jobs_queued=0 "), std::string::npos) << cat.out;
}

}  // namespace
