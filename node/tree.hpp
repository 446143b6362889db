#pragma once
// galaxy-node's file tree (man/man4/galaxy-node.4), on the srv9p tree API:
//
//   /status /arch /cpu/N /mem /labels /ctl /events
//   /task/clone
//   /task/N/{ctl,status,wait,stdin,stdout,stderr}  /task/N/in/  /task/N/out/
//
// Static levels are Dirtab tables; task/N and cpu/N are generated; in/ and out/ show the
// task's spool directories on disk, reached only through node/safe_fs.hpp. Reads that must wait (events, wait, stdout and stderr
// of a running task) are parked requests, woken by the task runner's hooks and cancelled
// by Tflush. ctl input is taken by lines (ctl/ctlmsg.hpp line_buffer).
//
// Fencing (issue 13, "No finished job runs twice"; galaxy-node(4) `lease`, galaxy-node(8)
// FENCING). The scheduler that marks a silent node down requeues its jobs elsewhere; the
// node's copies must not run on to their end meanwhile, or a job completes twice. So the
// scheduler gives the node a lease: it writes `lease MS` to /ctl on its own connection
// (a 9P session, told apart by fid::session_id) and attach name. From then on:
//   - the lease is renewed by every read of /status made on that session under that
//     name: galaxy-sched's heartbeat, which sends one read at a time and marks the node
//     down when one goes unanswered for --down-after. Nothing else renews it: not a local
//     user's reads (another session), not the users' requests the scheduler relays on
//     its session (their own attach names), not its other requests, which may be sent
//     after the heartbeat it is waiting on and so would stretch the lease past its
//     deadline (galaxy-sched(8) gives the rule that keeps MS below that deadline);
//   - tasks made through task/clone on that session while the lease is in force are the
//     scheduler's (leased_tasks_; not persisted: a daemon restart finds its running tasks
//     lost anyway). Tasks made by anyone else are never fenced;
//   - MS milliseconds after the last renewal (CLOCK_BOOTTIME, so a suspended machine's
//     sleep counts; a stopped daemon's time counts too, so it fences as soon as it runs
//     again, before any renewal that waited in its socket meanwhile counts), every
//     running task of the scheduler's is killed and becomes lost with
//     error "fenced: no word from the scheduler for N ms", /events gets "fence N" and
//     the log a line. A task of the scheduler's that starts after that is fenced at
//     start. A later renewal on the same session (a network hiccup that the scheduler
//     rode out) puts the lease back in force; so does a new `lease` write, on any
//     session, which takes the lease over. `lease 0` ends it: no fencing. A node whose
//     scheduler never writes `lease` never fences.
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <functional>
#include <optional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "node/task.hpp"
#include "srv9p/event_log.hpp"
#include "srv9p/parked.hpp"
#include "srv9p/tree.hpp"

namespace node {

struct node_options {
  std::string name;                     // the node's name (default: the host name)
  std::string admin;                    // owner of /ctl and of the tree (the daemon's user)
  std::uint32_t cpus = 0;               // advertised CPUs; 0: the machine's online CPUs
  std::uint64_t mem_bytes = 0;          // advertised memory; 0: the machine's MemTotal
  std::vector<std::pair<std::string, std::string>> labels;  // --label K=V
  std::size_t event_backlog = 4096;     // events kept for readers that fall behind
  std::size_t stdin_buffer_bytes = 1 << 20;  // stdin written before exec, held until exec
  // All of one user's tasks' stdin held before exec: with --max-new-tasks new tasks each
  // holding stdin_buffer_bytes, one user could otherwise make the node hold a GiB.
  std::size_t stdin_buffer_bytes_per_user = 64 << 20;
  // Where the tree writes a line about what it did on its own (a fence). Default: none.
  std::function<void(std::string_view)> log;
};

class node_tree : public srv9p::tree {
 public:
  // The runner's hooks must call started()/finished()/output() (see make_hooks()).
  node_tree(asio::io_context& io, node_options opts);
  ~node_tree() override;

  // Hooks for task_runner::create that route its events to this tree. Call before the
  // runner exists; then attach it with set_runner.
  task_runner::hooks make_hooks();
  void set_runner(task_runner* r) { runner_ = r; }

  std::expected<srv9p::dir, std::string> attach(std::string_view uname, std::string_view aname) override;
  std::expected<srv9p::dir, std::string> walk1(const srv9p::dir& parent, std::string_view name,
                                               std::string_view uname) override;
  std::expected<std::vector<srv9p::dir>, std::string> list(const srv9p::dir& d, std::string_view uname) override;
  std::expected<srv9p::dir, std::string> stat1(const srv9p::dir& f) override;
  void open(srv9p::request r) override;
  void create(srv9p::request r) override;
  void read(srv9p::request r) override;
  void write(srv9p::request r) override;
  // task/N is removed as the ctl command rm does, by its owner or the admin (write
  // permission on task/N itself; task/ is 0555 and says nothing). Inside it, in/'s files
  // and directories are removed for real (write permission on their parent); every
  // other file, and in/ and out/ themselves, answer a remove with success and do nothing
  // while the task may be removed (not running), so that `rm -r task/N` ends by removing
  // task/N, which takes them all; while it runs they are refused ("task is running").
  void remove(srv9p::request r) override;
  // A wstat of length 0 (truncate(2); the kernel's O_TRUNC, with its times) on a file
  // below in/ empties it, as the task's user; other wstats are srv9p::tree's.
  void wstat(srv9p::request r) override;
  bool may_remove(const srv9p::fid& f, const srv9p::dir& parent) const override;
  void clunk(srv9p::fid& f) override;

  // The one-line text of /status.
  std::string status_text() const;
  bool draining() const { return draining_; }

 public:
  struct ctl_state;  // per-open state of ctl files

 private:
  struct parked;
  struct stdin_state;

  void on_started(const task& t);
  void on_finished(const task& t);
  void on_output(const task& t);

  using ctl_done = std::function<void(std::expected<void, std::string>)>;
  // One /ctl command, written through fid f (its session and attach name matter to lease).
  std::expected<void, std::string> node_ctl(std::string_view line, const srv9p::fid& f);

  // The lease (see the top of this file). set_lease: `lease MS` written through f.
  // renew_lease: a read of /status through f. check_lease: the timer; fences when due.
  // fence_now: kills the scheduler's running tasks, silent_ms since the last renewal.
  void set_lease(std::uint32_t ms, const srv9p::fid& f);
  void renew_lease(const srv9p::fid& f);
  void arm_lease();
  void check_lease();
  void fence_now(std::int64_t silent_ms);
  std::string fence_why(std::int64_t silent_ms) const;
  // One task ctl command. Returns its result, or nothing when it finishes later (exec of
  // a task whose in/ the worker prepares; rm, whose files the worker deletes): done is
  // then called with the result on the io thread.
  std::optional<std::expected<void, std::string>> task_ctl(task& t, std::string_view line, ctl_done done);
  // The whole command lines in a piece of ctl input: a short write without a newline is
  // taken as a whole line too (echo -n), a write that fills a 4 KiB page or the
  // connection's largest write (max_write: msize - 24) without one is held for the next
  // piece (ctl::line_buffer::feed_write). Blank lines are dropped.
  std::vector<std::string> ctl_lines(ctl_state& c, std::string_view data, std::size_t max_write);
  // Runs lines[i...] in order, stopping at the first error (its text is the Rerror); the
  // Rwrite when all succeeded. Lines after one that finishes later run when it has.
  void run_ctl(srv9p::request r, std::uint64_t task_id, std::shared_ptr<std::vector<std::string>> lines,
               std::size_t i);
  void forget(std::uint64_t id);  // drops the tree's state of a removed task

  void serve_wait(srv9p::request r, std::uint64_t id);
  void serve_output(srv9p::request r, std::uint64_t id, bool err);
  void park(std::uint64_t key, srv9p::request r);
  void wake(std::uint64_t key);
  void write_stdin(srv9p::request r, task& t);

  // The dir of a task's file; atime and mtime are the task's latest of made, started and
  // ended.
  srv9p::dir task_file(std::uint16_t kind, const task& t) const;
  // The dir of a fixed file (status, cpu/N, task/clone, ...); atime and mtime are the
  // daemon's start.
  srv9p::dir fixed_dir(const srv9p::dirtab_entry& e, std::uint64_t instance) const;
  static void stamp(srv9p::dir& d, std::uint32_t unix_s);
  // Files under a task's in/ or out/ on disk, by a qid instance number each; rel is the
  // path below in/ or out/ ("" for the directory itself).
  std::uint64_t disk_id(const std::string& rel, std::uint64_t task, bool writable);
  std::expected<srv9p::dir, std::string> disk_dir(std::uint64_t id) const;
  // Opens rel below the task's in/ (writable) or out/ through the runner's safe access
  // (node/safe_fs.hpp). Returns the descriptor or the errno.
  std::expected<int, int> open_disk(std::uint64_t task, bool writable, const std::string& rel, int flags,
                                    mode_t mode = 0) const;
  // Where a directory of in/, out/ or below is: its task, area and rel. Errors: not_found.
  struct disk_where_t {
    std::uint64_t task;
    bool writable;
    std::string rel;
  };
  std::expected<disk_where_t, std::string> disk_where(const srv9p::dir& d) const;

  asio::io_context& io_;
  node_options opts_;
  std::uint32_t start_unix_s_;  // when the daemon started: the mtime of fixed files
  task_runner* runner_ = nullptr;
  bool draining_ = false;
  int share_pct_ = 100;
  std::map<std::string, std::string> labels_;

  // The lease: its length (0: none), the session and attach name that hold it, when it
  // was last renewed (CLOCK_BOOTTIME ms), whether it ran out (fenced) and when.
  struct lease_state {
    std::uint32_t ms = 0;
    std::uint64_t session = 0;
    std::string uname;
    std::int64_t renewed_ms = 0;
    bool fenced = false;
    std::int64_t fenced_silent_ms = 0;
  };
  lease_state lease_;
  asio::steady_timer lease_timer_;
  // After a long read, glibc keeps the freed reply buffer at the top of its heap for the
  // next Tread (its trim threshold follows the largest block freed), so a stream of reads
  // reuses one buffer without page faults. note_long_reply (a Rread of 256 KiB or more)
  // arms trim_timer_, which returns that memory to the kernel (malloc_trim) once no long
  // reply has gone out for 2 s: the daemon's memory at rest stays what it was before.
  void note_long_reply(std::size_t bytes);
  asio::steady_timer trim_timer_;
  std::unordered_set<std::uint64_t> leased_tasks_;  // the scheduler's tasks, by id

  srv9p::event_log events_;  // /events: start, exit, drain, ...
  // Parked reads of wait, stdout and stderr, by key (task id * 4 + 1, 2, 3).
  srv9p::parked_reads parked_;

  std::unordered_map<std::uint64_t, std::unique_ptr<stdin_state>> stdin_;  // by task id
  std::unordered_map<std::string, std::size_t> stdin_held_;  // before_exec bytes, by owner
  void release_held(stdin_state& st);  // before_exec is about to go: uncount it
  // A file or directory below a task's in/ or out/, known by a qid instance number. It is
  // kept as a path below in/ or out/, never as a path on disk: every access resolves it
  // anew beneath the spool's task directory, refusing links (node/safe_fs.hpp).
  struct disk_entry {
    std::string rel;        // below in/ or out/: names joined by '/', each legal_name()
    std::uint64_t task = 0;
    bool writable = false;  // under in/ (the owner may write) rather than out/
  };
  // By task, "in/rel" or "out/rel" → its number in disk_; both lose a task's entries when
  // the task is removed (forget), so the tables hold only what live tasks' clients walked.
  std::unordered_map<std::uint64_t, std::unordered_map<std::string, std::uint64_t>> disk_ids_;
  std::unordered_map<std::uint64_t, disk_entry> disk_;
  std::uint64_t next_disk_id_ = 0;
  const disk_entry* disk_at(std::uint64_t id) const;  // nullptr: not (or no longer) known
};

}  // namespace node
