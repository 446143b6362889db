// Galaxy on several hosts of one machine (tests/testnet.hpp): a scheduler host, three
// node hosts and a user host, each a network namespace on one bridge with its own munged
// (one shared key), the real daemons started inside with MUNGE on real addresses
// (10.231.1.N, fd00:6761:6c78::N), never loopback. The user submits from the user host
// with the galaxy tool and through a FUSE mount made there; faults are made on the links
// (cut, loss and delay) and on the scheduler (SIGKILL).
//
// Nodes are dialled by the scheduler (--node NAME=tcp!ADDR!PORT, the nodes listening on
// tcp!*!0) or, once galaxy-node has it, join it (--join; issue 13): start_node() takes
// either. Every task appends its job id to one file ("ran": the hosts share the file
// system), so a job that ran twice shows.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "fsclient/client.hpp"
#include "srv9p/fcall.hpp"
#include "srv9p/munge.hpp"
#include "tests/testnet.hpp"

namespace {

using namespace std::chrono_literals;
const std::string node_binary = GALAXY_BINARY_DIR "/galaxy-node";
const std::string sched_binary = GALAXY_BINARY_DIR "/galaxy-sched";
const std::string galaxy_binary = GALAXY_BINARY_DIR "/galaxy";
const std::string wordfreq_sh = GALAXY_SOURCE_DIR "/examples/wordfreq.sh";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}
std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
// key=value from a status line; "" if absent.
std::string field(const std::string& text, const std::string& key) {
  auto at = (" " + text).find(" " + key + "=");
  if (at == std::string::npos) return "";
  at += key.size() + 1;
  return text.substr(at, text.find_first_of(" \n", at) - at);
}
template <class F>
bool eventually(F cond, std::chrono::milliseconds limit = 30s) {
  auto deadline = testutil::steady::now() + limit;
  while (!cond()) {
    if (testutil::steady::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

enum class node_mode { listen, join };

// The hosts and the daemons on them. Members go in reverse order: the mount and the
// daemons before the network that holds them.
struct netcluster {
  std::unique_ptr<testnet::network> net;
  testutil::temp_dir dir;  // spools, the scheduler's state, "ran", the mount point
  std::map<std::string, testutil::daemon_handle> nodes;
  std::map<std::string, std::string> node_dials;  // the dialled nodes, for --node
  testutil::daemon_handle sched;
  std::string sched_listen;  // --listen, as given
  std::string sched_dial;    // as it printed it: tcp!10.231.1.2!PORT
  std::string down_after = "1";
  testutil::process mount_proc;
  std::string mnt;
  std::unique_ptr<fsclient::client> c;  // root, from the user host
  std::uint32_t root = 0;

  ~netcluster() {
    if (!mnt.empty() && testutil::is_mounted(mnt)) {
      testutil::run({galaxy_binary, "umount", mnt});
      if (testutil::is_mounted(mnt)) ::umount2(mnt.c_str(), MNT_DETACH);
    }
    mount_proc = {};
    c.reset();
    sched = {};
    nodes.clear();
  }

  // The hosts sched, n1, n2, n3, user and any extra ones.
  std::string make(std::vector<testnet::host_spec> extra = {}) {
    std::vector<testnet::host_spec> specs{{"sched"}, {"n1"}, {"n2"}, {"n3"}, {"user"}};
    specs.insert(specs.end(), extra.begin(), extra.end());
    auto n = testnet::network::make(specs);
    if (!n) return n.error();
    net = std::move(*n);
    ::chmod(dir.path().c_str(), 0755);  // tasks reach their spools and "ran"
    std::ofstream(ran()).flush();
    ::chmod(ran().c_str(), 0666);
    return {};
  }
  std::string ran() const { return dir.file("ran"); }
  std::vector<std::string> auth(const std::string& host) {
    return {"--auth", "munge", "--munge-socket", (*net)[host].munge_socket()};
  }

  // galaxy-node on host (named as the host) with 2 CPUs, root's tasks as root (as
  // `galaxy up` does, so the reduce of wordfreq.sh can read root's jobs). listen: on
  // tcp!*!0, dialled by the scheduler at the host's IPv4 address (ipv6: on and at its
  // IPv6 address);
  // join: --join the scheduler, no listener.
  std::string start_node(const std::string& name, node_mode mode = node_mode::listen, bool ipv6 = false) {
    std::vector<std::string> argv{node_binary, "--spool", dir.file("spool-" + name), "--name", name, "--cpus", "2",
                                  "--allow-root-tasks"};
    auto a = auth(name);
    argv.insert(argv.end(), a.begin(), a.end());
    if (mode == node_mode::join) {
      argv.insert(argv.end(), {"--join", sched_dial});
      auto h = net->start_daemon(name, argv, 0);
      if (!h) return h.error();
      nodes[name] = std::move(*h);
      return {};
    }
    // tcp!*! is IPv4's any address today (srv9p/server.cpp); an IPv6 node listens on its
    // own IPv6 address.
    argv.insert(argv.end(), {"--listen", ipv6 ? "tcp!" + (*net)[name].ip6 + "!0" : "tcp!*!0"});
    auto h = net->start_daemon(name, argv);
    if (!h) return h.error();
    int port = std::stoi(h->dials.at(0).substr(h->dials.at(0).rfind('!') + 1));
    node_dials[name] = ipv6 ? (*net)[name].dial6(port) : (*net)[name].dial(port);
    nodes[name] = std::move(*h);
    return {};
  }

  // galaxy-sched on the scheduler host, listening on its address (port 0 the first time,
  // the same port after a restart), dialling the listening nodes; then a client for the
  // test on the user host, attached as root.
  std::string start_sched(std::vector<std::string> extra = {}) {
    if (sched_listen.empty()) sched_listen = "tcp!" + (*net)["sched"].ip4 + "!0";
    std::vector<std::string> argv{sched_binary, "--listen", sched_listen, "--state", dir.file("state"),
                                  "--heartbeat", "0.2", "--down-after", down_after, "--reconnect", "0.3"};
    auto a = auth("sched");
    argv.insert(argv.end(), a.begin(), a.end());
    for (const auto& [name, d] : node_dials) argv.insert(argv.end(), {"--node", name + "=" + d});
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto h = net->start_daemon("sched", argv);
    if (!h) return h.error();
    sched = std::move(*h);
    sched_dial = sched.dials.at(0);
    sched_listen = sched_dial;  // a restart listens on the same port
    return connect();
  }
  std::string connect() {
    c.reset();
    auto cl = net->in("user", [&] {
      fsclient::client::options o;
      o.credential = [sock = (*net)["user"].munge_socket()](std::string_view bind) {
        return srv9p::munge_credential(sock, bind);
      };
      return fsclient::client::dial(sched_dial, o);
    });
    if (!cl) return "dial " + sched_dial + " from the user host: " + cl.error();
    c = std::move(*cl);
    auto r = c->attach("root");
    if (!r) return r.error();
    root = *r;
    return {};
  }
  // The three node hosts listening, the scheduler dialling them; "" once all are up.
  std::string start(std::vector<std::string> sched_extra = {}) {
    for (const char* n : {"n1", "n2", "n3"}) {
      if (auto why = start_node(n); !why.empty()) return why;
    }
    if (auto why = start_sched(sched_extra); !why.empty()) return why;
    if (!wait_up(3)) return "the nodes did not come up: " + read("status");
    return {};
  }
  bool wait_up(int n, std::chrono::milliseconds limit = 20s) {
    return eventually([&] { return field(read("status"), "nodes_up") == std::to_string(n); }, limit);
  }

  std::string read(const std::string& path) {
    if (!c) return "<no client>";
    auto r = c->read_file(root, path);
    return r ? *r : "<error: " + r.error() + ">";
  }
  // The galaxy tool run as root on host (the user host by default), with -a and that
  // host's munged.
  testutil::run_result galaxy(const std::string& verb, std::vector<std::string> args, const std::string& host = "user",
                              std::chrono::milliseconds timeout = 60s) {
    std::vector<std::string> argv{galaxy_binary, verb, "-a", sched_dial};
    auto a = auth(host);
    argv.insert(argv.end(), a.begin(), a.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return net->run(host, argv, {}, timeout, {"USER=root"});
  }
  // Submits sh -c script from the user host; the job number ("" and a failure if refused).
  std::string submit(const std::string& script, std::vector<std::string> opts = {}) {
    std::vector<std::string> args{"-u", "root"};
    args.insert(args.end(), opts.begin(), opts.end());
    args.insert(args.end(), {"--", "sh", "-c", script});
    auto r = galaxy("submit", args);
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    return trim(r.out);
  }
  // A task that sleeps, appends its job id to "ran" and says which host it ran on.
  std::string counted(const std::string& sleep_s) {
    return "sleep " + sleep_s + "; echo $GALAXY_JOB >> " + ran() +
           "; /usr/sbin/ip -4 -o addr show dev eth0 | awk '{ print $4 }'";
  }
  std::string status(const std::string& j) { return read("jobs/" + j + "/status"); }
  // How many times each job id is in "ran".
  std::map<std::string, int> runs() {
    std::map<std::string, int> n;
    std::istringstream in(slurp(ran()));
    for (std::string id; in >> id;) n[id]++;
    return n;
  }
  // Waits for every job in ids to end (galaxy wait from the user host); its exit status.
  int wait_all(const std::vector<std::string>& ids, std::chrono::milliseconds limit = 90s) {
    std::vector<std::string> args{"-u", "root"};
    args.insert(args.end(), ids.begin(), ids.end());
    auto r = galaxy("wait", args, "user", limit);
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    return r.status;
  }
  // Each job done, once, with its node host's address on its stdout.
  void expect_each_done_once(const std::vector<std::string>& ids, std::set<std::string>* where = nullptr) {
    auto counts = runs();
    for (const auto& j : ids) {
      auto st = status(j);
      EXPECT_EQ(field(st, "state"), "done") << st;
      EXPECT_EQ(counts[j], 1) << "job " << j << " ran " << counts[j] << " times to its end; " << st;
      std::string node = field(st, "node");
      if (node.empty() || node == "-") continue;
      EXPECT_EQ(read("jobs/" + j + "/stdout"), (*net)[node].ip4 + "/24\n") << st;
      if (where != nullptr) where->insert(node);
    }
  }
  // Jobs running now, by node.
  std::map<std::string, std::vector<std::string>> running_on(const std::vector<std::string>& ids) {
    std::map<std::string, std::vector<std::string>> by;
    for (const auto& j : ids) {
      auto st = status(j);
      if (field(st, "state") == "running") by[field(st, "node")].push_back(j);
    }
    return by;
  }
};

#define MAKE(k, ...)                                  \
  netcluster k;                                       \
  {                                                   \
    REQUIRE_NETNS();                                  \
    REQUIRE_MUNGED();                                 \
    auto why_ = k.make(__VA_ARGS__);                  \
    ASSERT_EQ(why_, "") << "making the hosts: " << why_; \
  }
#define START(k, ...)                                         \
  {                                                           \
    auto why_ = k.start(__VA_ARGS__);                         \
    ASSERT_EQ(why_, "") << "starting the cluster: " << why_; \
  }

// ---- The fixture itself ---------------------------------------------------------------

// Hosts reach each other over the bridge and nothing else does; a cut link cuts, and a
// restored one works again (so the fault tests below test something).
TEST(Testnet, HostsReachEachOtherOnlyOverTheirLinks) {
  REQUIRE_NETNS();
  REQUIRE_MUNGED();
  auto net = testnet::network::make({{"a"}, {"b"}});
  ASSERT_TRUE(net) << net.error();
  auto& n = **net;
  // A listener on b (IPv4 and IPv6), dialled from a with bash's /dev/tcp.
  auto lis = n.start_daemon("b", {"/usr/bin/python3", "-c",
                                  "import socket,sys\n"
                                  "s=socket.create_server(('::',0), family=socket.AF_INET6, dualstack_ipv6=True)\n"
                                  "print('listening on tcp!*!%d' % s.getsockname()[1], flush=True)\n"
                                  "while True:\n  c,_=s.accept(); c.sendall(b'hi\\n'); c.close()\n"});
  ASSERT_TRUE(lis) << lis.error();
  std::string port = lis->dials.at(0).substr(lis->dials.at(0).rfind('!') + 1);
  auto dial_from = [&](const std::string& from, const std::string& addr) {
    return n.run(from, {"/usr/bin/timeout", "2", "/bin/bash", "-c", "exec 3<>/dev/tcp/" + addr + "/" + port + "; cat <&3"},
                 {}, 10s);
  };
  EXPECT_EQ(dial_from("a", n["b"].ip4).out, "hi\n");
  EXPECT_EQ(dial_from("a", n["b"].ip6).out, "hi\n");
  // Not from the machine's own namespace, nor from loopback inside a.
  EXPECT_NE(testutil::run({"/usr/bin/timeout", "2", "/bin/bash", "-c", "exec 3<>/dev/tcp/" + n["b"].ip4 + "/" + port})
                .status,
            0);
  EXPECT_NE(dial_from("a", "127.0.0.1").status, 0);
  // Cut: nothing passes; restored: it works again.
  ASSERT_EQ(n.cut("b"), "");
  EXPECT_NE(dial_from("a", n["b"].ip4).out, "hi\n");
  ASSERT_EQ(n.restore("b"), "");
  EXPECT_TRUE(eventually([&] { return dial_from("a", n["b"].ip4).out == "hi\n"; }, 10s));
  // Impaired: still there, but slower by the delay at least once each way of the handshake.
  ASSERT_IMPAIRED(n.impair("b", 0, 300ms));
  auto t0 = testutil::steady::now();
  EXPECT_EQ(dial_from("a", n["b"].ip4).out, "hi\n") << n.how();
  EXPECT_GE(testutil::steady::now() - t0, 300ms) << n.how();
  std::cout << "[ impaired with " << n.how() << " ]\n";
  ASSERT_EQ(n.clear("b"), "");
  EXPECT_EQ(dial_from("a", n["b"].ip4).out, "hi\n");
  // All lost: nothing passes; cleared, it works again.
  ASSERT_IMPAIRED(n.impair("b", 100, 0ms));
  EXPECT_NE(dial_from("a", n["b"].ip4).out, "hi\n");
  ASSERT_EQ(n.clear("b"), "");
  EXPECT_EQ(dial_from("a", n["b"].ip4).out, "hi\n");
  // Every host's munged answers, with one key: a credential from a decodes on b.
  auto cred = testmunge::credential(n["a"].munge_socket(), "x");
  auto un = testutil::run({"/usr/bin/unmunge", "-S", n["b"].munge_socket()}, cred);
  EXPECT_EQ(un.status, 0) << un.out << un.err;
}

// ---- Galaxy across hosts --------------------------------------------------------------

// Jobs submitted with the galaxy tool on the user host run on the three node hosts (each
// job prints the address of the host it ran on); one node is dialled over IPv6.
TEST(Netns, JobsFromTheUserHostRunOnTheNodeHosts) {
  MAKE(k);
  for (const char* n : {"n1", "n2"}) ASSERT_EQ(k.start_node(n), "");
  ASSERT_EQ(k.start_node("n3", node_mode::listen, true), "");
  ASSERT_EQ(k.start_sched(), "");
  ASSERT_TRUE(k.wait_up(3)) << k.read("status");
  EXPECT_TRUE(k.sched_dial.starts_with("tcp!10.231.1.2!")) << k.sched_dial;
  auto nodes = k.galaxy("nodes", {"-u", "root"});
  EXPECT_EQ(nodes.status, 0) << nodes.err;
  for (const char* n : {"\nn1 ", "\nn2 ", "\nn3 "}) EXPECT_NE(nodes.out.find(n), std::string::npos) << nodes.out;

  std::vector<std::string> ids;
  // Six jobs that sleep 2 s, on three nodes of 2 CPUs each (binpack): every node
  // takes two, unless submitting six took longer than a job.
  for (int i = 0; i < 6; ++i) ids.push_back(k.submit(k.counted("2")));
  ASSERT_EQ(k.wait_all(ids), 0);
  std::set<std::string> where;
  k.expect_each_done_once(ids, &where);
  EXPECT_EQ(where, (std::set<std::string>{"n1", "n2", "n3"}));
  // galaxy run, like srun, from the user host.
  auto r = k.galaxy("run", {"-u", "root", "-q", "--", "echo", "across"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "across\n");
}

// The main job, through a FUSE mount made on the user host, runs across the three node
// hosts and its table equals the local pipeline's. The reduce job reads the maps' output
// through the same mount from the node it runs on (the hosts share the mount namespace).
TEST(Netns, MainJobThroughAMountOnTheUserHost) {
  REQUIRE_FUSE();
  MAKE(k);
  START(k);
  k.mnt = k.dir.file("mnt");
  std::filesystem::create_directory(k.mnt);
  auto m = testutil::process::spawn(
      k.net->operator[]("user").exec({galaxy_binary, "mount", "-f", "-o", "allow_other", "--auth", "munge",
                                      "--munge-socket", (*k.net)["user"].munge_socket(), k.sched_dial, k.mnt}),
      {.env = {"USER=root"}});
  ASSERT_TRUE(m) << m.error();
  k.mount_proc = std::move(*m);
  ASSERT_TRUE(eventually([&] { return testutil::is_mounted(k.mnt); }, 20s));
  ASSERT_TRUE(eventually([&] { return slurp(k.mnt + "/status").find("nodes_up=3 ") != std::string::npos; }, 20s));

  // Spread, so that the short map jobs go to every node rather than fill one (binpack).
  auto spread = k.c->write_file(k.root, "ctl", "policy spread\n");
  ASSERT_TRUE(spread.has_value()) << spread.error();
  auto r = k.net->run("user", {wordfreq_sh, "-m", k.mnt, "--slice", "24", "--maps", "6"}, {}, 120s);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("result: match"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("jobs: 7 (6 map, 1 reduce)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("on 3 nodes"), std::string::npos) << r.out;
  // Which nodes ran the jobs depends on how fast the maps end: map jobs over 24 small
  // files end in milliseconds, so even spread may put each on the same empty node (seen
  // in CI: "n3 ran 7"). Every node is another host than the user's, which is what this
  // test is about; JobsFromTheUserHostRunOnTheNodeHosts and JoinedNodesRunJobs show jobs
  // on all three.
  int used = 0;
  for (const char* n : {"n1 ran ", "n2 ran ", "n3 ran "}) used += r.out.find(n) != std::string::npos;
  EXPECT_GE(used, 1) << r.out;
  // The table, computed here once more, independently of the script's own check.
  auto local = testutil::run({"/bin/sh", "-c",
                              "export LC_ALL=C; ls -d /usr/share/doc/*/copyright | head -n 24 | xargs cat -- | "
                              "tr -cs '[:alpha:]' '\\n' | tr '[:upper:]' '[:lower:]' | sed '/^$/d' | sort | uniq -c | "
                              "sort -k1,1nr -k2,2 | head -n 20 | awk '{ printf \"  %8d  %s\\n\", $1, $2 }'"});
  ASSERT_EQ(local.status, 0);
  EXPECT_NE(r.out.find("The 20 most frequent words:\n" + local.out), std::string::npos) << r.out;
}

// Loss (30 %) and delay (200 ms) on a node's link during a run: every job finishes once,
// with the right output. The scheduler's failure timeout rides out the slow link (5 s).
TEST(Netns, LossAndDelayOnANodeLink) {
  MAKE(k);
  // 30 % loss in each direction makes TCP's retransmission timer back off: a run of four
  // lost segments stalls the link for 6 s or more (200 ms delay, RTO doubling from
  // 0.4 s), which a 5 s down-after once took for a dead node under CI's load. What this
  // test shows is that a lossy, slow link loses and repeats nothing; the cut-off node is
  // LinkDownLongerThanTheTimeout's.
  k.down_after = "15";
  START(k);
  ASSERT_IMPAIRED(k.net->impair("n2", 30, 200ms));
  std::cout << "[ impaired with " << k.net->how() << " ]\n";
  // Two of the six are bound to n2 (--need node=n2), so that jobs cross the impaired
  // link whatever the placement: left free, all six once went to n1 and n3 under load.
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    std::vector<std::string> opts;
    if (i < 2) opts = {"--need", "node=n2"};
    ids.push_back(k.submit(k.counted("1"), opts));
  }
  ASSERT_EQ(k.wait_all(ids), 0);
  std::set<std::string> where;
  k.expect_each_done_once(ids, &where);
  EXPECT_TRUE(where.contains("n2")) << "no job ran on the impaired node";
  ASSERT_EQ(k.net->clear("n2"), "");
}

// A node host whose munged has another key: the scheduler's attach is refused there, so
// the node never comes up and no job goes to it; the galaxy tool on that host is refused
// by the scheduler. Nothing changes: the other nodes and jobs go on.
TEST(Netns, WrongMungeKeyIsRefusedBothWays) {
  MAKE(k, {{"rogue", true}});
  START(k);
  ASSERT_EQ(k.start_node("rogue"), "");
  // galaxy write takes its data on stdin.
  auto add = k.net->run("user",
                   {galaxy_binary, "write", "-a", k.sched_dial, "--auth", "munge", "--munge-socket",
                    (*k.net)["user"].munge_socket(), "-u", "root", "/ctl"},
                   "node add rogue " + k.node_dials["rogue"] + "\n", 20s);
  ASSERT_EQ(add.status, 0) << add.out << add.err;
  std::this_thread::sleep_for(2s);  // several heartbeats and redials
  auto st = k.read("status");
  EXPECT_EQ(field(st, "nodes_up"), "3") << st;
  auto rogue_status = k.read("nodes/rogue/status");
  EXPECT_EQ(rogue_status.find("name=rogue"), std::string::npos) << rogue_status;
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(k.submit(k.counted("0")));
  ASSERT_EQ(k.wait_all(ids), 0);
  std::set<std::string> where;
  k.expect_each_done_once(ids, &where);
  EXPECT_FALSE(where.contains("rogue"));

  // The other way: a client on the rogue host, with the rogue key, is refused.
  auto jobs_before = k.galaxy("ls", {"-u", "root", "jobs"}).out;
  auto r = k.galaxy("submit", {"-u", "root", "--", "echo", "intruder"}, "rogue", 20s);
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_FALSE(r.err.empty());
  EXPECT_EQ(k.galaxy("ls", {"-u", "root", "jobs"}).out, jobs_before);
}

// A plain 9P client on the user host without credentials: Tattach without Tauth, and the
// galaxy tool with --auth none, are refused, and nothing changes.
TEST(Netns, PlainClientWithoutCredentialsIsRefused) {
  MAKE(k);
  START(k);
  auto jobs_before = k.galaxy("ls", {"-u", "root", "jobs"}).out;
  auto plain = k.net->in("user", [&] { return fsclient::client::dial(k.sched_dial); });
  ASSERT_TRUE(plain) << plain.error();
  auto att = (*plain)->attach("root");
  EXPECT_FALSE(att.has_value());
  if (!att) {
    EXPECT_NE(att.error().find("auth"), std::string::npos) << att.error();
  }
  auto none = k.net->run("user", {galaxy_binary, "submit", "-a", k.sched_dial, "--auth", "none", "-u", "root", "--",
                                  "echo", "intruder"},
                         {}, 20s);
  EXPECT_NE(none.status, 0) << none.out;
  EXPECT_EQ(k.galaxy("ls", {"-u", "root", "jobs"}).out, jobs_before);
  EXPECT_EQ(field(k.read("status"), "nodes_up"), "3");
}

// The scheduler SIGKILLed while jobs run and restarted on the same address: every
// acknowledged job ends once, none is lost. (Jobs of 6 s: six submissions from the user
// host, through MUNGE, took more than 2 s in an ASan build under load, so the first jobs
// ended before the last started and "all six running" never held.)
TEST(Netns, SchedulerKilledAndRestarted) {
  MAKE(k);
  START(k);
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(k.submit(k.counted("6")));
  ASSERT_TRUE(eventually([&] {
    std::size_t n = 0;
    for (auto& [node, js] : k.running_on(ids)) n += js.size();
    return n == 6;
  }));
  k.c.reset();
  k.sched.proc.signal(SIGKILL);
  ASSERT_TRUE(k.sched.proc.wait(5s));
  std::this_thread::sleep_for(500ms);
  ASSERT_EQ(k.start_sched(), "");
  ASSERT_EQ(k.wait_all(ids), 0);
  k.expect_each_done_once(ids);
  auto r = k.galaxy("jobs", {"-u", "root"});
  EXPECT_EQ(r.status, 0) << r.err;
}

// A node's link down for less than the failure timeout (1 s down, 4 s allowed): nothing
// is requeued, nothing lost, every job ran once on its first node.
TEST(Netns, LinkDownShorterThanTheTimeout) {
  MAKE(k);
  k.down_after = "4";
  START(k);
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(k.submit(k.counted("6")));
  std::map<std::string, std::vector<std::string>> by;
  ASSERT_TRUE(eventually([&] {
    by = k.running_on(ids);
    return by["n1"].size() + by["n2"].size() + by["n3"].size() == 6;
  }));
  ASSERT_FALSE(by["n1"].empty());
  ASSERT_EQ(k.net->cut("n1"), "");
  std::this_thread::sleep_for(1s);
  ASSERT_EQ(k.net->restore("n1"), "");
  ASSERT_EQ(k.wait_all(ids), 0);
  k.expect_each_done_once(ids);
  for (const auto& j : by["n1"]) {
    auto st = k.status(j);
    EXPECT_EQ(field(st, "attempts"), "1") << st;
    EXPECT_EQ(field(st, "node"), "n1") << st;
  }
  EXPECT_EQ(field(k.read("status"), "nodes_up"), "3");
}

// A node's link down for longer than the failure timeout (4 s down, 1 s allowed): its
// jobs finish elsewhere; when the link comes back no job has run to completion twice,
// and the node is up again by itself. What guarantees it is fencing: the node's lease
// (1 s down-after less two 0.2 s heartbeats: 0.6 s, sched/reconcile.cpp) runs out before
// the scheduler gives the node up, so n1 kills its copies (they are lost, "fenced")
// before they are requeued; the jobs sleep 3 s, so none finishes within the 0.6 s
// between the cut and the fence. With --no-fence this test fails: n1's copies finish
// while cut off and so do their requeued copies.
TEST(Netns, LinkDownLongerThanTheTimeout) {
  MAKE(k);
  k.down_after = "1";
  START(k);
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(k.submit(k.counted("3")));
  std::map<std::string, std::vector<std::string>> by;
  ASSERT_TRUE(eventually([&] {
    by = k.running_on(ids);
    return by["n1"].size() + by["n2"].size() + by["n3"].size() == 6;
  }));
  ASSERT_FALSE(by["n1"].empty());
  ASSERT_EQ(k.net->cut("n1"), "");
  ASSERT_TRUE(eventually([&] { return field(k.read("status"), "nodes_up") == "2"; }, 10s)) << k.read("status");
  std::this_thread::sleep_for(4s);
  ASSERT_EQ(k.net->restore("n1"), "");
  ASSERT_EQ(k.wait_all(ids), 0);
  EXPECT_TRUE(k.wait_up(3)) << k.read("status");
  std::this_thread::sleep_for(1s);  // a returning node's finished copies would be counted by now
  auto counts = k.runs();
  for (const auto& j : ids) {
    auto st = k.status(j);
    EXPECT_EQ(field(st, "state"), "done") << st;
    EXPECT_EQ(counts[j], 1) << "job " << j << " ran " << counts[j] << " times to its end; " << st;
  }
}

// rootfs/'s configuration files, as README.md's "Several machines" installs them: the head's
// sched.conf as it is (tcp!*!5641, MUNGE); node.conf with HEAD put in (join), or, for the
// dialled alternative, with join commented out and listen set, and the node added on
// /ctl. Only the paths of state, spool and munged's socket are given on the command line
// (and --auth munge, as the files say, since testutil::start_daemon adds --auth none
// to a command line without --auth).
struct rootfs_cluster {
  netcluster& k;
  std::string node_conf(const std::string& name, bool join) {
    std::string text = slurp(GALAXY_SOURCE_DIR "/rootfs/etc/galaxy/node.conf");
    auto sub = [&](const std::string& from, const std::string& to) {
      auto at = text.find(from);
      EXPECT_NE(at, std::string::npos) << from;
      if (at != std::string::npos) text.replace(at, from.size(), to);
    };
    if (join) {
      sub("\njoin = tcp!HEAD!5641\n", "\njoin = tcp!" + (*k.net)["sched"].ip4 + "!5641\n");
    } else {
      sub("\njoin = ", "\n# join = ");
      sub("\n# listen = tcp!*!5640\n", "\nlisten = tcp!*!5640\n");
    }
    std::string path = k.dir.file(name + ".conf");
    std::ofstream(path) << text;
    return path;
  }
  std::string start_head() {
    k.sched_listen = "tcp!*!5641";
    auto h = k.net->start_daemon("sched", {sched_binary, "--config", GALAXY_SOURCE_DIR "/rootfs/etc/galaxy/sched.conf",
                                           "--state", k.dir.file("state"), "--auth", "munge", "--munge-socket",
                                           (*k.net)["sched"].munge_socket()});
    if (!h) return h.error();
    k.sched = std::move(*h);
    if (k.sched.dials.at(0) != "tcp!*!5641") return "the head listens on " + k.sched.dials.at(0);
    k.sched_dial = (*k.net)["sched"].dial(5641);
    return k.connect();
  }
  std::string start_node(const std::string& name, bool join) {
    auto h = k.net->start_daemon(name, {node_binary, "--config", node_conf(name, join), "--spool",
                                        k.dir.file("spool-" + name), "--name", name, "--auth", "munge", "--munge-socket",
                                        (*k.net)[name].munge_socket()},
                                 join ? 0 : 1);
    if (!h) return h.error();
    k.nodes[name] = std::move(*h);
    return {};
  }
};

TEST(Netns, RootfsConfigsDialledNodes) {
  MAKE(k);
  rootfs_cluster r{k};
  ASSERT_EQ(r.start_head(), "");
  for (const char* n : {"n1", "n2", "n3"}) {
    ASSERT_EQ(r.start_node(n, false), "");
    EXPECT_EQ(k.nodes[n].dials.at(0), "tcp!*!5640");
    auto add = k.net->run("user",
                          {galaxy_binary, "write", "-a", k.sched_dial, "--auth", "munge", "--munge-socket",
                           (*k.net)["user"].munge_socket(), "-u", "root", "/ctl"},
                          std::string("node add ") + n + " " + (*k.net)[n].dial(5640) + "\n", 20s);
    ASSERT_EQ(add.status, 0) << add.out << add.err;
  }
  ASSERT_TRUE(k.wait_up(3)) << k.read("status");
  // Root's tasks run as nobody (node.conf: run-as), which may write "ran" (0666).
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(k.submit(k.counted("0")));
  ASSERT_EQ(k.wait_all(ids), 0);
  k.expect_each_done_once(ids);
}

TEST(Netns, RootfsConfigsJoinedNodes) {
  MAKE(k);
  rootfs_cluster r{k};
  ASSERT_EQ(r.start_head(), "");
  for (const char* n : {"n1", "n2", "n3"}) ASSERT_EQ(r.start_node(n, true), "");
  ASSERT_TRUE(k.wait_up(3)) << k.read("status");
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(k.submit(k.counted("0")));
  ASSERT_EQ(k.wait_all(ids), 0);
  k.expect_each_done_once(ids);
}

// Nodes that join (galaxy-node --join, issue 13) appear under nodes/ and run jobs.
TEST(Netns, JoinedNodesRunJobs) {
  MAKE(k);
  ASSERT_EQ(k.start_sched(), "");
  for (const char* n : {"n1", "n2", "n3"}) ASSERT_EQ(k.start_node(n, node_mode::join), "");
  ASSERT_TRUE(k.wait_up(3)) << k.read("status");
  std::vector<std::string> ids;
  // Six one-CPU jobs of 3 s on three two-CPU nodes: placed before any ends, they need all three.
  for (int i = 0; i < 6; ++i) ids.push_back(k.submit(k.counted("3")));
  ASSERT_EQ(k.wait_all(ids), 0);
  std::set<std::string> where;
  k.expect_each_done_once(ids, &where);
  EXPECT_EQ(where, (std::set<std::string>{"n1", "n2", "n3"}));
}

// README.md's "Several machines", run literally: its three ```sh blocks, taken from the
// file at test time, run in the hosts (the first on the head "sched", the second on n1, n2
// and n3, the third on n1, a machine with the key and munged that is also a node). Only
// what cannot run in a network namespace on one machine is replaced, mechanically, and
// always the same way (readme::common and readme::as_root below):
//   - each host's own files: an absolute path of the machine (after a space or a ':':
//     /etc/, /usr/local/bin/) is put under the host's root directory R, and so are the
//     `= /var/...` paths of the installed configuration files;
//   - the user is gx-alice (a test user, known on every host), whose home is a directory
//     under n1's R; every host sees that mount, at the same path, as a shared home would;
//   - HEAD=head.lan becomes the head's address;
//   - apt install munge: what Debian's package does (a key in /etc/munge owned by munge,
//     munged started as munge), once; systemctl restart munge: munged again, as munge;
//   - scp root@$HEAD:PATH DEST: cp from the head's root directory;
//   - systemctl daemon-reload: nothing; systemctl enable --now UNIT: the unit's ExecStart
//     with its paths under R, plus --munge-socket (the host's munged) and, for a node,
//     --name HOST (every namespace shares one hostname), started in the background;
//   - galaxy VERB: the same with --munge-socket (the host's munged); galaxy mount's output
//     goes to a file (it forks and would hold the test's pipe);
//   - the shell has a root login's umask, 022 (the test's own may be stricter).
// Between the node blocks and the user block the test waits until the head has 3 nodes up.
namespace readme {

// The ```sh blocks of the section "## Several machines", in order.
std::vector<std::string> blocks() {
  std::string text = slurp(GALAXY_SOURCE_DIR "/README.md");
  auto start = text.find("\n## Several machines\n");
  if (start == std::string::npos) return {};
  auto end = text.find("\n## ", start + 1);
  std::string sec = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
  std::vector<std::string> out;
  for (auto at = sec.find("```sh\n"); at != std::string::npos; at = sec.find("```sh\n", at)) {
    auto body = at + 6;
    auto close = sec.find("```", body);
    if (close == std::string::npos) break;
    out.push_back(sec.substr(body, close - body));
    at = close + 3;
  }
  return out;
}

// The paths of the machine, put under $R (after a space or a ':' only).
std::string under_root(std::string b, const std::string& head_ip) {
  for (const std::string from : {"/etc/", "/usr/local/bin/"}) {
    std::string outb;
    for (std::size_t i = 0; i < b.size();) {
      if (b.compare(i, from.size(), from) == 0 && i > 0 && (b[i - 1] == ' ' || b[i - 1] == ':')) {
        outb += "$R" + from;
        i += from.size();
      } else {
        outb += b[i++];
      }
    }
    b = outb;
  }
  auto h = b.find("HEAD=head.lan");
  if (h != std::string::npos) b.replace(h, 13, "HEAD=" + head_ip);
  return b;
}

// Every block: the host's programs and munged, the checkout, and galaxy VERB.
const char* common = R"sh(set -e
umask 022
export PATH="$R/usr/local/bin:$PATH"
SOCK=$R/run/munge/munge.socket.2
cd "$WORK"
galaxy() {
  v=$1; shift
  if [ "$v" = mount ]; then
    command galaxy mount --munge-socket "$SOCK" "$@" </dev/null >/dev/null 2>&1
  else
    command galaxy "$v" --munge-socket "$SOCK" "$@"
  fi
}
)sh";

// The blocks run as root (head, nodes): the machine's packages and services.
const char* as_root = R"sh(mkdir -p "$R/usr/local/bin" "$R/etc/systemd/system" "$R/tmp" "$R/var/lib" "$R/var/spool" "$R/var/log"
start_munged() {
  runuser -u munge -- /usr/sbin/munged --socket="$SOCK" --key-file="$R/etc/munge/munge.key" \
    --pid-file="$R/run/munge/munged.pid" --log-file="$R/var/log/munge/munged.log" \
    --seed-file="$R/var/lib/munge/munge.seed" </dev/null >/dev/null 2>&1
}
stop_munged() { kill "$(cat "$R/run/munge/munged.pid")"; while [ -e "$SOCK" ]; do sleep 0.05; done; }
apt() {
  [ "$1 $2" = "install munge" ] || { echo "apt: only 'install munge' is replaced here" >&2; return 1; }
  command -v munged >/dev/null || { echo "apt: munge is not installed on this machine" >&2; return 1; }
  [ -e "$R/etc/munge/munge.key" ] && return 0
  mkdir -p "$R/etc/munge" "$R/run/munge" "$R/var/log/munge" "$R/var/lib/munge"
  chown munge:munge "$R/etc/munge" "$R/run/munge" "$R/var/log/munge" "$R/var/lib/munge"
  chmod 700 "$R/etc/munge"
  dd if=/dev/urandom of="$R/etc/munge/munge.key" bs=1024 count=1 2>/dev/null
  chown munge:munge "$R/etc/munge/munge.key"; chmod 400 "$R/etc/munge/munge.key"
  start_munged
}
scp() { p=${1#*:}; p=${p#"$R"}; cp "$HEADROOT$p" "$2"; }
start_unit() {
  cmd=$(sed -n 's/^ExecStart=//p' "$R/etc/systemd/system/$1.service" | sed "s#/usr/local/bin/#$R/usr/local/bin/#g; s#/etc/#$R/etc/#g")
  for f in "$R"/etc/galaxy/*.conf; do sed -i "s#= /var/#= $R/var/#" "$f"; done
  extra="--munge-socket $SOCK"
  [ "$1" = galaxy-node ] && extra="$extra --name $NAME"
  setsid $cmd $extra </dev/null >"$R/var/log/$1.log" 2>&1 &
  i=0
  until grep -q "^listening on\|^joining" "$R/var/log/$1.log"; do
    i=$((i + 1)); [ $i -lt 200 ] || { cat "$R/var/log/$1.log" >&2; return 1; }; sleep 0.05
  done
}
systemctl() {
  case "$1" in
    daemon-reload) ;;
    restart) [ "$2" = munge ] && { stop_munged; start_munged; } ;;
    enable) shift; [ "$1" = --now ] && shift; start_unit "$1" ;;
    *) echo "systemctl $1: not replaced here" >&2; return 1 ;;
  esac
}
)sh";

}  // namespace readme

TEST(Netns, ReadmeSeveralMachinesRunsLiterally) {
  REQUIRE_FUSE();
  REQUIRE_USERS(alice, bob);
  // The user block mounts ~/galaxy as gx-alice, through fusermount3.
  if (!testutil::fuse_open_to_users()) {
    GTEST_SKIP() << "/dev/fuse is not readable and writable by ordinary users here (mode 0600), so the README's "
                    "user block cannot mount ~/galaxy";
  }
  MAKE(k);
  auto bl = readme::blocks();
  ASSERT_EQ(bl.size(), 3u) << "README.md's \"Several machines\" should have three sh blocks (head, node, user)";
  std::string work = k.dir.file("work");
  ::mkdir(work.c_str(), 0755);
  ASSERT_EQ(::symlink(GALAXY_BINARY_DIR, (work + "/build").c_str()), 0);
  ASSERT_EQ(::symlink(GALAXY_SOURCE_DIR "/rootfs", (work + "/rootfs").c_str()), 0);
  ASSERT_EQ(::symlink(GALAXY_SOURCE_DIR "/examples", (work + "/examples").c_str()), 0);
  std::string head_ip = (*k.net)["sched"].ip4;
  auto root_of = [&](const std::string& h) { return k.dir.file("root-" + h); };
  for (const char* h : {"sched", "n1", "n2", "n3"}) {
    ::mkdir(root_of(h).c_str(), 0755);
    ::chmod(root_of(h).c_str(), 0755);  // a machine's / is 0755
  }
  std::string home = root_of("n1") + "/home";
  ::mkdir(home.c_str(), 0755);
  home += "/gx-alice";
  ::mkdir(home.c_str(), 0755);
  ASSERT_EQ(::chown(home.c_str(), alice->first, alice->second), 0);
  k.mnt = home + "/galaxy";  // unmounted by the fixture at the end
  auto run = [&](const std::string& host, const std::string& block, bool user = false) {
    std::string script = "R='" + root_of(host) + "'\nHEADROOT='" + root_of("sched") + "'\nNAME='" + host +
                         "'\nWORK='" + work + "'\n" + readme::common + (user ? "" : readme::as_root) +
                         readme::under_root(block, head_ip);
    if (!user) return k.net->run(host, {"/bin/sh", "-c", script}, {}, 240s);
    return k.net->run(host, {"/usr/sbin/runuser", "-u", "gx-alice", "--", "/usr/bin/env", "HOME=" + home,
                             "USER=gx-alice", "/bin/sh", "-c", script},
                      {}, 240s);
  };
  auto head = run("sched", bl[0]);
  ASSERT_EQ(head.status, 0) << head.out << head.err;
  EXPECT_NE(slurp(root_of("sched") + "/var/log/galaxy-sched.log").find("listening on tcp!*!5641"), std::string::npos);
  for (const char* n : {"n1", "n2", "n3"}) {
    auto r = run(n, bl[1]);
    ASSERT_EQ(r.status, 0) << n << ": " << r.out << r.err;
  }
  // The head counts its nodes (the test's own look, not the README's).
  std::string sock = root_of("n1") + "/run/munge/munge.socket.2";
  auto up = [&] {
    auto st = k.net->run("n1", {galaxy_binary, "cat", "--munge-socket", sock, "-a", head_ip + ":5641", "status"});
    return field(st.out, "nodes_up");
  };
  ASSERT_TRUE(eventually([&] { return up() == "3"; }, 30s)) << up();
  auto user = run("n1", bl[2], true);
  EXPECT_EQ(user.status, 0) << user.out << user.err;
  for (const char* n : {"n1", "n2", "n3"}) EXPECT_NE(user.out.find(n), std::string::npos) << user.out;
  EXPECT_NE(user.out.find("result: match"), std::string::npos) << user.out << user.err;
}

}  // namespace
