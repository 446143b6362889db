#pragma once
// 9P2000 messages as C++ values, and their wire encoding.
//
// One struct per message (T for requests, R for replies), one variant over all of them,
// and an fcall that adds the tag. decode() turns the bytes of one whole message into an
// fcall with strict bounds checking; encode() appends the bytes of an fcall to a buffer.
// Field names follow intro(5) and plan9port include/fcall.h; the wire format is in
// shared/design/9p.md. 9P2000.L messages will join the variant later; the dialect a
// connection speaks is chosen at Tversion, so decode() already takes one.
#include <cstddef>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
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

// Message types, intro(5). R = T + 1; Terror (106) is illegal.
enum class msg_type : std::uint8_t {
  tversion = 100, rversion, tauth, rauth, tattach, rattach,
  rerror = 107, tflush, rflush, twalk, rwalk, topen, ropen, tcreate, rcreate,
  tread, rread, twrite, rwrite, tclunk, rclunk, tremove, rremove, tstat, rstat, twstat, rwstat,
};

// Qid types (top byte of the mode) and mode bits, stat(5).
inline constexpr std::uint8_t qtdir = 0x80, qtappend = 0x40, qtexcl = 0x20, qtauth = 0x08,
                              qttmp = 0x04, qtfile = 0x00;
inline constexpr std::uint32_t dmdir = 0x80000000, dmappend = 0x40000000, dmexcl = 0x20000000,
                               dmauth = 0x08000000, dmtmp = 0x04000000;
// Open modes, open(5).
inline constexpr std::uint8_t oread = 0, owrite = 1, ordwr = 2, oexec = 3, otrunc = 0x10,
                              orclose = 0x40;

// The dialect a connection speaks, fixed by Tversion.
enum class dialect : std::uint8_t { p9_2000 };

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
  friend bool operator==(const tauth&, const tauth&) = default;
};
struct rauth {
  srv9p::qid aqid;
  friend bool operator==(const rauth&, const rauth&) = default;
};
struct tattach {
  std::uint32_t fid = 0, afid = nofid;
  std::string uname, aname;
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

// The order of the alternatives is the order of msg_type; type_of() relies on it.
using message = std::variant<tversion, rversion, tauth, rauth, tattach, rattach, rerror, tflush,
                             rflush, twalk, rwalk, topen, ropen, tcreate, rcreate, tread, rread,
                             twrite, rwrite, tclunk, rclunk, tremove, rremove, tstat, rstat,
                             twstat, rwstat>;

struct fcall {
  std::uint16_t tag = notag;
  message msg;
  friend bool operator==(const fcall&, const fcall&) = default;
};

// The wire type of a message.
msg_type type_of(const message& m);
// "Twalk", "Rerror", ...; "unknown" for a value outside msg_type.
std::string_view type_name(msg_type t);
// True for T-messages.
bool is_request(msg_type t);

// Decodes one whole message: bytes[0..4) is its size and must equal bytes.size().
// Every field is bounds-checked: a size that lies, a string or count running past the end,
// trailing bytes, too many walk names, or an unknown type is an error (text says which),
// never an out-of-bounds read. Strings are not checked for UTF-8.
std::expected<fcall, std::string> decode(std::span<const std::uint8_t> bytes,
                                         dialect d = dialect::p9_2000);

// Reads the size[4] prefix of a message (little-endian); bytes must hold at least 4.
std::uint32_t peek_size(std::span<const std::uint8_t> bytes);

// Appends the encoded message to out. The caller keeps within msize; strings longer than
// 65535 bytes are truncated to fit their len[2] (callers should never produce them).
void encode(const fcall& f, std::vector<std::uint8_t>& out);
std::vector<std::uint8_t> encode(const fcall& f);

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
std::string to_string(const fcall& f);
// Parses the text form back; to_string(parse(s)) == s for any s to_string produced.
// Fields may come in any order, each once (wname and Rwalk's qid repeat, in order);
// numbers are C-style (0x hex, leading-0 octal, else decimal). For Rread and Twrite the
// count= field is optional and ignored (data decides it); in Twstat a missing dir field
// means "don't touch". Errors name the message and the field: "Twalk: missing newfid".
std::expected<fcall, std::string> parse(std::string_view line);

}  // namespace srv9p
