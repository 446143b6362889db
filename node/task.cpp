// The task runner (node/task.hpp): spawning, reaping, limits, output notification, and
// the spool that makes results survive a restart.
//
// Arrangement: small helpers (clock, files, /proc); task users (NSS);
// the child side of a spawn, which may only do async-signal-safe work; and the runner
// itself: creation and restore, start, exit handling, inotify, kill, remove and garbage
// collection. Safe access below a task's directories is node/safe_fs.*, cgroups are
// node/contain.*, the spec file's codec node/spec.*.
//
// The spec file's format is node/spec.hpp's.
//
// What a restart after kill -9 needs, and so when the spec is written (never fsync'd: a
// daemon killed with -9 leaves the page cache intact; a machine crash may lose the last
// record, as it loses the tail of the output files):
//   - a task's process must never run the task's code unrecorded, or a daemon dying at
//     the wrong moment would leave it running with nobody to kill it. So a start goes:
//     clone; the child blocks reading the "go" pipe before doing anything; the parent
//     writes the first record (the whole spec, state=running, pid and pidstart) by one
//     write(2) to a new file; only then does it write the go byte, and the child goes on
//     to drop privileges and exec. A daemon that dies before the record is written leaves
//     no spec (restore() reports the task lost) and its end of the go pipe closes with it:
//     the child reads end of file and _exits without running anything. One that dies after
//     leaves the record, and restore() kills the group it names. A record that cannot be
//     written refuses the start the same way (the task stays new);
//   - a finished task's result must be found: at the end one record with the changed keys
//     is appended by one write(2) of under a page (O_APPEND), which SIGKILL cannot split
//     (the kernel checks for fatal signals between pages). Every record ends with its
//     "state=" line, and restore() ignores whatever follows the last one all the same;
//   - a task still new has no result and its client's fids died with the daemon: it is
//     not written at all (no disk work per ctl command); restore() finds its directory
//     without a spec (or with an empty one: the daemon died at start) and reports it lost;
//   - a task number must never be handed out twice, even if the highest-numbered task was
//     removed (its directory is gone) before a restart: a client or a scheduler's database
//     may still hold it. SPOOL/next-task holds the next number as one decimal line; it is
//     written (one pwrite(2) at offset 0 on a descriptor held open, not replaced) before
//     each number is handed out, and read at creation; restore() also continues after the
//     highest directory found, for spools older than the file.
// So a task costs one directory and one pwrite at clone, and in/, out/, stdout, stderr and
// spec at start: no file is ever replaced, so no inode is freed while tasks run (ext4 pays
// for every recently freed inode at each allocation).
//
// A process: clone(CLONE_VM) runs child_main on a stack of the runner's own until the
// child execs (as glibc's posix_spawn does, but without CLONE_VFORK, so that the parent
// can write the spec record while the child waits; the parent then waits for the exec by
// reading the error pipe, so the shared memory is not freed under the child). ASan builds,
// and any run where clone(CLONE_VM) is refused (qemu-user), fork instead. The parent
// blocks every signal from before the clone until then, so that none of its handlers runs
// in the child and no call of the parent's is interrupted while the child shares its
// thread's errno. The child resets signal dispositions, makes its session, joins its
// cgroup, sets limits, switches to the task's user (groups, gid, uid, from a list the
// parent got from NSS: the child may not call NSS) and working directory, and only then
// looks for the program
// on the task's PATH (execvp(3)'s rules), so that it finds what that user finds: a
// directory on PATH that the user cannot search is passed over instead of failing with
// "permission denied". The child reports a failure as {stage, errno} on a close-on-exec
// pipe. Exits come from a pidfd (pidfd_open(2)) watched by the io_context; wait4(2) with
// WNOHANG then reaps and gives the rusage. When a task's first process ends, whatever it
// left in its cgroup (cgroup.kill) and its process group is sent SIGKILL (as batch
// systems do): a straggler must not keep running, writing, or holding files open after
// its task is reported ended.
#include "node/task.hpp"

#include "node/contain.hpp"
#include "node/resources.hpp"
#include "node/safe_fs.hpp"
#include "node/spec.hpp"
#include "srv9p/close_fds.hpp"
#include "srv9p/nss.hpp"

#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>
#include <atomic>
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>

namespace node {

namespace fs = std::filesystem;

namespace {

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}



// Writes all of text to an open descriptor. Returns errno, or 0.
int write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return 0;
}

// Writes text as the whole of p (created or truncated), with one write(2) for a spec.
std::expected<void, std::string> write_whole(const fs::path& p, std::string_view text) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return std::unexpected(fmt::format("{}: {}", p.string(), errno_text(errno)));
  int e = write_all(fd, text);
  if (::close(fd) < 0 && e == 0) e = errno;
  if (e != 0) return std::unexpected(fmt::format("{}: {}", p.string(), errno_text(e)));
  return {};
}

// Appends text to the existing file p with one write(2) (O_APPEND).
std::expected<void, std::string> append_file(const fs::path& p, std::string_view text) {
  int fd = ::open(p.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return std::unexpected(fmt::format("{}: {}", p.string(), errno_text(errno)));
  int e = write_all(fd, text);
  if (::close(fd) < 0 && e == 0) e = errno;
  if (e != 0) return std::unexpected(fmt::format("{}: {}", p.string(), errno_text(e)));
  return {};
}

// Field 22 of proc(5)'s /proc/PID/stat: the process's start time in clock ticks since
// boot. The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
std::optional<std::uint64_t> proc_start_ticks(pid_t pid) {
  auto text = read_small_file(fmt::format("/proc/{}/stat", pid));
  if (!text) return std::nullopt;
  auto rp = text->rfind(')');
  if (rp == std::string::npos) return std::nullopt;
  std::string_view rest = std::string_view(*text).substr(rp + 1);
  // After ')': field 3 (state) is the first word; field 22 is the 20th.
  int field = 2;
  std::size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && rest[i] == ' ') i++;
    std::size_t j = i;
    while (j < rest.size() && rest[j] != ' ' && rest[j] != '\n') j++;
    if (j == i) break;
    if (++field == 22) {
      std::uint64_t v = 0;
      auto r = std::from_chars(rest.data() + i, rest.data() + j, v);
      if (r.ec != std::errc{} || r.ptr != rest.data() + j) return std::nullopt;
      return v;
    }
    i = j;
  }
  return std::nullopt;
}

// ---- Task users -----------------------------------------------------------------------

// Who a task runs as (task.hpp). drop: the child switches to uid, gid and groups (the
// daemon is root); else it stays the daemon's user.
struct run_identity {
  bool drop = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // getgrouplist(3): the supplementary groups, gid among them
  std::string name;

  fs_identity fs() const {
    fs_identity f;
    f.as_user = drop && uid != 0;
    f.uid = uid;
    f.gid = gid;
    f.groups = groups;
    return f;
  }
};

// The user name through NSS (getpwnam_r(3)) and its groups (getgrouplist(3)), asked for by
// the daemon, not by the child: NSS may load modules, allocate and talk to daemons, none
// of which a CLONE_VM child may do. In galaxy-node the look-up itself runs in a helper
// process (srv9p/nss.hpp), so that the daemon never maps NSS modules. Returns nothing for
// a user NSS does not know. Errors: NSS failing (an LDAP server away, say).
std::expected<std::optional<run_identity>, std::string> lookup_user(const std::string& name) {
  auto a = srv9p::account_by_name(name, true);
  if (!a) return std::unexpected(a.error());
  if (!*a) return std::optional<run_identity>{};
  run_identity id;
  id.drop = true;
  id.uid = (*a)->uid;
  id.gid = (*a)->gid;
  id.name = name;
  id.groups = std::move((*a)->groups);
  return id;
}

// A name as a client gave it: NSS must see all of it.
bool plausible_user_name(std::string_view name) {
  return !name.empty() && name.size() < 256 && name.find('\0') == std::string_view::npos &&
         name.find('/') == std::string_view::npos && name.find('\n') == std::string_view::npos;
}

// ---- The child -------------------------------------------------------------------------

// Everything the child needs, prepared by the parent: between clone and execve the child
// shares the parent's memory and may only make async-signal-safe calls (signal-safety(7)),
// so no allocation, no locks, no C++ library.
struct child_args {
  // Where to look for the program, in order: the program itself when it holds a '/', else
  // one "DIR/prog" per element of the task's PATH (an empty element is "prog", the working
  // directory), as execvp(3) would try them; nullptr-terminated.
  char* const* paths = nullptr;
  bool search = false;  // paths come from PATH (prog has no '/')
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;  // all >= 3
  const char* dir = nullptr;
  std::uint64_t rlimit_as = 0;  // RLIMIT_AS in bytes; 0: none
  int cgroup_procs_fd = -1;     // the task cgroup's cgroup.procs, or -1
  bool drop = false;
  uid_t uid = 0;
  gid_t gid = 0;
  const gid_t* groups = nullptr;  // the supplementary groups, set before gid and uid
  std::size_t ngroups = 0;
  int err_fd = -1;  // write end of the error pipe (close-on-exec)
  // The go pipe: the child reads one byte from go_r before doing anything else, which the
  // parent writes once the task's spec record (naming the child's pid) is on disk; end of
  // file instead (the parent gave up, or died) makes the child _exit(127) at once. go_w is
  // the child's copy of the write end, closed first so that the parent's death is seen.
  int go_r = -1, go_w = -1;
};

enum child_stage : int {
  st_signals, st_setsid, st_stdio, st_cgroup, st_rlimit, st_setgroups, st_setgid, st_setuid, st_chdir, st_exec
};
constexpr const char* stage_names[] = {"sigprocmask", "setsid", "dup2",   "joining its cgroup", "setrlimit",
                                       "setgroups",   "setgid", "setuid", "chdir",              "exec"};

[[noreturn]] void child_fail(const child_args& a, int stage, int err) {
  int msg[2] = {stage, err};
  ssize_t n = ::write(a.err_fd, msg, sizeof msg);
  (void)n;
  ::_exit(127);
}

// The credentials calls go straight to the kernel: glibc's setuid() and friends would
// broadcast the change to every thread of the daemon (nptl setxid), whose memory this
// child shares until it execs. 32-bit ARM has separate 32-bit-uid calls.
#if defined(SYS_setresuid32)
constexpr long sys_setresuid = SYS_setresuid32, sys_setresgid = SYS_setresgid32, sys_setgroups = SYS_setgroups32;
#else
constexpr long sys_setresuid = SYS_setresuid, sys_setresgid = SYS_setresgid, sys_setgroups = SYS_setgroups;
#endif

int child_main(void* arg) {
  const child_args& a = *static_cast<const child_args*>(arg);
  // Nothing runs before the parent's word (see the top of this file). Every signal is
  // blocked here (the parent blocked them before the clone), so read(2) is not interrupted.
  ::close(a.go_w);
  char go = 0;
  if (::read(a.go_r, &go, 1) != 1) ::_exit(127);
  ::close(a.go_r);
  // Default dispositions for every signal (a daemon that ignores SIGPIPE must not pass
  // that on); errors for SIGKILL, SIGSTOP and glibc's internal signals are expected.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; s++) ::sigaction(s, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) < 0) child_fail(a, st_signals, errno);
  if (::setsid() < 0) child_fail(a, st_setsid, errno);
  if (::dup2(a.stdin_fd, 0) < 0 || ::dup2(a.stdout_fd, 1) < 0 || ::dup2(a.stderr_fd, 2) < 0) child_fail(a, st_stdio, errno);
  // cgroup.procs: writing "0" moves the writer. A task that could not be contained does
  // not run.
  if (a.cgroup_procs_fd >= 0 && ::write(a.cgroup_procs_fd, "0", 1) != 1) child_fail(a, st_cgroup, errno);
  if (a.rlimit_as > 0) {
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = static_cast<rlim_t>(a.rlimit_as);
    if (::setrlimit(RLIMIT_AS, &rl) < 0) child_fail(a, st_rlimit, errno);
  }
  if (a.drop) {
    // initgroups(3)'s list, made by the parent (NSS is no business of this child).
    if (::syscall(sys_setgroups, a.ngroups, a.groups) < 0) child_fail(a, st_setgroups, errno);
    if (::syscall(sys_setresgid, a.gid, a.gid, a.gid) < 0) child_fail(a, st_setgid, errno);
    if (::syscall(sys_setresuid, a.uid, a.uid, a.uid) < 0) child_fail(a, st_setuid, errno);
  }
  // After the switch of user, so that the directory is checked as the task's user.
  if (a.dir != nullptr && ::chdir(a.dir) < 0) child_fail(a, st_chdir, errno);
  // The PATH search, now that the child is the task's user in the task's directory, so
  // that it finds what that user would find: execvp(3)'s rules, as glibc applies them,
  // but for one thing. A candidate that does not exist (or whose directory does not) is
  // passed over; one the user may not execute is passed over but remembered (EACCES);
  // any other error ends the search with that error. The exception: a candidate in a
  // directory the user cannot search (stat(2) of it fails with EACCES) is passed over as
  // not there, as a shell passes it over, so that a program found nowhere else is "file
  // does not exist", not "permission denied". A program named by a path is not searched
  // for: its own error stands.
  // Nothing of the daemon's goes to the task: its listeners and its clients'
  // connections (asio's sockets are not close-on-exec, so a task could otherwise speak
  // 9P on another user's attached connection), or any other descriptor. 0, 1, 2 stay,
  // and the error pipe (close-on-exec) until the exec. The child has its own descriptor
  // table (no CLONE_FILES). Where close_range(2) is missing, one close at a time
  // (srv9p/close_fds.hpp); a task whose descriptors could not be closed does not run.
  if (a.err_fd > 3 && !srv9p::close_descriptors(3, static_cast<unsigned>(a.err_fd) - 1)) child_fail(a, st_exec, EMFILE);
  if (!srv9p::close_descriptors(static_cast<unsigned>(a.err_fd) + 1, ~0u)) child_fail(a, st_exec, EMFILE);
  bool denied = false;
  for (char* const* p = a.paths; *p != nullptr; p++) {
    ::execve(*p, a.argv, a.envp);
    int e = errno;
    struct stat st;
    switch (e) {
      case EACCES:
        if (a.search && ::stat(*p, &st) < 0 && errno == EACCES) break;
        denied = true;
        break;
      case ENOENT:
      case ENOTDIR:
      case ESTALE:
      case ENODEV:
      case ETIMEDOUT: break;
      default: child_fail(a, st_exec, e);
    }
  }
  child_fail(a, st_exec, denied ? EACCES : ENOENT);
}

// AddressSanitizer does not survive a CLONE_VM child on a stack of its own: before the
// child's first noreturn call (child_fail, _exit) __asan_handle_no_return unpoisons "the
// stack" it believes the thread has and reports a stack-buffer-underflow on ours (seen
// with GCC 12's libasan). So ASan builds fork instead: a copy of the address space,
// slower, but the same child code and the same error pipe.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool fork_spawn = true;
#else
constexpr bool fork_spawn = false;
#endif

// Set once clone(CLONE_VM) has failed with EINVAL (see launch): every later start forks.
std::atomic<bool> clone_vm_refused{false};

constexpr std::size_t child_stack_size = 64 * 1024;

// A descriptor at 3 or above, so that the child's dup2 onto 0, 1 and 2 cannot overwrite
// one of its other sources (a daemon started with a closed stdin would hand out fd 0).
int above_stdio(int fd) {
  if (fd < 0 || fd > 2) return fd;
  int n = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  ::close(fd);
  return n;
}

// Sets the calling thread's signal mask, and puts the old one back at restore() or at the
// end of the scope, whichever comes first.
struct sigmask_guard {
  sigset_t old;
  bool set = false;
  explicit sigmask_guard(const sigset_t& mask) { set = ::pthread_sigmask(SIG_SETMASK, &mask, &old) == 0; }
  sigmask_guard(const sigmask_guard&) = delete;
  sigmask_guard& operator=(const sigmask_guard&) = delete;
  ~sigmask_guard() { restore(); }
  void restore() {
    if (set) ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    set = false;
  }
};

struct fd_guard {
  int fd = -1;
  fd_guard() = default;
  explicit fd_guard(int f) : fd(f) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() { reset(); }
  void reset(int f = -1) {
    if (fd >= 0) ::close(fd);
    fd = f;
  }
  int release() { return std::exchange(fd, -1); }
};

// Deletes the directory d and everything below it, following no link (a task's user
// may have left links in in/ or out/, and may still be changing them: safe_fs.hpp).
// Returns the first errno, or 0.
int remove_dir_tree(const fs::path& d) {
  int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : errno;
  int e = remove_tree_below(fd);
  ::close(fd);
  if (::rmdir(d.c_str()) < 0 && errno != ENOENT && e == 0) e = errno;
  return e;
}

}  // namespace

std::string_view state_name(task_state s) {
  switch (s) {
    case task_state::new_: return "new";
    case task_state::running: return "running";
    case task_state::done: return "done";
    case task_state::failed: return "failed";
    case task_state::killed: return "killed";
    case task_state::lost: return "lost";
  }
  return "unknown";
}

std::string task::wait_text() const {
  switch (state) {
    case task_state::done:
    case task_state::failed:
      if (!error.empty()) return "error " + error;
      return fmt::format("exit {}", exit_code);
    case task_state::killed: return fmt::format("signal {}{}", signal, oom_killed ? " out of memory" : "");
    case task_state::lost: return error.empty() ? "lost" : "lost " + error;
    default: return "";
  }
}

std::string task::status_line() const {
  return fmt::format("id={} state={} pid={} exit={} usertime={} systime={} maxrss={} start={} end={}", id,
                     state_name(state), pid, exit_code, user_ms, sys_ms, maxrss_bytes, start_unix_ms, end_unix_ms);
}

// ---- The runner ------------------------------------------------------------------------

namespace {

// A task whose process runs: what the runner holds for it until it is reaped.
struct running_proc {
  pid_t pid = -1;
  std::unique_ptr<asio::posix::stream_descriptor> pidfd;
  std::unique_ptr<asio::steady_timer> timer;  // time limit, or an exit poll after an error
  int stdin_w = -1;                           // write end of the stdin pipe, or -1
  int wd_out = -1, wd_err = -1;               // inotify watches
};

}  // namespace

struct task_runner::impl {
  impl(asio::io_context& i, runner_options o, hooks hk)
      : io(i), opts(std::move(o)), h(std::move(hk)), inotify(i), gc_timer(i) {}
  ~impl() {
    for (auto& [id, p] : procs) {
      if (p.stdin_w >= 0) ::close(p.stdin_w);
    }
    if (devnull >= 0) ::close(devnull);
    if (task_root_fd >= 0) ::close(task_root_fd);
    if (next_fd >= 0) ::close(next_fd);
    if (stack != nullptr) ::munmap(stack, child_stack_size);
    contain.retry();  // cgroups of tasks that ended while their stragglers were dying
  }

  asio::io_context& io;
  runner_options opts;
  hooks h;
  std::map<std::uint64_t, std::unique_ptr<task>> tasks;
  std::map<std::uint64_t, task_extra> extras;
  std::map<std::uint64_t, running_proc> procs;
  std::map<int, std::uint64_t> watches;  // inotify wd → task
  std::uint64_t next_id = 1;
  int next_fd = -1;  // SPOOL/next-task, open for writing (see the top of this file)
  int default_nice = 19;
  bool root = false;                    // the daemon is root: tasks run as their users
  run_identity run_as_id;               // root's tasks and owner-less ones (task.hpp)
  std::optional<run_identity> unknown_id;  // owners unknown here, when configured
  std::string self_name;                // the daemon's user, when it is not root
  std::map<std::uint64_t, run_identity> idents;  // who each task runs as
  int task_root_fd = -1;                // SPOOL/task, O_PATH: the base of open_below
  std::string path_env;                   // the daemon's PATH, searched and passed on
  containment contain;
  int devnull = -1;
  void* stack = nullptr;
  asio::posix::stream_descriptor inotify;
  asio::steady_timer gc_timer;
  std::set<std::uint64_t> starting;  // tasks whose in/ the worker is preparing
  std::uint64_t trash_seq = 0;       // names in trash/ for removed task directories
  // Last member: destroyed first, so that its thread is joined while everything a job
  // might post back to still exists.
  std::unique_ptr<asio::thread_pool> worker;
  // Handlers hold a weak_ptr to this: a completion that was queued before the runner went
  // away finds it expired and returns.
  std::shared_ptr<char> alive = std::make_shared<char>();

  void log(std::string_view line) const {
    if (opts.log) opts.log(line);
  }
  fs::path dir_of(std::uint64_t id) const { return opts.spool / "task" / std::to_string(id); }
  task* find(std::uint64_t id) const {
    auto it = tasks.find(id);
    return it == tasks.end() ? nullptr : it->second.get();
  }
  bool owns(const task& t) const { return find(t.id) == &t; }

  // The spec file (see the top of this file): the first record the first time, then an
  // appended record of what changed.
  std::expected<void, std::string> write_spec(const task& t) {
    task_extra& x = extras[t.id];
    fs::path p = dir_of(t.id) / "spec";
    if (x.on_disk) return append_file(p, encode_update(t, x));
    auto ok = write_whole(p, encode_spec(t, x));
    x.on_disk = ok.has_value();
    return ok;
  }
  void write_spec_or_log(const task& t) {
    if (auto ok = write_spec(t); !ok) log(fmt::format("task {}: writing spec: {}", t.id, ok.error()));
  }

  // Where the child looks for prog (child_args::paths): prog itself if it holds a '/', else
  // "DIR/prog" for each DIR of path_value (the task's PATH), "prog" for an empty DIR
  // (execvp(3): the working directory). The search itself runs in the child, after the
  // switch to the task's user (child_main).
  static std::vector<std::string> candidates(const std::string& prog, std::string_view path_value) {
    if (prog.find('/') != std::string::npos) return {prog};
    std::vector<std::string> out;
    for (;;) {
      auto colon = path_value.find(':');
      std::string_view d = path_value.substr(0, colon);
      out.push_back(d.empty() ? prog : fmt::format("{}/{}", d, prog));
      if (colon == std::string_view::npos) break;
      path_value.remove_prefix(colon + 1);
    }
    return out;
  }

  std::vector<std::string> environment(const task& t) const {
    std::vector<std::string> env = {
        "PATH=" + path_env,
        "HOME=" + (dir_of(t.id) / "in").string(),
        "LANG=C.UTF-8",
        "GALAXY_OUT=" + (dir_of(t.id) / "out").string(),
        fmt::format("GALAXY_TASK={}", t.id),
    };
    if (!t.run_user.empty()) {
      env.push_back("USER=" + t.run_user);
      env.push_back("LOGNAME=" + t.run_user);
    }
    for (const auto& kv : t.spec.env) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) continue;
      auto same = std::find_if(env.begin(), env.end(), [&](const std::string& e) {
        return e.size() > eq && e.compare(0, eq + 1, kv, 0, eq + 1) == 0;
      });
      if (same != env.end()) {
        *same = kv;
      } else {
        env.push_back(kv);
      }
    }
    return env;
  }

  // Who a task of owner runs as (task.hpp). Errors: as create_task's.
  std::expected<run_identity, std::string> resolve(std::string_view owner) const {
    if (!owner.empty() && !plausible_user_name(owner)) {
      return std::unexpected(owner.size() < 256 ? fmt::format("bad user name '{}'", owner) : std::string("user name too long"));
    }
    if (!root) {
      if (owner.empty()) return run_identity{.name = self_name};
      auto u = lookup_user(std::string(owner));
      if (!u) return std::unexpected(u.error());
      if (*u && (*u)->uid == ::geteuid()) return run_identity{.name = std::string(owner)};
      return std::unexpected(fmt::format("this node runs tasks only as its own user '{}' (galaxy-node is not root), not as '{}'",
                                         self_name, owner));
    }
    if (owner.empty()) return run_as_id;
    auto u = lookup_user(std::string(owner));
    if (!u) return std::unexpected(u.error());
    if (!*u) {
      if (unknown_id) return *unknown_id;
      return std::unexpected(fmt::format("user '{}' is unknown on node {}", owner, opts.node_name));
    }
    if ((*u)->uid == 0 && !opts.allow_root_tasks) return run_as_id;
    return std::move(**u);
  }
  // Who a restored task ran as: its run user, looked up again; if it is gone, run_as (who
  // cannot read what it left).
  run_identity restored_identity(const task& t) const {
    if (!root) return run_identity{.name = self_name};
    if (!t.run_user.empty()) {
      if (auto u = lookup_user(t.run_user); u && *u) return std::move(**u);
    }
    return run_as_id;
  }
  fs_identity fs_of(std::uint64_t id) const {
    auto it = idents.find(id);
    return it == idents.end() ? run_as_id.fs() : it->second.fs();
  }

  // A task that never ran (its program could not be executed): failed now, and
  // finished() posted, since start() must not call back into its caller.
  void fail_exec(task& t, std::string error) {
    t.state = task_state::failed;
    t.error = std::move(error);
    t.end_unix_ms = now_unix_ms();
    write_spec_or_log(t);
    asio::post(io, [this, w = std::weak_ptr<char>(alive), id = t.id] {
      if (w.expired()) return;
      if (task* tt = find(id); tt != nullptr && h.finished) h.finished(*tt);
    });
  }

  std::expected<void, std::string> check_start(const task& t) const;
  std::expected<void, std::string> start(task& t);
  std::optional<std::expected<void, std::string>> start(task& t,
                                                        std::function<void(std::expected<void, std::string>)> done);
  std::expected<void, std::string> launch(task& t);
  void arm_exit(std::uint64_t id);
  void on_exit(std::uint64_t id, const asio::error_code& ec);
  void release(std::uint64_t id);
  void arm_inotify();
  void on_inotify();
  void arm_gc();
  std::expected<void, std::string> remove(std::uint64_t id, std::function<void(std::expected<void, std::string>)> done);
  std::size_t collect_garbage();

  // Runs job on the worker thread, made at the first job: blocking file-system work that
  // must not hold up the io_context (and so every 9P request). A job touches no runner
  // state; it posts its result back to io, where a weak_ptr to alive says whether the
  // runner still exists.
  void run_blocking(std::function<void()> job) {
    if (!worker) worker = std::make_unique<asio::thread_pool>(1);
    asio::post(*worker, std::move(job));
  }
  fs::path in_dir(std::uint64_t id) const { return dir_of(id) / "in"; }
  fs::path trash_dir() const { return opts.spool / "trash"; }

  // The start-up check that task users can reach their directories: a task directory
  // made for run_as, as a task's would be, and its in/ opened by name as run_as. Errors:
  // what an administrator needs to know.
  std::expected<void, std::string> check_reachable() const {
    fs::path probe = opts.spool / "task" / fmt::format(".probe-{}", ::getpid());
    fs::path in = probe / "in";
    auto cleanup = [&] {
      ::rmdir(in.c_str());
      ::rmdir(probe.c_str());
    };
    cleanup();  // a previous daemon's, killed at the wrong moment
    if (::mkdir(probe.c_str(), 0700) < 0) return std::unexpected(fmt::format("spool: {}: {}", probe.string(), errno_text(errno)));
    if (auto ok = give_task_dir(probe, run_as_id); !ok) return std::unexpected(fmt::format("spool: {}", ok.error()));
    if (auto ok = make_user_dir(in, run_as_id); !ok) {
      cleanup();
      return std::unexpected(fmt::format("spool: {}", ok.error()));
    }
    int fd, e = 0;
    {
      fs_identity_scope as(run_as_id.fs());
      fd = ::open(in.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) e = errno;
    }
    if (fd >= 0) ::close(fd);
    cleanup();
    if (e != 0) {
      return std::unexpected(fmt::format(
          "spool {}: task users cannot reach their task directories ({} as {}: {}); every directory above the "
          "spool must be searchable by them (chmod o+x)",
          opts.spool.string(), in.string(), run_as_id.name, errno_text(e)));
    }
    return {};
  }

  // A task's own directory (task.hpp), just made 0700: the daemon's, 0710 with the task
  // user's group, so that the user can pass through to in/ and out/ but not list or
  // change it. Removed again on error.
  std::expected<void, std::string> give_task_dir(const fs::path& d, const run_identity& who) const {
    if (who.drop && who.uid != 0) {
      if (::lchown(d.c_str(), ::geteuid(), who.gid) < 0 || ::chmod(d.c_str(), 0710) < 0) {
        int e = errno;
        ::rmdir(d.c_str());
        return std::unexpected(fmt::format("{}: {}", d.string(), errno_text(e)));
      }
    }
    return {};
  }

  // in/ or out/ of a task, made 0700 and given to the task's user if missing. Its parent
  // is the daemon's (task.hpp), so no link can have been put in its place; lchown(2)
  // would not follow one anyway.
  std::expected<void, std::string> make_user_dir(const fs::path& d, const run_identity& who) const {
    if (::mkdir(d.c_str(), 0700) < 0) {
      if (errno == EEXIST) return {};
      return std::unexpected(fmt::format("{}: {}", d.string(), errno_text(errno)));
    }
    if (who.drop && ::lchown(d.c_str(), who.uid, who.gid) < 0) {
      int e = errno;
      ::rmdir(d.c_str());
      return std::unexpected(fmt::format("chown {}: {}", d.string(), errno_text(e)));
    }
    return {};
  }
};

std::expected<void, std::string> task_runner::impl::check_start(const task& t) const {
  if (!owns(t)) return std::unexpected("no such task");
  if (starting.contains(t.id)) return std::unexpected("task is being started");
  if (t.state != task_state::new_) return std::unexpected("task has already been started");
  if (t.spec.argv.empty()) return std::unexpected("nothing to exec");
  if (opts.max_tasks != 0 && procs.size() >= opts.max_tasks) {
    return std::unexpected(fmt::format("too many tasks running (maxtasks {})", opts.max_tasks));
  }
  return {};
}

// The blocking part of a start, for the worker: in/'s files (in_fd, a descriptor of in/,
// closed here) are copied into the working directory chosen by `dir` (task.hpp), as the
// task's user: nothing in in/ is followed (safe_fs.hpp), and `dir` is opened with the
// user's rights, so a link there leads only where the user could go anyway. Touches no
// runner state. The files in in/ are the user's already: clients' creates are done with
// its identity.
std::expected<void, std::string> prepare_in(int in_fd, const std::string& dir, const fs_identity& who) {
  fd_guard in(in_fd);
  fs_identity_scope as(who);
  fd_guard dest(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dest.fd < 0) return std::unexpected(fmt::format("copying in/ to {}: {}", dir, errno_text(errno)));
  if (auto ok = copy_tree(in.fd, dest.fd); !ok) {
    return std::unexpected(fmt::format("copying in/ to {}: {}", dir, ok.error()));
  }
  return {};
}

std::expected<void, std::string> task_runner::impl::start(task& t) {
  if (auto ok = check_start(t); !ok) return ok;
  if (!t.spec.dir.empty()) {
    fs_identity who = fs_of(t.id);
    auto in = [&] {
      fs_identity_scope as(who);
      return open_beneath(task_root_fd, fmt::format("{}/in", t.id), O_RDONLY | O_DIRECTORY);
    }();
    if (in) {
      if (auto ok = prepare_in(*in, t.spec.dir, who); !ok) return ok;
    } else if (in.error() != ENOENT) {
      return std::unexpected(fmt::format("in/: {}", errno_text(in.error())));
    }
  }
  return launch(t);
}

std::optional<std::expected<void, std::string>> task_runner::impl::start(
    task& t, std::function<void(std::expected<void, std::string>)> done) {
  if (auto ok = check_start(t); !ok) return ok;
  // Without in/ (no client put files there), or with in/ as the working directory, there
  // is nothing to copy.
  if (t.spec.dir.empty()) return launch(t);
  fs_identity who = fs_of(t.id);
  auto in = [&] {
    fs_identity_scope as(who);
    return open_beneath(task_root_fd, fmt::format("{}/in", t.id), O_RDONLY | O_DIRECTORY);
  }();
  if (!in && in.error() == ENOENT) return launch(t);
  if (!in) return std::unexpected(fmt::format("in/: {}", errno_text(in.error())));
  std::uint64_t id = t.id;
  starting.insert(id);
  run_blocking([this, w = std::weak_ptr<char>(alive), in_fd = *in, dir = t.spec.dir, who = std::move(who), id,
                done = std::move(done)]() mutable {
    auto ok = prepare_in(in_fd, dir, who);
    asio::post(io, [this, w, id, ok = std::move(ok), done = std::move(done)]() mutable {
      if (w.expired()) return;
      starting.erase(id);
      task* tt = find(id);
      if (tt == nullptr) return done(std::unexpected("no such task"));
      if (!ok) return done(std::move(ok));
      if (auto c = check_start(*tt); !c) return done(std::move(c));
      done(launch(*tt));
    });
  });
  return std::nullopt;
}

// The rest of a start, on the io thread: directories, descriptors, the clone, the spec
// record, and then the child's go-ahead (the order is explained at the top of this file).
std::expected<void, std::string> task_runner::impl::launch(task& t) {
  const std::string& prog = t.spec.argv[0];
  fs::path dir = dir_of(t.id);
  fs::path in = dir / "in", out = dir / "out";
  // Who it runs as, looked up again (groups may have changed since create_task).
  auto who = resolve(t.owner);
  if (!who) return std::unexpected(who.error());
  // in/ exists already if a client put files there (make_in_dir); out/ is made here. The
  // task directory is the daemon's, so nothing but the daemon can have put a link here.
  for (const auto& d : {in, out}) {
    if (auto ok = make_user_dir(d, *who); !ok) return ok;
  }

  // stdout and stderr are the daemon's (0600, in the daemon's directory), opened here and
  // handed to the process.
  constexpr int out_flags = O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC;
  fd_guard out_fd(above_stdio(::open((dir / "stdout").c_str(), out_flags, 0600)));
  if (out_fd.fd < 0) return std::unexpected(fmt::format("stdout: {}", errno_text(errno)));
  fd_guard err_fd(above_stdio(::open((dir / "stderr").c_str(), out_flags, 0600)));
  if (err_fd.fd < 0) return std::unexpected(fmt::format("stderr: {}", errno_text(errno)));
  fd_guard stdin_r, stdin_w;
  if (t.spec.stdin_pipe) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) return std::unexpected(fmt::format("pipe: {}", errno_text(errno)));
    stdin_r.reset(above_stdio(p[0]));
    stdin_w.reset(p[1]);
    if (stdin_r.fd < 0) return std::unexpected(fmt::format("pipe: {}", errno_text(errno)));
    ::fcntl(stdin_w.fd, F_SETFL, ::fcntl(stdin_w.fd, F_GETFL) | O_NONBLOCK);
  }

  task_extra& x = extras[t.id];
  x.cgroup.clear();
  x.mem_limit = "none";
  fd_guard cgroup_fd;
  if (contain.cgroups()) {
    // A node that contains its tasks does not run one it cannot contain.
    auto cg = contain.make(t.id, t.spec.mem_bytes, t.spec.cpu_millis, opts.task_pids_max);
    if (!cg) return std::unexpected(fmt::format("task cgroup: {}", cg.error()));
    x.cgroup = cg->path.string();
    cgroup_fd.reset(above_stdio(cg->procs_fd));
    if (cg->mem_limited) x.mem_limit = "cgroup";
  }
  if (t.spec.mem_bytes > 0 && x.mem_limit == "none") x.mem_limit = "rlimit";
  t.run_user = who->name;
  idents[t.id] = *who;

  std::vector<std::string> env = environment(t);
  std::vector<char*> cargv, cenv;
  cargv.reserve(t.spec.argv.size() + 1);
  for (auto& a : t.spec.argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  cenv.reserve(env.size() + 1);
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  std::string wd = t.spec.dir.empty() ? in.string() : t.spec.dir;

  // The task's own PATH (the daemon's, or its `env PATH=...`) is searched by the child.
  std::string_view path_value;
  for (const auto& e : env) {
    if (e.starts_with("PATH=")) path_value = std::string_view(e).substr(5);
  }
  std::vector<std::string> paths = candidates(prog, path_value);
  std::vector<char*> cpaths;
  cpaths.reserve(paths.size() + 1);
  for (auto& c : paths) cpaths.push_back(c.data());
  cpaths.push_back(nullptr);

  int ep[2];
  if (::pipe2(ep, O_CLOEXEC) < 0) return std::unexpected(fmt::format("pipe: {}", errno_text(errno)));
  fd_guard err_r(ep[0]), err_w(above_stdio(ep[1]));
  int gp[2];
  if (::pipe2(gp, O_CLOEXEC) < 0) return std::unexpected(fmt::format("pipe: {}", errno_text(errno)));
  fd_guard go_r(above_stdio(gp[0])), go_w(above_stdio(gp[1]));
  if (err_w.fd < 0 || go_r.fd < 0 || go_w.fd < 0) return std::unexpected(fmt::format("pipe: {}", errno_text(errno)));

  child_args a;
  a.paths = cpaths.data();
  a.search = prog.find('/') == std::string::npos;
  a.argv = cargv.data();
  a.envp = cenv.data();
  a.stdin_fd = t.spec.stdin_pipe ? stdin_r.fd : devnull;
  a.stdout_fd = out_fd.fd;
  a.stderr_fd = err_fd.fd;
  a.dir = wd.c_str();
  a.rlimit_as = x.mem_limit == "rlimit" ? t.spec.mem_bytes : 0;
  a.cgroup_procs_fd = cgroup_fd.fd;
  a.drop = who->drop;
  a.uid = who->uid;
  a.gid = who->gid;
  a.groups = who->groups.data();
  a.ngroups = who->groups.size();
  a.err_fd = err_w.fd;
  a.go_r = go_r.fd;
  a.go_w = go_w.fd;

  // Every signal stays blocked from before the clone until the child has exec'd or given
  // up: a handler of the daemon's must not run in the child, which shares its memory (the
  // child unblocks after resetting dispositions), and no read or write below may be
  // interrupted, since the child also shares this thread's errno.
  sigset_t all;
  sigfillset(&all);
  sigmask_guard mask(all);
  pid_t pid = -1;
  if constexpr (fork_spawn) {
    pid = ::fork();
    if (pid == 0) child_main(&a);
  } else {
    if (!clone_vm_refused.load(std::memory_order_relaxed)) {
      pid = ::clone(child_main, static_cast<char*>(stack) + child_stack_size, CLONE_VM | SIGCHLD, &a);
      if (pid < 0 && errno == EINVAL) {
        // qemu-user (ARM builds run on another machine through binfmt_misc, as
        // scripts/test-arch.sh does) refuses CLONE_VM without CLONE_THREAD; Linux never
        // does. Fork then, as the ASan build does: the same child code and error pipe.
        clone_vm_refused = true;
        log("clone(CLONE_VM) refused (EINVAL: an emulator?): tasks start with fork from now on");
      }
    }
    if (clone_vm_refused.load(std::memory_order_relaxed)) {
      pid = ::fork();
      if (pid == 0) child_main(&a);
    }
  }
  int clone_errno = errno;
  // The child has its own copies of these (no CLONE_FILES).
  err_w.reset();
  go_r.reset();
  out_fd.reset();
  err_fd.reset();
  stdin_r.reset();
  cgroup_fd.reset();
  auto undo_cgroup = [&] {
    if (!x.cgroup.empty()) contain.kill_and_remove(x.cgroup);
    x.cgroup.clear();
  };
  if (pid < 0) {
    undo_cgroup();
    return std::unexpected(fmt::format("clone: {}", errno_text(clone_errno)));
  }
  // For a child that will not run the task: it is in _exit already, or about to be (it
  // read end of file on the go pipe, or wrote its error), so this wait is short.
  auto reap = [pid] {
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  };

  // The child waits on the go pipe. First the record that names it goes to disk, so that
  // a daemon dying from here on leaves a spec that restore() acts on (kills its group);
  // one dying before leaves no spec, and the go pipe's end of file makes the child exit.
  t.pid = pid;
  t.state = task_state::running;
  t.start_unix_ms = now_unix_ms();
  x.pid_start = proc_start_ticks(pid).value_or(0);
  if (auto ok = write_spec(t); !ok) {
    go_w.reset();
    reap();
    undo_cgroup();
    ::unlink((dir / "spec").c_str());  // a part written, if any (write_spec made it anew)
    t.pid = 0;
    t.state = task_state::new_;
    t.start_unix_ms = 0;
    x.pid_start = 0;
    return std::unexpected(fmt::format("writing the task's spec: {}", ok.error()));
  }
  char go = 1;
  ssize_t gone = ::write(go_w.fd, &go, 1);
  int go_errno = errno;
  go_w.reset();
  if (gone != 1) {
    // The child died before reading (nothing else can close its end).
    ::kill(pid, SIGKILL);
    reap();
    undo_cgroup();
    fail_exec(t, fmt::format("starting: {}", errno_text(go_errno)));
    return {};
  }

  // The child has exec'd (its end of the error pipe closed on exec: 0 bytes) or written
  // its error and exited; until one of them it uses this frame's memory, so this read
  // must come before launch() returns.
  int msg[2] = {0, 0};
  ssize_t n = ::read(err_r.fd, msg, sizeof msg);
  int read_errno = errno;
  if (n < 0) {
    // Cannot happen with every signal blocked; but the child may still be using this
    // frame's memory, so it must be gone before launch() returns.
    ::kill(pid, SIGKILL);
    reap();
    mask.restore();
    undo_cgroup();
    fail_exec(t, fmt::format("starting: {}", errno_text(read_errno)));
    return {};
  }
  mask.restore();
  if (n == static_cast<ssize_t>(sizeof msg)) {
    reap();
    undo_cgroup();
    int stage = std::clamp(msg[0], 0, static_cast<int>(std::size(stage_names)) - 1);
    std::string what = stage == st_exec    ? fmt::format("exec: {}", prog)
                       : stage == st_chdir ? fmt::format("chdir: {}", wd)
                                           : std::string(stage_names[stage]);
    fail_exec(t, fmt::format("{}: {}", what, errno_text(msg[1])));
    return {};
  }

  // Nice and SCHED_IDLE are set here, by the parent, once the child has exec'd, not by
  // the child before its exec: the daemon waits for the child to reach exec (the read of
  // the error pipe above), and an idle child on a busy machine (the very case idle harvesting is for) gets
  // the CPU only when nobody else wants it, so the daemon would stall for as long. The
  // exec'd program may run a few microseconds at the daemon's priority before this; it
  // cannot have forked yet (ld.so alone takes longer). Best effort: an unprivileged daemon
  // cannot lower nice (setpriority(2), sched(7)).
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(pid), std::clamp(t.spec.nice, -20, 19));
  if (t.spec.nice >= 19) {
    struct sched_param sp;
    std::memset(&sp, 0, sizeof sp);
    ::sched_setscheduler(pid, SCHED_IDLE, &sp);
  }

  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    // Without a pidfd the exit could not be learnt: better not to run it at all.
    int e = errno;
    ::kill(-pid, SIGKILL);
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    undo_cgroup();
    fail_exec(t, fmt::format("pidfd_open: {}", errno_text(e)));
    return {};
  }

  running_proc& p = procs[t.id];
  p.pid = pid;
  p.pidfd = std::make_unique<asio::posix::stream_descriptor>(io, pidfd);
  p.stdin_w = stdin_w.release();
  p.wd_out = ::inotify_add_watch(inotify.native_handle(), (dir / "stdout").c_str(), IN_MODIFY);
  p.wd_err = ::inotify_add_watch(inotify.native_handle(), (dir / "stderr").c_str(), IN_MODIFY);
  if (p.wd_out < 0 || p.wd_err < 0) {
    log(fmt::format("task {}: inotify_add_watch: {} (output is noticed at exit only)", t.id, errno_text(errno)));
  }
  if (p.wd_out >= 0) watches[p.wd_out] = t.id;
  if (p.wd_err >= 0) watches[p.wd_err] = t.id;
  // Output written between exec and the watches above raised no event: tell readers once,
  // or a task that prints a line and then waits would hold it back from them until exit.
  if (h.output) {
    asio::post(io, [this, w = std::weak_ptr<char>(alive), id = t.id] {
      if (w.expired()) return;
      if (task* tt = find(id)) h.output(*tt);
    });
  }
  if (t.spec.timeout_ms > 0) {
    p.timer = std::make_unique<asio::steady_timer>(io, std::chrono::milliseconds(t.spec.timeout_ms));
    p.timer->async_wait([this, w = std::weak_ptr<char>(alive), id = t.id](const asio::error_code& ec) {
      if (w.expired() || ec) return;
      auto it = procs.find(id);
      task* tt = find(id);
      if (it == procs.end() || tt == nullptr) return;
      tt->timed_out = true;
      ::kill(-it->second.pid, SIGKILL);
      if (auto x = extras.find(id); x != extras.end() && !x->second.cgroup.empty()) {
        contain.signal(x->second.cgroup, SIGKILL);
      }
    });
  }
  asio::post(io, [this, w = std::weak_ptr<char>(alive), id = t.id] {
    if (w.expired()) return;
    if (task* tt = find(id); tt != nullptr && h.started) h.started(*tt);
  });
  arm_exit(t.id);
  return {};
}

void task_runner::impl::arm_exit(std::uint64_t id) {
  auto it = procs.find(id);
  if (it == procs.end()) return;
  it->second.pidfd->async_wait(asio::posix::stream_descriptor::wait_read,
                               [this, w = std::weak_ptr<char>(alive), id](const asio::error_code& ec) {
                                 if (w.expired() || ec == asio::error::operation_aborted) return;
                                 on_exit(id, ec);
                               });
}

// pidfd_open(2): the pidfd is readable once the process has exited.
void task_runner::impl::on_exit(std::uint64_t id, const asio::error_code& ec) {
  auto it = procs.find(id);
  task* t = find(id);
  if (it == procs.end() || t == nullptr) return;
  pid_t pid = it->second.pid;
  // The leader is a zombie until wait4 below, so its pid (which is also the process
  // group's id) cannot have been reused: the group's stragglers are killed safely here.
  ::kill(-pid, SIGKILL);
  int status = 0;
  struct rusage ru;
  std::memset(&ru, 0, sizeof ru);
  pid_t r;
  do r = ::wait4(pid, &status, WNOHANG, &ru);
  while (r < 0 && errno == EINTR);
  if (r == 0) {
    if (!ec) return arm_exit(id);  // not exited after all
    // The pidfd wait failed: look again in a second rather than spin.
    log(fmt::format("task {}: waiting on pidfd: {}", id, ec.message()));
    auto& p = it->second;
    if (!p.timer) p.timer = std::make_unique<asio::steady_timer>(io);
    p.timer->expires_after(std::chrono::seconds(1));
    p.timer->async_wait([this, w = std::weak_ptr<char>(alive), id](const asio::error_code& e) {
      if (w.expired() || e) return;
      on_exit(id, asio::error::try_again);
    });
    return;
  }
  if (r < 0) {
    t->state = task_state::failed;
    t->error = fmt::format("wait4: {}", errno_text(errno));
  } else {
    auto ms = [](const timeval& tv) {
      return static_cast<std::uint64_t>(tv.tv_sec) * 1000 + static_cast<std::uint64_t>(tv.tv_usec) / 1000;
    };
    t->user_ms = ms(ru.ru_utime);
    t->sys_ms = ms(ru.ru_stime);
    t->maxrss_bytes = static_cast<std::uint64_t>(ru.ru_maxrss) * 1024;  // getrusage(2): KiB
    const std::string& fence_why = extras[id].fence_why;
    if (WIFEXITED(status)) {
      // A process that exited by itself keeps its exit, fenced or not: it ran to its end.
      t->exit_code = WEXITSTATUS(status);
      t->state = t->exit_code == 0 ? task_state::done : task_state::failed;
    } else if (!fence_why.empty()) {
      t->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      t->state = task_state::lost;
      t->error = fence_why;
    } else {
      t->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      t->state = task_state::killed;
    }
  }
  t->end_unix_ms = now_unix_ms();
  // The kernel's OOM killer sends SIGKILL to the whole task (memory.oom.group) when it
  // reaches memory.max, and counts it in its cgroup's memory.events: read before the
  // cgroup goes, so that the wait can say why.
  if (auto x = extras.find(id); x != extras.end() && x->second.mem_limit == "cgroup" &&
                                 t->state == task_state::killed && t->signal == SIGKILL) {
    t->oom_killed = contain.oom_kills(x->second.cgroup) > 0;
  }
  release(id);
  write_spec_or_log(*t);
  // The hooks may remove the task: look it up again after each.
  if (h.output) h.output(*t);
  if (task* tt = find(id); tt != nullptr && h.finished) h.finished(*tt);
}

// Lets go of a reaped task's process: its descriptors, watches, timer and cgroup.
void task_runner::impl::release(std::uint64_t id) {
  auto it = procs.find(id);
  if (it == procs.end()) return;
  running_proc& p = it->second;
  if (p.stdin_w >= 0) ::close(p.stdin_w);
  for (int wd : {p.wd_out, p.wd_err}) {
    if (wd < 0) continue;
    ::inotify_rm_watch(inotify.native_handle(), wd);
    watches.erase(wd);
  }
  procs.erase(it);  // closes the pidfd and cancels the timer
  task_extra& x = extras[id];
  if (!x.cgroup.empty()) {
    contain.kill_and_remove(x.cgroup);  // what the task left running ends with it
    x.cgroup.clear();
  }
}

// inotify(7): IN_MODIFY on the output files of running tasks; one output() per task per
// batch of events.
void task_runner::impl::arm_inotify() {
  inotify.async_wait(asio::posix::stream_descriptor::wait_read,
                     [this, w = std::weak_ptr<char>(alive)](const asio::error_code& ec) {
                       if (w.expired() || ec == asio::error::operation_aborted) return;
                       if (ec) {
                         log(fmt::format("inotify: {}", ec.message()));
                         return;
                       }
                       on_inotify();
                       arm_inotify();
                     });
}

void task_runner::impl::on_inotify() {
  std::set<std::uint64_t> grown;
  alignas(inotify_event) char buf[4096];
  for (;;) {
    ssize_t n = ::read(inotify.native_handle(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EAGAIN: drained
    for (ssize_t off = 0; off + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
      inotify_event ev;
      std::memcpy(&ev, buf + off, sizeof ev);
      if (ev.mask & IN_MODIFY) {
        if (auto it = watches.find(ev.wd); it != watches.end()) grown.insert(it->second);
      }
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev.len);
    }
  }
  if (!h.output) return;
  for (auto id : grown) {
    if (task* t = find(id)) h.output(*t);
  }
}

void task_runner::impl::arm_gc() {
  auto shortest = opts.finished_ttl;
  if (opts.new_task_ttl.count() > 0) shortest = std::min(shortest, opts.new_task_ttl);
  auto every = std::clamp<std::chrono::milliseconds>(shortest, std::chrono::seconds(1), std::chrono::minutes(1));
  gc_timer.expires_after(every);
  gc_timer.async_wait([this, w = std::weak_ptr<char>(alive)](const asio::error_code& ec) {
    if (w.expired() || ec) return;
    collect_garbage();
    arm_gc();
  });
}

// The task is forgotten at once: its directory is renamed into trash/ (one rename(2), so
// a restart never finds it half deleted), and the worker deletes it from there; done, if
// given, is called on the io thread when the files are gone.
std::expected<void, std::string> task_runner::impl::remove(std::uint64_t id,
                                                          std::function<void(std::expected<void, std::string>)> done) {
  task* t = find(id);
  if (t == nullptr) return std::unexpected("no such task");
  if (t->state == task_state::running) return std::unexpected("task is running");
  if (starting.contains(id)) return std::unexpected("task is being started");
  fs::path trash = trash_dir() / fmt::format("{}-{}-{}", id, ::getpid(), trash_seq++);
  if (::rename(dir_of(id).c_str(), trash.c_str()) < 0) {
    int e = errno;
    if (e == ENOENT && ::mkdir(trash_dir().c_str(), 0700) == 0) return remove(id, std::move(done));
    return std::unexpected(fmt::format("removing {}: {}", dir_of(id).string(), errno_text(e)));
  }
  tasks.erase(id);
  extras.erase(id);
  idents.erase(id);
  run_blocking([this, w = std::weak_ptr<char>(alive), trash, done = std::move(done)]() mutable {
    std::expected<void, std::string> ok;
    if (int e = remove_dir_tree(trash); e != 0) ok = std::unexpected(fmt::format("removing {}: {}", trash.string(), errno_text(e)));
    asio::post(io, [this, w, ok = std::move(ok), done = std::move(done)] {
      if (w.expired()) return;
      if (!ok) log(ok.error());
      if (done) done(ok);
    });
  });
  return {};
}

std::size_t task_runner::impl::collect_garbage() {
  auto now = now_unix_ms();
  std::vector<std::uint64_t> old;
  for (const auto& [id, t] : tasks) {
    if (t->finished() && t->end_unix_ms > 0 && now - t->end_unix_ms >= opts.finished_ttl.count()) old.push_back(id);
    // Never started: its client went away, or forgot it (a start in progress is not).
    if (t->state == task_state::new_ && opts.new_task_ttl.count() > 0 && !starting.contains(id) &&
        now - static_cast<std::int64_t>(t->created_unix_ms) >= opts.new_task_ttl.count()) {
      old.push_back(id);
    }
  }
  std::size_t n = 0;
  for (auto id : old) {
    if (auto ok = remove(id, {})) {
      n++;
      if (h.removed) h.removed(id);
    } else {
      log(fmt::format("task {}: {}", id, ok.error()));
    }
  }
  contain.retry();
  return n;
}

// ---- Public API ------------------------------------------------------------------------

task_runner::task_runner(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
task_runner::~task_runner() = default;

std::expected<std::unique_ptr<task_runner>, std::string> task_runner::create(asio::io_context& io, runner_options opts,
                                                                             hooks h) {
  if (opts.spool.empty()) return std::unexpected("no spool directory");
  auto im = std::make_unique<impl>(io, std::move(opts), std::move(h));
  im->root = ::geteuid() == 0;
  if (im->root) {
    auto account = [&](const std::string& name, std::string_view what) -> std::expected<run_identity, std::string> {
      auto u = lookup_user(name);
      if (!u) return std::unexpected(u.error());
      if (!*u) return std::unexpected(fmt::format("{} user '{}' does not exist", what, name));
      if ((*u)->uid == 0 && !im->opts.allow_root_tasks) {
        return std::unexpected(fmt::format("{} user '{}' is root: tasks run as root only with --allow-root-tasks", what, name));
      }
      return std::move(**u);
    };
    auto r = account(im->opts.run_as.empty() ? "nobody" : im->opts.run_as, "run_as");
    if (!r) return std::unexpected(r.error());
    im->run_as_id = std::move(*r);
    if (!im->opts.unknown_user.empty()) {
      auto u = account(im->opts.unknown_user, "unknown_user");
      if (!u) return std::unexpected(u.error());
      im->unknown_id = std::move(*u);
      // Allowed, but worth saying: tasks of every unknown user and of root (and owner-less
      // ones) then share one uid, and so may read each other's /proc/PID/environ and
      // kill each other.
      if (im->unknown_id->uid == im->run_as_id.uid) {
        im->log(fmt::format("warning: --unknown-user {} and --run-as {} are the same account (uid {}): tasks of "
                            "unknown users and of root run as one user, and can read and kill each other's processes",
                            im->unknown_id->name, im->run_as_id.name, im->run_as_id.uid));
      }
    }
  } else {
    auto self = srv9p::account_by_uid(::geteuid());
    im->self_name = self && *self ? std::move((*self)->name) : std::to_string(::geteuid());
    im->run_as_id.name = im->self_name;
  }

  // The spool (task.hpp): the daemon's, 0711 when task users must pass through it to
  // their own directories, else 0700. An existing directory others may write to (such
  // as /tmp) is refused: a task user could put links among the daemon's files there.
  const fs::path& spool = im->opts.spool;
  mode_t dir_mode = im->root ? 0711 : 0700;
  for (const fs::path& d : {spool, spool / "task"}) {
    if (::mkdir(d.c_str(), dir_mode) < 0 && errno != EEXIST) {
      return std::unexpected(fmt::format("spool {}: {}", d.string(), errno_text(errno)));
    }
    struct ::stat st;
    if (::lstat(d.c_str(), &st) < 0) return std::unexpected(fmt::format("spool {}: {}", d.string(), errno_text(errno)));
    if (!S_ISDIR(st.st_mode)) return std::unexpected(fmt::format("spool {}: not a directory", d.string()));
    if (st.st_uid != ::geteuid()) {
      return std::unexpected(fmt::format("spool {}: owned by uid {}, not by the daemon's uid {}", d.string(), st.st_uid,
                                         ::geteuid()));
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH | S_ISVTX)) {
      return std::unexpected(fmt::format("spool {}: others may write to it (mode {:04o}): give galaxy-node a directory of its own",
                                         d.string(), st.st_mode & 07777));
    }
    if ((st.st_mode & 07777) != dir_mode && ::chmod(d.c_str(), dir_mode) < 0) {
      return std::unexpected(fmt::format("spool {}: chmod: {}", d.string(), errno_text(errno)));
    }
  }
  if (struct ::stat st; ::lstat(im->trash_dir().c_str(), &st) == 0 && S_ISDIR(st.st_mode)) ::chmod(im->trash_dir().c_str(), 0700);
  im->task_root_fd = above_stdio(::open((spool / "task").c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (im->task_root_fd < 0) return std::unexpected(fmt::format("spool {}: {}", (spool / "task").string(), errno_text(errno)));
  if (im->root) {
    if (auto ok = im->check_reachable(); !ok) return std::unexpected(ok.error());
  } else {
    // Task directories can be made (a spool on a read-only or full file system cannot).
    fs::path probe = spool / "task" / fmt::format(".probe-{}", ::getpid());
    if (::mkdir(probe.c_str(), 0700) < 0 && errno != EEXIST) {
      return std::unexpected(fmt::format("spool: cannot make task directories: {}: {}", probe.string(), errno_text(errno)));
    }
    ::rmdir(probe.c_str());
  }

  // The number record (see the top of this file): every number below it may have been
  // handed out. A record that does not parse is reported and replaced at the next clone;
  // restore() still continues after the highest directory.
  fs::path next_path = im->opts.spool / "next-task";
  im->next_fd = above_stdio(::open(next_path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (im->next_fd < 0) return std::unexpected(fmt::format("{}: {}", next_path.string(), errno_text(errno)));
  ::fchmod(im->next_fd, 0600);  // a spool made by an older daemon
  if (auto text = read_small_file(next_path); text && !text->empty()) {
    std::uint64_t n = 0;
    if (parse_num(std::string_view(*text).substr(0, text->find('\n')), n) && n > 0) {
      im->next_id = n;
    } else {
      im->log(fmt::format("spool: {}: not a number; continuing after the highest task found", next_path.string()));
    }
  }

  const char* path = std::getenv("PATH");
  im->path_env = path != nullptr && *path != '\0' ? path : "/usr/local/bin:/usr/bin:/bin";

  int in = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (in < 0) return std::unexpected(fmt::format("inotify_init1: {}", errno_text(errno)));
  im->inotify.assign(in);
  im->devnull = above_stdio(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (im->devnull < 0) return std::unexpected(fmt::format("/dev/null: {}", errno_text(errno)));
  if constexpr (!fork_spawn) {
    void* s = ::mmap(nullptr, child_stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (s == MAP_FAILED) return std::unexpected(fmt::format("mmap: {}", errno_text(errno)));
    im->stack = s;
  }

  // No helper process of start-up's look-ups may stay behind in the cgroup the daemon
  // leaves for a leaf of its own (srv9p/nss.hpp).
  srv9p::end_lookup_helper();
  im->contain = containment::probe(im->opts.use_cgroups, im->opts.log);

  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa;
  if (::sigaction(SIGCHLD, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN) ::signal(SIGCHLD, SIG_DFL);

  im->arm_inotify();
  im->arm_gc();
  return std::unique_ptr<task_runner>(new task_runner(std::move(im)));
}

std::expected<void, std::string> task_runner::restore() {
  auto& im = *impl_;
  // Directories of removed tasks that a previous daemon had not finished deleting.
  if (std::error_code ec; !fs::is_empty(im.trash_dir(), ec) && !ec) {
    im.run_blocking([trash = im.trash_dir()] {
      std::error_code e;
      for (const auto& d : fs::directory_iterator(trash, e)) remove_dir_tree(d.path());
    });
  }
  fs::path root = im.opts.spool / "task";
  std::error_code ec;
  fs::directory_iterator it(root, ec);
  if (ec) return std::unexpected(fmt::format("{}: {}", root.string(), errno_text(ec.value())));
  std::vector<std::uint64_t> ids;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return std::unexpected(fmt::format("{}: {}", root.string(), errno_text(ec.value())));
    std::string name = it->path().filename().string();
    std::uint64_t id = 0;
    if (!parse_num(name, id) || name[0] == '0') {
      im.log(fmt::format("spool: {}: not a task directory; skipped", it->path().string()));
      continue;
    }
    ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  auto now = now_unix_ms();
  for (auto id : ids) {
    im.next_id = std::max(im.next_id, id + 1);  // never reuse a directory, even a corrupt one
    if (im.tasks.contains(id)) continue;
    fs::path spec = im.dir_of(id) / "spec";
    struct ::stat st;
    if (::stat(spec.c_str(), &st) < 0 ? errno == ENOENT : st.st_size == 0) {
      // Never started (new tasks are not written), or the daemon died starting it: lost.
      auto t = std::make_unique<task>();
      t->id = id;
      t->state = task_state::lost;
      t->end_unix_ms = now;
      task& ref = *t;
      im.tasks[id] = std::move(t);
      im.write_spec_or_log(ref);
      continue;
    }
    auto text = read_small_file(spec);
    if (!text) {
      im.log(fmt::format("spool: {}; skipped", text.error()));
      continue;
    }
    auto t = std::make_unique<task>();
    task_extra x;
    x.on_disk = true;
    if (auto ok = decode_spec(*text, *t, x); !ok) {
      im.log(fmt::format("spool: {}: corrupt ({}); skipped", spec.string(), ok.error()));
      continue;
    }
    if (t->id != id) {
      im.log(fmt::format("spool: {}: corrupt (id={}); skipped", spec.string(), t->id));
      continue;
    }
    bool changed = false;
    if (t->state == task_state::running) {
      // The daemon died while it ran. Its process group is killed if its leader is
      // still the process we started (same pid and start time): pids are recycled.
      if (t->pid > 0 && x.pid_start != 0 && proc_start_ticks(t->pid) == x.pid_start) {
        ::kill(-t->pid, SIGKILL);
      }
      if (!x.cgroup.empty()) {
        im.contain.kill_and_remove(x.cgroup);
        x.cgroup.clear();
      }
      t->state = task_state::lost;
      t->end_unix_ms = now;
      changed = true;
    }
    im.extras[id] = std::move(x);
    im.idents[id] = im.restored_identity(*t);
    task& ref = *t;
    im.tasks[id] = std::move(t);
    if (changed) im.write_spec_or_log(ref);
  }
  return {};
}

std::expected<task*, std::string> task_runner::create_task(std::string_view owner) {
  auto& im = *impl_;
  auto who = im.resolve(owner);
  if (!who) return std::unexpected(who.error());
  if (im.opts.max_new_per_owner > 0) {
    std::size_t n = 0;
    for (const auto& [id, t] : im.tasks) {
      if (t->state == task_state::new_ && t->owner == owner) n++;
    }
    if (n >= im.opts.max_new_per_owner) {
      return std::unexpected(fmt::format("user '{}' has {} tasks not yet started on node {} (the most allowed): start or remove some",
                                         owner, n, im.opts.node_name));
    }
  }
  // Never reuse a directory that is there already (a task restore() has not loaded).
  std::uint64_t id = im.next_id;
  for (;; id++) {
    if (im.tasks.contains(id)) continue;
    if (::mkdir(im.dir_of(id).c_str(), 0700) == 0) break;
    if (errno != EEXIST) return std::unexpected(fmt::format("{}: {}", im.dir_of(id).string(), errno_text(errno)));
  }
  if (auto ok = im.give_task_dir(im.dir_of(id), *who); !ok) return std::unexpected(ok.error());
  // The next number is on disk before this one is handed out: one pwrite(2) of a line
  // that only grows (numbers only grow), so a SIGKILL cannot leave half a number.
  std::string next = fmt::format("{}\n", id + 1);
  if (ssize_t w = ::pwrite(im.next_fd, next.data(), next.size(), 0); w != static_cast<ssize_t>(next.size())) {
    int e = w < 0 ? errno : EIO;
    ::rmdir(im.dir_of(id).c_str());
    return std::unexpected(fmt::format("{}: {}", (im.opts.spool / "next-task").string(), errno_text(e)));
  }
  im.next_id = id + 1;
  // Nothing else on disk until start(): in/ is made by the first file created in it.
  auto t = std::make_unique<task>();
  t->id = id;
  t->owner = std::string(owner);
  t->run_user = who->name;
  im.idents[id] = std::move(*who);
  t->spec.nice = im.default_nice;
  t->created_unix_ms = static_cast<std::uint64_t>(now_unix_ms());
  task* p = t.get();
  im.tasks[id] = std::move(t);
  return p;
}

task* task_runner::find(std::uint64_t id) { return impl_->find(id); }

const std::map<std::uint64_t, std::unique_ptr<task>>& task_runner::tasks() const { return impl_->tasks; }

std::expected<void, std::string> task_runner::save(task& t) {
  if (!impl_->owns(t)) return std::unexpected("no such task");
  if (impl_->starting.contains(t.id)) return std::unexpected("task is being started");
  if (t.state != task_state::new_) return std::unexpected("task has already been started");
  return {};  // new tasks are not written (see the top of this file)
}

std::expected<fs::path, std::string> task_runner::make_in_dir(std::uint64_t id) {
  if (impl_->find(id) == nullptr) return std::unexpected("no such task");
  fs::path in = in_dir(id);
  auto who = impl_->idents.find(id);
  if (who == impl_->idents.end()) return std::unexpected("no such task");
  if (auto ok = impl_->make_user_dir(in, who->second); !ok) return std::unexpected(ok.error());
  return in;
}

std::expected<void, std::string> task_runner::start(task& t) { return impl_->start(t); }

std::optional<std::expected<void, std::string>> task_runner::start(
    task& t, std::function<void(std::expected<void, std::string>)> done) {
  return impl_->start(t, std::move(done));
}

bool task_runner::starting(std::uint64_t id) const { return impl_->starting.contains(id); }

// kill(2) of -pgid: every process of the task's group (the task made its own with setsid).
std::expected<void, std::string> task_runner::kill(task& t, int sig) {
  auto& im = *impl_;
  if (!im.owns(t)) return std::unexpected("no such task");
  auto it = im.procs.find(t.id);
  if (t.state != task_state::running || it == im.procs.end()) return std::unexpected("task is not running");
  if (sig < 1 || sig >= NSIG) return std::unexpected(fmt::format("bad signal {}", sig));
  // The cgroup holds what left the group (setsid); the group what a cgroup-less node has.
  const std::string& cg = im.extras[t.id].cgroup;
  if (!cg.empty()) im.contain.signal(cg, sig);
  if (::kill(-it->second.pid, sig) < 0 && cg.empty()) return std::unexpected(fmt::format("kill: {}", errno_text(errno)));
  return {};
}

std::expected<void, std::string> task_runner::fence(task& t, std::string why) {
  auto& im = *impl_;
  if (!im.owns(t) || t.state != task_state::running || !im.procs.contains(t.id)) {
    return std::unexpected("task is not running");
  }
  im.extras[t.id].fence_why = std::move(why);
  return kill(t, SIGKILL);
}

void task_runner::kill_all() {
  for (const auto& [id, p] : impl_->procs) {
    if (auto x = impl_->extras.find(id); x != impl_->extras.end() && !x->second.cgroup.empty()) {
      impl_->contain.signal(x->second.cgroup, SIGKILL);
    }
    ::kill(-p.pid, SIGKILL);
  }
}

std::expected<int, int> task_runner::open_below(std::uint64_t id, bool out, std::string_view rel, int flags,
                                                mode_t mode) const {
  if (impl_->find(id) == nullptr) return std::unexpected(ENOENT);
  std::string path = fmt::format("{}/{}", id, out ? "out" : "in");
  if (!rel.empty()) {
    path += '/';
    path += rel;
  }
  fs_identity_scope as(impl_->fs_of(id));
  return open_beneath(impl_->task_root_fd, path, flags, mode);
}

fs_identity task_runner::identity(std::uint64_t id) const { return impl_->fs_of(id); }

std::string_view task_runner::containment_mode() const { return impl_->contain.mode_name(); }
std::string task_runner::containment_limits() const { return impl_->contain.limits_name(); }

std::expected<void, std::string> task_runner::remove(std::uint64_t id,
                                                     std::function<void(std::expected<void, std::string>)> done) {
  return impl_->remove(id, std::move(done));
}

std::size_t task_runner::collect_garbage() { return impl_->collect_garbage(); }

fs::path task_runner::dir_of(std::uint64_t id) const { return impl_->dir_of(id); }

int task_runner::stdin_fd(std::uint64_t id) const {
  auto it = impl_->procs.find(id);
  return it == impl_->procs.end() ? -1 : it->second.stdin_w;
}

void task_runner::close_stdin(std::uint64_t id) {
  auto it = impl_->procs.find(id);
  if (it == impl_->procs.end() || it->second.stdin_w < 0) return;
  ::close(it->second.stdin_w);
  it->second.stdin_w = -1;
}

std::size_t task_runner::running() const { return impl_->procs.size(); }

void task_runner::set_max_tasks(std::size_t n) { impl_->opts.max_tasks = n; }

void task_runner::set_default_nice(int n) { impl_->default_nice = std::clamp(n, -20, 19); }
int task_runner::default_nice() const { return impl_->default_nice; }
std::size_t task_runner::max_tasks() const { return impl_->opts.max_tasks; }

}  // namespace node
