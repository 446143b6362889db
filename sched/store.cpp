// The job store (sched/store.hpp): SQLite through its C API, a writer thread, group commit.
//
// Arrangement: the schema as one append-only migrations array; two small RAII wrappers
// over the C API (statement: prepared once, reset after every use; transaction: rolls
// back unless committed), as in Chromium's sql::Statement/sql::Transaction and
// SQLiteCpp; the row codec for jobs; open(); the writer thread; the public functions.
//
// Concurrency. One connection, opened SQLITE_OPEN_NOMUTEX ("multi-thread" mode: the
// connection must never be used by two threads at once, https://sqlite.org/threadsafe.html);
// db_mu_ guarantees that. Writers only queue (q_mu_); the writer thread is the only thread
// that writes the file. It holds db_mu_ while it builds and commits a batch, and calls the
// done_fns after releasing both mutexes, so a done_fn may queue more changes or load.
//
// Failure of a batch. Inside BEGIN IMMEDIATE ... COMMIT, a statement that fails leaves
// the transaction open unless SQLite rolled it back itself (it may do so after
// SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY or SQLITE_NOMEM: https://sqlite.org/lang_transaction.html,
// "Response To Errors Within A Transaction"); sqlite3_get_autocommit() tells which. In the
// first case only that change fails and the batch goes on; in the second, or when COMMIT
// itself fails, every change of the batch fails with the error text, the transaction is
// rolled back if it is still open, and the next batch starts afresh: the store stays usable.
// Nothing of a failed batch is retried by the store; its callers got an error and decide.
#include "sched/store.hpp"

#include <sqlite3.h>

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <cassert>
#include <charconv>
#include <condition_variable>
#include <algorithm>
#include <cstdint>
#include <future>
#include <limits>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

namespace sched {

namespace {

constexpr std::array<std::string_view, 7> state_names = {"new", "queued", "running", "done",
                                                         "failed", "killed", "lost"};

// ---- the schema -----------------------------------------------------------------------
// Append only: migrations[i] takes a file from user_version i to i + 1. Never edit an
// entry that has shipped; add one that changes what is there. Each runs in the same
// transaction as the PRAGMA user_version that records it, so a crash leaves either the
// old version or the new one.
//
// jobs.id is AUTOINCREMENT so that sqlite_sequence keeps the largest id ever inserted
// (max_job_id()). Columns are the job_record fields; `after` is a keyword, hence after_ids:
// the ids in order, as decimal numbers separated by one space. state is the to_string word.
constexpr std::string_view migrations[] = {
    // 1: the first schema.
    R"sql(
CREATE TABLE jobs (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  owner        TEXT    NOT NULL,
  name         TEXT    NOT NULL,
  spec         TEXT    NOT NULL,
  state        TEXT    NOT NULL,
  node         TEXT    NOT NULL,
  task         INTEGER NOT NULL,
  attempts     INTEGER NOT NULL,
  retries      INTEGER NOT NULL,
  priority     INTEGER NOT NULL,
  preemptible  INTEGER NOT NULL,
  after_ids    TEXT    NOT NULL,
  exit         TEXT    NOT NULL,
  note         TEXT    NOT NULL,
  submitted_ms INTEGER NOT NULL,
  started_ms   INTEGER NOT NULL,
  ended_ms     INTEGER NOT NULL
);
CREATE TABLE nodes (
  name TEXT PRIMARY KEY NOT NULL,
  dial TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE quotas (
  user       TEXT PRIMARY KEY NOT NULL,
  cpu_millis INTEGER NOT NULL,
  mem_bytes  INTEGER NOT NULL,
  weight     REAL    NOT NULL
) WITHOUT ROWID;
)sql",
    // 2: job arrays (`array N`): a task of an array names its array job and its index.
    R"sql(
ALTER TABLE jobs ADD COLUMN array_job   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN array_index INTEGER NOT NULL DEFAULT 0;
)sql",
    // 3: copies given up as lost while their node was cut off (sched/reconcile.cpp).
    R"sql(
CREATE TABLE cut_off (
  node  TEXT    NOT NULL,
  task  INTEGER NOT NULL,
  job     INTEGER NOT NULL,
  owner   TEXT    NOT NULL,
  attempt INTEGER NOT NULL,
  PRIMARY KEY (node, task, job)
) WITHOUT ROWID;
)sql",
    // 4: joined nodes (galaxy-node --join) are stored too, with the uid that joined them;
    // -1 (and a dial string) for a node the scheduler dials.
    R"sql(
ALTER TABLE nodes ADD COLUMN join_uid INTEGER NOT NULL DEFAULT -1;
)sql",
    // 5: a finished job's accounting, from its node's task status (galaxy-node(4)): CPU
    // milliseconds in user and system mode and the largest resident set, in bytes.
    R"sql(
ALTER TABLE jobs ADD COLUMN user_ms      INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN sys_ms       INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN maxrss_bytes INTEGER NOT NULL DEFAULT 0;
)sql",
};

constexpr std::string_view job_columns =
    "id, owner, name, spec, state, node, task, attempts, retries, priority, preemptible, "
    "after_ids, exit, note, submitted_ms, started_ms, ended_ms, array_job, array_index, "
    "user_ms, sys_ms, maxrss_bytes";

constexpr std::uint64_t max_sql_int = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

std::string errtext(sqlite3* db) { return sqlite3_errmsg(db); }

// ---- RAII over the C API --------------------------------------------------------------

// A prepared statement, finalized on destruction. Prepared once at open with
// SQLITE_PREPARE_PERSISTENT (the statement lives as long as the store), then bound,
// stepped and reset for every use; use() returns a guard that resets it and clears its
// bindings when the use ends, so no statement holds a read transaction open between uses
// (which would keep WAL checkpoints from finishing).
class statement {
 public:
  statement() = default;
  statement(statement&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  statement& operator=(statement&& o) noexcept {
    if (this != &o) {
      sqlite3_finalize(s_);
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  ~statement() { sqlite3_finalize(s_); }

  static std::expected<statement, std::string> prepare(sqlite3* db, std::string_view sql) {
    statement st;
    int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                &st.s_, nullptr);
    if (rc != SQLITE_OK) return std::unexpected(fmt::format("prepare '{}': {}", sql, errtext(db)));
    return st;
  }

  struct use_guard {
    sqlite3_stmt* s;
    ~use_guard() {
      sqlite3_reset(s);
      sqlite3_clear_bindings(s);
    }
  };
  [[nodiscard]] use_guard use() { return use_guard{s_}; }

  // Binders (1-based index, as in SQLite). Text is bound SQLITE_STATIC: the caller keeps
  // it alive until the use ends. Each returns the SQLite result code.
  int bind(int i, std::int64_t v) { return sqlite3_bind_int64(s_, i, v); }
  int bind(int i, double v) { return sqlite3_bind_double(s_, i, v); }
  int bind(int i, std::string_view v) {
    return sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return sqlite3_step(s_); }

  std::int64_t column_int(int i) const { return sqlite3_column_int64(s_, i); }
  double column_double(int i) const { return sqlite3_column_double(s_, i); }
  std::string column_text(int i) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
    if (p == nullptr) return {};
    return std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, i)));
  }

 private:
  sqlite3_stmt* s_ = nullptr;
};

// Runs one statement that returns no rows (BEGIN, COMMIT, ...); empty on success.
std::expected<void, std::string> run(sqlite3* db, statement& st) {
  auto u = st.use();
  if (int rc = st.step(); rc != SQLITE_DONE && rc != SQLITE_ROW) return std::unexpected(errtext(db));
  return {};
}

// BEGIN IMMEDIATE ... COMMIT; rolled back on destruction unless commit() succeeded.
// IMMEDIATE takes the write lock at BEGIN, where the busy handler applies; a deferred
// transaction that upgrades a read to a write in WAL mode can fail with SQLITE_BUSY_SNAPSHOT
// without waiting (https://sqlite.org/lang_transaction.html, "Deferred, Immediate").
class transaction {
 public:
  transaction(sqlite3* db, statement& begin, statement& commit, statement& rollback)
      : db_(db), commit_(commit), rollback_(rollback) {
    auto r = run(db_, begin);
    if (!r) begin_error_ = std::move(r.error());
  }
  ~transaction() {
    // After some errors SQLite has already rolled the transaction back (autocommit is on
    // again); ROLLBACK then would only fail with "no transaction is active".
    if (begin_error_.empty() && !committed_ && sqlite3_get_autocommit(db_) == 0) {
      (void)run(db_, rollback_);  // its failure leaves nothing we could do better
    }
  }
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;

  // Empty if BEGIN succeeded, else its error text.
  const std::string& begin_error() const { return begin_error_; }

  std::expected<void, std::string> commit() {
    auto r = run(db_, commit_);
    if (r) committed_ = true;
    return r;
  }

 private:
  sqlite3* db_;
  statement& commit_;
  statement& rollback_;
  std::string begin_error_;
  bool committed_ = false;
};

// Runs sql (any number of statements) once, for open(); empty on success.
std::expected<void, std::string> exec(sqlite3* db, std::string_view sql) {
  std::string text(sql);
  char* msg = nullptr;
  if (sqlite3_exec(db, text.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string e = msg != nullptr ? msg : errtext(db);
    sqlite3_free(msg);
    return std::unexpected(std::move(e));
  }
  return {};
}

// The one value of a single-row, single-column query, as text ("" for NULL or no row).
std::expected<std::string, std::string> query_text(sqlite3* db, std::string_view sql) {
  auto st = statement::prepare(db, sql);
  if (!st) return std::unexpected(st.error());
  auto u = st->use();
  int rc = st->step();
  if (rc == SQLITE_DONE) return std::string();
  if (rc != SQLITE_ROW) return std::unexpected(errtext(db));
  return st->column_text(0);
}

// ---- the job row codec ----------------------------------------------------------------

std::string format_after(const std::vector<std::uint64_t>& after) {
  std::string out;
  for (auto id : after) {
    if (!out.empty()) out += ' ';
    out += std::to_string(id);
  }
  return out;
}

std::expected<std::vector<std::uint64_t>, std::string> parse_after(std::string_view text) {
  std::vector<std::uint64_t> out;
  while (!text.empty()) {
    auto sp = text.find(' ');
    auto word = text.substr(0, sp);
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
    if (word.empty() || ec != std::errc() || p != word.data() + word.size()) {
      return std::unexpected(fmt::format("'{}' is not a list of job ids separated by spaces", text));
    }
    out.push_back(v);
    if (sp == std::string_view::npos) break;
    text.remove_prefix(sp + 1);
  }
  return out;
}

// Why rec cannot be stored, or "" if it can.
std::string invalid_job(const job_record& rec) {
  if (rec.id == 0 || rec.id > max_sql_int) {
    return fmt::format("put job {}: job id must be 1 to {}", rec.id, max_sql_int);
  }
  if (rec.task > max_sql_int) return fmt::format("put job {}: task id {} is over {}", rec.id, rec.task, max_sql_int);
  if (rec.array > max_sql_int) return fmt::format("put job {}: array job id {} is over {}", rec.id, rec.array, max_sql_int);
  for (auto a : rec.after) {
    if (a > max_sql_int) return fmt::format("put job {}: after id {} is over {}", rec.id, a, max_sql_int);
  }
  return {};
}

// ---- queued changes -------------------------------------------------------------------

struct remove_job { std::uint64_t id; };
struct remove_node_change { std::string name; };
struct remove_cut_off_change { std::string node; std::uint64_t task; std::uint64_t job; };
struct barrier {};                       // flush(): nothing to write
struct rejected { std::string error; };  // failed validation in the caller's thread

using change_body = std::variant<job_record, remove_job, node_record, remove_node_change, quota_record,
                                 cut_off_record, remove_cut_off_change, barrier, rejected>;

struct change {
  change_body body;
  job_store::done_fn done;
};

template <class... F>
struct overloaded : F... {
  using F::operator()...;
};

}  // namespace

std::string_view to_string(job_state s) {
  auto i = static_cast<std::size_t>(s);
  return i < state_names.size() ? state_names[i] : std::string_view("?");
}

std::optional<job_state> parse_job_state(std::string_view text) {
  for (std::size_t i = 0; i < state_names.size(); i++) {
    if (state_names[i] == text) return static_cast<job_state>(i);
  }
  return std::nullopt;
}

bool is_final(job_state s) {
  return s == job_state::done || s == job_state::failed || s == job_state::killed;
}

// ---- the store ------------------------------------------------------------------------

class job_store::impl {
 public:
  impl(sqlite3* db, const options& opts) : db_(db), opts_(opts) {}

  ~impl() {
    {
      std::lock_guard lk(q_mu_);
      stopping_ = true;
    }
    q_cv_.notify_one();
    if (writer_.joinable()) writer_.join();
    // Statements first: sqlite3_close refuses (SQLITE_BUSY) while any is unfinalized.
    stmts_ = {};
    sqlite3_close(db_);
  }

  // Everything open() does after sqlite3_open_v2 succeeded.
  std::expected<void, std::string> init() {
    auto r = init_steps();
    // SQLITE_READONLY also comes from a read-only directory (no -wal or -shm can be made
    // beside the file), where SQLite's own words ("attempt to write a readonly
    // database") do not say what to fix.
    if (!r && sqlite3_errcode(db_) == SQLITE_READONLY) {
      return std::unexpected(r.error() + " (the file or its directory is not writable)");
    }
    return r;
  }

  std::expected<void, std::string> init_steps() {
    if (sqlite3_db_readonly(db_, "main") == 1) {
      return std::unexpected("the file is read-only (it, or its directory, is not writable)");
    }
    sqlite3_busy_timeout(db_, opts_.busy_timeout_ms);
    // Reads first, so that a file we refuse is left as it was: the schema version, then
    // (for a file that has one) the structure of every page.
    auto v = query_text(db_, "PRAGMA user_version");
    if (!v) return std::unexpected("reading the schema version: " + v.error());
    std::from_chars(v->data(), v->data() + v->size(), version_);
    constexpr int known = static_cast<int>(std::size(migrations));
    if (version_ < 0 || version_ > known) {
      return std::unexpected(fmt::format(
          "schema version {} is not one this program knows (0 to {}): written by a newer galaxy-sched?",
          version_, known));
    }
    if (version_ == 0) {
      // A file without our schema must not hold anyone else's tables either: the
      // --state directory may have been pointed at another program's database.
      auto others = query_text(db_, "SELECT group_concat(name, ', ') FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'");
      if (!others) return std::unexpected("reading the schema: " + others.error());
      if (!others->empty()) {
        return std::unexpected(fmt::format("the file is another program's database (it has {}), not a job store",
                                           *others));
      }
    }
    if (opts_.check_at_open) {
      // quick_check: every page's structure, without the index-content cross-check of
      // integrity_check (https://sqlite.org/pragma.html#pragma_quick_check). One row "ok",
      // or one row per problem found (at most 4 asked for here).
      auto check = query_text(db_, "SELECT group_concat(quick_check, '; ') FROM pragma_quick_check(4)");
      if (!check) return std::unexpected("checking the file: " + check.error());
      if (*check != "ok") return std::unexpected("the file is corrupt: " + *check);
    }
    // journal_mode answers the mode now in effect; anything but "wal" means it refused.
    auto mode = query_text(db_, "PRAGMA journal_mode=WAL");
    if (!mode) return std::unexpected("setting journal_mode=WAL: " + mode.error());
    if (*mode != "wal") return std::unexpected(fmt::format("journal_mode is '{}', not 'wal'", *mode));
    if (auto r = exec(db_, "PRAGMA synchronous=FULL"); !r) return std::unexpected("synchronous=FULL: " + r.error());
    if (auto r = migrate(); !r) return r;
    if (auto r = prepare_all(); !r) return r;
    auto seq = query_text(db_, "SELECT seq FROM sqlite_sequence WHERE name = 'jobs'");
    if (!seq) return std::unexpected("reading sqlite_sequence: " + seq.error());
    std::uint64_t max = 0;
    if (!seq->empty()) std::from_chars(seq->data(), seq->data() + seq->size(), max);
    max_id_ = max;
    writer_ = std::thread([this] { writer_loop(); });
    return {};
  }

  void enqueue(change c) {
    {
      std::lock_guard lk(q_mu_);
      queue_.push_back(std::move(c));
    }
    q_cv_.notify_one();
  }

  void flush() {
    // A done_fn that flushes would wait for the thread that runs it.
    assert(std::this_thread::get_id() != writer_.get_id());
    // The promise is owned by the change (so by the writer) until its done_fn has
    // returned: set_value may still be running when wait() returns here.
    auto flushed = std::make_shared<std::promise<void>>();
    auto f = flushed->get_future();
    enqueue(change{barrier{}, [flushed](std::expected<void, std::string>) { flushed->set_value(); }});
    f.wait();
  }

  std::expected<std::vector<job_record>, std::string> load_jobs() {
    std::lock_guard lk(db_mu_);
    auto& st = stmts_.load_jobs;
    auto u = st.use();
    std::vector<job_record> out;
    for (;;) {
      int rc = st.step();
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return std::unexpected("load jobs: " + errtext(db_));
      job_record j;
      j.id = static_cast<std::uint64_t>(st.column_int(0));
      j.owner = st.column_text(1);
      j.name = st.column_text(2);
      j.spec = st.column_text(3);
      auto state_word = st.column_text(4);
      auto state = parse_job_state(state_word);
      if (!state) return std::unexpected(fmt::format("load jobs: job {}: unknown state '{}'", j.id, state_word));
      j.state = *state;
      j.node = st.column_text(5);
      j.task = static_cast<std::uint64_t>(st.column_int(6));
      for (auto [col, field, what] : {std::tuple{7, &j.attempts, "attempts"}, std::tuple{8, &j.retries, "retries"},
                                      std::tuple{9, &j.priority, "priority"}}) {
        auto v = st.column_int(col);
        if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
          return std::unexpected(fmt::format("load jobs: job {}: {} {} is out of range", j.id, what, v));
        }
        *field = static_cast<int>(v);
      }
      j.preemptible = st.column_int(10) != 0;
      auto after = parse_after(st.column_text(11));
      if (!after) return std::unexpected(fmt::format("load jobs: job {}: after_ids: {}", j.id, after.error()));
      j.after = std::move(*after);
      j.exit = st.column_text(12);
      j.note = st.column_text(13);
      j.submitted_ms = st.column_int(14);
      j.started_ms = st.column_int(15);
      j.ended_ms = st.column_int(16);
      auto array = st.column_int(17);
      auto index = st.column_int(18);
      if (array < 0 || index < 0 || index > std::numeric_limits<std::uint32_t>::max()) {
        return std::unexpected(fmt::format("load jobs: job {}: array_job {} array_index {} out of range", j.id, array, index));
      }
      j.array = static_cast<std::uint64_t>(array);
      j.index = static_cast<std::uint32_t>(index);
      for (auto [col, field, what] : {std::tuple{19, &j.user_ms, "user_ms"}, std::tuple{20, &j.sys_ms, "sys_ms"},
                                      std::tuple{21, &j.maxrss_bytes, "maxrss_bytes"}}) {
        auto v = st.column_int(col);
        if (v < 0) return std::unexpected(fmt::format("load jobs: job {}: {} {} is out of range", j.id, what, v));
        *field = static_cast<std::uint64_t>(v);
      }
      out.push_back(std::move(j));
    }
    return out;
  }

  std::expected<std::vector<node_record>, std::string> load_nodes() {
    std::lock_guard lk(db_mu_);
    auto& st = stmts_.load_nodes;
    auto u = st.use();
    std::vector<node_record> out;
    for (int rc; (rc = st.step()) != SQLITE_DONE;) {
      if (rc != SQLITE_ROW) return std::unexpected("load nodes: " + errtext(db_));
      out.push_back({st.column_text(0), st.column_text(1), st.column_int(2)});
    }
    return out;
  }

  std::expected<std::vector<quota_record>, std::string> load_quotas() {
    std::lock_guard lk(db_mu_);
    auto& st = stmts_.load_quotas;
    auto u = st.use();
    std::vector<quota_record> out;
    for (int rc; (rc = st.step()) != SQLITE_DONE;) {
      if (rc != SQLITE_ROW) return std::unexpected("load quotas: " + errtext(db_));
      out.push_back({st.column_text(0), st.column_int(1), st.column_int(2), st.column_double(3)});
    }
    return out;
  }

  std::expected<std::vector<cut_off_record>, std::string> load_cut_offs() {
    std::lock_guard lk(db_mu_);
    auto& st = stmts_.load_cut_offs;
    auto u = st.use();
    std::vector<cut_off_record> out;
    for (int rc; (rc = st.step()) != SQLITE_DONE;) {
      if (rc != SQLITE_ROW) return std::unexpected("load cut-off copies: " + errtext(db_));
      auto task = st.column_int(1), job = st.column_int(2);
      if (task < 0 || job <= 0) {
        return std::unexpected(fmt::format("load cut-off copies: node {}: task {} job {}", st.column_text(0), task, job));
      }
      out.push_back({st.column_text(0), static_cast<std::uint64_t>(task), static_cast<std::uint64_t>(job),
                     st.column_text(3), static_cast<int>(st.column_int(4))});
    }
    return out;
  }

  std::atomic<std::uint64_t> max_id_{0};
  std::atomic<std::uint64_t> batches_{0};

 private:
  // Runs the migrations this file has not had, and rewrites user_version even when there
  // are none: that write, at open, is what finds a file or directory that cannot be
  // written (or a lock held by someone else) before any client is told "committed".
  std::expected<void, std::string> migrate() {
    constexpr int known = static_cast<int>(std::size(migrations));
    if (auto r = exec(db_, "BEGIN IMMEDIATE"); !r) return std::unexpected("begin: " + r.error());
    for (int i = version_; i < known; i++) {
      if (auto r = exec(db_, migrations[i]); !r) {
        (void)exec(db_, "ROLLBACK");
        return std::unexpected(fmt::format("migration {}: {}", i + 1, r.error()));
      }
    }
    if (auto r = exec(db_, fmt::format("PRAGMA user_version = {}", known)); !r) {
      (void)exec(db_, "ROLLBACK");
      return std::unexpected("setting user_version: " + r.error());
    }
    if (auto r = exec(db_, "COMMIT"); !r) {
      if (sqlite3_get_autocommit(db_) == 0) (void)exec(db_, "ROLLBACK");
      return std::unexpected("commit of the schema: " + r.error());
    }
    return {};
  }

  std::expected<void, std::string> prepare_all() {
    std::string cols(job_columns);
    std::pair<statement*, std::string> all[] = {
        {&stmts_.begin, "BEGIN IMMEDIATE"},
        {&stmts_.commit, "COMMIT"},
        {&stmts_.rollback, "ROLLBACK"},
        {&stmts_.put_job, fmt::format("INSERT OR REPLACE INTO jobs ({}) VALUES "
                                      "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
                                      cols)},
        {&stmts_.remove_job, "DELETE FROM jobs WHERE id = ?1"},
        {&stmts_.put_node, "INSERT OR REPLACE INTO nodes (name, dial, join_uid) VALUES (?1, ?2, ?3)"},
        {&stmts_.remove_node, "DELETE FROM nodes WHERE name = ?1"},
        {&stmts_.put_quota,
         "INSERT OR REPLACE INTO quotas (user, cpu_millis, mem_bytes, weight) VALUES (?1, ?2, ?3, ?4)"},
        {&stmts_.load_jobs, fmt::format("SELECT {} FROM jobs ORDER BY id", cols)},
        {&stmts_.load_nodes, "SELECT name, dial, join_uid FROM nodes ORDER BY name"},
        {&stmts_.load_quotas, "SELECT user, cpu_millis, mem_bytes, weight FROM quotas ORDER BY user"},
        {&stmts_.put_cut_off, "INSERT OR REPLACE INTO cut_off (node, task, job, owner, attempt) VALUES (?1, ?2, ?3, ?4, ?5)"},
        {&stmts_.remove_cut_off, "DELETE FROM cut_off WHERE node = ?1 AND task = ?2 AND job = ?3"},
        {&stmts_.load_cut_offs, "SELECT node, task, job, owner, attempt FROM cut_off ORDER BY node, task, job"},
    };
    for (auto& [st, sql] : all) {
      auto p = statement::prepare(db_, sql);
      if (!p) return std::unexpected(p.error());
      *st = std::move(*p);
    }
    return {};
  }

  // Applies one change inside the open transaction: empty on success, else the error text
  // (naming the change). Called with db_mu_ held.
  std::expected<void, std::string> apply(const change_body& body) {
    auto step_done = [this](statement& st, int bind_rc) -> std::expected<void, std::string> {
      if (bind_rc != SQLITE_OK) return std::unexpected(std::string(sqlite3_errstr(bind_rc)));
      if (st.step() != SQLITE_DONE) return std::unexpected(errtext(db_));
      return {};
    };
    return std::visit(
        overloaded{
            [&](const job_record& j) -> std::expected<void, std::string> {
              auto& st = stmts_.put_job;
              auto u = st.use();
              std::string after = format_after(j.after);
              int rc = SQLITE_OK;
              auto b = [&rc](int r) { if (rc == SQLITE_OK) rc = r; };
              b(st.bind(1, static_cast<std::int64_t>(j.id)));
              b(st.bind(2, std::string_view(j.owner)));
              b(st.bind(3, std::string_view(j.name)));
              b(st.bind(4, std::string_view(j.spec)));
              b(st.bind(5, to_string(j.state)));
              b(st.bind(6, std::string_view(j.node)));
              b(st.bind(7, static_cast<std::int64_t>(j.task)));
              b(st.bind(8, std::int64_t{j.attempts}));
              b(st.bind(9, std::int64_t{j.retries}));
              b(st.bind(10, std::int64_t{j.priority}));
              b(st.bind(11, std::int64_t{j.preemptible ? 1 : 0}));
              b(st.bind(12, std::string_view(after)));
              b(st.bind(13, std::string_view(j.exit)));
              b(st.bind(14, std::string_view(j.note)));
              b(st.bind(15, j.submitted_ms));
              b(st.bind(16, j.started_ms));
              b(st.bind(17, j.ended_ms));
              b(st.bind(18, static_cast<std::int64_t>(j.array)));
              b(st.bind(19, std::int64_t{j.index}));
              // Usage comes from a node's answer, clamped so that it fits SQLite's INTEGER.
              b(st.bind(20, static_cast<std::int64_t>(std::min(j.user_ms, max_sql_int))));
              b(st.bind(21, static_cast<std::int64_t>(std::min(j.sys_ms, max_sql_int))));
              b(st.bind(22, static_cast<std::int64_t>(std::min(j.maxrss_bytes, max_sql_int))));
              auto r = step_done(st, rc);
              if (!r) return std::unexpected(fmt::format("put job {}: {}", j.id, r.error()));
              return {};
            },
            [&](const remove_job& c) -> std::expected<void, std::string> {
              auto& st = stmts_.remove_job;
              auto u = st.use();
              auto r = step_done(st, st.bind(1, static_cast<std::int64_t>(c.id)));
              if (!r) return std::unexpected(fmt::format("remove job {}: {}", c.id, r.error()));
              return {};
            },
            [&](const node_record& n) -> std::expected<void, std::string> {
              auto& st = stmts_.put_node;
              auto u = st.use();
              int rc = st.bind(1, std::string_view(n.name));
              if (rc == SQLITE_OK) rc = st.bind(2, std::string_view(n.dial));
              if (rc == SQLITE_OK) rc = st.bind(3, n.join_uid);
              auto r = step_done(st, rc);
              if (!r) return std::unexpected(fmt::format("put node {}: {}", n.name, r.error()));
              return {};
            },
            [&](const remove_node_change& c) -> std::expected<void, std::string> {
              auto& st = stmts_.remove_node;
              auto u = st.use();
              auto r = step_done(st, st.bind(1, std::string_view(c.name)));
              if (!r) return std::unexpected(fmt::format("remove node {}: {}", c.name, r.error()));
              return {};
            },
            [&](const quota_record& q) -> std::expected<void, std::string> {
              auto& st = stmts_.put_quota;
              auto u = st.use();
              int rc = st.bind(1, std::string_view(q.user));
              if (rc == SQLITE_OK) rc = st.bind(2, q.cpu_millis);
              if (rc == SQLITE_OK) rc = st.bind(3, q.mem_bytes);
              if (rc == SQLITE_OK) rc = st.bind(4, q.weight);
              auto r = step_done(st, rc);
              if (!r) return std::unexpected(fmt::format("put quota {}: {}", q.user, r.error()));
              return {};
            },
            [&](const cut_off_record& c) -> std::expected<void, std::string> {
              auto& st = stmts_.put_cut_off;
              auto u = st.use();
              int rc = st.bind(1, std::string_view(c.node));
              if (rc == SQLITE_OK) rc = st.bind(2, static_cast<std::int64_t>(c.task));
              if (rc == SQLITE_OK) rc = st.bind(3, static_cast<std::int64_t>(c.job));
              if (rc == SQLITE_OK) rc = st.bind(4, std::string_view(c.owner));
              if (rc == SQLITE_OK) rc = st.bind(5, std::int64_t{c.attempt});
              auto r = step_done(st, rc);
              if (!r) return std::unexpected(fmt::format("put cut-off copy {} {}: {}", c.node, c.task, r.error()));
              return {};
            },
            [&](const remove_cut_off_change& c) -> std::expected<void, std::string> {
              auto& st = stmts_.remove_cut_off;
              auto u = st.use();
              int rc = st.bind(1, std::string_view(c.node));
              if (rc == SQLITE_OK) rc = st.bind(2, static_cast<std::int64_t>(c.task));
              if (rc == SQLITE_OK) rc = st.bind(3, static_cast<std::int64_t>(c.job));
              auto r = step_done(st, rc);
              if (!r) return std::unexpected(fmt::format("remove cut-off copy {} {}: {}", c.node, c.task, r.error()));
              return {};
            },
            [](const barrier&) -> std::expected<void, std::string> { return {}; },
            [](const rejected& c) -> std::expected<void, std::string> { return std::unexpected(c.error); },
        },
        body);
  }

  static bool writes(const change& c) {
    return !std::holds_alternative<barrier>(c.body) && !std::holds_alternative<rejected>(c.body);
  }

  // Commits batch in one transaction. Fills own[i] with the error of a change that failed
  // alone; returns the error of the whole batch, if it failed. Called with db_mu_ held.
  std::expected<void, std::string> commit_batch(const std::vector<change>& batch,
                                                std::vector<std::optional<std::string>>& own) {
    transaction tx(db_, stmts_.begin, stmts_.commit, stmts_.rollback);
    if (!tx.begin_error().empty()) return std::unexpected("begin: " + tx.begin_error());
    for (std::size_t i = 0; i < batch.size(); i++) {
      if (!writes(batch[i])) continue;
      auto r = apply(batch[i].body);
      if (r) continue;
      // Did SQLite roll the whole transaction back (see the opening comment)?
      if (sqlite3_get_autocommit(db_) != 0) return std::unexpected(r.error());
      own[i] = r.error();
    }
    if (auto r = tx.commit(); !r) return std::unexpected("commit: " + r.error());
    return {};
  }

  void writer_loop() {
    for (;;) {
      std::vector<change> batch;
      {
        std::unique_lock lk(q_mu_);
        q_cv_.wait(lk, [this] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) return;  // stopping, and everything is done
        if (opts_.max_batch == 0 || queue_.size() <= opts_.max_batch) {
          batch.swap(queue_);
        } else {
          auto end = queue_.begin() + static_cast<std::ptrdiff_t>(opts_.max_batch);
          batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(end));
          queue_.erase(queue_.begin(), end);
        }
      }
      std::vector<std::optional<std::string>> own(batch.size());
      std::expected<void, std::string> result;
      bool any_write = false;
      for (const auto& c : batch) any_write = any_write || writes(c);
      if (any_write) {
        std::lock_guard lk(db_mu_);
        result = commit_batch(batch, own);
        batches_++;
      }
      for (std::size_t i = 0; i < batch.size(); i++) {
        const auto& c = batch[i];
        if (result && !own[i]) {
          if (auto* j = std::get_if<job_record>(&c.body)) {
            // Raised before any done_fn runs, so a done_fn sees its own id counted.
            std::uint64_t cur = max_id_.load();
            while (j->id > cur && !max_id_.compare_exchange_weak(cur, j->id)) {
            }
          }
        }
      }
      for (std::size_t i = 0; i < batch.size(); i++) {
        auto& c = batch[i];
        if (!c.done) continue;
        if (own[i]) {
          c.done(std::unexpected(*own[i]));
        } else if (!result) {
          c.done(std::unexpected(result.error()));
        } else if (auto* r = std::get_if<rejected>(&c.body)) {
          c.done(std::unexpected(r->error));
        } else {
          c.done({});
        }
      }
    }
  }

  sqlite3* db_;
  options opts_;
  int version_ = 0;  // PRAGMA user_version found at open

  std::mutex db_mu_;  // the connection and every statement
  struct {
    statement begin, commit, rollback;
    statement put_job, remove_job, put_node, remove_node, put_quota, put_cut_off, remove_cut_off;
    statement load_jobs, load_nodes, load_quotas, load_cut_offs;
  } stmts_;

  std::mutex q_mu_;
  std::condition_variable q_cv_;
  std::vector<change> queue_;  // changes not yet taken by the writer, in call order
  bool stopping_ = false;
  std::thread writer_;
};

job_store::job_store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
job_store::~job_store() = default;

std::expected<std::unique_ptr<job_store>, std::string> job_store::open(const std::filesystem::path& file) {
  return open(file, options{});
}

std::expected<std::unique_ptr<job_store>, std::string> job_store::open(const std::filesystem::path& file,
                                                                      const options& opts) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string e = db != nullptr ? errtext(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return std::unexpected(fmt::format("job store {}: {}", file.string(), e));
  }
  auto p = std::make_unique<impl>(db, opts);  // owns db from here on
  if (auto r = p->init(); !r) return std::unexpected(fmt::format("job store {}: {}", file.string(), r.error()));
  return std::unique_ptr<job_store>(new job_store(std::move(p)));
}

std::expected<std::vector<job_record>, std::string> job_store::load_jobs() { return impl_->load_jobs(); }
std::expected<std::vector<node_record>, std::string> job_store::load_nodes() { return impl_->load_nodes(); }
std::expected<std::vector<quota_record>, std::string> job_store::load_quotas() { return impl_->load_quotas(); }
std::expected<std::vector<cut_off_record>, std::string> job_store::load_cut_offs() {
  return impl_->load_cut_offs();
}
std::uint64_t job_store::max_job_id() { return impl_->max_id_.load(); }
std::uint64_t job_store::batches() const { return impl_->batches_.load(); }

void job_store::put(job_record rec, done_fn done) {
  if (auto why = invalid_job(rec); !why.empty()) {
    impl_->enqueue(change{rejected{std::move(why)}, std::move(done)});
    return;
  }
  impl_->enqueue(change{std::move(rec), std::move(done)});
}

void job_store::remove(std::uint64_t id, done_fn done) {
  if (id == 0 || id > max_sql_int) {
    impl_->enqueue(change{rejected{fmt::format("remove job {}: job id must be 1 to {}", id, max_sql_int)},
                          std::move(done)});
    return;
  }
  impl_->enqueue(change{remove_job{id}, std::move(done)});
}

void job_store::put_node(node_record n, done_fn done) {
  if (n.name.empty()) {
    impl_->enqueue(change{rejected{"put node: empty node name"}, std::move(done)});
    return;
  }
  impl_->enqueue(change{std::move(n), std::move(done)});
}

void job_store::remove_node(std::string name, done_fn done) {
  impl_->enqueue(change{remove_node_change{std::move(name)}, std::move(done)});
}

void job_store::put_quota(quota_record q, done_fn done) {
  if (q.user.empty()) {
    impl_->enqueue(change{rejected{"put quota: empty user name"}, std::move(done)});
    return;
  }
  impl_->enqueue(change{std::move(q), std::move(done)});
}

void job_store::put_cut_off(cut_off_record c, done_fn done) {
  if (c.node.empty() || c.task > max_sql_int || c.job == 0 || c.job > max_sql_int) {
    impl_->enqueue(change{rejected{fmt::format("put cut-off copy: node '{}' task {} job {}: expected a node, a job id 1 to {} and a task id up to it",
                                               c.node, c.task, c.job, max_sql_int)},
                          std::move(done)});
    return;
  }
  impl_->enqueue(change{std::move(c), std::move(done)});
}

void job_store::remove_cut_off(std::string node, std::uint64_t task, std::uint64_t job, done_fn done) {
  impl_->enqueue(change{remove_cut_off_change{std::move(node), task, job}, std::move(done)});
}

void job_store::flush() { impl_->flush(); }

int job_store::schema_version() { return static_cast<int>(std::size(migrations)); }

}  // namespace sched
