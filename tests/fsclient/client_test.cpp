// The 9P client against real servers: a galaxy-ramfs process (TCP and Unix socket) for
// most tests, an in-process srv9p::server where a test needs to set the server's msize or
// look at its state, and small fake servers for peers that do not speak 9P2000.
// Each test works in files of its own, so the shared server's tree does not couple them.
#include "fsclient/client.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "srv9p/errors.hpp"
#include "tests/fsclient/ramfs_server.hpp"

namespace {

using namespace std::chrono_literals;
using fsclient::client;
using fsclient_test::ramfs_inproc;
using fsclient_test::ramfs_process;
using ::testing::HasSubstr;

constexpr std::uint64_t big_bytes = 3'000'000;

char big_byte(std::uint64_t o) { return static_cast<char>('a' + o % 26); }

// A one-shot flag a callback can set and a test can wait for.
struct latch {
  std::mutex m;
  std::condition_variable cv;
  bool set = false;
  client::reply r;
  void put(client::reply x) {
    std::lock_guard lk(m);
    r = std::move(x);
    set = true;
    cv.notify_all();
  }
  bool wait(std::chrono::milliseconds t) {
    std::unique_lock lk(m);
    return cv.wait_for(lk, t, [this] { return set; });
  }
};

class ClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ramfs_process;
    if (auto e = server_->start(big_bytes); !e.empty()) {
      delete server_;
      server_ = nullptr;
      FAIL() << e;
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    auto c = client::dial(server_->tcp);
    ASSERT_TRUE(c) << c.error();
    c_ = std::move(*c);
    auto r = c_->attach("glenda");
    ASSERT_TRUE(r) << r.error();
    root_ = *r;
  }

  // Creates name in the root with data; the test's own file.
  void make_file(const std::string& name, std::string_view data) {
    auto d = c_->walk(root_, "");
    ASSERT_TRUE(d) << d.error();
    auto cr = c_->create(*d, name, 0664, srv9p::owrite);
    ASSERT_TRUE(cr) << cr.error();
    if (!data.empty()) {
      auto w = c_->write(*d, 0, data);
      ASSERT_TRUE(w) << w.error();
      ASSERT_EQ(*w, data.size());
    }
    ASSERT_TRUE(c_->clunk(*d));
  }

  static ramfs_process* server_;
  std::unique_ptr<client> c_;
  std::uint32_t root_ = srv9p::nofid;
};
ramfs_process* ClientTest::server_ = nullptr;

TEST_F(ClientTest, DialTcpAndAttach) {
  EXPECT_TRUE(c_->connected());
  auto d = c_->stat(root_);
  ASSERT_TRUE(d) << d.error();
  EXPECT_TRUE(d->mode & srv9p::dmdir);
  EXPECT_EQ(d->qid.type & srv9p::qtdir, srv9p::qtdir);
}

TEST_F(ClientTest, DialUnixAndAttach) {
  auto c = client::dial(server_->unix_sock);
  ASSERT_TRUE(c) << c.error();
  auto root = (*c)->attach("glenda");
  ASSERT_TRUE(root) << root.error();
  auto names = (*c)->list_dir(*root, "/");
  ASSERT_TRUE(names) << names.error();
  bool events = false;
  for (const auto& d : *names) events |= d.name == "events";
  EXPECT_TRUE(events);
  // The bare-path form of the same socket.
  auto path = server_->unix_sock.substr(std::string_view("unix!").size());
  auto c2 = client::dial(path);
  ASSERT_TRUE(c2) << c2.error();
}

TEST_F(ClientTest, DialErrors) {
  auto bad = client::dial("tcp!127.0.0.1!nine");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), "bad dial string 'tcp!127.0.0.1!nine': port must be a number 0-65535");

  testutil::temp_dir t;
  auto missing = client::dial("unix!" + t.file("none"));
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error(), HasSubstr("dial unix!" + t.file("none") + ": "));

  // A port nobody listens on: bind one, note it, close it.
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  auto port = a.local_endpoint().port();
  a.close();
  auto refused = client::dial("127.0.0.1:" + std::to_string(port));
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error(), HasSubstr("Connection refused"));

  auto star = client::dial("tcp!*!564");
  ASSERT_FALSE(star);
  EXPECT_THAT(star.error(), HasSubstr("names no host"));
}

// A fake server on 127.0.0.1 that reads the Tversion and answers with reply (or nothing).
class fake_server {
 public:
  explicit fake_server(std::optional<srv9p::message> reply)
      : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this, reply = std::move(reply)] {
      asio::ip::tcp::socket s(io_);
      asio::error_code ec;
      acceptor_.accept(s, ec);
      if (ec) return;
      std::uint8_t size[4];
      asio::read(s, asio::buffer(size), ec);
      std::vector<std::uint8_t> rest(srv9p::peek_size(size) - 4);
      asio::read(s, asio::buffer(rest), ec);
      if (reply) asio::write(s, asio::buffer(srv9p::encode(srv9p::fcall{srv9p::notag, *reply})), ec);
      // Hold the connection until the client goes away.
      std::uint8_t b;
      asio::read(s, asio::buffer(&b, 1), ec);
    });
  }
  ~fake_server() {
    asio::error_code ec;
    acceptor_.close(ec);
    thread_.join();
  }
  std::string dial() const { return "tcp!127.0.0.1!" + std::to_string(acceptor_.local_endpoint().port()); }

 private:
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
};

TEST(ClientVersion, ServerOfAnotherVersion) {
  fake_server f(srv9p::rversion{8192, "unknown"});
  auto c = client::dial(f.dial());
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), "server speaks 'unknown', not 9P2000");
}

TEST(ClientVersion, ServerThatAnswersRerror) {
  fake_server f(srv9p::rerror{"go away"});
  auto c = client::dial(f.dial());
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), "go away");
}

TEST(ClientVersion, ServerThatSaysNothing) {
  fake_server f(std::nullopt);
  auto start = std::chrono::steady_clock::now();
  auto c = client::dial(f.dial(), {.version_timeout_ms = 300});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), "no answer to Tversion");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(ClientTest, MsizeNegotiation) {
  // The server's maximum is the default's: the client's request stands.
  EXPECT_EQ(c_->msize(), srv9p::max_msize);
  EXPECT_EQ(c_->iounit(), srv9p::max_msize - srv9p::iohdrsz);

  // A smaller request is honoured, and read() clamps to the resulting iounit.
  auto c = client::dial(server_->tcp, {.msize = 4096 + srv9p::iohdrsz});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ((*c)->msize(), 4096 + srv9p::iohdrsz);
  EXPECT_EQ((*c)->iounit(), 4096u);
  auto root = (*c)->attach("glenda");
  ASSERT_TRUE(root);
  auto f = (*c)->walk(*root, "big");
  ASSERT_TRUE(f) << f.error();
  ASSERT_TRUE((*c)->open(*f, srv9p::oread));
  auto data = (*c)->read(*f, 10, 1 << 20);
  ASSERT_TRUE(data) << data.error();
  ASSERT_EQ(data->size(), 4096u);
  EXPECT_EQ((*data)[0], big_byte(10));
  EXPECT_EQ(data->back(), big_byte(10 + 4095));
}

TEST(ClientInproc, AcceptsTheServersSmallerMsize) {
  ramfs_inproc s({}, {.max_msize = 8192 + srv9p::iohdrsz});
  auto addr = s.listen("tcp!127.0.0.1!0");
  ASSERT_TRUE(addr) << addr.error();
  s.start();
  auto c = client::dial(*addr);  // asks for max_msize
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ((*c)->msize(), 8192 + srv9p::iohdrsz);
  auto root = (*c)->attach("glenda");
  ASSERT_TRUE(root) << root.error();
  // Writes bigger than iounit go in pieces the server accepts.
  std::string data(100'000, 'x');
  for (std::size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>('0' + i % 10);
  auto d = (*c)->walk(*root, "");
  ASSERT_TRUE(d);
  ASSERT_TRUE((*c)->create(*d, "pieces", 0644, srv9p::ordwr));
  auto w = (*c)->write(*d, 0, data);
  ASSERT_TRUE(w) << w.error();
  EXPECT_EQ(*w, data.size());
  ASSERT_TRUE((*c)->clunk(*d));
  auto back = (*c)->read_file(*root, "pieces");
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(*back, data);
}

TEST_F(ClientTest, CreateWriteReadStatWstatRemove) {
  auto d = c_->walk(root_, "");
  ASSERT_TRUE(d) << d.error();
  auto cr = c_->create(*d, "crud", 0640, srv9p::ordwr);
  ASSERT_TRUE(cr) << cr.error();
  EXPECT_EQ(cr->qid.type, srv9p::qtfile);
  auto w = c_->write(*d, 0, "hello, world\n");
  ASSERT_TRUE(w) << w.error();
  EXPECT_EQ(*w, 13u);
  auto r = c_->read(*d, 7, 100);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(*r, "world\n");
  auto eof = c_->read(*d, 13, 100);
  ASSERT_TRUE(eof);
  EXPECT_EQ(*eof, "");
  auto st = c_->stat(*d);
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->name, "crud");
  EXPECT_EQ(st->length, 13u);
  EXPECT_EQ(st->mode, 0640u);
  EXPECT_EQ(st->uid, "glenda");
  ASSERT_TRUE(c_->clunk(*d));

  // wstat: rename, then truncate.
  auto f = c_->walk(root_, "crud");
  ASSERT_TRUE(f) << f.error();
  auto keep = srv9p::dont_touch_dir();
  keep.name = "crud2";
  auto ws = c_->wstat(*f, keep);
  ASSERT_TRUE(ws) << ws.error();
  auto st2 = c_->stat_path(root_, "crud2");
  ASSERT_TRUE(st2) << st2.error();
  EXPECT_EQ(st2->length, 13u);
  auto trunc = srv9p::dont_touch_dir();
  trunc.length = 0;
  ASSERT_TRUE(c_->wstat(*f, trunc));
  EXPECT_EQ(c_->stat(*f)->length, 0u);

  ASSERT_TRUE(c_->remove(*f));
  auto gone = c_->walk(root_, "crud2");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error(), "'crud2': file does not exist");
}

TEST_F(ClientTest, WalkErrorsNameTheMissingElement) {
  auto d = c_->walk(root_, "");
  ASSERT_TRUE(d);
  ASSERT_TRUE(c_->create(*d, "wdir", srv9p::dmdir | 0775, srv9p::oread));
  ASSERT_TRUE(c_->clunk(*d));

  auto first = c_->walk(root_, "nope/x");
  ASSERT_FALSE(first);
  EXPECT_EQ(first.error(), "'nope': file does not exist");
  auto second = c_->walk(root_, "/wdir//x/y");
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error(), "'wdir/x': file does not exist");
  auto file = c_->walk(root_, "events/x");
  ASSERT_FALSE(file);
  EXPECT_EQ(file.error(), "'events/x': walk in non-directory");
  auto clone = c_->walk(root_, "/");
  ASSERT_TRUE(clone) << clone.error();
  EXPECT_NE(*clone, root_);
  EXPECT_TRUE(c_->clunk(*clone));
}

TEST_F(ClientTest, WalkDeeperThanSixteenNames) {
  std::string path = "deep";
  auto d = c_->walk(root_, "");
  ASSERT_TRUE(d);
  ASSERT_TRUE(c_->create(*d, "deep", srv9p::dmdir | 0775, srv9p::oread));
  ASSERT_TRUE(c_->clunk(*d));
  for (int i = 1; i < 40; i++) {
    auto p = c_->walk(root_, path);
    ASSERT_TRUE(p) << p.error();
    ASSERT_TRUE(c_->create(*p, "d" + std::to_string(i), srv9p::dmdir | 0775, srv9p::oread));
    ASSERT_TRUE(c_->clunk(*p));
    path += "/d" + std::to_string(i);
  }
  auto bottom = c_->walk(root_, path);
  ASSERT_TRUE(bottom) << bottom.error();
  auto st = c_->stat(*bottom);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->name, "d39");
  ASSERT_TRUE(c_->clunk(*bottom));
  // The whole-file helpers fall back to walk() for long paths.
  EXPECT_FALSE(c_->write_file(root_, "deep", "x"));  // a directory
  auto ls = c_->list_dir(root_, path);
  ASSERT_TRUE(ls) << ls.error();
  EXPECT_TRUE(ls->empty());

  // Missing in the third chunk (elements 33..48): the message names up to it.
  auto missing = c_->walk(root_, path.substr(0, path.find("/d35")) + "/nope/d36");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error(), HasSubstr("/d34/nope': file does not exist"));
  EXPECT_TRUE(missing.error().starts_with("'deep/d1/d2/"));
  // ... and in the second chunk, the first element of a chunk (index 16).
  auto at16 = c_->walk(root_, path.substr(0, path.find("/d16")) + "/nope");
  ASSERT_FALSE(at16);
  EXPECT_THAT(at16.error(), HasSubstr("/d15/nope': file does not exist"));
}

TEST_F(ClientTest, ErrorsCarryTheServersText) {
  make_file("etext", "x");
  auto d = c_->walk(root_, "");
  ASSERT_TRUE(d);
  auto dup = c_->create(*d, "etext", 0644, srv9p::owrite);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error(), srv9p::err::exists);
  ASSERT_TRUE(c_->clunk(*d));

  auto ev = c_->walk(root_, "events");
  ASSERT_TRUE(ev);
  auto wr = c_->open(*ev, srv9p::owrite);
  ASSERT_FALSE(wr);
  EXPECT_EQ(wr.error(), srv9p::err::perm);
  auto notopen = c_->read(*ev, 0, 10);
  ASSERT_FALSE(notopen);
  EXPECT_EQ(notopen.error(), srv9p::err::not_open);
  ASSERT_TRUE(c_->clunk(*ev));

  auto unknown = c_->clunk(12345);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error(), srv9p::err::unknown_fid);

  auto p = c_->walk(root_, "");
  ASSERT_TRUE(c_->create(*p, "full", srv9p::dmdir | 0775, srv9p::oread));
  ASSERT_TRUE(c_->clunk(*p));
  EXPECT_FALSE(c_->write_file(root_, "full/x", ""));  // no such file
  auto q = c_->walk(root_, "full");
  ASSERT_TRUE(c_->create(*q, "x", 0644, srv9p::owrite));
  ASSERT_TRUE(c_->clunk(*q));
  auto full = c_->walk(root_, "full");
  auto rm = c_->remove(*full);
  ASSERT_FALSE(rm);
  EXPECT_EQ(rm.error(), srv9p::err::not_empty);

  auto helper = c_->read_file(root_, "full/nope");
  ASSERT_FALSE(helper);
  EXPECT_EQ(helper.error(), "'full/nope': file does not exist");
  auto st = c_->stat_path(root_, "nope");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error(), "'nope': file does not exist");
}

TEST_F(ClientTest, WholeFileHelpers) {
  make_file("whole", "");
  std::string data(300'000, '\0');
  for (std::size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>(i * 7);
  auto w = c_->write_file(root_, "whole", data);
  ASSERT_TRUE(w) << w.error();
  auto r = c_->read_file(root_, "/whole");
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(*r, data);
  // OTRUNC: a shorter write leaves only the new bytes.
  ASSERT_TRUE(c_->write_file(root_, "whole", "short"));
  EXPECT_EQ(c_->read_file(root_, "whole").value_or("?"), "short");

  auto st = c_->stat_path(root_, "whole");
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->length, 5u);
  EXPECT_EQ(st->name, "whole");

  auto ls = c_->list_dir(root_, "");
  ASSERT_TRUE(ls) << ls.error();
  std::set<std::string> names;
  for (const auto& d : *ls) names.insert(d.name);
  EXPECT_TRUE(names.contains("whole"));
  EXPECT_TRUE(names.contains("events"));
  EXPECT_TRUE(names.contains("big"));

  // stream_file delivers pieces in order and stops when the sink says so.
  std::string got;
  int pieces = 0;
  auto s = c_->stream_file(root_, "big", [&](std::string_view piece) {
    got.append(piece);
    return ++pieces < 2;
  });
  ASSERT_TRUE(s) << s.error();
  EXPECT_EQ(pieces, 2);
  ASSERT_EQ(got.size(), 2 * std::size_t{c_->iounit()});
  for (std::size_t i = 0; i < got.size(); i += 4099) ASSERT_EQ(got[i], big_byte(i));

  auto all = c_->read_file(root_, "big");
  ASSERT_TRUE(all) << all.error();
  ASSERT_EQ(all->size(), big_bytes);
  for (std::size_t i = 0; i < all->size(); i += 1009) ASSERT_EQ((*all)[i], big_byte(i));
}

TEST_F(ClientTest, EightThreadsShareOneClient) {
  constexpr int threads = 8, ops = 500;
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; t++) {
    ts.emplace_back([&, t] {
      std::string name = "thr" + std::to_string(t);
      auto d = c_->walk(root_, "");
      if (!d || !c_->create(*d, name, 0644, srv9p::owrite) || !c_->clunk(*d)) {
        failures++;
        return;
      }
      for (int i = 0; i < ops; i++) {
        std::string want = name + ":" + std::to_string(i) + std::string(static_cast<std::size_t>(i % 50), 'z');
        bool ok = true;
        switch (i % 4) {
          case 0: ok = c_->write_file(root_, name, want).has_value(); break;
          case 1: {
            auto st = c_->stat_path(root_, name);
            ok = st && st->name == name;
            break;
          }
          case 2: ok = c_->list_dir(root_, "").has_value(); break;
          case 3: {
            // The file holds what this thread wrote last (at i - 3).
            auto r = c_->read_file(root_, name);
            std::string last = name + ":" + std::to_string(i - 3) + std::string(static_cast<std::size_t>((i - 3) % 50), 'z');
            ok = r && *r == last;
            break;
          }
        }
        if (!ok) failures++;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(ClientTest, PipelinedBatchesThirtyTwoInFlight) {
  constexpr int groups = 3000, in_flight = 32;
  std::mutex m;
  std::condition_variable cv;
  int outstanding = 0, done = 0, bad = 0;
  std::string first_error;
  for (int g = 0; g < groups; g++) {
    {
      std::unique_lock lk(m);
      cv.wait(lk, [&] { return outstanding < in_flight; });
      outstanding++;
    }
    auto fid = c_->alloc_fid();
    std::uint64_t off = static_cast<std::uint64_t>(g) * 37;
    auto check = [&](client::reply r) {
      std::lock_guard lk(m);
      if (!r) {
        bad++;
        if (first_error.empty()) first_error = r.error();
      }
    };
    auto last = [&, fid, off](client::reply r) {
      std::lock_guard lk(m);
      if (!r) {
        bad++;
      } else if (auto* rr = std::get_if<srv9p::rread>(&*r); rr == nullptr || rr->data.size() != 100 ||
                                                            rr->data[0] != big_byte(off)) {
        bad++;
      }
      (void)fid;
    };
    auto clunked = [&, fid](client::reply r) {
      c_->release_fid(fid);
      std::lock_guard lk(m);
      if (!r) bad++;
      outstanding--;
      done++;
      cv.notify_all();
    };
    std::vector<std::pair<srv9p::message, client::callback>> batch;
    batch.emplace_back(srv9p::twalk{root_, fid, {"big"}}, check);
    batch.emplace_back(srv9p::topen{fid, srv9p::oread}, check);
    batch.emplace_back(srv9p::tread{fid, off, 100}, last);
    batch.emplace_back(srv9p::tclunk{fid}, clunked);
    auto tags = c_->send_batch(std::move(batch));
    ASSERT_EQ(tags.size(), 4u);
    for (auto t : tags) ASSERT_NE(t, srv9p::notag);
  }
  std::unique_lock lk(m);
  ASSERT_TRUE(cv.wait_for(lk, 30s, [&] { return done == groups; }));
  EXPECT_EQ(bad, 0) << first_error;

  // The blocking batch form returns replies in request order.
  auto fid = c_->alloc_fid();
  auto rs = c_->rpc_batch({srv9p::twalk{root_, fid, {"big"}}, srv9p::topen{fid, srv9p::oread},
                           srv9p::tread{fid, 26, 3}, srv9p::tclunk{fid}});
  c_->release_fid(fid);
  ASSERT_EQ(rs.size(), 4u);
  ASSERT_TRUE(rs[2]);
  EXPECT_EQ(std::get<srv9p::rread>(*rs[2]).data, "abc");
  EXPECT_TRUE(std::holds_alternative<srv9p::rclunk>(*rs[3]));
}

// Opens /events on a fresh fid.
std::uint32_t open_events(client& c, std::uint32_t root) {
  auto f = c.walk(root, "events");
  EXPECT_TRUE(f) << f.error();
  auto o = c.open(*f, srv9p::oread);
  EXPECT_TRUE(o) << o.error();
  return *f;
}

TEST_F(ClientTest, FlushInterruptsABlockedRead) {
  auto ev = open_events(*c_, root_);
  for (int round = 0; round < 50; round++) {
    latch l;
    auto tag = c_->send(srv9p::tread{ev, 0, 1024}, [&l](client::reply r) { l.put(std::move(r)); });
    ASSERT_NE(tag, srv9p::notag);
    EXPECT_FALSE(l.wait(round == 0 ? 200ms : 1ms)) << "a read of /events returned with nothing changing";
    c_->flush(tag);
    ASSERT_TRUE(l.wait(5s)) << "flush did not end the read";
    ASSERT_FALSE(l.r);
    EXPECT_EQ(l.r.error(), srv9p::err::interrupted);
  }
  // The connection is still good, and the events file still works: a change wakes a read.
  latch l;
  c_->send(srv9p::tread{ev, 0, 1024}, [&l](client::reply r) { l.put(std::move(r)); });
  make_file("flushed", "");
  ASSERT_TRUE(l.wait(5s));
  ASSERT_TRUE(l.r) << l.r.error();
  EXPECT_THAT(std::get<srv9p::rread>(*l.r).data, HasSubstr("create flushed"));

  // Flushing a request that has already been answered changes nothing.
  latch done;
  auto tag = c_->send(srv9p::tstat{root_}, [&done](client::reply r) { done.put(std::move(r)); });
  ASSERT_TRUE(done.wait(5s));
  c_->flush(tag);
  EXPECT_TRUE(done.r);
  EXPECT_TRUE(c_->stat(root_));
  ASSERT_TRUE(c_->clunk(ev));
}

// A flush by ticket ends its own request, and never a later one that reuses the tag.
TEST_F(ClientTest, FlushByTicketHitsOnlyItsOwnRequest) {
  auto ev = open_events(*c_, root_);
  latch first;
  auto t1 = c_->send_ticket(srv9p::tread{ev, 0, 1024}, [&first](client::reply r) { first.put(std::move(r)); });
  ASSERT_NE(t1.tag, srv9p::notag);
  c_->flush(t1);
  ASSERT_TRUE(first.wait(5s)) << "flush by ticket did not end the read";
  ASSERT_FALSE(first.r);
  EXPECT_EQ(first.r.error(), srv9p::err::interrupted);
  // Run requests until one gets t1's tag again (the tag is free once Rflush came), then
  // flush the old ticket: the new request must not be touched.
  client::ticket t2;
  std::unique_ptr<latch> second;
  for (int i = 0; i < 1000 && t2.tag != t1.tag; i++) {
    second = std::make_unique<latch>();
    latch* l = second.get();
    t2 = c_->send_ticket(srv9p::tread{ev, 0, 1024}, [l](client::reply r) { l->put(std::move(r)); });
    if (t2.tag != t1.tag) {
      c_->flush(t2);
      ASSERT_TRUE(l->wait(5s));
    }
  }
  ASSERT_EQ(t2.tag, t1.tag) << "the tag was never reused";
  EXPECT_NE(t2.use, t1.use);
  c_->flush(t1);  // stale: a no-op
  make_file("after-stale-flush", "");
  ASSERT_TRUE(second->wait(5s));
  ASSERT_TRUE(second->r) << second->r.error();
  EXPECT_THAT(std::get<srv9p::rread>(*second->r).data, HasSubstr("create after-stale-flush"));
  ASSERT_TRUE(c_->clunk(ev));
}

TEST_F(ClientTest, CloseFailsWaitingCallsPromptly) {
  auto ev = open_events(*c_, root_);
  latch async;
  c_->send(srv9p::tread{ev, 0, 1024}, [&async](client::reply r) { async.put(std::move(r)); });
  std::string blocking_error;
  std::thread t([&] {
    auto r = c_->read(ev, 0, 1024);
    blocking_error = r ? "returned data" : r.error();
  });
  std::this_thread::sleep_for(100ms);
  auto start = std::chrono::steady_clock::now();
  c_->close();
  ASSERT_TRUE(async.wait(2s));
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  ASSERT_FALSE(async.r);
  EXPECT_EQ(async.r.error(), srv9p::err::hungup);
  EXPECT_EQ(blocking_error, srv9p::err::hungup);
  EXPECT_FALSE(c_->connected());

  // Later calls fail at once; send() calls back on this thread.
  auto st = c_->stat(root_);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error(), srv9p::err::hungup);
  bool called = false;
  auto tag = c_->send(srv9p::tstat{root_}, [&called](client::reply r) {
    called = true;
    EXPECT_EQ(r.error(), srv9p::err::hungup);
  });
  EXPECT_TRUE(called);
  EXPECT_EQ(tag, srv9p::notag);
  c_->close();  // idempotent
}

TEST_F(ClientTest, DestructorFailsPendingCallbacks) {
  auto ev = open_events(*c_, root_);
  latch l;
  c_->send(srv9p::tread{ev, 0, 1024}, [&l](client::reply r) { l.put(std::move(r)); });
  c_.reset();
  ASSERT_TRUE(l.wait(0ms));
  EXPECT_EQ(l.r.error(), srv9p::err::hungup);
}

TEST(ClientServerDeath, CallsFailPromptlyWhenTheServerIsKilled) {
  ramfs_process s;
  ASSERT_EQ(s.start(), "");
  auto c = client::dial(s.tcp);
  ASSERT_TRUE(c) << c.error();
  auto root = (*c)->attach("glenda");
  ASSERT_TRUE(root);
  auto ev = open_events(**c, *root);
  latch l;
  (*c)->send(srv9p::tread{ev, 0, 1024}, [&l](client::reply r) { l.put(std::move(r)); });
  std::string blocking_error;
  std::thread t([&] {
    auto r = (*c)->read(ev, 0, 1024);
    blocking_error = r ? "returned data" : r.error();
  });
  std::this_thread::sleep_for(100ms);
  auto start = std::chrono::steady_clock::now();
  s.d.proc.signal(SIGKILL);
  ASSERT_TRUE(l.wait(3s)) << "the client did not notice the server's death";
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_EQ(l.r.error(), "connection closed");
  EXPECT_EQ(blocking_error, "connection closed");
  EXPECT_FALSE((*c)->connected());
  auto after = (*c)->read_file(*root, "big");
  ASSERT_FALSE(after);
  EXPECT_THAT(after.error(), HasSubstr("connection closed"));
}

TEST_F(ClientTest, BlockingCallFromACallbackIsRefused) {
  latch l;
  c_->send(srv9p::tstat{root_}, [&](client::reply) {
    auto r = c_->stat(root_);  // would wait for this very thread
    l.put(r ? client::reply(srv9p::rstat{*r}) : client::reply(std::unexpected(r.error())));
  });
  ASSERT_TRUE(l.wait(5s));
  ASSERT_FALSE(l.r);
  EXPECT_THAT(l.r.error(), HasSubstr("blocking call from a reply callback"));
}

// A server the test scripts message by message: it answers Tversion itself and hands
// every other T-message to the test, which replies (or not) as it likes. For the
// protocol corners a real server never shows: a late Rflush, a reply that races its
// flush, stray tags, garbage.
class scripted_server {
 public:
  scripted_server() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { serve(); });
  }
  ~scripted_server() {
    asio::error_code ec;
    acceptor_.close(ec);
    hang_up();
    thread_.join();
  }
  std::string dial() const { return "tcp!127.0.0.1!" + std::to_string(acceptor_.local_endpoint().port()); }

  // The next T-message the client sent, waiting at most timeout.
  std::optional<srv9p::fcall> next(std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lk(m_);
    if (!cv_.wait_for(lk, timeout, [this] { return !got_.empty(); })) return std::nullopt;
    auto f = std::move(got_.front());
    got_.erase(got_.begin());
    return f;
  }
  void reply(const srv9p::fcall& f) { send_bytes(srv9p::encode(f)); }
  void send_bytes(const std::vector<std::uint8_t>& b) {
    asio::error_code ec;
    asio::write(sock_, asio::buffer(b), ec);
  }
  void hang_up() {
    asio::error_code ec;
    sock_.shutdown(asio::socket_base::shutdown_both, ec);
  }

 private:
  void serve() {
    asio::error_code ec;
    acceptor_.accept(sock_, ec);
    if (ec) return;
    for (;;) {
      std::uint8_t size[4];
      asio::read(sock_, asio::buffer(size), ec);
      if (ec) return;
      std::vector<std::uint8_t> msg(size, size + 4);
      msg.resize(srv9p::peek_size(size));
      asio::read(sock_, asio::buffer(msg.data() + 4, msg.size() - 4), ec);
      if (ec) return;
      auto f = srv9p::decode(msg);
      if (!f) return;
      if (auto* v = std::get_if<srv9p::tversion>(&f->msg)) {
        reply({f->tag, srv9p::rversion{v->msize, "9P2000"}});
        continue;
      }
      std::lock_guard lk(m_);
      got_.push_back(std::move(*f));
      cv_.notify_all();
    }
  }

  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  asio::ip::tcp::socket sock_{io_};
  std::thread thread_;
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<srv9p::fcall> got_;
};

class ScriptedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = client::dial(s_.dial());
    ASSERT_TRUE(c) << c.error();
    c_ = std::move(*c);
  }
  // Sends a Tread whose reply lands in l; returns its tag as the server saw it.
  std::uint16_t pending_read(latch& l) {
    auto tag = c_->send(srv9p::tread{1, 0, 10}, [&l](client::reply r) { l.put(std::move(r)); });
    auto seen = s_.next();
    EXPECT_TRUE(seen && std::holds_alternative<srv9p::tread>(seen->msg));
    EXPECT_EQ(seen->tag, tag);
    return tag;
  }
  // The Tflush the server receives next; returns its tag.
  std::uint16_t expect_flush(std::uint16_t oldtag) {
    auto f = s_.next();
    EXPECT_TRUE(f && std::holds_alternative<srv9p::tflush>(f->msg));
    if (!f || !std::holds_alternative<srv9p::tflush>(f->msg)) return srv9p::notag;
    EXPECT_EQ(std::get<srv9p::tflush>(f->msg).oldtag, oldtag);
    return f->tag;
  }

  scripted_server s_;
  std::unique_ptr<client> c_;
};

TEST_F(ScriptedTest, FlushedTagIsNotReusedBeforeRflush) {
  latch l;
  auto tag = pending_read(l);
  c_->flush(tag);
  auto ftag = expect_flush(tag);
  EXPECT_NE(ftag, tag);
  EXPECT_NE(ftag, srv9p::notag);
  // Until Rflush comes, the old tag stays taken and its caller keeps waiting.
  std::vector<std::uint16_t> later;
  for (int i = 0; i < 20; i++) later.push_back(c_->send(srv9p::tstat{1}, [](client::reply) {}));
  for (int i = 0; i < 20; i++) {
    auto m = s_.next();
    ASSERT_TRUE(m);
    EXPECT_NE(m->tag, tag);
    EXPECT_NE(m->tag, ftag);
  }
  EXPECT_FALSE(l.wait(50ms));
  s_.reply({ftag, srv9p::rflush{}});
  ASSERT_TRUE(l.wait(5s));
  EXPECT_EQ(l.r.error(), srv9p::err::interrupted);
}

TEST_F(ScriptedTest, AReplyThatBeatsItsFlushIsDelivered) {
  latch l;
  auto tag = pending_read(l);
  c_->flush(tag);
  auto ftag = expect_flush(tag);
  s_.reply({tag, srv9p::rread{"early"}});
  s_.reply({ftag, srv9p::rflush{}});
  ASSERT_TRUE(l.wait(5s));
  ASSERT_TRUE(l.r) << l.r.error();
  EXPECT_EQ(std::get<srv9p::rread>(*l.r).data, "early");
  // Delivered exactly once: a later stat still works and the latch saw one reply.
  latch s;
  auto st = c_->send(srv9p::tstat{1}, [&s](client::reply r) { s.put(std::move(r)); });
  auto m = s_.next();
  ASSERT_TRUE(m);
  s_.reply({st, srv9p::rerror{"no"}});
  ASSERT_TRUE(s.wait(5s));
  EXPECT_EQ(s.r.error(), "no");
}

TEST_F(ScriptedTest, TwoFlushesOfOneTag) {
  latch l;
  auto tag = pending_read(l);
  c_->flush(tag);
  auto f1 = expect_flush(tag);
  c_->flush(tag);
  auto f2 = expect_flush(tag);
  EXPECT_NE(f1, f2);
  s_.reply({f1, srv9p::rflush{}});
  ASSERT_TRUE(l.wait(5s));
  EXPECT_EQ(l.r.error(), srv9p::err::interrupted);
  // The tag is still held for the second Rflush.
  for (int i = 0; i < 10; i++) {
    c_->send(srv9p::tstat{1}, [](client::reply) {});
    auto m = s_.next();
    ASSERT_TRUE(m);
    EXPECT_NE(m->tag, tag);
  }
  s_.reply({f2, srv9p::rflush{}});
}

TEST_F(ScriptedTest, StrayRepliesAreIgnored) {
  s_.reply({4321, srv9p::rstat{}});
  s_.reply({srv9p::notag, srv9p::rclunk{}});
  latch l;
  auto tag = c_->send(srv9p::tclunk{7}, [&l](client::reply r) { l.put(std::move(r)); });
  ASSERT_TRUE(s_.next());
  s_.reply({tag, srv9p::rclunk{}});
  ASSERT_TRUE(l.wait(5s));
  EXPECT_TRUE(l.r) << l.r.error();
  EXPECT_TRUE(c_->connected());
}

TEST_F(ScriptedTest, AMismatchedReplyIsAnError) {
  latch l;
  auto tag = c_->send(srv9p::tclunk{7}, [&l](client::reply r) { l.put(std::move(r)); });
  ASSERT_TRUE(s_.next());
  s_.reply({tag, srv9p::rstat{}});
  ASSERT_TRUE(l.wait(5s));
  ASSERT_FALSE(l.r);
  EXPECT_EQ(l.r.error(), "9P protocol botch: Tclunk answered by Rstat");
}

TEST_F(ScriptedTest, GarbageFromTheServerHangsUp) {
  latch l;
  c_->send(srv9p::tclunk{7}, [&l](client::reply r) { l.put(std::move(r)); });
  ASSERT_TRUE(s_.next());
  s_.send_bytes({3, 0, 0, 0, 200, 1, 0});  // a size smaller than a header
  ASSERT_TRUE(l.wait(5s));
  EXPECT_EQ(l.r.error(), srv9p::err::hungup);
  EXPECT_FALSE(c_->connected());
}

TEST_F(ScriptedTest, TooBigForMsizeFailsAtOnce) {
  std::string huge(c_->msize(), 'x');  // plus the header: over msize
  bool called = false;
  auto tag = c_->send(srv9p::twrite{1, 0, huge}, [&called](client::reply r) {
    called = true;
    EXPECT_EQ(r.error(), "message too large for msize");
  });
  EXPECT_TRUE(called);
  EXPECT_EQ(tag, srv9p::notag);
  EXPECT_TRUE(c_->connected());
}

TEST_F(ScriptedTest, PartialWalkNamesTheMissingElement) {
  std::string err;
  std::thread t([&] {
    auto r = c_->walk(0, "a/b/c");
    err = r ? "walked" : r.error();
  });
  auto m = s_.next();
  ASSERT_TRUE(m);
  s_.reply({m->tag, srv9p::rwalk{{srv9p::qid{srv9p::qtdir, 0, 1}}}});
  t.join();
  EXPECT_EQ(err, "'a/b': file does not exist");
}

TEST(SplitPath, Elements) {
  EXPECT_EQ(fsclient::split_path("a/b//c/"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(fsclient::split_path("/"), std::vector<std::string>{});
  EXPECT_EQ(fsclient::split_path(""), std::vector<std::string>{});
  EXPECT_EQ(fsclient::split_path("./x/./y/.."), (std::vector<std::string>{"x", "y", ".."}));
}

}  // namespace
