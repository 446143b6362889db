// End to end: many clients at once against one galaxy-ramfs process, and a client that
// vanishes in the middle of a blocked request, which must cost the server nothing but
// that connection (checked both on a real process and on an in-process server, where the
// parked read and the connection can be seen going away).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <thread>

#include "fsclient/client.hpp"
#include "srv9p/dial.hpp"
#include "srv9p/errors.hpp"
#include "tests/fsclient/ramfs_server.hpp"

namespace {

using namespace std::chrono_literals;
using fsclient::client;
using fsclient_test::ramfs_inproc;
using fsclient_test::ramfs_process;

// Bytes only client n writes: a run of its number's digits and a position pattern.
std::string pattern(int n, std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; i++) s[i] = static_cast<char>((i * 131 + static_cast<std::size_t>(n) * 7) % 251);
  return s;
}

// One client's life: dial, create its file, write, read back, stat, remove. Returns what
// went wrong, or "".
std::string one_client(const std::string& addr, int n) {
  auto c = client::dial(addr);
  if (!c) return "dial: " + c.error();
  auto root = (*c)->attach("user" + std::to_string(n));
  if (!root) return "attach: " + root.error();
  std::string name = "e2e-" + std::to_string(n);
  auto d = (*c)->walk(*root, "");
  if (!d) return "walk: " + d.error();
  if (auto cr = (*c)->create(*d, name, 0600, srv9p::ordwr); !cr) return "create: " + cr.error();
  std::string data = pattern(n, 50'000 + static_cast<std::size_t>(n) * 1000);
  auto w = (*c)->write(*d, 0, data);
  if (!w || *w != data.size()) return "write: " + (w ? std::to_string(*w) + " bytes" : w.error());
  if (auto cl = (*c)->clunk(*d); !cl) return "clunk: " + cl.error();
  auto back = (*c)->read_file(*root, name);
  if (!back) return "read: " + back.error();
  if (*back != data) return "read back " + std::to_string(back->size()) + " bytes that differ";
  auto st = (*c)->stat_path(*root, name);
  if (!st || st->length != data.size() || st->uid != "user" + std::to_string(n)) return "stat";
  auto f = (*c)->walk(*root, name);
  if (!f) return "walk to remove: " + f.error();
  if (auto rm = (*c)->remove(*f); !rm) return "remove: " + rm.error();
  if (auto gone = (*c)->walk(*root, name); gone) return "still there after remove";
  return "";
}

TEST(EndToEnd, HundredClientsInParallel) {
  ramfs_process s;
  ASSERT_EQ(s.start(), "");
  constexpr int clients = 100;
  std::vector<std::string> errors(clients);
  std::vector<std::thread> ts;
  for (int n = 0; n < clients; n++) {
    // Half over TCP, half over the Unix socket.
    ts.emplace_back([&, n] { errors[static_cast<std::size_t>(n)] = one_client(n % 2 ? s.tcp : s.unix_sock, n); });
  }
  for (auto& t : ts) t.join();
  for (int n = 0; n < clients; n++) EXPECT_EQ(errors[static_cast<std::size_t>(n)], "") << "client " << n;

  auto c = client::dial(s.tcp);
  ASSERT_TRUE(c) << c.error();
  auto root = (*c)->attach("glenda");
  ASSERT_TRUE(root);
  auto ls = (*c)->list_dir(*root, "");
  ASSERT_TRUE(ls) << ls.error();
  for (const auto& d : *ls) EXPECT_FALSE(d.name.starts_with("e2e-")) << d.name;
}

// A raw connection that sets up a read of /events, which blocks, and then vanishes.
// Returns "" once the read has been sent (after the replies to everything before it).
std::string vanish_mid_read(const std::string& dial) {
  auto a = srv9p::parse_dial(dial);
  if (!a) return a.error();
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  asio::error_code ec;
  s.connect({asio::ip::make_address(a->host), a->port}, ec);
  if (ec) return "connect: " + ec.message();
  std::vector<std::uint8_t> out;
  srv9p::encode({srv9p::notag, srv9p::tversion{8192 + srv9p::iohdrsz, "9P2000"}}, out);
  srv9p::encode({1, srv9p::tattach{0, srv9p::nofid, "ghost", ""}}, out);
  srv9p::encode({2, srv9p::twalk{0, 1, {"events"}}}, out);
  srv9p::encode({3, srv9p::topen{1, srv9p::oread}}, out);
  srv9p::encode({4, srv9p::tread{1, 0, 4096}}, out);
  asio::write(s, asio::buffer(out), ec);
  if (ec) return "write: " + ec.message();
  for (int i = 0; i < 4; i++) {
    std::uint8_t size[4];
    asio::read(s, asio::buffer(size), ec);
    if (ec) return "read: " + ec.message();
    std::vector<std::uint8_t> msg(size, size + 4);
    msg.resize(srv9p::peek_size(size));
    asio::read(s, asio::buffer(msg.data() + 4, msg.size() - 4), ec);
    if (ec) return "read: " + ec.message();
    auto f = srv9p::decode(msg);
    if (!f) return f.error();
    if (std::holds_alternative<srv9p::rerror>(f->msg)) return std::get<srv9p::rerror>(f->msg).ename;
  }
  s.close();  // with Tread 4 outstanding
  return "";
}

TEST(EndToEnd, VanishingClientLeavesTheServerServingOthers) {
  ramfs_process s;
  ASSERT_EQ(s.start(), "");
  auto before = client::dial(s.tcp);
  ASSERT_TRUE(before) << before.error();
  auto root = (*before)->attach("glenda");
  ASSERT_TRUE(root);
  for (int i = 0; i < 5; i++) ASSERT_EQ(vanish_mid_read(s.tcp), "");

  // The connection made before still works, a change (which would have answered the
  // vanished reads) goes through, and new clients are served.
  EXPECT_EQ(one_client(s.tcp, 1), "");
  EXPECT_TRUE((*before)->stat_path(*root, "events"));
  EXPECT_EQ(one_client(s.unix_sock, 2), "");
  EXPECT_TRUE(s.d.proc.running());
  EXPECT_FALSE(s.d.proc.wait(0ms));
}

TEST(EndToEnd, VanishingClientsParkedReadIsDropped) {
  ramfs_inproc s;
  auto addr = s.listen("tcp!127.0.0.1!0");
  ASSERT_TRUE(addr) << addr.error();
  s.start();
  auto other = client::dial(*addr);
  ASSERT_TRUE(other) << other.error();
  auto root = (*other)->attach("glenda");
  ASSERT_TRUE(root);

  ASSERT_EQ(vanish_mid_read(*addr), "");
  // The server notices the hang-up: the parked read is flushed and the connection goes.
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while ((s.parked_readers() != 0 || s.connections() != 1) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(s.parked_readers(), 0u);
  EXPECT_EQ(s.connections(), 1u);
  auto missing = (*other)->write_file(*root, "after", "");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), "'after': file does not exist");
  auto d = (*other)->walk(*root, "");
  ASSERT_TRUE(d);
  ASSERT_TRUE((*other)->create(*d, "after", 0644, srv9p::owrite));
  ASSERT_TRUE((*other)->clunk(*d));
  EXPECT_EQ(one_client(*addr, 3), "");
}

}  // namespace
