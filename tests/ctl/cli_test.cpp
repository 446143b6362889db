// The `galaxy` tool's 9P verbs, run as a user runs them: the real binary against a real
// galaxy-ramfs on port 0, over TCP and over a Unix socket, checking what is printed, on
// which stream, and the exit status.
//
// The job verbs' command lines (CommandLine below) need no daemon: `-m DIR` makes them
// use plain files under DIR, so a directory laid out as the scheduler's tree (jobs/clone
// holding "7", jobs/7/ctl, nodes/NAME/labels) records exactly the ctl lines written.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "ctl/version.hpp"
#include "tests/testutil.hpp"

namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

const std::string galaxy_bin = GALAXY_BINARY_DIR "/galaxy";
const std::string ramfs_bin = GALAXY_BINARY_DIR "/galaxy-ramfs";

class CliTest : public ::testing::TestWithParam<bool> {  // true: Unix socket
 protected:
  static void SetUpTestSuite() {
    dir_ = new testutil::temp_dir;
    auto d = testutil::start_daemon(
        {ramfs_bin, "--listen", "tcp!127.0.0.1!0", "--listen", "unix!" + dir_->file("9p.sock"), "--big", "100"}, 2);
    if (!d) {
      FAIL() << d.error();
    }
    server_ = new testutil::daemon_handle(std::move(*d));
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
    server_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }

  std::string addr() const { return GetParam() ? server_->dials[1] : server_->dials[0]; }
  // A file name of this test's own (tests share the server).
  std::string name(std::string_view base) const { return std::string(base) + (GetParam() ? "-unix" : "-tcp"); }

  // galaxy VERB -a ADDR ARGS...
  testutil::run_result galaxy(std::string verb, std::vector<std::string> args, std::string_view input = {}) {
    std::vector<std::string> argv{galaxy_bin, std::move(verb), "-a", addr()};
    for (auto& a : args) argv.push_back(std::move(a));
    return testutil::run(argv, input);
  }

  static testutil::temp_dir* dir_;
  static testutil::daemon_handle* server_;
};
testutil::temp_dir* CliTest::dir_ = nullptr;
testutil::daemon_handle* CliTest::server_ = nullptr;

TEST_P(CliTest, LsListsNamesOnePerLine) {
  auto r = galaxy("ls", {"/"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr("big\nevents\n"));
  auto none = galaxy("ls", {});  // the root by default
  EXPECT_EQ(none.out, r.out);
}

TEST_P(CliTest, LsLongForm) {
  ASSERT_EQ(galaxy("mkdir", {name("lsdir")}).status, 0);
  ASSERT_EQ(galaxy("write", {name("lsdir") + "/f"}, "12345").status, 0);
  auto r = galaxy("ls", {"-l", "/"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, MatchesRegex("(.*\n)?--r--r--r-- +[^ ]+ +[^ ]+ +100 .* big\n.*"));
  EXPECT_THAT(r.out, MatchesRegex("(.*\n)?d-rwxrwxr-x +[^ ]+ +[^ ]+ +0 .* " + name("lsdir") + "\n.*"));
  auto f = galaxy("ls", {"-l", name("lsdir")});
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_THAT(f.out, MatchesRegex("--rw-rw-r-- [^ ]+ [^ ]+ 5 .* f\n"));
}

TEST_P(CliTest, WriteThenCat) {
  auto w = galaxy("write", {name("note")}, "hello, galaxy\n");
  EXPECT_EQ(w.status, 0) << w.err;
  EXPECT_EQ(w.out, "");
  auto c = galaxy("cat", {name("note")});
  EXPECT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(c.out, "hello, galaxy\n");
  // A second write truncates (OTRUNC).
  ASSERT_EQ(galaxy("write", {name("note")}, "x").status, 0);
  EXPECT_EQ(galaxy("cat", {"/" + name("note")}).out, "x");
  // Bigger than one message.
  std::string big(300'000, 'q');
  ASSERT_EQ(galaxy("write", {name("note")}, big).status, 0);
  EXPECT_EQ(galaxy("cat", {name("note")}).out, big);
  auto synth = galaxy("cat", {"big"});
  EXPECT_EQ(synth.out.size(), 100u);
  EXPECT_TRUE(synth.out.starts_with("abcdefghijklmnopqrstuvwxyzabc"));
}

TEST_P(CliTest, Stat) {
  ASSERT_EQ(galaxy("write", {name("st")}, "hello\n").status, 0);
  auto r = galaxy("stat", {name("st")});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, MatchesRegex("name=" + name("st") + " uid=[^ ]+ gid=[^ ]+ muid=[^ ]+ mode=0664 length=6 .*\n"));
  auto root = galaxy("stat", {"/"});
  EXPECT_THAT(root.out, HasSubstr("mode=020000000777"));
}

TEST_P(CliTest, MkdirAndRm) {
  auto m = galaxy("mkdir", {name("mkd")});
  EXPECT_EQ(m.status, 0) << m.err;
  EXPECT_THAT(galaxy("stat", {name("mkd")}).out, HasSubstr("mode=020000000775"));
  ASSERT_EQ(galaxy("write", {name("mkd") + "/inner"}, "x").status, 0);
  auto notempty = galaxy("rm", {name("mkd")});
  EXPECT_EQ(notempty.status, 1);
  EXPECT_EQ(notempty.err, "galaxy: " + name("mkd") + ": directory is not empty\n");
  auto rm = galaxy("rm", {name("mkd") + "/inner", name("mkd")});
  EXPECT_EQ(rm.status, 0) << rm.err;
  EXPECT_THAT(galaxy("ls", {}).out, ::testing::Not(HasSubstr(name("mkd") + "\n")));
  auto again = galaxy("mkdir", {"events"});
  EXPECT_EQ(again.status, 1);
  EXPECT_EQ(again.err, "galaxy: events: file already exists\n");
}

TEST_P(CliTest, MissingFileIsAnErrorWithTheServersText) {
  for (std::string verb : {"cat", "stat", "rm", "ls"}) {
    auto r = galaxy(verb, {"no/such/file"});
    EXPECT_EQ(r.status, 1) << verb;
    EXPECT_EQ(r.out, "") << verb;
    EXPECT_EQ(r.err, "galaxy: no/such/file: file does not exist\n") << verb;
  }
  auto w = galaxy("write", {"nodir/file"}, "x");
  EXPECT_EQ(w.status, 1);
  EXPECT_EQ(w.err, "galaxy: nodir/file: file does not exist\n");
  auto ro = galaxy("write", {"events"}, "x");
  EXPECT_EQ(ro.status, 1);
  EXPECT_EQ(ro.err, "galaxy: events: permission denied\n");
  // cat goes on with the next file after a failure.
  ASSERT_EQ(galaxy("write", {name("ok")}, "fine\n").status, 0);
  auto some = galaxy("cat", {"nope", name("ok")});
  EXPECT_EQ(some.status, 1);
  EXPECT_EQ(some.out, "fine\n");
  EXPECT_EQ(some.err, "galaxy: nope: file does not exist\n");
}

TEST_P(CliTest, CatStreamsWhileTheFileIsOpen) {
  auto cat = testutil::process::spawn({galaxy_bin, "cat", "-a", addr(), "/events"});
  ASSERT_TRUE(cat) << cat.error();
  // The cat may not have opened /events yet when the first write happens, and then it
  // misses that event: keep changing the tree until a line arrives.
  std::string line;
  for (int i = 0; i < 50 && line.empty(); i++) {
    auto w = galaxy("write", {name("stream")}, "tick\n");
    ASSERT_EQ(w.status, 0) << w.err;
    auto l = cat->read_line(200ms);
    if (l) line = *l;
  }
  EXPECT_THAT(line, MatchesRegex("(create|write) " + name("stream")));
  EXPECT_TRUE(cat->running()) << "cat ended instead of waiting for more";
  // And the next change arrives too, while the file is still open.
  ASSERT_EQ(galaxy("rm", {name("stream")}).status, 0);
  std::string rest;
  for (int i = 0; i < 20 && rest.find("remove " + name("stream")) == std::string::npos; i++) {
    if (auto l = cat->read_line(200ms)) rest += *l + "\n";
  }
  EXPECT_THAT(rest, HasSubstr("remove " + name("stream") + "\n"));
  cat->signal(SIGTERM);
  EXPECT_EQ(cat->wait(5s), 128 + SIGTERM);
}

TEST_P(CliTest, EachChunkOfInputIsOneWrite) {
  auto cat = testutil::process::spawn({galaxy_bin, "cat", "-a", addr(), "/events"});
  ASSERT_TRUE(cat) << cat.error();
  ASSERT_EQ(galaxy("write", {name("chunks")}, "").status, 0);
  // Wait until the cat sees changes, so that it sees all that follow.
  bool seeing = false;
  for (int i = 0; i < 50 && !seeing; i++) {
    ASSERT_EQ(galaxy("write", {name("sync")}, "x").status, 0);  // an event every time
    seeing = cat->read_line(200ms).has_value();
  }
  ASSERT_TRUE(seeing);
  cat->read_some(300ms);  // drop the rest of the sync lines

  auto w = testutil::process::spawn({galaxy_bin, "write", "-a", addr(), name("chunks")},
                                    {.pipe_stdin = true, .capture_stderr = true});
  ASSERT_TRUE(w) << w.error();
  // Each chunk is written only after the previous one showed up as a write event, so
  // the two cannot reach galaxy's stdin as one read.
  auto next_write_event = [&] {
    for (int i = 0; i < 50; i++) {
      auto l = cat->read_line(200ms);
      if (l && *l == "write " + name("chunks")) return true;
    }
    return false;
  };
  ASSERT_TRUE(w->write_stdin("first\n"));
  EXPECT_TRUE(next_write_event()) << "no write event for the first chunk";
  ASSERT_TRUE(w->write_stdin("second\n"));
  EXPECT_TRUE(next_write_event()) << "no write event for the second chunk";
  w->close_stdin();
  EXPECT_EQ(w->wait(10s), 0);
  EXPECT_EQ(galaxy("cat", {name("chunks")}).out, "first\nsecond\n");
}

INSTANTIATE_TEST_SUITE_P(Net, CliTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "Unix" : "Tcp"; });

TEST(Cli, DefaultAddressFromTheEnvironment) {
  testutil::temp_dir d;
  auto s = testutil::start_daemon({ramfs_bin, "--listen", "unix!" + d.file("s")});
  ASSERT_TRUE(s) << s.error();
  auto r = testutil::run({galaxy_bin, "ls"}, {}, 30s, {"GALAXY_ADDR=" + s->dials[0]});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("events\n"));
  // -u names the attach user, who owns what it creates.
  auto w = testutil::run({galaxy_bin, "write", "-u", "ken", "f"}, "x", 30s, {"GALAXY_ADDR=" + s->dials[0]});
  EXPECT_EQ(w.status, 0) << w.err;
  auto st = testutil::run({galaxy_bin, "stat", "-a", s->dials[0], "f"});
  EXPECT_THAT(st.out, HasSubstr(" uid=ken "));
}

TEST(Cli, BadAddressAndUsage) {
  auto bad = testutil::run({galaxy_bin, "ls", "-a", "tcp!h!x"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(bad.err, "galaxy: bad dial string 'tcp!h!x': port must be a number 0-65535\n");
  testutil::temp_dir d;
  auto refused = testutil::run({galaxy_bin, "cat", "-a", "unix!" + d.file("none"), "x"});
  EXPECT_EQ(refused.status, 1);
  EXPECT_THAT(refused.err, HasSubstr("galaxy: dial unix!" + d.file("none") + ": "));
  auto usage = testutil::run({galaxy_bin});
  EXPECT_EQ(usage.status, 1);
  auto unknown = testutil::run({galaxy_bin, "frobnicate"});
  EXPECT_EQ(unknown.status, 1);
  auto help = testutil::run({galaxy_bin, "--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_THAT(help.out, HasSubstr("ls"));
}

// Every program says its version and the git description of its source, the same for
// all four (ctl/version.hpp), and exits 0 without needing its other options.
TEST(Cli, EveryProgramSaysItsVersion) {
  for (std::string program : {"galaxy", "galaxy-node", "galaxy-sched", "galaxy-ramfs"}) {
    auto r = testutil::run({GALAXY_BINARY_DIR "/" + program, "--version"});
    EXPECT_EQ(r.status, 0) << program << ": " << r.err;
    EXPECT_EQ(r.out, ctl::version_line(program) + "\n") << program;
    EXPECT_THAT(r.out, MatchesRegex(program + " [0-9]+\\.[0-9]+\\.[0-9]+ \\(git [0-9a-z.-]+\\)\n"));
  }
}

// ---- Finding the cluster (cluster::find) -------------------------------------------------

// Whether something accepts TCP connections on 127.0.0.1:port.
bool listening(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  ::close(fd);
  return ok;
}

// With nothing given and nothing up, every verb says what it tried, in order, and how to
// say where a cluster is. Root's default state directory is always /tmp/galaxy-0, which
// another cluster may use: as root the verbs run as a user of the test's own, whose
// default is below $XDG_RUNTIME_DIR.
TEST(Cli, NothingAnswersSaysWhatItTried) {
  if (listening(5641)) GTEST_SKIP() << "something listens on galaxy-sched's default port 5641 here";
  testutil::temp_dir d;
  ::chmod(d.path().c_str(), 0755);
  std::optional<testutil::local_user> user;
  if (::getuid() == 0) {
    auto u = testutil::local_user::make("fi");
    ASSERT_TRUE(u.has_value()) << u.error();
    user = std::move(*u);
  }
  std::string xdg = d.file("run");
  const std::vector<std::string> env{"GALAXY_ADDR", "GALAXY_STATE", "XDG_RUNTIME_DIR=" + xdg};
  auto galaxy = [&](std::vector<std::string> argv) {
    argv.insert(argv.begin(), galaxy_bin);
    return testutil::run(user ? user->as(argv) : argv, {}, 30s, env);
  };
  for (auto verb : {std::vector<std::string>{"jobs"}, std::vector<std::string>{"ls"},
                    std::vector<std::string>{"run", "--", "true"}, std::vector<std::string>{"wait", "1"}}) {
    auto r = galaxy(verb);
    EXPECT_EQ(r.status, 1) << verb[0];
    EXPECT_THAT(r.err, HasSubstr("no cluster answers: $GALAXY_ADDR is not set; $GALAXY_STATE is not set; "
                                 "galaxy up's default state directory " + xdg + "/galaxy: no cluster is recorded "
                                 "there; galaxy-sched's default address: dial tcp!127.0.0.1!5641: "))
        << verb[0];
    EXPECT_THAT(r.err, HasSubstr("start one with galaxy up, or say where one is: -a DIAL, -m MOUNTPOINT, "
                                 "--state DIR, $GALAXY_ADDR or $GALAXY_STATE\n"))
        << verb[0];
  }
  // A state directory given, by option or variable, is used alone: no record there is
  // the error, whatever else might answer.
  std::string empty = d.file("empty");
  std::filesystem::create_directory(empty);
  auto st = galaxy({"jobs", "--state", empty});
  EXPECT_EQ(st.status, 1);
  EXPECT_EQ(st.err, "galaxy: jobs: --state " + empty + ": no cluster is recorded there; galaxy up --state " + empty +
                        " starts one there\n");
  auto ls = galaxy({"ls", "--state", empty});
  EXPECT_EQ(ls.status, 1);
  EXPECT_THAT(ls.err, HasSubstr("--state " + empty + ": no cluster is recorded there"));
  auto env_state = testutil::run(user ? user->as({galaxy_bin, "nodes"}) : std::vector<std::string>{galaxy_bin, "nodes"},
                                 {}, 30s, {"GALAXY_ADDR", "GALAXY_STATE=" + empty, "XDG_RUNTIME_DIR=" + xdg});
  EXPECT_EQ(env_state.status, 1);
  EXPECT_THAT(env_state.err, HasSubstr("$GALAXY_STATE=" + empty + ": no cluster is recorded there"));
  // $GALAXY_ADDR is used alone too, and named when it does not answer.
  std::string none = "unix!" + d.file("none.sock");
  auto env_addr = testutil::run(user ? user->as({galaxy_bin, "jobs"}) : std::vector<std::string>{galaxy_bin, "jobs"},
                                {}, 30s, {"GALAXY_ADDR=" + none, "GALAXY_STATE=" + empty, "XDG_RUNTIME_DIR=" + xdg});
  EXPECT_EQ(env_addr.status, 1);
  EXPECT_THAT(env_addr.err, HasSubstr("dial " + none + ": "));
  EXPECT_THAT(env_addr.err, HasSubstr("(from $GALAXY_ADDR=" + none + ")"));
  // Two places at once.
  auto two = galaxy({"jobs", "-a", none, "--state", empty});
  EXPECT_EQ(two.status, 1);
  EXPECT_THAT(two.err, HasSubstr("give one of -a DIAL, -m MOUNTPOINT and --state DIR"));
}

// ---- The job verbs' command lines, on a tree of plain files -----------------------------

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void put(const std::string& path, std::string_view text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

class CommandLine : public ::testing::Test {
 protected:
  void SetUp() override {
    put(tree("jobs/clone"), "7\n");
    put(tree("nodes/n1/labels"), "arch=amd64\nsite=lab\n");
    put(tree("nodes/n3/labels"), "arch=arm64\n");
    put(tree("jobs/7/stdout"), "");
    put(tree("jobs/7/stderr"), "");
    put(tree("jobs/7/wait"), "exit 0\n");
  }
  std::string tree(std::string_view path = {}) const { return dir_.file("tree") + "/" + std::string(path); }
  // galaxy VERB -m TREE ARGS..., with jobs/7/ctl empty before; returns what it wrote there.
  testutil::run_result galaxy(const std::string& verb, std::vector<std::string> args) {
    put(tree("jobs/7/ctl"), "");
    std::vector<std::string> argv{galaxy_bin, verb, "-m", tree()};
    argv.insert(argv.end(), args.begin(), args.end());
    return testutil::run(argv);
  }
  std::string ctl() const { return slurp(tree("jobs/7/ctl")); }

  testutil::temp_dir dir_;
};

// The README's own example.
TEST_F(CommandLine, TheReadmesSubmitParses) {
  auto r = galaxy("submit", {"--cpu", "2", "--need", "arch=amd64", "--", "make", "-C", "/src"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "7\n");
  EXPECT_EQ(ctl(), "cpu 2\nneed arch=amd64\nexec make -C /src\n");
}

// Every option that takes a value, repeatable or not, before commands whose own words
// begin with dashes, with and without `--`, for run and submit alike: the command's words
// are never galaxy's.
TEST_F(CommandLine, EveryOptionBeforeCommandsThatTakeDashes) {
  struct opt {
    std::vector<std::string> args;
    std::string line;
  };
  const std::vector<opt> opts{
      {{"--need", "arch=amd64"}, "need arch=amd64\n"},
      {{"--need", "arch=amd64", "--need", "site=lab"}, "need arch=amd64\nneed site=lab\n"},
      {{"--after", "3"}, "after 3\n"},
      {{"--after", "3", "--after", "4"}, "after 3 4\n"},
      {{"-e", "A=1"}, "env A=1\n"},
      {{"-e", "A=1", "--env", "B=x y"}, "env A=1\nenv 'B=x y'\n"},
      {{"-eA=1"}, "env A=1\n"},
      {{"--cpu", "2"}, "cpu 2\n"},
      {{"--mem=1g"}, "mem 1g\n"},
      {{"--time", "60"}, "time 60\n"},
      {{"--name", "build"}, "name build\n"},
      {{"--dir", "/tmp"}, "dir /tmp\n"},
  };
  struct cmd {
    std::vector<std::string> words;  // as given after the options
    std::string exec;
  };
  const std::vector<cmd> cmds{
      {{"--", "make", "-C", "/src"}, "exec make -C /src\n"},
      {{"make", "-C", "/src"}, "exec make -C /src\n"},
      {{"sh", "-c", "echo hi"}, "exec sh -c 'echo hi'\n"},
      {{"--", "sh", "-c", "echo hi"}, "exec sh -c 'echo hi'\n"},
      {{"--", "-x"}, "exec -x\n"},
      {{"--", "--need", "x"}, "exec --need x\n"},
      // Words after the command that are galaxy's options elsewhere stay the command's.
      {{"env", "--cpu", "3", "-e", "X=1", "--", "-a"}, "exec env --cpu 3 -e X=1 -- -a\n"},
  };
  for (std::string verb : {"submit", "run"}) {
    for (const auto& o : opts) {
      for (const auto& c : cmds) {
        std::vector<std::string> args = o.args;
        if (verb == "run") args.insert(args.begin(), "-q");
        args.insert(args.end(), c.words.begin(), c.words.end());
        auto r = galaxy(verb, args);
        std::string said = verb + " " + testing::PrintToString(args);
        EXPECT_EQ(r.status, 0) << said << "\n" << r.err;
        EXPECT_EQ(ctl(), o.line + c.exec) << said;
        EXPECT_EQ(r.out, verb == "submit" ? "7\n" : "") << said;
      }
    }
  }
}

// Galaxy's options after the verb in any order, and its own --auth after the verb too.
TEST_F(CommandLine, OptionsInAnyOrderAndAuthAfterTheVerb) {
  auto r = galaxy("submit", {"--auth", "none", "-e", "A=1", "--need", "arch=arm64", "-e", "B=2", "--cpu", "500m",
                             "printf", "%s\\n", "-e"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(ctl(), "env A=1\nenv B=2\ncpu 500m\nneed arch=arm64\nexec printf %s\\n -e\n");
}

TEST_F(CommandLine, NoCommandMakesNoJob) {
  for (auto args : {std::vector<std::string>{"--cpu", "2"}, std::vector<std::string>{"--need", "arch=amd64", "--"}}) {
    auto r = galaxy("submit", args);
    EXPECT_EQ(r.status, 1);
    EXPECT_THAT(r.err, HasSubstr("no command")) << r.err;
    EXPECT_EQ(ctl(), "");
  }
  // An option the verb does not have is refused, not taken for the command.
  auto bad = galaxy("submit", {"--bogus", "true"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_THAT(bad.err, HasSubstr("--bogus")) << bad.err;
}

// node=NAME is a label the scheduler gives every node (galaxy(4), need): the tool takes
// it for each node in nodes/, and still refuses a label that no node has, naming those
// that exist.
TEST_F(CommandLine, NeedNodeNameIsALabel) {
  auto r = galaxy("submit", {"--need", "node=n3", "--", "true"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(ctl(), "need node=n3\nexec true\n");
  auto run = galaxy("run", {"-q", "--need", "node=n1", "--need", "site=lab", "true"});
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(ctl(), "need node=n1\nneed site=lab\nexec true\n");
  auto none = galaxy("submit", {"--need", "node=n9", "--", "true"});
  EXPECT_EQ(none.status, 1);
  EXPECT_THAT(none.err, HasSubstr("--need node=n9: no node has that label"));
  EXPECT_THAT(none.err, HasSubstr("node=n1"));
  EXPECT_THAT(none.err, HasSubstr("node=n3"));
  EXPECT_EQ(ctl(), "");
  // --queue-anyway: for nodes to come, so no label check; the scheduler is told.
  auto later = galaxy("submit", {"--queue-anyway", "--need", "node=n9", "--", "true"});
  EXPECT_EQ(later.status, 0) << later.err;
  EXPECT_EQ(ctl(), "need node=n9\nqueue-anyway\nexec true\n");
}

}  // namespace
