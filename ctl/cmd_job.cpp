// The job verbs (ctl/cmd_job.hpp).
//
// Every verb goes through one small interface over the tree (tree_access): read a whole
// file, stream a file piece by piece, list a directory, write lines to a ctl file (one
// write per line, as `echo ... > ctl` does). One implementation speaks 9P through
// fsclient::client; the other is plain POSIX file I/O under a mount point. So a verb is
// exactly the file operations the man page documents, whichever way it reaches the tree.
//
// run and submit check what they can before they clone (argument syntax with ctl/'s typed
// parsers, `need` labels against nodes/*/labels), so that bad input makes no job. A ctl
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
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
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

struct conn_options {
  std::string addr;
  std::string mount;
  std::string uname;
};

struct job_options {
  conn_options conn;
  std::string cpu, mem, time, name, dir;
  std::string array;             // submit: `array N`
  bool speculate = false;        // submit: `speculate`
  std::vector<std::string> needs, after, env;
  std::vector<std::string> command;
  std::vector<std::string> ids;  // kill, wait
  std::string signal;            // kill
  bool quiet = false;            // run: no "job N" line
};

void complain(std::string_view verb, std::string_view text) { fmt::print(stderr, "galaxy: {}: {}\n", verb, text); }

std::unique_ptr<tree_access> open_tree(std::string_view verb, const conn_options& o) {
  if (!o.addr.empty() && !o.mount.empty()) {
    complain(verb, "give -a DIAL or -m MOUNTPOINT, not both");
    return nullptr;
  }
  if (!o.mount.empty()) {
    std::error_code ec;
    auto dir = fs::absolute(o.mount, ec).lexically_normal().string();
    if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    if (!fs::exists(dir + "/jobs/clone", ec)) {
      complain(verb, fmt::format("-m {}: no Galaxy tree is mounted there (no jobs/clone)", o.mount));
      return nullptr;
    }
    return std::make_unique<mount_access>(dir);
  }
  std::string addr = o.addr.empty() ? cluster::default_addr() : o.addr;
  auto a = native_access::connect(addr, o.uname);
  if (!a) {
    complain(verb, a.error());
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

// The labels of every node (nodes/*/labels), as "k=v" strings.
std::set<std::string> node_labels(tree_access& t) {
  std::set<std::string> labels;
  auto nodes = t.list("nodes");
  if (!nodes) return labels;
  for (const auto& n : *nodes) {
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
  if (!o.needs.empty()) {
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
    complain(verb, fmt::format("{}: {}", t.name(ctl), w.error()));
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

int do_wait(const job_options& o) {
  auto t = open_tree("wait", o.conn);
  if (!t) return 1;
  int status = 0;
  for (const auto& id : o.ids) {
    if (!job_id(id)) {
      complain("wait", fmt::format("'{}': expected a job number", id));
      status = status != 0 ? status : 1;
      continue;
    }
    auto w = t->read("jobs/" + id + "/wait");
    if (!w) {
      complain("wait", fmt::format("{}: {}", t->name("jobs/" + id + "/wait"), w.error()));
      status = status != 0 ? status : 1;
      continue;
    }
    std::string text = *w;
    while (!text.empty() && text.back() == '\n') text.pop_back();
    fmt::print("{}{}\n", o.ids.size() > 1 ? id + " " : "", text);
    if (int s = job_exit_status(text); s != 0 && status == 0) status = s;
  }
  return status;
}

int do_kill(const job_options& o) {
  auto t = open_tree("kill", o.conn);
  if (!t) return 1;
  std::string line = "kill";
  if (!o.signal.empty()) {
    if (auto s = parse_signal(o.signal); !s) {
      complain("kill", s.error());
      return 1;
    }
    line += " " + quote(o.signal);
  }
  int status = 0;
  for (const auto& id : o.ids) {
    if (!job_id(id)) {
      complain("kill", fmt::format("'{}': expected a job number", id));
      status = 1;
      continue;
    }
    std::string ctl = "jobs/" + id + "/ctl";
    if (auto w = t->write_lines(ctl, {line}); !w) {
      complain("kill", fmt::format("{}: {}", t->name(ctl), w.error()));
      status = 1;
    }
  }
  return status;
}

// Prints rows as columns separated by two blanks; the last column is not padded.
void print_table(const std::vector<std::vector<std::string>>& rows) {
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

int do_jobs(const job_options& o) {
  auto t = open_tree("jobs", o.conn);
  if (!t) return 1;
  auto names = t->list("jobs");
  if (!names) {
    complain("jobs", fmt::format("{}: {}", t->name("jobs"), names.error()));
    return 1;
  }
  std::vector<std::uint64_t> ids;
  for (const auto& n : *names) {
    if (auto id = job_id(n)) ids.push_back(*id);
  }
  std::ranges::sort(ids);
  std::vector<std::vector<std::string>> rows{{"ID", "OWNER", "STATE", "NODE", "EXIT", "NAME", "NOTE"}};
  for (auto id : ids) {
    auto s = t->read(fmt::format("jobs/{}/status", id));
    if (!s) continue;  // removed meanwhile
    auto kv = parse_status(*s);
    rows.push_back({std::to_string(id), kv["owner"], kv["state"], kv["node"], kv["exit"], kv["name"], kv["note"]});
  }
  print_table(rows);
  return 0;
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
                  "the scheduler's dial string (default: $GALAXY_ADDR, else the cluster galaxy up started, "
                  "else tcp!127.0.0.1!5641)");
  sub->add_option("-m,--mount", o.conn.mount, "use the tree mounted here instead of dialing");
  sub->add_option("-u,--user", o.conn.uname, "the user name to attach as (default: $USER)");
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
  sub->add_option("command", o.command, "the command and its arguments, after --");
}

}  // namespace

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

void add_job_commands(CLI::App& app, int& status) {
  auto o = std::make_shared<job_options>();
  int* st = &status;

  auto* run = app.add_subcommand("run", "submit a job, stream its output, and exit as it did (like srun)");
  add_conn(run, *o);
  add_spec(run, *o);
  run->add_flag("-q,--quiet", o->quiet, "do not print the job's number on standard error");
  run->callback([o, st] { *st = do_run(*o); });

  auto* submit = app.add_subcommand("submit", "submit a job and print its number (like sbatch)");
  add_conn(submit, *o);
  add_spec(submit, *o);
  submit->add_option("--array", o->array, "make N tasks, jobs/J/0..N-1, with $GALAXY_INDEX (like sbatch --array)");
  submit->add_flag("--speculate", o->speculate, "let a straggling task get a backup copy on another node");
  submit->callback([o, st] { *st = do_submit(*o); });

  auto* jobs = app.add_subcommand("jobs", "list the jobs: id, owner, state, node, exit, name, note");
  add_conn(jobs, *o);
  jobs->callback([o, st] { *st = do_jobs(*o); });

  auto* nodes = app.add_subcommand("nodes", "list the nodes that are up: state, CPUs, memory, load, labels");
  add_conn(nodes, *o);
  nodes->callback([o, st] { *st = do_nodes(*o); });

  auto* kill = app.add_subcommand("kill", "kill jobs (writes kill to jobs/J/ctl)");
  add_conn(kill, *o);
  kill->add_option("-s,--signal", o->signal, "the signal (default KILL)");
  kill->add_option("job", o->ids, "job numbers")->required();
  kill->callback([o, st] { *st = do_kill(*o); });

  auto* wait = app.add_subcommand("wait", "wait for jobs to end; print how; exit as the first that failed");
  add_conn(wait, *o);
  wait->add_option("job", o->ids, "job numbers")->required();
  wait->callback([o, st] { *st = do_wait(*o); });
}

}  // namespace ctl
