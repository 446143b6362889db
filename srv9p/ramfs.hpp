#pragma once
// ramfs: the example tree, a RAM file system in the spirit of plan9port's lib9p ramfs.c,
// with two synthetic files that exercise what Galaxy's real trees need:
//
//   /            a RAM directory, mode 0777, owned by the server's owner; anyone may
//                create, and files and directories obey the usual owner/group/other bits
//   /events      read-only; each open has its own cursor, and a read blocks until the tree
//                changes, then returns lines "create PATH", "write PATH", "remove PATH",
//                "wstat PATH" (PATH relative to the root). A blocked read is a parked
//                request: Tflush cancels it.
//   /big         (only with big_bytes > 0) read-only, big_bytes long; the byte at offset o
//                is 'a' + o % 26. Served without holding it in memory, for benchmarks.
//
// Files hold their data in memory (a std::string each); nothing persists.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "srv9p/event_log.hpp"
#include "srv9p/tree.hpp"

namespace srv9p {

struct ramfs_options {
  std::string owner = "none";   // uid and gid of the root and the synthetic files
  std::uint64_t big_bytes = 0;  // length of /big; 0 means no /big
  // Events kept for readers that fall behind; older ones are dropped.
  std::size_t event_backlog = 4096;
  // The most data all files together may hold, bytes. A write or wstat that would pass
  // it (a write far past the end of a file, say) fails with "file system is full".
  std::uint64_t max_bytes = 1ull << 30;
};

class ramfs : public tree {
 public:
  explicit ramfs(ramfs_options opts);
  ~ramfs() override;

  std::expected<dir, std::string> attach(std::string_view uname, std::string_view aname) override;
  std::expected<dir, std::string> walk1(const dir& parent, std::string_view name,
                                        std::string_view uname) override;
  std::expected<std::vector<dir>, std::string> list(const dir& d, std::string_view uname) override;
  std::expected<dir, std::string> stat1(const dir& f) override;
  void open(request r) override;
  void create(request r) override;
  void read(request r) override;
  void write(request r) override;
  void remove(request r) override;
  void wstat(request r) override;

  // Readers parked on /events right now (for tests).
  std::size_t parked_readers() const { return events_.parked(); }

 private:
  struct node;
  node* find(std::uint64_t path) const;
  std::string path_of(const node& n) const;
  // Sets n's length, within max_bytes; false (and nothing changed) if it would not fit.
  bool resize(node& n, std::uint64_t length);

  ramfs_options opts_;
  std::unordered_map<std::uint64_t, std::unique_ptr<node>> nodes_;  // by qid.path
  std::uint64_t next_path_ = 1;
  std::uint64_t bytes_used_ = 0;  // the sum of every file's length
  event_log events_;
};

}  // namespace srv9p
