#pragma once
// The node's task runner: creates tasks, starts their processes, reaps them, enforces
// their limits, and keeps their results in the spool so that they survive a restart.
// It knows nothing of 9P; node/tree.* turns it into files.
//
// Spool layout, one directory per task (N is the task number), made at create_task():
//   SPOOL/                0711 (0700 when the daemon is not root), the daemon's: task users
//                         may pass through it to their own directories, not list it
//   SPOOL/task/           likewise
//   SPOOL/task/N/         the daemon's, group the task user's primary group, 0710: the
//                         user reaches in/ and out/ through it, may neither list nor change
//                         it, so it cannot replace spec, stdout or stderr with links
//   SPOOL/task/N/spec     the task's spec and state, 0600: written at start, one record
//                         appended at the end (task.cpp says why that is enough for a
//                         restart); a task never started has none
//   SPOOL/task/N/stdout   the process's standard output, 0600, opened by the daemon and
//                         handed to the process (output never passes through the daemon's
//                         memory)
//   SPOOL/task/N/stderr   likewise
//   SPOOL/task/N/in/      the task user's, 0700: files placed in the working directory
//                         before exec; made by the first file put there (make_in_dir) or
//                         at start; it is the working directory itself unless `dir PATH`
//                         chose another, in which case its files are copied there at exec
//   SPOOL/task/N/out/     the task user's, 0700: $GALAXY_OUT, made at start: files the task
//                         writes there are its results
//   SPOOL/trash/          0700: directories of removed tasks, renamed here and then deleted
//   SPOOL/next-task       0600: the next task number, one decimal line: no number below it
//                         is handed out again, even after its task was removed
//
// Who a task runs as (as Slurm runs a job as its submitter): its owner, the user name of
// the client that made it, looked up through NSS (getpwnam_r) with that user's groups
// (getgrouplist), when the daemon is root. An owner unknown on the node is refused at
// create_task ("user 'alice' is unknown on node n1") unless unknown_user names an account
// to run such tasks as. A task of root's (uid 0) runs as run_as (nobody) unless
// allow_root_tasks. A daemon that is not root runs tasks as itself only, and refuses a
// task of any other user. Every file access below in/ and out/ made on a task's behalf
// goes through node/safe_fs.hpp, with that user's file-system identity.
//
// Processes: started with clone(CLONE_VM)+exec (never a fork of the daemon's whole
// address space), running none of the task's code before the spec record naming the
// process is on disk (task.cpp says why); each in a session and process group of its
// own, and in a cgroup v2 of its own where one can be had (node/contain.hpp), so that
// kill reaches every descendant; at nice 19 and SCHED_IDLE by default (idle harvesting);
// with a cgroup memory.max or RLIMIT_AS for `mem`, cpu.max for `cpu` where delegated, and
// a timer for `time`. Exits are learnt from a pidfd per process (no SIGCHLD handler, no
// polling) and reaped with wait4 for their rusage; what the process left running in its
// cgroup (or, without one, its process group) is then killed, so a task's end is the end
// of all of it. Growth of stdout/stderr is learnt from inotify, so streaming readers wake
// when output arrives.
//
// Everything runs on one io_context; the callbacks run on it too. Blocking file-system
// work (deleting a removed task's directory, copying in/ to another working directory)
// runs on one worker thread, made when first needed, whose results come back to the
// io_context.
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "node/safe_fs.hpp"

namespace node {

// What a task runs: set by ctl commands before exec, fixed after.
struct task_spec {
  // argv[0] is looked up in the task's PATH (below) if it has no '/', by the task's user
  // in its working directory (execvp(3)'s rules; directories that user cannot search are
  // passed over).
  std::vector<std::string> argv;
  std::string dir;                   // working directory; empty: the task's in/ directory
  // "K=V", added to (or replacing in) the base environment: PATH (the daemon's), HOME (the
  // task's in/), LANG=C.UTF-8, GALAXY_OUT (its out/), GALAXY_TASK (its id).
  std::vector<std::string> env;
  std::uint32_t cpu_millis = 0;      // the CPU it asked for (advisory here; for schedulers)
  std::uint64_t mem_bytes = 0;       // memory limit in bytes; 0: none
  std::uint64_t timeout_ms = 0;      // killed (SIGKILL to the group) after this; 0: none
  int nice = 19;                     // 19 also means SCHED_IDLE; lower values are SCHED_OTHER
  // Standard input: a pipe that the node feeds from task/N/stdin (chosen when someone
  // opened that file before exec), else /dev/null, so that a task reading its stdin
  // never waits for a writer who will not come.
  bool stdin_pipe = false;
};

// new → running → done | failed | killed;  new → failed (exec error);  running → lost
// (the daemon died while it ran, found so by restore(); or the node fenced it, fence()).
enum class task_state : std::uint8_t { new_, running, done, failed, killed, lost };
std::string_view state_name(task_state s);  // "new", "running", "done", ...

struct task {
  std::uint64_t id = 0;
  // The user name of the client that made it; empty for a task made through the runner's
  // API without one (it runs as run_as, or as the daemon when the daemon is not root).
  std::string owner;
  // The account it runs as (owner, or what owner was mapped to: run_as, unknown_user).
  std::string run_user;
  task_spec spec;
  task_state state = task_state::new_;
  pid_t pid = 0;
  // How it ended: exit status (done: 0, failed: the code), the signal that killed it, or
  // an error text for a task that never ran ("exec: /no/such: file does not exist"), or
  // for a lost task, why it was lost when the node knows ("fenced: no word from the
  // scheduler for 1203 ms").
  int exit_code = 0;
  int signal = 0;
  std::string error;
  bool timed_out = false;                // killed by its time limit
  bool oom_killed = false;               // killed by the OOM killer at its cgroup's memory.max
  std::uint64_t user_ms = 0, sys_ms = 0;  // CPU time used, from wait4's rusage
  std::uint64_t maxrss_bytes = 0;
  std::int64_t start_unix_ms = 0, end_unix_ms = 0;  // wall-clock times; 0: not yet
  std::uint64_t created_unix_ms = 0;

  bool finished() const {
    return state == task_state::done || state == task_state::failed || state == task_state::killed ||
           state == task_state::lost;
  }
  // The text of the wait file: "exit 0", "exit 3", "signal 9", "signal 9 out of memory"
  // (the OOM killer ended it at its mem), "error TEXT", "lost", or "lost WHY" (a task the
  // node fenced: "lost fenced: no word from the scheduler for 1203 ms").
  std::string wait_text() const;
  // The one line of the status file, without a newline:
  // "id=N state=running pid=123 exit=0 usertime=12 systime=3 maxrss=1048576
  //  start=1700000000000 end=0". usertime and systime are CPU milliseconds, maxrss is
  // bytes, start and end are Unix milliseconds (0: not yet).
  std::string status_line() const;
};

struct runner_options {
  std::filesystem::path spool;              // created if missing
  std::string node_name;                    // for error texts ("unknown on node n1")
  // When the daemon runs as root, tasks of root's (uid 0) and tasks without an owner run as
  // this account (default "nobody"); ignored otherwise. An account that does not exist,
  // or is root without allow_root_tasks, is a start-up error.
  std::string run_as = "nobody";
  // Tasks of owners unknown on this node run as this account; empty: they are refused.
  std::string unknown_user;
  bool allow_root_tasks = false;            // tasks of root's run as root
  bool use_cgroups = true;                  // a cgroup v2 per task; false: process groups
  // pids.max of each task's cgroup where the pids controller is delegated
  // (galaxy-node --task-pids-max; node/contain.hpp); 0: none.
  std::uint64_t task_pids_max = 4096;
  // Finished tasks are removed this long after their end (galaxy-node --keep-finished).
  std::chrono::milliseconds finished_ttl{std::chrono::hours(24)};
  std::size_t max_tasks = 0;                // running at once; 0: no limit
  // Tasks made by clone but never started are removed this long after they were made
  // (galaxy-node --new-task-timeout; galaxy-sched's --new-job-timeout for jobs): a client
  // that clunks its clone fid without exec leaves nothing behind for longer. 0: never.
  std::chrono::milliseconds new_task_ttl{std::chrono::minutes(10)};
  // Tasks not yet started that one owner may have at once (galaxy-node
  // --max-new-tasks); create_task refuses more. 0: no limit.
  std::size_t max_new_per_owner = 1024;
  // Where the runner reports what it skipped or worked around (a corrupt spec file, a
  // cgroup it could not create); one line each, no newline. Default: nowhere.
  std::function<void(std::string_view)> log;
};

class task_runner {
 public:
  // Callbacks, all on the io_context: a task started (pid known); a task finished
  // (state final); a task's stdout or stderr grew (and once more when it finished, before
  // finished). None is ever called from inside a runner function: start() posts started,
  // and posts finished for a program that could not be executed.
  struct hooks {
    std::function<void(const task&)> started;
    std::function<void(const task&)> finished;
    std::function<void(const task&)> output;
    // A task was removed by garbage collection (not by remove()).
    std::function<void(std::uint64_t id)> removed;
  };

  // Errors: the spool cannot be created, SPOOL/next-task (the next task number, kept
  // across restarts) cannot be opened for writing, the run_as or unknown_user account
  // does not exist (or is root without allow_root_tasks), task users could not reach
  // their task directories (a directory above the spool they cannot search: checked by
  // making a task directory for run_as and opening it by name as run_as), inotify(7).
  // Decides the containment (node/contain.hpp) and logs it.
  // Process-wide effects: SIGPIPE is ignored (a write to the stdin of a task that has
  // ended must fail with EPIPE, not kill the daemon) and SIGCHLD is set back to SIG_DFL
  // if it was ignored (wait4(2) needs the zombies). Tasks get default dispositions.
  static std::expected<std::unique_ptr<task_runner>, std::string> create(asio::io_context& io,
                                                                         runner_options opts, hooks h);
  ~task_runner();  // kills nothing: running tasks are found lost by the next restore()

  // Reads the spool back: finished tasks reappear as they were; tasks that were running
  // are marked lost (their process groups are sent SIGKILL), and so are tasks that were
  // never started. New ids continue after the highest ever handed out (SPOOL/next-task,
  // read by create()) and after the highest directory found: a number is never reused.
  std::expected<void, std::string> restore();

  // A new task in state new, owned by owner (see the top of this file; empty: none), with
  // its spool directory made and the number after it written to SPOOL/next-task first.
  // Errors (nothing made): "user 'alice' is unknown on node n1", "this node runs tasks
  // only as its own user 'bob' (galaxy-node is not root), not as 'alice'", "user 'alice'
  // has 1024 tasks not yet started on node n1 (the most allowed): start or remove some",
  // the disk.
  std::expected<task*, std::string> create_task(std::string_view owner = {});
  task* find(std::uint64_t id);
  const std::map<std::uint64_t, std::unique_ptr<task>>& tasks() const;

  // Checks that a task may still change its spec (after each ctl command). A new task is
  // not written to disk: a daemon that dies before its exec finds it lost. Errors: "task
  // has already been started", "no such task".
  std::expected<void, std::string> save(task& t);
  // The task's in/ directory, made if missing (before a file is put there). Errors: "no
  // such task", the disk.
  std::expected<std::filesystem::path, std::string> make_in_dir(std::uint64_t id);
  // Starts it. Errors (the task stays new): "task has already been started", "task is
  // being started", "nothing to exec", "too many tasks running (maxtasks N)", the owner's
  // (create_task's errors, looked up again: a user may have gone since), "task cgroup:
  // ..." (a node that contains its tasks does not run one it cannot), and the disk (the
  // spec record, which must be written before the task's process may go on), pipe2(2)
  // or clone(2). (Draining is the tree's to refuse.)
  // A program that cannot be executed is not an error here: the task becomes failed
  // with error "exec: PATH: file does not exist" and finished() is called.
  // This form does the blocking part (copying in/ to `dir`, as the task's user) on the
  // calling thread.
  std::expected<void, std::string> start(task& t);
  // The same, with the blocking part on the runner's worker thread when there is one (the
  // task has an in/ directory). Returns the result when there was none (done is not
  // called); else nothing, and done gets the result later on the io thread. Meanwhile
  // starting(id) is true, and start, save and remove refuse the task.
  std::optional<std::expected<void, std::string>> start(task& t,
                                                        std::function<void(std::expected<void, std::string>)> done);
  bool starting(std::uint64_t id) const;
  // Sends sig to every process of the task: its cgroup's (SIGKILL by cgroup.kill) and its
  // process group's, kill(2) of -pgid. Errors: "task is not running", "bad signal N".
  std::expected<void, std::string> kill(task& t, int sig);
  // Kills every running task (SIGKILL).
  void kill_all();
  // Fencing (node/tree.hpp, the lease): kills a running task (SIGKILL to all of it) and
  // records why, so that once reaped it is lost with error why ("fenced: no word from the
  // scheduler for 1203 ms"): its run does not count, as a lost task's does not. A task
  // whose process exited by itself before the signal keeps its own exit. Errors: "task is
  // not running".
  std::expected<void, std::string> fence(task& t, std::string why);
  // Forgets a finished or new task at once and deletes its spool directory: renamed into
  // SPOOL/trash/ here, deleted there by the worker thread (restore() finishes what a
  // previous daemon left). done, if given, is called on the io thread once the files are
  // gone, with the deletion's error if any. Errors (nothing changes): "task is running",
  // "task is being started", "no such task", rename(2).
  std::expected<void, std::string> remove(std::uint64_t id,
                                          std::function<void(std::expected<void, std::string>)> done = {});
  // Removes finished tasks that ended finished_ttl or longer ago, and tasks never started
  // that were made new_task_ttl or longer ago (not one being started), calling
  // hooks.removed for each; returns how many. The runner does this on a timer (every
  // finished_ttl or new_task_ttl, the shorter, clamped to 1 s .. 1 min).
  std::size_t collect_garbage();

  // Safe access below a task's in/ (out false) or out/ (node/safe_fs.hpp): opens rel
  // ("" for in/ or out/ itself) beneath the spool's task directory with openat2, following
  // no link, as the task's user. Returns the descriptor or the errno (ENOENT for an
  // unknown task).
  std::expected<int, int> open_below(std::uint64_t id, bool out, std::string_view rel, int flags,
                                     mode_t mode = 0) const;
  // The task user's file-system identity, for *at(2) calls on descriptors from open_below
  // (inside an fs_identity_scope).
  fs_identity identity(std::uint64_t id) const;
  // "cgroup" or "pgroup" (node/contain.hpp).
  std::string_view containment_mode() const;
  // The limits a task's cgroup gets: "memory,cpu,pids", fewer, or "none".
  std::string containment_limits() const;

  // Paths inside a task's spool directory.
  std::filesystem::path dir_of(std::uint64_t id) const;
  std::filesystem::path stdout_path(std::uint64_t id) const { return dir_of(id) / "stdout"; }
  std::filesystem::path stderr_path(std::uint64_t id) const { return dir_of(id) / "stderr"; }
  std::filesystem::path in_dir(std::uint64_t id) const { return dir_of(id) / "in"; }
  std::filesystem::path out_dir(std::uint64_t id) const { return dir_of(id) / "out"; }
  // Where the task's stdin can be written while it runs (a pipe's write end), or -1.
  int stdin_fd(std::uint64_t id) const;
  // Closes the task's stdin (the last writer let go).
  void close_stdin(std::uint64_t id);

  std::size_t running() const;
  void set_max_tasks(std::size_t n);
  std::size_t max_tasks() const;  // 0: no limit
  int default_nice() const;
  void set_default_nice(int n);  // -20..19; create_task() puts it in the new task's spec

 private:
  struct impl;
  explicit task_runner(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
};

}  // namespace node
