#pragma once
// The 9P2000 client: one connection, many tags in flight, usable from many threads.
//
// Two modes, one interface:
//   - thread mode (dial()): callers encode and write their requests themselves under a
//     write mutex (one write() for a whole batch), and one reader thread per connection
//     decodes replies and completes the waiting call by tag, so a thread blocked on a long
//     read never stalls another thread's walk. For the tool and the FUSE bridge, which
//     make blocking calls.
//   - io mode (async_dial(), adopt()): the connection lives on a given asio::io_context
//     and has no thread of its own. Reads are async reads on it and reply callbacks run on
//     its thread; writes go to an outbound queue drained by async writes, so a server that
//     stops reading never blocks the caller. The queue is bounded (options::
//     max_queue_bytes): past the bound the connection is closed, with the reason logged
//     and kept (hangup_reason()). For daemons (galaxy-sched's node links) holding many
//     connections on one thread.
// Every call has a blocking form (returns std::expected) and the core has an asynchronous
// one (send() with a callback) for pipelining and for daemons that must not block. In io
// mode the blocking forms work from any thread but the io_context's own: there they fail
// at once ("blocking call from a reply callback") instead of waiting for the thread that
// must deliver their reply. Errors are the server's Rerror text, or err::hungup
// ("connection closed") once the connection is gone; a flushed call gets err::interrupted
// ("interrupted").
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "srv9p/fcall.hpp"

namespace asio {
class io_context;
}

namespace fsclient {

template <class T>
using result = std::expected<T, std::string>;

class client {
 public:
  struct options {
    std::uint32_t msize = srv9p::max_msize;  // the largest msize to ask for at Tversion
    // How long dial() waits for the answer to Tversion (a peer that accepts but does not
    // speak 9P must not hang the caller), milliseconds.
    std::uint32_t version_timeout_ms = 10000;
    // Makes a fresh credential for each attach with its argument as payload: the server
    // endpoint this connection reached, as binding() gives it, and the afid's challenge
    // (srv9p::credential_payload; srv9p::credential_source gives a MUNGE one; fsclient
    // itself links no libmunge). Empty: attach never sends Tauth.
    std::function<result<std::string>(std::string_view bind)> credential;
    // TCP keepalive (socket(7) SO_KEEPALIVE, tcp(7) TCP_KEEPIDLE/KEEPINTVL/KEEPCNT): after
    // this many idle seconds the kernel probes the peer every keepalive_s / 3 seconds (at
    // least 1) and resets the connection after 3 probes go unanswered. 0: off. Unix
    // sockets ignore it.
    std::uint32_t keepalive_s = 0;
    // io mode: the most bytes the outbound queue may hold (requests written by callers and
    // not yet taken by the kernel). A request that would pass it closes the connection
    // instead: the server has stopped reading, and holding more would only grow memory.
    std::size_t max_queue_bytes = 64u << 20;
    // io mode: where the reason for closing the connection goes (queue over its bound, a
    // broken message, a reset), one line each. Empty: nowhere (hangup_reason() has it).
    std::function<void(std::string_view)> log;
  };
  // The reply to one request: its R-message, or the error (Rerror's text, hang-up, flush).
  using reply = result<srv9p::message>;
  using callback = std::function<void(reply)>;

  // Connects to a dial string (srv9p/dial.hpp) and negotiates the version and msize.
  // Errors: a bad dial string, the connect failure's text, or a server that does not
  // speak 9P2000 ("server speaks 'X', not 9P2000").
  static result<std::unique_ptr<client>> dial(std::string_view addr, options opts);
  static result<std::unique_ptr<client>> dial(std::string_view addr) { return dial(addr, options{}); }

  // ---- io mode --------------------------------------------------------------------------
  // done gets the connected client, or the error; it runs on io's thread, never before
  // async_dial() or adopt() has returned.
  using connect_callback = std::function<void(result<std::unique_ptr<client>>)>;
  // dial() without blocking, for io mode: resolves, connects and negotiates the version on
  // io, each of connecting and Tversion's answer within options::version_timeout_ms.
  // Errors as for dial(), and "dial ADDR: timed out" for a connect that does not finish.
  static void async_dial(asio::io_context& io, std::string_view addr, options opts, connect_callback done);
  // Takes an already-connected stream socket (the connection a node made when it joined
  // the scheduler, which then acts as the 9P client on it), negotiates the version on io,
  // and gives the client to done. fd becomes the client's (closed on every error too).
  // binding is what credentials for attaches on this connection are bound to (binding()):
  // for a joined connection it is not the socket address this side sees, so the caller
  // says it. Errors as for dial()'s Tversion ("no answer to Tversion", "server speaks 'X',
  // not 9P2000"), or a descriptor that is not a stream socket.
  static void adopt(asio::io_context& io, int fd, std::string binding, options opts, connect_callback done);
  // attach() without blocking (io mode or thread mode): done gets the root fid or the
  // error, on the thread that delivers replies (io's thread in io mode). Learns
  // server_authenticates() as attach() does.
  void async_attach(std::string uname, std::string aname, std::function<void(result<std::uint32_t>)> done);
  bool io_mode() const;  // made by async_dial() or adopt()
  // Why the connection closed ("" while it is open): "connection closed" by close() or the
  // peer, a reset's text, "outbound queue over N bytes: the server is not reading", ...
  std::string hangup_reason() const;

  // Closes the connection; every call still waiting fails with "connection closed". In io
  // mode the socket itself is closed once io's pending operations on it have ended (they
  // hold its state), so a client may be destroyed on any thread, inside its own callbacks
  // too.
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  std::uint32_t msize() const;      // negotiated, bytes
  std::uint32_t iounit() const;     // msize - IOHDRSZ: the most data one read/write carries
  bool connected() const;           // false once the server hung up or close() was called
  // Whether the server authenticates attaches on this connection: it accepted the Tauth
  // of an attach() made with a credential function. False before the first such attach.
  bool server_authenticates() const;
  // The credential function given at dial (empty if none), for callers that build their
  // own Tauth, Tread, Twrite, Tattach batches (see credential_for).
  const std::function<result<std::string>(std::string_view)>& credential() const;
  // How many bytes to ask for in the Tread of an afid's challenge (srv9p/auth.hpp: the
  // text is 43 bytes).
  static constexpr std::uint32_t challenge_read_bytes = 64;
  // The credential for an afid, given the reply to its Tread{afid, 0,
  // challenge_read_bytes}: the credential function called with
  // srv9p::credential_payload(binding(), challenge). Errors: the read's ("reading the
  // afid's challenge: WHY"), a bad challenge (srv9p::parse_challenge), the credential
  // function's.
  result<std::string> credential_for(reply challenge_read) const;
  // What a credential for this connection must be bound to: the server's end of the
  // socket as this side sees it (srv9p::socket_binding(fd, peer), e.g.
  // "galaxy-9p tcp!127.0.0.1!5641"), learnt at dial.
  const std::string& binding() const;
  // Shuts the connection down; idempotent. Calls still waiting fail with "connection
  // closed" at once, their callbacks run on the thread that calls close() (in io mode too).
  void close();

  // ---- Core ---------------------------------------------------------------------------
  // Sends one T-message (its tag is chosen here) and calls cb with the reply on the
  // reader thread, or io's thread in io mode (or at once, on the calling thread, if the connection is already
  // closed). Rerror arrives as an error. Returns the tag, for flush(), or NOTAG when cb
  // has already been called with an error (connection closed, message over msize).
  // cb runs with no lock held and may call send(); it must not block, since no other
  // reply is read meanwhile, and a blocking call made from it fails at once.
  std::uint16_t send(srv9p::message t, callback cb);
  // Sends several T-messages with one write, in order: dependent requests (Twalk to a new
  // fid, Topen of it, Tread, Tclunk) can be pipelined because the server starts requests
  // in arrival order. Returns their tags.
  std::vector<std::uint16_t> send_batch(std::vector<std::pair<srv9p::message, callback>> batch);
  // Blocking send.
  reply rpc(srv9p::message t);
  // Blocking batch: the replies in the order of the requests.
  std::vector<reply> rpc_batch(std::vector<srv9p::message> ts);
  // flush(5): asks the server to abandon the request with this tag. Its callback gets
  // "interrupted" unless its reply arrived first. Does not block.
  void flush(std::uint16_t tag);

  // A request's identity for a flush that may come late: its tag and how many times that
  // tag had been handed out. A tag is reused as soon as its reply arrives, before the
  // reply's callback runs, so a flush by bare tag from another thread (the FUSE bridge's
  // interrupt handler) could hit a later request; a flush by ticket cannot.
  struct ticket {
    std::uint16_t tag = srv9p::notag;
    std::uint32_t use = 0;
  };
  // send(), returning the request's ticket (tag NOTAG when cb has already been called).
  ticket send_ticket(srv9p::message t, callback cb);
  // flush(tag) if that tag still belongs to the ticket's request and is unanswered; else
  // nothing. Does not block.
  void flush(ticket t);

  // ---- Fids ---------------------------------------------------------------------------
  std::uint32_t alloc_fid();          // a fid number not in use on this connection
  void release_fid(std::uint32_t f);  // back to the pool (after clunk or remove)

  // ---- Blocking operations on fids (intro(5) names) -----------------------------------
  // attach(5); returns the new root fid. With options::credential: Tauth and a Tread of
  // the afid's challenge first, in one write; if the server answers Tauth with an error
  // ("authentication not required"), Tattach with NOFID; else a credential bound to
  // binding() and the challenge is written to the afid, Tattach names it, and the afid is
  // clunked (two round trips either way). Errors: the credential function's error, or the server's refusal
  // ("authentication required", "credential expired", "uid 1001 (bob) may not attach as
  // alice", ...).
  result<std::uint32_t> attach(std::string_view uname, std::string_view aname = "");
  // Walks from fid along a slash-separated path ("" clones) into a new fid, in steps of
  // at most 16 names. A path that does not exist is an error naming the first missing
  // element: "'nodes/x': file does not exist".
  result<std::uint32_t> walk(std::uint32_t fid, std::string_view path);
  result<srv9p::ropen> open(std::uint32_t fid, std::uint8_t mode);
  result<srv9p::rcreate> create(std::uint32_t fid, std::string_view name, std::uint32_t perm,
                                std::uint8_t mode);
  // At most count bytes (clamped to iounit()); an empty string is end of file.
  result<std::string> read(std::uint32_t fid, std::uint64_t offset, std::uint32_t count);
  // Writes data in iounit()-sized pieces; returns the bytes the server took.
  result<std::uint32_t> write(std::uint32_t fid, std::uint64_t offset, std::string_view data);
  result<void> clunk(std::uint32_t fid);   // also releases the fid number
  result<void> remove(std::uint32_t fid);  // also releases the fid number (clunked either way)
  result<srv9p::dir> stat(std::uint32_t fid);
  result<void> wstat(std::uint32_t fid, const srv9p::dir& d);

  // ---- Whole-file helpers, paths relative to a root fid --------------------------------
  result<std::string> read_file(std::uint32_t root, std::string_view path);
  // Opens with OWRITE|OTRUNC and writes data in iounit pieces.
  result<void> write_file(std::uint32_t root, std::string_view path, std::string_view data);
  result<std::vector<srv9p::dir>> list_dir(std::uint32_t root, std::string_view path);
  result<srv9p::dir> stat_path(std::uint32_t root, std::string_view path);
  // Reads path from offset 0 until end of file, calling sink with each piece as it
  // arrives (a blocking read delivers data as the server produces it). sink returning
  // false stops early.
  result<void> stream_file(std::uint32_t root, std::string_view path,
                           const std::function<bool(std::string_view)>& sink);

 private:
  struct impl;
  explicit client(std::shared_ptr<impl> i);
  // Shared with the reader thread (thread mode) or io's pending handlers (io mode).
  std::shared_ptr<impl> impl_;
};

// Splits "a/b//c/" into {"a","b","c"}.
std::vector<std::string> split_path(std::string_view path);

}  // namespace fsclient
