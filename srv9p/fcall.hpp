#pragma once
// 9P2000 messages as C++ values, and their wire encoding.
//
// One struct per message (T for requests, R for replies), one variant over all of them,
// and an fcall that adds the tag. decode() turns the bytes of one whole message into an
// fcall with strict bounds checking; encode() appends the bytes of an fcall to a buffer.
// Field names follow intro(5) and plan9port include/fcall.h; the wire format is in
// shared/design/9p.md. The 9P2000.L messages (Linux include/net/9p/9p.h, net/9p/client.c,
// diod's protocol.md) follow the 9P2000 ones; their structs list their fields once
// (field_names, tie()) and one generic codec and text form serve them. The dialect a
// connection speaks is chosen at Tversion; decode() and encode() take it, because
// 9P2000.L's Tauth and Tattach carry a trailing n_uname[4].
#include <array>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>
#include <vector>

namespace srv9p {

inline constexpr std::uint16_t notag = 0xFFFF;
inline constexpr std::uint32_t nofid = 0xFFFFFFFF;
inline constexpr std::size_t maxwelem = 16;        // walk(5): at most 16 names per Twalk

// walk(5), create(5): a name is a single path element: not empty, not "." or "..", no
// '/' and no NUL. Used wherever a name from a client, a task or a node enters.
inline bool legal_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}
inline constexpr std::uint32_t iohdrsz = 24;       // Rread/Twrite header; data <= msize - iohdrsz
inline constexpr std::size_t header_size = 7;      // size[4] type[1] tag[2]
inline constexpr std::size_t errmax = 128;         // Linux P9_ERRMAX: keep error strings shorter
inline constexpr std::uint32_t default_msize = 8192 + iohdrsz;
inline constexpr std::uint32_t max_msize = (1u << 20) + iohdrsz;  // 1 MiB of data per message
inline constexpr std::string_view version_9p2000 = "9P2000";
inline constexpr std::string_view version_9p2000_l = "9P2000.L";

// Message types, intro(5). R = T + 1; Terror (106) is illegal.
enum class msg_type : std::uint8_t {
  tversion = 100, rversion, tauth, rauth, tattach, rattach,
  rerror = 107, tflush, rflush, twalk, rwalk, topen, ropen, tcreate, rcreate,
  tread, rread, twrite, rwrite, tclunk, rclunk, tremove, rremove, tstat, rstat, twstat, rwstat,
  // 9P2000.L (Linux include/net/9p/9p.h); Rlerror replaces Rerror.
  rlerror = 7, tstatfs = 8, rstatfs, tlopen = 12, rlopen, tlcreate, rlcreate, tsymlink, rsymlink,
  tmknod, rmknod, trename, rrename, treadlink, rreadlink, tgetattr, rgetattr, tsetattr, rsetattr,
  txattrwalk = 30, rxattrwalk, txattrcreate, rxattrcreate, treaddir = 40, rreaddir,
  tfsync = 50, rfsync, tlock, rlock, tgetlock, rgetlock, tlink = 70, rlink, tmkdir, rmkdir,
  trenameat, rrenameat, tunlinkat, runlinkat,
};

// Qid types (top byte of the mode) and mode bits, stat(5).
inline constexpr std::uint8_t qtdir = 0x80, qtappend = 0x40, qtexcl = 0x20, qtauth = 0x08,
                              qttmp = 0x04, qtfile = 0x00;
inline constexpr std::uint32_t dmdir = 0x80000000, dmappend = 0x40000000, dmexcl = 0x20000000,
                               dmauth = 0x08000000, dmtmp = 0x04000000;
// Open modes, open(5).
inline constexpr std::uint8_t oread = 0, owrite = 1, ordwr = 2, oexec = 3, otrunc = 0x10,
                              orclose = 0x40;

// The dialect a connection speaks, fixed by Tversion. p9_2000_l decodes every message of
// both (9P2000's are kept in .L), with n_uname in Tauth and Tattach.
enum class dialect : std::uint8_t { p9_2000, p9_2000_l };

// qid: the server's unique identity of a file. 13 bytes on the wire.
struct qid {
  std::uint8_t type = qtfile;
  std::uint32_t version = 0;
  std::uint64_t path = 0;
  friend bool operator==(const qid&, const qid&) = default;
};

// A directory entry, stat(5). On the wire it is preceded by its own size[2].
// In Twstat, "don't touch" is an empty string or an all-ones integer.
struct dir {
  std::uint16_t type = 0;
  std::uint32_t dev = 0;
  srv9p::qid qid;
  std::uint32_t mode = 0;   // permission bits plus dm* flags
  std::uint32_t atime = 0;  // seconds since the epoch
  std::uint32_t mtime = 0;
  std::uint64_t length = 0; // bytes
  std::string name, uid, gid, muid;
  friend bool operator==(const dir&, const dir&) = default;
};

// A Twstat dir whose every field says "don't touch".
dir dont_touch_dir();

struct tversion {
  std::uint32_t msize = 0;
  std::string version;
  friend bool operator==(const tversion&, const tversion&) = default;
};
struct rversion {
  std::uint32_t msize = 0;
  std::string version;
  friend bool operator==(const rversion&, const rversion&) = default;
};
struct tauth {
  std::uint32_t afid = nofid;
  std::string uname, aname;
  std::uint32_t n_uname = nofid;  // 9P2000.L only: the uid, or ~0 ("use uname")
  friend bool operator==(const tauth&, const tauth&) = default;
};
struct rauth {
  srv9p::qid aqid;
  friend bool operator==(const rauth&, const rauth&) = default;
};
struct tattach {
  std::uint32_t fid = 0, afid = nofid;
  std::string uname, aname;
  std::uint32_t n_uname = nofid;  // 9P2000.L only: the uid, or ~0 ("use uname")
  friend bool operator==(const tattach&, const tattach&) = default;
};
struct rattach {
  srv9p::qid qid;
  friend bool operator==(const rattach&, const rattach&) = default;
};
struct rerror {
  std::string ename;
  friend bool operator==(const rerror&, const rerror&) = default;
};
struct tflush {
  std::uint16_t oldtag = notag;
  friend bool operator==(const tflush&, const tflush&) = default;
};
struct rflush { friend bool operator==(const rflush&, const rflush&) = default; };
struct twalk {
  std::uint32_t fid = 0, newfid = 0;
  std::vector<std::string> wnames;
  friend bool operator==(const twalk&, const twalk&) = default;
};
struct rwalk {
  std::vector<srv9p::qid> qids;
  friend bool operator==(const rwalk&, const rwalk&) = default;
};
struct topen {
  std::uint32_t fid = 0;
  std::uint8_t mode = oread;
  friend bool operator==(const topen&, const topen&) = default;
};
struct ropen {
  srv9p::qid qid;
  std::uint32_t iounit = 0;
  friend bool operator==(const ropen&, const ropen&) = default;
};
struct tcreate {
  std::uint32_t fid = 0;
  std::string name;
  std::uint32_t perm = 0;
  std::uint8_t mode = oread;
  friend bool operator==(const tcreate&, const tcreate&) = default;
};
struct rcreate {
  srv9p::qid qid;
  std::uint32_t iounit = 0;
  friend bool operator==(const rcreate&, const rcreate&) = default;
};
struct tread {
  std::uint32_t fid = 0;
  std::uint64_t offset = 0;
  std::uint32_t count = 0;
  friend bool operator==(const tread&, const tread&) = default;
};
struct rread {
  std::string data;
  friend bool operator==(const rread&, const rread&) = default;
};
struct twrite {
  std::uint32_t fid = 0;
  std::uint64_t offset = 0;
  std::string data;
  friend bool operator==(const twrite&, const twrite&) = default;
};
struct rwrite {
  std::uint32_t count = 0;
  friend bool operator==(const rwrite&, const rwrite&) = default;
};
struct tclunk {
  std::uint32_t fid = 0;
  friend bool operator==(const tclunk&, const tclunk&) = default;
};
struct rclunk { friend bool operator==(const rclunk&, const rclunk&) = default; };
struct tremove {
  std::uint32_t fid = 0;
  friend bool operator==(const tremove&, const tremove&) = default;
};
struct rremove { friend bool operator==(const rremove&, const rremove&) = default; };
struct tstat {
  std::uint32_t fid = 0;
  friend bool operator==(const tstat&, const tstat&) = default;
};
struct rstat {
  dir stat;
  friend bool operator==(const rstat&, const rstat&) = default;
};
struct twstat {
  std::uint32_t fid = 0;
  dir stat;
  friend bool operator==(const twstat&, const twstat&) = default;
};
struct rwstat { friend bool operator==(const rwstat&, const rwstat&) = default; };

// ---- 9P2000.L ----
// Each struct names its fields in wire order (field_names) and ties them (tie()), so that
// one generic codec and text form serve all of them. Integer widths are the wire's.
// Linux open flags (lopen, lcreate) and the Tsetattr valid bits, include/net/9p/9p.h:
inline constexpr std::uint32_t l_o_accmode = 03, l_o_trunc = 01000, l_o_append = 02000;
inline constexpr std::uint32_t attr_mode = 1u << 0, attr_uid = 1u << 1, attr_gid = 1u << 2,
                               attr_size = 1u << 3, attr_atime = 1u << 4, attr_mtime = 1u << 5,
                               attr_ctime = 1u << 6, attr_atime_set = 1u << 7,
                               attr_mtime_set = 1u << 8;
// Tgetattr request_mask / Rgetattr valid bits.
inline constexpr std::uint64_t getattr_mode = 0x1, getattr_nlink = 0x2, getattr_uid = 0x4,
                               getattr_gid = 0x8, getattr_rdev = 0x10, getattr_atime = 0x20,
                               getattr_mtime = 0x40, getattr_ctime = 0x80, getattr_ino = 0x100,
                               getattr_size = 0x200, getattr_blocks = 0x400, getattr_basic = 0x7ff;
// Tunlinkat flags: AT_REMOVEDIR.
inline constexpr std::uint32_t at_removedir = 0x200;

#define SRV9P_L_STRUCT(T) friend bool operator==(const T&, const T&) = default
struct rlerror {
  std::uint32_t ecode = 0;  // a Linux errno
  static constexpr std::string_view field_names[] = {"ecode"};
  auto tie() { return std::tie(ecode); }
  auto tie() const { return std::tie(ecode); }
  SRV9P_L_STRUCT(rlerror);
};
struct tstatfs {
  std::uint32_t fid = 0;
  static constexpr std::string_view field_names[] = {"fid"};
  auto tie() { return std::tie(fid); }
  auto tie() const { return std::tie(fid); }
  SRV9P_L_STRUCT(tstatfs);
};
struct rstatfs {
  std::uint32_t type = 0, bsize = 0;
  std::uint64_t blocks = 0, bfree = 0, bavail = 0, files = 0, ffree = 0, fsid = 0;
  std::uint32_t namelen = 0;
  static constexpr std::string_view field_names[] = {"type",  "bsize", "blocks", "bfree",  "bavail",
                                                     "files", "ffree", "fsid",   "namelen"};
  auto tie() { return std::tie(type, bsize, blocks, bfree, bavail, files, ffree, fsid, namelen); }
  auto tie() const { return std::tie(type, bsize, blocks, bfree, bavail, files, ffree, fsid, namelen); }
  SRV9P_L_STRUCT(rstatfs);
};
struct tlopen {
  std::uint32_t fid = 0, flags = 0;  // Linux O_* flags
  static constexpr std::string_view field_names[] = {"fid", "flags"};
  auto tie() { return std::tie(fid, flags); }
  auto tie() const { return std::tie(fid, flags); }
  SRV9P_L_STRUCT(tlopen);
};
struct rlopen {
  srv9p::qid qid;
  std::uint32_t iounit = 0;
  static constexpr std::string_view field_names[] = {"qid", "iounit"};
  auto tie() { return std::tie(qid, iounit); }
  auto tie() const { return std::tie(qid, iounit); }
  SRV9P_L_STRUCT(rlopen);
};
struct tlcreate {
  std::uint32_t fid = 0;
  std::string name;
  std::uint32_t flags = 0, mode = 0, gid = 0;
  static constexpr std::string_view field_names[] = {"fid", "name", "flags", "mode", "gid"};
  auto tie() { return std::tie(fid, name, flags, mode, gid); }
  auto tie() const { return std::tie(fid, name, flags, mode, gid); }
  SRV9P_L_STRUCT(tlcreate);
};
struct rlcreate {
  srv9p::qid qid;
  std::uint32_t iounit = 0;
  static constexpr std::string_view field_names[] = {"qid", "iounit"};
  auto tie() { return std::tie(qid, iounit); }
  auto tie() const { return std::tie(qid, iounit); }
  SRV9P_L_STRUCT(rlcreate);
};
struct tsymlink {
  std::uint32_t fid = 0;
  std::string name, symtgt;
  std::uint32_t gid = 0;
  static constexpr std::string_view field_names[] = {"fid", "name", "symtgt", "gid"};
  auto tie() { return std::tie(fid, name, symtgt, gid); }
  auto tie() const { return std::tie(fid, name, symtgt, gid); }
  SRV9P_L_STRUCT(tsymlink);
};
struct rsymlink {
  srv9p::qid qid;
  static constexpr std::string_view field_names[] = {"qid"};
  auto tie() { return std::tie(qid); }
  auto tie() const { return std::tie(qid); }
  SRV9P_L_STRUCT(rsymlink);
};
struct tmknod {
  std::uint32_t dfid = 0;
  std::string name;
  std::uint32_t mode = 0, major = 0, minor = 0, gid = 0;
  static constexpr std::string_view field_names[] = {"dfid", "name", "mode", "major", "minor", "gid"};
  auto tie() { return std::tie(dfid, name, mode, major, minor, gid); }
  auto tie() const { return std::tie(dfid, name, mode, major, minor, gid); }
  SRV9P_L_STRUCT(tmknod);
};
struct rmknod {
  srv9p::qid qid;
  static constexpr std::string_view field_names[] = {"qid"};
  auto tie() { return std::tie(qid); }
  auto tie() const { return std::tie(qid); }
  SRV9P_L_STRUCT(rmknod);
};
struct trename {
  std::uint32_t fid = 0, dfid = 0;
  std::string name;
  static constexpr std::string_view field_names[] = {"fid", "dfid", "name"};
  auto tie() { return std::tie(fid, dfid, name); }
  auto tie() const { return std::tie(fid, dfid, name); }
  SRV9P_L_STRUCT(trename);
};
struct rrename {
  static constexpr std::array<std::string_view, 0> field_names{};
  auto tie() { return std::tie(); }
  auto tie() const { return std::tie(); }
  SRV9P_L_STRUCT(rrename);
};
struct treadlink {
  std::uint32_t fid = 0;
  static constexpr std::string_view field_names[] = {"fid"};
  auto tie() { return std::tie(fid); }
  auto tie() const { return std::tie(fid); }
  SRV9P_L_STRUCT(treadlink);
};
struct rreadlink {
  std::string target;
  static constexpr std::string_view field_names[] = {"target"};
  auto tie() { return std::tie(target); }
  auto tie() const { return std::tie(target); }
  SRV9P_L_STRUCT(rreadlink);
};
struct tgetattr {
  std::uint32_t fid = 0;
  std::uint64_t request_mask = 0;
  static constexpr std::string_view field_names[] = {"fid", "request_mask"};
  auto tie() { return std::tie(fid, request_mask); }
  auto tie() const { return std::tie(fid, request_mask); }
  SRV9P_L_STRUCT(tgetattr);
};
struct rgetattr {
  std::uint64_t valid = 0;
  srv9p::qid qid;
  std::uint32_t mode = 0, uid = 0, gid = 0;  // mode: S_IF* type bits and permissions
  std::uint64_t nlink = 0, rdev = 0, size = 0, blksize = 0, blocks = 0;
  std::uint64_t atime_sec = 0, atime_nsec = 0, mtime_sec = 0, mtime_nsec = 0, ctime_sec = 0,
                ctime_nsec = 0, btime_sec = 0, btime_nsec = 0, gen = 0, data_version = 0;
  static constexpr std::string_view field_names[] = {
      "valid",     "qid",        "mode",      "uid",        "gid",       "nlink",
      "rdev",      "size",       "blksize",   "blocks",     "atime_sec", "atime_nsec",
      "mtime_sec", "mtime_nsec", "ctime_sec", "ctime_nsec", "btime_sec", "btime_nsec",
      "gen",       "data_version"};
  auto tie() {
    return std::tie(valid, qid, mode, uid, gid, nlink, rdev, size, blksize, blocks, atime_sec, atime_nsec,
                    mtime_sec, mtime_nsec, ctime_sec, ctime_nsec, btime_sec, btime_nsec, gen, data_version);
  }
  auto tie() const {
    return std::tie(valid, qid, mode, uid, gid, nlink, rdev, size, blksize, blocks, atime_sec, atime_nsec,
                    mtime_sec, mtime_nsec, ctime_sec, ctime_nsec, btime_sec, btime_nsec, gen, data_version);
  }
  SRV9P_L_STRUCT(rgetattr);
};
struct tsetattr {
  std::uint32_t fid = 0, valid = 0, mode = 0, uid = 0, gid = 0;
  std::uint64_t size = 0, atime_sec = 0, atime_nsec = 0, mtime_sec = 0, mtime_nsec = 0;
  static constexpr std::string_view field_names[] = {"fid",       "valid",      "mode",      "uid",
                                                     "gid",       "size",       "atime_sec", "atime_nsec",
                                                     "mtime_sec", "mtime_nsec"};
  auto tie() { return std::tie(fid, valid, mode, uid, gid, size, atime_sec, atime_nsec, mtime_sec, mtime_nsec); }
  auto tie() const {
    return std::tie(fid, valid, mode, uid, gid, size, atime_sec, atime_nsec, mtime_sec, mtime_nsec);
  }
  SRV9P_L_STRUCT(tsetattr);
};
struct rsetattr {
  static constexpr std::array<std::string_view, 0> field_names{};
  auto tie() { return std::tie(); }
  auto tie() const { return std::tie(); }
  SRV9P_L_STRUCT(rsetattr);
};
struct txattrwalk {
  std::uint32_t fid = 0, newfid = 0;
  std::string name;  // "" lists the attributes
  static constexpr std::string_view field_names[] = {"fid", "newfid", "name"};
  auto tie() { return std::tie(fid, newfid, name); }
  auto tie() const { return std::tie(fid, newfid, name); }
  SRV9P_L_STRUCT(txattrwalk);
};
struct rxattrwalk {
  std::uint64_t size = 0;
  static constexpr std::string_view field_names[] = {"size"};
  auto tie() { return std::tie(size); }
  auto tie() const { return std::tie(size); }
  SRV9P_L_STRUCT(rxattrwalk);
};
struct txattrcreate {
  std::uint32_t fid = 0;
  std::string name;
  std::uint64_t attr_size = 0;
  std::uint32_t flags = 0;
  static constexpr std::string_view field_names[] = {"fid", "name", "attr_size", "flags"};
  auto tie() { return std::tie(fid, name, attr_size, flags); }
  auto tie() const { return std::tie(fid, name, attr_size, flags); }
  SRV9P_L_STRUCT(txattrcreate);
};
struct rxattrcreate {
  static constexpr std::array<std::string_view, 0> field_names{};
  auto tie() { return std::tie(); }
  auto tie() const { return std::tie(); }
  SRV9P_L_STRUCT(rxattrcreate);
};
struct treaddir {
  std::uint32_t fid = 0;
  std::uint64_t offset = 0;  // 0, or the offset[8] of the last entry the client took
  std::uint32_t count = 0;
  static constexpr std::string_view field_names[] = {"fid", "offset", "count"};
  auto tie() { return std::tie(fid, offset, count); }
  auto tie() const { return std::tie(fid, offset, count); }
  SRV9P_L_STRUCT(treaddir);
};
// count[4] data[count]; the data is a run of entries qid[13] offset[8] type[1] name[s]
// (encode_dirent, decode_dirents).
struct rreaddir {
  std::string data;
  SRV9P_L_STRUCT(rreaddir);
};
struct tfsync {
  std::uint32_t fid = 0, datasync = 0;
  static constexpr std::string_view field_names[] = {"fid", "datasync"};
  auto tie() { return std::tie(fid, datasync); }
  auto tie() const { return std::tie(fid, datasync); }
  SRV9P_L_STRUCT(tfsync);
};
struct rfsync {
  static constexpr std::array<std::string_view, 0> field_names{};
  auto tie() { return std::tie(); }
  auto tie() const { return std::tie(); }
  SRV9P_L_STRUCT(rfsync);
};
struct tlock {
  std::uint32_t fid = 0;
  std::uint8_t type = 0;
  std::uint32_t flags = 0;
  std::uint64_t start = 0, length = 0;
  std::uint32_t proc_id = 0;
  std::string client_id;
  static constexpr std::string_view field_names[] = {"fid", "type", "flags", "start", "length", "proc_id", "client_id"};
  auto tie() { return std::tie(fid, type, flags, start, length, proc_id, client_id); }
  auto tie() const { return std::tie(fid, type, flags, start, length, proc_id, client_id); }
  SRV9P_L_STRUCT(tlock);
};
struct rlock {
  std::uint8_t status = 0;
  static constexpr std::string_view field_names[] = {"status"};
  auto tie() { return std::tie(status); }
  auto tie() const { return std::tie(status); }
  SRV9P_L_STRUCT(rlock);
};
struct tgetlock {
  std::uint32_t fid = 0;
  std::uint8_t type = 0;
  std::uint64_t start = 0, length = 0;
  std::uint32_t proc_id = 0;
  std::string client_id;
  static constexpr std::string_view field_names[] = {"fid", "type", "start", "length", "proc_id", "client_id"};
  auto tie() { return std::tie(fid, type, start, length, proc_id, client_id); }
  auto tie() const { return std::tie(fid, type, start, length, proc_id, client_id); }
  SRV9P_L_STRUCT(tgetlock);
};
struct rgetlock {
  std::uint8_t type = 0;
  std::uint64_t start = 0, length = 0;
  std::uint32_t proc_id = 0;
  std::string client_id;
  static constexpr std::string_view field_names[] = {"type", "start", "length", "proc_id", "client_id"};
  auto tie() { return std::tie(type, start, length, proc_id, client_id); }
  auto tie() const { return std::tie(type, start, length, proc_id, client_id); }
  SRV9P_L_STRUCT(rgetlock);
};
struct tlink {
  std::uint32_t dfid = 0, fid = 0;
  std::string name;
  static constexpr std::string_view field_names[] = {"dfid", "fid", "name"};
  auto tie() { return std::tie(dfid, fid, name); }
  auto tie() const { return std::tie(dfid, fid, name); }
  SRV9P_L_STRUCT(tlink);
};
struct rlink {
  static constexpr std::array<std::string_view, 0> field_names{};
  auto tie() { return std::tie(); }
  auto tie() const { return std::tie(); }
  SRV9P_L_STRUCT(rlink);
};
struct tmkdir {
  std::uint32_t dfid = 0;
  std::string name;
  std::uint32_t mode = 0, gid = 0;
  static constexpr std::string_view field_names[] = {"dfid", "name", "mode", "gid"};
  auto tie() { return std::tie(dfid, name, mode, gid); }
  auto tie() const { return std::tie(dfid, name, mode, gid); }
  SRV9P_L_STRUCT(tmkdir);
};
struct rmkdir {
  srv9p::qid qid;
  static constexpr std::string_view field_names[] = {"qid"};
  auto tie() { return std::tie(qid); }
  auto tie() const { return std::tie(qid); }
  SRV9P_L_STRUCT(rmkdir);
};
struct trenameat {
  std::uint32_t olddirfid = 0;
  std::string oldname;
  std::uint32_t newdirfid = 0;
  std::string newname;
  static constexpr std::string_view field_names[] = {"olddirfid", "oldname", "newdirfid", "newname"};
  auto tie() { return std::tie(olddirfid, oldname, newdirfid, newname); }
  auto tie() const { return std::tie(olddirfid, oldname, newdirfid, newname); }
  SRV9P_L_STRUCT(trenameat);
};
struct rrenameat {
  static constexpr std::array<std::string_view, 0> field_names{};
  auto tie() { return std::tie(); }
  auto tie() const { return std::tie(); }
  SRV9P_L_STRUCT(rrenameat);
};
struct tunlinkat {
  std::uint32_t dirfid = 0;
  std::string name;
  std::uint32_t flags = 0;
  static constexpr std::string_view field_names[] = {"dirfid", "name", "flags"};
  auto tie() { return std::tie(dirfid, name, flags); }
  auto tie() const { return std::tie(dirfid, name, flags); }
  SRV9P_L_STRUCT(tunlinkat);
};
struct runlinkat {
  static constexpr std::array<std::string_view, 0> field_names{};
  auto tie() { return std::tie(); }
  auto tie() const { return std::tie(); }
  SRV9P_L_STRUCT(runlinkat);
};
#undef SRV9P_L_STRUCT

// One Rreaddir entry: qid[13] offset[8] type[1] name[s]. offset is what the client sends
// in its next Treaddir to continue after this entry; type is the DT_* of the entry.
struct dirent {
  srv9p::qid qid;
  std::uint64_t offset = 0;
  std::uint8_t type = 0;
  std::string name;
  friend bool operator==(const dirent&, const dirent&) = default;
};
std::size_t dirent_size(const dirent& d);  // bytes on the wire
void encode_dirent(const dirent& d, std::vector<std::uint8_t>& out);
// Decodes a whole Rreaddir data buffer.
std::expected<std::vector<dirent>, std::string> decode_dirents(std::span<const std::uint8_t> bytes);

// The 9P2000 alternatives come first, in msg_type order (Terror skipped), then the
// 9P2000.L ones in msg_type order; type_of() relies on it.
using message = std::variant<tversion, rversion, tauth, rauth, tattach, rattach, rerror, tflush,
                             rflush, twalk, rwalk, topen, ropen, tcreate, rcreate, tread, rread,
                             twrite, rwrite, tclunk, rclunk, tremove, rremove, tstat, rstat,
                             twstat, rwstat,
                             rlerror, tstatfs, rstatfs, tlopen, rlopen, tlcreate, rlcreate,
                             tsymlink, rsymlink, tmknod, rmknod, trename, rrename, treadlink,
                             rreadlink, tgetattr, rgetattr, tsetattr, rsetattr, txattrwalk,
                             rxattrwalk, txattrcreate, rxattrcreate, treaddir, rreaddir, tfsync,
                             rfsync, tlock, rlock, tgetlock, rgetlock, tlink, rlink, tmkdir,
                             rmkdir, trenameat, rrenameat, tunlinkat, runlinkat>;
// Whether a message type belongs to 9P2000.L only.
bool is_dotl(msg_type t);

struct fcall {
  std::uint16_t tag = notag;
  message msg;
  friend bool operator==(const fcall&, const fcall&) = default;
};

// The wire type of a message.
msg_type type_of(const message& m);
// "Twalk", "Rerror", "Tgetattr", ...; "unknown" for a value outside msg_type.
std::string_view type_name(msg_type t);
// True for T-messages.
bool is_request(msg_type t);

// Decodes one whole message: bytes[0..4) is its size and must equal bytes.size().
// Every field is bounds-checked: a size that lies, a string or count running past the end,
// trailing bytes, too many walk names, or an unknown type is an error (text says which),
// never an out-of-bounds read. Strings are not checked for UTF-8. In dialect p9_2000 the
// 9P2000.L types are unknown; in p9_2000_l both sets decode, and Tauth/Tattach carry
// n_uname.
std::expected<fcall, std::string> decode(std::span<const std::uint8_t> bytes,
                                         dialect d = dialect::p9_2000);

// Reads the size[4] prefix of a message (little-endian); bytes must hold at least 4.
std::uint32_t peek_size(std::span<const std::uint8_t> bytes);

// Appends the encoded message to out. The caller keeps within msize; strings longer than
// 65535 bytes are truncated to fit their len[2] (callers should never produce them).
// d decides only whether Tauth and Tattach carry n_uname.
void encode(const fcall& f, std::vector<std::uint8_t>& out, dialect d = dialect::p9_2000);
std::vector<std::uint8_t> encode(const fcall& f, dialect d = dialect::p9_2000);

// One encoded message in two parts, for a gathered write (writev): head, then bulk.
// encode_parts() moves a Rread's data out of the fcall into bulk instead of copying it (a
// Tread's reply is up to msize, and the copy into a fresh buffer of that size, with its
// page faults, was most of galaxy-node's CPU on a long read: bench/RESULTS.md, "Kernel 9P
// mounts"); for every other message bulk is empty and head is encode()'s bytes.
struct wire_message {
  std::vector<std::uint8_t> head;
  std::string bulk;
  std::size_t size() const { return head.size() + bulk.size(); }
  std::vector<std::uint8_t> joined() const;  // head then bulk in one buffer (tests, fuzzing)
};
void encode_parts(fcall&& f, wire_message& out, dialect d = dialect::p9_2000);

// Stat entries, as found in Rstat/Twstat and in directory reads (size[2] included).
std::size_t dir_size(const dir& d);  // bytes on the wire, size[2] included
void encode_dir(const dir& d, std::vector<std::uint8_t>& out);
// Decodes the one entry at the front of bytes; returns it and the bytes it took.
std::expected<std::pair<dir, std::size_t>, std::string> decode_dir(std::span<const std::uint8_t> bytes);
// Decodes a whole directory-read buffer (a sequence of entries).
std::expected<std::vector<dir>, std::string> decode_dirs(std::span<const std::uint8_t> bytes);

// Text form, for transcripts, logs and tests (srv9p/fcall_text.cpp):
//   Twalk tag=2 fid=0 newfid=1 wname=a wname=b
//   Rread tag=3 count=6 data='hello\n'
//   Rattach tag=1 qid=(0000000000000000 0 d)
// Values are bare when they consist of [A-Za-z0-9._/:+@-] and are not empty; otherwise
// Plan 9-quoted ('...', '' for a quote) with \n \t \\ and \xHH escapes inside.
// A qid is (path-hex16 version typeletters) with d a l A t for dir/append/excl/auth/tmp.
// Rstat/Twstat flatten the dir: name= uid= gid= muid= mode= length= qid= atime= mtime=
// type= dev=, with mode in octal with a leading 0 (020000000755 is a directory, rwxr-xr-x);
// Tcreate's perm= is octal too. A Twstat leaves out its don't-touch fields
// (`Twstat tag=1 fid=2 length=0` truncates and touches nothing else). A qid type with
// bits no letter names is written in hex: (0000000000000001 0 0x10).
// 9P2000.L messages print their fields in wire order under their diod/Linux names,
// numbers decimal except mode= in octal; Tauth/Tattach add n_uname= unless it is ~0;
// Rreaddir prints count= and data= as Rread does.
std::string to_string(const fcall& f);
// Parses the text form back; to_string(parse(s)) == s for any s to_string produced.
// Fields may come in any order, each once (wname and Rwalk's qid repeat, in order);
// numbers are C-style (0x hex, leading-0 octal, else decimal). For Rread and Twrite the
// count= field is optional and ignored (data decides it); in Twstat a missing dir field
// means "don't touch". Errors name the message and the field: "Twalk: missing newfid".
std::expected<fcall, std::string> parse(std::string_view line);

}  // namespace srv9p
