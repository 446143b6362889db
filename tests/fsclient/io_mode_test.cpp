// The 9P client's io mode (fsclient/client.hpp): connections on a given io_context with no
// thread of their own. Against a real galaxy-ramfs process and, for peers that misbehave
// (never answer Tversion, stop reading), small servers of the test's own on real sockets.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <future>
#include <thread>

#include "fsclient/client.hpp"
#include "tests/fsclient/ramfs_server.hpp"

namespace {

using namespace std::chrono_literals;
using fsclient::client;
using fsclient_test::ramfs_process;

constexpr std::uint64_t big_bytes = 3'000'000;

// An io_context run by one thread of the test, as galaxy-sched runs its own.
struct io_thread {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  std::thread t{[this] { io.run(); }};
  ~io_thread() {
    work.reset();
    io.stop();
    t.join();
  }
  // Runs f on the io thread and waits for its result.
  template <class F>
  auto on_io(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto fut = task.get_future();
    asio::post(io, [&task] { task(); });
    return fut.get();
  }
};

fsclient::result<std::unique_ptr<client>> dial_io(asio::io_context& io, const std::string& addr,
                                                  client::options opts = {}) {
  std::promise<fsclient::result<std::unique_ptr<client>>> p;
  auto f = p.get_future();
  client::async_dial(io, addr, std::move(opts), [&p](fsclient::result<std::unique_ptr<client>> c) {
    p.set_value(std::move(c));
  });
  return f.get();
}

class IoMode : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ramfs_process;
    if (auto e = server_->start(big_bytes); !e.empty()) {
      delete server_;
      server_ = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  static ramfs_process* server_;
};
ramfs_process* IoMode::server_ = nullptr;

TEST_F(IoMode, BlockingCallsWorkFromOtherThreadsAndFailAtOnceOnTheIoThread) {
  io_thread t;
  for (const auto& addr : {server_->tcp, server_->unix_sock}) {
    auto c = dial_io(t.io, addr);
    ASSERT_TRUE(c) << addr << ": " << c.error();
    EXPECT_TRUE((*c)->io_mode());
    // From this thread (as galaxy-sched's result-copy pool calls them): they work, and a
    // file of 3 MB comes back whole through many async reads.
    auto root = (*c)->attach("glenda");
    ASSERT_TRUE(root) << root.error();
    auto big = (*c)->read_file(*root, "big");
    ASSERT_TRUE(big) << big.error();
    EXPECT_EQ(big->size(), big_bytes);
    // Several threads at once share the connection.
    std::vector<std::thread> ts;
    std::atomic<int> ok{0};
    for (int i = 0; i < 4; ++i) {
      ts.emplace_back([&] {
        for (int k = 0; k < 50; ++k) ok += (*c)->stat_path(*root, "big").has_value() ? 1 : 0;
      });
    }
    for (auto& th : ts) th.join();
    EXPECT_EQ(ok.load(), 200);
    // On the io thread a blocking call would wait for the thread that must answer it: it
    // fails at once; send() works there and its callback runs there.
    client& cl = **c;
    auto on_io = t.on_io([&] { return cl.stat(*root); });
    ASSERT_FALSE(on_io);
    EXPECT_NE(on_io.error().find("blocking call"), std::string::npos) << on_io.error();
    std::promise<bool> where;
    t.on_io([&] {
      cl.send(srv9p::tstat{*root}, [&](client::reply r) {
        where.set_value(r.has_value() && t.io.get_executor().running_in_this_thread());
      });
      return 0;
    });
    EXPECT_TRUE(where.get_future().get());
    // async_attach, as the scheduler's links attach.
    std::promise<fsclient::result<std::uint32_t>> att;
    cl.async_attach("glenda", "", [&](fsclient::result<std::uint32_t> r) { att.set_value(r); });
    auto r2 = att.get_future().get();
    ASSERT_TRUE(r2) << r2.error();
    EXPECT_TRUE(cl.read_file(*r2, "big").has_value());
    // Destroyed on this thread while io runs: later sends fail, nothing hangs.
    c->reset();
  }
}

TEST_F(IoMode, AdoptTakesAConnectedSocketWithTheCallersBinding) {
  io_thread t;
  asio::io_context local;
  auto port = server_->tcp.substr(server_->tcp.rfind('!') + 1);
  asio::ip::tcp::socket s(local);
  s.connect({asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(std::stoi(port))});
  int fd = s.release();
  std::promise<fsclient::result<std::unique_ptr<client>>> p;
  client::adopt(t.io, fd, "galaxy-9p joined!n7", {}, [&p](fsclient::result<std::unique_ptr<client>> c) {
    p.set_value(std::move(c));
  });
  auto c = p.get_future().get();
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ((*c)->binding(), "galaxy-9p joined!n7");
  auto root = (*c)->attach("glenda");
  ASSERT_TRUE(root) << root.error();
  EXPECT_EQ((*c)->read_file(*root, "big").value_or("").size(), big_bytes);

  // Not a socket: an error, and the descriptor is taken (closed).
  int pfd[2];
  ASSERT_EQ(::pipe(pfd), 0);
  std::promise<fsclient::result<std::unique_ptr<client>>> p2;
  client::adopt(t.io, pfd[0], "x", {}, [&p2](fsclient::result<std::unique_ptr<client>> c) { p2.set_value(std::move(c)); });
  auto bad = p2.get_future().get();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("not a connected stream socket"), std::string::npos) << bad.error();
  ::close(pfd[1]);
}

// A peer that accepts and then says nothing: the dial gives up after version_timeout_ms.
TEST(IoModeFaults, ADialWithoutAnAnswerToTversionTimesOut) {
  io_thread t;
  asio::io_context local;
  asio::ip::tcp::acceptor acc(local, {asio::ip::make_address("127.0.0.1"), 0});
  auto addr = "tcp!127.0.0.1!" + std::to_string(acc.local_endpoint().port());
  client::options o;
  o.version_timeout_ms = 300;
  auto c = dial_io(t.io, addr, o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), "no answer to Tversion");
  acc.close();
  auto refused = dial_io(t.io, addr, o);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().find("dial " + addr + ": "), std::string::npos) << refused.error();
}

// A server that answers Tversion and then either reads and discards everything or stops
// reading altogether (a stopped process, a saturated link).
struct fake_server {
  asio::io_context io;
  asio::ip::tcp::acceptor acc{io, {asio::ip::make_address("127.0.0.1"), 0}};
  std::thread t;
  std::promise<void> release;
  std::string addr() { return "tcp!127.0.0.1!" + std::to_string(acc.local_endpoint().port()); }
  explicit fake_server(bool reads) {
    if (!reads) {
      int small = 4096;  // a small receive buffer, so the stall shows sooner
      ::setsockopt(acc.native_handle(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    }
    t = std::thread([this, reads] {
      asio::ip::tcp::socket s(io);
      acc.accept(s);
      std::uint8_t hdr[4];
      asio::read(s, asio::buffer(hdr));
      std::vector<std::uint8_t> rest(srv9p::peek_size(hdr) - 4);
      asio::read(s, asio::buffer(rest));
      auto rv = srv9p::encode(srv9p::fcall{srv9p::notag, srv9p::rversion{65536, "9P2000"}});
      asio::write(s, asio::buffer(rv));
      if (reads) {
        std::vector<char> buf(1 << 16);
        asio::error_code ec;
        while (!ec) s.read_some(asio::buffer(buf), ec);
      } else {
        release.get_future().wait();
      }
    });
  }
  ~fake_server() {
    try {
      release.set_value();
    } catch (...) {
    }
    t.join();
  }
};

// Sends 60 kB Twrites from the io thread, paced by a timer (so a reading peer keeps up),
// until `bytes` went out or the connection closed; the io thread is never blocked: every
// tick of the timer runs. Returns the ticks run.
int pour(io_thread& t, client& c, std::size_t bytes) {
  std::promise<int> done;
  auto ticks = std::make_shared<int>(0);
  auto sent = std::make_shared<std::size_t>(0);
  auto timer = std::make_shared<asio::steady_timer>(t.io);
  auto step = std::make_shared<std::function<void()>>();
  *step = [&, ticks, sent, timer, step] {
    ++*ticks;
    if (!c.connected() || *sent >= bytes) {
      done.set_value(*ticks);
      *step = nullptr;  // breaks the cycle
      return;
    }
    for (int i = 0; i < 4; ++i) {
      c.send(srv9p::twrite{0, 0, std::string(60000, 'x')}, [](client::reply) {});
      *sent += 60000;
    }
    timer->expires_after(1ms);
    timer->async_wait([step](const asio::error_code&) {
      if (*step) (*step)();
    });
  };
  asio::post(t.io, [step] { (*step)(); });
  return done.get_future().get();
}

TEST(IoModeFaults, AServerThatStopsReadingNeverBlocksTheIoThreadAndIsCutOffAtTheBound) {
  std::vector<std::string> logged;
  std::mutex log_mu;
  client::options o;
  o.max_queue_bytes = 1 << 20;
  o.log = [&](std::string_view l) {
    std::lock_guard lk(log_mu);
    logged.emplace_back(l);
  };
  {
    // A reader keeps up: 12 MB go through a 1 MiB queue and the connection stays.
    io_thread t;
    fake_server srv(true);
    auto c = dial_io(t.io, srv.addr(), o);
    ASSERT_TRUE(c) << c.error();
    pour(t, **c, 12'000'000);
    EXPECT_TRUE((*c)->connected()) << (*c)->hangup_reason();
  }
  EXPECT_TRUE(logged.empty());
  {
    // A server that stopped reading: once the kernel's buffers are full the queue grows to
    // its bound and the connection is closed, with the reason; the io thread kept running.
    io_thread t;
    fake_server srv(false);
    auto c = dial_io(t.io, srv.addr(), o);
    ASSERT_TRUE(c) << c.error();
    pour(t, **c, 200'000'000);
    EXPECT_FALSE((*c)->connected());
    EXPECT_NE((*c)->hangup_reason().find("outbound queue over 1048576 bytes"), std::string::npos)
        << (*c)->hangup_reason();
    // A blocking call from another thread fails at once rather than waiting.
    auto r = (*c)->rpc(srv9p::tclunk{0});
    EXPECT_FALSE(r);
  }
  std::lock_guard lk(log_mu);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_NE(logged[0].find("the server is not reading"), std::string::npos) << logged[0];
}

}  // namespace
