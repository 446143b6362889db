// The socket server: listening on TCP and Unix sockets from dial strings, and what
// happens to a connection that breaks framing or vanishes mid-request. The server runs
// in-process on its own io thread; the tests talk to it over real sockets with raw bytes.
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "srv9p/dial.hpp"
#include "srv9p/ramfs.hpp"
#include "srv9p/server.hpp"

namespace srv9p {
namespace {

using namespace std::chrono_literals;

// A ramfs served on an io thread of its own.
struct running_server {
  asio::io_context io;
  ramfs fs{ramfs_options{.owner = "glenda"}};
  server srv{io, fs};
  std::thread thread;

  std::string listen(const std::string& dial) {
    auto r = srv.listen(dial);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error());
    return r.value_or("");
  }
  void start() {
    auto guard = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(io.get_executor());
    thread = std::thread([this, guard] { io.run(); });
    work_ = guard;
  }
  // Runs f on the io thread and returns its result.
  template <class F>
  auto on_io(F f) {
    std::packaged_task<decltype(f())()> task(f);
    auto fut = task.get_future();
    asio::post(io, [&task] { task(); });
    return fut.get();
  }
  // Polls cond on the io thread until it holds or 5 s pass.
  template <class F>
  bool eventually(F cond) {
    for (int i = 0; i < 500; ++i) {
      if (on_io(cond)) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  ~running_server() {
    if (thread.joinable()) {
      on_io([this] {
        srv.stop();
        return 0;
      });
      work_.reset();
      io.stop();
      thread.join();
    }
  }

 private:
  std::shared_ptr<asio::executor_work_guard<asio::io_context::executor_type>> work_;
};

template <class Socket>
void send(Socket& s, const fcall& f) {
  asio::write(s, asio::buffer(encode(f)));
}

template <class Socket>
fcall receive(Socket& s) {
  std::vector<std::uint8_t> buf(4);
  asio::read(s, asio::buffer(buf));
  buf.resize(peek_size(buf));
  asio::read(s, asio::buffer(buf.data() + 4, buf.size() - 4));
  auto f = decode(buf);
  EXPECT_TRUE(f.has_value()) << f.error();
  return f.value_or(fcall{});
}

asio::ip::tcp::socket connect_tcp(asio::io_context& io, const std::string& dial) {
  auto a = parse_dial(dial);
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address(a->host), a->port});
  return s;
}

template <class Socket>
void attach(Socket& s) {
  send(s, fcall{notag, tversion{8192, "9P2000"}});
  ASSERT_TRUE(std::holds_alternative<rversion>(receive(s).msg));
  send(s, fcall{1, tattach{0, nofid, "glenda", ""}});
  ASSERT_TRUE(std::holds_alternative<rattach>(receive(s).msg));
}

TEST(Server, ListenReportsTheChosenPort) {
  running_server rs;
  auto bound = rs.listen("tcp!127.0.0.1!0");
  EXPECT_TRUE(bound.starts_with("tcp!127.0.0.1!")) << bound;
  EXPECT_NE(parse_dial(bound)->port, 0);
  auto colon = rs.listen("127.0.0.1:0");
  EXPECT_TRUE(colon.starts_with("tcp!127.0.0.1!")) << colon;
}

TEST(Server, ListenErrorsAreClear) {
  running_server rs;
  auto bad = rs.srv.listen("tcp!127.0.0.1!notaport");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().find("port"), std::string::npos) << bad.error();
  auto bound = rs.listen("tcp!127.0.0.1!0");
  auto again = rs.srv.listen(bound);
  ASSERT_FALSE(again.has_value());
  EXPECT_NE(again.error().find("in use"), std::string::npos) << again.error();
}

TEST(Server, UnixSocketServesAndReplacesAStaleFile) {
  auto dir = std::filesystem::temp_directory_path() / ("galaxy-srv-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = (dir / "ramfs.sock").string();
  {
    // A socket file left by a dead server.
    asio::io_context io;
    asio::local::stream_protocol::acceptor stale(io, asio::local::stream_protocol::endpoint(path));
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  running_server rs;
  EXPECT_EQ(rs.listen("unix!" + path), "unix!" + path);
  rs.start();

  running_server other;
  auto clash = other.srv.listen("unix!" + path);
  ASSERT_FALSE(clash.has_value());
  EXPECT_NE(clash.error().find("already listening"), std::string::npos) << clash.error();

  asio::io_context io;
  asio::local::stream_protocol::socket s(io);
  s.connect(asio::local::stream_protocol::endpoint(path));
  attach(s);
  send(s, fcall{2, tstat{0}});
  EXPECT_EQ(std::get<rstat>(receive(s).msg).stat.name, "/");
  s.close();
  rs.on_io([&] {
    rs.srv.stop();
    return 0;
  });
  EXPECT_FALSE(std::filesystem::exists(path)) << "stop() should remove the socket file";
  std::filesystem::remove_all(dir);
}

TEST(Server, AVanishingClientIsCleanedUpAndOthersNeverNotice) {
  running_server rs;
  auto addr = rs.listen("tcp!127.0.0.1!0");
  rs.start();
  asio::io_context io;
  auto steady = connect_tcp(io, addr);
  attach(steady);
  {
    auto vanishing = connect_tcp(io, addr);
    attach(vanishing);
    send(vanishing, fcall{2, twalk{0, 1, {"events"}}});
    receive(vanishing);
    send(vanishing, fcall{3, topen{1, oread}});
    receive(vanishing);
    send(vanishing, fcall{4, tread{1, 0, 100}});  // parks in the tree
    ASSERT_TRUE(rs.eventually([&] { return rs.fs.parked_readers() == 1; }));
  }  // the socket closes with the read outstanding
  EXPECT_TRUE(rs.eventually([&] { return rs.fs.parked_readers() == 0 && rs.srv.connections() == 1; }));
  send(steady, fcall{5, tstat{0}});
  EXPECT_TRUE(std::holds_alternative<rstat>(receive(steady).msg));
}

TEST(Server, AFramingErrorClosesOnlyThatConnection) {
  running_server rs;
  auto addr = rs.listen("tcp!127.0.0.1!0");
  rs.start();
  asio::io_context io;
  auto good = connect_tcp(io, addr);
  attach(good);
  auto bad = connect_tcp(io, addr);
  attach(bad);
  std::vector<std::uint8_t> lie{0xff, 0xff, 0xff, 0x7f, 100, 0, 0};  // 2 GiB message
  asio::write(bad, asio::buffer(lie));
  std::array<char, 16> sink{};
  asio::error_code ec;
  bad.read_some(asio::buffer(sink), ec);
  EXPECT_EQ(ec, asio::error::eof);
  send(good, fcall{2, tstat{0}});
  EXPECT_TRUE(std::holds_alternative<rstat>(receive(good).msg));
}

TEST(Server, RepliesLeaveInCompletionOrder) {
  running_server rs;
  auto addr = rs.listen("tcp!127.0.0.1!0");
  rs.start();
  asio::io_context io;
  auto s = connect_tcp(io, addr);
  attach(s);
  send(s, fcall{2, twalk{0, 1, {"events"}}});
  receive(s);
  send(s, fcall{3, topen{1, oread}});
  receive(s);
  // The read parks; the requests behind it are answered first, then the read.
  send(s, fcall{4, tread{1, 0, 100}});
  send(s, fcall{5, twalk{0, 2, {}}});
  send(s, fcall{6, tcreate{2, "f", 0644, owrite}});
  std::vector<std::uint16_t> tags;
  for (int i = 0; i < 3; ++i) tags.push_back(receive(s).tag);
  EXPECT_EQ(tags, (std::vector<std::uint16_t>{5, 6, 4}));
}

TEST(Server, StopClosesEveryConnection) {
  running_server rs;
  auto addr = rs.listen("tcp!127.0.0.1!0");
  rs.start();
  asio::io_context io;
  std::vector<asio::ip::tcp::socket> socks;
  for (int i = 0; i < 20; ++i) {
    socks.push_back(connect_tcp(io, addr));
    attach(socks.back());
  }
  ASSERT_TRUE(rs.eventually([&] { return rs.srv.connections() == 20; }));
  rs.on_io([&] {
    rs.srv.stop();
    return 0;
  });
  for (auto& s : socks) {
    std::array<char, 16> sink{};
    asio::error_code ec;
    s.read_some(asio::buffer(sink), ec);
    EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
  }
  EXPECT_EQ(rs.on_io([&] { return rs.srv.connections(); }), 0u);
}

}  // namespace
}  // namespace srv9p
