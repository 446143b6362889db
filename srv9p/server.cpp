// The 9P2000 server: the session (protocol state of one connection) and the socket
// server that runs a session over every accepted TCP or Unix-socket connection.
//
// Session: handle() decodes one message and either answers it at once (version, auth,
// attach, flush, clunk, and every protocol error) or registers it as pending and hands a
// request to the tree. Answers come back through finish*(), which does the framework's
// bookkeeping (a walk's newfid, an open's mode, a create's new file, a remove's clunk)
// before sending. The rules are those of intro(5) and the pages it names; the ones that
// matter most are quoted where they are applied.
//
// Authentication: Tauth makes an afid (a fid with auth_ set, which trees never see);
// Twrites to it gather a credential, and the one that completes it is answered once the
// authenticator has verified it, off this thread. do_attach is the one place where an
// identity is made (srv9p/auth.hpp), from the afid, the Unix-socket peer's uid, or
// nothing on an --auth none listener. A verified credential must be bound to this
// connection's server end (peer_info::binding) and to its afid's challenge, which a
// Tread of the afid returns. What an unauthenticated peer can make
// the server hold or do is bounded (server_options: afids, unfinished credential bytes,
// one verification at a time per session, TCP connections not yet attached, Unix-socket
// connections per uid).
#include "srv9p/server.hpp"

#include <atomic>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "srv9p/dial.hpp"
#include "srv9p/errors.hpp"
#include "srv9p/pending.hpp"

namespace srv9p {

namespace {

// The fid a T-message names (Twalk: its source fid), or NOFID for those that name none.
std::uint32_t fid_of(const message& m) {
  return std::visit(
      [](const auto& v) -> std::uint32_t {
        if constexpr (requires { v.fid; }) {
          return v.fid;
        } else {
          return nofid;
        }
      },
      m);
}

// Asio 1.22 (Debian 12) keeps as_tuple in experimental; completions become (error, value).
constexpr auto as_tuple_awaitable = asio::experimental::as_tuple(asio::use_awaitable);


// open(5): the permission bits a mode needs.
std::uint32_t open_need(std::uint8_t mode) {
  std::uint32_t need = 0;
  switch (mode & 3) {
    case oread: need = 4; break;
    case owrite: need = 2; break;
    case ordwr: need = 6; break;
    case oexec: need = 1; break;
  }
  if (mode & otrunc) need |= 2;
  return need;
}

// What stat says of an afid: an auth file (DMAUTH, qid type QTAUTH) owned by the name its
// Tauth gave.
dir afid_dir(std::uint32_t num, const std::string& uname) {
  dir d;
  d.qid = qid{qtauth, 0, num};
  d.mode = dmauth | 0600;
  d.name = "#a";
  d.uid = d.gid = d.muid = uname;
  return d;
}

bool mode_reads(std::uint8_t mode) { return (mode & 3) != owrite; }
bool mode_writes(std::uint8_t mode) { return (mode & 3) == owrite || (mode & 3) == ordwr; }

}  // namespace

// ==== session ===========================================================================

namespace {
// Session numbers (fid::session_id): from 1, never reused in the process.
std::uint64_t next_session_id() {
  static std::atomic<std::uint64_t> next{1};
  return next++;
}
}  // namespace

session::session(asio::any_io_executor ex, tree& t, server_options opts, sender send, peer_info peer)
    : ex_(std::move(ex)), id_(next_session_id()), tree_(t), opts_(std::move(opts)), send_(std::move(send)),
      msize_(opts_.max_msize), peer_(peer) {}

session::~session() { close(); }

void session::send(fcall f) {
  if (closed_) return;
  if (dialect_ == dialect::p9_2000_l) f = to_dotl(std::move(f));
  wire_message out;
  encode_parts(std::move(f), out, dialect_);
  send_(std::move(out));
}

void session::reply_error(std::uint16_t tag, std::string_view ename) {
  send(fcall{tag, rerror{std::string(ename.substr(0, errmax - 1))}});
}

std::shared_ptr<fid> session::lookup(std::uint32_t num) const {
  auto it = fids_.find(num);
  return it == fids_.end() ? nullptr : it->second;
}

void session::release(fid& f) {
  if (f.auth_) return;  // an afid: the tree never saw it
  tree_.clunk(f);
  f.aux.reset();
}

void session::clunk_fid(fid& f, bool by_client) {
  f.by_client_ = by_client;
  f.clunked_ = true;
  if (f.outstanding_ == 0) release(f);
}

bool session::fids_full() const {
  // walking_ holds fids that outstanding walks are making: they will be fids soon.
  return fids_.size() + walking_.size() >= opts_.max_fids;
}

void session::complete(detail::pending& p, bool answered) {
  p.done = true;
  if (p.holds_input) {
    p.holds_input = false;
    --holding_;
  }
  if (auto it = pending_.find(p.tag); it != pending_.end() && it->second.get() == &p) {
    pending_.erase(it);
  }
  if (p.fid && --p.fid->outstanding_ == 0 && p.fid->clunked_) release(*p.fid);
  // remove(5): the fid is clunked whatever the answer.
  if (p.fid && type_of(p.t) == msg_type::tremove) {
    clunk_fid(*p.fid, answered);  // (a remove cut short by a hang-up is not the client's word)
  }
  // A walk, open or create answered: requests that waited for its fid may start.
  if (type_of(p.t) == msg_type::twalk) walk_done(std::get<twalk>(p.t).newfid);
  if (type_of(p.t) == msg_type::topen) walk_done(std::get<topen>(p.t).fid);
  if (type_of(p.t) == msg_type::tcreate) walk_done(std::get<tcreate>(p.t).fid);
}

void session::abort(std::shared_ptr<detail::pending> p) {
  if (p->done) return;
  auto hook = std::move(p->flush_hook);
  complete(*p, false);
  forget_lreq(p->tag);
  if (hook) hook();
}

request session::start(std::uint16_t tag, message&& m, std::shared_ptr<fid> f) {
  auto p = std::make_shared<detail::pending>();
  p->owner = weak_from_this();
  p->ex = ex_;
  p->tag = tag;
  p->t = std::move(m);
  p->fid = std::move(f);
  p->msize = msize_;
  if (p->fid) ++p->fid->outstanding_;
  pending_.emplace(tag, p);
  return request(std::move(p));
}

std::expected<void, std::string> session::handle(std::span<const std::uint8_t> msg, bool input_follows) {
  if (closed_) return std::unexpected(std::string(err::hungup));
  // Only a Twrite dispatched from here, with nothing behind it, may take the connection
  // (dispatch): one that waited for its fid was dispatched after later input was read.
  struct in_handle {
    session& s;
    in_handle(session& s_, bool follows) : s(s_) {
      s.in_handle_ = true;
      s.input_follows_ = follows;
    }
    ~in_handle() { s.in_handle_ = s.input_follows_ = false; }
  } guard(*this, input_follows);
  if (msg.size() < header_size || peek_size(msg) != msg.size()) {
    return std::unexpected(fmt::format("bad message size {} for {} bytes",
                                       msg.size() < 4 ? 0 : peek_size(msg), msg.size()));
  }
  if (msg.size() > msize_) {
    return std::unexpected(fmt::format("message of {} bytes exceeds msize {}", msg.size(), msize_));
  }
  auto type = static_cast<msg_type>(msg[4]);
  std::uint16_t tag = static_cast<std::uint16_t>(msg[5] | (msg[6] << 8));
  auto decoded = decode(msg, dialect_);
  if (!decoded) {
    // The header is sound, so the peer can be told what was wrong and keep its connection.
    reply_error(tag, fmt::format("botch: {}", decoded.error()));
    return {};
  }
  if (!is_request(type)) {
    reply_error(tag, fmt::format("botch: {} is not a request", type_name(type)));
    return {};
  }
  if (!versioned_ && type != msg_type::tversion) {
    reply_error(tag, err::not_version);
    return {};
  }
  if (dialect_ == dialect::p9_2000_l && (type == msg_type::topen || type == msg_type::tcreate ||
                                         type == msg_type::tstat || type == msg_type::twstat)) {
    // A session speaks one dialect; these four have .L replacements (Tlopen, Tlcreate,
    // Tgetattr, Tsetattr).
    reply_error(tag, fmt::format("botch: unknown message type {} in 9P2000.L", type_name(type)));
    return {};
  }
  if (type != msg_type::tversion && (pending_.contains(tag) || deferred_tags_.contains(tag))) {
    reply_error(tag, err::dup_tag);
    return {};
  }
  if (type != msg_type::tversion && type != msg_type::tflush &&
      pending_.size() + deferred_tags_.size() >= opts_.max_outstanding) {
    reply_error(tag, fmt::format(fmt::runtime(err::too_many_requests), opts_.max_outstanding));
    return {};
  }
  // The tag is free: whatever a flushed .L request left under it goes.
  if (type != msg_type::tversion) forget_lreq(tag);
  if (type == msg_type::tflush && deferred_tags_.contains(std::get<tflush>(decoded->msg).oldtag)) {
    // flush(5) of a request still waiting for its walk: it never starts.
    std::uint16_t old = std::get<tflush>(decoded->msg).oldtag;
    deferred_tags_.erase(old);
    std::vector<std::uint32_t> unmade;  // fids the flushed request would have made
    for (auto& [num, q] : waiting_) {
      std::erase_if(q, [old, &unmade](const deferred& d) {
        if (d.tag != old) return false;
        if (auto made = made_fid(d.m)) unmade.push_back(*made);
        return true;
      });
    }
    send(fcall{tag, rflush{}});
    for (auto fid : unmade) {
      if (reserved_.erase(fid) > 0) walk_done(fid);  // what waited for it now meets "unknown fid"
    }
    return {};
  }
  // A request naming a fid that an outstanding walk is still making (or an outstanding
  // open or create is still opening) waits for it, so a client may pipeline Twalk newfid,
  // Topen newfid, Tread newfid even when the tree answers walks and opens later (a relay).
  // A Tattach waits for its afid's verification the same way.
  std::uint32_t num = type == msg_type::tattach ? std::get<tattach>(decoded->msg).afid : fid_of(decoded->msg);
  if (type != msg_type::tversion && num != nofid && walking_.contains(num)) {
    // A waiting Tattach or Twalk holds the fid it will make, so that requests pipelined
    // behind it that name that fid (Twalk from the new root, Topen of newfid) wait for it
    // in turn rather than fail on an unknown fid. A fid already in use is left alone:
    // the request meets "fid in use" when it starts.
    if (auto made = made_fid(decoded->msg); made && !fids_.contains(*made) && !walking_.contains(*made)) {
      walking_.insert(*made);
      reserved_.insert(*made);
    }
    deferred_tags_.insert(tag);
    waiting_[num].push_back(deferred{tag, std::move(decoded->msg)});
    return {};
  }
  dispatch(tag, std::move(decoded->msg));
  return {};
}

void session::walk_done(std::uint32_t newfid) {
  auto it = waiting_.find(newfid);
  if (it == waiting_.end()) {
    walking_.erase(newfid);
    return;
  }
  // Start the waiting requests after the walk's reply has been queued, in their order;
  // newfid stays busy until then so that later arrivals keep their place behind them.
  asio::post(ex_, [self = shared_from_this(), newfid] {
    if (self->closed_) return;
    self->walking_.erase(newfid);
    auto w = self->waiting_.find(newfid);
    while (w != self->waiting_.end() && !w->second.empty() && !self->walking_.contains(newfid)) {
      deferred d = std::move(w->second.front());
      w->second.pop_front();
      self->deferred_tags_.erase(d.tag);
      self->dispatch(d.tag, std::move(d.m));
      w = self->waiting_.find(newfid);
    }
    if (w != self->waiting_.end() && w->second.empty()) self->waiting_.erase(w);
  });
}

void session::dispatch(std::uint16_t tag, message&& m) {
  if (dialect_ == dialect::p9_2000_l && is_dotl(type_of(m))) return dispatch_l(tag, std::move(m));
  switch (type_of(m)) {
    case msg_type::tversion:
      do_version(tag, std::get<tversion>(m));
      return;
    case msg_type::tauth:
      do_auth(tag, std::get<tauth>(m));
      return;
    case msg_type::tattach:
      do_attach(tag, std::get<tattach>(m));
      return;
    case msg_type::tflush:
      do_flush(tag, std::get<tflush>(m));
      return;
    case msg_type::twalk:
      do_walk(tag, std::move(m));
      return;
    case msg_type::tclunk:
      do_clunk(tag, std::get<tclunk>(m));
      return;
    default:
      break;
  }

  // The rest name a fid that must exist.
  std::uint32_t num = fid_of(m);
  auto f = lookup(num);
  if (!f) {
    reply_error(tag, err::unknown_fid);
    return;
  }
  if (f->auth_) return do_afid(tag, std::move(m), f);

  switch (type_of(m)) {
    case msg_type::topen: {
      auto mode = std::get<topen>(m).mode;
      if (f->open_) return reply_error(tag, err::already_open);
      if ((mode & ~(3 | otrunc | orclose)) != 0) return reply_error(tag, err::bad_mode);
      if (f->is_dir() && (mode_writes(mode) || (mode & otrunc))) return reply_error(tag, err::is_dir);
      // Check against the file as it is now, not as it was when walked: a wstat may
      // have changed its mode since.
      auto now = tree_.stat1(f->file());
      if (!now) return reply_error(tag, now.error());
      if (!tree_.permitted(*now, f->uname(), open_need(mode))) return reply_error(tag, err::perm);
      walking_.insert(num);  // until the open is answered, later requests on the fid wait
      tree_.open(start(tag, std::move(m), f));
      return;
    }
    case msg_type::tcreate: {
      const auto& c = std::get<tcreate>(m);
      if (f->open_) return reply_error(tag, err::already_open);
      if (!f->is_dir()) return reply_error(tag, err::not_dir);
      if (!legal_name(c.name)) return reply_error(tag, err::bad_name);
      if ((c.mode & ~(3 | otrunc | orclose)) != 0) return reply_error(tag, err::bad_mode);
      auto now = tree_.stat1(f->file());
      if (!now) return reply_error(tag, now.error());
      if (!tree_.permitted(*now, f->uname(), 2)) return reply_error(tag, err::perm);
      walking_.insert(num);
      tree_.create(start(tag, std::move(m), f));
      return;
    }
    case msg_type::tread: {
      auto& rd = std::get<tread>(m);
      if (!f->open_) return reply_error(tag, err::not_open);
      if (!mode_reads(f->mode_)) return reply_error(tag, err::write_only);
      rd.count = std::min(rd.count, msize_ - iohdrsz);
      tree_.read(start(tag, std::move(m), f));
      return;
    }
    case msg_type::twrite: {
      if (!f->open_) return reply_error(tag, err::not_open);
      if (f->is_dir()) return reply_error(tag, err::is_dir);
      if (!mode_writes(f->mode_)) return reply_error(tag, err::read_only);
      if (tree_.hands_off(f->file())) {
        // It may take the connection: nothing after it may have been read, and nothing
        // more is read until it is answered (request::hand_off).
        if (!in_handle_ || input_follows_) return reply_error(tag, err::handoff_trailing);
        auto r = start(tag, std::move(m), f);
        pending_.at(tag)->holds_input = true;
        ++holding_;
        tree_.write(std::move(r));
        return;
      }
      tree_.write(start(tag, std::move(m), f));
      return;
    }
    case msg_type::tremove: {
      // remove(5): the fid is clunked even if the remove fails.
      fids_.erase(num);
      // Who may remove is the tree's rule (tree::may_remove; by default remove(5)'s,
      // write permission on the parent), asked with the parent as it is now.
      auto parent = tree_.stat1(f->parent());
      if (!parent || !tree_.may_remove(*f, *parent)) {
        clunk_fid(*f, true);  // (a refused remove still clunks at the client's word)
        return reply_error(tag, err::perm);
      }
      tree_.remove(start(tag, std::move(m), f));
      return;
    }
    case msg_type::tstat:
      tree_.stat(start(tag, std::move(m), f));
      return;
    case msg_type::twstat:
      tree_.wstat(start(tag, std::move(m), f));
      return;
    default:
      reply_error(tag, fmt::format("botch: unexpected {}", type_name(type_of(m))));
      return;
  }
}

void session::do_version(std::uint16_t tag, tversion& m) {
  // version(5): Tversion aborts every outstanding request and clunks every fid.
  // Plan 9 sends Tversion with NOTAG; another tag is answered on that tag.
  reset();
  if (m.msize < 256) {
    reply_error(tag, err::bad_msize);
    return;
  }
  msize_ = std::min(m.msize, opts_.max_msize);
  // version(5): "9P2000.L" gets 9P2000.L; any other "9P2000.x" (9P2000.u among them) is
  // answered "9P2000", the base it extends; a version not of 9P2000 is "unknown".
  std::string_view v = m.version;
  bool dotl = v == version_9p2000_l;
  bool ours = v.starts_with(version_9p2000) &&
              (v.size() == version_9p2000.size() || v[version_9p2000.size()] == '.');
  versioned_ = ours;
  dialect_ = dotl ? dialect::p9_2000_l : dialect::p9_2000;
  send(fcall{tag, rversion{msize_, dotl   ? std::string(version_9p2000_l)
                                   : ours ? std::string(version_9p2000)
                                          : std::string("unknown")}});
}

void session::do_auth(std::uint16_t tag, tauth& m) {
  // attach(5): a server that needs no authentication answers Tauth with Rerror, and the
  // client attaches with NOFID. Unix-socket peers are known by SO_PEERCRED instead.
  if (peer_.uid || !opts_.auth) return reply_error(tag, err::no_auth);
  if (m.afid == nofid) return reply_error(tag, err::nofid_afid);
  // 9P2000.L: the afid is for n_uname's user when given (the Tattach resolves the same).
  if (auto ok = resolve_n_uname(m.uname, m.n_uname); !ok) return reply_error(tag, ok.error());
  if (fids_.contains(m.afid) || walking_.contains(m.afid)) return reply_error(tag, err::fid_in_use);
  if (fids_full()) return reply_error(tag, fmt::format(fmt::runtime(err::too_many_fids), opts_.max_fids));
  std::size_t afid_limit = attached_ ? opts_.max_afids : opts_.max_afids_unattached;
  if (afids_ >= afid_limit) return reply_error(tag, fmt::format(fmt::runtime(err::too_many_afids), afid_limit));
  // The afid's own challenge, which its credential must carry (srv9p/auth.hpp).
  auto challenge = make_challenge();
  if (!challenge) return reply_error(tag, challenge.error());
  ++afids_;
  auto f = std::make_shared<fid>();
  f->num_ = m.afid;
  f->auth_ = std::make_shared<detail::auth_state>();
  f->auth_->challenge = std::move(*challenge);
  f->auth_->uname = std::move(m.uname);
  f->auth_->aname = std::move(m.aname);
  dir d = afid_dir(m.afid, f->auth_->uname);
  qid q = d.qid;
  f->path_ = std::make_shared<detail::path_elem>(detail::path_elem{std::move(d), nullptr});
  fids_.emplace(m.afid, std::move(f));
  send(fcall{tag, rauth{q}});
}

void session::do_afid(std::uint16_t tag, message&& m, const std::shared_ptr<fid>& f) {
  auto& a = *f->auth_;
  switch (type_of(m)) {
    case msg_type::topen:
      if (f->open_) return reply_error(tag, err::already_open);
      f->open_ = true;
      f->mode_ = std::get<topen>(m).mode;
      return send(fcall{tag, ropen{f->file().qid, 0}});
    case msg_type::tread: {
      // The afid's challenge, "challenge HEX32\n" (srv9p/auth.hpp); from offset on.
      const auto& r = std::get<tread>(m);
      std::string text = challenge_text(a.challenge);
      if (r.offset >= text.size()) return send(fcall{tag, rread{}});
      return send(fcall{tag, rread{text.substr(static_cast<std::size_t>(r.offset), r.count)}});
    }
    case msg_type::tstat:
      return send(fcall{tag, rstat{f->file()}});
    case msg_type::twrite: {
      if (a.state != detail::auth_state::phase::collecting) return reply_error(tag, err::cred_given);
      std::size_t len = std::get<twrite>(m).data.size();
      std::size_t limit = opts_.auth->max_bytes();
      if (a.credential.size() + len > limit) {
        return reply_error(tag, fmt::format(fmt::runtime(err::cred_too_long), a.credential.size() + len, limit));
      }
      a.credential += std::get<twrite>(m).data;
      if (!opts_.auth->complete(a.credential)) {
        if (pending_cred_bytes_ + len > opts_.max_pending_credential_bytes) {
          a.credential.resize(a.credential.size() - len);  // refused: nothing changes
          return reply_error(tag, fmt::format(fmt::runtime(err::cred_bytes_held), opts_.max_pending_credential_bytes));
        }
        pending_cred_bytes_ += len;
        return send(fcall{tag, rwrite{static_cast<std::uint32_t>(len)}});
      }
      pending_cred_bytes_ -= a.credential.size() - len;  // what earlier Twrites held
      // Complete: this Twrite is answered after verification, and requests naming the
      // afid (its Tattach, its clunk) wait for it. A Tflush of the Twrite suppresses the
      // answer, not the verification. One credential per connection is with the
      // authenticator at a time, so that one connection cannot fill its queue; the
      // others wait here, at most max_afids of them.
      a.state = detail::auth_state::phase::verifying;
      walking_.insert(f->num_);
      start(tag, std::move(m), f);
      a.completing = pending_.at(tag);
      if (verifying_ > 0) {
        verify_queue_.push_back(f);
        return;
      }
      return begin_verify(f);
    }
    case msg_type::tremove: {
      // remove(5): the fid is clunked whatever the answer.
      forget_afid(*f);
      fids_.erase(f->num_);
      clunk_fid(*f);
      return reply_error(tag, err::auth_fid);
    }
    default:
      return reply_error(tag, err::auth_fid);
  }
}

void session::begin_verify(const std::shared_ptr<fid>& f) {
  ++verifying_;
  std::weak_ptr<session> weak = weak_from_this();
  // done runs on the authenticator's thread: it only posts, handing its reference to
  // the afid's state over to the executor, so that state never dies on that thread.
  std::string credential = std::move(f->auth_->credential);  // kept no longer than needed
  f->auth_->credential.clear();
  opts_.auth->verify(std::move(credential), f->auth_->cancelled,
                     [weak, ex = ex_, num = f->num_, as = f->auth_](authenticator::verified v) mutable {
                       asio::post(ex, [weak, num, as = std::move(as), v = std::move(v)]() mutable {
                         if (auto self = weak.lock()) self->verified(num, as, std::move(v));
                       });
                     });
}

void session::forget_afid(fid& f) {
  if (!f.auth_) return;
  --afids_;
  pending_cred_bytes_ -= f.auth_->credential.size();
  f.auth_->credential.clear();
}

void session::verified(std::uint32_t num, const std::shared_ptr<detail::auth_state>& a,
                       authenticator::verified v) {
  // The afid's state holds the Twrite, which holds the afid: let go first, whatever else.
  auto p = std::move(a->completing);
  --verifying_;
  if (closed_) return;
  if (v) {
    // The credential must have been made for this server, as the client reached it, and
    // for this afid's challenge (srv9p/auth.hpp): else it was captured by an impostor.
    if (auto why = credential_refusal(v->bound_to, peer_.binding, a->challenge)) v = std::unexpected(std::move(*why));
  }
  if (v) {
    a->state = detail::auth_state::phase::verified;
    a->owner = *v;
  } else {
    a->state = detail::auth_state::phase::refused;
    a->refusal = v.error();
    if (opts_.log) opts_.log(fmt::format("refused credential for {}: {}", a->uname, v.error()));
  }
  if (p && !p->done) {
    if (v) {
      finish(*p, fcall{p->tag, rwrite{static_cast<std::uint32_t>(std::get<twrite>(p->t).data.size())}});
    } else {
      finish(*p, fcall{p->tag, rerror{v.error().substr(0, errmax - 1)}});
    }
  }
  // After a Tversion the fid number may name another afid by now: leave that one alone.
  if (auto f = lookup(num); f && f->auth_ == a) walk_done(num);
  if (!verify_queue_.empty() && verifying_ == 0) {
    auto next = std::move(verify_queue_.front());
    verify_queue_.pop_front();
    begin_verify(next);
  }
}

std::optional<std::uint32_t> session::made_fid(const message& m) {
  if (auto* a = std::get_if<tattach>(&m)) return a->fid;
  if (auto* w = std::get_if<twalk>(&m); w && w->newfid != w->fid) return w->newfid;
  return std::nullopt;
}

void session::do_attach(std::uint16_t tag, tattach& m) {
  if (reserved_.erase(m.fid) > 0) {
    // It waited for its afid, holding its new fid: whatever the answer, what waited
    // behind it may start after it (walk_done posts them after this reply, and keeps
    // the fid marked busy until then so later arrivals stay behind them).
    attach_now(tag, m);
    walk_done(m.fid);
    return;
  }
  if (fids_.contains(m.fid) || walking_.contains(m.fid)) return reply_error(tag, err::fid_in_use);
  attach_now(tag, m);
}

void session::attach_now(std::uint16_t tag, tattach& m) {
  if (fids_.contains(m.fid)) return reply_error(tag, err::fid_in_use);
  if (fids_full()) return reply_error(tag, fmt::format(fmt::runtime(err::too_many_fids), opts_.max_fids));
  if (auto ok = resolve_n_uname(m.uname, m.n_uname); !ok) return reply_error(tag, ok.error());
  // The one place an identity is made: from the Unix-socket peer, the afid's verified
  // credential, or (--auth none) from nothing but the name, which must be one a user
  // can have (a NUL would cut it where NSS reads it).
  if (auto ok = check_uname(m.uname); !ok) return reply_error(tag, ok.error());
  std::expected<identity, std::string> who;
  if (peer_.uid) {
    if (m.afid != nofid) return reply_error(tag, err::no_auth);
    who = authorize(*peer_.uid, m.uname, proof::peercred, opts_.trusted);
  } else if (opts_.auth && m.afid == nofid) {
    // A kernel mount made by `galaxy mount --kernel` (as diod's mount.diod does): the
    // tool authenticated this connection with MUNGE in user space, then gave the socket
    // to the kernel, whose Tversion ended that session and whose Tattach has no afid.
    // The connection keeps what it proved (proven_, kept across Tversion), for that name
    // only: whoever writes on it holds the socket the credential was bound to, and could
    // have gone on from the root fid it already had; a name the credential did not
    // prove still needs one of its own.
    if (!proven_ || proven_->uname != m.uname) return reply_error(tag, err::auth_required);
    who = *proven_;
  } else if (opts_.auth) {
    auto af = lookup(m.afid);
    if (!af) return reply_error(tag, err::unknown_fid);
    if (!af->auth_) return reply_error(tag, err::not_afid);
    const auto& a = *af->auth_;
    using phase = detail::auth_state::phase;
    // phase::verifying cannot be seen here: handle() defers a Tattach naming such an afid.
    if (a.state == phase::collecting || a.state == phase::verifying) return reply_error(tag, err::no_credential);
    if (a.state == phase::refused) return reply_error(tag, a.refusal);
    if (a.uname != m.uname || a.aname != m.aname) return reply_error(tag, err::afid_other_name);
    who = authorize(a.owner->uid, m.uname, proof::munge, opts_.trusted);
  } else {
    if (m.afid != nofid) return reply_error(tag, err::no_auth);
    who = identity{m.uname, m.uname.empty() ? std::nullopt : local_uid(m.uname), proof::none};
  }
  if (!who) {
    if (opts_.log) opts_.log(fmt::format("refused attach: {}", who.error()));
    return reply_error(tag, who.error());
  }
  auto root = tree_.attach(who->uname, m.aname);
  if (!root) return reply_error(tag, root.error());
  if (who->how == proof::munge && m.afid != nofid) proven_ = *who;
  auto f = std::make_shared<fid>();
  f->num_ = m.fid;
  f->who_ = std::move(*who);
  f->session_id_ = id_;
  f->path_ = std::make_shared<detail::path_elem>(detail::path_elem{*root, nullptr});
  qid q = root->qid;
  fids_.emplace(m.fid, std::move(f));
  send(fcall{tag, rattach{q}});
  if (!attached_) {
    attached_ = true;
    if (on_attach_) on_attach_();
  }
}

void session::do_flush(std::uint16_t tag, const tflush& m) {
  // flush(5): answer Rflush, never Rerror; if the old request is pending, abort it (its
  // reply is suppressed) and tell its handler, then answer.
  if (auto it = pending_.find(m.oldtag); it != pending_.end()) abort(it->second);
  send(fcall{tag, rflush{}});
}

void session::do_walk(std::uint16_t tag, message&& m) {
  auto& w = std::get<twalk>(m);
  std::uint32_t newfid = w.newfid;
  if (newfid == w.fid || reserved_.erase(newfid) == 0) return walk_now(tag, std::move(m));
  // It waited, holding newfid (handle()). Free it for the walk; if the walk is answered at
  // once (a clone, an error) rather than by the tree, what waited behind it may start.
  walking_.erase(newfid);
  walk_now(tag, std::move(m));
  if (!walking_.contains(newfid)) {
    walking_.insert(newfid);  // walk_done keeps it busy until the waiters have started
    walk_done(newfid);
  }
}

void session::walk_now(std::uint16_t tag, message&& m) {
  const auto& w = std::get<twalk>(m);
  auto f = lookup(w.fid);
  if (!f) return reply_error(tag, err::unknown_fid);
  // walk(5): fid must not be open; newfid must be unused unless it equals fid. In
  // 9P2000.L a walk from an open fid to another newfid is allowed, as diod's server does
  // (diodls -l walks from the directory it reads): the open fid is left as it was, and
  // newfid starts unopened. A walk that would move the open fid itself is still refused.
  if (f->auth_) return reply_error(tag, err::auth_fid);
  if (f->open_ && (dialect_ != dialect::p9_2000_l || w.newfid == w.fid)) return reply_error(tag, err::walk_open);
  if (w.newfid != w.fid && (fids_.contains(w.newfid) || walking_.contains(w.newfid))) {
    return reply_error(tag, err::fid_in_use);
  }
  if (w.newfid != w.fid && fids_full()) {
    return reply_error(tag, fmt::format(fmt::runtime(err::too_many_fids), opts_.max_fids));
  }
  if (w.wnames.size() > maxwelem) return reply_error(tag, err::too_many_wnames);
  if (w.wnames.empty()) {
    // A clone.
    auto nf = std::make_shared<fid>();
    nf->num_ = w.newfid;
    nf->who_ = f->who_;
    nf->session_id_ = f->session_id_;
    nf->path_ = f->path_;
    fids_[w.newfid] = std::move(nf);
    send(fcall{tag, rwalk{}});
    return;
  }
  if (!f->is_dir()) return reply_error(tag, err::walk_no_dir);
  for (const auto& n : w.wnames) {
    if (n != ".." && n != "." && !legal_name(n)) return reply_error(tag, err::bad_name);
  }
  walking_.insert(w.newfid);
  tree_.walk(start(tag, std::move(m), f));
}

void session::do_clunk(std::uint16_t tag, const tclunk& m) {
  auto it = fids_.find(m.fid);
  if (it == fids_.end()) return reply_error(tag, err::unknown_fid);
  auto f = std::move(it->second);
  fids_.erase(it);
  forget_afid(*f);
  clunk_fid(*f, true);
  send(fcall{tag, rclunk{}});
}

void session::finish(detail::pending& p, fcall reply) {
  if (dialect_ == dialect::p9_2000_l && readdir_step(p, reply)) return;
  msg_type want = static_cast<msg_type>(static_cast<int>(type_of(p.t)) + 1);
  msg_type got = type_of(reply.msg);
  if (got != want && got != msg_type::rerror) {
    // A tree bug; never let it reach the wire as a protocol violation.
    if (opts_.log) opts_.log(fmt::format("tree answered {} with {}", type_name(type_of(p.t)), type_name(got)));
    reply.msg = rerror{"server botch: wrong reply type"};
    got = msg_type::rerror;
  }
  if (got == msg_type::ropen) {
    p.fid->open_ = true;
    p.fid->mode_ = std::get<topen>(p.t).mode;
  } else if (got == msg_type::rwalk || got == msg_type::rcreate) {
    if (opts_.log) opts_.log("tree answered a walk or create with respond(); use respond_walk/respond_create");
    reply.msg = rerror{"server botch: wrong reply type"};
  }
  if (got == msg_type::rwstat) {
    // A rename changes the name the fid's path shows.
    const auto& want_dir = std::get<twstat>(p.t).stat;
    if (!want_dir.name.empty() && want_dir.name != p.fid->file().name) {
      auto e = std::make_shared<detail::path_elem>(*p.fid->path_);
      e->file.name = want_dir.name;
      p.fid->path_ = std::move(e);
    }
  }
  complete(p);
  send(std::move(reply));
}

void session::finish_walk(detail::pending& p, std::vector<dir> walked) {
  const auto& w = std::get<twalk>(p.t);
  if (walked.empty() || walked.size() > w.wnames.size()) {
    finish(p, fcall{p.tag, rerror{std::string(walked.empty() ? err::not_found : err::botch)}});
    return;
  }
  rwalk r;
  r.qids.reserve(walked.size());
  for (const auto& d : walked) r.qids.push_back(d.qid);
  if (walked.size() == w.wnames.size()) {
    // A complete walk: newfid (perhaps fid itself) now stands at the last file.
    if (w.newfid != w.fid && fids_.contains(w.newfid)) {
      complete(p);
      send(fcall{p.tag, rerror{std::string(err::fid_in_use)}});
      return;
    }
    auto path = p.fid->path_;
    for (std::size_t i = 0; i < walked.size(); ++i) {
      if (w.wnames[i] == "..") {
        if (path->parent) path = path->parent;
      } else if (w.wnames[i] != ".") {
        path = std::make_shared<detail::path_elem>(detail::path_elem{std::move(walked[i]), path});
      }
    }
    if (w.newfid == w.fid) {
      p.fid->path_ = std::move(path);
    } else {
      auto nf = std::make_shared<fid>();
      nf->num_ = w.newfid;
      nf->who_ = p.fid->who_;
      nf->session_id_ = p.fid->session_id_;
      nf->path_ = std::move(path);
      fids_[w.newfid] = std::move(nf);
    }
  }
  complete(p);
  send(fcall{p.tag, std::move(r)});
}

void session::finish_create(detail::pending& p, dir created) {
  // create(5): the fid now represents the new file, open in the mode asked.
  auto& f = *p.fid;
  qid q = created.qid;
  f.path_ = std::make_shared<detail::path_elem>(detail::path_elem{std::move(created), f.path_});
  f.open_ = true;
  f.mode_ = std::get<tcreate>(p.t).mode;
  complete(p);
  send(fcall{p.tag, rcreate{q, 0}});
}

void session::finish_handoff(detail::pending& p, fcall reply, handoff_fn take) {
  if (!p.holds_input || !on_handoff_ || type_of(reply.msg) != msg_type::rwrite) {
    if (opts_.log && p.holds_input && on_handoff_) opts_.log("tree handed off a connection with a reply other than Rwrite");
    return finish(p, fcall{p.tag, rerror{std::string(err::handoff_refused)}});
  }
  identity who = p.fid->who();
  handed_off_ = true;  // input stays held from here on
  finish(p, std::move(reply));
  auto hook = std::move(on_handoff_);
  on_handoff_ = nullptr;
  // The answer is with the transport; everything else of the session ends now.
  reset();
  closed_ = true;
  hook(std::move(take), std::move(who));
}

void session::reset() {
  // Abort every outstanding request, telling its handler; then clunk every fid.
  auto pend = pending_;  // abort() erases from pending_
  for (auto& [tag, p] : pend) abort(p);
  auto fids = std::move(fids_);
  fids_.clear();
  // An afid being verified and its Twrite hold each other (auth_state::completing).
  // Nobody will read what the authenticator says of this connection's afids now.
  for (auto& [num, f] : fids) {
    if (f->auth_) {
      f->auth_->completing.reset();
      f->auth_->cancelled->store(true);
    }
  }
  afids_ = 0;
  pending_cred_bytes_ = 0;
  verify_queue_.clear();
  walking_.clear();
  reserved_.clear();
  waiting_.clear();
  deferred_tags_.clear();
  for (auto& [num, f] : fids) clunk_fid(*f);
  versioned_ = false;
  auto lreqs = std::move(lreqs_);  // (aborting the requests above forgot theirs)
  lreqs_.clear();
  for (auto& [tag, l] : lreqs)
    if (l.made) clunk_fid(*l.made);
}

void session::close() {
  if (closed_) return;
  reset();
  closed_ = true;
}

// ==== server ============================================================================

namespace {

using generic_socket = asio::generic::stream_protocol::socket;

// Replies at most this large are appended to the previous queued buffer, so a burst of
// small replies leaves in one contiguous write.
constexpr std::size_t coalesce_limit = 16 * 1024;
// A client that stops reading its replies stops being read once this much is queued.
constexpr std::size_t queue_high_water = 8 * 1024 * 1024;

// A Unix socket's file, held through its directory: the directory is opened once
// (O_PATH), and the socket is bound, checked, made 0666 and removed relative to that
// descriptor, so that a directory of the path swapped for a symbolic link by another
// user after the open never sends the daemon elsewhere (a chmod or an unlink of another
// file of the same name). What the name in the directory holds is trusted only while it
// is the very socket the daemon bound (device and inode, read right after bind).
struct unix_socket_file {
  int dir_fd = -1;
  std::string name;     // the last component of the path
  std::string via_dir;  // "/proc/self/fd/DIR/NAME": the name as bind(2) resolves it
  bool has_proc = true;  // /proc/self/fd is there (else via_dir is the path itself)
  ::dev_t dev = 0;
  ::ino_t ino = 0;

  unix_socket_file() = default;
  unix_socket_file(const unix_socket_file&) = delete;
  unix_socket_file& operator=(const unix_socket_file&) = delete;
  ~unix_socket_file() {
    if (dir_fd >= 0) ::close(dir_fd);
  }

  // Opens path's directory. Errors: the directory cannot be opened, the name is empty,
  // ".", "..", or longer than bind(2) can take through /proc/self/fd.
  std::expected<void, std::string> open(const std::string& path) {
    auto slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    name = slash == std::string::npos ? path : path.substr(slash + 1);
    if (name.empty() || name == "." || name == "..") {
      return std::unexpected(fmt::format("{}: not a socket file name", path));
    }
    dir_fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return std::unexpected(fmt::format("open {}: {}", dir, std::strerror(errno)));
    // Without /proc (a bare chroot or container), bind(2) can only take the path, and
    // the socket keeps the daemon's umask: nothing is chmodded by a path.
    has_proc = ::access("/proc/self/fd", X_OK) == 0;
    via_dir = has_proc ? fmt::format("/proc/self/fd/{}/{}", dir_fd, name) : path;
    if (via_dir.size() >= sizeof(::sockaddr_un::sun_path)) {
      return std::unexpected(fmt::format("{}: the socket's file name is too long ({} bytes)", path, name.size()));
    }
    return {};
  }

  // The entry now at name, not followed if it is a link.
  std::expected<struct ::stat, int> lstat() const {
    struct ::stat st{};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return std::unexpected(errno);
    return st;
  }

  // After bind: opens what name holds with O_PATH|O_NOFOLLOW and, only if it is a socket
  // of the daemon's euid, remembers its device and inode (the socket bound here) and
  // makes it 0666 through /proc/self/fd (not without /proc: it keeps the umask's mode).
  std::expected<void, std::string> take_and_open_to_all() {
    int fd = ::openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return std::unexpected(fmt::format("open {}: {}", name, std::strerror(errno)));
    struct ::stat st{};
    std::expected<void, std::string> result;
    if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != ::geteuid()) {
      result = std::unexpected(fmt::format("{} was replaced by another file after bind", name));
    } else {
      dev = st.st_dev;
      ino = st.st_ino;
      if (has_proc && ::chmod(fmt::format("/proc/self/fd/{}", fd).c_str(), 0666) != 0) {
        result = std::unexpected(fmt::format("chmod 0666 {}: {}", name, std::strerror(errno)));
      }
    }
    ::close(fd);
    return result;
  }

  // At stop: removes name only while it is still the socket bound here.
  void remove() const {
    auto st = lstat();
    if (st && ino != 0 && st->st_dev == dev && st->st_ino == ino) ::unlinkat(dir_fd, name.c_str(), 0);
  }
};

}  // namespace

struct server::impl : std::enable_shared_from_this<server::impl> {
  class connection;

  asio::io_context& io;
  tree& t;
  server_options opts;
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> tcp_acceptors;
  std::vector<std::unique_ptr<asio::local::stream_protocol::acceptor>> unix_acceptors;
  std::vector<std::unique_ptr<unix_socket_file>> unix_files;  // removed at stop()
  std::set<std::shared_ptr<connection>> conns;
  bool stopped = false;
  // TCP connections not yet attached, and connections per Unix-socket peer uid
  // (server_options::max_unattached_connections, max_connections_per_uid).
  std::size_t unattached = 0;
  std::unordered_map<uid_t, std::size_t> per_uid;

  impl(asio::io_context& io_, tree& t_, server_options o) : io(io_), t(t_), opts(std::move(o)) {}

  void log(std::string_view line) const {
    if (opts.log) opts.log(line);
  }

  void start_connection(generic_socket sock, peer_info peer, std::function<void()> on_close = {});
  // Accepts connections until stop(); Acceptor is a TCP or a Unix-socket acceptor.
  template <class Acceptor>
  asio::awaitable<void> accept(Acceptor& a);
};

class server::impl::connection : public std::enable_shared_from_this<connection> {
 public:
  connection(std::shared_ptr<server::impl> srv, generic_socket sock, peer_info peer)
      : srv_(std::move(srv)), sock_(std::move(sock)), peer_(peer), wake_writer_(sock_.get_executor()),
        wake_reader_(sock_.get_executor()), attach_timer_(sock_.get_executor()) {
    wake_writer_.expires_at(asio::steady_timer::time_point::max());
    wake_reader_.expires_at(asio::steady_timer::time_point::max());
  }

  void start() {
    std::weak_ptr<connection> weak = weak_from_this();
    session_ = std::make_shared<session>(sock_.get_executor(), srv_->t, srv_->opts,
                                         [weak](wire_message m) {
                                           if (auto c = weak.lock()) c->enqueue(std::move(m));
                                         },
                                         peer_);
    session_->on_handoff([weak](handoff_fn take, identity who) {
      if (auto c = weak.lock()) c->begin_handoff(std::move(take), std::move(who));
    });
    if (peer_.uid) {
      ++srv_->per_uid[*peer_.uid];
    } else {
      counted_unattached_ = true;
      ++srv_->unattached;
      session_->on_attach([weak] {
        if (auto c = weak.lock()) c->uncount_unattached();
      });
    }
    auto self = shared_from_this();
    if (srv_->opts.attach_timeout_ms > 0) {
      // A connection that never attaches (no credential, a wrong one, a slow scan) must
      // not hold its socket and memory for ever.
      attach_timer_.expires_after(std::chrono::milliseconds(srv_->opts.attach_timeout_ms));
      attach_timer_.async_wait([weak](const asio::error_code& ec) {
        auto c = weak.lock();
        if (ec || !c || c->stopped_ || c->session_->attached()) return;
        c->srv_->log(fmt::format("closing connection: not attached within {} ms", c->srv_->opts.attach_timeout_ms));
        c->stop();
      });
    }
    asio::co_spawn(sock_.get_executor(), self->reader(self), ended(self));
    asio::co_spawn(sock_.get_executor(), self->writer(self), ended(self));
  }

  // The completion of the reader and the writer: an exception out of either (bad_alloc
  // where address space runs out, as on a 32-bit Pi) ends the connection with a log line,
  // rather than leaving the other half and the socket alive for ever (asio::detached
  // dropped it: the attack on the gathered writes).
  static std::function<void(std::exception_ptr)> ended(std::shared_ptr<connection> self) {
    return [self = std::move(self)](std::exception_ptr e) {
      if (!e) return;
      std::string why = "unknown exception";
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        why = x.what();
      } catch (...) {
      }
      self->srv_->log(fmt::format("closing connection: {}", why));
      self->stop();
    };
  }

  void uncount_unattached() {
    if (!counted_unattached_) return;
    counted_unattached_ = false;
    --srv_->unattached;
  }

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    uncount_unattached();
    if (peer_.uid) {
      auto it = srv_->per_uid.find(*peer_.uid);
      if (it != srv_->per_uid.end() && --it->second == 0) srv_->per_uid.erase(it);
    }
    session_->close();
    asio::error_code ignored;
    if (sock_.is_open()) {  // (a handed-off socket was released: it is not ours to close)
      sock_.shutdown(generic_socket::shutdown_both, ignored);
      sock_.close(ignored);
    }
    wake_writer_.cancel();
    wake_reader_.cancel();
    attach_timer_.cancel();
    if (on_close_) asio::post(sock_.get_executor(), std::move(on_close_));
    on_close_ = nullptr;
    srv_->conns.erase(shared_from_this());
  }

  // Runs once the connection has ended (server::adopt).
  void on_close(std::function<void()> f) { on_close_ = std::move(f); }

 private:
  // Small replies are coalesced into the head of the last queued one, as long as that has
  // no bulk yet (its bytes must stay in order); a reply's bulk is never copied.
  void enqueue(wire_message m) {
    if (stopped_) return;
    queued_bytes_ += m.size();
    if (!queue_.empty() && queue_.back().bulk.empty() && m.size() <= coalesce_limit &&
        queue_.back().head.size() + m.size() <= 4 * coalesce_limit) {
      auto& back = queue_.back();
      back.head.insert(back.head.end(), m.head.begin(), m.head.end());
      back.bulk = std::move(m.bulk);
    } else {
      queue_.push_back(std::move(m));
    }
    wake_writer_.cancel_one();
  }

  // The session handed the connection off (request::hand_off): the answer is queued;
  // the writer sends it and then gives the socket away (finish_handoff).
  void begin_handoff(handoff_fn take, identity who) {
    if (stopped_) return;
    handoff_take_ = std::move(take);
    handoff_who_ = std::move(who);
    handing_off_ = true;
    wake_writer_.cancel_one();
  }

  // After the last queued byte has been written: releases the socket (without closing
  // it), ends this connection and hands the socket to the tree's receiver.
  void finish_handoff() {
    asio::error_code ec;
    int fd = sock_.release(ec);
    if (ec) {
      srv_->log(fmt::format("closing connection: hand-off: {}", ec.message()));
      return stop();
    }
    auto take = std::move(handoff_take_);
    handoff take_args{fd, peer_, std::move(handoff_who_)};
    stop();
    asio::post(srv_->io, [take = std::move(take), h = std::move(take_args)]() mutable { take(std::move(h)); });
  }

  // Parses every whole message in the buffer and reads more; a framing error or EOF ends
  // the connection. While the session holds input (a hand-off write outstanding) nothing
  // is read, so no byte meant for whoever takes the connection is consumed here.
  asio::awaitable<void> reader([[maybe_unused]] std::shared_ptr<connection> self) {
    std::vector<std::uint8_t> buf(64 * 1024);
    std::size_t have = 0;
    while (!stopped_) {
      if (session_->input_held()) {
        if (session_->handed_off()) co_return;  // the writer ends the connection
        co_await wake_reader_.async_wait(as_tuple_awaitable);
        continue;
      }
      if (queued_bytes_ > queue_high_water) {
        co_await wake_reader_.async_wait(as_tuple_awaitable);
        continue;
      }
      auto [ec, n] = co_await sock_.async_read_some(asio::buffer(buf.data() + have, buf.size() - have),
                                                    as_tuple_awaitable);
      if (ec) break;
      have += n;
      std::size_t off = 0;
      while (have - off >= 4 && !stopped_) {
        std::uint32_t size = peek_size(std::span(buf.data() + off, 4));
        if (size < header_size || size > session_->msize()) {
          srv_->log(fmt::format("closing connection: message size {} outside [7, msize {}]", size,
                                session_->msize()));
          stop();
          co_return;
        }
        if (have - off < size) {
          if (size > buf.size()) buf.resize(std::max<std::size_t>(size, buf.size() * 2));
          break;
        }
        auto ok = session_->handle(std::span(buf.data() + off, size), have - off > size);
        if (!ok) {
          srv_->log(fmt::format("closing connection: {}", ok.error()));
          stop();
          co_return;
        }
        off += size;
        // A held message was the last one here (else handle() refused it): stop parsing.
        if (session_->input_held()) break;
      }
      if (off > 0) {
        std::memmove(buf.data(), buf.data() + off, have - off);
        have -= off;
      }
    }
    stop();
  }

  // Drains the reply queue with one gathered write per batch.
  asio::awaitable<void> writer([[maybe_unused]] std::shared_ptr<connection> self) {
    std::vector<wire_message> batch;
    std::vector<asio::const_buffer> bufs;
    while (!stopped_) {
      if (queue_.empty()) {
        if (handing_off_) {
          finish_handoff();
          co_return;
        }
        co_await wake_writer_.async_wait(as_tuple_awaitable);
        continue;
      }
      batch.swap(queue_);
      bufs.clear();
      std::size_t bytes = 0;
      for (const auto& m : batch) {
        bufs.emplace_back(m.head.data(), m.head.size());
        if (!m.bulk.empty()) bufs.emplace_back(m.bulk.data(), m.bulk.size());
        bytes += m.size();
      }
      auto [ec, n] = co_await asio::async_write(sock_, bufs, as_tuple_awaitable);
      if (ec) break;
      queued_bytes_ -= bytes;
      batch.clear();
      wake_reader_.cancel_one();  // (also after a hand-off write's Rerror: input resumes)
    }
    stop();
  }

  std::shared_ptr<server::impl> srv_;
  generic_socket sock_;
  peer_info peer_;
  std::shared_ptr<session> session_;
  std::vector<wire_message> queue_;
  std::size_t queued_bytes_ = 0;
  asio::steady_timer wake_writer_;
  asio::steady_timer wake_reader_;
  asio::steady_timer attach_timer_;
  bool stopped_ = false;
  bool counted_unattached_ = false;  // in srv_->unattached
  std::function<void()> on_close_;
  // A hand-off under way: the writer sends what is queued, then finish_handoff().
  bool handing_off_ = false;
  handoff_fn handoff_take_;
  identity handoff_who_;
};

void server::impl::start_connection(generic_socket sock, peer_info peer, std::function<void()> on_close) {
  auto c = std::make_shared<connection>(shared_from_this(), std::move(sock), peer);
  if (on_close) c->on_close(std::move(on_close));
  conns.insert(c);
  c->start();
}

template <class Acceptor>
asio::awaitable<void> server::impl::accept(Acceptor& a) {
  auto self = shared_from_this();
  while (!stopped) {
    auto [ec, sock] = co_await a.async_accept(as_tuple_awaitable);
    if (ec == asio::error::operation_aborted || stopped) co_return;
    if (ec) {
      // EMFILE and friends: say so, pause briefly, and keep serving the others.
      log(fmt::format("accept: {}", ec.message()));
      asio::steady_timer pause(io, std::chrono::milliseconds(100));
      co_await pause.async_wait(as_tuple_awaitable);
      continue;
    }
    peer_info peer;
    if constexpr (std::is_same_v<Acceptor, asio::ip::tcp::acceptor>) {
      asio::error_code ignored;
      auto from = sock.remote_endpoint(ignored);
      if (unattached >= opts.max_unattached_connections) {
        // A flood of connections that never authenticate must not hold the server's
        // memory and munged's time while real logins wait; those already attached go on.
        log(fmt::format("closing connection from {}: {} connections not yet attached (limit)",
                        from.address().to_string(), unattached));
        continue;  // sock closes as it goes out of scope
      }
      sock.set_option(asio::ip::tcp::no_delay(true), ignored);
      // What the client's credential must be bound to: this end, as the server sees it.
      auto binding = socket_binding(sock.native_handle(), false);
      if (!binding) {
        log(fmt::format("closing connection: {}", binding.error()));
        continue;
      }
      peer.binding = std::move(*binding);
    } else {
      // A Unix-socket peer is who the kernel says it is (unix(7), SO_PEERCRED).
      ::ucred cred{};
      ::socklen_t len = sizeof cred;
      if (::getsockopt(sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        log(fmt::format("closing connection: SO_PEERCRED: {}", std::strerror(errno)));
        continue;  // sock closes as it goes out of scope
      }
      peer.uid = cred.uid;
      if (auto it = per_uid.find(cred.uid);
          cred.uid != 0 && it != per_uid.end() && it->second >= opts.max_connections_per_uid) {
        log(fmt::format("closing connection: uid {} has {} connections (limit)", cred.uid, it->second));
        continue;
      }
    }
    start_connection(generic_socket(std::move(sock)), peer);
  }
}

server::server(asio::io_context& io, tree& t, server_options opts)
    : impl_(std::make_shared<impl>(io, t, std::move(opts))) {}

server::~server() { stop(); }

std::expected<std::string, std::string> server::listen(std::string_view dial) {
  auto addr = parse_dial(dial);
  if (!addr) return std::unexpected(addr.error());
  asio::error_code ec;
  if (addr->net == dial_addr::net_kind::unix_socket) {
    using local = asio::local::stream_protocol;
    auto file = std::make_unique<unix_socket_file>();
    if (auto opened = file->open(addr->path); !opened) {
      return std::unexpected(fmt::format("listen {}: {}", to_string(*addr), opened.error()));
    }
    if (auto st = file->lstat(); st) {
      if (!S_ISSOCK(st->st_mode)) {
        return std::unexpected(fmt::format("{}: exists and is not a socket", addr->path));
      }
      local::socket probe(impl_->io);
      probe.connect(local::endpoint(file->via_dir), ec);
      if (!ec) return std::unexpected(fmt::format("{}: a server is already listening there", addr->path));
      ::unlinkat(file->dir_fd, file->name.c_str(), 0);  // stale: nobody answers
    }
    auto a = std::make_unique<local::acceptor>(impl_->io);
    a->open(local(), ec);
    if (!ec) a->bind(local::endpoint(file->via_dir), ec);
    if (!ec) a->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return std::unexpected(fmt::format("listen {}: {}", to_string(*addr), ec.message()));
    if (auto made = file->take_and_open_to_all(); !made) {
      return std::unexpected(fmt::format("listen {}: {}", to_string(*addr), made.error()));
    }
    impl_->unix_files.push_back(std::move(file));
    auto& ref = *a;
    impl_->unix_acceptors.push_back(std::move(a));
    asio::co_spawn(impl_->io, impl_->accept(ref), asio::detached);
    return to_string(*addr);
  }

  using tcp = asio::ip::tcp;
  tcp::endpoint ep;
  bool every = addr->host == "*";
  if (every) {
    // announce(2)'s "*": every address of both families, through one IPv6 socket that
    // also takes IPv4 (v6only off); IPv4 alone where the kernel has no IPv6.
    ep = tcp::endpoint(tcp::v6(), addr->port);
  } else {
    tcp::resolver resolver(impl_->io);
    auto results = resolver.resolve(addr->host, std::to_string(addr->port),
                                    tcp::resolver::numeric_service, ec);
    if (ec || results.empty()) {
      return std::unexpected(fmt::format("listen {}: cannot resolve '{}': {}", to_string(*addr), addr->host,
                                         ec ? ec.message() : "no address"));
    }
    ep = results.begin()->endpoint();
  }
  auto a = std::make_unique<tcp::acceptor>(impl_->io);
  a->open(ep.protocol(), ec);
  if (every && ec) {
    ec.clear();
    ep = tcp::endpoint(tcp::v4(), addr->port);
    a->open(ep.protocol(), ec);
  } else if (every) {
    a->set_option(asio::ip::v6_only(false), ec);
  }
  if (!ec) a->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a->bind(ep, ec);
  if (!ec) a->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return std::unexpected(fmt::format("listen {}: {}", to_string(*addr), ec.message()));
  auto bound = a->local_endpoint(ec);
  dial_addr out;
  out.net = dial_addr::net_kind::tcp;
  out.host = every ? std::string("*") : bound.address().to_string();  // announce(2) prints "*" back
  out.port = bound.port();
  auto& ref = *a;
  impl_->tcp_acceptors.push_back(std::move(a));
  asio::co_spawn(impl_->io, impl_->accept(ref), asio::detached);
  return to_string(out);
}

std::expected<void, std::string> server::adopt(int fd, peer_info peer, std::function<void()> on_close) {
  ::sockaddr_storage ss{};
  ::socklen_t len = sizeof ss;
  int type = 0;
  ::socklen_t tlen = sizeof type;
  if (::getsockname(fd, reinterpret_cast<::sockaddr*>(&ss), &len) != 0 ||
      ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM ||
      (ss.ss_family != AF_INET && ss.ss_family != AF_INET6 && ss.ss_family != AF_UNIX)) {
    ::close(fd);
    return std::unexpected(std::string("adopt: not a TCP or Unix stream socket"));
  }
  if (impl_->stopped) {
    ::close(fd);
    return std::unexpected(std::string("adopt: the server has stopped"));
  }
  int protocol = ss.ss_family == AF_UNIX ? 0 : IPPROTO_TCP;
  asio::error_code ec;
  generic_socket sock(impl_->io);
  sock.assign(asio::generic::stream_protocol(ss.ss_family, protocol), fd, ec);
  if (ec) {
    ::close(fd);
    return std::unexpected("adopt: " + ec.message());
  }
  impl_->start_connection(std::move(sock), std::move(peer), std::move(on_close));
  return {};
}

void server::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  asio::error_code ignored;
  for (auto& a : impl_->tcp_acceptors) a->close(ignored);
  for (auto& a : impl_->unix_acceptors) a->close(ignored);
  for (const auto& f : impl_->unix_files) f->remove();
  auto conns = impl_->conns;  // stop() erases from the set
  for (const auto& c : conns) c->stop();
}

std::size_t server::connections() const { return impl_->conns.size(); }

}  // namespace srv9p
