#pragma once
// The 9P2000 server framework: a session is the protocol state of one connection (its
// fids, its outstanding requests, its msize); a server accepts TCP and Unix-socket
// connections and runs a session over each.
//
// Arrangement, after Asio's chat_server: a connection is a reader coroutine that parses
// every whole message in its buffer and hands each to the session, and a writer coroutine
// that drains the reply queue with one gathered write, because replies leave in
// completion order, not arrival order. Requests are started in the order they arrive and
// every handler runs on the server's executor, so a client may pipeline dependent
// requests (Twalk to newfid, Topen newfid, Tread newfid) without waiting.
//
// The session is transport-free: it takes whole messages and emits whole replies through
// a callback, so transcript tests and the fuzzer drive it without sockets.
//
// Authentication (attach(5), srv9p/auth.hpp): a Unix-socket connection's peer is known
// by SO_PEERCRED; a TCP connection's by a credential written to the afid of a Tauth when
// server_options::auth is set (MUNGE), or not at all when it is null (--auth none).
// Either way session::do_attach makes the fid's identity, and trees read only that.
//
// Dialects: a session speaks 9P2000 or 9P2000.L, as its Tversion chose. The .L requests
// are translated into the 9P2000 requests trees already answer (Tgetattr into Tstat,
// Tlopen into Topen, Treaddir into directory Treads, Tsetattr and Trename into Twstat ...)
// and the answers translated back, errors into Rlerror through srv9p/errno.hpp; what
// trees see is unchanged (srv9p/server_dotl.cpp, and galaxy(4) for the mapping).
#include <asio/any_io_executor.hpp>
#include <asio/io_context.hpp>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <deque>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "srv9p/auth.hpp"
#include "srv9p/fcall.hpp"
#include "srv9p/tree.hpp"

namespace srv9p {

struct server_options {
  std::uint32_t max_msize = srv9p::max_msize;  // the largest msize Tversion may negotiate
  // Where the server writes a line about each dropped connection and malformed message.
  // Default: none.
  std::function<void(std::string_view)> log;

  // Verifies the credentials that TCP clients write to their afids. Null: TCP clients
  // attach without authentication (--auth none) and Tauth is answered
  // "authentication not required". Unix-socket connections never use it (SO_PEERCRED).
  std::shared_ptr<authenticator> auth;
  // Uids that may attach under any name, besides root and the daemon's own uid (--trust).
  std::vector<uid_t> trusted;

  // Per connection: the most fids (afids included) and the most requests outstanding or
  // waiting; beyond them a request is answered with an error and changes nothing.
  std::size_t max_fids = 16384;
  std::size_t max_outstanding = 4096;
  // A connection that has not attached successfully this long after it was accepted is
  // closed (with a log line), milliseconds; 0: never.
  std::uint32_t attach_timeout_ms = 30000;

  // Bounds on what an unauthenticated peer can make the server hold or do (a Tauth flood
  // must not starve real logins nor grow the daemon). Per connection: afids at once
  // before the first successful attach and after it; bytes of credentials written but
  // not yet complete, over all afids. Only one credential per connection is verified at
  // a time; the next complete one waits for it. Server-wide: TCP connections not yet
  // attached (beyond it a new one is closed at once, with a log line), and connections
  // per Unix-socket peer uid (root exempt).
  std::size_t max_afids_unattached = 4;
  std::size_t max_afids = 64;
  std::size_t max_pending_credential_bytes = 8192;
  std::size_t max_unattached_connections = 256;
  std::size_t max_connections_per_uid = 256;
};

class session : public std::enable_shared_from_this<session> {
 public:
  // send is called on the executor with each encoded reply, in completion order; a
  // Rread's data comes as the message's bulk (wire_message), to be written after its head.
  using sender = std::function<void(wire_message)>;

  // peer: what the transport proves about the client (a Unix socket's SO_PEERCRED uid);
  // none for TCP and for in-process sessions.
  session(asio::any_io_executor ex, tree& t, server_options opts, sender send, peer_info peer = {});
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  // Handles one whole message (size[4] first). A message whose body is malformed but
  // whose header is readable gets an Rerror naming the fault ("botch: ..."); an error
  // return means the framing itself is broken (bad size, not a T-message of 9P2000, size
  // over msize) and the caller must close the connection. input_follows: the transport
  // already holds bytes received after this message (a Twrite that may hand the
  // connection off is then refused, tree::hands_off).
  std::expected<void, std::string> handle(std::span<const std::uint8_t> msg, bool input_follows = false);

  // Hand-off (request::hand_off). The transport stops reading while input_held(): a
  // Twrite to a hand-off file is outstanding, or the connection has been handed off.
  bool input_held() const { return holding_ > 0 || handed_off_; }
  bool handed_off() const { return handed_off_; }
  // The transport's part of a hand-off, called once on the executor after the answer
  // has been sent through the sender and the session closed: the transport writes what
  // it has queued, reads nothing more, and gives take the socket. Without it, a
  // hand-off is refused (err::handoff_refused).
  using handoff_hook = std::function<void(handoff_fn take, identity who)>;
  void on_handoff(handoff_hook h) { on_handoff_ = std::move(h); }

  // The largest message the peer may send now: max_msize before Tversion, then the
  // negotiated msize.
  std::uint32_t msize() const { return msize_; }

  // Hang-up: every outstanding request is flushed (its tree is told), every fid clunked.
  // Idempotent. Replies after this are dropped.
  void close();

  std::size_t fids() const { return fids_.size(); }
  // This session's number, unique in the process (fid::session_id).
  std::uint64_t id() const { return id_; }
  std::size_t outstanding() const { return pending_.size(); }
  // Whether a Tattach has succeeded on this connection (the unauthenticated-connection
  // timer in server stops caring once it has).
  bool attached() const { return attached_; }
  // Called once, on the executor, when the first Tattach succeeds.
  void on_attach(std::function<void()> f) { on_attach_ = std::move(f); }

  // Used by request (srv9p/tree.cpp) to deliver an answer; not for trees.
  void finish(detail::pending& p, fcall reply);
  void finish_walk(detail::pending& p, std::vector<dir> walked);
  void finish_create(detail::pending& p, dir created);
  void finish_handoff(detail::pending& p, fcall reply, handoff_fn take);

 private:
  void reset();  // Tversion and close(): abort all requests, clunk all fids
  void reply_error(std::uint16_t tag, std::string_view ename);
  void send(fcall f);  // by value: a Rread's data is moved to the encoder, not copied
  std::shared_ptr<fid> lookup(std::uint32_t num) const;
  // The client lets go of f (Tclunk, Tremove, reset); the tree's clunk hook runs once no
  // request is outstanding on it.
  // by_client: at the client's word (Tclunk, Tremove), not a hang-up (fid::clunked_by_client).
  void clunk_fid(fid& f, bool by_client = false);
  // Ends an outstanding request, answered or not: off the table, off its fid's count.
  void complete(detail::pending& p, bool answered = true);  // answered: not aborted (hang-up, Tflush)
  // Aborts an outstanding request (Tflush, reset): completes it and tells its handler.
  // Takes its own reference: complete() erases p's entry from pending_, which may be
  // where the caller's reference lives (do_flush).
  void abort(std::shared_ptr<detail::pending> p);
  // Registers an outstanding request on fid f; the caller hands it to the tree.
  request start(std::uint16_t tag, message&& m, std::shared_ptr<fid> f);

  void do_version(std::uint16_t tag, tversion& m);
  void do_auth(std::uint16_t tag, tauth& m);
  void do_attach(std::uint16_t tag, tattach& m);
  void attach_now(std::uint16_t tag, tattach& m);  // do_attach once the fid is free to make
  // Twrite, Tread and the rest on an afid; trees never see an afid.
  void do_afid(std::uint16_t tag, message&& m, const std::shared_ptr<fid>& f);
  // The authenticator's answer for the credential on afid num, back on the executor.
  void verified(std::uint32_t num, const std::shared_ptr<detail::auth_state>& a,
                authenticator::verified v);
  // Whether one more fid would pass max_fids.
  bool fids_full() const;
  // Hands afid f's complete credential to the authenticator (one at a time per session).
  void begin_verify(const std::shared_ptr<fid>& f);
  // An afid leaves the fid table: its count and its unfinished credential's bytes go.
  void forget_afid(fid& f);
  // The tree's clunk hook and the end of per-open state; afids have none.
  void release(fid& f);
  void do_flush(std::uint16_t tag, const tflush& m);
  void do_walk(std::uint16_t tag, message&& m);
  void walk_now(std::uint16_t tag, message&& m);  // do_walk once newfid is free to make
  // The fid a request makes (Tattach's fid, Twalk's newfid when not fid), if any.
  static std::optional<std::uint32_t> made_fid(const message& m);
  void do_clunk(std::uint16_t tag, const tclunk& m);
  void dispatch(std::uint16_t tag, message&& m);
  // An outstanding walk that makes newfid (or open/create of it) has ended: start what
  // waited for it.
  void walk_done(std::uint32_t newfid);

  // ---- 9P2000.L (srv9p/server_dotl.cpp) ----
  // A .L request: answered here, or translated and dispatched as a 9P2000 one with an
  // lreq under its tag saying how to translate the answer.
  void dispatch_l(std::uint16_t tag, message&& m);
  // The uname a .L Tauth or Tattach means: n_uname's user when it is not ~0, else uname.
  std::expected<void, std::string> resolve_n_uname(std::string& uname, std::uint32_t& n_uname) const;
  // The .L form of a reply about to be sent (Rerror into Rlerror, Rstat into Rgetattr ...).
  fcall to_dotl(fcall f);
  // A Treaddir's directory Tread answered: read on, or answer from the listing. True if
  // it took the answer.
  bool readdir_step(detail::pending& p, fcall& reply);
  void answer_readdir(std::uint16_t tag, fid& f, std::uint64_t offset, std::uint32_t count);
  // uid and gid numbers for a stat's uid and gid names (Rgetattr).
  std::pair<std::uint32_t, std::uint32_t> ids_of(const std::string& uid, const std::string& gid);
  struct lreq {
    msg_type kind;                      // the .L T-message
    std::uint64_t offset = 0;           // Treaddir
    std::uint32_t count = 0;            // Treaddir
    std::string listing;                // Treaddir: the directory's stat entries read so far
    std::shared_ptr<fid> made;          // Tmkdir: the fid the Tcreate ran on (no number)
  };
  void forget_lreq(std::uint16_t tag);
  dialect dialect_ = dialect::p9_2000;
  std::unordered_map<std::uint16_t, lreq> lreqs_;
  std::unordered_map<std::string, std::uint32_t> uid_cache_, gid_cache_;

  asio::any_io_executor ex_;
  std::uint64_t id_;
  tree& tree_;
  server_options opts_;
  sender send_;
  std::uint32_t msize_;
  bool versioned_ = false;
  bool closed_ = false;
  bool attached_ = false;
  std::function<void()> on_attach_;
  handoff_hook on_handoff_;
  std::size_t holding_ = 0;   // outstanding Twrites to hand-off files (input_held)
  bool handed_off_ = false;
  bool input_follows_ = false;  // handle()'s argument, while it runs
  bool in_handle_ = false;      // handle() is on the stack
  peer_info peer_;
  // The identity the last attach with a verified credential proved on this connection;
  // kept across Tversion, so that a Tattach without afid by the same name (a kernel
  // mount given this socket, `galaxy mount --kernel`) is that identity (attach_now).
  std::optional<identity> proven_;
  // Afids in fids_, the bytes of their unfinished credentials, credentials handed to the
  // authenticator whose answer has not come back (kept across Tversion: the answer
  // still comes), and afids whose complete credential waits its turn.
  std::size_t afids_ = 0;
  std::size_t pending_cred_bytes_ = 0;
  std::size_t verifying_ = 0;
  std::deque<std::shared_ptr<fid>> verify_queue_;
  std::unordered_map<std::uint32_t, std::shared_ptr<fid>> fids_;
  std::unordered_map<std::uint16_t, std::shared_ptr<detail::pending>> pending_;
  std::vector<std::uint8_t> scratch_;  // reused encode buffer
  // Fids an outstanding Twalk is making (its newfid) or an outstanding Topen/Tcreate is
  // opening, and the requests that name them and so wait, in arrival order (started by
  // walk_done()).
  struct deferred {
    std::uint16_t tag;
    message m;
  };
  std::unordered_set<std::uint32_t> walking_;
  // Fids that waiting Tattaches and Twalks will make (also in walking_; handle()).
  std::unordered_set<std::uint32_t> reserved_;
  std::unordered_map<std::uint32_t, std::deque<deferred>> waiting_;
  std::unordered_set<std::uint16_t> deferred_tags_;
};

class server {
 public:
  // The server and every connection run on io's executor; run io from one thread.
  server(asio::io_context& io, tree& t, server_options opts = {});
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Call listen() and stop() before io runs or from its thread (a signal_set handler).
  // Starts accepting on a dial string (srv9p/dial.hpp) and returns the address actually
  // bound, canonical, with the chosen port when 0 was asked ("tcp!127.0.0.1!41873").
  // A Unix socket path that exists but has no listener is replaced; one with a listener
  // is an error. Errors: a bad dial string, or the bind/listen failure's text.
  std::expected<std::string, std::string> listen(std::string_view dial);

  // Serves one session over a socket this process connected itself (a node that joined a
  // scheduler serves its tree on the connection it dialled, as Plan 9's exportfs runs
  // on the far side of an import). Takes fd (a connected TCP or Unix stream socket,
  // blocking or not) whatever the outcome. peer: what the session is to know of the
  // other end; for a joined connection binding = join_binding(NONCE). on_close runs on
  // the executor once the connection has ended (either side hung up, stop(), the attach
  // timeout). Call from io's thread or before it runs. Errors: fd is not a stream
  // socket, or the server has been stopped.
  std::expected<void, std::string> adopt(int fd, peer_info peer, std::function<void()> on_close = {});

  // Closes every listener and every connection (their sessions close(): requests
  // flushed, fids clunked). Unix socket files this server created are removed.
  void stop();

  std::size_t connections() const;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;  // shared with the accept and connection coroutines
};

}  // namespace srv9p
