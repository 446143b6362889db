// A job's results on the scheduler's disk (see sched/results.hpp).
#include "sched/results.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "srv9p/fcall.hpp"

namespace sched {

std::expected<void, std::string> check_name(std::string_view name) {
  if (name.size() > max_result_name) {
    return std::unexpected(fmt::format("file name from node longer than {} bytes", max_result_name));
  }
  if (!srv9p::legal_name(name)) {
    std::string shown(name.substr(0, 64));
    for (char& c : shown) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    }
    return std::unexpected(fmt::format("bad file name '{}' from node", shown));
  }
  return {};
}

bool result_budget::take_file() {
  if (over()) return false;
  if (files_ >= limits_.max_files) {
    over_ = fmt::format("results over the limit of {} files: not all copied", limits_.max_files);
    return false;
  }
  ++files_;
  return true;
}

void result_budget::bytes_over() {
  if (!over()) over_ = fmt::format("results over the limit of {} bytes: not all copied", limits_.max_bytes);
}

dir_fd& dir_fd::operator=(dir_fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

dir_fd::~dir_fd() {
  if (fd_ >= 0) ::close(fd_);
}

int dir_fd::release() { return std::exchange(fd_, -1); }

std::expected<dir_fd, std::string> open_result_dir(int parent, const std::string& name) {
  if (::mkdirat(parent, name.c_str(), 0700) != 0 && errno != EEXIST) {
    return std::unexpected(fmt::format("mkdir {}: {}", name, std::strerror(errno)));
  }
  int fd = ::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    // ELOOP/ENOTDIR: something else than a directory has the name.
    if (errno == ELOOP || errno == ENOTDIR) return std::unexpected(fmt::format("{} is not a directory", name));
    return std::unexpected(fmt::format("open {}: {}", name, std::strerror(errno)));
  }
  dir_fd d(fd);
  // A directory made before the modes were kept (or under another umask) is closed now.
  struct ::stat st{};
  if (::fstat(fd, &st) == 0 && (st.st_mode & 07777) != 0700) (void)::fchmod(fd, 0700);
  return d;
}

std::expected<int, std::string> create_result_file(int dir, const std::string& name) {
  // The earlier copy's file, if any; a directory of that name is not removed (EISDIR, and
  // the create below fails on it).
  if (::unlinkat(dir, name.c_str(), 0) != 0 && errno != ENOENT && errno != EISDIR) {
    return std::unexpected(fmt::format("create {}: {}", name, std::strerror(errno)));
  }
  int fd = ::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return std::unexpected(fmt::format("create {}: {}", name, std::strerror(errno)));
  return fd;
}

std::expected<void, std::string> write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::unexpected(fmt::format("write: {}", std::strerror(errno)));
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

}  // namespace sched
