// galaxy-sched and galaxy-node with MUNGE on loopback TCP, end to end: a real munged, a
// real node and scheduler, and a client with real credentials. The scheduler attaches to
// the node once per job owner, each time with a fresh credential of its own, so the node
// must trust the scheduler's user (--trust) unless it is root or the node's own user.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "fsclient/client.hpp"
#include "srv9p/munge.hpp"
#include "tests/testmunge.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
const std::string node_binary = GALAXY_BINARY_DIR "/galaxy-node";
const std::string sched_binary = GALAXY_BINARY_DIR "/galaxy-sched";

struct munge_cluster {
  testmunge::munged m;
  testutil::temp_dir dir;
  testutil::daemon_handle node, sched;
  std::unique_ptr<fsclient::client> c;
  std::uint32_t root = 0;

  // The node as root; the scheduler run by sched_prefix (setpriv as another user, or
  // nothing), with its extra options.
  std::string start(const std::vector<std::string>& node_extra, const std::vector<std::string>& sched_prefix,
                    const std::vector<std::string>& sched_extra) {
    ::chmod(dir.path().c_str(), 0711);
    std::vector<std::string> nargv{node_binary, "--listen", "tcp!127.0.0.1!0", "--auth", "munge", "--munge-socket",
                                   m.socket(), "--spool", dir.file("n1"), "--name", "n1"};
    nargv.insert(nargv.end(), node_extra.begin(), node_extra.end());
    auto n = testutil::start_daemon(nargv);
    if (!n) return n.error();
    node = std::move(*n);
    std::vector<std::string> sargv = sched_prefix;
    sargv.insert(sargv.end(), {sched_binary, "--listen", "tcp!127.0.0.1!0", "--auth", "munge", "--munge-socket",
                               m.socket(), "--state", dir.file("state"), "--heartbeat", "0.2", "--node",
                               "n1=" + node.dials.at(0)});
    sargv.insert(sargv.end(), sched_extra.begin(), sched_extra.end());
    auto s = testutil::start_daemon(sargv);
    if (!s) return s.error();
    sched = std::move(*s);
    fsclient::client::options o;
    o.credential = [sock = m.socket()](std::string_view bind) { return srv9p::munge_credential(sock, bind); };
    auto cl = fsclient::client::dial(sched.dials.at(0), o);
    if (!cl) return cl.error();
    c = std::move(*cl);
    return {};
  }
  // Attaches to the scheduler as uname (the client is root, which may speak for anyone).
  std::string attach(const std::string& uname) {
    auto r = c->attach(uname);
    if (!r) return r.error();
    root = *r;
    return {};
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
  // Submits "exec echo hi" as the attached user; the job number.
  std::string submit() {
    auto n = read("jobs/clone");
    while (!n.empty() && n.back() == '\n') n.pop_back();
    auto ok = c->write_file(root, "jobs/" + n + "/ctl", "exec echo hi\n");
    EXPECT_TRUE(ok.has_value()) << (ok ? "" : ok.error());
    return n;
  }
};

TEST(SchedAuth, JobOfAnotherUserRunsThroughMunge) {
  REQUIRE_MUNGED();
  REQUIRE_USERS(alice, bob);
  munge_cluster k;
  ASSERT_EQ(k.start({}, {}, {"--admin", "root"}), "");
  ASSERT_EQ(k.attach("root"), "");
  ASSERT_TRUE(k.wait_for("status", "nodes_up=1 ")) << k.read("status");
  ASSERT_EQ(k.attach("gx-alice"), "");
  auto j = k.submit();
  ASSERT_TRUE(k.wait_for("jobs/" + j + "/status", "state=done")) << k.read("jobs/" + j + "/status");
  EXPECT_EQ(k.read("jobs/" + j + "/stdout"), "hi\n");
  // On the node, the task was made under the owner's proven name.
  auto nc = fsclient::client::dial(k.node.dials.at(0), {.credential = [sock = k.m.socket()](std::string_view bind) {
                                                           return srv9p::munge_credential(sock, bind);
                                                         }});
  ASSERT_TRUE(nc);
  auto nroot = (*nc)->attach("root");
  ASSERT_TRUE(nroot) << nroot.error();
  auto tasks = (*nc)->list_dir(*nroot, "task");
  ASSERT_TRUE(tasks);
  bool alices = false;
  for (const auto& d : *tasks) alices |= d.uid == "gx-alice";
  EXPECT_TRUE(alices);
}

TEST(SchedAuth, NodeMustTrustTheSchedulersUser) {
  REQUIRE_MUNGED();
  REQUIRE_USERS(alice, bob);
  // The scheduler runs as gx-alice, in a state directory of hers.
  auto as_alice = std::vector<std::string>{"/usr/bin/setpriv", fmt::format("--reuid={}", alice->first),
                                           fmt::format("--regid={}", alice->second), "--clear-groups"};
  for (bool trusted : {false, true}) {
    SCOPED_TRACE(trusted ? "with --trust gx-alice" : "without --trust");
    munge_cluster k;
    std::filesystem::create_directory(k.dir.file("state"));
    ASSERT_EQ(::chown(k.dir.file("state").c_str(), alice->first, alice->second), 0);
    std::vector<std::string> node_extra;
    if (trusted) node_extra = {"--trust", "gx-alice"};
    ASSERT_EQ(k.start(node_extra, as_alice, {"--admin", "gx-alice"}), "");
    ASSERT_EQ(k.attach("root"), "");
    ASSERT_TRUE(k.wait_for("status", "nodes_up=1 ")) << k.read("status");
    ASSERT_EQ(k.attach("gx-bob"), "");  // the client is root: the scheduler lets it
    auto j = k.submit();
    if (trusted) {
      EXPECT_TRUE(k.wait_for("jobs/" + j + "/status", "state=done")) << k.read("jobs/" + j + "/status");
    } else {
      // The node refuses the scheduler's attach as gx-bob, and the scheduler says why.
      EXPECT_TRUE(k.wait_for("jobs/" + j + "/status",
                             fmt::format("uid {} (gx-alice) may not attach as gx-bob", alice->first), 10s))
          << k.read("jobs/" + j + "/status");
    }
  }
}

}  // namespace
