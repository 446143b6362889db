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

namespace {

// One directory being copied or deleted: its open stream, the descriptor of its copy
// (copy_tree) and its path below the top, for error texts.
struct dir_frame {
  DIR* d = nullptr;
  int dest = -1;
  std::string path;
};

// Opens the directory fd (not consumed) as a stream of its own. Returns the errno.
std::expected<DIR*, int> open_stream(int fd) {
  int dup = ::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return std::unexpected(errno);
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    int e = errno;
    ::close(dup);
    return std::unexpected(e);
  }
  return d;
}

std::string joined(const std::string& dir, std::string_view name) {
  return dir.empty() ? std::string(name) : fmt::format("{}/{}", dir, name);
}

}  // namespace

// Iterative, with an explicit stack of directory streams and one buffer on the heap: the
// tree is the task user's, who may nest directories as deep as they like, and a frame per
// level on the worker thread's stack overflowed it (300 levels of 64 KiB buffers).
std::expected<void, std::string> copy_tree(int src, int dest, const copy_limits& lim) {
  std::vector<dir_frame> stack;
  std::vector<char> buf(65536);
  std::uint64_t entries = 0, bytes = 0;
  auto close_all = [&] {
    for (auto& f : stack) {
      ::closedir(f.d);
      if (f.dest >= 0 && f.dest != dest) ::close(f.dest);
    }
    stack.clear();
  };
  {
    auto d = open_stream(src);
    if (!d) return std::unexpected(fmt::format(".: {}", errno_text(d.error())));
    stack.push_back(dir_frame{*d, dest, ""});
  }
  std::expected<void, std::string> result;
  auto fail = [&](const std::string& path, std::string_view why) {
    result = std::unexpected(fmt::format("{}: {}", path, why));
  };
  while (!stack.empty() && result) {
    dir_frame& top = stack.back();
    struct dirent* e = ::readdir(top.d);
    if (e == nullptr) {
      ::closedir(top.d);
      if (top.dest != dest) ::close(top.dest);
      stack.pop_back();
      continue;
    }
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    int sfd = ::dirfd(top.d);
    struct stat st;
    if (::fstatat(sfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;  // gone meanwhile
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) continue;  // a link, FIFO, socket or device: never followed
    std::string path = joined(top.path, name);
    if (++entries > lim.max_entries) {
      fail(path, fmt::format("more than {} files and directories", lim.max_entries));
      break;
    }
    if (S_ISDIR(st.st_mode)) {
      if (stack.size() > lim.max_depth) {  // stack.size() is the new directory's depth
        fail(path, fmt::format("more than {} directories deep", lim.max_depth));
        break;
      }
      if (::mkdirat(top.dest, e->d_name, 0700) < 0 && errno != EEXIST) {
        fail(path, errno_text(errno));
        break;
      }
      auto s = open_beneath(sfd, name, O_RDONLY | O_DIRECTORY);
      if (!s) {
        if (s.error() == ELOOP) continue;  // swapped for a link meanwhile: skipped
        fail(path, errno_text(s.error()));
        break;
      }
      fd_closer sc{*s};
      auto t = open_beneath(top.dest, name, O_RDONLY | O_DIRECTORY);
      if (!t) {
        fail(path, errno_text(t.error()));
        break;
      }
      auto d = open_stream(*s);
      if (!d) {
        ::close(*t);
        fail(path, errno_text(d.error()));
        break;
      }
      stack.push_back(dir_frame{*d, *t, std::move(path)});  // top is invalid from here
      continue;
    }
    auto s = open_beneath(sfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (!s) {
      if (s.error() == ELOOP) continue;
      fail(path, errno_text(s.error()));
      break;
    }
    fd_closer sc{*s};
    struct stat sst;
    if (::fstat(*s, &sst) < 0 || !S_ISREG(sst.st_mode)) continue;
    int t = ::openat(top.dest, e->d_name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (t < 0) {
      fail(path, errno_text(errno));
      break;
    }
    fd_closer tc{t};
    for (;;) {
      ssize_t n = ::read(*s, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        fail(path, errno_text(errno));
        break;
      }
      if (n == 0) break;
      bytes += static_cast<std::uint64_t>(n);
      if (bytes > lim.max_bytes) {
        fail(path, fmt::format("more than {} bytes in all", lim.max_bytes));
        break;
      }
      for (ssize_t off = 0; off < n;) {
        ssize_t w = ::write(t, buf.data() + off, static_cast<std::size_t>(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
          fail(path, errno_text(errno));
          break;
        }
        off += w;
      }
      if (!result) break;
    }
  }
  close_all();
  return result;
}

// Iterative for the same reason as copy_tree, and without a depth limit (a tree that is
// not deleted whole stays on disk): each level holds one descriptor, so the depth is
// bounded by RLIMIT_NOFILE, whose EMFILE is then the error.
int remove_tree_below(int dirfd) {
  struct level {
    DIR* d;
    int fd;            // the directory itself (dirfd for the top, not closed here)
    std::string name;  // its name in the level above
  };
  std::vector<level> stack;
  auto d = open_stream(dirfd);
  if (!d) return d.error();
  stack.push_back(level{*d, dirfd, ""});
  int first = 0;
  auto note = [&first](int e) {
    if (first == 0) first = e;
  };
  while (!stack.empty()) {
    level& top = stack.back();
    struct dirent* e = ::readdir(top.d);
    if (e == nullptr) {
      // Its entries are gone: the directory itself is removed from its parent.
      ::closedir(top.d);
      if (stack.size() == 1) break;
      ::close(top.fd);
      std::string name = std::move(top.name);
      stack.pop_back();
      if (::unlinkat(stack.back().fd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT) note(errno);
      continue;
    }
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    if (::unlinkat(top.fd, e->d_name, 0) == 0 || errno == ENOENT) continue;
    if (errno != EISDIR && errno != EPERM) {
      note(errno);
      continue;
    }
    // A directory: its entries first, then itself when its stream ends.
    int sub = ::openat(top.fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      note(errno);
      continue;
    }
    auto sd = open_stream(sub);
    if (!sd) {
      ::close(sub);
      note(sd.error());
      continue;
    }
    stack.push_back(level{*sd, sub, std::string(name)});  // top is invalid from here
  }
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
