// The FUSE bridge end to end: the real `galaxy mount` over real galaxy-ramfs,
// galaxy-node and galaxy-sched processes, used through the kernel by real programs
// (/bin/sh, ls, cat, cp, dd) and by this process's own system calls, as a shell user
// would; and a mount that outlives a scheduler killed and restarted under it.
//
// Every test needs /dev/fuse; where it is absent each test skips and says so. CI runs as
// root with /dev/fuse. A mount never outlives its test: the fixture unmounts lazily
// (fusermount3 -u -z) and stops the bridge whatever happened. galaxy-node runs tasks as
// nobody, so the temporary directories are 0755.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <tuple>

#include "fsclient/client.hpp"
#include "fsclient/fuse_bridge.hpp"
#include "tests/testmunge.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
using testutil::have_fuse;
using testutil::is_mounted;
using testutil::run;

const std::string galaxy_bin = GALAXY_BINARY_DIR "/galaxy";
const std::string ramfs_bin = GALAXY_BINARY_DIR "/galaxy-ramfs";
const std::string node_bin = GALAXY_BINARY_DIR "/galaxy-node";
const std::string sched_bin = GALAXY_BINARY_DIR "/galaxy-sched";

// Waits for cond, checking every few milliseconds; false if it did not hold within limit.
// (Not a speed assertion: the limit only turns a hang into a failure.)
template <class F>
bool eventually(F cond, std::chrono::milliseconds limit = 20s) {
  auto deadline = testutil::steady::now() + limit;
  while (!cond()) {
    if (testutil::steady::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::string sh(const std::string& script, int* status = nullptr) {
  auto r = run({"/bin/sh", "-c", script});
  if (status != nullptr) *status = r.status;
  return r.out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// errno of a system call that returned -1, or 0 if it succeeded.
int err_of(int rc) { return rc < 0 ? errno : 0; }

// A server (galaxy-ramfs or galaxy-node) and a `galaxy mount -f` of it.
struct mounted {
  testutil::temp_dir dir;
  std::string mp = dir.file("mnt");
  testutil::daemon_handle node;    // behind a galaxy-sched server
  testutil::daemon_handle server;
  testutil::process bridge;
  std::string dial;
  std::vector<std::string> sched_argv;  // how server was started, for restart_sched()
  std::string bridge_log;               // non-empty: the bridge's stderr goes to this file

  mounted() {
    ::chmod(dir.path().c_str(), 0755);
    ::mkdir(mp.c_str(), 0755);
  }
  ~mounted() { teardown(); }

  // Lazy unmount (works with files still open), then the bridge ends by itself.
  void teardown() {
    if (is_mounted(mp)) run({"/usr/bin/fusermount3", "-u", "-z", mp}, {}, 10s);
    if (bridge.running() && !bridge.wait(10s)) bridge.signal(SIGKILL);
  }

  std::string start_ramfs(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{ramfs_bin, "--listen", "tcp!127.0.0.1!0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto h = testutil::start_daemon(argv);
    if (!h) return h.error();
    server = std::move(*h);
    dial = server.dials.at(0);
    return {};
  }

  // galaxy-ramfs on a Unix socket in the test's directory: its peer is known from the
  // socket, so a root client may attach as any user there.
  std::string start_ramfs_unix() {
    auto h = testutil::start_daemon({ramfs_bin, "--listen", "unix!" + dir.file("ramfs.sock")});
    if (!h) return h.error();
    server = std::move(*h);
    dial = server.dials.at(0);
    return {};
  }

  std::string start_node() {
    std::vector<std::string> argv{node_bin, "--listen", "tcp!127.0.0.1!0", "--spool", dir.file("spool"),
                                  "--name", "n1"};
    auto h = testutil::start_daemon(argv);
    if (!h) return h.error();
    server = std::move(*h);
    dial = server.dials.at(0);
    return {};
  }

  // galaxy-sched on TCP port 0 with its state in the test's directory, over one
  // galaxy-node, both with auth (munged's socket) or --auth none.
  std::string start_sched(const std::string& munge_socket = "") {
    std::vector<std::string> auth{"--auth", "none"};
    if (!munge_socket.empty()) auth = {"--auth", "munge", "--munge-socket", munge_socket};
    std::vector<std::string> nargv{node_bin, "--listen", "tcp!127.0.0.1!0", "--spool", dir.file("spool"),
                                   "--name", "n1"};
    nargv.insert(nargv.end(), auth.begin(), auth.end());
    auto n = testutil::start_daemon(nargv);
    if (!n) return n.error();
    node = std::move(*n);
    sched_argv = {sched_bin, "--state", dir.file("state"), "--heartbeat", "0.2", "--node", "n1=" + node.dials.at(0)};
    sched_argv.insert(sched_argv.end(), auth.begin(), auth.end());
    std::vector<std::string> argv = sched_argv;
    argv.insert(argv.end(), {"--listen", "tcp!127.0.0.1!0"});
    auto h = testutil::start_daemon(argv);
    if (!h) return h.error();
    server = std::move(*h);
    dial = server.dials.at(0);
    return {};
  }

  // SIGKILLs the scheduler, and (restart_sched) starts it again on the same address with
  // the same state directory, as systemd's Restart= would.
  std::string kill_sched() {
    server.proc.signal(SIGKILL);
    if (!server.proc.wait(10s)) return "galaxy-sched did not die of SIGKILL";
    return {};
  }
  std::string restart_sched() {
    std::vector<std::string> argv = sched_argv;
    argv.insert(argv.end(), {"--listen", dial});
    auto h = testutil::start_daemon(argv);
    if (!h) return h.error();
    server = std::move(*h);
    if (server.dials.at(0) != dial) return "restarted on " + server.dials.at(0) + ", not " + dial;
    return {};
  }

  // galaxy mount -f DIAL MP [extra]; returns once the mount is up.
  std::string mount(std::vector<std::string> extra = {}, std::vector<std::string> before_verb = {}) {
    std::vector<std::string> argv{galaxy_bin};
    argv.insert(argv.end(), before_verb.begin(), before_verb.end());
    argv.insert(argv.end(), {"mount", "-f", dial, mp});
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (!bridge_log.empty()) {
      // The shell becomes the bridge (exec), with its standard error in the file.
      argv.insert(argv.begin(), {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>>" + bridge_log});
    }
    auto p = testutil::process::spawn(argv);
    if (!p) return p.error();
    bridge = std::move(*p);
    if (!eventually([&] { return is_mounted(mp) || !bridge.running(); })) return "the mount did not come up";
    if (!is_mounted(mp)) return "galaxy mount -f exited with " + std::to_string(bridge.wait().value_or(-1));
    return {};
  }

  std::string path(const std::string& rel) const { return mp + "/" + rel; }

  // galaxy umount, then the bridge must end cleanly (status 0: no sanitizer report).
  void umount_and_check() {
    auto r = run({galaxy_bin, "umount", mp});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_FALSE(is_mounted(mp));
    auto st = bridge.wait(20s);
    ASSERT_TRUE(st.has_value()) << "the bridge did not exit after umount";
    EXPECT_EQ(*st, 0) << "the bridge's exit status";
  }
};

#define MOUNT_RAMFS(m, ...)                                       \
  REQUIRE_FUSE();                                                 \
  mounted m;                                                      \
  ASSERT_EQ(m.start_ramfs(__VA_ARGS__), "") << "galaxy-ramfs";    \
  ASSERT_EQ(m.mount(), "") << "galaxy mount"

#define MOUNT_NODE(m)                                     \
  REQUIRE_FUSE();                                         \
  mounted m;                                              \
  ASSERT_EQ(m.start_node(), "") << "galaxy-node";         \
  ASSERT_EQ(m.mount(), "") << "galaxy mount"

// Random bytes, so that a copy that drops or repeats a block cannot pass.
std::string random_bytes(std::size_t n) {
  std::mt19937_64 rng(12345);
  std::string s(n, '\0');
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(s.data() + i, &v, 8);
  }
  return s;
}

// ---- The errno table ---------------------------------------------------------------------

TEST(FuseErrno, EveryServerStringMapsAndUnknownIsEio) {
  bool known = false;
  EXPECT_EQ(fsclient::errno_of("file does not exist", &known), ENOENT);
  EXPECT_TRUE(known);
  EXPECT_EQ(fsclient::errno_of("permission denied"), EACCES);
  EXPECT_EQ(fsclient::errno_of("file already exists"), EEXIST);
  EXPECT_EQ(fsclient::errno_of("file exists"), EEXIST);
  EXPECT_EQ(fsclient::errno_of("is a directory"), EISDIR);
  EXPECT_EQ(fsclient::errno_of("not a directory"), ENOTDIR);
  EXPECT_EQ(fsclient::errno_of("walk in non-directory"), ENOTDIR);
  EXPECT_EQ(fsclient::errno_of("directory not empty"), ENOTEMPTY);
  EXPECT_EQ(fsclient::errno_of("connection closed"), EIO);  // the request's connection went; the mount redials
  EXPECT_EQ(fsclient::errno_of("interrupted"), EINTR);
  EXPECT_EQ(fsclient::errno_of("no space left on device"), ENOSPC);
  // Context before the server's words does not hide them.
  EXPECT_EQ(fsclient::errno_of("'a/b': file does not exist"), ENOENT);
  EXPECT_EQ(fsclient::errno_of("unknown command 'exce': expected exec, dir"), EINVAL);
  EXPECT_EQ(fsclient::errno_of("the moon is in the wrong phase", &known), EIO);
  EXPECT_FALSE(known);
}

// ---- Over galaxy-ramfs ---------------------------------------------------------------------

TEST(FuseRamfs, LsCatAndEchoThroughTheShell) {
  MOUNT_RAMFS(m);
  int st = -1;
  auto ls = sh("ls -a " + m.mp, &st);
  EXPECT_EQ(st, 0);
  EXPECT_EQ(ls, ".\n..\nevents\n");
  EXPECT_EQ(sh("echo hello > " + m.path("greeting") + " && cat " + m.path("greeting"), &st), "hello\n");
  EXPECT_EQ(st, 0);
  // > truncates (O_TRUNC becomes OTRUNC), >> appends.
  sh("echo hi > " + m.path("greeting") + "; echo there >> " + m.path("greeting"));
  EXPECT_EQ(slurp(m.path("greeting")), "hi\nthere\n");
  // The same bytes through the native client.
  auto c = fsclient::client::dial(m.dial);
  ASSERT_TRUE(c.has_value());
  auto root = (*c)->attach("root");
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ((*c)->read_file(*root, "greeting").value_or("?"), "hi\nthere\n");

  struct stat sb {};
  ASSERT_EQ(::stat(m.path("greeting").c_str(), &sb), 0);
  EXPECT_TRUE(S_ISREG(sb.st_mode));
  EXPECT_EQ(sb.st_size, 9);
  EXPECT_EQ(sb.st_uid, ::getuid()) << "files show as the mounting user's";
  EXPECT_EQ(sb.st_gid, ::getgid());
  ASSERT_EQ(::stat(m.mp.c_str(), &sb), 0);
  EXPECT_TRUE(S_ISDIR(sb.st_mode));

  // Directories, rename within one, chmod, truncate, statfs.
  sh("mkdir " + m.path("d") + " && echo x > " + m.path("d/a") + " && mv " + m.path("d/a") + " " + m.path("d/b"));
  EXPECT_EQ(sh("ls -a " + m.path("d")), ".\n..\nb\n");
  EXPECT_EQ(::chmod(m.path("d/b").c_str(), 0600), 0);
  ASSERT_EQ(::stat(m.path("d/b").c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
  EXPECT_EQ(::truncate(m.path("d/b").c_str(), 1), 0);
  EXPECT_EQ(slurp(m.path("d/b")), "x");
  EXPECT_EQ(sh("rm " + m.path("d/b") + " && rmdir " + m.path("d") + " && ls " + m.mp), "events\ngreeting\n");
  EXPECT_EQ(sh("df " + m.mp + " >/dev/null; echo $?"), "0\n");
  m.umount_and_check();
}

TEST(FuseRamfs, ErrorsMapToErrno) {
  MOUNT_RAMFS(m);
  auto p = [&](const char* rel) { return m.path(rel); };
  EXPECT_EQ(err_of(::open(p("nope").c_str(), O_RDONLY)), ENOENT);
  EXPECT_EQ(err_of(::mkdir(p("d").c_str(), 0755)), 0);
  EXPECT_EQ(err_of(::mkdir(p("d").c_str(), 0755)), EEXIST);
  int fd = ::open(p("d/f").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::close(fd);
  EXPECT_EQ(err_of(::open(p("d/f").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644)), EEXIST);
  EXPECT_EQ(err_of(::rmdir(p("d").c_str())), ENOTEMPTY);
  EXPECT_EQ(err_of(::unlink(p("d").c_str())), EISDIR);
  EXPECT_EQ(err_of(::rmdir(p("d/f").c_str())), ENOTDIR);
  EXPECT_EQ(err_of(::open(p("d/f/x").c_str(), O_RDONLY)), ENOTDIR);
  EXPECT_EQ(err_of(::open(p("d").c_str(), O_WRONLY)), EISDIR);
  // The server checks permissions (no default_permissions): a 0444 file cannot be opened
  // for writing even by root, and /events is read-only.
  EXPECT_EQ(err_of(::chmod(p("d/f").c_str(), 0444)), 0);
  EXPECT_EQ(err_of(::open(p("d/f").c_str(), O_WRONLY)), EACCES);
  EXPECT_EQ(err_of(::open(p("events").c_str(), O_WRONLY)), EACCES);
  // rename: another directory is EXDEV (mv copies instead); an existing target is replaced.
  EXPECT_EQ(err_of(::rename(p("d/f").c_str(), p("f").c_str())), EXDEV);
  sh("echo one > " + p("one") + "; echo two > " + p("two"));
  EXPECT_EQ(err_of(::rename(p("one").c_str(), p("two").c_str())), 0);
  EXPECT_EQ(slurp(p("two")), "one\n");
  EXPECT_EQ(err_of(::access(p("one").c_str(), F_OK)), ENOENT);
  // The shell says the same.
  int st = 0;
  auto r = run({"/bin/sh", "-c", "cat " + p("nope")});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << r.err;
  (void)st;
  m.umount_and_check();
}

TEST(FuseRamfs, SixtyFourMiBInAndOutAndWritesAreNotCutInto4KiB) {
  MOUNT_RAMFS(m);
  const std::string data = random_bytes(64u << 20);
  const std::string local = m.dir.file("local"), back = m.dir.file("back");
  {
    std::ofstream out(local, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
  }
  // Watch /events (one line per Twrite) through the native client while dd writes 1 MiB
  // blocks: FUSE's 4 KiB pages would make 16384 writes, max_write makes 64.
  auto c = fsclient::client::dial(m.dial);
  ASSERT_TRUE(c.has_value());
  auto root = (*c)->attach("root");
  ASSERT_TRUE(root.has_value());
  auto ev = (*c)->walk(*root, "events");
  ASSERT_TRUE(ev.has_value());
  ASSERT_TRUE((*c)->open(*ev, srv9p::oread).has_value());

  auto r = run({"/bin/dd", "if=" + local, "of=" + m.path("blob"), "bs=1M"}, {}, 120s);
  ASSERT_EQ(r.status, 0) << r.err;
  sh("touch " + m.path("marker"));
  std::string events;
  while (events.find("create marker\n") == std::string::npos) {
    auto piece = (*c)->read(*ev, 0, 65536);
    ASSERT_TRUE(piece.has_value()) << piece.error();
    events += *piece;
  }
  std::size_t writes = 0;
  for (std::size_t at = 0; (at = events.find("write blob\n", at)) != std::string::npos; at++) writes++;
  EXPECT_GE(writes, 64u);
  EXPECT_LE(writes, 128u) << "writes reached the server in small pieces";

  r = run({"/bin/cp", m.path("blob"), back}, {}, 120s);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(back) == data) << "the copy out differs";
  // Reads that jump about (the bridge reads ahead after each full read) get the right bytes.
  int fd = ::open(m.path("blob").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::string buf(1 << 20, '\0');
  for (std::uint64_t mib : {0, 1, 5, 2, 3, 63, 10, 11, 11, 40}) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(mib << 20) + 7);
    ASSERT_EQ(n, mib == 63 ? (1 << 20) - 7 : (1 << 20)) << "at MiB " << mib;
    EXPECT_TRUE(buf.compare(0, static_cast<std::size_t>(n), data, (mib << 20) + 7, static_cast<std::size_t>(n)) == 0)
        << "wrong bytes at MiB " << mib;
  }
  ::close(fd);
  r = run({"/bin/cp", local, m.path("blob2")}, {}, 120s);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(run({"/usr/bin/cmp", local, m.path("blob2")}, {}, 120s).status, 0);
  m.umount_and_check();
}

TEST(FuseRamfs, ABlockedReadStallsNothingAndCtrlCEndsIt) {
  MOUNT_RAMFS(m);
  auto cat = testutil::process::spawn({"/bin/cat", m.path("events")});
  ASSERT_TRUE(cat.has_value());
  // While cat waits in the server, other programs work, and cat sees what they do.
  // (cat opens /events some time after it starts; until then it sees nothing.)
  std::expected<std::string, std::string> line = std::unexpected("no file made");
  for (int i = 0; i < 200 && !line; i++) {
    EXPECT_EQ(sh("echo x > " + m.path("f" + std::to_string(i)) + " && ls " + m.mp).find("events\nf0\n"), 0u);
    line = cat->read_line(100ms);
  }
  ASSERT_TRUE(line.has_value()) << line.error();
  EXPECT_TRUE(line->starts_with("create f") || line->starts_with("write f")) << *line;
  ASSERT_TRUE(cat->running());
  // SIGINT, as Ctrl-C sends: FUSE_INTERRUPT → Tflush → the read ends, cat dies of it.
  cat->signal(SIGINT);
  auto st = cat->wait(20s);
  ASSERT_TRUE(st.has_value()) << "cat blocked in a read did not die of SIGINT";
  EXPECT_EQ(*st, 128 + SIGINT);
  // The mount is still fine.
  EXPECT_EQ(sh("cat " + m.path("f0")), "x\n");
  m.umount_and_check();
}

TEST(FuseRamfs, ServerKilledUnderTheMount) {
  REQUIRE_FUSE();
  mounted m;
  ASSERT_EQ(m.start_ramfs(), "");
  ASSERT_EQ(m.mount({"--attr-timeout", "0"}), "");
  sh("echo x > " + m.path("f"));
  auto cat = testutil::process::spawn({"/bin/cat", m.path("events")}, {.capture_stderr = true});
  ASSERT_TRUE(cat.has_value());
  int fd = ::open(m.path("f").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  m.server.proc.signal(SIGKILL);
  ASSERT_TRUE(m.server.proc.wait(10s).has_value());
  // The blocked read fails, and so does everything after, at once: the open file with
  // EIO (its connection is gone for good), new requests with ENOTCONN while the mount
  // redials in vain.
  auto st = cat->wait(20s);
  ASSERT_TRUE(st.has_value()) << "a read blocked in a dead server hung";
  EXPECT_EQ(*st, 1);
  char buf[16];
  EXPECT_EQ(err_of(static_cast<int>(::read(fd, buf, sizeof buf))), EIO);
  ::close(fd);
  struct stat sb {};
  EXPECT_EQ(err_of(::stat(m.path("f").c_str(), &sb)), ENOTCONN);
  EXPECT_EQ(err_of(::open(m.path("g").c_str(), O_WRONLY | O_CREAT, 0644)), ENOTCONN);
  int status = 0;
  sh("ls " + m.mp, &status);
  EXPECT_NE(status, 0);
  m.umount_and_check();
}

TEST(FuseRamfs, MountBackgroundsOnceUpAndUmountEndsIt) {
  REQUIRE_FUSE();
  mounted m;
  ASSERT_EQ(m.start_ramfs(), "");
  // run() returns only when galaxy mount has exited and nothing holds its stdout/stderr.
  // The background process's standard streams are /dev/null: under ASan, its reports
  // go to files instead (none may appear).
  const char* asan = std::getenv("ASAN_OPTIONS");
  std::string asan_env = "ASAN_OPTIONS=" + std::string(asan != nullptr ? std::string(asan) + ":" : "") +
                         "log_path=" + m.dir.file("asan");
  auto r = run({galaxy_bin, "mount", m.dial, m.mp}, {}, 30s, {asan_env});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_TRUE(is_mounted(m.mp)) << "galaxy mount returned before the mount was up";
  // The background process: the one whose command line names this mount point.
  pid_t bg = -1;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string cmd = slurp(e.path().string() + "/cmdline");
    if (cmd.find(m.mp) != std::string::npos && cmd.find("mount") != std::string::npos) {
      bg = static_cast<pid_t>(std::atoi(e.path().filename().c_str()));
    }
  }
  ASSERT_GT(bg, 0) << "no background galaxy mount process";
  EXPECT_EQ(sh("echo hi > " + m.path("f") + "; cat " + m.path("f")), "hi\n");
  r = run({galaxy_bin, "umount", m.mp});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(is_mounted(m.mp));
  EXPECT_TRUE(eventually([bg] { return ::kill(bg, 0) != 0; })) << "the background process outlived its mount";
  if (::kill(bg, 0) == 0) ::kill(bg, SIGKILL);
  for (const auto& e : std::filesystem::directory_iterator(m.dir.path())) {
    EXPECT_FALSE(e.path().filename().string().starts_with("asan")) << slurp(e.path().string());
  }

  // Errors reach the terminal, and nothing is left mounted.
  r = run({galaxy_bin, "mount", "tcp!127.0.0.1!1", m.mp});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("galaxy: mount: dial tcp!127.0.0.1!1"), std::string::npos) << r.err;
  r = run({galaxy_bin, "mount", "-o", "no_such_option", m.dial, m.mp});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no_such_option"), std::string::npos) << r.err;
  r = run({galaxy_bin, "mount", m.dial, m.dir.file("missing")});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("not a directory"), std::string::npos) << r.err;
  EXPECT_FALSE(is_mounted(m.mp));
  r = run({galaxy_bin, "umount", m.mp});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("galaxy: umount: "), std::string::npos) << r.err;
}

TEST(FuseRamfs, AnOrdinaryUserMountsWithFusermount3) {
  REQUIRE_FUSE();
  const passwd* pw = ::getpwnam("nobody");
  ASSERT_NE(pw, nullptr) << "no user nobody";
  if (::getuid() != 0) GTEST_SKIP() << "needs root to become nobody (CI runs as root)";
  // fusermount3 opens /dev/fuse with the user's own file-system uid (see
  // testutil::fuse_open_to_users).
  if (!testutil::fuse_open_to_users()) {
    GTEST_SKIP() << "/dev/fuse is not readable and writable by ordinary users here (mode 0600), so "
                    "fusermount3 cannot mount for them";
  }
  mounted m;
  ASSERT_EQ(m.start_ramfs(), "");
  ASSERT_EQ(::chown(m.mp.c_str(), pw->pw_uid, pw->pw_gid), 0);
  auto as_nobody = [](std::vector<std::string> argv) {
    std::vector<std::string> full{"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"};
    full.insert(full.end(), argv.begin(), argv.end());
    return run(full, {}, 30s, {"USER=nobody"});
  };
  auto r = as_nobody({galaxy_bin, "mount", m.dial, m.mp});
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_TRUE(is_mounted(m.mp));
  r = as_nobody({"/bin/sh", "-c", "echo hi > " + m.path("f") + " && stat -c '%u %s' " + m.path("f")});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, std::to_string(pw->pw_uid) + " 3\n");
  r = as_nobody({galaxy_bin, "umount", m.mp});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(is_mounted(m.mp));
}

TEST(FuseRamfs, OptionsReachTheMount) {
  REQUIRE_FUSE();
  if (::getuid() != 0) GTEST_SKIP() << "needs root to become nobody (CI runs as root)";
  mounted m;
  ASSERT_EQ(m.start_ramfs(), "");
  // -u names the attach user: the server makes files owned by it. --msize bounds every
  // transfer (statfs reports it). -o allow_other lets other users in.
  ASSERT_EQ(m.mount({"-u", "alice", "--msize", "8216", "-o", "allow_other"}), "");
  sh("echo hi > " + m.path("f") + "; chmod 0644 " + m.path("f"));
  auto c = fsclient::client::dial(m.dial);
  ASSERT_TRUE(c.has_value());
  auto root = (*c)->attach("root");
  ASSERT_TRUE(root.has_value());
  auto d = (*c)->stat_path(*root, "f");
  ASSERT_TRUE(d.has_value()) << d.error();
  EXPECT_EQ(d->uid, "alice");
  EXPECT_EQ(sh("stat -f -c %S " + m.mp), "8192\n");
  const std::string big(100000, 'z');
  EXPECT_EQ(run({"/bin/sh", "-c", "cat > " + m.path("g")}, big).status, 0);
  EXPECT_EQ(slurp(m.path("g")), big);
  auto r = run({"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/bin/cat", m.path("f")});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hi\n");
  m.umount_and_check();
  // Without allow_other, FUSE keeps everyone but the mounting user out.
  ASSERT_EQ(m.mount(), "");
  r = run({"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/bin/cat", m.path("f")});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
  m.umount_and_check();
}

// Root's allow_other mount is per-user: each local user acts as themself through it, with
// the server's permissions for that user, never root's. Two real users (useradd) make,
// read and refuse files through one mount; a uid with no name gets nothing.
TEST(FuseRamfs, RootsSharedMountActsAsEachCaller) {
  REQUIRE_FUSE();
  if (::getuid() != 0) GTEST_SKIP() << "needs root to make users and to mount for others (CI runs as root)";
  auto alice = testutil::local_user::make("al");
  ASSERT_TRUE(alice.has_value()) << alice.error();
  auto bob = testutil::local_user::make("bo");
  ASSERT_TRUE(bob.has_value()) << bob.error();
  mounted m;
  ASSERT_EQ(m.start_ramfs_unix(), "");
  // Long caching, so that the kernel answers lookups itself and the bridge, not a fresh
  // lookup, must find each caller's fids.
  ASSERT_EQ(m.mount({"-o", "allow_other", "--attr-timeout", "60"}), "");
  auto as = [](const testutil::local_user& u, const std::string& script) {
    return run(u.as({"/bin/sh", "-c", script}), {}, 30s, {"LC_ALL=C"});
  };

  // alice makes a private file and bob a private directory; each is the owner, in the
  // server and as the mount shows it.
  auto r = as(*alice, "umask 077; echo secret > " + m.path("a") + " && cat " + m.path("a"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "secret\n");
  r = as(*bob, "mkdir -m 0700 " + m.path("bobdir") + " && echo mine > " + m.path("bobdir/f") + " && cat " +
                   m.path("bobdir/f"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "mine\n");
  // Checked natively, attached as the owner (the server has no superuser to look into
  // bob's 0700 directory; root may attach as anyone on a Unix socket).
  auto c = fsclient::client::dial(m.dial);
  ASSERT_TRUE(c.has_value()) << c.error();
  for (const auto& [path, owner, mode] : {std::tuple{"a", alice->name(), 0600u}, std::tuple{"bobdir", bob->name(), 0700u},
                                          std::tuple{"bobdir/f", bob->name(), 0600u}}) {
    auto root = (*c)->attach(owner);
    ASSERT_TRUE(root.has_value()) << root.error();
    auto d = (*c)->stat_path(*root, path);
    ASSERT_TRUE(d.has_value()) << path << ": " << d.error();
    EXPECT_EQ(d->uid, owner) << path;
    EXPECT_EQ(d->mode & 0777, mode) << path;
  }
  EXPECT_EQ(sh("stat -c '%U %a' " + m.path("a") + " " + m.path("bobdir")),
            alice->name() + " 600\n" + bob->name() + " 700\n");

  // Neither reads the other's: the kernel has both nodes cached from their owners'
  // lookups, so the refusal is the server's, for the caller's own walk and open.
  r = as(*bob, "cat " + m.path("a"));
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
  r = as(*alice, "cat " + m.path("bobdir/f"));
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
  r = as(*alice, "ls " + m.path("bobdir"));
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
  // bob cannot write into alice's file either, and it is unchanged.
  r = as(*bob, "echo bob >> " + m.path("a"));
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(as(*alice, "cat " + m.path("a")).out, "secret\n");
  // A rename through the mount: a user who never used the nodes reaches them by the new
  // name (the kernel still has them cached: the bridge walks their paths, which follow).
  r = as(*alice, "mkdir " + m.path("pub") + " && echo shared > " + m.path("pub/g") + " && mv " + m.path("pub") +
                     " " + m.path("pub2"));
  ASSERT_EQ(r.status, 0) << r.err;
  r = as(*bob, "cat " + m.path("pub2/g"));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "shared\n");

  // A uid with no user name here is refused outright.
  uid_t nameless = 54321;
  while (::getpwuid(nameless) != nullptr) nameless++;
  r = run({"/usr/bin/setpriv", "--reuid=" + std::to_string(nameless), "--regid=" + std::to_string(nameless),
           "--clear-groups", "/bin/ls", m.mp},
          {}, 30s, {"LC_ALL=C"});
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
  m.umount_and_check();
}

// By default a per-user mount lets the kernel cache nothing: a lookup and a stat that
// alice has just made are not answered from the cache for bob, who may not search her
// directory.
TEST(FuseRamfs, RootsSharedMountCachesNothingAcrossUsers) {
  REQUIRE_FUSE();
  if (::getuid() != 0) GTEST_SKIP() << "needs root to make users and to mount for others (CI runs as root)";
  auto alice = testutil::local_user::make("al");
  ASSERT_TRUE(alice.has_value()) << alice.error();
  auto bob = testutil::local_user::make("bo");
  ASSERT_TRUE(bob.has_value()) << bob.error();
  mounted m;
  ASSERT_EQ(m.start_ramfs_unix(), "");
  ASSERT_EQ(m.mount({"-o", "allow_other"}), "");
  std::string f = m.path("adir/x");
  auto r = run(alice->as({"/bin/sh", "-c", "mkdir -m 0700 " + m.path("adir") + " && echo x > " + f + " && stat -c %s " + f}),
               {}, 30s, {"LC_ALL=C"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "2\n");
  r = run(bob->as({"/usr/bin/stat", "-c", "%s", f}), {}, 30s, {"LC_ALL=C"});
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
  m.umount_and_check();
}

// A mount by root without allow_other stays one user's: nobody else gets in at all.
TEST(FuseRamfs, RootsOwnMountIsNotPerUser) {
  REQUIRE_FUSE();
  if (::getuid() != 0) GTEST_SKIP() << "needs root to make users (CI runs as root)";
  auto alice = testutil::local_user::make("al");
  ASSERT_TRUE(alice.has_value()) << alice.error();
  mounted m;
  ASSERT_EQ(m.start_ramfs_unix(), "");
  ASSERT_EQ(m.mount(), "");
  sh("echo hi > " + m.path("f"));
  auto c = fsclient::client::dial(m.dial);
  ASSERT_TRUE(c.has_value()) << c.error();
  auto root = (*c)->attach("root");
  ASSERT_TRUE(root.has_value());
  auto d = (*c)->stat_path(*root, "f");
  ASSERT_TRUE(d.has_value()) << d.error();
  EXPECT_EQ(d->uid, "root");
  EXPECT_EQ(sh("stat -c %u " + m.path("f")), "0\n");
  auto r = run(alice->as({"/bin/cat", m.path("f")}), {}, 30s, {"LC_ALL=C"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
  m.umount_and_check();
}

// ---- Over galaxy-node ----------------------------------------------------------------------

// A new task's number (task/clone), as a shell would get it.
std::string clone_task(const mounted& m) {
  std::string n = sh("cat " + m.path("task/clone"));
  while (!n.empty() && n.back() == '\n') n.pop_back();
  return n;
}

TEST(FuseNode, LsCatEchoCtlAndCatWait) {
  MOUNT_NODE(m);
  EXPECT_EQ(sh("ls " + m.mp), "arch\ncpu\nctl\nevents\nlabels\nmem\nstatus\ntask\n");
  EXPECT_NE(sh("cat " + m.path("status")).find("state=up"), std::string::npos);
  // The whole life of a task from the shell.
  int st = -1;
  auto out = sh("cd " + m.mp + "/task && n=$(cat clone) && echo \"exec sh -c 'echo hello; exit 3'\" > $n/ctl && "
                "cat $n/wait && cat $n/stdout",
                &st);
  EXPECT_EQ(st, 0);
  EXPECT_EQ(out, "exit 3\nhello\n");

  // cat wait blocks until the task ends; meanwhile everything else works.
  auto n = clone_task(m);
  ASSERT_FALSE(n.empty());
  EXPECT_EQ(sh("echo 'exec sleep 1000' > " + m.path("task/" + n + "/ctl") + "; echo $?"), "0\n");
  auto wait = testutil::process::spawn({"/bin/cat", m.path("task/" + n + "/wait")});
  ASSERT_TRUE(wait.has_value());
  EXPECT_NE(sh("cat " + m.path("task/" + n + "/status")).find("state=running"), std::string::npos);
  EXPECT_NE(sh("ls " + m.path("task")).find(n + "\n"), std::string::npos);
  EXPECT_TRUE(wait->running()) << "cat wait returned while the task ran";
  sh("echo kill > " + m.path("task/" + n + "/ctl"));
  auto line = wait->read_line(20s);
  ASSERT_TRUE(line.has_value()) << line.error();
  EXPECT_EQ(*line, "signal 9");
  EXPECT_EQ(wait->wait(20s).value_or(-1), 0);
  m.umount_and_check();
}

TEST(FuseNode, CtrlCOnCatWait) {
  MOUNT_NODE(m);
  auto n = clone_task(m);
  sh("echo 'exec sleep 1000' > " + m.path("task/" + n + "/ctl"));
  auto wait = testutil::process::spawn({"/bin/cat", m.path("task/" + n + "/wait")});
  ASSERT_TRUE(wait.has_value());
  EXPECT_NE(sh("cat " + m.path("task/" + n + "/status")).find("state=running"), std::string::npos);
  wait->signal(SIGINT);
  auto st = wait->wait(20s);
  ASSERT_TRUE(st.has_value()) << "cat wait did not die of SIGINT";
  EXPECT_EQ(*st, 128 + SIGINT);
  // The task is untouched; the next wait sees its end.
  EXPECT_NE(sh("cat " + m.path("task/" + n + "/status")).find("state=running"), std::string::npos);
  EXPECT_EQ(sh("echo kill > " + m.path("task/" + n + "/ctl") + "; cat " + m.path("task/" + n + "/wait")),
            "signal 9\n");
  m.umount_and_check();
}

TEST(FuseNode, ErrorsMapToErrno) {
  MOUNT_NODE(m);
  EXPECT_EQ(err_of(::open(m.path("task/999").c_str(), O_RDONLY)), ENOENT);
  EXPECT_EQ(err_of(::open(m.path("status").c_str(), O_WRONLY)), EACCES);
  EXPECT_EQ(err_of(::mkdir(m.path("x").c_str(), 0755)), EACCES);
  auto n = clone_task(m);
  int fd = ::open(m.path("task/" + n + "/ctl").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const std::string bad = "exce ls\n";
  EXPECT_EQ(err_of(static_cast<int>(::write(fd, bad.data(), bad.size()))), EINVAL);
  ::close(fd);
  // (dash's echo says "I/O error" whatever the errno; the status is what counts.)
  auto r = run({"/bin/sh", "-c", "echo 'exce ls' > " + m.path("task/" + n + "/ctl")});
  EXPECT_NE(r.status, 0);
  // Nothing was started by the bad line.
  EXPECT_NE(sh("cat " + m.path("task/" + n + "/status")).find("state=new"), std::string::npos);
  m.umount_and_check();
}

TEST(FuseNode, SixtyFourMiBIntoATasksInAndBack) {
  MOUNT_NODE(m);
  auto n = clone_task(m);
  const std::string data = random_bytes(64u << 20);
  const std::string local = m.dir.file("local"), back = m.dir.file("back");
  {
    std::ofstream out(local, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
  }
  auto in = m.path("task/" + n + "/in/blob");
  auto r = run({"/bin/cp", local, in}, {}, 120s);
  ASSERT_EQ(r.status, 0) << r.err;
  // The task sees the same bytes on disk: it copies them to out/.
  // The task starts in its in/ directory; $GALAXY_OUT is its out/.
  sh("echo \"exec sh -c 'cp blob \\$GALAXY_OUT/blob'\" > " + m.path("task/" + n + "/ctl"));
  EXPECT_EQ(sh("cat " + m.path("task/" + n + "/wait")), "exit 0\n");
  r = run({"/bin/cp", m.path("task/" + n + "/out/blob"), back}, {}, 120s);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(back) == data) << "the copy out differs";
  m.umount_and_check();
}

TEST(FuseNode, ServerKilledUnderTheMount) {
  REQUIRE_FUSE();
  mounted m;
  ASSERT_EQ(m.start_node(), "");
  ASSERT_EQ(m.mount({"--attr-timeout", "0"}), "");
  auto n = clone_task(m);
  sh("echo 'exec sleep 1000' > " + m.path("task/" + n + "/ctl"));
  auto wait = testutil::process::spawn({"/bin/cat", m.path("task/" + n + "/wait")}, {.capture_stderr = true});
  ASSERT_TRUE(wait.has_value());
  auto status = sh("cat " + m.path("task/" + n + "/status"));
  EXPECT_NE(status.find("state=running"), std::string::npos);
  // The task outlives a killed node (the next start's restore would kill it): end it
  // here by its pid, so that no sleep outlives the test.
  pid_t task_pid = 0;
  if (auto at = status.find(" pid="); at != std::string::npos) task_pid = std::atoi(status.c_str() + at + 5);
  EXPECT_GT(task_pid, 0) << status;
  m.server.proc.signal(SIGKILL);
  ASSERT_TRUE(m.server.proc.wait(10s).has_value());
  if (task_pid > 0) ::kill(task_pid, SIGKILL);
  auto st = wait->wait(20s);
  ASSERT_TRUE(st.has_value()) << "cat wait hung after the server died";
  EXPECT_EQ(*st, 1);
  struct stat sb {};
  EXPECT_EQ(err_of(::stat(m.path("status").c_str(), &sb)), ENOTCONN);
  m.umount_and_check();
}

// ---- Over galaxy-sched: a mount that outlives a scheduler restart ----------------------------

// Submits `exec sh -c SCRIPT` through the mount as a shell would (run by `as`, a prefix such
// as setpriv's, or nothing); the job number, or "" with the shell's complaint in *why.
std::string submit(const mounted& m, const std::string& script, const std::vector<std::string>& as = {},
                   std::string* why = nullptr) {
  std::vector<std::string> argv = as;
  argv.insert(argv.end(), {"/bin/sh", "-c",
                           "n=$(cat " + m.path("jobs/clone") + ") && echo \"exec sh -c '" + script + "'\" > " +
                               m.path("jobs/") + "$n/ctl && echo $n"});
  auto r = run(argv, {}, 30s, {"LC_ALL=C"});
  if (why != nullptr) *why = r.err;
  std::string n = r.out;
  while (!n.empty() && n.back() == '\n') n.pop_back();
  return r.status == 0 ? n : "";
}

// How many times text occurs in s.
int count_of(const std::string& s, const std::string& text) {
  int n = 0;
  for (auto at = s.find(text); at != std::string::npos; at = s.find(text, at + 1)) n++;
  return n;
}

// The scheduler is SIGKILLed under a mount and started again on the same address with
// the same state: the mount redials by itself. A read in flight and a file open across
// the restart fail with EIO; a job submitted before is there with its results; a shell
// whose cwd is in the mount lists it again; new jobs run; one log line each for the
// connection lost and regained.
TEST(FuseSched, MountOutlivesASchedulerRestart) {
  REQUIRE_FUSE();
  mounted m;
  ASSERT_EQ(m.start_sched(), "");
  m.bridge_log = m.dir.file("bridge.log");
  ASSERT_EQ(m.mount(), "");
  ASSERT_TRUE(eventually([&] { return sh("cat " + m.path("status")).find("nodes_up=1 ") != std::string::npos; }))
      << sh("cat " + m.path("status"));

  // Before: a job that ends, and one that runs until killed.
  std::string why;
  auto done = submit(m, "echo before", {}, &why);
  ASSERT_FALSE(done.empty()) << why;
  EXPECT_EQ(sh("cat " + m.path("jobs/" + done + "/wait")), "exit 0\n");
  EXPECT_EQ(sh("cat " + m.path("jobs/" + done + "/stdout")), "before\n");
  auto running = submit(m, "exec sleep 1000", {}, &why);
  ASSERT_FALSE(running.empty()) << why;
  ASSERT_TRUE(eventually([&] {
    return sh("cat " + m.path("jobs/" + running + "/status")).find("state=running") != std::string::npos;
  })) << sh("cat " + m.path("jobs/" + running + "/status"));
  // A read waiting in the scheduler when it dies.
  auto wait = testutil::process::spawn({"/bin/cat", m.path("jobs/" + running + "/wait")},
                                       {.capture_stderr = true, .env = {"LC_ALL=C"}});
  ASSERT_TRUE(wait.has_value()) << wait.error();
  // (Its open must be done before the kill, or it could fail as a new request: ENOTCONN.)
  // (Any descriptor: cat's file is not always its fd 3, e.g. under ctest, which may pass
  // descriptors of its own down.)
  ASSERT_TRUE(eventually([&] {
    std::error_code ec;
    for (const auto& fd : std::filesystem::directory_iterator("/proc/" + std::to_string(wait->pid()) + "/fd", ec)) {
      std::error_code ec2;
      if (std::filesystem::read_symlink(fd.path(), ec2).string() == m.path("jobs/" + running + "/wait")) return true;
    }
    return false;
  })) << "cat did not open wait";
  // A file open across the restart.
  int fd = ::open(m.path("status").c_str(), O_RDONLY | O_CLOEXEC);  // not the restarted daemon's
  ASSERT_GE(fd, 0) << std::strerror(errno);
  char buf[4096];
  ASSERT_GT(::pread(fd, buf, sizeof buf, 0), 0) << std::strerror(errno);
  // A shell whose cwd is in the mount: it lists once told to (a line on its stdin).
  auto shell = testutil::process::spawn(
      {"/bin/sh", "-c", "cd " + m.path("jobs") + " || exit 9; echo in; while read x; do ls; echo \"ls=$?\"; done"},
      {.pipe_stdin = true, .capture_stderr = true, .env = {"LC_ALL=C"}});
  ASSERT_TRUE(shell.has_value()) << shell.error();
  ASSERT_EQ(shell->read_line(20s).value_or("?"), "in");

  ASSERT_EQ(m.kill_sched(), "");
  // The waiting read fails with EIO, at once, not ENOTCONN and not a hang.
  auto st = wait->wait(20s);
  ASSERT_TRUE(st.has_value()) << "cat wait hung after the scheduler died";
  EXPECT_EQ(*st, 1);
  std::string err;
  while (testutil::process::fill(wait->stderr_fd(), err, testutil::steady::now() + 5s) > 0) {
  }  // to end of file: cat's complaint may come in several writes
  EXPECT_NE(err.find("Input/output error"), std::string::npos) << err;
  // The open file: EIO. New requests while the scheduler is away: ENOTCONN, at once.
  EXPECT_EQ(err_of(static_cast<int>(::pread(fd, buf, sizeof buf, 0))), EIO);
  struct stat sb {};
  EXPECT_TRUE(eventually([&] { return err_of(::stat(m.path("queue").c_str(), &sb)) == ENOTCONN; }));

  ASSERT_EQ(m.restart_sched(), "");
  // The mount works again without an unmount: the job of before, with its results.
  EXPECT_TRUE(eventually([&] {
    int status = -1;
    auto out = sh("ls " + m.path("jobs"), &status);
    return status == 0 && out.find(done + "\n") != std::string::npos;
  })) << sh("ls " + m.path("jobs") + " 2>&1");
  EXPECT_EQ(sh("cat " + m.path("jobs/" + done + "/wait")), "exit 0\n");
  EXPECT_EQ(sh("cat " + m.path("jobs/" + done + "/stdout")), "before\n");
  // The file opened before stays dead (its fid was the old connection's); opened anew
  // it reads.
  EXPECT_EQ(err_of(static_cast<int>(::pread(fd, buf, sizeof buf, 0))), EIO);
  ::close(fd);
  EXPECT_NE(sh("cat " + m.path("status")).find("jobs_done="), std::string::npos);
  // The shell in jobs/ lists it: its cwd's node is walked again by its path.
  ASSERT_TRUE(shell->write_stdin("go\n"));
  std::string listing;
  for (;;) {
    auto line = shell->read_line(20s);
    ASSERT_TRUE(line.has_value()) << line.error();
    if (line->starts_with("ls=")) {
      EXPECT_EQ(*line, "ls=0");
      break;
    }
    listing += *line + "\n";
  }
  EXPECT_NE(listing.find(done + "\n"), std::string::npos) << listing;
  EXPECT_NE(listing.find("clone\n"), std::string::npos) << listing;
  shell->close_stdin();
  EXPECT_EQ(shell->wait(20s).value_or(-1), 0);
  // New jobs run, and the old running one can be killed through the mount.
  auto after = submit(m, "echo after", {}, &why);
  ASSERT_FALSE(after.empty()) << why;
  EXPECT_EQ(sh("cat " + m.path("jobs/" + after + "/wait") + " " + m.path("jobs/" + after + "/stdout")),
            "exit 0\nafter\n");
  EXPECT_EQ(sh("echo kill > " + m.path("jobs/" + running + "/ctl") + "; echo $?"), "0\n");
  EXPECT_TRUE(eventually([&] {
    return sh("cat " + m.path("jobs/" + running + "/status")).find("state=killed") != std::string::npos;
  })) << sh("cat " + m.path("jobs/" + running + "/status"));

  m.umount_and_check();
  auto log = slurp(m.bridge_log);
  EXPECT_EQ(count_of(log, "lost the connection to " + m.dial), 1) << log;
  EXPECT_EQ(count_of(log, "reconnected to " + m.dial), 1) << log;
}

// The same over MUNGE on TCP, through root's per-user allow_other mount used by two
// users: after the restart each user is attached again as themself (with a fresh
// credential: munged refuses a replayed one), reads their own job's output, and still
// cannot read the other's.
TEST(FuseSched, PerUserMungeMountOutlivesASchedulerRestart) {
  REQUIRE_FUSE();
  REQUIRE_MUNGED();
  if (::getuid() != 0) GTEST_SKIP() << "needs root to make users and to mount for others (CI runs as root)";
  REQUIRE_USERS(alice, bob);
  testmunge::munged munge;
  mounted m;
  ASSERT_EQ(m.start_sched(munge.socket()), "");
  m.bridge_log = m.dir.file("bridge.log");
  ASSERT_EQ(m.mount({"-o", "allow_other"}, {"--auth", "munge", "--munge-socket", munge.socket()}), "");
  ASSERT_TRUE(eventually([&] { return sh("cat " + m.path("status")).find("nodes_up=1 ") != std::string::npos; }))
      << sh("cat " + m.path("status"));
  auto as = [](const std::pair<uid_t, gid_t>& u) {
    return std::vector<std::string>{"/usr/bin/setpriv", fmt::format("--reuid={}", u.first),
                                    fmt::format("--regid={}", u.second), "--clear-groups"};
  };
  auto cat_as = [&](const std::pair<uid_t, gid_t>& u, const std::string& rel) {
    auto argv = as(u);
    argv.insert(argv.end(), {"/bin/cat", m.path(rel)});
    return run(argv, {}, 30s, {"LC_ALL=C"});
  };
  std::string why;
  auto ja = submit(m, "echo alice", as(*alice), &why);
  ASSERT_FALSE(ja.empty()) << why;
  auto jb = submit(m, "echo bob", as(*bob), &why);
  ASSERT_FALSE(jb.empty()) << why;
  EXPECT_EQ(cat_as(*alice, "jobs/" + ja + "/wait").out, "exit 0\n");
  EXPECT_EQ(cat_as(*bob, "jobs/" + jb + "/wait").out, "exit 0\n");
  EXPECT_EQ(cat_as(*alice, "jobs/" + ja + "/stdout").out, "alice\n");
  EXPECT_EQ(cat_as(*bob, "jobs/" + jb + "/stdout").out, "bob\n");

  ASSERT_EQ(m.kill_sched(), "");
  ASSERT_EQ(m.restart_sched(), "");
  EXPECT_TRUE(eventually([&] { return cat_as(*alice, "jobs/" + ja + "/stdout").out == "alice\n"; }))
      << cat_as(*alice, "jobs/" + ja + "/stdout").err;
  EXPECT_EQ(cat_as(*bob, "jobs/" + jb + "/stdout").out, "bob\n") << cat_as(*bob, "jobs/" + jb + "/stdout").err;
  // Each is still only themself: bob's attach is his own, not root's.
  auto r = cat_as(*bob, "jobs/" + ja + "/stdout");
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
  // And a new job of bob's, made after the restart, is bob's.
  auto jb2 = submit(m, "id -un", as(*bob), &why);
  ASSERT_FALSE(jb2.empty()) << why;
  EXPECT_EQ(cat_as(*bob, "jobs/" + jb2 + "/wait").out, "exit 0\n");
  EXPECT_EQ(cat_as(*bob, "jobs/" + jb2 + "/stdout").out, "gx-bob\n");
  m.umount_and_check();
  auto log = slurp(m.bridge_log);
  EXPECT_EQ(count_of(log, "lost the connection"), 1) << log;
  EXPECT_EQ(count_of(log, "reconnected to"), 1) << log;
}

}  // namespace
