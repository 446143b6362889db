// galaxy top (ctl/cmd_top.cpp) against a real cluster: one galaxy-sched and two
// galaxy-node processes on port 0 in a temporary directory, jobs of two users submitted
// with the real tool. Its plain-text frame (-n 1 through a pipe) is parsed; its screen is
// read through tmux in a real terminal (new-session -x 120 -y 40, send-keys,
// capture-pane -p). And -m on a tree of plain files, with a hostile status line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;
const std::string galaxy_bin = GALAXY_BINARY_DIR "/galaxy";
const std::string node_bin = GALAXY_BINARY_DIR "/galaxy-node";
const std::string sched_bin = GALAXY_BINARY_DIR "/galaxy-sched";

// The index of the first line of text matching re, or -1.
int line_of(const std::string& text, const std::string& re) {
  std::istringstream in(text);
  std::string l;
  std::regex r(re);
  for (int i = 0; std::getline(in, l); i++) {
    if (std::regex_search(l, r)) return i;
  }
  return -1;
}

// Two nodes of 2 CPUs each; bob's job 1 (2 CPUs) runs on one (bob_node_), alice's job 2
// (2 CPUs) on the other (alice_node_), alice's job 3 (1 CPU) is queued: no room is left.
class TopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::chmod(dir_.file("").c_str(), 0711);  // tasks run as nobody and must reach the spools
    std::vector<std::string> sched_argv{sched_bin, "--listen", "tcp!127.0.0.1!0", "--state", dir_.file("state"),
                                        "--heartbeat", "0.2", "--admin", "root"};
    for (int i = 1; i <= 2; i++) {
      auto n = "n" + std::to_string(i);
      auto h = testutil::start_daemon({node_bin, "--listen", "tcp!127.0.0.1!0", "--spool", dir_.file(n), "--name", n,
                                       "--cpus", "2", "--unknown-user", "nobody"});
      ASSERT_TRUE(h.has_value()) << h.error();
      sched_argv.push_back("--node");
      sched_argv.push_back(n + "=" + h->dials.at(0));
      nodes_.push_back(std::move(*h));
    }
    auto s = testutil::start_daemon(sched_argv);
    ASSERT_TRUE(s.has_value()) << s.error();
    sched_ = std::move(*s);
    addr_ = sched_.dials.at(0);
    ASSERT_TRUE(eventually([&] { return tool({"cat", "-a", addr_, "status"}).find("nodes_up=2 ") != std::string::npos; }))
        << tool({"cat", "-a", addr_, "status"});
    submit("bob", "2");
    ASSERT_TRUE(eventually([&] { return state("1") == "running"; })) << tool({"cat", "-a", addr_, "jobs/1/status"});
    submit("alice", "2");
    submit("alice", "1");
    ASSERT_TRUE(eventually([&] { return state("2") == "running" && state("3") == "queued"; }))
        << tool({"jobs", "-a", addr_});
    bob_node_ = field("1", "node");
    alice_node_ = field("2", "node");
    ASSERT_NE(bob_node_, alice_node_);
  }
  void TearDown() override {
    if (!addr_.empty()) (void)testutil::run({galaxy_bin, "kill", "-a", addr_, "-u", "root", "1", "2", "3"});
  }

  // The tool's stdout (for setting up and for messages).
  std::string tool(std::vector<std::string> args) {
    args.insert(args.begin(), galaxy_bin);
    return testutil::run(args).out;
  }
  void submit(const std::string& user, const std::string& cpu) {
    auto r = testutil::run({galaxy_bin, "submit", "-a", addr_, "-u", user, "--cpu", cpu, "--", "sleep", "120"});
    ASSERT_EQ(r.status, 0) << r.err;
  }
  std::string field(const std::string& j, const std::string& key) {
    auto st = tool({"cat", "-a", addr_, "jobs/" + j + "/status"});
    std::smatch m;
    return std::regex_search(st, m, std::regex(" " + key + "=([a-z0-9]+)")) ? m[1].str() : "";
  }
  std::string state(const std::string& j) { return field(j, "state"); }
  // Polls pred until it holds or 20 s pass (a deadline for a broken build, not a speed test).
  static bool eventually(const std::function<bool()>& pred) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(50ms);
    }
    return pred();
  }

  testutil::temp_dir dir_;
  std::vector<testutil::daemon_handle> nodes_;
  testutil::daemon_handle sched_;
  std::string addr_;
  std::string bob_node_, alice_node_;
};

// tmux's path in $PATH ("" if none): testutil's spawn does not search $PATH.
std::string tmux_path() {
  const char* path = std::getenv("PATH");
  std::istringstream in(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(in, dir, ':')) {
    if (!dir.empty() && ::access((dir + "/tmux").c_str(), X_OK) == 0) return dir + "/tmux";
  }
  return "";
}

// -n 1 through a pipe: one plain frame with both nodes, the jobs by user and state, each
// user's dominant share as users/NAME says it, and the jobs' events; no escape codes.
TEST_F(TopTest, OneFrameThroughAPipe) {
  auto r = testutil::run({galaxy_bin, "top", "-a", addr_, "-n", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto& out = r.out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
  EXPECT_GE(line_of(out, "^NODE +STATE +CPU"), 0) << out;
  EXPECT_GE(line_of(out, "^n1 +up +\\[\\|* *\\] [0-9.]+/2 "), 0) << out;
  EXPECT_GE(line_of(out, "^n2 +up +\\[\\|* *\\] [0-9.]+/2 "), 0) << out;
  EXPECT_GE(line_of(out, "^1 +bob +running +" + bob_node_ + " "), 0) << out;
  EXPECT_GE(line_of(out, "^2 +alice +running +" + alice_node_ + " "), 0) << out;
  EXPECT_GE(line_of(out, "^3 +alice +queued +- "), 0) << out;
  // Each user holds 2 of the cluster's 4 CPUs: a dominant share of one half, as the
  // scheduler's users/ file says.
  EXPECT_THAT(tool({"cat", "-a", addr_, "users/bob"}), HasSubstr("dominant_share=0.5000"));
  EXPECT_GE(line_of(out, "^bob +1 +0 +2\\.0 .*\\[\\|{10} {10}\\] 0\\.5000$"), 0) << out;
  EXPECT_GE(line_of(out, "^alice +1 +1 +2\\.0 .*\\[\\|{10} {10}\\] 0\\.5000$"), 0) << out;
  EXPECT_GE(line_of(out, "jobs: 2 running, 1 queued"), 0) << out;
  auto events = line_of(out, "^RECENT EVENTS$");
  ASSERT_GE(events, 0) << out;
  EXPECT_GT(line_of(out, "^[0-9:]{8}  submit 1 bob$"), events) << out;
  EXPECT_GT(line_of(out, "^[0-9:]{8}  start 1 bob on " + bob_node_ + "$"), events) << out;
  EXPECT_GT(line_of(out, "^[0-9:]{8}  submit 3 alice$"), events) << out;

  // --filter narrows every part to what matches: bob's job, his node, his events.
  auto f = testutil::run({galaxy_bin, "top", "-a", addr_, "-n", "1", "--filter", "bob"});
  ASSERT_EQ(f.status, 0) << f.err;
  EXPECT_GE(line_of(f.out, "^1 +bob +running +" + bob_node_ + " "), 0) << f.out;
  EXPECT_GE(line_of(f.out, "^" + bob_node_ + " "), 0) << f.out;
  EXPECT_EQ(line_of(f.out, "^" + alice_node_ + " "), -1) << f.out;
  EXPECT_EQ(line_of(f.out, "alice"), -1) << f.out;
}

// The same frame through a real FUSE mount of the scheduler (galaxy mount -f; top -m
// reads the tree with POSIX calls): both nodes, both users' jobs, their shares.
TEST_F(TopTest, OneFrameThroughAFuseMount) {
  REQUIRE_FUSE();
  std::string mp = dir_.file("mnt");
  ASSERT_EQ(::mkdir(mp.c_str(), 0755), 0);
  auto bridge = testutil::process::spawn({galaxy_bin, "mount", "-f", addr_, mp});
  ASSERT_TRUE(bridge.has_value()) << bridge.error();
  struct unmount {
    std::string mp;
    testutil::process& p;
    ~unmount() {
      if (testutil::is_mounted(mp)) (void)testutil::run({"/usr/bin/fusermount3", "-u", "-z", mp});
      if (p.running() && !p.wait(10s)) p.signal(SIGKILL);
    }
  } um{mp, *bridge};
  ASSERT_TRUE(eventually([&] { return testutil::is_mounted(mp) || !bridge->running(); }));
  ASSERT_TRUE(testutil::is_mounted(mp)) << "galaxy mount -f did not mount";
  auto r = testutil::run({galaxy_bin, "top", "-m", mp, "-n", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto& out = r.out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
  EXPECT_GE(line_of(out, "^n1 +up +\\[\\|* *\\] [0-9.]+/2 "), 0) << out;
  EXPECT_GE(line_of(out, "^n2 +up +\\[\\|* *\\] [0-9.]+/2 "), 0) << out;
  EXPECT_GE(line_of(out, "^1 +bob +running +" + bob_node_ + " "), 0) << out;
  EXPECT_GE(line_of(out, "^2 +alice +running +" + alice_node_ + " "), 0) << out;
  EXPECT_GE(line_of(out, "^3 +alice +queued +- "), 0) << out;
  EXPECT_GE(line_of(out, "^bob +1 +0 +2\\.0 .*\\[\\|{10} {10}\\] 0\\.5000$"), 0) << out;
  EXPECT_GE(line_of(out, "^alice +1 +1 +2\\.0 .*\\[\\|{10} {10}\\] 0\\.5000$"), 0) << out;
  EXPECT_GE(line_of(out, "jobs: 2 running, 1 queued"), 0) << out;
  EXPECT_GT(line_of(out, "^[0-9:]{8}  start 1 bob on " + bob_node_ + "$"), line_of(out, "^RECENT EVENTS$")) << out;
}

// A real terminal through tmux: the screen shows the nodes and the running jobs; u sorts
// the jobs by user, / filters, q quits and the process ends.
TEST_F(TopTest, LiveScreenInTmux) {
  std::string sock = dir_.file("tmux.sock");
  std::string tmux_bin = tmux_path();
  if (tmux_bin.empty()) GTEST_SKIP() << "tmux is not installed (scripts/deps.sh installs it)";
  auto tmux = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {tmux_bin, "-S", sock, "-f", "/dev/null"});
    return testutil::run(args, {}, 30s, {"TERM=xterm-256color"});
  };
  if (auto v = tmux({"-V"}); v.status != 0) GTEST_SKIP() << "tmux cannot run here: " << v.err;
  std::string pidfile = dir_.file("top.pid");
  auto started = tmux({"new-session", "-d", "-x", "120", "-y", "40", "-s", "top",
                       "echo $$ >" + pidfile + "; exec " + galaxy_bin + " top -a '" + addr_ + "' -d 0.2"});
  if (started.status != 0) GTEST_SKIP() << "tmux cannot start a session here: " << started.err;
  auto screen = [&] { return tmux({"capture-pane", "-p", "-t", "top"}).out; };
  std::string s;
  ASSERT_TRUE(eventually([&] {
    s = screen();
    return line_of(s, "^1 +bob +running +" + bob_node_ + " ") >= 0 && line_of(s, "^2 +alice +running +" + alice_node_ + " ") >= 0;
  })) << s;
  EXPECT_GE(line_of(s, "^n1 +up "), 0) << s;
  EXPECT_GE(line_of(s, "^n2 +up "), 0) << s;
  EXPECT_GE(line_of(s, "q quit"), 0) << s;
  // By number, bob's job 1 comes before alice's job 2; u sorts by user: alice first.
  EXPECT_LT(line_of(s, "^1 +bob "), line_of(s, "^2 +alice "));
  tmux({"send-keys", "-t", "top", "u"});
  EXPECT_TRUE(eventually([&] {
    s = screen();
    auto bob = line_of(s, "^1 +bob "), alice = line_of(s, "^2 +alice ");
    return bob >= 0 && alice >= 0 && alice < bob;
  })) << s;
  // / then a word: only what matches stays.
  tmux({"send-keys", "-t", "top", "/", "b", "o", "b", "Enter"});
  EXPECT_TRUE(eventually([&] {
    s = screen();
    return line_of(s, "filter: bob") >= 0 && line_of(s, "^1 +bob +running") >= 0 && line_of(s, "alice") == -1 &&
           line_of(s, "^" + alice_node_ + " ") == -1;
  })) << s;
  std::string pid_text;
  std::ifstream(pidfile) >> pid_text;
  pid_t pid = static_cast<pid_t>(std::stol(pid_text.empty() ? "0" : pid_text));
  ASSERT_GT(pid, 0);
  tmux({"send-keys", "-t", "top", "q"});
  EXPECT_TRUE(eventually([&] { return ::kill(pid, 0) != 0; })) << "galaxy top still runs after q";
  if (::kill(pid, 0) == 0) ::kill(pid, SIGKILL);
  tmux({"kill-server"});
}

// -m on a tree of plain files: writes text to d/t/PATH, making its directories. Every
// such tree starts as a scheduler's with one node up and one job running.
void put_tree_file(testutil::temp_dir& d, const std::string& path, const std::string& text) {
  auto write = [&](const std::string& p, const std::string& t) {
    std::filesystem::create_directories(std::filesystem::path(d.file("t/" + p)).parent_path());
    std::ofstream(d.file("t/" + p)) << t;
  };
  if (!std::filesystem::exists(d.file("t/status"))) {
    write("jobs/clone", "3\n");
    write("status", "nodes_up=1 nodes_down=0 jobs_running=1 jobs_queued=0 cpu_millis_used=1000 cpu_millis_total=2000 "
                    "mem_bytes_used=0 mem_bytes_total=0 policy=binpack\n");
  }
  write(path, text);
}

// -m on a tree of plain files: the same frame from POSIX reads; a node whose status is
// not there shows as "?" with the error, a status line that does not tokenize shows
// blanks, and neither stops the frame.
TEST(TopMount, PlainTreeAndHostileLines) {
  testutil::temp_dir d;
  auto put = [&](const std::string& path, const std::string& text) { put_tree_file(d, path, text); };
  put("nodes/n1/status", "name=n1 ncpu=2 share=100 mem=1000 memfree=250 load=1.00 tasks=1 state=up\n");
  put("nodes/n9/labels", "");
  put("jobs/1/status", "id=1 owner=carol state=running node=n1 submitted=1000 started=2000 ended=0 name=x note=-\n");
  put("jobs/2/status", "id=2 owner='unterminated state=running\n");
  put("users/carol", "user=carol running=1 queued=0 cpu_millis=1000 mem_bytes=0 dominant_share=0.5000\n");
  put("events", "");
  auto r = testutil::run({galaxy_bin, "top", "-m", d.file("t"), "-n", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_GE(line_of(r.out, "^n1 +up +\\[\\|{10} {10}\\] 1\\.00/2 +\\[\\|{15} {5}\\] "), 0) << r.out;
  EXPECT_GE(line_of(r.out, "^n9 +\\? +.*No such file"), 0) << r.out;
  EXPECT_GE(line_of(r.out, "^1 +carol +running +n1 "), 0) << r.out;
  EXPECT_GE(line_of(r.out, "^carol +1 +0 +1\\.0 "), 0) << r.out;
  EXPECT_EQ(line_of(r.out, "unterminated"), -1) << r.out;
  // Not a tree: said so, exit 1.
  auto bad = testutil::run({galaxy_bin, "top", "-m", d.file(""), "-n", "1"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_THAT(bad.err, HasSubstr("no Galaxy tree is mounted there"));
  auto delay = testutil::run({galaxy_bin, "top", "-m", d.file("t"), "-d", "0"});
  EXPECT_EQ(delay.status, 1);
  EXPECT_THAT(delay.err, HasSubstr("-d 0: expected seconds between 0.1 and 3600"));
}

// Another user's job name and note, a node's status, labels and the scheduler's wait
// answer are the tree's text: top, jobs, history, nodes and wait print none of their
// escape sequences (ESC, BEL, CR, C1 CSI) to the terminal, and still print the rest.
TEST(TopMount, HostileTextPrintsNoEscape) {
  testutil::temp_dir d;
  auto put = [&](const std::string& path, const std::string& text) { put_tree_file(d, path, text); };
  put("nodes/n1/status", "name=n1 ncpu=2 share=100 mem=1000 memfree=250 load=1.00 tasks=1 state='up\x1b[2J'\n");
  put("nodes/n1/labels", "gpu\x1b]52;c;cHduZWQ=\x07\n");
  put("jobs/1/status", "id=1 owner=carol state=running node=n1 submitted=1000 started=2000 ended=0 "
                       "name='x\x1b]0;pwned\x07' note='n\x1b[2J\r\xc2\x9b" "31m'\n");
  put("jobs/2/status", "id=2 owner=carol state=done node=n1 submitted=1000 started=2000 ended=3000 exit=0 "
                       "name='y\x1b]0;pwned\x07' note=-\n");
  put("jobs/2/wait", "exit 0\x1b[2J\n");
  put("users/carol", "user=carol running=1 queued=0 cpu_millis=1000 mem_bytes=0 dominant_share=0.5000\n");
  put("events", "");
  auto clean = [](const std::string& out) {
    for (unsigned char c : out) {
      if ((c < 0x20 && c != '\n') || c == 0x7f || c == 0x9b) return false;
    }
    return true;
  };
  std::vector<std::vector<std::string>> verbs{{"top", "-n", "1"}, {"jobs"},  {"jobs", "-o", "%i %j %r"},
                                              {"history"},        {"nodes"}, {"wait", "2"}};
  for (auto& v : verbs) {
    std::vector<std::string> argv{galaxy_bin};
    argv.insert(argv.end(), v.begin(), v.end());
    argv.insert(argv.end(), {"-m", d.file("t")});
    auto r = testutil::run(argv);
    // wait: "exit 0\x1b[2J" is not an exit it knows, so it exits 1 (but prints it).
    EXPECT_EQ(r.status, v[0] == "wait" ? 1 : 0) << v[0] << ": " << r.err;
    if (v[0] == "wait") {
      EXPECT_EQ(r.out, "exit 0?[2J\n");
    }
    EXPECT_TRUE(clean(r.out)) << v[0] << " printed a control byte:\n" << r.out;
    EXPECT_TRUE(clean(r.err)) << v[0] << " said a control byte:\n" << r.err;
  }
  auto jobs = testutil::run({galaxy_bin, "jobs", "-m", d.file("t")});
  EXPECT_GE(line_of(jobs.out, "^1 +carol +running +n1 +x\\?\\]0;pwned\\? +n\\?\\[2J\\?\\?\\?31m$"), 0) << jobs.out;
  auto nodes = testutil::run({galaxy_bin, "nodes", "-m", d.file("t")});
  EXPECT_GE(line_of(nodes.out, "^n1 +up\\?\\[2J .* gpu\\?\\]52;c;cHduZWQ=\\?$"), 0) << nodes.out;
}

}  // namespace
