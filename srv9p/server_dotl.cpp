// 9P2000.L in the session: each .L request is answered here or translated into the
// 9P2000 request that trees already answer, and each answer translated back, so that
// every tree (ramfs, galaxy-node's, galaxy-sched's with its nodes/NAME relay, which
// speaks 9P2000 to the nodes whatever its own clients speak) serves both dialects
// unchanged. The message layouts are Linux's (include/net/9p/9p.h, net/9p/client.c);
// which errno each unsupported request gets, and why, is in galaxy(4).
//
//   Tgetattr   -> Tstat; Rstat -> Rgetattr (mode gets S_IFDIR/S_IFREG from DMDIR, uid and
//                 gid numbers come from the stat's names through NSS)
//   Tlopen     -> Topen (O_ACCMODE -> OREAD/OWRITE/ORDWR, O_TRUNC -> OTRUNC)
//   Tlcreate   -> Tcreate (perm = mode & 0777)
//   Tmkdir     -> Tcreate of DMDIR on a clone of dfid that has no number (dfid stays put)
//   Tsetattr   -> Twstat: size, mode, explicit times (ATTR_*_SET); "now" times and ctime
//                 are the server's own and left alone, so the kernel's truncate at open
//                 (size 0 + mtime + ctime) is the wstat of length 0 that ctl files take
//   Trename    -> Twstat of the name, when dfid is fid's directory (else EXDEV)
//   Treaddir   -> directory Treads from offset 0 until an empty one; the listing is kept
//                 on the fid and served by index (offset[8] of entry i is i + 1), so the
//                 offsets a client holds stay valid while the directory grows; a
//                 Treaddir at offset 0 takes a new listing
//   Tstatfs, Tfsync, Txattrwalk, and the unsupported ones: answered here
//   Rerror     -> Rlerror with srv9p/errno.hpp's errno
//
// Tread, Twrite, Twalk, Tclunk, Tremove, Tflush, Tversion are the same in both dialects;
// Tauth and Tattach differ only by n_uname (resolve_n_uname).
#include <cerrno>
#include <fmt/format.h>
#include <sys/stat.h>

#include "srv9p/errno.hpp"
#include "srv9p/errors.hpp"
#include "srv9p/nss.hpp"
#include "srv9p/pending.hpp"
#include "srv9p/server.hpp"

namespace srv9p {

namespace {

// Rstatfs for a synthetic tree: Linux's V9FS_MAGIC as the type, no blocks, no inodes.
constexpr std::uint32_t v9fs_magic = 0x01021997;
constexpr std::uint32_t statfs_bsize = 4096;
constexpr std::uint32_t statfs_namelen = 255;
// readdir's d_type values (dirent.h).
constexpr std::uint8_t dt_dir = 4, dt_reg = 8;
// What unknown owners become in Rgetattr: the kernel's overflow uid and gid.
constexpr std::uint32_t nobody_id = 65534;
// A directory whose listing passes this is refused (EIO) rather than held.
constexpr std::size_t max_listing_bytes = 64u << 20;
// Names cached per session for Rgetattr before the caches are emptied.
constexpr std::size_t max_cached_ids = 1024;

std::uint8_t open_mode_of(std::uint32_t flags) {
  std::uint8_t m = oread;
  switch (flags & l_o_accmode) {
    case 1: m = owrite; break;
    case 2: m = ordwr; break;
    default: m = oread; break;
  }
  if (flags & l_o_trunc) m |= otrunc;
  return m;
}

fcall lerror(std::uint16_t tag, int e) { return fcall{tag, rlerror{static_cast<std::uint32_t>(e)}}; }

}  // namespace

std::expected<void, std::string> session::resolve_n_uname(std::string& uname, std::uint32_t& n_uname) const {
  if (n_uname == nofid) return {};
  auto name = local_name(n_uname);
  if (!name) return std::unexpected(fmt::format(fmt::runtime(err::uid_no_name), n_uname));
  uname = std::move(*name);
  n_uname = nofid;
  return {};
}

void session::forget_lreq(std::uint16_t tag) {
  auto it = lreqs_.find(tag);
  if (it == lreqs_.end()) return;
  auto made = std::move(it->second.made);
  lreqs_.erase(it);
  if (made) clunk_fid(*made);
}

std::pair<std::uint32_t, std::uint32_t> session::ids_of(const std::string& uid, const std::string& gid) {
  if (uid_cache_.size() > max_cached_ids) uid_cache_.clear();
  if (gid_cache_.size() > max_cached_ids) gid_cache_.clear();
  auto look = [](const std::string& name) -> std::optional<account> {
    if (name.empty()) return std::nullopt;
    auto a = account_by_name(name);
    if (!a || !*a) return std::nullopt;
    return **a;
  };
  std::uint32_t u = nobody_id, g = nobody_id;
  if (auto it = uid_cache_.find(uid); it != uid_cache_.end()) {
    u = it->second;
  } else {
    if (auto a = look(uid)) u = a->uid;
    uid_cache_.emplace(uid, u);
  }
  // A stat's gid is a user's name (Plan 9's group per user) or a group's; a user's name
  // gives that user's primary group. Group names NSS knows only as groups stay nobody's
  // (the node keeps group look-ups out of its process, srv9p/nss.hpp).
  if (auto it = gid_cache_.find(gid); it != gid_cache_.end()) {
    g = it->second;
  } else {
    if (auto a = look(gid)) g = a->gid;
    gid_cache_.emplace(gid, g);
  }
  return {u, g};
}

void session::dispatch_l(std::uint16_t tag, message&& m) {
  auto need_fid = [this](std::uint32_t num) -> std::shared_ptr<fid> {
    auto f = lookup(num);
    return f && !f->auth_ ? f : nullptr;
  };
  switch (type_of(m)) {
    case msg_type::tstatfs: {
      if (!need_fid(std::get<tstatfs>(m).fid)) return reply_error(tag, err::unknown_fid);
      return send(fcall{tag, rstatfs{.type = v9fs_magic, .bsize = statfs_bsize, .namelen = statfs_namelen}});
    }
    case msg_type::tfsync:
      // Nothing is buffered here: every Twrite was handed to the tree when it came.
      if (!need_fid(std::get<tfsync>(m).fid)) return reply_error(tag, err::unknown_fid);
      return send(fcall{tag, rfsync{}});
    case msg_type::txattrwalk: {
      const auto& x = std::get<txattrwalk>(m);
      if (!need_fid(x.fid)) return reply_error(tag, err::unknown_fid);
      // No file has extended attributes: listing them (name "") is "not supported"
      // (listxattr(2) ENOTSUP), reading one is "no such attribute" (getxattr(2) ENODATA);
      // fs/9p/xattr.c hands either straight to the caller.
      return send(lerror(tag, x.name.empty() ? EOPNOTSUPP : ENODATA));
    }
    case msg_type::txattrcreate:
      return send(lerror(tag, EOPNOTSUPP));  // setxattr(2): not supported
    case msg_type::tsymlink:
    case msg_type::tmknod:
    case msg_type::tlink:
      // symlink(2), mknod(2), link(2): EPERM, "the file system does not support" it.
      return send(lerror(tag, EPERM));
    case msg_type::treadlink:
      return send(lerror(tag, EINVAL));  // readlink(2): not a symbolic link (there are none)
    case msg_type::tlock:
    case msg_type::tgetlock:
      return send(lerror(tag, ENOLCK));  // fcntl(2): no locks available
    case msg_type::tunlinkat:
    case msg_type::trenameat:
      // fs/9p/vfs_inode.c: on EOPNOTSUPP v9fs_remove falls back to Tremove of a clone of
      // the file's fid, and v9fs_vfs_rename to Trename.
      return send(lerror(tag, EOPNOTSUPP));

    case msg_type::tgetattr: {
      auto num = std::get<tgetattr>(m).fid;
      lreqs_[tag] = lreq{.kind = msg_type::tgetattr};
      return dispatch(tag, tstat{num});
    }
    case msg_type::tlopen: {
      const auto& o = std::get<tlopen>(m);
      auto f = need_fid(o.fid);
      std::uint8_t mode = open_mode_of(o.flags);
      // A directory is opened O_RDONLY|O_DIRECTORY; O_TRUNC on one means nothing.
      if (f && f->is_dir() && (mode & 3) == oread) mode = oread;
      lreqs_[tag] = lreq{.kind = msg_type::tlopen};
      return dispatch(tag, topen{o.fid, mode});
    }
    case msg_type::tlcreate: {
      auto& c = std::get<tlcreate>(m);
      lreqs_[tag] = lreq{.kind = msg_type::tlcreate};
      return dispatch(tag, tcreate{c.fid, std::move(c.name), c.mode & 0777, open_mode_of(c.flags)});
    }
    case msg_type::tmkdir: {
      auto& c = std::get<tmkdir>(m);
      auto d = need_fid(c.dfid);
      if (!d) return reply_error(tag, err::unknown_fid);
      if (d->open_) return reply_error(tag, err::already_open);
      if (!d->is_dir()) return reply_error(tag, err::not_dir);
      if (!legal_name(c.name)) return reply_error(tag, err::bad_name);
      auto now = tree_.stat1(d->file());
      if (!now) return reply_error(tag, now.error());
      if (!tree_.permitted(*now, d->uname(), 2)) return reply_error(tag, err::perm);
      // create(5) moves its fid to the new file; Tmkdir leaves dfid where it is, so the
      // create runs on a clone that the client never sees, clunked when it is answered.
      auto made = std::make_shared<fid>();
      made->num_ = nofid;
      made->who_ = d->who_;
      made->session_id_ = d->session_id_;
      made->path_ = d->path_;
      lreqs_[tag] = lreq{.kind = msg_type::tmkdir, .made = made};
      tree_.create(start(tag, tcreate{nofid, std::move(c.name), dmdir | (c.mode & 0777), oread}, made));
      return;
    }
    case msg_type::tsetattr: {
      const auto& a = std::get<tsetattr>(m);
      auto f = need_fid(a.fid);
      if (!f) return reply_error(tag, err::unknown_fid);
      dir d = dont_touch_dir();
      if (a.valid & attr_mode) d.mode = (a.mode & 0777) | (f->is_dir() ? dmdir : 0);
      if (a.valid & attr_size) d.length = a.size;
      if (a.valid & attr_atime_set) d.atime = static_cast<std::uint32_t>(a.atime_sec);
      if (a.valid & attr_mtime_set) d.mtime = static_cast<std::uint32_t>(a.mtime_sec);
      if (a.valid & attr_uid) {
        auto name = local_name(a.uid);
        if (!name) return send(lerror(tag, EINVAL));
        d.uid = std::move(*name);
      }
      if (a.valid & attr_gid) return send(lerror(tag, EPERM));  // no group look-ups by number here
      lreqs_[tag] = lreq{.kind = msg_type::tsetattr};
      return dispatch(tag, twstat{a.fid, std::move(d)});
    }
    case msg_type::trename: {
      auto& r = std::get<trename>(m);
      auto f = need_fid(r.fid);
      auto d = need_fid(r.dfid);
      if (!f || !d) return reply_error(tag, err::unknown_fid);
      if (!legal_name(r.name)) return reply_error(tag, err::bad_name);
      // wstat(5) renames within a directory only (what fs/9p does for 9P2000 too).
      if (!f->path_->parent || d->file().qid.path != f->parent().qid.path) return send(lerror(tag, EXDEV));
      dir w = dont_touch_dir();
      w.name = std::move(r.name);
      lreqs_[tag] = lreq{.kind = msg_type::trename};
      return dispatch(tag, twstat{r.fid, std::move(w)});
    }
    case msg_type::treaddir: {
      const auto& rd = std::get<treaddir>(m);
      auto f = need_fid(rd.fid);
      if (!f) return reply_error(tag, err::unknown_fid);
      if (!f->open_) return reply_error(tag, err::not_open);
      if (!f->is_dir()) return reply_error(tag, err::not_dir);
      if (rd.offset != 0 && f->dirents_valid_) return answer_readdir(tag, *f, rd.offset, rd.count);
      // Offset 0 (or a fid never listed): take the listing, by 9P2000 directory reads.
      f->dirents_valid_ = false;
      lreqs_[tag] = lreq{.kind = msg_type::treaddir, .offset = rd.offset, .count = rd.count};
      return dispatch(tag, tread{rd.fid, 0, msize_ - iohdrsz});
    }
    default:
      // .L replies sent to the server, and anything else.
      return reply_error(tag, fmt::format("botch: {} is not a request", type_name(type_of(m))));
  }
}

bool session::readdir_step(detail::pending& p, fcall& reply) {
  auto it = lreqs_.find(p.tag);
  if (it == lreqs_.end() || it->second.kind != msg_type::treaddir || !std::holds_alternative<tread>(p.t)) {
    return false;
  }
  if (!std::holds_alternative<rread>(reply.msg)) return false;  // an error: to_dotl answers it
  auto& l = it->second;
  const auto& data = std::get<rread>(reply.msg).data;
  auto f = p.fid;
  std::uint16_t tag = p.tag;
  std::uint64_t next = std::get<tread>(p.t).offset + data.size();
  complete(p);
  if (f->clunked_) {
    forget_lreq(tag);
    send(fcall{tag, rerror{std::string(err::unknown_fid)}});
    return true;
  }
  if (!data.empty()) {
    if (l.listing.size() + data.size() > max_listing_bytes) {
      forget_lreq(tag);
      send(lerror(tag, EIO));
      return true;
    }
    l.listing += data;
    tree_.read(start(tag, tread{f->num_, next, msize_ - iohdrsz}, f));
    return true;
  }
  auto dirs = decode_dirs(std::span(reinterpret_cast<const std::uint8_t*>(l.listing.data()), l.listing.size()));
  std::uint64_t offset = l.offset;
  std::uint32_t count = l.count;
  forget_lreq(tag);
  if (!dirs) {
    if (opts_.log) opts_.log(fmt::format("readdir: the tree's directory read: {}", dirs.error()));
    send(lerror(tag, EIO));
    return true;
  }
  f->dirents_.clear();
  f->dirents_.reserve(dirs->size() + 2);
  f->dirents_.push_back(dirent{f->file().qid, 1, dt_dir, "."});
  f->dirents_.push_back(dirent{f->parent().qid, 2, dt_dir, ".."});
  for (auto& d : *dirs) {
    std::uint64_t i = f->dirents_.size();
    f->dirents_.push_back(dirent{d.qid, i + 1, (d.qid.type & qtdir) ? dt_dir : dt_reg, std::move(d.name)});
  }
  f->dirents_valid_ = true;
  answer_readdir(tag, *f, offset, count);
  return true;
}

void session::answer_readdir(std::uint16_t tag, fid& f, std::uint64_t offset, std::uint32_t count) {
  count = std::min(count, msize_ - iohdrsz);
  std::vector<std::uint8_t> buf;
  for (std::uint64_t i = offset; i < f.dirents_.size(); i++) {
    if (buf.size() + dirent_size(f.dirents_[i]) > count) break;
    encode_dirent(f.dirents_[i], buf);
  }
  send(fcall{tag, rreaddir{std::string(buf.begin(), buf.end())}});
}

fcall session::to_dotl(fcall f) {
  if (const auto* e = std::get_if<rerror>(&f.msg)) {
    forget_lreq(f.tag);
    return lerror(f.tag, errno_of(e->ename));
  }
  auto it = lreqs_.find(f.tag);
  if (it == lreqs_.end()) return f;
  msg_type kind = it->second.kind;
  forget_lreq(f.tag);
  switch (kind) {
    case msg_type::tgetattr:
      if (const auto* s = std::get_if<rstat>(&f.msg)) {
        const dir& d = s->stat;
        auto [uid, gid] = ids_of(d.uid, d.gid);
        bool is_dir = (d.qid.type & qtdir) != 0 || (d.mode & dmdir) != 0;
        rgetattr g;
        g.valid = getattr_basic;
        g.qid = d.qid;
        g.mode = (d.mode & 0777) | (is_dir ? S_IFDIR : S_IFREG);
        g.uid = uid;
        g.gid = gid;
        g.nlink = is_dir ? 2 : 1;
        g.size = d.length;
        g.blksize = statfs_bsize;
        g.blocks = (d.length + 511) / 512;
        g.atime_sec = d.atime;
        g.mtime_sec = d.mtime;
        g.ctime_sec = d.mtime;
        g.data_version = d.qid.version;
        return fcall{f.tag, g};
      }
      break;
    case msg_type::tlopen:
      if (const auto* o = std::get_if<ropen>(&f.msg)) return fcall{f.tag, rlopen{o->qid, o->iounit}};
      break;
    case msg_type::tlcreate:
      if (const auto* c = std::get_if<rcreate>(&f.msg)) return fcall{f.tag, rlcreate{c->qid, c->iounit}};
      break;
    case msg_type::tmkdir:
      if (const auto* c = std::get_if<rcreate>(&f.msg)) return fcall{f.tag, rmkdir{c->qid}};
      break;
    case msg_type::tsetattr:
      if (std::holds_alternative<rwstat>(f.msg)) return fcall{f.tag, rsetattr{}};
      break;
    case msg_type::trename:
      if (std::holds_alternative<rwstat>(f.msg)) return fcall{f.tag, rrename{}};
      break;
    default:
      break;
  }
  return f;
}

}  // namespace srv9p
