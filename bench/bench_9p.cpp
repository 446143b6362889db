// bench_9p: how fast Galaxy's 9P path is on one machine, next to the floors beneath it.
//
// One run measures, in this order (each repeated --reps times, median reported):
//   (a) the floor for small requests: raw loopback TCP ping-pong of 100-byte messages,
//       blocking sockets, TCP_NODELAY, one echo thread;
//   (b) walk+open+read+clunk of a small file through fsclient::client against a real
//       galaxy-ramfs process: serial (one 4-message group per write, rpc_batch) and
//       pipelined (--depth groups in flight, send_batch with callbacks);
//   (c) sequential read of the synthetic 1 GiB /big at msize 1 MiB, iounit-sized reads,
//       serial and --read-depth in flight; next to two floors: a raw TCP stream of the
//       same size through the same kind of sockets, and `dd bs=1M` of a 1 GiB file that
//       sits in the page cache to /dev/null.
// Every figure is also given as a ratio to its floor, and the design's targets
// (shared/design/galaxy.md, "Performance targets") are marked met or missed.
//
// Before each measurement a quiet gate (as in shared/peers/common.sh) waits up to
// --quiet-wait s for the other tenants of the machine to use less than --quiet-max % of
// the CPUs, and the load it saw last is printed beside the figure.
//
// Progress goes to stderr; the markdown table goes to stdout. bench/run.sh builds this
// in Release and runs it; bench/RESULTS.md records a run.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fmt/core.h>
#include <fstream>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
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

// What die() must not leave behind: the server we started and the dd file.
pid_t started_server = -1;
std::string scratch_file;

[[noreturn]] void die(std::string_view what) {
  fmt::print(stderr, "bench_9p: {}\n", what);
  if (started_server > 0) ::kill(started_server, SIGTERM);
  if (!scratch_file.empty()) ::unlink(scratch_file.c_str());
  std::_Exit(1);  // not exit(): other threads may still be inside the client
}

void say(std::string_view what) { fmt::print(stderr, "bench_9p: {}\n", what); }

struct options {
  std::string ramfs = GALAXY_RAMFS;  // the galaxy-ramfs binary to start
  std::string addr;                  // or a running server to use instead (needs --big)
  double seconds = 2.0;              // per timed repetition of (a) and (b)
  int reps = 5;
  int depth = 32;                    // (b) groups in flight
  int read_depth = 4;                // (c) reads in flight
  std::uint64_t big_bytes = 1ull << 30;
  std::string tmpdir = "/tmp";       // where the 1 GiB file for dd goes
  int quiet_max = 20;                // % of all CPUs other tenants may use
  int quiet_wait = 60;               // s to wait for that at most
  bool floors_only = false;          // skip everything that needs galaxy-ramfs
};

// ---- quiet gate (shared/peers/common.sh bg_load) ----------------------------------------

int quiet_gate(const options& o, std::string_view what) {
  auto g = bench::quiet_gate(o.quiet_max, o.quiet_wait);
  say(fmt::format("{} (background load {}% of {} CPUs; quiet gate took {:.0f} s)", what, g.load_pct,
                  std::thread::hardware_concurrency(), g.waited_s));
  return g.load_pct;
}

// ---- results table ------------------------------------------------------------------------

struct row {
  std::string what;
  stats s;
  std::string unit;
  std::string vs_floor;  // "1.00 (floor)", "0.42× ping-pong"
  std::string target;    // "≥ 30 000", "" for floors
  std::string met;       // "met", "missed", ""
  int bg = 0;
};

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

// ---- raw sockets for the floors ---------------------------------------------------------

int listen_loopback(std::uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die(fmt::format("socket: {}", std::strerror(errno)));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(fd, 4) < 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) < 0)
    die(fmt::format("bind/listen on loopback: {}", std::strerror(errno)));
  port = ntohs(a.sin_port);
  return fd;
}

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int connect_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
    die(fmt::format("connect to loopback port {}: {}", port, std::strerror(errno)));
  set_nodelay(fd);
  return fd;
}

int accept_one(int lfd) {
  int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) die(fmt::format("accept: {}", std::strerror(errno)));
  set_nodelay(fd);
  return fd;
}

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= std::size_t(w);
  }
  return true;
}

bool read_all(int fd, char* p, std::size_t n) {
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= std::size_t(r);
  }
  return true;
}

// Pins the calling thread to one CPU (cpu < 0: leaves it alone); returns the old mask.
cpu_set_t pin_to(int cpu) {
  cpu_set_t old;
  CPU_ZERO(&old);
  ::pthread_getaffinity_np(::pthread_self(), sizeof old, &old);
  if (cpu >= 0) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (::pthread_setaffinity_np(::pthread_self(), sizeof one, &one) != 0)
      die(fmt::format("cannot pin a thread to CPU {}", cpu));
  }
  return old;
}

// (a) Round trips per second of 100-byte messages through an echo thread. client_cpu and
// echo_cpu pin the two threads (-1: the scheduler places them).
double tcp_ping_pong(double seconds, int client_cpu = -1, int echo_cpu = -1) {
  constexpr std::size_t msg_bytes = 100;
  std::uint16_t port = 0;
  int lfd = listen_loopback(port);
  cpu_set_t old = pin_to(client_cpu);
  std::thread echo([lfd, echo_cpu] {
    pin_to(echo_cpu);
    int fd = accept_one(lfd);
    char buf[msg_bytes];
    while (read_all(fd, buf, sizeof buf) && write_all(fd, buf, sizeof buf)) {
    }
    ::close(fd);
  });
  int fd = connect_loopback(port);
  char buf[msg_bytes];
  std::memset(buf, 'x', sizeof buf);
  auto round_trip = [&] {
    if (!write_all(fd, buf, sizeof buf) || !read_all(fd, buf, sizeof buf)) die("echo: connection lost");
  };
  for (int i = 0; i < 1000; ++i) round_trip();  // warm-up
  std::uint64_t n = 0;
  auto t0 = steady::now();
  double t = 0;
  do {
    for (int i = 0; i < 256; ++i) round_trip();
    n += 256;
  } while ((t = since(t0)) < seconds);
  ::close(fd);
  echo.join();
  ::close(lfd);
  ::pthread_setaffinity_np(::pthread_self(), sizeof old, &old);
  return double(n) / t;
}

// (c) floor: MB/s (1e6 bytes) of `bytes` through one loopback TCP connection, 1 MiB
// writes and 1 MiB reads.
constexpr std::size_t chunk = 1 << 20;

double tcp_stream(std::uint64_t bytes) {
  std::uint16_t port = 0;
  int lfd = listen_loopback(port);
  auto t0 = steady::now();
  std::thread sender([port, bytes] {
    int fd = connect_loopback(port);
    std::vector<char> buf(chunk, 'x');
    for (std::uint64_t left = bytes; left > 0;) {
      std::size_t n = std::size_t(std::min<std::uint64_t>(left, chunk));
      if (!write_all(fd, buf.data(), n)) die("stream: connection lost");
      left -= n;
    }
    ::close(fd);
  });
  int fd = accept_one(lfd);
  std::vector<char> buf(chunk);
  std::uint64_t got = 0;
  for (ssize_t r; (r = ::read(fd, buf.data(), buf.size())) != 0;) {
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die(fmt::format("stream read: {}", std::strerror(errno)));
    got += std::uint64_t(r);
  }
  double t = since(t0);
  sender.join();
  ::close(fd);
  ::close(lfd);
  if (got != bytes) die(fmt::format("stream: got {} bytes of {}", got, bytes));
  return double(bytes) / t / 1e6;
}

// ---- child processes ----------------------------------------------------------------------

// Starts argv with stdout on a pipe (when out_fd is given) and returns its pid.
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

// A galaxy-ramfs process listening on a kernel-chosen loopback port.
struct ramfs_process {
  pid_t pid = -1;
  int out_fd = -1;  // kept open: the server may print more, and must not get SIGPIPE
  std::string addr;

  void start(const std::string& binary, std::uint64_t big_bytes) {
    pid = spawn({binary, "--listen", "tcp!127.0.0.1!0", "--auth", "none", "--big", std::to_string(big_bytes)},
                &out_fd);
    std::string line;
    char c;
    while (::read(out_fd, &c, 1) == 1 && c != '\n') line += c;
    constexpr std::string_view prefix = "listening on ";
    if (!line.starts_with(prefix))
      die(fmt::format("{} printed '{}', not 'listening on DIAL'", binary, line));
    addr = line.substr(prefix.size());
    started_server = pid;
  }
  void stop() {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    int rc = wait_exit(pid);
    if (rc != 0 && rc != 128 + SIGTERM) say(fmt::format("galaxy-ramfs exited with status {}", rc));
    ::close(out_fd);
    pid = -1;
    started_server = -1;
  }
};

// (c) floor: MB/s of `dd bs=1M` reading a page-cached file to /dev/null.
double dd_read(const std::string& path, std::uint64_t bytes) {
  auto t0 = steady::now();
  pid_t pid = spawn({"dd", "if=" + path, "of=/dev/null", "bs=1M", "status=none"}, nullptr);
  if (int rc = wait_exit(pid); rc != 0) die(fmt::format("dd exited with status {}", rc));
  return double(bytes) / since(t0) / 1e6;
}

void make_file(const std::string& path, std::uint64_t bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) die(fmt::format("create {}: {}", path, std::strerror(errno)));
  std::vector<char> buf(1 << 20);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = char('a' + i % 26);
  for (std::uint64_t left = bytes; left > 0;) {
    std::size_t n = std::size_t(std::min<std::uint64_t>(left, buf.size()));
    if (!write_all(fd, buf.data(), n)) die(fmt::format("write {}: {}", path, std::strerror(errno)));
    left -= n;
  }
  ::close(fd);
}

// ---- through the 9P client ------------------------------------------------------------

// The small file of (b): about the size of a node's /status line.
constexpr std::string_view status_text =
    "name=bench arch=amd64 ncpu=2 mem=25769803776 memfree=24696061952 load=0.05 tasks=0 state=up\n";

struct fs {
  std::unique_ptr<fsclient::client> c;
  std::uint32_t root = 0;
};

fs connect_9p(const std::string& addr) {
  fsclient::client::options o;
  o.msize = srv9p::max_msize;
  auto c = fsclient::client::dial(addr, o);
  if (!c) die(fmt::format("dial {}: {}", addr, c.error()));
  auto root = (*c)->attach("bench");
  if (!root) die(fmt::format("attach: {}", root.error()));
  return {std::move(*c), *root};
}

template <class R>
const R* reply_as(const fsclient::client::reply& r) {
  return r ? std::get_if<R>(&*r) : nullptr;
}

std::string describe(const fsclient::client::reply& r) {
  return r ? std::string(srv9p::type_name(srv9p::type_of(*r))) : r.error();
}

// One group: Twalk root→f "status", Topen f, Tread f, Tclunk f.
std::vector<srv9p::message> group(std::uint32_t root, std::uint32_t f) {
  return {srv9p::twalk{.fid = root, .newfid = f, .wnames = {"status"}},
          srv9p::topen{.fid = f, .mode = srv9p::oread},
          srv9p::tread{.fid = f, .offset = 0, .count = 8192},
          srv9p::tclunk{.fid = f}};
}

// Checks the reply to message i of a group; empty when it is what it should be.
std::string check_group_reply(int i, const fsclient::client::reply& r) {
  bool good = false;
  switch (i) {
    case 0: good = reply_as<srv9p::rwalk>(r) && reply_as<srv9p::rwalk>(r)->qids.size() == 1; break;
    case 1: good = reply_as<srv9p::ropen>(r) != nullptr; break;
    case 2: good = reply_as<srv9p::rread>(r) && reply_as<srv9p::rread>(r)->data == status_text; break;
    case 3: good = reply_as<srv9p::rclunk>(r) != nullptr; break;
  }
  if (good) return {};
  static constexpr std::string_view names[] = {"Twalk", "Topen", "Tread", "Tclunk"};
  return fmt::format("{} answered by {}", names[i], describe(r));
}

void create_status(fs& f) {
  auto dirfid = f.c->walk(f.root, "");
  if (!dirfid) die(fmt::format("walk to /: {}", dirfid.error()));
  if (auto r = f.c->create(*dirfid, "status", 0644, srv9p::owrite); !r)
    die(fmt::format("create /status: {}", r.error()));
  if (auto r = f.c->write(*dirfid, 0, status_text); !r || *r != status_text.size())
    die(fmt::format("write /status: {}", r ? "short write" : r.error()));
  if (auto r = f.c->clunk(*dirfid); !r) die(fmt::format("clunk: {}", r.error()));
}

// (b) serial: groups per second, one rpc_batch (one write) per group.
double groups_serial(fs& f, double seconds) {
  std::uint32_t fid = f.c->alloc_fid();
  auto one = [&] {
    auto replies = f.c->rpc_batch(group(f.root, fid));
    if (replies.size() != 4) die(fmt::format("rpc_batch gave {} replies for 4", replies.size()));
    for (int i = 0; i < 4; ++i)
      if (auto e = check_group_reply(i, replies[i]); !e.empty()) die(e);
  };
  for (int i = 0; i < 200; ++i) one();  // warm-up
  std::uint64_t n = 0;
  auto t0 = steady::now();
  double t = 0;
  do {
    for (int i = 0; i < 64; ++i) one();
    n += 64;
  } while ((t = since(t0)) < seconds);
  f.c->release_fid(fid);
  return double(n) / t;
}

// (b) pipelined: groups per second with `depth` groups in flight. Callbacks run on the
// client's reader thread and only record; this thread refills every free slot with one
// send_batch, so no request is ever written from inside a callback.
double groups_pipelined(fs& f, int depth, double seconds) {
  struct state {
    std::mutex m;
    std::condition_variable cv;
    std::vector<int> free_slots;
    std::vector<int> remaining;  // replies still due per slot
    std::uint64_t done = 0;
    std::string error;
  } st;
  std::vector<std::uint32_t> fids;
  for (int s = 0; s < depth; ++s) {
    fids.push_back(f.c->alloc_fid());
    st.free_slots.push_back(s);
  }
  st.remaining.assign(std::size_t(depth), 0);

  auto run = [&](double secs) {
    auto t0 = steady::now();
    std::uint64_t done0 = st.done;
    for (;;) {
      std::vector<int> slots;
      {
        std::unique_lock lk(st.m);
        st.cv.wait(lk, [&] { return !st.free_slots.empty() || !st.error.empty(); });
        if (!st.error.empty()) die(st.error);
        if (since(t0) >= secs) break;
        slots.swap(st.free_slots);
        for (int s : slots) st.remaining[std::size_t(s)] = 4;
      }
      std::vector<std::pair<srv9p::message, fsclient::client::callback>> batch;
      batch.reserve(slots.size() * 4);
      for (int s : slots) {
        auto msgs = group(f.root, fids[std::size_t(s)]);
        for (int i = 0; i < 4; ++i) {
          batch.emplace_back(std::move(msgs[std::size_t(i)]), [&st, s, i](fsclient::client::reply r) {
            std::string e = check_group_reply(i, r);
            std::lock_guard lk(st.m);
            if (!e.empty() && st.error.empty()) st.error = e;
            if (--st.remaining[std::size_t(s)] == 0) {
              st.free_slots.push_back(s);
              ++st.done;
              st.cv.notify_one();
            }
          });
        }
      }
      f.c->send_batch(std::move(batch));
    }
    // Drain: the run ends when the last group sent has been answered.
    std::unique_lock lk(st.m);
    st.cv.wait(lk, [&] { return int(st.free_slots.size()) == depth || !st.error.empty(); });
    if (!st.error.empty()) die(st.error);
    return double(st.done - done0) / since(t0);
  };
  run(0.2);  // warm-up
  double rate = run(seconds);
  for (auto fid : fids) f.c->release_fid(fid);
  return rate;
}

// (c) MB/s reading the first `bytes` of /big (all of it in a measurement, a part in the
// warm-up) in iounit-sized reads, `depth` in flight (1: one blocking read after another).
// Checks the length and one byte of every reply.
double read_big(fs& f, std::uint64_t bytes, int depth) {
  auto fid = f.c->walk(f.root, "big");
  if (!fid) die(fmt::format("walk /big: {}", fid.error()));
  auto o = f.c->open(*fid, srv9p::oread);
  if (!o) die(fmt::format("open /big: {}", o.error()));
  auto st = f.c->stat(*fid);
  if (!st) die(fmt::format("stat /big: {}", st.error()));
  if (st->length < bytes) die(fmt::format("/big is {} bytes, not {}", st->length, bytes));
  std::uint32_t iounit = o->iounit ? std::min(o->iounit, f.c->iounit()) : f.c->iounit();
  auto expect = [&](std::uint64_t off, std::string_view data) -> std::string {
    std::uint64_t want = std::min<std::uint64_t>(iounit, bytes - off);
    if (data.size() != want) return fmt::format("read at {} gave {} bytes, expected {}", off, data.size(), want);
    if (data[0] != char('a' + off % 26)) return fmt::format("read at {}: wrong data", off);
    return {};
  };
  auto t0 = steady::now();
  if (depth <= 1) {
    for (std::uint64_t off = 0; off < bytes;) {
      auto r = f.c->read(*fid, off, iounit);
      if (!r) die(fmt::format("read /big at {}: {}", off, r.error()));
      if (auto e = expect(off, *r); !e.empty()) die(e);
      off += r->size();
    }
  } else {
    std::mutex m;
    std::condition_variable cv;
    int inflight = 0;
    std::string error;
    for (std::uint64_t off = 0; off < bytes; off += iounit) {
      {
        std::unique_lock lk(m);
        cv.wait(lk, [&] { return inflight < depth || !error.empty(); });
        if (!error.empty()) die(error);
        ++inflight;
      }
      f.c->send(srv9p::tread{.fid = *fid, .offset = off, .count = iounit},
                [&, off](fsclient::client::reply r) {
                  std::string e;
                  if (auto* rr = reply_as<srv9p::rread>(r)) e = expect(off, rr->data);
                  else e = fmt::format("read /big at {}: {}", off, describe(r));
                  std::lock_guard lk(m);
                  if (!e.empty() && error.empty()) error = e;
                  --inflight;
                  cv.notify_one();
                });
    }
    std::unique_lock lk(m);
    cv.wait(lk, [&] { return inflight == 0; });
    if (!error.empty()) die(error);
  }
  double t = since(t0);
  // When the whole file was read, it ends where its stat says: one more read gives 0 bytes.
  if (bytes == st->length) {
    auto eof = f.c->read(*fid, bytes, iounit);
    if (!eof) die(fmt::format("read /big at its end ({}): {}", bytes, eof.error()));
    if (!eof->empty()) die(fmt::format("/big is longer than its length {}", bytes));
  }
  if (auto r = f.c->clunk(*fid); !r) die(fmt::format("clunk /big: {}", r.error()));
  return double(bytes) / t / 1e6;
}

template <class F>
stats repeat(int reps, F&& f) {
  std::vector<double> v;
  for (int i = 0; i < reps; ++i) v.push_back(f());
  return summarize(std::move(v));
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"bench_9p: Galaxy's 9P path next to its floors; prints a markdown table"};
  app.add_option("--ramfs", o.ramfs, "galaxy-ramfs binary to start")->capture_default_str();
  app.add_option("--addr", o.addr, "use this running server instead (it must serve --big)");
  app.add_option("--seconds", o.seconds, "length of one timed repetition of (a) and (b)")->capture_default_str();
  app.add_option("--reps", o.reps, "repetitions of each measurement")->capture_default_str();
  app.add_option("--depth", o.depth, "groups in flight for (b)")->capture_default_str();
  app.add_option("--read-depth", o.read_depth, "reads in flight for (c)")->capture_default_str();
  app.add_option("--big", o.big_bytes, "bytes of /big and of the dd file")->capture_default_str();
  app.add_option("--tmpdir", o.tmpdir, "directory for the dd file")->capture_default_str();
  app.add_option("--quiet-max", o.quiet_max, "quiet gate: max % CPU of other tenants")->capture_default_str();
  app.add_option("--quiet-wait", o.quiet_wait, "quiet gate: max seconds to wait")->capture_default_str();
  app.add_flag("--floors-only", o.floors_only, "measure only the floors (no 9P)");
  CLI11_PARSE(app, argc, argv);
  if (o.reps < 1 || o.depth < 1 || o.read_depth < 1 || o.big_bytes == 0) die("bad option values");
  ::signal(SIGPIPE, SIG_IGN);

  std::vector<row> rows;
  auto ratio = [](double x, double floor) { return fmt::format("{:.2f}", x / floor); };
  auto met = [](double x, double target) { return x >= target ? "met" : "missed"; };
  std::string gib = o.big_bytes == (1ull << 30) ? "1 GiB" : fmt::format("{} B", o.big_bytes);

  // The floors first: (a), then the two of (c).
  int bg = quiet_gate(o, "(a) TCP ping-pong");
  stats ping = repeat(o.reps, [&] { return tcp_ping_pong(o.seconds); });
  rows.push_back({"(a) TCP ping-pong, 100 B, blocking, TCP_NODELAY — **floor**", ping,
                  "round trips/s", "1 (floor)", "", "", bg});
  // The same, pinned: in a VM a wake-up on the other CPU costs far more than one on the
  // same CPU, and where the scheduler puts the two threads decides which one (a) sees.
  if (std::thread::hardware_concurrency() >= 2) {
    bg = quiet_gate(o, "(a) TCP ping-pong, both threads on CPU 0");
    stats same = repeat(o.reps, [&] { return tcp_ping_pong(o.seconds, 0, 0); });
    rows.push_back({"(a′) the same, both threads pinned to CPU 0", same, "round trips/s",
                    ratio(same.median, ping.median) + " × (a)", "", "", bg});
    bg = quiet_gate(o, "(a) TCP ping-pong, threads on CPUs 0 and 1");
    stats apart = repeat(o.reps, [&] { return tcp_ping_pong(o.seconds, 0, 1); });
    rows.push_back({"(a″) the same, threads pinned to CPUs 0 and 1", apart, "round trips/s",
                    ratio(apart.median, ping.median) + " × (a)", "", "", bg});
  }

  bg = quiet_gate(o, "(c) TCP stream");
  tcp_stream(o.big_bytes / 4);  // warm-up
  stats stream = repeat(o.reps, [&] { return tcp_stream(o.big_bytes); });
  rows.push_back({fmt::format("(c) TCP stream of {}, 1 MiB writes/reads — **floor**", gib), stream,
                  "MB/s", "1 (floor)", "", "", bg});

  scratch_file = o.tmpdir + "/galaxy-bench-" + std::to_string(::getpid());
  say(fmt::format("writing {} ({} bytes) for dd", scratch_file, o.big_bytes));
  make_file(scratch_file, o.big_bytes);
  dd_read(scratch_file, o.big_bytes);  // warm-up: the file is in the page cache from here on
  bg = quiet_gate(o, "(c) dd of a cached file");
  stats dd = repeat(o.reps, [&] { return dd_read(scratch_file, o.big_bytes); });
  ::unlink(scratch_file.c_str());
  scratch_file.clear();
  rows.push_back({fmt::format("(c) `dd bs=1M` of a page-cached {} file to /dev/null — **floor**", gib),
                  dd, "MB/s", "1 (floor)", "", "", bg});

  // Through 9P: a real galaxy-ramfs (started here unless --addr names one) and the client.
  ramfs_process server;
  if (!o.floors_only) {
    std::string addr = o.addr;
    if (addr.empty()) {
      server.start(o.ramfs, o.big_bytes);
      addr = server.addr;
      say(fmt::format("started {} (pid {}) on {}", o.ramfs, server.pid, addr));
    }
    fs f = connect_9p(addr);
    say(fmt::format("msize {} iounit {}", f.c->msize(), f.c->iounit()));
    create_status(f);

    bg = quiet_gate(o, "(b) serial groups");
    stats serial = repeat(o.reps, [&] { return groups_serial(f, o.seconds); });
    rows.push_back({"(b) walk+open+read+clunk, serial (4 messages per write)", serial, "groups/s",
                    ratio(serial.median, ping.median) + " × (a)", "≥ 30 000",
                    met(serial.median, 30000), bg});

    bg = quiet_gate(o, fmt::format("(b) {} groups in flight", o.depth));
    stats piped = repeat(o.reps, [&] { return groups_pipelined(f, o.depth, o.seconds); });
    rows.push_back({fmt::format("(b) walk+open+read+clunk, {} groups in flight", o.depth), piped,
                    "groups/s", ratio(piped.median, ping.median) + " × (a)", "≥ 100 000",
                    met(piped.median, 100000), bg});

    auto vs = [&](double x) {
      return fmt::format("{} × stream, {} × dd", ratio(x, stream.median), ratio(x, dd.median));
    };
    std::string msz = fmt::format("msize {} KiB", f.c->msize() / 1024);
    bg = quiet_gate(o, "(c) read /big serial");
    read_big(f, o.big_bytes / 8, 1);  // warm-up
    stats rd1 = repeat(o.reps, [&] { return read_big(f, o.big_bytes, 1); });
    rows.push_back({fmt::format("(c) read /big ({}), {}, iounit reads, serial", gib, msz), rd1,
                    "MB/s", vs(rd1.median), "≥ 1 000", met(rd1.median, 1000), bg});

    bg = quiet_gate(o, fmt::format("(c) read /big, {} in flight", o.read_depth));
    stats rdn = repeat(o.reps, [&] { return read_big(f, o.big_bytes, o.read_depth); });
    rows.push_back({fmt::format("(c) read /big ({}), {}, iounit reads, {} in flight", gib, msz,
                                o.read_depth),
                    rdn, "MB/s", vs(rdn.median), "≥ 1 000", met(rdn.median, 1000), bg});

    f.c.reset();  // hang up before the server goes
    server.stop();
  }

  // Rows in the order: (a), (b), (c).
  std::stable_sort(rows.begin(), rows.end(),
                   [](const row& a, const row& b) { return a.what.substr(0, 3) < b.what.substr(0, 3); });
  fmt::print("| measurement | median | min – max | unit | ratio to floor | design target | met? | bg load % |\n");
  fmt::print("|---|---:|---:|---|---|---:|---|---:|\n");
  for (auto& r : rows)
    fmt::print("| {} | {} | {} – {} | {} | {} | {} | {} | {} |\n", r.what, thousands(r.s.median),
               thousands(r.s.min), thousands(r.s.max), r.unit, r.vs_floor, r.target, r.met, r.bg);
  fmt::print("\n{} repetitions each, median; (a) and (b) {:.1f} s per repetition; MB = 10^6 bytes.\n",
             o.reps, o.seconds);
  return 0;
}
