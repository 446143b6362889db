#pragma once
// The FUSE3 bridge behind `galaxy mount`: any Galaxy 9P2000 tree as local files.
//
// libfuse's low-level API, served by its multithreaded loop, over one pipelined
// fsclient::client: FUSE requests run on worker threads that send their 9P requests and
// wait for the replies, while a read is answered from the client's reader thread when
// its Rread comes, so a read that blocks in the server (a task's `wait`) holds only a
// tag, and `ls` in another shell goes on.
//
// What it does better than plan9port's 9pfuse (shared/design/9p.md, "How clients
// behave"): direct_io on every open (synthetic files of length 0 read to their end);
// max_write up to msize - IOHDRSZ (writes are not cut into 4 KiB); FUSE_INTERRUPT becomes
// Tflush (Ctrl-C on a blocked read returns at once with EINTR); 9P error strings map to
// errno through one table (errno_of); readdir has `.` and `..`.
//
// When the server hangs up (a scheduler restarted, a network cut), the mount redials
// (fuse_options::redial, with backoff, for as long as it is mounted) and attaches again.
// Requests in flight then, and files open on the old connection, fail with EIO; new
// requests before the new connection is up fail at once with ENOTCONN; afterwards every
// name and node the kernel knows is walked again by its path, so `ls` in a shell whose
// cwd is in the mount works again without an unmount (fuse_bridge.cpp, "Redialling").
//
// Per-user mode (fuse_options::per_user, for a mount made by root with allow_other):
// every local user acts as themself, as with the kernel's v9fs `access=user`. The
// connection attaches once more for each calling uid, as that uid's login name, and each
// request is done on fids of the caller's own attach, so the server checks the caller's
// permissions and makes the caller own what they create (fuse_bridge.cpp explains the
// fids). Ownership is shown as the local uid and gid of the server's user and group
// names (NSS), so `ls -l` and `stat` tell users apart.
//
// Linked only by the `galaxy` tool and tests: galaxy-node never links FUSE.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fsclient/client.hpp"

namespace fsclient {

struct fuse_options {
  std::string mountpoint;                  // an existing directory
  // -o values passed to libfuse and the mount: "allow_other", "ro", "default_permissions"...
  std::vector<std::string> mount_options;
  std::string fsname = "galaxy";           // shown in /proc/mounts (the dial string, say)
  // How long the kernel may cache a file's attributes and a name's lookup, seconds.
  // 0 asks the server every time; synthetic files change size under the cache anyway,
  // which direct_io makes harmless for reads.
  double attr_timeout_s = 1.0;
  // FUSE worker threads at most. A blocked read holds none; a blocked write holds one.
  unsigned max_threads = 64;
  bool debug = false;                      // libfuse's -d: trace every FUSE request
  // Per-user mode (above). The mounting uid keeps the root fid given to mount(); any
  // other uid is attached as getpwuid_r(uid)'s name, to aname; a uid with no name gets
  // EACCES. Without it every request is the mounting user's, whoever makes it.
  bool per_user = false;
  std::string aname;                       // the tree per-user attaches ask for
  // Where the bridge reports what a caller cannot see otherwise: 9P errors that mapped
  // to no errno (with their text), libfuse's complaints, a connection lost and regained.
  // Default: standard error.
  std::function<void(std::string_view)> log;
  // When the connection is lost: makes a new one and attaches as the mounting user
  // again, returning it and its root fid (the rest of mount()'s arguments, anew). Called
  // from the bridge's redialer thread, with backoff, until it succeeds or the mount ends.
  // Empty: a lost connection stays lost, and every request fails with ENOTCONN.
  std::function<result<std::pair<std::unique_ptr<client>, std::uint32_t>>()> redial;
  std::uint32_t redial_min_ms = 100;    // the first wait after a failed redial, doubled each time
  std::uint32_t redial_max_ms = 5000;   // ... up to this
  std::uint32_t redial_check_ms = 500;  // how often an idle mount looks at its connection
};

// The errno for a 9P error string, from srv9p's one table (srv9p/errno.hpp) that covers
// every string in srv9p/errors.hpp plus the Plan 9 kernel's wordings of the same errors.
// An exact match wins; then the table's phrases are looked for inside the text (servers
// prefix context: "'a/b': file does not exist"). Unknown text is EIO and *known is set
// false, so that the caller logs it.
int errno_of(std::string_view ename, bool* known = nullptr);

class fuse_bridge {
 public:
  // Creates a FUSE session over c, attached at root (the fid attach() returned), and
  // mounts it at opts.mountpoint: mount(2) when root, else fusermount3 (libfuse chooses).
  // c must be connected; the bridge owns it from here. Errors: a -o option libfuse does
  // not know, or the mount's refusal, with libfuse's own words.
  static result<std::unique_ptr<fuse_bridge>> mount(std::unique_ptr<client> c, std::uint32_t root,
                                                    fuse_options opts);
  // Unmounts (if still mounted) and closes the connection.
  ~fuse_bridge();
  fuse_bridge(const fuse_bridge&) = delete;
  fuse_bridge& operator=(const fuse_bridge&) = delete;

  // Serves FUSE requests until the file system is unmounted (umount, fusermount3 -u) or
  // SIGINT, SIGTERM or SIGHUP arrives; then unmounts. Returns 0, or libfuse's -errno.
  int serve();

 private:
  struct impl;
  explicit fuse_bridge(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
};

// Unmounts a FUSE mount at mountpoint: umount2(2) when root, else `fusermount3 -u`.
// lazy detaches it now even while files are open (MNT_DETACH, fusermount3 -z).
// Errors: umount2's or fusermount3's complaint ("not mounted", "device busy").
result<void> fuse_unmount(const std::string& mountpoint, bool lazy);

}  // namespace fsclient
