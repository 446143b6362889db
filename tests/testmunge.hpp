#pragma once
// MUNGE for tests: a munged process with a key of its own in a temporary directory,
// credentials made by munge(1) (as another user through setpriv(1)), and local test
// users made with useradd. Header-only, shared by the suites that test authentication.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/testutil.hpp"

namespace testmunge {

using namespace std::chrono_literals;

inline bool have_munged() { return ::access("/usr/sbin/munged", X_OK) == 0 && ::access("/usr/bin/munge", X_OK) == 0; }

#define REQUIRE_MUNGED() \
  if (!testmunge::have_munged()) GTEST_SKIP() << "munged is not installed (Debian: apt-get install munge)"

// Writes a fresh random MUNGE key (1024 bytes, mode 0600) to path; false if it cannot.
inline bool write_key(const std::string& path) {
  std::ifstream rnd("/dev/urandom", std::ios::binary);
  std::string key(1024, '\0');
  rnd.read(key.data(), static_cast<std::streamsize>(key.size()));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = ::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size());
  ::close(fd);
  return ok;
}

// One munged in a temporary directory of its own (0711: munged wants its socket's
// directory searchable by all), with its own socket, pid, log and seed files. The default
// makes a key of its own; munged(key_file, prefix) uses a key file made elsewhere (several
// hosts of tests/testnet.hpp share one) and runs munged under prefix (nsenter into a
// host's network namespace), which must exec it (its pid is munged's).
class munged {
 public:
  munged() : munged("", {}) {}
  munged(const std::string& key_file, const std::vector<std::string>& prefix) {
    ::chmod(dir_.path().c_str(), 0711);
    std::string key = key_file;
    if (key.empty()) {
      key = dir_.file("key");
      EXPECT_TRUE(write_key(key)) << "cannot write " << key;
    }
    socket_ = dir_.file("sock");
    std::vector<std::string> argv = prefix;
    argv.insert(argv.end(), {"/usr/sbin/munged", "--foreground", "--socket=" + socket_, "--key-file=" + key,
                             "--pid-file=" + dir_.file("pid"), "--log-file=" + dir_.file("log"),
                             "--seed-file=" + dir_.file("seed")});
    auto p = testutil::process::spawn(argv, {.capture_stderr = true});
    EXPECT_TRUE(p.has_value()) << (p ? "" : p.error());
    if (p) proc_ = std::move(*p);
    for (int i = 0; i < 500 && ::access(socket_.c_str(), F_OK) != 0; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(::access(socket_.c_str(), F_OK), 0) << "munged did not make " << socket_;
  }
  const std::string& socket() const { return socket_; }

 private:
  testutil::temp_dir dir_;
  std::string socket_;
  testutil::process proc_;
};

// A credential from munged at socket, made by `munge` run as uid/gid when given, bound
// to bind (its payload, as srv9p::munge_credential makes it: "galaxy-9p tcp!A!P"; see
// bound_to()); "" makes one with no payload.
inline std::string credential(const std::string& socket, const std::string& bind,
                              std::optional<std::pair<uid_t, gid_t>> as = {}, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv;
  if (as) {
    argv = {"/usr/bin/setpriv", fmt::format("--reuid={}", as->first), fmt::format("--regid={}", as->second),
            "--clear-groups"};
  }
  argv.insert(argv.end(), {"/usr/bin/munge", "-S", socket});
  if (bind.empty()) {
    argv.push_back("-n");
  } else {
    argv.insert(argv.end(), {"-s", bind});
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto r = testutil::run(argv);
  EXPECT_EQ(r.status, 0) << r.err;
  return r.out;
}

// The binding a client dialling a canonical tcp! address (a server's listen() result)
// puts in its credential.
inline std::string bound_to(const std::string& dial) { return "galaxy-9p " + dial; }

// A local user for the test, made once (useradd) and kept: tests run in parallel
// processes, so none removes what another may be using.
inline std::optional<std::pair<uid_t, gid_t>> test_user(const std::string& name) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* out = nullptr;
    if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &out) == 0 && out != nullptr) {
      return std::pair{pw.pw_uid, pw.pw_gid};
    }
    if (::geteuid() != 0) return std::nullopt;
    // Fails harmlessly when a parallel test made it first or holds the passwd lock.
    testutil::run({"/usr/sbin/useradd", "--system", "--no-create-home", "--user-group", "--shell",
                   "/usr/sbin/nologin", name});
    std::this_thread::sleep_for(50ms);
  }
  return std::nullopt;
}

#define REQUIRE_USERS(a, b)                                                                 \
  auto a = testmunge::test_user("gx-alice");                                                           \
  auto b = testmunge::test_user("gx-bob");                                                             \
  if (!a || !b) GTEST_SKIP() << "cannot make the test users gx-alice and gx-bob (not root)"

}  // namespace testmunge
