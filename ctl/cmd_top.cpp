// galaxy top (ctl/cmd_top.hpp).
//
// Three parts: the tree (read a file, list a directory, stream a file; natively through
// fsclient::client or with POSIX calls under a mount point, as ctl/cmd_job.cpp's
// tree_access, kept separate here so that the two verbs' files change apart), a snapshot
// (every file top shows, read once per period), and a frame (the snapshot as lines of
// text for a given width and height, the same text on a terminal and in a pipe).
//
// Reads never hold up the keyboard: on a terminal one thread polls the files every -d
// SECONDS into the latest snapshot, another streams /events (a read there blocks until
// something happens, galaxy(4)), and the main thread only draws and reads keys. A job
// that has ended is read once and kept: its status no longer changes.
//
// Recent events: a reader of /events sees only what happens after it opened, so the
// events shown are made from the jobs' status times (submit, start, end: galaxy(4),
// jobs/N/status) for jobs, plus the lines /events gives while top runs that are not about
// a job (node up, down, join, drain, ...); -n 1 shows the first kind only.
#include "ctl/cmd_top.hpp"

#include <curses.h>
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fmt/core.h>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ctl/auth.hpp"
#include "ctl/cluster.hpp"
#include "ctl/cmd_9p.hpp"
#include "ctl/ctlmsg.hpp"
#include "fsclient/client.hpp"

namespace ctl {
namespace {

namespace fs = std::filesystem;
template <class T>
using result = std::expected<T, std::string>;
using kv_map = std::map<std::string, std::string>;

std::uint64_t now_ms() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

std::optional<std::uint64_t> number(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

double real(const std::string& s) {
  try {
    std::size_t used = 0;
    double v = std::stod(s, &used);
    return used == s.size() && v >= 0 && v < 1e12 ? v : 0;
  } catch (...) {
    return 0;
  }
}

// key=value words of a status line (ctl quoting), as a map; a line that does not
// tokenize gives an empty map (a hostile file shows as blanks, not as a crash).
kv_map parse_status(std::string_view line) {
  kv_map kv;
  auto words = tokenize(line.substr(0, line.find('\n')));
  if (!words) return kv;
  for (const auto& w : *words) {
    auto eq = w.find('=');
    if (eq != std::string::npos) kv[w.substr(0, eq)] = w.substr(eq + 1);
  }
  return kv;
}

// ---- The tree -------------------------------------------------------------------------

class top_tree {
 public:
  virtual ~top_tree() = default;
  virtual result<std::string> read(const std::string& path) = 0;
  virtual result<std::vector<std::string>> list(const std::string& path) = 0;
  // Calls sink with each piece of path as it arrives, until end of file, an error, or
  // sink returning false.
  virtual void stream(const std::string& path, const std::function<bool(std::string_view)>& sink) = 0;
  // Makes a blocked stream() return (natively: closes the connection); false when it
  // cannot (a read(2) under a mount), and the streaming thread must be left to the exit.
  virtual bool interrupt() = 0;
};

class native_tree final : public top_tree {
 public:
  native_tree(std::unique_ptr<fsclient::client> c, std::uint32_t root) : c_(std::move(c)), root_(root) {}
  result<std::string> read(const std::string& path) override { return c_->read_file(root_, path); }
  result<std::vector<std::string>> list(const std::string& path) override {
    auto ds = c_->list_dir(root_, path);
    if (!ds) return std::unexpected(ds.error());
    std::vector<std::string> names;
    for (auto& d : *ds) names.push_back(std::move(d.name));
    return names;
  }
  void stream(const std::string& path, const std::function<bool(std::string_view)>& sink) override {
    (void)c_->stream_file(root_, path, sink);
  }
  bool interrupt() override {
    c_->close();
    return true;
  }

 private:
  std::unique_ptr<fsclient::client> c_;
  std::uint32_t root_;
};

class mount_tree final : public top_tree {
 public:
  explicit mount_tree(std::string dir) : dir_(std::move(dir)) {}
  result<std::string> read(const std::string& path) override {
    std::string out;
    bool failed = false;
    int err = 0;
    stream_fd(path, [&](std::string_view d) {
      out.append(d);
      return out.size() < (1u << 20);  // a status file is one line; 1 MiB is plenty
    }, failed, err);
    if (failed) return std::unexpected(std::string(std::strerror(err)));
    return out;
  }
  result<std::vector<std::string>> list(const std::string& path) override {
    std::error_code ec;
    std::vector<std::string> names;
    for (fs::directory_iterator it(dir_ + "/" + path, ec), end; !ec && it != end; it.increment(ec)) {
      names.push_back(it->path().filename().string());
    }
    if (ec) return std::unexpected(ec.message());
    return names;
  }
  void stream(const std::string& path, const std::function<bool(std::string_view)>& sink) override {
    bool failed = false;
    int err = 0;
    stream_fd(path, sink, failed, err);
  }
  bool interrupt() override { return false; }

 private:
  void stream_fd(const std::string& path, const std::function<bool(std::string_view)>& sink, bool& failed, int& err) {
    int fd = ::open((dir_ + "/" + path).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      failed = true;
      err = errno;
      return;
    }
    std::vector<char> buf(1 << 16);
    for (;;) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        failed = true;
        err = errno;
        break;
      }
      if (n == 0 || !sink(std::string_view(buf.data(), static_cast<std::size_t>(n)))) break;
    }
    ::close(fd);
  }
  std::string dir_;
};

struct top_options {
  std::string addr, mount, state, uname;
  double delay_s = 1;
  int frames = 0;  // 0: until q
  std::string filter;
};

// The tree, wherever cluster::find finds it, as the job verbs find it; errors are printed.
std::unique_ptr<top_tree> open_tree(const top_options& o, std::string& where_text) {
  auto where = cluster::find({.addr = o.addr, .mount = o.mount, .state = o.state});
  if (!where) {
    fmt::print(stderr, "galaxy: top: {}\n", where.error());
    return nullptr;
  }
  if (!where->mount.empty()) {
    std::error_code ec;
    auto dir = fs::absolute(where->mount, ec).lexically_normal().string();
    if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    if (!fs::exists(dir + "/jobs/clone", ec)) {
      fmt::print(stderr, "galaxy: top: -m {}: no Galaxy tree is mounted there (no jobs/clone)\n", o.mount);
      return nullptr;
    }
    where_text = dir;
    return std::make_unique<mount_tree>(dir);
  }
  auto c = fsclient::client::dial(where->addr, client_options());
  if (!c) {
    fmt::print(stderr, "galaxy: top: {}\n", cluster::not_answering(*where, c.error()));
    return nullptr;
  }
  auto root = (*c)->attach(o.uname.empty() ? login_name() : o.uname);
  if (!root) {
    fmt::print(stderr, "galaxy: top: attach {}: {}\n", where->addr, root.error());
    return nullptr;
  }
  where_text = where->addr;
  return std::make_unique<native_tree>(std::move(*c), *root);
}

// ---- A snapshot: the files, read once ---------------------------------------------------

struct node_row {
  std::string name;
  kv_map kv;
  std::string error;  // why its status could not be read ("" when it was)
};
struct job_row {
  std::string id;  // J, or J/I for a task of array J
  kv_map kv;
};
struct event_row {
  std::uint64_t ms = 0;
  std::string text;
};
struct snapshot {
  std::uint64_t taken_ms = 0;
  std::string error;  // /status unreadable: the cluster is gone
  kv_map status;
  std::vector<node_row> nodes;
  std::vector<kv_map> users;
  std::vector<job_row> jobs;          // those that have not ended
  std::vector<event_row> job_events;  // from every job's status times, oldest first
};

bool has_ended(const std::string& state) { return state == "done" || state == "failed" || state == "killed"; }

// Reads the files into a snapshot. ended keeps the status of jobs that have ended (read
// once: it no longer changes), by id.
snapshot collect(top_tree& t, std::map<std::string, kv_map>& ended) {
  snapshot s;
  s.taken_ms = now_ms();
  auto st = t.read("status");
  if (!st) {
    s.error = "status: " + st.error();
    return s;
  }
  s.status = parse_status(*st);
  if (auto ls = t.list("nodes")) {
    std::ranges::sort(*ls);
    for (const auto& n : *ls) {
      node_row r{.name = n};
      if (auto ns = t.read("nodes/" + n + "/status")) r.kv = parse_status(*ns);
      else r.error = ns.error();
      s.nodes.push_back(std::move(r));
    }
  }
  if (auto ls = t.list("users")) {
    for (const auto& u : *ls) {
      if (auto us = t.read("users/" + u)) s.users.push_back(parse_status(*us));
    }
  }
  std::vector<job_row> all;
  auto add = [&](const std::string& id) {
    if (auto e = ended.find(id); e != ended.end()) {
      all.push_back({id, e->second});
      return;
    }
    auto js = t.read("jobs/" + id + "/status");
    if (!js) return;  // removed meanwhile
    job_row r{id, parse_status(*js)};
    if (has_ended(r.kv["state"])) ended[id] = r.kv;
    all.push_back(std::move(r));
  };
  auto numbers_in = [&](const std::string& dir) {
    std::vector<std::uint64_t> ids;
    if (auto ls = t.list(dir)) {
      for (const auto& n : *ls) {
        if (auto id = number(n)) ids.push_back(*id);
      }
    }
    std::ranges::sort(ids);
    return ids;
  };
  for (auto j : numbers_in("jobs")) {
    auto id = std::to_string(j);
    add(id);
    if (!all.empty() && all.back().id == id && all.back().kv.contains("tasks")) {
      bool array_ended = ended.contains(id);
      for (auto i : numbers_in("jobs/" + id)) {
        auto tid = fmt::format("{}/{}", id, i);
        if (array_ended && !ended.contains(tid)) continue;
        add(tid);
      }
    }
  }
  std::set<std::string> seen;  // forget ended jobs that were removed (rm)
  for (auto& r : all) seen.insert(r.id);
  std::erase_if(ended, [&](auto& e) { return !seen.contains(e.first); });
  for (auto& r : all) {
    auto& kv = r.kv;
    auto ev = [&](const std::string& key, std::string text) {
      if (auto ms = number(kv[key]); ms && *ms != 0) s.job_events.push_back({*ms, std::move(text)});
    };
    ev("submitted", fmt::format("submit {} {}", r.id, kv["owner"]));
    ev("started", fmt::format("start {} {} on {}", r.id, kv["owner"], kv["node"]));
    ev("ended", fmt::format("end {} {} {} {}", r.id, kv["owner"], kv["state"], quote(kv["exit"])));
    if (!has_ended(kv["state"]) && !kv.contains("tasks")) s.jobs.push_back(r);
  }
  std::ranges::stable_sort(s.job_events, {}, &event_row::ms);
  if (s.job_events.size() > 200) s.job_events.erase(s.job_events.begin(), s.job_events.end() - 200);
  return s;
}

// ---- A frame: the snapshot as lines -------------------------------------------------------

enum class node_sort { name, cpu, mem };
enum class job_sort { id, user, time };
struct view {
  node_sort nodes = node_sort::name;
  job_sort jobs = job_sort::id;
  std::string filter;  // "" shows everything
};

struct line {
  std::string text;
  bool heading = false;
};

std::string bar(double frac, int width) {
  frac = std::clamp(frac, 0.0, 1.0);
  int k = static_cast<int>(frac * width + 0.5);
  return "[" + std::string(static_cast<std::size_t>(k), '|') + std::string(static_cast<std::size_t>(width - k), ' ') +
         "]";
}

std::string clock_text(std::uint64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

// The value of key in kv, "" when it has none.
std::string get(const kv_map& kv, const std::string& key) {
  auto it = kv.find(key);
  return it == kv.end() ? std::string() : it->second;
}

std::string bytes_text(const std::string& s) {
  auto b = number(s);
  return b ? human_bytes(*b) : "?";
}

// How long a job has run: M:SS or H:MM:SS, from its started time (0:00 before it starts).
std::string run_time(kv_map& kv, std::uint64_t now) {
  auto started = number(kv["started"]).value_or(0);
  std::uint64_t s = started != 0 && now > started ? (now - started) / 1000 : 0;
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

double cpu_frac(const node_row& n) {
  auto ncpu = real(get(n.kv, "ncpu"));
  return ncpu > 0 ? real(get(n.kv, "load")) / ncpu : 0;
}
double mem_frac(const node_row& n) {
  auto mem = real(get(n.kv, "mem"));
  auto free = real(get(n.kv, "memfree"));
  return mem > 0 ? (mem - std::min(free, mem)) / mem : 0;
}

bool job_matches(job_row& j, const std::string& f) {
  if (f.empty()) return true;
  for (const auto* v : {&j.id, &j.kv["owner"], &j.kv["state"], &j.kv["node"], &j.kv["name"]}) {
    if (v->find(f) != std::string::npos) return true;
  }
  return false;
}

// The frame for a screen of width columns and height lines (0: as many as it takes);
// live holds the /events lines top has read that are not about a job.
std::vector<line> render(snapshot s, const view& v, const std::vector<event_row>& live, const std::string& where,
                         int width, int height) {
  std::vector<line> out;
  auto& st = s.status;
  out.push_back({fmt::format("galaxy top  {}  {}   nodes: {} up, {} down   jobs: {} running, {} queued   policy {}",
                             clock_text(s.taken_ms), where, st["nodes_up"], st["nodes_down"], st["jobs_running"],
                             st["jobs_queued"], st["policy"])});
  double cpu_total = real(st["cpu_millis_total"]), mem_total = real(st["mem_bytes_total"]);
  out.push_back({fmt::format("cpu {} {:.1f}/{:.1f}  mem {} {}/{}  sort: nodes by {}, jobs by {}{}",
                             bar(cpu_total > 0 ? real(st["cpu_millis_used"]) / cpu_total : 0, 10),
                             real(st["cpu_millis_used"]) / 1000, cpu_total / 1000,
                             bar(mem_total > 0 ? real(st["mem_bytes_used"]) / mem_total : 0, 10),
                             bytes_text(st["mem_bytes_used"]), bytes_text(st["mem_bytes_total"]),
                             v.nodes == node_sort::name ? "name" : v.nodes == node_sort::cpu ? "cpu" : "mem",
                             v.jobs == job_sort::id ? "number" : v.jobs == job_sort::user ? "user" : "time",
                             v.filter.empty() ? "" : "  filter: " + v.filter)});
  if (!s.error.empty()) out.push_back({"error: " + s.error});

  // Jobs that match the filter, and the nodes they are on (or whose names match).
  std::vector<job_row> jobs;
  for (auto& j : s.jobs) {
    if (job_matches(j, v.filter)) jobs.push_back(j);
  }
  auto nodes = s.nodes;
  if (!v.filter.empty()) {
    std::erase_if(nodes, [&](node_row& n) {
      return n.name.find(v.filter) == std::string::npos &&
             std::ranges::none_of(jobs, [&](job_row& j) { return j.kv["node"] == n.name; });
    });
  }
  if (v.nodes == node_sort::cpu) std::ranges::stable_sort(nodes, std::greater<>{}, cpu_frac);
  if (v.nodes == node_sort::mem) std::ranges::stable_sort(nodes, std::greater<>{}, mem_frac);
  out.push_back({});
  out.push_back({fmt::format("{:<10} {:<9} {:<34} {:<43} {:>6} {:>5}", "NODE", "STATE", "CPU (load/cpus)",
                             "MEM (used/total)", "LOAD", "TASKS"),
                 true});
  for (auto& n : nodes) {
    if (!n.error.empty()) {
      out.push_back({fmt::format("{:<10} {:<9} {}", n.name, "?", n.error)});
      continue;
    }
    auto& kv = n.kv;
    auto used = fmt::format("{}/{}", bytes_text(std::to_string(static_cast<std::uint64_t>(
                                         std::max(0.0, real(kv["mem"]) - real(kv["memfree"]))))),
                            bytes_text(kv["mem"]));
    out.push_back({fmt::format("{:<10} {:<9} {} {:<11} {} {:<20} {:>6} {:>5}", n.name, kv["state"], bar(cpu_frac(n), 20),
                               kv["load"] + "/" + kv["ncpu"], bar(mem_frac(n), 20), used, kv["load"], kv["tasks"])});
  }

  std::vector<kv_map> users;
  for (auto& u : s.users) {
    if (v.filter.empty() || u["user"].find(v.filter) != std::string::npos ||
        std::ranges::any_of(jobs, [&](job_row& j) { return j.kv["owner"] == u["user"]; })) {
      users.push_back(u);
    }
  }
  std::ranges::stable_sort(users, std::greater<>{}, [](const kv_map& u) { return real(get(u, "dominant_share")); });
  out.push_back({});
  out.push_back({fmt::format("{:<12} {:>7} {:>6} {:>8} {:>9}  {}", "USER", "RUNNING", "QUEUED", "CPU", "MEM",
                             "DOMINANT SHARE"),
                 true});
  for (auto& u : users) {
    if (u["running"] == "0" && u["queued"] == "0" && v.filter.empty() && u["quota_cpu_millis"] == "0" &&
        u["quota_mem_bytes"] == "0") {
      continue;  // a user with nothing going on and no quota
    }
    out.push_back({fmt::format("{:<12} {:>7} {:>6} {:>8.1f} {:>9}  {} {}", u["user"], u["running"], u["queued"],
                               real(u["cpu_millis"]) / 1000, bytes_text(u["mem_bytes"]),
                               bar(real(u["dominant_share"]), 20), u["dominant_share"])});
  }

  if (v.jobs == job_sort::user) std::ranges::stable_sort(jobs, {}, [](const job_row& j) { return get(j.kv, "owner"); });
  if (v.jobs == job_sort::time) {
    std::ranges::stable_sort(jobs, {}, [](const job_row& j) {
      auto started = number(get(j.kv, "started")).value_or(0);
      return started == 0 ? UINT64_MAX : started;  // longest running first, queued last
    });
  }
  // Running (and starting) jobs first, then the queue.
  std::ranges::stable_sort(jobs, {}, [](const job_row& j) {
    auto st = get(j.kv, "state");
    return st == "running" || st == "starting" ? 0 : 1;
  });
  out.push_back({});
  out.push_back({fmt::format("{:<10} {:<12} {:<9} {:<10} {:>8}  {:<16} {}", "JOB", "USER", "STATE", "NODE", "TIME",
                             "NAME", "NOTE"),
                 true});
  std::size_t job_lines = jobs.size();
  std::size_t fixed = out.size() + 3;  // + the events heading and at least two events
  if (height > 0 && fixed + job_lines > static_cast<std::size_t>(height)) {
    job_lines = static_cast<std::size_t>(height) > fixed + 1 ? static_cast<std::size_t>(height) - fixed - 1 : 0;
  }
  for (std::size_t i = 0; i < jobs.size() && i < job_lines; i++) {
    auto& kv = jobs[i].kv;
    out.push_back({fmt::format("{:<10} {:<12} {:<9} {:<10} {:>8}  {:<16} {}", jobs[i].id, kv["owner"], kv["state"],
                               kv["node"], run_time(kv, s.taken_ms), kv["name"], kv["note"])});
  }
  if (job_lines < jobs.size()) out.push_back({fmt::format("... and {} more", jobs.size() - job_lines)});

  std::vector<event_row> events;
  for (auto& e : s.job_events) {
    if (v.filter.empty() || e.text.find(v.filter) != std::string::npos) events.push_back(e);
  }
  for (const auto& e : live) {
    if (v.filter.empty() || e.text.find(v.filter) != std::string::npos) events.push_back(e);
  }
  std::ranges::stable_sort(events, {}, &event_row::ms);
  out.push_back({});
  out.push_back({"RECENT EVENTS", true});
  std::size_t room = 10;
  if (height > 0) room = static_cast<std::size_t>(std::max(0, height - static_cast<int>(out.size())));
  std::size_t first = events.size() > room ? events.size() - room : 0;
  for (std::size_t i = first; i < events.size(); i++) {
    out.push_back({clock_text(events[i].ms) + "  " + events[i].text});
  }
  // Job names and notes are other users' text and node rows a node's: printable() (ctl/
  // ctlmsg.hpp) before the lines reach the terminal, plain or through curses.
  for (auto& l : out) l.text = printable(l.text);
  if (width > 0) {
    for (auto& l : out) {
      if (l.text.size() > static_cast<std::size_t>(width)) l.text.resize(static_cast<std::size_t>(width));
    }
  }
  while (!out.empty() && out.back().text.empty()) out.pop_back();
  return out;
}

// ---- Running --------------------------------------------------------------------------

// What the threads share: the latest snapshot and the /events lines read so far.
struct shared_state {
  std::unique_ptr<top_tree> tree;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::uint64_t generation = 0;  // bumped with each new snapshot
  snapshot latest;
  std::vector<event_row> live;
};

// Streams /events into s->live until the stream ends; keeps the lines that are not about
// a job (whose second word is not a job number: those come from the jobs' status files).
void read_events(const std::shared_ptr<shared_state>& s) {
  std::string partial;
  s->tree->stream("events", [&](std::string_view piece) {
    partial.append(piece);
    std::size_t nl;
    while ((nl = partial.find('\n')) != std::string::npos) {
      std::string l = partial.substr(0, nl);
      partial.erase(0, nl + 1);
      auto words = tokenize(l);
      if (!words || words->empty()) continue;
      if (words->size() >= 2 && number((*words)[1].substr(0, (*words)[1].find('/')))) continue;
      std::lock_guard lock(s->mu);
      s->live.push_back({now_ms(), l});
      if (s->live.size() > 200) s->live.erase(s->live.begin());
    }
    if (partial.size() > 4096) partial.clear();  // no line is that long: a hostile stream
    std::lock_guard lock(s->mu);
    return !s->stop;
  });
}

void print_frame(const std::vector<line>& f) {
  std::string out;
  for (const auto& l : f) out += l.text + "\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

// Plain text: frames one after another, -d apart; -n of them (0: until killed).
int run_plain(const std::shared_ptr<shared_state>& s, const top_options& o, const std::string& where) {
  std::thread events;
  if (o.frames != 1) events = std::thread([s] { read_events(s); });
  std::map<std::string, kv_map> ended;
  int status = 0;
  for (int i = 0; o.frames == 0 || i < o.frames; i++) {
    if (i > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<long>(o.delay_s * 1000)));
      std::fputs("\n", stdout);
    }
    auto snap = collect(*s->tree, ended);
    if (!snap.error.empty()) status = 1;
    std::vector<event_row> live;
    {
      std::lock_guard lock(s->mu);
      live = s->live;
    }
    print_frame(render(std::move(snap), {.filter = o.filter}, live, where, 0, 0));
  }
  {
    std::lock_guard lock(s->mu);
    s->stop = true;
  }
  if (events.joinable()) {
    if (s->tree->interrupt()) events.join();
    else events.detach();
  }
  return status;
}

// On a terminal: ncurses; a polling thread, an events thread, and keys here.
int run_screen(const std::shared_ptr<shared_state>& s, const top_options& o, const std::string& where) {
  std::thread poller([s, delay = o.delay_s] {
    std::map<std::string, kv_map> ended;
    std::unique_lock lock(s->mu);
    while (!s->stop) {
      lock.unlock();
      auto snap = collect(*s->tree, ended);
      lock.lock();
      s->latest = std::move(snap);
      s->generation++;
      s->cv.wait_for(lock, std::chrono::milliseconds(static_cast<long>(delay * 1000)), [&] { return s->stop; });
    }
  });
  std::thread events([s] { read_events(s); });

  initscr();
  cbreak();
  noecho();
  keypad(stdscr, TRUE);
  curs_set(0);
  timeout(100);  // getch waits at most 100 ms, so new snapshots show soon
  view v{.filter = o.filter};
  bool editing = false;  // reading a filter after '/'
  std::string typed;
  std::uint64_t shown = 0;
  bool dirty = true;
  for (;;) {
    int ch = getch();
    if (ch != ERR) dirty = true;
    if (editing) {
      if (ch == '\n' || ch == KEY_ENTER) {
        v.filter = typed;
        editing = false;
      } else if (ch == 27) {
        editing = false;
      } else if (ch == KEY_BACKSPACE || ch == 127 || ch == 8) {
        if (!typed.empty()) typed.pop_back();
      } else if (ch >= 32 && ch < 127 && typed.size() < 64) {
        typed += static_cast<char>(ch);
      }
    } else if (ch == 'q' || ch == 'Q') {
      break;
    } else if (ch == 'n') {
      v.nodes = node_sort::name;
      v.jobs = job_sort::id;
    } else if (ch == 'c') {
      v.nodes = node_sort::cpu;
    } else if (ch == 'm') {
      v.nodes = node_sort::mem;
    } else if (ch == 'u') {
      v.jobs = job_sort::user;
    } else if (ch == 't') {
      v.jobs = job_sort::time;
    } else if (ch == '/') {
      editing = true;
      typed.clear();
    }
    snapshot snap;
    std::vector<event_row> live;
    {
      std::lock_guard lock(s->mu);
      if (s->generation == 0) continue;
      if (s->generation != shown) dirty = true;
      if (!dirty) continue;
      shown = s->generation;
      snap = s->latest;
      live = s->live;
    }
    dirty = false;
    int height = LINES, width = COLS;
    auto frame = render(std::move(snap), v, live, where, width, height - 1);
    erase();
    for (std::size_t i = 0; i < frame.size() && static_cast<int>(i) < height - 1; i++) {
      if (frame[i].heading) attron(A_REVERSE);
      mvaddnstr(static_cast<int>(i), 0, frame[i].text.c_str(), width);
      if (frame[i].heading) attroff(A_REVERSE);
    }
    std::string help = editing ? "filter: " + typed + "_   (Enter applies, empty shows all; Esc cancels)"
                               : "q quit   n name order   c cpu   m memory   u jobs by user   t jobs by time   / filter";
    attron(A_BOLD);
    mvaddnstr(height - 1, 0, help.c_str(), width);
    attroff(A_BOLD);
    refresh();
  }
  endwin();
  {
    std::lock_guard lock(s->mu);
    s->stop = true;
  }
  s->cv.notify_all();
  bool interrupted = s->tree->interrupt();
  poller.join();
  if (interrupted) events.join();
  else events.detach();
  return 0;
}

int do_top(const top_options& o) {
  if (!(o.delay_s >= 0.1 && o.delay_s <= 3600)) {
    fmt::print(stderr, "galaxy: top: -d {}: expected seconds between 0.1 and 3600\n", o.delay_s);
    return 1;
  }
  if (o.frames < 0) {
    fmt::print(stderr, "galaxy: top: -n {}: expected a number of frames, 0 or more\n", o.frames);
    return 1;
  }
  std::string where;
  auto tree = open_tree(o, where);
  if (!tree) return 1;
  auto s = std::make_shared<shared_state>();
  s->tree = std::move(tree);
  if (o.frames == 0 && ::isatty(STDOUT_FILENO) && ::isatty(STDIN_FILENO)) return run_screen(s, o, where);
  return run_plain(s, o, where);
}

}  // namespace

void add_top_command(CLI::App& app, int& status) {
  auto o = std::make_shared<top_options>();
  int* st = &status;
  auto* top = app.add_subcommand(
      "top", "a live view of the cluster: nodes, jobs by user with dominant shares, recent events (like top)");
  top->add_option("-a,--addr", o->addr,
                  "the scheduler's dial string (default: $GALAXY_ADDR, $GALAXY_STATE's cluster, the cluster galaxy "
                  "up started, else tcp!127.0.0.1!5641)");
  top->add_option("-m,--mount", o->mount, "use the tree mounted here instead of dialing");
  top->add_option("--state", o->state, "use the cluster that galaxy up --state DIR started");
  top->add_option("-u,--uname", o->uname, "the user name to attach as (default: $USER)");
  top->add_option("-d,--delay", o->delay_s, "seconds between two readings of the files (default 1)");
  top->add_option("-n,--frames", o->frames,
                  "print this many plain-text frames and exit (default 0: on a terminal, a live screen until q)");
  top->add_option("--filter", o->filter, "show only jobs, users and nodes whose fields contain TEXT");
  top->callback([o, st] { *st = do_top(*o); });
}

}  // namespace ctl
