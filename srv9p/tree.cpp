// The request handle and the default request handlers of srv9p/tree.hpp, plus the
// Dirtab helpers. The defaults are written only in terms of the synchronous hooks, so a
// tree that overrides nothing but attach/walk1/list gets walk, stat and directory reads
// that follow walk(5), stat(5) and read(5).
#include "srv9p/tree.hpp"

#include <asio/dispatch.hpp>
#include <fcntl.h>
#include <unistd.h>

#include "srv9p/errors.hpp"
#include "srv9p/pending.hpp"
#include "srv9p/server.hpp"

namespace srv9p {

// ---- fid -------------------------------------------------------------------------------

const dir& fid::file() const { return path_->file; }

const dir& fid::parent() const { return path_->parent ? path_->parent->file : path_->file; }

// ---- request ---------------------------------------------------------------------------

std::uint16_t request::tag() const { return p_->tag; }
const message& request::t() const { return p_->t; }
srv9p::fid& request::fid() const { return *p_->fid; }
std::uint32_t request::max_write() const { return p_->msize > iohdrsz ? p_->msize - iohdrsz : 0; }
bool request::done() const { return p_->done; }

namespace {

// Runs deliver(session&, pending&) on the executor, unless the request was answered or
// flushed already or its connection is gone: every answer goes through here.
template <class F>
void answer(const std::shared_ptr<detail::pending>& pending, F deliver) {
  asio::dispatch(pending->ex, [p = pending, deliver = std::move(deliver)]() mutable {
    if (p->done) return;
    auto s = p->owner.lock();
    if (!s) {
      p->done = true;
      return;
    }
    deliver(*s, *p);
  });
}

}  // namespace

void request::respond(message r) const {
  answer(p_, [r = std::move(r)](session& s, detail::pending& p) mutable { s.finish(p, fcall{p.tag, std::move(r)}); });
}

void request::error(std::string_view ename) const { respond(rerror{std::string(ename)}); }

void request::respond_walk(std::vector<dir> walked) const {
  // The session turns the dirs into qids and, for a complete walk, into newfid's path.
  answer(p_, [walked = std::move(walked)](session& s, detail::pending& p) mutable {
    s.finish_walk(p, std::move(walked));
  });
}

void request::respond_create(dir created) const {
  answer(p_, [created = std::move(created)](session& s, detail::pending& p) mutable {
    s.finish_create(p, std::move(created));
  });
}

void request::hand_off(message r, handoff_fn take) const {
  answer(p_, [r = std::move(r), take = std::move(take)](session& s, detail::pending& p) mutable {
    s.finish_handoff(p, fcall{p.tag, std::move(r)}, std::move(take));
  });
}

void request::on_flush(std::function<void()> hook) const { p_->flush_hook = std::move(hook); }

// ---- permissions -----------------------------------------------------------------------

bool permitted(const dir& f, std::string_view uname, std::uint32_t need) {
  std::uint32_t bits = f.mode & 07;  // other
  if (uname == f.uid) {
    bits = (f.mode >> 6) & 07;
  } else if (uname == f.gid) {
    bits = (f.mode >> 3) & 07;
  }
  return (bits & need) == need;
}

bool tree::permitted(const dir& f, std::string_view uname, std::uint32_t need) const {
  std::uint32_t bits = f.mode & 07;  // other
  if (uname == f.uid) {
    bits = (f.mode >> 6) & 07;
  } else if (in_group(uname, f.gid)) {
    bits = (f.mode >> 3) & 07;
  }
  return (bits & need) == need;
}

// ---- default handlers ------------------------------------------------------------------

std::expected<std::vector<dir>, std::string> tree::list(const dir&, std::string_view) {
  return std::vector<dir>{};
}

std::expected<dir, std::string> tree::stat1(const dir& f) { return f; }

void tree::walk(request r) {
  const auto& names = r.get<twalk>().wnames;
  const srv9p::fid& f = r.fid();
  std::vector<dir> walked;
  walked.reserve(names.size());
  // The directories we stand in, root first, so that ".." can go back up.
  std::vector<const detail::path_elem*> up;
  for (auto* e = f.path_.get(); e != nullptr; e = e->parent.get()) up.push_back(e);
  std::vector<dir> down;  // dirs walked below the fid's own path
  auto current = [&]() -> const dir& { return down.empty() ? up.front()->file : down.back(); };

  std::string failure;
  for (const auto& name : names) {
    const dir& cur = current();
    if ((cur.qid.type & qtdir) == 0) {
      failure = err::walk_no_dir;
      break;
    }
    if (!this->permitted(cur, f.uname(), 1)) {
      failure = err::perm;
      break;
    }
    if (name == "..") {
      if (!down.empty()) {
        down.pop_back();
      } else if (up.size() > 1) {
        up.erase(up.begin());
      }  // at the root, ".." is the root (walk(5))
      walked.push_back(current());
      continue;
    }
    if (name == ".") {
      walked.push_back(cur);
      continue;
    }
    auto child = walk1(cur, name, f.uname());
    if (!child) {
      failure = std::move(child.error());
      break;
    }
    down.push_back(*child);
    walked.push_back(std::move(*child));
  }
  if (walked.empty()) {
    r.error(failure.empty() ? std::string(err::not_found) : failure);
    return;
  }
  r.respond_walk(std::move(walked));
}

void tree::open(request r) { r.respond(ropen{r.fid().file().qid, 0}); }

void tree::create(request r) { r.error(err::no_create); }

void tree::read(request r) {
  if (r.fid().is_dir()) {
    read_dir(std::move(r));
    return;
  }
  r.error(err::perm);
}

void tree::write(request r) { r.error(err::perm); }

void tree::remove(request r) { r.error(err::no_remove); }

bool tree::may_remove(const srv9p::fid& f, const dir& parent) const {
  // remove(5): "requires write permission in the parent directory". The root has none.
  if (&f.parent() == &f.file()) return false;
  return this->permitted(parent, f.uname(), 2);
}

void tree::stat(request r) {
  auto d = stat1(r.fid().file());
  if (!d) {
    r.error(d.error());
    return;
  }
  r.respond(rstat{std::move(*d)});
}

void tree::wstat(request r) {
  const dir& want = r.get<twstat>().stat;
  dir keep = dont_touch_dir();
  bool truncate_only = false;
  if (want.length == 0 && !r.fid().is_dir()) {
    // A truncation may carry the times the client's kernel stamps on it (Linux sets
    // mtime to now with every O_TRUNC): they are accepted and ignored, a synthetic
    // file's times being the server's.
    keep.length = 0;
    keep.atime = want.atime;
    keep.mtime = want.mtime;
    truncate_only = true;
  }
  if (want != keep) {
    r.error(err::no_wstat);
    return;
  }
  if (truncate_only && !this->permitted(r.fid().file(), r.uname(), 2)) {
    r.error(err::perm);
    return;
  }
  r.respond(rwstat{});
}

void tree::clunk(srv9p::fid&) {}

void tree::read_dir(request r) {
  srv9p::fid& f = r.fid();
  const auto& m = r.get<tread>();
  if (m.offset == 0) {
    auto entries = list(f.file(), f.uname());
    if (!entries) {
      r.error(entries.error());
      return;
    }
    f.dir_entries_ = std::move(*entries);
    f.dir_next_index_ = 0;
    f.dir_next_offset_ = 0;
  } else if (m.offset != f.dir_next_offset_) {
    r.error(err::bad_offset);
    return;
  }
  // read(5): each read returns whole entries only.
  std::vector<std::uint8_t> buf;
  std::size_t i = f.dir_next_index_;
  while (i < f.dir_entries_.size()) {
    std::size_t n = dir_size(f.dir_entries_[i]);
    if (buf.size() + n > m.count) break;
    encode_dir(f.dir_entries_[i], buf);
    ++i;
  }
  if (buf.empty() && i < f.dir_entries_.size()) {
    r.error("read count too small for a directory entry");
    return;
  }
  f.dir_next_index_ = i;
  f.dir_next_offset_ = m.offset + buf.size();
  r.respond(rread{std::string(buf.begin(), buf.end())});
}

// ---- Answers to Tread --------------------------------------------------------------------

void respond_text(const request& r, std::string_view text) {
  const auto& m = r.get<tread>();
  if (m.offset >= text.size()) return r.respond(rread{});
  r.respond(rread{std::string(text.substr(m.offset, m.count))});
}

void respond_file(const request& r, const std::string& path) {
  const auto& m = r.get<tread>();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return r.error(err::not_found);
  std::string data(m.count, '\0');
  ssize_t n = ::pread(fd, data.data(), m.count, static_cast<off_t>(m.offset));
  ::close(fd);
  if (n < 0) return r.error(err::io);
  data.resize(static_cast<std::size_t>(n));
  r.respond(rread{std::move(data)});
}

// ---- Dirtab ----------------------------------------------------------------------------

dir dirtab_dir(const dirtab_entry& e, std::uint64_t instance, std::string_view uid,
               std::string_view gid) {
  dir d;
  d.qid.type = (e.perm & dmdir) ? qtdir : qtfile;
  d.qid.path = qpath(e.kind, instance);
  d.mode = e.perm;
  d.name = e.name;
  d.uid = uid;
  d.gid = gid;
  d.muid = uid;
  return d;
}

std::expected<dir, std::string> dirtab_walk(std::span<const dirtab_entry> table, std::string_view name,
                                            std::uint64_t instance, std::string_view uid,
                                            std::string_view gid) {
  for (const auto& e : table) {
    if (e.name == name) return dirtab_dir(e, instance, uid, gid);
  }
  return std::unexpected(std::string(err::not_found));
}

std::vector<dir> dirtab_list(std::span<const dirtab_entry> table, std::uint64_t instance,
                             std::string_view uid, std::string_view gid) {
  std::vector<dir> out;
  out.reserve(table.size());
  for (const auto& e : table) out.push_back(dirtab_dir(e, instance, uid, gid));
  return out;
}

}  // namespace srv9p
