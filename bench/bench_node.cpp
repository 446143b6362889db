// bench_node: how fast galaxy-node starts tasks, and how little memory it holds, next to
// the floors beneath it (issue 3, "Benchmark").
//
// One run measures (each rate --reps times, in rounds: every rate once per round, so that
// the load of the machine's other tenants weighs on all alike; medians reported, ratios as
// the median of the per-round ratios):
//   (d) tasks/s of --tasks × /bin/true through the node's files with --inflight tasks in
//       flight: per task, walk task/clone, open it ORDWR (the open allocates task N and
//       the fid is its ctl), write "exec /bin/true", read "N" (one write of 4 messages),
//       then walk task/N/wait, open, read "exit 0", clunk both (one write of 5 messages).
//       One fsclient::client over loopback TCP; each of the --inflight threads does its
//       tasks one after the other. The tasks stay in the spool (the node keeps results);
//       they are removed with "rm" between repetitions, untimed. Measured with tasks at
//       nice 0 (the priority xargs gives its children; the target is checked here) and at
//       the node's default nice 19 + SCHED_IDLE; and with the spool on each --spool-in
//       directory: /tmp (the disk) and /dev/shm (tmpfs, to show what the disk costs).
//   (d) floors: a C posix_spawn loop that keeps --inflight /bin/true children alive
//       (shared/peers/spawnbench.c, the same loop), and `seq N | xargs -P2 -n1 /bin/true`
//       (as shared/peers/run_raw.sh times it), both in this run.
//   (e) the daemon's resident memory (VmRSS, /proc/PID/status, with its anonymous and
//       file-backed parts and the PSS): just after start; with --running `sleep 30` tasks
//       running; and idle again after all of the above.
//   (f) with --owner USER (issue 12): the same rate on two more nodes in the same rounds,
//       tasks attached as USER (run as that uid with its groups, each in a cgroup of its
//       own, killed as a whole at its end: the default), and tasks attached as root on a
//       node started with --no-cgroups (run as --run-as nobody, each in a process group:
//       what every task was before), beside the same xargs -P2.
// The stripped binary's size is bench/run_node.sh's to measure (strip -o).
//
// Before each round a quiet gate (as in shared/peers/common.sh) waits up to --quiet-wait s
// for the machine's other tenants to use less than --quiet-max % of the CPUs.
//
// Progress goes to stderr; the markdown table goes to stdout. bench/run_node.sh builds
// this in Release and runs it; bench/RESULTS.md records a run.
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/core.h>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/common.hpp"
#include "fsclient/client.hpp"
#include "srv9p/fcall.hpp"

extern char** environ;

namespace {

using bench::since;
using bench::stats;
using bench::steady;
using bench::summarize;

std::vector<pid_t> started_nodes;  // what die() must not leave behind

[[noreturn]] void die(std::string_view what) {
  fmt::print(stderr, "bench_node: {}\n", what);
  for (pid_t p : started_nodes) ::kill(p, SIGTERM);
  std::_Exit(1);  // not exit(): other threads may still be inside the client
}

void say(std::string_view what) { fmt::print(stderr, "bench_node: {}\n", what); }

struct options {
  std::string node = GALAXY_NODE;  // the galaxy-node binary to start
  int tasks = 1000;                // per repetition of (d)
  int inflight = 2;                // tasks in flight
  int reps = 5;
  int running = 100;               // sleeping tasks for (e)
  // Directories the node's spool goes in, one node each; the target is checked on the
  // first. /tmp is the disk here; /dev/shm (tmpfs) shows what the file system costs.
  std::vector<std::string> spool_in = {"/tmp", "/dev/shm"};
  int quiet_max = 20;              // % of all CPUs other tenants may use
  int quiet_wait = 60;             // s to wait for that at most
  std::string addr;                // a running node to measure (d) against: no floors, no (e)
  // (f): a local user; when given, two more nodes in the same rounds: tasks attached as
  // this user (run as it, each in a cgroup of its own), and tasks attached as root on a
  // node with --no-cgroups (run as --run-as nobody, process group only).
  std::string owner;
};

// ---- quiet gate (shared/peers/common.sh bg_load, as bench_9p.cpp) ------------------------

int quiet_gate(const options& o, std::string_view what) {
  auto g = bench::quiet_gate(o.quiet_max, o.quiet_wait);
  say(fmt::format("{} (background load {}% of {} CPUs; quiet gate took {:.0f} s)", what, g.load_pct,
                  std::thread::hardware_concurrency(), g.waited_s));
  return g.load_pct;
}

template <class F>
stats repeat(int reps, F&& once) {
  std::vector<double> v;
  for (int i = 0; i < reps; i++) v.push_back(once());
  return summarize(std::move(v));
}

// ---- child processes -----------------------------------------------------------------------

pid_t spawn(const std::vector<std::string>& argv, int* out_fd) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  int p[2] = {-1, -1};
  if (out_fd) {
    if (::pipe2(p, O_CLOEXEC) < 0) die(fmt::format("pipe: {}", std::strerror(errno)));
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
  }
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) die(fmt::format("cannot start {}: {}", argv[0], std::strerror(rc)));
  if (out_fd) {
    ::close(p[1]);
    *out_fd = p[0];
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// VmRSS of a process, KiB (proc(5)).
std::uint64_t rss_kib(pid_t pid, std::string_view key = "VmRSS:") {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(f, line)) {
    if (line.starts_with(key)) return std::strtoull(line.c_str() + key.size(), nullptr, 10);
  }
  die(fmt::format("no {} in /proc/{}/status", key, pid));
}

// (d) floor: shared/peers/spawnbench.c's loop. Returns processes/s.
double spawn_loop(int n, int inflight) {
  int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, devnull, 1);
  char prog[] = "/bin/true";
  char* argv[] = {prog, nullptr};
  int started = 0, running = 0, failed = 0;
  auto t0 = steady::now();
  while (started < n || running > 0) {
    while (started < n && running < inflight) {
      pid_t pid;
      if (int rc = posix_spawn(&pid, prog, &fa, nullptr, argv, environ); rc != 0) {
        die(fmt::format("posix_spawn: {}", std::strerror(rc)));
      }
      started++, running++;
    }
    int st;
    if (::waitpid(-1, &st, 0) < 0) die(fmt::format("waitpid: {}", std::strerror(errno)));
    running--;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed++;
  }
  double t = since(t0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(devnull);
  if (failed) die("a /bin/true failed");
  return n / t;
}

// (d) floor: `seq N | xargs -P2 -n1 /bin/true`, timed around the shell that runs it
// (run_raw.sh times the same pipeline from bash).
double xargs_rate(int n, int inflight) {
  auto t0 = steady::now();
  pid_t pid = spawn({"sh", "-c", fmt::format("seq {} | xargs -P{} -n1 /bin/true", n, inflight)}, nullptr);
  if (int rc = wait_exit(pid); rc != 0) die(fmt::format("xargs exited with status {}", rc));
  return n / since(t0);
}

// ---- the node --------------------------------------------------------------------------------

struct node_process {
  pid_t pid = -1;
  int out_fd = -1;
  std::string addr;
  std::string spool_dir;  // the temporary directory holding the spool

  void start(const options& o, const std::string& parent, const std::vector<std::string>& extra = {}) {
    char tmpl[4096];
    std::snprintf(tmpl, sizeof tmpl, "%s/galaxy-bench-node-XXXXXX", parent.c_str());
    if (::mkdtemp(tmpl) == nullptr) die(fmt::format("mkdtemp: {}", std::strerror(errno)));
    spool_dir = tmpl;
    ::chmod(tmpl, 0711);  // as root the node runs tasks as nobody, who must reach the spool
    std::vector<std::string> argv = {o.node, "--listen", "tcp!127.0.0.1!0", "--auth", "none", "--spool",
                                     spool_dir + "/spool", "--name", "bench"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    pid = spawn(argv, &out_fd);
    std::string line;
    char c;
    while (::read(out_fd, &c, 1) == 1 && c != '\n') line += c;
    constexpr std::string_view prefix = "listening on ";
    if (!line.starts_with(prefix)) die(fmt::format("{} printed '{}', not 'listening on DIAL'", o.node, line));
    addr = line.substr(prefix.size());
    started_nodes.push_back(pid);
  }
  void stop() {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    int rc = wait_exit(pid);
    if (rc != 0) say(fmt::format("galaxy-node exited with status {}", rc));
    ::close(out_fd);
    std::erase(started_nodes, pid);
    pid = -1;
    std::error_code ec;
    std::filesystem::remove_all(spool_dir, ec);
  }
};

struct conn {
  std::unique_ptr<fsclient::client> c;
  std::uint32_t root = 0;
};

// Attaches as uname; by default the daemon's own user, to whom /ctl (kill all) belongs.
conn connect(const std::string& addr, std::string uname = "") {
  auto c = fsclient::client::dial(addr);
  if (!c) die(fmt::format("dial {}: {}", addr, c.error()));
  if (uname.empty()) {
    const passwd* pw = ::getpwuid(::geteuid());
    uname = pw != nullptr ? pw->pw_name : "none";
  }
  auto root = (*c)->attach(uname);
  if (!root) die(fmt::format("attach: {}", root.error()));
  return {std::move(*c), *root};
}

// One task through the files: clone (held open as ctl), exec, read N; then wait.
// Returns the task number. Dies on any error or on a wait other than "exit 0".
std::uint64_t one_task(conn& k, const std::string& cmd, bool wait) {
  auto& c = *k.c;
  std::uint32_t ctl = c.alloc_fid();
  auto r1 = c.rpc_batch({srv9p::twalk{k.root, ctl, {"task", "clone"}}, srv9p::topen{ctl, srv9p::ordwr},
                         srv9p::twrite{ctl, 0, cmd}, srv9p::tread{ctl, 0, 64}});
  for (auto& r : r1) {
    if (!r) die(fmt::format("clone/exec: {}", r.error()));
  }
  const std::string& n = std::get<srv9p::rread>(*r1[3]).data;
  std::uint64_t id = std::strtoull(n.c_str(), nullptr, 10);
  if (!wait) {
    if (auto ok = c.clunk(ctl); !ok) die(fmt::format("clunk: {}", ok.error()));
    return id;
  }
  std::uint32_t w = c.alloc_fid();
  auto r2 = c.rpc_batch({srv9p::twalk{k.root, w, {"task", std::to_string(id), "wait"}}, srv9p::topen{w, srv9p::oread},
                         srv9p::tread{w, 0, 64}, srv9p::tclunk{w}, srv9p::tclunk{ctl}});
  for (auto& r : r2) {
    if (!r) die(fmt::format("wait: {}", r.error()));
  }
  c.release_fid(w);
  c.release_fid(ctl);
  const std::string& status = std::get<srv9p::rread>(*r2[2]).data;
  if (status != "exit 0\n") die(fmt::format("task {}: wait says '{}'", id, status));
  return id;
}

// (d): n tasks of /bin/true, `inflight` threads each running its share serially.
double node_rate(conn& k, int n, int inflight, std::vector<std::uint64_t>& made) {
  std::atomic<int> next{0};
  std::vector<std::vector<std::uint64_t>> ids(inflight);
  std::vector<std::thread> threads;
  auto t0 = steady::now();
  for (int i = 0; i < inflight; i++) {
    threads.emplace_back([&, i] {
      while (next.fetch_add(1) < n) ids[i].push_back(one_task(k, "exec /bin/true\n", true));
    });
  }
  for (auto& t : threads) t.join();
  double rate = n / since(t0);
  for (auto& v : ids) made.insert(made.end(), v.begin(), v.end());
  return rate;
}

void remove_tasks(conn& k, std::vector<std::uint64_t>& ids) {
  for (auto id : ids) {
    if (auto ok = k.c->write_file(k.root, fmt::format("task/{}/ctl", id), "rm\n"); !ok) {
      die(fmt::format("rm task {}: {}", id, ok.error()));
    }
  }
  ids.clear();
}

std::string mib(std::uint64_t kib) { return fmt::format("{:.2f}", kib / 1024.0); }

// "anon A, file F, PSS P MiB" (proc(5): RssAnon and RssFile of status, Pss of smaps_rollup).
std::string mem_detail(pid_t pid) {
  std::uint64_t pss = 0;
  std::ifstream f(fmt::format("/proc/{}/smaps_rollup", pid));
  for (std::string line; std::getline(f, line);) {
    if (line.starts_with("Pss:")) pss = std::strtoull(line.c_str() + 4, nullptr, 10);
  }
  return fmt::format("anon {}, file {}, PSS {}", mib(rss_kib(pid, "RssAnon:")), mib(rss_kib(pid, "RssFile:")), mib(pss));
}

// The file system type of a directory, from /proc/self/mounts (the longest mount point that
// is a prefix of it).
std::string fs_type(const std::string& dir) {
  std::ifstream f("/proc/self/mounts");
  std::string dev, mnt, type, best_type = "?";
  std::size_t best = 0;
  for (std::string line; std::getline(f, line);) {
    std::istringstream in(line);
    in >> dev >> mnt >> type;
    bool prefix = dir == mnt || (dir.starts_with(mnt) && (mnt == "/" || dir[mnt.size()] == '/'));
    if (prefix && mnt.size() >= best) {
      best = mnt.size();
      best_type = type;
    }
  }
  return best_type;
}

struct row {
  std::string what;
  stats s;
  std::string unit, vs, target, met;
  int bg = 0;
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"bench_node: galaxy-node's task rate and memory next to their floors; prints a markdown table"};
  app.add_option("--node", o.node, "galaxy-node binary to start")->capture_default_str();
  app.add_option("--tasks", o.tasks, "tasks per repetition")->capture_default_str();
  app.add_option("--inflight", o.inflight, "tasks in flight")->capture_default_str();
  app.add_option("--reps", o.reps, "repetitions of each rate")->capture_default_str();
  app.add_option("--running", o.running, "sleeping tasks for the loaded RSS")->capture_default_str();
  app.add_option("--spool-in", o.spool_in, "directories for the node's spool, one run each")->capture_default_str();
  app.add_option("--quiet-max", o.quiet_max, "quiet gate: max % CPU of other tenants")->capture_default_str();
  app.add_option("--quiet-wait", o.quiet_wait, "quiet gate: max seconds to wait")->capture_default_str();
  app.add_option("--addr", o.addr, "measure only the task rate of this running node (for profiling)");
  app.add_option("--owner", o.owner, "a local user: also measure tasks as that user in cgroups vs as nobody without");
  CLI11_PARSE(app, argc, argv);
  if (o.reps < 1 || o.tasks < 1 || o.inflight < 1 || o.running < 0 || o.spool_in.empty()) die("bad option values");
  ::signal(SIGPIPE, SIG_IGN);

  std::vector<row> rows;
  std::string what_true = fmt::format("{} × /bin/true, {} in flight", o.tasks, o.inflight);

  if (!o.addr.empty()) {
    conn k = connect(o.addr);
    std::vector<std::uint64_t> made;
    stats rate = repeat(o.reps, [&] {
      double r = node_rate(k, o.tasks, o.inflight, made);
      remove_tasks(k, made);
      return r;
    });
    fmt::print("{}: {:.0f} tasks/s (min {:.0f}, max {:.0f})\n", what_true, rate.median, rate.min, rate.max);
    return 0;
  }

  // Every rate is measured once per round, the rounds one after the other, so that the
  // machine's other tenants (whose load comes and goes) weigh on all of them alike; each
  // ratio is the median of the per-round ratios.
  // Nodes: one per --spool-in directory, all started first. Tasks run at nice 19 and
  // SCHED_IDLE by default; xargs and the spawn loop run theirs at the caller's priority,
  // so the target is checked with tasks at nice 0 (node ctl "nice N" before each rate).
  // (f) adds two nodes after those: tasks of --owner (its own uid, a cgroup each), and
  // root's tasks on a --no-cgroups node (nobody, a process group each).
  struct node_run {
    node_process proc;
    conn k;        // the admin's: ctl (nice)
    conn tasks_k;  // the tasks' owner's; empty: k
    std::string where;
    std::vector<std::string> extra;  // more galaxy-node options
    std::string owner;               // attach name of the tasks; "": the admin
    conn& tasks() { return tasks_k.c ? tasks_k : k; }
  };
  std::size_t n_spool = o.spool_in.size();
  std::vector<node_run> nodes(n_spool + (o.owner.empty() ? 0 : 2));
  for (std::size_t si = 0; si < n_spool; si++) {
    nodes[si].where = fmt::format("spool in {} ({})", o.spool_in[si], fs_type(o.spool_in[si]));
  }
  if (!o.owner.empty()) {
    nodes[n_spool].where = fmt::format("tasks as their owner `{}`, each in a cgroup of its own (the default), spool in {}",
                                       o.owner, o.spool_in[0]);
    nodes[n_spool].owner = o.owner;
    nodes[n_spool + 1].where = fmt::format("root's tasks as `nobody` (--run-as), `--no-cgroups` (process group only), spool in {}",
                                           o.spool_in[0]);
    nodes[n_spool + 1].extra = {"--no-cgroups"};
  }
  for (std::size_t si = 0; si < nodes.size(); si++) {
    nodes[si].proc.start(o, o.spool_in[si < n_spool ? si : 0], nodes[si].extra);
    say(fmt::format("started {} (pid {}) on {}, {}", o.node, nodes[si].proc.pid, nodes[si].proc.addr, nodes[si].where));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::uint64_t rss_start = rss_kib(nodes[0].proc.pid);
  std::string mem_start = mem_detail(nodes[0].proc.pid);
  for (auto& n : nodes) {
    n.k = connect(n.proc.addr);
    if (!n.owner.empty()) n.tasks_k = connect(n.proc.addr, n.owner);
  }

  struct rate_kind {
    std::string what;
    std::size_t node = 0;  // index into nodes; for node rates
    int nice = 0;
    bool is_node = true;
  };
  std::vector<rate_kind> kinds = {{"spawn", 0, 0, false}, {"xargs", 0, 0, false}, {"node", 0, 0, true},
                                  {"node nice 19", 0, 19, true}};
  for (std::size_t si = 1; si < nodes.size(); si++) kinds.push_back({"node " + nodes[si].where, si, 0, true});
  std::vector<std::vector<double>> got(kinds.size());
  std::vector<int> loads;
  std::vector<std::uint64_t> made;
  auto measure = [&](const rate_kind& kd, int n) {
    if (kd.what == "spawn") return spawn_loop(n, o.inflight);
    if (kd.what == "xargs") return xargs_rate(n, o.inflight);
    conn& k = nodes[kd.node].k;
    if (auto ok = k.c->write_file(k.root, "ctl", fmt::format("nice {}\n", kd.nice)); !ok) {
      die(fmt::format("nice {}: {}", kd.nice, ok.error()));
    }
    conn& tk = nodes[kd.node].tasks();
    double r = node_rate(tk, n, o.inflight, made);
    remove_tasks(tk, made);
    return r;
  };
  for (const auto& kd : kinds) measure(kd, o.tasks / 4);  // warm-up
  for (int rep = 0; rep < o.reps; rep++) {
    loads.push_back(quiet_gate(o, fmt::format("round {} of {}", rep + 1, o.reps)));
    for (std::size_t i = 0; i < kinds.size(); i++) got[i].push_back(measure(kinds[i], o.tasks));
  }
  auto st = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    std::size_t n = v.size();
    return stats{n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v.front(), v.back()};
  };
  auto ratio = [&](std::size_t i, std::size_t j) {
    std::vector<double> r;
    for (std::size_t k = 0; k < got[i].size(); k++) r.push_back(got[i][k] / got[j][k]);
    return st(r).median;
  };
  std::sort(loads.begin(), loads.end());
  int bg = loads[loads.size() / 2];
  stats spawn = st(got[0]), xargs = st(got[1]);
  rows.push_back({"(d) posix_spawn loop (C), " + what_true + " — **floor**", spawn, "tasks/s", "", "", "", bg});
  rows.push_back({fmt::format("(d) `seq {} \\| xargs -P{} -n1 /bin/true` — **reference**", o.tasks, o.inflight), xargs,
                  "tasks/s", fmt::format("{:.2f} × spawn", ratio(1, 0)), "", "", bg});
  for (std::size_t i = 2; i < kinds.size(); i++) {
    stats rate = st(got[i]);
    double vs_xargs = ratio(i, 1);
    std::string vs = fmt::format("{:.2f} × xargs, {:.2f} × spawn", vs_xargs, ratio(i, 0));
    if (i == 2) {
      rows.push_back({"(d) galaxy-node: clone, exec, wait through fsclient over loopback TCP, " + what_true +
                          ", tasks at nice 0 (as xargs runs them), " + nodes[0].where,
                      rate, "tasks/s", vs, "≥ 0.5 × xargs", vs_xargs >= 0.5 ? "met" : "missed", bg});
    } else if (kinds[i].nice != 0) {
      rows.push_back({"(d) the same, tasks at the default nice 19 + SCHED_IDLE, " + nodes[0].where, rate, "tasks/s",
                      vs, "", "", bg});
    } else {
      rows.push_back({(kinds[i].node >= n_spool ? "(f) the same, nice 0, " : "(d) the same, nice 0, ") +
                          nodes[kinds[i].node].where,
                      rate, "tasks/s", vs, "", "", bg});
    }
  }
  for (std::size_t si = 1; si < nodes.size(); si++) {
    nodes[si].tasks_k.c.reset();
    nodes[si].k.c.reset();
    nodes[si].proc.stop();
  }

  // (e) memory: N sleeping tasks, counted running by /status, then killed.
  conn& k = nodes[0].k;
  pid_t node_pid = nodes[0].proc.pid;
  std::vector<std::uint64_t> sleepers;
  for (int i = 0; i < o.running; i++) sleepers.push_back(one_task(k, "exec sleep 30\n", false));
  auto status = k.c->read_file(k.root, "status");
  if (!status || status->find(fmt::format(" tasks={} ", o.running)) == std::string::npos) {
    die(fmt::format("/status does not count {} running tasks: {}", o.running, status ? *status : status.error()));
  }
  std::uint64_t rss_loaded = rss_kib(node_pid);
  std::string mem_loaded = mem_detail(node_pid);
  if (auto ok = k.c->write_file(k.root, "ctl", "kill all\n"); !ok) die(fmt::format("kill all: {}", ok.error()));
  for (auto id : sleepers) {
    auto w = k.c->read_file(k.root, fmt::format("task/{}/wait", id));
    if (!w || *w != "signal 9\n") die(fmt::format("sleeper {}: wait says '{}'", id, w ? *w : w.error()));
  }
  remove_tasks(k, sleepers);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::uint64_t rss_after = rss_kib(node_pid), hwm = rss_kib(node_pid, "VmHWM:");
  std::string mem_after = mem_detail(node_pid);
  k.c.reset();
  nodes[0].proc.stop();

  fmt::print("| measurement | median | min – max | unit | ratio | target | met? | bg load % |\n");
  fmt::print("|---|---:|---:|---|---|---|---|---:|\n");
  for (auto& r : rows) {
    fmt::print("| {} | {:.0f} | {:.0f} – {:.0f} | {} | {} | {} | {} | {} |\n", r.what, r.s.median, r.s.min, r.s.max,
               r.unit, r.vs, r.target, r.met, r.bg);
  }
  fmt::print("\n| galaxy-node memory, spool in {} | VmRSS MiB | of which | target | met? |\n|---|---:|---|---|---|\n",
             o.spool_in[0]);
  fmt::print("| (e) idle, just after start | {} | {} | VmRSS ≤ 4 | {} |\n", mib(rss_start), mem_start,
             rss_start <= 4096 ? "met" : "missed");
  fmt::print("| (e) with {} `sleep 30` tasks running | {} | {} | | |\n", o.running, mib(rss_loaded), mem_loaded);
  fmt::print("| (e) idle again, after the whole run | {} | {} | VmRSS ≤ 4 | {} |\n", mib(rss_after), mem_after,
             rss_after <= 4096 ? "met" : "missed");
  fmt::print("| (e) peak (VmHWM) over the whole run | {} | | | |\n", mib(hwm));
  fmt::print("\n{} rounds, each measuring every rate once; medians, and ratios as the median of the per-round\n"
             "ratios; bg load: the median over the rounds of what the quiet gate saw last. Anon: private memory (RssAnon); file: pages of the binary and\n"
             "its shared libraries (RssFile), shared with other processes; PSS: the proportional set size\n"
             "(smaps_rollup), which divides shared pages among their users.\n",
             o.reps);
  return 0;
}
