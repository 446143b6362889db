// Safe access below a task's directory (node/safe_fs.hpp): openat2 or an O_NOFOLLOW walk,
// the per-thread file-system identity, and the link-free copy and delete built on them.
#include "node/safe_fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <vector>

namespace node {

namespace {

// Straight to the kernel: per thread (see fs_identity_scope). 32-bit ARM has separate
// 32-bit-gid calls.
#if defined(SYS_setgroups32)
constexpr long sys_setgroups = SYS_setgroups32, sys_getgroups = SYS_getgroups32;
#else
constexpr long sys_setgroups = SYS_setgroups, sys_getgroups = SYS_getgroups;
#endif

// 0: not yet known; 1: openat2 works; 2: ENOSYS (or forced off), walk by components.
std::atomic<int> openat2_state{0};

struct fd_closer {
  int fd;
  ~fd_closer() {
    if (fd >= 0) ::close(fd);
  }
};

// Splits rel at '/' into legal names; false if one is not.
bool split(std::string_view rel, std::vector<std::string_view>& out) {
  while (!rel.empty()) {
    auto slash = rel.find('/');
    std::string_view c = rel.substr(0, slash);
    if (!legal_name(c)) return false;
    out.push_back(c);
    if (slash == std::string_view::npos) break;
    rel.remove_prefix(slash + 1);
    if (rel.empty()) return false;  // a trailing '/'
  }
  return true;
}

std::expected<int, int> walk_components(int dirfd, const std::vector<std::string_view>& parts, int flags,
                                        mode_t mode) {
  if (parts.empty()) {
    int fd = ::openat(dirfd, ".", flags | O_CLOEXEC, mode);
    if (fd < 0) return std::unexpected(errno);
    return fd;
  }
  int cur = dirfd;
  fd_closer held{-1};
  for (std::size_t i = 0; i + 1 < parts.size(); i++) {
    std::string name(parts[i]);
    int next = ::openat(cur, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) return std::unexpected(errno == ENOTDIR ? ELOOP : errno);  // a link is not a directory here
    if (held.fd >= 0) ::close(held.fd);
    held.fd = next;
    cur = next;
  }
  std::string last(parts.back());
  int fd = ::openat(cur, last.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return std::unexpected(errno);
  return fd;
}

}  // namespace

fs_identity_scope::fs_identity_scope(const fs_identity& id) {
  if (!id.as_user) return;
  // Groups first, and the fsgid before the fsuid, while the thread still has the
  // privilege to (setfsuid(2) returns the previous value whatever happens).
  long n = ::syscall(sys_getgroups, 0, nullptr);
  if (n >= 0) {
    old_groups_.resize(static_cast<std::size_t>(n));
    n = ::syscall(sys_getgroups, n, old_groups_.data());
  }
  if (n >= 0) {
    old_groups_.resize(static_cast<std::size_t>(n));
    groups_set_ = ::syscall(sys_setgroups, id.groups.size(), id.groups.data()) == 0;
  }
  old_gid_ = static_cast<gid_t>(::setfsgid(id.gid));
  old_uid_ = static_cast<uid_t>(::setfsuid(id.uid));
  switched_ = true;
}

fs_identity_scope::~fs_identity_scope() {
  if (!switched_) return;
  ::setfsuid(old_uid_);
  ::setfsgid(old_gid_);
  if (groups_set_) ::syscall(sys_setgroups, old_groups_.size(), old_groups_.data());
}

bool legal_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

void force_component_walk(bool on) { openat2_state = on ? 2 : 0; }

std::expected<int, int> open_beneath(int dirfd, std::string_view rel, int flags, mode_t mode) {
  std::vector<std::string_view> parts;
  if (!split(rel, parts)) return std::unexpected(EINVAL);
  if (openat2_state.load() != 2) {
    std::string path(parts.empty() ? "." : "");
    for (std::size_t i = 0; i < parts.size(); i++) {
      if (i > 0) path += '/';
      path += parts[i];
    }
    struct open_how how;
    std::memset(&how, 0, sizeof how);
    how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    for (;;) {
      long fd = ::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how);
      if (fd >= 0) {
        openat2_state = 1;
        return static_cast<int>(fd);
      }
      int e = errno;
      if (e == EINTR || e == EAGAIN) continue;  // EAGAIN: a concurrent rename; try again
      if (e != ENOSYS) return std::unexpected(e);
      openat2_state = 2;
      break;
    }
  }
  return walk_components(dirfd, parts, flags, mode);
}

std::expected<void, std::string> copy_tree(int src, int dest) {
  int dup = ::openat(src, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return std::unexpected(fmt::format(".: {}", errno_text(errno)));
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    int e = errno;
    ::close(dup);
    return std::unexpected(fmt::format(".: {}", errno_text(e)));
  }
  std::expected<void, std::string> result;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(src, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;  // gone meanwhile
    auto fail = [&](int err) { result = std::unexpected(fmt::format("{}: {}", name, errno_text(err))); };
    if (S_ISDIR(st.st_mode)) {
      if (::mkdirat(dest, e->d_name, 0700) < 0 && errno != EEXIST) {
        fail(errno);
        break;
      }
      auto s = open_beneath(src, name, O_RDONLY | O_DIRECTORY);
      if (!s) {
        if (s.error() == ELOOP) continue;  // swapped for a link meanwhile: skipped
        fail(s.error());
        break;
      }
      fd_closer sc{*s};
      auto t = open_beneath(dest, name, O_RDONLY | O_DIRECTORY);
      if (!t) {
        fail(t.error());
        break;
      }
      fd_closer tc{*t};
      if (auto ok = copy_tree(*s, *t); !ok) {
        result = std::unexpected(fmt::format("{}/{}", name, ok.error()));
        break;
      }
    } else if (S_ISREG(st.st_mode)) {
      auto s = open_beneath(src, name, O_RDONLY | O_NONBLOCK | O_NOCTTY);
      if (!s) {
        if (s.error() == ELOOP) continue;
        fail(s.error());
        break;
      }
      fd_closer sc{*s};
      struct stat sst;
      if (::fstat(*s, &sst) < 0 || !S_ISREG(sst.st_mode)) continue;
      int t = ::openat(dest, e->d_name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
      if (t < 0) {
        fail(errno);
        break;
      }
      fd_closer tc{t};
      char buf[65536];
      for (;;) {
        ssize_t n = ::read(*s, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          fail(errno);
          break;
        }
        if (n == 0) break;
        for (ssize_t off = 0; off < n;) {
          ssize_t w = ::write(t, buf + off, static_cast<std::size_t>(n - off));
          if (w < 0 && errno == EINTR) continue;
          if (w < 0) {
            fail(errno);
            break;
          }
          off += w;
        }
        if (!result) break;
      }
      if (!result) break;
    }  // else: a link, FIFO, socket or device: not copied, never followed
  }
  ::closedir(d);
  return result;
}

int remove_tree_below(int dirfd) {
  int dup = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return errno;
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    int e = errno;
    ::close(dup);
    return e;
  }
  int first = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    if (::unlinkat(dirfd, e->d_name, 0) == 0 || errno == ENOENT) continue;
    if (errno != EISDIR && errno != EPERM) {
      if (first == 0) first = errno;
      continue;
    }
    int sub = ::openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      if (first == 0) first = errno;
      continue;
    }
    int r = remove_tree_below(sub);
    ::close(sub);
    if (r != 0 && first == 0) first = r;
    if (::unlinkat(dirfd, e->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT && first == 0) first = errno;
  }
  ::closedir(d);
  return first;
}

std::string errno_text(int e) {
  switch (e) {
    case ENOENT: return "file does not exist";
    case EACCES:
    case EPERM: return "permission denied";
    default: break;
  }
  std::string s = std::strerror(e);
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z' && (s.size() < 2 || !(s[1] >= 'A' && s[1] <= 'Z'))) {
    s[0] = static_cast<char>(s[0] - 'A' + 'a');
  }
  return s;
}

}  // namespace node
