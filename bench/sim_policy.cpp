// sim_policy: the scheduling policy (sched/policy.hpp) driven by a discrete-event
// simulation of a large cluster, with a naive first-fit scheduler run on the same
// workload for comparison. Prints a markdown table. Never part of the tests.
//
//   sim_policy [--nodes 10000] [--jobs 1000000] [--users 120] [--backlog 100000]
//              [--baseline-jobs 300000] [--coalesce-ms 100] [--seed 1] [--weighted-arrivals]
//
// The cluster: 60 % amd64 nodes with 32 CPUs and 128 GiB, 30 % arm64 nodes with 64 CPUs
// and 256 GiB, 10 % amd64 "bigmem" nodes with 96 CPUs and 768 GiB (labels arch=..., and
// mem=big on the last). The workload, from a fixed seed: `users` users, every tenth with
// weight 2, every fourth with a quota of 2 % of the cluster's CPUs and memory; jobs of 12
// sizes from 0.25 CPU / 512 MiB to 32 CPUs / 64 GiB plus a 16 CPU / 512 GiB size that only
// fits bigmem nodes; 15 % need arch=arm64 and 15 % arch=amd64; 15 % preemptible;
// priorities 0–2; 5 % run after an earlier job of the same user; arrays of 100 jobs
// (group) with 10 % of jobs speculated; run times 10 s to 30 min (a tenth of the
// speculated ones straggle 5×); 1 % of runs fail. Every 10 000th job asks for 4 TiB and
// never runs (it must cost nothing). `backlog` jobs are submitted at time 0, then one
// more each time a job starts, until `jobs` have been submitted: the queue stays deep,
// the cluster stays full, DRF and quotas decide who gets each freed slot.
//
// The event loop: pop the runs that end at the next instant, report them to the
// scheduler (finished), submit arrivals, call decide(now), apply the decisions (a start
// or backup schedules the run's end; a preempt cancels it). Timed: every call into the
// scheduler (submit, finished, decide) with steady_clock. Reported: decisions (start,
// preempt, fail, backup) per second of scheduler time; the initial fill (one decide()
// that fills the empty cluster) separately; and over the later decide() calls that
// returned decisions, the p50/p99/max time of one call and of one decision (a call's
// time divided by its decisions).
//
// DRF checks (first policy run, users without quota): the unweighted dominant shares of
// weight-1 and weight-2 users with jobs queued at the instant half the jobs have been
// submitted; and, time-averaged over one sample per simulated minute until the last
// submission, the ratio of weight-2 to weight-1 users' mean share, over the users with
// any job queued and over those with a backlog (user_info::backlog: a ready,
// schedulable, non-preemptible job queued — the demand the first DRF phase weighs), the
// spread of the backlogged users' weighted shares, and how often each had a backlog.
// --weighted-arrivals makes weight-2 users submit twice as many jobs (a different
// workload: not the recorded one).
//
// The baseline ("naive first fit") is what a scheduler without indexes does: one FIFO
// queue; for each job in order, scan every node for the first one with the labels and
// room; stop at the first job that fits nowhere (no backfill — with backfill the naive
// scan would be O(queue × nodes) per pass). No DRF, quotas, preemption or speculation.
// It runs on the first `baseline-jobs` jobs of the same workload.
#include "sched/policy.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdint>
#include <deque>
#include <queue>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using namespace sched::policy;
using clk = std::chrono::steady_clock;
constexpr std::int64_t gib = std::int64_t{1} << 30;
constexpr std::int64_t mib = std::int64_t{1} << 20;

struct options {
  int nodes = 10'000;
  std::int64_t jobs = 1'000'000;
  int users = 120;
  std::int64_t backlog = 100'000;
  std::int64_t coalesce_ms = 100;
  std::int64_t baseline_jobs = 300'000;
  std::uint32_t seed = 1;
  bool weighted_arrivals = false;
};

std::vector<node_spec> make_cluster(int n) {
  std::vector<node_spec> nodes;
  nodes.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    int k = i % 10;
    node_spec s;
    s.name = fmt::format("n{}", i);
    if (k < 6) {
      s.capacity = {32'000, 128 * gib};
      s.labels = {{"arch", "amd64"}};
    } else if (k < 9) {
      s.capacity = {64'000, 256 * gib};
      s.labels = {{"arch", "arm64"}};
    } else {
      s.capacity = {96'000, 768 * gib};
      s.labels = {{"arch", "amd64"}, {"mem", "big"}};
    }
    nodes.push_back(std::move(s));
  }
  return nodes;
}

// The job stream: deterministic from the seed; next() gives job i+1 and its run time.
struct workload {
  struct item {
    job_spec spec;
    std::int64_t run_ms = 0;
    bool fails = false;
  };
  explicit workload(const options& o) : opt(o), rng(o.seed) {}

  item next(std::int64_t now) {
    item it;
    job_spec& j = it.spec;
    j.id = ++count;
    int u = static_cast<int>(rng() % static_cast<unsigned>(opt.users));
    if (opt.weighted_arrivals) {  // weight-2 users (every tenth) submit twice as often
      int heavy = (opt.users + 9) / 10;
      int r = static_cast<int>(rng() % static_cast<unsigned>(opt.users + heavy));
      u = r < opt.users ? r : (r - opt.users) * 10;
    }
    j.user = fmt::format("user{}", u);
    static constexpr resources sizes[] = {
        {250, 512 * mib},     {500, 1 * gib},       {1'000, 2 * gib},   {1'000, 8 * gib},
        {2'000, 4 * gib},     {2'000, 16 * gib},    {4'000, 8 * gib},   {4'000, 32 * gib},
        {8'000, 16 * gib},    {8'000, 64 * gib},    {16'000, 32 * gib}, {32'000, 64 * gib},
    };
    unsigned r = rng() % 100;
    // mostly small: the first sizes are the most common
    std::size_t size = r < 30 ? rng() % 3 : r < 70 ? 3 + rng() % 4 : r < 95 ? 7 + rng() % 3 : 10 + rng() % 2;
    j.need = sizes[size];
    if (rng() % 200 == 0) {
      j.need = {16'000, 512 * gib};
      j.needs = {{"mem", "big"}};
    }
    unsigned a = rng() % 100;
    if (a < 15) j.needs.emplace_back("arch", "arm64");
    if (a >= 15 && a < 30 && j.needs.empty()) j.needs.emplace_back("arch", "amd64");
    if (j.id % 10'000 == 0) {
      j.need = {1'000, 4096 * gib};  // unschedulable
      j.needs.clear();
    }
    j.priority = static_cast<int>(rng() % 3);
    j.preemptible = rng() % 100 < 15;
    j.submitted_ms = now;
    // arrays: each user's jobs come in groups of 100
    auto& seq = user_seq[u];
    j.group = fmt::format("user{}-array{}", u, seq / 100);
    ++seq;
    j.speculate = rng() % 10 == 0;
    if (rng() % 100 < 5 && !recent[u].empty()) j.after = {recent[u][rng() % recent[u].size()]};
    auto& rec = recent[u];
    if (rec.size() < 16) {
      rec.push_back(j.id);
    } else {
      rec[rng() % 16] = j.id;
    }
    it.run_ms = 10'000 + static_cast<std::int64_t>(rng() % 1'790'000);
    if (j.speculate && rng() % 10 == 0) it.run_ms *= 5;
    it.fails = rng() % 100 == 0;
    return it;
  }

  const options& opt;
  std::mt19937_64 rng;
  std::uint64_t count = 0;
  std::unordered_map<int, std::uint64_t> user_seq;
  std::unordered_map<int, std::vector<std::uint64_t>> recent;
};

// The naive first-fit scheduler: same calls as sched::policy::scheduler, the part of
// them the simulation uses.
class first_fit {
 public:
  explicit first_fit(std::vector<node_spec> nodes) : nodes_(std::move(nodes)) {
    free_.reserve(nodes_.size());
    for (const node_spec& n : nodes_) free_.push_back(n.capacity);
  }
  std::expected<void, std::string> submit(job_spec j) {
    // a job no node can hold would block the FIFO forever: refuse it (an O(nodes) scan)
    bool possible = false;
    for (const node_spec& n : nodes_) possible |= fits_on(j, n, n.capacity);
    if (!possible) return std::unexpected("unschedulable");
    queue_.push_back(std::move(j));
    return {};
  }
  std::expected<void, std::string> finished(std::uint64_t id, outcome, std::int64_t, std::string_view) {
    auto it = running_.find(id);
    resources& f = free_[it->second.second];
    f.cpu_millis += it->second.first.cpu_millis;
    f.mem_bytes += it->second.first.mem_bytes;
    running_.erase(it);
    return {};
  }
  std::vector<decision> decide(std::int64_t) {
    std::vector<decision> out;
    while (!queue_.empty()) {
      const job_spec& j = queue_.front();
      std::size_t n = 0;
      for (; n < nodes_.size(); ++n) {
        if (fits_on(j, nodes_[n], free_[n])) break;
      }
      if (n == nodes_.size()) break;  // head of line blocks the rest
      free_[n].cpu_millis -= j.need.cpu_millis;
      free_[n].mem_bytes -= j.need.mem_bytes;
      running_[j.id] = {j.need, n};
      out.push_back(decision{decision::kind::start, j.id, nodes_[n].name, ""});
      queue_.pop_front();
    }
    return out;
  }

 private:
  static bool fits_on(const job_spec& j, const node_spec& n, const resources& room) {
    if (j.need.cpu_millis > room.cpu_millis || j.need.mem_bytes > room.mem_bytes) return false;
    for (const label& l : j.needs) {
      if (std::find(n.labels.begin(), n.labels.end(), l) == n.labels.end()) return false;
    }
    return true;
  }
  std::vector<node_spec> nodes_;
  std::vector<resources> free_;
  std::deque<job_spec> queue_;
  std::unordered_map<std::uint64_t, std::pair<resources, std::size_t>> running_;
};

struct result {
  std::string name;
  std::int64_t submitted = 0, decisions = 0, starts = 0, preempts = 0, fails = 0, backups = 0;
  std::int64_t ended = 0;
  double policy_s = 0;       // every call into the scheduler, thread CPU time
  double policy_wall_s = 0;  // the same, wall time
  double decide_s = 0;       // decide() alone
  std::int64_t fill_decisions = 0;
  double fill_s = 0;
  std::vector<double> call_us, per_decision_us;  // decide() calls after the fill that returned decisions
  std::int64_t sim_end_ms = 0;
  std::string fairness, fairness_avg;
};

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// What two readings of the thread CPU clock cost when nothing runs between them (a
// system call each: about a microsecond here); subtracted from every timed call.
double clock_overhead_s() {
  static const double overhead = [] {
    constexpr int n = 20'000;
    std::vector<double> d(n);
    for (double& x : d) {
      double a = thread_cpu_s();
      x = thread_cpu_s() - a;
    }
    std::sort(d.begin(), d.end());
    return d[n / 2];
  }();
  return overhead;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

template <class S>
result simulate(const std::string& name, S& s, const options& opt, std::int64_t total_jobs, bool report_users,
                std::int64_t coalesce_ms) {
  result res;
  res.name = name;
  workload w(opt);
  struct run {
    std::int64_t end_ms;
    std::uint64_t job;
    std::uint64_t token;
    bool operator>(const run& o) const { return std::tie(end_ms, token) > std::tie(o.end_ms, o.token); }
  };
  struct live {
    std::int64_t run_ms;
    bool fails;
    bool done = false;
    std::vector<std::pair<std::string, std::uint64_t>> copies;  // (node, token)
  };
  std::priority_queue<run, std::vector<run>, std::greater<run>> ends;
  std::unordered_map<std::uint64_t, live> jobs;
  std::uint64_t next_token = 0;
  std::int64_t now = 0;

  // CPU time of this thread (what the policy costs, even when other tenants of the
  // machine take the CPU away), and wall time.
  auto timed = [&](auto&& f) {
    auto w0 = clk::now();
    double c0 = thread_cpu_s();
    f();
    double c = std::max(0.0, thread_cpu_s() - c0 - clock_overhead_s());
    res.policy_s += c;
    res.policy_wall_s += std::chrono::duration<double>(clk::now() - w0).count();
    return c;
  };
  auto submit_one = [&] {
    workload::item it = w.next(now);
    jobs[it.spec.id] = live{it.run_ms, it.fails, false, {}};
    std::uint64_t id = it.spec.id;
    bool accepted = true;
    timed([&] { accepted = s.submit(std::move(it.spec)).has_value(); });
    if (!accepted) jobs.erase(id);
    ++res.submitted;
  };
  auto apply = [&](const std::vector<decision>& ds) {
    for (const decision& d : ds) {
      ++res.decisions;
      live& j = jobs.at(d.job);
      switch (d.what) {
        case decision::kind::start:
        case decision::kind::backup: {
          std::int64_t ms = d.what == decision::kind::backup ? j.run_ms / 5 : j.run_ms;
          std::uint64_t tok = ++next_token;
          j.copies.emplace_back(d.node, tok);
          ends.push(run{now + ms, d.job, tok});
          (d.what == decision::kind::start ? res.starts : res.backups)++;
          if (d.what == decision::kind::start && res.submitted < total_jobs) submit_one();
          break;
        }
        case decision::kind::preempt:
          std::erase_if(j.copies, [&](const auto& c) { return c.first == d.node; });
          ++res.preempts;
          if (j.done && j.copies.empty()) jobs.erase(d.job);
          break;
        case decision::kind::fail:
          jobs.erase(d.job);
          ++res.fails;
          break;
      }
    }
  };
  auto decide = [&](bool fill) {
    std::vector<decision> ds;
    double sec = timed([&] { ds = s.decide(now); });
    res.decide_s += sec;
    if (fill) {
      res.fill_s = sec;
      res.fill_decisions = static_cast<std::int64_t>(ds.size());
    } else if (!ds.empty()) {
      res.call_us.push_back(sec * 1e6);
      res.per_decision_us.push_back(sec * 1e6 / static_cast<double>(ds.size()));
    }
    apply(ds);
  };

  for (std::int64_t i = 0; i < std::min(opt.backlog, total_jobs); ++i) submit_one();
  decide(true);
  bool fairness_taken = false;
  // Time-averaged DRF check: one sample per simulated minute from the fill until the last
  // submission (while the queue is deep), over the users without quota.
  struct fair_stats {
    int samples = 0;
    double ratio_backlogged = 0;  // Σ mean share of backlogged w2 users / of backlogged w1 users
    int ratio_backlogged_n = 0;
    double ratio_queued = 0;      // the same over users with any job queued (the old check)
    int ratio_queued_n = 0;
    double worst_spread = 0;      // max over samples of (max − min)/mean weighted share, backlogged users
    long user_samples[3] = {0, 0, 0}, backlogged[3] = {0, 0, 0};  // by weight
  } fs;
  std::int64_t next_sample_ms = 60'000;
  while (!ends.empty()) {
    // The runs that end at the next instant, or within coalesce_ms of it (as a daemon
    // that coalesces placement passes would see them), reported at their own times.
    std::int64_t horizon = ends.top().end_ms + coalesce_ms;
    while (!ends.empty() && ends.top().end_ms <= horizon) {
      run r = ends.top();
      ends.pop();
      now = r.end_ms;
      auto it = jobs.find(r.job);
      if (it == jobs.end()) continue;
      auto& copies = it->second.copies;
      auto c = std::find_if(copies.begin(), copies.end(), [&](const auto& cp) { return cp.second == r.token; });
      if (c == copies.end()) continue;  // preempted
      std::string node = c->first;
      copies.erase(c);
      outcome o = it->second.fails ? outcome::failed : outcome::done;
      timed([&] { (void)s.finished(r.job, o, now, node); });
      ++res.ended;
      if (copies.empty()) {
        jobs.erase(it);
      } else if (o == outcome::done) {
        it->second.done = true;  // the other copy comes back as a preempt decision
      }
    }
    decide(false);
    if constexpr (std::is_same_v<S, scheduler>) {
      if (report_users && now >= next_sample_ms && res.submitted < total_jobs) {
        next_sample_ms = now - now % 60'000 + 60'000;
        ++fs.samples;
        double sum_b[3] = {0, 0, 0}, sum_q[3] = {0, 0, 0};
        int n_b[3] = {0, 0, 0}, n_q[3] = {0, 0, 0};
        double lo = 1e9, hi = 0, sum_w = 0;
        for (const std::string& u : s.users()) {
          auto info = s.user(u);
          if (!info || info->quota.cpu_millis != unlimited) continue;
          int w = info->weight == 2 ? 2 : 1;
          double share = info->dominant_share * info->weight;  // unweighted
          ++fs.user_samples[w];
          if (info->queued > 0) {
            sum_q[w] += share;
            ++n_q[w];
          }
          if (info->backlog > 0) {
            ++fs.backlogged[w];
            sum_b[w] += share;
            ++n_b[w];
            lo = std::min(lo, info->dominant_share);
            hi = std::max(hi, info->dominant_share);
            sum_w += info->dominant_share;
          }
        }
        if (n_b[1] > 0 && n_b[2] > 0) {
          fs.ratio_backlogged += (sum_b[2] / n_b[2]) / (sum_b[1] / n_b[1]);
          ++fs.ratio_backlogged_n;
        }
        if (n_q[1] > 0 && n_q[2] > 0) {
          fs.ratio_queued += (sum_q[2] / n_q[2]) / (sum_q[1] / n_q[1]);
          ++fs.ratio_queued_n;
        }
        if (n_b[1] + n_b[2] > 1 && sum_w > 0) {
          fs.worst_spread = std::max(fs.worst_spread, (hi - lo) / (sum_w / (n_b[1] + n_b[2])));
        }
      }
      if (report_users && !fairness_taken && res.submitted >= total_jobs / 2) {
        fairness_taken = true;
        double lo1 = 1e9, hi1 = 0, lo2 = 1e9, hi2 = 0;
        int backlogged = 0;
        for (const std::string& u : s.users()) {
          auto info = s.user(u);
          if (!info || info->queued == 0 || info->quota.cpu_millis != unlimited) continue;
          ++backlogged;
          double share = info->dominant_share * info->weight;  // unweighted
          if (info->weight == 1) {
            lo1 = std::min(lo1, share);
            hi1 = std::max(hi1, share);
          } else {
            lo2 = std::min(lo2, share);
            hi2 = std::max(hi2, share);
          }
        }
        res.fairness = fmt::format(
            "at {:.0f} simulated minutes, {} backlogged users without quota: dominant shares "
            "{:.4f}–{:.4f} (weight 1), {:.4f}–{:.4f} (weight 2)",
            static_cast<double>(now) / 60'000, backlogged, lo1, hi1, lo2, hi2);
      }
    }
  }
  res.sim_end_ms = now;
  if (fs.samples > 0) {
    std::string ratio_b = "n/a";
    if (fs.ratio_backlogged_n > 0) ratio_b = fmt::format("{:.2f}×", fs.ratio_backlogged / fs.ratio_backlogged_n);
    auto pct_of = [](long a, long b) { return b > 0 ? 100.0 * static_cast<double>(a) / static_cast<double>(b) : 0.0; };
    res.fairness_avg = fmt::format(
        "{} one-minute samples until the last submission, users without quota: weight-2 users' mean unweighted "
        "dominant share is {:.2f}× weight-1 users' over the users with any job queued (the check above), {} over "
        "the users with a backlog (a ready non-preemptible job queued; {} samples); among those the weighted shares "
        "spread at most {:.1f} % around their mean; weight-2 users had a backlog in {:.0f} % of their samples, "
        "weight-1 users in {:.0f} %",
        fs.samples, fs.ratio_queued_n ? fs.ratio_queued / fs.ratio_queued_n : 0,
        ratio_b,
        fs.ratio_backlogged_n, 100 * fs.worst_spread, pct_of(fs.backlogged[2], fs.user_samples[2]),
        pct_of(fs.backlogged[1], fs.user_samples[1]));
  }
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  CLI::App app{"sim_policy: the scheduling policy on a simulated cluster"};
  app.add_option("--nodes", opt.nodes, "simulated nodes");
  app.add_option("--jobs", opt.jobs, "jobs submitted in all");
  app.add_option("--users", opt.users, "users");
  app.add_option("--backlog", opt.backlog, "jobs submitted at time 0");
  app.add_option("--baseline-jobs", opt.baseline_jobs, "jobs for the naive first-fit run (0: none)");
  app.add_option("--seed", opt.seed, "workload seed");
  app.add_flag("--weighted-arrivals", opt.weighted_arrivals,
               "weight-2 users submit twice as many jobs (to see weighted DRF with demand to match)");
  app.add_option("--coalesce-ms", opt.coalesce_ms, "second run of the policy: one decide() per this much simulated time (0: none)");
  CLI11_PARSE(app, argc, argv);

  std::vector<node_spec> cluster = make_cluster(opt.nodes);
  std::vector<result> results;

  auto run_policy = [&](std::int64_t coalesce_ms) {
    scheduler s;
    for (const node_spec& n : cluster) (void)s.set_node(n);
    resources total = s.total();
    for (int u = 0; u < opt.users; ++u) {
      std::string name = fmt::format("user{}", u);
      if (u % 10 == 0) (void)s.set_weight(name, 2);
      if (u % 4 == 1) (void)s.set_quota(name, {total.cpu_millis / 50, total.mem_bytes / 50});
    }
    std::string name = coalesce_ms == 0 ? "galaxy policy, one decide() per instant a run ends"
                                        : fmt::format("galaxy policy, one decide() per {} ms of ends", coalesce_ms);
    results.push_back(simulate(name, s, opt, opt.jobs, coalesce_ms == 0, coalesce_ms));
  };
  run_policy(0);
  if (opt.coalesce_ms > 0) run_policy(opt.coalesce_ms);
  if (opt.baseline_jobs > 0) {
    first_fit b(cluster);
    results.push_back(simulate("naive first fit (FIFO, O(nodes) scan per job), one decide() per instant", b, opt,
                               std::min(opt.baseline_jobs, opt.jobs), false, 0));
  }

  fmt::print("| scheduler | jobs | decisions | decisions/s, CPU time (wall) | initial fill | p50 / p99 / max of one "
             "decide() call | p50 / p99 of one decision | CPU time in the scheduler (wall) |\n");
  fmt::print("|---|---:|---:|---:|---|---|---|---:|\n");
  for (const result& r : results) {
    double rate = r.policy_s > 0 ? static_cast<double>(r.decisions) / r.policy_s : 0;
    double wall_rate = r.policy_wall_s > 0 ? static_cast<double>(r.decisions) / r.policy_wall_s : 0;
    fmt::print("| {} | {} | {} ({} start, {} preempt, {} fail, {} backup) | **{:.0f}** ({:.0f}) | {} decisions "
               "in {:.3f} s | {:.1f} / {:.1f} / {:.0f} µs | {:.2f} / {:.2f} µs | {:.2f} s ({:.2f} s) |\n",
               r.name, r.submitted, r.decisions, r.starts, r.preempts, r.fails, r.backups, rate, wall_rate,
               r.fill_decisions, r.fill_s, pct(r.call_us, 0.5), pct(r.call_us, 0.99), pct(r.call_us, 1.0),
               pct(r.per_decision_us, 0.5), pct(r.per_decision_us, 0.99), r.policy_s, r.policy_wall_s);
  }
  fmt::print("\n");
  for (const result& r : results) {
    fmt::print("- {}: {} runs ended; simulated time {:.1f} h; decide() calls with decisions after the fill: {}; "
               "time in decide() {:.2f} s of {:.2f} s in the scheduler\n",
               r.name, r.ended, static_cast<double>(r.sim_end_ms) / 3.6e6, r.call_us.size(), r.decide_s, r.policy_s);
    if (!r.fairness.empty()) fmt::print("- DRF check: {}\n", r.fairness);
    if (!r.fairness_avg.empty()) fmt::print("- DRF check, time-averaged: {}\n", r.fairness_avg);
  }
  fmt::print("- thread CPU clock: {:.2f} µs per pair of readings, subtracted from each timed call\n",
             clock_overhead_s() * 1e6);
  fmt::print("- cluster: {} nodes; {} jobs from {} users; backlog {}; seed {}\n", opt.nodes, opt.jobs, opt.users,
             opt.backlog, opt.seed);
  return 0;
}
