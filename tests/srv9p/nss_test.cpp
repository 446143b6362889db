// srv9p/nss.hpp: look-ups in a helper process answer as NSS in this process does; a
// helper that dies is replaced; an idle one is ended and reaped; names NSS would cut are
// found as nobody. Its own executable: lookups_in_helper() is for the whole process.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <string>

#include "srv9p/nss.hpp"

namespace {

using namespace std::chrono_literals;
using srv9p::account_by_name;
using srv9p::account_by_uid;

// "name uid gid g1,g2,..." or "none" or "error: TEXT", to compare two answers.
std::string text(const std::expected<std::optional<srv9p::account>, std::string>& r) {
  if (!r) return "error: " + r.error();
  if (!*r) return "none";
  std::string s = (*r)->name + " " + std::to_string((*r)->uid) + " " + std::to_string((*r)->gid);
  for (gid_t g : (*r)->groups) s += " " + std::to_string(g);
  return s;
}

// Runs first (tests run in the order written): the same questions in process, then in
// the helper.
TEST(Nss, TheHelperAnswersAsNssInProcessDoes) {
  const std::string unknown = "gx-no-such-user-" + std::to_string(::getpid());
  auto ask = [&] {
    return std::vector<std::string>{text(account_by_name("root", true)), text(account_by_name("nobody", true)),
                                    text(account_by_name("root")), text(account_by_uid(0)),
                                    text(account_by_uid(::getuid())), text(account_by_name(unknown, true)),
                                    text(account_by_uid(4000000000u))};
  };
  auto here = ask();
  EXPECT_EQ(srv9p::lookup_helper_pid(), -1);
  EXPECT_EQ(here[0].substr(0, 7), "root 0 ");
  EXPECT_EQ(here[5], "none");
  srv9p::lookups_in_helper();
  auto there = ask();
  EXPECT_GT(srv9p::lookup_helper_pid(), 0);
  EXPECT_EQ(here, there);
}

TEST(Nss, ANameThatNssWouldCutFindsNobody) {
  srv9p::lookups_in_helper();
  EXPECT_EQ(text(account_by_name(std::string("root\0x", 6))), "none");
  EXPECT_EQ(text(account_by_name(std::string(70000, 'r'))), "none");
  EXPECT_EQ(text(account_by_name("root")).substr(0, 7), "root 0 ");
}

TEST(Nss, AHelperThatDiedIsReplaced) {
  srv9p::lookups_in_helper();
  ASSERT_EQ(text(account_by_uid(0)).substr(0, 7), "root 0 ");
  pid_t first = srv9p::lookup_helper_pid();
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  int st = 0;
  ASSERT_EQ(::waitpid(first, &st, 0), first);  // ours to reap here: the look-up sees only EOF
  EXPECT_EQ(text(account_by_uid(0)).substr(0, 7), "root 0 ");
  EXPECT_GT(srv9p::lookup_helper_pid(), 0);
  EXPECT_NE(srv9p::lookup_helper_pid(), first);
}

TEST(Nss, EndLookupHelperLeavesNoProcessBehind) {
  srv9p::lookups_in_helper();
  ASSERT_TRUE(account_by_uid(0).has_value());
  pid_t p = srv9p::lookup_helper_pid();
  ASSERT_GT(p, 0);
  srv9p::end_lookup_helper();
  EXPECT_EQ(srv9p::lookup_helper_pid(), -1);
  // Gone, not even a zombie (its /proc entry goes when it is reaped).
  EXPECT_NE(::access(("/proc/" + std::to_string(p) + "/stat").c_str(), F_OK), 0);
  EXPECT_EQ(text(account_by_uid(0)).substr(0, 7), "root 0 ");
}

TEST(Nss, AnIdleHelperIsEndedAndReaped) {
  srv9p::lookups_in_helper();
  ASSERT_TRUE(account_by_uid(0).has_value());
  pid_t startup = srv9p::lookup_helper_pid();
  ASSERT_GT(startup, 0);
  asio::io_context io;
  srv9p::lookup_helper_linger(io, 100ms);
  EXPECT_EQ(srv9p::lookup_helper_pid(), -1);  // start-up's helper ends at once
  ASSERT_TRUE(account_by_uid(0).has_value());
  pid_t burst = srv9p::lookup_helper_pid();
  ASSERT_GT(burst, 0);
  // Both are ended and reaped by the timer (waited for, up to 10 s: not a speed check).
  // Reaped: no /proc entry left, not even a zombie's (waitpid here would reap it itself).
  auto reaped = [](pid_t p) { return ::access(("/proc/" + std::to_string(p) + "/stat").c_str(), F_OK) != 0; };
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline && !(reaped(startup) && reaped(burst))) io.run_for(50ms);
  EXPECT_EQ(srv9p::lookup_helper_pid(), -1);
  EXPECT_TRUE(reaped(startup));
  EXPECT_TRUE(reaped(burst));
  // And the next look-up has a helper again.
  EXPECT_EQ(text(account_by_uid(0)).substr(0, 7), "root 0 ");
  EXPECT_GT(srv9p::lookup_helper_pid(), 0);
}

}  // namespace
