#pragma once
// galaxy-sched's durable job store: every job, node and quota the scheduler must not
// forget, in one SQLite file (STATE/sched.db by convention; the daemon picks the name).
//
// Arrangement. Reads (load_*) are synchronous and meant for start-up. Writes are
// asynchronous and group-committed: put()/remove()/put_node()/remove_node()/put_quota()
// queue one change each and return at once; one writer thread takes everything queued
// since its last commit, applies it in ONE transaction (one WAL fsync with
// synchronous=FULL), and only then calls each change's done_fn, in queue order, on the
// writer thread. So a caller that answers a client from done_fn answers only about durable
// state, and many concurrent submitters share one fsync. This is group commit as in
// DeWitt et al., "Implementation techniques for main memory database systems" (SIGMOD
// 1984), and PostgreSQL's WAL writer with commit_delay = 0: the next batch is whatever
// arrived while the previous one was being made durable; nobody waits for a timer.
//
// Schema (sched/store.cpp, `migrations`): tables jobs, nodes (dialled and joined), quotas and cut_off, one row per
// record, columns named as the record fields. Migrations are one append-only array;
// PRAGMA user_version says how many have run (as Chromium sql::MetaTable and Core
// Lightning's wallet/db.c do). A file written by a newer program (user_version greater
// than the number of migrations known here) is refused at open.
//
// Thread safety: every public function may be called from any thread. load_* and
// max_job_id share the one SQLite connection with the writer under a mutex, so they wait
// for a commit in progress. A done_fn may call put()/remove()/... (they only queue) and
// load_*, but must not call flush() or destroy the store (both wait for the writer
// thread, which is the thread running the done_fn), must not throw (the writer thread
// would end the program), and should be quick: the next batch waits for it.
#include <cstdint>
#include <expected>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sched {

// new → queued → running → done | failed | killed; lost (its node died) goes back to
// queued while retries remain (shared/design/galaxy.md, "The unified tree").
enum class job_state : std::uint8_t { new_, queued, running, done, failed, killed, lost };

// "new", "queued", "running", "done", "failed", "killed", "lost": the words of
// jobs/N/status and of the store's `state` column.
std::string_view to_string(job_state s);
// The inverse of to_string; nullopt for any other text (case matters).
std::optional<job_state> parse_job_state(std::string_view text);
// done, failed and killed are final: the job never runs again. lost is not final.
bool is_final(job_state s);

struct job_record {
  std::uint64_t id = 0;           // 1 .. INT64_MAX (SQLite's INTEGER is signed 64-bit)
  std::string owner;              // attach name of the submitter
  std::string name;               // `name NAME`, may be empty
  std::string spec;               // the accepted ctl lines, one per line, replayable through the ctl parser
  job_state state = job_state::new_;
  std::string node;               // node of the current/last attempt, "" if none
  std::uint64_t task = 0;         // that node's task id, 0 if none (≤ INT64_MAX)
  int attempts = 0;               // attempts started so far
  int retries = 1;                // requeues allowed after a lost attempt
  int priority = 0;
  bool preemptible = false;
  std::vector<std::uint64_t> after;  // each ≤ INT64_MAX; order kept
  std::string exit;               // as the node's wait says: "exit 0", "signal 9", "error TEXT"; "" until ended
  std::string note;               // status note: "unschedulable: ...", "node n2 down", "dependency 4 failed"
  std::int64_t submitted_ms = 0, started_ms = 0, ended_ms = 0;   // Unix epoch ms, 0 = not yet
  std::uint64_t array = 0;        // a task of a job array (`array N`): the array job's id (≤ INT64_MAX); 0 if none
  std::uint32_t index = 0;        // that task's index in its array, 0 .. N-1
  // Accounting of the copy that ended the job, from its node's task/N/status when its
  // results were collected (galaxy-node(4) usertime, systime, maxrss); 0 if not known.
  std::uint64_t user_ms = 0, sys_ms = 0;  // CPU milliseconds, user and system mode (≤ INT64_MAX)
  std::uint64_t maxrss_bytes = 0;         // largest resident set size, bytes (≤ INT64_MAX)

  bool operator==(const job_record&) const = default;
};

struct node_record {
  std::string name;  // non-empty
  std::string dial;  // as given to `node add NAME DIAL`; the store does not parse it; "" for a joined node
  // A joined node (galaxy-node --join): the uid that joined it, the only one that may join
  // under its name until `node rm` (sched/membership.cpp). -1: a node the scheduler dials.
  std::int64_t join_uid = -1;
  bool operator==(const node_record&) const = default;
};

struct quota_record {
  std::string user;  // non-empty
  std::int64_t cpu_millis = 0;
  std::int64_t mem_bytes = 0;
  double weight = 1.0;  // DRF weight (Ghodsi et al., NSDI 2011); stored as a REAL, exactly
  bool operator==(const quota_record&) const = default;
};

// A copy of a job given up as lost while its node was cut off (sched/reconcile.cpp): the
// task may still run, or have finished, there. Kept until the node comes back and says
// how it ended, so that a restarted scheduler does not run the job to completion twice.
struct cut_off_record {
  std::string node;        // non-empty
  std::uint64_t task = 0;  // the node's task id (≤ INT64_MAX); 0: its start was never answered
  std::uint64_t job = 0;   // 1 .. INT64_MAX
  std::string owner;       // the job's owner, who owns the task on the node
  int attempt = 0;         // its GALAXY_ATTEMPT, which finds a task 0 by its markers
  bool operator==(const cut_off_record&) const = default;
};

class job_store {
 public:
  // The result of one change: empty on success, else a text saying what failed
  // ("put job 7: database or disk is full", "commit: database is locked").
  using done_fn = std::function<void(std::expected<void, std::string>)>;

  struct options {
    // How long a statement waits for another connection's lock on the same file before
    // it fails with "database is locked" (sqlite3_busy_timeout), in milliseconds. The
    // scheduler is the file's only writer, so this matters only when someone inspects
    // the file with the sqlite3 shell (or in tests).
    int busy_timeout_ms = 5000;
    // At most this many changes per transaction; 0 = no limit (everything queued).
    // 1 turns group commit off (one transaction and one fsync per change): the naive
    // peer in bench/bench_store.cpp, and nothing else should want it.
    std::size_t max_batch = 0;
    // Run PRAGMA quick_check at open, so that a damaged file is refused with a clear error
    // instead of failing later at a load. It reads every page: about a second per GB.
    bool check_at_open = true;
  };

  // Opens or creates the database file `file` (its parent directory must exist), puts it
  // in WAL mode with synchronous=FULL (https://sqlite.org/pragma.html#pragma_synchronous:
  // in WAL mode FULL syncs the WAL after every commit, so a commit survives a power loss,
  // not only a crash of the process; NORMAL would sync only at checkpoints), runs the migrations it has not run yet,
  // prepares every statement once, and starts the writer thread. A file it refuses for
  // its content (not a database, corrupt, too new) is left unchanged: those checks only read.
  // Errors (the text names the file and what failed): the file cannot be opened or
  // created ("unable to open database file"), is not an SQLite database ("file is not a
  // database"), is damaged ("the file is corrupt: ..." from PRAGMA quick_check, or
  // "database disk image is malformed"), holds another program's tables and not ours,
  // cannot be written (it or its directory is read-only: WAL needs the
  // -wal and -shm files beside it), is locked by another connection past busy_timeout_ms,
  // or was written by a newer galaxy-sched (a schema version this program does not know).
  static std::expected<std::unique_ptr<job_store>, std::string> open(const std::filesystem::path& file,
                                                                    const options& opts);
  static std::expected<std::unique_ptr<job_store>, std::string> open(const std::filesystem::path& file);

  // Commits everything queued (calling its done_fns), then stops the writer thread and
  // closes the file. Must not run on the writer thread (inside a done_fn).
  ~job_store();
  job_store(const job_store&) = delete;
  job_store& operator=(const job_store&) = delete;

  // The number of migrations this program knows: PRAGMA user_version of a file it opened.
  static int schema_version();

  // Every stored (committed) job, ordered by id. Errors: an SQLite error, or a row this
  // program cannot read back (an unknown state word, a malformed `after` list): the text
  // names the job id and the column.
  std::expected<std::vector<job_record>, std::string> load_jobs();
  // Every stored node, ordered by name. Errors: an SQLite error.
  std::expected<std::vector<node_record>, std::string> load_nodes();
  // Every stored quota, ordered by user. Errors: an SQLite error.
  std::expected<std::vector<quota_record>, std::string> load_quotas();
  // Every stored cut-off copy, ordered by node and task. Errors: an SQLite error.
  std::expected<std::vector<cut_off_record>, std::string> load_cut_offs();

  // The highest job id ever committed to this file, removed jobs included (the jobs table
  // is AUTOINCREMENT, whose sqlite_sequence row keeps the largest id ever inserted:
  // https://sqlite.org/autoinc.html), so a daemon that numbers new jobs from
  // max_job_id() + 1 never reuses an id a client may still hold. 0 for a store that never
  // had a job. Kept in memory (read at open, raised after each commit), so it cannot fail.
  std::uint64_t max_job_id();

  // Queues "insert or replace the whole record with this id". done gets an error, and
  // nothing is written, for an id of 0 or above INT64_MAX, a task or `after` id above
  // INT64_MAX, or when the batch's transaction fails. done may be empty (no callback).
  void put(job_record rec, done_fn done);
  // Queues "forget job id" (rm, or garbage collection). Removing an id that is not stored
  // is not an error (the end state is the one asked for). max_job_id() does not go down.
  void remove(std::uint64_t id, done_fn done);
  // Queues "insert or replace node n.name". done gets an error for an empty name.
  void put_node(node_record n, done_fn done);
  // Queues "forget node name"; not an error if it is not stored.
  void remove_node(std::string name, done_fn done);
  // Queues "insert or replace the quota of q.user". done gets an error for an empty user.
  void put_quota(quota_record q, done_fn done);
  // Queues "insert or replace the cut-off copy (c.node, c.task, c.job)". done gets an error
  // for an empty node, a job id of 0, or an id above INT64_MAX.
  void put_cut_off(cut_off_record c, done_fn done);
  // Queues "forget the cut-off copy (node, task, job)"; not an error if it is not stored.
  void remove_cut_off(std::string node, std::uint64_t task, std::uint64_t job, done_fn done);

  // Blocks until every change queued before the call has been committed (or has failed)
  // and its done_fn has returned. Must not be called from a done_fn (it would wait for
  // itself). No errors: the done_fns carry them.
  void flush();

  // Batches committed so far (transactions attempted, successful or not), for tests and
  // the /metrics file: changes / batches is the group-commit factor.
  std::uint64_t batches() const;

  class impl;  // sched/store.cpp

 private:
  explicit job_store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace sched
