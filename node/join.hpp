#pragma once
// galaxy-node --join DIAL: the node dials the scheduler and serves its own tree on the
// connection it made, the scheduler being the client, as Plan 9's import runs exportfs
// on the far side of a connection it dialled (man/man8/galaxy-node.8, "Joining").
//
// One join (join_once) is a short blocking 9P exchange in which the node is the client:
// Tversion; Tauth and a MUNGE credential bound to the scheduler's end of the socket
// (when the scheduler authenticates); Tattach as the node's daemon user; Twalk to /join;
// Topen for writing; Twrite of one join line (ctl/join.hpp) holding a fresh nonce. The
// scheduler's Rwrite turns the connection around: from the next byte on, the scheduler
// speaks first (Tversion) and the node serves (srv9p::server::adopt), accepting only
// credentials bound to srv9p::join_binding(nonce). Replies are read whole and exactly
// (size[4], then the rest), so no byte after the Rwrite is ever taken from the socket.
//
// The joiner runs join_once on a thread of its own, hands each joined socket to the
// server on the io_context, and waits for the connection to end; then it joins again
// after a jittered exponential backoff (retry_ms doubling to retry_max_ms, each wait
// drawn from 50% to 150% of the step; the step starts again from retry_ms after a
// connection that lived stable_ms). An Rerror (name taken, version not spoken, identity
// refused) is logged as the scheduler wrote it, and retried the same way.
#include <asio/io_context.hpp>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <expected>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "ctl/join.hpp"
#include "srv9p/server.hpp"

namespace node {

struct join_options {
  std::string dial;        // the scheduler's listener
  ctl::join_request who;   // the line to write; its nonce is made afresh for each join
  std::string uname;       // the attach name: the node's daemon user
  // A fresh credential with its argument as payload (srv9p::credential_source): the
  // scheduler's address and the afid's challenge (srv9p::credential_payload); empty: no Tauth
  // (--auth none).
  std::function<std::expected<std::string, std::string>(std::string_view bind)> credential;
  std::uint32_t timeout_ms = 10000;      // connect, and each reply of the exchange
  std::uint32_t retry_ms = 1000;         // the first wait before joining again
  std::uint32_t retry_max_ms = 60000;    // the longest
  std::uint32_t stable_ms = 60000;       // a connection that lived this long resets the wait
  // TCP keepalive on the joined socket (tcp(7)): idle seconds before the first probe,
  // seconds between probes, probes unanswered before the kernel gives up.
  int keepalive_idle_s = 30, keepalive_interval_s = 10, keepalive_count = 6;
  std::function<void(std::string_view)> log;
};

// A fresh nonce: 16 bytes of getrandom(2) as 32 lower-case hex digits.
std::string make_nonce();

// One join with nonce (opts.who.nonce is ignored). Returns the connected socket (blocking,
// close-on-exec, keepalive on), its next byte the scheduler's first T-message. cancel:
// the joiner keeps the socket being used there so that stop() can shut it down. Errors:
// "dial ...: WHY", "no answer from the scheduler within N ms", "connection closed", and
// the scheduler's Rerror text as it wrote it ("join: node n1 is already connected").
std::expected<int, std::string> join_once(const join_options& opts, const std::string& nonce,
                                          std::atomic<int>* current_fd = nullptr);

class joiner {
 public:
  joiner(asio::io_context& io, srv9p::server& srv, join_options opts);
  ~joiner();  // stop()
  joiner(const joiner&) = delete;
  joiner& operator=(const joiner&) = delete;

  void start();  // begins joining on its own thread
  // Ends the thread: a join in progress is cut short (its socket shut down), a wait is
  // cut short. A connection being served is the server's (server::stop ends it).
  void stop();

 private:
  void run();
  void log(std::string_view line) const;
  // Waits ms or until stop(); returns false if stopped.
  bool sleep_ms(std::uint32_t ms);

  asio::io_context& io_;
  srv9p::server& srv_;
  join_options opts_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::atomic<int> current_fd_{-1};
};

}  // namespace node
