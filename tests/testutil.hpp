#pragma once
// Helpers for tests that run real programs: a temporary directory that cleans up after
// itself, a child process started with posix_spawn whose standard streams are pipes, a
// run-to-completion helper that captures stdout, stderr and the exit status, and
// start_daemon(), which starts a Galaxy daemon on port 0 and reads the "listening on
// DIAL" lines it prints. Header-only, so every test executable can use it.
//
// Children never inherit the test's other descriptors (every pipe here is close-on-exec
// until dup2'd onto 0, 1 or 2), and a process object kills its child when it goes away,
// so a failing test leaves no daemon behind.
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <expected>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace testutil {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
// Keep paths short when they will hold Unix sockets (sun_path is 108 bytes).
class temp_dir {
 public:
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/galaxy-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();  // no test can run without one
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

namespace detail {

inline void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

inline bool make_pipe(int fds[2]) { return ::pipe2(fds, O_CLOEXEC) == 0; }

// The environment of the child: ours, with each "K=V" in changes set and each bare "K"
// removed.
inline std::vector<std::string> child_env(const std::vector<std::string>& changes) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; e++) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  for (const auto& c : changes) {
    auto eq = c.find('=');
    if (eq == std::string::npos) {
      env.erase(c);
    } else {
      env[c.substr(0, eq)] = c.substr(eq + 1);
    }
  }
  std::vector<std::string> out;
  for (auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

inline int decode_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

}  // namespace detail

// A child process. Its stdout is a pipe read through read_line()/read_some(); stdin and
// stderr are pipes when asked for, else inherited (so a daemon's complaints show up in
// the test log). Destruction sends SIGTERM, waits up to 2 s, then SIGKILL.
class process {
 public:
  struct options {
    bool pipe_stdin = false;      // else the child reads /dev/null
    bool capture_stderr = false;  // else inherited
    std::vector<std::string> env; // "K=V" sets, "K" removes
  };

  // argv[0] is the program's path (not searched in $PATH).
  static std::expected<process, std::string> spawn(const std::vector<std::string>& argv,
                                                   const options& opts) {
    if (argv.empty()) return std::unexpected("spawn: empty argv");
    process p;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    if (!detail::make_pipe(out) || (opts.pipe_stdin && !detail::make_pipe(in)) ||
        (opts.capture_stderr && !detail::make_pipe(err))) {
      return std::unexpected(std::string("pipe: ") + std::strerror(errno));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (opts.pipe_stdin) {
      posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    } else {
      posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    }
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    if (opts.capture_stderr) posix_spawn_file_actions_adddup2(&fa, err[1], 2);

    std::vector<std::string> env = detail::child_env(opts.env);
    std::vector<char*> cargv, cenv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    for (auto& e : env) cenv.push_back(e.data());
    cenv.push_back(nullptr);

    // Writing to a child that has exited must be an error here, not death by SIGPIPE;
    // the child gets the default disposition back.
    ::signal(SIGPIPE, SIG_IGN);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t def;
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &def);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);

    int rc = ::posix_spawn(&p.pid_, argv[0].c_str(), &fa, &attr, cargv.data(), cenv.data());
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    detail::close_fd(in[0]);
    detail::close_fd(out[1]);
    detail::close_fd(err[1]);
    p.stdin_ = in[1];
    p.stdout_ = out[0];
    p.stderr_ = err[0];
    if (rc != 0) {
      p.pid_ = -1;
      return std::unexpected("spawn " + argv[0] + ": " + std::strerror(rc));
    }
    return p;
  }
  static std::expected<process, std::string> spawn(const std::vector<std::string>& argv) {
    return spawn(argv, options{});
  }

  process() = default;
  process(process&& o) noexcept { *this = std::move(o); }
  process& operator=(process&& o) noexcept {
    if (this != &o) {
      stop();
      pid_ = std::exchange(o.pid_, -1);
      stdin_ = std::exchange(o.stdin_, -1);
      stdout_ = std::exchange(o.stdout_, -1);
      stderr_ = std::exchange(o.stderr_, -1);
      status_ = o.status_;
      outbuf_ = std::move(o.outbuf_);
    }
    return *this;
  }
  ~process() { stop(); }

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !status_; }

  // One line of stdout without its newline, waiting at most timeout. Errors: "timeout",
  // "end of file" (with whatever partial line there was).
  std::expected<std::string, std::string> read_line(std::chrono::milliseconds timeout = 10s) {
    auto deadline = steady::now() + timeout;
    for (;;) {
      if (auto nl = outbuf_.find('\n'); nl != std::string::npos) {
        std::string line = outbuf_.substr(0, nl);
        outbuf_.erase(0, nl + 1);
        return line;
      }
      auto got = fill(stdout_, outbuf_, deadline);
      if (got == 0) return std::unexpected("end of file after '" + outbuf_ + "'");
      if (got < 0) return std::unexpected("timeout after '" + outbuf_ + "'");
    }
  }

  // Whatever stdout has within timeout (at least one byte unless it times out or ends).
  std::string read_some(std::chrono::milliseconds timeout) {
    if (outbuf_.empty()) fill(stdout_, outbuf_, steady::now() + timeout);
    return std::exchange(outbuf_, {});
  }

  // Writes to the child's stdin (pipe_stdin); false if it has gone.
  bool write_stdin(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::write(stdin_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  void close_stdin() { detail::close_fd(stdin_); }

  void signal(int sig) {
    if (running()) ::kill(pid_, sig);
  }

  // Waits for the child to end: its exit code, or 128 + the signal that killed it;
  // nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout = 10s) {
    if (pid_ <= 0) return status_;
    auto deadline = steady::now() + timeout;
    while (!status_) {
      int st = 0;
      pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        status_ = detail::decode_status(st);
        break;
      }
      if (r < 0 && errno != EINTR) {
        status_ = -1;
        break;
      }
      if (steady::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(2ms);
    }
    return status_;
  }

  int stdout_fd() const { return stdout_; }
  int stderr_fd() const { return stderr_; }

  // Reads once from fd into buf, waiting until deadline: bytes read, 0 at end of file,
  // -1 on timeout.
  static long fill(int fd, std::string& buf, steady::time_point deadline) {
    if (fd < 0) return 0;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
      if (left < 0) left = 0;
      pollfd p{fd, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(left));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return -1;
      char chunk[65536];
      ssize_t got = ::read(fd, chunk, sizeof chunk);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return 0;
      buf.append(chunk, static_cast<std::size_t>(got));
      return got;
    }
  }

 private:
  void stop() {
    if (running()) {
      ::kill(pid_, SIGTERM);
      if (!wait(2s)) {
        ::kill(pid_, SIGKILL);
        wait(10s);
      }
    }
    detail::close_fd(stdin_);
    detail::close_fd(stdout_);
    detail::close_fd(stderr_);
  }

  pid_t pid_ = -1;
  int stdin_ = -1, stdout_ = -1, stderr_ = -1;
  std::optional<int> status_;
  std::string outbuf_;  // read from stdout, not yet returned
};

struct run_result {
  int status = -1;  // exit code, 128 + signal, or -1 if it had to be killed at the timeout
  std::string out, err;
};

// Runs argv to completion with input on its stdin, capturing stdout and stderr.
// A program still running at the timeout is killed (status -1).
inline run_result run(const std::vector<std::string>& argv, std::string_view input = {},
                      std::chrono::milliseconds timeout = 30s,
                      const std::vector<std::string>& env = {}) {
  run_result res;
  auto p = process::spawn(argv, {.pipe_stdin = true, .capture_stderr = true, .env = env});
  if (!p) {
    res.err = p.error();
    return res;
  }
  // Feed stdin from a thread so that a child that writes a lot before reading cannot
  // deadlock against us.
  std::thread feeder([&p, input] {
    p->write_stdin(input);
    p->close_stdin();
  });
  auto deadline = steady::now() + timeout;
  bool out_open = true, err_open = true;
  while ((out_open || err_open) && steady::now() < deadline) {
    pollfd fds[2] = {{out_open ? p->stdout_fd() : -1, POLLIN, 0}, {err_open ? p->stderr_fd() : -1, POLLIN, 0}};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
    int n = ::poll(fds, 2, static_cast<int>(std::max<long>(left, 0)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out_open && fds[0].revents != 0) out_open = process::fill(p->stdout_fd(), res.out, steady::now()) > 0;
    if (err_open && fds[1].revents != 0) err_open = process::fill(p->stderr_fd(), res.err, steady::now()) > 0;
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
  auto st = p->wait(std::max(left, std::chrono::milliseconds(0)));
  if (!st) {
    p->signal(SIGKILL);
    p->wait();
  }
  feeder.join();
  res.status = st.value_or(-1);
  return res;
}

// A daemon listening on the addresses it printed.
struct daemon_handle {
  process proc;
  std::vector<std::string> dials;  // from its "listening on DIAL" lines, in order
};

// Starts a daemon (argv[0] is its path) and reads `listeners` lines "listening on DIAL"
// from its stdout, waiting at most timeout for all of them. Unless argv chooses --auth,
// the daemon gets --auth none: tests that are not about authentication talk to it over
// loopback TCP without munged (tests/srv9p/auth_test.cpp is about it).
inline std::expected<daemon_handle, std::string> start_daemon(std::vector<std::string> argv,
                                                       std::size_t listeners = 1,
                                                       std::chrono::milliseconds timeout = 10s) {
  if (std::find(argv.begin(), argv.end(), "--auth") == argv.end()) {
    argv.push_back("--auth");
    argv.push_back("none");
  }
  auto p = process::spawn(argv);
  if (!p) return std::unexpected(p.error());
  daemon_handle d;
  d.proc = std::move(*p);
  auto deadline = steady::now() + timeout;
  constexpr std::string_view prefix = "listening on ";
  while (d.dials.size() < listeners) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    auto line = d.proc.read_line(std::max(left, std::chrono::milliseconds(0)));
    if (!line) return std::unexpected(argv[0] + ": no 'listening on' line: " + line.error());
    if (line->starts_with(prefix)) d.dials.push_back(line->substr(prefix.size()));
  }
  return d;
}

// ---- Local users ------------------------------------------------------------------------

// A real local user for a test, made with useradd (needs root; CI runs as root) under a
// unique name (prefix, the test's pid and a count) and removed with userdel when the
// object goes. No home directory is made; the shell is nologin, and as() runs programs as
// the user directly.
class local_user {
 public:
  static std::expected<local_user, std::string> make(std::string_view prefix) {
    static int count = 0;
    local_user u;
    u.name_ = "gx" + std::string(prefix) + std::to_string(::getpid()) + "x" + std::to_string(count++);
    if (u.name_.size() > 31) return std::unexpected("user name too long: " + u.name_);
    auto r = run_quiet({"/usr/sbin/useradd", "-M", "-s", "/usr/sbin/nologin", u.name_});
    if (r != 0) return std::unexpected("useradd " + u.name_ + " failed (status " + std::to_string(r) + ")");
    u.made_ = true;
    struct passwd* pw = ::getpwnam(u.name_.c_str());
    if (pw == nullptr) return std::unexpected("useradd made no passwd entry for " + u.name_);
    u.uid_ = pw->pw_uid;
    u.gid_ = pw->pw_gid;
    return u;
  }
  local_user() = default;
  local_user(local_user&& o) noexcept { *this = std::move(o); }
  local_user& operator=(local_user&& o) noexcept {
    std::swap(name_, o.name_);
    std::swap(uid_, o.uid_);
    std::swap(gid_, o.gid_);
    std::swap(made_, o.made_);
    return *this;
  }
  ~local_user() {
    if (made_) run_quiet({"/usr/sbin/userdel", name_});
  }

  const std::string& name() const { return name_; }
  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }
  // argv, run as this user (setpriv: real and effective ids, and the user's groups).
  std::vector<std::string> as(const std::vector<std::string>& argv) const {
    std::vector<std::string> full{"/usr/bin/setpriv", "--reuid=" + std::to_string(uid_),
                                  "--regid=" + std::to_string(gid_), "--init-groups"};
    full.insert(full.end(), argv.begin(), argv.end());
    return full;
  }

 private:
  // Runs argv with its output discarded; its exit status.
  static int run_quiet(const std::vector<std::string>& argv) {
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return -1;
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0) {
      if (errno != EINTR) return -1;
    }
    return detail::decode_status(st);
  }

  std::string name_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool made_ = false;
};

// ---- FUSE -------------------------------------------------------------------------------

// Whether this machine can make FUSE mounts at all (tests skip, saying why, when not).
inline bool have_fuse() { return ::access("/dev/fuse", F_OK) == 0; }

// Whether path is a mount point now (/proc/self/mountinfo, field 5; proc(5)).
inline bool is_mounted(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, mp;
    f >> id >> parent >> dev >> root >> mp;
    if (mp == path) return true;
  }
  return false;
}

// Whether an ordinary user (nobody) may open /dev/fuse for reading and writing, as
// fusermount3 does with the user's own file-system uid: where distributions' udev makes
// it 0666. Some VMs and containers leave it 0600, and there no ordinary user can mount.
// Needs root (setpriv); false otherwise.
inline bool fuse_open_to_users() {
  if (::getuid() != 0) return false;
  return run({"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/test", "-r",
              "/dev/fuse", "-a", "-w", "/dev/fuse"})
             .status == 0;
}

}  // namespace testutil

// In a test: skip it, with the reason, where FUSE mounts cannot be made.
#define REQUIRE_FUSE() \
  if (!testutil::have_fuse()) GTEST_SKIP() << "/dev/fuse is absent: this machine cannot make FUSE mounts"
