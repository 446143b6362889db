#pragma once
// Several hosts on one machine, for tests: each host is a network namespace with one
// Ethernet link (a veth pair) to a bridge that lives in a namespace of its own (the
// "switch"), so that nothing is added to the machine's own namespace and parallel tests
// cannot see each other. Each host has its own munged (tests/testmunge.hpp: own socket,
// pid, log and seed files), all sharing one key unless the host is made with a key of its
// own. Programs run inside a host through nsenter(1); see network::exec for why not
// `ip netns exec`. Header-only.
//
//   switch namespace  gxt-PID-SEQ-sw:  br0, and per host the port "hI" (veth, master br0)
//   host namespace    gxt-PID-SEQ-NAME: lo, eth0 (the veth's other end)
//                                       10.231.1.(I+2)/24 and fd00:6761:6c78::(I+2)/64
//
// Addresses are the same in every network: networks cannot reach each other, so they
// cannot collide; namespace names carry the test's pid and a count, and a network made
// after a crashed run removes that run's namespaces first (network::clean_stale).
//
// Faults, all on the switch side of a host's link, as pulling a cable or a bad radio
// would be: cut() sets the port down, restore() sets it up; impair() adds loss and delay
// to frames toward the host with `tc netem` when the kernel has it, else with a userspace
// wire (class wire, below) spliced into the link; clear() removes either.
//
// Needs root, ip(8), nsenter(1); REQUIRE_NETNS() skips a test, saying why, without them.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <deque>
#include <expected>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testmunge.hpp"
#include "tests/testutil.hpp"

namespace testnet {

using namespace std::chrono_literals;

inline const std::string ip_binary = "/usr/sbin/ip";
inline const std::string tc_binary = "/usr/sbin/tc";
inline const std::string nsenter_binary = "/usr/bin/nsenter";

// Runs argv; "" when it exits 0, else what it said (for error messages).
inline std::string must(const std::vector<std::string>& argv) {
  auto r = testutil::run(argv, {}, 20s);
  if (r.status == 0) return {};
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  return cmd + ": status " + std::to_string(r.status) + ": " + r.err + r.out;
}

// Why this machine cannot make namespaced hosts, or "" when it can: not root, no ip or
// nsenter, or the kernel refuses a network namespace, a veth or a bridge.
inline std::string unavailable() {
  static const std::string why = [] {
    if (::geteuid() != 0) return std::string("needs root to make network namespaces (CI runs as root)");
    for (const auto& b : {ip_binary, nsenter_binary}) {
      if (::access(b.c_str(), X_OK) != 0) return b + " is missing (Debian: iproute2, util-linux)";
    }
    std::string ns = "gxt-" + std::to_string(::getpid()) + "-probe";
    std::string err = must({ip_binary, "netns", "add", ns});
    if (err.empty()) err = must({ip_binary, "-n", ns, "link", "add", "br0", "type", "bridge"});
    if (err.empty()) err = must({ip_binary, "-n", ns, "link", "add", "gxa", "type", "veth", "peer", "name", "gxb"});
    testutil::run({ip_binary, "netns", "del", ns});
    return err.empty() ? err : "ip netns is impossible here: " + err;
  }();
  return why;
}

#define REQUIRE_NETNS()                                    \
  if (auto why_ = testnet::unavailable(); !why_.empty()) \
  GTEST_SKIP() << why_

// A thread that runs fn inside the network namespace at netns_path (setns(2) changes
// only the calling thread's namespace): sockets fn makes belong to that namespace for
// good, whichever thread uses them later. Returns fn's result (fn must return a value);
// a namespace that cannot be entered fails the test (EXPECT) and fn runs outside it.
template <class F>
auto in_netns(const std::string& netns_path, F fn) -> decltype(fn()) {
  std::optional<decltype(fn())> out;
  std::thread t([&] {
    int fd = ::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0) << netns_path;
    EXPECT_EQ(::setns(fd, CLONE_NEWNET), 0) << "setns " << netns_path << ": " << std::strerror(errno);
    if (fd >= 0) ::close(fd);
    out.emplace(fn());
  });
  t.join();
  return std::move(*out);
}

// A userspace Ethernet wire between two interfaces of one namespace, for kernels without
// sch_netem: frames are read and written with AF_PACKET sockets carrying a virtio-net
// header (PACKET_VNET_HDR, packet(7)), so offloaded frames (GSO, partial checksums) pass
// as they are. Frames from a to b are delayed by delay and dropped with probability
// loss_pct/100; frames from b to a pass at once (as netem on one port's egress).
class wire {
 public:
  static std::expected<std::unique_ptr<wire>, std::string> make(const std::string& netns_path, const std::string& a,
                                                                const std::string& b, int loss_pct,
                                                                std::chrono::milliseconds delay) {
    auto w = std::unique_ptr<wire>(new wire);
    w->loss_pct_ = loss_pct;
    w->delay_ = delay;
    std::string err = in_netns(netns_path, [&]() -> std::string {
      for (int i = 0; i < 2; ++i) {
        const std::string& dev = i == 0 ? a : b;
        int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
        if (fd < 0) return std::string("socket(AF_PACKET): ") + std::strerror(errno);
        w->fd_[i] = fd;
        int one = 1;
        if (::setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) != 0 ||
            ::setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) != 0) {
          return std::string("setsockopt(PACKET_VNET_HDR, PACKET_IGNORE_OUTGOING): ") + std::strerror(errno);
        }
        sockaddr_ll sll{};
        sll.sll_family = AF_PACKET;
        sll.sll_protocol = htons(ETH_P_ALL);
        sll.sll_ifindex = static_cast<int>(::if_nametoindex(dev.c_str()));
        if (sll.sll_ifindex == 0) return "no interface " + dev;
        if (::bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
          return "bind " + dev + ": " + std::strerror(errno);
        }
      }
      return {};
    });
    if (!err.empty()) return std::unexpected(err);
    w->stop_ = ::eventfd(0, EFD_CLOEXEC);
    w->thread_ = std::thread([p = w.get()] { p->run(); });
    return w;
  }
  ~wire() {
    if (thread_.joinable()) {
      std::uint64_t one = 1;
      (void)!::write(stop_, &one, sizeof one);
      thread_.join();
    }
    for (int fd : {fd_[0], fd_[1], stop_}) {
      if (fd >= 0) ::close(fd);
    }
  }
  wire(const wire&) = delete;
  wire& operator=(const wire&) = delete;

 private:
  wire() = default;
  struct frame {
    testutil::steady::time_point due;
    std::string bytes;  // virtio-net header and Ethernet frame
  };
  void run() {
    std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<int> pct(0, 99);
    std::deque<frame> queued;  // a→b, in order: every frame has the same delay
    std::string buf(70000, '\0');
    for (;;) {
      int timeout_ms = -1;
      if (!queued.empty()) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(queued.front().due - testutil::steady::now());
        timeout_ms = static_cast<int>(std::max<long>(left.count(), 0));
      }
      pollfd p[3] = {{fd_[0], POLLIN, 0}, {fd_[1], POLLIN, 0}, {stop_, POLLIN, 0}};
      int n = ::poll(p, 3, timeout_ms);
      if (n < 0 && errno != EINTR) return;
      if (p[2].revents != 0) return;
      auto now = testutil::steady::now();
      while (!queued.empty() && queued.front().due <= now) {
        (void)::send(fd_[1], queued.front().bytes.data(), queued.front().bytes.size(), 0);
        queued.pop_front();
      }
      for (int i = 0; i < 2; ++i) {
        if (n <= 0 || p[i].revents == 0) continue;
        for (;;) {
          ssize_t got = ::recv(fd_[i], buf.data(), buf.size(), 0);
          if (got <= 0) break;
          if (i == 1) {
            (void)::send(fd_[0], buf.data(), static_cast<std::size_t>(got), 0);
          } else if (pct(rng) >= loss_pct_) {
            queued.push_back({now + delay_, buf.substr(0, static_cast<std::size_t>(got))});
          }
        }
      }
    }
  }

  int fd_[2] = {-1, -1};
  int stop_ = -1;
  int loss_pct_ = 0;
  std::chrono::milliseconds delay_{0};
  std::thread thread_;
};

// One host: a network namespace with its address and its munged.
struct host {
  std::string name;     // as the test named it: "sched", "n1", "user"
  std::string netns;    // the namespace's name (ip netns list)
  std::string port;     // its port on the bridge, in the switch namespace: "h0", "h1", ...
  std::string ip4;      // 10.231.1.N
  std::string ip6;      // fd00:6761:6c78::N
  std::unique_ptr<testmunge::munged> munge;
  std::unique_ptr<wire> impairment;  // the userspace wire while impaired without netem
  bool netem = false;                // netem is on the port while impaired

  std::string netns_path() const { return "/run/netns/" + netns; }
  const std::string& munge_socket() const { return munge->socket(); }
  // argv run inside this host: only the network namespace changes (nsenter --net), so the
  // file system, its mounts (FUSE included) and /sys/fs/cgroup are the machine's.
  // (`ip netns exec` would also unshare the mount namespace and mount a fresh /sys,
  // hiding the cgroup tree from galaxy-node and every FUSE mount from the other hosts.)
  std::vector<std::string> exec(const std::vector<std::string>& argv) const {
    std::vector<std::string> full{nsenter_binary, "--net=" + netns_path()};
    full.insert(full.end(), argv.begin(), argv.end());
    return full;
  }
  // tcp!IPv4!port: how the other hosts dial a listener of this host.
  std::string dial(int port) const { return "tcp!" + ip4 + "!" + std::to_string(port); }
  std::string dial6(int port) const { return "tcp!" + ip6 + "!" + std::to_string(port); }
};

// How a host is made: its name, and whether its munged gets a key of its own instead of
// the network's (a host outside the cluster's trust).
struct host_spec {
  std::string name;
  bool own_key = false;
};

// N hosts on one bridge, removed with everything in them on destruction (the test's
// daemons must have ended first: declare them after the network).
class network {
 public:
  static std::expected<std::unique_ptr<network>, std::string> make(const std::vector<host_spec>& specs) {
    clean_stale();
    static int seq = 0;
    auto net = std::unique_ptr<network>(new network);
    net->prefix_ = "gxt-" + std::to_string(::getpid()) + "-" + std::to_string(seq++);
    net->switch_ = net->prefix_ + "-sw";
    ::chmod(net->dir_.path().c_str(), 0711);
    net->key_ = net->dir_.file("munge.key");
    if (!testmunge::write_key(net->key_)) return std::unexpected("cannot write " + net->key_);
    auto ip = [](std::vector<std::string> args) {
      args.insert(args.begin(), ip_binary);
      return must(args);
    };
    const std::string sw = net->switch_;
    for (auto err : {ip({"netns", "add", sw}), ip({"-n", sw, "link", "set", "lo", "up"}),
                     ip({"-n", sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "mcast_snooping", "0"}),
                     ip({"-n", sw, "link", "set", "br0", "up"})}) {
      if (!err.empty()) return std::unexpected(err);
    }
    net->made_.push_back(sw);
    // Frames crossing the bridge skip iptables whatever the machine's br_netfilter says
    // (the namespace has no rules, but a distribution's defaults should not matter).
    testutil::run(net->at_switch({"/bin/sh", "-c",
                                  "for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -w $f ] && echo 0 > $f; done; true"}));
    for (std::size_t i = 0; i < specs.size(); ++i) {
      auto h = std::make_unique<host>();
      h->name = specs[i].name;
      h->netns = net->prefix_ + "-" + specs[i].name;
      h->port = "h" + std::to_string(i);
      h->ip4 = "10.231.1." + std::to_string(i + 2);
      h->ip6 = "fd00:6761:6c78::" + std::to_string(i + 2);
      if (h->netns.size() > 60) return std::unexpected("host name too long: " + h->name);
      if (auto err = ip({"netns", "add", h->netns}); !err.empty()) return std::unexpected(err);
      net->made_.push_back(h->netns);
      for (auto err : {ip({"-n", sw, "link", "add", h->port, "type", "veth", "peer", "name", "eth0", "netns", h->netns}),
                       ip({"-n", sw, "link", "set", h->port, "master", "br0", "up"}),
                       ip({"-n", h->netns, "link", "set", "lo", "up"}),
                       ip({"-n", h->netns, "addr", "add", h->ip4 + "/24", "dev", "eth0"}),
                       ip({"-n", h->netns, "addr", "add", h->ip6 + "/64", "dev", "eth0", "nodad"}),
                       ip({"-n", h->netns, "link", "set", "eth0", "up"})}) {
        if (!err.empty()) return std::unexpected(err);
      }
      h->munge = std::make_unique<testmunge::munged>(specs[i].own_key ? std::string() : net->key_,
                                                     h->exec({}));
      net->hosts_.push_back(std::move(h));
    }
    return net;
  }

  ~network() {
    for (auto& h : hosts_) {
      h->impairment.reset();
      h->munge.reset();
    }
    for (const auto& ns : made_) remove_netns(ns);
  }
  network(const network&) = delete;
  network& operator=(const network&) = delete;

  // The host named name; aborts the test (ADD_FAILURE, then std::abort) if there is none.
  host& operator[](std::string_view name) {
    for (auto& h : hosts_) {
      if (h->name == name) return *h;
    }
    ADD_FAILURE() << "no host " << name;
    std::abort();
  }
  const std::string& key_file() const { return key_; }
  // A directory shared by every host (the machine's file system), 0711, removed at the end.
  const testutil::temp_dir& dir() const { return dir_; }

  // Runs argv to completion inside host name (testutil::run).
  testutil::run_result run(std::string_view name, const std::vector<std::string>& argv, std::string_view input = {},
                           std::chrono::milliseconds timeout = 60s, const std::vector<std::string>& env = {}) {
    return testutil::run((*this)[name].exec(argv), input, timeout, env);
  }
  // Starts a daemon inside host name and reads its `listeners` "listening on" lines
  // (testutil::start_daemon; argv should choose --auth, or it gets --auth none).
  std::expected<testutil::daemon_handle, std::string> start_daemon(std::string_view name,
                                                                   const std::vector<std::string>& argv,
                                                                   std::size_t listeners = 1) {
    return testutil::start_daemon((*this)[name].exec(argv), listeners);
  }
  // fn() run on a thread inside host name: a socket it makes is that host's.
  template <class F>
  auto in(std::string_view name, F fn) {
    return in_netns((*this)[name].netns_path(), std::move(fn));
  }

  // ---- Faults on a host's link (its port on the bridge); "" or what went wrong ----------

  // The cable is pulled: the port goes down, so the host's eth0 loses its carrier and
  // frames either way are dropped. Connections stay open, as over a real cut.
  std::string cut(std::string_view name) { return must(at_switch_ip({"link", "set", (*this)[name].port, "down"})); }
  std::string restore(std::string_view name) { return must(at_switch_ip({"link", "set", (*this)[name].port, "up"})); }

  // Frames toward host name are dropped with probability loss_pct/100 and delayed by
  // delay: `tc qdisc add dev PORT root netem loss L% delay D` on its bridge port, or, on a
  // kernel without sch_netem, a userspace wire spliced between the port and the bridge.
  // how() says which was used.
  std::string impair(std::string_view name, int loss_pct, std::chrono::milliseconds delay) {
    host& h = (*this)[name];
    auto r = testutil::run(at_switch({tc_binary, "qdisc", "add", "dev", h.port, "root", "netem", "loss",
                                      std::to_string(loss_pct) + "%", "delay", std::to_string(delay.count()) + "ms"}));
    if (r.status == 0) {
      h.netem = true;
      how_ = "tc netem";
      return {};
    }
    // No netem: PORT leaves the bridge; a veth pair wI/bI joins it (bI on the bridge) and
    // the wire joins PORT to wI.
    std::string wi = "w" + h.port.substr(1), bi = "b" + h.port.substr(1);
    for (auto err : {must(at_switch_ip({"link", "set", h.port, "nomaster"})),
                     must(at_switch_ip({"link", "add", wi, "type", "veth", "peer", "name", bi})),
                     must(at_switch_ip({"link", "set", bi, "master", "br0", "up"})),
                     must(at_switch_ip({"link", "set", wi, "up"}))}) {
      if (!err.empty()) return err;
    }
    auto w = wire::make("/run/netns/" + switch_, wi, h.port, loss_pct, delay);
    if (!w) return w.error();
    h.impairment = std::move(*w);
    while (!r.err.empty() && r.err.back() == '\n') r.err.pop_back();
    how_ = "a userspace wire (this kernel has no sch_netem: tc said '" + r.err + "')";
    return {};
  }
  std::string clear(std::string_view name) {
    host& h = (*this)[name];
    if (h.netem) {
      h.netem = false;
      return must(at_switch({tc_binary, "qdisc", "del", "dev", h.port, "root"}));
    }
    if (!h.impairment) return {};
    h.impairment.reset();
    if (auto err = must(at_switch_ip({"link", "del", "w" + h.port.substr(1)})); !err.empty()) return err;
    return must(at_switch_ip({"link", "set", h.port, "master", "br0", "up"}));
  }
  const std::string& how() const { return how_; }

  // Removes the namespaces of earlier runs whose test process has gone (a crash or a
  // SIGKILL skipped their destructors): gxt-PID-... with no process PID. Whatever still
  // runs in them (munged, daemons) is killed first, or the namespace would live on.
  static void clean_stale() {
    auto r = testutil::run({ip_binary, "netns", "list"});
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) {
      std::string ns = line.substr(0, line.find(' '));
      if (!ns.starts_with("gxt-")) continue;
      auto dash = ns.find('-', 4);
      pid_t pid = std::atoi(ns.substr(4, dash - 4).c_str());
      if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
      remove_netns(ns);
    }
  }

 private:
  network() = default;
  std::vector<std::string> at_switch(std::vector<std::string> argv) const {
    argv.insert(argv.begin(), {nsenter_binary, "--net=/run/netns/" + switch_});
    return argv;
  }
  std::vector<std::string> at_switch_ip(std::vector<std::string> args) const {
    args.insert(args.begin(), {ip_binary, "-n", switch_});
    return args;
  }
  // Kills every process in namespace ns, then removes it.
  static void remove_netns(const std::string& ns) {
    auto pids = testutil::run({ip_binary, "netns", "pids", ns});
    std::istringstream in(pids.out);
    for (pid_t p; in >> p;) ::kill(p, SIGKILL);
    testutil::run({ip_binary, "netns", "del", ns});
  }

  testutil::temp_dir dir_;
  std::string prefix_, switch_, key_, how_;
  std::vector<std::string> made_;  // namespaces to remove, the switch first
  std::vector<std::unique_ptr<host>> hosts_;
};

}  // namespace testnet

// ASSERT_IMPAIRED(net.impair(...)): asserts that impair() worked, except under qemu-user
// (a cross build's tests, GALAXY_TESTS_EMULATED) on a kernel without sch_netem, where the
// userspace wire's packet(7) options are not implemented by the emulator
// (setsockopt(PACKET_VNET_HDR) answers ENOPROTOOPT): there the test skips, saying so.
#ifdef GALAXY_TESTS_EMULATED
#define ASSERT_IMPAIRED(expr)                                                                          \
  do {                                                                                                 \
    std::string impair_err_ = (expr);                                                                  \
    if (impair_err_.find(std::strerror(ENOPROTOOPT)) != std::string::npos) {                           \
      GTEST_SKIP() << "no sch_netem here, and qemu-user does not implement the packet(7) options of "  \
                      "the userspace wire that stands in for it: "                                     \
                   << impair_err_;                                                                     \
    }                                                                                                  \
    ASSERT_EQ(impair_err_, "");                                                                        \
  } while (0)
#else
#define ASSERT_IMPAIRED(expr) ASSERT_EQ((expr), "")
#endif
