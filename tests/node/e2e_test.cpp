// galaxy-node end to end: the real daemon on port 0 in a temporary spool, driven through
// the real 9P client, as the scheduler and shell users will drive it.
#include <gtest/gtest.h>

#include <csignal>
#include <sys/stat.h>
#include <future>
#include <thread>

#include "fsclient/client.hpp"
#include "srv9p/errors.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
const std::string node_binary = GALAXY_BINARY_DIR "/galaxy-node";

// A galaxy-node process and a client attached to it.
struct node_fixture {
  testutil::temp_dir dir;
  std::string spool = dir.file("spool");
  testutil::daemon_handle d;
  std::unique_ptr<fsclient::client> c;
  std::uint32_t root = 0;

  std::string start(std::vector<std::string> extra = {}) {
    // Run as root, the node runs tasks as nobody, who must be able to pass through the
    // temporary directory to reach the spool (as through /var/spool in production).
    ::chmod(dir.file("").c_str(), 0711);
    std::vector<std::string> argv{node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", spool, "--name", "n1"};
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
    return {};
  }
  std::string read(const std::string& path) {
    auto r = c->read_file(root, path);
    return r ? *r : "<error: " + r.error() + ">";
  }
  fsclient::result<void> write(const std::string& path, const std::string& data) {
    return c->write_file(root, path, data);
  }
  // clone + ctl commands; returns the task number.
  std::string task(const std::vector<std::string>& commands) {
    std::string n = read("task/clone");
    while (!n.empty() && n.back() == '\n') n.pop_back();
    for (const auto& cmd : commands) {
      auto ok = write("task/" + n + "/ctl", cmd + "\n");
      EXPECT_TRUE(ok.has_value()) << cmd << ": " << (ok ? "" : ok.error());
    }
    return n;
  }
};

#define START(f, ...)                          \
  node_fixture f;                              \
  {                                            \
    auto why = f.start(__VA_ARGS__);           \
    ASSERT_EQ(why, "") << "galaxy-node: " << why; \
  }

TEST(NodeE2E, ResourceFilesDescribeTheMachine) {
  START(f, {"--label", "site=lab", "--cpus", "3"});
  auto status = f.read("status");
  EXPECT_NE(status.find("name=n1 "), std::string::npos) << status;
  EXPECT_NE(status.find("ncpu=3 "), std::string::npos) << status;
  EXPECT_NE(status.find("state=up"), std::string::npos) << status;
  EXPECT_NE(f.read("arch").find(" linux"), std::string::npos);
  EXPECT_NE(f.read("cpu/0").find("idle "), std::string::npos);
  EXPECT_NE(f.read("mem").find("total "), std::string::npos);
  auto labels = f.read("labels");
  EXPECT_NE(labels.find("site=lab\n"), std::string::npos) << labels;
  EXPECT_NE(labels.find("arch="), std::string::npos) << labels;
  auto names = f.c->list_dir(f.root, "");
  ASSERT_TRUE(names.has_value());
  std::vector<std::string> got;
  for (const auto& e : *names) got.push_back(e.name);
  EXPECT_EQ(got, (std::vector<std::string>{"status", "arch", "cpu", "mem", "labels", "ctl", "events", "task"}));
}

TEST(NodeE2E, ATaskThroughCloneCtlWaitAndStdout) {
  START(f);
  auto n = f.task({"exec sh -c 'echo hello; echo oops >&2; exit 3'"});
  EXPECT_EQ(f.read("task/" + n + "/wait"), "exit 3\n");
  EXPECT_EQ(f.read("task/" + n + "/stdout"), "hello\n");
  EXPECT_EQ(f.read("task/" + n + "/stderr"), "oops\n");
  auto status = f.read("task/" + n + "/status");
  EXPECT_NE(status.find("state=failed"), std::string::npos) << status;
  EXPECT_NE(status.find("exit=3"), std::string::npos) << status;
  EXPECT_NE(f.read("task/" + n + "/ctl").find("exec sh -c"), std::string::npos);
}

TEST(NodeE2E, CloneHeldOpenIsTheTasksCtl) {
  START(f);
  auto fid = f.c->walk(f.root, "task/clone");
  ASSERT_TRUE(fid.has_value());
  ASSERT_TRUE(f.c->open(*fid, srv9p::ordwr).has_value());
  auto n = f.c->read(*fid, 0, 100);
  ASSERT_TRUE(n.has_value());
  std::string id = n->substr(0, n->find('\n'));
  ASSERT_TRUE(f.c->write(*fid, 0, "exec echo held\n").has_value());
  EXPECT_EQ(f.read("task/" + id + "/wait"), "exit 0\n");
  EXPECT_EQ(f.read("task/" + id + "/stdout"), "held\n");
  f.c->clunk(*fid);
}

TEST(NodeE2E, StdoutStreamsWhileTheTaskRuns) {
  START(f);
  auto n = f.task({"exec sh -c 'echo first; sleep 1; echo second'"});
  std::vector<std::pair<std::string, bool>> pieces;  // text, was the task still running
  auto ok = f.c->stream_file(f.root, "task/" + n + "/stdout", [&](std::string_view piece) {
    bool running = f.read("task/" + n + "/status").find("state=running") != std::string::npos;
    pieces.emplace_back(std::string(piece), running);
    return true;
  });
  ASSERT_TRUE(ok.has_value()) << ok.error();
  ASSERT_GE(pieces.size(), 2u);
  EXPECT_EQ(pieces[0].first, "first\n");
  EXPECT_TRUE(pieces[0].second) << "the first line should arrive while the task still runs";
  std::string all;
  for (const auto& [p, r] : pieces) all += p;
  EXPECT_EQ(all, "first\nsecond\n");
}

TEST(NodeE2E, BadCommandsAreRefusedAndChangeNothing) {
  START(f);
  auto n = f.task({});
  auto ctl = "task/" + n + "/ctl";
  auto e = f.write(ctl, "exce ls\n");
  ASSERT_FALSE(e.has_value());
  EXPECT_NE(e.error().find("unknown command 'exce'"), std::string::npos) << e.error();
  EXPECT_NE(e.error().find("exec"), std::string::npos) << e.error();
  e = f.write(ctl, "exec\n");
  ASSERT_FALSE(e.has_value());
  EXPECT_NE(e.error().find("bad # args"), std::string::npos) << e.error();
  e = f.write(ctl, "mem 12q\n");
  ASSERT_FALSE(e.has_value());
  EXPECT_NE(e.error().find("12q"), std::string::npos) << e.error();
  e = f.write(ctl, "dir relative/path\n");
  ASSERT_FALSE(e.has_value());
  EXPECT_NE(f.read("task/" + n + "/status").find("state=new"), std::string::npos);
  ASSERT_TRUE(f.write(ctl, "exec true\n").has_value());
  EXPECT_EQ(f.read("task/" + n + "/wait"), "exit 0\n");
  e = f.write(ctl, "exec true\n");
  ASSERT_FALSE(e.has_value());
  EXPECT_NE(e.error().find("already started"), std::string::npos) << e.error();
  e = f.write(ctl, "kill\n");
  EXPECT_FALSE(e.has_value()) << "kill of a finished task must be refused";
  ASSERT_TRUE(f.write(ctl, "rm\n").has_value());
  auto gone = f.c->read_file(f.root, "task/" + n + "/status");
  ASSERT_FALSE(gone.has_value());
  EXPECT_NE(gone.error().find(srv9p::err::not_found), std::string::npos) << gone.error();
}

TEST(NodeE2E, AMissingProgramSaysSoInWait) {
  START(f);
  auto n = f.task({"exec /no/such"});
  EXPECT_EQ(f.read("task/" + n + "/wait"), "error exec: /no/such: file does not exist\n");
}

TEST(NodeE2E, StdinFeedsTheTaskAndClosingItEndsIt) {
  START(f);
  auto n = f.task({});
  auto in = f.c->walk(f.root, "task/" + n + "/stdin");
  ASSERT_TRUE(in.has_value());
  ASSERT_TRUE(f.c->open(*in, srv9p::owrite).has_value());
  ASSERT_TRUE(f.c->write(*in, 0, "before exec\n").has_value());
  ASSERT_TRUE(f.write("task/" + n + "/ctl", "exec cat\n").has_value());
  ASSERT_TRUE(f.c->write(*in, 0, "after exec\n").has_value());
  ASSERT_TRUE(f.c->clunk(*in).has_value());
  EXPECT_EQ(f.read("task/" + n + "/wait"), "exit 0\n");
  EXPECT_EQ(f.read("task/" + n + "/stdout"), "before exec\nafter exec\n");
  // Without a stdin writer at exec, stdin is /dev/null: cat ends at once.
  auto m = f.task({"exec cat"});
  EXPECT_EQ(f.read("task/" + m + "/wait"), "exit 0\n");
}

TEST(NodeE2E, InFilesAreThereAndOutFilesComeBack) {
  START(f);
  auto n = f.task({});
  auto d = f.c->walk(f.root, "task/" + n + "/in");
  ASSERT_TRUE(d.has_value());
  ASSERT_TRUE(f.c->create(*d, "data", 0644, srv9p::owrite).has_value());
  ASSERT_TRUE(f.c->write(*d, 0, "one\ntwo\n").has_value());
  f.c->clunk(*d);
  ASSERT_TRUE(f.write("task/" + n + "/ctl", "exec sh -c 'wc -l < data > $GALAXY_OUT/lines'\n").has_value());
  EXPECT_EQ(f.read("task/" + n + "/wait"), "exit 0\n");
  EXPECT_EQ(f.read("task/" + n + "/out/lines"), "2\n");
  auto listing = f.c->list_dir(f.root, "task/" + n + "/out");
  ASSERT_TRUE(listing.has_value());
  ASSERT_EQ(listing->size(), 1u);
  EXPECT_EQ((*listing)[0].name, "lines");
}

TEST(NodeE2E, TimeLimitKillsTheTask) {
  START(f);
  auto n = f.task({"time 0.3", "exec sleep 30"});
  EXPECT_EQ(f.read("task/" + n + "/wait"), "signal 9\n");
}

TEST(NodeE2E, KillReachesTheWholeProcessGroup) {
  START(f);
  auto n = f.task({"exec sh -c 'sleep 100 & sleep 100 & wait'"});
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(f.write("task/" + n + "/ctl", "kill\n").has_value());
  EXPECT_EQ(f.read("task/" + n + "/wait"), "signal 9\n");
  auto status = f.read("task/" + n + "/status");
  auto pos = status.find("pid=");
  ASSERT_NE(pos, std::string::npos);
  int pid = std::stoi(status.substr(pos + 4));
  // Every process of the group is gone (or a zombie about to be).
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = ::kill(-pid, 0) != 0;
    if (!gone) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(gone) << "process group " << pid << " still has members";
}

TEST(NodeE2E, EventsTellStartsAndExits) {
  START(f);
  auto ev = f.c->walk(f.root, "events");
  ASSERT_TRUE(ev.has_value());
  ASSERT_TRUE(f.c->open(*ev, srv9p::oread).has_value());
  auto n = f.task({"exec true"});
  f.read("task/" + n + "/wait");
  std::string seen;
  while (seen.find("exit " + n + " 0\n") == std::string::npos) {
    auto piece = f.c->read(*ev, 0, 4096);
    ASSERT_TRUE(piece.has_value()) << piece.error();
    seen += *piece;
  }
  EXPECT_EQ(seen.rfind("start " + n + " ", 0), 0u) << seen;
}

TEST(NodeE2E, ABlockedWaitIsFlushable) {
  START(f);
  auto n = f.task({"exec sleep 30"});
  auto w = f.c->walk(f.root, "task/" + n + "/wait");
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE(f.c->open(*w, srv9p::oread).has_value());
  std::promise<fsclient::client::reply> got;
  auto tag = f.c->send(srv9p::tread{*w, 0, 100}, [&](fsclient::client::reply r) { got.set_value(std::move(r)); });
  std::this_thread::sleep_for(100ms);
  f.c->flush(tag);
  auto fut = got.get_future();
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  auto r = fut.get();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), srv9p::err::interrupted);
  ASSERT_TRUE(f.write("task/" + n + "/ctl", "kill\n").has_value());
}

TEST(NodeE2E, DrainRefusesNewTasksAndLetsRunningOnesFinish) {
  START(f);
  auto running = f.task({"exec sleep 0.5"});
  ASSERT_TRUE(f.write("ctl", "drain\n").has_value());
  EXPECT_NE(f.read("status").find("state=draining"), std::string::npos);
  auto n = f.task({});
  auto e = f.write("task/" + n + "/ctl", "exec true\n");
  ASSERT_FALSE(e.has_value());
  EXPECT_NE(e.error().find("draining"), std::string::npos) << e.error();
  EXPECT_EQ(f.read("task/" + running + "/wait"), "exit 0\n");
  ASSERT_TRUE(f.write("ctl", "undrain\n").has_value());
  ASSERT_TRUE(f.write("task/" + n + "/ctl", "exec true\n").has_value());
  EXPECT_EQ(f.read("task/" + n + "/wait"), "exit 0\n");
  auto bad = f.write("ctl", "drian\n");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().find("unknown command 'drian'"), std::string::npos) << bad.error();
}

TEST(NodeE2E, TwoHundredConcurrentTasks) {
  START(f);
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i) ids.push_back(f.task({"exec sh -c 'echo " + std::to_string(i) + "'"}));
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(f.read("task/" + ids[i] + "/wait"), "exit 0\n") << i;
    EXPECT_EQ(f.read("task/" + ids[i] + "/stdout"), std::to_string(i) + "\n") << i;
  }
}

TEST(NodeE2E, ResultsSurviveKillNine) {
  START(f);
  auto done = f.task({"exec echo kept"});
  EXPECT_EQ(f.read("task/" + done + "/wait"), "exit 0\n");
  auto running = f.task({"exec sleep 100"});
  std::this_thread::sleep_for(200ms);
  f.c.reset();
  f.d.proc.signal(SIGKILL);
  f.d.proc.wait();
  auto h = testutil::start_daemon({node_binary, "--listen", "tcp!127.0.0.1!0", "--spool", f.spool});
  ASSERT_TRUE(h.has_value()) << h.error();
  f.d = std::move(*h);
  auto cl = fsclient::client::dial(f.d.dials.at(0));
  ASSERT_TRUE(cl.has_value());
  f.c = std::move(*cl);
  f.root = *f.c->attach("root");
  EXPECT_EQ(f.read("task/" + done + "/wait"), "exit 0\n");
  EXPECT_EQ(f.read("task/" + done + "/stdout"), "kept\n");
  EXPECT_EQ(f.read("task/" + running + "/wait"), "lost\n");
  auto next = f.task({"exec true"});
  EXPECT_GT(std::stoi(next), std::stoi(running)) << "task numbers must not be reused";
}

TEST(NodeE2E, RefusesANonLoopbackListener) {
  testutil::temp_dir dir;
  auto r = testutil::run({node_binary, "--listen", "tcp!0.0.0.0!0", "--spool", dir.file("s")});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("refusing to listen"), std::string::npos) << r.err;
}

}  // namespace
