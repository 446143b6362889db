// Taking a connection away from the server (request::hand_off, tree::hands_off) and
// serving one it did not accept (server::adopt); listeners on IPv6 and on every address.
// The server runs on an io thread of its own; the client is raw bytes on a real socket.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "srv9p/dial.hpp"
#include "srv9p/errors.hpp"
#include "srv9p/ramfs.hpp"
#include "srv9p/server.hpp"

namespace srv9p {
namespace {

using namespace std::chrono_literals;

// A root with one file, "join", whose writes take the connection (unless they say
// "refuse"); what was taken goes to the promise.
class handoff_tree : public tree {
 public:
  std::promise<handoff> taken;

  std::expected<dir, std::string> attach(std::string_view, std::string_view) override {
    return dirtab_dir({"/", 1, dmdir | 0777}, 0, "glenda", "glenda");
  }
  std::expected<dir, std::string> walk1(const dir&, std::string_view name, std::string_view) override {
    if (name != "join") return std::unexpected(std::string(err::not_found));
    return dirtab_dir({"join", 2, 0666}, 0, "glenda", "glenda");
  }
  bool hands_off(const dir& f) const override { return f.name == "join"; }
  void write(request r) override {
    const auto& w = r.get<twrite>();
    if (w.data == "refuse") return r.error("refused");
    if (w.data == "slow") {
      // Answered later, from another thread, as a tree that asks someone first would.
      std::thread([this, r] {
        std::this_thread::sleep_for(300ms);
        r.hand_off(rwrite{4}, [this](handoff h) { taken.set_value(std::move(h)); });
      }).detach();
      return;
    }
    r.hand_off(rwrite{static_cast<std::uint32_t>(w.data.size())}, [this](handoff h) { taken.set_value(std::move(h)); });
  }
};

struct running {
  asio::io_context io;
  handoff_tree t;
  server srv{io, t};
  std::thread thread;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};

  running() { thread = std::thread([this] { io.run(); }); }
  template <class F>
  auto on_io(F f) {
    std::packaged_task<decltype(f())()> task(f);
    auto fut = task.get_future();
    asio::post(io, [&task] { task(); });
    return fut.get();
  }
  std::string listen(const std::string& d) {
    return on_io([&] {
      auto r = srv.listen(d);
      EXPECT_TRUE(r) << (r ? "" : r.error());
      return r.value_or("");
    });
  }
  ~running() {
    on_io([this] {
      srv.stop();
      return 0;
    });
    work.reset();
    io.stop();
    thread.join();
  }
};

void send(asio::ip::tcp::socket& s, const fcall& f) { asio::write(s, asio::buffer(encode(f))); }

fcall receive(asio::ip::tcp::socket& s) {
  std::vector<std::uint8_t> buf(4);
  asio::read(s, asio::buffer(buf));
  buf.resize(peek_size(buf));
  asio::read(s, asio::buffer(buf.data() + 4, buf.size() - 4));
  auto f = decode(buf);
  EXPECT_TRUE(f.has_value()) << f.error();
  return f.value_or(fcall{});
}

asio::ip::tcp::socket connect_to(asio::io_context& io, const std::string& host, std::uint16_t port) {
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address(host), port});
  return s;
}

// Tversion, Tattach, Twalk to join, Topen for writing: fid 1 is ready for the write.
void open_join(asio::ip::tcp::socket& s) {
  send(s, fcall{notag, tversion{8192, "9P2000"}});
  ASSERT_TRUE(std::holds_alternative<rversion>(receive(s).msg));
  send(s, fcall{1, tattach{0, nofid, "glenda", ""}});
  ASSERT_TRUE(std::holds_alternative<rattach>(receive(s).msg));
  send(s, fcall{2, twalk{0, 1, {"join"}}});
  ASSERT_TRUE(std::holds_alternative<rwalk>(receive(s).msg));
  send(s, fcall{3, topen{1, owrite}});
  ASSERT_TRUE(std::holds_alternative<ropen>(receive(s).msg));
}

std::string read_fd(int fd, std::size_t n) {
  std::string out;
  while (out.size() < n) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    char buf[256];
    ssize_t got = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (got <= 0) break;
    out.append(buf, static_cast<std::size_t>(got));
  }
  return out;
}

TEST(Handoff, TheAnswerIsWrittenThenTheSocketIsTheTakersWithNothingRead) {
  running r;
  auto d = parse_dial(r.listen("tcp!127.0.0.1!0"));
  asio::io_context cio;
  auto s = connect_to(cio, "127.0.0.1", d->port);
  open_join(s);
  // A refused hand-off write changes nothing: the session goes on.
  send(s, fcall{4, twrite{1, 0, "refuse"}});
  auto refused = receive(s);
  ASSERT_TRUE(std::holds_alternative<rerror>(refused.msg));
  send(s, fcall{4, twrite{1, 0, "hello"}});
  auto reply = receive(s);
  ASSERT_TRUE(std::holds_alternative<rwrite>(reply.msg));
  EXPECT_EQ(std::get<rwrite>(reply.msg).count, 5u);
  // What the client sends from now on belongs to the taker: it looks like a 9P message
  // (a Tversion), which the server must not have swallowed.
  auto next = encode(fcall{notag, tversion{8192, "9P2000"}});
  asio::write(s, asio::buffer(next));
  auto fut = r.t.taken.get_future();
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  handoff h = fut.get();
  ASSERT_GE(h.fd, 0);
  EXPECT_EQ(h.who.uname, "glenda");
  EXPECT_EQ(read_fd(h.fd, next.size()), std::string(next.begin(), next.end()));
  EXPECT_EQ(r.on_io([&] { return r.srv.connections(); }), 0u);
  ::close(h.fd);
}

TEST(Handoff, NothingIsReadWhileAHandOffWriteWaitsForItsAnswer) {
  running r;
  auto d = parse_dial(r.listen("tcp!127.0.0.1!0"));
  asio::io_context cio;
  auto s = connect_to(cio, "127.0.0.1", d->port);
  open_join(s);
  send(s, fcall{4, twrite{1, 0, "slow"}});
  // A client that does not wait for the answer: these bytes arrive after the Twrite, in
  // a segment of their own, while it is outstanding. They must reach the taker unread.
  std::this_thread::sleep_for(50ms);
  auto early = encode(fcall{5, tstat{0}});
  asio::write(s, asio::buffer(early));
  auto reply = receive(s);
  ASSERT_TRUE(std::holds_alternative<rwrite>(reply.msg));
  auto fut = r.t.taken.get_future();
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  handoff h = fut.get();
  EXPECT_EQ(read_fd(h.fd, early.size()), std::string(early.begin(), early.end()));
  ::close(h.fd);
}

TEST(Handoff, BytesSentBehindTheWriteRefuseIt) {
  running r;
  auto d = parse_dial(r.listen("tcp!127.0.0.1!0"));
  asio::io_context cio;
  auto s = connect_to(cio, "127.0.0.1", d->port);
  open_join(s);
  // The Twrite and a Tstat in one segment: the client did not wait for the answer.
  auto both = encode(fcall{4, twrite{1, 0, "hello"}});
  auto stat = encode(fcall{5, tstat{0}});
  both.insert(both.end(), stat.begin(), stat.end());
  asio::write(s, asio::buffer(both));
  auto reply = receive(s);
  ASSERT_TRUE(std::holds_alternative<rerror>(reply.msg));
  EXPECT_EQ(std::get<rerror>(reply.msg).ename, err::handoff_trailing);
  EXPECT_TRUE(std::holds_alternative<rstat>(receive(s).msg));  // the session goes on
  EXPECT_EQ(r.t.taken.get_future().wait_for(200ms), std::future_status::timeout);
}

TEST(Handoff, AnAdoptedSocketIsServedAndReportsItsEnd) {
  asio::io_context io;
  ramfs fs{ramfs_options{.owner = "glenda"}};
  server srv{io, fs};
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  bool closed = false;
  ASSERT_TRUE(srv.adopt(sv[0], peer_info{.uid = ::getuid(), .binding = ""}, [&] { closed = true; }));
  std::thread client([fd = sv[1]] {
    auto v = encode(fcall{notag, tversion{8192, "9P2000"}});
    ASSERT_EQ(::send(fd, v.data(), v.size(), 0), static_cast<ssize_t>(v.size()));
    std::string got = read_fd(fd, 4);
    ASSERT_EQ(got.size(), 4u);
    std::vector<std::uint8_t> head(got.begin(), got.end());
    std::string rest = read_fd(fd, peek_size(head) - 4);
    got += rest;
    auto f = decode(std::span(reinterpret_cast<const std::uint8_t*>(got.data()), got.size()));
    ASSERT_TRUE(f);
    EXPECT_TRUE(std::holds_alternative<rversion>(f->msg));
    ::close(fd);
  });
  for (int i = 0; i < 500 && !closed; ++i) io.run_for(10ms);
  client.join();
  EXPECT_TRUE(closed);
  int not_socket = ::dup(0);
  EXPECT_FALSE(srv.adopt(not_socket, {}));
}

TEST(Listen, EveryAddressTakesIPv4AndIPv6) {
  running r;
  auto bound = r.listen("tcp!*!0");
  auto d = parse_dial(bound);
  ASSERT_TRUE(d) << bound;
  asio::io_context cio;
  for (std::string host : {"127.0.0.1", "::1"}) {
    SCOPED_TRACE(host);
    auto s = connect_to(cio, host, d->port);
    send(s, fcall{notag, tversion{8192, "9P2000"}});
    EXPECT_TRUE(std::holds_alternative<rversion>(receive(s).msg));
  }
}

TEST(Listen, IPv6LoopbackListensAndIsDialled) {
  running r;
  for (std::string dial : {"tcp![::1]!0", "[::1]:0"}) {
    SCOPED_TRACE(dial);
    auto bound = r.listen(dial);
    EXPECT_TRUE(bound.starts_with("tcp!::1!")) << bound;
    auto d = parse_dial(bound);
    ASSERT_TRUE(d);
    EXPECT_TRUE(is_loopback(*d));
    asio::io_context cio;
    auto s = connect_to(cio, "::1", d->port);
    send(s, fcall{notag, tversion{8192, "9P2000"}});
    EXPECT_TRUE(std::holds_alternative<rversion>(receive(s).msg));
    // And the bracketed forms parse to the same address.
    auto p = parse_dial("tcp![::1]!" + std::to_string(d->port));
    ASSERT_TRUE(p);
    EXPECT_EQ(p->host, "::1");
  }
}

}  // namespace
}  // namespace srv9p
