// The task runner (node/task.*) with real processes: exit codes and signals, exec errors,
// output spooled to files and announced while it grows, stdin, working directory and
// environment, time and memory limits, kills that reach a whole process group, many tasks
// at once, restore after a restart (finished and lost tasks), remove, garbage collection,
// nice/SCHED_IDLE, and the switch to an unprivileged user when the tests run as root.
//
// Each test gets a spool in a fresh temporary directory and drives the io_context itself
// with pump(), which runs handlers until a condition holds or a deadline passes.
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <fmt/format.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <charconv>
#include <optional>
#include <algorithm>
#include <fstream>
#include <sstream>

#include "node/task.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
using node::task;
using node::task_runner;
using node::task_state;
namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Fields of /proc/PID/stat, numbered as proc(5) numbers them (1 = pid); empty if gone.
std::vector<std::string> proc_stat(pid_t pid) {
  std::string s = slurp(fmt::format("/proc/{}/stat", pid));
  auto rp = s.rfind(')');
  if (rp == std::string::npos) return {};
  std::vector<std::string> f = {std::to_string(pid), s.substr(0, rp + 1)};
  std::istringstream rest(s.substr(rp + 1));
  for (std::string w; rest >> w;) f.push_back(w);
  f.insert(f.begin(), "");  // index 0 unused
  return f;
}

// Live (non-zombie) processes whose process group is pgid. Orphans are reaped by
// whatever the system's init is, so zombies do not count.
int group_members(pid_t pgid) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    pid_t pid = 0;
    std::string name = e.path().filename().string();
    if (std::from_chars(name.data(), name.data() + name.size(), pid).ec != std::errc{}) continue;
    auto f = proc_stat(pid);
    if (f.size() > 5 && f[3] != "Z" && f[5] == std::to_string(pgid)) n++;
  }
  return n;
}

class TaskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Tasks run as nobody when the tests run as root: the spool must be reachable.
    ::chmod(tmp_.path().c_str(), 0755);
    opts_.spool = tmp_.file("spool");
    opts_.log = [this](std::string_view line) { logs_.emplace_back(line); };
    make_runner();
  }
  // Tasks run at nice 0 here, not at SCHED_IDLE: on a busy machine (a build next door)
  // idle tasks may wait for seconds. NiceAndSchedIdle checks the default.
  void TearDown() override {
    if (runner_) runner_->kill_all();  // a failed test leaves no sleep 100 behind
  }

  void make_runner() {
    runner_.reset();
    auto r = task_runner::create(io_, opts_, hooks());
    ASSERT_TRUE(r.has_value()) << r.error();
    runner_ = std::move(*r);
    runner_->set_default_nice(0);
  }

  task_runner::hooks hooks() {
    return {
        .started = [this](const task& t) { started_.push_back(t.id); },
        .finished = [this](const task& t) { finished_.push_back(t.id); },
        .output = [this](const task& t) { on_output(t); },
    };
  }
  virtual void on_output(const task& t) { outputs_.push_back(t.id); }

  // Runs handlers until pred() holds; false if it did not within timeout.
  bool pump(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
    auto deadline = testutil::steady::now() + timeout;
    while (!pred()) {
      if (testutil::steady::now() >= deadline) return false;
      if (io_.stopped()) io_.restart();
      io_.run_one_for(10ms);
    }
    return true;
  }

  // A new task running argv, started; the test fails if it cannot be.
  task* start(std::vector<std::string> argv, const std::function<void(node::task_spec&)>& setup = {}) {
    auto t = runner_->create_task();
    EXPECT_TRUE(t.has_value()) << t.error();
    if (!t) return nullptr;
    (*t)->spec.argv = std::move(argv);
    if (setup) setup((*t)->spec);
    auto ok = runner_->start(**t);
    EXPECT_TRUE(ok.has_value()) << ok.error();
    return *t;
  }

  // Runs argv to its end.
  task* run(std::vector<std::string> argv, const std::function<void(node::task_spec&)>& setup = {}) {
    task* t = start(std::move(argv), setup);
    if (t == nullptr) return nullptr;
    std::uint64_t id = t->id;
    EXPECT_TRUE(pump([&] { return was_finished(id); })) << "task " << id << " did not end";
    return runner_->find(id);
  }

  bool was_finished(std::uint64_t id) const {
    return std::find(finished_.begin(), finished_.end(), id) != finished_.end();
  }

  testutil::temp_dir tmp_;
  asio::io_context io_;
  node::runner_options opts_;
  std::unique_ptr<task_runner> runner_;
  std::vector<std::uint64_t> started_, finished_, outputs_;
  std::vector<std::string> logs_;
};

TEST_F(TaskTest, TrueIsDone) {
  task* t = run({"/bin/true"});
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->state, task_state::done);
  EXPECT_EQ(t->exit_code, 0);
  EXPECT_EQ(t->wait_text(), "exit 0");
  EXPECT_GT(t->pid, 0);
  EXPECT_GT(t->start_unix_ms, 0);
  EXPECT_GE(t->end_unix_ms, t->start_unix_ms);
  EXPECT_GT(t->maxrss_bytes, 0u);
  EXPECT_EQ(started_, std::vector<std::uint64_t>{t->id});
  EXPECT_EQ(finished_, std::vector<std::uint64_t>{t->id});
  EXPECT_EQ(runner_->running(), 0u);
  EXPECT_EQ(t->status_line(), fmt::format("id={} state=done pid={} exit=0 usertime={} systime={} maxrss={} start={} end={}",
                                          t->id, t->pid, t->user_ms, t->sys_ms, t->maxrss_bytes, t->start_unix_ms,
                                          t->end_unix_ms));
}

TEST_F(TaskTest, PathLookup) {
  task* t = run({"true"});
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->state, task_state::done);
}

TEST_F(TaskTest, ExitCodeIsFailed) {
  task* t = run({"sh", "-c", "exit 3"});
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->state, task_state::failed);
  EXPECT_EQ(t->exit_code, 3);
  EXPECT_EQ(t->wait_text(), "exit 3");
  EXPECT_TRUE(was_finished(t->id));
}

TEST_F(TaskTest, SignalIsKilled) {
  task* t = run({"sh", "-c", "kill -TERM $$"});
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->state, task_state::killed);
  EXPECT_EQ(t->signal, SIGTERM);
  EXPECT_EQ(t->wait_text(), "signal 15");
  EXPECT_FALSE(t->timed_out);
}

TEST_F(TaskTest, MissingProgramFailsWithPlan9Error) {
  auto t = runner_->create_task();
  ASSERT_TRUE(t.has_value());
  (*t)->spec.argv = {"/no/such"};
  ASSERT_TRUE(runner_->start(**t).has_value());  // not an error of start()
  EXPECT_EQ((*t)->state, task_state::failed);
  EXPECT_EQ((*t)->error, "exec: /no/such: file does not exist");
  EXPECT_TRUE(finished_.empty()) << "finished() must not run inside start()";
  std::uint64_t id = (*t)->id;
  ASSERT_TRUE(pump([&] { return was_finished(id); }));
  EXPECT_EQ(runner_->find(id)->wait_text(), "error exec: /no/such: file does not exist");
  EXPECT_TRUE(started_.empty());

  task* u = run({"galaxy-no-such-program"});
  ASSERT_NE(u, nullptr);
  EXPECT_EQ(u->error, "exec: galaxy-no-such-program: file does not exist");
}

TEST_F(TaskTest, NotExecutableIsPermissionDenied) {
  std::ofstream(tmp_.file("script")) << "#!/bin/sh\ntrue\n";
  ::chmod(tmp_.file("script").c_str(), 0644);
  task* t = run({tmp_.file("script")});
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->state, task_state::failed);
  EXPECT_EQ(t->error, "exec: " + tmp_.file("script") + ": permission denied") << t->wait_text() << slurp(runner_->stderr_path(t->id));
}

TEST_F(TaskTest, OutputGoesToSpoolFiles) {
  task* t = run({"sh", "-c", "echo out; echo err >&2"});
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->state, task_state::done);
  EXPECT_EQ(slurp(runner_->stdout_path(t->id)), "out\n");
  EXPECT_EQ(slurp(runner_->stderr_path(t->id)), "err\n");
  struct stat st;
  ASSERT_EQ(::stat(runner_->stdout_path(t->id).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);  // the daemon's (node/task.hpp): served through 9P
  EXPECT_FALSE(outputs_.empty()) << "output() is called at exit at least";
}

// output() fires while the task runs, with the new data already in the file.
class OutputWhileRunning : public TaskTest {
 protected:
  void on_output(const task& t) override {
    TaskTest::on_output(t);
    if (t.state == task_state::running) seen_running_.push_back(slurp(runner_->stdout_path(t.id)));
  }
  std::vector<std::string> seen_running_;
};

TEST_F(OutputWhileRunning, HookFiresAsOutputGrows) {
  // The task writes "b" only once the test has seen "a" and made the file GO in its
  // working directory (at most 10 s), so no timing decides the outcome on a busy machine.
  task* t = start({"sh", "-c",
                   "echo a; i=0; while [ ! -e GO ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; echo b"});
  ASSERT_NE(t, nullptr);
  std::uint64_t id = t->id;
  // The hook means "may have grown": wait for one that shows "a" while the task runs.
  ASSERT_TRUE(pump([&] { return std::ranges::find(seen_running_, "a\n") != seen_running_.end(); }, 5s));
  EXPECT_EQ(t->state, task_state::running);
  std::ofstream(runner_->in_dir(id) / "GO").put('\n');
  ASSERT_TRUE(pump([&] { return runner_->find(id)->finished(); }));
  EXPECT_EQ(slurp(runner_->stdout_path(id)), "a\nb\n");
}

TEST_F(TaskTest, StdinPipe) {
  task* t = start({"cat"}, [](node::task_spec& s) { s.stdin_pipe = true; });
  ASSERT_NE(t, nullptr);
  int fd = runner_->stdin_fd(t->id);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "hello", 5), 5);
  runner_->close_stdin(t->id);
  EXPECT_EQ(runner_->stdin_fd(t->id), -1);
  std::uint64_t id = t->id;
  ASSERT_TRUE(pump([&] { return runner_->find(id)->finished(); }));
  EXPECT_EQ(t->state, task_state::done);
  EXPECT_EQ(slurp(runner_->stdout_path(id)), "hello");
  EXPECT_EQ(runner_->stdin_fd(id), -1);
}

TEST_F(TaskTest, StdinIsDevNullByDefault) {
  task* t = start({"cat"});
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(runner_->stdin_fd(t->id), -1);
  std::uint64_t id = t->id;
  ASSERT_TRUE(pump([&] { return runner_->find(id)->finished(); }, 5s)) << "cat waited for input";
  EXPECT_EQ(t->state, task_state::done);
}

TEST_F(TaskTest, WorkingDirectoryInFilesAndEnvironment) {
  // Default working directory: in/, which is also $HOME.
  auto t0 = runner_->create_task();
  ASSERT_TRUE(t0.has_value());
  ASSERT_TRUE(runner_->make_in_dir((*t0)->id).has_value());
  std::ofstream(runner_->in_dir((*t0)->id) / "data") << "input\n";
  (*t0)->spec.argv = {"sh", "-c", "cat data; pwd; echo $HOME"};
  ASSERT_TRUE(runner_->start(**t0).has_value());
  std::uint64_t id0 = (*t0)->id;
  ASSERT_TRUE(pump([&] { return runner_->find(id0)->finished(); }));
  std::string in = runner_->in_dir(id0).string();
  EXPECT_EQ(slurp(runner_->stdout_path(id0)), "input\n" + in + "\n" + in + "\n");

  // `dir`: in/'s files are copied there (by the task's user, who must be able to write
  // there); env is added; GALAXY_OUT collects results.
  testutil::temp_dir work;
  ::chmod(work.path().c_str(), 0777);
  auto t = runner_->create_task();
  ASSERT_TRUE(t.has_value());
  std::uint64_t id = (*t)->id;
  ASSERT_TRUE(runner_->make_in_dir(id).has_value());
  std::ofstream(runner_->in_dir(id) / "data") << "copied\n";
  (*t)->spec.dir = work.path();
  (*t)->spec.env = {"FOO=bar baz", "LANG=C"};
  (*t)->spec.argv = {"sh", "-c", "cat data; pwd; echo $FOO; echo $LANG; echo $GALAXY_TASK; echo result > $GALAXY_OUT/result"};
  ASSERT_TRUE(runner_->start(**t).has_value());
  ASSERT_TRUE(pump([&] { return runner_->find(id)->finished(); }));
  EXPECT_EQ((*t)->state, task_state::done) << slurp(runner_->stderr_path(id));
  EXPECT_EQ(slurp(runner_->stdout_path(id)), fmt::format("copied\n{}\nbar baz\nC\n{}\n", work.path(), id));
  EXPECT_EQ(slurp(runner_->out_dir(id) / "result"), "result\n");
}

TEST_F(TaskTest, MissingDirectoryIsAnError) {
  task* t = run({"true"}, [](node::task_spec& s) { s.dir = "/no/such/dir"; });
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->state, task_state::failed);
  EXPECT_EQ(t->error, "chdir: /no/such/dir: file does not exist");
  EXPECT_TRUE(was_finished(t->id));
}

TEST_F(TaskTest, TimeLimitKills) {
  auto t0 = testutil::steady::now();
  task* t = run({"sleep", "10"}, [](node::task_spec& s) { s.timeout_ms = 200; });
  ASSERT_NE(t, nullptr);
  EXPECT_LT(testutil::steady::now() - t0, 5s);
  EXPECT_EQ(t->state, task_state::killed);
  EXPECT_EQ(t->signal, SIGKILL);
  EXPECT_TRUE(t->timed_out);
  EXPECT_EQ(t->wait_text(), "signal 9");
}

// Whether a process here can lower its RLIMIT_AS: a child sets 64 MiB and reads it back.
// qemu-user (scripts/test-arch.sh) ignores setrlimit of RLIMIT_AS, which would bind the
// emulator itself, and getrlimit then shows the old value.
bool rlimit_as_honoured() {
  pid_t pid = ::fork();
  if (pid == 0) {
    struct rlimit rl = {64 << 20, 64 << 20}, got = {};
    ::setrlimit(RLIMIT_AS, &rl);
    ::getrlimit(RLIMIT_AS, &got);
    ::_exit(got.rlim_cur == rl.rlim_cur ? 0 : 1);
  }
  int status = 0;
  return pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST_F(TaskTest, MemoryLimit) {
  if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  // 300 MB inside a 64 MiB limit: MemoryError under RLIMIT_AS, the OOM killer in a cgroup.
  task* t = run({"/usr/bin/python3", "-c", "x = bytearray(300 * 1024 * 1024)"},
                [](node::task_spec& s) { s.mem_bytes = 64 << 20; });
  ASSERT_NE(t, nullptr);
  if (slurp(runner_->dir_of(t->id) / "spec").find("memlimit=rlimit\n") != std::string::npos && !rlimit_as_honoured()) {
    GTEST_SKIP() << "the limit here is RLIMIT_AS, which this machine does not honour (qemu-user ignores "
                    "setrlimit of RLIMIT_AS); cgroup memory.max is tested in node_qemu_cgroup_limits";
  }
  EXPECT_TRUE(t->state == task_state::failed || t->state == task_state::killed) << t->wait_text();
  std::string spec = slurp(runner_->dir_of(t->id) / "spec");
  EXPECT_TRUE(spec.find("memlimit=rlimit\n") != std::string::npos || spec.find("memlimit=cgroup\n") != std::string::npos)
      << spec;
  // Which mechanism it was is logged once, at the runner's creation.
  EXPECT_EQ(std::count_if(logs_.begin(), logs_.end(), [](const std::string& l) { return l.starts_with("containment: "); }),
            1)
      << testing::PrintToString(logs_);

  // The same program without a limit succeeds, so the limit is what failed it.
  task* u = run({"/usr/bin/python3", "-c", "x = bytearray(300 * 1024 * 1024)"});
  ASSERT_NE(u, nullptr);
  EXPECT_EQ(u->state, task_state::done) << slurp(runner_->stderr_path(u->id));
}

TEST_F(TaskTest, KillReachesTheProcessGroup) {
  task* t = start({"sh", "-c", "sleep 100 & sleep 100 & wait"});
  ASSERT_NE(t, nullptr);
  pid_t pgid = t->pid;
  ASSERT_TRUE(pump([&] { return group_members(pgid) >= 3; }, 5s)) << group_members(pgid);
  ASSERT_TRUE(runner_->kill(*t, SIGTERM).has_value());
  std::uint64_t id = t->id;
  ASSERT_TRUE(pump([&] { return runner_->find(id)->finished(); }, 5s));
  EXPECT_EQ(t->state, task_state::killed);
  EXPECT_EQ(t->signal, SIGTERM);
  EXPECT_TRUE(pump([&] { return group_members(pgid) == 0; }, 1s)) << group_members(pgid) << " left";
  EXPECT_FALSE(runner_->kill(*t, SIGTERM).has_value()) << "the task is not running";
}

TEST_F(TaskTest, LeftoverChildrenAreKilledAtExit) {
  task* t = run({"sh", "-c", "sleep 100 & echo started"});
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->state, task_state::done);
  pid_t pgid = t->pid;
  EXPECT_TRUE(pump([&] { return group_members(pgid) == 0; }, 1s)) << group_members(pgid) << " left";
}

TEST_F(TaskTest, IgnoredTermStillKillable) {
  task* t = start({"sh", "-c", "trap '' TERM; sleep 100; true"});
  ASSERT_NE(t, nullptr);
  std::uint64_t id = t->id;
  pid_t pgid = t->pid;
  ASSERT_TRUE(pump([&] { return group_members(pgid) >= 2; }, 5s));
  ASSERT_TRUE(runner_->kill(*t, SIGTERM).has_value());
  EXPECT_FALSE(pump([&] { return runner_->find(id)->finished(); }, 300ms)) << "SIGTERM was ignored";
  ASSERT_TRUE(runner_->kill(*t, SIGKILL).has_value());
  ASSERT_TRUE(pump([&] { return runner_->find(id)->finished(); }, 5s));
  EXPECT_EQ(t->state, task_state::killed);
  EXPECT_EQ(t->signal, SIGKILL);
  EXPECT_TRUE(pump([&] { return group_members(pgid) == 0; }, 1s));
}

TEST_F(TaskTest, KillAll) {
  task* a = start({"sleep", "100"});
  task* b = start({"sleep", "100"});
  ASSERT_TRUE(a && b);
  EXPECT_EQ(runner_->running(), 2u);
  runner_->kill_all();
  ASSERT_TRUE(pump([&] { return a->finished() && b->finished(); }, 5s));
  EXPECT_EQ(a->wait_text(), "signal 9");
  EXPECT_EQ(b->wait_text(), "signal 9");
  EXPECT_EQ(runner_->running(), 0u);
}

TEST_F(TaskTest, TwoHundredAtOnce) {
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 200; i++) {
    task* t = start({"/bin/true"});
    ASSERT_NE(t, nullptr);
    ids.push_back(t->id);
  }
  ASSERT_TRUE(pump([&] { return finished_.size() == 200; }, 60s)) << finished_.size();
  for (auto id : ids) EXPECT_EQ(runner_->find(id)->state, task_state::done) << id;
  EXPECT_EQ(runner_->running(), 0u);
}

TEST_F(TaskTest, MaxTasks) {
  runner_->set_max_tasks(1);
  task* a = start({"sleep", "100"});
  ASSERT_NE(a, nullptr);
  auto b = runner_->create_task();
  ASSERT_TRUE(b.has_value());
  (*b)->spec.argv = {"true"};
  auto r = runner_->start(**b);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), "too many tasks running (maxtasks 1)");
  EXPECT_EQ((*b)->state, task_state::new_);
  runner_->kill_all();
  ASSERT_TRUE(pump([&] { return a->finished(); }));
  EXPECT_TRUE(runner_->start(**b).has_value());
  EXPECT_TRUE(pump([&] { return (*b)->finished(); }));
}

TEST_F(TaskTest, StartErrors) {
  auto t = runner_->create_task();
  ASSERT_TRUE(t.has_value());
  auto r = runner_->start(**t);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), "nothing to exec");
  EXPECT_EQ((*t)->state, task_state::new_);
  (*t)->spec.argv = {"true"};
  ASSERT_TRUE(runner_->start(**t).has_value());
  r = runner_->start(**t);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), "task has already been started");
  EXPECT_FALSE(runner_->save(**t).has_value());
  EXPECT_TRUE(pump([&] { return (*t)->finished(); }));
}

TEST_F(TaskTest, RestoreFinishedTasks) {
  task* a = run({"sh", "-c", "echo hello"});
  task* b = run({"sh", "-c", "exit 3"});
  task* c = run({"/no/such"});
  task* d = run({"sh", "-c", "kill -KILL $$"});
  // An awkward spec: every field set, words that need escaping.
  task* e = run({"echo", "two\nlines", "back\\slash", "it's", ""}, [](node::task_spec& s) {
    s.env = {"K=v=w"};
    s.dir = "/tmp";
    s.mem_bytes = 1 << 30;
    s.timeout_ms = 15000;
    s.nice = 3;
    s.cpu_millis = 500;
    s.stdin_pipe = true;
  });
  ASSERT_TRUE(a && b && c && d && e);
  EXPECT_EQ(slurp(runner_->stdout_path(e->id)), "two\nlines back\\slash it's \n");
  auto n = runner_->create_task();  // left new: not written, so found lost
  ASSERT_TRUE(n.has_value());
  std::uint64_t new_id = (*n)->id;
  (*n)->spec.argv = {"true"};
  ASSERT_TRUE(runner_->save(**n).has_value());
  std::map<std::uint64_t, task> before;
  for (const auto& [id, t] : runner_->tasks()) before[id] = *t;

  make_runner();
  ASSERT_TRUE(runner_->restore().has_value());
  ASSERT_EQ(runner_->tasks().size(), before.size());
  for (const auto& [id, was] : before) {
    if (id == new_id) continue;
    task* t = runner_->find(id);
    ASSERT_NE(t, nullptr) << id;
    EXPECT_EQ(t->state, was.state) << id;
    EXPECT_EQ(t->exit_code, was.exit_code) << id;
    EXPECT_EQ(t->signal, was.signal) << id;
    EXPECT_EQ(t->error, was.error) << id;
    EXPECT_EQ(t->wait_text(), was.wait_text()) << id;
    EXPECT_EQ(t->status_line(), was.status_line()) << id;
    EXPECT_EQ(t->spec.argv, was.spec.argv) << id;
    EXPECT_EQ(t->spec.env, was.spec.env) << id;
    EXPECT_EQ(t->spec.dir, was.spec.dir) << id;
    EXPECT_EQ(t->spec.mem_bytes, was.spec.mem_bytes) << id;
    EXPECT_EQ(t->spec.timeout_ms, was.spec.timeout_ms) << id;
    EXPECT_EQ(t->spec.nice, was.spec.nice) << id;
    EXPECT_EQ(t->spec.cpu_millis, was.spec.cpu_millis) << id;
    EXPECT_EQ(t->spec.stdin_pipe, was.spec.stdin_pipe) << id;
    EXPECT_EQ(t->created_unix_ms, was.created_unix_ms) << id;
    EXPECT_EQ(t->start_unix_ms, was.start_unix_ms) << id;
    EXPECT_EQ(t->end_unix_ms, was.end_unix_ms) << id;
  }
  EXPECT_EQ(slurp(runner_->stdout_path(before.begin()->first)), "hello\n");
  // The task that was never started is lost, and that is written down.
  task* nt = runner_->find(new_id);
  ASSERT_NE(nt, nullptr);
  EXPECT_EQ(nt->state, task_state::lost);
  EXPECT_EQ(nt->wait_text(), "lost");
  EXPECT_NE(slurp(runner_->dir_of(new_id) / "spec").find("state=lost\n"), std::string::npos);
  auto next = runner_->create_task();
  ASSERT_TRUE(next.has_value());
  EXPECT_GT((*next)->id, before.rbegin()->first);
}

// The spec is appended to, never replaced; restore() takes the last value of each key and
// ignores a last line cut short.
TEST_F(TaskTest, RestoreReadsAppendedRecords) {
  fs::path root = fs::path(opts_.spool) / "task";
  fs::create_directories(root / "4");
  std::ofstream(root / "4" / "spec") << "format=1\nid=4\npid=0\narg=true\nend=0\nstate=running\n"
                                     << "end=1700000000000\nexit=2\nstate=failed\n"
                                     << "exit=7\nstate=do";  // a record that did not finish
  fs::create_directories(root / "5");
  std::ofstream(root / "5" / "spec") << "format=1\nid=5\narg=true\nstate=done\nexit=0";
  ASSERT_TRUE(runner_->restore().has_value());
  task* t = runner_->find(4);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->state, task_state::failed);
  EXPECT_EQ(t->wait_text(), "exit 2");
  EXPECT_EQ(t->end_unix_ms, 1700000000000);
  ASSERT_NE(runner_->find(5), nullptr);
  EXPECT_EQ(runner_->find(5)->wait_text(), "exit 0");
}

TEST_F(TaskTest, RestoreMarksRunningTasksLostAndKillsThem) {
  task* t = start({"sleep", "100"});
  ASSERT_NE(t, nullptr);
  std::uint64_t id = t->id;
  pid_t pid = t->pid;
  ASSERT_TRUE(pump([&] { return !started_.empty(); }));
  runner_.reset();  // the daemon "dies": nothing is killed
  ASSERT_EQ(::kill(pid, 0), 0) << "the runner's destructor must not kill";

  make_runner();
  ASSERT_TRUE(runner_->restore().has_value());
  task* r = runner_->find(id);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->state, task_state::lost);
  EXPECT_EQ(r->wait_text(), "lost");
  EXPECT_GT(r->end_unix_ms, 0);
  // This test process is the sleep's parent, so it reaps it.
  int status = 0;
  ASSERT_TRUE(pump([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 2s));
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  // The lost state is persisted.
  EXPECT_NE(slurp(runner_->dir_of(id) / "spec").find("state=lost\n"), std::string::npos);
}

TEST_F(TaskTest, RestoreDoesNotKillARecycledPid) {
  // A spec that says "running" with the pid of a process that is not the task (this test
  // process: its start time differs from the one recorded).
  fs::create_directories(fs::path(opts_.spool) / "task" / "5");
  std::ofstream(fs::path(opts_.spool) / "task" / "5" / "spec")
      << fmt::format("format=1\nid=5\nstate=running\npid={}\npidstart=1\narg=sleep\n", ::getpid());
  ASSERT_TRUE(runner_->restore().has_value());  // we are still alive to check:
  ASSERT_NE(runner_->find(5), nullptr);
  EXPECT_EQ(runner_->find(5)->state, task_state::lost);
}

TEST_F(TaskTest, RestoreSkipsCorruptSpecs) {
  fs::path root = fs::path(opts_.spool) / "task";
  fs::create_directories(root / "7");
  std::ofstream(root / "7" / "spec") << "this is not a spec\n";
  fs::create_directories(root / "8");
  std::ofstream(root / "8" / "spec") << "format=1\nid=8\nstate=sideways\n";
  fs::create_directories(root / "9");  // no spec at all: never started, so lost
  fs::create_directories(root / "junk");
  ASSERT_TRUE(runner_->restore().has_value());
  ASSERT_EQ(runner_->tasks().size(), 1u);
  ASSERT_NE(runner_->find(9), nullptr);
  EXPECT_EQ(runner_->find(9)->state, task_state::lost);
  EXPECT_EQ(std::count_if(logs_.begin(), logs_.end(), [](const std::string& l) { return l.starts_with("spool: "); }), 3)
      << testing::PrintToString(logs_);
  auto t = runner_->create_task();
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ((*t)->id, 10u);
}

// Numbers are never handed out twice: not after the highest task was removed and the
// runner made anew (a restart), nor for a number whose directory is gone. The next number
// is kept in SPOOL/next-task, written before a number is handed out.
TEST_F(TaskTest, NumbersAreNeverReused) {
  task* a = run({"true"});
  task* b = run({"true"});
  ASSERT_TRUE(a && b);
  std::uint64_t highest = b->id;
  auto removed = std::make_shared<bool>(false);
  ASSERT_TRUE(runner_->remove(highest, [removed](auto) { *removed = true; }).has_value());
  ASSERT_TRUE(pump([&] { return *removed; }));
  make_runner();
  ASSERT_TRUE(runner_->restore().has_value());
  auto c = runner_->create_task();
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_GT((*c)->id, highest);
  // A runner that is not told to restore continues after the record all the same.
  std::uint64_t last = (*c)->id;
  ASSERT_TRUE(runner_->remove(last).has_value());
  make_runner();
  auto d = runner_->create_task();
  ASSERT_TRUE(d.has_value()) << d.error();
  EXPECT_GT((*d)->id, last);
  EXPECT_EQ(slurp(fs::path(opts_.spool) / "next-task"), fmt::format("{}\n", (*d)->id + 1));
}

// A runner that cannot keep the next number on disk does not start (it could not hand
// out numbers safely), and says which file is at fault.
TEST_F(TaskTest, NoRunnerWithoutTheNumberRecord) {
  fs::path rec = fs::path(opts_.spool) / "next-task";
  ASSERT_TRUE(runner_->create_task().has_value());
  runner_.reset();
  fs::remove(rec);
  fs::create_directory(rec);  // open(2) for writing fails: EISDIR
  auto r = task_runner::create(io_, opts_, hooks());
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("next-task"), std::string::npos) << r.error();
}

// The task's own PATH (env PATH=...) is the one its program is looked for in, as env(1)
// looks; the daemon's PATH is only the default.
TEST_F(TaskTest, TheTasksPathIsSearched) {
  fs::path bin = tmp_.file("bin");
  fs::create_directory(bin);
  ::chmod(bin.c_str(), 0755);
  std::ofstream(bin / "galaxy-test-prog") << "#!/bin/sh\necho found\n";
  ::chmod((bin / "galaxy-test-prog").c_str(), 0755);
  task* t = run({"galaxy-test-prog"}, [&](node::task_spec& s) { s.env = {"PATH=/usr/bin:/bin:" + bin.string()}; });
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->wait_text(), "exit 0");
  EXPECT_EQ(slurp(runner_->stdout_path(t->id)), "found\n");
  task* u = run({"galaxy-test-prog"});  // not on the daemon's PATH
  ASSERT_NE(u, nullptr);
  EXPECT_EQ(u->wait_text(), "error exec: galaxy-test-prog: file does not exist");
}

TEST_F(TaskTest, Remove) {
  task* t = start({"sleep", "100"});
  ASSERT_NE(t, nullptr);
  std::uint64_t id = t->id;
  auto r = runner_->remove(id);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), "task is running");
  EXPECT_TRUE(fs::exists(runner_->dir_of(id)));
  ASSERT_TRUE(runner_->kill(*t, SIGKILL).has_value());
  ASSERT_TRUE(pump([&] { return runner_->find(id)->finished(); }));
  ASSERT_TRUE(runner_->remove(id).has_value());
  EXPECT_EQ(runner_->find(id), nullptr);
  EXPECT_FALSE(fs::exists(runner_->dir_of(id)));
  EXPECT_FALSE(runner_->remove(id).has_value());

  auto n = runner_->create_task();  // new tasks can be removed too
  ASSERT_TRUE(n.has_value());
  EXPECT_TRUE(runner_->remove((*n)->id).has_value());
}

// The deletion itself is the worker's; done comes on the io thread once the files are
// gone, and trash/ is empty then.
TEST_F(TaskTest, RemoveDeletesOnTheWorkerAndSaysWhenDone) {
  task* t = run({"sh", "-c", "echo out; echo x > $GALAXY_OUT/result"});
  ASSERT_NE(t, nullptr);
  std::uint64_t id = t->id;
  std::optional<std::expected<void, std::string>> got;
  ASSERT_TRUE(runner_->remove(id, [&](std::expected<void, std::string> ok) { got = ok; }).has_value());
  EXPECT_EQ(runner_->find(id), nullptr);
  EXPECT_FALSE(fs::exists(runner_->dir_of(id)));
  ASSERT_TRUE(pump([&] { return got.has_value(); }));
  EXPECT_TRUE(got->has_value()) << got->error();
  fs::path trash = fs::path(opts_.spool) / "trash";
  EXPECT_TRUE(fs::is_empty(trash)) << "trash/ still holds the task's files";
}

// A removal a daemon did not finish is finished by the next one's restore().
TEST_F(TaskTest, RestoreEmptiesTheTrash) {
  fs::path left = fs::path(opts_.spool) / "trash" / "3-1-0";
  fs::create_directories(left / "out");
  std::ofstream(left / "stdout") << "old\n";
  make_runner();
  ASSERT_TRUE(runner_->restore().has_value());
  EXPECT_TRUE(pump([&] { return !fs::exists(left); }));
  EXPECT_TRUE(runner_->tasks().empty());
}

// With files in in/, start's blocking part (the copy to `dir`) runs on the worker: the
// task refuses changes meanwhile, and done says when it has started.
TEST_F(TaskTest, StartWithInFilesFinishesLater) {
  testutil::temp_dir work;
  ::chmod(work.path().c_str(), 0777);  // the task's user copies there
  auto t = runner_->create_task();
  ASSERT_TRUE(t.has_value());
  std::uint64_t id = (*t)->id;
  ASSERT_TRUE(runner_->make_in_dir(id).has_value());
  std::ofstream(runner_->in_dir(id) / "data") << "copied\n";
  (*t)->spec.dir = work.path();
  (*t)->spec.argv = {"cat", "data"};
  std::optional<std::expected<void, std::string>> got;
  auto now = runner_->start(**t, [&](std::expected<void, std::string> ok) { got = ok; });
  ASSERT_FALSE(now.has_value()) << "the copy should have gone to the worker";
  EXPECT_TRUE(runner_->starting(id));
  EXPECT_EQ(runner_->save(**t).error(), "task is being started");
  EXPECT_EQ(runner_->remove(id).error(), "task is being started");
  EXPECT_EQ(runner_->start(**t).error(), "task is being started");
  ASSERT_TRUE(pump([&] { return got.has_value(); }));
  EXPECT_TRUE(got->has_value()) << got->error();
  EXPECT_FALSE(runner_->starting(id));
  ASSERT_TRUE(pump([&] { return runner_->find(id)->finished(); }));
  EXPECT_EQ(slurp(runner_->stdout_path(id)), "copied\n");
  // Without in/, nothing blocks: the result comes at once.
  auto u = runner_->create_task();
  ASSERT_TRUE(u.has_value());
  (*u)->spec.argv = {"true"};
  now = runner_->start(**u, [](std::expected<void, std::string>) { ADD_FAILURE() << "done called"; });
  ASSERT_TRUE(now.has_value());
  EXPECT_TRUE(now->has_value());
  std::uint64_t uid = (*u)->id;
  ASSERT_TRUE(pump([&] { return runner_->find(uid)->finished(); }));
}

TEST_F(TaskTest, CollectGarbage) {
  opts_.finished_ttl = 0ms;
  make_runner();
  task* a = run({"true"});
  ASSERT_NE(a, nullptr);
  std::uint64_t id = a->id;
  task* b = start({"sleep", "100"});
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(runner_->collect_garbage(), 1u);  // the running one stays
  EXPECT_EQ(runner_->find(id), nullptr);
  EXPECT_FALSE(fs::exists(runner_->dir_of(id)));
  EXPECT_NE(runner_->find(b->id), nullptr);
  runner_->kill_all();
  std::uint64_t bid = b->id;
  ASSERT_TRUE(pump([&] { return runner_->find(bid)->finished(); }));
  // The runner's own timer collects it too (it runs every second at this ttl).
  EXPECT_TRUE(pump([&] { return runner_->find(bid) == nullptr; }, 5s));
}

TEST_F(TaskTest, NiceAndSchedIdle) {
  auto fresh = task_runner::create(io_, opts_, {});
  ASSERT_TRUE(fresh.has_value());
  auto d = (*fresh)->create_task();
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ((*d)->spec.nice, 19) << "idle harvesting is the default";
  fresh->reset();

  task* t = start({"sleep", "1"}, [](node::task_spec& s) { s.nice = 19; });
  ASSERT_NE(t, nullptr);
  auto f = proc_stat(t->pid);
  ASSERT_GT(f.size(), 19u);
  EXPECT_EQ(f[19], "19");
  EXPECT_EQ(::sched_getscheduler(t->pid), SCHED_IDLE);

  task* u = start({"sleep", "1"}, [](node::task_spec& s) { s.nice = 5; });
  ASSERT_NE(u, nullptr);
  f = proc_stat(u->pid);
  ASSERT_GT(f.size(), 19u);
  EXPECT_EQ(f[19], "5");
  EXPECT_EQ(::sched_getscheduler(u->pid), SCHED_OTHER);

  runner_->set_default_nice(10);
  auto v = runner_->create_task();
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ((*v)->spec.nice, 10);
  runner_->kill_all();
  ASSERT_TRUE(pump([&] { return t->finished() && u->finished(); }));
}

TEST_F(TaskTest, RunsAsNobodyWhenRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "not root";
  task* t = run({"sh", "-c", "id -u; id -g; id -G; echo x > $GALAXY_OUT/f; echo y > $HOME/g"});
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->state, task_state::done) << slurp(runner_->stderr_path(t->id));
  EXPECT_EQ(slurp(runner_->stdout_path(t->id)), "65534\n65534\n65534\n");
  EXPECT_EQ(slurp(runner_->out_dir(t->id) / "f"), "x\n");

  opts_.run_as = "galaxy-no-such-user";
  auto r = task_runner::create(io_, opts_, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), "run_as user 'galaxy-no-such-user' does not exist");
}

TEST_F(TaskTest, SignalDispositionsAreReset) {
  // The daemon ignores SIGPIPE (create() does); its tasks must not.
  task* t = run({"sh", "-c", "kill -PIPE $$"});
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->wait_text(), "signal 13");
}

TEST_F(TaskTest, DestroyedRunnerIgnoresLateCompletions) {
  // A task ends while no runner exists to hear it; running the io_context afterwards
  // must touch nothing that is gone (ASan would say).
  task* t = start({"true"});
  ASSERT_NE(t, nullptr);
  pid_t pid = t->pid;
  runner_.reset();
  int status;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  for (int i = 0; i < 20; i++) io_.poll();
}

}  // namespace
