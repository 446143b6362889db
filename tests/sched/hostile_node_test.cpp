// A node's answers are input too (issue 12): galaxy-sched copies a finished job's out/
// from its node by name, and a hostile or broken node may send any name. Here a real
// galaxy-node sits behind a 9P proxy that rewrites names in everything the node sends
// (directory reads and stats), so the scheduler is told of files named "../../ab" and
// "a/b" where the task made "evilname" and "aXb". The scheduler must refuse the names,
// write nothing outside the job's directory, and still end the job once.
//
// The proxy keeps 9P's framing (size[4] first) and swaps each name for one of the same
// length, so message sizes stay right without decoding them.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fsclient/client.hpp"
#include "sched/scheduler.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
const std::string node_binary = GALAXY_BINARY_DIR "/galaxy-node";
const std::string sched_binary = GALAXY_BINARY_DIR "/galaxy-sched";

// A 9P string as on the wire: len[2] then the bytes.
std::string wire(std::string_view s) {
  std::string out;
  out.push_back(static_cast<char>(s.size() & 0xff));
  out.push_back(static_cast<char>(s.size() >> 8));
  out.append(s);
  return out;
}

bool read_full(int fd, char* p, std::size_t n) {
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r <= 0) return false;
    p += r, n -= static_cast<std::size_t>(r);
  }
  return true;
}

bool write_full(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w, n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Listens on 127.0.0.1 (port 0); each connection is joined to a new connection to the
// node at `port`. Client to node: bytes as they are. Node to client: message by message,
// each name in `swaps` replaced by its partner (same length).
class rewriting_proxy {
 public:
  rewriting_proxy(std::uint16_t node_port, std::vector<std::pair<std::string, std::string>> swaps)
      : node_port_(node_port) {
    for (auto& [from, to] : swaps) swaps_.emplace_back(wire(from), wire(to));
    lfd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(lfd_, 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~rewriting_proxy() {
    stopping_ = true;
    ::shutdown(lfd_, SHUT_RDWR);
    ::close(lfd_);
    acceptor_.join();
    std::lock_guard lk(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    for (auto& t : pumps_) t.join();
    for (int fd : fds_) ::close(fd);
  }
  std::uint16_t port() const { return port_; }
  int rewritten() const { return rewritten_; }

 private:
  void accept_loop() {
    while (!stopping_) {
      int c = ::accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      int n = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(node_port_);
      if (::connect(n, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(c), ::close(n);
        continue;
      }
      std::lock_guard lk(mu_);
      fds_.push_back(c), fds_.push_back(n);
      pumps_.emplace_back([c, n] {
        char buf[65536];
        for (;;) {
          ssize_t r = ::read(c, buf, sizeof buf);
          if (r <= 0 || !write_full(n, buf, static_cast<std::size_t>(r))) break;
        }
        ::shutdown(n, SHUT_RDWR);
      });
      pumps_.emplace_back([this, c, n] {
        std::string msg;
        for (;;) {
          char head[4];
          if (!read_full(n, head, 4)) break;
          std::uint32_t size = static_cast<unsigned char>(head[0]) | static_cast<unsigned char>(head[1]) << 8 |
                               static_cast<unsigned char>(head[2]) << 16 |
                               static_cast<std::uint32_t>(static_cast<unsigned char>(head[3])) << 24;
          if (size < 4) break;
          msg.assign(head, 4);
          msg.resize(size);
          if (!read_full(n, msg.data() + 4, size - 4)) break;
          for (const auto& [from, to] : swaps_) {
            for (auto at = msg.find(from); at != std::string::npos; at = msg.find(from, at + to.size())) {
              msg.replace(at, from.size(), to);
              rewritten_++;
            }
          }
          if (!write_full(c, msg.data(), msg.size())) break;
        }
        ::shutdown(c, SHUT_RDWR);
      });
    }
  }

  std::uint16_t node_port_;
  std::uint16_t port_ = 0;
  int lfd_ = -1;
  std::vector<std::pair<std::string, std::string>> swaps_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> rewritten_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> fds_;
  std::vector<std::thread> pumps_;
};

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

TEST(SchedHostileNode, NamesFromANodeCannotLeaveTheJobsDirectory) {
  testutil::temp_dir dir;
  ::chmod(dir.path().c_str(), 0711);  // root's tasks run as nobody, who must reach the spool
  auto node = testutil::start_daemon({node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", dir.file("spool"),
                                      "--name", "n1"});
  ASSERT_TRUE(node) << node.error();
  const std::string& nd = node->dials.at(0);
  auto port = static_cast<std::uint16_t>(std::stoi(nd.substr(nd.rfind('!') + 1)));
  rewriting_proxy proxy(port, {{"evilname", "../../ab"}, {"aXb", "a/b"}});
  std::string state = dir.file("state");
  auto sched = testutil::start_daemon({sched_binary, "--listen", "tcp!127.0.0.1!0", "--state", state, "--node",
                                       "n1=tcp!127.0.0.1!" + std::to_string(proxy.port()), "--heartbeat", "0.2"});
  ASSERT_TRUE(sched) << sched.error();
  auto c = fsclient::client::dial(sched->dials.at(0));
  ASSERT_TRUE(c) << c.error();
  auto root = (*c)->attach("root");
  ASSERT_TRUE(root) << root.error();
  for (int i = 0; i < 500; i++) {
    auto st = (*c)->read_file(*root, "status");
    if (st && st->find("nodes_up=1 ") != std::string::npos) break;
    std::this_thread::sleep_for(20ms);
  }

  std::string j = trim((*c)->read_file(*root, "jobs/clone").value_or(""));
  ASSERT_FALSE(j.empty());
  ASSERT_TRUE((*c)->write_file(*root, "jobs/" + j + "/ctl",
                               "exec sh -c 'echo x > $GALAXY_OUT/evilname; echo y > $GALAXY_OUT/aXb; echo out'\n"));
  EXPECT_EQ((*c)->read_file(*root, "jobs/" + j + "/wait").value_or("?"), "exit 0\n");
  std::string st;
  for (int i = 0; i < 500; i++) {  // the results are copied after the end
    st = (*c)->read_file(*root, "jobs/" + j + "/status").value_or("");
    if (st.find("bad file name") != std::string::npos) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GT(proxy.rewritten(), 0) << "the proxy never saw the task's file names";
  EXPECT_NE(st.find("bad file name"), std::string::npos) << st;
  EXPECT_NE(st.find("state=done"), std::string::npos) << st;
  EXPECT_NE(st.find("attempts=1"), std::string::npos) << st;
  // Nothing named ab, and nothing at all, outside the job's own directory.
  namespace fs = std::filesystem;
  for (auto it = fs::recursive_directory_iterator(dir.path()); it != fs::recursive_directory_iterator(); ++it) {
    EXPECT_NE(it->path().filename(), "ab") << it->path();
    EXPECT_NE(it->path().filename(), "b") << it->path();
  }
  std::set<std::string> top;
  for (const auto& e : fs::directory_iterator(state + "/jobs")) top.insert(e.path().filename());
  EXPECT_EQ(top, std::set<std::string>{j}) << "the state's jobs/ holds more than the job's directory";
  // The scheduler still serves, and another job runs.
  std::string k = trim((*c)->read_file(*root, "jobs/clone").value_or(""));
  ASSERT_TRUE((*c)->write_file(*root, "jobs/" + k + "/ctl", "exec true\n"));
  EXPECT_EQ((*c)->read_file(*root, "jobs/" + k + "/wait").value_or("?"), "exit 0\n");
}

// A finished task's accounting is a node's answer too: take_usage keeps only plain
// decimal numbers of at most 18 digits and counts anything else (a sign, a unit, a
// fraction, 20 digits, a word glued on) as 0, never as a wrapped or partly read number.
TEST(SchedHostileNode, AccountingFromANodeIsANumberOrZero) {
  auto usage = [](std::string_view line) {
    sched::job_record rec;
    rec.user_ms = rec.sys_ms = rec.maxrss_bytes = 7;
    sched::take_usage(line, rec);
    return std::vector<std::uint64_t>{rec.user_ms, rec.sys_ms, rec.maxrss_bytes};
  };
  using v = std::vector<std::uint64_t>;
  EXPECT_EQ(usage("id=3 state=exited usertime=1500 systime=20 maxrss=65536000\n"), (v{1500, 20, 65536000}));
  EXPECT_EQ(usage("usertime=999999999999999999 systime=0 maxrss=000000000000000001"), (v{999999999999999999, 0, 1}));
  EXPECT_EQ(usage("usertime=99999999999999999999 systime=-5 maxrss=abc"), (v{0, 0, 0}));
  EXPECT_EQ(usage("usertime=18446744073709551616 systime=+5 maxrss=12k"), (v{0, 0, 0}));
  EXPECT_EQ(usage("usertime=1.5 systime= maxrss=0x10"), (v{0, 0, 0}));
  EXPECT_EQ(usage("usertime= 5 xsystime=9 maxrss"), (v{0, 0, 0}));
  EXPECT_EQ(usage(""), (v{0, 0, 0}));
  // The first of a repeated key counts; a key inside another word does not.
  EXPECT_EQ(usage("note=usertime=5 usertime=6 usertime=7"), (v{6, 0, 0}));
}

}  // namespace
