// galaxy-sched end to end: one real scheduler and three real galaxy-node processes on
// port 0 in a temporary directory, driven through the real 9P client as users and the
// `galaxy` tool drive them.
#include <gtest/gtest.h>
#include <pwd.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <atomic>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "fsclient/client.hpp"
#include "sched/store.hpp"
#include "srv9p/errors.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
const std::string node_binary = GALAXY_BINARY_DIR "/galaxy-node";
const std::string sched_binary = GALAXY_BINARY_DIR "/galaxy-sched";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

struct cluster {
  testutil::temp_dir dir;
  std::vector<testutil::daemon_handle> nodes;
  std::vector<std::string> node_dials;
  testutil::daemon_handle sched;
  std::unique_ptr<fsclient::client> c;
  std::uint32_t root = 0;
  std::vector<std::string> sched_extra;
  std::set<int> strict_nodes;  // these start without --unknown-user: they refuse alice's tasks

  std::string start_node(int i) {
    // The tests' users (alice, bob, ...) are not users of this machine: their tasks run as
    // nobody (galaxy-node(8), --unknown-user).
    std::vector<std::string> argv{node_binary, "--listen", "tcp!127.0.0.1!0", "--spool",
                                  dir.file("n" + std::to_string(i)), "--name", "n" + std::to_string(i), "--cpus", "2"};
    if (!strict_nodes.contains(i)) argv.insert(argv.end(), {"--unknown-user", "nobody"});
    auto h = testutil::start_daemon(argv);
    if (!h) return h.error();
    if (nodes.size() <= static_cast<std::size_t>(i - 1)) {
      nodes.resize(static_cast<std::size_t>(i));
      node_dials.resize(static_cast<std::size_t>(i));
    }
    nodes[static_cast<std::size_t>(i - 1)] = std::move(*h);
    node_dials[static_cast<std::size_t>(i - 1)] = nodes[static_cast<std::size_t>(i - 1)].dials.at(0);
    return {};
  }

  std::string start_sched() {
    std::vector<std::string> argv{sched_binary, "--listen", "tcp!127.0.0.1!0", "--state", dir.file("state"),
                                  "--heartbeat", "0.2", "--down-after", "1", "--reconnect", "0.3", "--admin", "root"};
    for (std::size_t i = 0; i < node_dials.size(); ++i) {
      argv.push_back("--node");
      argv.push_back("n" + std::to_string(i + 1) + "=" + node_dials[i]);
    }
    argv.insert(argv.end(), sched_extra.begin(), sched_extra.end());
    auto h = testutil::start_daemon(argv);
    if (!h) return h.error();
    sched = std::move(*h);
    auto cl = fsclient::client::dial(sched.dials.at(0));
    if (!cl) return cl.error();
    c = std::move(*cl);
    auto r = c->attach("root");
    if (!r) return r.error();
    root = *r;
    // Wait until every node is up, so tests start from a whole cluster.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto st = c->read_file(root, "status");
      if (st && st->find(fmt_up()) != std::string::npos) return {};
      std::this_thread::sleep_for(20ms);
    }
    return "nodes did not come up: " + read("status");
  }
  // Polls the job's state until it is `want` (or 30 s pass; the caller's check fails then).
  void wait_state(const std::string& j, const std::string& want) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (status_field(j, "state") != want && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
  }
  std::string fmt_up() const { return "nodes_up=" + std::to_string(node_dials.size()) + " "; }

  std::string start(int n = 3) {
    ::chmod(dir.file("").c_str(), 0711);  // tasks run as nobody and must reach the spools
    for (int i = 1; i <= n; ++i) {
      if (auto why = start_node(i); !why.empty()) return why;
    }
    return start_sched();
  }

  std::string read(const std::string& path) {
    auto r = c->read_file(root, path);
    return r ? *r : "<error: " + r.error() + ">";
  }
  fsclient::result<void> write(const std::string& path, const std::string& data) {
    return c->write_file(root, path, data);
  }
  // clone + ctl lines (the last one is usually exec); the job number.
  std::string job(const std::vector<std::string>& lines) {
    std::string n = trim(read("jobs/clone"));
    for (const auto& l : lines) {
      auto ok = write("jobs/" + n + "/ctl", l + "\n");
      EXPECT_TRUE(ok.has_value()) << l << ": " << (ok ? "" : ok.error());
    }
    return n;
  }
  std::string status_field(const std::string& j, const std::string& key) {
    auto st = read("jobs/" + j + "/status");
    auto pos = st.find(" " + key + "=");
    if (pos == std::string::npos) return "";
    pos += key.size() + 2;
    return st.substr(pos, st.find_first_of(" \n", pos) - pos);
  }
};

#define START(c, ...)                                 \
  cluster c;                                          \
  {                                                   \
    auto why = c.start(__VA_ARGS__);                  \
    ASSERT_EQ(why, "") << "starting the cluster: " << why; \
  }

TEST(SchedE2E, JobThroughCloneCtlWaitStdout) {
  START(c);
  auto j = c.job({"env GREETING=hello", "exec sh -c 'echo $GREETING; echo oops >&2; echo $GALAXY_JOB'"});
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n");
  EXPECT_EQ(c.read("jobs/" + j + "/stdout"), "hello\n" + j + "\n");
  EXPECT_EQ(c.read("jobs/" + j + "/stderr"), "oops\n");
  EXPECT_EQ(c.status_field(j, "state"), "done");
  EXPECT_EQ(c.status_field(j, "owner"), "root");
  EXPECT_EQ(c.status_field(j, "attempts"), "1");
  EXPECT_NE(c.status_field(j, "node"), "-");
  // The spec reads back as the commands that made it.
  EXPECT_EQ(c.read("jobs/" + j + "/ctl"), "env GREETING=hello\nexec sh -c 'echo $GREETING; echo oops >&2; echo $GALAXY_JOB'\n");
  auto st = c.read("status");
  EXPECT_NE(st.find("jobs_done=1 "), std::string::npos) << st;
  EXPECT_NE(c.read("metrics").find("galaxy_jobs{state=\"done\"} 1\n"), std::string::npos);
  EXPECT_NE(c.read("users/root").find("user=root "), std::string::npos);
}

TEST(SchedE2E, OutFilesAndExitCodes) {
  START(c);
  auto ok = c.job({"exec sh -c 'echo result > $GALAXY_OUT/answer.txt'"});
  auto bad = c.job({"exec sh -c 'exit 3'"});
  auto missing = c.job({"exec /no/such/program"});
  EXPECT_EQ(c.read("jobs/" + ok + "/wait"), "exit 0\n");
  EXPECT_EQ(c.read("jobs/" + ok + "/out/answer.txt"), "result\n");
  EXPECT_EQ(c.read("jobs/" + bad + "/wait"), "exit 3\n");
  EXPECT_EQ(c.status_field(bad, "state"), "failed");
  EXPECT_EQ(c.read("jobs/" + missing + "/wait").rfind("error exec: /no/such/program", 0), 0u);
}

TEST(SchedE2E, NodesAreRelayed) {
  START(c);
  auto names = c.c->list_dir(c.root, "nodes");
  ASSERT_TRUE(names.has_value()) << names.error();
  std::set<std::string> got;
  for (const auto& d : *names) got.insert(d.name);
  EXPECT_EQ(got, (std::set<std::string>{"n1", "n2", "n3"}));
  EXPECT_NE(c.read("nodes/n2/status").find("name=n2 "), std::string::npos) << c.read("nodes/n2/status");
  EXPECT_NE(c.read("nodes/n1/cpu/0").find("idle "), std::string::npos);
  // A task started on a node directly, through the relay, under our own name.
  std::string t = trim(c.read("nodes/n3/task/clone"));
  ASSERT_FALSE(t.empty());
  ASSERT_TRUE(c.write("nodes/n3/task/" + t + "/ctl", "exec echo direct\n").has_value());
  EXPECT_EQ(c.read("nodes/n3/task/" + t + "/wait"), "exit 0\n");
  EXPECT_EQ(c.read("nodes/n3/task/" + t + "/stdout"), "direct\n");
  auto st = c.c->stat_path(c.root, "nodes/n3/task/" + t + "/ctl");
  ASSERT_TRUE(st.has_value()) << st.error();
  EXPECT_EQ(st->uid, "root");
  // Missing files say so; qids below nodes/ do not collide with each other.
  EXPECT_EQ(c.read("nodes/n1/nosuch"), "<error: 'nodes/n1/nosuch': file does not exist>");
  auto a = c.c->stat_path(c.root, "nodes/n1/status");
  auto b = c.c->stat_path(c.root, "nodes/n2/status");
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->qid.path, b->qid.path);
  // ".." climbs out of a node as it climbs out of any directory (one walk element at a
  // time, as a shell's cd .. does).
  auto task_dir = c.c->walk(c.root, "nodes/n1/task");
  ASSERT_TRUE(task_dir.has_value()) << task_dir.error();
  auto node_root = c.c->walk(*task_dir, "..");
  ASSERT_TRUE(node_root.has_value()) << node_root.error();
  auto n1_status = c.c->read_file(*node_root, "status");
  ASSERT_TRUE(n1_status.has_value()) << n1_status.error();
  EXPECT_NE(n1_status->find("name=n1 "), std::string::npos);
  auto nodes_dir = c.c->walk(*node_root, "..");
  ASSERT_TRUE(nodes_dir.has_value()) << nodes_dir.error();
  auto n2_status = c.c->read_file(*nodes_dir, "n2/status");
  ASSERT_TRUE(n2_status.has_value()) << n2_status.error();
  EXPECT_NE(n2_status->find("name=n2 "), std::string::npos);
  auto top = c.c->walk(*nodes_dir, "..");
  ASSERT_TRUE(top.has_value()) << top.error();
  EXPECT_TRUE(c.c->stat_path(*top, "jobs/clone").has_value());
}

// Through the nodes/NAME/ relay a ctl line is framed by the client's rule, not by the
// scheduler's own connection's: a 9000-byte line from a client of msize 8192 (which cuts
// it at msize - 24, as plan9port and v9fs do) reaches the node whole. A held piece (a
// whole 4 KiB page without a newline) runs at the client's Tclunk and is dropped when the
// client hangs up: the node never sees it (the attack on issue 14 found both wrong).
TEST(SchedE2E, RelayedCtlLinesFollowTheClientsFramingAndAHeldPieceDiesWithItsConnection) {
  START(c);
  fsclient::client::options small;
  small.msize = 8192;
  auto k = fsclient::client::dial(c.sched.dials.at(0), small);
  ASSERT_TRUE(k.has_value()) << k.error();
  ASSERT_EQ((*k)->msize(), 8192u);
  auto kroot = (*k)->attach("root");
  ASSERT_TRUE(kroot.has_value()) << kroot.error();
  std::string n = trim(c.read("nodes/n1/task/clone"));
  std::string arg(9000, 'a');
  auto w = (*k)->write_file(*kroot, "nodes/n1/task/" + n + "/ctl", "exec echo " + arg + "\n");
  ASSERT_TRUE(w.has_value()) << w.error();
  EXPECT_EQ(c.read("nodes/n1/task/" + n + "/wait"), "exit 0\n");
  EXPECT_EQ(c.read("nodes/n1/task/" + n + "/stdout"), arg + "\n");

  std::string piece = "exec true";
  piece.resize(4096, ' ');
  for (bool clunk : {true, false}) {
    SCOPED_TRACE(clunk ? "Tclunk" : "hang-up");
    std::string t = trim(c.read("nodes/n1/task/clone"));
    auto cl = fsclient::client::dial(c.sched.dials.at(0));
    ASSERT_TRUE(cl.has_value()) << cl.error();
    auto root = (*cl)->attach("root");
    ASSERT_TRUE(root.has_value()) << root.error();
    auto fid = (*cl)->walk(*root, "nodes/n1/task/" + t + "/ctl");
    ASSERT_TRUE(fid.has_value()) << fid.error();
    ASSERT_TRUE((*cl)->open(*fid, srv9p::owrite).has_value());
    auto pw = (*cl)->write(*fid, 0, piece);
    ASSERT_TRUE(pw.has_value()) << pw.error();
    if (clunk) {
      ASSERT_TRUE((*cl)->clunk(*fid).has_value());
    }
    cl->reset();
    if (clunk) {
      EXPECT_EQ(c.read("nodes/n1/task/" + t + "/wait"), "exit 0\n");
    } else {
      std::this_thread::sleep_for(500ms);  // time for both daemons to see the hang-up
      auto status = c.read("nodes/n1/task/" + t + "/status");
      EXPECT_NE(status.find("state=new"), std::string::npos) << status;
    }
  }
}

TEST(SchedE2E, BlockingRelayedReadIsFlushed) {
  START(c);
  auto f = c.c->walk(c.root, "nodes/n1/events");
  ASSERT_TRUE(f.has_value()) << f.error();
  ASSERT_TRUE(c.c->open(*f, srv9p::oread).has_value());
  std::promise<fsclient::client::reply> got;
  auto tag = c.c->send(srv9p::tread{*f, 0, 8192}, [&](fsclient::client::reply r) { got.set_value(std::move(r)); });
  auto fut = got.get_future();
  EXPECT_EQ(fut.wait_for(200ms), std::future_status::timeout);  // blocks: no event yet
  c.c->flush(tag);
  ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
  auto r = fut.get();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), srv9p::err::interrupted);
  // The connection still serves.
  EXPECT_NE(c.read("nodes/n1/status").find("name=n1"), std::string::npos);
}

TEST(SchedE2E, StdoutStreamsWhileTheJobRuns) {
  START(c);
  auto j = c.job({"exec sh -c 'echo first; exec sleep 30'"});
  // The first line arrives while the job still runs (the read relays to the node and
  // blocks there at the end of the data).
  auto f = c.c->walk(c.root, "jobs/" + j + "/stdout");
  ASSERT_TRUE(f.has_value());
  ASSERT_TRUE(c.c->open(*f, srv9p::oread).has_value());
  c.wait_state(j, "running");
  auto first = c.c->read(*f, 0, 100);
  ASSERT_TRUE(first.has_value()) << first.error();
  EXPECT_EQ(*first, "first\n");
  EXPECT_EQ(c.status_field(j, "state"), "running");
  // The next read waits for more output or the end: the kill ends it with EOF.
  std::promise<fsclient::result<std::string>> rest;
  std::thread reader([&] { rest.set_value(c.c->read(*f, 6, 100)); });
  ASSERT_TRUE(c.write("jobs/" + j + "/ctl", "kill TERM\n").has_value());
  auto fut = rest.get_future();
  ASSERT_EQ(fut.wait_for(30s), std::future_status::ready);
  auto r = fut.get();
  reader.join();
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(*r, "");
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "signal 15\n");
  EXPECT_EQ(c.status_field(j, "state"), "killed");
  EXPECT_EQ(c.read("jobs/" + j + "/stdout"), "first\n");
  (void)c.c->clunk(*f);
}

TEST(SchedE2E, BadInputAnswersAnErrorAndChangesNothing) {
  START(c);
  auto j = trim(c.read("jobs/clone"));
  auto err = [&](const std::string& path, const std::string& line) {
    auto r = c.write(path, line + "\n");
    return r ? std::string("<no error>") : r.error();
  };
  std::string ctl = "jobs/" + j + "/ctl";
  EXPECT_EQ(err(ctl, "exce ls").rfind("unknown command 'exce': expected exec, dir, env, ", 0), 0u) << err(ctl, "exce ls");
  EXPECT_EQ(err(ctl, "after 999"), "after: no job 999");
  EXPECT_EQ(err(ctl, "need arch"), "bad need 'arch': expected KEY=VALUE");
  EXPECT_EQ(err(ctl, "mem 12q"), "bad size '12q': expected a number of bytes with an optional k, m, g or t suffix");
  // A cycle through two new jobs.
  auto k = trim(c.read("jobs/clone"));
  ASSERT_TRUE(c.write("jobs/" + k + "/ctl", "after " + j + "\n").has_value());
  EXPECT_EQ(err(ctl, "after " + k), "after: " + k + " would make a cycle");
  EXPECT_EQ(c.read(ctl), "");  // nothing was taken
  EXPECT_EQ(err("jobs/" + k + "/ctl", "exec true"), "after: job " + j + " has not been submitted (no exec yet)");
  EXPECT_EQ(c.status_field(k, "state"), "new");
  // Too big for every node: refused at exec, unless queue-anyway; then queued with a note.
  ASSERT_TRUE(c.write(ctl, "mem 64t\n").has_value());
  EXPECT_EQ(err(ctl, "exec true").rfind("cannot run: no node has 64 TiB memory (largest ", 0), 0u) << err(ctl, "exec true");
  EXPECT_EQ(c.status_field(j, "state"), "new");
  ASSERT_TRUE(c.write(ctl, "queue-anyway\n").has_value());
  ASSERT_TRUE(c.write(ctl, "exec true\n").has_value());
  EXPECT_EQ(c.status_field(j, "state"), "queued");
  EXPECT_NE(c.read("jobs/" + j + "/status").find("note='unschedulable: no node has 64 TiB'"), std::string::npos)
      << c.read("jobs/" + j + "/status");
  EXPECT_EQ(err(ctl, "env A=b"), "job " + j + " already submitted: 'env' must come before exec");
  EXPECT_EQ(err("ctl", "node add n9 udp!x!1").rfind("bad dial string", 0), 0u) << err("ctl", "node add n9 udp!x!1");
  EXPECT_EQ(err("ctl", "node add n1 tcp!127.0.0.1!1"), "node n1 exists");
  EXPECT_EQ(err("ctl", "frob"), "unknown command 'frob': expected node, drain, undrain, quota, policy, priority");
  // A finished job takes no more commands.
  auto done = c.job({"exec true"});
  EXPECT_EQ(c.read("jobs/" + done + "/wait"), "exit 0\n");
  EXPECT_EQ(err("jobs/" + done + "/ctl", "kill"), "job " + done + " has ended");
  EXPECT_EQ(err("jobs/" + done + "/ctl", "exec true"), "job " + done + " already submitted: 'exec' must come before exec");
  // Killing the queued job works; it never ran.
  ASSERT_TRUE(c.write(ctl, "kill\n").has_value());
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "killed\n");
}

// What no node, even empty, could run is refused at exec with the reason (galaxy(4),
// "JOBS THAT CANNOT RUN"): too many CPUs, too much memory, a label no node has, after a
// job that failed or was killed. The job stays new, and takes its exec once fixed.
TEST(SchedE2E, ImpossibleJobsAreRefusedAtExec) {
  START(c);
  auto err = [&](const std::string& path, const std::string& data) {
    auto r = c.write(path, data + "\n");
    return r ? std::string("<no error>") : r.error();
  };
  auto j = trim(c.read("jobs/clone"));
  std::string ctl = "jobs/" + j + "/ctl";
  ASSERT_TRUE(c.write(ctl, "cpu 64\n").has_value());
  EXPECT_EQ(err(ctl, "exec true"), "cannot run: no node has 64 CPUs (largest 2 CPUs)");
  EXPECT_EQ(c.status_field(j, "state"), "new");
  EXPECT_EQ(c.read(ctl), "cpu 64\n");  // the refused exec is not kept
  ASSERT_TRUE(c.write(ctl, "cpu 2\n").has_value());
  ASSERT_TRUE(c.write(ctl, "need arch=riscv\n").has_value());
  EXPECT_EQ(err(ctl, "exec true"), "cannot run: no node has arch=riscv");
  // Both at once, with a label that exists: no node with it has them.
  auto k = c.job({"cpu 3", "mem 64t", "need node=n2"});
  EXPECT_EQ(err("jobs/" + k + "/ctl", "exec true").rfind("cannot run: no node with node=n2 has 3 CPUs (largest 2 CPUs) or 64 TiB memory", 0), 0u)
      << err("jobs/" + k + "/ctl", "exec true");
  // after a job that failed, or was killed.
  auto f = c.job({"exec false"});
  EXPECT_EQ(c.read("jobs/" + f + "/wait"), "exit 1\n");
  auto a = c.job({"after " + f});
  EXPECT_EQ(err("jobs/" + a + "/ctl", "exec true"), "cannot run: after: job " + f + " failed");
  auto q = c.job({"queue-anyway", "cpu 64", "exec true"});
  ASSERT_TRUE(c.write("jobs/" + q + "/ctl", "kill\n").has_value());
  EXPECT_EQ(c.read("jobs/" + q + "/wait"), "killed\n");
  auto b = c.job({"after " + q});
  EXPECT_EQ(err("jobs/" + b + "/ctl", "exec true"), "cannot run: after: job " + q + " was killed");
  // Fits: runs.
  auto ok = c.job({"cpu 2", "need node=n1", "exec true"});
  EXPECT_EQ(c.read("jobs/" + ok + "/wait"), "exit 0\n");
}

// A queued job whose last possible node is removed cannot run: its note says so and its
// wait file, read before, answers "cannot run: REASON" (the job stays queued, so a node
// with the label may still come). With queue-anyway the wait goes on.
TEST(SchedE2E, AJobThatLostItsLastNodeCannotRun) {
  START(c, 2);
  auto hog = c.job({"cpu 2", "need node=n1", "exec sleep 30"});
  c.wait_state(hog, "running");
  auto j = c.job({"cpu 2", "need node=n1", "exec true"});
  auto patient = c.job({"queue-anyway", "cpu 2", "need node=n1", "exec true"});
  EXPECT_EQ(c.status_field(j, "state"), "queued");
  auto f = c.c->walk(c.root, "jobs/" + j + "/wait");
  ASSERT_TRUE(f.has_value());
  ASSERT_TRUE(c.c->open(*f, srv9p::oread).has_value());
  std::promise<fsclient::result<std::string>> got;
  auto fut = got.get_future();
  std::thread reader([&] { got.set_value(c.c->read(*f, 0, 1000)); });
  EXPECT_EQ(fut.wait_for(300ms), std::future_status::timeout);  // blocks: n1 may free up
  ASSERT_TRUE(c.write("ctl", "node rm n1\n").has_value());
  bool answered = fut.wait_for(10s) == std::future_status::ready;
  if (!answered) c.sched.proc.signal(SIGKILL);  // the reader's read ends with an error
  reader.join();
  ASSERT_TRUE(answered) << "the wait read did not return after the node was removed";
  auto w = fut.get();
  ASSERT_TRUE(w.has_value()) << w.error();
  EXPECT_EQ(*w, "cannot run: no node has node=n1\n");
  EXPECT_EQ(c.status_field(j, "state"), "queued");
  EXPECT_NE(c.read("jobs/" + j + "/status").find("note='cannot run: no node has node=n1'"), std::string::npos)
      << c.read("jobs/" + j + "/status");
  EXPECT_EQ(c.read("jobs/" + patient + "/status").find("cannot run"), std::string::npos)
      << c.read("jobs/" + patient + "/status");
  (void)c.c->clunk(*f);
}

// rm of a job on the scheduler removes the node's copy too: its task/N on the node and
// the task's directory in the node's spool (with its output), for a job and for each task
// of an array.
TEST(SchedE2E, RmOfAJobReachesTheNodesCopy) {
  START(c, 1);
  auto j = c.job({"exec sh -c 'echo hello; echo x > $GALAXY_OUT/f'"});
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n");
  auto a = c.job({"array 2", "exec true"});
  EXPECT_EQ(c.read("jobs/" + a + "/wait"), "exit 0\n");
  std::vector<std::string> tasks{c.status_field(j, "task"), c.status_field(a + "/0", "task"),
                                 c.status_field(a + "/1", "task")};
  for (const auto& t : tasks) {
    ASSERT_FALSE(t.empty() || t == "0") << c.read("jobs/" + j + "/status");
    EXPECT_TRUE(c.c->stat_path(c.root, "nodes/n1/task/" + t).has_value()) << t;
    EXPECT_TRUE(fs::exists(c.dir.file("n1") + "/task/" + t)) << t;
  }
  EXPECT_EQ(c.read("jobs/" + j + "/stdout"), "hello\n");
  ASSERT_TRUE(c.write("jobs/" + j + "/ctl", "rm\n").has_value());
  ASSERT_TRUE(c.write("jobs/" + a + "/ctl", "rm\n").has_value());
  // The node answers the rm after the scheduler's: poll a little.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  auto gone = [&] {
    for (const auto& t : tasks) {
      if (c.c->stat_path(c.root, "nodes/n1/task/" + t).has_value() || fs::exists(c.dir.file("n1") + "/task/" + t)) {
        return false;
      }
    }
    return true;
  };
  while (!gone() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
  for (const auto& t : tasks) {
    EXPECT_FALSE(c.c->stat_path(c.root, "nodes/n1/task/" + t).has_value()) << t;
    EXPECT_FALSE(fs::exists(c.dir.file("n1") + "/task/" + t)) << t;
  }
}

// A node whose spool is full (a 512 KiB tmpfs, filled) refuses starts: the job's note
// names the node and its full spool, the scheduler backs off that node exponentially (the
// note's "next try in" grows past the old fixed second), and once space is freed the job
// runs. Needs root for the tmpfs; skips without.
TEST(SchedE2E, SpoolFullIsSaidAndBackedOff) {
  cluster c;
  std::string spool = c.dir.file("n1");
  fs::create_directories(spool);
  if (::mount("tmpfs", spool.c_str(), "tmpfs", 0, "size=512k,mode=0755") != 0) {
    GTEST_SKIP() << "mount tmpfs: " << std::strerror(errno) << " (needs root)";
  }
  struct unmount {
    std::string p;
    ~unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } um{spool};
  ASSERT_EQ(c.start(1), "");
  {
    int fd = ::open((spool + "/fill").c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    std::string block(4096, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    ::close(fd);
  }
  auto j = c.job({"exec true"});
  auto note_has = [&](const std::string& what) {
    return c.read("jobs/" + j + "/status").find(what) != std::string::npos;
  };
  auto deadline = std::chrono::steady_clock::now() + 30s;
  // Three refusals in a row: the third backs off 4 s, not 1.
  while (!note_has("backoff 4 s") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  auto st = c.read("jobs/" + j + "/status");
  EXPECT_NE(st.find("start on n1 failed: the spool of n1 is full ("), std::string::npos) << st;
  EXPECT_NE(st.find("waiting for nodes that refused starts: n1 (spool full: "), std::string::npos) << st;
  EXPECT_NE(st.find("3 refusals, backoff 4 s"), std::string::npos) << st;
  EXPECT_EQ(st.find("unschedulable: no nodes"), std::string::npos) << st;
  fs::remove(spool + "/fill");
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << c.read("jobs/" + j + "/status");
}

// The attack on the per-node backoff: mallory and mallory2, who have no account on n1,
// keep jobs there (need node=n1). Each start fails ("user 'mallory' is unknown on node
// n1"). Before, every failure backed n1 off for everyone, doubling, and their jobs (the
// smaller dominant shares) were placed first again at each release: root's job for n1
// never started. Now each failing job is deferred on its own clock (1 s, 2 s, ...), and
// n1 is left alone for 1 s at most, so root's job gets n1 within a couple of seconds.
TEST(SchedE2E, OneUsersFailedStartsDoNotBackANodeOffForOthers) {
  for (const char* name : {"mallory", "mallory2"}) {
    if (::getpwnam(name) != nullptr) {
      GTEST_SKIP() << "user " << name << " has an account here: the test needs names without one";
    }
  }
  cluster c;
  c.strict_nodes = {1};
  ASSERT_EQ(c.start(2), "");
  // root runs something on n2 (a share above the attackers') and fills n1 for now.
  auto r1 = c.job({"need node=n2", "exec sleep 60"});
  auto r0 = c.job({"cpu 2", "need node=n1", "exec sleep 60"});
  c.wait_state(r1, "running");
  c.wait_state(r0, "running");
  std::vector<std::string> mjobs;
  for (std::string name : {"mallory", "mallory2"}) {
    auto fid = c.c->attach(name);
    ASSERT_TRUE(fid.has_value()) << fid.error();
    auto m = c.c->read_file(*fid, "jobs/clone");
    ASSERT_TRUE(m.has_value()) << m.error();
    mjobs.push_back(trim(*m));
    ASSERT_TRUE(c.c->write_file(*fid, "jobs/" + mjobs.back() + "/ctl", "need node=n1\nexec true\n").has_value());
  }
  auto r2 = c.job({"cpu 2", "need node=n1", "exec true"});
  // n1 frees: the attackers' jobs are placed first and fail; root's job must not wait
  // for them. mallory's note says what happened to hers (polled: it changes when her
  // job comes back after 1 s and fails again).
  ASSERT_TRUE(c.write("jobs/" + r0 + "/ctl", "kill\n").has_value());
  // (The note is a quoted status field: its quotes are doubled.)
  const std::string deferred =
      "note='start on n1 failed: user ''mallory'' is unknown on node n1; deferred 1 s (this job''s backoff; n1 stays "
      "open to other jobs)";
  std::string seen;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (seen.find(deferred) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    seen = c.read("jobs/" + mjobs[0] + "/status");
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_NE(seen.find(deferred), std::string::npos) << seen;
  // (Polled for 30 s rather than read from wait, which would block for ever before.)
  c.wait_state(r2, "done");
  ASSERT_EQ(c.status_field(r2, "state"), "done") << c.read("jobs/" + r2 + "/status");
  for (const auto& mj : mjobs) EXPECT_EQ(c.status_field(mj, "state"), "queued") << mj;
  // Their backoffs grow while they go on failing; a later root job still gets n1.
  deadline = std::chrono::steady_clock::now() + 30s;
  while (c.read("jobs/" + mjobs[0] + "/status").find("deferred 4 s") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(c.read("jobs/" + mjobs[0] + "/status").find("deferred 4 s"), std::string::npos);
  auto r3 = c.job({"cpu 2", "need node=n1", "exec true"});
  c.wait_state(r3, "done");
  EXPECT_EQ(c.status_field(r3, "state"), "done") << c.read("jobs/" + r3 + "/status");
}

TEST(SchedE2E, OnlyTheOwnerOrAdminChangesAJob) {
  START(c);
  auto j = c.job({"exec sleep 30"});
  c.wait_state(j, "running");
  auto bob = c.c->attach("bob");
  ASSERT_TRUE(bob.has_value());
  auto r = c.c->write_file(*bob, "jobs/" + j + "/ctl", "kill\n");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), srv9p::err::perm);
  auto out = c.c->read_file(*bob, "jobs/" + j + "/stdout");
  ASSERT_FALSE(out.has_value());
  r = c.c->write_file(*bob, "ctl", "drain n1\n");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(c.status_field(j, "state"), "running");
  ASSERT_TRUE(c.write("jobs/" + j + "/ctl", "kill\n").has_value());  // root is the admin
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "signal 9\n");
}

// Removing jobs/N: by its owner or an admin (jobs/ is 0555: its mode says nothing about
// it), refused while the job runs; its files answer success and do nothing while the job
// could be removed (so that rm -r gets to jobs/N), and refuse it while it runs. The
// synthetic files have the scheduler's start as their time, not 1970.
TEST(SchedE2E, RemovingAJobDirectoryAndItsFiles) {
  auto before = static_cast<std::uint32_t>(::time(nullptr));
  START(c, 1);
  auto remove = [&](std::uint32_t root, const std::string& path) -> fsclient::result<void> {
    auto fid = c.c->walk(root, path);
    if (!fid) return std::unexpected(fid.error());
    return c.c->remove(*fid);
  };
  for (const char* path : {"", "status", "ctl", "jobs", "jobs/clone", "nodes", "nodes/n1", "users"}) {
    auto d = c.c->stat_path(c.root, path);
    ASSERT_TRUE(d.has_value()) << path;
    EXPECT_GE(d->mtime, before) << path;
  }
  auto bob = c.c->attach("bob");
  ASSERT_TRUE(bob.has_value());
  auto running = c.job({"exec sleep 30"});
  auto done = c.job({"exec echo hi"});
  EXPECT_EQ(c.read("jobs/" + done + "/wait"), "exit 0\n");
  c.wait_state(running, "running");
  auto e = remove(*bob, "jobs/" + done);
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error(), srv9p::err::perm);
  e = remove(*bob, "jobs/" + done + "/stdout");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error(), srv9p::err::perm);
  e = remove(c.root, "jobs/" + running);
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error(), "job " + running + " has not ended: kill it first");
  e = remove(c.root, "jobs/" + running + "/ctl");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error(), "job " + running + " has not ended: kill it first");
  EXPECT_FALSE(remove(c.root, "status").has_value());
  EXPECT_FALSE(remove(c.root, "jobs/clone").has_value());
  for (const char* file : {"/ctl", "/status", "/wait", "/stdout", "/stderr", "/out"}) {
    EXPECT_TRUE(remove(c.root, "jobs/" + done + file).has_value()) << file;
  }
  EXPECT_EQ(c.read("jobs/" + done + "/stdout"), "hi\n");
  ASSERT_TRUE(remove(c.root, "jobs/" + done).has_value());
  EXPECT_FALSE(c.c->walk(c.root, "jobs/" + done).has_value());
  // The owner, not an admin, removes a job of its own.
  auto bobs = c.c->read_file(*bob, "jobs/clone");
  ASSERT_TRUE(bobs.has_value());
  EXPECT_TRUE(remove(*bob, "jobs/" + trim(*bobs)).has_value());
  ASSERT_TRUE(c.write("jobs/" + running + "/ctl", "kill\n").has_value());
}

TEST(SchedE2E, DependenciesRunInOrderAndFailuresPropagate) {
  START(c);
  auto a = c.job({"exec sh -c 'sleep 0.3; echo a > $GALAXY_OUT/x'"});
  auto b = c.job({"after " + a, "exec true"});
  auto bad = c.job({"exec false"});
  // queue-anyway: bad may have failed before child's exec, which would refuse it
  // (ImpossibleJobsAreRefusedAtExec); queued, the failure reaches it through the policy.
  auto child = c.job({"after " + bad, "queue-anyway", "exec true"});
  auto grandchild = c.job({"after " + child, "queue-anyway", "exec true"});
  EXPECT_EQ(c.read("jobs/" + b + "/wait"), "exit 0\n");
  EXPECT_GE(std::stoll(c.status_field(b, "started")), std::stoll(c.status_field(a, "ended")));
  EXPECT_EQ(c.read("jobs/" + grandchild + "/wait"), "error dependency " + child + " failed\n");
  EXPECT_EQ(c.status_field(child, "state"), "failed");
  EXPECT_EQ(c.status_field(child, "attempts"), "0");
}

TEST(SchedE2E, ThousandJobsAllFinishWithTheirOutput) {
  START(c);
  constexpr int n = 1000;
  std::vector<std::string> ids(n);
  std::vector<std::thread> submitters;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    submitters.emplace_back([&, t] {
      for (int i = t; i < n; i += 8) {
        auto id = c.c->read_file(c.root, "jobs/clone");
        if (!id) {
          ++failures;
          continue;
        }
        ids[static_cast<std::size_t>(i)] = trim(*id);
        if (!c.c->write_file(c.root, "jobs/" + ids[static_cast<std::size_t>(i)] + "/ctl",
                             "exec echo " + std::to_string(i) + "\n")) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : submitters) t.join();
  ASSERT_EQ(failures.load(), 0);
  for (int i = 0; i < n; ++i) {
    const auto& id = ids[static_cast<std::size_t>(i)];
    ASSERT_EQ(c.read("jobs/" + id + "/wait"), "exit 0\n") << "job " << id;
    ASSERT_EQ(c.read("jobs/" + id + "/stdout"), std::to_string(i) + "\n") << "job " << id;
  }
  auto st = c.read("status");
  EXPECT_NE(st.find("jobs_done=" + std::to_string(n) + " "), std::string::npos) << st;
}

TEST(SchedE2E, NodeKilledMidRunItsJobsFinishElsewhere) {
  START(c);
  std::vector<std::string> jobs;
  for (int i = 0; i < 6; ++i) jobs.push_back(c.job({"exec sh -c 'sleep 2; echo " + std::to_string(i) + "'"}));
  // Wait until all six run (two per node), then kill n2 outright.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (c.read("status").find("jobs_running=6 ") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  std::vector<std::string> on_n2;
  for (const auto& j : jobs) {
    if (c.status_field(j, "node") == "n2") on_n2.push_back(j);
  }
  ASSERT_FALSE(on_n2.empty()) << c.read("status");
  // A reader blocked on a job of the dying node must not hang.
  std::promise<std::string> waited;
  std::thread reader([&] { waited.set_value(c.read("jobs/" + on_n2[0] + "/wait")); });
  c.nodes[1].proc.signal(SIGKILL);
  c.nodes[1].proc.wait();
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(c.read("jobs/" + jobs[i] + "/wait"), "exit 0\n") << jobs[i];
    EXPECT_EQ(c.read("jobs/" + jobs[i] + "/stdout"), std::to_string(i) + "\n");
  }
  auto fut = waited.get_future();
  ASSERT_EQ(fut.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(fut.get(), "exit 0\n");
  reader.join();
  for (const auto& j : on_n2) {
    EXPECT_EQ(c.status_field(j, "attempts"), "2") << c.read("jobs/" + j + "/status");
    EXPECT_NE(c.status_field(j, "node"), "n2");
  }
  auto names = c.c->list_dir(c.root, "nodes");
  ASSERT_TRUE(names.has_value());
  for (const auto& d : *names) EXPECT_NE(d.name, "n2");
  EXPECT_EQ(c.read("nodes/n2/status"), "<error: 'nodes/n2': file does not exist>");
  EXPECT_NE(c.read("status").find("nodes_down=1 "), std::string::npos);
}

TEST(SchedE2E, SchedulerKilledAndRestartedLosesNothingAndRunsNothingTwice) {
  // Without fencing: with this fixture's --down-after 1 the nodes' lease is 0.6 s, and a
  // restart slower than that (the ASan build's) has them fence the running jobs, which
  // then run again (attempts 2). This test is about the store and the reconciliation of
  // what ran; a restart with fencing on is in netns_test's SchedulerKilledAndRestarted.
  cluster c;
  c.sched_extra = {"--no-fence"};
  ASSERT_EQ(c.start(), "");
  // Finished before the crash, running across it, and queued behind them.
  auto before = c.job({"exec echo before"});
  ASSERT_EQ(c.read("jobs/" + before + "/wait"), "exit 0\n");
  std::vector<std::string> across;
  for (int i = 0; i < 10; ++i) {
    across.push_back(c.job({"exec sh -c 'sleep 1; echo " + std::to_string(i) + "'"}));
  }
  // A second scheduler on the same state directory is refused while the first lives.
  auto second = testutil::run({sched_binary, "--listen", "tcp!127.0.0.1!0", "--state", c.dir.file("state")});
  EXPECT_EQ(second.status, 2);
  EXPECT_NE(second.err.find("in use by another galaxy-sched"), std::string::npos) << second.err;
  c.sched.proc.signal(SIGKILL);
  c.sched.proc.wait();
  c.c.reset();
  ASSERT_EQ(c.start_sched(), "");
  EXPECT_EQ(c.read("jobs/" + before + "/stdout"), "before\n");
  for (int i = 0; i < 10; ++i) {
    const auto& j = across[static_cast<std::size_t>(i)];
    EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << c.read("jobs/" + j + "/status");
    EXPECT_EQ(c.read("jobs/" + j + "/stdout"), std::to_string(i) + "\n");
    EXPECT_EQ(c.status_field(j, "attempts"), "1") << c.read("jobs/" + j + "/status");
  }
  // Every task the nodes ran: one per job, none twice.
  int tasks = 0;
  for (int n = 1; n <= 3; ++n) {
    auto list = c.c->list_dir(c.root, "nodes/n" + std::to_string(n) + "/task");
    ASSERT_TRUE(list.has_value()) << list.error();
    tasks += static_cast<int>(list->size()) - 1;  // clone
  }
  EXPECT_EQ(tasks, 11);
}

}  // namespace

namespace {

// DRF between two users on three real nodes (design: "Scheduling"): with the cluster
// drained while both queue, the first pass splits the six CPUs three and three, although
// alice queued first; a quota caps a third user.
TEST(SchedE2E, UsersShareTheClusterFairly) {
  START(c);
  for (const char* n : {"n1", "n2", "n3"}) ASSERT_TRUE(c.write("ctl", std::string("drain ") + n + "\n").has_value());
  ASSERT_TRUE(c.write("ctl", "quota carol cpu=1\n").has_value());
  auto as = [&](const std::string& user) {
    auto r = c.c->attach(user);
    EXPECT_TRUE(r.has_value());
    return *r;
  };
  std::map<std::string, std::uint32_t> roots{{"alice", as("alice")}, {"bob", as("bob")}, {"carol", as("carol")}};
  std::vector<std::pair<std::string, std::string>> jobs;  // (user, id)
  for (const char* user : {"alice", "bob", "carol"}) {
    for (int i = 0; i < 8; ++i) {
      auto id = c.c->read_file(roots[user], "jobs/clone");
      ASSERT_TRUE(id.has_value());
      std::string j = trim(*id);
      ASSERT_TRUE(c.c->write_file(roots[user], "jobs/" + j + "/ctl", "exec sleep 30\n").has_value());
      jobs.emplace_back(user, j);
    }
  }
  EXPECT_NE(c.read("users/alice").find(" queued=8 "), std::string::npos) << c.read("users/alice");
  for (const char* n : {"n1", "n2", "n3"}) ASSERT_TRUE(c.write("ctl", std::string("undrain ") + n + "\n").has_value());
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (c.read("status").find("jobs_running=6 ") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  auto running = [&](const std::string& user) {
    auto t = c.read("users/" + user);
    auto p = t.find(" running=");
    return p == std::string::npos ? -1 : std::stoi(t.substr(p + 9));
  };
  // Carol's quota holds her to one CPU; alice and bob split the rest evenly.
  EXPECT_EQ(running("carol"), 1) << c.read("users/carol");
  EXPECT_EQ(running("alice") + running("bob"), 5) << c.read("users/alice") << c.read("users/bob");
  EXPECT_LE(std::abs(running("alice") - running("bob")), 1) << c.read("users/alice") << c.read("users/bob");
  EXPECT_NE(c.read("users/carol").find("quota_cpu_millis=1000"), std::string::npos) << c.read("users/carol");
  // The queue interleaves the users; a queued job of carol's says why it waits.
  std::string carol_queued;
  for (const auto& [user, j] : jobs) {
    if (user == "carol" && c.status_field(j, "state") == "queued") carol_queued = j;
  }
  ASSERT_FALSE(carol_queued.empty());
  EXPECT_NE(c.read("jobs/" + carol_queued + "/status").find("over quota"), std::string::npos)
      << c.read("jobs/" + carol_queued + "/status");
  for (const auto& [user, j] : jobs) ASSERT_TRUE(c.write("jobs/" + j + "/ctl", "kill\n").has_value());
}

}  // namespace

namespace {

// Job arrays (issue 6): `array N` makes N tasks, jobs/J/0..N-1, each with $GALAXY_INDEX;
// the array job ends when its last task does, and `after J` waits for all of them.
TEST(SchedE2E, ArrayTasksAreFilesWithTheirIndex) {
  START(c);
  auto j = c.job({"array 5", "exec sh -c 'echo $GALAXY_INDEX of $GALAXY_ARRAY_JOB'"});
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << c.read("jobs/" + j + "/status");
  EXPECT_EQ(c.status_field(j, "state"), "done");
  EXPECT_EQ(c.status_field(j, "tasks"), "5");
  auto names = [&](const std::string& path) {
    std::set<std::string> out;
    auto l = c.c->list_dir(c.root, path);
    EXPECT_TRUE(l.has_value()) << path;
    if (l) {
      for (const auto& d : *l) out.insert(d.name);
    }
    return out;
  };
  EXPECT_EQ(names("jobs/" + j),
            (std::set<std::string>{"ctl", "status", "wait", "stdout", "stderr", "out", "0", "1", "2", "3", "4"}));
  // The tasks are not listed at the top, and not reachable there by their own ids.
  EXPECT_EQ(names("jobs"), (std::set<std::string>{"clone", j}));
  for (int i = 0; i < 5; ++i) {
    std::string t = j + "/" + std::to_string(i);
    EXPECT_EQ(c.read("jobs/" + t + "/wait"), "exit 0\n");
    EXPECT_EQ(c.read("jobs/" + t + "/stdout"), std::to_string(i) + " of " + j + "\n");
    auto st = c.read("jobs/" + t + "/status");
    EXPECT_NE(st.find(" array=" + j + " index=" + std::to_string(i)), std::string::npos) << st;
    ASSERT_EQ(st.rfind("id=", 0), 0u) << st;
    auto own_id = st.substr(3, st.find(' ') - 3);
    EXPECT_NE(own_id, j);
    EXPECT_FALSE(c.c->stat_path(c.root, "jobs/" + own_id).has_value()) << own_id;
  }
  EXPECT_FALSE(c.c->stat_path(c.root, "jobs/" + j + "/5").has_value());
  // An array's spec reads back with its array line; its tasks' without.
  EXPECT_EQ(c.read("jobs/" + j + "/ctl"), "array 5\nexec sh -c 'echo $GALAXY_INDEX of $GALAXY_ARRAY_JOB'\n");
  EXPECT_EQ(c.read("jobs/" + j + "/3/ctl"), "exec sh -c 'echo $GALAXY_INDEX of $GALAXY_ARRAY_JOB'\n");
  // A task goes with its array, not alone.
  auto rm = c.write("jobs/" + j + "/2/ctl", "rm\n");
  ASSERT_FALSE(rm.has_value());
  EXPECT_NE(rm.error().find("remove the array job"), std::string::npos) << rm.error();
  ASSERT_TRUE(c.write("jobs/" + j + "/ctl", "rm\n").has_value());
  EXPECT_EQ(names("jobs"), (std::set<std::string>{"clone"}));
}

TEST(SchedE2E, ArrayFailuresDependenciesKillAndBadInput) {
  START(c);
  // A failed task fails the array; the others are untouched.
  auto f = c.job({"array 3", "exec sh -c 'exit $GALAXY_INDEX'"});
  EXPECT_EQ(c.read("jobs/" + f + "/wait"), "error 2 of 3 tasks failed\n") << c.read("jobs/" + f + "/status");
  EXPECT_EQ(c.status_field(f, "state"), "failed");
  EXPECT_EQ(c.status_field(f + "/0", "state"), "done");
  EXPECT_EQ(c.read("jobs/" + f + "/2/wait"), "exit 2\n");
  // `after` an array waits for every task.
  auto a = c.job({"array 4", "exec sh -c 'sleep 0.$GALAXY_INDEX'"});
  auto d = c.job({"after " + a, "exec true"});
  EXPECT_EQ(c.read("jobs/" + d + "/wait"), "exit 0\n");
  for (int i = 0; i < 4; ++i) {
    EXPECT_GE(std::stoll(c.status_field(d, "started")), std::stoll(c.status_field(a + "/" + std::to_string(i), "ended")));
  }
  // After an array that failed: refused at exec; queued anyway, it fails as a dependent.
  auto refused = c.job({"after " + f});
  auto why = c.write("jobs/" + refused + "/ctl", "exec true\n");
  ASSERT_FALSE(why.has_value());
  EXPECT_EQ(why.error(), "cannot run: after: job " + f + " failed");
  auto after_failed = c.job({"after " + f, "queue-anyway", "exec true"});
  EXPECT_EQ(c.read("jobs/" + after_failed + "/wait").rfind("error dependency", 0), 0u);
  // kill on the array kills every task; the array ends killed.
  auto k = c.job({"array 8", "exec sleep 30"});
  c.wait_state(k, "running");
  ASSERT_TRUE(c.write("jobs/" + k + "/ctl", "kill\n").has_value());
  EXPECT_EQ(c.read("jobs/" + k + "/wait"), "killed\n") << c.read("jobs/" + k + "/status");
  for (int i = 0; i < 8; ++i) EXPECT_EQ(c.status_field(k + "/" + std::to_string(i), "state"), "killed");
  // Bad sizes are refused and change nothing.
  auto bad = trim(c.read("jobs/clone"));
  for (const char* line : {"array 0\n", "array x\n", "array 10001\n", "array\n"}) {
    auto ok = c.write("jobs/" + bad + "/ctl", line);
    EXPECT_FALSE(ok.has_value()) << line;
  }
  EXPECT_EQ(c.read("jobs/" + bad + "/ctl"), "");
}

TEST(SchedE2E, ArraySurvivesASchedulerKill) {
  START(c);
  auto j = c.job({"array 6", "exec sh -c 'sleep 1; echo $GALAXY_INDEX'"});
  c.sched.proc.signal(SIGKILL);
  c.sched.proc.wait();
  c.c.reset();
  ASSERT_EQ(c.start_sched(), "");
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << c.read("jobs/" + j + "/status");
  for (int i = 0; i < 6; ++i) {
    std::string t = j + "/" + std::to_string(i);
    EXPECT_EQ(c.read("jobs/" + t + "/stdout"), std::to_string(i) + "\n");
    EXPECT_EQ(c.status_field(t, "attempts"), "1") << c.read("jobs/" + t + "/status");
  }
  // A crash after the last task's end was stored but before the array's own: the store
  // says the array still runs; the next start settles it from its tasks.
  c.sched.proc.signal(SIGKILL);
  c.sched.proc.wait();
  c.c.reset();
  {
    auto store = sched::job_store::open(c.dir.file("state") + "/sched.db");
    ASSERT_TRUE(store.has_value()) << store.error();
    auto jobs = (*store)->load_jobs();
    ASSERT_TRUE(jobs.has_value()) << jobs.error();
    for (auto rec : *jobs) {
      if (std::to_string(rec.id) != j) continue;
      rec.state = sched::job_state::running;
      rec.exit.clear();
      rec.ended_ms = 0;
      (*store)->put(rec, nullptr);
    }
    (*store)->flush();
  }
  ASSERT_EQ(c.start_sched(), "");
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << c.read("jobs/" + j + "/status");
  EXPECT_EQ(c.status_field(j, "state"), "done");
}

// Speculation (MapReduce's backup tasks, issue 6): a task that runs far longer than its
// siblings gets a second copy on another node; the first to finish wins and the other is
// killed. Here task 3's first copy sleeps; its backup ($GALAXY_BACKUP=1) does not.
TEST(SchedE2E, AStragglerGetsABackupCopyThatWins) {
  START(c);
  auto j = c.job({"array 4", "speculate",
                  "exec sh -c 'if [ $GALAXY_INDEX = 3 ] && [ -z \"$GALAXY_BACKUP\" ]; then exec sleep 61.25; fi; "
                  "echo done $GALAXY_INDEX'"});
  c.wait_state(j + "/3", "running");
  auto first_node = c.status_field(j + "/3", "node");
  auto first_task = c.status_field(j + "/3", "task");
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << c.read("jobs/" + j + "/3/status");
  EXPECT_EQ(c.read("jobs/" + j + "/3/stdout"), "done 3\n");
  EXPECT_NE(c.status_field(j + "/3", "node"), first_node) << c.read("jobs/" + j + "/3/status");
  EXPECT_EQ(c.status_field(j + "/3", "attempts"), "1");
  // The straggling first copy was killed on its node.
  std::string wait_path = "nodes/" + first_node + "/task/" + first_task + "/wait";
  EXPECT_EQ(c.read(wait_path), "signal 9\n");
}

// A queued job's new priority moves it in the queue at once (the policy's set_priority),
// from its own ctl or from /ctl.
TEST(SchedE2E, APriorityChangeReordersTheQueueAtOnce) {
  START(c);
  for (const char* n : {"n1", "n2", "n3"}) ASSERT_TRUE(c.write("ctl", std::string("drain ") + n + "\n").has_value());
  auto a = c.job({"exec true"});
  auto b = c.job({"exec true"});
  auto d = c.job({"exec true"});
  auto first = [&] {
    auto q = c.read("queue");
    return q.substr(0, q.find(' '));
  };
  EXPECT_EQ(first(), a);
  ASSERT_TRUE(c.write("jobs/" + d + "/ctl", "priority 5\n").has_value());
  EXPECT_EQ(first(), d) << c.read("queue");
  ASSERT_TRUE(c.write("ctl", "priority " + b + " 9\n").has_value());
  EXPECT_EQ(first(), b) << c.read("queue");
  EXPECT_EQ(c.status_field(b, "priority"), "9");
  for (const char* n : {"n1", "n2", "n3"}) ASSERT_TRUE(c.write("ctl", std::string("undrain ") + n + "\n").has_value());
  for (const auto& j : {a, b, d}) EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n");
}

// A node cut off (stopped, not dead) loses its jobs, which run again elsewhere; when it
// comes back, the scheduler kills the tasks of those lost attempts, so no job runs on.
TEST(SchedE2E, ACutOffNodeThatReturnsHasItsLostTasksKilled) {
  START(c);
  ASSERT_TRUE(c.write("ctl", "drain n1\n").has_value());
  ASSERT_TRUE(c.write("ctl", "drain n3\n").has_value());
  auto j = c.job({"exec sh -c 'if [ $GALAXY_ATTEMPT = 1 ]; then sleep 30; fi; echo once'"});
  c.wait_state(j, "running");
  ASSERT_EQ(c.status_field(j, "node"), "n2");
  auto stale_task = c.status_field(j, "task");
  ASSERT_TRUE(c.write("ctl", "undrain n1\n").has_value());
  c.nodes[1].proc.signal(SIGSTOP);
  // Marked down after --down-after (1 s), requeued, and run on n1.
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (c.status_field(j, "node") != "n1" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(c.status_field(j, "node"), "n1") << c.read("jobs/" + j + "/status");
  c.nodes[1].proc.signal(SIGCONT);
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n");
  EXPECT_EQ(c.read("jobs/" + j + "/stdout"), "once\n");
  // n2 is back: the lost attempt's task was killed there, not left to finish: by n2
  // itself, whose lease ran out while it was stopped, as soon as it ran again (fencing).
  deadline = std::chrono::steady_clock::now() + 20s;
  while (c.read("nodes/n2/status").rfind("<error", 0) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  auto stale_wait = c.read("nodes/n2/task/" + stale_task + "/wait");
  EXPECT_TRUE(stale_wait.starts_with("lost fenced: ")) << stale_wait;
}

}  // namespace

// ---- Issue 12: the relay's creates, bounded ctl input, owners and admins, state on disk --

// The daemon's resident memory in KiB (/proc/PID/status VmRSS), or -1.
long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return -1;
}

// The names in a node's directory, read from the node itself (not through the relay).
std::set<std::string> node_names(fsclient::client& node, std::uint32_t root, const std::string& path) {
  std::set<std::string> out;
  auto l = node.list_dir(root, path);
  EXPECT_TRUE(l.has_value()) << path << ": " << (l ? "" : l.error());
  if (l) {
    for (const auto& d : *l) out.insert(d.name);
  }
  return out;
}

TEST(SchedE2E, RelayedCreateOfAFileAndADirectoryBelowIn) {
  START(c);
  std::string t = trim(c.read("nodes/n1/task/clone"));
  ASSERT_FALSE(t.empty());
  std::string in = "nodes/n1/task/" + t + "/in";
  auto dir = c.c->walk(c.root, in);
  ASSERT_TRUE(dir.has_value()) << dir.error();
  auto created = c.c->create(*dir, "data.txt", 0640, srv9p::owrite);
  ASSERT_TRUE(created.has_value()) << created.error();
  ASSERT_TRUE(c.c->write(*dir, 0, "hello\n").has_value());  // the created fid is open for writing
  ASSERT_TRUE(c.c->clunk(*dir).has_value());
  auto dir2 = c.c->walk(c.root, in);
  ASSERT_TRUE(dir2.has_value());
  auto sub = c.c->create(*dir2, "sub", srv9p::dmdir | 0750, srv9p::oread);
  ASSERT_TRUE(sub.has_value()) << sub.error();
  EXPECT_TRUE(sub->qid.type & srv9p::qtdir);
  ASSERT_TRUE(c.c->clunk(*dir2).has_value());
  auto dir3 = c.c->walk(c.root, in + "/sub");
  ASSERT_TRUE(dir3.has_value()) << dir3.error();
  ASSERT_TRUE(c.c->create(*dir3, "x", 0640, srv9p::owrite).has_value());
  ASSERT_TRUE(c.c->write(*dir3, 0, "deep\n").has_value());
  ASSERT_TRUE(c.c->clunk(*dir3).has_value());
  // The task sees both in its working directory.
  ASSERT_TRUE(c.write("nodes/n1/task/" + t + "/ctl", "exec cat data.txt sub/x\n").has_value());
  EXPECT_EQ(c.read("nodes/n1/task/" + t + "/wait"), "exit 0\n");
  EXPECT_EQ(c.read("nodes/n1/task/" + t + "/stdout"), "hello\ndeep\n");
}

TEST(SchedE2E, RelayedCreatesRemovesAndWstatsOfTwoUsersLandOnTheirOwnFids) {
  START(c);
  auto node = fsclient::client::dial(c.node_dials[0]);
  ASSERT_TRUE(node.has_value()) << node.error();
  auto node_root = (*node)->attach("root");
  ASSERT_TRUE(node_root.has_value());
  struct user {
    std::string name;
    std::unique_ptr<fsclient::client> cl;
    std::uint32_t root = 0;
    std::string task;
  };
  std::vector<user> users(2);
  users[0].name = "alice";
  users[1].name = "bob";
  for (auto& u : users) {
    auto cl = fsclient::client::dial(c.sched.dials.at(0));
    ASSERT_TRUE(cl.has_value()) << cl.error();
    u.cl = std::move(*cl);
    auto r = u.cl->attach(u.name);
    ASSERT_TRUE(r.has_value()) << r.error();
    u.root = *r;
    auto t = u.cl->read_file(u.root, "nodes/n1/task/clone");
    ASSERT_TRUE(t.has_value()) << t.error();
    u.task = trim(*t);
  }
  constexpr int files = 40;
  // Both users at once, each on its own connection to the scheduler: create files in their
  // own task's in/, write them, wstat every fourth (a truncate), remove every other one.
  auto work = [&](user& u) {
    std::string in = "nodes/n1/task/" + u.task + "/in";
    std::string errors;
    for (int i = 0; i < files; ++i) {
      std::string name = u.name + "-" + std::to_string(i);
      auto d = u.cl->walk(u.root, in);
      if (!d) return errors + "walk: " + d.error();
      auto cr = u.cl->create(*d, name, 0640, srv9p::owrite);
      if (!cr) return errors + "create " + name + ": " + cr.error();
      auto w = u.cl->write(*d, 0, u.name + "\n");
      if (!w) errors += "write " + name + ": " + w.error() + "; ";
      if (w && *w != u.name.size() + 1) errors += "short write; ";
      (void)u.cl->clunk(*d);
    }
    for (int i = 0; i < files; i += 4) {
      auto f = u.cl->walk(u.root, in + "/" + u.name + "-" + std::to_string(i));
      if (!f) return errors + "walk: " + f.error();
      srv9p::dir d = srv9p::dont_touch_dir();
      d.length = 0;
      if (auto ok = u.cl->wstat(*f, d); !ok) errors += "wstat: " + ok.error() + "; ";
      (void)u.cl->clunk(*f);
    }
    for (int i = 1; i < files; i += 2) {
      auto f = u.cl->walk(u.root, in + "/" + u.name + "-" + std::to_string(i));
      if (!f) return errors + "walk: " + f.error();
      if (auto ok = u.cl->remove(*f); !ok) errors += "remove: " + ok.error() + "; ";
    }
    return errors;
  };
  auto a = std::async(std::launch::async, work, std::ref(users[0]));
  auto b = std::async(std::launch::async, work, std::ref(users[1]));
  EXPECT_EQ(a.get(), "");
  EXPECT_EQ(b.get(), "");
  // On the node, each user's files are in that user's task and nowhere else, with the
  // right contents: every create, wstat and remove went to that user's own fid.
  for (const auto& u : users) {
    std::set<std::string> want;
    for (int i = 0; i < files; i += 2) want.insert(u.name + "-" + std::to_string(i));
    std::string in = "task/" + u.task + "/in";
    EXPECT_EQ(node_names(**node, *node_root, in), want) << u.name;
    for (int i = 0; i < files; i += 2) {
      auto text = (*node)->read_file(*node_root, in + "/" + u.name + "-" + std::to_string(i));
      ASSERT_TRUE(text.has_value()) << text.error();
      // The length-0 wstats (every fourth file) truncated that user's own file, on the
      // node, through the relay; the others keep their text.
      EXPECT_EQ(*text, i % 4 == 0 ? std::string() : u.name + "\n") << u.name << " " << i;
    }
  }
  // Nor can one create, truncate or remove in the other's task (the node checks the
  // user's own attach).
  auto d = users[1].cl->walk(users[1].root, "nodes/n1/task/" + users[0].task + "/in");
  if (d) {
    auto cr = users[1].cl->create(*d, "intruder", 0640, srv9p::owrite);
    EXPECT_FALSE(cr.has_value());
    if (!cr) (void)users[1].cl->clunk(*d);
  }
  auto g = users[1].cl->walk(users[1].root, "nodes/n1/task/" + users[0].task + "/in/alice-0");
  if (g) {
    srv9p::dir d0 = srv9p::dont_touch_dir();
    d0.length = 0;
    auto ws = users[1].cl->wstat(*g, d0);
    ASSERT_FALSE(ws.has_value());
    EXPECT_EQ(ws.error(), srv9p::err::perm);
    (void)users[1].cl->clunk(*g);
  }
  auto f = users[1].cl->walk(users[1].root, "nodes/n1/task/" + users[0].task + "/in/alice-0");
  if (f) {
    EXPECT_FALSE(users[1].cl->remove(*f).has_value());
  }
  EXPECT_EQ(node_names(**node, *node_root, "task/" + users[0].task + "/in").count("intruder"), 0u);
  EXPECT_EQ(node_names(**node, *node_root, "task/" + users[0].task + "/in").count("alice-0"), 1u);
}

TEST(SchedE2E, TwentyThousandCtlLinesInOneWriteInBoundedMemory) {
  START(c);
  ASSERT_GT(c.c->iounit(), 300000u);  // each write below is one 9P write
  auto j = trim(c.read("jobs/clone"));
  std::string ctl = "jobs/" + j + "/ctl";
  // 20 000 lines that are each accepted: every one is applied, in order.
  std::string lines;
  for (int i = 0; i < 20000; ++i) lines += "priority " + std::to_string(i % 7) + "\n";
  auto ok = c.write(ctl, lines);
  ASSERT_TRUE(ok.has_value()) << ok.error();
  auto spec = c.read(ctl);
  EXPECT_TRUE(spec.ends_with("priority 4\npriority 5\npriority 6\npriority 0\n")) << spec.substr(spec.size() - 60);
  EXPECT_EQ(std::count(spec.begin(), spec.end(), '\n'), 20000);
  // 20 000 env lines: the first 1024 variables are taken, the next line is the write's
  // answer, and nothing after it is applied.
  auto k = trim(c.read("jobs/clone"));
  lines.clear();
  for (int i = 0; i < 20000; ++i) lines += "env K" + std::to_string(i) + "=v\n";
  ok = c.write("jobs/" + k + "/ctl", lines);
  ASSERT_FALSE(ok.has_value());
  EXPECT_EQ(ok.error(), "job " + k + ": more than 1024 env variables");
  spec = c.read("jobs/" + k + "/ctl");
  EXPECT_TRUE(spec.ends_with("env K1023=v\n")) << spec.substr(spec.size() - 40);
  EXPECT_EQ(std::count(spec.begin(), spec.end(), '\n'), 1024);
  // The same on /ctl, each line answered at once.
  lines.clear();
  for (int i = 0; i < 20000; ++i) lines += i % 2 ? "policy spread\n" : "policy binpack\n";
  ok = c.write("ctl", lines);
  ASSERT_TRUE(ok.has_value()) << ok.error();
  EXPECT_NE(c.read("status").find("policy=spread"), std::string::npos);
  // Alive, serving, and small.
  EXPECT_TRUE(c.sched.proc.running());
  long rss = rss_kib(c.sched.proc.pid());
  EXPECT_GT(rss, 0);
  EXPECT_LT(rss, 200 * 1024) << "VmRSS " << rss << " KiB";
  auto done = c.job({"exec echo still here"});
  EXPECT_EQ(c.read("jobs/" + done + "/wait"), "exit 0\n");
  // The spec as a whole is bounded too.
  auto m = trim(c.read("jobs/clone"));
  std::string name(60000, 'n');
  std::string err;
  for (int i = 0; i < 6 && err.empty(); ++i) {
    auto r = c.write("jobs/" + m + "/ctl", "name " + name + "\n");
    if (!r) err = r.error();
  }
  EXPECT_EQ(err, "job " + m + ": spec longer than 262144 bytes");
}

TEST(SchedE2E, ATenMegabyteLineAndANulArgumentAreErrors) {
  START(c);
  auto j = trim(c.read("jobs/clone"));
  std::string ctl = "jobs/" + j + "/ctl";
  auto r = c.write(ctl, "env A=" + std::string(10 << 20, 'x') + "\n");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), "ctl line longer than 65536 bytes");
  r = c.write(ctl, std::string("env A=b\0c\n", 10));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), "NUL in ctl message");
  r = c.write(ctl, std::string("exec /bin/echo 'a\0b'\n", 21));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), "NUL in ctl message");
  EXPECT_EQ(c.read(ctl), "");  // nothing was taken
  EXPECT_EQ(c.status_field(j, "state"), "new");
  ASSERT_TRUE(c.write(ctl, "exec echo fine\n").has_value());
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n");
  EXPECT_TRUE(c.sched.proc.running());
}

TEST(SchedE2E, OnlyTheOwnerAndTheAdminsReadAJobOrKillIt) {
  cluster c;
  c.sched_extra = {"--admin", "carol", "--admin", "dave"};
  ASSERT_EQ(c.start(), "");
  auto as = [&](const std::string& who) {
    auto r = c.c->attach(who);
    EXPECT_TRUE(r.has_value()) << who;
    return r.value_or(0);
  };
  std::uint32_t alice = as("alice"), bob = as("bob"), carol = as("carol"), dave = as("dave");
  auto j = trim(c.c->read_file(alice, "jobs/clone").value_or(""));
  ASSERT_FALSE(j.empty());
  ASSERT_TRUE(c.c->write_file(alice, "jobs/" + j + "/ctl", "env SECRET=s3cr3t\n").has_value());
  ASSERT_TRUE(c.c->write_file(alice, "jobs/" + j + "/ctl", "exec sh -c 'echo f > $GALAXY_OUT/f; echo out; exec sleep 30'\n").has_value());
  c.wait_state(j, "running");
  std::string dir = "jobs/" + j + "/";
  // bob: neither the spec (its env), nor the output, nor out/; no kill, no /ctl.
  for (const char* f : {"ctl", "stdout", "stderr", "out/f"}) {
    auto r = c.c->read_file(bob, dir + f);
    EXPECT_FALSE(r.has_value()) << f << ": " << r.value_or("");
  }
  auto w = c.c->write_file(bob, dir + "ctl", "kill\n");
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error(), srv9p::err::perm);
  for (const char* line : {"drain n1\n", "priority " , "quota bob cpu=100\n"}) {
    std::string l = line;
    if (l == "priority ") l += j + " 5\n";
    auto r = c.c->write_file(bob, "ctl", l);
    ASSERT_FALSE(r.has_value()) << l;
    EXPECT_EQ(r.error(), srv9p::err::perm);
  }
  EXPECT_FALSE(c.c->read_file(bob, "ctl").has_value());  // the nodes' dial strings
  // What squeue would show is everyone's.
  EXPECT_NE(c.c->read_file(bob, dir + "status").value_or("").find("owner=alice "), std::string::npos);
  EXPECT_TRUE(c.c->read_file(bob, "queue").has_value());
  EXPECT_EQ(c.status_field(j, "state"), "running");
  // The owner and every admin may read; an admin kills it.
  EXPECT_NE(c.c->read_file(alice, dir + "ctl").value_or("").find("SECRET"), std::string::npos);
  EXPECT_NE(c.c->read_file(carol, dir + "ctl").value_or("").find("SECRET"), std::string::npos);
  // (One read: the whole file would block until the job ends. "out" comes after out/f is
  // written, so the kill below cannot come before it.)
  auto out = c.c->walk(dave, dir + "stdout");
  ASSERT_TRUE(out.has_value()) << out.error();
  ASSERT_TRUE(c.c->open(*out, srv9p::oread).has_value());
  EXPECT_EQ(c.c->read(*out, 0, 100).value_or("<none>"), "out\n");
  (void)c.c->clunk(*out);
  auto rootst = c.c->read_file(c.root, "ctl");
  EXPECT_TRUE(rootst.has_value());
  auto admin_ctl = c.c->write_file(dave, "ctl", "policy binpack\n");
  ASSERT_TRUE(admin_ctl.has_value()) << admin_ctl.error();
  auto carol_kill = c.c->write_file(carol, dir + "ctl", "kill\n");
  ASSERT_TRUE(carol_kill.has_value()) << carol_kill.error() << " " << c.read(dir + "status");
  EXPECT_EQ(c.read(dir + "wait"), "signal 9\n");
  EXPECT_EQ(c.c->read_file(carol, dir + "out/f").value_or(""), "f\n");
  EXPECT_FALSE(c.c->read_file(bob, dir + "out/f").has_value());
  // root is an admin without being named.
  auto k = trim(c.c->read_file(alice, "jobs/clone").value_or(""));
  ASSERT_TRUE(c.c->write_file(alice, "jobs/" + k + "/ctl", "exec sleep 30\n").has_value());
  auto bob_kill = c.c->write_file(bob, "jobs/" + k + "/ctl", "kill\n");
  ASSERT_FALSE(bob_kill.has_value());
  EXPECT_EQ(bob_kill.error(), srv9p::err::perm);
  ASSERT_TRUE(c.c->write_file(c.root, "jobs/" + k + "/ctl", "kill\n").has_value());
  c.wait_state(k, "killed");
  EXPECT_EQ(c.status_field(k, "state"), "killed");
}

TEST(SchedE2E, StateAndResultsAreTheDaemonsAlone) {
  START(c);
  auto j = c.job({"exec sh -c 'echo out; echo err >&2; mkdir $GALAXY_OUT/d; echo x > $GALAXY_OUT/d/x; echo y > $GALAXY_OUT/y'"});
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n");
  c.wait_state(j, "done");
  EXPECT_EQ(c.read("jobs/" + j + "/out/d/x"), "x\n");
  auto mode = [&](const std::string& rel) -> int {
    struct ::stat st{};
    if (::lstat(c.dir.file("state/" + rel).c_str(), &st) != 0) return -1;
    return static_cast<int>(st.st_mode & 07777);
  };
  EXPECT_EQ(mode(""), 0700);
  EXPECT_EQ(mode("jobs"), 0700);
  EXPECT_EQ(mode("jobs/" + j), 0700);
  EXPECT_EQ(mode("jobs/" + j + "/stdout"), 0600);
  EXPECT_EQ(mode("jobs/" + j + "/stderr"), 0600);
  EXPECT_EQ(mode("jobs/" + j + "/out"), 0700);
  EXPECT_EQ(mode("jobs/" + j + "/out/d"), 0700);
  EXPECT_EQ(mode("jobs/" + j + "/out/d/x"), 0600);
  EXPECT_EQ(mode("jobs/" + j + "/out/y"), 0600);
  EXPECT_EQ(mode("sched.db"), 0600);
  EXPECT_EQ(mode("lock"), 0600);
  for (const char* f : {"sched.db-wal", "sched.db-shm"}) {
    int m = mode(f);
    if (m != -1) {
      EXPECT_EQ(m, 0600) << f;
    }
  }
  // A small result (the one-batch path) is private too.
  auto k = c.job({"exec echo small"});
  EXPECT_EQ(c.read("jobs/" + k + "/wait"), "exit 0\n");
  c.wait_state(k, "done");
  EXPECT_EQ(mode("jobs/" + k), 0700);
  EXPECT_EQ(mode("jobs/" + k + "/stdout"), 0600);
}

// Bytes a file or directory tree takes on disk (st_blocks), as du counts them.
std::uint64_t disk_bytes(const std::string& path) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(path, ec)) {
    struct ::stat st{};
    if (::lstat(e.path().c_str(), &st) == 0) total += static_cast<std::uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

TEST(SchedE2E, ResultsOverTheLimitsAreCutAndTheJobEndsOnce) {
  cluster c;
  c.sched_extra = {"--max-result-bytes", "100000", "--max-result-files", "20"};
  ASSERT_EQ(c.start(), "");
  const std::string note_bytes = "note='results over the limit of 100000 bytes: not all copied'";
  // The attack: a sparse file of 2 GB below out/ (a few blocks on the node).
  auto sparse = c.job({"exec sh -c 'echo hi; truncate -s 2G $GALAXY_OUT/big; echo after > $GALAXY_OUT/zz'"});
  // Output over the limit, and more files than the limit.
  auto loud = c.job({"exec sh -c 'yes x | head -c 300000'"});
  auto many = c.job({"exec sh -c 'for i in $(seq 1 40); do echo $i > $GALAXY_OUT/f$i; done'"});
  // Within the limits: everything, no note.
  auto fits = c.job({"exec sh -c 'yes y | head -c 90000; echo f > $GALAXY_OUT/f'"});
  for (const auto& j : {sparse, loud, many, fits}) {
    EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << j;
    c.wait_state(j, "done");
    EXPECT_EQ(c.status_field(j, "state"), "done") << c.read("jobs/" + j + "/status");
  }
  std::string jobs = c.dir.file("state/jobs/");
  // The sparse job: files in the node's order (stdout first) while they fit; big is cut
  // so that the whole takes exactly the limit.
  EXPECT_NE(c.read("jobs/" + sparse + "/status").find(note_bytes), std::string::npos)
      << c.read("jobs/" + sparse + "/status");
  EXPECT_EQ(c.read("jobs/" + sparse + "/stdout"), "hi\n");
  std::uint64_t sizes = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(jobs + sparse)) {
    if (e.is_regular_file()) sizes += e.file_size();
  }
  EXPECT_EQ(sizes, 100000u);
  EXPECT_LE(disk_bytes(jobs + sparse), 200000u);
  // What was kept of big reads through the tree.
  auto big = c.c->stat_path(c.root, "jobs/" + sparse + "/out/big");
  ASSERT_TRUE(big.has_value()) << big.error();
  EXPECT_GT(big->length, 0u);
  EXPECT_LE(big->length, 100000u - 3);
  EXPECT_EQ(c.c->read_file(c.root, "jobs/" + sparse + "/out/big").value_or("x"), std::string(big->length, '\0'));
  struct ::stat st{};
  // stdout over the limit keeps its first 100000 bytes.
  EXPECT_NE(c.read("jobs/" + loud + "/status").find(note_bytes), std::string::npos);
  ASSERT_EQ(::stat((jobs + loud + "/stdout").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 100000);
  std::string xs;
  while (xs.size() < 100000) xs += "x\n";
  EXPECT_EQ(c.read("jobs/" + loud + "/stdout"), xs);
  // 40 files: 20 are kept (stdout and stderr are two of them).
  EXPECT_NE(c.read("jobs/" + many + "/status").find("note='results over the limit of 20 files: not all copied'"),
            std::string::npos)
      << c.read("jobs/" + many + "/status");
  auto kept = c.c->list_dir(c.root, "jobs/" + many + "/out");
  ASSERT_TRUE(kept.has_value()) << kept.error();
  EXPECT_EQ(kept->size(), 18u);
  // Within the limits: all of it, and no note.
  std::string ys;
  while (ys.size() < 90000) ys += "y\n";
  EXPECT_EQ(c.read("jobs/" + fits + "/stdout"), ys);
  EXPECT_EQ(c.read("jobs/" + fits + "/out/f"), "f\n");
  EXPECT_EQ(c.status_field(fits, "note"), "-");
  // Each ran once, and none runs again.
  std::this_thread::sleep_for(500ms);
  for (const auto& j : {sparse, loud, many, fits}) {
    EXPECT_EQ(c.status_field(j, "attempts"), "1") << j;
    EXPECT_EQ(c.status_field(j, "state"), "done") << j;
  }
  // Bad limits stop the daemon at start-up with a message.
  auto bad = testutil::run({sched_binary, "--listen", "tcp!127.0.0.1!0", "--state", c.dir.file("state2"),
                            "--max-result-bytes", "0"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--max-result-bytes must be at least 1"), std::string::npos) << bad.err;
}

TEST(SchedE2E, OneUserCannotTakeTheNodeLinkThroughTheRelay) {
  cluster c;
  c.sched_extra = {"--relay-fids", "10", "--relay-requests", "20", "--relay-fids-total", "15"};
  ASSERT_EQ(c.start(1), "");
  // bob opens files on n1 through two connections of his own and keeps them open.
  auto second = fsclient::client::dial(c.sched.dials.at(0));
  ASSERT_TRUE(second.has_value()) << second.error();
  auto bob1 = c.c->attach("bob");
  auto bob2 = (*second)->attach("bob");
  ASSERT_TRUE(bob1 && bob2);
  auto open_on = [](fsclient::client& cl, std::uint32_t root, const std::string& path) -> fsclient::result<std::uint32_t> {
    auto f = cl.walk(root, path);
    if (!f) return f;
    if (auto o = cl.open(*f, srv9p::oread); !o) {
      (void)cl.clunk(*f);
      return std::unexpected(o.error());
    }
    return f;
  };
  std::vector<std::uint32_t> held;
  for (int i = 0; i < 10; ++i) {
    auto& cl = i % 2 ? **second : *c.c;
    auto f = open_on(cl, i % 2 ? *bob2 : *bob1, i < 4 ? "nodes/n1/events" : "nodes/n1/status");
    ASSERT_TRUE(f.has_value()) << i << ": " << f.error();
    held.push_back(*f);
  }
  auto over = open_on(**second, *bob2, "nodes/n1/status");
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error(), "relay limit: bob has 10 files open on node n1");
  // Requests: 20 reads that wait (the node's events) are bob's share; the 21st is refused.
  std::atomic<int> answered{0};
  std::promise<std::string> refused;
  std::vector<std::uint16_t> waiting;  // tags
  for (int i = 0; i < 21; ++i) {
    waiting.push_back(c.c->send(srv9p::tread{held[static_cast<std::size_t>(i % 2 ? 2 : 0)], 0, 8192}, [&, i](fsclient::client::reply r) {
      if (i == 20) refused.set_value(r ? std::string("<no error>") : r.error());
      else ++answered;
    }));
  }
  auto refusal = refused.get_future();
  ASSERT_EQ(refusal.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(refusal.get(), "relay limit: bob has 20 requests outstanding on node n1");
  EXPECT_EQ(answered.load(), 0);  // the others still wait on the node
  // Another user has room of his own, up to the total of all users (15 files).
  auto carol = c.c->attach("carol");
  ASSERT_TRUE(carol.has_value());
  for (int i = 0; i < 5; ++i) {
    auto f = open_on(*c.c, *carol, "nodes/n1/status");
    ASSERT_TRUE(f.has_value()) << i << ": " << f.error();
  }
  auto full = open_on(*c.c, *carol, "nodes/n1/status");
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error(), "relay limit: node n1 has 15 relayed files open for all users");
  // The scheduler's own work keeps its room: alice's job starts on n1 and finishes, with
  // its output copied.
  auto alice = c.c->attach("alice");
  ASSERT_TRUE(alice.has_value());
  auto j = trim(c.c->read_file(*alice, "jobs/clone").value_or(""));
  ASSERT_FALSE(j.empty());
  ASSERT_TRUE(c.c->write_file(*alice, "jobs/" + j + "/ctl", "exec sh -c 'echo alice; echo o > $GALAXY_OUT/o'\n"));
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n");
  c.wait_state(j, "done");
  EXPECT_EQ(c.read("jobs/" + j + "/stdout"), "alice\n");
  EXPECT_EQ(c.read("jobs/" + j + "/out/o"), "o\n");
  EXPECT_EQ(c.status_field(j, "node"), "n1");
  // What bob gives back is his again: his waiting reads are flushed, his files clunked.
  for (int i = 0; i < 20; ++i) c.c->flush(waiting[static_cast<std::size_t>(i)]);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (answered.load() < 20 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(answered.load(), 20);
  for (std::size_t i = 0; i < held.size(); ++i) (void)(i % 2 ? (*second)->clunk(held[i]) : c.c->clunk(held[i]));
  deadline = std::chrono::steady_clock::now() + 10s;
  fsclient::result<std::uint32_t> again = std::unexpected(std::string("not tried"));
  while (std::chrono::steady_clock::now() < deadline) {
    again = open_on(*c.c, *bob1, "nodes/n1/status");
    if (again) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(again.has_value()) << again.error();
  EXPECT_NE(c.c->read(*again, 0, 8192).value_or("").find("name=n1 "), std::string::npos);
  // Bad limits stop the daemon at start-up with a message.
  auto bad = testutil::run({sched_binary, "--listen", "tcp!127.0.0.1!0", "--state", c.dir.file("state2"),
                            "--relay-requests", "2"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--relay-requests at least 3"), std::string::npos) << bad.err;
}
