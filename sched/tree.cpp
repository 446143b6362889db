// galaxy-sched's unified tree (see sched/tree.hpp and man/man4/galaxy.4).
//
// qid.path is (kind << 48 | instance): instance is 0 for the fixed files, the job id for
// jobs/N and its files, an index into users_ for users/NAME, into relay_ for everything
// below nodes/, and into disk_ for files below jobs/N/out/. Parked reads are keyed by
// job id * 4 + 1, 2, 3 (wait, stdout, stderr).
#include "sched/tree.hpp"

#include <asio/post.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <ctime>
#include <filesystem>

#include "ctl/ctlmsg.hpp"
#include "ctl/join.hpp"
#include "srv9p/errors.hpp"

namespace sched {

namespace fs = std::filesystem;
using srv9p::dir;
using srv9p::dirtab_entry;
using srv9p::request;
namespace err = srv9p::err;

namespace {

enum kind : std::uint16_t {
  k_root = 1, k_status, k_ctl, k_events, k_metrics, k_queue, k_usersdir, k_user, k_nodesdir, k_jobsdir,
  k_clone, k_jdir, k_jctl, k_jstatus, k_jwait, k_jstdout, k_jstderr, k_jout, k_disk, k_relay, k_join,
};

constexpr dirtab_entry root_tab[] = {
    {"status", k_status, 0444},  {"ctl", k_ctl, 0660},     {"events", k_events, 0444},
    {"metrics", k_metrics, 0444}, {"queue", k_queue, 0444}, {"users", k_usersdir, srv9p::dmdir | 0555},
    {"nodes", k_nodesdir, srv9p::dmdir | 0555}, {"jobs", k_jobsdir, srv9p::dmdir | 0555},
    // Written once by a joining node (galaxy-node --join): the answer turns the connection
    // around (write()). Who may join is checked at open and write (scheduler::may_join),
    // so that a refused user reads why rather than "permission denied".
    {"join", k_join, 0222},
};
constexpr dirtab_entry clone_entry{"clone", k_clone, 0666};
// A job's files belong to its owner and to the group admin_group, whose members are the
// scheduler's admins (in_group), so only they may change the job, read its spec (the ctl:
// env!) or its output (design: "Security"). status and wait are for everyone, as squeue.
constexpr dirtab_entry job_tab[] = {
    {"ctl", k_jctl, 0660},       {"status", k_jstatus, 0444}, {"wait", k_jwait, 0444},
    {"stdout", k_jstdout, 0440}, {"stderr", k_jstderr, 0440}, {"out", k_jout, srv9p::dmdir | 0550},
};

std::uint16_t kind_of(const dir& d) { return srv9p::qkind(d.qid.path); }
std::uint64_t inst_of(const dir& d) { return srv9p::qinstance(d.qid.path); }

std::uint64_t job_key(std::uint64_t id, std::uint16_t k) {
  return id * 4 + (k == k_jwait ? 1 : k == k_jstdout ? 2 : 3);
}


std::optional<std::uint64_t> to_number(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::vector<std::string> split(const std::string& path) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < path.size()) {
    auto slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    if (slash > start) out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

std::string child_path(const std::string& parent, std::string_view name) {
  if (name == "..") {
    auto slash = parent.rfind('/');
    return slash == std::string::npos ? "" : parent.substr(0, slash);
  }
  if (name == ".") return parent;
  return parent.empty() ? std::string(name) : parent + "/" + std::string(name);
}

// Per-open state of ctl files (clone is a job's ctl too).
struct ctl_open : srv9p::open_state {
  std::uint64_t job = 0;  // 0 for /ctl
  ctl::line_buffer lines;
};
// An open fid on a node, for a relayed file or a running job's output.
struct node_open : srv9p::open_state {
  std::shared_ptr<node_conn> conn;
  std::uint32_t fid = srv9p::nofid;
  std::string node;
  std::uint64_t relay = 0;  // relay_ index of the file (relayed files)
  relay_slot held;          // the fid's place in its user's relay quota
  // A relayed ctl file (the node's ctl, clone, task/N/ctl) opened for writing is written
  // by lines (sched_tree::relay_write): the scheduler frames them with the client's rule
  // (ctl::line_buffer, with the client's largest write, not its own connection's), and the
  // node gets whole lines ended by newlines. A line the client left unfinished reaches the
  // node at the client's Tclunk, and never if the client hangs up. Null for other files.
  std::unique_ptr<ctl::line_buffer> lines;
  ~node_open() override {
    if (conn && fid != srv9p::nofid && conn->connected()) {
      auto c = conn;
      std::uint32_t f = fid;
      c->client().send(srv9p::tclunk{f}, [c, f](fsclient::client::reply) { c->client().release_fid(f); });
    }
  }
};

}  // namespace

std::expected<relay_slot, std::string> relay_quota::take(what w, const std::string& user, const std::string& node,
                                                         std::size_t n) {
  std::lock_guard lock(mu_);
  auto& mine = users_[{user, node}];
  auto& all = nodes_[node];
  std::size_t user_limit = w == what::fids ? limits_.fids_per_user : limits_.requests_per_user;
  std::size_t node_limit = w == what::fids ? limits_.fids_total : limits_.requests_total;
  std::string refused;
  if (mine.of(w) + n > user_limit) {
    refused = w == what::fids ? fmt::format("relay limit: {} has {} files open on node {}", user, mine.of(w), node)
                              : fmt::format("relay limit: {} has {} requests outstanding on node {}", user, mine.of(w), node);
  } else if (all.of(w) + n > node_limit) {
    refused = fmt::format("relay limit: node {} has {} relayed {} for all users", node, all.of(w),
                          w == what::fids ? "files open" : "requests outstanding");
  }
  if (!refused.empty()) {
    if (mine.fids == 0 && mine.requests == 0) users_.erase({user, node});
    if (all.fids == 0 && all.requests == 0) nodes_.erase(node);
    return std::unexpected(std::move(refused));
  }
  mine.of(w) += n;
  all.of(w) += n;
  return std::make_shared<slot>(shared_from_this(), w, user, node, n);
}

std::size_t relay_quota::held(what w, const std::string& user, const std::string& node) {
  std::lock_guard lock(mu_);
  auto it = users_.find({user, node});
  return it == users_.end() ? 0 : it->second.of(w);
}

void relay_quota::give_back(what w, const std::string& user, const std::string& node, std::size_t n) {
  std::lock_guard lock(mu_);
  // A slot gives back only what it took, so both entries exist and hold at least n.
  auto u = users_.find({user, node});
  auto a = nodes_.find(node);
  u->second.of(w) -= n;
  a->second.of(w) -= n;
  if (u->second.fids == 0 && u->second.requests == 0) users_.erase(u);
  if (a->second.fids == 0 && a->second.requests == 0) nodes_.erase(a);
}

sched_tree::sched_tree(std::size_t event_backlog, relay_limits limits)
    : start_unix_s_(static_cast<std::uint32_t>(::time(nullptr))),
      quota_(std::make_shared<relay_quota>(limits)), events_(event_backlog) {}

relay_slot sched_tree::take(relay_quota::what w, const request& r, const std::string& node, std::size_t n) {
  auto s = quota_->take(w, r.uname(), node, n);
  if (!s) {
    r.error(s.error());
    return nullptr;
  }
  return std::move(*s);
}
sched_tree::~sched_tree() = default;

scheduler::hooks sched_tree::make_hooks() {
  return scheduler::hooks{
      .changed = [this](const job& j) { job_changed(j); },
      .event = [this](std::string line) { events_.post(std::move(line)); },
  };
}

// ---- Parking ---------------------------------------------------------------------------

void sched_tree::park(std::uint64_t key, request r) { parked_.park(key, std::move(r)); }

void sched_tree::wake(std::uint64_t key) {
  parked_.wake(key, [this](const request& r) { read(r); });  // serves it, or parks it again
}

void sched_tree::job_changed(const job& j) {
  std::uint64_t id = j.rec.id;
  // Serve from a fresh turn: the scheduler may be in the middle of a change.
  asio::post(sched_->io(), [this, id] {
    wake(job_key(id, k_jwait));
    wake(job_key(id, k_jstdout));
    wake(job_key(id, k_jstderr));
  });
}

// ---- Names -----------------------------------------------------------------------------

dir sched_tree::job_file(std::uint16_t k, const job& j) const {
  if (k == k_jdir) {
    dir d = srv9p::dirtab_dir({"", k_jdir, srv9p::dmdir | 0555}, j.rec.id, j.rec.owner, admin_group);
    d.name = std::to_string(j.rec.array != 0 ? j.rec.index : j.rec.id);  // a task of an array: jobs/J/INDEX
    d.mtime = d.atime = static_cast<std::uint32_t>(j.created_ms / 1000);
    return d;
  }
  for (const auto& e : job_tab) {
    if (e.kind == k) {
      dir d = srv9p::dirtab_dir(e, j.rec.id, j.rec.owner, admin_group);
      std::int64_t t = j.rec.ended_ms ? j.rec.ended_ms : j.rec.started_ms ? j.rec.started_ms : j.created_ms;
      d.mtime = d.atime = static_cast<std::uint32_t>(t / 1000);
      return d;
    }
  }
  return {};
}

std::uint64_t sched_tree::user_id(std::string_view user) {
  auto [it, added] = user_ids_.emplace(std::string(user), users_.size());
  if (added) users_.emplace_back(user);
  return it->second;
}

std::uint64_t sched_tree::relay_id(const std::string& node, const std::string& path) {
  std::string key = node + '\0' + path;
  auto [it, added] = relay_ids_.emplace(key, relay_.size());
  if (added) relay_.push_back(relay_entry{node, path});
  return it->second;
}

dir sched_tree::relay_dir(std::uint64_t id, dir d) const {
  d.qid.path = srv9p::qpath(k_relay, id);
  return d;
}

std::uint64_t sched_tree::disk_id(const std::string& path, std::uint64_t job) {
  auto [it, added] = disk_ids_.emplace(path, disk_.size());
  if (added) disk_.push_back(disk_entry{path, job});
  return it->second;
}

std::expected<dir, std::string> sched_tree::disk_dir(std::uint64_t id) const {
  if (id >= disk_.size()) return std::unexpected(std::string(err::not_found));
  const auto& e = disk_[id];
  struct ::stat st{};
  if (::lstat(e.path.c_str(), &st) != 0) return std::unexpected(std::string(err::not_found));
  job* j = sched_->find(e.job);
  bool is_dir = S_ISDIR(st.st_mode);
  dir d;
  d.qid = srv9p::qid{static_cast<std::uint8_t>(is_dir ? srv9p::qtdir : srv9p::qtfile),
                     static_cast<std::uint32_t>(st.st_mtime), srv9p::qpath(k_disk, id)};
  d.mode = is_dir ? (srv9p::dmdir | 0550u) : 0440u;
  d.length = is_dir ? 0 : static_cast<std::uint64_t>(st.st_size);
  d.name = fs::path(e.path).filename().string();
  d.uid = j ? j->rec.owner : sched_->admin();
  d.gid = std::string(admin_group);
  d.muid = d.uid;
  d.atime = static_cast<std::uint32_t>(st.st_atime);
  d.mtime = static_cast<std::uint32_t>(st.st_mtime);
  return d;
}

bool sched_tree::in_group(std::string_view uname, std::string_view gid) const {
  if (gid == admin_group) return sched_ != nullptr && sched_->is_admin(uname);
  return uname == gid;
}

dir sched_tree::stamp(dir d) const {
  if (d.mtime == 0) d.mtime = start_unix_s_;
  if (d.atime == 0) d.atime = d.mtime;
  return d;
}

std::expected<dir, std::string> sched_tree::attach(std::string_view, std::string_view aname) {
  if (!aname.empty()) return std::unexpected(std::string(err::not_found));
  return stamp(srv9p::dirtab_dir({"/", k_root, srv9p::dmdir | 0555}, 0, sched_->admin(), admin_group));
}

std::expected<dir, std::string> sched_tree::walk1(const dir& parent, std::string_view name, std::string_view uname) {
  auto d = walk1_unstamped(parent, name, uname);
  if (d) *d = stamp(std::move(*d));
  return d;
}

std::expected<std::vector<dir>, std::string> sched_tree::list(const dir& d, std::string_view uname) {
  auto out = list_unstamped(d, uname);
  if (out) {
    for (auto& e : *out) e = stamp(std::move(e));
  }
  return out;
}

std::expected<dir, std::string> sched_tree::walk1_unstamped(const dir& parent, std::string_view name, std::string_view) {
  const std::string& admin = sched_->admin();
  switch (kind_of(parent)) {
    case k_root:
      return srv9p::dirtab_walk(root_tab, name, 0, admin, admin_group);
    case k_usersdir: {
      auto users = sched_->users();
      if (std::find(users.begin(), users.end(), name) == users.end()) return std::unexpected(std::string(err::not_found));
      dir d = srv9p::dirtab_dir({"", k_user, 0444}, user_id(name), std::string(name), admin_group);
      d.name = std::string(name);
      return d;
    }
    case k_nodesdir: {
      node_link* n = sched_->find_node(name);
      if (n == nullptr || !n->up()) return std::unexpected(std::string(err::not_found));
      dir d = srv9p::dirtab_dir({"", k_relay, srv9p::dmdir | 0555}, relay_id(std::string(name), ""), admin, admin_group);
      d.name = std::string(name);
      return d;
    }
    case k_jobsdir: {
      if (name == "clone") return srv9p::dirtab_dir(clone_entry, 0, admin, admin_group);
      auto n = to_number(name);
      job* j = n ? sched_->find(*n) : nullptr;
      // The tasks of an array live in its directory, jobs/J/INDEX, not here.
      if (j == nullptr || j->rec.array != 0) return std::unexpected(std::string(err::not_found));
      return job_file(k_jdir, *j);
    }
    case k_jdir: {
      job* j = sched_->find(inst_of(parent));
      if (j == nullptr) return std::unexpected(std::string(err::not_found));
      for (const auto& e : job_tab) {
        if (e.name == name) return job_file(e.kind, *j);
      }
      auto index = to_number(name);
      if (index && *index < j->tasks.size() && std::to_string(*index) == name) {
        if (job* t = sched_->find(j->tasks[*index])) return job_file(k_jdir, *t);
      }
      return std::unexpected(std::string(err::not_found));
    }
    case k_jout:
    case k_disk: {
      std::string base;
      std::uint64_t job = inst_of(parent);
      if (kind_of(parent) == k_disk) {
        if (inst_of(parent) >= disk_.size()) return std::unexpected(std::string(err::not_found));
        base = disk_[inst_of(parent)].path;
        job = disk_[inst_of(parent)].job;
      } else {
        base = (sched_->spool(job) / "out").string();
      }
      std::string path = base + "/" + std::string(name);
      struct ::stat st{};
      if (::lstat(path.c_str(), &st) != 0 || S_ISLNK(st.st_mode)) return std::unexpected(std::string(err::not_found));
      return disk_dir(disk_id(path, job));
    }
    case k_relay: {
      // Below nodes/NAME the relay answers walks (walk()); ".." is only path arithmetic,
      // so it is answered here: the parent below the node, or nodes/ from the node's root.
      if (name != "..") return std::unexpected(std::string(err::not_found));
      const relay_entry e = relay_[inst_of(parent)];
      if (e.path.empty()) {
        for (const auto& t : root_tab) {
          if (t.kind == k_nodesdir) return srv9p::dirtab_dir(t, 0, admin, admin_group);
        }
      }
      std::string up = child_path(e.path, "..");
      dir d;
      d.qid.type = srv9p::qtdir;
      d.mode = srv9p::dmdir | 0555;
      d.name = up.empty() ? e.node : up.substr(up.rfind('/') + 1);
      d.uid = d.muid = admin;
      d.gid = std::string(admin_group);
      return relay_dir(relay_id(e.node, up), std::move(d));
    }
    default:
      return std::unexpected(std::string(err::not_found));
  }
}

std::expected<std::vector<dir>, std::string> sched_tree::list_unstamped(const dir& d, std::string_view uname) {
  const std::string& admin = sched_->admin();
  std::vector<dir> out;
  switch (kind_of(d)) {
    case k_root:
      return srv9p::dirtab_list(root_tab, 0, admin, admin_group);
    case k_usersdir:
      for (const auto& u : sched_->users()) {
        auto c = walk1(d, u, uname);
        if (c) out.push_back(std::move(*c));
      }
      return out;
    case k_nodesdir:
      for (const auto& [name, l] : sched_->nodes()) {
        if (!l->up()) continue;  // a dead node is not listed, so no reader waits on it
        auto c = walk1(d, name, uname);
        if (c) out.push_back(std::move(*c));
      }
      return out;
    case k_jobsdir:
      out.push_back(srv9p::dirtab_dir(clone_entry, 0, admin, admin_group));
      for (const auto& [id, j] : sched_->jobs()) {
        if (j->rec.array == 0) out.push_back(job_file(k_jdir, *j));
      }
      return out;
    case k_jdir: {
      job* j = sched_->find(inst_of(d));
      if (j == nullptr) return std::unexpected(std::string(err::not_found));
      for (const auto& e : job_tab) out.push_back(job_file(e.kind, *j));
      for (auto id : j->tasks) {
        if (job* t = sched_->find(id)) out.push_back(job_file(k_jdir, *t));
      }
      return out;
    }
    case k_jout:
    case k_disk: {
      std::string base = kind_of(d) == k_disk ? (inst_of(d) < disk_.size() ? disk_[inst_of(d)].path : "")
                                              : (sched_->spool(inst_of(d)) / "out").string();
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(base, ec)) {
        auto c = walk1(d, e.path().filename().string(), uname);
        if (c) out.push_back(std::move(*c));
      }
      return out;
    }
    default:
      return std::unexpected(std::string(err::not_dir));
  }
}

std::expected<dir, std::string> sched_tree::stat1(const dir& f) {
  switch (kind_of(f)) {
    case k_jdir: case k_jctl: case k_jstatus: case k_jwait: case k_jstdout: case k_jstderr: case k_jout: {
      job* j = sched_->find(inst_of(f));
      if (j == nullptr) return std::unexpected(std::string(err::not_found));
      dir d = job_file(kind_of(f), *j);
      if (j->collected && (kind_of(f) == k_jstdout || kind_of(f) == k_jstderr)) {
        struct ::stat st{};
        auto p = sched_->spool(j->rec.id) / (kind_of(f) == k_jstdout ? "stdout" : "stderr");
        if (::stat(p.c_str(), &st) == 0) d.length = static_cast<std::uint64_t>(st.st_size);
      }
      return d;
    }
    case k_disk:
      return disk_dir(inst_of(f));
    case k_relay: {
      // Below nodes/NAME the node judges: every relayed request is made under the user's
      // own attach, and the dirs the relay walked through are made up (only the last one
      // is the node's stat). So the framework's own checks (open, create, the parent's
      // write for remove) let everything through to the node; Tstat is relayed, so
      // clients see the node's modes.
      dir d = f;
      d.mode |= 0777;
      return d;
    }
    default:
      return f;
  }
}

// ---- The relay: walk ---------------------------------------------------------------------

void sched_tree::walk(request r) {
  const auto& names = r.get<srv9p::twalk>().wnames;
  const dir start = r.fid().file();
  bool relayed = kind_of(start) == k_relay;
  bool dotdot = std::find(names.begin(), names.end(), "..") != names.end() ||
                std::find(names.begin(), names.end(), ".") != names.end();
  if (!relayed && (dotdot || (kind_of(start) != k_root && kind_of(start) != k_nodesdir))) return tree::walk(std::move(r));
  if (!relayed && kind_of(start) == k_root && names.front() != "nodes") return tree::walk(std::move(r));
  // Inside a node, a walk that is all ".." (a shell's cd ..) is path arithmetic (walk1);
  // ".." mixed with names below goes to the node, which cannot climb above its root.
  if (relayed && std::all_of(names.begin(), names.end(), [](const std::string& n) { return n == ".."; })) {
    return tree::walk(std::move(r));
  }

  std::string uname = r.uname();
  std::vector<dir> walked;
  dir cur = start;
  std::size_t i = 0;
  while (i < names.size() && kind_of(cur) != k_relay) {
    if (!permitted(cur, uname, 1)) break;
    auto child = walk1(cur, names[i], uname);
    if (!child) {
      if (walked.empty()) return r.error(child.error());
      return r.respond_walk(std::move(walked));
    }
    cur = *child;
    walked.push_back(std::move(*child));
    ++i;
  }
  if (i == names.size()) {
    if (walked.empty()) return r.error(err::perm);
    return r.respond_walk(std::move(walked));
  }
  // The rest is the node's: one Twalk from its root along the whole path, and a Tstat of
  // the file reached, whose permissions the framework checks at open.
  const relay_entry e = relay_[inst_of(cur)];
  node_link* n = sched_->find_node(e.node);
  if (n == nullptr || !n->up()) {
    if (walked.empty()) return r.error(fmt::format("node {} is down", e.node));
    return r.respond_walk(std::move(walked));
  }
  std::vector<std::string> full = split(e.path);
  std::size_t skip = full.size();
  full.insert(full.end(), names.begin() + static_cast<std::ptrdiff_t>(i), names.end());
  if (full.size() > srv9p::maxwelem) return r.error(err::too_many_wnames);
  auto held = take(relay_quota::what::requests, r, e.node, 3);
  if (!held) return;
  n->batch(uname,
           [full](node_conn& c, std::uint32_t root) {
             std::uint32_t f = c.client().alloc_fid();
             return std::vector<srv9p::message>{srv9p::twalk{root, f, full}, srv9p::tstat{f}, srv9p::tclunk{f}};
           },
           [this, r, walked = std::move(walked), e, full, skip, held](node_link::replies rep) mutable {
             if (rep.empty() || !rep[0]) {
               std::string why = rep.empty() ? std::string(err::io) : rep[0].error();
               if (walked.empty()) return r.error(why);
               return r.respond_walk(std::move(walked));
             }
             const auto& qids = std::get<srv9p::rwalk>(*rep[0]).qids;
             std::string path = e.path;
             for (std::size_t k = skip; k < qids.size(); ++k) {
               path = child_path(path, full[k]);
               dir d;
               d.qid = qids[k];
               d.name = full[k];
               d.mode = (qids[k].type & srv9p::qtdir) ? (srv9p::dmdir | 0555) : 0444;
               d.uid = d.muid = sched_->admin();
               d.gid = std::string(admin_group);
               if (k + 1 == full.size() && rep.size() > 1 && rep[1]) {
                 d = std::get<srv9p::rstat>(*rep[1]).stat;
                 d.name = full[k];
               }
               walked.push_back(stamp(relay_dir(relay_id(e.node, path), std::move(d))));
             }
             if (walked.empty()) return r.error(err::not_found);
             r.respond_walk(std::move(walked));
           });
}

// ---- Open, create, remove, stat, clunk -----------------------------------------------------

void sched_tree::relay_open(request r, const relay_entry& e) {
  node_link* n = sched_->find_node(e.node);
  auto conn = n ? n->conn() : nullptr;
  if (!conn) return r.error(fmt::format("node {} is down", e.node));
  std::uint8_t mode = r.get<srv9p::topen>().mode;
  auto fid_held = take(relay_quota::what::fids, r, e.node, 1);
  if (!fid_held) return;
  auto held = take(relay_quota::what::requests, r, e.node, 2);
  if (!held) return;
  auto nf = std::make_shared<std::uint32_t>(srv9p::nofid);
  n->batch(r.uname(),
           [path = split(e.path), mode, nf](node_conn& c, std::uint32_t root) {
             *nf = c.client().alloc_fid();
             return std::vector<srv9p::message>{srv9p::twalk{root, *nf, path}, srv9p::topen{*nf, mode}};
           },
           [this, r, conn, nf, e, mode, fid_held, held](node_link::replies rep) {
             auto st = std::make_unique<node_open>();
             st->conn = conn;
             st->node = e.node;
             st->held = fid_held;
             if (rep.size() == 2 && rep[0]) st->fid = *nf;  // clunked by ~node_open
             for (auto& x : rep) {
               if (!x) return r.error(x.error());
             }
             if (r.done()) return;
             auto q = std::get<srv9p::ropen>(*rep[1]).qid;
             st->relay = relay_id(e.node, e.path);
             std::string_view base = std::string_view(e.path).substr(e.path.rfind('/') + 1);
             if ((base == "ctl" || base == "clone") && (mode & 3) != srv9p::oread) {
               st->lines = std::make_unique<ctl::line_buffer>();
             }
             r.fid().aux = std::move(st);
             q.path = srv9p::qpath(k_relay, relay_id(e.node, e.path));
             r.respond(srv9p::ropen{q, 0});
           });
}

// Sends text to a relayed ctl file's node fid in writes of at most the node connection's
// largest (iounit), one after another: every one but the last is exactly that size, which
// the node takes as a piece of a longer line (ctl::line_buffer::feed_write), and text
// ends in a newline. done gets the first error, or success after the last write.
void sched_tree::relay_lines(std::shared_ptr<node_conn> conn, std::uint32_t fid, std::string text,
                             std::size_t off, std::function<void(std::expected<void, std::string>)> done) {
  std::size_t chunk = std::min<std::size_t>(text.size() - off, conn->client().iounit());
  std::string piece = text.substr(off, chunk);
  conn->client().send(srv9p::twrite{fid, 0, std::move(piece)},
                      [this, conn, fid, text = std::move(text), off, chunk, done = std::move(done)](
                          fsclient::client::reply rep) mutable {
                        asio::post(sched_->io(), [this, conn, fid, text = std::move(text), off, chunk,
                                                  done = std::move(done), rep = std::move(rep)]() mutable {
                          if (!rep) return done(std::unexpected(rep.error()));
                          if (off + chunk == text.size()) return done({});
                          relay_lines(conn, fid, std::move(text), off + chunk, std::move(done));
                        });
                      });
}

void sched_tree::open(request r) {
  auto& f = r.fid();
  std::uint64_t inst = inst_of(f.file());
  switch (kind_of(f.file())) {
    case k_relay:
      return relay_open(std::move(r), relay_[inst]);
    case k_clone: {
      // Plan 9's clone: the open allocates the job; the open file is its ctl.
      job& j = sched_->create_job(r.uname());
      auto st = std::make_unique<ctl_open>();
      st->job = j.rec.id;
      f.aux = std::move(st);
      break;
    }
    case k_ctl:
    case k_jctl: {
      auto st = std::make_unique<ctl_open>();
      st->job = kind_of(f.file()) == k_ctl ? 0 : inst;
      f.aux = std::move(st);
      break;
    }
    case k_events:
      events_.open(f);
      break;
    case k_join:
      if (auto ok = sched_->may_join(f.who().uid, f.uname()); !ok) return r.error(ok.error());
      break;
    default:
      break;
  }
  auto now = stat1(f.file());
  r.respond(srv9p::ropen{now ? now->qid : f.file().qid, 0});
}

void sched_tree::create(request r) {
  const dir& parent = r.fid().file();
  if (kind_of(parent) != k_relay) return r.error(err::no_create);
  const relay_entry e = relay_[inst_of(parent)];
  node_link* n = sched_->find_node(e.node);
  auto conn = n ? n->conn() : nullptr;
  if (!conn) return r.error(fmt::format("node {} is down", e.node));
  const auto& c = r.get<srv9p::tcreate>();
  auto fid_held = take(relay_quota::what::fids, r, e.node, 1);
  if (!fid_held) return;
  auto held = take(relay_quota::what::requests, r, e.node, 2);
  if (!held) return;
  auto nf = std::make_shared<std::uint32_t>(srv9p::nofid);
  // The create goes to the fid just walked on the node connection, never to the client's
  // fid number: that names nothing of ours there, or another user's fid (the connection
  // is shared by every user).
  n->batch(r.uname(),
           [path = split(e.path), c, nf](node_conn& nc, std::uint32_t root) {
             *nf = nc.client().alloc_fid();
             return std::vector<srv9p::message>{srv9p::twalk{root, *nf, path},
                                                srv9p::tcreate{*nf, c.name, c.perm, c.mode}};
           },
           [this, r, conn, nf, e, c, fid_held, held](node_link::replies rep) {
             auto st = std::make_unique<node_open>();
             st->conn = conn;
             st->node = e.node;
             st->held = fid_held;
             // The walk made the fid only if it reached the whole path (walk(5)); else the
             // number goes back to the pool unused.
             bool walked = rep.size() == 2 && rep[0] && std::get<srv9p::rwalk>(*rep[0]).qids.size() == split(e.path).size();
             if (walked) {
               st->fid = *nf;  // clunked by ~node_open
             } else if (*nf != srv9p::nofid && conn->connected()) {
               conn->client().release_fid(*nf);
             }
             for (auto& x : rep) {
               if (!x) return r.error(x.error());
             }
             if (r.done()) return;
             std::string path = child_path(e.path, c.name);
             dir d;
             d.qid = std::get<srv9p::rcreate>(*rep[1]).qid;
             d.name = c.name;
             d.mode = c.perm;
             d.uid = d.muid = r.uname();
             d.gid = std::string(admin_group);
             st->relay = relay_id(e.node, path);
             r.fid().aux = std::move(st);
             r.respond_create(relay_dir(relay_id(e.node, path), std::move(d)));
           });
}

void sched_tree::remove(request r) {
  const dir& f = r.fid().file();
  if (kind_of(f) == k_relay) {
    const relay_entry e = relay_[inst_of(f)];
    node_link* n = sched_->find_node(e.node);
    if (n == nullptr || !n->up() || e.path.empty()) return r.error(n ? err::no_remove : "node is down");
    auto held = take(relay_quota::what::requests, r, e.node, 2);
    if (!held) return;
    return n->batch(r.uname(),
                    [path = split(e.path)](node_conn& c, std::uint32_t root) {
                      std::uint32_t nf = c.client().alloc_fid();
                      return std::vector<srv9p::message>{srv9p::twalk{root, nf, path}, srv9p::tremove{nf}};
                    },
                    [r, held](node_link::replies rep) {
                      for (auto& x : rep) {
                        if (!x) return r.error(x.error());
                      }
                      r.respond(srv9p::rremove{});
                    });
  }
  job* j = job_of(f);
  if (j == nullptr) return r.error(kind_of(f) == k_jdir || kind_of(f) == k_disk ? err::not_found : err::no_remove);
  // A task of an array goes with its array job: its directory is one of the array's files.
  if (j->rec.array != 0) {
    if (job* a = sched_->find(j->rec.array)) j = a;
  }
  if (kind_of(f) == k_jdir && inst_of(f) == j->rec.id) {
    // jobs/N itself is the ctl command rm.
    return sched_->job_ctl(*j, "rm", r.uname(), [r](std::expected<void, std::string> ok) {
      if (!ok) return r.error(ok.error());
      r.respond(srv9p::rremove{});
    });
  }
  // One of its files: it goes with jobs/N (rm -r), so nothing is done, if jobs/N could go.
  if (!is_final(j->rec.state) && j->rec.state != job_state::new_) {
    return r.error(fmt::format("job {} has not ended: kill it first", j->rec.id));
  }
  r.respond(srv9p::rremove{});
}

job* sched_tree::job_of(const dir& f) const {
  switch (kind_of(f)) {
    case k_jdir: case k_jctl: case k_jstatus: case k_jwait: case k_jstdout: case k_jstderr: case k_jout:
      return sched_->find(inst_of(f));
    case k_disk:
      return inst_of(f) < disk_.size() ? sched_->find(disk_[inst_of(f)].job) : nullptr;
    default:
      return nullptr;
  }
}

bool sched_tree::may_remove(const srv9p::fid& f, const dir& parent) const {
  switch (kind_of(f.file())) {
    case k_jdir: case k_jctl: case k_jstatus: case k_jwait: case k_jstdout: case k_jstderr: case k_jout: case k_disk: {
      // The job's owner and the admins, as for its ctl (scheduler::job_ctl says it again).
      job* j = job_of(f.file());
      return j != nullptr && (f.uname() == j->rec.owner || sched_->is_admin(f.uname()));
    }
    default:
      return tree::may_remove(f, parent);
  }
}

void sched_tree::stat(request r) {
  const dir& f = r.fid().file();
  if (kind_of(f) != k_relay) return tree::stat(std::move(r));
  const relay_entry e = relay_[inst_of(f)];
  node_link* n = sched_->find_node(e.node);
  if (n == nullptr || !n->up()) return r.error(fmt::format("node {} is down", e.node));
  std::string name = f.name;
  auto held = take(relay_quota::what::requests, r, e.node, 3);
  if (!held) return;
  n->batch(r.uname(),
           [path = split(e.path)](node_conn& c, std::uint32_t root) {
             std::uint32_t nf = c.client().alloc_fid();
             return std::vector<srv9p::message>{srv9p::twalk{root, nf, path}, srv9p::tstat{nf}, srv9p::tclunk{nf}};
           },
           [this, r, e, name, held](node_link::replies rep) {
             if (rep.size() < 2 || !rep[0]) return r.error(rep.empty() || rep[0] ? std::string(err::io) : rep[0].error());
             if (!rep[1]) return r.error(rep[1].error());
             dir d = std::get<srv9p::rstat>(*rep[1]).stat;
             d.name = name;  // the node's root calls itself "/"
             r.respond(srv9p::rstat{relay_dir(relay_id(e.node, e.path), std::move(d))});
           });
}

void sched_tree::wstat(request r) {
  const dir& f = r.fid().file();
  if (kind_of(f) != k_relay) return tree::wstat(std::move(r));
  const relay_entry e = relay_[inst_of(f)];
  node_link* n = sched_->find_node(e.node);
  if (n == nullptr || !n->up()) return r.error(fmt::format("node {} is down", e.node));
  srv9p::dir want = r.get<srv9p::twstat>().stat;
  auto held = take(relay_quota::what::requests, r, e.node, 3);
  if (!held) return;
  n->batch(r.uname(),
           [path = split(e.path), want](node_conn& c, std::uint32_t root) {
             std::uint32_t nf = c.client().alloc_fid();
             return std::vector<srv9p::message>{srv9p::twalk{root, nf, path}, srv9p::twstat{nf, want}, srv9p::tclunk{nf}};
           },
           [r, held](node_link::replies rep) {
             for (std::size_t i = 0; i < 2 && i < rep.size(); ++i) {
               if (!rep[i]) return r.error(rep[i].error());
             }
             r.respond(srv9p::rwstat{});
           });
}

void sched_tree::clunk(srv9p::fid& f) {
  if (auto* st = dynamic_cast<node_open*>(f.aux.get())) {
    // A relayed ctl file's unfinished line goes to the node at the client's Tclunk, ended
    // by a newline, before ~node_open's Tclunk of the node fid (sent after it on the same
    // connection); its answer has nobody to go to. At a hang-up it is dropped.
    if (!st->lines || !f.clunked_by_client() || !st->conn || st->fid == srv9p::nofid) return;
    std::string rest = st->lines->take_rest();
    if (rest.find_first_not_of(" \t\r") == std::string::npos) return;
    rest += "\n";
    // All at once, in order (relay_lines waits for each answer, and the Tclunk would
    // overtake it): the node feeds its line buffer in the order the writes arrive.
    std::size_t chunk = st->conn->client().iounit();
    for (std::size_t off = 0; off < rest.size(); off += chunk) {
      st->conn->client().send(srv9p::twrite{st->fid, 0, rest.substr(off, chunk)}, [](fsclient::client::reply) {});
    }
    return;
  }
  auto* c = dynamic_cast<ctl_open*>(f.aux.get());
  if (c == nullptr) return;
  // A last line without a newline (echo -n) ends at the client's Tclunk; its error has
  // nobody to go to. At a hang-up it is dropped (node/tree.cpp, node_tree::clunk).
  std::string rest = c->lines.take_rest();
  if (!f.clunked_by_client() || rest.find_first_not_of(" \t\r") == std::string::npos) return;
  auto ignore = [](std::expected<void, std::string>) {};
  if (c->job == 0) return sched_->admin_ctl(rest, f.uname(), ignore);
  if (job* j = sched_->find(c->job)) sched_->job_ctl(*j, rest, f.uname(), ignore);
}

// ---- Read --------------------------------------------------------------------------------

void sched_tree::relay_read(request r) {
  auto* st = dynamic_cast<node_open*>(r.fid().aux.get());
  if (st == nullptr || st->fid == srv9p::nofid) return r.error(err::not_open);
  const auto& m = r.get<srv9p::tread>();
  bool is_dir = r.fid().is_dir();
  auto conn = st->conn;
  std::string node = st->node;
  std::uint64_t relay = st->relay;
  auto held = take(relay_quota::what::requests, r, node, 1);
  if (!held) return;
  auto ticket = conn->client().send_ticket(
      srv9p::tread{st->fid, m.offset, m.count}, [this, r, is_dir, node, relay, held](fsclient::client::reply rep) {
        asio::post(sched_->io(), [this, r, rep = std::move(rep), is_dir, node, relay, held]() mutable {
          if (!rep) return r.error(rep.error());
          auto data = std::move(std::get<srv9p::rread>(*rep).data);
          if (is_dir) {
            // Renumber the qids of the entries; each entry keeps its size, so the offsets
            // the node gave stay right.
            std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
            auto dirs = srv9p::decode_dirs(bytes);
            if (!dirs) return r.error(dirs.error());
            std::vector<std::uint8_t> out;
            std::string base = relay_[relay].path;
            for (auto& d : *dirs) {
              std::string name = d.name;
              srv9p::encode_dir(relay_dir(relay_id(node, child_path(base, name)), std::move(d)), out);
            }
            data.assign(out.begin(), out.end());
          }
          r.respond(srv9p::rread{std::move(data)});
        });
      });
  // By ticket, not tag: the tag may belong to another request by the time the flush comes.
  r.on_flush([conn, ticket] { conn->client().flush(ticket); });
}

void sched_tree::serve_output(request r, job& j, bool is_err) {
  const auto& m = r.get<srv9p::tread>();
  if (j.collected) {
    auto path = sched_->spool(j.rec.id) / (is_err ? "stderr" : "stdout");
    std::string data;
    if (int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
      data.resize(m.count);
      ssize_t n = ::pread(fd, data.data(), m.count, static_cast<off_t>(m.offset));
      ::close(fd);
      if (n < 0) return r.error(err::io);
      data.resize(static_cast<std::size_t>(n));
    }
    return r.respond(srv9p::rread{std::move(data)});
  }
  std::uint64_t key = job_key(j.rec.id, is_err ? k_jstderr : k_jstdout);
  node_link* n = j.rec.state == job_state::running ? sched_->find_node(j.rec.node) : nullptr;
  auto conn = n ? n->conn() : nullptr;
  if (!conn || j.rec.task == 0) return park(key, std::move(r));  // not running yet, or between attempts
  auto* st = dynamic_cast<node_open*>(r.fid().aux.get());
  if (st != nullptr && st->conn == conn && st->fid != srv9p::nofid) return relay_read(std::move(r));
  // First read while the job runs: open the task's file on its node, then read it.
  std::uint64_t id = j.rec.id;
  std::uint64_t task = j.rec.task;
  // The reader's quota, not the owner's: an admin reading many jobs holds these fids.
  auto fid_held = take(relay_quota::what::fids, r, j.rec.node, 1);
  if (!fid_held) return;
  auto held = take(relay_quota::what::requests, r, j.rec.node, 2);
  if (!held) return;
  auto nf = std::make_shared<std::uint32_t>(srv9p::nofid);
  n->batch(j.rec.owner,
           [task, is_err, nf](node_conn& c, std::uint32_t root) {
             *nf = c.client().alloc_fid();
             return std::vector<srv9p::message>{
                 srv9p::twalk{root, *nf, {"task", std::to_string(task), is_err ? "stderr" : "stdout"}},
                 srv9p::topen{*nf, srv9p::oread}};
           },
           [this, r, conn, nf, id, key, node = j.rec.node, fid_held, held](node_link::replies rep) {
             auto st = std::make_unique<node_open>();
             st->conn = conn;
             st->node = node;
             st->held = fid_held;
             if (rep.size() == 2 && rep[0]) st->fid = *nf;
             bool ok = rep.size() == 2 && rep[0] && rep[1];
             if (r.done()) return;
             if (!ok) {
               // The task went away meanwhile (the job ended or was lost): ask again.
               job* j = sched_->find(id);
               if (j == nullptr) return r.error("job removed");
               return park(key, r);
             }
             r.fid().aux = std::move(st);
             relay_read(r);
           });
}

void sched_tree::read(request r) {
  auto& f = r.fid();
  std::uint64_t inst = inst_of(f.file());
  std::uint16_t k = kind_of(f.file());
  if (k == k_relay) return relay_read(std::move(r));
  if (f.is_dir()) return read_dir(std::move(r));
  switch (k) {
    case k_status:
      return respond_text(r, sched_->cluster_status());
    case k_metrics:
      return respond_text(r, sched_->metrics());
    case k_events:
      return events_.read(std::move(r));
    case k_queue: {
      std::string text;
      for (const job* j : sched_->queue()) {
        // A task of an array by its path below jobs/: J/INDEX.
        std::string id = j->rec.array != 0 ? fmt::format("{}/{}", j->rec.array, j->rec.index) : std::to_string(j->rec.id);
        text += fmt::format("{} {} priority={} cpu_millis={} mem_bytes={} name={}\n", id, ctl::quote(j->rec.owner),
                            j->rec.priority, j->cpu_millis, j->mem_bytes, ctl::quote(j->rec.name.empty() ? "-" : j->rec.name));
      }
      return respond_text(r, text);
    }
    case k_user:
      if (inst >= users_.size()) return r.error(err::not_found);
      return respond_text(r, sched_->user_text(users_[inst]));
    case k_ctl: {
      // The settings, as the commands that would make them.
      std::string text = sched_->cluster_status().find("policy=spread") != std::string::npos ? "policy spread\n" : "policy binpack\n";
      for (const auto& [name, l] : sched_->nodes()) {
        if (!l->joined()) text += fmt::format("node add {} {}\n", name, l->dial());  // a joined node comes by itself
        if (sched_->drained(name)) text += "drain " + name + "\n";
      }
      return respond_text(r, text);
    }
    case k_clone: {
      auto* c = dynamic_cast<ctl_open*>(f.aux.get());
      if (c == nullptr) return r.error(err::not_open);
      return respond_text(r, fmt::format("{}\n", c->job));
    }
    case k_jctl: {
      job* j = sched_->find(inst);
      if (j == nullptr) return r.error("job removed");
      return respond_text(r, j->rec.spec);
    }
    case k_jstatus: {
      job* j = sched_->find(inst);
      if (j == nullptr) return r.error("job removed");
      return respond_text(r, sched_->status_line(*j) + "\n");
    }
    case k_jwait: {
      job* j = sched_->find(inst);
      if (j == nullptr) return r.error("job removed");
      std::string w = sched_->wait_text(*j);
      if (w.empty()) return park(job_key(inst, k_jwait), std::move(r));
      return respond_text(r, w + "\n");
    }
    case k_jstdout:
    case k_jstderr: {
      job* j = sched_->find(inst);
      if (j == nullptr) return r.error("job removed");
      return serve_output(std::move(r), *j, k == k_jstderr);
    }
    case k_disk:
      if (inst >= disk_.size()) return r.error(err::not_found);
      return srv9p::respond_file(r, disk_[inst].path);
    default:
      return r.error(err::perm);
  }
}

// ---- Write -------------------------------------------------------------------------------

void sched_tree::relay_write(request r) {
  auto* st = dynamic_cast<node_open*>(r.fid().aux.get());
  if (st == nullptr || st->fid == srv9p::nofid) return r.error(err::not_open);
  const auto& m = r.get<srv9p::twrite>();
  auto conn = st->conn;
  if (st->lines) {
    // A ctl file: by lines (node_open::lines). A piece is held and answered at once.
    auto lines = st->lines->feed_ctl(m.data, r.max_write());
    if (!lines) return r.error(lines.error());
    auto count = static_cast<std::uint32_t>(m.data.size());
    if (lines->empty()) return r.respond(srv9p::rwrite{count});
    std::string text;
    for (const auto& l : *lines) text += l + "\n";
    auto held = take(relay_quota::what::requests, r, st->node, 1);
    if (!held) return;
    return relay_lines(conn, st->fid, std::move(text), 0, [r, count, held](std::expected<void, std::string> ok) {
      if (!ok) return r.error(ok.error());
      r.respond(srv9p::rwrite{count});
    });
  }
  auto held = take(relay_quota::what::requests, r, st->node, 1);
  if (!held) return;
  auto ticket = conn->client().send_ticket(srv9p::twrite{st->fid, m.offset, m.data}, [this, r, held](fsclient::client::reply rep) {
    asio::post(sched_->io(), [r, rep = std::move(rep), held] {
      if (!rep) return r.error(rep.error());
      r.respond(std::get<srv9p::rwrite>(*rep));
    });
  });
  r.on_flush([conn, ticket] { conn->client().flush(ticket); });
}

// A loop, not a recursion: a line answered at once (most are) goes on to the next in the
// same loop; a line that waits (exec, for the store) ends this loop, and its answer starts
// a new one from the io_context. So neither the stack nor the memory grows with the number
// of lines, and the lines are kept once, in the run.
void sched_tree::run_lines(std::shared_ptr<line_run> run) {
  for (;;) {
    if (run->next == run->lines.size()) {
      return run->r.respond(srv9p::rwrite{static_cast<std::uint32_t>(run->r.get<srv9p::twrite>().data.size())});
    }
    std::string line = std::move(run->lines[run->next++]);
    // Whether the line's success came while its call was still on this stack.
    struct step_state {
      bool in_call = true;
      bool succeeded = false;
    };
    auto step = std::make_shared<step_state>();
    auto cont = [this, run, step](std::expected<void, std::string> ok) {
      if (!ok) return run->r.error(ok.error());  // the first error answers the write
      if (step->in_call) {
        step->succeeded = true;  // the loop goes on
        return;
      }
      run_lines(run);
    };
    if (run->job == 0) {
      sched_->admin_ctl(std::move(line), run->r.uname(), std::move(cont));
    } else if (job* j = sched_->find(run->job)) {
      sched_->job_ctl(*j, std::move(line), run->r.uname(), std::move(cont));
    } else {
      return run->r.error("job removed");
    }
    step->in_call = false;
    if (!step->succeeded) return;  // an error was answered, or the line waits
  }
}

bool sched_tree::hands_off(const dir& f) const { return kind_of(f) == k_join; }

void sched_tree::join_write(request r) {
  // One write, one line (ctl/join.hpp), checked whole before the answer: an error leaves
  // the connection as it was; success answers Rwrite and hands the connection to the
  // scheduler, which from the next byte on is the client of the node's tree.
  auto& f = r.fid();
  if (auto ok = sched_->may_join(f.who().uid, f.uname()); !ok) return r.error(ok.error());
  const auto& data = r.get<srv9p::twrite>().data;
  if (r.get<srv9p::twrite>().offset != 0 || data.size() > 8192) {
    return r.error("join: expected one join line in one write at offset 0");
  }
  auto line = std::string_view(data);
  if (line.ends_with('\n')) line.remove_suffix(1);
  if (line.find('\n') != std::string_view::npos) return r.error("join: expected one join line");
  auto req = ctl::parse_join(line);
  if (!req) return r.error(req.error());
  uid_t uid = *f.who().uid;  // may_join refuses a join without one
  auto ticket = sched_->reserve_join(req->name, uid);
  if (!ticket) return r.error(ticket.error());
  node_info info;
  info.arch = req->arch;
  info.ncpu = req->ncpu;
  info.mem_bytes = req->mem_bytes;
  info.labels = req->labels;
  auto count = static_cast<std::uint32_t>(data.size());
  r.hand_off(srv9p::rwrite{count}, [s = sched_, uid, ticket = std::move(*ticket), req = std::move(*req),
                                     info = std::move(info)](srv9p::handoff h) mutable {
    std::string name = req.name;
    ticket.reset();  // join_node checks the name again, now for good
    s->join_node(std::move(name), uid, std::move(info), h.fd, srv9p::join_binding(req.nonce),
                 [s, n = req.name](std::expected<void, std::string> ok) {
                   if (!ok) s->log_line(fmt::format("node {}: {}", n, ok.error()));
                 });
  });
}

void sched_tree::write(request r) {
  auto& f = r.fid();
  switch (kind_of(f.file())) {
    case k_join:
      return join_write(std::move(r));
    case k_relay:
      return relay_write(std::move(r));
    case k_ctl:
    case k_clone:
    case k_jctl: {
      auto* c = dynamic_cast<ctl_open*>(f.aux.get());
      if (c == nullptr) return r.error(err::not_open);
      // One line after another, each applied before the next is read; the write's answer
      // is the first error (the lines before it stay applied) or success. A write with a
      // line over max_line is refused whole.
      auto lines = c->lines.feed_ctl(r.get<srv9p::twrite>().data, r.max_write());
      if (!lines) return r.error(lines.error());
      auto run = std::make_shared<line_run>(line_run{r, std::move(*lines), 0, c->job});
      return run_lines(std::move(run));
    }
    default:
      return r.error(err::perm);
  }
}

}  // namespace sched
