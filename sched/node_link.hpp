#pragma once
// galaxy-sched's connection to one galaxy-node: a pipelined 9P client (fsclient), kept
// alive, watched and re-established (design: "The unified tree", "Node failure").
//
// What a link does on its own, all of it as asynchronous chains on the scheduler's
// io_context (a link has no thread: its connection is an io-mode fsclient, so 1 000
// links cost 1 000 sockets, not 2 000 threads):
//   - dials the node (resolve, connect, Tversion, each under dial_timeout_ms), attaches as
//     the scheduler's admin (Tauth and the read of the afid's challenge, then Twrite of a
//     credential bound to it, Tattach, each group pipelined), opens
//     /status, /labels and /events in one write and keeps them open;
//   - reads /status and /labels every heartbeat_ms: that is the node's resources and the
//     proof that it is alive;
//   - keeps one read of /events outstanding and hands every line to the event hook.
// Failure detection has two signals (galaxy-sched(8), FAILURE DETECTION). Silence: a
// heartbeat unanswered for down_after_ms marks the node down (default 30 s, to ride out a
// Wi-Fi hiccup). A closed connection (reset, end of file, a refused dial, the outbound
// queue over its bound because the node stopped reading) marks it down at once: its fids
// and its /events stream are gone, so exits in the gap would be missed. Either way the
// connection is closed (every call still waiting fails at once, so nobody hangs on a dead
// node). TCP keepalive is on (keepalive_s) for connections that go quiet.
// The down hook also says when the node's copies are certainly fenced: the last heartbeat
// sent (or the link's creation, for a link that never sent one) plus down_after_ms, the
// same instant at which silence would have marked the node down. After silence that is
// now; after a close it is up to down_after_ms later, and the scheduler holds the node's
// jobs until then (sched/reconcile.cpp, "Held").
//
// Two kinds of link. A dialled link (--node NAME=DIAL, node add) dials again every
// reconnect_ms while down. A joined link is made from a connection the node made to us
// (galaxy-node --join; fsclient::client::adopt): it never dials; once down it stays down
// (up() false, conn() null) until the scheduler replaces it with the node's next join.
//
// Everyone else talks to the node through batch(): 9P messages written in one go (the
// node starts them in arrival order, so a walk to a new fid, its open and its read can
// travel together) whose replies come back together, on the io_context. Fids on the
// node are per connection: batch() names the connection it used (a conn), and a fid
// taken on one connection means nothing on the next one. Requests made for a user run
// under that user's own attach, so the node checks and records the real user, as
// Plan 9's exportfs does.
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fsclient/client.hpp"
#include "srv9p/fcall.hpp"

namespace sched {

struct link_options {
  std::string uname = "sched";           // the scheduler's own attach name
  std::uint32_t heartbeat_ms = 1000;     // how often /status is read (--heartbeat)
  std::uint32_t down_after_ms = 30000;   // a heartbeat unanswered this long: node down (--down-after)
  std::uint32_t reconnect_ms = 1000;     // delay between dials while down (--reconnect)
  // A connect, and then Tversion's answer, each within this (a node that accepts but hangs).
  std::uint32_t dial_timeout_ms = 5000;
  std::uint32_t keepalive_s = 10;        // TCP keepalive idle seconds on node connections; 0: off
  // Bytes the scheduler may have queued for one node that is not reading (relayed writes,
  // starts); past this the connection is closed and the node marked down (--link-queue-bytes).
  std::size_t max_queue_bytes = 64u << 20;
  std::function<void(std::string_view)> log;  // why a connection was closed
  // A fresh credential per attach, with payload the node's endpoint as the link sees it
  // and the afid's challenge (srv9p::credential_source); empty: no Tauth.
  std::function<fsclient::result<std::string>(std::string_view bind)> credential;
};

// What a node says about itself in /status and /labels.
struct node_info {
  std::string arch;
  std::uint32_t ncpu = 0;
  std::uint32_t share_pct = 100;
  std::uint64_t mem_bytes = 0;
  std::uint64_t memfree_bytes = 0;
  bool draining = false;  // the node's own drain (its /ctl)
  std::vector<std::pair<std::string, std::string>> labels;
  // Equal in everything placement cares about (memfree changes at every heartbeat).
  bool same_shape(const node_info& o) const {
    return arch == o.arch && ncpu == o.ncpu && share_pct == o.share_pct && mem_bytes == o.mem_bytes &&
           draining == o.draining && labels == o.labels;
  }
};

// Parses a node's /status line ("name=n1 arch=amd64 ncpu=2 share=100 mem=... state=up")
// into info (labels untouched). Errors: a line without ncpu or mem.
std::expected<void, std::string> parse_node_status(std::string_view line, node_info& info);

// One connection to a node. The fsclient and the attaches made on it.
class node_conn : public std::enable_shared_from_this<node_conn> {
 public:
  explicit node_conn(std::unique_ptr<fsclient::client> c) : client_(std::move(c)) {}
  fsclient::client& client() { return *client_; }
  bool connected() const { return client_->connected(); }
  // The root fid attached as uname, and the messages to put at the front of the first
  // batch that uses it, so that the attach travels in the same write as the requests
  // that use it: none when uname is attached already; Tattach alone when the node does
  // not authenticate; when it does, Tauth and the Tread of the afid's challenge go first,
  // on their own (srv9p/auth.hpp: the credential needs the challenge), and the prefix is
  // then the Twrite of a fresh credential bound to it (MUNGE refuses a replayed one),
  // Tattach and Tclunk of the afid (afid is then set, for release once answered).
  // Batches for uname asked for while its Tauth is out wait for it and get, in the order
  // asked, the same root with no prefix (the first one carries the attach). got runs on
  // the io_context's thread, or at once when the root is known or the connection is
  // closed. Errors: the Tauth's or the challenge read's refusal, the credential
  // function's.
  struct attach_prefix {
    std::uint32_t root = 0;
    std::size_t count = 0;
    std::uint32_t afid = srv9p::nofid;
  };
  using root_callback = std::function<void(fsclient::result<attach_prefix>, std::vector<srv9p::message> prefix)>;
  void root(const std::string& uname, root_callback got);
  // Records a root attached by a blocking attach (the dial's).
  void set_root(const std::string& uname, std::uint32_t fid) { roots_[uname] = fid; }
  // After a refused attach: the next request for uname attaches again.
  void forget_root(const std::string& uname) { roots_.erase(uname); }

 private:
  std::unique_ptr<fsclient::client> client_;
  std::map<std::string, std::uint32_t> roots_;
  std::map<std::string, std::vector<root_callback>> authenticating_;  // Tauth out for uname
};

class node_link : public std::enable_shared_from_this<node_link> {
 public:
  using replies = std::vector<fsclient::client::reply>;
  struct hooks {
    std::function<void()> up;                      // connected and the first heartbeat answered
    // Marked down; the node's lease has run out by lost_after (≤ now after silence).
    std::function<void(std::string why, std::chrono::steady_clock::time_point lost_after)> down;
    std::function<void(std::string line)> event;   // one line of the node's /events
    std::function<void()> info;                    // info() changed (a heartbeat saw new labels, share, drain)
  };

  // A dialled link: dials dial (srv9p/dial.hpp) at start() and whenever it is down.
  node_link(asio::io_context& io, std::string name, std::string dial, link_options opts, hooks h);
  // A joined link: the connection the node made, already through Tversion (fsclient::
  // client::adopt on io). start() attaches on it; the link never dials. c must be in io
  // mode on io. A null c makes a joined link that is down from start() on (a stored joined
  // node after a scheduler restart, until it joins again).
  node_link(asio::io_context& io, std::string name, std::unique_ptr<fsclient::client> c, link_options opts,
            hooks h);
  ~node_link();

  void start();  // begins dialling (or attaching, when joined); call once
  void stop();   // closes the connection; no reconnect, no more hooks

  const std::string& name() const { return name_; }
  const std::string& dial() const { return dial_; }  // "" for a joined link
  bool joined() const { return joined_; }
  bool up() const { return up_; }
  // Whether the link holds a live connection: up and not hung up, or being attached.
  // (A joined node that is connected may not join again; sched/membership.cpp.)
  bool connected() const { return attaching_ != nullptr || (up_ && conn_ && conn_->connected()); }
  const node_info& info() const { return info_; }
  // The live connection, or null while down. Holders keep it for the fids they took.
  std::shared_ptr<node_conn> conn() const { return up_ ? conn_ : nullptr; }

  // Sends the messages that build(conn, root fid of uname) returns, in one write, and
  // calls done with every reply, in order, on the io_context. Batches go out in the order
  // asked, except that those of a user not yet attached on the connection, when the node
  // authenticates, wait one round trip for the afid's challenge (node_conn::root). Fids that the batch clunks
  // or removes go back to the connection's pool once the replies are in. When the node
  // is down, build is not called and done gets a single error ("node NAME is down"), so
  // callers check the number of replies before indexing them.
  using builder = std::function<std::vector<srv9p::message>(node_conn&, std::uint32_t root)>;
  void batch(const std::string& uname, builder build, std::function<void(replies)> done);

 private:
  // A new connection with the files the link keeps open.
  struct opened {
    std::shared_ptr<node_conn> conn;
    std::uint32_t status_fid = 0, labels_fid = 0, events_fid = 0;
  };
  void dial_async();
  void attach_async(std::unique_ptr<fsclient::client> c);
  void connected(opened o);
  void heartbeat();
  void read_events();
  void mark_down(std::string why);
  // batch() once the root is known: prefix (node_conn::root's), then build's messages.
  static void send_batch(asio::io_context& io, const std::shared_ptr<node_conn>& conn, const std::string& uname,
                         const fsclient::result<node_conn::attach_prefix>& prefix, std::vector<srv9p::message> msgs,
                         const builder& build, std::function<void(replies)> done);

  asio::io_context& io_;
  std::string name_, dial_;
  link_options opts_;
  hooks hooks_;
  asio::steady_timer timer_;     // heartbeat and reconnect
  std::shared_ptr<node_conn> conn_;
  std::unique_ptr<fsclient::client> joined_client_;  // a joined link's connection, until start()
  bool joined_ = false;
  bool up_ = false;
  bool reported_down_ = false;  // down was reported since the node was last up
  bool stopped_ = false;
  bool dialing_ = false;         // a dial or attach is in flight
  std::shared_ptr<node_conn> attaching_;  // the connection being attached, closed by stop()
  bool heartbeat_pending_ = false;
  std::uint64_t generation_ = 0;  // bumped at each new connection; stale replies are ignored
  // The last heartbeat sent on any connection, or the link's creation (fencing's clock).
  std::chrono::steady_clock::time_point heartbeat_sent_ = std::chrono::steady_clock::now();
  std::uint32_t status_fid_ = 0, labels_fid_ = 0, events_fid_ = 0;
  std::string events_partial_;
  node_info info_;
};

}  // namespace sched
