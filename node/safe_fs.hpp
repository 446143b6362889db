#pragma once
// Safe access below a task's directory: every file operation the node does on a task's
// behalf (a client's walk, open, read, write, create, remove below task/N/in/ and out/;
// copying in/ to `dir PATH`) goes through here, so that no path a task can change is ever
// followed.
//
// The rule (STYLE.md, "Paths and identities from outside"): a name is resolved relative
// to a directory descriptor the daemon holds, with openat2(2)'s RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS, so that a symbolic link anywhere in it, swapped in by the task
// between two requests or in the middle of one, makes the operation fail with ELOOP
// instead of being followed; and, where the task has a user of its own, it is done with
// that user's file-system identity (setfsuid(2)/setfsgid(2) on the calling thread only),
// so that the kernel checks permissions as it would for the task. Kernels before 5.6
// have no openat2: there each component is opened with O_NOFOLLOW in turn (the same
// guarantee, a few more system calls).
#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "srv9p/fcall.hpp"

namespace node {

// Whose file-system identity an operation runs with. as_user false: the daemon's own.
struct fs_identity {
  bool as_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (initgroups(3)'s list)
};

// The user's supplementary groups, setfsgid and setfsuid on the calling thread for the
// scope's life, back to the daemon's at its end. The groups are set by the raw system
// call, which changes only the calling thread (glibc's setgroups would change every
// thread). Capabilities for file access (CAP_DAC_OVERRIDE and the like) are dropped by
// the kernel while the fsuid is not 0 (capabilities(7)).
class fs_identity_scope {
 public:
  explicit fs_identity_scope(const fs_identity& id);
  ~fs_identity_scope();
  fs_identity_scope(const fs_identity_scope&) = delete;
  fs_identity_scope& operator=(const fs_identity_scope&) = delete;

 private:
  bool switched_ = false;
  bool groups_set_ = false;
  uid_t old_uid_ = 0;
  gid_t old_gid_ = 0;
  std::vector<gid_t> old_groups_;
};

// A name a client or task may give for one component: srv9p::legal_name (walk(5)).
using srv9p::legal_name;

// Opens rel (components separated by '/', each a legal_name; "" is dirfd's directory
// itself, opened anew) below dirfd, following no symbolic link and never leaving dirfd's
// tree: openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), or
// O_NOFOLLOW per component where openat2 is missing. flags are open(2)'s (O_CLOEXEC is
// added); mode is for O_CREAT. With O_PATH | O_NOFOLLOW a final symbolic link is opened
// as itself (callers fstat and refuse it); without O_PATH it is ELOOP.
// Returns the descriptor, or the errno (ELOOP for a link, EINVAL for an illegal name).
std::expected<int, int> open_beneath(int dirfd, std::string_view rel, int flags, mode_t mode = 0);

// For tests: use the O_NOFOLLOW walk even where openat2 exists.
void force_component_walk(bool on);

// Bounds on one copy_tree: the tree is the task user's, who may make it as deep and as
// large as they like, and the copy runs on the daemon's worker thread. max_depth is
// galaxy-sched's max_result_depth (sched/results.hpp), the deepest results it keeps.
struct copy_limits {
  std::size_t max_depth = 32;                 // directories below src
  std::uint64_t max_entries = 100000;         // files and directories copied
  std::uint64_t max_bytes = std::uint64_t{4} << 30;  // file contents copied, in all
};

// Copies the tree below the directory src (a descriptor) into the directory dest (a
// descriptor): directories made 0700, regular files copied 0600, anything else (links,
// FIFOs, sockets) skipped, so that nothing in src is followed. Existing files in dest are
// overwritten. Runs with the calling thread's identity (wrap it in fs_identity_scope),
// in bounded stack and memory whatever the tree.
// Errors: "PATH: TEXT" for the first failure, PATH below src; a limit exceeded is
// "PATH: more than 32 directories deep", "... more than N files and directories",
// "... more than N bytes in all" (what was copied before it stays).
std::expected<void, std::string> copy_tree(int src, int dest, const copy_limits& lim = {});

// Deletes the tree below the directory dirfd (not dirfd itself), without following
// links: for removing a task's directory in the trash. Returns the first errno, or 0.
int remove_tree_below(int dirfd);

// errno as Plan 9 words it where it has a word ("file does not exist", "permission
// denied"), else strerror(3) with a lower-case first letter.
std::string errno_text(int e);

}  // namespace node
