// galaxy-node contains its tasks and follows no path a task can change (issue 12), tested
// with the real daemon, real processes and real local users: users made by the fixture
// with useradd (names unique per run, deleted with userdel at the end), so these tests
// need root, as CI has; without it they skip, saying so.
//
//   - a task made by user U (attach name U) runs as U with U's groups, in directories U
//     owns; the spool's own files are the daemon's, 0600 in 0711/0710 directories;
//   - an unknown user is refused unless --unknown-user maps it; root's tasks run as
//     --run-as unless --allow-root-tasks;
//   - a task that swaps its in/ and out/ files and directories for links to a canary file
//     while a client reads, writes, walks and creates gets errors; the canary is neither
//     read nor changed (one root's 0600, one the user's own outside the task, which only a
//     followed link could reach, since the node acts as the user);
//   - what a task started with setsid or a double fork is gone when the task ends, and
//     when it is killed;
//   - a spool the task users cannot reach stops the daemon at start with the reason;
//   - ctl lines over the limit and NULs in ctl messages are errors that change nothing;
//   - safe_fs's openat2 and its O_NOFOLLOW fallback refuse links alike.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "ctl/ctlmsg.hpp"
#include "fsclient/client.hpp"
#include "node/safe_fs.hpp"
#include "srv9p/errors.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
const std::string node_binary = GALAXY_BINARY_DIR "/galaxy-node";

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string ctl_quote(std::string_view s) { return ctl::quote(s); }

// The errno of a failed open_beneath, 0 if it succeeded (closing what it opened).
int err_of(std::expected<int, int> r) {
  if (r) {
    ::close(*r);
    return 0;
  }
  return r.error();
}

// The attach name that is the daemon's own user here: root's tasks run as --run-as.
std::string me() {
  struct passwd* pw = ::getpwuid(::geteuid());
  return pw != nullptr ? pw->pw_name : "root";
}

int sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

// Local users made for this run: gxa<pid> (also in group gxg<pid>) and gxb<pid>.
struct test_users {
  std::string alice, bob, group;
  bool made = false;
  test_users() {
    auto pid = std::to_string(::getpid());
    alice = "gxa" + pid;
    bob = "gxb" + pid;
    group = "gxg" + pid;
    if (::geteuid() != 0) return;
    made = sh("groupadd " + group) == 0 && sh("useradd -M -s /bin/sh -G " + group + " " + alice) == 0 &&
           sh("useradd -M -s /bin/sh " + bob) == 0;
  }
  ~test_users() {
    if (::geteuid() != 0) return;
    // -f: even if a failed test left a process of theirs behind.
    sh("userdel -f -r " + alice);
    sh("userdel -f -r " + bob);
    sh("groupdel " + group);
  }
  static uid_t uid(const std::string& name) {
    struct passwd* pw = ::getpwnam(name.c_str());
    return pw == nullptr ? static_cast<uid_t>(-1) : pw->pw_uid;
  }
  static gid_t gid(const std::string& name) {
    struct passwd* pw = ::getpwnam(name.c_str());
    return pw == nullptr ? static_cast<gid_t>(-1) : pw->pw_gid;
  }
};

test_users& users() {
  static test_users u;
  return u;
}

#define NEED_USERS()                                                                              \
  do {                                                                                            \
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: makes local users and runs tasks as them"; \
    ASSERT_TRUE(users().made) << "useradd/groupadd failed";                                      \
  } while (0)

// A galaxy-node process on a spool in a 0711 temporary directory.
struct node_fixture {
  testutil::temp_dir dir;
  std::string spool = dir.file("spool");
  testutil::daemon_handle d;
  std::unique_ptr<fsclient::client> c;

  std::string start(std::vector<std::string> extra = {}) {
    ::chmod(dir.path().c_str(), 0711);
    std::vector<std::string> argv{node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", spool, "--name", "n1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto h = testutil::start_daemon(argv);
    if (!h) return h.error();
    d = std::move(*h);
    auto cl = fsclient::client::dial(d.dials.at(0));
    if (!cl) return cl.error();
    c = std::move(*cl);
    return {};
  }
  // Stops the daemon (SIGTERM) and starts it again on the same spool.
  std::string restart(std::vector<std::string> extra = {}) {
    c.reset();
    d.proc.signal(SIGTERM);
    d.proc.wait();
    return start(std::move(extra));
  }
  std::uint32_t as(const std::string& user) {
    auto r = c->attach(user);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error());
    return r.value_or(0);
  }
  // clone + ctl commands as root fid; returns the task number, or the clone's error.
  fsclient::result<std::string> task(std::uint32_t root, const std::vector<std::string>& commands) {
    auto n = c->read_file(root, "task/clone");
    if (!n) return n;
    while (!n->empty() && n->back() == '\n') n->pop_back();
    for (const auto& cmd : commands) {
      auto ok = c->write_file(root, "task/" + *n + "/ctl", cmd + "\n");
      if (!ok) return std::unexpected(cmd + ": " + ok.error());
    }
    return n;
  }
  std::string read(std::uint32_t root, const std::string& path) {
    auto r = c->read_file(root, path);
    return r ? *r : "<error: " + r.error() + ">";
  }
  std::string task_dir(const std::string& n) const { return spool + "/task/" + n; }
};

#define START(f, ...)                               \
  node_fixture f;                                   \
  {                                                 \
    auto why = f.start(__VA_ARGS__);                \
    ASSERT_EQ(why, "") << "galaxy-node: " << why;   \
  }

struct stat stat_of(const std::string& p) {
  struct stat st{};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st;
}

// Whether pid names a live process (not a zombie).
bool alive(pid_t pid) {
  std::string s = slurp(fmt::format("/proc/{}/stat", pid));
  auto rp = s.rfind(')');
  return rp != std::string::npos && rp + 2 < s.size() && s[rp + 2] != 'Z';
}

bool gone_within(pid_t pid, std::chrono::milliseconds limit) {
  auto until = testutil::steady::now() + limit;
  while (alive(pid)) {
    if (testutil::steady::now() > until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

pid_t to_pid(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  pid_t p = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), p);
  return r.ec == std::errc{} ? p : 0;
}

// ---- Who a task runs as ---------------------------------------------------------------

TEST(NodeContain, ATaskRunsAsItsOwnerInDirectoriesTheOwnerOwns) {
  NEED_USERS();
  const auto& u = users();
  START(f);
  auto alice = f.as(u.alice);
  // A file put in in/ before exec is made by alice, so it is hers on disk.
  auto n = f.task(alice, {});
  ASSERT_TRUE(n.has_value()) << n.error();
  auto in = f.c->walk(alice, "task/" + *n + "/in");
  ASSERT_TRUE(in.has_value()) << in.error();
  ASSERT_TRUE(f.c->create(*in, "given", 0644, srv9p::owrite).has_value());
  ASSERT_TRUE(f.c->write(*in, 0, "x").has_value());
  ASSERT_TRUE(f.c->clunk(*in).has_value());
  ASSERT_TRUE(f.c
                  ->write_file(alice, "task/" + *n + "/ctl",
                               "exec sh -c 'id -un; id -Gn; pwd; echo $USER; echo r > $GALAXY_OUT/r'\n")
                  .has_value());
  EXPECT_EQ(f.read(alice, "task/" + *n + "/wait"), "exit 0\n");
  std::string out = f.read(alice, "task/" + *n + "/stdout");
  std::istringstream lines(out);
  std::string who, groups, pwd, user;
  std::getline(lines, who);
  std::getline(lines, groups);
  std::getline(lines, pwd);
  std::getline(lines, user);
  EXPECT_EQ(who, u.alice) << out;
  EXPECT_NE((" " + groups + " ").find(" " + u.group + " "), std::string::npos) << "supplementary groups: " << groups;
  EXPECT_EQ(pwd, f.task_dir(*n) + "/in");
  EXPECT_EQ(user, u.alice);

  uid_t auid = test_users::uid(u.alice);
  gid_t agid = test_users::gid(u.alice);
  // The task's files on the node: in/, out/ and what is in them are alice's, 0700.
  for (const char* d : {"in", "out"}) {
    auto st = stat_of(f.task_dir(*n) + "/" + d);
    EXPECT_EQ(st.st_uid, auid) << d;
    EXPECT_EQ(st.st_mode & 07777, 0700u) << d;
  }
  EXPECT_EQ(stat_of(f.task_dir(*n) + "/in/given").st_uid, auid);
  EXPECT_EQ(stat_of(f.task_dir(*n) + "/out/r").st_uid, auid);
  // The task's directory is the daemon's, alice's group may pass through, nobody lists it.
  auto td = stat_of(f.task_dir(*n));
  EXPECT_EQ(td.st_uid, 0u);
  EXPECT_EQ(td.st_gid, agid);
  EXPECT_EQ(td.st_mode & 07777, 0710u);
  // The spool's own files are the daemon's, 0600; its directories 0711, trash 0700.
  for (const char* file : {"spec", "stdout", "stderr"}) {
    auto st = stat_of(f.task_dir(*n) + "/" + file);
    EXPECT_EQ(st.st_uid, 0u) << file;
    EXPECT_EQ(st.st_mode & 07777, 0600u) << file;
  }
  EXPECT_EQ(stat_of(f.spool + "/next-task").st_mode & 07777, 0600u);
  EXPECT_EQ(stat_of(f.spool).st_mode & 07777, 0711u);
  EXPECT_EQ(stat_of(f.spool + "/task").st_mode & 07777, 0711u);
  // The owner and the user it ran as are in the spec, for a restart.
  std::string spec = slurp(f.task_dir(*n) + "/spec");
  EXPECT_NE(spec.find("\nowner=" + u.alice + "\n"), std::string::npos) << spec;
  EXPECT_NE(spec.find("\nrunuser=" + u.alice + "\n"), std::string::npos) << spec;
  ASSERT_TRUE(f.c->write_file(alice, "task/" + *n + "/ctl", "rm\n").has_value());
  auto tmp = f.c->walk(alice, "task/" + *n);
  EXPECT_FALSE(tmp.has_value());
  EXPECT_EQ(stat_of(f.spool + "/trash").st_mode & 07777, 0700u);
}

// The owner is in the spec: after a restart the task's files are still its owner's, and
// the node still acts as that user below out/.
// Whether /etc/nsswitch.conf has passwd or group look-ups go to an NSS module beyond
// glibc's built-in files and dns (such as systemd, sss, ldap): only then is there a module
// that the daemon could map.
bool nss_uses_modules() {
  std::ifstream f("/etc/nsswitch.conf");
  for (std::string line; std::getline(f, line);) {
    if (!line.starts_with("passwd:") && !line.starts_with("group:")) continue;
    std::istringstream in(line.substr(line.find(':') + 1));
    for (std::string w; in >> w;) {
      if (w.starts_with('#')) break;
      if (w.starts_with('[')) continue;  // [NOTFOUND=return]
      if (w != "files" && w != "dns") return true;
    }
  }
  return false;
}

// The children of pid named galaxy-nss (the look-up helper, srv9p/nss.hpp), zombies too.
int nss_helpers_of(pid_t pid) {
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string s = slurp(e.path() / "stat");
    auto lp = s.find('('), rp = s.rfind(')');
    if (lp == std::string::npos || rp == std::string::npos || rp + 4 >= s.size()) continue;
    std::istringstream rest(s.substr(rp + 4));  // after ") S "
    pid_t ppid = 0;
    rest >> ppid;
    if (ppid == pid && s.substr(lp + 1, rp - lp - 1) == "galaxy-nss") n++;
  }
  return n;
}

// The daemon resolves users and groups (at attach, clone and exec) in a helper process,
// so it never maps an NSS module (its memory at rest, bench/RESULTS.md); the task still
// gets its owner's supplementary groups, and the helper ends and is reaped once the
// look-ups stop (after 2 s; waited for up to 20 s).
TEST(NodeContain, TheDaemonLooksUsersUpInAHelperAndMapsNoNssModule) {
  NEED_USERS();
  if (!nss_uses_modules()) GTEST_SKIP() << "/etc/nsswitch.conf names no NSS module for passwd or group here";
  const auto& u = users();
  START(f);
  auto alice = f.as(u.alice);
  auto n = f.task(alice, {"exec id -Gn"});
  ASSERT_TRUE(n.has_value()) << n.error();
  EXPECT_EQ(f.read(alice, "task/" + *n + "/wait"), "exit 0\n");
  EXPECT_NE(f.read(alice, "task/" + *n + "/stdout").find(u.group), std::string::npos);
  pid_t pid = f.d.proc.pid();
  std::string maps = slurp(fmt::format("/proc/{}/maps", pid));
  EXPECT_EQ(maps.find("libnss_"), std::string::npos) << maps;
  auto until = testutil::steady::now() + 20s;
  while (nss_helpers_of(pid) > 0 && testutil::steady::now() < until) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(nss_helpers_of(pid), 0);
}

TEST(NodeContain, OwnershipSurvivesARestart) {
  NEED_USERS();
  const auto& u = users();
  START(f);
  auto n = f.task(f.as(u.alice), {"exec sh -c 'echo r > $GALAXY_OUT/r'"});
  ASSERT_TRUE(n.has_value()) << n.error();
  EXPECT_EQ(f.read(f.as(u.alice), "task/" + *n + "/wait"), "exit 0\n");
  ASSERT_EQ(f.restart(), "");
  auto alice = f.as(u.alice);
  auto st = f.c->stat_path(alice, "task/" + *n + "/stdout");
  ASSERT_TRUE(st.has_value()) << st.error();
  EXPECT_EQ(st->uid, u.alice);
  EXPECT_EQ(f.read(alice, "task/" + *n + "/out/r"), "r\n");
  auto bob = f.as(u.bob);
  EXPECT_FALSE(f.c->read_file(bob, "task/" + *n + "/out/r").has_value());
}

TEST(NodeContain, TwoUsersTasksRunAsEach) {
  NEED_USERS();
  const auto& u = users();
  START(f);
  auto a = f.task(f.as(u.alice), {"exec id -un"});
  auto b = f.task(f.as(u.bob), {"exec id -un"});
  ASSERT_TRUE(a.has_value() && b.has_value());
  auto root = f.as("root");
  EXPECT_EQ(f.read(root, "task/" + *a + "/wait"), "exit 0\n");
  EXPECT_EQ(f.read(root, "task/" + *b + "/wait"), "exit 0\n");
  EXPECT_EQ(f.read(root, "task/" + *a + "/stdout"), u.alice + "\n");
  EXPECT_EQ(f.read(root, "task/" + *b + "/stdout"), u.bob + "\n");
}

TEST(NodeContain, AnUnknownUserIsRefusedUnlessMapped) {
  NEED_USERS();
  std::string ghost = "gxnone" + std::to_string(::getpid());
  {
    START(f);
    auto r = f.task(f.as(ghost), {"exec id -un"});
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), "user '" + ghost + "' is unknown on node n1");
    // Nothing was made; the daemon serves others.
    EXPECT_FALSE(fs::exists(f.spool + "/task/1"));
    auto ok = f.task(f.as(users().alice), {"exec true"});
    ASSERT_TRUE(ok.has_value()) << ok.error();
  }
  {
    START(f, {"--unknown-user", users().bob});
    auto n = f.task(f.as(ghost), {"exec id -un"});
    ASSERT_TRUE(n.has_value()) << n.error();
    auto root = f.as("root");
    EXPECT_EQ(f.read(root, "task/" + *n + "/wait"), "exit 0\n");
    EXPECT_EQ(f.read(root, "task/" + *n + "/stdout"), users().bob + "\n");
  }
}

// --unknown-user the same account as --run-as: allowed, but the daemon says at start-up
// that unknown users' tasks and root's then share a uid; with different accounts it does
// not.
TEST(NodeContain, UnknownUserSameAsRunAsIsWarnedOf) {
  NEED_USERS();
  auto stderr_of = [](const std::vector<std::string>& extra) {
    testutil::temp_dir dir;
    ::chmod(dir.path().c_str(), 0711);
    std::vector<std::string> argv{node_binary, "--listen", "tcp!127.0.0.1!0", "--auth", "none", "--spool",
                                  dir.file("spool")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto p = testutil::process::spawn(argv, {.capture_stderr = true});
    EXPECT_TRUE(p.has_value());
    if (!p) return std::string();
    auto line = p->read_line();  // "listening on ...": start-up is over
    EXPECT_TRUE(line.has_value()) << (line ? "" : line.error());
    std::string err;
    while (testutil::process::fill(p->stderr_fd(), err, testutil::steady::now() + 200ms) > 0) {
    }
    return err;
  };
  std::string same = stderr_of({"--run-as", users().bob, "--unknown-user", users().bob});
  EXPECT_NE(same.find("galaxy-node: warning: --unknown-user " + users().bob + " and --run-as " + users().bob +
                      " are the same account"),
            std::string::npos)
      << same;
  std::string differ = stderr_of({"--run-as", users().bob, "--unknown-user", users().alice});
  EXPECT_EQ(differ.find("same account"), std::string::npos) << differ;
}

TEST(NodeContain, RootsTasksRunAsRunAsUnlessAllowed) {
  NEED_USERS();
  {
    START(f);
    auto root = f.as("root");
    auto n = f.task(root, {"exec id -un"});
    ASSERT_TRUE(n.has_value()) << n.error();
    EXPECT_EQ(f.read(root, "task/" + *n + "/wait"), "exit 0\n");
    EXPECT_EQ(f.read(root, "task/" + *n + "/stdout"), "nobody\n");
  }
  {
    START(f, {"--run-as", users().bob});
    auto root = f.as("root");
    auto n = f.task(root, {"exec id -un"});
    ASSERT_TRUE(n.has_value()) << n.error();
    EXPECT_EQ(f.read(root, "task/" + *n + "/wait"), "exit 0\n");
    EXPECT_EQ(f.read(root, "task/" + *n + "/stdout"), users().bob + "\n");
  }
  {
    START(f, {"--allow-root-tasks"});
    auto root = f.as("root");
    auto n = f.task(root, {"exec id -un"});
    ASSERT_TRUE(n.has_value()) << n.error();
    EXPECT_EQ(f.read(root, "task/" + *n + "/wait"), "exit 0\n");
    EXPECT_EQ(f.read(root, "task/" + *n + "/stdout"), "root\n");
  }
  // --run-as root is root's tasks as root: it needs the explicit line too.
  testutil::temp_dir d;
  ::chmod(d.path().c_str(), 0711);
  auto r = testutil::run({node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", d.file("spool"), "--run-as", "root"},
                         {}, 10s);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("run_as user 'root' is root: tasks run as root only with --allow-root-tasks"), std::string::npos)
      << r.err;
}

// An unprivileged galaxy-node (an ordinary user's `galaxy up`) runs its own user's tasks
// and refuses anyone else's.
TEST(NodeContain, AnUnprivilegedNodeRunsOnlyItsOwnUsersTasks) {
  NEED_USERS();
  const auto& u = users();
  testutil::temp_dir d;
  ::chmod(d.path().c_str(), 0711);
  std::string spool = d.file("spool");
  ASSERT_EQ(::mkdir(spool.c_str(), 0700), 0);
  ASSERT_EQ(::chown(spool.c_str(), test_users::uid(u.alice), test_users::gid(u.alice)), 0);
  auto h = testutil::start_daemon({"/usr/sbin/runuser", "-u", u.alice, "--", node_binary, "--listen",
                                   "tcp!127.0.0.1!0", "--spool", spool, "--name", "n1"});
  ASSERT_TRUE(h.has_value()) << h.error();
  auto c = fsclient::client::dial(h->dials.at(0));
  ASSERT_TRUE(c.has_value()) << c.error();
  auto bob = (*c)->attach(u.bob);
  ASSERT_TRUE(bob.has_value());
  auto refused = (*c)->read_file(*bob, "task/clone");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error(), "this node runs tasks only as its own user '" + u.alice + "' (galaxy-node is not root), not as '" +
                                 u.bob + "'");
  auto alice = (*c)->attach(u.alice);
  ASSERT_TRUE(alice.has_value());
  auto n = (*c)->read_file(*alice, "task/clone");
  ASSERT_TRUE(n.has_value()) << n.error();
  while (!n->empty() && n->back() == '\n') n->pop_back();
  ASSERT_TRUE((*c)->write_file(*alice, "task/" + *n + "/ctl", "exec id -un\n").has_value());
  EXPECT_EQ((*c)->read_file(*alice, "task/" + *n + "/wait").value_or(""), "exit 0\n");
  EXPECT_EQ((*c)->read_file(*alice, "task/" + *n + "/stdout").value_or(""), u.alice + "\n");
  EXPECT_EQ(stat_of(spool).st_mode & 07777, 0700u);
  h->proc.signal(SIGTERM);
  h->proc.wait();
}

// ---- Start-up check ------------------------------------------------------------------

TEST(NodeContain, StartUpRefusesASpoolTaskUsersCannotReach) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: only a root node runs tasks as other users";
  testutil::temp_dir d;  // mkdtemp: 0700, so nobody cannot pass
  ::chmod(d.path().c_str(), 0700);
  auto r = testutil::run({node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", d.file("spool")}, {}, 10s);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("task users cannot reach their task directories"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("as nobody: permission denied"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("listening on"), std::string::npos);
  // A spool others may write to (as /tmp) is refused too.
  ::chmod(d.path().c_str(), 0711);
  std::string shared = d.file("shared");
  ASSERT_EQ(::mkdir(shared.c_str(), 01777), 0);
  ::chmod(shared.c_str(), 01777);
  r = testutil::run({node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", shared}, {}, 10s);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("others may write to it"), std::string::npos) << r.err;
}

// ---- Links swapped in ------------------------------------------------------------------

// The task (alice) replaces in/f, in/d, out/o and out/od with links to canaries while the
// client holds fids walked and opened before; every access after the swap is an error,
// and neither canary is read or changed. One canary is root's 0600; the other is alice's
// own file outside the task's directory: the node acts as alice, so only following a
// link could reach it, and only RESOLVE_NO_SYMLINKS keeps it out.
TEST(NodeContain, LinksSwappedInAreNeverFollowed) {
  NEED_USERS();
  const auto& u = users();
  START(f);
  std::string root_canary = f.dir.file("root-canary");
  std::string own_canary_dir = f.dir.file("alice-files");
  std::string own_canary = own_canary_dir + "/canary";
  std::ofstream(root_canary) << "root secret\n";
  ::chmod(root_canary.c_str(), 0600);
  ASSERT_EQ(::mkdir(own_canary_dir.c_str(), 0700), 0);
  std::ofstream(own_canary) << "alice secret\n";
  ::chmod(own_canary.c_str(), 0600);
  ASSERT_EQ(::chown(own_canary_dir.c_str(), test_users::uid(u.alice), test_users::gid(u.alice)), 0);
  ASSERT_EQ(::chown(own_canary.c_str(), test_users::uid(u.alice), test_users::gid(u.alice)), 0);
  struct stat before_root = stat_of(root_canary), before_own = stat_of(own_canary);

  auto alice = f.as(u.alice);
  auto n = f.task(alice, {});
  ASSERT_TRUE(n.has_value()) << n.error();
  std::string t = "task/" + *n;
  // in/f, in/d/g, made by the client before exec.
  auto in = f.c->walk(alice, t + "/in");
  ASSERT_TRUE(in.has_value());
  ASSERT_TRUE(f.c->create(*in, "d", srv9p::dmdir | 0700, srv9p::oread).has_value());
  ASSERT_TRUE(f.c->clunk(*in).has_value());
  in = f.c->walk(alice, t + "/in");
  ASSERT_TRUE(f.c->create(*in, "f", 0600, srv9p::owrite).has_value());
  ASSERT_TRUE(f.c->write(*in, 0, "original\n").has_value());
  ASSERT_TRUE(f.c->clunk(*in).has_value());
  auto d = f.c->walk(alice, t + "/in/d");
  ASSERT_TRUE(d.has_value());
  ASSERT_TRUE(f.c->create(*d, "g", 0600, srv9p::owrite).has_value());
  ASSERT_TRUE(f.c->clunk(*d).has_value());

  // The task makes out/o and out/od, waits for the client's go (in/go), swaps, says done.
  std::string script = fmt::format(
      "cd $GALAXY_OUT && echo result > o && mkdir od && echo x > od/p && touch ready && "
      "while [ ! -e $HOME/go ]; do sleep 0.02; done && cd $HOME && "
      "mv f f.old && ln -s {0} f && mv d d.old && ln -s {2} d && "
      "cd $GALAXY_OUT && mv o o.old && ln -s {1} o && mv od od.old && ln -s {2} od && touch swapped && sleep 300",
      root_canary, own_canary, own_canary_dir);
  ASSERT_TRUE(f.c->write_file(alice, t + "/ctl", "nice 0\nexec sh -c " + ctl_quote(script) + "\n").has_value());
  auto until = testutil::steady::now() + 10s;
  while (!f.c->stat_path(alice, t + "/out/ready") && testutil::steady::now() < until) std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(f.c->stat_path(alice, t + "/out/ready").has_value());

  // Fids walked (and one opened) before the swap.
  auto f_walked = f.c->walk(alice, t + "/in/f");
  auto f_open = f.c->walk(alice, t + "/in/f");
  auto d_walked = f.c->walk(alice, t + "/in/d");
  auto o_walked = f.c->walk(alice, t + "/out/o");
  auto od_walked = f.c->walk(alice, t + "/out/od");
  ASSERT_TRUE(f_walked && f_open && d_walked && o_walked && od_walked);
  ASSERT_TRUE(f.c->open(*f_open, srv9p::ordwr).has_value());
  // The go: a file the client makes in in/.
  in = f.c->walk(alice, t + "/in");
  ASSERT_TRUE(f.c->create(*in, "go", 0600, srv9p::owrite).has_value());
  ASSERT_TRUE(f.c->clunk(*in).has_value());
  until = testutil::steady::now() + 10s;
  while (!f.c->stat_path(alice, t + "/out/swapped") && testutil::steady::now() < until) std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(f.c->stat_path(alice, t + "/out/swapped").has_value());

  auto no_secret = [](const fsclient::result<std::string>& r) {
    return !r || (r->find("secret") == std::string::npos);
  };
  // Opening a fid walked before the swap: the link is refused.
  auto o1 = f.c->open(*f_walked, srv9p::oread);
  EXPECT_FALSE(o1.has_value());
  auto o2 = f.c->open(*o_walked, srv9p::oread);
  EXPECT_FALSE(o2.has_value());
  // The fid opened before reads and writes the file it opened, not the link's target.
  auto r1 = f.c->read(*f_open, 0, 100);
  EXPECT_TRUE(no_secret(r1));
  EXPECT_EQ(r1.value_or(""), "original\n");
  EXPECT_TRUE(f.c->write(*f_open, 0, "OVERWRITE\n").has_value());
  // Walks, reads, writes, creates and stats through the links: errors.
  EXPECT_FALSE(f.c->walk(alice, t + "/in/f").has_value());
  EXPECT_FALSE(f.c->walk(alice, t + "/in/d/canary").has_value());
  EXPECT_FALSE(f.c->walk(alice, t + "/out/od/canary").has_value());
  EXPECT_TRUE(no_secret(f.c->read_file(alice, t + "/in/f")));
  EXPECT_TRUE(no_secret(f.c->read_file(alice, t + "/out/o")));
  EXPECT_TRUE(no_secret(f.c->read_file(alice, t + "/in/d/canary")));
  EXPECT_FALSE(f.c->write_file(alice, t + "/in/f", "OVERWRITE\n").has_value());
  EXPECT_FALSE(f.c->stat(*f_walked).has_value());
  // Walks on from directories walked to before they became links.
  auto below_d = f.c->walk(*d_walked, "canary");
  EXPECT_FALSE(below_d.has_value());
  auto below_od = f.c->walk(*od_walked, "canary");
  EXPECT_FALSE(below_od.has_value());
  if (below_od) {
    EXPECT_TRUE(no_secret(f.c->open(*below_od, srv9p::oread) ? f.c->read(*below_od, 0, 100)
                                                             : fsclient::result<std::string>("")));
  }
  auto created = f.c->create(*d_walked, "planted", 0600, srv9p::owrite);
  EXPECT_FALSE(created.has_value());
  EXPECT_FALSE(fs::exists(own_canary_dir + "/planted"));
  auto d_again = f.c->walk(alice, t + "/in/d");
  EXPECT_FALSE(d_again.has_value());
  auto od_again = f.c->walk(alice, t + "/out");
  ASSERT_TRUE(od_again.has_value());
  auto od_listed = f.c->walk(*od_again, "od.old");  // a directory still, for contrast
  EXPECT_TRUE(od_listed.has_value());
  auto od_list = f.c->open(*od_walked, srv9p::oread);
  if (od_list) {
    auto listing = f.c->read(*od_walked, 0, 8192);
    EXPECT_FALSE(listing.has_value() && listing->find("canary") != std::string::npos) << "listed through a link";
  }
  auto listing = f.c->list_dir(alice, t + "/in");
  ASSERT_TRUE(listing.has_value());
  for (const auto& e : *listing) EXPECT_TRUE(e.name != "f" && e.name != "d") << e.name << " is a link: not listed";
  // Removing the link removes the link, not its target.
  auto rm = f.c->walk(alice, t + "/in/f.old");
  ASSERT_TRUE(rm.has_value());
  EXPECT_TRUE(f.c->remove(*rm).has_value());

  // The canaries: unchanged, unread (contents, and no read answered with them).
  EXPECT_EQ(slurp(root_canary), "root secret\n");
  EXPECT_EQ(slurp(own_canary), "alice secret\n");
  struct stat after_root = stat_of(root_canary), after_own = stat_of(own_canary);
  EXPECT_TRUE(after_root.st_mtim.tv_sec == before_root.st_mtim.tv_sec &&
              after_root.st_mtim.tv_nsec == before_root.st_mtim.tv_nsec);
  EXPECT_TRUE(after_own.st_mtim.tv_sec == before_own.st_mtim.tv_sec &&
              after_own.st_mtim.tv_nsec == before_own.st_mtim.tv_nsec);
  EXPECT_EQ(after_root.st_uid, 0u);
  EXPECT_EQ(after_own.st_size, before_own.st_size);
  ASSERT_TRUE(f.c->write_file(alice, t + "/ctl", "kill\n").has_value());
  EXPECT_EQ(f.read(alice, t + "/wait"), "signal 9\n");
}

// `dir PATH`: in/ is copied there by the task's user, and a link in in/ (another process
// of the user's may have put one there before exec) is left out, not followed.
TEST(NodeContain, CopyingInToDirFollowsNoLink) {
  NEED_USERS();
  const auto& u = users();
  START(f);
  std::string canary = f.dir.file("root-canary");
  std::ofstream(canary) << "root secret\n";
  ::chmod(canary.c_str(), 0600);
  std::string work = f.dir.file("work");
  ASSERT_EQ(::mkdir(work.c_str(), 0700), 0);
  ASSERT_EQ(::chown(work.c_str(), test_users::uid(u.alice), test_users::gid(u.alice)), 0);
  auto alice = f.as(u.alice);
  auto n = f.task(alice, {});
  ASSERT_TRUE(n.has_value()) << n.error();
  auto in = f.c->walk(alice, "task/" + *n + "/in");
  ASSERT_TRUE(in.has_value());
  ASSERT_TRUE(f.c->create(*in, "a", 0600, srv9p::owrite).has_value());
  ASSERT_TRUE(f.c->write(*in, 0, "plain\n").has_value());
  ASSERT_TRUE(f.c->clunk(*in).has_value());
  std::string link = f.task_dir(*n) + "/in/evil";
  ASSERT_EQ(::symlink(canary.c_str(), link.c_str()), 0);
  ASSERT_EQ(::lchown(link.c_str(), test_users::uid(u.alice), test_users::gid(u.alice)), 0);
  std::string dlink = f.task_dir(*n) + "/in/evildir";
  ASSERT_EQ(::symlink(f.dir.path().c_str(), dlink.c_str()), 0);
  ASSERT_TRUE(f.c->write_file(alice, "task/" + *n + "/ctl", "dir " + work + "\nexec ls\n").has_value());
  EXPECT_EQ(f.read(alice, "task/" + *n + "/wait"), "exit 0\n");
  EXPECT_EQ(f.read(alice, "task/" + *n + "/stdout"), "a\n");
  EXPECT_EQ(slurp(work + "/a"), "plain\n");
  EXPECT_FALSE(fs::exists(fs::symlink_status(work + "/evil")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(work + "/evildir")));
  EXPECT_EQ(stat_of(work + "/a").st_uid, test_users::uid(u.alice));
  EXPECT_EQ(slurp(canary), "root secret\n");
}

// Makes depth directories "d" nested below the directory at path, owned by uid/gid (as if
// the user had made them from their own shell: in/ is theirs). By descriptor, since the
// deepest path is longer than PATH_MAX.
void nest(const std::string& path, int depth, uid_t uid, gid_t gid) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  for (int i = 0; i < depth; i++) {
    ASSERT_EQ(::mkdirat(fd, "d", 0700), 0) << "level " << i;
    int sub = ::openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(sub, 0);
    ASSERT_EQ(::fchown(sub, uid, gid), 0);
    ::close(fd);
    fd = sub;
  }
  ::close(fd);
}

// Attack: 300 nested directories in in/ and `dir` elsewhere crashed the root daemon (the
// copy recursed per level with a 64 KiB buffer in each frame). Now the start fails with
// the reason, the daemon serves on, and a tree within the limit is still copied whole.
TEST(NodeContain, DeeplyNestedInDoesNotCrashTheNode) {
  NEED_USERS();
  const auto& u = users();
  START(f);
  uid_t auid = test_users::uid(u.alice);
  gid_t agid = test_users::gid(u.alice);
  std::string work = f.dir.file("work");
  ASSERT_EQ(::mkdir(work.c_str(), 0700), 0);
  ASSERT_EQ(::chown(work.c_str(), auid, agid), 0);
  auto alice = f.as(u.alice);
  auto n = f.task(alice, {});
  ASSERT_TRUE(n.has_value()) << n.error();
  auto in = f.c->walk(alice, "task/" + *n + "/in");
  ASSERT_TRUE(in.has_value());
  ASSERT_TRUE(f.c->create(*in, "a", 0600, srv9p::owrite).has_value());
  ASSERT_TRUE(f.c->clunk(*in).has_value());
  nest(f.task_dir(*n) + "/in", 300, auid, agid);
  auto w = f.c->write_file(alice, "task/" + *n + "/ctl", "dir " + work + "\nexec /bin/true\n");
  ASSERT_FALSE(w.has_value());
  EXPECT_NE(w.error().find("copying in/ to " + work + ": d/d/"), std::string::npos) << w.error();
  EXPECT_TRUE(w.error().ends_with(": more than 32 directories deep")) << w.error();
  // The task is still new, and the node serves on.
  EXPECT_NE(f.read(alice, "task/" + *n + "/status").find("state=new"), std::string::npos);
  auto ok = f.task(alice, {"exec id -un"});
  ASSERT_TRUE(ok.has_value()) << ok.error();
  EXPECT_EQ(f.read(alice, "task/" + *ok + "/wait"), "exit 0\n");
  // Removing the task deletes all 300 levels.
  ASSERT_TRUE(f.c->write_file(alice, "task/" + *n + "/ctl", "rm\n").has_value());
  EXPECT_FALSE(fs::exists(f.task_dir(*n)));
  EXPECT_TRUE(fs::is_empty(f.spool + "/trash"));

  // 32 levels, the limit, are copied.
  auto m = f.task(alice, {});
  ASSERT_TRUE(m.has_value()) << m.error();
  auto in2 = f.c->walk(alice, "task/" + *m + "/in");
  ASSERT_TRUE(in2.has_value());
  ASSERT_TRUE(f.c->create(*in2, "a", 0600, srv9p::owrite).has_value());
  ASSERT_TRUE(f.c->clunk(*in2).has_value());
  nest(f.task_dir(*m) + "/in", 32, auid, agid);
  std::string work2 = f.dir.file("work2");
  ASSERT_EQ(::mkdir(work2.c_str(), 0700), 0);
  ASSERT_EQ(::chown(work2.c_str(), auid, agid), 0);
  auto started = f.c->write_file(alice, "task/" + *m + "/ctl", "dir " + work2 + "\nexec /bin/true\n");
  ASSERT_TRUE(started.has_value()) << started.error();
  EXPECT_EQ(f.read(alice, "task/" + *m + "/wait"), "exit 0\n");
  std::string deepest = work2;
  for (int i = 0; i < 32; i++) deepest += "/d";
  EXPECT_TRUE(fs::is_directory(deepest));
  EXPECT_FALSE(fs::exists(deepest + "/d"));
}

// A task swapping a file for a link and back as fast as it can while the client walks,
// opens and reads it over and over: every read is the file's content or an error.
TEST(NodeContain, ALinkSwappedInMidFlightIsRefused) {
  NEED_USERS();
  const auto& u = users();
  START(f);
  std::string own_canary_dir = f.dir.file("alice-files");
  std::string own_canary = own_canary_dir + "/canary";
  ASSERT_EQ(::mkdir(own_canary_dir.c_str(), 0700), 0);
  std::ofstream(own_canary) << "alice secret\n";
  std::ofstream(own_canary_dir + "/x") << "alice secret\n";
  for (const auto& p : {own_canary_dir, own_canary, own_canary_dir + "/x"}) {
    ASSERT_EQ(::chown(p.c_str(), test_users::uid(u.alice), test_users::gid(u.alice)), 0);
  }
  auto alice = f.as(u.alice);
  std::string script = fmt::format(
      "echo plain > a; ln -s {0} l; mkdir dd; echo plain > dd/x; ln -s {1} dl; touch ready; "
      "while :; do ln -sfT {0} x; rm -rf y; ln -s {1} y; cp a x.new; mv -T x.new x; rm -f y; cp -r dd y; done",
      own_canary, own_canary_dir);
  // At nice 0: an idle-class task on a busy machine might not swap at all meanwhile.
  auto n = f.task(alice, {"nice 0", "exec sh -c " + ctl_quote(script)});
  ASSERT_TRUE(n.has_value()) << n.error();
  std::string t = "task/" + *n;
  auto until = testutil::steady::now() + 10s;
  while (!f.c->stat_path(alice, t + "/in/ready") && testutil::steady::now() < until) std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(f.c->stat_path(alice, t + "/in/ready").has_value());
  // Rounds until both the files and the links have been met (and at least 300), or 20 s.
  int plain = 0, errors = 0;
  until = testutil::steady::now() + 20s;
  for (int i = 0; i < 300 || ((plain == 0 || errors == 0) && testutil::steady::now() < until); i++) {
    for (const char* p : {"/in/x", "/in/y/x", "/in/l", "/in/dl/canary"}) {
      auto r = f.c->read_file(alice, t + p);
      if (r) {
        EXPECT_EQ(r->find("secret"), std::string::npos) << p << " was read through a link";
        plain++;
      } else {
        errors++;
      }
    }
  }
  EXPECT_GT(errors, 0);  // the links were there
  EXPECT_GT(plain, 0);   // and so were the files
  ASSERT_TRUE(f.c->write_file(alice, t + "/ctl", "kill\n").has_value());
  EXPECT_EQ(slurp(own_canary), "alice secret\n");
}

// ---- Containment ---------------------------------------------------------------------

std::string contain_mode(node_fixture& f, std::uint32_t root) {
  std::string s = f.read(root, "status");
  auto at = s.find(" contain=");
  if (at == std::string::npos) return "";
  return s.substr(at + 9, s.find_first_of(" \n", at + 9) - at - 9);
}

TEST(NodeContain, WhatATaskStartedIsGoneWhenItEnds) {
  NEED_USERS();
  START(f);
  auto alice = f.as(users().alice);
  std::string mode = contain_mode(f, alice);
  ASSERT_TRUE(mode == "cgroup" || mode == "pgroup") << f.read(alice, "status");
  if (mode != "cgroup") GTEST_SKIP() << "no cgroup v2 here (contain=pgroup): setsid escapes a process group";
  // A setsid'd sleep and a double-forked daemon in its own session, their pids in out/.
  auto n = f.task(alice, {"exec sh -c " + ctl_quote("setsid sleep 300 > /dev/null 2>&1 & echo $! > $GALAXY_OUT/p1; "
                                                    "( setsid sh -c 'sleep 300 & echo $! > $GALAXY_OUT/p2' & ) ; "
                                                    "while [ ! -s $GALAXY_OUT/p2 ]; do sleep 0.02; done")});
  ASSERT_TRUE(n.has_value()) << n.error();
  EXPECT_EQ(f.read(alice, "task/" + *n + "/wait"), "exit 0\n");
  pid_t p1 = to_pid(f.read(alice, "task/" + *n + "/out/p1"));
  pid_t p2 = to_pid(f.read(alice, "task/" + *n + "/out/p2"));
  ASSERT_GT(p1, 0);
  ASSERT_GT(p2, 0);
  EXPECT_TRUE(gone_within(p1, 5s)) << "setsid sleep outlived its task";
  EXPECT_TRUE(gone_within(p2, 5s)) << "double-forked sleep outlived its task";

  // And when a running task is killed.
  auto k = f.task(alice, {"nice 0", "exec sh -c " + ctl_quote("setsid sleep 300 > /dev/null 2>&1 & echo $! > $GALAXY_OUT/p; sleep 300")});
  ASSERT_TRUE(k.has_value()) << k.error();
  auto until = testutil::steady::now() + 10s;
  pid_t p = 0;
  while ((p = to_pid(f.read(alice, "task/" + *k + "/out/p"))) == 0 && testutil::steady::now() < until) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_GT(p, 0);
  EXPECT_TRUE(alive(p));
  ASSERT_TRUE(f.c->write_file(alice, "task/" + *k + "/ctl", "kill\n").has_value());
  EXPECT_EQ(f.read(alice, "task/" + *k + "/wait"), "signal 9\n");
  EXPECT_TRUE(gone_within(p, 5s)) << "setsid sleep outlived its killed task";
  // Its cgroup is named in the spec and gone with it.
  std::string spec = slurp(f.task_dir(*k) + "/spec");
  auto at = spec.find("\ncgroup=");
  ASSERT_NE(at, std::string::npos) << spec;
  std::string cg = spec.substr(at + 8, spec.find('\n', at + 8) - at - 8);
  if (!cg.empty()) {
    until = testutil::steady::now() + 5s;
    while (fs::exists(cg) && testutil::steady::now() < until) std::this_thread::sleep_for(20ms);
  }
}

// --task-pids-max is each task's pids.max, read by the task from its own cgroup. Only
// where cgroup2 has the pids controller (not on a hybrid hierarchy, where pids is a v1
// controller): elsewhere it skips, saying so.
TEST(NodeContain, TaskPidsMaxLimitsATasksProcesses) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: makes cgroups";
  START(f, {"--task-pids-max", "20"});
  auto root = f.as(me());
  auto n = f.task(root, {"exec sh -c 'sed -n \"s/^0:://p\" /proc/self/cgroup'"});
  ASSERT_TRUE(n.has_value()) << n.error();
  EXPECT_EQ(f.read(root, "task/" + *n + "/wait"), "exit 0\n");
  std::string cg = f.read(root, "task/" + *n + "/stdout");
  while (!cg.empty() && cg.back() == '\n') cg.pop_back();
  std::string mount;
  {
    FILE* p = ::popen("findmnt -n -t cgroup2 -o TARGET | head -1", "r");
    ASSERT_NE(p, nullptr);
    char buf[4096] = {};
    if (std::fgets(buf, sizeof buf, p) != nullptr) mount = buf;
    ::pclose(p);
    while (!mount.empty() && mount.back() == '\n') mount.pop_back();
  }
  std::string parent = fs::path(mount + cg).parent_path().string();
  if (mount.empty() || slurp(parent + "/cgroup.subtree_control").find("pids") == std::string::npos) {
    GTEST_SKIP() << "the pids controller is not delegated to " << parent << " on cgroup2 here";
  }
  auto m = f.task(root, {"exec sh -c 'cat " + mount + "$(sed -n \"s/^0:://p\" /proc/self/cgroup)/pids.max'"});
  ASSERT_TRUE(m.has_value()) << m.error();
  EXPECT_EQ(f.read(root, "task/" + *m + "/wait"), "exit 0\n");
  EXPECT_EQ(f.read(root, "task/" + *m + "/stdout"), "20\n");
}

TEST(NodeContain, WithoutCgroupsStatusSaysPgroup) {
  START(f, {"--no-cgroups"});
  auto root = f.as(me());
  EXPECT_EQ(contain_mode(f, root), "pgroup");
}

// ---- Bounded ctl input -----------------------------------------------------------------

TEST(NodeContain, OverlongCtlLinesAndNulsAreErrorsThatChangeNothing) {
  START(f);
  auto root = f.as(me());
  auto n = f.task(root, {});
  ASSERT_TRUE(n.has_value()) << n.error();
  std::string ctl = "task/" + *n + "/ctl";
  auto fid = f.c->walk(root, ctl);
  ASSERT_TRUE(fid.has_value());
  ASSERT_TRUE(f.c->open(*fid, srv9p::owrite).has_value());
  // 80 KiB without a newline, in 4 KiB writes (as FUSE splits a long line): the write
  // that takes it over the limit is refused, and so is each write after it that carries
  // only the refused line's rest (none is answered with a success).
  std::string line = "env A=" + std::string(80 * 1024, 'x');
  std::vector<std::string> why;
  for (std::size_t off = 0; off < line.size(); off += 4096) {
    auto w = f.c->write(*fid, 0, std::string_view(line).substr(off, 4096));
    if (!w) why.push_back(w.error());
  }
  ASSERT_EQ(why.size(), 5u);  // writes 17 to 21 of 21 (the last, 6 bytes, ends the line)
  EXPECT_EQ(why[0], "ctl line longer than 65536 bytes");
  EXPECT_EQ(why[4], "rest of a ctl line longer than 65536 bytes discarded");
  ASSERT_TRUE(f.c->clunk(*fid).has_value());
  EXPECT_EQ(f.read(root, ctl).find("env "), std::string::npos) << f.read(root, ctl);
  // A NUL inside an argument.
  auto w = f.c->write_file(root, ctl, std::string("env A=b\0c\n", 10));
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error(), "NUL in ctl message");
  EXPECT_EQ(f.read(root, ctl).find("env "), std::string::npos) << f.read(root, ctl);
  // The daemon serves on.
  ASSERT_TRUE(f.c->write_file(root, ctl, "exec true\n").has_value());
  EXPECT_EQ(f.read(root, "task/" + *n + "/wait"), "exit 0\n");
}

// ---- safe_fs --------------------------------------------------------------------------

class SafeFs : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { node::force_component_walk(GetParam()); }
  void TearDown() override { node::force_component_walk(false); }
};

TEST_P(SafeFs, RefusesLinksAndNamesThatLeave) {
  testutil::temp_dir d;
  std::string base = d.file("base");
  ASSERT_EQ(::mkdir(base.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((base + "/sub").c_str(), 0700), 0);
  std::ofstream(base + "/sub/file") << "ok";
  std::ofstream(d.file("outside")) << "secret";
  ASSERT_EQ(::symlink(d.file("outside").c_str(), (base + "/link").c_str()), 0);
  ASSERT_EQ(::symlink("sub", (base + "/dirlink").c_str()), 0);
  int fd = ::open(base.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto ok = node::open_beneath(fd, "sub/file", O_RDONLY);
  ASSERT_TRUE(ok.has_value());
  ::close(*ok);
  auto self = node::open_beneath(fd, "", O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(self.has_value());
  ::close(*self);
  EXPECT_EQ(err_of(node::open_beneath(fd, "link", O_RDONLY)), ELOOP);
  EXPECT_EQ(err_of(node::open_beneath(fd, "dirlink/file", O_RDONLY)), ELOOP);
  EXPECT_EQ(err_of(node::open_beneath(fd, "../outside", O_RDONLY)), EINVAL);
  EXPECT_EQ(err_of(node::open_beneath(fd, "/etc/passwd", O_RDONLY)), EINVAL);
  EXPECT_EQ(err_of(node::open_beneath(fd, "sub//file", O_RDONLY)), EINVAL);
  EXPECT_EQ(err_of(node::open_beneath(fd, std::string("sub\0x", 5), O_RDONLY)), EINVAL);
  // O_PATH | O_NOFOLLOW opens a final link as itself, for the caller to see and refuse.
  auto l = node::open_beneath(fd, "link", O_PATH | O_NOFOLLOW);
  ASSERT_TRUE(l.has_value());
  struct stat st;
  ASSERT_EQ(::fstat(*l, &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  ::close(*l);
  ::close(fd);
}

// copy_tree's limits on entries and bytes; remove_tree_below deletes a tree deeper than
// any stack frame per level would survive.
TEST_P(SafeFs, CopyTreeIsBoundedAndRemoveTreeGoesAnyDepth) {
  testutil::temp_dir d;
  std::string src = d.file("src"), dst = d.file("dst");
  ASSERT_EQ(::mkdir(src.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(dst.c_str(), 0700), 0);
  for (int i = 0; i < 10; i++) std::ofstream(fmt::format("{}/f{}", src, i)) << std::string(1000, 'x');
  int s = ::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int t = ::open(dst.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(s, 0);
  ASSERT_GE(t, 0);
  EXPECT_TRUE(node::copy_tree(s, t).has_value());
  EXPECT_EQ(slurp(dst + "/f3"), std::string(1000, 'x'));
  auto many = node::copy_tree(s, t, {.max_entries = 9});
  ASSERT_FALSE(many.has_value());
  EXPECT_TRUE(many.error().ends_with(": more than 9 files and directories")) << many.error();
  auto big = node::copy_tree(s, t, {.max_bytes = 5500});
  ASSERT_FALSE(big.has_value());
  EXPECT_TRUE(big.error().ends_with(": more than 5500 bytes in all")) << big.error();
  // 1000 levels below dst: deeper than PATH_MAX lets a path name.
  ::close(s);
  ::close(t);
  nest(dst, 1000, ::geteuid(), ::getegid());
  t = ::open(dst.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  EXPECT_EQ(node::remove_tree_below(t), 0);
  ::close(t);
  EXPECT_TRUE(fs::is_empty(dst));
}

INSTANTIATE_TEST_SUITE_P(Openat2AndComponentWalk, SafeFs, ::testing::Values(false, true));

}  // namespace
