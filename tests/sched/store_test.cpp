// The job store (sched/store.hpp) against real SQLite files in temporary directories.
//
// Beside the store itself, the tests open the same file with the SQLite C API directly
// (raw_db): to look at what is really on disk (user_version, rows), to prove that a
// change is committed by seeing it from another connection, and to hold the write lock so
// that a batch fails for real. The durability test runs store_crasher (a separate
// program), kills it with SIGKILL mid-stream and checks every job it acknowledged.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "sched/store.hpp"
#include "tests/sched/store_jobs.hpp"
#include "tests/testutil.hpp"

namespace {

using sched::job_record;
using sched::job_state;
using sched::job_store;
using store_jobs::make_job;

using result = std::expected<void, std::string>;
using namespace std::chrono_literals;

// A second, plain SQLite connection to the store's file.
class raw_db {
 public:
  explicit raw_db(const std::string& file) {
    if (sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "raw open " << file << ": " << sqlite3_errmsg(db_);
    }
    sqlite3_busy_timeout(db_, 60'000);
  }
  ~raw_db() { sqlite3_close(db_); }
  raw_db(const raw_db&) = delete;
  raw_db& operator=(const raw_db&) = delete;

  // The first column of the first row of sql, as text; "" for no row; "ERROR: ..." on error.
  std::string query(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      return std::string("ERROR: ") + sqlite3_errmsg(db_);
    }
    std::string out;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      auto* p = sqlite3_column_text(st, 0);
      out = p != nullptr ? reinterpret_cast<const char*>(p) : "";
    } else if (rc != SQLITE_DONE) {
      out = std::string("ERROR: ") + sqlite3_errmsg(db_);
    }
    sqlite3_finalize(st);
    return out;
  }
  // Runs sql; "" on success, else the error.
  std::string exec(const std::string& sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg) == SQLITE_OK) return "";
    std::string e = msg != nullptr ? msg : "?";
    sqlite3_free(msg);
    return e;
  }

 private:
  sqlite3* db_ = nullptr;
};

std::unique_ptr<job_store> open_ok(const std::string& file, const job_store::options& opts = {}) {
  auto s = job_store::open(file, opts);
  EXPECT_TRUE(s.has_value()) << s.error();
  return s ? std::move(*s) : nullptr;
}

// Queues one change through `queue` and waits for its done_fn: the result it got.
template <class F>
result sync(job_store& s, F queue) {
  auto p = std::make_shared<std::promise<result>>();  // kept alive by the done_fn too
  auto f = p->get_future();
  queue(s, [p](result r) { p->set_value(std::move(r)); });
  return f.get();
}

result put_sync(job_store& s, job_record j) {
  return sync(s, [&](job_store& st, job_store::done_fn d) { st.put(std::move(j), std::move(d)); });
}

std::map<std::uint64_t, job_record> load_map(job_store& s) {
  std::map<std::uint64_t, job_record> out;
  auto jobs = s.load_jobs();
  EXPECT_TRUE(jobs.has_value()) << jobs.error();
  if (jobs) {
    for (auto& j : *jobs) out.emplace(j.id, j);
  }
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(JobState, WordsRoundTrip) {
  const job_state all[] = {job_state::new_,   job_state::queued, job_state::running, job_state::done,
                           job_state::failed, job_state::killed, job_state::lost};
  const char* words[] = {"new", "queued", "running", "done", "failed", "killed", "lost"};
  for (std::size_t i = 0; i < std::size(all); i++) {
    EXPECT_EQ(sched::to_string(all[i]), words[i]);
    EXPECT_EQ(sched::parse_job_state(words[i]), all[i]);
  }
  EXPECT_EQ(sched::parse_job_state("Done"), std::nullopt);
  EXPECT_EQ(sched::parse_job_state(""), std::nullopt);
  EXPECT_EQ(sched::parse_job_state("new_"), std::nullopt);
  EXPECT_TRUE(sched::is_final(job_state::done));
  EXPECT_TRUE(sched::is_final(job_state::failed));
  EXPECT_TRUE(sched::is_final(job_state::killed));
  EXPECT_FALSE(sched::is_final(job_state::lost));
  EXPECT_FALSE(sched::is_final(job_state::running));
  EXPECT_FALSE(sched::is_final(job_state::queued));
  EXPECT_FALSE(sched::is_final(job_state::new_));
}

TEST(JobStore, FreshFileHasTheSchemaAndIsEmpty) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  {
    auto s = open_ok(file);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->max_job_id(), 0u);
    EXPECT_TRUE(s->load_jobs()->empty());
    EXPECT_TRUE(s->load_nodes()->empty());
    EXPECT_TRUE(s->load_quotas()->empty());
    raw_db raw(file);
    EXPECT_EQ(raw.query("PRAGMA user_version"), std::to_string(job_store::schema_version()));
    EXPECT_EQ(raw.query("PRAGMA journal_mode"), "wal");
    EXPECT_EQ(raw.query("SELECT count(*) FROM sqlite_master WHERE name IN ('jobs', 'nodes', 'quotas')"), "3");
  }
  // Reopening runs no migration twice (a second CREATE TABLE would fail the open).
  auto again = open_ok(file);
  ASSERT_TRUE(again);
  raw_db raw(file);
  EXPECT_EQ(raw.query("PRAGMA user_version"), std::to_string(job_store::schema_version()));
}

TEST(JobStore, AVersionOneFileIsMigratedAndKeepsItsJobs) {
  // A file made by the first schema (before job arrays): its rows load with array 0.
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  {
    raw_db raw(file);
    ASSERT_EQ(raw.exec(R"sql(
CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, name TEXT NOT NULL,
  spec TEXT NOT NULL, state TEXT NOT NULL, node TEXT NOT NULL, task INTEGER NOT NULL,
  attempts INTEGER NOT NULL, retries INTEGER NOT NULL, priority INTEGER NOT NULL,
  preemptible INTEGER NOT NULL, after_ids TEXT NOT NULL, exit TEXT NOT NULL, note TEXT NOT NULL,
  submitted_ms INTEGER NOT NULL, started_ms INTEGER NOT NULL, ended_ms INTEGER NOT NULL);
CREATE TABLE nodes (name TEXT PRIMARY KEY NOT NULL, dial TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE quotas (user TEXT PRIMARY KEY NOT NULL, cpu_millis INTEGER NOT NULL,
  mem_bytes INTEGER NOT NULL, weight REAL NOT NULL) WITHOUT ROWID;
INSERT INTO jobs VALUES (7, 'alice', '', 'exec true', 'done', 'n1', 3, 1, 1, 0, 0, '', 'exit 0', '', 1, 2, 3);
PRAGMA user_version = 1;
)sql"),
              "");
  }
  auto s = open_ok(file);
  ASSERT_TRUE(s);
  raw_db raw(file);
  EXPECT_EQ(raw.query("PRAGMA user_version"), std::to_string(job_store::schema_version()));
  auto jobs = load_map(*s);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[7].owner, "alice");
  EXPECT_EQ(jobs[7].exit, "exit 0");
  EXPECT_EQ(jobs[7].array, 0u);
  EXPECT_EQ(jobs[7].index, 0u);
  EXPECT_EQ(jobs[7].user_ms, 0u);  // accounting (schema 5) unknown for it
  EXPECT_EQ(jobs[7].maxrss_bytes, 0u);
  EXPECT_EQ(s->max_job_id(), 7u);
  job_record task = make_job(8);
  task.array = 7;
  task.index = 4;
  ASSERT_EQ(put_sync(*s, task), result{});
  EXPECT_EQ(load_map(*s)[8], task);
}

TEST(JobStore, EveryFieldRoundTripsThroughTheFile) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  job_record a;
  a.id = static_cast<std::uint64_t>(INT64_MAX);
  a.owner = "glenda";
  a.name = "it's a \"name\" with spaces";
  a.spec = "env 'A=b c'\nexec sh -c 'printf ''%s\\n'' héllo'\n\ttab\n";
  a.state = job_state::lost;
  a.node = "n2";
  a.task = static_cast<std::uint64_t>(INT64_MAX);
  a.attempts = INT_MAX;
  a.retries = 0;
  a.priority = INT_MIN;
  a.preemptible = true;
  a.after = {1, 2, static_cast<std::uint64_t>(INT64_MAX)};
  a.exit = "error exec: /no/such: file does not exist";
  a.note = "unschedulable: no node has 64 GiB — ünïcode";
  a.submitted_ms = 1'763'700'000'123;
  a.started_ms = -1;
  a.ended_ms = INT64_MAX;
  a.user_ms = static_cast<std::uint64_t>(INT64_MAX);
  a.sys_ms = 1;
  a.maxrss_bytes = std::uint64_t{64} << 20;
  job_record b;  // all defaults, every text empty
  b.id = 1;
  std::string nul_spec("a\0b", 3);
  job_record c = make_job(3);
  c.spec = nul_spec;
  {
    auto s = open_ok(file);
    ASSERT_TRUE(s);
    EXPECT_EQ(put_sync(*s, a), result{});
    EXPECT_EQ(put_sync(*s, b), result{});
    EXPECT_EQ(put_sync(*s, c), result{});
    EXPECT_EQ(s->max_job_id(), a.id);
  }
  auto s = open_ok(file);
  ASSERT_TRUE(s);
  auto jobs = s->load_jobs();
  ASSERT_TRUE(jobs.has_value()) << jobs.error();
  ASSERT_EQ(jobs->size(), 3u);
  EXPECT_EQ((*jobs)[0], b);  // ordered by id
  EXPECT_EQ((*jobs)[1], c);
  EXPECT_EQ((*jobs)[2], a);
  EXPECT_EQ(s->max_job_id(), a.id);
}

TEST(JobStore, BadRecordsAreRefusedAndChangeNothing) {
  testutil::temp_dir dir;
  auto s = open_ok(dir.file("sched.db"));
  ASSERT_TRUE(s);
  job_record zero = make_job(1);
  zero.id = 0;
  job_record huge = make_job(1);
  huge.id = static_cast<std::uint64_t>(INT64_MAX) + 1;
  job_record bad_task = make_job(2);
  bad_task.task = UINT64_MAX;
  job_record bad_after = make_job(3);
  bad_after.after = {UINT64_MAX};
  // Queued between good changes: they fail alone; the others of the batch commit.
  std::vector<result> got(6);
  s->put(make_job(10), [&](result r) { got[0] = r; });
  s->put(zero, [&](result r) { got[1] = r; });
  s->put(huge, [&](result r) { got[2] = r; });
  s->put(bad_task, [&](result r) { got[3] = r; });
  s->put(bad_after, [&](result r) { got[4] = r; });
  s->put(make_job(11), [&](result r) { got[5] = r; });
  s->flush();
  EXPECT_EQ(got[0], result{});
  ASSERT_FALSE(got[1].has_value());
  EXPECT_EQ(got[1].error(), "put job 0: job id must be 1 to 9223372036854775807");
  ASSERT_FALSE(got[2].has_value());
  EXPECT_EQ(got[2].error(), "put job 9223372036854775808: job id must be 1 to 9223372036854775807");
  ASSERT_FALSE(got[3].has_value());
  EXPECT_NE(got[3].error().find("task id 18446744073709551615 is over"), std::string::npos) << got[3].error();
  ASSERT_FALSE(got[4].has_value());
  EXPECT_NE(got[4].error().find("after id 18446744073709551615 is over"), std::string::npos) << got[4].error();
  EXPECT_EQ(got[5], result{});
  auto jobs = load_map(*s);
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs.at(10), make_job(10));
  EXPECT_EQ(jobs.at(11), make_job(11));
  EXPECT_EQ(s->max_job_id(), 11u);

  auto bad_node = sync(*s, [](job_store& st, job_store::done_fn d) { st.put_node({"", "tcp!h!1"}, d); });
  ASSERT_FALSE(bad_node.has_value());
  EXPECT_EQ(bad_node.error(), "put node: empty node name");
  auto bad_quota = sync(*s, [](job_store& st, job_store::done_fn d) { st.put_quota({.user = ""}, d); });
  ASSERT_FALSE(bad_quota.has_value());
  EXPECT_EQ(bad_quota.error(), "put quota: empty user name");
  auto bad_rm = sync(*s, [](job_store& st, job_store::done_fn d) { st.remove(0, d); });
  ASSERT_FALSE(bad_rm.has_value());
  EXPECT_TRUE(s->load_nodes()->empty());
  EXPECT_TRUE(s->load_quotas()->empty());
}

TEST(JobStore, StateUpdatesReplaceTheWholeRecord) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  job_record j = make_job(5);
  j.state = job_state::queued;
  j.node = "";
  j.exit = "";
  j.after = {1, 2, 3};
  {
    auto s = open_ok(file);
    ASSERT_TRUE(s);
    ASSERT_EQ(put_sync(*s, j), result{});
    j.state = job_state::running;
    j.node = "n1";
    j.task = 42;
    j.attempts = 1;
    ASSERT_EQ(put_sync(*s, j), result{});
    j.state = job_state::done;
    j.exit = "exit 0";
    j.after = {};  // a shorter list replaces a longer one
    j.ended_ms = 99;
    ASSERT_EQ(put_sync(*s, j), result{});
  }
  auto s = open_ok(file);
  ASSERT_TRUE(s);
  auto jobs = s->load_jobs();
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ(jobs->front(), j);
  raw_db raw(file);
  EXPECT_EQ(raw.query("SELECT state || ' ' || node || ' ' || exit || '|' || after_ids FROM jobs"),
            "done n1 exit 0|");
}

TEST(JobStore, RemoveForgetsAJobButMaxJobIdNeverGoesDown) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  {
    auto s = open_ok(file);
    ASSERT_TRUE(s);
    for (std::uint64_t id : {1, 2, 3}) ASSERT_EQ(put_sync(*s, make_job(id)), result{});
    auto rm = [&](std::uint64_t id) {
      return sync(*s, [id](job_store& st, job_store::done_fn d) { st.remove(id, d); });
    };
    EXPECT_EQ(rm(2), result{});
    EXPECT_EQ(rm(3), result{});
    EXPECT_EQ(rm(77), result{});  // not there: not an error
    auto jobs = load_map(*s);
    ASSERT_EQ(jobs.size(), 1u);
    EXPECT_TRUE(jobs.contains(1));
    EXPECT_EQ(s->max_job_id(), 3u);
  }
  auto s = open_ok(file);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->max_job_id(), 3u);  // job 3 is gone; its id must not be handed out again
  EXPECT_EQ(load_map(*s).size(), 1u);
}

TEST(JobStore, NodesAndQuotasPersistReplaceAndRemove) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  {
    auto s = open_ok(file);
    ASSERT_TRUE(s);
    std::vector<result> got;
    std::mutex mu;
    auto note = [&](result r) {
      std::lock_guard lk(mu);
      got.push_back(std::move(r));
    };
    s->put_node({"n2", "tcp!10.0.0.2!5640"}, note);
    s->put_node({"n1", "unix!/run/galaxy/n1"}, note);
    s->put_node({"n3", "tcp!h3!5640"}, note);
    s->put_node({"n2", "tcp!10.0.0.22!5640"}, note);  // replaces
    s->put_node({"pi4", "", 1001}, note);              // a joined node, with the uid that joined it
    s->remove_node("n3", note);
    s->remove_node("nope", note);
    s->put_quota({"glenda", 4000, 8LL << 30, 0.1}, note);
    s->put_quota({"rob", 1500, 1LL << 30, 2.5}, note);
    s->put_quota({"glenda", 6000, 16LL << 30, 3.0}, note);  // replaces
    s->flush();
    ASSERT_EQ(got.size(), 10u);
    for (auto& r : got) EXPECT_EQ(r, result{});
  }
  auto s = open_ok(file);
  ASSERT_TRUE(s);
  auto nodes = s->load_nodes();
  ASSERT_TRUE(nodes.has_value()) << nodes.error();
  EXPECT_EQ(*nodes, (std::vector<sched::node_record>{{"n1", "unix!/run/galaxy/n1", -1},
                                                      {"n2", "tcp!10.0.0.22!5640", -1},
                                                      {"pi4", "", 1001}}));
  auto quotas = s->load_quotas();
  ASSERT_TRUE(quotas.has_value()) << quotas.error();
  EXPECT_EQ(*quotas, (std::vector<sched::quota_record>{{"glenda", 6000, 16LL << 30, 3.0},
                                                        {"rob", 1500, 1LL << 30, 2.5}}));
  EXPECT_TRUE(s->load_jobs()->empty());
}

// Copies cut off with their node (sched/reconcile.cpp) outlive the process: put, replace
// and remove by (node, task, job); task 0 (a start never answered) is a copy too; bad
// ones are refused and change nothing.
TEST(JobStore, CutOffCopiesPersistReplaceAndRemove) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  {
    auto s = open_ok(file);
    ASSERT_TRUE(s);
    std::vector<result> got;
    std::mutex mu;
    auto note = [&](result r) {
      std::lock_guard lk(mu);
      got.push_back(std::move(r));
    };
    s->put_cut_off({"n2", 7, 3, "alice", 1}, note);
    s->put_cut_off({"n2", 0, 4, "bob", 2}, note);
    s->put_cut_off({"n1", 9, 5, "alice", 1}, note);
    s->put_cut_off({"n2", 7, 3, "alice", 2}, note);  // replaces
    s->remove_cut_off("n1", 9, 5, note);
    s->remove_cut_off("n1", 9, 6, note);  // not stored: not an error
    s->put_cut_off({"", 1, 1, "alice", 1}, note);
    s->put_cut_off({"n1", 1, 0, "alice", 1}, note);
    s->flush();
    ASSERT_EQ(got.size(), 8u);
    for (std::size_t i = 0; i < 6; ++i) EXPECT_EQ(got[i], result{}) << i;
    EXPECT_FALSE(got[6].has_value());
    EXPECT_FALSE(got[7].has_value());
  }
  auto s = open_ok(file);
  ASSERT_TRUE(s);
  auto cut = s->load_cut_offs();
  ASSERT_TRUE(cut.has_value()) << cut.error();
  EXPECT_EQ(*cut, (std::vector<sched::cut_off_record>{{"n2", 0, 4, "bob", 2}, {"n2", 7, 3, "alice", 2}}));
}

// Many threads put at once. Every done_fn runs exactly once, with success, and at that
// moment its job is already visible to another connection: committed, not just queued.
TEST(JobStore, ConcurrentPutsAreEachAcknowledgedOnceAndOnlyWhenCommitted) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  constexpr int threads = 8, per_thread = 250;
  constexpr std::uint64_t total = threads * per_thread;
  std::vector<std::atomic<int>> calls(total + 1);
  std::atomic<int> failures{0}, not_visible{0};
  std::uint64_t batches = 0;
  {
    auto s = open_ok(file);
    ASSERT_TRUE(s);
    raw_db observer(file);  // used only on the writer thread, inside done_fns
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; t++) {
      ts.emplace_back([&, t] {
        for (int i = 0; i < per_thread; i++) {
          std::uint64_t id = static_cast<std::uint64_t>(i) * threads + t + 1;
          s->put(make_job(id), [&, id](result r) {
            calls[id]++;
            if (!r) failures++;
            if (observer.query("SELECT count(*) FROM jobs WHERE id = " + std::to_string(id)) != "1") not_visible++;
          });
        }
      });
    }
    for (auto& t : ts) t.join();
    s->flush();
    batches = s->batches();
    EXPECT_EQ(s->max_job_id(), total);
  }
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(not_visible, 0);
  for (std::uint64_t id = 1; id <= total; id++) ASSERT_EQ(calls[id], 1) << "job " << id;
  EXPECT_LE(batches, total);
  auto s = open_ok(file);
  ASSERT_TRUE(s);
  auto jobs = load_map(*s);
  ASSERT_EQ(jobs.size(), total);
  for (auto& [id, j] : jobs) ASSERT_EQ(j, make_job(id));
}

TEST(JobStore, DoneFunctionsRunInQueueOrderAndMayLoadAndQueueMore) {
  testutil::temp_dir dir;
  auto s = open_ok(dir.file("sched.db"));
  ASSERT_TRUE(s);
  std::vector<std::uint64_t> order;  // touched only on the writer thread, read after flush
  for (std::uint64_t id = 1; id <= 500; id++) {
    s->put(make_job(id), [&, id](result r) {
      EXPECT_EQ(r, result{});
      order.push_back(id);
    });
  }
  // A done_fn that queues another change (as the daemon will: job ended → write state).
  auto chained = std::make_shared<std::promise<result>>();
  auto chained_result = chained->get_future();
  std::size_t seen_by_501 = 0;
  s->put(make_job(501), [&, chained](result) {
    // A done_fn may load: the writer holds no lock while it runs done_fns.
    auto jobs = s->load_jobs();
    seen_by_501 = jobs ? jobs->size() : 0;
    s->put(make_job(502), [chained](result r) { chained->set_value(r); });
  });
  s->flush();
  ASSERT_EQ(order.size(), 500u);
  for (std::size_t i = 0; i < order.size(); i++) ASSERT_EQ(order[i], i + 1);
  EXPECT_EQ(chained_result.get(), result{});
  EXPECT_EQ(seen_by_501, 501u);
  EXPECT_EQ(load_map(*s).size(), 502u);
}

// Group commit, shown without any timing: while another connection holds the write lock,
// the writer is stuck in its first BEGIN; everything queued meanwhile must then go in at
// most one more transaction.
TEST(JobStore, ChangesQueuedDuringACommitShareTheNextTransaction) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  auto s = open_ok(file, {.busy_timeout_ms = 120'000});
  ASSERT_TRUE(s);
  raw_db raw(file);
  ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), "");
  auto before = s->batches();
  std::atomic<int> ok{0};
  for (std::uint64_t id = 1; id <= 300; id++) {
    s->put(make_job(id), [&](result r) { ok += r.has_value(); });
  }
  ASSERT_EQ(raw.exec("COMMIT"), "");
  s->flush();
  EXPECT_EQ(ok, 300);
  EXPECT_LE(s->batches() - before, 2u);
  EXPECT_EQ(load_map(*s).size(), 300u);
}

TEST(JobStore, MaxBatchOneCommitsEveryChangeAlone) {
  testutil::temp_dir dir;
  auto s = open_ok(dir.file("sched.db"), {.max_batch = 1});
  ASSERT_TRUE(s);
  for (std::uint64_t id = 1; id <= 50; id++) s->put(make_job(id), nullptr);
  s->flush();
  EXPECT_EQ(s->batches(), 50u);
  EXPECT_EQ(load_map(*s).size(), 50u);
}

// A batch that cannot commit (here: another connection holds the write lock past the busy
// timeout) reports SQLite's error to every done_fn of it, stores nothing of it, and the
// store works again for the next batch.
TEST(JobStore, AFailedBatchReportsToEveryChangeAndTheStoreStaysUsable) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  auto s = open_ok(file, {.busy_timeout_ms = 20});
  ASSERT_TRUE(s);
  raw_db raw(file);
  ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), "");
  std::vector<result> got(20);
  for (std::uint64_t id = 1; id <= 20; id++) {
    s->put(make_job(id), [&got, id](result r) { got[id - 1] = std::move(r); });
  }
  s->flush();
  for (auto& r : got) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), "begin: database is locked");
  }
  ASSERT_EQ(raw.exec("ROLLBACK"), "");
  EXPECT_EQ(put_sync(*s, make_job(21)), result{});
  auto jobs = load_map(*s);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_TRUE(jobs.contains(21));
  EXPECT_EQ(s->max_job_id(), 21u);
}

// ---- open errors ---------------------------------------------------------------------

TEST(JobStoreOpen, GarbageFileIsRefusedAndLeftAlone) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  std::string garbage;
  for (int i = 0; i < 8192; i++) garbage += static_cast<char>('a' + i % 26);
  std::ofstream(file, std::ios::binary) << garbage;
  auto s = job_store::open(file);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), "job store " + file + ": reading the schema version: file is not a database");
  EXPECT_EQ(slurp(file), garbage);
}

TEST(JobStoreOpen, DamagedPagesAreFoundAtOpen) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  {
    auto s = open_ok(file);
    ASSERT_TRUE(s);
    for (std::uint64_t id = 1; id <= 400; id++) s->put(make_job(id), nullptr);
  }  // closing checkpoints the WAL into the main file
  auto size = std::filesystem::file_size(file);
  ASSERT_GT(size, 8u * 4096);
  {
    // Scribble over the middle of the file, past the header page.
    int fd = ::open(file.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    std::string junk(3 * 4096, '\x5a');
    ASSERT_EQ(::pwrite(fd, junk.data(), junk.size(), 4096 * 2), static_cast<ssize_t>(junk.size()));
    ::close(fd);
  }
  auto s = job_store::open(file);
  ASSERT_FALSE(s.has_value());
  EXPECT_TRUE(s.error().starts_with("job store " + file + ": ")) << s.error();
  // quick_check's report ("the file is corrupt: *** in database main ***; Page 3: ..."),
  // or, when the damage is in a page that open itself reads, SQLite's own word for it.
  bool says_damaged = s.error().find("the file is corrupt: *** in database main ***; ") != std::string::npos ||
                      s.error().find("database disk image is malformed") != std::string::npos;
  EXPECT_TRUE(says_damaged) << s.error();
}

TEST(JobStoreOpen, MissingDirectoryOrADirectoryIsRefused) {
  testutil::temp_dir dir;
  auto missing = job_store::open(dir.file("no/such/sched.db"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error(), "job store " + dir.file("no/such/sched.db") + ": unable to open database file");
  auto a_dir = job_store::open(dir.path());
  ASSERT_FALSE(a_dir.has_value());
  EXPECT_TRUE(a_dir.error().starts_with("job store " + dir.path() + ": ")) << a_dir.error();
}

TEST(JobStoreOpen, ANewerSchemaIsRefusedAndLeftAlone) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  { ASSERT_TRUE(open_ok(file)); }
  {
    raw_db raw(file);
    ASSERT_EQ(raw.exec("PRAGMA user_version = 99"), "");
  }
  auto before = slurp(file);
  auto s = job_store::open(file);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), fmt::format("job store {}: schema version 99 is not one this program knows (0 to {}): "
                                   "written by a newer galaxy-sched?",
                                   file, job_store::schema_version()));
  EXPECT_EQ(slurp(file), before);
}

TEST(JobStoreOpen, AnotherProgramsDatabaseIsRefusedAndLeftAlone) {
  testutil::temp_dir dir;
  auto file = dir.file("other.db");
  {
    raw_db raw(file);
    ASSERT_EQ(raw.exec("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)"), "");
  }
  auto before = slurp(file);
  auto s = job_store::open(file);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), "job store " + file + ": the file is another program's database (it has moz_places), "
                       "not a job store");
  EXPECT_EQ(slurp(file), before);
}

// Opens file as the unprivileged user nobody in a forked child (root can write anything,
// so a read-only file only stops someone else): "ok" or the error text.
std::string open_as_nobody(const std::string& file) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::string out;
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) {
      out = "setuid failed";
    } else {
      auto s = job_store::open(file);
      out = s ? "ok" : s.error();
    }
    (void)!::write(fds[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  return got;
}

TEST(JobStoreOpen, AReadOnlyFileOrDirectoryIsRefused) {
  testutil::temp_dir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  auto file = dir.file("sched.db");
  { ASSERT_TRUE(open_ok(file)); }
  ASSERT_FALSE(std::filesystem::exists(file + "-wal"));  // closed cleanly: no WAL left

  // The file is not writable by the opener.
  ASSERT_EQ(::chmod(file.c_str(), 0444), 0);
  auto before = slurp(file);
  std::string got = open_as_nobody(file);
  EXPECT_EQ(got, "job store " + file + ": the file is read-only (it, or its directory, is not writable)");
  EXPECT_EQ(slurp(file), before);

  // The file is writable but its directory is not (WAL needs -wal and -shm beside it).
  ASSERT_EQ(::chmod(file.c_str(), 0666), 0);
  got = open_as_nobody(file);
  EXPECT_TRUE(got.starts_with("job store " + file + ": ")) << got;
  EXPECT_TRUE(got.ends_with("(the file or its directory is not writable)")) << got;
  EXPECT_EQ(slurp(file), before);
}

// ---- durability across SIGKILL -------------------------------------------------------

// store_crasher puts jobs from 4 threads and prints each id when its done_fn says it is
// durable; it is killed with SIGKILL mid-stream, three times over the same file. After
// each kill, every printed id must be in the file and intact, and every row in the file
// must be a whole record (a row is make_job(id) or absent, never torn).
TEST(JobStoreDurability, EveryAcknowledgedJobSurvivesSigkill) {
  testutil::temp_dir dir;
  auto file = dir.file("sched.db");
  std::set<std::uint64_t> acked_all;
  std::uint64_t first = 1;
  for (int round = 0; round < 3; round++) {
    auto child = testutil::process::spawn(
        {GALAXY_STORE_CRASHER, file, "4", std::to_string(first)}, {});
    ASSERT_TRUE(child.has_value()) << child.error();
    std::set<std::uint64_t> acked;
    // Let a few hundred acknowledgements through, then kill it in the middle of the stream.
    while (acked.size() < 300) {
      auto line = child->read_line(60s);
      ASSERT_TRUE(line.has_value()) << "round " << round << ": " << line.error();
      acked.insert(std::stoull(*line));
    }
    child->signal(SIGKILL);
    auto st = child->wait(60s);
    ASSERT_TRUE(st.has_value());
    EXPECT_EQ(*st, 128 + SIGKILL) << "the crasher ended on its own: it failed";
    // Lines it wrote before it died are still in the pipe.
    std::string rest;
    for (std::string more; !(more = child->read_some(1s)).empty();) rest += more;
    std::istringstream in(rest);
    for (std::string l; std::getline(in, l);) acked.insert(std::stoull(l));
    auto s = open_ok(file);
    ASSERT_TRUE(s);
    auto jobs = load_map(*s);
    for (auto id : acked) {
      auto it = jobs.find(id);
      ASSERT_NE(it, jobs.end()) << "round " << round << ": acknowledged job " << id << " is lost";
      ASSERT_EQ(it->second, make_job(id)) << "round " << round << ": job " << id << " is damaged";
    }
    for (auto& [id, j] : jobs) ASSERT_EQ(j, make_job(id)) << "row " << id << " is not a whole record";
    for (auto id : acked_all) ASSERT_TRUE(jobs.contains(id)) << "job " << id << " of an earlier round is lost";
    acked_all.insert(acked.begin(), acked.end());
    EXPECT_GE(s->max_job_id(), *acked.rbegin());
    first = s->max_job_id() + 1;
  }
  EXPECT_GE(acked_all.size(), 900u);
}

}  // namespace
