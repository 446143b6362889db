// galaxy-node spoken to in 9P2000.L over loopback TCP (--auth none), as the Linux kernel
// speaks to it: a raw socket carrying messages made by srv9p's codec, in the order
// v9fs sends them (Tlopen, the Tsetattr of O_TRUNC before a ctl write, Treaddir, a
// Tflush of a blocked read).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "srv9p/fcall.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace srv9p;
using namespace std::chrono_literals;

const std::string node_binary = GALAXY_BINARY_DIR "/galaxy-node";

// A blocking 9P2000.L client on one TCP connection; replies are read in order.
class raw_client {
 public:
  bool connect(const std::string& dial) {
    auto bang = dial.rfind('!');
    int port = std::stoi(dial.substr(bang + 1));
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{20, 0};  // a reply that never comes fails the test, not the run
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~raw_client() {
    if (fd_ >= 0) ::close(fd_);
  }
  void send(std::uint16_t tag, message m) {
    auto b = encode(fcall{tag, std::move(m)}, dialect::p9_2000_l);
    ASSERT_EQ(::write(fd_, b.data(), b.size()), static_cast<ssize_t>(b.size()));
  }
  fcall recv() {
    std::vector<std::uint8_t> b(4);
    if (!read_all(b.data(), 4)) return fcall{0, rerror{"<connection lost>"}};
    b.resize(peek_size(b));
    if (b.size() < 7 || !read_all(b.data() + 4, b.size() - 4)) return fcall{0, rerror{"<short message>"}};
    auto f = decode(b, dialect::p9_2000_l);
    if (!f) return fcall{0, rerror{"<undecodable: " + f.error() + ">"}};
    return *f;
  }
  // Sends m and returns the reply, which must be an R of type R.
  template <class R>
  R call(std::uint16_t tag, message m) {
    send(tag, std::move(m));
    fcall f = recv();
    EXPECT_EQ(f.tag, tag);
    if (auto* r = std::get_if<R>(&f.msg)) return *r;
    ADD_FAILURE() << "unexpected reply: " << to_string(f);
    return R{};
  }
  // Walks fid 0 to path (names split on '/') as newfid, opens it with flags, reads it all.
  std::string read_file(std::uint32_t newfid, const std::vector<std::string>& path) {
    call<rwalk>(10, twalk{0, newfid, path});
    call<rlopen>(11, tlopen{newfid, 0});
    std::string all;
    for (;;) {
      auto r = call<rread>(12, tread{newfid, all.size(), 8000});
      if (r.data.empty()) break;
      all += r.data;
    }
    call<rclunk>(13, tclunk{newfid});
    return all;
  }

 private:
  bool read_all(std::uint8_t* p, std::size_t n) {
    while (n > 0) {
      ssize_t k = ::read(fd_, p, n);
      if (k <= 0) return false;
      p += k;
      n -= static_cast<std::size_t>(k);
    }
    return true;
  }
  int fd_ = -1;
};

struct node_l {
  testutil::temp_dir dir;
  testutil::daemon_handle d;
  raw_client c;
  std::string start() {
    ::chmod(dir.file("").c_str(), 0711);
    auto h = testutil::start_daemon(
        {node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", dir.file("spool"), "--name", "n1"});
    if (!h) return h.error();
    d = std::move(*h);
    if (!c.connect(d.dials.at(0))) return "connect failed";
    return {};
  }
};

TEST(NodeDotl, ATaskThroughCloneCtlWaitAndStdout) {
  node_l n;
  ASSERT_EQ(n.start(), "");
  auto& c = n.c;
  EXPECT_EQ(c.call<rversion>(notag, tversion{65536, "9P2000.L"}).version, "9P2000.L");
  c.call<rattach>(1, tattach{0, nofid, "root", "", nofid});
  auto fs = c.call<rstatfs>(2, tstatfs{0});
  EXPECT_EQ(fs.type, 0x01021997u);
  // cat clone: a new task's number.
  std::string num = c.read_file(1, {"task", "clone"});
  ASSERT_FALSE(num.empty());
  num.pop_back();
  // echo exec ... > ctl: open for writing, truncate as the kernel does, write.
  c.call<rwalk>(3, twalk{0, 2, {"task", num, "ctl"}});
  c.call<rlopen>(4, tlopen{2, 01});
  c.call<rsetattr>(5, tsetattr{2, attr_size | attr_mtime | attr_ctime, 0, 0, 0, 0, 0, 0, 0, 0});
  std::string cmd = "exec sh -c 'echo hello; exit 3'\n";
  EXPECT_EQ(c.call<rwrite>(6, twrite{2, 0, cmd}).count, cmd.size());
  c.call<rclunk>(7, tclunk{2});
  EXPECT_EQ(c.read_file(3, {"task", num, "wait"}), "exit 3\n");
  EXPECT_EQ(c.read_file(4, {"task", num, "stdout"}), "hello\n");
  // ls -l task/N: the entries by Treaddir, and their owner by Tgetattr.
  c.call<rwalk>(8, twalk{0, 5, {"task", num}});
  c.call<rlopen>(9, tlopen{5, 0200000});
  auto rd = c.call<rreaddir>(10, treaddir{5, 0, 8000});
  auto ents = decode_dirents(std::span(reinterpret_cast<const std::uint8_t*>(rd.data.data()), rd.data.size()));
  ASSERT_TRUE(ents);
  std::vector<std::string> names;
  for (const auto& e : *ents) names.push_back(e.name);
  EXPECT_NE(std::find(names.begin(), names.end(), "ctl"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "wait"), names.end());
  EXPECT_EQ(names.at(0), ".");
  c.call<rwalk>(11, twalk{0, 6, {"task", num, "status"}});
  auto g = c.call<rgetattr>(12, tgetattr{6, getattr_basic});
  EXPECT_EQ(g.mode & S_IFMT, unsigned(S_IFREG));
  EXPECT_EQ(g.uid, 0u);  // root's task
  // Errors come as errnos (a walk failing at its first name; later it is a partial Rwalk).
  c.send(13, twalk{0, 7, {"nonesuch"}});
  auto e = c.recv();
  ASSERT_TRUE(std::holds_alternative<rlerror>(e.msg)) << to_string(e);
  EXPECT_EQ(std::get<rlerror>(e.msg).ecode, unsigned(ENOENT));
}

TEST(NodeDotl, ABlockedWaitIsFlushedPromptly) {
  node_l n;
  ASSERT_EQ(n.start(), "");
  auto& c = n.c;
  c.call<rversion>(notag, tversion{65536, "9P2000.L"});
  c.call<rattach>(1, tattach{0, nofid, "root", "", nofid});
  std::string num = c.read_file(1, {"task", "clone"});
  num.pop_back();
  c.call<rwalk>(2, twalk{0, 2, {"task", num, "ctl"}});
  c.call<rlopen>(3, tlopen{2, 01});
  c.call<rwrite>(4, twrite{2, 0, "exec sleep 100\n"});
  c.call<rwalk>(5, twalk{0, 3, {"task", num, "wait"}});
  c.call<rlopen>(6, tlopen{3, 0});
  c.send(7, tread{3, 0, 100});  // parks: the task runs for 100 s
  c.send(8, tflush{7});
  fcall r = c.recv();  // before the task ends: the flush does not wait for it
  EXPECT_EQ(r.tag, 8) << to_string(r);
  EXPECT_TRUE(std::holds_alternative<rflush>(r.msg)) << to_string(r);
  // The server keeps serving; the task is killed through the same ctl.
  c.call<rwrite>(9, twrite{2, 0, "kill\n"});
  auto st = c.call<rgetattr>(10, tgetattr{3, getattr_basic});
  EXPECT_EQ(st.mode & S_IFMT, unsigned(S_IFREG));
}

}  // namespace
