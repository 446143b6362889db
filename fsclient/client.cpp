// The 9P2000 client (fsclient/client.hpp).
//
// Arrangement. Asio resolves and connects; after that the socket is a plain blocking file
// descriptor. A request is encoded by its caller into a thread-local buffer, given a tag
// under mu_ (the tag table), and written under write_mu_, one write() per batch. One
// reader thread reads big chunks, decodes every whole message in them, takes the matching
// completions out of the tag table under one lock per chunk, and runs them with no lock
// held. A completion is either a callback (send()) or a slot in a waiter that lives on a
// blocking caller's stack (rpc(), rpc_batch()).
//
// Tags. Tags 0..0xFFFE (NOTAG is Tversion's) are slots in a vector that grows on demand,
// with a free stack; a tag returns to it when its reply has arrived and no Tflush of it
// is outstanding, because flush(5) lets a client reuse a flushed tag only after Rflush.
//
// Hang-up. When the reader sees end of file or a framing error, or close() is called,
// every waiting request fails with err::hungup and later sends fail at once; close()
// shuts the socket down so that the reader wakes, and the destructor joins it.
//
// io mode (async_dial, adopt). The socket is an asio generic stream socket on the given
// io_context (asio sends with MSG_NOSIGNAL, so a reset peer is an error, not SIGPIPE).
// Reads: one async_read_some at a time into rbuf, parsed and delivered as the reader
// thread does, on io's thread. Writes: submit() appends the encoded batch to outq under
// out_mu and, if no write is in progress, posts write_next(), which moves outq to
// inflight and async_writes it; so callers on any thread never touch the socket, and a
// server that stops reading makes the queue grow, up to max_queue_bytes, then the
// connection is closed. Pending handlers hold a shared_ptr to impl, so the client may go
// away while they are outstanding; the socket's descriptor is closed only when impl is
// destroyed, so close() from another thread can never shut down a reused descriptor.
#include "fsclient/client.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio/connect.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "srv9p/auth.hpp"
#include "srv9p/dial.hpp"
#include "srv9p/errors.hpp"

namespace fsclient {
namespace {

using srv9p::message;
using srv9p::msg_type;

// The 9P port (9fs in /etc/services), for dial strings that name no port.
constexpr std::uint16_t default_port = 564;
// The smallest msize worth speaking: a header, a stat entry with modest names.
constexpr std::uint32_t min_msize = 256;
constexpr std::size_t max_tags = 0xFFFF;  // tags 0..0xFFFE; 0xFFFF is NOTAG
constexpr std::size_t initial_read_buffer = 64 * 1024;

std::unexpected<std::string> fail(std::string_view s) { return std::unexpected(std::string(s)); }

std::string botch(std::string_view what) {
  std::string e(srv9p::err::botch);
  e += ": ";
  e += what;
  return e;
}

// A blocking caller's mailbox, on its stack: replies land in out[index]; the caller waits
// until remaining is zero. The deliverer notifies while holding m, so the waiter cannot
// return (and destroy this) before the notification is done.
struct waiter {
  std::mutex m;
  std::condition_variable cv;
  std::size_t remaining = 0;
  client::reply* out = nullptr;

  void wait() {
    std::unique_lock lk(m);
    cv.wait(lk, [this] { return remaining == 0; });
  }
};

// Where one reply goes.
struct completion {
  client::callback cb;
  waiter* w = nullptr;
  std::uint32_t index = 0;
  client::reply r;

  void deliver() {
    if (w != nullptr) {
      std::lock_guard lk(w->m);
      w->out[index] = std::move(r);
      if (--w->remaining == 0) w->cv.notify_all();
    } else if (cb) {
      cb(std::move(r));
    }
  }
};

// One request on its way out.
struct outgoing {
  message* m = nullptr;
  client::callback* cb = nullptr;  // either cb ...
  waiter* w = nullptr;             // ... or w with index
  std::uint32_t index = 0;
};

void join_names(const std::vector<std::string>& names, std::size_t upto, std::string& out) {
  for (std::size_t i = 0; i <= upto && i < names.size(); i++) {
    if (i > 0) out += '/';
    out += names[i];
  }
}

// "'a/b/c': text", naming the path up to and including element k.
std::string walk_error(const std::vector<std::string>& names, std::size_t k, std::string_view text) {
  std::string e = "'";
  join_names(names, k, e);
  e += "': ";
  e += text;
  return e;
}

// The typed R-message of a reply, or its error.
template <class R>
result<R> expect(client::reply r) {
  if (!r) return std::unexpected(std::move(r.error()));
  if (auto* p = std::get_if<R>(&*r)) return std::move(*p);
  return std::unexpected(botch("unexpected reply " + std::string(srv9p::type_name(srv9p::type_of(*r)))));
}

// The credential for an afid whose challenge read answered r (srv9p/auth.hpp): made by
// credential bound to binding and the challenge. Errors: the read's, the challenge's
// format, the credential function's.
result<std::string> credential_for(const std::function<result<std::string>(std::string_view)>& credential,
                                   const std::string& binding, client::reply r) {
  auto text = expect<srv9p::rread>(std::move(r));
  if (!text) return std::unexpected("reading the afid's challenge: " + text.error());
  auto challenge = srv9p::parse_challenge(text->data);
  if (!challenge) return std::unexpected(std::move(challenge.error()));
  return credential(srv9p::credential_payload(binding, *challenge));
}

bool write_all(int fd, const std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Turns on TCP keepalive (socket(7), tcp(7)); nothing for a Unix socket or keepalive_s 0.
void set_keepalive(int fd, std::uint32_t keepalive_s) {
  if (keepalive_s == 0) return;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return;
  int on = 1;
  int idle = static_cast<int>(std::min<std::uint32_t>(keepalive_s, 32767));
  int intvl = std::max(1, idle / 3);
  int cnt = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

}  // namespace

struct client::impl : std::enable_shared_from_this<client::impl> {
  // One tag's state.
  struct slot {
    enum class kind : std::uint8_t { free, callback, waiter, flush };
    kind k = kind::free;
    bool answered = false;       // its reply (or "interrupted") has been delivered
    msg_type request{};          // the T-message's type, to check the reply's
    std::uint16_t flushes = 0;   // Tflushes of this tag still waiting for Rflush
    std::uint16_t oldtag = 0;    // kind::flush: the tag it flushes
    std::uint32_t use = 0;       // times this tag has been handed out (for ticket flushes)
    std::uint32_t index = 0;     // kind::waiter
    waiter* w = nullptr;         // kind::waiter
    callback cb;                 // kind::callback
  };

  client* self = nullptr;
  int fd = -1;
  std::uint32_t msize = 0;
  std::atomic<bool> closed{false};

  std::mutex mu;  // guards everything down to write_mu
  std::condition_variable tag_cv;
  std::size_t tag_waiters = 0;
  bool hung = false;
  std::vector<slot> slots;
  std::vector<std::uint16_t> free_tags;

  std::mutex write_mu;  // one writer at a time on fd

  std::mutex fid_mu;
  std::vector<std::uint32_t> free_fids;
  std::uint32_t next_fid = 0;

  std::function<result<std::string>(std::string_view)> credential;  // options::credential
  std::string binding;  // srv9p::socket_binding(fd, peer), for credential
  std::atomic<bool> server_auth{false};             // a Tauth was accepted

  std::thread reader;
  std::atomic<std::thread::id> reader_id{};

  // Reader thread only (and dial() before it starts); in io mode, io's thread only.
  std::vector<std::uint8_t> rbuf;
  std::size_t rlen = 0;

  std::string why;  // under mu: the first reason the connection closed

  // io mode: the socket (which owns fd) and the outbound queue.
  asio::io_context* io = nullptr;
  std::unique_ptr<asio::generic::stream_protocol::socket> sock;
  std::mutex out_mu;
  std::vector<std::uint8_t> outq;      // under out_mu: written by callers, not yet handed to a write
  std::vector<std::uint8_t> inflight;  // being written by async_write (resized under out_mu only)
  bool writing = false;                // under out_mu: write_next() is posted or a write is in flight
  std::size_t max_queue_bytes = 0;
  std::function<void(std::string_view)> log;

  ~impl() {
    if (sock) {
      asio::error_code ec;
      sock->close(ec);  // owns fd
    } else if (fd >= 0) {
      ::close(fd);
    }
  }

  // Where replies are delivered: the reader thread, or io's thread in io mode. A blocking
  // call from there would wait for itself.
  bool on_reader_thread() const {
    if (io != nullptr) return io->get_executor().running_in_this_thread();
    return reader_id.load() == std::this_thread::get_id();
  }

  // Writes bytes of whole messages: at once under write_mu (thread mode), or through the
  // outbound queue (io mode). False when they cannot go (the connection is being closed:
  // the hang-up fails what they carried).
  bool transmit(const std::uint8_t* p, std::size_t n) {
    if (io == nullptr) {
      bool ok;
      {
        std::lock_guard lk(write_mu);
        ok = write_all(fd, p, n);
      }
      if (!ok) ::shutdown(fd, SHUT_RDWR);  // the reader sees it, and the hang-up fails the rest
      return ok;
    }
    std::unique_lock lk(out_mu);
    if (closed) return false;
    if (outq.size() + inflight.size() + n > max_queue_bytes) {
      lk.unlock();
      fail_connection("outbound queue over " + std::to_string(max_queue_bytes) + " bytes: the server is not reading");
      return false;
    }
    outq.insert(outq.end(), p, p + n);
    if (!writing) {
      writing = true;
      asio::post(*io, [self = shared_from_this()] { self->write_next(); });
    }
    return true;
  }

  // io's thread: hands what is queued to one async_write; again when it has gone.
  void write_next() {
    {
      std::lock_guard lk(out_mu);
      inflight.clear();
      if (outq.empty() || closed) {
        writing = false;
        return;
      }
      inflight.swap(outq);
    }
    asio::async_write(*sock, asio::buffer(inflight), [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
      if (ec) {
        {
          std::lock_guard lk(self->out_mu);
          self->writing = false;
        }
        return self->fail_connection("write: " + ec.message());
      }
      self->write_next();
    });
  }

  // Closes the connection for a reason worth logging (io mode: the reads end, every
  // waiting request fails).
  void fail_connection(const std::string& reason) {
    {
      std::lock_guard lk(mu);
      if (why.empty()) why = reason;
    }
    if (log && !closed.load()) log(reason);
    ::shutdown(fd, SHUT_RDWR);
    hangup();
  }

  // A free tag, or none if the connection is gone, or if all 65535 are in flight and the
  // caller is the reader thread (which must not wait for itself).
  std::optional<std::uint16_t> alloc_tag(std::unique_lock<std::mutex>& lk) {
    for (;;) {
      if (hung) return std::nullopt;
      if (!free_tags.empty()) {
        auto t = free_tags.back();
        free_tags.pop_back();
        slots[t].use++;
        return t;
      }
      if (slots.size() < max_tags) {
        slots.emplace_back();
        return static_cast<std::uint16_t>(slots.size() - 1);
      }
      if (on_reader_thread()) return std::nullopt;
      tag_waiters++;
      tag_cv.wait(lk);
      tag_waiters--;
    }
  }

  void free_tag(std::uint16_t t) {
    slot& s = slots[t];
    s.k = slot::kind::free;  // (use is kept: the next alloc_tag counts on from it)
    s.answered = false;
    s.flushes = 0;
    s.w = nullptr;
    s.cb = nullptr;
    free_tags.push_back(t);
    if (tag_waiters > 0) tag_cv.notify_one();
  }

  // Moves slot s's destination into a completion carrying r.
  static void complete(slot& s, reply r, std::vector<completion>& done) {
    completion& c = done.emplace_back();
    if (s.k == slot::kind::waiter) {
      c.w = s.w;
      c.index = s.index;
    } else {
      c.cb = std::move(s.cb);
    }
    c.r = std::move(r);
    s.answered = true;
  }

  // Called under mu for each reply, in arrival order.
  void on_reply(srv9p::fcall& f, std::vector<completion>& done) {
    if (f.tag >= slots.size()) return;  // a stray reply: ignore it, as devmnt does
    slot& s = slots[f.tag];
    if (s.k == slot::kind::free) return;
    if (s.k == slot::kind::flush) {
      // flush(5): the server answers the old request, if at all, before Rflush, so an
      // old request still unanswered now never will be.
      std::uint16_t old = s.oldtag;
      free_tag(f.tag);
      slot& o = slots[old];
      if (o.k == slot::kind::free) return;
      if (o.flushes > 0) o.flushes--;
      if (!o.answered) complete(o, fail(srv9p::err::interrupted), done);
      if (o.flushes == 0) free_tag(old);
      return;
    }
    if (s.answered) return;  // a second reply to one tag: ignore it
    auto t = srv9p::type_of(f.msg);
    if (t == msg_type::rerror) {
      complete(s, std::unexpected(std::move(std::get<srv9p::rerror>(f.msg).ename)), done);
    } else if (static_cast<unsigned>(t) != static_cast<unsigned>(s.request) + 1) {
      complete(s,
               std::unexpected(botch(std::string(srv9p::type_name(s.request)) + " answered by " +
                                     std::string(srv9p::type_name(t)))),
               done);
    } else {
      complete(s, std::move(f.msg), done);
    }
    if (s.flushes == 0) free_tag(f.tag);
  }

  // The connection is gone: fail every waiting request. Idempotent.
  void hangup() {
    std::vector<completion> done;
    {
      std::lock_guard lk(mu);
      if (hung) return;
      hung = true;
      closed = true;
      if (why.empty()) why = srv9p::err::hungup;
      for (auto& s : slots) {
        if (s.k != slot::kind::free && s.k != slot::kind::flush && !s.answered) {
          complete(s, fail(srv9p::err::hungup), done);
        }
        s = slot{};
      }
      free_tags.clear();
      tag_cv.notify_all();
    }
    for (auto& c : done) c.deliver();
  }

  // Encodes, tags and writes a group of requests with one write. tags_out gets each
  // request's tag (NOTAG for one that failed at once). Requests that cannot be sent
  // (connection gone, too big for msize, no tag) are completed here, on this thread.
  // use_out, if given, gets the first request's tag use count (for a ticket).
  void submit(std::span<outgoing> reqs, std::span<std::uint16_t> tags_out,
              std::uint32_t* use_out = nullptr) {
    thread_local std::vector<std::uint8_t> buf;
    thread_local std::vector<std::size_t> offsets;  // SIZE_MAX: not sent
    buf.clear();
    offsets.clear();
    std::vector<completion> failed;

    auto fail_now = [&failed](outgoing& o, std::string_view why) {
      completion& c = failed.emplace_back();
      if (o.w != nullptr) {
        c.w = o.w;
        c.index = o.index;
      } else if (o.cb != nullptr) {
        c.cb = std::move(*o.cb);
      }
      c.r = fail(why);
    };

    // Encode first with a placeholder tag, so that a message too big for msize never
    // takes a tag; the tags are patched in once allocated.
    thread_local std::vector<msg_type> types;
    types.resize(reqs.size());
    for (std::size_t i = 0; i < reqs.size(); i++) {
      types[i] = srv9p::type_of(*reqs[i].m);
      std::size_t off = buf.size();
      srv9p::encode(srv9p::fcall{srv9p::notag, std::move(*reqs[i].m)}, buf);
      if (buf.size() - off > msize) {
        buf.resize(off);
        offsets.push_back(SIZE_MAX);
      } else {
        offsets.push_back(off);
      }
    }

    {
      std::unique_lock lk(mu);
      for (std::size_t i = 0; i < reqs.size(); i++) {
        tags_out[i] = srv9p::notag;
        if (offsets[i] == SIZE_MAX) continue;
        auto t = alloc_tag(lk);
        if (!t) {
          // The connection is gone (earlier requests of this batch were failed by the
          // hang-up), or every tag is in flight and we are the reader thread: fail the
          // rest, and take back this batch's tags since nothing has been written.
          for (std::size_t j = 0; j < i; j++) {
            if (tags_out[j] == srv9p::notag) continue;
            slot& s = slots[tags_out[j]];
            if (!s.answered && s.k != slot::kind::free) {
              complete(s, fail("too many requests in flight"), failed);
              free_tag(tags_out[j]);
            }
            tags_out[j] = srv9p::notag;
          }
          for (std::size_t j = i; j < reqs.size(); j++) {
            if (offsets[j] != SIZE_MAX) fail_now(reqs[j], hung ? srv9p::err::hungup : "too many requests in flight");
          }
          buf.clear();
          break;
        }
        tags_out[i] = *t;
        slot& s = slots[*t];
        if (i == 0 && use_out != nullptr) *use_out = s.use;
        s.request = types[i];
        s.answered = false;
        s.flushes = 0;
        if (reqs[i].w != nullptr) {
          s.k = slot::kind::waiter;
          s.w = reqs[i].w;
          s.index = reqs[i].index;
        } else {
          s.k = slot::kind::callback;
          if (reqs[i].cb != nullptr) s.cb = std::move(*reqs[i].cb);
        }
        buf[offsets[i] + 5] = static_cast<std::uint8_t>(*t & 0xFF);
        buf[offsets[i] + 6] = static_cast<std::uint8_t>(*t >> 8);
      }
    }
    for (std::size_t i = 0; i < reqs.size(); i++) {
      if (offsets[i] == SIZE_MAX) fail_now(reqs[i], "message too large for msize");
    }

    // On failure the hang-up fails what was just registered.
    if (!buf.empty()) transmit(buf.data(), buf.size());
    for (auto& c : failed) c.deliver();
  }

  // Flushes oldtag; with a use count, only while the tag still has that use.
  void send_flush(std::uint16_t oldtag, std::optional<std::uint32_t> use = std::nullopt) {
    std::uint16_t ft;
    {
      std::unique_lock lk(mu);
      auto t = alloc_tag(lk);
      if (!t) return;
      // Only a request still waiting for its reply is worth flushing.
      if (oldtag >= slots.size() || slots[oldtag].k == slot::kind::free ||
          slots[oldtag].k == slot::kind::flush || slots[oldtag].answered ||
          (use && slots[oldtag].use != *use)) {
        free_tag(*t);
        return;
      }
      ft = *t;
      slots[oldtag].flushes++;
      slot& s = slots[ft];
      s.k = slot::kind::flush;
      s.request = msg_type::tflush;
      s.oldtag = oldtag;
    }
    std::vector<std::uint8_t> buf;
    srv9p::encode(srv9p::fcall{ft, srv9p::tflush{oldtag}}, buf);
    transmit(buf.data(), buf.size());
  }

  // Reads until a whole message sits at the front of rbuf; for Tversion, before the reader
  // thread exists. Returns its size, or an error.
  result<std::size_t> read_one(int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      if (rlen >= 4) {
        std::uint32_t size = srv9p::peek_size(rbuf);
        if (size < srv9p::header_size || size > rbuf.size()) return fail(botch("bad message size"));
        if (rlen >= size) return size;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return fail("no answer to Tversion");
      pollfd p{fd, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(left.count()));
      if (n < 0 && errno != EINTR) return fail(std::strerror(errno));
      if (n <= 0) continue;
      ssize_t got = ::recv(fd, rbuf.data() + rlen, rbuf.size() - rlen, 0);
      if (got == 0) return fail(srv9p::err::hungup);
      if (got < 0) {
        if (errno == EINTR) continue;
        return fail(std::strerror(errno));
      }
      rlen += static_cast<std::size_t>(got);
    }
  }

  result<void> negotiate(std::uint32_t want, std::uint32_t timeout_ms) {
    auto out = srv9p::encode(srv9p::fcall{srv9p::notag, srv9p::tversion{want, std::string(srv9p::version_9p2000)}});
    if (!write_all(fd, out.data(), out.size())) return fail(std::strerror(errno));
    rbuf.resize(initial_read_buffer);
    auto n = read_one(static_cast<int>(timeout_ms));
    if (!n) return std::unexpected(n.error());
    return take_rversion(*n, want);
  }

  // The Rversion at the front of rbuf (n bytes): sets msize, or says why not.
  result<void> take_rversion(std::size_t n, std::uint32_t want) {
    auto f = srv9p::decode(std::span(rbuf.data(), n));
    if (!f) return std::unexpected(botch(f.error()));
    std::memmove(rbuf.data(), rbuf.data() + n, rlen - n);
    rlen -= n;
    if (auto* e = std::get_if<srv9p::rerror>(&f->msg)) return std::unexpected(e->ename);
    auto* v = std::get_if<srv9p::rversion>(&f->msg);
    if (v == nullptr) return fail(botch("Tversion answered by " + std::string(srv9p::type_name(srv9p::type_of(f->msg)))));
    if (v->version != srv9p::version_9p2000) return std::unexpected("server speaks '" + v->version + "', not 9P2000");
    // version(5): the server's msize is at most ours; take the smaller if it is not.
    msize = std::min(v->msize, want);
    if (msize < min_msize) return std::unexpected("server's msize " + std::to_string(v->msize) + " is too small");
    return {};
  }

  // Decodes every whole message in rbuf and delivers their completions (no lock held),
  // keeping a partial one at the front. False on a framing error.
  bool parse_and_deliver() {
    thread_local std::vector<srv9p::fcall> decoded;
    thread_local std::vector<completion> done;
    {
      std::size_t pos = 0;
      bool broken = false;
      while (rlen - pos >= 4) {
        std::uint32_t size = srv9p::peek_size(std::span(rbuf.data() + pos, 4));
        if (size < srv9p::header_size || size > msize) {
          broken = true;
          break;
        }
        if (rlen - pos < size) {
          // Room for two such messages, so that pipelined big reads arrive in few recvs.
          if (size > rbuf.size()) rbuf.resize(std::max<std::size_t>(2 * std::size_t{size}, rbuf.size() * 2));
          break;
        }
        auto f = srv9p::decode(std::span(rbuf.data() + pos, size));
        if (!f) {
          broken = true;
          break;
        }
        decoded.push_back(std::move(*f));
        pos += size;
      }
      if (!decoded.empty()) {
        {
          std::lock_guard lk(mu);
          for (auto& f : decoded) on_reply(f, done);
        }
        decoded.clear();
        // A callback may send (and so parse nothing here) but not re-enter this function:
        // replies are parsed only by the one reader, so done is not reused under us.
        std::vector<completion> batch;
        batch.swap(done);
        for (auto& c : batch) c.deliver();
      }
      if (broken) return false;
      if (pos > 0) {
        std::memmove(rbuf.data(), rbuf.data() + pos, rlen - pos);
        rlen -= pos;
      }
    }
    return true;
  }

  void read_loop() {
    reader_id = std::this_thread::get_id();
    for (;;) {
      if (!parse_and_deliver()) break;
      ssize_t got = ::recv(fd, rbuf.data() + rlen, rbuf.size() - rlen, 0);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      rlen += static_cast<std::size_t>(got);
    }
    ::shutdown(fd, SHUT_RDWR);
    hangup();
  }

  // ---- io mode ------------------------------------------------------------------------

  // One read at a time on io's thread; the replies are delivered right here.
  void start_read() {
    if (rbuf.size() - rlen < 4096) rbuf.resize(rbuf.size() * 2);
    sock->async_read_some(asio::buffer(rbuf.data() + rlen, rbuf.size() - rlen),
                          [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
                            if (ec) {
                              if (ec == asio::error::eof || ec == asio::error::operation_aborted || self->closed) {
                                ::shutdown(self->fd, SHUT_RDWR);
                                return self->hangup();
                              }
                              return self->fail_connection("read: " + ec.message());
                            }
                            self->rlen += n;
                            if (!self->parse_and_deliver()) return self->fail_connection(botch("bad message from server"));
                            if (self->closed) return self->hangup();
                            self->start_read();
                          });
  }

  // send() on the impl, for callbacks that must not hold the client.
  void send_one(message m, callback cb) {
    outgoing o{&m, &cb, nullptr, 0};
    std::uint16_t tag;
    submit(std::span(&o, 1), std::span(&tag, 1));
  }

  void release_fid(std::uint32_t f) {
    if (f == srv9p::nofid) return;
    std::lock_guard lk(fid_mu);
    free_fids.push_back(f);
  }

  // Makes the io-mode state around a connected stream socket (family AF_INET, AF_INET6 or
  // AF_UNIX); fd becomes the socket's.
  static std::shared_ptr<impl> make_io(asio::io_context& io, int fd, int family, const options& opts) {
    auto im = std::make_shared<impl>();
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (family != AF_UNIX) {
      int on = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);  // small requests must not wait for Nagle
    }
    set_keepalive(fd, opts.keepalive_s);
    im->fd = fd;
    im->io = &io;
    asio::error_code ec;
    im->sock = std::make_unique<asio::generic::stream_protocol::socket>(io);
    im->sock->assign(asio::generic::stream_protocol(family, 0), fd, ec);
    if (ec) {
      im->sock.reset();  // ~impl closes fd
    }
    im->credential = opts.credential;
    im->max_queue_bytes = std::max<std::size_t>(opts.max_queue_bytes, 64 * 1024);
    im->log = opts.log;
    return im;
  }

  // Tversion and its answer on io, within timeout_ms; then the reads start and done gets
  // the client.
  struct version_op : std::enable_shared_from_this<version_op> {
    std::shared_ptr<impl> im;
    asio::steady_timer timer;
    connect_callback done;
    std::uint32_t want = 0;
    std::vector<std::uint8_t> out;
    bool finished = false;

    version_op(std::shared_ptr<impl> i, connect_callback d, std::uint32_t w)
        : im(std::move(i)), timer(*im->io), done(std::move(d)), want(w) {}

    void finish(result<void> r) {
      if (finished) return;
      finished = true;
      timer.cancel();
      if (!r) {
        asio::error_code ec;
        im->sock->cancel(ec);
        im->closed = true;
        im->hangup();
        return done(std::unexpected(std::move(r.error())));
      }
      im->start_read();
      done(std::unique_ptr<client>(new client(im)));
    }

    void read() {
      auto& i = *im;
      i.sock->async_read_some(asio::buffer(i.rbuf.data() + i.rlen, i.rbuf.size() - i.rlen),
                              [op = shared_from_this()](const asio::error_code& ec, std::size_t n) {
                                if (op->finished) return;
                                if (ec) return op->finish(fail(ec == asio::error::eof ? srv9p::err::hungup : ec.message()));
                                auto& i = *op->im;
                                i.rlen += n;
                                if (i.rlen >= 4) {
                                  std::uint32_t size = srv9p::peek_size(i.rbuf);
                                  if (size < srv9p::header_size || size > i.rbuf.size()) {
                                    return op->finish(fail(botch("bad message size")));
                                  }
                                  if (i.rlen >= size) return op->finish(i.take_rversion(size, op->want));
                                }
                                op->read();
                              });
    }

    static void start(std::shared_ptr<impl> im, std::uint32_t want, std::uint32_t timeout_ms, connect_callback done) {
      if (!im->sock) {
        auto d = std::move(done);
        asio::post(*im->io, [d = std::move(d)] { d(fail("not a stream socket")); });
        return;
      }
      auto op = std::make_shared<version_op>(std::move(im), std::move(done), want);
      op->im->rbuf.resize(initial_read_buffer);
      op->timer.expires_after(std::chrono::milliseconds(timeout_ms));
      op->timer.async_wait([op](const asio::error_code& ec) {
        if (!ec) op->finish(fail("no answer to Tversion"));
      });
      op->out = srv9p::encode(srv9p::fcall{srv9p::notag, srv9p::tversion{want, std::string(srv9p::version_9p2000)}});
      asio::async_write(*op->im->sock, asio::buffer(op->out), [op](const asio::error_code& ec, std::size_t) {
        if (op->finished) return;
        if (ec) return op->finish(fail(ec.message()));
        op->read();
      });
    }
  };
};

namespace {

// Connects to a parsed address; returns a blocking, close-on-exec descriptor.
result<int> connect_fd(const srv9p::dial_addr& a, std::string_view addr) {
  asio::io_context io;
  asio::error_code ec;
  int fd = -1;
  auto dial_error = [&](const asio::error_code& e) {
    return std::unexpected("dial " + std::string(addr) + ": " + e.message());
  };
  if (a.net == srv9p::dial_addr::net_kind::unix_socket) {
    asio::local::stream_protocol::socket s(io);
    s.connect(asio::local::stream_protocol::endpoint(a.path), ec);
    if (ec) return dial_error(ec);
    fd = s.release(ec);
    if (ec) return dial_error(ec);
  } else {
    if (a.host == "*") return std::unexpected("dial " + std::string(addr) + ": '*' names no host");
    asio::ip::tcp::resolver res(io);
    auto eps = res.resolve(a.host, std::to_string(a.port), ec);
    if (ec) return dial_error(ec);
    asio::ip::tcp::socket s(io);
    asio::connect(s, eps, ec);
    if (ec) return dial_error(ec);
    s.set_option(asio::ip::tcp::no_delay(true), ec);  // small requests must not wait for Nagle
    fd = s.release(ec);
    if (ec) return dial_error(ec);
  }
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  return fd;
}

}  // namespace

client::client(std::shared_ptr<impl> i) : impl_(std::move(i)) { impl_->self = this; }

result<std::unique_ptr<client>> client::dial(std::string_view addr, options opts) {
  auto a = srv9p::parse_dial(addr, default_port);
  if (!a) return std::unexpected(a.error());
  auto fd = connect_fd(*a, addr);
  if (!fd) return std::unexpected(fd.error());
  auto im = std::make_shared<impl>();
  im->fd = *fd;
  set_keepalive(im->fd, opts.keepalive_s);
  im->credential = std::move(opts.credential);
  if (im->credential) {
    auto b = srv9p::socket_binding(im->fd, true);
    if (!b) return std::unexpected("dial " + std::string(addr) + ": " + b.error());
    im->binding = std::move(*b);
  }
  auto v = im->negotiate(std::max(opts.msize, min_msize), opts.version_timeout_ms);
  if (!v) return std::unexpected(v.error());
  impl* raw = im.get();
  std::unique_ptr<client> c(new client(im));
  // The reader holds the state too, so that it outlives a client destroyed in a callback.
  raw->reader = std::thread([im = std::move(im)] { im->read_loop(); });
  return c;
}

void client::adopt(asio::io_context& io, int fd, std::string binding, options opts, connect_callback done) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  int type = 0;
  socklen_t tlen = sizeof type;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0 ||
      ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM ||
      (ss.ss_family != AF_INET && ss.ss_family != AF_INET6 && ss.ss_family != AF_UNIX)) {
    if (fd >= 0) ::close(fd);
    asio::post(io, [done = std::move(done)] { done(fail("adopt: not a connected stream socket")); });
    return;
  }
  auto im = impl::make_io(io, fd, ss.ss_family, opts);
  im->binding = std::move(binding);
  impl::version_op::start(std::move(im), std::max(opts.msize, min_msize), opts.version_timeout_ms, std::move(done));
}

namespace {

// An async_dial in progress: resolve, connect (under one timer), then Tversion.
struct dial_op : std::enable_shared_from_this<dial_op> {
  asio::io_context& io;
  std::string addr;
  client::options opts;
  client::connect_callback done;
  asio::steady_timer timer;
  asio::ip::tcp::resolver resolver;
  asio::ip::tcp::socket tcp;
  asio::local::stream_protocol::socket local;
  bool finished = false;

  dial_op(asio::io_context& i, std::string a, client::options o, client::connect_callback d)
      : io(i), addr(std::move(a)), opts(std::move(o)), done(std::move(d)), timer(i), resolver(i), tcp(i), local(i) {}

  void fail_with(const std::string& why) {
    if (finished) return;
    finished = true;
    timer.cancel();
    done(std::unexpected("dial " + addr + ": " + why));
  }
};

}  // namespace

void client::async_dial(asio::io_context& io, std::string_view addr, options opts, connect_callback done) {
  auto a = srv9p::parse_dial(addr, default_port);
  if (a && a->net != srv9p::dial_addr::net_kind::unix_socket && a->host == "*") {
    a = std::unexpected("dial " + std::string(addr) + ": '*' names no host");
  }
  if (!a) {
    asio::post(io, [done = std::move(done), e = a.error()] { done(std::unexpected(e)); });
    return;
  }
  auto op = std::make_shared<dial_op>(io, std::string(addr), std::move(opts), std::move(done));
  // Connected: the descriptor leaves asio's socket for the client's own.
  auto connected = [op](int fd, int family) {
    if (op->finished) {
      ::close(fd);
      return;
    }
    op->finished = true;
    op->timer.cancel();
    auto im = impl::make_io(op->io, fd, family, op->opts);
    if (im->credential && im->sock) {
      auto b = srv9p::socket_binding(fd, true);
      if (!b) {
        auto d = std::move(op->done);
        return d(std::unexpected("dial " + op->addr + ": " + b.error()));
      }
      im->binding = std::move(*b);
    }
    impl::version_op::start(std::move(im), std::max(op->opts.msize, min_msize), op->opts.version_timeout_ms,
                            std::move(op->done));
  };
  op->timer.expires_after(std::chrono::milliseconds(op->opts.version_timeout_ms));
  op->timer.async_wait([op](const asio::error_code& ec) {
    if (ec || op->finished) return;
    asio::error_code ignored;
    op->resolver.cancel();
    op->tcp.close(ignored);
    op->local.close(ignored);
    op->fail_with("timed out");
  });
  if (a->net == srv9p::dial_addr::net_kind::unix_socket) {
    op->local.async_connect(asio::local::stream_protocol::endpoint(a->path), [op, connected](const asio::error_code& ec) {
      if (op->finished) return;
      if (ec) return op->fail_with(ec.message());
      asio::error_code e2;
      int fd = op->local.release(e2);
      if (e2) return op->fail_with(e2.message());
      connected(fd, AF_UNIX);
    });
    return;
  }
  op->resolver.async_resolve(a->host, std::to_string(a->port),
                             [op, connected](const asio::error_code& ec, asio::ip::tcp::resolver::results_type eps) {
                               if (op->finished) return;
                               if (ec) return op->fail_with(ec.message());
                               asio::async_connect(op->tcp, eps, [op, connected](const asio::error_code& ec2,
                                                                                 const asio::ip::tcp::endpoint& ep) {
                                 if (op->finished) return;
                                 if (ec2) return op->fail_with(ec2.message());
                                 asio::error_code e3;
                                 int fd = op->tcp.release(e3);
                                 if (e3) return op->fail_with(e3.message());
                                 connected(fd, ep.address().is_v6() ? AF_INET6 : AF_INET);
                               });
                             });
}

void client::async_attach(std::string uname, std::string aname, std::function<void(result<std::uint32_t>)> done) {
  auto im = impl_;
  auto f = alloc_fid();
  // Tattach with NOFID: no authentication.
  auto plain = [im, f, uname, aname, done]() {
    im->send_one(srv9p::tattach{f, srv9p::nofid, uname, aname}, [im, f, done](reply r) {
      auto a = expect<srv9p::rattach>(std::move(r));
      if (!a) {
        im->release_fid(f);
        return done(std::unexpected(std::move(a.error())));
      }
      done(f);
    });
  };
  if (!im->credential) return plain();
  auto af = alloc_fid();
  // attach(5): Tauth; a server that needs no authentication answers it with Rerror. The
  // Tread of the afid's challenge (srv9p/auth.hpp) goes in the same write.
  struct first {
    reply auth, challenge;
    int left = 2;
  };
  auto fst = std::make_shared<first>();
  auto both = [im, f, af, uname, aname, done, plain, fst]() {
    if (!expect<srv9p::rauth>(std::move(fst->auth))) {
      im->release_fid(af);
      if (im->closed.load()) return done(fail(srv9p::err::hungup));
      return plain();
    }
    im->server_auth = true;
    auto cred = fsclient::credential_for(im->credential, im->binding, std::move(fst->challenge));
    if (!cred) {
      im->send_one(srv9p::tclunk{af}, [im, af](reply) { im->release_fid(af); });
      im->release_fid(f);
      return done(std::unexpected(std::move(cred.error())));
    }
    // Twrite of the credential, Tattach naming the afid, Tclunk of it: one write.
    struct state {
      std::vector<reply> rs = std::vector<reply>(3);
      int left = 3;
    };
    auto st = std::make_shared<state>();
    auto one = [im, f, af, st, done](std::size_t i) {
      return [im, f, af, st, done, i](reply r) {
        st->rs[i] = std::move(r);
        if (--st->left > 0) return;
        im->release_fid(af);
        for (std::size_t k = 0; k < 2; ++k) {
          if (!st->rs[k]) {
            im->release_fid(f);
            return done(std::unexpected(std::move(st->rs[k].error())));
          }
        }
        done(f);
      };
    };
    std::vector<outgoing> os(3);
    srv9p::message ms[3] = {srv9p::twrite{af, 0, std::move(*cred)}, srv9p::tattach{f, af, uname, aname},
                            srv9p::tclunk{af}};
    callback cbs[3] = {one(0), one(1), one(2)};
    for (std::size_t i = 0; i < 3; ++i) os[i] = outgoing{&ms[i], &cbs[i], nullptr, 0};
    std::uint16_t tags[3];
    im->submit(os, tags);
  };
  std::vector<outgoing> os(2);
  srv9p::message ms[2] = {srv9p::tauth{af, uname, aname}, srv9p::tread{af, 0, challenge_read_bytes}};
  callback cbs[2] = {[fst, both](reply r) {
                       fst->auth = std::move(r);
                       if (--fst->left == 0) both();
                     },
                     [fst, both](reply r) {
                       fst->challenge = std::move(r);
                       if (--fst->left == 0) both();
                     }};
  for (std::size_t i = 0; i < 2; ++i) os[i] = outgoing{&ms[i], &cbs[i], nullptr, 0};
  std::uint16_t tags[2];
  im->submit(os, tags);
}

bool client::io_mode() const { return impl_->io != nullptr; }

std::string client::hangup_reason() const {
  std::lock_guard lk(impl_->mu);
  return impl_->why;
}

client::~client() {
  close();
  if (impl_->io != nullptr) return;  // io's pending handlers hold the state; the last one frees it
  if (impl_->on_reader_thread()) {
    // Destroyed from one of its own reply callbacks (the last owner let go there): the
    // reader cannot join itself, so it finishes on its own and frees the state.
    impl_->reader.detach();
    return;
  }
  if (impl_->reader.joinable()) impl_->reader.join();
}

std::uint32_t client::msize() const { return impl_->msize; }
std::uint32_t client::iounit() const { return impl_->msize - srv9p::iohdrsz; }
bool client::connected() const { return !impl_->closed.load(); }

void client::close() {
  impl_->closed = true;
  ::shutdown(impl_->fd, SHUT_RDWR);
  impl_->hangup();
}

std::uint16_t client::send(srv9p::message t, callback cb) {
  outgoing o{&t, &cb, nullptr, 0};
  std::uint16_t tag = srv9p::notag;
  impl_->submit(std::span(&o, 1), std::span(&tag, 1));
  return tag;
}

std::vector<std::uint16_t> client::send_batch(std::vector<std::pair<srv9p::message, callback>> batch) {
  std::vector<outgoing> os(batch.size());
  for (std::size_t i = 0; i < batch.size(); i++) os[i] = outgoing{&batch[i].first, &batch[i].second, nullptr, 0};
  std::vector<std::uint16_t> tags(batch.size(), srv9p::notag);
  impl_->submit(os, tags);
  return tags;
}

client::reply client::rpc(srv9p::message t) {
  // A blocking call on the reader thread would wait for the thread that must answer it.
  if (impl_->on_reader_thread()) return fail(botch("blocking call from a reply callback"));
  reply r;
  waiter w;
  w.remaining = 1;
  w.out = &r;
  outgoing o{&t, nullptr, &w, 0};
  std::uint16_t tag;
  impl_->submit(std::span(&o, 1), std::span(&tag, 1));
  w.wait();
  return r;
}

std::vector<client::reply> client::rpc_batch(std::vector<srv9p::message> ts) {
  std::vector<reply> out(ts.size());
  if (ts.empty()) return out;
  if (impl_->on_reader_thread()) {
    for (auto& r : out) r = fail(botch("blocking call from a reply callback"));
    return out;
  }
  waiter w;
  w.remaining = ts.size();
  w.out = out.data();
  std::vector<outgoing> os(ts.size());
  for (std::size_t i = 0; i < ts.size(); i++) os[i] = outgoing{&ts[i], nullptr, &w, static_cast<std::uint32_t>(i)};
  std::vector<std::uint16_t> tags(ts.size());
  impl_->submit(os, tags);
  w.wait();
  return out;
}

void client::flush(std::uint16_t tag) {
  if (tag == srv9p::notag) return;
  impl_->send_flush(tag);
}

client::ticket client::send_ticket(srv9p::message t, callback cb) {
  outgoing o{&t, &cb, nullptr, 0};
  ticket k;
  impl_->submit(std::span(&o, 1), std::span(&k.tag, 1), &k.use);
  return k;
}

void client::flush(ticket t) {
  if (t.tag == srv9p::notag) return;
  impl_->send_flush(t.tag, t.use);
}

std::uint32_t client::alloc_fid() {
  std::lock_guard lk(impl_->fid_mu);
  if (!impl_->free_fids.empty()) {
    auto f = impl_->free_fids.back();
    impl_->free_fids.pop_back();
    return f;
  }
  auto f = impl_->next_fid++;
  if (impl_->next_fid == srv9p::nofid) impl_->next_fid = 0;  // 4 billion fids later
  return f;
}

void client::release_fid(std::uint32_t f) {
  if (f == srv9p::nofid) return;
  std::lock_guard lk(impl_->fid_mu);
  impl_->free_fids.push_back(f);
}

// ---- Blocking operations ----------------------------------------------------------------

bool client::server_authenticates() const { return impl_->server_auth.load(); }

const std::function<result<std::string>(std::string_view)>& client::credential() const {
  return impl_->credential;
}

const std::string& client::binding() const { return impl_->binding; }

result<std::string> client::credential_for(reply challenge_read) const {
  return fsclient::credential_for(impl_->credential, impl_->binding, std::move(challenge_read));
}

result<std::uint32_t> client::attach(std::string_view uname, std::string_view aname) {
  auto f = alloc_fid();
  if (impl_->credential) {
    // attach(5): Tauth; a server that needs no authentication answers it with Rerror.
    // Tauth and the Tread of the afid's challenge (srv9p/auth.hpp) in one write; the
    // Tread fails too when the server refuses the Tauth.
    auto af = alloc_fid();
    auto ar = rpc_batch({srv9p::tauth{af, std::string(uname), std::string(aname)},
                         srv9p::tread{af, 0, challenge_read_bytes}});
    auto a = expect<srv9p::rauth>(std::move(ar[0]));
    if (a) {
      impl_->server_auth = true;
      auto cred = fsclient::credential_for(impl_->credential, impl_->binding, std::move(ar[1]));
      if (!cred) {
        (void)clunk(af);
        release_fid(f);
        return std::unexpected(std::move(cred.error()));
      }
      auto rs = rpc_batch({srv9p::twrite{af, 0, std::move(*cred)},
                           srv9p::tattach{f, af, std::string(uname), std::string(aname)}, srv9p::tclunk{af}});
      release_fid(af);
      for (std::size_t i = 0; i < 2; ++i) {
        if (!rs[i]) {
          release_fid(f);
          return std::unexpected(std::move(rs[i].error()));
        }
      }
      return f;
    }
    release_fid(af);
  }
  auto r = expect<srv9p::rattach>(rpc(srv9p::tattach{f, srv9p::nofid, std::string(uname), std::string(aname)}));
  if (!r) {
    release_fid(f);
    return std::unexpected(std::move(r.error()));
  }
  return f;
}

namespace {

// The error for a walk of names[base..base+asked) that answered qids: a partial walk
// (walk(5): fewer qids than names) stops at the first missing element.
std::string partial_walk_error(const std::vector<std::string>& names, std::size_t base,
                               const std::vector<srv9p::qid>& qids) {
  std::size_t k = base + qids.size();
  // The last element walked is not a directory: say so rather than "does not exist".
  bool not_dir = !qids.empty() && (qids.back().type & srv9p::qtdir) == 0;
  return walk_error(names, k, not_dir ? srv9p::err::walk_no_dir : srv9p::err::not_found);
}

}  // namespace

result<std::uint32_t> client::walk(std::uint32_t fid, std::string_view path) {
  auto names = split_path(path);
  auto nf = alloc_fid();
  if (names.empty()) {
    auto r = expect<srv9p::rwalk>(rpc(srv9p::twalk{fid, nf, {}}));
    if (!r) {
      release_fid(nf);
      return std::unexpected(std::move(r.error()));
    }
    return nf;
  }
  // Walk in chunks of maxwelem: the first from fid into nf, the rest move nf in place
  // (walk(5): newfid may equal fid, and a failed walk leaves it where it was).
  std::size_t done = 0;
  std::uint32_t from = fid;
  while (done < names.size()) {
    std::size_t n = std::min(srv9p::maxwelem, names.size() - done);
    srv9p::twalk w{from, nf, {}};
    w.wnames.assign(names.begin() + static_cast<std::ptrdiff_t>(done),
                    names.begin() + static_cast<std::ptrdiff_t>(done + n));
    auto r = expect<srv9p::rwalk>(rpc(std::move(w)));
    std::string err;
    if (!r) {
      err = walk_error(names, done, r.error());
    } else if (r->qids.size() < n) {
      err = partial_walk_error(names, done, r->qids);
    }
    if (!err.empty()) {
      if (from == nf) {
        // An intermediate fid exists on the server; clunk it without waiting.
        send(srv9p::tclunk{nf}, [this, nf](reply) { release_fid(nf); });
      } else {
        release_fid(nf);
      }
      return std::unexpected(std::move(err));
    }
    done += n;
    from = nf;
  }
  return nf;
}

result<srv9p::ropen> client::open(std::uint32_t fid, std::uint8_t mode) {
  return expect<srv9p::ropen>(rpc(srv9p::topen{fid, mode}));
}

result<srv9p::rcreate> client::create(std::uint32_t fid, std::string_view name, std::uint32_t perm,
                                      std::uint8_t mode) {
  return expect<srv9p::rcreate>(rpc(srv9p::tcreate{fid, std::string(name), perm, mode}));
}

result<std::string> client::read(std::uint32_t fid, std::uint64_t offset, std::uint32_t count) {
  auto r = expect<srv9p::rread>(rpc(srv9p::tread{fid, offset, std::min(count, iounit())}));
  if (!r) return std::unexpected(std::move(r.error()));
  return std::move(r->data);
}

result<std::uint32_t> client::write(std::uint32_t fid, std::uint64_t offset, std::string_view data) {
  std::uint32_t total = 0;
  const std::size_t unit = iounit();
  do {
    std::size_t n = std::min(unit, data.size() - total);
    auto r = expect<srv9p::rwrite>(rpc(srv9p::twrite{fid, offset + total, std::string(data.substr(total, n))}));
    if (!r) return std::unexpected(std::move(r.error()));
    total += std::min<std::uint32_t>(r->count, static_cast<std::uint32_t>(n));
    if (r->count < n) break;  // the server took less: report what it took
  } while (total < data.size());
  return total;
}

result<void> client::clunk(std::uint32_t fid) {
  auto r = expect<srv9p::rclunk>(rpc(srv9p::tclunk{fid}));
  release_fid(fid);  // clunk(5): the fid is gone even if the server complained
  if (!r) return std::unexpected(std::move(r.error()));
  return {};
}

result<void> client::remove(std::uint32_t fid) {
  auto r = expect<srv9p::rremove>(rpc(srv9p::tremove{fid}));
  release_fid(fid);  // remove(5): the fid is clunked even if the remove fails
  if (!r) return std::unexpected(std::move(r.error()));
  return {};
}

result<srv9p::dir> client::stat(std::uint32_t fid) {
  auto r = expect<srv9p::rstat>(rpc(srv9p::tstat{fid}));
  if (!r) return std::unexpected(std::move(r.error()));
  return std::move(r->stat);
}

result<void> client::wstat(std::uint32_t fid, const srv9p::dir& d) {
  auto r = expect<srv9p::rwstat>(rpc(srv9p::twstat{fid, d}));
  if (!r) return std::unexpected(std::move(r.error()));
  return {};
}

// ---- Whole-file helpers -------------------------------------------------------------------
//
// They pipeline: Twalk to a new fid, Topen of it and the first Tread leave in one write,
// and the final Tclunk of a read is not waited for, so reading a small file costs one
// round trip plus the one that sees end of file.

namespace {

struct opened {
  std::uint32_t fid = srv9p::nofid;
  srv9p::ropen open;
  std::optional<client::reply> first_read;  // Tread at offset 0, when asked for
};

// Clunks without waiting; the fid number is reused only after Rclunk.
void clunk_later(client& c, std::uint32_t fid) {
  c.send(srv9p::tclunk{fid}, [&c, fid](client::reply) { c.release_fid(fid); });
}


result<opened> open_path(client& c, std::uint32_t root, std::string_view path,
                                std::uint8_t mode, bool read_first) {
  auto names = split_path(path);
  opened o;
  if (names.size() > srv9p::maxwelem) {
    auto f = c.walk(root, path);
    if (!f) return std::unexpected(std::move(f.error()));
    auto r = c.open(*f, mode);
    if (!r) {
      (void)c.clunk(*f);
      return std::unexpected(std::move(r.error()));
    }
    o.fid = *f;
    o.open = std::move(*r);
    if (read_first) o.first_read = c.rpc(srv9p::tread{*f, 0, c.iounit()});
    return o;
  }
  auto nf = c.alloc_fid();
  std::vector<message> batch;
  batch.reserve(3);
  batch.emplace_back(srv9p::twalk{root, nf, names});
  batch.emplace_back(srv9p::topen{nf, mode});
  if (read_first) batch.emplace_back(srv9p::tread{nf, 0, c.iounit()});
  auto rs = c.rpc_batch(std::move(batch));
  auto w = expect<srv9p::rwalk>(std::move(rs[0]));
  if (!w || w->qids.size() < names.size()) {
    // The walk made no fid, so the Topen (and Tread) failed too.
    c.release_fid(nf);
    if (!w) return std::unexpected(walk_error(names, 0, w.error()));
    return std::unexpected(partial_walk_error(names, 0, w->qids));
  }
  auto op = expect<srv9p::ropen>(std::move(rs[1]));
  if (!op) {
    clunk_later(c, nf);
    return std::unexpected(std::move(op.error()));
  }
  o.fid = nf;
  o.open = std::move(*op);
  if (read_first) o.first_read = std::move(rs[2]);
  return o;
}

}  // namespace

result<std::string> client::read_file(std::uint32_t root, std::string_view path) {
  std::string data;
  auto st = stream_file(root, path, [&data](std::string_view piece) {
    data.append(piece);
    return true;
  });
  if (!st) return std::unexpected(std::move(st.error()));
  return data;
}

result<void> client::stream_file(std::uint32_t root, std::string_view path,
                                 const std::function<bool(std::string_view)>& sink) {
  auto o = open_path(*this, root, path, srv9p::oread, true);
  if (!o) return std::unexpected(std::move(o.error()));
  std::uint64_t offset = 0;
  auto r = expect<srv9p::rread>(std::move(*o->first_read));
  for (;;) {
    if (!r) {
      clunk_later(*this, o->fid);
      return std::unexpected(std::move(r.error()));
    }
    if (r->data.empty()) break;
    offset += r->data.size();
    if (!sink(r->data)) break;
    r = expect<srv9p::rread>(rpc(srv9p::tread{o->fid, offset, iounit()}));
  }
  clunk_later(*this, o->fid);
  return {};
}

result<void> client::write_file(std::uint32_t root, std::string_view path, std::string_view data) {
  auto o = open_path(*this, root, path, srv9p::owrite | srv9p::otrunc, false);
  if (!o) return std::unexpected(std::move(o.error()));
  if (!data.empty()) {
    auto w = write(o->fid, 0, data);
    if (!w) {
      (void)clunk(o->fid);
      return std::unexpected(std::move(w.error()));
    }
    if (*w < data.size()) {
      (void)clunk(o->fid);
      return std::unexpected("short write: " + std::to_string(*w) + " of " + std::to_string(data.size()) + " bytes");
    }
  }
  // Wait for Rclunk: for a ctl file the clunk may be when the work happens.
  return clunk(o->fid);
}

result<std::vector<srv9p::dir>> client::list_dir(std::uint32_t root, std::string_view path) {
  std::vector<srv9p::dir> out;
  std::string bad;
  auto st = stream_file(root, path, [&out, &bad](std::string_view piece) {
    auto ds = srv9p::decode_dirs(std::span(reinterpret_cast<const std::uint8_t*>(piece.data()), piece.size()));
    if (!ds) {
      bad = botch(ds.error());
      return false;
    }
    for (auto& d : *ds) out.push_back(std::move(d));
    return true;
  });
  if (!st) return std::unexpected(std::move(st.error()));
  if (!bad.empty()) return std::unexpected(std::move(bad));
  return out;
}

result<srv9p::dir> client::stat_path(std::uint32_t root, std::string_view path) {
  auto names = split_path(path);
  if (names.size() > srv9p::maxwelem) {
    auto f = walk(root, path);
    if (!f) return std::unexpected(std::move(f.error()));
    auto d = stat(*f);
    clunk_later(*this, *f);
    return d;
  }
  auto nf = alloc_fid();
  std::vector<message> batch;
  batch.reserve(3);
  batch.emplace_back(srv9p::twalk{root, nf, names});
  batch.emplace_back(srv9p::tstat{nf});
  batch.emplace_back(srv9p::tclunk{nf});
  auto rs = rpc_batch(std::move(batch));
  // All three are answered, so nf is gone on the server whichever of them failed.
  release_fid(nf);
  auto w = expect<srv9p::rwalk>(std::move(rs[0]));
  if (!w) return std::unexpected(walk_error(names, 0, w.error()));
  if (w->qids.size() < names.size()) return std::unexpected(partial_walk_error(names, 0, w->qids));
  auto s = expect<srv9p::rstat>(std::move(rs[1]));
  if (!s) return std::unexpected(std::move(s.error()));
  return std::move(s->stat);
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    auto j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    auto elem = path.substr(i, j - i);
    if (!elem.empty() && elem != ".") out.emplace_back(elem);  // "a/./b" is "a/b"
    i = j + 1;
  }
  return out;
}

}  // namespace fsclient
