#pragma once
// The node's task runner: creates tasks, starts their processes, reaps them, enforces
// their limits, and keeps their results in the spool so that they survive a restart.
// It knows nothing of 9P; node/tree.* turns it into files.
//
// Spool layout, one directory per task (N is the task number), made at create_task():
//   SPOOL/task/N/spec     the task's spec and state: written at start, one record appended
//                         at the end (task.cpp says why that is enough for a restart); a
//                         task never started has none
//   SPOOL/task/N/stdout   the process's standard output, written by the process itself
//   SPOOL/task/N/stderr   likewise (output never passes through the daemon's memory)
//   SPOOL/task/N/in/      files placed in the working directory before exec; made by the
//                         first file put there (make_in_dir) or at start; it is the
//                         working directory itself unless `dir PATH` chose another, in
//                         which case its files are copied there at exec
//   SPOOL/task/N/out/     $GALAXY_OUT, made at start: files the task writes there are its
//                         results
//   SPOOL/trash/          directories of removed tasks, renamed here and then deleted
//   SPOOL/next-task       the next task number, one decimal line: no number below it is
//                         handed out again, even after its task was removed
//
// Processes: started with clone(CLONE_VM)+exec (never a fork of the daemon's whole
// address space), running none of the task's code before the spec record naming the
// process is on disk (task.cpp says why); each in a session and process group of its own so that kill reaches every descendant;
// at nice 19 and SCHED_IDLE by default (idle harvesting); as an unprivileged user when the
// daemon is root; with RLIMIT_AS or a cgroup v2 memory.max for `mem`, and a timer for
// `time`. Exits are learnt from a pidfd per process (no SIGCHLD handler, no polling) and
// reaped with wait4 for their rusage; what the process left running in its group is then
// killed, so a task's end is the end of all of it. When the daemon is root, in/ and out/
// are given to the run_as user at start. Growth of stdout/stderr is learnt from inotify, so
// streaming readers wake when output arrives.
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
// (the daemon died while it ran; found so by restore()).
enum class task_state : std::uint8_t { new_, running, done, failed, killed, lost };
std::string_view state_name(task_state s);  // "new", "running", "done", ...

struct task {
  std::uint64_t id = 0;
  task_spec spec;
  task_state state = task_state::new_;
  pid_t pid = 0;
  // How it ended: exit status (done: 0, failed: the code), the signal that killed it, or
  // an error text for a task that never ran ("exec: /no/such: file does not exist").
  int exit_code = 0;
  int signal = 0;
  std::string error;
  bool timed_out = false;                // killed by its time limit
  std::uint64_t user_ms = 0, sys_ms = 0;  // CPU time used, from wait4's rusage
  std::uint64_t maxrss_bytes = 0;
  std::int64_t start_unix_ms = 0, end_unix_ms = 0;  // wall-clock times; 0: not yet
  std::uint64_t created_unix_ms = 0;

  bool finished() const {
    return state == task_state::done || state == task_state::failed || state == task_state::killed ||
           state == task_state::lost;
  }
  // The text of the wait file: "exit 0", "exit 3", "signal 9", "error TEXT", "lost".
  std::string wait_text() const;
  // The one line of the status file, without a newline:
  // "id=N state=running pid=123 exit=0 usertime=12 systime=3 maxrss=1048576
  //  start=1700000000000 end=0". usertime and systime are CPU milliseconds, maxrss is
  // bytes, start and end are Unix milliseconds (0: not yet).
  std::string status_line() const;
};

struct runner_options {
  std::filesystem::path spool;              // created if missing
  // When the daemon runs as root, tasks run as this user (default "nobody"); ignored
  // otherwise. A user that does not exist is a start-up error.
  std::string run_as = "nobody";
  bool use_cgroups = true;                  // try cgroup v2 for mem; fall back to RLIMIT_AS
  // Finished tasks are removed this long after their end (galaxy-node --keep-finished).
  std::chrono::milliseconds finished_ttl{std::chrono::hours(24)};
  std::size_t max_tasks = 0;                // running at once; 0: no limit
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
  // across restarts) cannot be opened for writing, the run_as user does not exist,
  // inotify(7).
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

  // A new task in state new, with its spool directory made and the number after it
  // written to SPOOL/next-task first. Errors: the disk.
  std::expected<task*, std::string> create_task();
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
  // being started", "nothing to exec", "too many tasks running (maxtasks N)", and the
  // disk (the spec record, which must be written before the task's process may go on),
  // pipe2(2) or clone(2). (Draining is the tree's to refuse.)
  // A program that cannot be executed is not an error here: the task becomes failed
  // with error "exec: PATH: file does not exist" and finished() is called.
  // This form does the blocking part (copying in/ to `dir`, giving in/'s files to the
  // run_as user) on the calling thread.
  std::expected<void, std::string> start(task& t);
  // The same, with the blocking part on the runner's worker thread when there is one (the
  // task has an in/ directory). Returns the result when there was none (done is not
  // called); else nothing, and done gets the result later on the io thread. Meanwhile
  // starting(id) is true, and start, save and remove refuse the task.
  std::optional<std::expected<void, std::string>> start(task& t,
                                                        std::function<void(std::expected<void, std::string>)> done);
  bool starting(std::uint64_t id) const;
  // Sends sig to the task's process group, kill(2) of -pgid. Errors: "task is not
  // running", "bad signal N".
  std::expected<void, std::string> kill(task& t, int sig);
  // Kills every running task (SIGKILL).
  void kill_all();
  // Forgets a finished or new task at once and deletes its spool directory: renamed into
  // SPOOL/trash/ here, deleted there by the worker thread (restore() finishes what a
  // previous daemon left). done, if given, is called on the io thread once the files are
  // gone, with the deletion's error if any. Errors (nothing changes): "task is running",
  // "task is being started", "no such task", rename(2).
  std::expected<void, std::string> remove(std::uint64_t id,
                                          std::function<void(std::expected<void, std::string>)> done = {});
  // Removes finished tasks that ended finished_ttl or longer ago, calling hooks.removed
  // for each; returns how many. The runner does this on a timer (every finished_ttl,
  // clamped to 1 s .. 1 min).
  std::size_t collect_garbage();

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
