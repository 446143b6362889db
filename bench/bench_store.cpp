// bench_store: durable job submissions per second through sched::job_store (group commit)
// next to the naive way of doing the same on the same machine, in the same run.
//
// Every measurement starts from a fresh database file in --dir (which must be on a real
// disk: on tmpfs fsync costs nothing and the comparison means nothing; the file system
// type is printed). A "submitter" is a thread that does what the scheduler does for each
// write of `exec`: store one job record and wait until it is durable before taking the
// next (a closed loop, one job in flight per submitter). For --seconds, each submitter
// counts its acknowledged jobs; the figure is all of them over the time until the last
// acknowledgement. Measurements, all of them once per round, --reps rounds, median
// reported:
//   (a) one thread appending 4 KiB to a file and fsync(2)-ing it, over and over;
//   (a′) the floor: one thread overwriting 4 KiB blocks of a preallocated file, each
//       followed by fdatasync(2) (a WAL's steady state, and the cheapest sync there is):
//       the most syncs per second this disk gives one writer, hence the ceiling of any
//       design that syncs once per job;
//   (b) job_store::put(), --submitters threads (8 by default) — the design target,
//       ≥ 5 000 jobs/s (shared/design/galaxy.md, "Performance targets");
//   (c) job_store::put(), 1 submitter;
//   (d) the naive peer, --submitters threads: each has its own SQLite connection to the
//       same file (WAL, synchronous=FULL, the same schema, made by job_store::open) and
//       stores each job as BEGIN IMMEDIATE; INSERT OR REPLACE; COMMIT: one transaction and
//       one fsync per job;
//   (e) the naive peer, 1 submitter;
//   (f) job_store with max_batch = 1, --submitters threads: the store's own code with
//       group commit turned off, to show what the grouping alone is worth.
// The mean number of jobs per transaction is printed for the store rows. Ratios (to the
// peer, to the floor) are taken within each round, where both sides saw the same disk,
// and their median is reported: on a shared machine the disk's sync rate changes by an
// order of magnitude from one minute to the next.
//
// Before each round a quiet gate (as in shared/peers/common.sh and bench_9p) waits
// up to --quiet-wait s for the other tenants of the machine to use less than
// --quiet-max % of the CPUs; the load it saw last is printed beside the figure.
// Progress goes to stderr; the markdown table to stdout. bench/run_store.sh builds this
// in Release and runs it; bench/RESULTS.md records a run.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fmt/core.h>
#include <fstream>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/common.hpp"
#include "sched/store.hpp"

namespace {

using bench::since;
using bench::stats;
using bench::steady;
using bench::summarize;

void say(std::string_view what) { fmt::print(stderr, "bench_store: {}\n", what); }

[[noreturn]] void die(std::string_view what) {
  fmt::print(stderr, "bench_store: {}\n", what);
  std::_Exit(1);
}

struct options {
  std::string dir = ".";   // where the database files go (a real disk)
  double seconds = 2.0;    // per repetition
  int reps = 3;
  int submitters = 8;
  int quiet_max = 20;      // % of all CPUs other tenants may use
  int quiet_wait = 60;     // s to wait for that at most
};

// ---- quiet gate (shared/peers/common.sh bg_load, as in bench_9p) ------------------------

int quiet_gate(const options& o, std::string_view what) {
  auto g = bench::quiet_gate(o.quiet_max, o.quiet_wait);
  say(fmt::format("{} (background load {}% of {} CPUs; quiet gate took {:.0f} s)", what, g.load_pct,
                  std::thread::hardware_concurrency(), g.waited_s));
  return g.load_pct;
}

// ---- results ----------------------------------------------------------------------------

std::string thousands(double x) {
  auto s = fmt::format("{:.0f}", x);
  std::string out;
  int n = int(s.size());
  for (int i = 0; i < n; ++i) {
    out += s[i];
    if ((n - i - 1) % 3 == 0 && i != n - 1) out += ' ';
  }
  return out;
}

// ---- the work ---------------------------------------------------------------------------

// A job as the scheduler would store it at `exec`: a few ctl lines of spec, queued.
sched::job_record job(std::uint64_t id) {
  sched::job_record j;
  j.id = id;
  j.owner = "glenda";
  j.spec = "cpu 1000m\nmem 256m\nenv LANG=C.UTF-8\nexec sha256sum /usr/share/common-licenses/GPL-3\n";
  j.state = sched::job_state::queued;
  j.retries = 1;
  j.submitted_ms = 1'763'700'000'000 + static_cast<std::int64_t>(id);
  return j;
}

// A fresh, empty database path in dir (and no -wal/-shm beside it).
std::string fresh_db(const options& o, std::string_view what) {
  static int n = 0;
  auto path = fmt::format("{}/bench-store-{}-{}-{}.db", o.dir, ::getpid(), what, n++);
  for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  return path;
}

void drop_db(const std::string& path) {
  for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
}

// (a) 4 KiB appends, each followed by fsync, for `seconds`: fsyncs/s.
double fsync_floor(const options& o) {
  auto path = fresh_db(o, "fsync");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die("open " + path);
  std::string block(4096, 'x');
  std::uint64_t n = 0;
  auto t0 = steady::now();
  while (since(t0) < o.seconds) {
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()) || ::fsync(fd) != 0) {
      die("write/fsync " + path);
    }
    n++;
  }
  double rate = double(n) / since(t0);
  ::close(fd);
  drop_db(path);
  return rate;
}

// (a′) 4 KiB writes cycling through a preallocated 4 MiB file, each followed by
// fdatasync(2), for `seconds`: syncs/s. This is a WAL's steady state (the log is reused
// from its start after each checkpoint, so its blocks are overwritten, not appended) and
// the cheapest sync there is: no size or block allocation to journal.
double fdatasync_floor(const options& o) {
  auto path = fresh_db(o, "fdatasync");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die("open " + path);
  constexpr std::size_t file_bytes = 4u << 20, block_bytes = 4096;
  std::string block(block_bytes, 'x');
  for (std::size_t off = 0; off < file_bytes; off += block_bytes) {
    if (::pwrite(fd, block.data(), block.size(), static_cast<off_t>(off)) != static_cast<ssize_t>(block.size())) {
      die("write " + path);
    }
  }
  if (::fsync(fd) != 0) die("fsync " + path);
  std::uint64_t n = 0;
  auto t0 = steady::now();
  while (since(t0) < o.seconds) {
    auto off = static_cast<off_t>((n * block_bytes) % file_bytes);
    if (::pwrite(fd, block.data(), block.size(), off) != static_cast<ssize_t>(block.size()) || ::fdatasync(fd) != 0) {
      die("write/fdatasync " + path);
    }
    n++;
  }
  double rate = double(n) / since(t0);
  ::close(fd);
  drop_db(path);
  return rate;
}

struct store_result {
  double jobs_per_s = 0;
  double per_batch = 0;  // jobs per transaction
};

// (b), (c), (f): submitters threads through job_store::put, closed loop.
store_result through_store(const options& o, int submitters, std::size_t max_batch) {
  auto path = fresh_db(o, "store");
  auto s = sched::job_store::open(path, {.max_batch = max_batch});
  if (!s) die(s.error());
  auto& store = **s;
  std::atomic<std::uint64_t> next_id{1}, acked{0};
  std::atomic<bool> failed{false};
  auto t0 = steady::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < submitters; t++) {
    ts.emplace_back([&] {
      std::mutex mu;
      std::condition_variable cv;
      while (since(t0) < o.seconds) {
        bool done = false;
        store.put(job(next_id++), [&](std::expected<void, std::string> r) {
          if (!r) {
            say(r.error());
            failed = true;
          }
          std::lock_guard lk(mu);
          done = true;
          cv.notify_one();
        });
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return done; });
        acked++;
      }
    });
  }
  for (auto& t : ts) t.join();
  double elapsed = since(t0);
  if (failed) die("a put failed");
  store_result r{double(acked) / elapsed, double(acked) / double(std::max<std::uint64_t>(store.batches(), 1))};
  s->reset();
  drop_db(path);
  return r;
}

// (d), (e): the naive peer. The schema is made by job_store::open (then closed), so the
// table, its columns and the file's settings are the store's own.
double naive(const options& o, int submitters) {
  auto path = fresh_db(o, "naive");
  {
    auto s = sched::job_store::open(path);
    if (!s) die(s.error());
  }
  std::atomic<std::uint64_t> next_id{1}, acked{0};
  auto t0 = steady::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < submitters; t++) {
    ts.emplace_back([&] {
      sqlite3* db = nullptr;
      if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) die("naive open");
      sqlite3_busy_timeout(db, 60'000);
      sqlite3_exec(db, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
      sqlite3_stmt *begin = nullptr, *ins = nullptr, *commit = nullptr;
      sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, nullptr);
      sqlite3_prepare_v2(db, "COMMIT", -1, &commit, nullptr);
      sqlite3_prepare_v2(db,
                         "INSERT OR REPLACE INTO jobs (id, owner, name, spec, state, node, task, attempts, "
                         "retries, priority, preemptible, after_ids, exit, note, submitted_ms, started_ms, "
                         "ended_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
                         "?15, ?16, ?17)",
                         -1, &ins, nullptr);
      if (begin == nullptr || ins == nullptr || commit == nullptr) die(std::string("naive prepare: ") + sqlite3_errmsg(db));
      while (since(t0) < o.seconds) {
        auto j = job(next_id++);
        if (sqlite3_step(begin) != SQLITE_DONE) die(std::string("naive begin: ") + sqlite3_errmsg(db));
        sqlite3_reset(begin);
        sqlite3_bind_int64(ins, 1, static_cast<std::int64_t>(j.id));
        sqlite3_bind_text(ins, 2, j.owner.data(), int(j.owner.size()), SQLITE_STATIC);
        sqlite3_bind_text(ins, 3, j.name.data(), int(j.name.size()), SQLITE_STATIC);
        sqlite3_bind_text(ins, 4, j.spec.data(), int(j.spec.size()), SQLITE_STATIC);
        sqlite3_bind_text(ins, 5, "queued", -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 6, "", 0, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 7, 0);
        sqlite3_bind_int64(ins, 8, j.attempts);
        sqlite3_bind_int64(ins, 9, j.retries);
        sqlite3_bind_int64(ins, 10, j.priority);
        sqlite3_bind_int64(ins, 11, 0);
        sqlite3_bind_text(ins, 12, "", 0, SQLITE_STATIC);
        sqlite3_bind_text(ins, 13, "", 0, SQLITE_STATIC);
        sqlite3_bind_text(ins, 14, "", 0, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 15, j.submitted_ms);
        sqlite3_bind_int64(ins, 16, 0);
        sqlite3_bind_int64(ins, 17, 0);
        if (sqlite3_step(ins) != SQLITE_DONE) die(std::string("naive insert: ") + sqlite3_errmsg(db));
        sqlite3_reset(ins);
        if (sqlite3_step(commit) != SQLITE_DONE) die(std::string("naive commit: ") + sqlite3_errmsg(db));
        sqlite3_reset(commit);
        acked++;
      }
      sqlite3_finalize(begin);
      sqlite3_finalize(ins);
      sqlite3_finalize(commit);
      sqlite3_close(db);
    });
  }
  for (auto& t : ts) t.join();
  double rate = double(acked) / since(t0);
  drop_db(path);
  return rate;
}

std::string fs_type(const std::string& dir) {
  struct statfs sf {};
  if (::statfs(dir.c_str(), &sf) != 0) return "unknown";
  switch (static_cast<unsigned long>(sf.f_type)) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs (fsync is free here: the figures mean nothing)";
    case 0x794C7630: return "overlayfs";
    default: return fmt::format("f_type {:#x}", static_cast<unsigned long>(sf.f_type));
  }
}


}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"bench_store: durable job submissions/s, group commit vs one transaction per job"};
  app.add_option("--dir", o.dir, "directory for the database files (a real disk)")->capture_default_str();
  app.add_option("--seconds", o.seconds, "length of one repetition")->capture_default_str();
  app.add_option("--reps", o.reps, "rounds (each measures everything once)")->capture_default_str();
  app.add_option("--submitters", o.submitters, "concurrent submitters of (b), (d), (f)")->capture_default_str();
  app.add_option("--quiet-max", o.quiet_max, "quiet gate: max % CPU of other tenants")->capture_default_str();
  app.add_option("--quiet-wait", o.quiet_wait, "quiet gate: max seconds to wait")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (o.reps < 1 || o.submitters < 1 || o.seconds <= 0) die("bad option values");
  std::filesystem::create_directories(o.dir);
  say(fmt::format("database files in {} ({}); SQLite {}", o.dir, fs_type(o.dir), sqlite3_libversion()));

  // Rounds, not one measurement after another: the disk is shared with the machine's other
  // tenants and its sync rate swings by more than 10× from minute to minute, so every
  // round measures everything, each store figure right after its peer, and the ratios
  // are taken within a round (their median is reported).
  int n = o.submitters;
  std::vector<double> append_fsync, overwrite_fdatasync, store_n, store_1, naive_n, naive_1, store_nb;
  std::vector<double> pb_n, pb_1, pb_nb, store_vs_naive_n, store_vs_naive_1, store_n_vs_floor, store_1_vs_floor,
      naive_n_vs_floor, naive_1_vs_floor, store_nb_vs_floor, floor_vs_append;
  std::vector<int> loads;
  for (int rep = 0; rep < o.reps; rep++) {
    loads.push_back(quiet_gate(o, fmt::format("round {} of {}", rep + 1, o.reps)));
    append_fsync.push_back(fsync_floor(o));
    overwrite_fdatasync.push_back(fdatasync_floor(o));
    double floor = overwrite_fdatasync.back();
    floor_vs_append.push_back(floor / append_fsync.back());
    naive_n.push_back(naive(o, n));
    auto sn = through_store(o, n, 0);
    store_n.push_back(sn.jobs_per_s);
    pb_n.push_back(sn.per_batch);
    naive_1.push_back(naive(o, 1));
    auto s1 = through_store(o, 1, 0);
    store_1.push_back(s1.jobs_per_s);
    pb_1.push_back(s1.per_batch);
    auto snb = through_store(o, n, 1);
    store_nb.push_back(snb.jobs_per_s);
    pb_nb.push_back(snb.per_batch);
    store_vs_naive_n.push_back(sn.jobs_per_s / naive_n.back());
    store_vs_naive_1.push_back(s1.jobs_per_s / naive_1.back());
    store_n_vs_floor.push_back(sn.jobs_per_s / floor);
    store_1_vs_floor.push_back(s1.jobs_per_s / floor);
    naive_n_vs_floor.push_back(naive_n.back() / floor);
    naive_1_vs_floor.push_back(naive_1.back() / floor);
    store_nb_vs_floor.push_back(snb.jobs_per_s / floor);
    say(fmt::format("round {}: floor {:.0f} syncs/s; {} submitters: store {:.0f}, naive {:.0f}; 1 submitter: store "
                    "{:.0f}, naive {:.0f}; max_batch 1: {:.0f} jobs/s",
                    rep + 1, floor, n, sn.jobs_per_s, naive_n.back(), s1.jobs_per_s, naive_1.back(),
                    snb.jobs_per_s));
  }
  auto med = [](const std::vector<double>& v) { return summarize(v).median; };
  auto x = [&](const std::vector<double>& ratios, std::string_view to) {
    return fmt::format("{:.2f} × {}", med(ratios), to);
  };
  auto one = [](double v) { return fmt::format("{:.1f}", v); };

  struct row {
    std::string what;
    stats s;
    std::string unit, vs, per_batch, target, met;
  };
  stats sn = summarize(store_n);
  std::vector<row> rows = {
      {"(a) 4 KiB append + fsync, 1 thread", summarize(append_fsync), "syncs/s", "", "", "", ""},
      {"(a′) 4 KiB overwrite + fdatasync, 1 thread — **floor**: the most syncs/s, hence the most jobs/s of "
       "any design that syncs once per job",
       summarize(overwrite_fdatasync), "syncs/s", x(floor_vs_append, "(a)"), "", "", ""},
      {fmt::format("(b) job_store::put, group commit, {} submitters", n), sn, "durable jobs/s",
       x(store_vs_naive_n, "(d)") + ", " + x(store_n_vs_floor, "(a′)"), one(med(pb_n)), "≥ 5 000",
       sn.median >= 5000 ? "met" : "missed"},
      {"(c) job_store::put, group commit, 1 submitter", summarize(store_1), "durable jobs/s",
       x(store_vs_naive_1, "(e)") + ", " + x(store_1_vs_floor, "(a′)"), one(med(pb_1)), "", ""},
      {fmt::format("(d) naive peer: a connection per submitter, one transaction per job, {} submitters", n),
       summarize(naive_n), "durable jobs/s", x(naive_n_vs_floor, "(a′)"), "1", "", ""},
      {"(e) naive peer, 1 submitter", summarize(naive_1), "durable jobs/s", x(naive_1_vs_floor, "(a′)"), "1", "",
       ""},
      {fmt::format("(f) job_store::put, max_batch = 1 (no grouping), {} submitters", n), summarize(store_nb),
       "durable jobs/s", x(store_nb_vs_floor, "(a′)"), one(med(pb_nb)), "", ""},
  };
  fmt::print("| measurement | median | min – max | unit | ratio (median of the rounds' ratios) | jobs per "
             "transaction | design target | met? |\n");
  fmt::print("|---|---:|---:|---|---|---:|---:|---|\n");
  for (auto& r : rows) {
    fmt::print("| {} | {} | {} – {} | {} | {} | {} | {} | {} |\n", r.what, thousands(r.s.median), thousands(r.s.min),
               thousands(r.s.max), r.unit, r.vs, r.per_batch, r.target, r.met);
  }
  std::string load_list;
  for (int l : loads) load_list += (load_list.empty() ? "" : ", ") + std::to_string(l) + " %";
  fmt::print("\n{} rounds of {:.1f} s per measurement, median; background load seen by the quiet gate before each "
             "round: {}; database files in {} ({}); SQLite {}.\n",
             o.reps, o.seconds, load_list, o.dir, fs_type(o.dir), sqlite3_libversion());
  return 0;
}
