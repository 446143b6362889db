// bench_sched: jobs through a running galaxy-sched, as a user submits them, over the real
// 9P client (fsclient) on loopback. bench/run_sched.sh starts the scheduler and its nodes,
// runs the peers (xargs, GNU parallel) and calls this once per measurement.
//
// One job is what a shell user does with the unified tree (galaxy(4)):
//   submit  one write of 5 pipelined messages: Twalk jobs/clone to a new fid, Topen it
//           ORDWR (the open makes job N), Tread (gives N), Twrite "exec ARGV\n" on the same
//           fid (the open clone is the job's ctl; the write returns once the job is in
//           the store, i.e. durable), Tclunk;
//   wait    Twalk jobs/N/wait, Topen, Tread (blocks until the job ends; must say "exit 0"),
//           Tclunk;
//   result  Twalk jobs/N/stdout, Topen, Tread, Tclunk (only where the output is asked for).
//
// Modes (--mode):
//   throughput  --jobs N jobs spread over --threads T submitter threads; each thread
//               submits all of its jobs, then waits for each. Prints the wall time from
//               the first submit to the last wait, and jobs/s. With --out FILE, each job's
//               stdout is read after its wait and FILE gets them all in job order.
//   latency     --jobs N jobs one after another: submit, wait, read stdout; prints the
//               min, median, p99 and max of submit-to-result time in ms, and the median of
//               each step.
//   submit      --jobs N submits (no wait) over --threads T threads: durable submissions/s
//               (the caller drains the nodes first so that nothing runs meanwhile).
// The command of job i (0-based) is --cmd with every "{i}" replaced by i + 1.
//
// Output: one line of key=value on stdout (seconds, jobs_per_s, or the latency figures);
// errors on stderr and exit status 1. A job that does not end "exit 0", or a reply that is
// an error, fails the run: a benchmark of jobs that did not run measures nothing.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fmt/core.h>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fsclient/client.hpp"
#include "srv9p/fcall.hpp"

namespace {

using steady = std::chrono::steady_clock;

double ms_since(steady::time_point t0) {
  return std::chrono::duration<double, std::milli>(steady::now() - t0).count();
}

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "bench_sched: {}\n", what);
  std::fflush(stderr);
  std::_Exit(1);  // not exit(): other threads may be inside the client
}

std::string command_of(const std::string& tmpl, std::size_t i) {
  std::string out = tmpl;
  std::string num = std::to_string(i + 1);
  for (auto p = out.find("{i}"); p != std::string::npos; p = out.find("{i}", p + num.size())) {
    out.replace(p, 3, num);
  }
  return out;
}

// The data of a batch's Tread reply (index i), or die with the first error of the batch.
std::string read_reply(std::vector<fsclient::client::reply>& rep, std::size_t i, const std::string& what) {
  for (auto& r : rep) {
    if (!r) die(fmt::format("{}: {}", what, r.error()));
  }
  return std::get<srv9p::rread>(*rep[i]).data;
}

// submit: clone + exec in one write of 5 messages; returns the job number as text.
std::string submit(fsclient::client& c, std::uint32_t root, const std::string& cmd) {
  std::uint32_t f = c.alloc_fid();
  auto rep = c.rpc_batch({srv9p::twalk{root, f, {"jobs", "clone"}}, srv9p::topen{f, srv9p::ordwr},
                          srv9p::tread{f, 0, 64}, srv9p::twrite{f, 0, "exec " + cmd + "\n"}, srv9p::tclunk{f}});
  c.release_fid(f);
  std::string n = read_reply(rep, 2, "submit '" + cmd + "'");
  while (!n.empty() && n.back() == '\n') n.pop_back();
  if (n.empty()) die("clone gave no job number");
  return n;
}

// Reads jobs/N/FILE with one Tread of up to 64 KiB (what these jobs write is far less).
std::string read_job_file(fsclient::client& c, std::uint32_t root, const std::string& n, const char* file) {
  std::uint32_t f = c.alloc_fid();
  auto rep = c.rpc_batch({srv9p::twalk{root, f, {"jobs", n, file}}, srv9p::topen{f, srv9p::oread},
                          srv9p::tread{f, 0, 65536}, srv9p::tclunk{f}});
  c.release_fid(f);
  std::string data = read_reply(rep, 2, fmt::format("jobs/{}/{}", n, file));
  if (data.size() == 65536) die(fmt::format("jobs/{}/{}: more than 64 KiB", n, file));
  return data;
}

void wait_ok(fsclient::client& c, std::uint32_t root, const std::string& n) {
  std::string w = read_job_file(c, root, n, "wait");
  if (w != "exit 0\n") die(fmt::format("job {} ended '{}', not 'exit 0'", n, w.substr(0, w.find('\n'))));
}

struct conn {
  std::unique_ptr<fsclient::client> c;
  std::uint32_t root = 0;
};

conn connect(const std::string& addr, const std::string& uname) {
  auto c = fsclient::client::dial(addr);
  if (!c) die(c.error());  // names the dial string
  auto root = (*c)->attach(uname);
  if (!root) die("attach " + uname + ": " + root.error());
  return conn{std::move(*c), *root};
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  std::size_t k = static_cast<std::size_t>(q * static_cast<double>(v.size()));
  if (k > 0 && static_cast<double>(k) == q * static_cast<double>(v.size())) --k;  // nearest rank
  return v[std::min(k, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_sched: jobs through a running galaxy-sched (see bench_sched.cpp)"};
  std::string addr, uname = "root", mode = "throughput", cmd = "/bin/true", out_file;
  std::size_t jobs = 1000, threads = 8;
  bool one_conn = false;
  app.add_option("--addr,-a", addr, "the scheduler's dial string")->required();
  app.add_option("--uname,-u", uname, "attach name (the jobs' owner)");
  app.add_option("--mode", mode, "throughput | latency | submit")->check(CLI::IsMember({"throughput", "latency", "submit"}));
  app.add_option("--jobs,-n", jobs, "number of jobs")->check(CLI::Range(1, 10000000));
  app.add_option("--threads,-t", threads, "submitter threads (throughput, submit)")->check(CLI::Range(1, 1024));
  app.add_option("--cmd", cmd, "the job's argv as ctl words; {i} becomes the job's index, from 1");
  app.add_option("--out", out_file, "throughput: write every job's stdout here, in job order");
  app.add_flag("--one-conn", one_conn, "all threads share one connection (default: one each)");
  CLI11_PARSE(app, argc, argv);

  if (mode == "latency") {
    conn k = connect(addr, uname);
    std::vector<double> total, t_submit, t_wait, t_out;
    for (std::size_t i = 0; i < jobs; ++i) {
      auto t0 = steady::now();
      std::string n = submit(*k.c, k.root, command_of(cmd, i));
      auto t1 = steady::now();
      wait_ok(*k.c, k.root, n);
      auto t2 = steady::now();
      std::string out = read_job_file(*k.c, k.root, n, "stdout");
      double all = ms_since(t0);
      (void)out;
      total.push_back(all);
      t_submit.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      t_wait.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
      t_out.push_back(ms_since(t2));
    }
    fmt::print("jobs={} min_ms={:.3f} median_ms={:.3f} p99_ms={:.3f} max_ms={:.3f} submit_median_ms={:.3f} "
               "wait_median_ms={:.3f} stdout_median_ms={:.3f}\n",
               jobs, quantile(total, 0), quantile(total, 0.5), quantile(total, 0.99), quantile(total, 1),
               quantile(t_submit, 0.5), quantile(t_wait, 0.5), quantile(t_out, 0.5));
    return 0;
  }

  threads = std::min(threads, jobs);
  std::vector<conn> conns;
  for (std::size_t t = 0; t < (one_conn ? 1 : threads); ++t) conns.push_back(connect(addr, uname));
  std::vector<std::string> outputs(out_file.empty() ? 0 : jobs);
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      conn& k = conns[one_conn ? 0 : t];
      while (!go.load()) std::this_thread::yield();
      std::vector<std::pair<std::size_t, std::string>> mine;
      for (std::size_t i = t; i < jobs; i += threads) mine.emplace_back(i, submit(*k.c, k.root, command_of(cmd, i)));
      if (mode == "submit") return;
      for (const auto& [i, n] : mine) {
        wait_ok(*k.c, k.root, n);
        if (!outputs.empty()) outputs[i] = read_job_file(*k.c, k.root, n, "stdout");
      }
    });
  }
  auto t0 = steady::now();
  go = true;
  for (auto& th : pool) th.join();
  double s = ms_since(t0) / 1000;
  if (!out_file.empty()) {
    std::ofstream f(out_file, std::ios::binary | std::ios::trunc);
    for (const auto& o : outputs) f << o;
    if (!f) die("writing " + out_file);
  }
  fmt::print("jobs={} threads={} seconds={:.6f} jobs_per_s={:.1f}\n", jobs, threads, s, static_cast<double>(jobs) / s);
  return 0;
}
