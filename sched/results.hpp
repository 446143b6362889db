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
//
// A job's results are bounded (result_limits, galaxy-sched(8) --max-result-bytes and
// --max-result-files): a copy takes files in order (stdout, stderr, then out/ as the
// node lists it) while they fit; the file that crosses the byte limit keeps its first
// bytes up to the limit, and nothing after it is copied. So a task's 2 GB sparse file
// costs the scheduler at most the limit, and the job still ends (with a note).
#include <cstddef>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace sched {

// Longest file name taken from a node: Linux's NAME_MAX.
inline constexpr std::size_t max_result_name = 255;
// Deepest directory taken from a node's out/ (out/a/b/... counts one per level).
inline constexpr int max_result_depth = 32;

// The most a job's results may take on the scheduler's disk.
struct result_limits {
  std::uint64_t max_bytes = std::uint64_t{1} << 30;  // stdout + stderr + every file below out/
  std::uint64_t max_files = 10000;                   // files and directories, stdout and stderr included
};

// What one copy of a job's results may still take. Not thread-safe: one copy, one thread.
class result_budget {
 public:
  explicit result_budget(result_limits l) : limits_(l) {}
  // Takes one file or directory; false (and over() from then on) when max_files are taken.
  bool take_file();
  // Bytes that may still be written.
  std::uint64_t bytes_left() const { return limits_.max_bytes - bytes_; }
  // Records n bytes written; n is at most bytes_left().
  void spend(std::uint64_t n) { bytes_ += n; }
  // Records that a file had more than bytes_left(): the copy stops.
  void bytes_over();
  bool over() const { return !over_.empty(); }
  // The job's note when over(): "results over the limit of N bytes: not all copied" (or
  // "of N files"); empty otherwise.
  const std::string& note() const { return over_; }

 private:
  result_limits limits_;
  std::uint64_t bytes_ = 0;
  std::uint64_t files_ = 0;
  std::string over_;
};

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
