// The job verbs (ctl/cmd_job.hpp).
//
// Every verb goes through one small interface over the tree (tree_access): read a whole
// file, stream a file piece by piece, list a directory, write lines to a ctl file (one
// write per line, as `echo ... > ctl` does). One implementation speaks 9P through
// fsclient::client; the other is plain POSIX file I/O under a mount point. So a verb is
// exactly the file operations the man page documents, whichever way it reaches the tree.
//
// run and submit check what they can before they clone (argument syntax with ctl/'s typed
// parsers, `need` labels against the labels the scheduler places by: nodes/*/labels and
// node=NAME for every node listed in nodes/), so that bad input makes no job. A ctl
// write refused after the clone removes the new job again (`rm`).
//
// run streams stdout and stderr on two threads while the main thread reads wait; the
// first SIGINT, SIGTERM or SIGHUP writes `kill` to the job's ctl (as srun cancels its
// job), a second one exits at once.
#include "ctl/cmd_job.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cctype>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fmt/core.h>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ctl/auth.hpp"
#include "ctl/cluster.hpp"
#include "ctl/cmd_9p.hpp"
#include "ctl/ctlmsg.hpp"
#include "ctl/verbs.hpp"
#include "fsclient/client.hpp"
#include "srv9p/fcall.hpp"

namespace ctl {
namespace {

namespace fs = std::filesystem;
template <class T>
using result = std::expected<T, std::string>;
using sink_fn = std::function<bool(std::string_view)>;

// ---- The tree, natively or through a mount ------------------------------------------------

class tree_access {
 public:
  virtual ~tree_access() = default;
  // How a path is named in messages: "jobs/3/ctl" natively, "/galaxy/jobs/3/ctl" mounted.
  virtual std::string name(std::string_view path) const = 0;
  virtual result<std::string> read(std::string_view path) = 0;
  // Calls sink with each piece as it arrives until end of file (or sink returns false).
  virtual result<void> stream(std::string_view path, const sink_fn& sink) = 0;
  virtual result<std::vector<std::string>> list(std::string_view path) = 0;
  // Opens path for writing once and writes each line (a newline added) with one write.
  virtual result<void> write_lines(std::string_view path, const std::vector<std::string>& lines) = 0;
};

class native_access final : public tree_access {
 public:
  static result<std::unique_ptr<native_access>> connect(const std::string& addr, const std::string& uname) {
    auto c = fsclient::client::dial(addr, client_options());
    if (!c) return std::unexpected(c.error());
    auto root = (*c)->attach(uname.empty() ? login_name() : uname);
    if (!root) return std::unexpected(fmt::format("attach {}: {}", addr, root.error()));
    auto a = std::unique_ptr<native_access>(new native_access);
    a->c_ = std::move(*c);
    a->root_ = *root;
    return a;
  }
  std::string name(std::string_view path) const override { return std::string(path); }
  result<std::string> read(std::string_view path) override { return unwalk(c_->read_file(root_, path)); }
  result<void> stream(std::string_view path, const sink_fn& sink) override {
    return unwalk(c_->stream_file(root_, path, sink));
  }
  result<std::vector<std::string>> list(std::string_view path) override {
    auto ds = c_->list_dir(root_, path);
    if (!ds) return std::unexpected(strip(ds.error()));
    std::vector<std::string> names;
    for (auto& d : *ds) names.push_back(std::move(d.name));
    return names;
  }
  result<void> write_lines(std::string_view path, const std::vector<std::string>& lines) override {
    auto f = c_->walk(root_, path);
    if (!f) return std::unexpected(strip(f.error()));
    if (auto o = c_->open(*f, srv9p::owrite); !o) {
      (void)c_->clunk(*f);
      return std::unexpected(o.error());
    }
    std::uint64_t offset = 0;
    for (const auto& l : lines) {
      std::string data = l + "\n";
      auto w = c_->write(*f, offset, data);
      if (!w) {
        (void)c_->clunk(*f);
        return std::unexpected(w.error());
      }
      offset += data.size();
    }
    if (auto c = c_->clunk(*f); !c) return std::unexpected(c.error());
    return {};
  }

 private:
  native_access() = default;
  // client::walk names the missing element ("'jobs/9': file does not exist"); messages
  // here name the whole path already.
  static std::string strip(const std::string& e) {
    if (e.starts_with('\'')) {
      if (auto k = e.find("': "); k != std::string::npos) return e.substr(k + 3);
    }
    return e;
  }
  template <class T>
  static result<T> unwalk(result<T> r) {
    if (!r) return std::unexpected(strip(r.error()));
    return r;
  }
  std::unique_ptr<fsclient::client> c_;
  std::uint32_t root_ = srv9p::nofid;
};

class mount_access final : public tree_access {
 public:
  explicit mount_access(std::string dir) : dir_(std::move(dir)) {}
  std::string name(std::string_view path) const override { return dir_ + "/" + std::string(path); }
  result<std::string> read(std::string_view path) override {
    std::string out;
    auto r = stream(path, [&](std::string_view d) {
      out.append(d);
      return true;
    });
    if (!r) return std::unexpected(r.error());
    return out;
  }
  result<void> stream(std::string_view path, const sink_fn& sink) override {
    int fd = ::open(name(path).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::unexpected(std::string(std::strerror(errno)));
    std::vector<char> buf(1 << 16);
    for (;;) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int e = errno;
        ::close(fd);
        return std::unexpected(std::string(std::strerror(e)));
      }
      if (n == 0 || !sink(std::string_view(buf.data(), static_cast<std::size_t>(n)))) break;
    }
    ::close(fd);
    return {};
  }
  result<std::vector<std::string>> list(std::string_view path) override {
    std::error_code ec;
    std::vector<std::string> names;
    for (fs::directory_iterator it(name(path), ec), end; !ec && it != end; it.increment(ec)) {
      names.push_back(it->path().filename().string());
    }
    if (ec) return std::unexpected(ec.message());
    return names;
  }
  result<void> write_lines(std::string_view path, const std::vector<std::string>& lines) override {
    int fd = ::open(name(path).c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return std::unexpected(std::string(std::strerror(errno)));
    for (const auto& l : lines) {
      std::string data = l + "\n";
      std::string_view rest = data;
      while (!rest.empty()) {
        ssize_t n = ::write(fd, rest.data(), rest.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          // FUSE carries only an errno back, not the scheduler's text: name the line.
          int e = errno;
          ::close(fd);
          return std::unexpected(fmt::format("'{}': {}", l, std::strerror(e)));
        }
        rest.remove_prefix(static_cast<std::size_t>(n));
      }
    }
    if (::close(fd) != 0) return std::unexpected(std::string(std::strerror(errno)));
    return {};
  }

 private:
  std::string dir_;
};

// ---- Options ---------------------------------------------------------------------------

// The states a status line may say (galaxy(4), status), and Slurm's codes for the same
// (squeue --states: PD pending, R running, CD completed, F failed, CA cancelled).
constexpr std::string_view job_states[] = {"new", "starting", "queued", "running", "done", "failed", "killed", "lost"};
constexpr std::pair<std::string_view, std::string_view> slurm_states[] = {
    {"pd", "queued"}, {"pending", "queued"}, {"r", "running"}, {"cd", "done"}, {"completed", "done"},
    {"f", "failed"}, {"ca", "killed"}, {"cancelled", "killed"}};

bool has_ended(std::string_view state) { return state == "done" || state == "failed" || state == "killed"; }

// Words of a comma-separated list, empty ones dropped.
std::vector<std::string> comma_list(std::string_view s) {
  std::vector<std::string> out;
  for (;;) {
    auto c = s.find(',');
    if (!s.substr(0, c).empty()) out.emplace_back(s.substr(0, c));
    if (c == std::string_view::npos) return out;
    s.remove_prefix(c + 1);
  }
}

// The filters of jobs and kill, Slurm's (squeue/scancel --user, --name, --states,
// --nodelist): each a comma-separated list, a job matches when it matches every filter
// given, and a filter matches when any of its words does.
struct job_filter {
  std::string users, names, nodes, states;

  bool any() const { return !users.empty() || !names.empty() || !nodes.empty() || !states.empty(); }
  // Checks --states and fills states_; the error names the states there are.
  result<void> check() {
    states_.clear();
    for (auto w : comma_list(states)) {
      std::ranges::transform(w, w.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      if (auto sl = std::ranges::find(slurm_states, w, &std::pair<std::string_view, std::string_view>::first);
          sl != std::end(slurm_states)) {
        w = sl->second;
      }
      if (std::ranges::find(job_states, w) == std::end(job_states)) {
        return std::unexpected(fmt::format("--states {}: '{}' is not a state; expected a comma-separated list of "
                                           "new, starting, queued, running, done, failed, killed, lost "
                                           "(or Slurm's PD, R, CD, F, CA)",
                                           states, w));
      }
      states_.push_back(w);
    }
    return {};
  }
  bool matches(std::map<std::string, std::string>& kv) const {
    auto in = [](const std::string& list, const std::string& v) {
      if (list.empty()) return true;
      auto words = comma_list(list);
      return std::ranges::find(words, v) != words.end();
    };
    if (!in(users, kv["owner"]) || !in(names, kv["name"]) || !in(nodes, kv["node"])) return false;
    return states_.empty() || std::ranges::find(states_, kv["state"]) != states_.end();
  }

 private:
  std::vector<std::string> states_;
};


struct conn_options {
  std::string addr;
  std::string mount;
  std::string state;  // --state: a galaxy up state directory
  std::string uname;
};

struct job_options {
  conn_options conn;
  std::string cpu, mem, time, name, dir;
  std::string array;             // submit: `array N`
  bool speculate = false;        // submit: `speculate`
  bool queue_anyway = false;     // run, submit: `queue-anyway` (no refusal of what cannot run yet)
  std::vector<std::string> needs, after, env;
  std::vector<std::string> command;
  std::vector<std::string> ids;  // kill, wait, jobs: J or J/I
  std::string signal;            // kill
  job_filter filter;             // jobs, kill
  std::string format;            // jobs -o
  bool noheader = false;         // jobs
  bool quiet = false;            // run: no "job N" line
};

// Says text on stderr; text often holds a node's or the scheduler's error, printed through
// printable() (ctl/ctlmsg.hpp).
void complain(std::string_view verb, std::string_view text) {
  fmt::print(stderr, "galaxy: {}: {}\n", verb, printable(text));
}

// The tree, wherever cluster::find finds it; errors are printed here.
std::unique_ptr<tree_access> open_tree(std::string_view verb, const conn_options& o) {
  auto where = cluster::find({.addr = o.addr, .mount = o.mount, .state = o.state});
  if (!where) {
    complain(verb, where.error());
    return nullptr;
  }
  if (!where->mount.empty()) {
    std::error_code ec;
    auto dir = fs::absolute(where->mount, ec).lexically_normal().string();
    if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    if (!fs::exists(dir + "/jobs/clone", ec)) {
      complain(verb, fmt::format("-m {}: no Galaxy tree is mounted there (no jobs/clone)", o.mount));
      return nullptr;
    }
    return std::make_unique<mount_access>(dir);
  }
  auto a = native_access::connect(where->addr, o.uname);
  if (!a) {
    complain(verb, a.error().starts_with("attach ") ? a.error() : cluster::not_answering(*where, a.error()));
    return nullptr;
  }
  return std::move(*a);
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// key=value words of a status line (ctl quoting), as a map.
std::map<std::string, std::string> parse_status(std::string_view line) {
  std::map<std::string, std::string> kv;
  auto words = tokenize(line.substr(0, line.find('\n')));
  if (!words) return kv;
  for (const auto& w : *words) {
    auto eq = w.find('=');
    if (eq != std::string::npos) kv[w.substr(0, eq)] = w.substr(eq + 1);
  }
  return kv;
}

std::optional<std::uint64_t> job_id(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// The labels the scheduler places by, as "k=v" strings: every node's own (nodes/*/labels)
// and the node=NAME that the scheduler gives each node itself (galaxy(4), need).
std::set<std::string> node_labels(tree_access& t) {
  std::set<std::string> labels;
  auto nodes = t.list("nodes");
  if (!nodes) return labels;
  for (const auto& n : *nodes) {
    labels.emplace("node=" + n);
    auto text = t.read("nodes/" + n + "/labels");
    if (!text) continue;
    std::string_view s = *text;
    while (!s.empty()) {
      auto nl = s.find('\n');
      auto line = s.substr(0, nl);
      if (!line.empty()) labels.emplace(line);
      if (nl == std::string_view::npos) break;
      s.remove_prefix(nl + 1);
    }
  }
  return labels;
}

// The ctl lines for a job from the options, checked with the typed parsers that the
// scheduler uses, so that a mistake is caught before any job exists.
result<std::vector<std::string>> job_lines(const job_options& o) {
  std::vector<std::string> lines;
  if (o.command.empty()) {
    return std::unexpected(std::string("no command: expected galaxy run [OPTIONS] -- CMD ARG..."));
  }
  if (!o.name.empty()) lines.push_back("name " + quote(o.name));
  if (!o.dir.empty()) lines.push_back("dir " + quote(o.dir));
  for (const auto& e : o.env) {
    if (auto kv = parse_kv(e); !kv) return std::unexpected("--env " + kv.error());
    lines.push_back("env " + quote(e));
  }
  if (!o.cpu.empty()) {
    if (auto c = parse_cpu_millis(o.cpu); !c) return std::unexpected("--cpu: " + c.error());
    lines.push_back("cpu " + quote(o.cpu));
  }
  if (!o.mem.empty()) {
    if (auto m = parse_bytes(o.mem); !m) return std::unexpected("--mem: " + m.error());
    lines.push_back("mem " + quote(o.mem));
  }
  if (!o.time.empty()) {
    if (auto t = parse_seconds_ms(o.time); !t) return std::unexpected("--time: " + t.error());
    lines.push_back("time " + quote(o.time));
  }
  for (const auto& n : o.needs) {
    if (auto kv = parse_kv(n); !kv) return std::unexpected("--need " + kv.error());
    lines.push_back("need " + quote(n));
  }
  if (!o.after.empty()) {
    std::vector<std::string> ids;
    for (const auto& a : o.after) {
      if (!job_id(a)) return std::unexpected(fmt::format("--after '{}': expected a job number", a));
      ids.push_back(a);
    }
    lines.push_back("after " + join(ids));
  }
  if (!o.array.empty()) {
    if (auto n = parse_int(o.array, 1, 10000, "--array"); !n) return std::unexpected(n.error());
    lines.push_back("array " + o.array);
  }
  if (o.speculate) lines.push_back("speculate");
  if (o.queue_anyway) lines.push_back("queue-anyway");
  lines.push_back("exec " + join(o.command));
  return lines;
}

// Clones a job and writes its lines; returns its id. Errors are printed here.
std::optional<std::string> submit_job(std::string_view verb, tree_access& t, const job_options& o) {
  auto lines = job_lines(o);
  if (!lines) {
    complain(verb, lines.error());
    return std::nullopt;
  }
  if (!o.needs.empty() && !o.queue_anyway) {
    auto labels = node_labels(t);
    for (const auto& n : o.needs) {
      if (labels.contains(n)) continue;
      std::string have;
      for (const auto& l : labels) have += (have.empty() ? "" : " ") + l;
      complain(verb, fmt::format("--need {}: no node has that label; the labels are: {}", n,
                                 have.empty() ? "(no node is up)" : have));
      return std::nullopt;
    }
  }
  auto id = t.read("jobs/clone");
  if (!id) {
    complain(verb, fmt::format("{}: {}", t.name("jobs/clone"), id.error()));
    return std::nullopt;
  }
  std::string j(*id);
  while (!j.empty() && (j.back() == '\n' || j.back() == ' ')) j.pop_back();
  if (!job_id(j)) {
    complain(verb, fmt::format("{} gave '{}', not a job number", t.name("jobs/clone"), j));
    return std::nullopt;
  }
  std::string ctl = "jobs/" + j + "/ctl";
  if (auto w = t.write_lines(ctl, *lines); !w) {
    // The scheduler's refusal of what no node can run (galaxy(4), exec) gets the tool's escape.
    std::string more = w.error().starts_with("cannot run: ") ? "; --queue-anyway queues it for nodes to come" : "";
    complain(verb, fmt::format("{}: {}{}", t.name(ctl), w.error(), more));
    (void)t.write_lines(ctl, {"rm"});  // the job never started: drop it
    return std::nullopt;
  }
  return j;
}

// ---- The verbs ---------------------------------------------------------------------------

int do_submit(const job_options& o) {
  auto t = open_tree("submit", o.conn);
  if (!t) return 1;
  auto j = submit_job("submit", *t, o);
  if (!j) return 1;
  fmt::print("{}\n", *j);
  return 0;
}

int do_run(const job_options& o) {
  // Signals go to a thread of our own, started before anything else starts a thread (the
  // 9P client's reader, the streams), so that every thread inherits the mask. Until the
  // job exists a signal ends run at once (status 128+N); then the first writes kill to the
  // job's ctl and a second ends run. SIGUSR1 only tells the thread that run is done.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  sigaddset(&sigs, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  std::unique_ptr<tree_access> t;
  std::mutex m;
  std::string job_dir;  // set under m once the job exists
  std::thread signals([&] {
    int seen = 0;
    for (;;) {
      int s = ::sigwaitinfo(&sigs, nullptr);
      if (s < 0) continue;  // EINTR
      if (s == SIGUSR1) return;
      std::lock_guard lock(m);
      if (job_dir.empty() || ++seen > 1) ::_exit(128 + s);
      fmt::print(stderr, "galaxy: run: {}: killing the job (again to leave it running)\n", signal_name(s));
      (void)t->write_lines(job_dir + "ctl", {"kill"});
    }
  });
  struct joiner {
    std::thread& th;
    ~joiner() {
      ::pthread_kill(th.native_handle(), SIGUSR1);
      th.join();
    }
  } join_signals{signals};

  t = open_tree("run", o.conn);
  if (!t) return 1;
  auto j = submit_job("run", *t, o);
  if (!j) return 1;
  if (!o.quiet) fmt::print(stderr, "galaxy: run: job {}\n", *j);
  std::string dir = "jobs/" + *j + "/";
  {
    std::lock_guard lock(m);
    job_dir = dir;
  }

  auto pump = [&](const char* file, int fd, std::string& err) {
    auto r = t->stream(dir + file, [fd](std::string_view d) { return write_all(fd, d); });
    if (!r) err = fmt::format("{}: {}", t->name(dir + file), r.error());
  };
  std::string out_err, err_err;
  std::thread out([&] { pump("stdout", STDOUT_FILENO, out_err); });
  std::thread err([&] { pump("stderr", STDERR_FILENO, err_err); });
  auto wait = t->read(dir + "wait");
  if (wait && wait->starts_with("cannot run: ")) {
    // The job is still queued (its last node went): its output never comes and the
    // threads reading it stay blocked, so leave without them.
    std::string w = *wait;
    while (!w.empty() && w.back() == '\n') w.pop_back();
    complain("run", fmt::format("job {}: {}", *j, w));
    std::fflush(stdout);
    std::_Exit(1);
  }
  out.join();
  err.join();
  for (const auto& e : {out_err, err_err}) {
    if (!e.empty()) complain("run", e);
  }
  if (!wait) {
    complain("run", fmt::format("{}: {}", t->name(dir + "wait"), wait.error()));
    return 1;
  }
  std::string w = *wait;
  while (!w.empty() && w.back() == '\n') w.pop_back();
  int status = job_exit_status(w);
  if (status != 0 && !w.starts_with("exit ")) complain("run", fmt::format("job {}: {}", *j, w));
  return status;
}

// ---- Jobs by name and by filter --------------------------------------------------------

// A job's name below jobs/: "J", or "J/I" for task I of array J (galaxy(4): an array's
// tasks live in its directory, not in jobs/).
bool is_job_name(std::string_view s) {
  auto slash = s.find('/');
  if (slash == std::string_view::npos) return job_id(s).has_value();
  return job_id(s.substr(0, slash)) && job_id(s.substr(slash + 1));
}

// One job as listed: its name below jobs/ and its status line's fields.
struct job_row {
  std::string id;
  std::map<std::string, std::string> kv;
};

// The jobs named (each J or J/I), or every job in jobs/ when none is; an array job J is
// followed by its tasks J/0, J/1, ... (jobs/J/ lists them). A name that does not exist is
// complained about (and makes bad true); a job removed meanwhile is left out.
std::vector<job_row> list_jobs(std::string_view verb, tree_access& t, const std::vector<std::string>& names,
                               bool& bad) {
  std::vector<job_row> rows;
  auto numbers_in = [&](const std::string& dir) {
    std::vector<std::uint64_t> ids;
    if (auto ls = t.list(dir)) {
      for (const auto& n : *ls) {
        if (auto id = job_id(n)) ids.push_back(*id);
      }
    }
    std::ranges::sort(ids);
    return ids;
  };
  auto add = [&](const std::string& id, bool named) {
    auto s = t.read("jobs/" + id + "/status");
    if (!s) {
      if (named) {
        complain(verb, fmt::format("{}: {}", t.name("jobs/" + id), s.error()));
        bad = true;
      }
      return;
    }
    rows.push_back({id, parse_status(*s)});
    if (rows.back().kv.contains("tasks")) {
      for (auto i : numbers_in("jobs/" + id)) {
        auto ts = t.read(fmt::format("jobs/{}/{}/status", id, i));
        if (ts) rows.push_back({fmt::format("{}/{}", id, i), parse_status(*ts)});
      }
    }
  };
  if (names.empty()) {
    auto ls = t.list("jobs");
    if (!ls) {
      complain(verb, fmt::format("{}: {}", t.name("jobs"), ls.error()));
      bad = true;
      return rows;
    }
    for (auto id : numbers_in("jobs")) add(std::to_string(id), false);
    return rows;
  }
  for (const auto& n : names) {
    if (!is_job_name(n)) {
      complain(verb, fmt::format("'{}': expected a job number J, or J/I for task I of array J", n));
      bad = true;
      continue;
    }
    add(n, true);
  }
  return rows;
}

// ---- squeue's -o FORMAT ----------------------------------------------------------------

// A time in ms since 1970 as squeue prints one (local time, 2026-01-02T15:04:05); N/A for 0.
std::string clock_time(const std::string& ms_text) {
  auto ms = job_id(ms_text);
  if (!ms || *ms == 0) return "N/A";
  std::time_t t = static_cast<std::time_t>(*ms / 1000);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

// How long a job has run, as squeue's %M: M:SS, H:MM:SS or D-HH:MM:SS; until it ended, or
// until now while it runs; 0:00 before it started.
std::string elapsed(std::map<std::string, std::string>& kv, std::uint64_t now_ms) {
  auto started = job_id(kv["started"]).value_or(0), ended = job_id(kv["ended"]).value_or(0);
  std::uint64_t s = 0;
  if (started != 0) s = ((ended != 0 ? ended : std::max(now_ms, started)) - started) / 1000;
  auto d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
  if (d > 0) return fmt::format("{}-{:02}:{:02}:{:02}", d, h, m, sec);
  if (h > 0) return fmt::format("{}:{:02}:{:02}", h, m, sec);
  return fmt::format("{}:{:02}", m, sec);
}

// CPU time in ms as sacct's TotalCPU: [D-][H:]M:SS.mmm.
std::string cpu_time(std::uint64_t ms) {
  auto s = ms / 1000, d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
  if (d > 0) return fmt::format("{}-{:02}:{:02}:{:02}.{:03}", d, h, m, sec, ms % 1000);
  if (h > 0) return fmt::format("{}:{:02}:{:02}.{:03}", h, m, sec, ms % 1000);
  return fmt::format("{}:{:02}.{:03}", m, sec, ms % 1000);
}

// A job's CPU time (usertime + systime of its status, galaxy(4)) as cpu_time; "" when the
// status has none (a scheduler older than the field).
std::string job_cpu(std::map<std::string, std::string>& kv) {
  if (!kv.contains("usertime")) return "";
  auto user = job_id(kv["usertime"]).value_or(0), sys = job_id(kv["systime"]).value_or(0);
  return cpu_time(sys > UINT64_MAX - user ? UINT64_MAX : user + sys);
}

// A job's largest resident set (maxrss, bytes) in KiB with sacct's K: "65536K".
std::string job_maxrss(std::map<std::string, std::string>& kv) {
  if (!kv.contains("maxrss")) return "";
  return fmt::format("{}K", job_id(kv["maxrss"]).value_or(0) / 1024);
}

// The fields of -o FORMAT: squeue's letters, with squeue's headings, and %x (the exit),
// %y (CPU time) and %z (max RSS), Galaxy's own (squeue has none; the letters are
// squeue's %y nice and %z S:C:T, which mean nothing here).
struct format_field {
  char letter;
  std::string_view heading;
};
constexpr format_field format_fields[] = {
    {'i', "JOBID"}, {'u', "USER"},        {'T', "STATE"},      {'N', "NODELIST"},
    {'j', "NAME"},  {'M', "TIME"},        {'V', "SUBMIT_TIME"}, {'S', "START_TIME"},
    {'e', "END_TIME"}, {'r', "REASON"},   {'Q', "PRIORITY"},   {'x', "EXIT"},
    {'y', "TOTALCPU"}, {'z', "MAXRSS"},
};

// One piece of a parsed FORMAT: literal text, or a field with squeue's %[.][size]: a
// field is padded to size (on the left with '.', else on the right) and cut to it.
struct format_piece {
  std::string text;  // literal, when letter is 0
  char letter = 0;
  std::size_t size = 0;
  bool right = false;
};

result<std::vector<format_piece>> parse_format(std::string_view f) {
  std::vector<format_piece> out;
  for (std::size_t i = 0; i < f.size();) {
    if (f[i] != '%') {
      if (out.empty() || out.back().letter != 0) out.emplace_back();
      out.back().text += f[i++];
      continue;
    }
    format_piece p;
    std::size_t at = i++;
    if (i < f.size() && f[i] == '%') {
      if (out.empty() || out.back().letter != 0) out.emplace_back();
      out.back().text += '%';
      i++;
      continue;
    }
    if (i < f.size() && f[i] == '.') {
      p.right = true;
      i++;
    }
    while (i < f.size() && f[i] >= '0' && f[i] <= '9' && p.size < 1000) p.size = p.size * 10 + (f[i++] - '0');
    if (i >= f.size() || std::ranges::find(format_fields, f[i], &format_field::letter) == std::end(format_fields)) {
      return std::unexpected(fmt::format("-o '{}': '{}' at {} is not a field; the fields are %i %u %T %N %j %M %V "
                                         "%S %e %r %Q %x %y %z, each as %[.][size]LETTER",
                                         f, f.substr(at, i + 1 - at), at + 1));
    }
    p.letter = f[i++];
    out.push_back(p);
  }
  return out;
}

std::string field_text(char letter, job_row& r, std::uint64_t now_ms) {
  auto& kv = r.kv;
  switch (letter) {
    case 'i': return r.id;
    case 'u': return kv["owner"];
    case 'T': return kv["state"];
    case 'N': return kv["node"];
    case 'j': return kv["name"];
    case 'M': return elapsed(kv, now_ms);
    case 'V': return clock_time(kv["submitted"]);
    case 'S': return clock_time(kv["started"]);
    case 'e': return clock_time(kv["ended"]);
    case 'r': return kv["note"];
    case 'Q': return kv["priority"];
    case 'x': return kv["exit"];
    case 'y': return job_cpu(kv);
    case 'z': return job_maxrss(kv);
  }
  return {};
}

std::string format_line(const std::vector<format_piece>& pieces, const std::function<std::string(char)>& text) {
  std::string line;
  for (const auto& p : pieces) {
    if (p.letter == 0) {
      line += p.text;
      continue;
    }
    std::string v = text(p.letter);
    if (p.size != 0 && v.size() > p.size) v.resize(p.size);
    if (p.size != 0 && v.size() < p.size) v.insert(p.right ? 0 : v.size(), p.size - v.size(), ' ');
    line += v;
  }
  return line + "\n";
}

// ---- The verbs, continued ------------------------------------------------------------------

// The progress line of a wait on a terminal: "galaxy: wait: 3/10 done, 2 running, 5
// queued, 0:42", redrawn once a second on standard error with \r, as a thread of its own
// that reads each job's status (galaxy(4)) while the caller blocks on the wait files.
// A job counts as done once it has ended (done, failed, killed), as running while its
// status says running, and as queued otherwise. The line is erased (blanks, then \r)
// before each result line the caller prints and when the wait ends, so nothing of it is
// left. Only when standard error is a terminal (isatty(3)): a pipe gets nothing extra.
class wait_progress {
 public:
  // Draws the line once before returning (so even a short wait shows it), then once a
  // second from a thread of its own.
  wait_progress(tree_access& t, std::vector<std::string> ids)
      : t_(t), ids_(std::move(ids)), start_(std::chrono::steady_clock::now()) {
    show(line());
    thread_ = std::thread([this] { run(); });
  }
  ~wait_progress() {
    {
      std::lock_guard lock(m_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    std::lock_guard lock(m_);
    erase();
  }
  // Job id has ended (its wait answered); f prints its line, with the progress line erased.
  void ended(const std::string& id, const std::function<void()>& f) {
    std::lock_guard lock(m_);
    ended_.insert(id);
    erase();
    f();
    std::fflush(stdout);
  }

 private:
  void run() {
    std::unique_lock lock(m_);
    for (;;) {
      cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; });
      if (stop_) return;
      lock.unlock();
      std::string l = line();
      lock.lock();
      if (stop_) return;
      show_locked(l);
    }
  }
  // The line as of now, from the jobs' status files. Takes m_ only to copy ended_.
  std::string line() {
    std::set<std::string> ended;
    {
      std::lock_guard lock(m_);
      ended = ended_;
    }
    std::size_t done = 0, running = 0, queued = 0;
    for (const auto& id : ids_) {
      if (ended.contains(id)) {
        done++;
        continue;
      }
      auto s = t_.read("jobs/" + id + "/status");
      auto state = s ? parse_status(*s)["state"] : std::string();
      if (has_ended(state)) {
        done++;
      } else if (state == "running") {
        running++;
      } else {
        queued++;
      }
    }
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start_).count();
    return fmt::format("galaxy: wait: {}/{} done, {} running, {} queued, {}:{:02}", done, ids_.size(), running, queued,
                       secs / 60, secs % 60);
  }
  void show(const std::string& l) {
    std::lock_guard lock(m_);
    show_locked(l);
  }
  // Draws l over the line shown (blanks past its end). Under m_.
  void show_locked(const std::string& l) {
    std::string out = "\r" + l;
    if (l.size() < shown_) out.append(shown_ - l.size(), ' ');
    write_all(STDERR_FILENO, out);
    shown_ = l.size();
  }
  // Blanks the line shown, and puts the cursor back at its start. Under m_.
  void erase() {
    if (shown_ == 0) return;
    write_all(STDERR_FILENO, "\r" + std::string(shown_, ' ') + "\r");
    shown_ = 0;
  }

  tree_access& t_;
  std::vector<std::string> ids_;
  std::chrono::steady_clock::time_point start_;
  std::mutex m_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::set<std::string> ended_;  // ids whose wait has answered
  std::size_t shown_ = 0;        // length of the line on the terminal, 0 if none
  std::thread thread_;
};

int do_wait(const job_options& o) {
  auto t = open_tree("wait", o.conn);
  if (!t) return 1;
  std::optional<wait_progress> progress;
  if (::isatty(STDERR_FILENO) == 1) {
    std::vector<std::string> ids;
    for (const auto& id : o.ids) {
      if (is_job_name(id)) ids.push_back(id);
    }
    progress.emplace(*t, std::move(ids));
  }
  int status = 0;
  // Prints with the progress line out of the way.
  auto say = [&](const std::string& id, const std::function<void()>& f) {
    if (progress) {
      progress->ended(id, f);
    } else {
      f();
    }
  };
  for (const auto& id : o.ids) {
    if (!is_job_name(id)) {
      say(id, [&] { complain("wait", fmt::format("'{}': expected a job number J, or J/I for task I of array J", id)); });
      status = status != 0 ? status : 1;
      continue;
    }
    auto w = t->read("jobs/" + id + "/wait");
    if (!w) {
      say(id, [&] { complain("wait", fmt::format("{}: {}", t->name("jobs/" + id + "/wait"), w.error())); });
      status = status != 0 ? status : 1;
      continue;
    }
    std::string text = *w;
    while (!text.empty() && text.back() == '\n') text.pop_back();
    text = printable(text);  // the scheduler's word for how the job ended, which may quote a node's
    auto print = [&] { fmt::print("{}{}\n", o.ids.size() > 1 ? id + " " : "", text); };
    say(id, print);
    if (int s = job_exit_status(text); s != 0 && status == 0) status = s;
  }
  return status;
}

// kill J... writes kill to each; with filters (scancel's --user, --name, --states,
// --nodelist) it kills every job of those (or of the jobs named) that matches and has
// not ended. An array job that matches takes its tasks with it; a task that matches
// alone is killed alone.
int do_kill(job_options o) {
  if (o.ids.empty() && !o.filter.any()) {
    complain("kill", "name the jobs (J or J/I), or choose them with --user, --name, --node or --states");
    return 1;
  }
  if (auto ok = o.filter.check(); !ok) {
    complain("kill", ok.error());
    return 1;
  }
  std::string line = "kill";
  if (!o.signal.empty()) {
    if (auto s = parse_signal(o.signal); !s) {
      complain("kill", s.error());
      return 1;
    }
    line += " " + quote(o.signal);
  }
  auto t = open_tree("kill", o.conn);
  if (!t) return 1;
  int status = 0;
  std::vector<std::string> targets;
  if (!o.filter.any()) {
    for (const auto& id : o.ids) {
      if (!is_job_name(id)) {
        complain("kill", fmt::format("'{}': expected a job number J, or J/I for task I of array J", id));
        status = 1;
        continue;
      }
      targets.push_back(id);
    }
  } else {
    bool bad = false;
    auto rows = list_jobs("kill", *t, o.ids, bad);
    if (bad) status = 1;
    std::string killed_array;  // "J/" of the last array job chosen: its tasks go with it
    for (auto& r : rows) {
      if (!killed_array.empty() && r.id.starts_with(killed_array)) continue;
      if (has_ended(r.kv["state"]) || !o.filter.matches(r.kv)) continue;
      targets.push_back(r.id);
      if (r.kv.contains("tasks")) killed_array = r.id + "/";
    }
  }
  for (const auto& id : targets) {
    std::string ctl = "jobs/" + id + "/ctl";
    if (auto w = t->write_lines(ctl, {line}); !w) {
      complain("kill", fmt::format("{}: {}", t->name(ctl), w.error()));
      status = 1;
    }
  }
  return status;
}

// Prints rows as columns separated by two blanks; the last column is not padded. Every
// cell is the tree's text (another user's job name, a node's status and labels), so it
// is printed through printable() (ctl/ctlmsg.hpp): no escape sequence reaches the terminal.
void print_table(std::vector<std::vector<std::string>> rows) {
  for (auto& r : rows) {
    for (auto& cell : r) cell = printable(cell);
  }
  std::vector<std::size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size());
    for (std::size_t i = 0; i < r.size(); i++) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); i++) {
      line += i + 1 < r.size() ? fmt::format("{:<{}}  ", r[i], width[i]) : r[i];
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  write_all(STDOUT_FILENO, out);
}

// The filters of o checked and its -o FORMAT parsed (empty when not given), for jobs and
// history; nullopt after saying what was wrong on stderr.
std::optional<std::vector<format_piece>> checked_format(std::string_view verb, job_options& o) {
  if (auto ok = o.filter.check(); !ok) {
    complain(verb, ok.error());
    return std::nullopt;
  }
  if (o.format.empty()) return std::vector<format_piece>{};
  auto f = parse_format(o.format);
  if (!f) {
    complain(verb, f.error());
    return std::nullopt;
  }
  return std::move(*f);
}

// jobs [J...]: every job (or those named), array tasks as J/I after their array, those
// that match the filters; as a table, or one line each in -o FORMAT (squeue's).
int do_jobs(job_options o) {
  auto checked = checked_format("jobs", o);
  if (!checked) return 1;
  std::vector<format_piece> format = std::move(*checked);
  auto t = open_tree("jobs", o.conn);
  if (!t) return 1;
  bool bad = false;
  auto rows = list_jobs("jobs", *t, o.ids, bad);
  std::erase_if(rows, [&](job_row& r) { return !o.filter.matches(r.kv); });
  if (!format.empty()) {
    auto now_ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::system_clock::now().time_since_epoch())
                                                 .count());
    std::string out;
    if (!o.noheader) {
      out += format_line(format, [](char l) {
        return std::string(std::ranges::find(format_fields, l, &format_field::letter)->heading);
      });
    }
    for (auto& r : rows) out += format_line(format, [&](char l) { return printable(field_text(l, r, now_ms)); });
    write_all(STDOUT_FILENO, out);
    return bad ? 1 : 0;
  }
  std::vector<std::vector<std::string>> table;
  if (!o.noheader) table.push_back({"ID", "OWNER", "STATE", "NODE", "EXIT", "NAME", "NOTE"});
  for (auto& r : rows) {
    auto& kv = r.kv;
    table.push_back({r.id, kv["owner"], kv["state"], kv["node"], kv["exit"], kv["name"], kv["note"]});
  }
  print_table(table);
  return bad ? 1 : 0;
}

// history [J...]: like sacct, the jobs that have ended (done, failed, killed; or those of
// --states) that match the filters, with their times, node, exit, and the CPU time and
// largest resident set that the node measured (galaxy(4), status: usertime, systime,
// maxrss). A table, or -o FORMAT as jobs. The scheduler keeps a job until it is removed
// (rm), so this is as long as its jobs/ is.
int do_history(job_options o) {
  auto checked = checked_format("history", o);
  if (!checked) return 1;
  std::vector<format_piece> format = std::move(*checked);
  auto t = open_tree("history", o.conn);
  if (!t) return 1;
  bool bad = false;
  auto rows = list_jobs("history", *t, o.ids, bad);
  bool any_state = !o.filter.states.empty();
  std::erase_if(rows, [&](job_row& r) {
    // An array job itself ran nothing: its tasks are its rows.
    return r.kv.contains("tasks") || !o.filter.matches(r.kv) || (!any_state && !has_ended(r.kv["state"]));
  });
  auto now_ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  if (!format.empty()) {
    std::string out;
    if (!o.noheader) {
      out += format_line(format, [](char l) {
        return std::string(std::ranges::find(format_fields, l, &format_field::letter)->heading);
      });
    }
    for (auto& r : rows) out += format_line(format, [&](char l) { return printable(field_text(l, r, now_ms)); });
    write_all(STDOUT_FILENO, out);
    return bad ? 1 : 0;
  }
  std::vector<std::vector<std::string>> table;
  if (!o.noheader) {
    table.push_back({"ID", "OWNER", "NAME", "STATE", "NODE", "SUBMIT", "START", "END", "ELAPSED", "CPU", "MAXRSS",
                     "EXIT"});
  }
  for (auto& r : rows) {
    auto& kv = r.kv;
    table.push_back({r.id, kv["owner"], kv["name"], kv["state"], kv["node"], clock_time(kv["submitted"]),
                     clock_time(kv["started"]), clock_time(kv["ended"]), elapsed(kv, now_ms), job_cpu(kv),
                     job_maxrss(kv), kv["exit"]});
  }
  print_table(table);
  return bad ? 1 : 0;
}

int do_nodes(const job_options& o) {
  auto t = open_tree("nodes", o.conn);
  if (!t) return 1;
  auto names = t->list("nodes");
  if (!names) {
    complain("nodes", fmt::format("{}: {}", t->name("nodes"), names.error()));
    return 1;
  }
  std::ranges::sort(*names);
  std::vector<std::vector<std::string>> rows{{"NAME", "STATE", "CPUS", "MEM", "LOAD", "TASKS", "LABELS"}};
  for (const auto& n : *names) {
    auto s = t->read("nodes/" + n + "/status");
    if (!s) {
      rows.push_back({n, "?", "", "", "", "", s.error()});
      continue;
    }
    auto kv = parse_status(*s);
    std::string mem = kv["mem"];
    if (auto b = job_id(mem)) mem = human_bytes(*b);
    std::string labels;
    if (auto l = t->read("nodes/" + n + "/labels")) {
      for (char ch : *l) labels += ch == '\n' ? ' ' : ch;
      while (!labels.empty() && labels.back() == ' ') labels.pop_back();
    }
    rows.push_back({n, kv["state"], kv["ncpu"], mem, kv["load"], kv["tasks"], labels});
  }
  print_table(rows);
  return 0;
}

void add_conn(CLI::App* sub, job_options& o) {
  sub->add_option("-a,--addr", o.conn.addr,
                  "the scheduler's dial string (default: $GALAXY_ADDR, $GALAXY_STATE's cluster, the cluster galaxy "
                  "up started, else tcp!127.0.0.1!5641)");
  sub->add_option("-m,--mount", o.conn.mount, "use the tree mounted here instead of dialing");
  sub->add_option("--state", o.conn.state, "use the cluster that galaxy up --state DIR started");
  sub->add_option("-u,--uname", o.conn.uname, "the user name to attach as (default: $USER)");
}

// Slurm's filters (squeue, scancel). Long options only: -u is the attach name.
void add_filters(CLI::App* sub, job_options& o) {
  sub->add_option("--user", o.filter.users, "only jobs of these owners (comma-separated)");
  sub->add_option("--name", o.filter.names, "only jobs of these names (comma-separated)");
  sub->add_option("--node", o.filter.nodes, "only jobs on these nodes, their current or last (comma-separated)");
  sub->add_option("--states", o.filter.states,
                  "only jobs in these states (comma-separated: new, starting, queued, running, done, failed, killed, "
                  "lost; or Slurm's PD, R, CD, F, CA)");
}

void add_spec(CLI::App* sub, job_options& o) {
  sub->add_option("--cpu", o.cpu, "CPUs the job takes: N, N.N or Nm millicores (default 1)");
  sub->add_option("--mem", o.mem, "memory the job may use: BYTES[k|m|g]");
  sub->add_option("--need", o.needs, "run only on a node with this label K=V (repeatable)");
  sub->add_option("--after", o.after, "run only after job J succeeded (repeatable)");
  sub->add_option("-e,--env", o.env, "set K=V in the job's environment (repeatable)");
  sub->add_option("--time", o.time, "kill the job after this many seconds");
  sub->add_option("--name", o.name, "a name for the job, shown by galaxy jobs");
  sub->add_option("--dir", o.dir, "the job's working directory on its node");
  sub->add_flag("--queue-anyway", o.queue_anyway,
                "queue the job even if no node known now can run it (nodes that join later may)");
  // Only for --help: split_command hands the command over, and CLI11 never sees its words.
  sub->add_option("command", o.command, "the command and its arguments (after -- or after the last option)");
}

// The verbs whose last argument is a command of the user's (split_command).
constexpr std::string_view command_verbs[] = {"run", "submit"};

// Whether the option word arg (not `--`) takes the next word as its value: CLI11's option
// of that name in scope (or, failing that, in app: --auth may follow the verb) expects at
// least one item and arg does not carry it already (`--mem=1g`, `-eK=V`). A cluster of
// short flags (`-qa DIAL`) takes a value when its last letter does. An unknown option
// takes none: CLI11 refuses it later.
bool takes_value(const CLI::App& scope, const CLI::App& app, std::string_view arg) {
  auto find = [&](const std::string& name) {
    const CLI::Option* o = scope.get_option_no_throw(name);
    return o != nullptr ? o : app.get_option_no_throw(name);
  };
  auto wants = [](const CLI::Option* o) { return o != nullptr && o->get_items_expected_min() > 0; };
  if (arg.starts_with("--")) {
    return arg.find('=') == std::string_view::npos && wants(find(std::string(arg)));
  }
  for (std::size_t k = 1; k < arg.size(); k++) {
    const CLI::Option* o = find(std::string("-") + arg[k]);
    if (o == nullptr) return false;
    if (wants(o)) return k + 1 == arg.size();  // else the rest of arg is its value
  }
  return false;
}

}  // namespace

command_split split_command(const CLI::App& app, int argc, const char* const* argv) {
  command_split out{argc, {}};
  const CLI::App* verb = nullptr;
  for (int i = 1; i < argc; i++) {
    std::string_view a = argv[i];
    if (verb == nullptr) {
      if (a == "--") return out;
      if (a.size() > 1 && a[0] == '-') {
        if (takes_value(app, app, a)) i++;
        continue;
      }
      // The verb: only those that take a command are cut; CLI11 reads every other whole.
      if (std::ranges::find(command_verbs, a) == std::end(command_verbs)) return out;
      auto subs = app.get_subcommands([&](const CLI::App* s) { return s->get_name() == a; });
      if (subs.empty()) return out;
      verb = subs.front();
      continue;
    }
    if (a == "--" || a.size() < 2 || a[0] != '-') {
      out.argc = i;
      for (int k = a == "--" ? i + 1 : i; k < argc; k++) out.command.emplace_back(argv[k]);
      return out;
    }
    if (takes_value(*verb, app, a)) i++;
  }
  return out;
}

int job_exit_status(std::string_view w) {
  auto number = [](std::string_view s) -> std::optional<int> {
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
  };
  if (w.starts_with("exit ")) {
    if (auto n = number(w.substr(5)); n && *n >= 0 && *n <= 255) return *n;
    return 1;
  }
  if (w.starts_with("signal ")) {
    // "signal 9", or "signal 9 out of memory" from a node's OOM-killed task.
    std::string_view sig = w.substr(7);
    if (auto sp = sig.find(' '); sp != std::string_view::npos) sig = sig.substr(0, sp);
    if (auto n = number(sig); n && *n > 0 && *n < 128) return 128 + *n;
    return 1;
  }
  if (w == "killed") return 128 + SIGKILL;
  return 1;
}

void add_job_commands(CLI::App& app, int& status, const std::vector<std::string>& command) {
  auto o = std::make_shared<job_options>();
  int* st = &status;
  const std::vector<std::string>* cmd = &command;

  auto* run = app.add_subcommand("run", "submit a job, stream its output, and exit as it did (like srun)");
  add_conn(run, *o);
  add_spec(run, *o);
  run->add_flag("-q,--quiet", o->quiet, "do not print the job's number on standard error");
  run->callback([o, st, cmd] {
    o->command = *cmd;
    *st = do_run(*o);
  });

  auto* submit = app.add_subcommand("submit", "submit a job and print its number (like sbatch)");
  add_conn(submit, *o);
  add_spec(submit, *o);
  submit->add_option("--array", o->array, "make N tasks, jobs/J/0..N-1, with $GALAXY_INDEX (like sbatch --array)");
  submit->add_flag("--speculate", o->speculate, "let a straggling task get a backup copy on another node");
  submit->callback([o, st, cmd] {
    o->command = *cmd;
    *st = do_submit(*o);
  });

  auto* jobs = app.add_subcommand(
      "jobs", "list the jobs (array tasks as J/I): id, owner, state, node, exit, name, note; or -o FORMAT (like squeue)");
  add_conn(jobs, *o);
  add_filters(jobs, *o);
  jobs->add_option("-o,--format", o->format,
                   "one line per job in squeue's format: %i id, %u user, %T state, %N node, %j name, %M time used, "
                   "%V submitted, %S started, %e ended, %r note, %Q priority, %x exit, %y CPU time, %z max RSS; "
                   "%[.][size]LETTER pads to size "
                   "(right-justified with .) and cuts to it");
  jobs->add_flag("--noheader", o->noheader, "print no heading line");
  jobs->add_option("job", o->ids, "only these jobs: J, or J/I for task I of array J");
  jobs->callback([o, st] { *st = do_jobs(*o); });

  auto* history = app.add_subcommand(
      "history", "list the jobs that have ended: times, node, CPU time, max RSS, exit; or -o FORMAT (like sacct)");
  add_conn(history, *o);
  add_filters(history, *o);
  history->add_option("-o,--format", o->format, "one line per job, in jobs' -o FORMAT (%y CPU time, %z max RSS)");
  history->add_flag("--noheader", o->noheader, "print no heading line");
  history->add_option("job", o->ids, "only these jobs: J, or J/I for task I of array J");
  history->callback([o, st] { *st = do_history(*o); });

  auto* nodes = app.add_subcommand("nodes", "list the nodes that are up: state, CPUs, memory, load, labels");
  add_conn(nodes, *o);
  nodes->callback([o, st] { *st = do_nodes(*o); });

  auto* kill = app.add_subcommand("kill", "kill jobs (writes kill to jobs/J/ctl)");
  add_conn(kill, *o);
  kill->add_option("-s,--signal", o->signal, "the signal (default KILL)");
  add_filters(kill, *o);
  kill->add_option("job", o->ids, "jobs: J, or J/I for task I of array J (with filters: those of them that match)");
  kill->callback([o, st] { *st = do_kill(*o); });

  auto* wait = app.add_subcommand("wait", "wait for jobs to end; print how; exit as the first that failed");
  add_conn(wait, *o);
  wait->add_option("job", o->ids, "jobs: J, or J/I for task I of array J")->required();
  wait->callback([o, st] { *st = do_wait(*o); });
}

}  // namespace ctl
