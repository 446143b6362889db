// bench_fuse: how fast a Galaxy tree is through `galaxy mount`, next to the native 9P
// client and the local floor, in one run against one real galaxy-ramfs.
//
// It starts `galaxy-ramfs --big 1073741824` on loopback TCP, makes --files small files
// (100 bytes each, in /s/) through the native client, and mounts the tree twice with the
// real `galaxy mount -f`: once with the default options (attributes and names cached
// 1 s) and once with --attr-timeout 0 (every stat asks the server). Then, each measurement
// repeated --reps times (median, min and max reported):
//   (1) floor: `cat` of a page-cached local 1 GiB file to /dev/null;
//   (2) `cat MOUNT/big >/dev/null` (cat reads st_blksize = 1 MiB at a time), and
//       `dd bs=4M` of the same, whose 4 MiB reads the kernel splits into four 1 MiB FUSE
//       requests in flight (FUSE_CAP_ASYNC_DIO);
//   (3) the native client: /big read with serial 1 MiB Treads in this process, and
//       `galaxy cat -a DIAL big >/dev/null`;
//   (4) small files through the mount: stat(2), then open, read to end of file, close,
//       for every file in /s, files per second, with each of the two mounts;
//   (5) the same with the native client: stat_path + read_file (Twalk+Tstat+Tclunk,
//       then Twalk+Topen+Tread pipelined, Tread, Tclunk).
// Before each measurement a quiet gate (as in shared/peers/common.sh) waits up to
// --quiet-wait s for other tenants to use less than --quiet-max % of the CPUs; the load
// it saw last is printed beside the figure. The target (shared/design/galaxy.md) is
// >= 500 MB/s for the sequential read through FUSE.
//
// Progress goes to stderr, a markdown table to stdout. bench/run_fuse.sh builds this in
// Release and runs it; bench/RESULTS.md records a run.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/core.h>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/common.hpp"
#include "fsclient/client.hpp"
#include "srv9p/fcall.hpp"
#include "tests/testutil.hpp"

extern char** environ;

namespace {

using bench::since;
using bench::stats;
using bench::steady;
using bench::summarize;

struct options {
  std::string ramfs = GALAXY_RAMFS;
  std::string galaxy = GALAXY_TOOL;
  std::string tmpdir = "/tmp";
  int reps = 5;
  int files = 1000;
  std::uint64_t big_bytes = 1ull << 30;
  int quiet_max = 20;
  int quiet_wait = 60;
};

// What die() must not leave behind.
pid_t server_pid = -1;
std::vector<pid_t> bridges;
std::vector<std::string> mounts;
std::string scratch;

void cleanup() {
  for (const auto& m : mounts) {
    pid_t p = -1;
    std::string mp = m;
    char* argv[] = {const_cast<char*>("fusermount3"), const_cast<char*>("-u"), const_cast<char*>("-z"), mp.data(),
                    nullptr};
    if (::posix_spawnp(&p, "fusermount3", nullptr, nullptr, argv, environ) == 0) ::waitpid(p, nullptr, 0);
  }
  for (pid_t b : bridges) {
    int st;
    if (::waitpid(b, &st, WNOHANG) == 0) {
      ::kill(b, SIGTERM);
      ::waitpid(b, &st, 0);
    }
  }
  if (server_pid > 0) {
    ::kill(server_pid, SIGTERM);
    ::waitpid(server_pid, nullptr, 0);
  }
  if (!scratch.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(scratch, ec);
  }
}

[[noreturn]] void die(std::string_view what) {
  fmt::print(stderr, "bench_fuse: {}\n", what);
  cleanup();
  std::_Exit(1);
}

void say(std::string_view what) { fmt::print(stderr, "bench_fuse: {}\n", what); }

// ---- quiet gate (shared/peers/common.sh bg_load) --------------------------------------------

int quiet_gate(const options& o, std::string_view what) {
  auto g = bench::quiet_gate(o.quiet_max, o.quiet_wait);
  say(fmt::format("{} (background load {}%; quiet gate took {:.0f} s)", what, g.load_pct, g.waited_s));
  return g.load_pct;
}

// ---- processes ----------------------------------------------------------------------------

// Runs argv with stdout to out_path (or /dev/null) and waits; false if it failed.
bool run_to(const std::vector<std::string>& argv, const std::string& out_path = "/dev/null") {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  pid_t pid;
  int rc = ::posix_spawnp(&pid, a[0], &fa, nullptr, a.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return false;
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}


// galaxy mount -f DIAL MP [extra...], waiting until the mount is up.
void mount(const options& o, const std::string& dial, const std::string& mp, std::vector<std::string> extra) {
  std::filesystem::create_directories(mp);
  std::vector<std::string> argv{o.galaxy, "mount", "-f", dial, mp};
  argv.insert(argv.end(), extra.begin(), extra.end());
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  pid_t pid;
  if (::posix_spawn(&pid, a[0], nullptr, nullptr, a.data(), environ) != 0) die("cannot start galaxy mount");
  bridges.push_back(pid);
  mounts.push_back(mp);
  auto t0 = steady::now();
  while (!testutil::is_mounted(mp)) {
    if (since(t0) > 20) die("galaxy mount did not come up on " + mp);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// ---- measurements ---------------------------------------------------------------------------

// Seconds for one run of argv (stdout to /dev/null).
double time_run(const std::vector<std::string>& argv) {
  auto t0 = steady::now();
  if (!run_to(argv)) die("failed: " + argv[0] + " " + argv.back());
  return since(t0);
}

double native_read(fsclient::client& c, std::uint32_t root, std::uint64_t expect) {
  auto t0 = steady::now();
  auto f = c.walk(root, "big");
  if (!f || !c.open(*f, srv9p::oread)) die("open big");
  std::uint64_t off = 0;
  for (;;) {
    auto r = c.read(*f, off, c.iounit());
    if (!r) die("read big: " + r.error());
    if (r->empty()) break;
    if ((*r)[0] != static_cast<char>('a' + off % 26)) die("read big: wrong data");
    off += r->size();
  }
  (void)c.clunk(*f);
  if (off != expect) die("read big: short");
  return since(t0);
}

double mount_small_files(const std::string& mp, int files) {
  std::vector<char> buf(4096);
  auto t0 = steady::now();
  for (int i = 0; i < files; i++) {
    std::string p = mp + "/s/" + std::to_string(i);
    struct stat sb {};
    if (::stat(p.c_str(), &sb) != 0 || sb.st_size != 100) die("stat " + p);
    int fd = ::open(p.c_str(), O_RDONLY);
    if (fd < 0) die("open " + p);
    std::size_t total = 0;
    for (;;) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0) die("read " + p);
      if (n == 0) break;
      total += static_cast<std::size_t>(n);
    }
    ::close(fd);
    if (total != 100) die("short read of " + p);
  }
  return since(t0);
}

double native_small_files(fsclient::client& c, std::uint32_t root, int files) {
  auto t0 = steady::now();
  for (int i = 0; i < files; i++) {
    std::string p = "s/" + std::to_string(i);
    auto d = c.stat_path(root, p);
    if (!d || d->length != 100) die("native stat " + p);
    auto data = c.read_file(root, p);
    if (!data || data->size() != 100) die("native read " + p);
  }
  return since(t0);
}

std::string fmt_num(double v) {
  auto s = fmt::format("{:.0f}", v);
  std::string out;
  int n = static_cast<int>(s.size());
  for (int i = 0; i < n; i++) {
    out += s[i];
    if ((n - i - 1) % 3 == 0 && i != n - 1) out += "\u202f";
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"bench_fuse: reads and small files through galaxy mount vs the native client"};
  app.add_option("--ramfs", o.ramfs, "galaxy-ramfs binary")->capture_default_str();
  app.add_option("--galaxy", o.galaxy, "galaxy binary")->capture_default_str();
  app.add_option("--tmpdir", o.tmpdir, "where the mounts and the 1 GiB local file go")->capture_default_str();
  app.add_option("--reps", o.reps, "repetitions per measurement")->capture_default_str();
  app.add_option("--files", o.files, "small files for (4) and (5)")->capture_default_str();
  app.add_option("--quiet-max", o.quiet_max, "quiet gate: max % CPU of other tenants")->capture_default_str();
  app.add_option("--quiet-wait", o.quiet_wait, "quiet gate: max seconds to wait")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  ::signal(SIGPIPE, SIG_IGN);

  char tmpl[4096];
  std::snprintf(tmpl, sizeof tmpl, "%s/bench-fuse-XXXXXX", o.tmpdir.c_str());
  if (::mkdtemp(tmpl) == nullptr) die("mkdtemp");
  scratch = tmpl;
  ::chmod(scratch.c_str(), 0755);

  // The server.
  int out[2];
  if (::pipe(out) != 0) die("pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::string big = std::to_string(o.big_bytes);
  std::vector<std::string> sargv{o.ramfs, "--listen", "tcp!127.0.0.1!0", "--auth", "none", "--big", big};
  std::vector<char*> sa;
  for (auto& s : sargv) sa.push_back(s.data());
  sa.push_back(nullptr);
  if (::posix_spawn(&server_pid, sa[0], &fa, nullptr, sa.data(), environ) != 0) die("cannot start " + o.ramfs);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  std::string line;
  char ch;
  while (::read(out[0], &ch, 1) == 1 && ch != '\n') line += ch;
  if (!line.starts_with("listening on ")) die("galaxy-ramfs said '" + line + "'");
  std::string dial = line.substr(13);

  auto c = fsclient::client::dial(dial);
  if (!c) die(c.error());
  auto root = (*c)->attach("bench");
  if (!root) die(root.error());
  {
    auto d = (*c)->walk(*root, "");
    if (!d || !(*c)->create(*d, "s", srv9p::dmdir | 0755, srv9p::oread)) die("mkdir s");
    (void)(*c)->clunk(*d);
    std::string data(100, 'x');
    for (int i = 0; i < o.files; i++) {
      auto f = (*c)->walk(*root, "s");
      if (!f || !(*c)->create(*f, std::to_string(i), 0644, srv9p::owrite) || !(*c)->write(*f, 0, data)) {
        die("creating small files");
      }
      (void)(*c)->clunk(*f);
    }
  }
  std::string mp = scratch + "/mnt", mp0 = scratch + "/mnt0";
  mount(o, dial, mp, {});
  mount(o, dial, mp0, {"--attr-timeout", "0"});

  // The local floor's file, read once so that it sits in the page cache.
  std::string local = scratch + "/local";
  {
    std::ofstream f(local, std::ios::binary);
    std::string chunk(1 << 20, 'a');
    for (std::uint64_t i = 0; i < o.big_bytes >> 20; i++) f.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  }
  (void)time_run({"cat", local});

  struct row {
    std::string what;
    stats s;
    std::string unit, ratio, target, met;
    int bg;
  };
  std::vector<row> rows;
  auto reps = [&](auto fn) {
    std::vector<double> v;
    for (int i = 0; i < o.reps; i++) v.push_back(fn());
    return summarize(std::move(v));
  };
  const double mb = double(o.big_bytes) / 1e6;
  auto rate = [&](stats t) { return stats{mb / t.median, mb / t.max, mb / t.min}; };

  int bg = quiet_gate(o, "(1) cat of a cached local file");
  stats floor = rate(reps([&] { return time_run({"cat", local}); }));
  rows.push_back({"(1) `cat` of a page-cached local 1 GiB file — **floor**", floor, "MB/s", "1 (floor)", "", "", bg});

  bg = quiet_gate(o, "(2) cat through the mount");
  stats fuse_cat = rate(reps([&] { return time_run({"cat", mp + "/big"}); }));
  rows.push_back({"(2) `cat MOUNT/big` (1 MiB reads)", fuse_cat, "MB/s",
                  fmt::format("{:.2f} × floor", fuse_cat.median / floor.median), "≥ 500",
                  fuse_cat.median >= 500 ? "met" : "missed", bg});
  bg = quiet_gate(o, "(2) dd bs=4M through the mount");
  stats fuse_dd = rate(reps([&] { return time_run({"dd", "if=" + mp + "/big", "of=/dev/null", "bs=4M", "status=none"}); }));
  rows.push_back({"(2) `dd bs=4M if=MOUNT/big` (4 FUSE reads in flight)", fuse_dd, "MB/s",
                  fmt::format("{:.2f} × floor", fuse_dd.median / floor.median), "≥ 500",
                  fuse_dd.median >= 500 ? "met" : "missed", bg});

  bg = quiet_gate(o, "(3) native serial read");
  stats nat = rate(reps([&] { return native_read(**c, *root, o.big_bytes); }));
  rows.push_back({"(3) native client, serial 1 MiB Treads (in process)", nat, "MB/s",
                  fmt::format("{:.2f} × floor", nat.median / floor.median), "", "", bg});
  bg = quiet_gate(o, "(3) galaxy cat");
  stats gcat = rate(reps([&] { return time_run({o.galaxy, "cat", "-a", dial, "big"}); }));
  rows.push_back({"(3) `galaxy cat -a DIAL big` (native tool)", gcat, "MB/s",
                  fmt::format("{:.2f} × floor", gcat.median / floor.median), "", "", bg});

  auto per_s = [&](stats t) { return stats{o.files / t.median, o.files / t.max, o.files / t.min}; };
  bg = quiet_gate(o, "(5) native small files");
  stats nsmall = per_s(reps([&] { return native_small_files(**c, *root, o.files); }));
  bg = quiet_gate(o, "(4) small files through the mount, default options");
  stats fsmall = per_s(reps([&] { return mount_small_files(mp, o.files); }));
  rows.push_back({"(4) stat + cat of a 100-byte file through the mount (attributes cached 1 s)", fsmall, "files/s",
                  fmt::format("{:.2f} × native", fsmall.median / nsmall.median), "", "", bg});
  bg = quiet_gate(o, "(4) small files through the mount, --attr-timeout 0");
  stats fsmall0 = per_s(reps([&] { return mount_small_files(mp0, o.files); }));
  rows.push_back({"(4) the same, mounted with `--attr-timeout 0`", fsmall0, "files/s",
                  fmt::format("{:.2f} × native", fsmall0.median / nsmall.median), "", "", bg});
  rows.push_back({"(5) native client: stat_path + read_file", nsmall, "files/s", "1 (native)", "", "", bg});

  fmt::print("| measurement | median | min – max | unit | ratio | target | met? | bg load % |\n");
  fmt::print("|---|---:|---:|---|---|---:|---|---:|\n");
  for (const auto& r : rows) {
    fmt::print("| {} | {} | {} – {} | {} | {} | {} | {} | {} |\n", r.what, fmt_num(r.s.median), fmt_num(r.s.min),
               fmt_num(r.s.max), r.unit, r.ratio, r.target, r.met, r.bg);
  }

  for (const auto& m : mounts) {
    if (!run_to({o.galaxy, "umount", m})) say("galaxy umount " + m + " failed");
  }
  mounts.clear();
  for (pid_t b : bridges) {
    int st = 0;
    ::waitpid(b, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) say("a galaxy mount did not exit cleanly");
  }
  bridges.clear();
  c->reset();
  cleanup();
  return 0;
}
