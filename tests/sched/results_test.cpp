// galaxy-sched's result files (sched/results.hpp): the names a node gives are checked
// before they name anything on the scheduler's disk, and files are made relative to a
// directory fd, 0700 and 0600, following no link. A hostile node is not simulated here
// (no fake node server): these are the functions copy_results goes through for every name.
#include "sched/results.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "tests/testutil.hpp"

namespace {

using namespace std::string_literals;

TEST(ResultNames, WhatANodeMayNotCallAFile) {
  for (std::string bad : {""s, "."s, ".."s, "../../x"s, "a/b"s, "/etc/passwd"s, "a\0b"s, "x/"s}) {
    auto ok = sched::check_name(bad);
    ASSERT_FALSE(ok.has_value()) << bad;
    EXPECT_TRUE(ok.error().starts_with("bad file name '")) << ok.error();
    EXPECT_TRUE(ok.error().ends_with("' from node")) << ok.error();
  }
  EXPECT_EQ(sched::check_name(std::string(256, 'a')).error(), "file name from node longer than 255 bytes");
  for (std::string good : {"a"s, "..."s, ".hidden"s, "answer.txt"s, "a b"s, std::string(255, 'z')}) {
    EXPECT_TRUE(sched::check_name(good).has_value()) << good;
  }
}

TEST(ResultFiles, DirectoriesAre0700AndFiles0600WhateverTheUmask) {
  testutil::temp_dir t;
  mode_t old = ::umask(0);
  auto d = sched::open_result_dir(AT_FDCWD, t.file("state"));
  ASSERT_TRUE(d.has_value()) << d.error();
  auto sub = sched::open_result_dir(d->get(), "out");
  ASSERT_TRUE(sub.has_value()) << sub.error();
  auto fd = sched::create_result_file(sub->get(), "f");
  ::umask(old);
  ASSERT_TRUE(fd.has_value()) << fd.error();
  ASSERT_TRUE(sched::write_all(*fd, "data").has_value());
  ::close(*fd);
  struct ::stat st{};
  ASSERT_EQ(::stat(t.file("state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(::stat(t.file("state/out").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(::stat(t.file("state/out/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_size, 4);
  // An existing directory that others could read is closed.
  ASSERT_EQ(::mkdir(t.file("open").c_str(), 0755), 0);
  ASSERT_TRUE(sched::open_result_dir(AT_FDCWD, t.file("open")).has_value());
  ASSERT_EQ(::stat(t.file("open").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  // A second copy (a job that ran again) replaces the file.
  auto again = sched::create_result_file(sub->get(), "f");
  ASSERT_TRUE(again.has_value()) << again.error();
  ::close(*again);
  ASSERT_EQ(::stat(t.file("state/out/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
}

TEST(ResultFiles, LinksAreNeverFollowed) {
  testutil::temp_dir t;
  {
    std::ofstream canary(t.file("canary"));
    canary << "keep";
  }
  ASSERT_EQ(::chmod(t.file("canary").c_str(), 0600), 0);
  ASSERT_EQ(::mkdir(t.file("job").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(t.file("elsewhere").c_str(), 0700), 0);
  ASSERT_EQ(::symlink(t.file("canary").c_str(), t.file("job/stdout").c_str()), 0);
  ASSERT_EQ(::symlink(t.file("elsewhere").c_str(), t.file("job/out").c_str()), 0);
  auto job = sched::open_result_dir(AT_FDCWD, t.file("job"));
  ASSERT_TRUE(job.has_value()) << job.error();
  // A link to a directory is not a directory to put results in.
  auto out = sched::open_result_dir(job->get(), "out");
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error(), "out is not a directory");
  // A link where a file goes is replaced by a new file; its target is untouched.
  auto fd = sched::create_result_file(job->get(), "stdout");
  ASSERT_TRUE(fd.has_value()) << fd.error();
  ASSERT_TRUE(sched::write_all(*fd, "new").has_value());
  ::close(*fd);
  std::ifstream canary(t.file("canary"));
  std::string text;
  canary >> text;
  EXPECT_EQ(text, "keep");
  struct ::stat st{};
  ASSERT_EQ(::lstat(t.file("job/stdout").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(::lstat(t.file("elsewhere/stdout").c_str(), &st), -1);
}

}  // namespace
