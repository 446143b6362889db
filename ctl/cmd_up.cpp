// galaxy up / galaxy down (ctl/cmd_up.hpp).
//
// up, in order: choose the transport (see `plan`: Unix sockets in a 0700 directory, or as
// root with munged, loopback TCP with MUNGE); check the state directory (and, for root,
// that tasks running as nobody can reach it) and the mount point; take STATE/lock; refuse
// if a recorded cluster still runs; start the nodes n1..nN (unix!SOCKDIR/nK.sock), then
// the scheduler (unix!SOCKDIR/sched.sock) with --node nK=DIAL for each, each daemon
// detached (its own session, standard streams on STATE/log/NAME.log) and each read back
// from its "listening on DIAL" line; wait until the scheduler sees every node; record them
// in STATE/cluster; mount the unified tree with `galaxy mount -f` run as one more detached
// process (so its pid is known and down can stop it). FUSE missing or a mount that fails
// leaves the cluster up for native use and says so. A failure before that stops whatever
// was started and changes nothing.
//
// down: unmount, tell each node to `kill all` its tasks, stop the scheduler, the nodes and
// the mount process (SIGTERM, then SIGKILL after --timeout), remove the record.
#include "ctl/cmd_up.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fmt/core.h>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ctl/auth.hpp"
#include "ctl/cluster.hpp"
#include "ctl/cmd_9p.hpp"
#include "ctl/ctlmsg.hpp"
#include "fsclient/client.hpp"
#include "fsclient/fuse_bridge.hpp"
#include "srv9p/close_fds.hpp"

namespace ctl {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using cluster::proc_id;
using steady = std::chrono::steady_clock;

struct up_args {
  int nodes = 2;
  unsigned cpus = 0;  // per node; 0: the machine's CPUs divided among the nodes
  std::string mem;    // per node, BYTES[k|m|g]; "": the machine's memory divided among the nodes
  std::string state;
  std::string mount;
  bool no_mount = false;
  double timeout_s = 10;  // down: seconds between SIGTERM and SIGKILL; up: per daemon start
};

void say(const std::string& verb, const std::string& text) { fmt::print(stderr, "galaxy: {}: {}\n", verb, text); }

// The directory of this executable, where galaxy-sched and galaxy-node are installed too.
std::expected<std::string, std::string> bin_dir() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return std::unexpected("/proc/self/exe: " + ec.message());
  return exe.parent_path().string();
}

// Makes dir (and its parents) if missing with mode; it must then be a directory owned by
// us, not a symbolic link, and writable by nobody else (group or others could swap what
// the daemons write there), since daemons will write into it. private_dir: it is made
// mode 0700 (an existing one of ours too), because it holds the cluster's sockets.
std::expected<void, std::string> ensure_dir(const std::string& dir, mode_t mode, bool private_dir = false) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) {
    fs::create_directories(dir, ec);
    if (ec) return std::unexpected(fmt::format("{}: {}", dir, ec.message()));
    ::chmod(dir.c_str(), mode);
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return std::unexpected(fmt::format("{}: {}", dir, std::strerror(errno)));
  if (!S_ISDIR(st.st_mode)) return std::unexpected(fmt::format("{}: not a directory", dir));
  if (st.st_uid != ::geteuid()) {
    return std::unexpected(fmt::format("{}: owned by uid {}, not by us (uid {})", dir, st.st_uid, ::geteuid()));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return std::unexpected(fmt::format("{}: mode {:04o} lets others write in it; galaxy up keeps its state and "
                                       "sockets only in a directory of its own (chmod go-w, or choose another --state)",
                                       dir, st.st_mode & 07777));
  }
  if (private_dir && (st.st_mode & 077) != 0 && ::chmod(dir.c_str(), 0700) != 0) {
    return std::unexpected(fmt::format("{}: chmod 0700: {}", dir, std::strerror(errno)));
  }
  return {};
}

// How the daemons are reached (issue 12). An ordinary user's cluster, and root's when
// munged is not running, listens on Unix sockets only, in a 0700 directory: the kernel
// lets nobody else connect, and the daemons learn the peer's uid from the socket
// (SO_PEERCRED). Root with munged uses loopback TCP with MUNGE, as a multi-machine
// cluster would.
struct plan {
  bool tcp = false;          // loopback TCP with MUNGE; else Unix sockets in sock_dir
  std::string sock_dir;      // the 0700 directory of the sockets
  std::string said;          // the line that tells the user which mode and why
};

// libmunge's default socket (munge(7)); munged's --socket can move it.
constexpr const char* munge_socket = "/run/munge/munge.socket.2";

// Why munged cannot be used: its socket does not answer a connect. nullopt: it answers.
std::optional<std::string> munged_unreachable(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return path + ": path too long";
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fmt::format("socket: {}", std::strerror(errno));
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  int e = errno;
  ::close(fd);
  if (rc != 0) return fmt::format("{}: {}", path, std::strerror(e));
  return std::nullopt;
}

// Whether `argv... --help` mentions word: how up learns that the daemons beside it (and
// galaxy mount) take `--auth munge`, which they do once srv9p authenticates (issue 12).
// Until then root uses Unix sockets even where munged runs, and says so.
bool help_mentions(std::vector<std::string> argv, std::string_view word) {
  argv.emplace_back("--help");
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return false;
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(p[0]);
    ::close(p[1]);
    return false;
  }
  if (pid == 0) {
    ::dup2(p[1], 1);
    int nul = ::open("/dev/null", O_RDWR);
    if (nul >= 0) {
      ::dup2(nul, 0);
      ::dup2(nul, 2);
    }
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  ::close(p[1]);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(p[0]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return out.find(word) != std::string::npos;
}

// As root, galaxy-node runs tasks as nobody, and a task's working directory and
// $GALAXY_OUT are in its spool under STATE: every directory on the way must let others
// search it. Returns the first that does not.
std::optional<std::string> unreachable_for_others(const fs::path& dir) {
  fs::path p;
  for (const auto& part : dir) {
    p /= part;
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) == 0) return p.string();
  }
  return std::nullopt;
}

// As root, the nodes run tasks as nobody and search their PATH for the program: a
// directory others cannot reach (root's own ~/.local/bin, pyenv shims under /root) would
// make the search find a program the task may not execute. Returns $PATH without them.
std::string path_for_tasks() {
  const char* path = std::getenv("PATH");
  std::string_view p = path != nullptr && *path != '\0' ? path : "/usr/local/bin:/usr/bin:/bin";
  if (::geteuid() != 0) return std::string(p);
  std::string out;
  for (;;) {
    auto colon = p.find(':');
    std::string dir(p.substr(0, colon));
    struct stat st {};
    if (!dir.empty() && dir[0] == '/' && ::stat(dir.c_str(), &st) == 0 && !unreachable_for_others(dir)) {
      out += (out.empty() ? "" : ":") + dir;
    }
    if (colon == std::string_view::npos) break;
    p.remove_prefix(colon + 1);
  }
  return out.empty() ? "/usr/bin:/bin" : out;
}

// The machine's memory in bytes, as galaxy-node counts it (proc(5) /proc/meminfo MemTotal,
// in KiB); 0 if it cannot be read.
std::uint64_t machine_mem_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key, unit;
  std::uint64_t kib = 0;
  while (f >> key >> kib) {
    std::getline(f, unit);
    if (key == "MemTotal:") return kib << 10;
  }
  return 0;
}

// The last lines of a log, for an error message.
std::string log_tail(const std::string& path, std::size_t lines = 5) {
  std::ifstream f(path);
  std::vector<std::string> all;
  std::string line;
  while (std::getline(f, line)) all.push_back(line);
  std::string out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); i++) out += "\n  " + all[i];
  return out;
}

// Starts argv[0] detached: its own session (a terminal's Ctrl-C or hang-up is not its),
// standard input /dev/null, standard output and error appended to log, no other
// descriptors. Returns its pid and start time.
std::expected<proc_id, std::string> spawn_detached(const std::vector<std::string>& argv, const std::string& log,
                                                  const std::string& path_env = {}) {
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return std::unexpected(fmt::format("{}: {}", log, std::strerror(errno)));
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    return std::unexpected(fmt::format("fork: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    ::setsid();
    int nul = ::open("/dev/null", O_RDONLY);
    if (nul >= 0) ::dup2(nul, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (!srv9p::close_descriptors(3, ~0u)) ::_exit(127);
    if (!path_env.empty()) ::setenv("PATH", path_env.c_str(), 1);
    ::execv(cargv[0], cargv.data());
    std::string why = fmt::format("exec {}: {}\n", argv[0], std::strerror(errno));
    (void)!::write(2, why.data(), why.size());
    ::_exit(127);
  }
  ::close(fd);
  proc_id p{pid, 0};
  // The start time is readable as soon as fork returned.
  if (auto t = cluster::start_ticks(pid)) p.start_ticks = *t;
  return p;
}

// Whether our child pid has ended; reaps it and describes how.
std::optional<std::string> ended(pid_t pid) {
  int st = 0;
  if (::waitpid(pid, &st, WNOHANG) != pid) return std::nullopt;
  if (WIFEXITED(st)) return fmt::format("exited with status {}", WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return fmt::format("killed by signal {}", signal_name(WTERMSIG(st)));
  return "ended";
}

// Waits for a daemon's "listening on DIAL" line in its log (it appends to the log, and
// the log may hold earlier runs' lines: only bytes after `from` count).
std::expected<std::string, std::string> wait_listening(const std::string& name, pid_t pid, const std::string& log,
                                                       std::uintmax_t from, std::chrono::milliseconds timeout) {
  constexpr std::string_view prefix = "listening on ";
  auto deadline = steady::now() + timeout;
  for (;;) {
    std::ifstream f(log);
    f.seekg(static_cast<std::streamoff>(from));
    std::string line;
    while (std::getline(f, line)) {
      if (line.starts_with(prefix)) return line.substr(prefix.size());
    }
    if (auto how = ended(pid)) {
      return std::unexpected(fmt::format("{} {} before listening; its log ({}) ends:{}", name, *how, log, log_tail(log)));
    }
    if (steady::now() >= deadline) {
      return std::unexpected(fmt::format("{} printed no 'listening on' line within {} s; see {}", name,
                                         std::chrono::duration_cast<std::chrono::seconds>(timeout).count(), log));
    }
    std::this_thread::sleep_for(10ms);
  }
}

std::uintmax_t file_size_or_0(const std::string& path) {
  std::error_code ec;
  auto n = fs::file_size(path, ec);
  return ec ? 0 : n;
}

// Dials one of the cluster's daemons, for up's and down's own requests (as root, or as
// the user who owns the cluster: on a Unix socket the daemons know the peer's uid).
// A tcp! address is MUNGE-authenticated: the client's option for that is given here.
std::expected<std::unique_ptr<fsclient::client>, std::string> dial_cluster(const std::string& addr) {
  return fsclient::client::dial(addr, client_options());
}

// Reads the scheduler's /status until it counts want nodes up.
std::expected<void, std::string> wait_nodes_up(const std::string& addr, std::size_t want,
                                               std::chrono::milliseconds timeout) {
  auto c = dial_cluster(addr);
  if (!c) return std::unexpected(c.error());
  auto root = (*c)->attach(login_name());
  if (!root) return std::unexpected("attach: " + root.error());
  auto deadline = steady::now() + timeout;
  std::string last;
  for (;;) {
    auto s = (*c)->read_file(*root, "status");
    if (!s) return std::unexpected("status: " + s.error());
    last = *s;
    if (auto words = tokenize(*s)) {
      for (const auto& w : *words) {
        if (w.starts_with("nodes_up=") && w.substr(9) == std::to_string(want)) return {};
      }
    }
    if (steady::now() >= deadline) {
      return std::unexpected(fmt::format("the scheduler did not see all {} nodes within {} s: {}", want,
                                         std::chrono::duration_cast<std::chrono::seconds>(timeout).count(), last));
    }
    std::this_thread::sleep_for(20ms);
  }
}

// Whether this process can mount with FUSE at all: /dev/fuse must be there and open for
// reading and writing; a user other than root also needs fusermount3. Returns why not.
std::optional<std::string> fuse_unavailable() {
  if (::access("/dev/fuse", R_OK | W_OK) != 0) return fmt::format("/dev/fuse: {}", std::strerror(errno));
  if (::geteuid() != 0) {
    bool found = false;
    const char* path = std::getenv("PATH");
    std::string_view p = path != nullptr ? path : "/usr/bin:/bin";
    while (!found) {
      auto colon = p.find(':');
      std::string cand = std::string(p.substr(0, colon)) + "/fusermount3";
      found = ::access(cand.c_str(), X_OK) == 0;
      if (colon == std::string_view::npos) break;
      p.remove_prefix(colon + 1);
    }
    if (!found) return "fusermount3 is not installed (Debian package fuse3)";
  }
  return std::nullopt;
}

// Holds STATE/lock (flock) while up or down works, so that two of them never interleave.
class state_lock {
 public:
  std::expected<void, std::string> take(const std::string& state) {
    // O_NOFOLLOW: a link there is never followed to create or open another file.
    fd_ = ::open((state + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ < 0) return std::unexpected(fmt::format("{}/lock: {}", state, std::strerror(errno)));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      return std::unexpected(fmt::format("another galaxy up or down is working on {}", state));
    }
    return {};
  }
  ~state_lock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  int fd_ = -1;
};

bool any_alive(const cluster::record& r) {
  if (cluster::alive(r.sched) || cluster::alive(r.mount_proc)) return true;
  for (const auto& n : r.nodes) {
    if (cluster::alive(n.proc)) return true;
  }
  return false;
}

// A shell word for the lines we print: bare when safe, else in single quotes
// (an interactive shell expands '!' in dial strings).
std::string sh_quote(std::string_view s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./=:,-+") ==
                        std::string_view::npos) {
    return std::string(s);
  }
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

// Stops every recorded process that still runs: the mount first (after unmounting), then
// the scheduler, then the nodes. Returns the lines to report.
std::vector<std::string> stop_all(const cluster::record& r, std::chrono::milliseconds timeout) {
  std::vector<std::string> done;
  if (!r.mount.empty()) {
    if (auto t = cluster::mount_type(r.mount); t && t->starts_with("fuse")) {
      auto u = fsclient::fuse_unmount(r.mount, false);
      if (!u) {
        // Busy (a shell sits in it): detach it now; it goes once the last user leaves.
        auto z = fsclient::fuse_unmount(r.mount, true);
        done.push_back(z ? fmt::format("unmounted {} lazily ({})", r.mount, u.error())
                         : fmt::format("could not unmount {}: {}", r.mount, z.error()));
      } else {
        done.push_back(fmt::format("unmounted {}", r.mount));
      }
    }
  }
  if (cluster::stop(r.mount_proc, timeout)) done.push_back(fmt::format("stopped the mount (pid {})", r.mount_proc.pid));
  // Tasks outlive their node daemon by design (a restarted node finds them again); down
  // means the whole cluster, so ask each node to kill them first.
  for (const auto& n : r.nodes) {
    if (!cluster::alive(n.proc)) continue;
    auto c = dial_cluster(n.addr);
    if (!c) continue;
    if (auto root = (*c)->attach(login_name()); root) (void)(*c)->write_file(*root, "ctl", "kill all\n");
  }
  if (cluster::stop(r.sched, timeout)) {
    done.push_back(fmt::format("stopped galaxy-sched (pid {}, {})", r.sched.pid, r.sched_addr));
  }
  // The nodes together: SIGTERM to all, then wait for each.
  std::vector<std::thread> stoppers;
  std::vector<int> stopped(r.nodes.size(), 0);
  for (std::size_t i = 0; i < r.nodes.size(); i++) {
    stoppers.emplace_back([&, i] { stopped[i] = cluster::stop(r.nodes[i].proc, timeout) ? 1 : 0; });
  }
  for (auto& t : stoppers) t.join();
  for (std::size_t i = 0; i < r.nodes.size(); i++) {
    if (stopped[i]) {
      done.push_back(fmt::format("stopped galaxy-node {} (pid {}, {})", r.nodes[i].name, r.nodes[i].proc.pid,
                                 r.nodes[i].addr));
    }
  }
  return done;
}

int do_up(up_args a) {
  const std::string verb = "up";
  if (a.nodes < 1 || a.nodes > 64) {
    say(verb, fmt::format("--nodes {}: expected 1 to 64", a.nodes));
    return 1;
  }
  std::uint64_t mem_given = 0;
  if (!a.mem.empty()) {
    auto m = parse_bytes(a.mem);
    if (!m || *m == 0) {
      say(verb, fmt::format("--mem {}: {}", a.mem, m ? std::string("expected more than 0 bytes") : m.error()));
      return 1;
    }
    mem_given = *m;
  }
  auto bins = bin_dir();
  if (!bins) {
    say(verb, bins.error());
    return 1;
  }
  std::string node_bin = *bins + "/galaxy-node", sched_bin = *bins + "/galaxy-sched", self = *bins + "/galaxy";
  for (const auto& b : {node_bin, sched_bin}) {
    if (::access(b.c_str(), X_OK) != 0) {
      say(verb, fmt::format("{}: {} (galaxy up runs the daemons installed beside galaxy)", b, std::strerror(errno)));
      return 1;
    }
  }

  // The paths, checked before anything is made.
  std::error_code ec;
  auto normal = [&](std::string p) {
    p = fs::absolute(p, ec).lexically_normal().string();
    if (p.size() > 1 && p.back() == '/') p.pop_back();
    return p;
  };
  if (a.state.empty()) a.state = cluster::default_state_dir();
  a.state = normal(a.state);
  auto why_no_fuse = a.no_mount ? std::optional<std::string>() : fuse_unavailable();
  bool want_mount = !a.no_mount && !why_no_fuse;
  if (a.mount.empty()) {
    const char* home = std::getenv("HOME");
    a.mount = ::geteuid() == 0 ? std::string("/galaxy") : std::string(home != nullptr ? home : "") + "/galaxy";
  }
  a.mount = normal(a.mount);
  if (a.state.find('\n') != std::string::npos || a.mount.find('\n') != std::string::npos) {
    say(verb, "--state, --mount: a path with a line break cannot be recorded");
    return 1;
  }
  if (::geteuid() == 0) {
    if (auto bad = unreachable_for_others(a.state)) {
      say(verb, fmt::format("{}: others may not search it, and tasks run as nobody in spools under {}; "
                            "choose another --state (or chmod o+x {})",
                            *bad, a.state, *bad));
      return 1;
    }
  }
  if (want_mount && fs::exists(a.mount, ec) && !fs::is_directory(a.mount, ec)) {
    say(verb, fmt::format("--mount {}: not a directory", a.mount));
    return 1;
  }

  // The transport (plan), chosen before anything is made.
  const bool root = ::geteuid() == 0;
  plan transport;
  if (root) {
    auto no_munged = munged_unreachable(munge_socket);
    bool daemons_auth = !no_munged && help_mentions({node_bin}, "--auth") && help_mentions({sched_bin}, "--auth");
    if (daemons_auth) {
      transport.tcp = true;
      transport.said = fmt::format("munged answers at {}: the daemons listen on loopback TCP with MUNGE authentication",
                             munge_socket);
    } else {
      // STATE itself stays searchable: tasks run as nobody in spools under it.
      transport.sock_dir = a.state + "/sock";
      transport.said = fmt::format("{}: Unix sockets only, in {} (mode 0700), no TCP listener; only root reaches "
                             "the daemons, other users go through the mount",
                             no_munged ? fmt::format("munged is not running ({})", *no_munged)
                                       : fmt::format("munged answers at {}, but galaxy-node and galaxy-sched here "
                                                     "take no --auth",
                                                     munge_socket),
                             transport.sock_dir);
    }
  } else {
    transport.sock_dir = a.state;
    transport.said = fmt::format("Unix sockets only, in {} (mode 0700), no TCP listener: only you (uid {}) can reach "
                           "the cluster",
                           a.state, ::geteuid());
  }
  // sun_path holds 107 bytes and a NUL (unix(7)); "n64.sock" is the longest name.
  if (!transport.tcp && transport.sock_dir.size() + std::string_view("/sched.sock").size() >= sizeof(sockaddr_un{}.sun_path)) {
    say(verb, fmt::format("--state {}: too long a path for the cluster's Unix sockets ({}/sched.sock would be "
                          "over {} bytes); choose a shorter one",
                          a.state, transport.sock_dir, sizeof(sockaddr_un{}.sun_path) - 1));
    return 1;
  }
  auto listen_on = [&transport](const std::string& name) {
    return transport.tcp ? std::string("tcp!127.0.0.1!0") : fmt::format("unix!{}/{}.sock", transport.sock_dir, name);
  };
  // Only for TCP: a Unix socket's peer is known without a credential.
  std::vector<std::string> auth_args;
  if (transport.tcp) auth_args = {"--auth", "munge"};
  // Root's own jobs run as root on root's own cluster, where the nodes can (issue 12:
  // tasks run as their owner; root only when asked). Without it they would run as
  // nobody, and through the per-user mount nobody may not read root's jobs' output, which
  // a reduce job reads (examples/wordfreq.sh). Every other user's tasks run as that user.
  std::vector<std::string> node_args;
  if (root && help_mentions({node_bin}, "--allow-root-tasks")) node_args.emplace_back("--allow-root-tasks");

  if (auto ok = ensure_dir(a.state, root ? 0711 : 0700, !root); !ok) {
    say(verb, ok.error());
    return 1;
  }
  state_lock lock;
  if (auto ok = lock.take(a.state); !ok) {
    say(verb, ok.error());
    return 1;
  }

  // Already up?
  if (auto old = cluster::load(a.state); old) {
    if (any_alive(*old)) {
      say(verb, fmt::format("a cluster is already up in {} (scheduler {}{}); `galaxy down{}` stops it", a.state,
                            old->sched_addr, old->mount.empty() ? "" : ", mounted on " + old->mount,
                            a.state == cluster::default_state_dir() ? "" : " --state " + sh_quote(a.state)));
      return 1;
    }
    // Every process of that cluster has ended (a reboot, kill -9): a stale record.
    fs::remove(cluster::record_path(a.state), ec);
    fmt::print("galaxy: up: the last cluster in {} had ended without galaxy down; starting a new one\n", a.state);
  } else if (old.error() != "no cluster record") {
    say(verb, old.error());
    return 1;
  }

  // The mount point: free, or holding a galaxy mount whose bridge is gone (its cluster
  // ended without galaxy down), which is cleared.
  if (want_mount) {
    if (auto t = cluster::mount_type(a.mount)) {
      struct stat st {};
      bool dead = *t == "fuse.galaxy" && ::stat(a.mount.c_str(), &st) != 0 && errno == ENOTCONN;
      if (!dead) {
        say(verb, fmt::format("{} is already a mount point ({}{}); choose another with --mount DIR", a.mount, *t,
                              *t == "fuse.galaxy" ? ", of another cluster" : ""));
        return 1;
      }
      if (auto u = fsclient::fuse_unmount(a.mount, true); !u) {
        say(verb, fmt::format("{} holds an old galaxy mount that will not go: {}", a.mount, u.error()));
        return 1;
      }
    }
    if (!fs::exists(a.mount, ec)) {
      fs::create_directories(a.mount, ec);
      if (ec) {
        say(verb, fmt::format("--mount {}: {}", a.mount, ec.message()));
        return 1;
      }
    }
  }

  if (!transport.tcp && transport.sock_dir != a.state) {
    if (auto ok = ensure_dir(transport.sock_dir, 0700, true); !ok) {
      say(verb, ok.error());
      return 1;
    }
  }
  std::string logs = a.state + "/log";
  if (auto ok = ensure_dir(logs, 0700, true); !ok) {
    say(verb, ok.error());
    return 1;
  }
  unsigned ncpu = static_cast<unsigned>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  unsigned cpus = a.cpus != 0 ? a.cpus : std::max(1u, ncpu / static_cast<unsigned>(a.nodes));
  // Memory is divided as the CPUs are: every node on this machine would otherwise
  // advertise all of it, and the cluster would count it once per node.
  std::uint64_t mem_bytes = mem_given != 0 ? mem_given : machine_mem_bytes() / static_cast<unsigned>(a.nodes);
  auto timeout = std::chrono::milliseconds(static_cast<long>(a.timeout_s * 1000));

  std::string task_path = path_for_tasks();
  cluster::record r;
  r.state = a.state;
  auto give_up = [&](const std::string& why) {
    say(verb, why);
    (void)stop_all(r, 2s);
    fs::remove(cluster::record_path(a.state), ec);
    return 1;
  };

  // The nodes, then the scheduler that links them.
  for (int i = 1; i <= a.nodes; i++) {
    std::string name = fmt::format("n{}", i), spool = fmt::format("{}/{}", a.state, name);
    if (auto ok = ensure_dir(spool, 0711); !ok) return give_up(ok.error());
    std::string log = fmt::format("{}/{}.log", logs, name);
    auto from = file_size_or_0(log);
    std::vector<std::string> argv{node_bin, "--listen", listen_on(name), "--spool", spool, "--name", name, "--cpus",
                                  std::to_string(cpus)};
    if (mem_bytes != 0) {
      argv.push_back("--mem");
      argv.push_back(std::to_string(mem_bytes));
    }
    argv.insert(argv.end(), auth_args.begin(), auth_args.end());
    argv.insert(argv.end(), node_args.begin(), node_args.end());
    auto p = spawn_detached(argv, log, task_path);
    if (!p) return give_up(p.error());
    r.nodes.push_back({name, "", *p});
    auto dial = wait_listening("galaxy-node " + name, p->pid, log, from, timeout);
    if (!dial) return give_up(dial.error());
    r.nodes.back().addr = *dial;
  }
  std::vector<std::string> sched_argv{sched_bin, "--listen", listen_on("sched"), "--state", a.state + "/sched"};
  sched_argv.insert(sched_argv.end(), auth_args.begin(), auth_args.end());
  for (const auto& n : r.nodes) {
    sched_argv.push_back("--node");
    sched_argv.push_back(n.name + "=" + n.addr);
  }
  std::string sched_log = logs + "/sched.log";
  auto from = file_size_or_0(sched_log);
  auto sp = spawn_detached(sched_argv, sched_log);
  if (!sp) return give_up(sp.error());
  r.sched = *sp;
  auto sdial = wait_listening("galaxy-sched", sp->pid, sched_log, from, timeout);
  if (!sdial) return give_up(sdial.error());
  r.sched_addr = *sdial;
  if (auto ok = wait_nodes_up(r.sched_addr, r.nodes.size(), timeout); !ok) return give_up(ok.error());
  if (auto ok = cluster::save(r); !ok) return give_up(ok.error());

  // The mount. Root mounts with allow_other, which makes it per-user (ctl/cmd_mount.cpp):
  // every local user, and the tasks (as nobody: a reduce job reads its maps' output
  // there), act through it as themselves, never as root. An ordinary user's mount is
  // theirs alone, as FUSE keeps others out.
  std::string mount_note;
  if (want_mount) {
    std::vector<std::string> margv{self, "mount", "-f"};
    if (root) {
      margv.push_back("-o");
      margv.push_back("allow_other");
    }
    if (transport.tcp && help_mentions({self, "mount"}, "--auth")) {
      margv.push_back("--auth");
      margv.push_back("munge");
    }
    margv.push_back(r.sched_addr);
    margv.push_back(a.mount);
    std::string mlog = logs + "/mount.log";
    auto mp = spawn_detached(margv, mlog);
    if (!mp) return give_up(mp.error());
    auto deadline = steady::now() + timeout;
    std::optional<std::string> failed;
    for (;;) {
      if (auto t = cluster::mount_type(a.mount); t && *t == "fuse.galaxy") break;
      if (auto how = ended(mp->pid)) {
        failed = fmt::format("galaxy mount {}; its log ({}) ends:{}", *how, mlog, log_tail(mlog, 3));
        break;
      }
      if (steady::now() >= deadline) {
        (void)cluster::stop(*mp, 2s);
        failed = fmt::format("galaxy mount did not finish mounting within {} s; see {}", a.timeout_s, mlog);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    if (failed) {
      mount_note = "the mount failed: " + *failed;
    } else {
      r.mount = a.mount;
      r.mount_proc = *mp;
      if (auto ok = cluster::save(r); !ok) return give_up(ok.error());
    }
  } else if (why_no_fuse) {
    mount_note = "FUSE is unavailable here (" + *why_no_fuse + ")";
  }

  // Where everything is, and what to try.
  bool default_state = a.state == cluster::default_state_dir();
  fmt::print("galaxy: up: {}\n", transport.said);
  fmt::print("galaxy: up: a scheduler and {} node{}{}\n", r.nodes.size(), r.nodes.size() == 1 ? "" : "s",
             r.mount.empty()  ? ", not mounted"
             : root           ? ", mounted on " + r.mount + " for every local user, each acting as themself"
                              : ", mounted on " + r.mount + " for you alone");
  fmt::print("  scheduler  {:<24} pid {}, state {}/sched\n", r.sched_addr, r.sched.pid, a.state);
  for (const auto& n : r.nodes) {
    fmt::print("  node {:<5} {:<24} pid {}, {} CPU{}, {}, spool {}/{}\n", n.name, n.addr, n.proc.pid, cpus,
               cpus == 1 ? "" : "s", mem_bytes != 0 ? human_bytes(mem_bytes) : "all memory", a.state, n.name);
  }
  if (!r.mount.empty()) fmt::print("  mount      {:<24} pid {}\n", r.mount, r.mount_proc.pid);
  fmt::print("  logs       {}/\n", logs);
  if (!mount_note.empty()) fmt::print("{}; the cluster runs without a mount: use it natively\n", mount_note);
  // Every verb finds this cluster with these set (cluster::find), in any shell; the
  // state directory outlives a restart, whose TCP port may change.
  fmt::print("For every galaxy verb in other shells{}:\n", default_state ? " (it finds this one by itself)" : "");
  fmt::print("export GALAXY_STATE={}\n", sh_quote(a.state));
  fmt::print("export GALAXY_ADDR={}\n", sh_quote(r.sched_addr));
  fmt::print("Try:\n");
  if (!r.mount.empty()) {
    std::string m = sh_quote(r.mount);
    fmt::print("  cat {}/status\n", m);
    fmt::print("  ls {}/nodes\n", m);
    fmt::print("  j=$(cat {0}/jobs/clone); echo 'exec uname -a' > {0}/jobs/$j/ctl; cat {0}/jobs/$j/wait {0}/jobs/$j/stdout\n",
               m);
  } else {
    std::string addr = default_state ? "" : " -a " + sh_quote(r.sched_addr);
    fmt::print("  galaxy cat{} status\n", addr);
    fmt::print("  galaxy nodes{}\n", addr);
    fmt::print("  galaxy run{} -- uname -a\n", addr);
  }
  fmt::print("galaxy down{} stops it.\n", default_state ? "" : " --state " + sh_quote(a.state));
  return 0;
}

int do_down(up_args a) {
  const std::string verb = "down";
  std::error_code ec;
  if (a.state.empty()) a.state = cluster::default_state_dir();
  a.state = fs::absolute(a.state, ec).lexically_normal().string();
  if (a.state.size() > 1 && a.state.back() == '/') a.state.pop_back();
  auto r = cluster::load(a.state);
  if (!r) {
    say(verb, r.error() == "no cluster record" ? fmt::format("nothing is up in {}", a.state) : r.error());
    return 1;
  }
  state_lock lock;
  if (auto ok = lock.take(a.state); !ok) {
    say(verb, ok.error());
    return 1;
  }
  bool was_up = any_alive(*r);
  auto timeout = std::chrono::milliseconds(static_cast<long>(a.timeout_s * 1000));
  auto done = stop_all(*r, timeout);
  fs::remove(cluster::record_path(a.state), ec);
  if (!was_up) {
    say(verb, fmt::format("nothing is up in {} (its processes had all ended; removed the stale record{})", a.state,
                          done.empty() ? "" : ", " + done.front()));
    return 1;
  }
  for (const auto& d : done) fmt::print("galaxy: down: {}\n", d);
  if (any_alive(*r)) {
    say(verb, "some processes would not stop even after SIGKILL");
    return 1;
  }
  return 0;
}

}  // namespace

void add_up_commands(CLI::App& app, int& status) {
  auto a = std::make_shared<up_args>();
  int* st = &status;

  auto* up = app.add_subcommand("up", "start a local cluster (a scheduler, N nodes) and mount its tree");
  up->add_option("--nodes,-n", a->nodes, "how many galaxy-node processes (default 2)");
  up->add_option("--cpus", a->cpus, "CPUs each node advertises (default: this machine's, divided among the nodes)");
  up->add_option("--mem", a->mem,
                 "memory each node advertises, BYTES[k|m|g] (default: this machine's, divided among the nodes)");
  up->add_option("--state", a->state,
                 "directory for the daemons' state, spools, logs and the cluster record "
                 "(default: $XDG_RUNTIME_DIR/galaxy, or /tmp/galaxy-UID)");
  up->add_option("--mount,-m", a->mount, "where to mount the unified tree (default: /galaxy as root, else ~/galaxy)");
  up->add_flag("--no-mount", a->no_mount, "start the cluster without mounting it");
  up->add_option("--timeout", a->timeout_s, "seconds each daemon may take to start (default 10)");
  up->callback([a, st] { *st = do_up(*a); });

  auto* down = app.add_subcommand("down", "stop the local cluster that galaxy up started, and unmount it");
  down->add_option("--state", a->state, "the state directory given to galaxy up (default as for up)");
  down->add_option("--timeout", a->timeout_s, "seconds between SIGTERM and SIGKILL (default 10)");
  down->callback([a, st] { *st = do_down(*a); });
}

}  // namespace ctl
