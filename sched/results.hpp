#pragma once
// Where galaxy-sched keeps a finished job's results: STATE/jobs/J/{stdout,stderr,out/...},
// directories 0700 and files 0600, readable by the daemon alone (its tree serves them to
// the job's owner and the admins).
//
// The names below out/ come from a node's directory reads, and a node's answers are input
// like a client's: each name is checked (check_name) before it is used, and every file is
// made relative to its directory's fd (mkdirat, openat with O_NOFOLLOW and O_EXCL), never
// by joining names onto a path, so no name and no link can put a file outside the job's
// directory (STYLE.md, "Paths and identities from outside").
#include <cstddef>
#include <expected>
#include <string>
#include <string_view>

namespace sched {

// Longest file name taken from a node: Linux's NAME_MAX.
inline constexpr std::size_t max_result_name = 255;
// Deepest directory taken from a node's out/ (out/a/b/... counts one per level).
inline constexpr int max_result_depth = 32;

// Whether a name from a node may name a result file. Errors: "bad file name '..' from
// node" for "", ".", "..", a name with '/' or NUL; "file name from node longer than 255
// bytes".
std::expected<void, std::string> check_name(std::string_view name);

// A directory fd, closed on destruction.
class dir_fd {
 public:
  dir_fd() = default;
  explicit dir_fd(int fd) : fd_(fd) {}
  dir_fd(dir_fd&& o) noexcept : fd_(o.release()) {}
  dir_fd& operator=(dir_fd&& o) noexcept;
  ~dir_fd();
  int get() const { return fd_; }
  int release();

 private:
  int fd_ = -1;
};

// Opens the directory name below parent (an fd, or AT_FDCWD for a path), making it with
// mode 0700 if it is missing; an existing one is made 0700. name must be a directory, not
// a link to one. Errors: "mkdir NAME: strerror", "open NAME: strerror", "NAME is not a
// directory".
std::expected<dir_fd, std::string> open_result_dir(int parent, const std::string& name);

// Makes the file name in dir for writing, mode 0600, replacing a file of that name left by
// an earlier copy (a job that ran again). O_EXCL|O_NOFOLLOW: a link or anything that
// appears meanwhile is refused, not followed. Returns the fd (the caller closes it).
// Errors: "create NAME: strerror".
std::expected<int, std::string> create_result_file(int dir, const std::string& name);

// Writes all of data to fd. Errors: "write: strerror".
std::expected<void, std::string> write_all(int fd, std::string_view data);

}  // namespace sched
