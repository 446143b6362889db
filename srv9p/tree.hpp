#pragma once
// The file-tree API that Galaxy's servers (the example ramfs, galaxy-node, galaxy-sched)
// declare their trees with, in the spirit of Plan 9's lib9p Srv and the kernel's Dirtab.
//
// The framework (srv9p/server.*) keeps every fid, its path (so ".." needs nothing from a
// tree), its open mode and its per-open state; it checks permissions against the attach
// name and answers the protocol errors itself. A tree only says what its files are and
// what reading and writing them does:
//
//   - Synchronous hooks, enough for most trees: attach, walk1, list, stat1.
//   - Request handlers (open, create, read, write, remove, stat, wstat, and walk as a
//     whole) that get a `request` and answer it exactly once, now or later. A blocking
//     read is a parked request kept in a list, not a thread; on_flush() tells the tree
//     when Tflush cancels it. The defaults are built on the hooks above, so a tree
//     overrides only what it needs (a relay to another server overrides walk and read).
//   - clunk(), called once for every fid that goes away (Tclunk, Tremove, Tversion,
//     hang-up), so per-open resources are released.
//
// Static directories are tables (dirtab_entry) turned into walk and list results by one
// generic function, as devgen() does; levels that change at run time get a generator.
// Everything runs on the server's executor; a request may be answered from another
// thread (the answer is dispatched to the executor).
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "srv9p/auth.hpp"
#include "srv9p/fcall.hpp"

namespace srv9p {

class session;
namespace detail {
struct pending;
struct path_elem;
struct auth_state;
}  // namespace detail

// Per-open state a tree attaches to a fid at open or create; destroyed at clunk.
struct open_state {
  virtual ~open_state() = default;
};

// A fid as the framework keeps it. Trees read it; they own only aux.
class fid {
 public:
  std::uint32_t num() const { return num_; }
  // The file the fid refers to, as last walked, created or stat'ed.
  const dir& file() const;
  // The name the fid was attached with, as proven at attach (the user, for permission
  // checks): who().uname.
  const std::string& uname() const { return who_.uname; }
  // Who attached: the name, the local uid if a local user, and how it was proven. Made
  // once at Tattach and copied to every fid walked from it.
  const identity& who() const { return who_; }
  // The connection the fid belongs to: a number given to each session when it is made,
  // never reused in this process. A tree tells one client's connection from another's by
  // it (galaxy-node's lease is held by one connection, node/tree.hpp).
  std::uint64_t session_id() const { return session_id_; }
  bool is_open() const { return open_; }
  std::uint8_t mode() const { return mode_; }  // the Topen mode, OTRUNC etc. included
  bool is_dir() const { return (file().qid.type & qtdir) != 0; }
  // The file's parent directory (the file itself at the root).
  const dir& parent() const;
  // In tree::clunk: whether the fid goes at the client's word (Tclunk, or Tremove) rather
  // than because its connection ended or started over (hang-up, Tversion). A tree
  // completes what a client left pending (a ctl line without a newline) only then: a
  // client that died mid-line meant nothing by its half (attack on issue 14).
  bool clunked_by_client() const { return by_client_; }

  std::unique_ptr<open_state> aux;  // the tree's per-open state

 private:
  friend class session;
  friend class request;
  std::uint32_t num_ = nofid;
  // Requests still outstanding on this fid, and whether the client has let go of it: the
  // tree's clunk hook runs when both say so, so a parked read never loses its aux.
  int outstanding_ = 0;
  bool clunked_ = false;
  bool by_client_ = false;  // clunked_by_client()
  identity who_;
  std::uint64_t session_id_ = 0;
  std::shared_ptr<const detail::path_elem> path_;
  // Set on an afid made by Tauth: its credential and verification (srv9p/server.cpp).
  // Trees never see such a fid.
  std::shared_ptr<detail::auth_state> auth_;
  bool open_ = false;
  std::uint8_t mode_ = 0;
  // Directory reads: the entries listed at offset 0, the offset the next read must use,
  // and the index of the next entry to send (read(5): offset continues where the last
  // read ended).
  std::vector<dir> dir_entries_;
  std::uint64_t dir_next_offset_ = 0;
  std::size_t dir_next_index_ = 0;
  // 9P2000.L Treaddir (srv9p/server_dotl.cpp): the listing taken at offset 0, "." and ".."
  // first; an entry's offset[8] is its index + 1 in it.
  std::vector<dirent> dirents_;
  bool dirents_valid_ = false;
  friend class tree;
};

// A connection a tree took from the server (request::hand_off), as Plan 9's import turns
// a connection around: after the answer has been written, the session is over (its fids
// clunked) and the socket is the receiver's.
struct handoff {
  int fd = -1;     // the connected socket, owned by the receiver (it may be non-blocking)
  peer_info peer;  // what the transport said about the peer
  identity who;    // who wrote the request that took it
};
using handoff_fn = std::function<void(handoff)>;

// One outstanding request. A cheap handle: copies refer to the same request. Answer it
// exactly once with respond*() or error(); an answer after a Tflush or after the
// connection went away is dropped silently, so a tree never has to check.
class request {
 public:
  explicit request(std::shared_ptr<detail::pending> p) : p_(std::move(p)) {}

  std::uint16_t tag() const;
  const message& t() const;
  template <class T>
  const T& get() const { return std::get<T>(t()); }
  // The fid the request names (for Twalk the source fid). Valid until answered.
  srv9p::fid& fid() const;
  const std::string& uname() const { return fid().uname(); }
  // The most data one Twrite or Rread can carry on this connection: the negotiated msize
  // less iohdrsz (24), in bytes; 0 for a request that came from no session. A client
  // that splits a long write sends pieces of exactly this size (plan9port's lib9pclient,
  // v9fs), so a ctl file takes such a write as part of a longer line.
  std::uint32_t max_write() const;

  // Answers with the R-message that matches t() (rread for tread, ...). For Twalk use
  // respond_walk, for Tcreate respond_create.
  void respond(message r) const;
  // Twalk: the files walked to, one per name in order. Fewer than asked is a partial
  // walk (walk(5)); none at all must be an error() instead.
  void respond_walk(std::vector<dir> walked) const;
  // Tcreate: the new file; the fid now refers to it, open in the requested mode.
  void respond_create(dir created) const;
  // Answers Rerror. Keep ename under errmax bytes; use the strings in srv9p/errors.hpp.
  void error(std::string_view ename) const;

  // Twrite to a file for which tree::hands_off was true: answers with r (an Rwrite) and
  // then takes the connection: once the answer has been written, the session ends (every
  // other request aborted, every fid clunked, nothing more read) and take gets the
  // socket, on the executor. No byte after the Twrite has been read (the server stops
  // reading while such a write is outstanding, and refused it if any had arrived with
  // it), so the connection may be spoken on at once by a new protocol. On a session
  // without a transport (tests, the fuzzer) or for any other request, answers
  // err::handoff_refused and take is never called; if the connection goes first, take
  // is dropped and the socket closed.
  void hand_off(message r, handoff_fn take) const;

  // Called on the executor if Tflush (or a hang-up, or Tversion) cancels the request
  // before it is answered: the tree should forget it (take it off its wait list).
  void on_flush(std::function<void()> hook) const;
  // True once answered, flushed or orphaned.
  bool done() const;

 private:
  std::shared_ptr<detail::pending> p_;
};

// Permission check, stat(5)/Plan 9 style: owner bits when uname is the file's uid, group
// bits when it is the gid, else other bits. need is a mask of 4 (read), 2 (write), 1 (exec).
// Trees with groups of several members use tree::permitted, which asks tree::in_group.
bool permitted(const dir& f, std::string_view uname, std::uint32_t need);

class tree {
 public:
  virtual ~tree() = default;

  // ---- Synchronous hooks -------------------------------------------------------------

  // attach(5): the root directory for this user. aname selects a tree ("" is the default).
  // Errors: e.g. err::not_found for an unknown aname, err::perm.
  virtual std::expected<dir, std::string> attach(std::string_view uname, std::string_view aname) = 0;

  // walk(5), one element. The framework has checked that parent is a directory the user
  // may search (x), and that name is not "", "." or ".." and has no '/'. Return the child
  // or an error (err::not_found).
  virtual std::expected<dir, std::string> walk1(const dir& parent, std::string_view name,
                                                std::string_view uname) = 0;

  // The entries of directory d, for directory reads; called at offset 0 of each listing.
  // Default: no entries.
  virtual std::expected<std::vector<dir>, std::string> list(const dir& d, std::string_view uname);

  // The file's current dir (a fresh length, mtime). Default: f unchanged.
  virtual std::expected<dir, std::string> stat1(const dir& f);

  // Group membership for permission checks: whether uname is a member of group gid.
  // Default: only the user of the same name (Plan 9's convention of a group per user).
  // Trees with an admin group (several --admin users, root) override it.
  virtual bool in_group(std::string_view uname, std::string_view gid) const { return uname == gid; }
  // stat(5) permission check with this tree's groups: owner bits when uname is the file's
  // uid, group bits when in_group(uname, gid), else other bits. need: 4 read, 2 write,
  // 1 exec (search), ORed.
  bool permitted(const dir& f, std::string_view uname, std::uint32_t need) const;

  // Whether a Twrite to f may take the connection (request::hand_off). While such a write
  // is outstanding the server reads nothing more from the connection, and a Twrite to it
  // that arrived with more bytes behind it is refused (err::handoff_trailing) before the
  // tree sees it. Default: no file does.
  virtual bool hands_off(const dir& f) const {
    (void)f;
    return false;
  }

  // ---- Request handlers; the defaults build on the hooks ----------------------------

  // Twalk with at least one name. The framework has checked fid and newfid. Default: walk1
  // per name, with ".." taken from the fid's path and x permission checked per directory.
  virtual void walk(request r);
  // Topen. The framework has checked: fid not open; permission for the mode (OTRUNC needs
  // write); no write on a directory. Default: Ropen with the file's qid, iounit 0.
  virtual void open(request r);
  // Tcreate. The framework has checked: fid is an unopened directory the user may write;
  // the name is legal. Default: err::no_create.
  virtual void create(request r);
  // Tread. The framework has checked the fid is open for reading and clamped count to
  // msize - IOHDRSZ. Default: directories are read from list() (whole entries, offsets as
  // read(5) requires); files answer err::perm.
  virtual void read(request r);
  // Twrite. The framework has checked the fid is open for writing and is not a directory.
  // Default: err::perm.
  virtual void write(request r);
  // Tremove. The fid is clunked whatever the answer. The framework has checked
  // may_remove(). Default: err::no_remove.
  virtual void remove(request r);
  // Whether the user of fid f may remove its file, asked by the framework before
  // remove(); false is err::perm (the fid clunked all the same). parent is the file's
  // parent as stat1 gives it now (the file itself at the root). Default: remove(5)'s
  // rule, write permission on the parent. A tree whose removable directories sit in a
  // read-only directory (galaxy-node's task/N in task/, 0555) overrides it with its own
  // rule, and must then keep the rule at least as strict for everyone else.
  virtual bool may_remove(const srv9p::fid& f, const dir& parent) const;
  // Tstat. Default: Rstat with stat1(fid.file()).
  virtual void stat(request r);
  // Twstat. Default: a wstat that changes nothing, or that truncates a writable file to
  // length 0 and at most sets its atime and mtime too, succeeds and does nothing (shells
  // open ctl files with O_TRUNC; Linux's v9fs then sends a Twstat of length 0 with mtime
  // set to now, fs/9p/vfs_inode.c v9fs_vfs_setattr); anything else is err::no_wstat.
  virtual void wstat(request r);
  // A fid is going away (Tclunk, Tremove, Tversion, hang-up). Release per-fid resources;
  // fid.aux is destroyed after this returns. Default: nothing.
  virtual void clunk(srv9p::fid& f);

 protected:
  // The directory-read machinery behind the default read(): serves r from entries,
  // honouring read(5)'s offset rule; call it from an overriding read() for directories.
  void read_dir(request r);
};

// ---- Answers to Tread ------------------------------------------------------------------

// Answers a Tread of a synthetic file from its whole text: the slice at the read's offset
// and count (read(5)); an empty Rread at or past the end.
void respond_text(const request& r, std::string_view text);
// Answers a Tread from a file on disk (pread at the read's offset and count): the bytes,
// an empty Rread at the end. Errors: err::not_found if it cannot be opened, err::io if
// the read fails.
void respond_file(const request& r, const std::string& path);

// ---- Tables, as the kernel's Dirtab --------------------------------------------------

// qid.path for table-declared files: the file's kind in the top 16 bits, an instance
// number (task id, cpu number, ...) below.
constexpr std::uint64_t qpath(std::uint16_t kind, std::uint64_t instance) {
  return (static_cast<std::uint64_t>(kind) << 48) | (instance & 0xFFFFFFFFFFFFull);
}
constexpr std::uint16_t qkind(std::uint64_t path) { return static_cast<std::uint16_t>(path >> 48); }
constexpr std::uint64_t qinstance(std::uint64_t path) { return path & 0xFFFFFFFFFFFFull; }

struct dirtab_entry {
  std::string_view name;
  std::uint16_t kind;   // the tree's own file kind, an enum value
  std::uint32_t perm;   // permission bits, with dmdir for directories
};

// The dir of one table entry for the given instance and owner.
dir dirtab_dir(const dirtab_entry& e, std::uint64_t instance, std::string_view uid,
               std::string_view gid);
// devgen: the entry named name, as a dir, or err::not_found.
std::expected<dir, std::string> dirtab_walk(std::span<const dirtab_entry> table, std::string_view name,
                                            std::uint64_t instance, std::string_view uid,
                                            std::string_view gid);
// Every entry of the table, as dirs (for list()).
std::vector<dir> dirtab_list(std::span<const dirtab_entry> table, std::uint64_t instance,
                             std::string_view uid, std::string_view gid);

}  // namespace srv9p
