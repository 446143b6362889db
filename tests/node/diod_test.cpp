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
