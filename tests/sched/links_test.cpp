// galaxy-sched's node links at scale and under faults (issue 13: links that scale,
// failure detection): real galaxy-node processes and a real galaxy-sched on port 0, and
// node_link driven in-process over a connection the test made itself (the joined path).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "fsclient/client.hpp"
#include "sched/node_link.hpp"
#include "srv9p/munge.hpp"
#include "tests/testmunge.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
const std::string node_binary = GALAXY_BINARY_DIR "/galaxy-node";
const std::string sched_binary = GALAXY_BINARY_DIR "/galaxy-sched";

int threads_of(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec);
       !ec && it != std::filesystem::directory_iterator(); ++it) {
    ++n;
  }
  return n;
}

struct nodes {
  testutil::temp_dir dir;
  std::vector<testutil::daemon_handle> n;
  std::string start(int count) {
    ::chmod(dir.path().c_str(), 0711);  // tasks run as nobody and must reach the spools
    for (int i = static_cast<int>(n.size()); i < count; ++i) {
      auto name = "n" + std::to_string(i + 1);
      auto h = testutil::start_daemon({node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", dir.file(name), "--name",
                                       name, "--cpus", "1", "--unknown-user", "nobody"});
      if (!h) return h.error();
      n.push_back(std::move(*h));
    }
    return {};
  }
};

struct sched_run {
  testutil::daemon_handle d;
  std::unique_ptr<fsclient::client> c;
  std::uint32_t root = 0;
  // Starts galaxy-sched over the first count nodes and waits until they are all up.
  std::string start(nodes& ns, int count, const std::string& state, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{sched_binary, "--listen", "tcp!127.0.0.1!0", "--state", state, "--heartbeat", "0.2",
                                  "--admin", "root"};
    for (int i = 0; i < count; ++i) {
      argv.push_back("--node");
      argv.push_back("n" + std::to_string(i + 1) + "=" + ns.n[i].dials.at(0));
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto h = testutil::start_daemon(argv);
    if (!h) return h.error();
    d = std::move(*h);
    auto cl = fsclient::client::dial(d.dials.at(0));
    if (!cl) return cl.error();
    c = std::move(*cl);
    auto r = c->attach("root");
    if (!r) return r.error();
    root = *r;
    if (!wait_status("nodes_up=" + std::to_string(count) + " ")) return "nodes did not come up: " + status();
    return {};
  }
  std::string status() { return c->read_file(root, "status").value_or("<error>"); }
  bool wait_status(const std::string& want, std::chrono::seconds t = 30s) {
    auto deadline = std::chrono::steady_clock::now() + t;
    while (std::chrono::steady_clock::now() < deadline) {
      if (status().find(want) != std::string::npos) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
};

// Before: a dialer thread and a client reader thread per node (106 threads for 100 nodes).
TEST(Links, TheSchedulersThreadsDoNotGrowWithTheNumberOfNodes) {
  constexpr int many = 20;
  nodes ns;
  ASSERT_EQ(ns.start(many), "");
  int one_threads = 0, many_threads = 0;
  {
    sched_run s;
    ASSERT_EQ(s.start(ns, 1, ns.dir.file("state1")), "");
    one_threads = threads_of(s.d.proc.pid());
  }
  {
    sched_run s;
    ASSERT_EQ(s.start(ns, many, ns.dir.file("state20")), "");
    // Each node relayed once, so every link has done real work.
    for (int i = 1; i <= many; ++i) {
      auto st = s.c->read_file(s.root, "nodes/n" + std::to_string(i) + "/status");
      ASSERT_TRUE(st) << st.error();
    }
    many_threads = threads_of(s.d.proc.pid());
  }
  RecordProperty("threads_1_node", one_threads);
  RecordProperty("threads_20_nodes", many_threads);
  EXPECT_GT(one_threads, 0);
  EXPECT_EQ(many_threads, one_threads) << "1 node: " << one_threads << " threads, " << many << " nodes: " << many_threads;
}

// Pipelines writes of `each` bytes to an open relayed file until `total` bytes are out;
// returns a future for the number of replies (any answer, error or not).
// A relayed file that the scheduler passes writes to as they come, open for writing on
// s's client: a new task's stdin on node (nodes/NODE/task/N/stdin). Its ctl files would not
// do: the scheduler takes those by lines and refuses a 120 kB line itself
// (sched_tree::relay_write), so nothing would reach the link.
fsclient::result<std::uint32_t> open_relayed_stdin(sched_run& s, const std::string& node) {
  auto t = s.c->read_file(s.root, "nodes/" + node + "/task/clone");
  if (!t) return std::unexpected(t.error());
  while (!t->empty() && t->back() == '\n') t->pop_back();
  auto f = s.c->walk(s.root, "nodes/" + node + "/task/" + *t + "/stdin");
  if (!f) return f;
  if (auto o = s.c->open(*f, srv9p::owrite); !o) return std::unexpected(o.error());
  return f;
}

struct pour {
  std::atomic<int> answered{0};
  int sent = 0;
  void run(fsclient::client& c, std::uint32_t fid, std::size_t each, std::size_t total) {
    for (std::size_t off = 0; off < total; off += each, ++sent) {
      c.send(srv9p::twrite{fid, 0, std::string(each, 'x')}, [this](fsclient::client::reply) { ++answered; });
    }
  }
};

// A node that stops reading (SIGSTOP) while the scheduler relays a lot to it: the
// scheduler keeps answering everyone else (its io thread never waits for that node).
TEST(Links, ANodeThatStopsReadingDoesNotStallTheScheduler) {
  nodes ns;
  ASSERT_EQ(ns.start(2), "");
  pour p;  // before s: its callbacks run until s's client is gone
  sched_run s;
  // Silence would take 60 s: within the test, n1 is only stopped, never marked down.
  ASSERT_EQ(s.start(ns, 2, ns.dir.file("state"), {"--down-after", "60"}), "");
  auto f = open_relayed_stdin(s, "n1");
  ASSERT_TRUE(f) << f.error();
  ASSERT_EQ(::kill(ns.n[0].proc.pid(), SIGSTOP), 0);
  // 200 writes of 120 kB (within --relay-requests 256): 24 MB, far more than the kernel
  // buffers between the scheduler and a node that does not read.
  // On a thread of its own: a scheduler that stalls stops reading this client too.
  std::thread pourer([&] { p.run(*s.c, *f, 120'000, 24'000'000); });
  std::this_thread::sleep_for(500ms);
  // Other clients: their reads of /status and of n2's files still answer.
  auto reads = std::async(std::launch::async, [&] {
    auto other = fsclient::client::dial(s.d.dials.at(0));
    if (!other) return "dial: " + other.error();
    auto r = (*other)->attach("root");
    if (!r) return std::string("attach: ") + r.error();
    for (int i = 0; i < 5; ++i) {
      auto st = (*other)->read_file(*r, "status");
      if (!st || st->find("nodes_up=2 ") == std::string::npos) return "status: " + st.value_or(st.error());
      auto n2 = (*other)->read_file(*r, "nodes/n2/status");
      if (!n2 || n2->find("name=n2") == std::string::npos) return "n2: " + n2.value_or(n2.error());
    }
    return std::string("ok");
  });
  bool answered = reads.wait_for(15s) == std::future_status::ready;
  ::kill(ns.n[0].proc.pid(), SIGCONT);
  // A stalled scheduler is killed, which ends the reads and the pouring.
  if (!answered) s.d.proc = {};
  pourer.join();
  ASSERT_TRUE(answered) << "the scheduler stopped answering while n1 was stopped";
  EXPECT_EQ(reads.get(), "ok");
  // Once n1 reads again, every queued write reaches it and is answered; n1 stayed up.
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (p.answered < p.sent && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(p.answered.load(), p.sent);
  EXPECT_NE(s.status().find("nodes_up=2 "), std::string::npos) << s.status();
}

// The same with --link-queue-bytes below what is poured: the scheduler closes n1's link
// (down at once, long before --down-after's silence), and dials it again once it answers.
TEST(Links, AQueueOverItsBoundClosesTheLinkAndTheNodeComesBack) {
  nodes ns;
  ASSERT_EQ(ns.start(2), "");
  pour p;  // before s: its callbacks run until s's client is gone
  sched_run s;
  ASSERT_EQ(s.start(ns, 2, ns.dir.file("state"), {"--down-after", "60", "--reconnect", "0.3", "--link-queue-bytes",
                                                   "2000000"}),
            "");
  auto f = open_relayed_stdin(s, "n1");
  ASSERT_TRUE(f) << f.error();
  ASSERT_EQ(::kill(ns.n[0].proc.pid(), SIGSTOP), 0);
  p.run(*s.c, *f, 120'000, 24'000'000);
  bool down = s.wait_status("nodes_up=1 nodes_down=1 ", 20s);
  ::kill(ns.n[0].proc.pid(), SIGCONT);
  EXPECT_TRUE(down) << s.status();
  // Every relayed write got its answer (an error: the connection is gone).
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (p.answered < p.sent && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(p.answered.load(), p.sent);
  EXPECT_TRUE(s.wait_status("nodes_up=2 ", 20s)) << s.status();
}

// ---- node_link in-process, over a connection the test made: the joined path -------------

struct io_thread {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  std::thread t{[this] { io.run(); }};
  ~io_thread() {
    work.reset();
    io.stop();
    t.join();
  }
};

// Connects to a node's listener (as a joining node's connection arrives) and adopts it.
fsclient::result<std::unique_ptr<fsclient::client>> adopt_tcp(asio::io_context& io, const std::string& dial) {
  asio::io_context local;
  asio::ip::tcp::socket s(local);
  auto port = static_cast<std::uint16_t>(std::stoi(dial.substr(dial.rfind('!') + 1)));
  asio::error_code ec;
  s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) return std::unexpected(ec.message());
  std::promise<fsclient::result<std::unique_ptr<fsclient::client>>> p;
  fsclient::client::adopt(io, s.release(), "galaxy-9p joined", {}, [&p](auto c) { p.set_value(std::move(c)); });
  return p.get_future().get();
}

struct link_watch {
  std::mutex m;
  int ups = 0;
  std::vector<std::string> downs;
  sched::node_link::hooks hooks() {
    return {.up = [this] {
              std::lock_guard lk(m);
              ++ups;
            },
            .down = [this](std::string why, std::chrono::steady_clock::time_point) {
              std::lock_guard lk(m);
              downs.push_back(why);
            }};
  }
  bool wait(const std::function<bool()>& pred, std::chrono::milliseconds t = 20s) {
    auto deadline = std::chrono::steady_clock::now() + t;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard lk(m);
        if (pred()) return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
};

template <class F>
auto on(asio::io_context& io, F f) {
  std::packaged_task<decltype(f())()> task(std::move(f));
  auto fut = task.get_future();
  asio::post(io, [&task] { task(); });
  return fut.get();
}

TEST(JoinedLink, AnAdoptedConnectionServesAsALinkAndStaysDownOnceClosedOrSilent) {
  nodes ns;
  ASSERT_EQ(ns.start(2), "");
  io_thread t;
  sched::link_options lo;
  lo.uname = "root";
  lo.heartbeat_ms = 100;
  lo.down_after_ms = 800;
  lo.reconnect_ms = 100;
  std::vector<std::shared_ptr<sched::node_link>> links;
  std::vector<std::unique_ptr<link_watch>> watches;
  for (int i = 0; i < 2; ++i) {
    auto c = adopt_tcp(t.io, ns.n[i].dials.at(0));
    ASSERT_TRUE(c) << c.error();
    watches.push_back(std::make_unique<link_watch>());
    auto l = std::make_shared<sched::node_link>(t.io, "n" + std::to_string(i + 1), std::move(*c), lo,
                                                watches.back()->hooks());
    EXPECT_TRUE(l->joined());
    EXPECT_EQ(l->dial(), "");
    on(t.io, [&] {
      l->start();
      return 0;
    });
    links.push_back(l);
  }
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(watches[i]->wait([&] { return watches[i]->ups == 1; })) << "n" << i + 1 << " never came up";
    // A batch through the link reads the node's own status.
    std::promise<sched::node_link::replies> got;
    on(t.io, [&] {
      links[i]->batch(
          "root",
          [](sched::node_conn& c, std::uint32_t root) {
            std::uint32_t f = c.client().alloc_fid();
            return std::vector<srv9p::message>{srv9p::twalk{root, f, {"status"}}, srv9p::topen{f, srv9p::oread},
                                               srv9p::tread{f, 0, 8192}, srv9p::tclunk{f}};
          },
          [&got](sched::node_link::replies r) { got.set_value(std::move(r)); });
      return 0;
    });
    auto r = got.get_future().get();
    ASSERT_EQ(r.size(), 4u);
    ASSERT_TRUE(r[2]) << r[2].error();
    EXPECT_NE(std::get<srv9p::rread>(*r[2]).data.find("name=n" + std::to_string(i + 1)), std::string::npos);
    EXPECT_EQ(on(t.io, [&] { return links[i]->info().ncpu; }), 1u);
  }
  // n1 stops answering: silence, down after down_after_ms. n2 dies: its connection
  // closes, down at once.
  ASSERT_EQ(::kill(ns.n[0].proc.pid(), SIGSTOP), 0);
  ASSERT_EQ(::kill(ns.n[1].proc.pid(), SIGKILL), 0);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(watches[i]->wait([&] { return !watches[i]->downs.empty(); })) << "n" << i + 1 << " never went down";
  }
  {
    std::lock_guard lk(watches[0]->m);
    EXPECT_NE(watches[0]->downs[0].find("no answer for"), std::string::npos) << watches[0]->downs[0];
  }
  {
    std::lock_guard lk(watches[1]->m);
    EXPECT_EQ(watches[1]->downs[0].find("no answer for"), std::string::npos) << watches[1]->downs[0];
  }
  // n1 answers again, but a joined link never redials or revives: it stays down until the
  // node joins anew.
  ::kill(ns.n[0].proc.pid(), SIGCONT);
  std::this_thread::sleep_for(1s);
  for (int i = 0; i < 2; ++i) {
    EXPECT_FALSE(on(t.io, [&] { return links[i]->up() || links[i]->conn() != nullptr; }));
    std::lock_guard lk(watches[i]->m);
    EXPECT_EQ(watches[i]->ups, 1);
    EXPECT_EQ(watches[i]->downs.size(), 1u);
  }
  on(t.io, [&] {
    for (auto& l : links) l->stop();
    return 0;
  });
}

// On a node that authenticates, the first request for a user waits for the challenge of
// that user's afid (sched::node_conn::root: Tauth and Tread, then Twrite, Tattach and the
// request in one write). Requests for the same user asked meanwhile wait behind it and
// share its one attach; a refused attach is every request's error.
TEST(Links, BatchesForANewUserOnAnAuthenticatingNodeShareOneAttach) {
  REQUIRE_MUNGED();
  testmunge::munged m;
  testutil::temp_dir dir;
  ::chmod(dir.path().c_str(), 0711);
  auto node = testutil::start_daemon({node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", dir.file("n1"), "--name",
                                      "n1", "--auth", "munge", "--munge-socket", m.socket(), "--unknown-user", "nobody"});
  ASSERT_TRUE(node) << node.error();
  io_thread t;
  sched::link_options lo;
  lo.uname = "root";
  lo.heartbeat_ms = 100;
  lo.credential = [sock = m.socket()](std::string_view bind) { return srv9p::munge_credential(sock, bind); };
  link_watch w;
  auto l = std::make_shared<sched::node_link>(t.io, "n1", node->dials.at(0), lo, w.hooks());
  on(t.io, [&] {
    l->start();
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return w.ups == 1; })) << "n1 never came up";
  auto read_status = [](sched::node_conn& c, std::uint32_t root) {
    std::uint32_t f = c.client().alloc_fid();
    return std::vector<srv9p::message>{srv9p::twalk{root, f, {"status"}}, srv9p::topen{f, srv9p::oread},
                                       srv9p::tread{f, 0, 8192}, srv9p::tclunk{f}};
  };
  std::promise<sched::node_link::replies> got[3], bad;
  on(t.io, [&] {
    for (auto& g : got) l->batch("nobody", read_status, [&g](sched::node_link::replies r) { g.set_value(std::move(r)); });
    l->batch("no/body", read_status, [&bad](sched::node_link::replies r) { bad.set_value(std::move(r)); });
    return 0;
  });
  for (auto& g : got) {
    auto r = g.get_future().get();
    ASSERT_EQ(r.size(), 4u);
    ASSERT_TRUE(r[2]) << r[2].error();
    EXPECT_NE(std::get<srv9p::rread>(*r[2]).data.find("name=n1"), std::string::npos);
  }
  auto r = bad.get_future().get();
  ASSERT_EQ(r.size(), 4u);
  for (auto& e : r) {
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error(), "attach: bad attach name: contains '/'");
  }
  // The user's attach is kept: a later request uses it.
  std::promise<sched::node_link::replies> later;
  on(t.io, [&] {
    l->batch("nobody", read_status, [&later](sched::node_link::replies r) { later.set_value(std::move(r)); });
    return 0;
  });
  auto lr = later.get_future().get();
  ASSERT_EQ(lr.size(), 4u);
  EXPECT_TRUE(lr[2]) << lr[2].error();
  on(t.io, [&] {
    l->stop();
    return 0;
  });
}

}  // namespace
