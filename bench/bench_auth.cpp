// bench_auth: what proving who is asking costs (issue 12, "Benchmark"), next to what MUNGE
// itself costs, in one run on one machine.
//
// One run measures (each rate --reps times, in rounds: every rate once per round, so that
// the load of the machine's other tenants weighs on all alike; medians reported, ratios as
// the median of the per-round ratios):
//   (a) attaches/s: on one connection, serially, --attaches times an attach as the
//       caller's own user followed by a Tclunk of the new root, against galaxy-ramfs:
//         - on a Unix socket (SO_PEERCRED: no Tauth; what `galaxy up` serves on);
//         - on loopback TCP with --auth none (the name believed: the old behaviour);
//         - on loopback TCP with --auth munge: Tauth, a fresh credential from munge_encode,
//           Twrite of it to the afid (answered once munge_decode in the server has
//           checked it), Tattach naming the afid, Tclunk of the afid and of the root.
//   (a) floor: munge_encode followed by munge_decode of the result in this process, over
//       the same munged: the two round trips to munged that a MUNGE attach cannot avoid.
//   (b) galaxy-node's resident memory (VmRSS, /proc/PID/status) on loopback TCP with
//       --auth none and with --auth munge: 300 ms after its listening line, and after one
//       attach (with MUNGE the decoding worker thread exists from the first credential
//       on); with --owner (run as root), also after --owner-tasks tasks run as that local
//       user, once the NSS look-up helper they needed (srv9p/nss.hpp) has gone, with the
//       helper's own memory read while it was there. --memory-only measures (b) alone,
//       so that two builds (--node, --label) can be compared in one run
//       (bench/run_node_memory.sh).
//
// munged is our own: a key of --key-bytes random bytes in a temporary directory and
// `munged --foreground` on a socket there, so nothing depends on the machine's munged.
// Before each round a quiet gate (bench/common.hpp) waits up to --quiet-wait s for the
// machine's other tenants to use less than --quiet-max % of the CPUs. Progress goes to
// stderr; the markdown tables go to stdout. bench/run_auth.sh builds this in Release and
// runs it; bench/RESULTS.md records a run.
#include <fcntl.h>
#include <munge.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/core.h>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/common.hpp"
#include "fsclient/client.hpp"
#include "srv9p/auth.hpp"
#include "srv9p/munge.hpp"

extern char** environ;

namespace {

using bench::since;
using bench::stats;
using bench::steady;

std::vector<pid_t> children;  // what die() must not leave behind
std::string scratch;          // the temporary directory, removed at the end

[[noreturn]] void die(std::string_view what) {
  fmt::print(stderr, "bench_auth: {}\n", what);
  for (pid_t p : children) ::kill(p, SIGTERM);
  std::_Exit(1);  // not exit(): other threads may still be inside a client
}

void say(std::string_view what) { fmt::print(stderr, "bench_auth: {}\n", what); }

struct options {
  std::string ramfs = GALAXY_RAMFS;
  std::string node = GALAXY_NODE;
  int attaches = 2000;  // per repetition
  int reps = 5;
  int quiet_max = 20;
  int quiet_wait = 60;
  bool memory_only = false;  // (b) only
  std::string owner;         // (b): also run tasks as this local user
  int owner_tasks = 20;
  std::string label = "this build";
};

// Starts argv with stdout on a pipe; returns the pid and the first line it printed (none
// is read when read_line is false: munged prints nothing there).
std::pair<pid_t, std::string> start(const std::vector<std::string>& argv, bool read_line = true) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) die(fmt::format("pipe: {}", std::strerror(errno)));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(p[1]);
  if (rc != 0) die(fmt::format("cannot start {}: {}", argv[0], std::strerror(rc)));
  children.push_back(pid);
  std::string line;
  char c;
  while (read_line && ::read(p[0], &c, 1) == 1 && c != '\n') line += c;
  ::close(p[0]);
  return {pid, line};
}

void stop(pid_t pid) {
  ::kill(pid, SIGTERM);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  std::erase(children, pid);
}

// The dial string of a "listening on DIAL" line.
std::string dial_of(const std::string& line, std::string_view prog) {
  constexpr std::string_view prefix = "listening on ";
  if (!line.starts_with(prefix)) die(fmt::format("{} printed '{}', not 'listening on DIAL'", prog, line));
  return line.substr(prefix.size());
}

std::uint64_t rss_kib(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(f, line);) {
    if (line.starts_with("VmRSS:")) return std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  die(fmt::format("no VmRSS in /proc/{}/status", pid));
}

// A line of /proc/PID/smaps_rollup, KiB (0 when absent).
std::uint64_t rollup_kib(pid_t pid, std::string_view key) {
  std::ifstream f(fmt::format("/proc/{}/smaps_rollup", pid));
  for (std::string line; std::getline(f, line);) {
    if (line.starts_with(key)) return std::strtoull(line.c_str() + key.size(), nullptr, 10);
  }
  return 0;
}

// A line of /proc/PID/status, KiB (0 when absent: a zombie has no memory lines).
std::uint64_t status_kib(pid_t pid, std::string_view key) {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(f, line);) {
    if (line.starts_with(key)) return std::strtoull(line.c_str() + key.size(), nullptr, 10);
  }
  return 0;
}

// "anon A, file F, PSS P" in MiB (proc(5): RssAnon and RssFile of status, Pss of smaps_rollup).
std::string mem_detail(pid_t pid) {
  return fmt::format("anon {:.2f}, file {:.2f}, PSS {:.2f}", status_kib(pid, "RssAnon:") / 1024.0,
                     status_kib(pid, "RssFile:") / 1024.0, rollup_kib(pid, "Pss:") / 1024.0);
}

// The child of pid named galaxy-nss (galaxy-node's look-up helper, srv9p/nss.hpp), zombie
// or not, or -1.
pid_t nss_helper_of(pid_t pid) {
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::ifstream f(e.path() / "stat");
    std::string s;
    std::getline(f, s);
    auto lp = s.find('('), rp = s.rfind(')');
    if (lp == std::string::npos || rp == std::string::npos || rp + 4 >= s.size()) continue;
    if (s.substr(lp + 1, rp - lp - 1) != "galaxy-nss") continue;
    if (std::strtol(s.c_str() + rp + 4, nullptr, 10) == pid) return static_cast<pid_t>(std::strtol(s.c_str(), nullptr, 10));
  }
  return -1;
}

std::string my_name() {
  auto n = srv9p::local_name(::geteuid());
  if (!n) die("this uid has no user name");
  return *n;
}

// (a): n serial attach + clunk on one connection. Returns attaches/s.
double attach_rate(fsclient::client& c, int n, const std::string& uname) {
  auto t0 = steady::now();
  for (int i = 0; i < n; i++) {
    auto root = c.attach(uname);
    if (!root) die(fmt::format("attach: {}", root.error()));
    if (auto ok = c.clunk(*root); !ok) die(fmt::format("clunk: {}", ok.error()));
  }
  return n / since(t0);
}

// (a) floor: n munge_encode + munge_decode pairs. Returns pairs/s.
double munge_rate(const std::string& socket, int n) {
  munge_ctx_t ctx = munge_ctx_create();
  if (ctx == nullptr || munge_ctx_set(ctx, MUNGE_OPT_SOCKET, socket.c_str()) != EMUNGE_SUCCESS) {
    die("munge_ctx");
  }
  auto t0 = steady::now();
  for (int i = 0; i < n; i++) {
    char* cred = nullptr;
    if (munge_err_t e = munge_encode(&cred, ctx, nullptr, 0); e != EMUNGE_SUCCESS) {
      die(fmt::format("munge_encode: {}", munge_strerror(e)));
    }
    uid_t uid;
    gid_t gid;
    munge_err_t e = munge_decode(cred, ctx, nullptr, nullptr, &uid, &gid);
    std::free(cred);
    if (e != EMUNGE_SUCCESS) die(fmt::format("munge_decode: {}", munge_strerror(e)));
  }
  double r = n / since(t0);
  munge_ctx_destroy(ctx);
  return r;
}

stats median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return stats{n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v.front(), v.back()};
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"bench_auth: attaches/s with and without MUNGE, and galaxy-node's memory with it"};
  app.add_option("--ramfs", o.ramfs, "galaxy-ramfs binary")->capture_default_str();
  app.add_option("--node", o.node, "galaxy-node binary")->capture_default_str();
  app.add_option("--attaches", o.attaches, "attaches per repetition")->capture_default_str();
  app.add_option("--reps", o.reps, "repetitions of each rate")->capture_default_str();
  app.add_option("--quiet-max", o.quiet_max, "quiet gate: max % CPU of other tenants")->capture_default_str();
  app.add_option("--quiet-wait", o.quiet_wait, "quiet gate: max seconds to wait")->capture_default_str();
  app.add_flag("--memory-only", o.memory_only, "measure only galaxy-node's memory (b), not the attach rates");
  app.add_option("--owner", o.owner, "(b): a local user to run tasks as before the last reading (needs root)");
  app.add_option("--owner-tasks", o.owner_tasks, "(b): how many tasks as --owner")->capture_default_str();
  app.add_option("--label", o.label, "(b): what the galaxy-node binary is, for the table")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (o.attaches < 1 || o.reps < 1 || o.owner_tasks < 1) die("bad option values");
  ::signal(SIGPIPE, SIG_IGN);

  char tmpl[] = "/tmp/galaxy-bench-auth-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) die(fmt::format("mkdtemp: {}", std::strerror(errno)));
  scratch = tmpl;
  ::chmod(tmpl, 0711);  // munged wants its socket's directory searchable

  // Our own munged, on a key of our own.
  std::string key = scratch + "/key", sock = scratch + "/munge.sock";
  {
    std::ifstream rnd("/dev/urandom", std::ios::binary);
    std::string bytes(1024, '\0');
    rnd.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    int fd = ::open(key.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) die("key file");
    ::close(fd);
  }
  pid_t munged = start({"/usr/sbin/munged", "--foreground", "--socket=" + sock, "--key-file=" + key,
                        "--pid-file=" + scratch + "/munged.pid", "--log-file=" + scratch + "/munged.log",
                        "--seed-file=" + scratch + "/munged.seed"},
                       false)
                     .first;
  for (int i = 0; i < 500 && ::access(sock.c_str(), F_OK) != 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (::access(sock.c_str(), F_OK) != 0) die("munged made no socket (is the munge package installed?)");

  std::string me = my_name();
  auto dial = [&](const std::string& addr, bool munge) {
    fsclient::client::options copts;
    if (munge) copts.credential = [sock](std::string_view bind) { return srv9p::munge_credential(sock, bind); };
    auto c = fsclient::client::dial(addr, copts);
    if (!c) die(fmt::format("dial {}: {}", addr, c.error()));
    return std::move(*c);
  };

  std::string rates_md;  // (a)'s table
  if (!o.memory_only) {
    // (a) the servers: galaxy-ramfs on a Unix socket, on TCP with MUNGE, on TCP with none
    // (one listener each, so the first line each prints is its address).
    std::string unix_dial = "unix!" + scratch + "/ramfs.sock";
    auto [ramfs_unix, lu] = start({o.ramfs, "--listen", unix_dial});
    auto [ramfs_tcp_munge, lm] = start({o.ramfs, "--listen", "tcp!127.0.0.1!0", "--auth", "munge", "--munge-socket", sock});
    auto [ramfs_tcp_none, ln] = start({o.ramfs, "--listen", "tcp!127.0.0.1!0", "--auth", "none"});
    std::string unix_addr = dial_of(lu, "galaxy-ramfs"), munge_addr = dial_of(lm, "galaxy-ramfs"),
                none_addr = dial_of(ln, "galaxy-ramfs");
    auto c_unix = dial(unix_addr, false), c_none = dial(none_addr, false), c_munge = dial(munge_addr, true);

    struct kind {
      std::string what;
      fsclient::client* c;  // null: the munge floor
    };
    std::vector<kind> kinds = {
        {"munge floor", nullptr}, {"unix", c_unix.get()}, {"tcp none", c_none.get()}, {"tcp munge", c_munge.get()}};
    auto measure = [&](const kind& k, int n) { return k.c ? attach_rate(*k.c, n, me) : munge_rate(sock, n); };
    for (const auto& k : kinds) measure(k, std::max(1, o.attaches / 10));  // warm-up
    if (!c_munge->server_authenticates()) die("the MUNGE listener did not ask for a credential");
    std::vector<std::vector<double>> got(kinds.size());
    std::vector<int> loads;
    for (int rep = 0; rep < o.reps; rep++) {
      auto g = bench::quiet_gate(o.quiet_max, o.quiet_wait);
      loads.push_back(g.load_pct);
      say(fmt::format("round {} of {} (background load {}%)", rep + 1, o.reps, g.load_pct));
      for (std::size_t i = 0; i < kinds.size(); i++) got[i].push_back(measure(kinds[i], o.attaches));
    }
    auto ratio = [&](std::size_t i, std::size_t j) {
      std::vector<double> r;
      for (std::size_t k = 0; k < got[i].size(); k++) r.push_back(got[i][k] / got[j][k]);
      return median_of(r).median;
    };
    std::sort(loads.begin(), loads.end());
    int bg = loads[loads.size() / 2];
    c_unix.reset(), c_none.reset(), c_munge.reset();
    stop(ramfs_unix), stop(ramfs_tcp_munge), stop(ramfs_tcp_none);

    std::string n = fmt::format("{} attaches", o.attaches);
    rates_md += "| measurement | median | min – max | unit | ratio | bg load % |\n|---|---:|---:|---|---|---:|\n";
    auto row = [&](std::size_t i, const std::string& what, const std::string& vs) {
      stats s = median_of(got[i]);
      rates_md += fmt::format("| {} | {:.0f} | {:.0f} – {:.0f} | {} | {} | {} |\n", what, s.median, s.min, s.max,
                              kinds[i].c ? "attaches/s" : "encode+decode/s", vs, bg);
    };
    row(0, "(a) munge_encode + munge_decode in one process, same munged — **floor** of a MUNGE attach", "");
    row(1, "(a) attach + clunk, Unix socket (SO_PEERCRED), " + n, "");
    row(2, "(a) attach + clunk, loopback TCP, `--auth none` (the name believed), " + n,
        fmt::format("{:.2f} × Unix", ratio(2, 1)));
    row(3, "(a) Tauth + credential + attach + clunks, loopback TCP, `--auth munge`, " + n,
        fmt::format("{:.3f} × Unix, {:.2f} × the munge floor", ratio(3, 1), ratio(3, 0)));
  }

  // (b) galaxy-node's memory with and without MUNGE: VmRSS 300 ms after its listening
  // line; again after one attach (as this process's user, reading /status); with
  // --owner, again after --owner-tasks tasks as that user (`id -un`, each waited for),
  // once the look-up helper those tasks needed has gone (waited for up to 20 s; its own
  // memory is read while it is there).
  struct node_memory {
    std::uint64_t idle = 0, after_attach = 0, after_tasks = 0;
    std::string idle_detail, tasks_detail, helper = "none seen";
    double helper_gone_s = 0;
  };
  auto node_rss = [&](bool munge) {
    node_memory m;
    std::string spool = scratch + (munge ? "/spool-munge" : "/spool-none");
    std::vector<std::string> argv = {o.node, "--listen", "tcp!127.0.0.1!0", "--spool", spool, "--name", "bench",
                                     "--auth", munge ? "munge" : "none"};
    if (munge) argv.insert(argv.end(), {"--munge-socket", sock});
    auto [pid, line] = start(argv);
    std::string addr = dial_of(line, "galaxy-node");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    m.idle = rss_kib(pid);
    m.idle_detail = mem_detail(pid);
    auto c = dial(addr, munge);
    auto root = c->attach(me);
    if (!root) die(fmt::format("node attach: {}", root.error()));
    if (auto s = c->read_file(*root, "status"); !s) die(fmt::format("node status: {}", s.error()));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    m.after_attach = rss_kib(pid);
    if (!o.owner.empty()) {
      auto as = c->attach(o.owner);  // this process is root: it may speak for others
      if (!as) die(fmt::format("node attach as {}: {}", o.owner, as.error()));
      for (int i = 0; i < o.owner_tasks; i++) {
        auto n = c->read_file(*as, "task/clone");
        if (!n) die(fmt::format("clone: {}", n.error()));
        std::string id = n->substr(0, n->find('\n'));
        if (auto ok = c->write_file(*as, "task/" + id + "/ctl", "exec id -un\n"); !ok) die(fmt::format("exec: {}", ok.error()));
        auto w = c->read_file(*as, "task/" + id + "/wait");
        auto out = c->read_file(*as, "task/" + id + "/stdout");
        if (!w || *w != "exit 0\n" || !out || *out != o.owner + "\n") {
          die(fmt::format("task {} as {}: wait '{}', stdout '{}'", id, o.owner, w ? *w : w.error(), out ? *out : out.error()));
        }
      }
      auto t0 = steady::now();
      if (pid_t h = nss_helper_of(pid); h > 0) {
        m.helper = fmt::format("VmRSS {:.2f} MiB ({}; private {:.2f})", status_kib(h, "VmRSS:") / 1024.0, mem_detail(h),
                               rollup_kib(h, "Private_Clean:") / 1024.0 + rollup_kib(h, "Private_Dirty:") / 1024.0);
      }
      while (nss_helper_of(pid) > 0 && since(t0) < 20) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (nss_helper_of(pid) > 0) die("the look-up helper was still there after 20 s");
      m.helper_gone_s = since(t0);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      m.after_tasks = rss_kib(pid);
      m.tasks_detail = mem_detail(pid);
    }
    c.reset();
    stop(pid);
    return m;
  };
  node_memory none = node_rss(false), mung = node_rss(true);

  stop(munged);
  std::error_code ec;
  std::filesystem::remove_all(scratch, ec);

  if (!o.memory_only) {
    fmt::print("{}", rates_md);
    fmt::print("\n{} rounds, each measuring every rate once; medians, and ratios as the median of the per-round ratios;\n"
               "bg load: the median over the rounds of what the quiet gate saw.\n\n",
               o.reps);
  }
  auto mib = [](std::uint64_t kib) { return fmt::format("{:.2f}", kib / 1024.0); };
  std::string tasks_col = o.owner.empty() ? "" : fmt::format(" after {} tasks as `{}`, idle again |", o.owner_tasks, o.owner);
  fmt::print("| galaxy-node VmRSS, MiB ({}) | just after start | after one attach |{} target | met? |\n|---|---:|---:|{}---|---|\n",
             o.label, tasks_col, o.owner.empty() ? "" : "---:|");
  for (const auto& [what, m] : {std::pair<std::string, const node_memory&>{"`--auth none`", none},
                                std::pair<std::string, const node_memory&>{"`--auth munge`", mung}}) {
    std::uint64_t worst = std::max({m.idle, m.after_attach, m.after_tasks});
    fmt::print("| {} | {} | {} |{} ≤ 4 idle | {} |\n", what, mib(m.idle), mib(m.after_attach),
               o.owner.empty() ? "" : " " + mib(m.after_tasks) + " |", worst <= 4096 ? "met" : "missed");
  }
  for (const auto& [what, m] : {std::pair<std::string, const node_memory&>{"--auth none", none},
                                std::pair<std::string, const node_memory&>{"--auth munge", mung}}) {
    fmt::print("\n- {}: just after start {}", what, m.idle_detail);
    if (!o.owner.empty()) {
      fmt::print("; after the tasks {}. Look-up helper while the tasks had just run: {}; gone {:.1f} s after the last task",
                 m.tasks_detail, m.helper, m.helper_gone_s);
    }
  }
  fmt::print("\n\nAnon: RssAnon; file: RssFile (pages of the binary and its shared libraries, shared with other\n"
             "processes); PSS: smaps_rollup's Pss; private: Private_Clean + Private_Dirty. MiB.\n");
  return 0;
}
