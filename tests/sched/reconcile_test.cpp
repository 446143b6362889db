// galaxy-sched's reconciliation of returning nodes (sched/reconcile.cpp, issue 13, "No
// finished job runs twice"), end to end: one real scheduler and two real galaxy-node
// processes on port 0 in a temporary directory. A node is cut off by stopping its daemon
// (SIGSTOP): its tasks run on and finish by themselves, and SIGCONT brings the node back
// with their results, as a link that was down would. Every task appends its job id to a
// file only when it completes, so the file says how many runs of a job ran to the end.
//
// Fencing: a node daemon that runs again after its lease ran out fences at once (node/tree.hpp),
// so a copy still running when it returns is found lost, not running (test 6). The tests
// of copies still running on a returned node (2, 3) run the scheduler with --no-fence:
// that is how such copies are met with fencing on too, from a node that does not know
// `lease`, or whose connection closed rather than fell silent (node_down at once).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "fsclient/client.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
const std::string node_binary = GALAXY_BINARY_DIR "/galaxy-node";
const std::string sched_binary = GALAXY_BINARY_DIR "/galaxy-sched";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Polls pred every 20 ms until it holds or timeout passes; whether it held.
template <class F>
bool eventually(F pred, std::chrono::milliseconds timeout = 30s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// Two nodes, n1 and n2, one CPU each, and a scheduler that marks a node down after
// down_after seconds of silence; a reader of the scheduler's /events keeps every line.
struct cluster {
  testutil::temp_dir dir;
  std::string down_after = "1";
  std::vector<std::string> sched_extra;  // more galaxy-sched options (--no-fence)
  testutil::daemon_handle nodes[2];
  std::string node_dials[2];
  testutil::daemon_handle sched;
  std::unique_ptr<fsclient::client> c;
  std::uint32_t root = 0;
  std::unique_ptr<fsclient::client> ev;
  std::thread ev_reader;
  std::mutex ev_mu;
  std::string events;

  ~cluster() { stop_events(); }

  std::string start() {
    ::chmod(dir.file("").c_str(), 0711);  // tasks run as nobody and must reach the spools
    // The file every completed task appends its job id to, writable by any task's user.
    { std::ofstream(dir.file("ids")); }
    ::chmod(dir.file("ids").c_str(), 0666);
    for (int i = 0; i < 2; ++i) {
      std::string name = "n" + std::to_string(i + 1);
      auto h = testutil::start_daemon({node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", dir.file(name),
                                       "--name", name, "--cpus", "1", "--unknown-user", "nobody"});
      if (!h) return h.error();
      nodes[i] = std::move(*h);
      node_dials[i] = nodes[i].dials.at(0);
    }
    return start_sched(true);
  }

  // Starts the scheduler on dir/state; wait_all: until both nodes are up.
  std::string start_sched(bool wait_all) {
    std::vector<std::string> argv{sched_binary, "--listen", "tcp!127.0.0.1!0", "--state", dir.file("state"),
                                  "--heartbeat", "0.2", "--down-after", down_after, "--reconnect", "0.3",
                                  "--admin", "root", "--node", "n1=" + node_dials[0], "--node", "n2=" + node_dials[1]};
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
    if (auto why = start_events(); !why.empty()) return why;
    if (wait_all && !eventually([&] { return read("status").find("nodes_up=2 ") != std::string::npos; }, 10s)) {
      return "nodes did not come up: " + read("status");
    }
    return "";
  }

  // Kills the scheduler with SIGKILL (nothing is flushed or said to the nodes).
  void kill_sched() {
    stop_events();
    sched.proc.signal(SIGKILL);
    sched.proc.wait();
    c.reset();
  }

  std::string start_events() {
    auto cl = fsclient::client::dial(sched.dials.at(0));
    if (!cl) return cl.error();
    ev = std::move(*cl);
    auto r = ev->attach("root");
    if (!r) return r.error();
    auto f = ev->walk(*r, "events");
    if (!f) return f.error();
    if (auto o = ev->open(*f, srv9p::oread); !o) return o.error();
    ev_reader = std::thread([this, fid = *f] {
      std::uint64_t offset = 0;
      for (;;) {
        auto d = ev->read(fid, offset, 8192);
        if (!d || d->empty()) return;  // closed at the end of the test
        offset += d->size();
        std::lock_guard lk(ev_mu);
        events += *d;
      }
    });
    return "";
  }
  void stop_events() {
    if (ev) ev->close();
    if (ev_reader.joinable()) ev_reader.join();
    ev.reset();
  }
  bool has_event(const std::string& line) {
    std::lock_guard lk(ev_mu);
    return events.find(line + "\n") != std::string::npos;
  }
  bool saw_event_starting(const std::string& prefix) {
    std::lock_guard lk(ev_mu);
    return events.starts_with(prefix) || events.find("\n" + prefix) != std::string::npos;
  }
  std::string all_events() {
    std::lock_guard lk(ev_mu);
    return events;
  }

  std::string read(const std::string& path) {
    auto r = c->read_file(root, path);
    return r ? *r : "<error: " + r.error() + ">";
  }
  bool write(const std::string& path, const std::string& data) { return c->write_file(root, path, data).has_value(); }
  std::string job(const std::vector<std::string>& lines) {
    std::string n = trim(read("jobs/clone"));
    for (const auto& l : lines) {
      auto ok = c->write_file(root, "jobs/" + n + "/ctl", l + "\n");
      EXPECT_TRUE(ok.has_value()) << l << ": " << (ok ? "" : ok.error());
    }
    return n;
  }
  std::string status_field(const std::string& j, const std::string& key) {
    return field(read("jobs/" + j + "/status"), key);
  }
  // One key's value in a status line.
  static std::string field(const std::string& st, const std::string& key) {
    auto pos = st.find(" " + key + "=");
    if (pos == std::string::npos) return "";
    pos += key.size() + 2;
    if (st[pos] == '\'') {  // a quoted value (ctl quoting: '' is a quote)
      std::string v;
      for (std::size_t i = pos + 1; i < st.size(); ++i) {
        if (st[i] == '\'' && i + 1 < st.size() && st[i + 1] == '\'') {
          v += '\'';
          ++i;
        } else if (st[i] == '\'') {
          break;
        } else {
          v += st[i];
        }
      }
      return v;
    }
    return st.substr(pos, st.find_first_of(" \n", pos) - pos);
  }
  // How many times job j ran to completion (lines of the ids file that are j).
  int completions(const std::string& j) {
    std::ifstream in(dir.file("ids"));
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line == j ? 1 : 0;
    return n;
  }
  // The script of a job: attempt 1 sleeps first_s, later attempts later_s; then the
  // task appends its job id to the ids file and says which attempt it was.
  std::string script(const std::string& first_s, const std::string& later_s) {
    return "exec sh -c 'if [ $GALAXY_ATTEMPT = 1 ]; then sleep " + first_s + "; else sleep " + later_s +
           "; fi; echo $GALAXY_JOB >> " + dir.file("ids") + "; echo attempt $GALAXY_ATTEMPT'";
  }
  // Waits until job j runs on node (one read of its status says both); whether it did.
  bool running_on(const std::string& j, const std::string& node) {
    return eventually([&] {
      auto st = read("jobs/" + j + "/status");
      return field(st, "state") == "running" && field(st, "node") == node;
    });
  }
};

#define START(c, ...)                                           \
  cluster c;                                                    \
  __VA_ARGS__;                                                  \
  {                                                             \
    auto why = c.start();                                       \
    ASSERT_EQ(why, "") << "starting the cluster: " << why;      \
  }

// (1) The cut-off copy finished successfully while its node was unreachable, and the
// requeued copy still runs elsewhere: the job takes the first copy's result, the requeued
// copy is killed, and the job ran to completion once.
TEST(SchedReconcile, ACopyThatFinishedWhileCutOffGivesTheJobItsResult) {
  START(c);
  ASSERT_TRUE(c.write("ctl", "drain n1\n"));
  auto j = c.job({c.script("2", "30")});
  ASSERT_TRUE(c.running_on(j, "n2")) << c.read("jobs/" + j + "/status");
  auto first_task = c.status_field(j, "task");
  ASSERT_TRUE(c.write("ctl", "undrain n1\n"));
  c.nodes[1].proc.signal(SIGSTOP);
  // Marked down after 1 s, requeued and started on n1; meanwhile the first copy finishes.
  ASSERT_TRUE(c.running_on(j, "n1")) << c.read("jobs/" + j + "/status");
  auto second_task = c.status_field(j, "task");
  ASSERT_TRUE(eventually([&] { return c.completions(j) == 1; })) << "the cut-off copy did not finish";
  c.nodes[1].proc.signal(SIGCONT);
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << c.read("jobs/" + j + "/status");
  EXPECT_EQ(c.read("jobs/" + j + "/stdout"), "attempt 1\n");
  EXPECT_EQ(c.status_field(j, "node"), "n2");
  EXPECT_EQ(c.status_field(j, "task"), first_task);
  EXPECT_NE(c.status_field(j, "note").find("result recovered from n2 (task " + first_task + ")"), std::string::npos)
      << c.read("jobs/" + j + "/status");
  EXPECT_TRUE(c.has_event("recover " + j + " n2 " + first_task)) << c.all_events();
  // The requeued copy was killed on n1, so it never completes.
  EXPECT_EQ(c.read("nodes/n1/task/" + second_task + "/wait"), "signal 9\n");
  EXPECT_EQ(c.completions(j), 1);
}

// (2) The cut-off copy still runs when its node returns, and the job was placed elsewhere
// meanwhile: the returned copy is killed. (Fencing off: else the node kills it first, 6.)
TEST(SchedReconcile, ACopyStillRunningIsKilledWhenTheJobRunsElsewhere) {
  START(c, c.sched_extra = {"--no-fence"});
  ASSERT_TRUE(c.write("ctl", "drain n1\n"));
  auto j = c.job({c.script("30", "3")});
  ASSERT_TRUE(c.running_on(j, "n2")) << c.read("jobs/" + j + "/status");
  auto first_task = c.status_field(j, "task");
  ASSERT_TRUE(c.write("ctl", "undrain n1\n"));
  c.nodes[1].proc.signal(SIGSTOP);
  ASSERT_TRUE(c.running_on(j, "n1")) << c.read("jobs/" + j + "/status");
  c.nodes[1].proc.signal(SIGCONT);
  EXPECT_TRUE(eventually([&] { return c.has_event("duplicate " + j + " n2 " + first_task + " killed"); }))
      << c.all_events();
  EXPECT_EQ(c.read("nodes/n2/task/" + first_task + "/wait"), "signal 9\n");
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << c.read("jobs/" + j + "/status");
  EXPECT_EQ(c.read("jobs/" + j + "/stdout"), "attempt 2\n");
  EXPECT_NE(c.status_field(j, "note").find("cut-off copy on n2 (task " + first_task + ") killed"), std::string::npos)
      << c.read("jobs/" + j + "/status");
  EXPECT_EQ(c.completions(j), 1);
}

// (3) The cut-off copy still runs when its node returns, and the job is still queued (the
// other node is drained): the copy is taken back, the queue entry dropped, and the job
// finishes once, as its first attempt. (Fencing off: else the node kills it first, 6.)
TEST(SchedReconcile, ACopyStillRunningIsTakenBackWhenTheJobIsQueued) {
  START(c, c.sched_extra = {"--no-fence"});
  ASSERT_TRUE(c.write("ctl", "drain n1\n"));
  auto j = c.job({c.script("4", "4")});
  ASSERT_TRUE(c.running_on(j, "n2")) << c.read("jobs/" + j + "/status");
  auto first_task = c.status_field(j, "task");
  c.nodes[1].proc.signal(SIGSTOP);
  ASSERT_TRUE(eventually([&] { return c.status_field(j, "state") == "queued"; })) << c.read("jobs/" + j + "/status");
  c.nodes[1].proc.signal(SIGCONT);
  EXPECT_TRUE(eventually([&] { return c.has_event("adopt " + j + " n2 " + first_task); })) << c.all_events();
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << c.read("jobs/" + j + "/status");
  EXPECT_EQ(c.read("jobs/" + j + "/stdout"), "attempt 1\n");
  EXPECT_EQ(c.status_field(j, "attempts"), "1");
  EXPECT_EQ(c.status_field(j, "task"), first_task);
  EXPECT_NE(c.status_field(j, "note").find("taken back on n2"), std::string::npos) << c.read("jobs/" + j + "/status");
  EXPECT_TRUE(c.read("queue").empty()) << c.read("queue");
  EXPECT_EQ(c.completions(j), 1);
}

// (4) An outage shorter than --down-after: nothing is lost or requeued.
TEST(SchedReconcile, AnOutageShorterThanDownAfterRequeuesNothing) {
  START(c, c.down_after = "3");
  ASSERT_TRUE(c.write("ctl", "drain n1\n"));
  auto j = c.job({c.script("3", "3")});
  ASSERT_TRUE(c.running_on(j, "n2")) << c.read("jobs/" + j + "/status");
  c.nodes[1].proc.signal(SIGSTOP);
  std::this_thread::sleep_for(1500ms);
  c.nodes[1].proc.signal(SIGCONT);
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << c.read("jobs/" + j + "/status");
  EXPECT_EQ(c.status_field(j, "attempts"), "1");
  EXPECT_EQ(c.read("jobs/" + j + "/stdout"), "attempt 1\n");
  EXPECT_FALSE(c.saw_event_starting("lost ")) << c.all_events();
  EXPECT_FALSE(c.saw_event_starting("node down ")) << c.all_events();
  EXPECT_EQ(c.completions(j), 1);
}

// (5) The scheduler is killed and restarted while the node is cut off: the cut-off copy is
// in the store, so the restarted scheduler still takes its result when the node returns.
// Fencing off: n1's lease (0.6 s here) must not run out during the restart, which took
// 4 s under qemu-user (an arm64 run) and fenced n1's copy first; fencing is (6)'s.
TEST(SchedReconcile, ARestartedSchedulerStillKnowsTheCutOffCopies) {
  START(c, c.sched_extra = {"--no-fence"});
  ASSERT_TRUE(c.write("ctl", "drain n1\n"));
  auto j = c.job({c.script("4", "30")});
  ASSERT_TRUE(c.running_on(j, "n2")) << c.read("jobs/" + j + "/status");
  auto first_task = c.status_field(j, "task");
  ASSERT_TRUE(c.write("ctl", "undrain n1\n"));
  c.nodes[1].proc.signal(SIGSTOP);
  ASSERT_TRUE(c.running_on(j, "n1")) << c.read("jobs/" + j + "/status");
  auto second_task = c.status_field(j, "task");
  c.kill_sched();
  ASSERT_EQ(c.start_sched(false), "");
  ASSERT_TRUE(eventually([&] { return c.completions(j) == 1; })) << "the cut-off copy did not finish";
  c.nodes[1].proc.signal(SIGCONT);
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << c.read("jobs/" + j + "/status");
  EXPECT_EQ(c.read("jobs/" + j + "/stdout"), "attempt 1\n");
  EXPECT_TRUE(c.has_event("recover " + j + " n2 " + first_task)) << c.all_events();
  EXPECT_EQ(c.read("nodes/n1/task/" + second_task + "/wait"), "signal 9\n");
  EXPECT_EQ(c.completions(j), 1);
}

// (6) Fencing on (the default): the node's lease (1 s down-after, 0.2 s heartbeats: 0.6 s)
// has run out while its daemon was stopped, so the daemon fences as soon as it runs again,
// before the heartbeat that waited in its socket can renew anything: the copy still
// running there is lost ("fenced"), not killed by the scheduler nor taken back, and the
// job's requeue stands: it runs to its end once, as attempt 2.
TEST(SchedReconcile, AStoppedNodeFencesItsCopiesWhenItRunsAgain) {
  START(c);
  ASSERT_TRUE(c.write("ctl", "drain n1\n"));
  auto j = c.job({c.script("30", "3")});
  ASSERT_TRUE(c.running_on(j, "n2")) << c.read("jobs/" + j + "/status");
  auto first_task = c.status_field(j, "task");
  ASSERT_TRUE(c.write("ctl", "undrain n1\n"));
  c.nodes[1].proc.signal(SIGSTOP);
  ASSERT_TRUE(c.running_on(j, "n1")) << c.read("jobs/" + j + "/status");
  c.nodes[1].proc.signal(SIGCONT);
  EXPECT_EQ(c.read("jobs/" + j + "/wait"), "exit 0\n") << c.read("jobs/" + j + "/status");
  EXPECT_EQ(c.read("jobs/" + j + "/stdout"), "attempt 2\n");
  EXPECT_TRUE(eventually([&] { return c.read("status").find("nodes_up=2 ") != std::string::npos; }));
  auto wait = c.read("nodes/n2/task/" + first_task + "/wait");
  EXPECT_TRUE(wait.starts_with("lost fenced: no word from the scheduler for ")) << wait;
  EXPECT_FALSE(c.has_event("duplicate " + j + " n2 " + first_task + " killed")) << c.all_events();
  EXPECT_TRUE(eventually([&] {
    return c.status_field(j, "note").find("cut-off copy on n2 (task " + first_task + ") fenced by its node") !=
           std::string::npos;
  })) << c.read("jobs/" + j + "/status");
  EXPECT_EQ(c.completions(j), 1);
}

}  // namespace
