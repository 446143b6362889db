// galaxy-sched's core (see sched/scheduler.hpp).
//
// Arrangement: jobs_ holds every job the scheduler knows (new ones only in memory, the
// rest mirrored in the store); by_task_ finds a job from a node's (name, task id), which
// is how node events name it; used_ is what each node has given to jobs. Every state
// change goes through save() (the store, group-committed) and changed() (the tree wakes
// its readers). Node I/O is asynchronous through node_link::batch; copying results runs
// on pool_ with the client's blocking calls.
#include "sched/scheduler.hpp"

#include <asio/post.hpp>
#include <fmt/format.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <csignal>
#include <fstream>

#include "ctl/ctlmsg.hpp"
#include "ctl/join.hpp"
#include "ctl/verbs.hpp"
#include "sched/results.hpp"
#include "srv9p/dial.hpp"
#include "srv9p/errors.hpp"

namespace sched {

namespace fs = std::filesystem;
using done_fn = std::function<void(std::expected<void, std::string>)>;

namespace {

std::unexpected<std::string> fail(std::string s) { return std::unexpected(std::move(s)); }

// Streams the node's file path into a new file name below dir (sched/results.hpp), as
// much of it as budget allows: a file longer than that keeps its first bytes_left()
// bytes and the budget is over. length is what the node's directory said of the file
// (0 when it did not say): a file known not to fit is not read past the limit, and none
// of it is read when nothing is left. Blocking.
std::expected<void, std::string> copy_file(fsclient::client& c, std::uint32_t root, const std::string& path, int dir,
                                           const std::string& name, result_budget& budget, std::uint64_t length = 0) {
  if (!budget.take_file()) return {};
  if (length > 0 && budget.bytes_left() == 0) {
    budget.bytes_over();
    return {};
  }
  auto fd = create_result_file(dir, name);
  if (!fd) return fail(fd.error());
  std::expected<void, std::string> written;
  auto ok = c.stream_file(root, path, [&](std::string_view piece) {
    // The node's stated length is not trusted: what arrives is counted.
    bool cut = piece.size() > budget.bytes_left();
    if (cut) piece = piece.substr(0, budget.bytes_left());
    written = write_all(*fd, piece);
    budget.spend(piece.size());
    if (cut) budget.bytes_over();
    return written.has_value() && !cut;
  });
  ::close(*fd);
  if (!written) return fail(fmt::format("writing {}: {}", name, written.error()));
  if (!ok) return fail(ok.error());
  return {};
}

// The entries of the node's directory path, at most max of them (reading stops there,
// so a directory of a million entries costs no more memory than max). Blocking.
std::expected<std::vector<srv9p::dir>, std::string> list_dir_upto(fsclient::client& c, std::uint32_t root,
                                                                  const std::string& path, std::uint64_t max) {
  std::vector<srv9p::dir> out;
  std::string bad;
  auto ok = c.stream_file(root, path, [&](std::string_view piece) {
    auto ds = srv9p::decode_dirs(std::span(reinterpret_cast<const std::uint8_t*>(piece.data()), piece.size()));
    if (!ds) {
      bad = ds.error();
      return false;
    }
    for (auto& d : *ds) {
      if (out.size() >= max) return false;
      out.push_back(std::move(d));
    }
    return out.size() < max;
  });
  if (!ok) return fail(ok.error());
  if (!bad.empty()) return fail(fmt::format("directory {} from node: {}", path, bad));
  return out;
}

// Copies a node directory (task/N/out) into dir, depth directories deep at most, while
// budget allows (each directory is one of its files). Every name the node gives is
// checked before it is used, here and on the node (a name "../x" would also walk
// elsewhere there). Blocking.
std::expected<void, std::string> copy_dir(fsclient::client& c, std::uint32_t root, const std::string& path, int dir,
                                          int depth, result_budget& budget, std::uint64_t max_files) {
  if (depth > max_result_depth) return fail(fmt::format("more than {} directories deep", max_result_depth));
  // One entry more than the budget's files can show that the limit is passed.
  auto entries = list_dir_upto(c, root, path, max_files + 1);
  if (!entries) return fail(entries.error());
  for (const auto& d : *entries) {
    if (budget.over()) return {};
    if (auto ok = check_name(d.name); !ok) return ok;
    std::string child = path + "/" + d.name;
    if (d.mode & srv9p::dmdir) {
      if (!budget.take_file()) return {};
      auto sub = open_result_dir(dir, d.name);
      if (!sub) return fail(sub.error());
      if (auto ok = copy_dir(c, root, child, sub->get(), depth + 1, budget, max_files); !ok) return ok;
      continue;
    }
    if (auto ok = copy_file(c, root, child, dir, d.name, budget, d.length); !ok) return ok;
  }
  return {};
}

// Copies a finished task's stdout, stderr and out/ from its node into the job's result
// directory jobs/J below the state directory (jobs is that fd), within limits. Blocking
// (a pool thread). Attaches as the job's owner, who owns the task's files on the node.
// Returns the job's note: "" when everything was copied, budget.note() when the limits
// stopped the copy. Errors: why a file could not be copied.
std::expected<std::string, std::string> copy_results(fsclient::client& c, const std::string& owner,
                                                     std::uint64_t task, int jobs, std::uint64_t id,
                                                     result_limits limits) {
  auto dest = open_result_dir(jobs, std::to_string(id));
  if (!dest) return fail(dest.error());
  auto root = c.attach(owner);
  if (!root) return fail("attach: " + root.error());
  result_budget budget(limits);
  std::expected<void, std::string> result;
  for (const char* name : {"stdout", "stderr"}) {
    if (auto ok = copy_file(c, *root, fmt::format("task/{}/{}", task, name), dest->get(), name, budget); !ok) {
      result = fail(fmt::format("{}: {}", name, ok.error()));
    }
  }
  if (result && !budget.over()) {
    auto out = open_result_dir(dest->get(), "out");
    if (!out) {
      result = fail("out: " + out.error());
    } else if (auto ok = copy_dir(c, *root, fmt::format("task/{}/out", task), out->get(), 1, budget, limits.max_files);
               !ok) {
      result = fail("out: " + ok.error());
    }
  }
  (void)c.clunk(*root);
  if (!result) return fail(result.error());
  return budget.note();
}

// A start on a node, as one batch: clone a task, read its number, write its spec (ending
// in exec) to the clone file, which is the task's ctl. Replies: [2] is the number, [3] the
// spec's acceptance.
std::vector<srv9p::message> start_messages(node_conn& c, std::uint32_t root, const std::string& spec) {
  std::uint32_t f = c.client().alloc_fid();
  return {srv9p::twalk{root, f, {"task", "clone"}}, srv9p::topen{f, srv9p::ordwr}, srv9p::tread{f, 0, 64},
          srv9p::twrite{f, 0, spec}, srv9p::tclunk{f}};
}

job_state state_of_wait(std::string_view wait, bool kill_requested) {
  if (wait == "exit 0") return job_state::done;
  if (wait.starts_with("signal")) return kill_requested ? job_state::killed : job_state::failed;
  return job_state::failed;
}

policy::outcome outcome_of(job_state s) {
  return s == job_state::done ? policy::outcome::done
         : s == job_state::killed ? policy::outcome::killed
                                  : policy::outcome::failed;
}

// `array N` takes 1 .. this many tasks (Slurm's MaxArraySize defaults to 1001).
constexpr std::int64_t max_array_tasks = 10000;

// The one read collect() makes of each result file: output shorter than this comes back
// in the batch; longer output is streamed by copy_in_pool.
constexpr std::uint32_t small_result_bytes = 64 * 1024;

}  // namespace

// sched/scheduler.hpp. The line is a node's answer, so nothing in it is trusted.
void take_usage(std::string_view line, job_record& rec) {
  auto field = [line](std::string_view key) -> std::uint64_t {
    for (std::size_t pos = 0; pos < line.size();) {
      auto end = line.find_first_of(" \n", pos);
      if (end == std::string_view::npos) end = line.size();
      auto word = line.substr(pos, end - pos);
      if (word.size() > key.size() && word.starts_with(key) && word[key.size()] == '=') {
        auto digits = word.substr(key.size() + 1);
        std::uint64_t v = 0;
        if (digits.empty() || digits.size() > 18) return 0;
        auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
        return ec == std::errc{} && p == digits.data() + digits.size() ? v : 0;
      }
      pos = end + 1;
    }
    return 0;
  };
  rec.user_ms = field("usertime");
  rec.sys_ms = field("systime");
  rec.maxrss_bytes = field("maxrss");
}

// ---- Life ------------------------------------------------------------------------------

scheduler::scheduler(asio::io_context& io, sched_options opts, hooks h)
    : io_(io), opts_(std::move(opts)), admin_(opts_.admins.empty() ? "root" : opts_.admins.front()),
      hooks_(std::move(h)), pool_(opts_.copy_threads), sweep_timer_(io), backoff_timer_(io), tick_timer_(io) {}

bool scheduler::is_admin(std::string_view uname) const {
  return uname == "root" || std::find(opts_.admins.begin(), opts_.admins.end(), uname) != opts_.admins.end();
}

scheduler::~scheduler() {
  stop();
  pool_.join();
  if (lock_fd_ >= 0) ::close(lock_fd_);
  if (jobs_fd_ >= 0) ::close(jobs_fd_);
}

std::expected<std::unique_ptr<scheduler>, std::string> scheduler::create(asio::io_context& io, sched_options opts,
                                                                         hooks h) {
  // The state is the daemon's alone (every job's spec and environment, every result): the
  // directory and jobs/ are 0700 (made so if they were not), the files in them 0600.
  std::error_code ec;
  fs::create_directories(opts.state.parent_path().empty() ? fs::path(".") : opts.state.parent_path(), ec);
  ec.clear();
  auto state = open_result_dir(AT_FDCWD, opts.state.string());
  if (!state) return fail(fmt::format("state directory {}: {}", opts.state.string(), state.error()));
  auto jobs_dir = open_result_dir(state->get(), "jobs");
  if (!jobs_dir) return fail(fmt::format("state directory {}: {}", opts.state.string(), jobs_dir.error()));
  std::unique_ptr<scheduler> s(new scheduler(io, std::move(opts), std::move(h)));
  s->jobs_fd_ = jobs_dir->release();
  // One scheduler per state directory: a second one would run every job again.
  auto lock_path = s->opts_.state / "lock";
  s->lock_fd_ = ::openat(state->get(), "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (s->lock_fd_ < 0 || ::flock(s->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return fail(fmt::format("state directory {} is in use by another galaxy-sched (lock {})", s->opts_.state.string(),
                            lock_path.string()));
  }
  auto store = job_store::open(s->opts_.state / "sched.db");
  if (!store) return fail(store.error());
  // SQLite makes its files with the process's umask (galaxy-sched's main sets 077) and the
  // -wal and -shm files with the database's mode; this closes files made before that.
  for (const char* name : {"lock", "sched.db", "sched.db-wal", "sched.db-shm"}) {
    struct ::stat st{};
    if (::fstatat(state->get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
      (void)::fchmodat(state->get(), name, st.st_mode & 0700, 0);
    }
  }
  s->store_ = std::move(*store);
  s->next_id_ = s->store_->max_job_id() + 1;

  auto jobs = s->store_->load_jobs();
  if (!jobs) return fail(jobs.error());
  for (auto& rec : *jobs) {
    auto j = std::make_unique<job>();
    j->rec = std::move(rec);
    std::string spec = j->rec.spec;
    for (std::size_t start = 0; start < spec.size();) {
      auto nl = spec.find('\n', start);
      std::string_view line(spec.data() + start, (nl == std::string::npos ? spec.size() : nl) - start);
      if (auto ok = s->apply_spec_line(*j, line, true); !ok) {
        s->log(fmt::format("job {}: stored spec line '{}': {}", j->rec.id, line, ok.error()));
      }
      start = nl == std::string::npos ? spec.size() : nl + 1;
    }
    j->collected = is_final(j->rec.state);
    // Jobs that were running, or being started, are checked against their node (an array
    // job runs nowhere itself: its tasks do).
    if (j->array_size == 0 &&
        (j->rec.state == job_state::running || (j->rec.state == job_state::queued && !j->rec.node.empty()))) {
      j->reconcile = true;
    }
    s->jobs_.emplace(j->rec.id, std::move(j));
  }
  // An array's tasks are stored before the array job itself (submit_array), so a task
  // whose array job is not stored was never acknowledged: it is dropped.
  for (auto it = s->jobs_.begin(); it != s->jobs_.end();) {
    job& t = *it->second;
    job* a = t.rec.array != 0 ? s->find(t.rec.array) : nullptr;
    if (t.rec.array != 0 && (a == nullptr || t.rec.index >= a->array_size)) {
      s->log(fmt::format("job {}: task {} of array job {}, which was never stored: dropped", t.rec.id, t.rec.index,
                         t.rec.array));
      s->store_->remove(t.rec.id, nullptr);
      it = s->jobs_.erase(it);
      continue;
    }
    if (a != nullptr) {
      a->tasks.resize(a->array_size, 0);
      a->tasks[t.rec.index] = t.rec.id;
    }
    ++it;
  }
  auto quotas = s->store_->load_quotas();
  if (!quotas) return fail(quotas.error());
  for (auto& q : *quotas) {
    s->quotas_[q.user] = q;
    (void)s->policy_.set_quota(q.user, {q.cpu_millis ? q.cpu_millis : policy::unlimited,
                                        q.mem_bytes ? q.mem_bytes : policy::unlimited});
    (void)s->policy_.set_weight(q.user, q.weight);
  }

  auto cut_offs = s->store_->load_cut_offs();
  if (!cut_offs) return fail(cut_offs.error());
  for (auto& c : *cut_offs) {
    cut_off_key key{c.node, c.task, c.job};
    s->cut_off_[key].rec = std::move(c);
  }

  auto nodes = s->store_->load_nodes();
  if (!nodes) return fail(nodes.error());
  for (const auto& [name, dial] : s->opts_.nodes) {
    if (!valid_node_name(name)) return fail(fmt::format("--node: bad node name '{}'", name));
    if (auto d = srv9p::parse_dial(dial); !d) return fail(fmt::format("--node {}: {}", name, d.error()));
    s->links_[name] = s->make_link(name, dial);
  }
  for (const auto& n : *nodes) {
    if (s->links_.contains(n.name)) continue;
    if (n.join_uid >= 0) {
      // A joined node: known, down until it joins again (sched/membership.cpp).
      s->join_uids_[n.name] = static_cast<uid_t>(n.join_uid);
      s->links_[n.name] = std::make_shared<node_link>(io, n.name, std::unique_ptr<fsclient::client>{},
                                                      s->link_options_for(n.name), s->link_hooks(n.name));
    } else {
      s->links_[n.name] = s->make_link(n.name, n.dial);
    }
  }
  return s;
}

void scheduler::start() {
  started_ms_ = now_ms();
  for (auto& [name, l] : links_) l->start();
  sweep();
  // Jobs waiting for a node that is not configured any more are lost now.
  for (auto& [id, j] : jobs_) {
    if (j->reconcile && !links_.contains(j->rec.node)) lost(*j, "node " + j->rec.node + " is not configured");
  }
  // Copies cut off on a node that is not configured any more cannot come back.
  std::vector<cut_off_key> gone;
  for (const auto& [key, c] : cut_off_) {
    if (!links_.contains(c.rec.node)) gone.push_back(key);
  }
  for (const auto& key : gone) forget_cut_off(key);
  open_gate();
  // An array whose last task ended just before a crash may not have stored its own end.
  for (auto& [id, j] : jobs_) {
    if (!j->tasks.empty() && !is_final(j->rec.state)) array_changed(id);
  }
  tick();
}

void scheduler::stop() {
  if (stopped_) return;
  stopped_ = true;
  sweep_timer_.cancel();
  backoff_timer_.cancel();
  tick_timer_.cancel();
  for (auto& [name, l] : links_) l->stop();
  if (store_) store_->flush();
}

void scheduler::log(std::string_view line) const {
  if (opts_.log) opts_.log(line);
}

void scheduler::post_event(std::string line) {
  if (hooks_.event) hooks_.event(std::move(line));
}

void scheduler::changed(job& j) {
  if (hooks_.changed) hooks_.changed(j);
}

void scheduler::save(job& j) {
  store_->put(j.rec, [this, id = j.rec.id](std::expected<void, std::string> ok) {
    if (!ok) asio::post(io_, [this, id, e = ok.error()] { log(fmt::format("storing job {}: {}", id, e)); });
  });
}

void scheduler::tick() {
  // Reservations and speculation depend on time passing, not only on events.
  retry_cut_offs();
  expire_holds();
  schedule();
  tick_timer_.expires_after(std::chrono::seconds(1));
  tick_timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec && !stopped_) tick();
  });
}

void scheduler::sweep() {
  std::int64_t now = now_ms();
  std::vector<std::uint64_t> drop;
  for (const auto& [id, j] : jobs_) {
    if (j->rec.state == job_state::new_ && now - j->created_ms > opts_.new_job_timeout_ms) drop.push_back(id);
  }
  for (auto id : drop) {
    auto& j = *jobs_[id];
    j.rec.state = job_state::killed;  // readers see the job go
    changed(j);
    jobs_.erase(id);
  }
  sweep_timer_.expires_after(std::chrono::seconds(5));
  sweep_timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec && !stopped_) sweep();
  });
}

// ---- Nodes -----------------------------------------------------------------------------
// Links, adding and removing nodes: sched/membership.cpp.

std::expected<void, std::string> scheduler::drain(const std::string& name, bool on) {
  if (!links_.contains(name)) return fail(fmt::format("no node {}", name));
  if (on) {
    drained_.insert(name);
  } else {
    drained_.erase(name);
    schedule();
  }
  update_node(name);
  post_event(fmt::format("{} {}", on ? "drain" : "undrain", name));
  return {};
}

void scheduler::node_event(const std::string& name, const std::string& line) {
  // The node's events (galaxy-node(4)): "exit ID CODE", "signal ID SIG", "error ID TEXT",
  // "lost ID"; start, drain and undrain need nothing here.
  auto sp = line.find(' ');
  if (sp == std::string::npos) return;
  std::string_view verb(line.data(), sp);
  std::string_view rest(line.data() + sp + 1, line.size() - sp - 1);
  auto sp2 = rest.find(' ');
  auto id = ctl::parse_u64(rest.substr(0, sp2));
  if (!id) return;
  std::string arg = sp2 == std::string_view::npos ? "" : std::string(rest.substr(sp2 + 1));
  if (verb == "exit") return task_ended(name, *id, "exit " + arg);
  if (verb == "signal") return task_ended(name, *id, "signal " + arg);
  if (verb == "error") return task_ended(name, *id, "error " + arg);
  if (verb == "lost") return task_ended(name, *id, "lost");
}

scheduler::usage scheduler::node_used(const std::string& node) const {
  auto it = used_.find(node);
  return it == used_.end() ? usage{} : it->second;
}

std::int64_t scheduler::node_cpu_capacity(const node_link& n) const {
  return static_cast<std::int64_t>(n.info().ncpu) * 1000 * n.info().share_pct / 100;
}

// ---- Jobs: ctl -------------------------------------------------------------------------

job& scheduler::create_job(const std::string& owner) {
  auto j = std::make_unique<job>();
  j->rec.id = next_id_++;
  j->rec.owner = owner;
  j->created_ms = now_ms();
  auto& ref = *j;
  jobs_.emplace(ref.rec.id, std::move(j));
  return ref;
}

job* scheduler::find(std::uint64_t id) {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second.get();
}

std::expected<void, std::string> scheduler::apply_spec_line(job& j, std::string_view line, bool replay) {
  auto cmd = ctl::parse(line, ctl::job_verbs);
  if (!cmd) return fail(cmd.error());
  using v = ctl::job_verb;
  const auto& a = cmd->args;
  // The line as stored and sent: the words requoted, so a replay parses the same.
  std::vector<std::string> words{std::string(cmd->name)};
  words.insert(words.end(), a.begin(), a.end());
  std::string canonical = ctl::join(words);
  // Every check comes before the first change to j (job_ctl relies on it).
  if (!replay) {
    if (canonical.size() > ctl::line_buffer::max_line) {
      return fail(fmt::format("'{}' is longer than {} bytes once quoted", cmd->name, ctl::line_buffer::max_line));
    }
    if (j.rec.spec.size() + canonical.size() + 1 > max_spec_bytes) {
      return fail(fmt::format("job {}: spec longer than {} bytes", j.rec.id, max_spec_bytes));
    }
  }
  switch (static_cast<v>(cmd->verb)) {
    case v::exec:
      j.argv = a;
      break;
    case v::dir:
      if (a[0].empty() || a[0][0] != '/') return fail(fmt::format("bad dir '{}': expected an absolute path", a[0]));
      j.task_lines.push_back(canonical);
      break;
    case v::env:
      for (const auto& kv : a) {
        auto p = ctl::parse_kv(kv);
        if (!p) return fail(p.error());
        if (p->first.starts_with("GALAXY_")) return fail(fmt::format("env {}: GALAXY_ names are the scheduler's", p->first));
      }
      if (!replay && j.env_vars + a.size() > max_env_vars) {
        return fail(fmt::format("job {}: more than {} env variables", j.rec.id, max_env_vars));
      }
      j.env_vars += a.size();
      j.task_lines.push_back(canonical);
      break;
    case v::cpu: {
      auto n = ctl::parse_cpu_millis(a[0]);
      if (!n) return fail(n.error());
      j.cpu_millis = *n;
      j.task_lines.push_back(canonical);
      break;
    }
    case v::mem: {
      auto n = ctl::parse_bytes(a[0]);
      if (!n) return fail(n.error());
      j.mem_bytes = *n;
      j.task_lines.push_back(canonical);
      break;
    }
    case v::time: {
      auto n = ctl::parse_seconds_ms(a[0]);
      if (!n) return fail(n.error());
      j.task_lines.push_back(canonical);
      break;
    }
    case v::nice: {
      auto n = ctl::parse_int(a[0], 0, 19, "nice");
      if (!n) return fail(n.error());
      j.task_lines.push_back(canonical);
      break;
    }
    case v::need: {
      std::vector<std::pair<std::string, std::string>> add;
      for (const auto& kv : a) {
        auto p = ctl::parse_kv(kv);
        if (!p) return fail(fmt::format("bad need '{}': expected KEY=VALUE", kv));
        add.push_back(*p);
      }
      j.needs.insert(j.needs.end(), add.begin(), add.end());
      break;
    }
    case v::after: {
      std::vector<std::uint64_t> ids;
      for (const auto& s : a) {
        auto n = ctl::parse_u64(s);
        if (!n || *n == 0) return fail(fmt::format("bad after '{}': expected job numbers", s));
        if (!replay) {
          if (*n == j.rec.id) return fail(fmt::format("after: {} is this job", *n));
          if (find(*n) == nullptr) return fail(fmt::format("after: no job {}", *n));
          // A cycle through new jobs that name each other: search the predecessors of n.
          std::vector<std::uint64_t> todo{*n};
          std::set<std::uint64_t> seen;
          while (!todo.empty()) {
            auto cur = todo.back();
            todo.pop_back();
            if (!seen.insert(cur).second) continue;
            job* p = find(cur);
            if (p == nullptr) continue;
            for (auto q : p->rec.after) {
              if (q == j.rec.id) return fail(fmt::format("after: {} would make a cycle", *n));
              todo.push_back(q);
            }
          }
        }
        ids.push_back(*n);
      }
      j.rec.after.insert(j.rec.after.end(), ids.begin(), ids.end());
      break;
    }
    case v::priority: {
      auto n = ctl::parse_int(a[0], -1000000, 1000000, "priority");
      if (!n) return fail(n.error());
      j.rec.priority = static_cast<int>(*n);
      break;
    }
    case v::retries: {
      auto n = ctl::parse_int(a[0], 0, 100, "retries");
      if (!n) return fail(n.error());
      j.rec.retries = static_cast<int>(*n);
      break;
    }
    case v::preemptible:
      j.rec.preemptible = true;
      break;
    case v::name:
      j.rec.name = a[0];
      break;
    case v::array: {
      auto n = ctl::parse_int(a[0], 1, max_array_tasks, "array");
      if (!n) return fail(n.error());
      j.array_size = static_cast<std::uint32_t>(*n);
      break;
    }
    case v::speculate:
      j.speculate = true;
      break;
    case v::queue_anyway:
      j.queue_anyway = true;
      break;
    case v::kill:
    case v::rm:
      return fail(fmt::format("'{}' is not part of a job's spec", cmd->name));
  }
  if (!replay) j.rec.spec += canonical + "\n";
  return {};
}

void scheduler::job_ctl(job& j, std::string line, std::string_view uname, done_fn done) {
  // The tree let only the owner and the admins open the ctl; this says it again for every
  // other way in (rm of jobs/N, priority on /ctl).
  if (uname != j.rec.owner && !is_admin(uname)) return done(fail(std::string(srv9p::err::perm)));
  auto cmd = ctl::parse(line, ctl::job_verbs);
  if (!cmd) return done(fail(cmd.error()));
  using v = ctl::job_verb;
  auto verb = static_cast<v>(cmd->verb);
  if (verb == v::kill) {
    int sig = SIGKILL;
    if (!cmd->args.empty()) {
      auto s = ctl::parse_signal(cmd->args[0]);
      if (!s) return done(fail(s.error()));
      sig = *s;
    }
    return kill_job(j, sig, std::move(done));
  }
  if (verb == v::rm) return forget_job(j, std::move(done));
  if (verb == v::priority && (j.rec.state == job_state::queued || (!j.tasks.empty() && !is_final(j.rec.state)))) {
    // A queued job's priority may still change (as `priority JOB N` on /ctl); an array's
    // changes for its tasks still queued.
    auto n = ctl::parse_int(cmd->args[0], -1000000, 1000000, "priority");
    if (!n) return done(fail(n.error()));
    std::vector<job*> which{&j};
    for (auto id : j.tasks) {
      job* t = find(id);
      if (t != nullptr && t->rec.state == job_state::queued) which.push_back(t);
    }
    for (job* t : which) {
      t->rec.priority = static_cast<int>(*n);
      if (in_policy_.contains(t->rec.id) && !t->starting && !t->reconcile) {
        // Moves it in its user's queue at once (a job starting meanwhile keeps its place).
        if (auto ok = policy_.set_priority(t->rec.id, t->rec.priority); !ok) {
          log(fmt::format("job {}: policy: {}", t->rec.id, ok.error()));
        }
      }
      save(*t);
      changed(*t);
    }
    schedule();
    return done({});
  }
  if (j.rec.state != job_state::new_) {
    return done(fail(fmt::format("job {} already submitted: '{}' must come before exec", j.rec.id, cmd->name)));
  }
  // A bad line changes nothing: apply_spec_line changes j only when it succeeds (no copy
  // of the job to roll back to, which would cost the whole spec per line).
  if (auto ok = apply_spec_line(j, line, false); !ok) return done(ok);
  if (verb == v::exec) return submit(j, std::move(done));
  done({});
}

void scheduler::submit(job& j, done_fn done) {
  // A refused exec leaves the job new, as before the exec line.
  auto refuse = [&j, &done](std::string why) {
    j.argv.clear();
    auto nl = j.rec.spec.rfind("exec ");
    if (nl != std::string::npos) j.rec.spec.erase(nl);
    return done(fail(std::move(why)));
  };
  // after names jobs that are submitted (the policy orders only what it holds), as
  // Slurm's --dependency names existing jobs.
  for (auto dep : j.rec.after) {
    job* p = find(dep);
    if (p != nullptr && p->rec.state == job_state::new_) {
      return refuse(fmt::format("after: job {} has not been submitted (no exec yet)", dep));
    }
  }
  // What can never run is refused here, as sbatch refuses a job no partition can hold,
  // unless the job asked to wait for nodes that come later (Slurm's dynamic nodes).
  if (!j.queue_anyway) {
    // Short: an Rerror is cut at 127 bytes (srv9p::errmax).
    if (auto why = cannot_run(j)) return refuse("cannot run: " + *why);
  }
  if (j.array_size > 0) return submit_array(j, std::move(done));
  j.rec.state = job_state::queued;
  j.rec.submitted_ms = now_ms();
  j.starting = true;  // not placeable until durable
  store_->put(j.rec, [this, id = j.rec.id, done = std::move(done)](std::expected<void, std::string> ok) {
    asio::post(io_, [this, id, done, ok] {
      job* j = find(id);
      if (j == nullptr) return done(fail("job removed"));
      j->starting = false;
      if (!ok) {
        j->rec.state = job_state::new_;
        return done(fail("storing the job: " + ok.error()));
      }
      ++submitted_total_;
      post_event(fmt::format("submit {} {}", id, ctl::quote(j->rec.owner)));
      done({});
      if (gate_open_) to_policy(*j);
      changed(*j);
      schedule();
    });
  });
}

void scheduler::submit_array(job& a, done_fn done) {
  // Slurm's --array in files: N tasks, each an ordinary job of its own (its own id, state,
  // attempts and results) that names the array job and its index; they are listed as
  // jobs/J/0..N-1 and run with $GALAXY_INDEX. The tasks are stored first and the array
  // job last, and exec is answered when the array job is durable: a restart that finds
  // tasks without their array job drops them (they were never acknowledged).
  a.rec.state = job_state::queued;
  a.rec.submitted_ms = now_ms();
  a.starting = true;  // the tasks are not placeable until durable
  std::string task_spec;  // the array's spec without `array N`
  for (std::size_t start = 0; start < a.rec.spec.size();) {
    auto nl = a.rec.spec.find('\n', start);
    std::string_view line(a.rec.spec.data() + start, (nl == std::string::npos ? a.rec.spec.size() : nl) - start);
    if (!line.starts_with("array ")) task_spec += std::string(line) + "\n";
    start = nl == std::string::npos ? a.rec.spec.size() : nl + 1;
  }
  a.tasks.clear();
  for (std::uint32_t i = 0; i < a.array_size; ++i) {
    auto t = std::make_unique<job>();
    t->rec = a.rec;
    t->rec.id = next_id_++;
    t->rec.spec = task_spec;
    t->rec.array = a.rec.id;
    t->rec.index = i;
    t->task_lines = a.task_lines;
    t->argv = a.argv;
    t->cpu_millis = a.cpu_millis;
    t->mem_bytes = a.mem_bytes;
    t->needs = a.needs;
    t->speculate = a.speculate;
    t->created_ms = a.created_ms;
    t->starting = true;
    a.tasks.push_back(t->rec.id);
    store_->put(t->rec, nullptr);
    jobs_.emplace(t->rec.id, std::move(t));
  }
  store_->put(a.rec, [this, id = a.rec.id, done = std::move(done)](std::expected<void, std::string> ok) {
    asio::post(io_, [this, id, done, ok] {
      job* a = find(id);
      if (a == nullptr) return done(fail("job removed"));
      a->starting = false;
      if (!ok) {
        for (auto t : a->tasks) {
          store_->remove(t, nullptr);
          jobs_.erase(t);
        }
        a->tasks.clear();
        a->rec.state = job_state::new_;
        a->argv.clear();
        if (auto nl = a->rec.spec.rfind("exec "); nl != std::string::npos) a->rec.spec.erase(nl);
        return done(fail("storing the job: " + ok.error()));
      }
      submitted_total_ += a->tasks.size();
      post_event(fmt::format("submit {} {} array={}", id, ctl::quote(a->rec.owner), a->tasks.size()));
      done({});
      for (auto t : a->tasks) {
        job* tj = find(t);
        if (tj == nullptr) continue;
        tj->starting = false;
        if (gate_open_) to_policy(*tj);
        changed(*tj);
      }
      changed(*a);
      schedule();
    });
  });
}

void scheduler::array_changed(std::uint64_t array_id) {
  job* a = find(array_id);
  if (a == nullptr || is_final(a->rec.state) || a->tasks.empty()) return;
  int ended = 0, done = 0, failed = 0, killed = 0;
  bool started = false;
  for (auto id : a->tasks) {
    job* t = find(id);
    if (t == nullptr) continue;
    if (is_final(t->rec.state)) {
      ++ended;
      done += t->rec.state == job_state::done;
      failed += t->rec.state == job_state::failed;
      killed += t->rec.state == job_state::killed;
    }
    started = started || t->rec.attempts > 0 || t->rec.state == job_state::running || is_final(t->rec.state);
  }
  int n = static_cast<int>(a->tasks.size());
  if (ended == n) {
    // As Slurm's array: done when every task succeeded; failed when one failed; killed
    // when the others were killed.
    if (failed > 0) {
      return finish(*a, job_state::failed, fmt::format("error {} of {} tasks failed", failed, n),
                    fmt::format("{} of {} tasks failed", failed, n));
    }
    if (killed > 0) return finish(*a, job_state::killed, "killed", fmt::format("{} of {} tasks killed", killed, n));
    return finish(*a, job_state::done, "exit 0", "");
  }
  if (started && a->rec.state == job_state::queued) {
    a->rec.state = job_state::running;
    a->rec.started_ms = now_ms();
    save(*a);
    changed(*a);
  }
}

void scheduler::kill_job(job& j, int sig, done_fn done) {
  if (is_final(j.rec.state) || j.collecting) return done(fail(fmt::format("job {} has ended", j.rec.id)));
  if (!j.tasks.empty()) {
    // An array: every task that has not ended; the array ends with the last of them.
    for (auto id : std::vector<std::uint64_t>(j.tasks)) {
      job* t = find(id);
      if (t != nullptr && !is_final(t->rec.state) && !t->collecting) kill_job(*t, sig, [](std::expected<void, std::string>) {});
    }
    return done({});
  }
  if (j.rec.state == job_state::new_ || (j.rec.state == job_state::queued && !j.starting && !j.reconcile)) {
    finish(j, job_state::killed, "killed", "killed before it ran");
    return done({});
  }
  if (j.held_until) {
    // Its node is down (sched/reconcile.cpp, "Held"): the job ends now, and its copy there
    // is remembered, to be killed when the node returns (settle_cut_off).
    std::string node = j.rec.node;
    end_hold(j);
    remember_cut_off(j, node, j.rec.task,
                     j.rec.state == job_state::running ? j.rec.attempts : j.rec.attempts + 1);
    finish(j, job_state::killed, "killed",
           fmt::format("killed while its node {} was down; its copy there is killed when the node returns", node));
    return done({});
  }
  j.kill_requested = true;
  j.kill_signal = sig;
  if (j.rec.state != job_state::running || j.rec.task == 0) return done({});  // sent once started
  node_link* n = find_node(j.rec.node);
  if (n == nullptr) return done(fail("node " + j.rec.node + " is gone"));
  std::uint64_t task = j.rec.task;
  n->batch(j.rec.owner,
           [task, sig](node_conn& c, std::uint32_t root) {
             std::uint32_t f = c.client().alloc_fid();
             return std::vector<srv9p::message>{
                 srv9p::twalk{root, f, {"task", std::to_string(task), "ctl"}},
                 srv9p::topen{f, srv9p::owrite},
                 srv9p::twrite{f, 0, fmt::format("kill {}\n", sig)},
                 srv9p::tclunk{f},
             };
           },
           [done](node_link::replies r) {
             for (auto& x : r) {
               if (!x) return done(fail(x.error()));
             }
             done({});
           });
}

void scheduler::forget_job(job& j, done_fn done) {
  if (!is_final(j.rec.state) && j.rec.state != job_state::new_) {
    return done(fail(fmt::format("job {} has not ended: kill it first", j.rec.id)));
  }
  if (j.rec.array != 0 && find(j.rec.array) != nullptr) {
    return done(fail(fmt::format("job {} is task {} of array job {}: remove the array job", j.rec.id, j.rec.index,
                                 j.rec.array)));
  }
  // The node's copy goes too (its task directory and spooled output): the scheduler
  // has its results in its own spool.
  auto rm_copy = [this](const job& x) {
    if (x.rec.task != 0 && !x.rec.node.empty()) rm_task(x.rec.node, x.rec.owner, x.rec.task);
  };
  for (auto t : j.tasks) {  // an array's tasks go with it; all have ended
    if (in_policy_.erase(t) > 0) policy_.forget(t);
    if (job* tj = find(t)) {
      rm_copy(*tj);
      changed(*tj);
      jobs_.erase(t);
    }
    std::error_code ec;
    fs::remove_all(spool(t), ec);
    store_->remove(t, nullptr);
  }
  rm_copy(j);
  std::uint64_t id = j.rec.id;
  if (in_policy_.erase(id) > 0) policy_.forget(id);
  awaited_.erase(id);
  j.rec.state = job_state::killed;
  changed(j);
  jobs_.erase(id);
  std::error_code ec;
  fs::remove_all(spool(id), ec);
  store_->remove(id, [this, done](std::expected<void, std::string> ok) { asio::post(io_, [done, ok] { done(ok); }); });
}

// ---- Placement and starting ------------------------------------------------------------

std::vector<const job*> scheduler::queue() const {
  // The policy's order (reserved jobs, then the DRF interleaving of the users' queues).
  std::vector<const job*> q;
  for (auto id : policy_.queue()) {
    auto it = jobs_.find(id);
    if (it != jobs_.end() && it->second->rec.state == job_state::queued) q.push_back(it->second.get());
  }
  return q;
}

void scheduler::schedule() {
  if (pass_posted_ || stopped_) return;
  pass_posted_ = true;
  asio::post(io_, [this] {
    pass_posted_ = false;
    if (!stopped_) place();
  });
}

void scheduler::place() {
  // While a returned node's cut-off copies are read, a pass could start a job that one of
  // them is about to take back (sched/reconcile.cpp).
  if (!gate_open_ || cut_off_reads_ > 0) return;
  std::int64_t now = now_ms();
  auto decisions = policy_.decide(now);
  // What one pass decided can make work for the next (a fail releases nothing, but a
  // dependent that became ready is placed by the pass after): run again until quiet.
  if (!decisions.empty()) schedule();
  for (auto& d : decisions) {
    job* j = find(d.job);
    using kind = policy::decision::kind;
    switch (d.what) {
      case kind::start: {
        node_link* n = find_node(d.node);
        if (j != nullptr && j->adopted && j->rec.node == d.node) {
          // Placed where it already runs (after a restart): nothing to start.
          j->adopted = false;
          break;
        }
        if (j == nullptr || j->rec.state != job_state::queued || n == nullptr || !n->up()) {
          // Gone meanwhile: give the room back.
          (void)policy_.finished(d.job, j == nullptr ? policy::outcome::killed : policy::outcome::lost, now, d.node);
          break;
        }
        start_on(*j, *n);
        break;
      }
      case kind::fail:
        if (j != nullptr && !is_final(j->rec.state)) {
          in_policy_.erase(d.job);  // the policy has recorded it failed
          finish(*j, job_state::failed, "error " + d.reason, d.reason);
          in_policy_.insert(d.job);
        }
        break;
      case kind::preempt:
        if (j != nullptr) preempt(*j, d.node);
        break;
      case kind::backup: {
        node_link* n = find_node(d.node);
        if (j == nullptr || j->rec.state != job_state::running || j->rec.task == 0 || j->backup || j->collecting ||
            j->kill_requested || n == nullptr || !n->up()) {
          (void)policy_.finished(d.job, policy::outcome::lost, now, d.node);  // this copy never ran
          break;
        }
        start_backup(*j, *n);
        break;
      }
    }
  }
}

void scheduler::preempt(job& j, const std::string& node) {
  // The policy has freed the room and queued the job again: kill the task and forget it,
  // so that its exit is not taken for the job's end; not a failure, not an attempt.
  if (j.backup && j.backup->node == node) return drop_backup(j, false, policy::outcome::killed, false);
  if (j.rec.node != node || (!j.holds)) return;
  if (j.backup) {
    if (j.backup->task != 0) {
      // The policy keeps the job running on its backup, which becomes the job's copy.
      promote_backup(j);
      drop_backup(j, false, policy::outcome::killed, false);
      save(j);
      return changed(j);
    }
    // A backup still starting is no copy yet: the job goes back to the queue.
    drop_backup(j, true, policy::outcome::lost, false);
  }
  std::uint64_t task = j.rec.task;
  std::string owner = j.rec.owner;
  if (task != 0) {
    by_task_.erase({node, task});
    preempted_tasks_.insert({node, task});
    kill_task(node, owner, task, SIGKILL);
  }
  release(j);
  j.starting = false;
  j.rec.state = job_state::queued;
  j.rec.node.clear();
  j.rec.task = 0;
  if (j.rec.attempts > 0) j.rec.attempts--;
  j.rec.note = "preempted on " + node + "; requeued";
  post_event(fmt::format("preempt {} {}", j.rec.id, node));
  save(j);
  changed(j);
}

void scheduler::start_on(job& j, node_link& n) {
  j.starting = true;
  j.rec.node = n.name();
  j.rec.task = 0;
  j.rec.note.clear();
  std::int64_t cpu = j.cpu_millis ? j.cpu_millis : opts_.default_cpu_millis;
  auto& u = used_[n.name()];
  u.cpu_millis += cpu;
  u.mem_bytes += static_cast<std::int64_t>(j.mem_bytes);
  u.jobs++;
  j.holds = true;
  // The start is durable before the node is asked: a scheduler that dies in between
  // looks for the task on this node (GALAXY_JOB marker) instead of running it twice.
  std::uint64_t id = j.rec.id;
  std::string node = n.name();
  store_->put(j.rec, [this, id, node](std::expected<void, std::string> ok) {
    asio::post(io_, [this, id, node, ok] {
      job* j = find(id);
      if (j == nullptr || !j->starting || j->rec.node != node) return;
      if (!ok) return start_failed(id, "storing the start: " + ok.error(), start_fault::ours);
      if (j->kill_requested) {
        // finish tells the policy (which placed it) before giving back its room.
        return finish(*j, job_state::killed, "killed", "killed before it ran");
      }
      node_link* n = find_node(node);
      if (n == nullptr) return start_failed(id, "node " + node + " removed", start_fault::node);
      std::string spec = task_spec(*j, false);
      n->batch(j->rec.owner,
               [spec](node_conn& c, std::uint32_t root) { return start_messages(c, root, spec); },
               [this, id, node](node_link::replies r) {
                 for (std::size_t i = 0; i < 3 && i < r.size(); ++i) {
                   if (!r[i]) return start_failed(id, r[i].error());
                 }
                 if (r.size() < 4) return start_failed(id, "short reply", start_fault::node);
                 auto task = ctl::parse_u64(std::get<srv9p::rread>(*r[2]).data.substr(
                     0, std::get<srv9p::rread>(*r[2]).data.find('\n')));
                 if (!task) return start_failed(id, "clone gave no task number", start_fault::node);
                 if (!r[3]) {
                   // The node refused the spec (draining, too many tasks): forget its task.
                   rm_task(node, find(id) ? find(id)->rec.owner : opts_.link.uname, *task);
                   return start_failed(id, r[3].error());
                 }
                 started(id, node, *task);
               });
    });
  });
}

void scheduler::kill_task(const std::string& node, const std::string& owner, std::uint64_t task, int sig) {
  node_link* n = find_node(node);
  if (n == nullptr || !n->up()) return;
  n->batch(owner,
           [task, sig](node_conn& c, std::uint32_t root) {
             std::uint32_t f = c.client().alloc_fid();
             return std::vector<srv9p::message>{srv9p::twalk{root, f, {"task", std::to_string(task), "ctl"}},
                                                srv9p::topen{f, srv9p::owrite},
                                                srv9p::twrite{f, 0, fmt::format("kill {}\n", sig)}, srv9p::tclunk{f}};
           },
           [](node_link::replies) {});
}

void scheduler::rm_task(const std::string& node, const std::string& owner, std::uint64_t task) {
  node_link* n = find_node(node);
  if (n == nullptr || !n->up()) {
    if (n != nullptr) log(fmt::format("node {} is down: its task {} stays in its spool", node, task));
    return;
  }
  n->batch(owner,
           [task](node_conn& c, std::uint32_t root) {
             std::uint32_t f = c.client().alloc_fid();
             return std::vector<srv9p::message>{srv9p::twalk{root, f, {"task", std::to_string(task), "ctl"}},
                                                srv9p::topen{f, srv9p::owrite}, srv9p::twrite{f, 0, "rm\n"},
                                                srv9p::tclunk{f}};
           },
           [this, node, task](node_link::replies r) {
             for (auto& x : r) {
               if (x) continue;
               // A task the node has forgotten already (its own rm, a lost spool) is gone.
               if (x.error() != srv9p::err::not_found) log(fmt::format("node {}: rm of task {}: {}", node, task, x.error()));
               return;
             }
           });
}

void scheduler::start_backup(job& j, node_link& n) {
  // Speculation (Dean and Ghemawat, OSDI 2004, §3.6): a second copy of a straggler, on
  // another node, not stored (a restart leaves it to run out unwatched); the first copy
  // to succeed wins.
  std::uint64_t token = next_token_++;
  j.backup = job::copy{n.name(), 0, token};
  auto& u = used_[n.name()];
  u.cpu_millis += j.cpu_millis ? j.cpu_millis : opts_.default_cpu_millis;
  u.mem_bytes += static_cast<std::int64_t>(j.mem_bytes);
  u.jobs++;
  std::uint64_t id = j.rec.id;
  std::string node = n.name();
  std::string owner = j.rec.owner;
  post_event(fmt::format("backup {} {}", id, node));
  changed(j);
  n.batch(owner,
          [spec = task_spec(j, true)](node_conn& c, std::uint32_t root) { return start_messages(c, root, spec); },
          [this, id, node, token, owner](node_link::replies r) {
            std::optional<std::uint64_t> task;
            if (r.size() == 5 && r[2]) {
              const auto& data = std::get<srv9p::rread>(*r[2]).data;
              task = ctl::parse_u64(data.substr(0, data.find('\n')));
            }
            bool ok = task && r[3];
            job* j = find(id);
            bool mine = j != nullptr && j->backup && j->backup->token == token;
            if (!ok) {
              if (task) kill_task(node, owner, *task, SIGKILL);
              if (mine) drop_backup(*j, true, policy::outcome::lost, true);
              return;
            }
            if (!mine) return kill_task(node, owner, *task, SIGKILL);  // dropped while it started
            j->backup->task = *task;
            by_task_[{node, *task}] = id;
            if (auto e = early_exits_.find({node, *task}); e != early_exits_.end()) {
              std::string wait = e->second;
              early_exits_.erase(e);
              task_ended(node, *task, wait);
            }
          });
}

void scheduler::drop_backup(job& j, bool tell_policy, policy::outcome o, bool task_ended) {
  if (!j.backup) return;
  job::copy b = *j.backup;
  j.backup.reset();
  if (tell_policy) {
    if (auto ok = policy_.finished(j.rec.id, o, now_ms(), b.node); !ok) {
      log(fmt::format("job {}: policy: {}", j.rec.id, ok.error()));
    }
  }
  auto& u = used_[b.node];
  u.cpu_millis -= j.cpu_millis ? j.cpu_millis : opts_.default_cpu_millis;
  u.mem_bytes -= static_cast<std::int64_t>(j.mem_bytes);
  u.jobs--;
  if (b.task != 0) {
    by_task_.erase({b.node, b.task});
    if (!task_ended) {
      preempted_tasks_.insert({b.node, b.task});
      kill_task(b.node, j.rec.owner, b.task, SIGKILL);
    }
  }
  // b.task 0: its start is in flight; the answer finds the token gone and kills the task.
  changed(j);
}

void scheduler::promote_backup(job& j) {
  auto& b = *j.backup;
  post_event(fmt::format("promote {} {} {}", j.rec.id, b.node, b.task));
  std::swap(j.rec.node, b.node);
  std::swap(j.rec.task, b.task);
}

std::string scheduler::task_spec(const job& j, bool backup) const {
  // GALAXY_JOB and GALAXY_ATTEMPT mark the task as this start's, for a restarted
  // scheduler's search (find_task); a backup copy runs the same attempt, marked
  // GALAXY_BACKUP=1 so the search never takes it for the job's own copy.
  std::string spec;
  for (const auto& l : j.task_lines) spec += l + "\n";
  spec += fmt::format("env GALAXY_JOB={} GALAXY_ATTEMPT={}", j.rec.id, backup ? j.rec.attempts : j.rec.attempts + 1);
  if (j.rec.array != 0) spec += fmt::format(" GALAXY_ARRAY_JOB={} GALAXY_INDEX={}", j.rec.array, j.rec.index);
  if (backup) spec += " GALAXY_BACKUP=1";
  spec += "\nexec " + ctl::join(j.argv) + "\n";
  return spec;
}

void scheduler::release(job& j) {
  if (!j.holds) return;
  j.holds = false;
  auto& u = used_[j.rec.node];
  u.cpu_millis -= j.cpu_millis ? j.cpu_millis : opts_.default_cpu_millis;
  u.mem_bytes -= static_cast<std::int64_t>(j.mem_bytes);
  u.jobs--;
}

void scheduler::policy_end(job& j, policy::outcome o) {
  if (!in_policy_.contains(j.rec.id) || j.policy_ended) return;
  // A lost run is queued again by the policy; any other outcome is its last word.
  if (o != policy::outcome::lost) j.policy_ended = true;
  std::expected<void, std::string> ok;
  if (j.holds) {
    ok = policy_.finished(j.rec.id, o, now_ms(), j.rec.node);
  } else if (o == policy::outcome::killed || o == policy::outcome::failed) {
    ok = policy_.cancel(j.rec.id);
  }
  if (!ok) log(fmt::format("job {}: policy: {}", j.rec.id, ok.error()));
}

void scheduler::to_policy(job& j) {
  if (j.array_size > 0) return;  // an array job runs nowhere itself: its tasks do
  policy::job_spec spec;
  spec.id = j.rec.id;
  spec.user = j.rec.owner;
  spec.need = {static_cast<std::int64_t>(j.cpu_millis ? j.cpu_millis : opts_.default_cpu_millis),
               static_cast<std::int64_t>(j.mem_bytes)};
  spec.needs = j.needs;
  spec.priority = j.rec.priority;
  spec.preemptible = j.rec.preemptible;
  // Siblings for speculation: the tasks of one array, or the jobs of one name.
  spec.group = j.rec.array != 0 ? fmt::format("array {}", j.rec.array)
               : j.rec.name.empty() ? ""
                                    : "name " + j.rec.name;
  spec.speculate = j.speculate;
  spec.submitted_ms = j.rec.submitted_ms;
  auto deps = deps_of(j);
  for (auto dep : deps) {
    job* p = find(dep);
    if (p != nullptr && (p->collecting || (p->held_until && !in_policy_.contains(dep)))) {
      // Its results are being copied, or it is held for its node after a restart (the
      // policy does not know it yet): j enters the policy once it has ended (finish()).
      after_collect_[dep].push_back(j.rec.id);
      return;
    }
  }
  for (auto dep : deps) {
    awaited_.insert(dep);
    // Ended predecessors the policy never saw (before a restart) are settled here.
    job* p = find(dep);
    if (in_policy_.contains(dep)) {
      spec.after.push_back(dep);
    } else if (p == nullptr || p->rec.state != job_state::done) {
      if (p != nullptr && !is_final(p->rec.state)) {
        spec.after.push_back(dep);  // submitted below, before j: ids grow
        continue;
      }
      return finish(j, job_state::failed, fmt::format("error dependency {} failed", dep),
                    fmt::format("dependency {} failed", dep));
    }
  }
  if (j.adopted) {
    // Must land on the node it runs on, before anything else takes the room.
    spec.needs.emplace_back("node", j.rec.node);
    spec.priority = std::numeric_limits<int>::max();
  }
  auto ok = policy_.submit(std::move(spec));
  if (!ok) return finish(j, job_state::failed, "error " + ok.error(), ok.error());
  in_policy_.insert(j.rec.id);
  j.policy_ended = false;
}

void scheduler::update_node(const std::string& name) {
  node_link* n = find_node(name);
  if (n == nullptr || !n->up()) return policy_.remove_node(name);
  policy::node_spec spec;
  spec.name = name;
  spec.capacity = {node_cpu_capacity(*n), static_cast<std::int64_t>(n->info().mem_bytes)};
  spec.labels = n->info().labels;
  spec.labels.emplace_back("node", name);  // `need node=NAME` picks a node (Slurm's --nodelist)
  auto b = backoff_.find(name);
  spec.drained = drained_.contains(name) || n->info().draining || (b != backoff_.end() && !b->second.released);
  if (auto ok = policy_.set_node(std::move(spec)); !ok) log(fmt::format("node {}: policy: {}", name, ok.error()));
}

void scheduler::open_gate() {
  if (gate_open_ || stopped_) return;
  for (const auto& [id, j] : jobs_) {
    // Not yet known where it stands. A held job (its node down after a restart) does not
    // wait here: it enters the policy when its node is back or it is lost.
    if ((j->reconcile && !j->held_until) || j->collecting) return;
  }
  gate_open_ = true;
  // Adopted jobs first, alone, so that the first pass puts each back on its node.
  for (auto& [id, j] : jobs_) {
    if (j->adopted && j->rec.state == job_state::running) to_policy(*j);
  }
  place();
  // Predecessors before their dependents (the policy takes `after` only for jobs it
  // knows): a depth-first walk, without recursion, so a chain of any length is fine.
  std::set<std::uint64_t> seen;
  for (auto& [id, j] : jobs_) {
    std::vector<std::pair<job*, bool>> stack{{j.get(), false}};
    while (!stack.empty()) {
      auto [cur, deps_fed] = stack.back();
      stack.pop_back();
      if (deps_fed) {
        if (cur->rec.state == job_state::queued && !cur->held_until && !in_policy_.contains(cur->rec.id)) {
          to_policy(*cur);
        }
        continue;
      }
      if (!seen.insert(cur->rec.id).second) continue;
      stack.emplace_back(cur, true);
      for (auto dep : deps_of(*cur)) {
        if (job* p = find(dep); p != nullptr && !seen.contains(dep)) stack.emplace_back(p, false);
      }
    }
  }
  schedule();
}

std::vector<std::uint64_t> scheduler::deps_of(const job& j) const {
  // `after` an array job means after every one of its tasks.
  std::vector<std::uint64_t> deps;
  for (auto dep : j.rec.after) {
    auto it = jobs_.find(dep);
    if (it != jobs_.end() && !it->second->tasks.empty()) {
      deps.insert(deps.end(), it->second->tasks.begin(), it->second->tasks.end());
    } else {
      deps.push_back(dep);
    }
  }
  return deps;
}

void scheduler::started(std::uint64_t id, std::string node, std::uint64_t task) {
  job* j = find(id);
  if (j == nullptr || !j->starting || j->rec.node != node) return;
  j->starting = false;
  j->rec.state = job_state::running;
  j->rec.task = task;
  j->rec.attempts++;
  j->rec.started_ms = now_ms();
  j->defer_ms = 0;
  by_task_[{node, task}] = id;
  refusers_.erase(node);
  if (auto b = backoff_.find(node); b != backoff_.end() && b->second.refusals > 0) {
    // Forgotten but for when its refusals were last logged (the once-a-minute limit).
    if (b->second.logged) log(fmt::format("node {}: starts again after {} refusals", node, b->second.refusals));
    bool drained = !b->second.released;
    b->second = node_backoff{.logged_ms = b->second.logged_ms, .released = true};
    if (drained) update_node(node);
  }
  save(*j);
  post_event(fmt::format("start {} {} {}", id, node, task));
  changed(*j);
  if (j->rec.array != 0) array_changed(j->rec.array);
  if (auto e = early_exits_.find({node, task}); e != early_exits_.end()) {
    std::string wait = e->second;
    early_exits_.erase(e);
    return task_ended(node, task, wait);
  }
  if (j->kill_requested) {
    kill_job(*j, j->kill_signal, [](std::expected<void, std::string>) {});
  }
}

void scheduler::start_failed(std::uint64_t id, const std::string& why, start_fault fault) {
  job* j = find(id);
  if (j == nullptr) return;
  std::string node = j->rec.node;
  std::string owner = j->rec.owner;
  // One line per job for refusals (its first; its note has the rest), so that a user's
  // failing jobs cannot flood the log.
  if (fault != start_fault::refused || j->defer_ms == 0) {
    log(fmt::format("job {}: start on {} failed: {}", id, node, why));
  }
  policy_end(*j, policy::outcome::lost);
  release(*j);
  j->starting = false;
  j->rec.node.clear();
  j->rec.task = 0;
  // A full spool (ENOSPC while the node stages the task) is said in words: it is the
  // node's disk, not the job, and it lasts until someone frees it.
  std::string lower = why;
  for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  bool full = lower.find("no space left on device") != std::string::npos;
  std::string reason = full ? fmt::format("the spool of {} is full ({})", node, why) : why;
  j->rec.note = fmt::format("start on {} failed: {}", node, reason);
  std::string short_why = full ? "spool full: " + why : why;
  // Whose fault it was decides who waits. The node's answer cannot say: its text may
  // carry what the job wrote, and the owner may simply not exist there. So:
  //   - the node misbehaved, is down, or its spool is full: the node backs off for every
  //     job (back_off_node, doubling), and the job is simply queued again;
  //   - the scheduler's own store failed: the job alone waits 1 s;
  //   - a refusal: the job alone is deferred in the policy (1 s, doubling up to
  //     max_backoff_ms), as Slurm holds a job whose launch failed rather than draining
  //     the node. Its owner cannot retry there before its deferral ends, so it cannot
  //     keep the node from others. The node is also left alone for 1 s (no doubling)
  //     when it refused the starts of two owners since its last start that worked, or
  //     when no other owner has a job waiting: a node refusing everyone is not asked
  //     again at once.
  node_link* n = node.empty() ? nullptr : find_node(node);
  bool node_wide = fault == start_fault::node || full || n == nullptr || !n->up();
  if (!node_wide && in_policy_.contains(id) && !j->policy_ended) {
    bool escalate = false;
    if (fault == start_fault::refused) {
      auto& owners = refusers_[node];
      owners.insert(owner);
      escalate = owners.size() >= 2 || !other_owner_queued(owner);
      j->defer_ms = j->defer_ms == 0 ? 1000 : std::min(j->defer_ms * 2, max_backoff_ms);
    }
    std::int64_t wait_ms = fault == start_fault::refused ? j->defer_ms : 1000;
    if (auto ok = policy_.defer(id, now_ms() + wait_ms); ok) {
      j->rec.note += fmt::format("; deferred {} s (this job's backoff; {} stays open to other jobs)", wait_ms / 1000,
                                 node);
      if (escalate) back_off_node(node, short_why, false);
      save(*j);
      changed(*j);
      return schedule();
    } else {
      log(fmt::format("job {}: policy: {}", id, ok.error()));
    }
  }
  if (!node.empty() && fault != start_fault::ours) back_off_node(node, short_why, true);
  save(*j);
  changed(*j);
  schedule();
}

void scheduler::back_off_node(const std::string& node, const std::string& why, bool doubling) {
  auto& b = backoff_[node];
  std::int64_t now = now_ms();
  ++b.refusals;
  if (!b.released && b.until_ms > now) return;  // in its backoff already: a start that was in flight
  b.delay_ms = !doubling || b.delay_ms == 0 ? 1000 : std::min(b.delay_ms * 2, max_backoff_ms);
  b.until_ms = now + b.delay_ms;
  b.released = false;
  // Logged when the node starts refusing or its reason changes, at most once a minute
  // (refusals of several owners' jobs take turns: the reason changes every time).
  if (why != b.why && (b.logged_ms == 0 || now - b.logged_ms >= 60'000)) {
    b.logged_ms = now;
    b.logged = true;
    log(fmt::format("node {}: refuses starts ({}); trying it again after {} s{}", node, why, b.delay_ms / 1000,
                    doubling ? fmt::format(", doubling up to {} s", max_backoff_ms / 1000) : ""));
  }
  b.why = why;
  update_node(node);
  arm_backoff();
}

bool scheduler::other_owner_queued(const std::string& owner) const {
  for (const auto& [id, j] : jobs_) {
    if (j->rec.state == job_state::queued && j->rec.owner != owner && in_policy_.contains(id)) {
      return true;
    }
  }
  return false;
}

void scheduler::arm_backoff() {
  std::int64_t next = 0;
  for (const auto& [name, b] : backoff_) {
    if (!b.released && (next == 0 || b.until_ms < next)) next = b.until_ms;
  }
  if (next == 0) return;
  backoff_timer_.expires_after(std::chrono::milliseconds(std::max<std::int64_t>(next - now_ms(), 1)));
  backoff_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec || stopped_) return;
    std::int64_t now = now_ms();
    for (auto& [name, b] : backoff_) {
      if (b.released || b.until_ms > now) continue;
      b.released = true;
      update_node(name);
    }
    arm_backoff();
    // Queued jobs' notes name the nodes in backoff: readers see the change.
    for (auto& [id, j] : jobs_) {
      if (j->rec.state == job_state::queued) changed(*j);
    }
    schedule();
  });
}

std::string scheduler::backoff_note() const {
  std::string out;
  std::int64_t now = now_ms();
  for (const auto& [name, b] : backoff_) {
    if (b.released) continue;
    out += fmt::format("{}{} ({}; {} refusals, backoff {} s, next try in {} s)", out.empty() ? "" : ", ", name, b.why,
                       b.refusals, b.delay_ms / 1000, (b.until_ms - now + 999) / 1000);
  }
  return out.empty() ? out : "waiting for nodes that refused starts: " + out;
}

// ---- Ends ------------------------------------------------------------------------------

void scheduler::task_ended(const std::string& node, std::uint64_t task, std::string wait) {
  if (preempted_tasks_.erase({node, task}) > 0) return;  // killed by preemption: requeued already
  auto it = by_task_.find({node, task});
  if (it == by_task_.end()) {
    // Perhaps the exit of a task whose start has not been answered yet.
    early_exits_[{node, task}] = std::move(wait);
    if (early_exits_.size() > 4096) early_exits_.erase(early_exits_.begin());
    return;
  }
  job* j = find(it->second);
  by_task_.erase(it);
  if (j == nullptr || j->rec.state != job_state::running) return;
  if (j->rec.node == node && j->rec.task == task) end_hold(*j);  // its node is back and told
  bool is_backup = j->backup && j->backup->node == node && j->backup->task == task;
  if (j->collecting) {
    // The other copy already succeeded, and the policy has ended the job with it.
    if (is_backup) drop_backup(*j, false, policy::outcome::killed, true);
    return;
  }
  bool ok = wait == "exit 0";
  // "lost", or "lost WHY" (a copy its node fenced, read back by reconcile).
  bool was_lost = wait == "lost" || wait.starts_with("lost ");
  auto copy_outcome = was_lost ? policy::outcome::lost : policy::outcome::failed;
  if (is_backup) {
    // The backup copy ended. First to succeed: it wins, and the job's other copy is
    // killed (the policy preempts it). Else only the backup ends.
    if (!ok || j->kill_requested) return drop_backup(*j, true, copy_outcome, true);
    promote_backup(*j);
    save(*j);
    return collect(*j, std::move(wait));
  }
  if (!ok && j->backup && !j->kill_requested) {
    if (j->backup->task != 0) {
      // This copy failed, the backup carries on as the job's copy.
      promote_backup(*j);
      drop_backup(*j, true, copy_outcome, true);
      save(*j);
      return changed(*j);
    }
    drop_backup(*j, true, policy::outcome::lost, false);  // still starting: no copy yet
  }
  if (was_lost) return lost(*j, wait == "lost" ? "the node lost the task" : "the node's task: " + wait);
  collect(*j, std::move(wait));
}

void scheduler::collect(job& j, std::string wait) {
  j.collecting = true;
  // The run is over: its room goes back to the policy now, before the results are copied,
  // so that the next job does not wait for the copy's round trips; but a job that others
  // wait for ends in the policy only with its results, which they may read.
  if (!awaited_.contains(j.rec.id)) {
    policy_end(j, outcome_of(state_of_wait(wait, j.kill_requested)));
    release(j);
    schedule();
  }
  node_link* n = find_node(j.rec.node);
  if (n == nullptr || !n->up()) {
    j.collecting = false;
    return finish(j, state_of_wait(wait, j.kill_requested), wait, "results not copied: node is down");
  }
  // Most tasks leave a little output and no out/ files: one batch reads all three at once,
  // and the task's status for its accounting (16 messages, one round trip), and the
  // scheduler writes only the files that are not empty. A file is whole when its read came back shorter than asked for: the node
  // serves a finished task's files from its spool, where only the end of a file gives less.
  // Anything else (more output, out/ files, an error) takes copy_in_pool's general path.
  std::uint64_t id = j.rec.id;
  std::uint64_t task = j.rec.task;
  n->batch(j.rec.owner,
           [task](node_conn& c, std::uint32_t root) {
             std::vector<srv9p::message> m;
             for (const char* name : {"stdout", "stderr", "out", "status"}) {
               std::uint32_t f = c.client().alloc_fid();
               m.push_back(srv9p::twalk{root, f, {"task", std::to_string(task), name}});
               m.push_back(srv9p::topen{f, srv9p::oread});
               m.push_back(srv9p::tread{f, 0, small_result_bytes});
               m.push_back(srv9p::tclunk{f});
             }
             return m;
           },
           [this, id, wait](node_link::replies r) {
             job* j = find(id);
             if (j == nullptr || !j->collecting) return;
             auto data = [&r](std::size_t k) -> const std::string* {
               if (r.size() != 16 || !r[4 * k] || !r[4 * k + 1] || !r[4 * k + 2]) return nullptr;
               const auto& d = std::get<srv9p::rread>(*r[4 * k + 2]).data;
               return d.size() < small_result_bytes ? &d : nullptr;
             };
             const std::string* out = data(0);
             const std::string* err = data(1);
             const std::string* dir = data(2);
             if (const std::string* status = data(3)) {
               take_usage(*status, j->rec);
             } else {
               j->rec.user_ms = j->rec.sys_ms = j->rec.maxrss_bytes = 0;
             }
             // Output over the limits takes the general path, which keeps what fits.
             std::uint64_t files = (out && !out->empty()) + (err && !err->empty());
             bool fits = out && err && out->size() + err->size() <= opts_.results.max_bytes &&
                         files <= opts_.results.max_files;
             if (out == nullptr || err == nullptr || dir == nullptr || !dir->empty() || !fits) {
               return copy_in_pool(*j, wait);
             }
             if (out->empty() && err->empty()) return collected(id, wait, "");
             asio::post(pool_, [this, id, wait, out = *out, err = *err] {
               std::string note;
               auto dest = open_result_dir(jobs_fd_, std::to_string(id));
               for (auto [name, text] : {std::pair{"stdout", &out}, std::pair{"stderr", &err}}) {
                 if (text->empty()) continue;
                 std::expected<void, std::string> ok = dest ? std::expected<void, std::string>{} : fail(dest.error());
                 if (ok) {
                   auto fd = create_result_file(dest->get(), name);
                   ok = fd ? write_all(*fd, *text) : fail(fd.error());
                   if (fd) ::close(*fd);
                 }
                 if (!ok) note = fmt::format("results not copied: {}: {}", name, ok.error());
               }
               asio::post(io_, [this, id, wait, note] { collected(id, wait, note); });
             });
           });
}

void scheduler::copy_in_pool(job& j, std::string wait) {
  node_link* n = find_node(j.rec.node);
  auto conn = n ? n->conn() : nullptr;
  if (!conn) return collected(j.rec.id, wait, "results not copied: node is down");
  std::uint64_t id = j.rec.id;
  asio::post(pool_, [this, conn, id, owner = j.rec.owner, task = j.rec.task, wait, limits = opts_.results]() {
    auto ok = copy_results(conn->client(), owner, task, jobs_fd_, id, limits);
    asio::post(io_, [this, id, ok, wait] { collected(id, wait, ok ? *ok : "results not copied: " + ok.error()); });
  });
}

void scheduler::collected(std::uint64_t id, std::string wait, std::string note) {
  job* j = find(id);
  if (j == nullptr || !j->collecting) return;
  j->collecting = false;
  j->collected = true;
  finish(*j, state_of_wait(wait, j->kill_requested), wait, note);
}

void scheduler::finish(job& j, job_state s, std::string exit, std::string note) {
  end_hold(j);
  policy_end(j, outcome_of(s));
  release(j);
  if (j.rec.task != 0) by_task_.erase({j.rec.node, j.rec.task});
  j.starting = false;
  j.reconcile = false;
  j.rec.state = s;
  j.rec.exit = std::move(exit);
  j.rec.note = std::move(note);
  if (!j.reconcile_note.empty()) {
    j.rec.note = j.rec.note.empty() ? j.reconcile_note : j.rec.note + "; " + j.reconcile_note;
    j.reconcile_note.clear();
  }
  j.rec.ended_ms = now_ms();
  // Nothing more to copy (or nothing to copy: it never ran, or its node is gone). A missing
  // file in the spool reads as empty, so readers end.
  j.collected = true;
  save(j);
  finished_total_[std::string(to_string(s))]++;
  post_event(fmt::format("end {} {} {}", j.rec.id, to_string(s), ctl::quote(j.rec.exit)));
  changed(j);
  drop_backup(j, false, policy::outcome::killed, false);  // the policy has ended every copy
  if (auto it = after_collect_.find(j.rec.id); it != after_collect_.end()) {
    auto waiting = std::move(it->second);
    after_collect_.erase(it);
    for (auto id : waiting) {
      job* w = find(id);
      if (w != nullptr && w->rec.state == job_state::queued && !in_policy_.contains(id) && gate_open_) to_policy(*w);
    }
  }
  schedule();
  if (j.rec.array != 0) array_changed(j.rec.array);
  if (!gate_open_) open_gate();
}

// ---- Admin -----------------------------------------------------------------------------

void scheduler::admin_ctl(std::string line, std::string_view uname, done_fn done) {
  auto cmd = ctl::parse(line, ctl::sched_verbs);
  if (!cmd) return done(fail(cmd.error()));
  if (!is_admin(uname)) return done(fail(std::string(srv9p::err::perm)));
  const auto& a = cmd->args;
  using v = ctl::sched_verb;
  switch (static_cast<v>(cmd->verb)) {
    case v::node:
      if (a[0] == "add" && a.size() == 3) return add_node(a[1], a[2], std::move(done));
      if (a[0] == "rm" && a.size() == 2) return remove_node(a[1], std::move(done));
      return done(fail(fmt::format("bad node command '{}': expected node add NAME DIAL | node rm NAME", line)));
    case v::drain:
    case v::undrain:
      return done(drain(a[0], static_cast<v>(cmd->verb) == v::drain));
    case v::quota: {
      quota_record q;
      q.user = a[0];
      if (auto it = quotas_.find(q.user); it != quotas_.end()) q = it->second;
      for (std::size_t i = 1; i < a.size(); ++i) {
        auto kv = ctl::parse_kv(a[i]);
        if (!kv) return done(fail(kv.error()));
        if (kv->first == "cpu") {
          auto n = ctl::parse_cpu_millis(kv->second);
          if (!n) return done(fail(n.error()));
          q.cpu_millis = *n;
        } else if (kv->first == "mem") {
          auto n = ctl::parse_bytes(kv->second);
          if (!n) return done(fail(n.error()));
          q.mem_bytes = static_cast<std::int64_t>(*n);
        } else if (kv->first == "weight") {
          double w = 0;
          auto [p, ec] = std::from_chars(kv->second.data(), kv->second.data() + kv->second.size(), w);
          if (ec != std::errc() || w <= 0) return done(fail(fmt::format("bad weight '{}': expected a number > 0", kv->second)));
          q.weight = w;
        } else {
          return done(fail(fmt::format("bad quota '{}': expected cpu=N, mem=BYTES or weight=W", a[i])));
        }
      }
      if (auto ok = policy_.set_quota(q.user, {q.cpu_millis ? q.cpu_millis : policy::unlimited,
                                               q.mem_bytes ? q.mem_bytes : policy::unlimited});
          !ok) {
        return done(fail(ok.error()));
      }
      (void)policy_.set_weight(q.user, q.weight);
      quotas_[q.user] = q;
      schedule();
      store_->put_quota(q, [this, done](std::expected<void, std::string> ok) { asio::post(io_, [done, ok] { done(ok); }); });
      return;
    }
    case v::policy:
      if (a[0] != "binpack" && a[0] != "spread") {
        return done(fail(fmt::format("bad policy '{}': expected binpack or spread", a[0])));
      }
      policy_mode_ = a[0];
      policy_.set_mode(a[0] == "spread" ? policy::mode::spread : policy::mode::binpack);
      schedule();
      return done({});
    case v::priority: {
      auto id = ctl::parse_u64(a[0]);
      job* j = id ? find(*id) : nullptr;
      if (j == nullptr) return done(fail(fmt::format("no job {}", a[0])));
      return job_ctl(*j, "priority " + a[1], uname, std::move(done));
    }
  }
}

// ---- Files' text -------------------------------------------------------------------------

fs::path scheduler::spool(std::uint64_t id) const { return opts_.state / "jobs" / std::to_string(id); }

std::string scheduler::status_line(const job& j) const {
  // A queued job's note is the policy's account of it ("unschedulable: no node has 64
  // GiB", "waiting for 3", "over quota: ..."), after any note of its own (a requeue).
  std::string note = j.rec.note;
  auto add = [&note](const std::string& more) { note = note.empty() ? more : note + "; " + more; };
  // One that can never run says so instead (cannot_run; its wait file answers then).
  std::optional<std::string> never;
  if (j.rec.state == job_state::queued && !j.queue_anyway && !j.starting && !j.reconcile) never = cannot_run(j);
  if (never) {
    add("cannot run: " + *never);
  } else if (j.rec.state == job_state::queued && !j.starting && in_policy_.contains(j.rec.id)) {
    std::string p = policy_.note(j.rec.id);
    // Nodes in backoff look drained to the policy ("unschedulable: no nodes"): say why.
    if (p.starts_with("unschedulable")) {
      if (std::string b = backoff_note(); !b.empty()) p = b;
    }
    // ("deferred after a failed start": the job's own note says so, with how long.)
    if (p != "queued" && !p.empty() && !p.starts_with("deferred")) add(p);
  }
  if (j.backup) add("backup on " + j.backup->node);
  if (!j.reconcile_note.empty()) add(j.reconcile_note);
  std::string array;  // an array job: its tasks by state; a task: its array and index
  if (!j.tasks.empty()) {
    std::map<std::string, int> by_state;
    for (auto id : j.tasks) {
      auto it = jobs_.find(id);
      if (it != jobs_.end()) by_state[std::string(it->second->starting ? "starting" : to_string(it->second->rec.state))]++;
    }
    std::string counts;
    for (const auto& [st, n] : by_state) counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n, st);
    if (!is_final(j.rec.state)) add(counts);
    array = fmt::format(" tasks={}", j.tasks.size());
  } else if (j.rec.array != 0) {
    array = fmt::format(" array={} index={}", j.rec.array, j.rec.index);
  }
  return fmt::format(
      "id={} owner={} state={} node={} attempts={} exit={} submitted={} started={} ended={} name={} task={} "
      "priority={} usertime={} systime={} maxrss={} note={}{}",
      j.rec.id, ctl::quote(j.rec.owner), j.starting ? "starting" : to_string(j.rec.state),
      j.rec.node.empty() ? "-" : j.rec.node, j.rec.attempts, ctl::quote(j.rec.exit.empty() ? "-" : j.rec.exit),
      j.rec.submitted_ms, j.rec.started_ms, j.rec.ended_ms, ctl::quote(j.rec.name.empty() ? "-" : j.rec.name),
      j.rec.task, j.rec.priority, j.rec.user_ms, j.rec.sys_ms, j.rec.maxrss_bytes,
      ctl::quote(note.empty() ? "-" : note), array);
}

std::optional<std::string> scheduler::cannot_run(const job& j) const {
  for (auto dep : j.rec.after) {
    const job* p = jobs_.contains(dep) ? jobs_.at(dep).get() : nullptr;
    if (p == nullptr) continue;
    if (p->rec.state == job_state::failed) return fmt::format("after: job {} failed", dep);
    if (p->rec.state == job_state::killed) return fmt::format("after: job {} was killed", dep);
  }
  if (links_.empty()) {
    // Right after a start, nodes joined before it have not come back yet.
    if (now_ms() - started_ms_ < static_cast<std::int64_t>(opts_.link.down_after_ms)) return std::nullopt;
    return std::string("no nodes in the cluster");
  }
  std::int64_t cpu = j.cpu_millis ? j.cpu_millis : opts_.default_cpu_millis;
  auto mem = static_cast<std::int64_t>(j.mem_bytes);
  auto needs = j.needs;
  std::sort(needs.begin(), needs.end());
  needs.erase(std::unique(needs.begin(), needs.end()), needs.end());
  bool labelled = false;                  // some node has the labels
  std::int64_t most_cpu = 0, most_mem = 0;  // the largest of those
  for (const auto& [name, l] : links_) {
    const node_info& in = l->info();
    if (in.ncpu == 0) return std::nullopt;  // not heard from yet: it could hold anything
    auto labels = in.labels;
    labels.emplace_back("node", name);
    std::sort(labels.begin(), labels.end());
    if (!std::includes(labels.begin(), labels.end(), needs.begin(), needs.end())) continue;
    labelled = true;
    std::int64_t c = node_cpu_capacity(*l);
    auto m = static_cast<std::int64_t>(in.mem_bytes);
    if (c >= cpu && m >= mem) return std::nullopt;
    most_cpu = std::max(most_cpu, c);
    most_mem = std::max(most_mem, m);
  }
  std::string which;
  for (const auto& [k, v] : needs) which += (which.empty() ? "" : " ") + k + "=" + v;
  if (!labelled) return fmt::format("no node has {}", which);
  std::string who = needs.empty() ? "no node" : "no node with " + which;
  std::vector<std::string> short_of;
  if (most_cpu < cpu) {
    short_of.push_back(fmt::format("{} (largest {})", policy::human_cpus(cpu), policy::human_cpus(most_cpu)));
  }
  if (most_mem < mem || short_of.empty()) {
    short_of.push_back(fmt::format("{} memory (largest {})", policy::human_bytes(mem), policy::human_bytes(most_mem)));
  }
  if (short_of.size() == 1) return fmt::format("{} has {}", who, short_of[0]);
  // Each alone may fit on some node, but not both on one.
  if (most_cpu >= cpu || most_mem >= mem) {
    return fmt::format("{} has both {} and {}", who, policy::human_cpus(cpu), policy::human_bytes(mem));
  }
  return fmt::format("{} has {} or {}", who, short_of[0], short_of[1]);
}

std::string scheduler::wait_text(const job& j) const {
  if (j.rec.state == job_state::queued && !j.queue_anyway && !j.starting && !j.reconcile) {
    if (auto why = cannot_run(j)) return "cannot run: " + *why;
  }
  if (!is_final(j.rec.state) || !j.collected) return "";
  if (j.rec.state == job_state::killed && j.rec.exit == "killed") return "killed";
  if (j.rec.state == job_state::failed &&
      (j.rec.exit == "lost" || j.rec.exit.starts_with("error dependency") || !j.tasks.empty())) {
    return "error " + j.rec.note;
  }
  return j.rec.exit;
}

std::string scheduler::cluster_status() const {
  int up = 0, down = 0;
  std::int64_t cpu_total = 0, mem_total = 0, cpu_used = 0, mem_used = 0;
  for (const auto& [name, l] : links_) {
    if (!l->up()) {
      ++down;
      continue;
    }
    ++up;
    cpu_total += node_cpu_capacity(*l);
    mem_total += static_cast<std::int64_t>(l->info().mem_bytes);
    auto u = node_used(name);
    cpu_used += u.cpu_millis;
    mem_used += u.mem_bytes;
  }
  std::map<std::string, int> by_state;
  for (const auto& [id, j] : jobs_) {
    if (j->tasks.empty()) by_state[std::string(to_string(j->rec.state))]++;  // an array counts as its tasks
  }
  return fmt::format(
      "nodes_up={} nodes_down={} jobs_new={} jobs_queued={} jobs_running={} jobs_done={} jobs_failed={} "
      "jobs_killed={} cpu_millis_used={} cpu_millis_total={} mem_bytes_used={} mem_bytes_total={} policy={}\n",
      up, down, by_state["new"], by_state["queued"], by_state["running"], by_state["done"], by_state["failed"],
      by_state["killed"], cpu_used, cpu_total, mem_used, mem_total, policy_mode_);
}

std::string scheduler::metrics() const {
  std::string out;
  int up = 0;
  for (const auto& [name, l] : links_) up += l->up() ? 1 : 0;
  out += "# HELP galaxy_nodes Nodes known to the scheduler, by state.\n# TYPE galaxy_nodes gauge\n";
  out += fmt::format("galaxy_nodes{{state=\"up\"}} {}\ngalaxy_nodes{{state=\"down\"}} {}\n", up,
                     static_cast<int>(links_.size()) - up);
  std::map<std::string, int> by_state;
  for (auto s : {job_state::new_, job_state::queued, job_state::running, job_state::done, job_state::failed,
                 job_state::killed}) {
    by_state[std::string(to_string(s))] = 0;
  }
  for (const auto& [id, j] : jobs_) {
    if (j->tasks.empty()) by_state[std::string(to_string(j->rec.state))]++;
  }
  out += "# HELP galaxy_jobs Jobs the scheduler holds (an array as its tasks), by state.\n# TYPE galaxy_jobs gauge\n";
  for (const auto& [s, n] : by_state) out += fmt::format("galaxy_jobs{{state=\"{}\"}} {}\n", s, n);
  out += "# HELP galaxy_jobs_submitted_total Jobs acknowledged since the scheduler started.\n";
  out += "# TYPE galaxy_jobs_submitted_total counter\n";
  out += fmt::format("galaxy_jobs_submitted_total {}\n", submitted_total_);
  out += "# HELP galaxy_jobs_finished_total Jobs that ended since the scheduler started, by state.\n";
  out += "# TYPE galaxy_jobs_finished_total counter\n";
  for (const auto& [s, n] : finished_total_) out += fmt::format("galaxy_jobs_finished_total{{state=\"{}\"}} {}\n", s, n);
  out += "# HELP galaxy_node_cpu_millis CPU of each up node, millicores.\n# TYPE galaxy_node_cpu_millis gauge\n";
  for (const auto& [name, l] : links_) {
    if (!l->up()) continue;
    auto u = node_used(name);
    out += fmt::format("galaxy_node_cpu_millis{{node=\"{}\",kind=\"total\"}} {}\n", name, node_cpu_capacity(*l));
    out += fmt::format("galaxy_node_cpu_millis{{node=\"{}\",kind=\"used\"}} {}\n", name, u.cpu_millis);
  }
  out += "# HELP galaxy_node_mem_bytes Memory of each up node, bytes.\n# TYPE galaxy_node_mem_bytes gauge\n";
  for (const auto& [name, l] : links_) {
    if (!l->up()) continue;
    auto u = node_used(name);
    out += fmt::format("galaxy_node_mem_bytes{{node=\"{}\",kind=\"total\"}} {}\n", name, l->info().mem_bytes);
    out += fmt::format("galaxy_node_mem_bytes{{node=\"{}\",kind=\"used\"}} {}\n", name, u.mem_bytes);
  }
  out += "# HELP galaxy_store_batches_total Group commits of the job store.\n# TYPE galaxy_store_batches_total counter\n";
  out += fmt::format("galaxy_store_batches_total {}\n", store_->batches());
  return out;
}

std::vector<std::string> scheduler::users() const {
  std::set<std::string> u;
  for (const auto& [id, j] : jobs_) u.insert(j->rec.owner);
  for (const auto& [name, q] : quotas_) u.insert(name);
  for (auto& name : policy_.users()) u.insert(name);
  return {u.begin(), u.end()};
}

std::string scheduler::user_text(std::string_view user) const {
  // DRF's view of the user (sched/policy.hpp user_info), quota 0 meaning none.
  auto info = policy_.user(user);
  policy::scheduler::user_info u = info ? *info : policy::scheduler::user_info{};
  auto limit = [](std::int64_t v) { return v == policy::unlimited ? std::int64_t{0} : v; };
  int queued = u.queued;
  if (!info) {
    for (const auto& [id, j] : jobs_) {
      queued += j->rec.owner == user && j->rec.state == job_state::queued && j->tasks.empty() ? 1 : 0;
    }
  }
  return fmt::format(
      "user={} running={} queued={} cpu_millis={} mem_bytes={} dominant_share={:.4f} weight={} "
      "quota_cpu_millis={} quota_mem_bytes={}\n",
      ctl::quote(user), u.running, queued, u.usage.cpu_millis, u.usage.mem_bytes, u.dominant_share, u.weight,
      info ? limit(u.quota.cpu_millis) : 0, info ? limit(u.quota.mem_bytes) : 0);
}

}  // namespace sched
