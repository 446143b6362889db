#pragma once
// An in-memory 9P server for tests: a session over a ramfs, driven message by message
// without sockets. send() hands one T-message to the session and runs every handler it
// set off; replies collect in `out` in the order the session sent them.
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <deque>
#include <memory>

#include "srv9p/fcall.hpp"
#include "srv9p/ramfs.hpp"
#include "srv9p/server.hpp"

namespace srv9p::testing {

// A ramfs that counts the clunk hook's calls and, with hold set, answers walks and opens
// only when release() is called (as a relay to another server does).
class counting_ramfs : public ramfs {
 public:
  using ramfs::ramfs;
  void clunk(fid& f) override {
    ++clunks;
    ramfs::clunk(f);
  }
  void walk(request r) override {
    if (hold) return held.push_back(std::move(r));
    ramfs::walk(std::move(r));
  }
  void open(request r) override {
    if (hold) return held.push_back(std::move(r));
    ramfs::open(std::move(r));
  }
  // Answers the held requests, in order.
  void release() {
    hold = false;
    auto h = std::move(held);
    held.clear();
    for (auto& r : h) {
      if (r.done()) continue;
      if (std::holds_alternative<twalk>(r.t())) {
        ramfs::walk(r);
      } else {
        ramfs::open(r);
      }
    }
  }
  int clunks = 0;
  bool hold = false;
  std::vector<request> held;
};

struct harness {
  asio::io_context io;
  counting_ramfs fs{ramfs_options{.owner = "glenda", .big_bytes = 100}};
  std::shared_ptr<session> s;
  std::deque<fcall> out;
  std::vector<std::string> log;
  dialect d = dialect::p9_2000;  // what the session's last Rversion chose; send() encodes in it

  harness() : harness(server_options{}) {}
  // opts: limits and authentication (its log is replaced by one that fills `log`).
  // peer: as a Unix-socket connection's SO_PEERCRED would give it.
  explicit harness(server_options opts, peer_info peer = {}) {
    opts.log = [this](std::string_view l) { log.emplace_back(l); };
    s = std::make_shared<session>(io.get_executor(), fs, opts, [this](wire_message m) {
      // Replies decode in 9P2000.L whichever dialect the session speaks (a superset).
      auto f = decode(m.joined(), dialect::p9_2000_l);
      ASSERT_TRUE(f.has_value()) << "server sent an undecodable reply: " << f.error();
      if (auto* v = std::get_if<rversion>(&f->msg)) {
        d = v->version == version_9p2000_l ? dialect::p9_2000_l : dialect::p9_2000;
      }
      out.push_back(std::move(*f));
    }, peer);
  }

  // Sends raw bytes; returns the session's verdict (an error means "close the connection").
  std::expected<void, std::string> send_bytes(std::span<const std::uint8_t> bytes) {
    auto r = s->handle(bytes);
    run();
    return r;
  }
  void send(std::uint16_t tag, message m) {
    auto bytes = encode(fcall{tag, std::move(m)}, d);
    auto r = send_bytes(bytes);
    ASSERT_TRUE(r.has_value()) << r.error();
  }
  void run() {
    io.poll();
    io.restart();
  }
  // The next reply, which must exist.
  fcall next() {
    EXPECT_FALSE(out.empty()) << "no reply";
    if (out.empty()) return fcall{notag, rerror{"<no reply>"}};
    fcall f = std::move(out.front());
    out.pop_front();
    return f;
  }
  // Tversion + Tattach of fid 0 as uname.
  void start(const std::string& uname = "glenda") {
    send(notag, tversion{8192 + iohdrsz, "9P2000"});
    next();
    send(1, tattach{0, nofid, uname, ""});
    auto r = next();
    ASSERT_TRUE(std::holds_alternative<rattach>(r.msg)) << to_string(r);
  }
};

}  // namespace srv9p::testing
