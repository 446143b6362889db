// galaxy-node --join, end to end: real galaxy-node processes join a real galaxy-sched on
// loopback TCP with a real munged, serve their tree on the connection they made, and run
// jobs; and everything a join must refuse (a name taken, a version not spoken, a user not
// allowed, another cluster's key, no credential, a joiner that never serves, a scheduler
// whose credential is bound to another join). Node side: a fake scheduler in this process
// (srv9p::server with a /join that hands the connection to the test).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include "ctl/join.hpp"
#include "fsclient/client.hpp"
#include "srv9p/errors.hpp"
#include "srv9p/munge.hpp"
#include "srv9p/server.hpp"
#include "tests/testmunge.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
const std::string node_binary = GALAXY_BINARY_DIR "/galaxy-node";
const std::string sched_binary = GALAXY_BINARY_DIR "/galaxy-sched";

fsclient::client::options munge_opts(const std::string& socket) {
  fsclient::client::options o;
  o.credential = [socket](std::string_view bind) { return srv9p::munge_credential(socket, bind); };
  return o;
}

// Reads a process's stderr until it holds text or the limit passes; all that was read.
std::string wait_stderr(testutil::process& p, std::string& seen, const std::string& text,
                        std::chrono::seconds limit = 20s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (seen.find(text) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    testutil::process::fill(p.stderr_fd(), seen, std::chrono::steady_clock::now() + 200ms);
  }
  return seen;
}

struct join_cluster {
  testmunge::munged m;
  testutil::temp_dir dir;
  testutil::daemon_handle sched;
  std::unique_ptr<fsclient::client> c;
  std::uint32_t root = 0;

  std::vector<std::string> extra_;
  // Starts the scheduler (again, on the same port and state, after the first start).
  std::string start(const std::vector<std::string>& extra = {}) {
    ::chmod(dir.path().c_str(), 0711);
    std::string listen = sched.dials.empty() ? "tcp!127.0.0.1!0" : sched.dials.at(0);
    extra_ = extra;
    std::vector<std::string> argv{sched_binary, "--listen", listen, "--auth", "munge", "--munge-socket",
                                  m.socket(), "--state", dir.file("state"), "--heartbeat", "0.2", "--admin", "root"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto s = testutil::start_daemon(argv);
    if (!s) return s.error();
    sched = std::move(*s);
    auto cl = fsclient::client::dial(sched.dials.at(0), munge_opts(m.socket()));
    if (!cl) return cl.error();
    c = std::move(*cl);
    auto r = c->attach("root");
    if (!r) return r.error();
    root = *r;
    return {};
  }
  // A galaxy-node that joins the scheduler as name; stderr is captured.
  testutil::process node(const std::string& name, const std::string& spool, std::vector<std::string> extra = {},
                         std::string munge_socket = {}) {
    std::vector<std::string> argv{node_binary, "--join", sched.dials.at(0), "--auth", "munge", "--munge-socket",
                                  munge_socket.empty() ? m.socket() : munge_socket, "--spool", dir.file(spool),
                                  "--name", name, "--join-retry", "0.2", "--join-retry-max", "1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto p = testutil::process::spawn(argv, {.capture_stderr = true});
    EXPECT_TRUE(p) << (p ? "" : p.error());
    auto line = p->read_line(10s);
    EXPECT_TRUE(line && line->starts_with("joining ")) << (line ? *line : line.error());
    return std::move(*p);
  }
  // Kills the scheduler with SIGKILL and starts it again on the same port and state.
  std::string restart() {
    sched.proc.signal(SIGKILL);
    sched.proc.wait();
    c.reset();
    return start(extra_);
  }
  std::string submit(const std::string& cmd) {
    auto n = read("jobs/clone");
    while (!n.empty() && n.back() == '\n') n.pop_back();
    auto ok = c->write_file(root, "jobs/" + n + "/ctl", "exec " + cmd + "\n");
    EXPECT_TRUE(ok.has_value()) << (ok ? "" : ok.error());
    return n;
  }
  std::string read(const std::string& path) {
    auto r = c->read_file(root, path);
    return r ? *r : "<error: " + r.error() + ">";
  }
  bool wait_for(const std::string& path, const std::string& text, std::chrono::seconds limit = 20s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (read(path).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
  std::string run_job(const std::string& cmd) {
    auto n = read("jobs/clone");
    while (!n.empty() && n.back() == '\n') n.pop_back();
    auto ok = c->write_file(root, "jobs/" + n + "/ctl", "exec " + cmd + "\n");
    EXPECT_TRUE(ok.has_value()) << (ok ? "" : ok.error());
    EXPECT_TRUE(wait_for("jobs/" + n + "/status", "state=done")) << read("jobs/" + n + "/status");
    return read("jobs/" + n + "/stdout");
  }
  // Writes text to /join on a new connection of client cl (attached as uname); the error.
  std::string write_join(fsclient::client& cl, const std::string& uname, const std::string& text) {
    auto r = cl.attach(uname);
    if (!r) return "attach: " + r.error();
    auto f = cl.walk(*r, "join");
    if (!f) return f.error();
    if (auto o = cl.open(*f, srv9p::owrite); !o) return o.error();
    auto w = cl.write(*f, 0, text);
    return w ? "" : w.error();
  }
};

std::string line(const std::string& name, unsigned version = 1) {
  ctl::join_request r;
  r.version = version;
  r.name = name;
  r.nonce = std::string(32, 'a');
  r.arch = "amd64";
  r.ncpu = 1;
  r.mem_bytes = 1 << 30;
  return ctl::format_join(r);
}

TEST(Join, ANodeJoinsRunsJobsAndRejoinsAfterARestart) {
  REQUIRE_MUNGED();
  join_cluster k;
  ASSERT_EQ(k.start(), "");
  auto n1 = k.node("n1", "n1", {"--label", "zone=a b"});
  ASSERT_TRUE(k.wait_for("status", "nodes_up=1 ")) << k.read("status");
  auto nodes = k.c->list_dir(k.root, "nodes");
  ASSERT_TRUE(nodes);
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ((*nodes)[0].name, "n1");
  // The node's own files, read through the scheduler over the node's connection.
  EXPECT_NE(k.read("nodes/n1/status").find("name=n1 "), std::string::npos) << k.read("nodes/n1/status");
  EXPECT_NE(k.read("nodes/n1/labels").find("zone=a b\n"), std::string::npos) << k.read("nodes/n1/labels");
  EXPECT_EQ(k.run_job("echo hi"), "hi\n");
  // A joined node is no setting of the scheduler's: /ctl does not list it.
  EXPECT_EQ(k.read("ctl").find("node add n1"), std::string::npos) << k.read("ctl");

  n1.signal(SIGKILL);
  n1.wait();
  ASSERT_TRUE(k.wait_for("status", "nodes_up=0 nodes_down=1 ")) << k.read("status");
  auto again = k.node("n1", "n1");
  ASSERT_TRUE(k.wait_for("status", "nodes_up=1 ")) << k.read("status");
  EXPECT_EQ(k.run_job("echo again"), "again\n");
}

TEST(Join, ANameAlreadyConnectedIsRefusedAndNothingChanges) {
  REQUIRE_MUNGED();
  join_cluster k;
  ASSERT_EQ(k.start(), "");
  auto n1 = k.node("n1", "n1");
  ASSERT_TRUE(k.wait_for("status", "nodes_up=1 ")) << k.read("status");
  auto dup = k.node("n1", "dup");
  std::string err;
  EXPECT_NE(wait_stderr(dup, err, "join: node n1 is already connected").find("join: node n1 is already connected"),
            std::string::npos)
      << err;
  // The first node is untouched, and still serves.
  EXPECT_NE(k.read("status").find("nodes_up=1 nodes_down=0 "), std::string::npos) << k.read("status");
  EXPECT_NE(k.read("nodes/n1/status").find("name=n1 "), std::string::npos);
  EXPECT_EQ(k.run_job("echo still"), "still\n");
}

TEST(Join, ANameTheSchedulerDialsIsRefused) {
  REQUIRE_MUNGED();
  join_cluster k;
  ASSERT_EQ(k.start({"--node", "n1=tcp!127.0.0.1!9"}), "");
  auto cl = fsclient::client::dial(k.sched.dials.at(0), munge_opts(k.m.socket()));
  ASSERT_TRUE(cl);
  EXPECT_EQ(k.write_join(**cl, "root", line("n1")),
            "join: node n1 is dialled by the scheduler (--node or node add)");
}

TEST(Join, AVersionTheSchedulerCannotSpeakIsRefused) {
  REQUIRE_MUNGED();
  join_cluster k;
  ASSERT_EQ(k.start(), "");
  auto cl = fsclient::client::dial(k.sched.dials.at(0), munge_opts(k.m.socket()));
  ASSERT_TRUE(cl);
  EXPECT_EQ(k.write_join(**cl, "root", line("n9", 2)), "join: version 2 not spoken here (1)");
  EXPECT_EQ(k.write_join(**cl, "root", "join version=1 name=a/b\n"), "join: bad name 'a/b': expected letters, digits, '-', '_' or '.'");
  // The refused writes left the connection a client's: it still reads the tree.
  auto r = (*cl)->attach("root");
  ASSERT_TRUE(r);
  EXPECT_TRUE((*cl)->read_file(*r, "status").has_value());
  EXPECT_NE(k.read("status").find("nodes_up=0 nodes_down=0 "), std::string::npos);
}

TEST(Join, AUserNotAllowedToJoinIsRefused) {
  REQUIRE_MUNGED();
  REQUIRE_USERS(alice, bob);
  for (bool allowed : {false, true}) {
    SCOPED_TRACE(allowed ? "with --join-user gx-bob" : "without");
    join_cluster k;
    std::vector<std::string> extra;
    if (allowed) extra = {"--join-user", "gx-bob"};
    ASSERT_EQ(k.start(extra), "");
    fsclient::client::options o;
    o.credential = [sock = k.m.socket(), bob = *bob](std::string_view bind) -> fsclient::result<std::string> {
      return testmunge::credential(sock, std::string(bind), bob);
    };
    auto cl = fsclient::client::dial(k.sched.dials.at(0), o);
    ASSERT_TRUE(cl);
    auto r = (*cl)->attach("gx-bob");
    ASSERT_TRUE(r) << r.error();
    auto f = (*cl)->walk(*r, "join");
    ASSERT_TRUE(f);
    auto opened = (*cl)->open(*f, srv9p::owrite);
    if (!allowed) {
      ASSERT_FALSE(opened);
      EXPECT_EQ(opened.error(), fmt::format("join: uid {} (gx-bob) may not join nodes", bob->first));
    } else {
      EXPECT_TRUE(opened) << opened.error();
    }
  }
}

TEST(Join, ANodeWithAnotherClustersKeyIsRefused) {
  REQUIRE_MUNGED();
  join_cluster k;
  ASSERT_EQ(k.start(), "");
  testmunge::munged other;  // a munged with a key of its own
  auto n = k.node("n1", "n1", {}, other.socket());
  std::string err;
  EXPECT_NE(wait_stderr(n, err, "credential invalid").find("credential invalid"), std::string::npos) << err;
  EXPECT_NE(k.read("status").find("nodes_up=0 nodes_down=0 "), std::string::npos) << k.read("status");
  auto nodes = k.c->list_dir(k.root, "nodes");
  ASSERT_TRUE(nodes);
  EXPECT_TRUE(nodes->empty());
}

TEST(Join, APlainClientWithoutCredentialsIsRefusedAtAttach) {
  REQUIRE_MUNGED();
  join_cluster k;
  ASSERT_EQ(k.start(), "");
  auto cl = fsclient::client::dial(k.sched.dials.at(0));
  ASSERT_TRUE(cl);
  auto r = (*cl)->attach("root");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), srv9p::err::auth_required);
}

TEST(Join, AJoinerThatNeverServesLeavesTheSchedulerWell) {
  REQUIRE_MUNGED();
  join_cluster k;
  ASSERT_EQ(k.start(), "");
  // A valid join from root that then never answers the scheduler's Tversion.
  auto cl = fsclient::client::dial(k.sched.dials.at(0), munge_opts(k.m.socket()));
  ASSERT_TRUE(cl);
  EXPECT_EQ(k.write_join(**cl, "root", line("ghost")), "");
  // The scheduler answers everyone else meanwhile, and gives up on the ghost when its
  // Tversion times out (link_options::dial_timeout_ms, 5 s): the name, held until then
  // (scheduler::join_node), is free again, and the ghost never became a node.
  EXPECT_NE(k.read("status").find("nodes_up=0 nodes_down=0 "), std::string::npos);
  // A real node may take the name once the ghost is given up (it retries until then).
  auto n = k.node("ghost", "ghost");
  EXPECT_TRUE(k.wait_for("status", "nodes_up=1 nodes_down=0 ")) << k.read("status");
  EXPECT_EQ(k.run_job("echo fine"), "fine\n");
}

// ---- The node's end: a fake scheduler in this process ----------------------------------

// A scheduler's root with /join only, no authentication of its own: the line written and
// the connection it hands over go to the promises.
class fake_sched : public srv9p::tree {
 public:
  std::promise<std::pair<std::string, srv9p::handoff>> joined;
  std::expected<srv9p::dir, std::string> attach(std::string_view, std::string_view) override {
    return srv9p::dirtab_dir({"/", 1, srv9p::dmdir | 0777}, 0, "root", "root");
  }
  std::expected<srv9p::dir, std::string> walk1(const srv9p::dir&, std::string_view name, std::string_view) override {
    if (name != "join") return std::unexpected(std::string(srv9p::err::not_found));
    return srv9p::dirtab_dir({"join", 2, 0222}, 0, "root", "root");
  }
  bool hands_off(const srv9p::dir& f) const override { return f.name == "join"; }
  void write(srv9p::request r) override {
    std::string text = r.get<srv9p::twrite>().data;
    r.hand_off(srv9p::rwrite{static_cast<std::uint32_t>(text.size())},
               [this, text](srv9p::handoff h) { joined.set_value({text, std::move(h)}); });
  }
};

// Joins a real galaxy-node to the fake scheduler and attaches to its tree over the
// turned connection with a credential bound to `bound` (NONCE replaced by the nonce the
// node wrote). The attach's error, or "" and the node's status in status.
std::string attach_through_join(const std::string& bound, std::string& status) {
  testmunge::munged m;
  testutil::temp_dir dir;
  ::chmod(dir.path().c_str(), 0711);
  asio::io_context io;
  fake_sched t;
  srv9p::server srv(io, t);
  auto dial = srv.listen("tcp!127.0.0.1!0");
  if (!dial) return dial.error();
  std::thread io_thread([&] { io.run(); });
  auto node = testutil::process::spawn({node_binary, "--join", *dial, "--auth", "munge", "--munge-socket", m.socket(),
                                        "--spool", dir.file("spool"), "--name", "n1"});
  auto fut = t.joined.get_future();
  std::string result;
  if (fut.wait_for(20s) != std::future_status::ready) {
    result = "the node never joined";
  } else {
    auto [text, h] = fut.get();
    auto req = ctl::parse_join(text);
    if (!req) {
      result = "bad join line: " + req.error();
      ::close(h.fd);
    } else {
      std::string b = bound;
      if (auto at = b.find("NONCE"); at != std::string::npos) b.replace(at, 5, req->nonce);
      // On io (an io-mode client); the blocking calls below run on this thread.
      std::promise<fsclient::result<std::unique_ptr<fsclient::client>>> adopted;
      asio::post(io, [&io, &adopted, fd = h.fd, b, opts = munge_opts(m.socket())] {
        fsclient::client::adopt(io, fd, b, opts, [&adopted](fsclient::result<std::unique_ptr<fsclient::client>> c) {
          adopted.set_value(std::move(c));
        });
      });
      auto cl = adopted.get_future().get();
      if (!cl) {
        result = "adopt: " + cl.error();
      } else {
        auto r = (*cl)->attach("root");
        if (!r) {
          result = r.error();
        } else {
          auto s = (*cl)->read_file(*r, "status");
          status = s ? *s : s.error();
        }
      }
    }
  }
  asio::post(io, [&] { srv.stop(); io.stop(); });
  io_thread.join();
  return result;
}

TEST(Join, TheNodeAcceptsOnlyCredentialsBoundToItsJoin) {
  REQUIRE_MUNGED();
  std::string status;
  EXPECT_EQ(attach_through_join("galaxy-9p join!NONCE", status), "");
  EXPECT_NE(status.find("name=n1 "), std::string::npos) << status;
  status.clear();
  // Another join's nonce, and an address binding, are refused.
  auto other = attach_through_join("galaxy-9p join!" + std::string(32, '0'), status);
  EXPECT_NE(other.find("credential was made for join!0000"), std::string::npos) << other;
  EXPECT_TRUE(status.empty());
  auto addr = attach_through_join("galaxy-9p tcp!127.0.0.1!5640", status);
  EXPECT_NE(addr.find("credential was made for tcp!127.0.0.1!5640"), std::string::npos) << addr;
}

// A squatter's server: keeps the credential written to an afid and refuses it.
class capturing_authenticator : public srv9p::authenticator {
 public:
  bool complete(std::string_view c) const override { return srv9p::munge_authenticator().complete(c); }
  void verify(std::string c, std::shared_ptr<const std::atomic<bool>>, std::function<void(verified)> done) override {
    {
      std::lock_guard lk(mu);
      captured = std::move(c);
    }
    done(std::unexpected(std::string("captured")));
  }
  std::size_t max_bytes() const override { return srv9p::munge_max_credential_bytes; }
  std::string taken() {
    std::lock_guard lk(mu);
    return captured;
  }
  std::mutex mu;
  std::string captured;
};

TEST(Join, ACredentialCapturedOnTheSchedulersPortIsRefusedThere) {
  // The attack on a restart: while galaxy-sched is down, local user bob listens on its
  // port; a galaxy-node --join (root) dials him and writes its credential, bound to that
  // address; once the real scheduler is back on the port, bob presents it as root. The
  // credential names the challenge of bob's afid, which the scheduler never gave.
  REQUIRE_MUNGED();
  testmunge::munged m;
  testutil::temp_dir dir;
  ::chmod(dir.path().c_str(), 0711);
  auto trap = std::make_shared<capturing_authenticator>();
  std::string port_dial;
  std::string stolen;
  testutil::process node;
  {
    asio::io_context io;
    fake_sched t;
    srv9p::server_options o;
    o.auth = trap;
    srv9p::server squatter(io, t, std::move(o));
    auto d = squatter.listen("tcp!127.0.0.1!0");
    ASSERT_TRUE(d) << d.error();
    port_dial = *d;
    std::thread io_thread([&] {
      auto guard = asio::make_work_guard(io);
      io.run();
    });
    // Bob's listener is his alone (asio's sockets are not close-on-exec): in this test he
    // and the node share a process, so the node must not inherit it.
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
      int fd = std::stoi(e.path().filename().string());
      if (fd > 2) ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
    }
    auto p = testutil::process::spawn({node_binary, "--join", port_dial, "--auth", "munge", "--munge-socket",
                                       m.socket(), "--spool", dir.file("spool"), "--name", "n1", "--join-retry", "0.2",
                                       "--join-retry-max", "1"});
    EXPECT_TRUE(p) << (p ? "" : p.error());
    if (p) node = std::move(*p);
    for (int i = 0; i < 400 && (stolen = trap->taken()).empty(); ++i) std::this_thread::sleep_for(50ms);
    asio::post(io, [&] {
      squatter.stop();
      io.stop();
    });
    io_thread.join();
  }  // bob lets the port go
  ASSERT_TRUE(stolen.starts_with("MUNGE:")) << stolen;
  auto s = testutil::start_daemon({sched_binary, "--listen", port_dial, "--auth", "munge", "--munge-socket",
                                   m.socket(), "--state", dir.file("state"), "--heartbeat", "0.2", "--admin", "root"});
  ASSERT_TRUE(s) << s.error();
  ASSERT_EQ(s->dials.at(0), port_dial);
  // Bob, on a new afid of the real scheduler, as root: the address is right, MUNGE has
  // never decoded the credential, root's uid may be anyone; the challenge refuses it.
  auto bob = fsclient::client::dial(port_dial);
  ASSERT_TRUE(bob);
  auto rs = (*bob)->rpc_batch({srv9p::tauth{1, "root", ""}, srv9p::twrite{1, 0, stolen}, srv9p::tattach{0, 1, "root", ""}});
  ASSERT_TRUE(rs[0]) << rs[0].error();
  ASSERT_FALSE(rs[2]) << "bob attached as root with the node's credential";
  EXPECT_EQ(rs[2].error(), "credential was made for another challenge (replayed or captured?)");
  // The node itself joins the real scheduler, reading its challenge.
  auto c = fsclient::client::dial(port_dial, munge_opts(m.socket()));
  ASSERT_TRUE(c);
  auto root = (*c)->attach("root");
  ASSERT_TRUE(root) << root.error();
  std::string st;
  for (int i = 0; i < 400; ++i) {
    auto r = (*c)->read_file(*root, "status");
    st = r ? *r : r.error();
    if (st.find("nodes_up=1 ") != std::string::npos) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(st.find("nodes_up=1 "), std::string::npos) << st;
}

}  // namespace

namespace {

// A directory every task user may append to, and how many lines a file there has.
std::string marks_dir(join_cluster& k) {
  auto d = k.dir.file("marks");
  ::mkdir(d.c_str(), 0777);
  ::chmod(d.c_str(), 0777);
  return d;
}
std::string file_text(const std::string& file) {
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
std::size_t lines_of(const std::string& file) {
  std::string text = file_text(file);
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

// Issue 13: joined nodes are stored. The scheduler is killed while a joined node runs a
// job, and restarted: the node is known (down) at once, the job waits for it instead of
// being lost, the node rejoins by itself, and the job ends once, on its first attempt.
TEST(Join, ARestartedSchedulerWaitsForItsJoinedNodeAndRunsNothingTwice) {
  REQUIRE_MUNGED();
  join_cluster k;
  ASSERT_EQ(k.start(), "");
  auto marks = marks_dir(k);
  auto n1 = k.node("n1", "n1");
  ASSERT_TRUE(k.wait_for("status", "nodes_up=1 ")) << k.read("status");
  std::string mark = marks + "/job";
  auto j = k.submit("sh -c 'sleep 3; echo ran >> " + mark + "; echo done'");
  ASSERT_TRUE(k.wait_for("jobs/" + j + "/status", "state=running")) << k.read("jobs/" + j + "/status");
  ASSERT_EQ(k.restart(), "");
  // Known at once, from the store: down until it joins again, its job still running.
  EXPECT_NE(k.read("status").find("nodes_down=1 "), std::string::npos) << k.read("status");
  EXPECT_NE(k.read("jobs/" + j + "/status").find("state=running"), std::string::npos)
      << k.read("jobs/" + j + "/status");
  ASSERT_TRUE(k.wait_for("status", "nodes_up=1 ")) << k.read("status");
  ASSERT_TRUE(k.wait_for("jobs/" + j + "/status", "state=done", 30s)) << k.read("jobs/" + j + "/status");
  auto status = k.read("jobs/" + j + "/status");
  EXPECT_NE(status.find("attempts=1 "), std::string::npos) << status;
  EXPECT_EQ(k.read("jobs/" + j + "/stdout"), "done\n");
  EXPECT_EQ(lines_of(mark), 1u) << file_text(mark);
  // And the node still runs new work.
  EXPECT_EQ(k.run_job("echo after"), "after\n");
}

// A stored joined name is the joining uid's: a --join-user of another uid may not take it
// while the node is down, not even after a restart; `node rm` frees it.
TEST(Join, AStoredNameIsRefusedToAnotherUidUntilNodeRm) {
  REQUIRE_MUNGED();
  REQUIRE_USERS(alice, bob);
  join_cluster k;
  ASSERT_EQ(k.start({"--join-user", "gx-bob"}), "");
  {
    auto n1 = k.node("n1", "n1");
    ASSERT_TRUE(k.wait_for("status", "nodes_up=1 ")) << k.read("status");
    n1.signal(SIGKILL);
    n1.wait();
  }
  ASSERT_TRUE(k.wait_for("status", "nodes_up=0 nodes_down=1 ")) << k.read("status");
  fsclient::client::options o;
  o.credential = [sock = k.m.socket(), bob = *bob](std::string_view bind) -> fsclient::result<std::string> {
    return testmunge::credential(sock, std::string(bind), bob);
  };
  std::string refusal = fmt::format(
      "join: node n1 was joined by uid {}; uid {} may not take its name (an admin frees it with `node rm n1`)",
      ::getuid(), bob->first);
  for (bool restarted : {false, true}) {
    SCOPED_TRACE(restarted ? "after a restart" : "before");
    if (restarted) {
      ASSERT_EQ(k.restart(), "");
    }
    auto cl = fsclient::client::dial(k.sched.dials.at(0), o);
    ASSERT_TRUE(cl);
    EXPECT_EQ(k.write_join(**cl, "gx-bob", line("n1")), refusal);
    EXPECT_NE(k.read("status").find("nodes_up=0 nodes_down=1 "), std::string::npos) << k.read("status");
  }
  // The admin forgets the node: the name is free, for anyone allowed to join.
  auto rm = k.c->write_file(k.root, "ctl", "node rm n1\n");
  ASSERT_TRUE(rm) << rm.error();
  auto cl = fsclient::client::dial(k.sched.dials.at(0), o);
  ASSERT_TRUE(cl);
  EXPECT_EQ(k.write_join(**cl, "gx-bob", line("n1")), "");
}

// A closed connection says nothing about the node's tasks: galaxy-node killed with SIGKILL
// leaves them running (its next start kills them), and a live node fences them only when
// its lease runs out. So a job whose node's connection closed is held, still running,
// until --down-after after the link's last heartbeat, and only then requeued.
TEST(Join, AClosedConnectionHoldsItsJobsUntilTheLeaseHasRunOut) {
  REQUIRE_MUNGED();
  join_cluster k;
  ASSERT_EQ(k.start({"--down-after", "4"}), "");
  auto n1 = k.node("n1", "n1");
  auto n2 = k.node("n2", "n2");
  ASSERT_TRUE(k.wait_for("status", "nodes_up=2 ")) << k.read("status");
  auto j = k.submit("sh -c 'sleep 5; echo ok'");
  ASSERT_TRUE(k.wait_for("jobs/" + j + "/status", "state=running")) << k.read("jobs/" + j + "/status");
  auto status = k.read("jobs/" + j + "/status");
  bool on_n1 = status.find("node=n1 ") != std::string::npos;
  auto& victim = on_n1 ? n1 : n2;
  std::string other = on_n1 ? "n2" : "n1";
  victim.signal(SIGKILL);
  victim.wait();
  ASSERT_TRUE(k.wait_for("status", "nodes_up=1 nodes_down=1 ")) << k.read("status");
  // Down, but its copy may still run: held, not requeued.
  status = k.read("jobs/" + j + "/status");
  EXPECT_NE(status.find("state=running"), std::string::npos) << status;
  EXPECT_NE(status.find("attempts=1 "), std::string::npos) << status;
  // Once the lease has run out: lost, requeued, and done on the other node.
  ASSERT_TRUE(k.wait_for("jobs/" + j + "/status", "state=done", 40s)) << k.read("jobs/" + j + "/status");
  status = k.read("jobs/" + j + "/status");
  EXPECT_NE(status.find("attempts=2 "), std::string::npos) << status;
  EXPECT_NE(status.find("node=" + other + " "), std::string::npos) << status;
}

// A held job (its node's connection closed, its lease not yet over) that is killed ends
// at once; its copy on the node is remembered, to be killed when the node returns.
TEST(Join, AHeldJobThatIsKilledEndsAtOnce) {
  REQUIRE_MUNGED();
  join_cluster k;
  ASSERT_EQ(k.start(), "");  // --down-after 30: held for about 30 s
  auto n1 = k.node("n1", "n1");
  ASSERT_TRUE(k.wait_for("status", "nodes_up=1 ")) << k.read("status");
  auto j = k.submit("sleep 60");
  ASSERT_TRUE(k.wait_for("jobs/" + j + "/status", "state=running")) << k.read("jobs/" + j + "/status");
  n1.signal(SIGKILL);
  n1.wait();
  ASSERT_TRUE(k.wait_for("status", "nodes_up=0 nodes_down=1 ")) << k.read("status");
  auto kill = k.c->write_file(k.root, "jobs/" + j + "/ctl", "kill\n");
  EXPECT_TRUE(kill.has_value()) << kill.error();
  auto status = k.read("jobs/" + j + "/status");
  EXPECT_NE(status.find("state=killed"), std::string::npos) << status;
  EXPECT_NE(status.find("killed while its node n1 was down"), std::string::npos) << status;
}

}  // namespace
