// `galaxy up`, the job verbs and the main job, end to end: the real galaxy tool starts a
// real galaxy-sched and real galaxy-node processes and a real FUSE mount; the examples
// run against that mount as a user would run them.
//
// Most tests share one cluster (UpCluster: up once for the suite, down at its end). The
// up/down tests start their own. Every test needs /dev/fuse and skips, saying so, where
// it is absent. The temporary directories are 0755: galaxy-node runs tasks as nobody when
// the test runs as root, and the tasks reach their spools and flag files there. A mount is
// never left behind: teardown runs galaxy down, then unmounts lazily if anything remains,
// before the directory is removed.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "ctl/ctlmsg.hpp"
#include "fsclient/client.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
using testutil::have_fuse;
using testutil::is_mounted;
using testutil::run;

const std::string galaxy = GALAXY_BINARY_DIR "/galaxy";
const std::string wordfreq_sh = GALAXY_SOURCE_DIR "/examples/wordfreq.sh";
const std::string wordfreq_py = GALAXY_SOURCE_DIR "/examples/wordfreq.py";

// A process that still runs: /proc/PID exists and is not a zombie (galaxy down's
// processes are orphans, and whoever inherits them may never reap them).
bool running(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto rp = text.rfind(')');
  if (rp == std::string::npos || rp + 2 >= text.size()) return false;
  char state = text[rp + 2];
  return state != 'Z' && state != 'X';
}

// key=value lines of STATE/cluster.
std::map<std::string, std::string> read_record(const std::string& state) {
  std::map<std::string, std::string> kv;
  std::ifstream in(state + "/cluster");
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (!line.empty() && line[0] != '#' && eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

std::vector<pid_t> recorded_pids(const std::map<std::string, std::string>& kv) {
  std::vector<pid_t> pids;
  for (const auto& [k, v] : kv) {
    if (k.ends_with("_pid") && v != "0") pids.push_back(std::stoi(v));
  }
  return pids;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

template <class F>
bool eventually(F cond, std::chrono::milliseconds limit = 30s) {
  auto deadline = testutil::steady::now() + limit;
  while (!cond()) {
    if (testutil::steady::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// The TCP sockets in LISTEN state (/proc/net/tcp and tcp6, st 0A) that process pid holds
// open, as "local_address" strings; empty when it holds none.
std::vector<std::string> tcp_listeners(pid_t pid) {
  std::map<std::string, std::string> listening;  // socket inode → local address
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the heading
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string sl, local, remote, st, queues, timer, retr, uid, timeout, inode;
      if (f >> sl >> local >> remote >> st >> queues >> timer >> retr >> uid >> timeout >> inode && st == "0A") {
        listening[inode] = local;
      }
    }
  }
  std::vector<std::string> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    auto target = std::filesystem::read_symlink(it->path(), ec).string();
    if (target.starts_with("socket:[")) {
      auto inode = target.substr(8, target.size() - 9);
      if (auto l = listening.find(inode); l != listening.end()) out.push_back(l->second);
    }
  }
  return out;
}

// Whether munged answers on libmunge's default socket (then root's up uses TCP).
bool munged_answers() {
  return run({"/bin/sh", "-c", "command -v munge >/dev/null && munge -n >/dev/null 2>&1"}).status == 0;
}

// A temporary directory with a cluster's state and mount point in it.
struct cluster_dirs {
  testutil::temp_dir tmp;
  std::string state = tmp.file("st");
  std::string mnt = tmp.file("mnt");
  cluster_dirs() { ::chmod(tmp.path().c_str(), 0755); }
  ~cluster_dirs() {
    if (read_record(state).contains("sched_pid")) run({galaxy, "down", "--state", state});
    if (is_mounted(mnt)) ::umount2(mnt.c_str(), MNT_DETACH);  // never remove files through a mount
  }
  testutil::run_result up(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{galaxy, "up", "--state", state, "--mount", mnt};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv, {}, 60s);
  }
  // Stops the cluster, then checks the daemons' logs: under ASan+UBSan their reports go
  // there (they run detached), and a report is a failure of the test that ran them.
  testutil::run_result down() {
    auto r = run({galaxy, "down", "--state", state}, {}, 60s);
    std::error_code ec;
    for (std::filesystem::directory_iterator it(state + "/log", ec), end; !ec && it != end; it.increment(ec)) {
      std::string text = slurp(it->path().string());
      for (const char* mark : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"}) {
        EXPECT_EQ(text.find(mark), std::string::npos) << it->path() << ":\n" << text;
      }
    }
    return r;
  }
  std::string addr() { return read_record(state)["sched_addr"]; }
};

// ---- One cluster for the job verbs and the main job ------------------------------------

class UpCluster : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!have_fuse()) return;
    dirs_ = new cluster_dirs;
    auto r = dirs_->up();
    up_status_ = r.status;
    up_out_ = r.out + r.err;
  }
  static void TearDownTestSuite() {
    if (dirs_ == nullptr) return;
    auto r = dirs_->down();
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    delete dirs_;
    dirs_ = nullptr;
  }
  void SetUp() override {
    REQUIRE_FUSE();
    ASSERT_EQ(up_status_, 0) << up_out_;
    addr_ = dirs_->addr();
    mnt_ = dirs_->mnt;
    ASSERT_FALSE(addr_.empty());
  }
  // How many jobs the scheduler lists now.
  std::size_t job_count() {
    auto r = run({galaxy, "ls", "-a", addr_, "jobs"});
    EXPECT_EQ(r.status, 0) << r.err;
    std::size_t n = 0;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) n += line != "clone";
    return n;
  }

  static inline cluster_dirs* dirs_ = nullptr;
  static inline int up_status_ = -1;
  static inline std::string up_out_;
  std::string addr_, mnt_;
};

TEST_F(UpCluster, UpSaidWhereEverythingIsAndWhatToTry) {
  EXPECT_NE(up_out_.find("mounted on " + mnt_), std::string::npos) << up_out_;
  EXPECT_NE(up_out_.find("scheduler  " + addr_), std::string::npos) << up_out_;
  EXPECT_NE(up_out_.find("cat " + mnt_ + "/status"), std::string::npos) << up_out_;
  EXPECT_NE(up_out_.find("ls " + mnt_ + "/nodes"), std::string::npos) << up_out_;
  EXPECT_NE(up_out_.find("/jobs/clone"), std::string::npos) << up_out_;
  EXPECT_TRUE(is_mounted(mnt_));
  // The tree is there, and both nodes are in it.
  EXPECT_NE(slurp(mnt_ + "/status").find("nodes_up=2"), std::string::npos) << slurp(mnt_ + "/status");
  auto nodes = run({galaxy, "nodes", "-m", mnt_});
  EXPECT_EQ(nodes.status, 0) << nodes.err;
  EXPECT_NE(nodes.out.find("\nn1 "), std::string::npos) << nodes.out;
  EXPECT_NE(nodes.out.find("\nn2 "), std::string::npos) << nodes.out;
  EXPECT_NE(nodes.out.find("arch="), std::string::npos) << nodes.out;
}

// One key=value word of a status line ("" when absent).
std::string field(const std::string& text, const std::string& key) {
  auto line = " " + text;
  auto at = line.find(" " + key + "=");
  if (at == std::string::npos) return {};
  at += key.size() + 2;
  return line.substr(at, line.find_first_of(" \n", at) - at);
}

// up prints the lines to export; with them, or --state, every verb finds this cluster
// (it is not in the default state directory), and a place given is used alone, in the
// order -a, -m, --state, $GALAXY_ADDR, $GALAXY_STATE.
TEST_F(UpCluster, UpPrintsWhatToExportAndEveryVerbFindsTheClusterByIt) {
  const std::string& state = dirs_->state;
  EXPECT_NE(up_out_.find("\nexport GALAXY_STATE=" + state + "\n"), std::string::npos) << up_out_;
  EXPECT_NE(up_out_.find("\nexport GALAXY_ADDR='" + addr_ + "'\n"), std::string::npos) << up_out_;
  const std::vector<std::string> by_state{"GALAXY_ADDR", "GALAXY_STATE=" + state};
  const std::vector<std::string> unset{"GALAXY_ADDR", "GALAXY_STATE"};
  auto nodes = run({galaxy, "nodes"}, {}, 30s, by_state);
  EXPECT_EQ(nodes.status, 0) << nodes.err;
  EXPECT_NE(nodes.out.find("\nn2 "), std::string::npos) << nodes.out;
  auto ls = run({galaxy, "ls", "--state", state, "nodes"}, {}, 30s, unset);
  EXPECT_EQ(ls.status, 0) << ls.err;
  EXPECT_EQ(ls.out, "n1\nn2\n");
  auto r = run({galaxy, "run", "-q", "--state", state, "--", "echo", "found"}, {}, 60s, unset);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "found\n");
  auto s = run({galaxy, "submit", "--name", "by-addr", "--", "true"}, {}, 30s, {"GALAXY_STATE", "GALAXY_ADDR=" + addr_});
  EXPECT_EQ(s.status, 0) << s.err;
  auto w = run({galaxy, "wait", s.out.substr(0, s.out.find('\n'))}, {}, 60s, by_state);
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  // $GALAXY_ADDR comes before $GALAXY_STATE, and --state before either.
  testutil::temp_dir t;
  std::string none = "unix!" + t.file("none.sock");
  const std::vector<std::string> both{"GALAXY_ADDR=" + none, "GALAXY_STATE=" + state};
  auto first = run({galaxy, "jobs"}, {}, 30s, both);
  EXPECT_EQ(first.status, 1);
  EXPECT_NE(first.err.find("(from $GALAXY_ADDR=" + none + ")"), std::string::npos) << first.err;
  auto opt = run({galaxy, "jobs", "--state", state}, {}, 30s, both);
  EXPECT_EQ(opt.status, 0) << opt.err;
  EXPECT_NE(opt.out.find("by-addr"), std::string::npos) << opt.out;
}

// mount finds the cluster as every verb does when it is given no dial: by --state, -a or
// $GALAXY_STATE; a dial and --state together are refused and mount nothing.
TEST_F(UpCluster, MountFindsTheClusterAsEveryVerbDoes) {
  const std::string& state = dirs_->state;
  testutil::temp_dir t;
  ::chmod(t.path().c_str(), 0755);
  std::string mnt = t.file("m");
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  const std::vector<std::string> unset{"GALAXY_ADDR", "GALAXY_STATE"};
  struct unmount {
    std::string dir;
    ~unmount() {
      if (is_mounted(dir)) run({galaxy, "umount", "-z", dir});
    }
  } guard{mnt};
  for (auto how : {std::vector<std::string>{"--state", state}, std::vector<std::string>{"-a", addr_},
                   std::vector<std::string>{}}) {
    std::vector<std::string> argv{galaxy, "mount"};
    argv.insert(argv.end(), how.begin(), how.end());
    argv.push_back(mnt);
    auto env = how.empty() ? std::vector<std::string>{"GALAXY_ADDR", "GALAXY_STATE=" + state} : unset;
    auto m = run(argv, {}, 30s, env);
    ASSERT_EQ(m.status, 0) << m.out << m.err;
    EXPECT_TRUE(is_mounted(mnt));
    EXPECT_NE(slurp(mnt + "/status").find("nodes_up=2"), std::string::npos);
    auto u = run({galaxy, "umount", mnt});
    EXPECT_EQ(u.status, 0) << u.err;
    EXPECT_FALSE(is_mounted(mnt));
  }
  auto both = run({galaxy, "mount", "--state", state, addr_, mnt}, {}, 30s, unset);
  EXPECT_EQ(both.status, 1);
  EXPECT_NE(both.err.find("not two of them"), std::string::npos) << both.err;
  EXPECT_FALSE(is_mounted(mnt));
  auto nowhere = run({galaxy, "mount", "--state", t.file("none"), mnt}, {}, 30s, unset);
  EXPECT_EQ(nowhere.status, 1);
  EXPECT_NE(nowhere.err.find("no cluster is recorded there"), std::string::npos) << nowhere.err;
  EXPECT_FALSE(is_mounted(mnt));
}

// Every node of a local cluster has this machine's memory divided among the nodes, as
// its CPUs are, so the cluster counts the machine's memory once.
TEST_F(UpCluster, MemoryIsDividedAmongTheNodes) {
  std::uint64_t total = 0;
  {
    std::ifstream in("/proc/meminfo");
    std::string key, unit;
    std::uint64_t kib = 0;
    while (in >> key >> kib >> unit) {
      if (key == "MemTotal:") total = kib << 10;
    }
  }
  ASSERT_GT(total, 0u);
  for (const std::string n : {"n1", "n2"}) {
    auto st = slurp(mnt_ + "/nodes/" + n + "/status");
    EXPECT_EQ(field(st, "mem"), std::to_string(total / 2)) << n << ": " << st;
  }
  auto st = slurp(mnt_ + "/status");
  EXPECT_EQ(field(st, "mem_bytes_total"), std::to_string(total / 2 * 2)) << st;
  EXPECT_NE(up_out_.find(ctl::human_bytes(total / 2)), std::string::npos) << up_out_;
}

// The main job on a small slice, through the mount; its table equals the local pipeline's,
// computed here again independently of the script's own check.
TEST_F(UpCluster, MainJobOnASliceEqualsTheLocalPipeline) {
  auto r = run({wordfreq_sh, "-m", mnt_, "--slice", "24", "--maps", "6"}, {}, 120s);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(r.err.find("done,"), std::string::npos) << r.err;  // no progress line through a pipe
  EXPECT_NE(r.out.find("result: match"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("jobs: 7 (6 map, 1 reduce)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("jobs per node: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("elapsed on the cluster: "), std::string::npos) << r.out;

  auto local = run({"/bin/sh", "-c",
                    "export LC_ALL=C; ls -d /usr/share/doc/*/copyright | head -n 24 | xargs cat -- | "
                    "tr -cs '[:alpha:]' '\\n' | tr '[:upper:]' '[:lower:]' | sed '/^$/d' | sort | uniq -c | "
                    "sort -k1,1nr -k2,2 | head -n 20 | awk '{ printf \"  %8d  %s\\n\", $1, $2 }'"});
  ASSERT_EQ(local.status, 0) << local.err;
  ASSERT_FALSE(local.out.empty());
  auto from = r.out.find("The 20 most frequent words:\n");
  ASSERT_NE(from, std::string::npos) << r.out;
  from += std::string("The 20 most frequent words:\n").size();
  EXPECT_EQ(r.out.substr(from, local.out.size()), local.out);

  // Every job the script made ran on a node of this cluster and ended well.
  auto jobs = run({galaxy, "jobs", "-a", addr_});
  ASSERT_EQ(jobs.status, 0) << jobs.err;
  EXPECT_NE(jobs.out.find("map5"), std::string::npos) << jobs.out;
  EXPECT_NE(jobs.out.find("reduce"), std::string::npos) << jobs.out;
}

TEST_F(UpCluster, MainJobInPythonMatchesToo) {
  auto r = run({wordfreq_py, "-m", mnt_, "--slice", "16", "--maps", "4"}, {}, 120s);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("result: match"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("jobs: 5 (4 map, 1 reduce)"), std::string::npos) << r.out;
}

// A map job that fails: the main job names it, its node, its input and its stderr, and
// exits non-zero, printing no table.
TEST_F(UpCluster, MainJobReportsTheInputThatFailed) {
  testutil::temp_dir t;
  ::chmod(t.path().c_str(), 0755);
  std::string list = t.file("inputs");
  {
    std::ofstream out(list);
    out << "/usr/share/doc/coreutils/copyright\n" << t.file("missing-copyright") << "\n";
  }
  for (const auto& script : {wordfreq_sh, wordfreq_py}) {
    auto r = run({script, "-m", mnt_, "--files", list, "--maps", "2"}, {}, 120s);
    EXPECT_EQ(r.status, 1) << script << r.out << r.err;
    EXPECT_NE(r.err.find("failed"), std::string::npos) << script << r.err;
    EXPECT_NE(r.err.find("on node n"), std::string::npos) << script << r.err;
    EXPECT_NE(r.err.find(t.file("missing-copyright")), std::string::npos) << script << r.err;
    EXPECT_EQ(r.out.find("result: match"), std::string::npos) << script << r.out;
    EXPECT_EQ(r.out.find("most frequent"), std::string::npos) << script << r.out;
  }
}

// galaxy run exits as the job did, natively and through the mount.
TEST_F(UpCluster, RunExitsAsTheJobDid) {
  for (const auto& conn : {std::vector<std::string>{"-a", addr_}, std::vector<std::string>{"-m", mnt_}}) {
    auto go = [&](const std::string& script) {
      std::vector<std::string> argv{galaxy, "run", "-q"};
      argv.insert(argv.end(), conn.begin(), conn.end());
      argv.insert(argv.end(), {"--", "sh", "-c", script});
      return run(argv, {}, 60s);
    };
    auto ok = go("echo fine");
    EXPECT_EQ(ok.status, 0) << conn[0] << ok.err;
    EXPECT_EQ(ok.out, "fine\n");
    auto three = go("echo to-err >&2; exit 3");
    EXPECT_EQ(three.status, 3) << conn[0] << three.err;
    EXPECT_NE(three.err.find("to-err\n"), std::string::npos) << three.err;
    auto term = go("kill -TERM $$");
    EXPECT_EQ(term.status, 128 + 15) << conn[0] << term.err;
    EXPECT_NE(term.err.find("signal 15"), std::string::npos) << term.err;
  }
}

// Output arrives while the job runs: the job cannot end before the test creates a flag
// file, and the test creates it only after reading the job's first line from galaxy run.
TEST_F(UpCluster, RunStreamsOutputWhileTheJobRuns) {
  testutil::temp_dir t;
  ::chmod(t.path().c_str(), 0755);
  int i = 0;
  for (const auto& conn : {std::vector<std::string>{"-a", addr_}, std::vector<std::string>{"-m", mnt_}}) {
    std::string flag = t.file("flag" + std::to_string(i++));
    std::vector<std::string> argv{galaxy, "run", "-q"};
    argv.insert(argv.end(), conn.begin(), conn.end());
    argv.insert(argv.end(), {"--", "sh", "-c",
                             "echo ready; echo early-err >&2; while [ ! -e '" + flag +
                                 "' ]; do sleep 0.05; done; echo done"});
    auto p = testutil::process::spawn(argv, {.capture_stderr = true});
    ASSERT_TRUE(p) << p.error();
    auto line = p->read_line(60s);
    ASSERT_TRUE(line) << conn[0] << ": " << line.error();
    EXPECT_EQ(*line, "ready");
    std::string err;
    while (err.find("early-err\n") == std::string::npos) {
      ASSERT_GT(testutil::process::fill(p->stderr_fd(), err, testutil::steady::now() + 60s), 0) << err;
    }
    std::ofstream(flag).put('x');
    auto rest = p->read_line(60s);
    ASSERT_TRUE(rest) << rest.error();
    EXPECT_EQ(*rest, "done");
    EXPECT_EQ(p->wait(60s), 0);
  }
}

// Ctrl-C on galaxy run kills the job (as srun cancels its job) and run exits as the
// killed job did.
TEST_F(UpCluster, InterruptingRunKillsTheJob) {
  auto p = testutil::process::spawn({galaxy, "run", "-a", addr_, "--", "sleep", "600"}, {.capture_stderr = true});
  ASSERT_TRUE(p) << p.error();
  std::string err;
  while (err.find('\n') == std::string::npos) {
    ASSERT_GT(testutil::process::fill(p->stderr_fd(), err, testutil::steady::now() + 60s), 0) << err;
  }
  ASSERT_TRUE(err.starts_with("galaxy: run: job ")) << err;
  std::string id = err.substr(17, err.find('\n') - 17);
  ASSERT_TRUE(eventually([&] { return slurp(mnt_ + "/jobs/" + id + "/status").find("state=running") != std::string::npos; }));
  p->signal(SIGINT);
  EXPECT_EQ(p->wait(60s), 128 + 9);
  // The status file, not the wait file: a job that was not killed must fail the test,
  // not hang it.
  EXPECT_NE(slurp(mnt_ + "/jobs/" + id + "/status").find("exit='signal 9'"), std::string::npos)
      << slurp(mnt_ + "/jobs/" + id + "/status");
}

TEST_F(UpCluster, SubmitWaitKillAndJobs) {
  auto s = run({galaxy, "submit", "-a", addr_, "--name", "greeting", "--", "echo", "hello world"});
  ASSERT_EQ(s.status, 0) << s.err;
  std::string id = s.out.substr(0, s.out.find('\n'));
  ASSERT_FALSE(id.empty());
  auto w = run({galaxy, "wait", "-m", mnt_, id}, {}, 60s);
  EXPECT_EQ(w.status, 0) << w.err;
  EXPECT_EQ(w.out, "exit 0\n");
  EXPECT_EQ(slurp(mnt_ + "/jobs/" + id + "/stdout"), "hello world\n");
  auto jobs = run({galaxy, "jobs", "-a", addr_});
  EXPECT_NE(jobs.out.find("greeting"), std::string::npos) << jobs.out;

  auto long_job = run({galaxy, "submit", "-a", addr_, "--", "sleep", "600"});
  ASSERT_EQ(long_job.status, 0) << long_job.err;
  std::string lid = long_job.out.substr(0, long_job.out.find('\n'));
  ASSERT_TRUE(eventually([&] { return slurp(mnt_ + "/jobs/" + lid + "/status").find("state=running") != std::string::npos; }));
  auto k = run({galaxy, "kill", "-a", addr_, lid});
  EXPECT_EQ(k.status, 0) << k.err;
  auto kw = run({galaxy, "wait", "-a", addr_, lid}, {}, 60s);
  EXPECT_EQ(kw.status, 128 + 9) << kw.out << kw.err;
}

// Runs the shell command line cmd on a pseudo-terminal (script(1), from util-linux):
// its standard output and error are both the terminal, captured together in out.
testutil::run_result on_terminal(const std::string& cmd, std::chrono::milliseconds timeout = 120s) {
  return run({"/usr/bin/script", "-qec", cmd, "/dev/null"}, {}, timeout);
}

// Words quoted for sh: 'word' each, a quote as '\''.
std::string sh_words(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    std::string q = "'";
    for (char c : w) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += (out.empty() ? "" : " ") + q + "'";
  }
  return out;
}

// galaxy wait on a terminal shows a line of progress (done/running/queued, elapsed) on
// standard error, redrawn with \r and blanked before the answer; through a pipe it shows
// nothing but the answer.
TEST_F(UpCluster, WaitShowsProgressOnATerminalOnly) {
  auto submit = [&] {
    auto s = run({galaxy, "submit", "-a", addr_, "--", "sleep", "2"});
    EXPECT_EQ(s.status, 0) << s.err;
    return s.out.substr(0, s.out.find('\n'));
  };
  std::string a = submit(), b = submit();
  auto tty = on_terminal(sh_words({galaxy, "wait", "-a", addr_, a, b}));
  EXPECT_EQ(tty.status, 0) << tty.out << tty.err;
  static const std::regex progress(R"(\rgalaxy: wait: [0-2]/2 done, [0-2] running, [0-2] queued, 0:[0-9][0-9])");
  EXPECT_TRUE(std::regex_search(tty.out, progress)) << tty.out;
  // Each answer comes on a blanked line: \r, blanks, \r, then the answer.
  const std::regex answer("\r +\r" + a + " exit 0\r\n");
  EXPECT_TRUE(std::regex_search(tty.out, answer)) << tty.out;
  // Nothing of it is left after the last answer.
  auto last = tty.out.rfind(b + " exit 0");
  ASSERT_NE(last, std::string::npos) << tty.out;
  EXPECT_EQ(tty.out.find("galaxy: wait:", last), std::string::npos) << tty.out;

  std::string c = submit();
  auto pipe = run({galaxy, "wait", "-a", addr_, c}, {}, 60s);
  EXPECT_EQ(pipe.status, 0) << pipe.err;
  EXPECT_EQ(pipe.out, "exit 0\n");
  EXPECT_EQ(pipe.err, "");
}

// The main job on a terminal shows its progress on one line (jobs done, running, queued,
// elapsed), blanked before its report; through a pipe (MainJobOnASliceEqualsTheLocalPipeline)
// none.
TEST_F(UpCluster, MainJobShowsProgressOnATerminal) {
  auto tty = on_terminal(sh_words({wordfreq_sh, "-m", mnt_, "--slice", "8", "--maps", "2"}));
  ASSERT_EQ(tty.status, 0) << tty.out;
  static const std::regex progress(R"(\rwordfreq\.sh: [0-3]/3 done, [0-3] running, [0-3] queued, 0:[0-9][0-9] )");
  EXPECT_TRUE(std::regex_search(tty.out, progress)) << tty.out;
  auto report = tty.out.find("The 20 most frequent words:");
  ASSERT_NE(report, std::string::npos) << tty.out;
  EXPECT_EQ(tty.out.find("done,", report), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.rfind("\r" + std::string(72, ' ') + "\r", report), std::string::npos) << tty.out;
}

// galaxy history, like sacct: the jobs that have ended, with the CPU time and the largest
// resident set that the node measured (wait4's rusage), which the scheduler keeps in the
// job's status (usertime, systime, maxrss): a job that burns CPU shows CPU time above 0,
// one that fills 64 MiB shows a max RSS of at least that. A job still running is not in
// it unless --states asks for it.
TEST_F(UpCluster, HistoryShowsCpuTimeAndMaxRss) {
  std::string tag = "h" + std::to_string(::getpid());
  auto submit = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{galaxy, "submit", "-a", addr_};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv, {}, 30s);
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out.substr(0, r.out.find('\n'));
  };
  std::string burn = submit({"--name", tag + "burn", "--", "sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"});
  std::string big = submit({"--name", tag + "big", "--", "/usr/bin/python3", "-c", "b = b'x' * (64 << 20); print(len(b))"});
  std::string asleep = submit({"--name", tag + "sleep", "--", "sleep", "600"});
  auto w = run({galaxy, "wait", "-a", addr_, burn, big}, {}, 120s);
  ASSERT_EQ(w.status, 0) << w.out << w.err;

  auto h = run({galaxy, "history", "-a", addr_, "--name", tag + "burn," + tag + "big," + tag + "sleep", "--noheader",
                "-o", "%i %j %T %y %z"});
  ASSERT_EQ(h.status, 0) << h.err;
  std::map<std::string, std::vector<std::string>> rows;
  std::istringstream in(h.out);
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::vector<std::string> words;
    for (std::string word; f >> word;) words.push_back(word);
    ASSERT_EQ(words.size(), 5u) << line;
    rows[words[1]] = words;
  }
  ASSERT_EQ(rows.size(), 2u) << h.out;  // not the sleeping one: it has not ended
  // CPU time as sacct's TotalCPU, M:SS.mmm.
  auto cpu_ms = [](const std::string& t) {
    std::smatch m;
    static const std::regex re(R"((\d+):(\d\d)\.(\d\d\d))");
    EXPECT_TRUE(std::regex_match(t, m, re)) << t;
    return m.empty() ? 0 : std::stoull(m[1]) * 60000 + std::stoull(m[2]) * 1000 + std::stoull(m[3]);
  };
  auto rss_kib = [](const std::string& t) {
    EXPECT_TRUE(t.ends_with("K")) << t;
    return std::stoull(t);
  };
  auto& b = rows[tag + "burn"];
  EXPECT_EQ(b[0], burn);
  EXPECT_EQ(b[2], "done");
  EXPECT_GT(cpu_ms(b[3]), 0u) << h.out;
  auto& m = rows[tag + "big"];
  EXPECT_EQ(m[0], big);
  EXPECT_GE(rss_kib(m[4]), 64u * 1024) << h.out;
  EXPECT_LT(rss_kib(b[4]), 64u * 1024) << h.out;

  // The table has sacct's columns, the times and the node.
  auto table = run({galaxy, "history", "-a", addr_, burn});
  ASSERT_EQ(table.status, 0) << table.err;
  EXPECT_TRUE(table.out.starts_with("ID  ")) << table.out;
  for (const char* col : {"SUBMIT", "START", "END", "ELAPSED", "CPU", "MAXRSS", "EXIT", "NODE"}) {
    EXPECT_NE(table.out.find(col), std::string::npos) << col << "\n" << table.out;
  }
  EXPECT_NE(table.out.find("\n" + burn + " "), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("exit 0"), std::string::npos) << table.out;

  // --states asks for others; the running one is then listed.
  ASSERT_TRUE(eventually([&] { return slurp(mnt_ + "/jobs/" + asleep + "/status").find("state=running") != std::string::npos; }));
  auto r = run({galaxy, "history", "-a", addr_, "--states", "R", "--name", tag + "sleep", "--noheader", "-o", "%i"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, asleep + "\n");
  run({galaxy, "kill", "-a", addr_, asleep});
  auto bad = run({galaxy, "history", "-a", addr_, "--states", "nope"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("--states"), std::string::npos) << bad.err;
}

// submit --array N: N tasks jobs/J/0..N-1, each with $GALAXY_INDEX; a bad N makes no job.
TEST_F(UpCluster, SubmitAnArray) {
  auto s = run({galaxy, "submit", "-a", addr_, "--array", "3", "--speculate", "--", "sh", "-c", "echo task $GALAXY_INDEX"});
  ASSERT_EQ(s.status, 0) << s.err;
  std::string id = s.out.substr(0, s.out.find('\n'));
  auto w = run({galaxy, "wait", "-a", addr_, id}, {}, 60s);
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(slurp(mnt_ + "/jobs/" + id + "/" + std::to_string(i) + "/stdout"), "task " + std::to_string(i) + "\n");
  }
  EXPECT_EQ(slurp(mnt_ + "/jobs/" + id + "/ctl"),
            "array 3\nspeculate\nexec sh -c 'echo task $GALAXY_INDEX'\n");
  auto before = job_count();
  auto bad = run({galaxy, "submit", "-a", addr_, "--array", "0", "--", "true"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("--array"), std::string::npos) << bad.err;
  EXPECT_EQ(job_count(), before);
}

// galaxy jobs with Slurm's filters and squeue's -o; array tasks listed as J/I and usable
// in jobs, wait and kill.
TEST_F(UpCluster, JobsFiltersFormatAndArrayTasks) {
  std::string tag = "f" + std::to_string(::getpid());
  auto submit = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{galaxy, "submit", "-a", addr_};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv, {}, 30s);
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out.substr(0, r.out.find('\n'));
  };
  auto jobs = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{galaxy, "jobs", "-a", addr_};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv, {}, 30s);
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out;
  };
  auto state_of = [&](const std::string& id) { return field(slurp(mnt_ + "/jobs/" + id + "/status"), "state"); };
  std::string a = submit({"--name", tag + "A", "--cpu", "10m", "--", "sleep", "600"});
  std::string b = submit({"--name", tag + "B", "--", "true"});
  std::string c = submit({"--name", tag + "C", "--array", "2", "--", "sh", "-c", "exit $GALAXY_INDEX"});
  ASSERT_EQ(run({galaxy, "wait", "-a", addr_, b}, {}, 60s).status, 0);
  auto wc = run({galaxy, "wait", "-a", addr_, c}, {}, 60s);
  EXPECT_EQ(wc.status, 1) << wc.out << wc.err;
  ASSERT_TRUE(eventually([&] { return state_of(a) == "running"; }));

  // Names and states, as squeue -o prints them.
  EXPECT_EQ(jobs({"--name", tag + "A," + tag + "B", "--noheader", "-o", "%i %T %j"}),
            a + " running " + tag + "A\n" + b + " done " + tag + "B\n");
  EXPECT_EQ(jobs({"--name", tag + "B", "-o", "%.8i|%4T|%3j|%x"}),
            "   JOBID|STAT|NAM|EXIT\n" + std::string(8 - b.size(), ' ') + b + "|done|" + tag.substr(0, 3) +
                "|exit 0\n");
  // The array and its tasks, J/I after J; a filter applies to each.
  EXPECT_EQ(jobs({"--name", tag + "C", "--noheader", "-o", "%i %T %x"}),
            c + " failed error 1 of 2 tasks failed\n" + c + "/0 done exit 0\n" + c + "/1 failed exit 1\n");
  EXPECT_EQ(jobs({"--name", tag + "C", "--states", "F", "--noheader", "-o", "%i"}), c + "\n" + c + "/1\n");
  EXPECT_EQ(jobs({"--noheader", "-o", "%i %T", c + "/1", b}), c + "/1 failed\n" + b + " done\n");
  auto table = jobs({c});
  EXPECT_NE(table.find("\n" + c + "/0 "), std::string::npos) << table;
  // wait on a task.
  auto w0 = run({galaxy, "wait", "-a", addr_, c + "/0"}, {}, 60s);
  EXPECT_EQ(w0.status, 0) << w0.err;
  EXPECT_EQ(w0.out, "exit 0\n");
  auto w1 = run({galaxy, "wait", "-m", mnt_, c + "/1"}, {}, 60s);
  EXPECT_EQ(w1.status, 1) << w1.err;
  EXPECT_EQ(w1.out, "exit 1\n");
  // The node it ran on; time used.
  std::string node = field(slurp(mnt_ + "/jobs/" + b + "/status"), "node");
  ASSERT_FALSE(node.empty());
  EXPECT_EQ(jobs({"--node", node, "--name", tag + "B", "--noheader", "-o", "%N %j"}), node + " " + tag + "B\n");
  EXPECT_EQ(jobs({"--node", node == "n1" ? "n2" : "n1", "--name", tag + "B", "--noheader", "-o", "%j"}), "");
  EXPECT_TRUE(std::regex_match(jobs({"--name", tag + "B", "--noheader", "-o", "%M %S"}),
                               std::regex("0:0[0-9] 20[0-9-]+T[0-9:]+\n")));
  // Owners: --user is a filter, -u still the attach name.
  std::string me = field(slurp(mnt_ + "/jobs/" + b + "/status"), "owner");
  EXPECT_EQ(jobs({"--user", me, "--name", tag + "B", "--noheader", "-o", "%u"}), me + "\n");
  EXPECT_EQ(jobs({"--user", "no-" + me, "--name", tag + "B", "--noheader", "-o", "%u"}), "");
  if (::getuid() == 0) {
    auto u = testutil::local_user::make("jo");
    ASSERT_TRUE(u.has_value()) << u.error();
    std::string d = submit({"-u", u->name(), "--name", tag + "D", "--", "true"});
    EXPECT_EQ(jobs({"--user", u->name(), "--noheader", "-o", "%i %u"}), d + " " + u->name() + "\n");
    EXPECT_EQ(jobs({"-u", u->name(), "--name", tag + "D", "--noheader", "-o", "%u"}), u->name() + "\n");
    ASSERT_EQ(run({galaxy, "wait", "-a", addr_, d}, {}, 60s).status, 0);
  }
  // Bad filters and formats: said, and nothing listed.
  auto bad = run({galaxy, "jobs", "-a", addr_, "--states", "running,sleepy"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("'sleepy' is not a state"), std::string::npos) << bad.err;
  auto badf = run({galaxy, "jobs", "-a", addr_, "-o", "%i %Z"});
  EXPECT_EQ(badf.status, 1);
  EXPECT_NE(badf.err.find("'%Z' at 4 is not a field"), std::string::npos) << badf.err;

  // kill by name and state; an array's task by J/I.
  std::string e1 = submit({"--name", tag + "E", "--cpu", "10m", "--", "sleep", "600"});
  std::string e2 = submit({"--name", tag + "E", "--cpu", "10m", "--", "sleep", "600"});
  std::string g = submit({"--name", tag + "G", "--cpu", "10m", "--array", "2", "--", "sleep", "600"});
  ASSERT_TRUE(eventually([&] { return state_of(e1) == "running" && state_of(e2) == "running"; }));
  ASSERT_TRUE(eventually([&] { return state_of(g + "/0") == "running" && state_of(g + "/1") == "running"; }));
  auto k = run({galaxy, "kill", "-a", addr_, "--name", tag + "E"});
  EXPECT_EQ(k.status, 0) << k.err;
  for (const auto& id : {e1, e2}) EXPECT_EQ(run({galaxy, "wait", "-a", addr_, id}, {}, 60s).status, 128 + 9) << id;
  EXPECT_EQ(state_of(a), "running");
  auto kt = run({galaxy, "kill", "-a", addr_, g + "/1"});
  EXPECT_EQ(kt.status, 0) << kt.err;
  EXPECT_EQ(run({galaxy, "wait", "-a", addr_, g + "/1"}, {}, 60s).status, 128 + 9);
  EXPECT_EQ(state_of(g + "/0"), "running");
  auto ks = run({galaxy, "kill", "-a", addr_, "--states", "running", "--name", tag + "A," + tag + "G"});
  EXPECT_EQ(ks.status, 0) << ks.err;
  EXPECT_EQ(run({galaxy, "wait", "-a", addr_, a}, {}, 60s).status, 128 + 9);
  EXPECT_EQ(run({galaxy, "wait", "-a", addr_, g + "/0"}, {}, 60s).status, 128 + 9);
  // Chosen by filter, a job that has ended is left alone, as scancel leaves it.
  auto ended = run({galaxy, "kill", "-a", addr_, "--name", tag + "B," + tag + "C"});
  EXPECT_EQ(ended.status, 0) << ended.err;
  EXPECT_EQ(ended.err, "");
  auto none = run({galaxy, "kill", "-a", addr_});
  EXPECT_EQ(none.status, 1);
  EXPECT_NE(none.err.find("name the jobs"), std::string::npos) << none.err;
  auto badname = run({galaxy, "kill", "-a", addr_, "3/x"});
  EXPECT_EQ(badname.status, 1);
  EXPECT_NE(badname.err.find("'3/x': expected a job number J, or J/I"), std::string::npos) << badname.err;
}

TEST_F(UpCluster, RunWithNoCommandSaysSoAndMakesNoJob) {
  auto before = job_count();
  auto r = run({galaxy, "run", "-a", addr_});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no command"), std::string::npos) << r.err;
  auto r2 = run({galaxy, "run", "-a", addr_, "--cpu", "2", "--"});
  EXPECT_EQ(r2.status, 1);
  EXPECT_NE(r2.err.find("no command"), std::string::npos) << r2.err;
  EXPECT_EQ(job_count(), before);
}

// An unknown label: the message names the labels the nodes have (nodes/*/labels).
TEST_F(UpCluster, UnknownLabelNamesTheLabelsThatExist) {
  std::string arch = slurp(mnt_ + "/nodes/n1/labels");
  arch = arch.substr(0, arch.find('\n'));
  ASSERT_TRUE(arch.starts_with("arch=")) << arch;
  auto before = job_count();
  for (const auto& conn : {std::vector<std::string>{"-a", addr_}, std::vector<std::string>{"-m", mnt_}}) {
    std::vector<std::string> argv{galaxy, "run"};
    argv.insert(argv.end(), conn.begin(), conn.end());
    argv.insert(argv.end(), {"--need", "gpu=yes", "--", "true"});
    auto r = run(argv);
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("gpu=yes"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(arch), std::string::npos) << r.err;
  }
  EXPECT_EQ(job_count(), before);
  // A label that exists is accepted.
  auto ok = run({galaxy, "run", "-q", "-a", addr_, "--need", arch, "--", "true"}, {}, 60s);
  EXPECT_EQ(ok.status, 0) << ok.err;
}

// A ctl line the scheduler refuses after the clone: the error is the scheduler's own, and
// the half-made job is removed again.
TEST_F(UpCluster, RefusedJobLeavesNothingBehind) {
  auto before = job_count();
  auto r = run({galaxy, "run", "-a", addr_, "--after", "999999", "--", "true"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no job 999999"), std::string::npos) << r.err;
  EXPECT_EQ(job_count(), before);
}

// Root without munged: every daemon on a Unix socket in a 0700 directory, no TCP
// listener at all, and another user cannot even connect.
TEST_F(UpCluster, RootWithoutMungedServesOnUnixSocketsOnly) {
  if (::getuid() != 0) GTEST_SKIP() << "root's mode; this test runs as uid " << ::getuid();
  if (munged_answers()) GTEST_SKIP() << "munged runs here: root's cluster may use TCP with MUNGE";
  EXPECT_NE(up_out_.find("munged is not running"), std::string::npos) << up_out_;
  EXPECT_NE(up_out_.find("Unix sockets only"), std::string::npos) << up_out_;
  std::string sock = dirs_->state + "/sock";
  EXPECT_EQ(addr_, "unix!" + sock + "/sched.sock");
  auto rec = read_record(dirs_->state);
  EXPECT_EQ(rec["node1_addr"], "unix!" + sock + "/n1.sock");
  struct stat st {};
  ASSERT_EQ(::stat(sock.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  for (auto pid : recorded_pids(rec)) EXPECT_EQ(tcp_listeners(pid), std::vector<std::string>{}) << "pid " << pid;
  auto r = run({"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", galaxy, "cat", "-a", addr_,
                "status"});
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.err.find("ermission denied"), std::string::npos) << r.err;
}

// Through root's mount (allow_other, per-user), each local user acts as themself: a job
// cloned by alice through /galaxy is alice's, bob's is bob's, in the scheduler.
TEST_F(UpCluster, EachUserClonesJobsAsThemselfThroughTheMount) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to make users (CI runs as root)";
  auto alice = testutil::local_user::make("al");
  ASSERT_TRUE(alice.has_value()) << alice.error();
  auto bob = testutil::local_user::make("bo");
  ASSERT_TRUE(bob.has_value()) << bob.error();
  auto c = fsclient::client::dial(addr_);
  ASSERT_TRUE(c.has_value()) << c.error();
  auto root = (*c)->attach("root");
  ASSERT_TRUE(root.has_value()) << root.error();
  for (const auto* u : {&*alice, &*bob}) {
    auto r = run(u->as({"/bin/cat", mnt_ + "/jobs/clone"}));
    ASSERT_EQ(r.status, 0) << u->name() << ": " << r.err;
    std::string id = r.out.substr(0, r.out.find('\n'));
    auto d = (*c)->stat_path(*root, "jobs/" + id);
    ASSERT_TRUE(d.has_value()) << d.error();
    EXPECT_EQ(d->uid, u->name()) << "job " << id;
    auto shown = run({"/usr/bin/stat", "-c", "%U", mnt_ + "/jobs/" + id});
    EXPECT_EQ(shown.out, u->name() + "\n");
  }
}

// ---- up and down --------------------------------------------------------------------

// An ordinary user's cluster: Unix sockets in their 0700 state directory, no TCP
// listener; the user's own verbs find it, its tasks run as the user, another user
// cannot connect, and down stops it all.
TEST(UpDown, AnOrdinaryUserServesOnUnixSocketsOnly) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to make a user to run galaxy up as (CI runs as root)";
  auto carol = testutil::local_user::make("ca");
  ASSERT_TRUE(carol.has_value()) << carol.error();
  testutil::temp_dir t;
  ::chmod(t.path().c_str(), 0755);
  std::string home = t.file("home"), xdg = home + "/run", state = xdg + "/galaxy";
  for (const auto& d : {home, xdg}) {
    ASSERT_EQ(::mkdir(d.c_str(), 0700), 0);
    ASSERT_EQ(::chown(d.c_str(), carol->uid(), carol->gid()), 0);
  }
  const std::vector<std::string> env{"HOME=" + home, "XDG_RUNTIME_DIR=" + xdg, "USER=" + carol->name(),
                                     "LOGNAME=" + carol->name(), "GALAXY_ADDR", "LC_ALL=C"};
  auto as_carol = [&](std::vector<std::string> argv) { return run(carol->as(argv), {}, 60s, env); };
  struct downer {
    std::function<void()> f;
    ~downer() { f(); }
  } guard{[&] {
    if (read_record(state).contains("sched_pid")) as_carol({galaxy, "down"});
    if (is_mounted(home + "/galaxy")) ::umount2((home + "/galaxy").c_str(), MNT_DETACH);
  }};

  auto up = as_carol({galaxy, "up", "--nodes", "1"});
  ASSERT_EQ(up.status, 0) << up.out << up.err;
  EXPECT_NE(up.out.find("Unix sockets only, in " + state + " (mode 0700)"), std::string::npos) << up.out;
  auto rec = read_record(state);
  EXPECT_EQ(rec["sched_addr"], "unix!" + state + "/sched.sock");
  EXPECT_EQ(rec["node1_addr"], "unix!" + state + "/n1.sock");
  struct stat st {};
  ASSERT_EQ(::stat(state.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, carol->uid());
  for (const auto& f : {state + "/cluster", state + "/log/sched.log", state + "/log/n1.log"}) {
    ASSERT_EQ(::stat(f.c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 07777, 0600u) << f;
  }
  auto pids = recorded_pids(rec);
  ASSERT_GE(pids.size(), 2u);
  for (auto pid : pids) {
    EXPECT_TRUE(running(pid)) << pid;
    EXPECT_EQ(tcp_listeners(pid), std::vector<std::string>{}) << "pid " << pid;
  }

  // carol's verbs find the cluster from its record; her task runs as her.
  auto r = as_carol({galaxy, "run", "-q", "--", "id", "-un"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, carol->name() + "\n");
  // Anyone else is stopped by the directory before any daemon hears of them.
  r = run({"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", galaxy, "cat", "-a",
           rec["sched_addr"], "status"});
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.err.find("ermission denied"), std::string::npos) << r.err;

  auto down = as_carol({galaxy, "down"});
  EXPECT_EQ(down.status, 0) << down.out << down.err;
  for (auto pid : pids) EXPECT_FALSE(running(pid)) << pid;
  EXPECT_FALSE(std::filesystem::exists(state + "/cluster"));
}

TEST(UpDown, DownLeavesNoProcessNoMountAndNoTask) {
  REQUIRE_FUSE();
  cluster_dirs d;
  auto up = d.up({"--nodes", "3"});
  ASSERT_EQ(up.status, 0) << up.out << up.err;
  auto rec = read_record(d.state);
  auto pids = recorded_pids(rec);
  ASSERT_EQ(pids.size(), 5u);  // a scheduler, three nodes, the mount
  for (auto p : pids) EXPECT_TRUE(running(p)) << p;
  EXPECT_TRUE(is_mounted(d.mnt));
  EXPECT_EQ(slurp(d.mnt + "/status").find("nodes_up=3") != std::string::npos, true);

  // Twice: it says so and changes nothing.
  auto again = d.up();
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find("already up"), std::string::npos) << again.err;
  EXPECT_EQ(read_record(d.state), rec);

  // A running task: down must not leave it behind either.
  auto s = run({galaxy, "submit", "-a", d.addr(), "--", "sleep", "600"});
  ASSERT_EQ(s.status, 0) << s.err;
  std::string id = s.out.substr(0, s.out.find('\n'));
  std::string status;
  ASSERT_TRUE(eventually([&] {
    status = slurp(d.mnt + "/jobs/" + id + "/status");
    return status.find("state=running") != std::string::npos;
  }));
  auto field = [&](const std::string& text, const std::string& key) {
    auto at = text.find(" " + key + "=");
    if (at == std::string::npos) return std::string();
    at += key.size() + 2;
    return text.substr(at, text.find_first_of(" \n", at) - at);
  };
  std::string task_status = slurp(d.mnt + "/nodes/" + field(status, "node") + "/task/" + field(status, "task") + "/status");
  std::string task_pid = field(" " + task_status, "pid");
  ASSERT_FALSE(task_pid.empty()) << task_status;
  ASSERT_TRUE(running(std::stoi(task_pid)));

  auto down = d.down();
  EXPECT_EQ(down.status, 0) << down.out << down.err;
  EXPECT_NE(down.out.find("unmounted " + d.mnt), std::string::npos) << down.out;
  for (auto p : pids) EXPECT_FALSE(running(p)) << p;
  EXPECT_FALSE(running(std::stoi(task_pid)));
  EXPECT_FALSE(is_mounted(d.mnt));
  EXPECT_FALSE(std::filesystem::exists(d.state + "/cluster"));

  // Down with nothing up: says so, non-zero.
  auto none = d.down();
  EXPECT_EQ(none.status, 1);
  EXPECT_NE(none.err.find("nothing is up"), std::string::npos) << none.err;
}

TEST(UpDown, DownWithNothingEverUpSaysSo) {
  testutil::temp_dir t;
  auto r = run({galaxy, "down", "--state", t.file("never")});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("nothing is up in " + t.file("never")), std::string::npos) << r.err;
}

// A state directory someone else controls is never believed (the attack: another user
// makes /tmp/galaxy-0 before root's first up, or $GALAXY_STATE points into their home,
// with a record naming a process of root's and a lock linked to a file to create). down
// refuses it and signals nothing, creates nothing through the link; the verbs that find
// the cluster by --state or $GALAXY_STATE dial nothing it names. Also a directory of ours
// that others may write in, and a record that is a symbolic link.
TEST(UpDown, AStateDirectoryOthersControlIsRefused) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root (a directory owned by another user)";
  testutil::temp_dir t;
  auto victim = testutil::process::spawn({"/bin/sleep", "300"});
  ASSERT_TRUE(victim) << victim.error();
  // Its start time, proc(5) stat field 22 (20 fields after the state, which follows ')').
  std::ifstream st("/proc/" + std::to_string(victim->pid()) + "/stat");
  std::string stat_text((std::istreambuf_iterator<char>(st)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat_text.substr(stat_text.rfind(')') + 2));
  std::string field;
  for (int i = 0; i < 20; i++) fields >> field;
  auto ticks = &field;
  auto plant = [&](const std::string& dir) {
    std::ofstream(dir + "/cluster") << fmt::format("state={}\nsched_addr=tcp!127.0.0.1!1\nsched_pid={}\n"
                                                   "sched_start={}\nnodes=0\n",
                                                   dir, victim->pid(), *ticks);
  };
  std::string theirs = t.file("theirs");
  std::filesystem::create_directory(theirs);
  plant(theirs);
  std::filesystem::create_symlink(t.file("created"), theirs + "/lock");
  ASSERT_EQ(::chown(theirs.c_str(), 65534, 65534), 0);
  ASSERT_EQ(::lchown((theirs + "/cluster").c_str(), 65534, 65534), 0);

  auto d = run({galaxy, "down", "--state", theirs, "--timeout", "1"});
  EXPECT_EQ(d.status, 1);
  EXPECT_NE(d.err.find(theirs + ": owned by uid 65534, not by us (uid 0) or root; not trusted"), std::string::npos)
      << d.err;
  EXPECT_TRUE(running(victim->pid()));
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(t.file("created"))));
  const std::vector<std::string> unset{"GALAXY_ADDR", "GALAXY_STATE"};
  auto j = run({galaxy, "jobs", "--state", theirs}, {}, 30s, unset);
  EXPECT_NE(j.status, 0);
  EXPECT_NE(j.err.find("not trusted"), std::string::npos) << j.err;
  auto e = run({galaxy, "jobs"}, {}, 30s, {"GALAXY_ADDR", "GALAXY_STATE=" + theirs});
  EXPECT_NE(e.status, 0);
  EXPECT_NE(e.err.find("not trusted"), std::string::npos) << e.err;

  // Ours, but others may write in it.
  std::string open = t.file("open");
  std::filesystem::create_directory(open);
  plant(open);
  ::chmod(open.c_str(), 0777);
  auto o = run({galaxy, "down", "--state", open, "--timeout", "1"});
  EXPECT_EQ(o.status, 1);
  EXPECT_NE(o.err.find("mode 0777 lets others write in it"), std::string::npos) << o.err;
  EXPECT_TRUE(running(victim->pid()));

  // Ours, with a record that is a link to another's file.
  std::string linked = t.file("linked");
  std::filesystem::create_directory(linked);
  ::chmod(linked.c_str(), 0700);
  plant(theirs);
  std::filesystem::create_symlink(theirs + "/cluster", linked + "/cluster");
  auto l = run({galaxy, "down", "--state", linked, "--timeout", "1"});
  EXPECT_EQ(l.status, 1);
  EXPECT_NE(l.err.find("not a regular file"), std::string::npos) << l.err;
  EXPECT_TRUE(running(victim->pid()));
}

// Up again on the same state after down: the jobs of the first run are still there.
TEST(UpDown, JobsOutliveDownAndUp) {
  REQUIRE_FUSE();
  cluster_dirs d;
  ASSERT_EQ(d.up({"--nodes", "1"}).status, 0);
  auto r = run({galaxy, "run", "-q", "-a", d.addr(), "--", "echo", "kept"}, {}, 60s);
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_EQ(d.down().status, 0);
  auto up = d.up({"--nodes", "1"});
  ASSERT_EQ(up.status, 0) << up.out << up.err;
  EXPECT_EQ(slurp(d.mnt + "/jobs/1/stdout"), "kept\n");
  // Its accounting too (the scheduler's store keeps it): echo's resident set is not 0.
  auto h = run({galaxy, "history", "-a", d.addr(), "--noheader", "-o", "%i %z", "1"});
  EXPECT_EQ(h.status, 0) << h.err;
  EXPECT_TRUE(h.out.starts_with("1 ") && h.out != "1 0K\n") << h.out;
  ASSERT_EQ(d.down().status, 0);
}

// FUSE unavailable: in a mount namespace of its own whose /dev has no fuse device, up
// says so and still starts the cluster, which works natively from outside.
TEST(UpDown, WithoutFuseTheClusterStillStarts) {
  REQUIRE_FUSE();
  if (::getuid() != 0) GTEST_SKIP() << "needs root for a mount namespace (CI runs as root)";
  if (run({"/usr/bin/unshare", "-m", "true"}).status != 0) GTEST_SKIP() << "unshare -m is not permitted here";
  cluster_dirs d;
  std::string olddev = d.tmp.file("olddev");
  std::filesystem::create_directory(olddev);
  // A /dev without fuse: a tmpfs over /dev, with null, zero, random and urandom bound back.
  std::string script =
      "set -e; mount --bind /dev '" + olddev + "'; mount -t tmpfs tmpfs /dev; "
      "for n in null zero random urandom; do touch /dev/$n; mount --bind '" + olddev + "'/$n /dev/$n; done; "
      "umount '" + olddev + "'; exec '" + galaxy + "' up --state '" + d.state + "' --mount '" + d.mnt + "'";
  auto up = run({"/usr/bin/unshare", "-m", "/bin/sh", "-c", script}, {}, 60s);
  ASSERT_EQ(up.status, 0) << up.out << up.err;
  EXPECT_NE(up.out.find("FUSE is unavailable here (/dev/fuse: "), std::string::npos) << up.out;
  EXPECT_NE(up.out.find("without a mount"), std::string::npos) << up.out;
  EXPECT_NE(up.out.find("export GALAXY_ADDR="), std::string::npos) << up.out;
  auto r = run({galaxy, "run", "-q", "-a", d.addr(), "--", "echo", "native"}, {}, 60s);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "native\n");
  auto pids = recorded_pids(read_record(d.state));
  EXPECT_EQ(pids.size(), 3u);  // no mount process
  auto down = d.down();
  EXPECT_EQ(down.status, 0) << down.out << down.err;
  for (auto p : pids) EXPECT_FALSE(running(p)) << p;
}

TEST(UpDown, BadInputChangesNothing) {
  testutil::temp_dir t;
  ::chmod(t.path().c_str(), 0755);
  auto r = run({galaxy, "up", "--nodes", "0", "--state", t.file("st"), "--mount", t.file("mnt")});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--nodes 0: expected 1 to 64"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(t.file("st")));
  // A mount point that is a file.
  std::ofstream(t.file("afile")).put('x');
  if (have_fuse()) {
    auto f = run({galaxy, "up", "--state", t.file("st2"), "--mount", t.file("afile")});
    EXPECT_EQ(f.status, 1);
    EXPECT_NE(f.err.find("not a directory"), std::string::npos) << f.err;
    EXPECT_FALSE(std::filesystem::exists(t.file("st2/cluster")));
  }
  // A state directory others may write in, or one that is not ours: refused, untouched.
  std::filesystem::create_directory(t.file("open"));
  ::chmod(t.file("open").c_str(), 0777);
  auto o = run({galaxy, "up", "--no-mount", "--state", t.file("open"), "--mount", t.file("mnt")});
  EXPECT_EQ(o.status, 1);
  EXPECT_NE(o.err.find("lets others write in it"), std::string::npos) << o.err;
  EXPECT_FALSE(std::filesystem::exists(t.file("open/cluster")));
  EXPECT_FALSE(std::filesystem::exists(t.file("open/lock")));
  struct stat ost {};
  ASSERT_EQ(::stat(t.file("open").c_str(), &ost), 0);
  EXPECT_EQ(ost.st_mode & 07777, 0777u);
  if (::getuid() == 0) {
    std::filesystem::create_directory(t.file("theirs"));
    ASSERT_EQ(::chown(t.file("theirs").c_str(), 65534, 65534), 0);
    auto th = run({galaxy, "up", "--no-mount", "--state", t.file("theirs"), "--mount", t.file("mnt")});
    EXPECT_EQ(th.status, 1);
    EXPECT_NE(th.err.find("owned by uid 65534"), std::string::npos) << th.err;
    EXPECT_FALSE(std::filesystem::exists(t.file("theirs/lock")));
  }
  // A state path too long for the sockets' names (sun_path): refused before anything is made.
  std::string longer = t.file(std::string(100, 'x'));
  auto l = run({galaxy, "up", "--no-mount", "--state", longer, "--mount", t.file("mnt")});
  EXPECT_EQ(l.status, 1);
  EXPECT_NE(l.err.find("too long a path"), std::string::npos) << l.err;
  EXPECT_FALSE(std::filesystem::exists(longer));
  if (::getuid() == 0) {
    // Root's tasks run as nobody: a state directory that others may not search is refused.
    std::filesystem::create_directory(t.file("private"));
    ::chmod(t.file("private").c_str(), 0700);
    auto p = run({galaxy, "up", "--state", t.file("private/st"), "--mount", t.file("mnt")});
    EXPECT_EQ(p.status, 1);
    EXPECT_NE(p.err.find("others may not search it"), std::string::npos) << p.err;
    EXPECT_FALSE(std::filesystem::exists(t.file("private/st/cluster")));
  }
}

}  // namespace
