// srv9p/nss.hpp: look-ups in process (lookup_here), and the helper: the daemon's side
// (lookup, ask_helper, start_helper, end_helper, the linger timer) and the child's (helper_main).
//
// Wire format on the socketpair, little-endian as the host writes it (both ends are one
// binary): a request is kind[1] ('n' by name, 'u' by uid) with_groups[1] uid[4]
// name_len[4] name; a reply is status[1] (0 found, 1 not found, 2 error) uid[4] gid[4]
// ngroups[4] text_len[4] text (the name, or the error) then ngroups × gid[4].
#include "srv9p/nss.hpp"

#include "srv9p/close_fds.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>

namespace srv9p {

namespace {

using lookup_result = std::expected<std::optional<account>, std::string>;

constexpr std::size_t max_groups = 65536;
constexpr std::uint32_t max_text = 1u << 16;

bool not_found_code(int e) { return e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM; }

// The look-up itself, in whichever process runs it. by_name: name, else uid.
lookup_result lookup_here(bool by_name, const std::string& name, uid_t uid, bool with_groups) {
  long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(hint > 0 ? static_cast<std::size_t>(hint) : 16384);
  passwd pw{};
  passwd* res = nullptr;
  int e;
  for (;;) {
    e = by_name ? ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &res)
                : ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &res);
    if (e != ERANGE || buf.size() >= (1u << 20)) break;
    buf.resize(buf.size() * 2);
  }
  auto who = [&] { return by_name ? fmt::format("user '{}'", name) : fmt::format("uid {}", uid); };
  if (res == nullptr) {
    if (not_found_code(e)) return std::optional<account>{};
    return std::unexpected(fmt::format("looking up {}: {}", who(), std::strerror(e)));
  }
  account a{.name = pw.pw_name, .uid = pw.pw_uid, .gid = pw.pw_gid, .groups = {}};
  if (!with_groups) return a;
  int n = 32;
  a.groups.resize(static_cast<std::size_t>(n));
  while (::getgrouplist(a.name.c_str(), a.gid, a.groups.data(), &n) < 0) {
    if (static_cast<std::size_t>(n) > max_groups) return std::unexpected(fmt::format("{}: too many groups", who()));
    n = std::max<int>(n, static_cast<int>(a.groups.size()) * 2);
    a.groups.resize(static_cast<std::size_t>(n));
  }
  a.groups.resize(static_cast<std::size_t>(n));
  return a;
}

// ---- The wire ---------------------------------------------------------------------------

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <class T>
T get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Writes all of data; false on any error (the other end is gone).
bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Reads exactly n bytes into out; false at EOF or error.
bool read_all(int fd, char* out, std::size_t n) {
  while (n > 0) {
    ssize_t got = ::read(fd, out, n);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    out += got;
    n -= static_cast<std::size_t>(got);
  }
  return true;
}

std::string encode_reply(const lookup_result& r) {
  std::string out;
  std::uint8_t status = !r ? 2 : !*r ? 1 : 0;
  const account* a = r && *r ? &**r : nullptr;
  std::string_view text = !r ? std::string_view(r.error()) : a ? std::string_view(a->name) : "";
  text = text.substr(0, max_text);
  put<std::uint8_t>(out, status);
  put<std::uint32_t>(out, a ? a->uid : 0);
  put<std::uint32_t>(out, a ? a->gid : 0);
  put<std::uint32_t>(out, a ? static_cast<std::uint32_t>(a->groups.size()) : 0);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(text.size()));
  out.append(text);
  if (a) out.append(reinterpret_cast<const char*>(a->groups.data()), a->groups.size() * sizeof(gid_t));
  return out;
}

// ---- The helper process -----------------------------------------------------------------

// The child's life: a lone thread of a fork of a (possibly threaded) daemon. glibc resets
// malloc's, stdio's, NSS's and the dynamic loader's locks in the child of fork(2), and no
// other thread of the daemon ever runs NSS code (every look-up comes here), so no lock an
// NSS call needs can be held by a thread that does not exist here.
[[noreturn]] void helper_main(int fd) {
  struct sigaction dfl{};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) ::sigaction(sig, &dfl, nullptr);  // SIGKILL, SIGSTOP: refused, harmless
  // Nothing of the daemon's: its sockets, spool and cgroup descriptors are closed (a
  // client's connection must end when the daemon closes it), stdio is /dev/null.
  if (fd > 3 && !close_descriptors(3, static_cast<unsigned>(fd) - 1)) ::_exit(1);
  if (!close_descriptors(static_cast<unsigned>(fd) + 1, ~0u)) ::_exit(1);
  int null = ::open("/dev/null", O_RDWR);
  if (null < 0) ::_exit(1);
  for (int i = 0; i < 3; i++) {
    if (i != fd && null != i) ::dup2(null, i);
  }
  if (null > 2 && null != fd) ::close(null);
  // The file-system identity of the whole process, whatever thread forked it.
  ::setfsuid(::geteuid());
  ::setfsgid(::getegid());
  ::prctl(PR_SET_NAME, "galaxy-nss");
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (;;) {
    char head[10];
    if (!read_all(fd, head, sizeof head)) ::_exit(0);  // the daemon closed: done
    char kind = head[0];
    bool with_groups = head[1] != 0;
    auto uid = get<std::uint32_t>(head + 2);
    auto len = get<std::uint32_t>(head + 6);
    if ((kind != 'n' && kind != 'u') || len > max_text) ::_exit(1);
    std::string name(len, '\0');
    if (!read_all(fd, name.data(), len)) ::_exit(0);
    if (!write_all(fd, encode_reply(lookup_here(kind == 'n', name, static_cast<uid_t>(uid), with_groups)))) ::_exit(0);
  }
}

struct helper_state {
  std::mutex mu;
  bool enabled = false;
  pid_t pid = -1;
  int fd = -1;
  std::vector<pid_t> ended;  // closed, to be reaped
  asio::io_context* io = nullptr;
  std::unique_ptr<asio::steady_timer> timer;
  std::chrono::milliseconds linger{0};
  std::chrono::steady_clock::time_point last_use;
  bool timer_armed = false;
};

// Never destroyed: the timer may outlive main's io_context, and exit needs nothing of it.
helper_state& state() {
  static helper_state* s = new helper_state;
  return *s;
}

std::expected<void, std::string> start_helper(helper_state& s) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    return std::unexpected(fmt::format("socketpair: {}", std::strerror(errno)));
  }
  // No signal handler of the daemon's may run in the child before it has reset them.
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(sv[0]);
    helper_main(sv[1]);
  }
  int e = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(sv[1]);
  if (pid < 0) {
    ::close(sv[0]);
    return std::unexpected(fmt::format("fork: {}", std::strerror(e)));
  }
  s.pid = pid;
  s.fd = sv[0];
  return {};
}

void reap_ended(helper_state& s) {
  std::erase_if(s.ended, [](pid_t p) {
    int st;
    pid_t r = ::waitpid(p, &st, WNOHANG);
    return r == p || (r < 0 && errno == ECHILD);
  });
}

// Closes the helper's socket (it exits at EOF) and reaps it when it has gone.
void end_helper(helper_state& s) {
  if (s.fd >= 0) ::close(s.fd);
  s.fd = -1;
  if (s.pid > 0) s.ended.push_back(s.pid);
  s.pid = -1;
  reap_ended(s);
}

void on_timer(helper_state& s, const std::error_code& ec);

// With s.mu held: the timer runs (on io's thread) while there is a helper or one to reap.
void arm(helper_state& s) {
  if (s.io == nullptr || s.timer_armed || (s.pid < 0 && s.ended.empty())) return;
  s.timer_armed = true;
  asio::post(*s.io, [&s] {
    std::lock_guard lock(s.mu);
    auto wait = std::chrono::milliseconds(50);  // for a reap
    if (s.pid > 0) {
      auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - s.last_use);
      wait = std::max(s.linger - idle, std::chrono::milliseconds(1));
    }
    s.timer->expires_after(wait);
    s.timer->async_wait([&s](const std::error_code& ec) { on_timer(s, ec); });
  });
}

void on_timer(helper_state& s, const std::error_code& ec) {
  std::lock_guard lock(s.mu);
  s.timer_armed = false;
  if (ec) return;
  if (s.pid > 0 && std::chrono::steady_clock::now() - s.last_use >= s.linger) end_helper(s);
  reap_ended(s);
  arm(s);
}

std::optional<lookup_result> ask_helper(int fd, const std::string& request) {
  if (!write_all(fd, request)) return std::nullopt;
  char head[17];
  if (!read_all(fd, head, sizeof head)) return std::nullopt;
  auto status = static_cast<std::uint8_t>(head[0]);
  auto ngroups = get<std::uint32_t>(head + 9), len = get<std::uint32_t>(head + 13);
  if (status > 2 || ngroups > max_groups || len > max_text) return std::nullopt;
  std::string text(len, '\0');
  if (!read_all(fd, text.data(), len)) return std::nullopt;
  std::vector<gid_t> groups(ngroups);
  if (!read_all(fd, reinterpret_cast<char*>(groups.data()), ngroups * sizeof(gid_t))) return std::nullopt;
  if (status == 2) return lookup_result(std::unexpected(std::move(text)));
  if (status == 1) return lookup_result(std::optional<account>{});
  return lookup_result(account{.name = std::move(text),
                               .uid = static_cast<uid_t>(get<std::uint32_t>(head + 1)),
                               .gid = static_cast<gid_t>(get<std::uint32_t>(head + 5)),
                               .groups = std::move(groups)});
}

lookup_result lookup(bool by_name, std::string_view name, uid_t uid, bool with_groups) {
  // NSS would see "alice\0x" as "alice"; and no NSS has a name of 64 KiB.
  if (by_name && (name.find('\0') != std::string_view::npos || name.size() > max_text)) {
    return std::optional<account>{};
  }
  helper_state& s = state();
  std::lock_guard lock(s.mu);
  if (!s.enabled) return lookup_here(by_name, std::string(name), uid, with_groups);
  std::string request;
  put<char>(request, by_name ? 'n' : 'u');
  put<std::uint8_t>(request, with_groups ? 1 : 0);
  put<std::uint32_t>(request, static_cast<std::uint32_t>(uid));
  put<std::uint32_t>(request, static_cast<std::uint32_t>(name.size()));
  request.append(name);
  // A helper that went away (killed, or crashed inside NSS) is replaced once.
  std::string why = "the helper process ended without an answer";
  for (int attempt = 0; attempt < 2; attempt++) {
    if (s.fd < 0) {
      if (auto ok = start_helper(s); !ok) {
        why = ok.error();
        break;
      }
    }
    auto reply = ask_helper(s.fd, request);
    if (reply) {
      s.last_use = std::chrono::steady_clock::now();
      arm(s);
      return std::move(*reply);
    }
    end_helper(s);
  }
  arm(s);
  return std::unexpected(fmt::format("account look-up: {}", why));
}

}  // namespace

std::expected<std::optional<account>, std::string> account_by_name(std::string_view name, bool with_groups) {
  return lookup(true, name, 0, with_groups);
}

std::expected<std::optional<account>, std::string> account_by_uid(uid_t uid) { return lookup(false, {}, uid, false); }

void lookups_in_helper() {
  helper_state& s = state();
  std::lock_guard lock(s.mu);
  s.enabled = true;
}

void lookup_helper_linger(asio::io_context& io, std::chrono::milliseconds linger) {
  helper_state& s = state();
  std::lock_guard lock(s.mu);
  if (!s.enabled) return;
  s.io = &io;
  s.linger = linger;
  s.timer = std::make_unique<asio::steady_timer>(io);
  s.timer_armed = false;
  end_helper(s);
  arm(s);
}

void end_lookup_helper() {
  helper_state& s = state();
  std::lock_guard lock(s.mu);
  end_helper(s);
  for (pid_t p : s.ended) {
    int st;
    while (::waitpid(p, &st, 0) < 0 && errno == EINTR) {
    }
  }
  s.ended.clear();
}

pid_t lookup_helper_pid() {
  helper_state& s = state();
  std::lock_guard lock(s.mu);
  return s.pid;
}

}  // namespace srv9p
