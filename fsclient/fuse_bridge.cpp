// The FUSE3 bridge (fsclient/fuse_bridge.hpp).
//
// Arrangement: one `state` per mount holds the client, the node table and the options;
// the handlers are free functions in one const fuse_lowlevel_ops table (ops, at the end),
// in the manner of libfuse's hello_ll.c. Each handler replies exactly once, on every
// path. They run on libfuse's worker threads and use the client's blocking calls, except
// read, which replies from the client's reader thread when Rread comes (a read blocked in
// the server holds no thread). Reads and writes, which may block in the server, turn the
// kernel's FUSE_INTERRUPT into a Tflush of the outstanding request (flush(5)).
//
// Node ids and fids. The kernel names files by node id; 9P names them by fid. Every node
// id the kernel knows stands for *walked, never opened* fids on the server, one per user
// that has used the node, kept in `inodes` with the file's qid, its path (the names from
// the root, as last looked up) and the kernel's lookup count:
//   - A user is the mounting user (every request, unless per-user mode) or, in per-user
//     mode, the uid FUSE reports for the request (fuse_req_ctx). Each request uses the
//     fids of its user only, so what the server allows is what it allows that user.
//   - FUSE_ROOT_ID's fids are the users' attach fids: the mounting user's is the fid
//     mount() was given; another uid's is attached on its first request, as its login
//     name (getpwuid_r), and kept for the life of the mount. A uid with no name is EACCES.
//   - lookup walks one name from the parent's fid (the caller's) to a new fid and stats
//     it. If a node with that qid.path is already known, its count goes up, its path is
//     updated, and the new fid becomes the caller's fid of it if the caller had none, else
//     is clunked; otherwise it becomes a new node id (the next number; ids are never
//     reused). create and mkdir add a node the same way. Each successful reply of an entry
//     counts one lookup; a reply the kernel refused (the request was interrupted) is undone.
//   - The kernel shares node ids among users: bob may stat or open a node that only alice
//     looked up. A user without a fid of the node gets one by walking the node's path from
//     their own attach fid (the server checks their search permission on the way), kept
//     on the node for their next request.
//   - forget subtracts the kernel's count; at zero the node is dropped and all its fids
//     clunked. The kernel forgets only nodes no request is using, so a handler may use a
//     node's fid without holding the lock.
//   - Opening (open, opendir, create) clones the caller's fid of the node with a
//     zero-name walk and opens the clone; that fid is the FUSE file handle's and is
//     clunked at release. So node fids are never open and can always be walked from,
//     stat'ed and wstat'ed; and an open file stays its opener's, whoever reads it later.
// A 9P fid follows its file through renames; a rename through the mount also renames the
// paths of the nodes below (a rename by another client leaves a path stale until the next
// lookup, and a user who needs a fid by that path meanwhile gets ENOENT). After a
// successful remove the qid.path is taken out of by_path, so that a server that reuses
// paths cannot hand a new file the old node.
//
// Redialling. A connection and its generation make a `session`; each request takes the
// current one when it starts (state::live) and does all its work on it, and the node
// table holds fids of the current session only. When the server hangs up (the client's
// reader sees end of file), every request waiting on it fails with "connection closed",
// answered EIO, and the redialer thread (redial_loop, at the end) logs one line and calls
// fuse_options::redial with backoff until it has a new connection and root fid. Until
// then new requests fail at once with ENOTCONN. state::install then takes every fid off
// every node (they died with the connection: nothing to clunk) and gives the root node
// the new root fid; node ids, paths and lookup counts stay, so the kernel's nodes stay
// valid: the next request on a node walks its path again from the caller's attach (other
// users in per-user mode attach again on their first request, with a fresh credential,
// since MUNGE refuses a replayed one). Open files and directories keep the client they
// were opened on and fail with EIO until released. A request that started on the old
// session and finishes after the install keeps none of its fids (keep_fid, add_lookup
// check the generation). The redialer notices a hang-up within redial_check_ms even when
// nobody uses the mount, or at once when a request sees it.
#define FUSE_USE_VERSION 312
#include "fsclient/fuse_bridge.hpp"

#include <fuse_lowlevel.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fmt/core.h>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "srv9p/errno.hpp"
#include "srv9p/errors.hpp"

extern char** environ;

namespace fsclient {
namespace {

using srv9p::message;
namespace err = srv9p::err;

// ---- Errors ---------------------------------------------------------------------------

// 9P error strings become errnos through srv9p's one table (srv9p/errno.hpp).

// ---- Small helpers ----------------------------------------------------------------------

template <class R>
result<R> expect(client::reply r) {
  if (!r) return std::unexpected(std::move(r.error()));
  if (auto* p = std::get_if<R>(&*r)) return std::move(*p);
  return std::unexpected(std::string(err::botch) + ": unexpected " +
                         std::string(srv9p::type_name(srv9p::type_of(*r))));
}

// st_ino for a qid: its path, moved off 0 (some programs skip entries with inode 0).
ino_t ino_of(const srv9p::qid& q) { return q.path + 1 != 0 ? q.path + 1 : 1; }

// open(2) flags to a 9P open mode, open(5). O_TRUNC becomes OTRUNC (the shell's `>` on a
// ctl file); O_APPEND is done by the bridge at each write.
std::uint8_t open_mode(int flags) {
  std::uint8_t m;
  switch (flags & O_ACCMODE) {
    case O_WRONLY: m = srv9p::owrite; break;
    case O_RDWR: m = srv9p::ordwr; break;
    default: m = srv9p::oread; break;
  }
  if (flags & O_TRUNC) m |= srv9p::otrunc;
  return m;
}

// The libfuse log goes to the current mount's log function (one mount per process).
std::mutex log_mu;
std::function<void(std::string_view)>* log_sink = nullptr;
std::string last_fuse_message;

void fuse_log_to_sink(enum fuse_log_level, const char* fmt, va_list ap) {
  char buf[1024];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  std::string_view s(buf);
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  std::lock_guard lk(log_mu);
  last_fuse_message = s;
  if (log_sink != nullptr && *log_sink) (*log_sink)(s);
}

// ---- The mount's state ------------------------------------------------------------------

// One user's walked, never opened fid of a node.
struct user_fid {
  uid_t uid;
  std::uint32_t fid;
};

struct inode {
  srv9p::qid qid;
  std::uint64_t nlookup = 0;         // the kernel's lookup count
  std::vector<std::string> path;     // names from the root, as last looked up
  std::vector<user_fid> fids;        // at most one per user; few users per node

  std::optional<std::uint32_t> fid_of(uid_t u) const {
    for (const auto& f : fids) {
      if (f.uid == u) return f.fid;
    }
    return std::nullopt;
  }
};

struct flushable;

// A read sent before the kernel asked for it (see op_read).
struct read_ahead {
  std::uint64_t off = 0;
  std::uint32_t count = 0;
  bool done = false;                 // r holds the reply
  client::reply r;
  fuse_req_t waiter = nullptr;       // the kernel's read of the same piece, waiting for it
  std::shared_ptr<flushable> flush;       // its ticket: the waiter's interrupt, release
};

// An open file: fi->fh points at a std::shared_ptr<open_file>, shared with the
// callbacks of its reads still in flight.
struct open_file {
  std::shared_ptr<client> c;         // the connection it was opened on (see "Redialling")
  std::uint32_t fid = srv9p::nofid;  // opened
  std::uint32_t iounit = 0;          // the most data one Tread/Twrite carries
  bool append = false;               // O_APPEND: each write goes to the current end
  // Read-ahead, for plain files with a length opened only for reading: [0, length).
  bool readahead = false;
  std::uint64_t length = 0;
  std::mutex mu;                     // guards what follows
  std::uint64_t requested_end = 0;   // the end of the furthest read sent so far
  std::shared_ptr<read_ahead> ahead; // at most one
  bool closed = false;
};
using file_ref = std::shared_ptr<open_file>;

file_ref& file_of(fuse_file_info* fi) { return *reinterpret_cast<file_ref*>(fi->fh); }

// An open directory: its entries, read whole at opendir and at each rewind.
struct open_dir {
  std::shared_ptr<client> c;         // the connection it was opened on
  std::uint32_t fid = srv9p::nofid;
  srv9p::qid qid;
  std::mutex mu;
  bool loaded = false;
  std::vector<srv9p::dir> entries;
};

// Clunks without waiting; the fid number is reused after Rclunk (or the hang-up).
void clunk_later(client& c, std::uint32_t fid) {
  client* cl = &c;
  cl->send(srv9p::tclunk{fid}, [cl, fid](client::reply) { cl->release_fid(fid); });
}

// One connection to the server, as a request saw it: the client and its generation (1
// for the connection mount() was given, one more for each redial). A request does all
// its work on the session it started with; the node table holds fids of the current
// generation only.
struct session {
  std::shared_ptr<client> c;
  std::uint64_t gen = 0;

  void clunk_later(std::uint32_t fid) const { fsclient::clunk_later(*c, fid); }
};

struct state;

// The thread that redials a lost connection (see "Redialling" above), with what it
// shares with serve(). Held by a shared_ptr, so that a thread still stuck in a dial when
// the mount ends may be left to finish on its own: once stop is set it touches nothing
// of the mount's.
struct redialer {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;   // the mount is ending
  bool woken = false;  // a request saw the connection gone: look now
  bool done = false;   // the thread has returned
  std::function<result<std::pair<std::unique_ptr<client>, std::uint32_t>>()> redial;
  std::thread thread;

  void wake() {
    std::lock_guard lk(mu);
    woken = true;
    cv.notify_all();
  }
};

struct state {
  fuse_options opts;
  fuse_session* se = nullptr;
  bool mounted = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::uint32_t io_bytes = 0;  // max_write and the largest read: min(iounit, FUSE's buffer)
  std::shared_ptr<redialer> rd;  // null without opts.redial; set by serve() before any request

  std::mutex mu;  // guards the session and the node table (taken after rd->mu, never before)
  session cur;    // the current connection
  std::unordered_map<fuse_ino_t, inode> inodes;
  std::unordered_map<std::uint64_t, fuse_ino_t> by_path;  // qid.path → node id
  fuse_ino_t next_ino = FUSE_ROOT_ID + 1;

  void log(std::string_view s) const {
    if (opts.log) opts.log(s);
  }

  // The user a request acts for (see the opening comment).
  uid_t user_of(fuse_req_t req) const { return opts.per_user ? fuse_req_ctx(req)->uid : uid; }

  // The session for a new request: the current one, if its connection is up. Else none
  // (the caller answers ENOTCONN) and the redialer is told to look now.
  std::optional<session> live() {
    session ss;
    {
      std::lock_guard lk(mu);
      ss = cur;
    }
    if (ss.c->connected()) return ss;
    if (rd) rd->wake();
    return std::nullopt;
  }

  // A new connection replaces the lost one: every fid of the old session is dead with it
  // (nothing to clunk), so each node keeps its path and loses its fids, which are walked
  // again on the new session when next needed; the root keeps its node id and gets
  // root, the mounting user's new attach fid. Other users attach again on their next
  // request. Open files keep the old client and fail with EIO. Returns the old session,
  // for the caller to let go of with no lock held (its client's destructor joins its
  // reader thread, whose last callbacks may want locks).
  session install(std::unique_ptr<client> c, std::uint32_t root) {
    std::lock_guard lk(mu);
    session old = std::move(cur);
    for (auto& [ino, n] : inodes) n.fids.clear();
    inodes.at(FUSE_ROOT_ID).fids.push_back({uid, root});
    cur = session{std::shared_ptr<client>(std::move(c)), old.gen + 1};
    return old;
  }

  // Gives node ino user u's fid f, made on session ss, unless u has one already (another
  // request of u's got there first): then f is clunked. If ss is no longer current, f
  // died with its connection and is not kept. Returns the fid the caller should use.
  std::uint32_t keep_fid(const session& ss, fuse_ino_t ino, uid_t u, std::uint32_t f) {
    std::optional<std::uint32_t> had;
    {
      std::lock_guard lk(mu);
      if (ss.gen != cur.gen) return f;
      auto it = inodes.find(ino);
      if (it == inodes.end()) {
        had = srv9p::nofid;  // forgotten meanwhile: cannot happen while a request uses it
      } else if (!(had = it->second.fid_of(u))) {
        it->second.fids.push_back({u, f});
      }
    }
    if (!had) return f;
    ss.clunk_later(f);
    return *had;
  }

  // User u's attach fid on session ss: attached on u's first request (of the session) as
  // u's login name, then kept. Errors: the name unknown, the attach refused, or ss gone.
  result<std::uint32_t> user_root(const session& ss, uid_t u) {
    {
      std::lock_guard lk(mu);
      if (ss.gen != cur.gen) return std::unexpected(std::string(err::hungup));
      if (auto f = inodes.at(FUSE_ROOT_ID).fid_of(u)) return *f;
    }
    std::string name;
    {
      passwd pw{};
      passwd* found = nullptr;
      std::vector<char> buf(16384);
      if (::getpwuid_r(u, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
        return std::unexpected(fmt::format("uid {} has no user name here: {}", u, err::perm));
      }
      name = found->pw_name;
    }
    auto f = ss.c->attach(name, opts.aname);
    if (!f) {
      if (f.error() != err::hungup) log(fmt::format("attach as {} (uid {}) refused: {}", name, u, f.error()));
      return std::unexpected(std::move(f.error()));
    }
    return keep_fid(ss, FUSE_ROOT_ID, u, *f);
  }

  // The fid of node ino for user u on session ss: the one u has, or one walked along the
  // node's path from u's attach fid (so after a redial, a node the kernel still knows is
  // found again by its path). The kernel asks only about nodes it has not forgotten, so an
  // unknown node is a kernel/bridge disagreement: EIO (logged) rather than a crash.
  // Errors: u's attach or walk refused, in the server's words (the walk's names the
  // missing element); "connection closed" if ss is no longer current.
  result<std::uint32_t> fid_for(const session& ss, uid_t u, fuse_ino_t ino) {
    std::string path;
    std::vector<std::string> names;
    {
      std::lock_guard lk(mu);
      if (ss.gen != cur.gen) return std::unexpected(std::string(err::hungup));
      auto it = inodes.find(ino);
      if (it == inodes.end()) {
        log(fmt::format("FUSE asked about node {}, which the bridge does not know", ino));
        return std::unexpected(std::string(err::botch));
      }
      if (auto f = it->second.fid_of(u)) return *f;
      // 9P names hold no '/', and the kernel looks up single names, so the join is exact.
      names = it->second.path;
      for (const auto& n : names) path += (path.empty() ? "" : "/") + n;
    }
    auto root = user_root(ss, u);
    if (!root || ino == FUSE_ROOT_ID) return root;
    auto f = ss.c->walk(*root, path);
    if (!f) return std::unexpected(why_walk_failed(ss, *root, names, f.error()));
    return keep_fid(ss, ino, u, *f);
  }

  // Why a walk of names from fid failed. walk(5) answers a walk that stops after the
  // first name with an Rwalk of fewer qids, which gives no reason, so the names are
  // walked again one at a time, each from the last, until the server says what is wrong
  // (permission denied, rather than the file does not exist). Else: what the walk said.
  std::string why_walk_failed(const session& ss, std::uint32_t fid, const std::vector<std::string>& names,
                              std::string said) {
    client& c = *ss.c;
    auto nf = c.alloc_fid();
    if (!expect<srv9p::rwalk>(c.rpc(srv9p::twalk{fid, nf, {}}))) {
      c.release_fid(nf);
      return said;
    }
    for (const auto& n : names) {
      auto w = expect<srv9p::rwalk>(c.rpc(srv9p::twalk{nf, nf, {n}}));
      if (!w) {
        said = std::move(w.error());
        break;
      }
    }
    ss.clunk_later(nf);
    return said;
  }

  // The path of node ino's child name (for a lookup from it).
  std::vector<std::string> child_path(fuse_ino_t parent, std::string_view name) {
    std::lock_guard lk(mu);
    std::vector<std::string> p;
    if (auto it = inodes.find(parent); it != inodes.end()) p = it->second.path;
    p.emplace_back(name);
    return p;
  }

  // Counts one lookup, by user u on session ss, of the file that fid was just walked to
  // along path (see the opening comment). Returns the node id; fid is u's fid of the node
  // from now on, or clunked if u had one already, or dropped if ss is gone (the node is
  // counted all the same: the kernel gets the entry).
  fuse_ino_t add_lookup(const session& ss, uid_t u, std::uint32_t fid, const srv9p::qid& q,
                        std::vector<std::string> path) {
    std::optional<std::uint32_t> spare;
    fuse_ino_t ino;
    {
      std::lock_guard lk(mu);
      bool stale = ss.gen != cur.gen;
      auto it = by_path.find(q.path);
      if (it != by_path.end()) {
        ino = it->second;
        inode& n = inodes.at(ino);
        n.nlookup++;
        n.qid = q;
        n.path = std::move(path);
        if (stale) {
          // fid died with its connection
        } else if (n.fid_of(u)) {
          spare = fid;
        } else {
          n.fids.push_back({u, fid});
        }
      } else {
        ino = next_ino++;
        std::vector<user_fid> fids;
        if (!stale) fids.push_back({u, fid});
        inodes.emplace(ino, inode{q, 1, std::move(path), std::move(fids)});
        by_path.emplace(q.path, ino);
      }
    }
    if (spare) ss.clunk_later(*spare);
    return ino;
  }

  // forget(ino, n): drops the node and clunks its fids when its count reaches zero.
  void forget(fuse_ino_t ino, std::uint64_t n) {
    std::vector<user_fid> gone;
    std::shared_ptr<client> c;  // the fids' connection: the current one
    {
      std::lock_guard lk(mu);
      auto it = inodes.find(ino);
      if (it == inodes.end()) return;
      inode& node = it->second;
      node.nlookup -= std::min(n, node.nlookup);
      if (node.nlookup > 0 || ino == FUSE_ROOT_ID) return;
      if (auto p = by_path.find(node.qid.path); p != by_path.end() && p->second == ino) by_path.erase(p);
      gone = std::move(node.fids);
      inodes.erase(it);
      c = cur.c;
    }
    for (const auto& f : gone) clunk_later(*c, f.fid);
  }

  // parent/name was renamed to parent/newname through the mount: the paths of that node
  // and of every node below it follow.
  void renamed(fuse_ino_t parent, std::string_view name, std::string_view newname) {
    std::lock_guard lk(mu);
    auto pit = inodes.find(parent);
    if (pit == inodes.end()) return;
    const std::vector<std::string> prefix = pit->second.path;
    const std::size_t at = prefix.size();
    for (auto& [ino, n] : inodes) {
      if (n.path.size() > at && n.path[at] == name && std::equal(prefix.begin(), prefix.end(), n.path.begin())) {
        n.path[at] = newname;
      }
    }
  }

  // A file with this path was removed: later lookups must not find its node.
  void removed(std::uint64_t qid_path) {
    std::lock_guard lk(mu);
    by_path.erase(qid_path);
  }

  // Per-user mode shows owners as local ids: the server's user and group names through
  // NSS (getpwnam_r, getgrnam_r), cached; a name unknown here shows as the overflow id
  // 65534, as NFS shows one. The cache is emptied when a server's names would grow it
  // past 4096.
  mutable std::mutex ids_mu;
  mutable std::unordered_map<std::string, std::uint32_t> ids[2];  // [0] groups, [1] users

  template <class Id>
  Id local_id(const std::string& name, bool user) const {
    {
      std::lock_guard lk(ids_mu);
      if (auto it = ids[user].find(name); it != ids[user].end()) return static_cast<Id>(it->second);
    }
    std::uint32_t id = 65534;
    std::vector<char> buf(16384);
    if (user) {
      passwd pw{};
      passwd* found = nullptr;
      if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) id = found->pw_uid;
    } else {
      group gr{};
      group* found = nullptr;
      if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) == 0 && found != nullptr) id = found->gr_gid;
    }
    std::lock_guard lk(ids_mu);
    if (ids[user].size() >= 4096) ids[user].clear();
    ids[user].emplace(name, id);
    return static_cast<Id>(id);
  }

  struct stat to_stat(const srv9p::dir& d) const {
    struct stat st {};
    st.st_ino = ino_of(d.qid);
    bool is_dir = (d.mode & srv9p::dmdir) != 0;
    st.st_mode = (is_dir ? S_IFDIR : S_IFREG) | (d.mode & 0777);
    st.st_nlink = is_dir ? 2 : 1;
    st.st_uid = opts.per_user ? local_id<uid_t>(d.uid, true) : uid;
    st.st_gid = opts.per_user ? local_id<gid_t>(d.gid, false) : gid;
    st.st_size = static_cast<off_t>(d.length);
    // st_blksize is what cat and cp size their buffers by: one 9P message's worth.
    st.st_blksize = static_cast<blksize_t>(io_bytes);
    st.st_blocks = static_cast<blkcnt_t>((d.length + 511) / 512);
    st.st_atim.tv_sec = d.atime;
    st.st_mtim.tv_sec = d.mtime;
    st.st_ctim.tv_sec = d.mtime;
    return st;
  }

  fuse_entry_param entry(fuse_ino_t ino, const srv9p::dir& d) const {
    fuse_entry_param e{};
    e.ino = ino;
    e.generation = 1;
    e.attr = to_stat(d);
    e.attr_timeout = opts.attr_timeout_s;
    e.entry_timeout = opts.attr_timeout_s;
    return e;
  }
};

state& of(fuse_req_t req) { return *static_cast<state*>(fuse_req_userdata(req)); }

void reply_errno(fuse_req_t req, int code) { fuse_reply_err(req, code); }

// Replies with the errno for a 9P error; text no table entry matches is logged. A
// request whose connection hung up gets EIO, and the redialer is told.
void reply_error(fuse_req_t req, std::string_view text) {
  bool known = true;
  int code = errno_of(text, &known);
  if (!known) of(req).log(fmt::format("9P error '{}' has no errno: answering EIO", text));
  if (text == err::hungup && of(req).rd) of(req).rd->wake();
  fuse_reply_err(req, code);
}

// The session for a new request (state::live), or nullopt after answering ENOTCONN:
// there is no connection until the redialer makes one.
std::optional<session> live(fuse_req_t req) {
  auto ss = of(req).live();
  if (!ss) fuse_reply_err(req, ENOTCONN);
  return ss;
}

// ---- Interruptible requests --------------------------------------------------------------

// A 9P request the kernel may interrupt (the caller got a signal; Linux fuse/dev.c then
// sends FUSE_INTERRUPT). The interrupt sends Tflush for it (flush(5)); the server answers
// it with an error, or with its reply if that was already on its way, and the caller sees
// "interrupted" (EINTR) or the reply.
//
// Registered with libfuse *before* the request is sent: once sent, its reply may be
// answered (and the FUSE request freed) on the client's reader thread at any moment, so
// the sending thread must not touch the FUSE request after send. An interrupt that comes
// before the ticket is known is remembered and flushed right after the send.
struct flushable {
  std::mutex mu;
  std::shared_ptr<client> c;  // the connection the request went out on
  client::ticket ticket;
  bool sent = false;
  bool interrupted = false;

  void sent_as(client::ticket t) {
    std::lock_guard lk(mu);
    ticket = t;
    sent = true;
    if (interrupted) c->flush(ticket);
  }
};

void on_interrupt(fuse_req_t, void* data) {
  auto* f = static_cast<flushable*>(data);
  std::lock_guard lk(f->mu);
  if (f->sent) {
    f->c->flush(f->ticket);  // a no-op if the reply came first (client::ticket)
  } else {
    f->interrupted = true;
  }
}

// Sends t and calls done(req, reply) on the client's reader thread (or at once if the
// connection is gone), without holding a FUSE worker meanwhile: a read that blocks in
// the server costs a tag, not a thread. done must reply to req and must not block.
// libfuse runs a registered interrupt function under the request's lock, and
// unregistering takes that lock, so the flushable outlives every on_interrupt.
void send_interruptible(fuse_req_t req, const std::shared_ptr<client>& c, message t,
                        std::function<void(fuse_req_t, client::reply)> done) {
  auto f = std::make_shared<flushable>();
  f->c = c;
  fuse_req_interrupt_func(req, on_interrupt, f.get());
  auto ticket = c->send_ticket(std::move(t), [req, f, done = std::move(done)](client::reply r) {
    fuse_req_interrupt_func(req, nullptr, nullptr);
    done(req, std::move(r));
  });
  f->sent_as(ticket);
}

// The blocking form, for handlers that have more to do after the reply (write).
client::reply call(fuse_req_t req, const std::shared_ptr<client>& c, message t) {
  struct waiter {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    client::reply r;
  };
  auto w = std::make_shared<waiter>();
  auto f = std::make_shared<flushable>();
  f->c = c;
  fuse_req_interrupt_func(req, on_interrupt, f.get());
  f->sent_as(c->send_ticket(std::move(t), [w](client::reply r) {
    std::lock_guard lk(w->mu);
    w->r = std::move(r);
    w->done = true;
    w->cv.notify_all();
  }));
  {
    std::unique_lock lk(w->mu);
    w->cv.wait(lk, [&w] { return w->done; });
  }
  fuse_req_interrupt_func(req, nullptr, nullptr);
  return std::move(w->r);
}

// ---- Handlers: names ----------------------------------------------------------------------

// Walks parent/name to a new fid and stats it: one round trip (Twalk and Tstat in one
// write). Returns the fid and the entry, or the error text.
result<std::pair<std::uint32_t, srv9p::dir>> walk_stat(const session& ss, std::uint32_t parent, const char* name) {
  auto nf = ss.c->alloc_fid();
  auto rs = ss.c->rpc_batch({srv9p::twalk{parent, nf, {name}}, srv9p::tstat{nf}});
  auto w = expect<srv9p::rwalk>(std::move(rs[0]));
  if (!w || w->qids.size() != 1) {
    ss.c->release_fid(nf);  // walk(5): a failed walk makes no fid (and Tstat failed with it)
    return std::unexpected(w ? std::string(err::not_found) : std::move(w.error()));
  }
  auto st = expect<srv9p::rstat>(std::move(rs[1]));
  if (!st) {
    ss.clunk_later(nf);
    return std::unexpected(std::move(st.error()));
  }
  return std::pair{nf, std::move(st->stat)};
}

// Replies with a new entry for fid (just walked from parent to its child name, which is
// d); undoes the lookup if the kernel did not take the reply.
void reply_new_entry(fuse_req_t req, const session& ss, fuse_ino_t parent, const char* name, std::uint32_t fid,
                     const srv9p::dir& d) {
  state& s = of(req);
  fuse_ino_t ino = s.add_lookup(ss, s.user_of(req), fid, d.qid, s.child_path(parent, name));
  fuse_entry_param e = s.entry(ino, d);
  if (fuse_reply_entry(req, &e) != 0) s.forget(ino, 1);
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  state& s = of(req);
  auto ss = live(req);
  if (!ss) return;
  auto pf = s.fid_for(*ss, s.user_of(req), parent);
  if (!pf) return reply_error(req, pf.error());
  auto r = walk_stat(*ss, *pf, name);
  if (!r) return reply_error(req, r.error());
  reply_new_entry(req, *ss, parent, name, r->first, r->second);
}

void op_forget(fuse_req_t req, fuse_ino_t ino, std::uint64_t nlookup) {
  of(req).forget(ino, nlookup);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, std::size_t count, fuse_forget_data* forgets) {
  state& s = of(req);
  for (std::size_t i = 0; i < count; i++) s.forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

// ---- Handlers: attributes -------------------------------------------------------------------

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  state& s = of(req);
  auto ss = live(req);
  if (!ss) return;
  auto f = s.fid_for(*ss, s.user_of(req), ino);
  if (!f) return reply_error(req, f.error());
  auto r = expect<srv9p::rstat>(ss->c->rpc(srv9p::tstat{*f}));
  if (!r) return reply_error(req, r.error());
  struct stat st = s.to_stat(r->stat);
  fuse_reply_attr(req, &st, s.opts.attr_timeout_s);
}

// chmod, truncate, utimes as one Twstat (wstat(5): all the changes or none), then the new
// attributes from Tstat in the same write. atime cannot be set in 9P2000 and is ignored;
// 9P2000 cannot give a file away, so chown to any owner but the one shown (the mounting
// user, or in per-user mode the owner's local id) is EPERM.
void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  state& s = of(req);
  auto ss = live(req);
  if (!ss) return;
  client& c = *ss->c;
  auto f = s.fid_for(*ss, s.user_of(req), ino);
  if (!f) return reply_error(req, f.error());
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    auto cur = expect<srv9p::rstat>(c.rpc(srv9p::tstat{*f}));
    if (!cur) return reply_error(req, cur.error());
    struct stat shown = s.to_stat(cur->stat);
    if (((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != shown.st_uid) ||
        ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != shown.st_gid)) {
      return reply_errno(req, EPERM);
    }
  }
  srv9p::dir want = srv9p::dont_touch_dir();
  if (to_set & FUSE_SET_ATTR_SIZE) want.length = static_cast<std::uint64_t>(attr->st_size);
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    want.mtime = static_cast<std::uint32_t>(std::time(nullptr));
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    want.mtime = static_cast<std::uint32_t>(attr->st_mtim.tv_sec);
  }
  if (to_set & FUSE_SET_ATTR_MODE) {
    // The mode's dm* bits (directory, append, exclusive) stay as they are.
    auto cur = expect<srv9p::rstat>(c.rpc(srv9p::tstat{*f}));
    if (!cur) return reply_error(req, cur.error());
    want.mode = (cur->stat.mode & ~0777u) | (static_cast<std::uint32_t>(attr->st_mode) & 0777u);
  }
  std::vector<message> batch;
  bool changes = want != srv9p::dont_touch_dir();
  if (changes) batch.emplace_back(srv9p::twstat{*f, want});
  batch.emplace_back(srv9p::tstat{*f});
  auto rs = c.rpc_batch(std::move(batch));
  if (changes) {
    if (auto w = expect<srv9p::rwstat>(std::move(rs[0])); !w) return reply_error(req, w.error());
  }
  auto st = expect<srv9p::rstat>(std::move(rs.back()));
  if (!st) return reply_error(req, st.error());
  struct stat out = s.to_stat(st->stat);
  fuse_reply_attr(req, &out, s.opts.attr_timeout_s);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  // 9P2000 has no statfs: report the transfer size and no blocks (as 9pfuse does).
  const state& s = of(req);
  struct statvfs sv {};
  sv.f_bsize = s.io_bytes;
  sv.f_frsize = s.io_bytes;
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

// ---- Handlers: creating and removing --------------------------------------------------------

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  state& s = of(req);
  auto ss = live(req);
  if (!ss) return;
  auto pf = s.fid_for(*ss, s.user_of(req), parent);
  if (!pf) return reply_error(req, pf.error());
  // Clone the parent, create in the clone (which leaves it open on the new directory),
  // clunk it: one write.
  auto of_ = ss->c->alloc_fid();
  auto rs = ss->c->rpc_batch({srv9p::twalk{*pf, of_, {}},
                            srv9p::tcreate{of_, name, srv9p::dmdir | (mode & 0777), srv9p::oread},
                            srv9p::tclunk{of_}});
  ss->c->release_fid(of_);  // all three were answered: the clone is gone whatever happened
  if (auto w = expect<srv9p::rwalk>(std::move(rs[0])); !w) return reply_error(req, w.error());
  if (auto c = expect<srv9p::rcreate>(std::move(rs[1])); !c) return reply_error(req, c.error());
  auto r = walk_stat(*ss, *pf, name);
  if (!r) return reply_error(req, r.error());
  reply_new_entry(req, *ss, parent, name, r->first, r->second);
}

// unlink and rmdir: walk and stat the name, check it is the kind the caller meant (9P's
// remove takes either), then Tremove, which also clunks the fid.
void remove_name(fuse_req_t req, fuse_ino_t parent, const char* name, bool want_dir) {
  state& s = of(req);
  auto ss = live(req);
  if (!ss) return;
  auto pf = s.fid_for(*ss, s.user_of(req), parent);
  if (!pf) return reply_error(req, pf.error());
  auto r = walk_stat(*ss, *pf, name);
  if (!r) return reply_error(req, r.error());
  auto [fid, d] = std::move(*r);
  bool is_dir = (d.mode & srv9p::dmdir) != 0;
  if (is_dir != want_dir) {
    ss->clunk_later(fid);
    return reply_errno(req, is_dir ? EISDIR : ENOTDIR);
  }
  auto rm = expect<srv9p::rremove>(ss->c->rpc(srv9p::tremove{fid}));
  ss->c->release_fid(fid);  // remove(5): clunked even when the remove fails
  if (!rm) return reply_error(req, rm.error());
  s.removed(d.qid.path);
  fuse_reply_err(req, 0);
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) { remove_name(req, parent, name, false); }
void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) { remove_name(req, parent, name, true); }

// Renames name to newname with a Twstat of the name (stat(5): a rename within its
// directory is all 9P2000 can do; another directory is EXDEV, so mv copies and removes).
// rename(2) replaces an existing target: when the server refuses because newname
// exists, the target is removed (if it is of the same kind) and the rename tried again.
// That is two steps, not atomic, as with Linux's v9fs on 9P2000.
void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned int flags) {
  state& s = of(req);
  if (flags & RENAME_EXCHANGE) return reply_errno(req, EINVAL);
  if (newparent != parent) return reply_errno(req, EXDEV);
  auto ss = live(req);
  if (!ss) return;
  client& c = *ss->c;
  auto pf = s.fid_for(*ss, s.user_of(req), parent);
  if (!pf) return reply_error(req, pf.error());
  auto rename_once = [&s, &c, &pf, parent, name, newname]() -> result<void> {
    auto nf = c.alloc_fid();
    srv9p::dir d = srv9p::dont_touch_dir();
    d.name = newname;
    auto rs = c.rpc_batch({srv9p::twalk{*pf, nf, {name}}, srv9p::twstat{nf, d}, srv9p::tclunk{nf}});
    c.release_fid(nf);
    auto w = expect<srv9p::rwalk>(std::move(rs[0]));
    if (!w) return std::unexpected(std::move(w.error()));
    if (w->qids.size() != 1) return std::unexpected(std::string(err::not_found));
    auto ws = expect<srv9p::rwstat>(std::move(rs[1]));
    if (!ws) return std::unexpected(std::move(ws.error()));
    s.renamed(parent, name, newname);
    return {};
  };
  auto r = rename_once();
  if (r || errno_of(r.error()) != EEXIST || (flags & RENAME_NOREPLACE)) {
    return r ? reply_errno(req, 0) : reply_error(req, r.error());
  }
  auto src = walk_stat(*ss, *pf, name);
  if (!src) return reply_error(req, src.error());
  ss->clunk_later(src->first);
  auto dst = walk_stat(*ss, *pf, newname);
  if (!dst) return reply_error(req, dst.error());
  bool src_dir = (src->second.mode & srv9p::dmdir) != 0;
  bool dst_dir = (dst->second.mode & srv9p::dmdir) != 0;
  if (src_dir != dst_dir) {
    ss->clunk_later(dst->first);
    return reply_errno(req, dst_dir ? EISDIR : ENOTDIR);
  }
  auto rm = expect<srv9p::rremove>(c.rpc(srv9p::tremove{dst->first}));
  c.release_fid(dst->first);
  if (!rm) return reply_error(req, rm.error());
  s.removed(dst->second.qid.path);
  r = rename_once();
  return r ? reply_errno(req, 0) : reply_error(req, r.error());
}

// ---- Handlers: open files -------------------------------------------------------------------

// Clones a node's fid and opens the clone, and with stat also stats it: one write.
struct opened {
  std::uint32_t fid = srv9p::nofid;
  srv9p::ropen open;
  std::optional<srv9p::dir> stat;
};

result<opened> open_clone(const session& ss, std::uint32_t fid, std::uint8_t mode, bool stat = false) {
  auto nf = ss.c->alloc_fid();
  std::vector<message> batch{srv9p::twalk{fid, nf, {}}, srv9p::topen{nf, mode}};
  if (stat) batch.emplace_back(srv9p::tstat{nf});
  auto rs = ss.c->rpc_batch(std::move(batch));
  if (auto w = expect<srv9p::rwalk>(std::move(rs[0])); !w) {
    ss.c->release_fid(nf);
    return std::unexpected(std::move(w.error()));
  }
  auto o = expect<srv9p::ropen>(std::move(rs[1]));
  if (!o) {
    ss.clunk_later(nf);
    return std::unexpected(std::move(o.error()));
  }
  opened out{nf, std::move(*o), std::nullopt};
  if (stat) {
    if (auto st = expect<srv9p::rstat>(std::move(rs[2]))) out.stat = std::move(st->stat);
  }
  return out;
}

std::uint32_t file_iounit(const state& s, const client& c, std::uint32_t server_iounit) {
  // open(5): iounit 0 means "msize - IOHDRSZ"; never more than one FUSE request carries
  // (fixed at mount: a redialled connection may have a smaller msize, never a larger).
  std::uint32_t most = std::min(s.io_bytes, c.iounit());
  return server_iounit == 0 ? most : std::min(server_iounit, most);
}

// Every open is direct_io: the kernel caches no data and passes each read to us whatever
// the file's length says, so synthetic files of length 0 read to their end.
void finish_open(fuse_file_info* fi, file_ref f) {
  fi->fh = reinterpret_cast<std::uint64_t>(new file_ref(std::move(f)));
  fi->direct_io = 1;
  fi->keep_cache = 0;
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  state& s = of(req);
  auto ss = live(req);
  if (!ss) return;
  auto f = s.fid_for(*ss, s.user_of(req), ino);
  if (!f) return reply_error(req, f.error());
  std::uint8_t mode = open_mode(fi->flags);
  bool read_only = (mode & 3) == srv9p::oread && (mode & srv9p::otrunc) == 0;
  auto o = open_clone(*ss, *f, mode, read_only);
  if (!o) return reply_error(req, o.error());
  auto h = std::make_shared<open_file>();
  h->c = ss->c;
  h->fid = o->fid;
  h->iounit = file_iounit(s, *ss->c, o->open.iounit);
  h->append = (fi->flags & O_APPEND) != 0;
  // Synthetic files say length 0 (and append-only or exclusive files are not plain
  // data): only a plain file with a length is read ahead.
  if (o->stat && o->open.qid.type == srv9p::qtfile && o->stat->length > 0) {
    h->readahead = true;
    h->length = o->stat->length;
  }
  finish_open(fi, h);
  if (fuse_reply_open(req, fi) != 0) {  // interrupted: no release will come
    ss->clunk_later(h->fid);
    delete &file_of(fi);
  }
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  state& s = of(req);
  auto ss = live(req);
  if (!ss) return;
  auto pf = s.fid_for(*ss, s.user_of(req), parent);
  if (!pf) return reply_error(req, pf.error());
  // Clone the parent and create in the clone, which leaves it open on the new file.
  auto of_ = ss->c->alloc_fid();
  auto rs = ss->c->rpc_batch({srv9p::twalk{*pf, of_, {}},
                            srv9p::tcreate{of_, name, static_cast<std::uint32_t>(mode & 0777), open_mode(fi->flags)}});
  if (auto w = expect<srv9p::rwalk>(std::move(rs[0])); !w) {
    ss->c->release_fid(of_);
    return reply_error(req, w.error());
  }
  auto cr = expect<srv9p::rcreate>(std::move(rs[1]));
  if (!cr) {
    ss->clunk_later(of_);
    return reply_error(req, cr.error());
  }
  // A second walk for the node: an open fid cannot be walked from (walk(5)).
  auto r = walk_stat(*ss, *pf, name);
  if (!r) {
    ss->clunk_later(of_);
    return reply_error(req, r.error());
  }
  fuse_ino_t ino = s.add_lookup(*ss, s.user_of(req), r->first, r->second.qid, s.child_path(parent, name));
  fuse_entry_param e = s.entry(ino, r->second);
  auto h = std::make_shared<open_file>();
  h->c = ss->c;
  h->fid = of_;
  h->iounit = file_iounit(s, *ss->c, cr->iounit);
  h->append = (fi->flags & O_APPEND) != 0;
  finish_open(fi, h);
  if (fuse_reply_create(req, &e, fi) != 0) {
    s.forget(ino, 1);
    ss->clunk_later(h->fid);
    delete &file_of(fi);
  }
}

// Reads. Each is one Tread of at most iounit, answered from the client's reader thread.
//
// Read-ahead: FUSE sends a direct_io read only when the program asks, so a program that
// reads a file through in 1 MiB pieces would wait a round trip per piece. For plain
// files with a length (never synthetic ones, whose reads may block or have effects), a
// read that comes back full starts a Tread of the next piece at once, unless a read of
// it has been asked for already; when the kernel then asks for that piece, the reply
// is there or on its way. One piece ahead is kept, per open file.
void start_read_ahead(state& s, const file_ref& h, std::uint64_t off, std::uint32_t count);

// Replies to the kernel's read of [off, off+count), and reads ahead if it came back full.
void finish_read(state& s, const file_ref& h, fuse_req_t req, std::uint64_t off, std::uint32_t count,
                 client::reply r) {
  auto rr = expect<srv9p::rread>(std::move(r));
  if (!rr) return reply_error(req, rr.error());
  bool full = rr->data.size() == count;
  fuse_reply_buf(req, rr->data.data(), rr->data.size());
  if (full && h->readahead) start_read_ahead(s, h, off + count, count);
}

void read_ahead_done(state& s, const file_ref& h, const std::shared_ptr<read_ahead>& a, client::reply r) {
  fuse_req_t waiter;
  {
    std::lock_guard lk(h->mu);
    if (a->waiter == nullptr) {
      a->done = true;
      a->r = std::move(r);
      return;
    }
    waiter = a->waiter;
    if (h->ahead == a) h->ahead.reset();
  }
  fuse_req_interrupt_func(waiter, nullptr, nullptr);
  finish_read(s, h, waiter, a->off, a->count, std::move(r));
}

void start_read_ahead(state& s, const file_ref& h, std::uint64_t off, std::uint32_t count) {
  auto a = std::make_shared<read_ahead>();
  {
    std::lock_guard lk(h->mu);
    if (h->closed || off >= h->length || off < h->requested_end) return;
    if (h->ahead && !h->ahead->done) return;
    a->off = off;
    a->count = count;
    a->flush = std::make_shared<flushable>();
    a->flush->c = h->c;
    h->ahead = a;
    h->requested_end = off + count;
  }
  // Sent without the lock: with the connection gone, the callback runs inside send.
  a->flush->sent_as(h->c->send_ticket(srv9p::tread{h->fid, off, count}, [&s, h, a](client::reply r) {
    read_ahead_done(s, h, a, std::move(r));
  }));
}

void op_read(fuse_req_t req, fuse_ino_t, std::size_t size, off_t off, fuse_file_info* fi) {
  state& s = of(req);
  file_ref h = file_of(fi);
  auto count = static_cast<std::uint32_t>(std::min<std::size_t>(size, h->iounit));
  auto o = static_cast<std::uint64_t>(off);
  if (h->readahead) {
    std::unique_lock lk(h->mu);
    if (auto a = h->ahead; a && a->off == o && a->count == count) {
      if (a->done) {
        h->ahead.reset();
        lk.unlock();
        return finish_read(s, h, req, o, count, std::move(a->r));
      }
      // Wait for it: its callback answers req. An interrupt flushes it (under this lock
      // the callback cannot run before req is registered).
      fuse_req_interrupt_func(req, on_interrupt, a->flush.get());
      a->waiter = req;
      return;
    }
    if (h->ahead && h->ahead->done) h->ahead.reset();  // a piece nobody asked for
    h->requested_end = std::max(h->requested_end, o + count);
  }
  send_interruptible(req, h->c, srv9p::tread{h->fid, o, count}, [&s, h, o, count](fuse_req_t rq, client::reply r) {
    finish_read(s, h, rq, o, count, std::move(r));
  });
}

void op_write(fuse_req_t req, fuse_ino_t, const char* buf, std::size_t size, off_t off, fuse_file_info* fi) {
  const file_ref& h = file_of(fi);
  auto offset = static_cast<std::uint64_t>(off);
  if (h->append) {
    // 9P2000 has no append mode for opens (only DMAPPEND files): write at the current end.
    auto st = expect<srv9p::rstat>(h->c->rpc(srv9p::tstat{h->fid}));
    if (!st) return reply_error(req, st.error());
    offset = st->stat.length;
  }
  std::size_t done = 0;
  while (done < size) {
    std::size_t n = std::min<std::size_t>(size - done, h->iounit);
    auto r = expect<srv9p::rwrite>(call(req, h->c, srv9p::twrite{h->fid, offset + done, std::string(buf + done, n)}));
    if (!r) {
      if (done > 0) break;  // report what was written; the next write sees the error
      return reply_error(req, r.error());
    }
    done += std::min<std::size_t>(r->count, n);
    if (r->count < n) break;
  }
  fuse_reply_write(req, done);
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  // close(2): nothing is buffered here (direct_io), and the clunk waits for release.
  fuse_reply_err(req, 0);
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  auto* holder = &file_of(fi);
  file_ref h = std::move(*holder);
  delete holder;
  std::shared_ptr<read_ahead> a;
  {
    std::lock_guard lk(h->mu);
    h->closed = true;
    a = std::move(h->ahead);
  }
  if (a) on_interrupt(nullptr, a->flush.get());  // flush a read-ahead still in flight
  // Wait for Rclunk: for a ctl file the clunk may be when the work happens.
  (void)h->c->clunk(h->fid);
  fuse_reply_err(req, 0);
}

// ---- Handlers: directories ------------------------------------------------------------------

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  state& s = of(req);
  auto ss = live(req);
  if (!ss) return;
  auto f = s.fid_for(*ss, s.user_of(req), ino);
  if (!f) return reply_error(req, f.error());
  auto o = open_clone(*ss, *f, srv9p::oread);
  if (!o) return reply_error(req, o.error());
  auto* d = new open_dir;
  d->c = ss->c;
  d->fid = o->fid;
  d->qid = o->open.qid;
  fi->fh = reinterpret_cast<std::uint64_t>(d);
  if (fuse_reply_open(req, fi) != 0) {
    ss->clunk_later(d->fid);
    delete d;
  }
}

// Reads the whole directory from offset 0 (read(5): each Rread holds whole entries).
result<std::vector<srv9p::dir>> read_whole_dir(client& c, std::uint32_t fid) {
  std::vector<srv9p::dir> out;
  std::uint64_t offset = 0;
  for (;;) {
    auto r = expect<srv9p::rread>(c.rpc(srv9p::tread{fid, offset, c.iounit()}));
    if (!r) return std::unexpected(std::move(r.error()));
    if (r->data.empty()) return out;
    offset += r->data.size();
    auto ds = srv9p::decode_dirs(std::span(reinterpret_cast<const std::uint8_t*>(r->data.data()), r->data.size()));
    if (!ds) return std::unexpected(std::string(err::botch) + ": " + ds.error());
    for (auto& d : *ds) out.push_back(std::move(d));
  }
}

// Entry i of the listing is ".", "..", then the server's entries; the offset FUSE hands
// back to us is the index of the next entry. Offset 0 (a rewind) reads the directory anew.
void op_readdir(fuse_req_t req, fuse_ino_t, std::size_t size, off_t off, fuse_file_info* fi) {
  auto* d = reinterpret_cast<open_dir*>(fi->fh);
  std::lock_guard lk(d->mu);
  if (!d->loaded || off == 0) {
    auto ents = read_whole_dir(*d->c, d->fid);
    if (!ents) return reply_error(req, ents.error());
    d->entries = std::move(*ents);
    d->loaded = true;
  }
  std::vector<char> buf(size);
  std::size_t used = 0;
  const std::size_t total = d->entries.size() + 2;
  for (auto i = static_cast<std::size_t>(std::max<off_t>(off, 0)); i < total; i++) {
    struct stat st {};
    const char* name;
    if (i < 2) {
      name = i == 0 ? "." : "..";
      st.st_ino = ino_of(d->qid);  // ".." is named by this directory's qid: 9P has no parent link
      st.st_mode = S_IFDIR;
    } else {
      const srv9p::dir& e = d->entries[i - 2];
      name = e.name.c_str();
      st.st_ino = ino_of(e.qid);
      st.st_mode = (e.mode & srv9p::dmdir) ? S_IFDIR : S_IFREG;
    }
    std::size_t n = fuse_add_direntry(req, buf.data() + used, size - used, name, &st, static_cast<off_t>(i + 1));
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  auto* d = reinterpret_cast<open_dir*>(fi->fh);
  clunk_later(*d->c, d->fid);
  delete d;
  fuse_reply_err(req, 0);
}

// ---- Session ----------------------------------------------------------------------------------

void op_init(void* userdata, fuse_conn_info* conn) {
  auto& s = *static_cast<state*>(userdata);
  // Writes as big as one Twrite carries (libfuse also raises max_pages to match, so
  // direct_io reads come as big), instead of FUSE's 4 KiB pages one at a time.
  conn->max_write = s.io_bytes;
  // O_TRUNC arrives in open's flags (→ OTRUNC) instead of as a separate truncate.
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  // A big direct read or write may go out as several requests at once.
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  // No kernel-side locks: 9P2000 has none to back them.
  conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
}

// The handler table: what is not here answers ENOSYS (symlinks, links, xattrs, locks).
const fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .create = op_create,
    .forget_multi = op_forget_multi,
};

// ---- Redialling ---------------------------------------------------------------------------------

// The redialer's thread: looks at the connection every redial_check_ms, or at once when a
// request saw it gone; when it is gone, logs one line, calls opts.redial every backoff
// (redial_min_ms, doubling up to redial_max_ms) until it gives a connection, installs it
// (state::install) and logs one line more. Stops when rd->stop is set; from then on it
// touches nothing of s.
void redial_loop(state* s, const std::shared_ptr<redialer>& rd) {
  using ms = std::chrono::milliseconds;
  std::unique_lock lk(rd->mu);
  while (!rd->stop) {
    rd->cv.wait_for(lk, ms(s->opts.redial_check_ms), [&] { return rd->stop || rd->woken; });
    if (rd->stop) break;
    rd->woken = false;
    {
      std::lock_guard slk(s->mu);
      if (s->cur.c->connected()) continue;
    }
    s->log(fmt::format("lost the connection to {}; redialling (open files fail with EIO)", s->opts.fsname));
    auto lost_at = std::chrono::steady_clock::now();
    auto backoff = ms(s->opts.redial_min_ms);
    for (unsigned attempts = 1;; attempts++) {
      lk.unlock();
      auto r = rd->redial();  // may block: a connect, Tversion, Tauth and Tattach
      lk.lock();
      if (rd->stop) break;
      if (r) {
        session old = s->install(std::move(r->first), r->second);
        auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - lost_at).count();
        s->log(fmt::format("reconnected to {} after {:.1f} s ({} attempt{})", s->opts.fsname, secs, attempts,
                           attempts == 1 ? "" : "s"));
        lk.unlock();
        old = session{};  // the old client goes here, unless open files still hold it
        lk.lock();
        break;
      }
      rd->cv.wait_for(lk, backoff, [&] { return rd->stop; });
      if (rd->stop) break;
      backoff = std::min(backoff * 2, ms(std::max(s->opts.redial_max_ms, s->opts.redial_min_ms)));
    }
    rd->woken = false;
  }
  rd->done = true;
  rd->cv.notify_all();
}

// Starts the redialer (if there is opts.redial) with every signal blocked, so that the
// SIGINT, SIGTERM or SIGHUP that ends the mount goes to libfuse's threads, never to one
// that would not pass it on.
void start_redialer(state& s) {
  if (!s.opts.redial || s.rd) return;
  s.rd = std::make_shared<redialer>();
  s.rd->redial = s.opts.redial;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  s.rd->thread = std::thread([p = &s, rd = s.rd] { redial_loop(p, rd); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

// Stops the redialer; idempotent. A thread stuck in a dial (a host that does not answer
// SYNs) is waited for up to 2 s and then left to finish alone: it will not touch s again.
// s.rd stays (stopped), since replies still arriving may wake() it.
void stop_redialer(state& s) {
  if (!s.rd || !s.rd->thread.joinable()) return;
  std::shared_ptr<redialer> rd = s.rd;
  bool done;
  {
    std::unique_lock lk(rd->mu);
    rd->stop = true;
    rd->cv.notify_all();
    done = rd->cv.wait_for(lk, std::chrono::seconds(2), [&] { return rd->done; });
  }
  if (rd->thread.joinable()) {
    if (done) {
      rd->thread.join();
    } else {
      rd->thread.detach();
    }
  }
}

}  // namespace

int errno_of(std::string_view ename, bool* known) { return srv9p::errno_of(ename, known); }

struct fuse_bridge::impl {
  state s;
};

fuse_bridge::fuse_bridge(std::unique_ptr<impl> i) : impl_(std::move(i)) {}

result<std::unique_ptr<fuse_bridge>> fuse_bridge::mount(std::unique_ptr<client> c, std::uint32_t root,
                                                        fuse_options opts) {
  auto im = std::make_unique<impl>();
  state& s = im->s;
  if (!opts.log) opts.log = [](std::string_view m) { fmt::print(stderr, "galaxy mount: {}\n", m); };
  s.opts = std::move(opts);
  s.cur = session{std::shared_ptr<client>(std::move(c)), 1};
  s.uid = ::getuid();
  s.gid = ::getgid();
  s.io_bytes = std::min<std::uint32_t>(s.cur.c->iounit(), 1u << 20);  // libfuse's buffer: 256 pages
  auto rootdir = s.cur.c->stat(root);
  if (!rootdir) return std::unexpected("stat of the root: " + rootdir.error());
  s.inodes.emplace(FUSE_ROOT_ID, inode{rootdir->qid, 1, {}, {{s.uid, root}}});
  s.by_path.emplace(rootdir->qid.path, FUSE_ROOT_ID);

  {
    std::lock_guard lk(log_mu);
    log_sink = &s.opts.log;
    last_fuse_message.clear();
  }
  fuse_set_log_func(fuse_log_to_sink);

  std::string fsname = s.opts.fsname;
  std::replace(fsname.begin(), fsname.end(), ',', '_');  // a comma would end the option
  std::vector<std::string> args{"galaxy"};
  if (s.opts.debug) args.emplace_back("-d");
  args.emplace_back("-o");
  args.emplace_back("fsname=" + fsname + ",subtype=galaxy");
  for (const auto& o : s.opts.mount_options) {
    args.emplace_back("-o");
    args.push_back(o);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(args.size()), argv.data());
  s.se = fuse_session_new(&fargs, &ops, sizeof ops, &s);
  fuse_opt_free_args(&fargs);
  auto fuse_said = [] {
    std::lock_guard lk(log_mu);
    return last_fuse_message.empty() ? std::string() : " (" + last_fuse_message + ")";
  };
  if (s.se == nullptr) return std::unexpected("libfuse refused the options" + fuse_said());
  if (fuse_session_mount(s.se, s.opts.mountpoint.c_str()) != 0) {
    fuse_session_destroy(s.se);
    s.se = nullptr;
    return std::unexpected("cannot mount on " + s.opts.mountpoint + fuse_said());
  }
  s.mounted = true;
  return std::unique_ptr<fuse_bridge>(new fuse_bridge(std::move(im)));
}

int fuse_bridge::serve() {
  state& s = impl_->s;
  if (fuse_set_signal_handlers(s.se) != 0) return -EIO;
  start_redialer(s);
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, s.opts.max_threads);
  fuse_loop_cfg_set_idle_threads(cfg, 16);
  int r = fuse_session_loop_mt(s.se, cfg);
  fuse_loop_cfg_destroy(cfg);
  stop_redialer(s);
  fuse_remove_signal_handlers(s.se);
  fuse_session_unmount(s.se);
  s.mounted = false;
  return r > 0 ? 0 : r;  // a positive value is the signal that ended the loop
}

fuse_bridge::~fuse_bridge() {
  state& s = impl_->s;
  stop_redialer(s);
  if (s.se != nullptr) {
    if (s.mounted) fuse_session_unmount(s.se);
    fuse_session_destroy(s.se);
  }
  {
    std::lock_guard lk(log_mu);
    if (log_sink == &s.opts.log) log_sink = nullptr;
  }
  // Closing the connection releases every fid on the server; the pending clunks' callbacks
  // run here, while the client still exists.
  s.cur.c->close();
}

result<void> fuse_unmount(const std::string& mountpoint, bool lazy) {
  if (::geteuid() == 0) {
    if (::umount2(mountpoint.c_str(), lazy ? MNT_DETACH : 0) != 0) {
      return std::unexpected(mountpoint + ": " + std::strerror(errno));
    }
    return {};
  }
  std::vector<std::string> args{"fusermount3", "-u"};
  if (lazy) args.emplace_back("-z");
  args.push_back(mountpoint);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (int e = ::posix_spawnp(&pid, "fusermount3", nullptr, nullptr, argv.data(), environ); e != 0) {
    return std::unexpected(std::string("fusermount3: ") + std::strerror(e));
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return std::unexpected(std::string("waitpid: ") + std::strerror(errno));
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    return std::unexpected(mountpoint + ": fusermount3 -u failed");
  }
  return {};
}

}  // namespace fsclient
