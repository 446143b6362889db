// ramfs: the example tree (see srv9p/ramfs.hpp). Files and directories are nodes in a
// table keyed by qid.path; a directory maps names to child paths. The two synthetic
// files, /events and /big, have fixed paths at the top of the path space.
#include "srv9p/ramfs.hpp"

#include <algorithm>
#include <ctime>

#include "srv9p/errors.hpp"

namespace srv9p {

namespace {

constexpr std::uint64_t root_path = 0;
constexpr std::uint64_t events_path = ~0ull - 1;
constexpr std::uint64_t big_path = ~0ull - 2;

std::uint32_t now() { return static_cast<std::uint32_t>(std::time(nullptr)); }

}  // namespace

struct ramfs::node {
  dir d;
  std::string data;
  std::uint64_t parent = root_path;
  std::map<std::string, std::uint64_t, std::less<>> children;  // directories only
};

ramfs::ramfs(ramfs_options opts) : opts_(std::move(opts)), events_(opts_.event_backlog) {
  auto root = std::make_unique<node>();
  root->d.qid = qid{qtdir, 0, root_path};
  root->d.mode = dmdir | 0777;
  root->d.name = "/";
  root->d.uid = root->d.gid = root->d.muid = opts_.owner;
  root->d.atime = root->d.mtime = now();
  nodes_.emplace(root_path, std::move(root));
}

ramfs::~ramfs() = default;

ramfs::node* ramfs::find(std::uint64_t path) const {
  auto it = nodes_.find(path);
  return it == nodes_.end() ? nullptr : it->second.get();
}

std::string ramfs::path_of(const node& n) const {
  std::string path = n.d.name;
  for (const node* p = find(n.parent); p != nullptr && p->d.qid.path != root_path; p = find(p->parent)) {
    path = p->d.name + "/" + path;
  }
  return path;
}

std::expected<dir, std::string> ramfs::attach(std::string_view, std::string_view aname) {
  if (!aname.empty()) return std::unexpected(std::string(err::not_found));
  return find(root_path)->d;
}

std::expected<dir, std::string> ramfs::walk1(const dir& parent, std::string_view name, std::string_view) {
  if (parent.qid.path == root_path) {
    if (name == "events") return *stat1(dir{.qid = {qtfile, 0, events_path}});
    if (name == "big" && opts_.big_bytes > 0) return *stat1(dir{.qid = {qtfile, 0, big_path}});
  }
  node* p = find(parent.qid.path);
  if (p == nullptr) return std::unexpected(std::string(err::not_found));
  auto it = p->children.find(name);
  if (it == p->children.end()) return std::unexpected(std::string(err::not_found));
  return find(it->second)->d;
}

std::expected<dir, std::string> ramfs::stat1(const dir& f) {
  if (f.qid.path == events_path || f.qid.path == big_path) {
    dir d;
    bool big = f.qid.path == big_path;
    d.qid = qid{qtfile, 0, f.qid.path};
    d.mode = 0444;
    d.name = big ? "big" : "events";
    d.length = big ? opts_.big_bytes : 0;
    d.uid = d.gid = d.muid = opts_.owner;
    return d;
  }
  node* n = find(f.qid.path);
  if (n == nullptr) return std::unexpected(std::string(err::not_found));
  return n->d;
}

std::expected<std::vector<dir>, std::string> ramfs::list(const dir& d, std::string_view) {
  node* n = find(d.qid.path);
  if (n == nullptr) return std::unexpected(std::string(err::not_found));
  std::vector<dir> out;
  if (d.qid.path == root_path) {
    out.push_back(*stat1(dir{.qid = {qtfile, 0, events_path}}));
    if (opts_.big_bytes > 0) out.push_back(*stat1(dir{.qid = {qtfile, 0, big_path}}));
  }
  for (const auto& [name, path] : n->children) out.push_back(find(path)->d);
  return out;
}

void ramfs::open(request r) {
  auto& f = r.fid();
  std::uint64_t path = f.file().qid.path;
  if (path == events_path) {
    events_.open(f);
  } else if (path != big_path) {
    node* n = find(path);
    if (n == nullptr) return r.error(err::not_found);
    if ((r.get<topen>().mode & otrunc) && !n->data.empty()) {
      resize(*n, 0);
      n->d.qid.version++;
      n->d.mtime = now();
      events_.post("write " + path_of(*n));
    }
    return r.respond(ropen{n->d.qid, 0});
  }
  r.respond(ropen{f.file().qid, 0});
}

void ramfs::create(request r) {
  const auto& c = r.get<tcreate>();
  node* parent = find(r.fid().file().qid.path);
  if (parent == nullptr) return r.error(err::not_found);
  bool at_root = parent->d.qid.path == root_path;
  if (parent->children.contains(c.name) ||
      (at_root && (c.name == "events" || (c.name == "big" && opts_.big_bytes > 0)))) {
    return r.error(err::exists);
  }
  bool is_dir = (c.perm & dmdir) != 0;
  if (is_dir && (c.mode & 3) != oread) return r.error(err::bad_mode);
  auto n = std::make_unique<node>();
  // create(5): the permissions are masked by the directory's.
  std::uint32_t mask = is_dir ? 0777 : 0666;
  n->d.mode = (c.perm & ~mask) | (c.perm & parent->d.mode & mask);
  n->d.qid = qid{static_cast<std::uint8_t>(n->d.mode >> 24), 0, next_path_++};
  n->d.name = c.name;
  n->d.uid = n->d.muid = r.uname();
  n->d.gid = parent->d.gid;
  n->d.atime = n->d.mtime = now();
  n->parent = parent->d.qid.path;
  parent->children.emplace(c.name, n->d.qid.path);
  parent->d.qid.version++;
  dir created = n->d;
  std::string path = path_of(*n);
  nodes_.emplace(created.qid.path, std::move(n));
  r.respond_create(std::move(created));
  events_.post("create " + path);
}

void ramfs::read(request r) {
  auto& f = r.fid();
  if (f.is_dir()) return read_dir(std::move(r));
  const auto& m = r.get<tread>();
  std::uint64_t path = f.file().qid.path;
  if (path == events_path) return events_.read(std::move(r));
  if (path == big_path) {
    if (m.offset >= opts_.big_bytes) return r.respond(rread{});
    std::uint64_t n = std::min<std::uint64_t>(m.count, opts_.big_bytes - m.offset);
    // The alphabet repeated, long enough that any read is one copy from it.
    static const std::string pattern = [] {
      std::string p(max_msize + 26, '\0');
      for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<char>('a' + i % 26);
      return p;
    }();
    return r.respond(rread{pattern.substr(m.offset % 26, n)});
  }
  node* n = find(path);
  if (n == nullptr) return r.error(err::not_found);
  if (m.offset >= n->data.size()) return r.respond(rread{});
  r.respond(rread{n->data.substr(m.offset, m.count)});
}

void ramfs::write(request r) {
  std::uint64_t path = r.fid().file().qid.path;
  node* n = find(path);
  if (n == nullptr || path == events_path || path == big_path) return r.error(err::perm);
  const auto& m = r.get<twrite>();
  // DMAPPEND files take every write at the end (stat(5)).
  std::uint64_t offset = (n->d.mode & dmappend) ? n->data.size() : m.offset;
  std::uint64_t end = offset + m.data.size();
  if (end < offset || (end > n->data.size() && !resize(*n, end))) return r.error(err::no_space);
  std::copy(m.data.begin(), m.data.end(), n->data.begin() + static_cast<std::ptrdiff_t>(offset));
  n->d.qid.version++;
  n->d.mtime = now();
  n->d.muid = r.uname();
  r.respond(rwrite{static_cast<std::uint32_t>(m.data.size())});
  events_.post("write " + path_of(*n));
}

void ramfs::remove(request r) {
  std::uint64_t path = r.fid().file().qid.path;
  node* n = find(path);
  if (n == nullptr || path == root_path) return r.error(err::no_remove);
  if (!n->children.empty()) return r.error(err::not_empty);
  std::string where = path_of(*n);
  bytes_used_ -= n->data.size();
  if (node* parent = find(n->parent)) {
    parent->children.erase(n->d.name);
    parent->d.qid.version++;
  }
  nodes_.erase(path);
  r.respond(rremove{});
  events_.post("remove " + where);
}

void ramfs::wstat(request r) {
  std::uint64_t path = r.fid().file().qid.path;
  node* n = find(path);
  if (n == nullptr || path == events_path || path == big_path) return tree::wstat(std::move(r));
  const dir& want = r.get<twstat>().stat;
  const dir keep = dont_touch_dir();
  const std::string& user = r.uname();
  bool owner = user == n->d.uid;
  // wstat(5): all changes or none; check everything first.
  if (want.type != keep.type || want.dev != keep.dev || want.qid != keep.qid ||
      (!want.uid.empty() && want.uid != n->d.uid) || !want.muid.empty()) {
    return r.error(err::no_wstat);
  }
  node* parent = find(n->parent);
  bool rename = !want.name.empty() && want.name != n->d.name;
  if (rename) {
    if (path == root_path || parent == nullptr) return r.error(err::no_wstat);
    if (want.name.find('/') != std::string::npos || want.name == "." || want.name == "..") {
      return r.error(err::bad_name);
    }
    if (!permitted(parent->d, user, 2)) return r.error(err::perm);
    if (parent->children.contains(want.name)) return r.error(err::exists);
  }
  if (want.length != keep.length) {
    if (n->d.qid.type & qtdir) return r.error(err::is_dir);
    if (!permitted(n->d, user, 2)) return r.error(err::perm);
    // max_size(): on 32-bit ARM a length past 4 GiB would be cut by std::string::resize.
    if (want.length > n->data.size() && (want.length > n->data.max_size() ||
                                         bytes_used_ - n->data.size() + want.length > opts_.max_bytes)) {
      return r.error(err::no_space);
    }
  }
  if (want.mode != keep.mode) {
    if (!owner) return r.error(err::perm);
    if ((want.mode & dmdir) != (n->d.mode & dmdir)) return r.error("cannot change directory bit");
  }
  if ((want.mtime != keep.mtime || !want.gid.empty()) && !owner) return r.error(err::perm);

  if (rename) {
    parent->children.erase(n->d.name);
    parent->children.emplace(want.name, path);
    n->d.name = want.name;
  }
  if (want.length != keep.length) {
    resize(*n, want.length);
    n->d.qid.version++;
  }
  if (want.mode != keep.mode) {
    n->d.mode = want.mode;
    n->d.qid.type = static_cast<std::uint8_t>(want.mode >> 24);
  }
  if (want.mtime != keep.mtime) n->d.mtime = want.mtime;
  if (!want.gid.empty()) n->d.gid = want.gid;
  r.respond(rwstat{});
  events_.post("wstat " + path_of(*n));
}

bool ramfs::resize(node& n, std::uint64_t length) {
  std::uint64_t others = bytes_used_ - n.data.size();
  if (length > opts_.max_bytes || others + length > opts_.max_bytes || length > n.data.max_size()) return false;
  n.data.resize(length);
  n.d.length = length;
  bytes_used_ = others + length;
  return true;
}


}  // namespace srv9p
