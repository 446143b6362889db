// The 9P wire codec: decode() and encode() for every message of intro(5) and of 9P2000.L
// (Linux net/9p/client.c and protocol.c give the layouts), and the stat(5) directory
// entries and Rreaddir entries they carry.
//
// Arrangement: a reader (a bounds-checked cursor over the message) and a writer (a raw
// pointer into a buffer already sized for the message), then one read() and one put()
// overload per message struct, in msg_type order, plus body_size() so that encode() can
// size the buffer once. decode() dispatches on the type byte; encode() on the variant.
// All integers are little-endian (intro(5)).
#include "srv9p/fcall.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>
#include <utility>

#include <fmt/format.h>

namespace srv9p {
namespace {

constexpr std::size_t qid_size = 13;         // type[1] version[4] path[8]
constexpr std::size_t max_string = 0xFFFF;   // a string's len[2]
// stat(5): size[2] type[2] dev[4] qid[13] mode[4] atime[4] mtime[4] length[8] and four
// len[2] string prefixes; plan9port's STATFIXLEN.
constexpr std::size_t stat_fixed = 49;
// The largest entry whose size fits both its own size[2] and an Rstat's n[2].
constexpr std::size_t max_dir = 0xFFFF;

// A bounds-checked reader over one message (or one stat entry). A read that would pass
// the end reads nothing, records the fault (the first one wins) and returns false;
// decoders stop at the first false.
class cursor {
 public:
  cursor(std::span<const std::uint8_t> bytes, std::string_view what) : b_(bytes), what_(what) {}

  std::size_t left() const { return b_.size() - pos_; }
  bool failed() const { return !fault_.empty(); }
  const std::string& fault() const { return fault_; }
  void fail(std::string f) {
    if (fault_.empty()) fault_ = std::move(f);
  }

  bool u8(std::uint8_t& v) { return uint(v); }
  bool u16(std::uint16_t& v) { return uint(v); }
  bool u32(std::uint32_t& v) { return uint(v); }
  bool u64(std::uint64_t& v) { return uint(v); }

  // len[2] then len bytes.
  bool str(std::string& s) {
    std::uint16_t n = 0;
    if (!u16(n)) return false;
    if (n > left()) {
      fail(fmt::format("string runs past end of {}", what_));
      return false;
    }
    s.assign(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return true;
  }

  // Exactly n bytes, n having come from a count field.
  bool data(std::string& s, std::size_t n) {
    if (n > left()) {
      fail(fmt::format("count {} but {} bytes left in {}", n, left(), what_));
      return false;
    }
    s.assign(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return true;
  }

  bool get_qid(qid& q) { return u8(q.type) && u32(q.version) && u64(q.path); }

  // The next n bytes as a span, for a nested stat entry.
  bool sub(std::span<const std::uint8_t>& s, std::size_t n) {
    if (n > left()) {
      fail(fmt::format("stat runs past end of {}", what_));
      return false;
    }
    s = b_.subspan(pos_, n);
    pos_ += n;
    return true;
  }

 private:
  template <class T>
  bool uint(T& v) {
    if (failed()) return false;
    if (sizeof(T) > left()) {
      fail(fmt::format("field runs past end of {}", what_));
      return false;
    }
    T x = 0;
    for (std::size_t i = 0; i < sizeof(T); i++) x |= T(T(b_[pos_ + i]) << (8 * i));
    v = x;
    pos_ += sizeof(T);
    return true;
  }

  std::span<const std::uint8_t> b_;
  std::size_t pos_ = 0;
  std::string_view what_;
  std::string fault_;
};

// An unchecked writer into a buffer that encode() has already sized exactly.
class writer {
 public:
  explicit writer(std::uint8_t* p) : p_(p) {}

  void u8(std::uint8_t v) { *p_++ = v; }
  void u16(std::uint16_t v) { uint(v); }
  void u32(std::uint32_t v) { uint(v); }
  void u64(std::uint64_t v) { uint(v); }
  // A string already clamped to its len[2] by the caller's size computation.
  void str(std::string_view s, std::size_t n) {
    u16(static_cast<std::uint16_t>(n));
    bytes(s.substr(0, n));
  }
  void bytes(std::string_view s) {
    if (!s.empty()) std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  void put_qid(const qid& q) {
    u8(q.type);
    u32(q.version);
    u64(q.path);
  }

 private:
  template <class T>
  void uint(T v) {
    for (std::size_t i = 0; i < sizeof(T); i++) *p_++ = static_cast<std::uint8_t>(v >> (8 * i));
  }
  std::uint8_t* p_;
};

std::size_t str_len(std::string_view s) { return std::min(s.size(), max_string); }

// ---- stat entries, stat(5) ----

// The lengths the four strings of d get on the wire. Each is clamped to its len[2], and
// the four together to what leaves the entry within max_dir, in field order: a client
// can make a name long and a server's uid is its own, so an entry that would not fit is
// cut rather than given a size[2] that wraps.
std::array<std::size_t, 4> dir_string_lens(const dir& d) {
  std::size_t budget = max_dir - stat_fixed;
  std::array<std::size_t, 4> lens{};
  const std::string* strs[] = {&d.name, &d.uid, &d.gid, &d.muid};
  for (std::size_t i = 0; i < 4; i++) {
    lens[i] = std::min(str_len(*strs[i]), budget);
    budget -= lens[i];
  }
  return lens;
}

void put_dir(writer& w, const dir& d, const std::array<std::size_t, 4>& lens) {
  std::size_t total = stat_fixed + lens[0] + lens[1] + lens[2] + lens[3];
  w.u16(static_cast<std::uint16_t>(total - 2));  // size[2] does not count itself
  w.u16(d.type);
  w.u32(d.dev);
  w.put_qid(d.qid);
  w.u32(d.mode);
  w.u32(d.atime);
  w.u32(d.mtime);
  w.u64(d.length);
  w.str(d.name, lens[0]);
  w.str(d.uid, lens[1]);
  w.str(d.gid, lens[2]);
  w.str(d.muid, lens[3]);
}

// The fields of an entry after its size[2]; the cursor covers exactly size bytes.
bool read_dir_body(cursor& c, dir& d) {
  return c.u16(d.type) && c.u32(d.dev) && c.get_qid(d.qid) && c.u32(d.mode) &&
         c.u32(d.atime) && c.u32(d.mtime) && c.u64(d.length) && c.str(d.name) &&
         c.str(d.uid) && c.str(d.gid) && c.str(d.muid);
}

// One entry at the front of bytes; on failure the text says what went wrong.
std::expected<std::pair<dir, std::size_t>, std::string> read_dir(
    std::span<const std::uint8_t> bytes) {
  if (bytes.size() < 2) return std::unexpected(fmt::format("stat: {} bytes, no room for size[2]", bytes.size()));
  std::size_t size = std::size_t(bytes[0]) | std::size_t(bytes[1]) << 8;
  if (size + 2 > bytes.size())
    return std::unexpected(fmt::format("stat: size {} but {} bytes", size, bytes.size() - 2));
  cursor c(bytes.subspan(2, size), "stat entry");
  std::pair<dir, std::size_t> r{dir{}, size + 2};
  if (!read_dir_body(c, r.first)) return std::unexpected("stat: " + c.fault());
  if (c.left() != 0) return std::unexpected(fmt::format("stat: {} trailing bytes", c.left()));
  return r;
}

// A stat inside Rstat/Twstat: n[2] stat[n], where n must be the rest of the message and
// agree with the stat's own size[2].
bool read_stat_field(cursor& c, dir& d) {
  std::uint16_t n = 0;
  if (!c.u16(n)) return false;
  if (n != c.left()) {
    c.fail(fmt::format("n {} but {} bytes left in message", n, c.left()));
    return false;
  }
  std::span<const std::uint8_t> s;
  if (!c.sub(s, n)) return false;
  if (n >= 2) {
    std::size_t size = std::size_t(s[0]) | std::size_t(s[1]) << 8;
    if (size + 2 != n) {
      c.fail(fmt::format("n {} disagrees with stat size {}", n, size));
      return false;
    }
  }
  auto r = read_dir(s);
  if (!r) {
    c.fail(std::move(r.error()));
    return false;
  }
  d = std::move(r->first);
  return true;
}

// ---- per-message bodies, in msg_type order ----
// read(): the fields after the header. put(): write them. body_size(): their length.

bool read(cursor& c, tversion& m) { return c.u32(m.msize) && c.str(m.version); }
void put(writer& w, const tversion& m) { w.u32(m.msize); w.str(m.version, str_len(m.version)); }
std::size_t body_size(const tversion& m) { return 4 + 2 + str_len(m.version); }

bool read(cursor& c, rversion& m) { return c.u32(m.msize) && c.str(m.version); }
void put(writer& w, const rversion& m) { w.u32(m.msize); w.str(m.version, str_len(m.version)); }
std::size_t body_size(const rversion& m) { return 4 + 2 + str_len(m.version); }

bool read(cursor& c, tauth& m) { return c.u32(m.afid) && c.str(m.uname) && c.str(m.aname); }
void put(writer& w, const tauth& m) {
  w.u32(m.afid);
  w.str(m.uname, str_len(m.uname));
  w.str(m.aname, str_len(m.aname));
}
std::size_t body_size(const tauth& m) { return 4 + 2 + str_len(m.uname) + 2 + str_len(m.aname); }

bool read(cursor& c, rauth& m) { return c.get_qid(m.aqid); }
void put(writer& w, const rauth& m) { w.put_qid(m.aqid); }
std::size_t body_size(const rauth&) { return qid_size; }

bool read(cursor& c, tattach& m) {
  return c.u32(m.fid) && c.u32(m.afid) && c.str(m.uname) && c.str(m.aname);
}
void put(writer& w, const tattach& m) {
  w.u32(m.fid);
  w.u32(m.afid);
  w.str(m.uname, str_len(m.uname));
  w.str(m.aname, str_len(m.aname));
}
std::size_t body_size(const tattach& m) { return 8 + 2 + str_len(m.uname) + 2 + str_len(m.aname); }

bool read(cursor& c, rattach& m) { return c.get_qid(m.qid); }
void put(writer& w, const rattach& m) { w.put_qid(m.qid); }
std::size_t body_size(const rattach&) { return qid_size; }

bool read(cursor& c, rerror& m) { return c.str(m.ename); }
void put(writer& w, const rerror& m) { w.str(m.ename, str_len(m.ename)); }
std::size_t body_size(const rerror& m) { return 2 + str_len(m.ename); }

bool read(cursor& c, tflush& m) { return c.u16(m.oldtag); }
void put(writer& w, const tflush& m) { w.u16(m.oldtag); }
std::size_t body_size(const tflush&) { return 2; }

bool read(cursor&, rflush&) { return true; }
void put(writer&, const rflush&) {}
std::size_t body_size(const rflush&) { return 0; }

bool read(cursor& c, twalk& m) {
  std::uint16_t n = 0;
  if (!(c.u32(m.fid) && c.u32(m.newfid) && c.u16(n))) return false;
  if (n > maxwelem) {
    c.fail(fmt::format("nwname {} exceeds {}", n, maxwelem));
    return false;
  }
  m.wnames.resize(n);
  for (auto& s : m.wnames)
    if (!c.str(s)) return false;
  return true;
}
// More than 16 names (or 65535) is the caller's bug; the count is written as given, cut
// to its n[2], so that tests can produce the bytes decode() must refuse.
void put(writer& w, const twalk& m) {
  std::size_t n = std::min(m.wnames.size(), max_string);
  w.u32(m.fid);
  w.u32(m.newfid);
  w.u16(static_cast<std::uint16_t>(n));
  for (std::size_t i = 0; i < n; i++) w.str(m.wnames[i], str_len(m.wnames[i]));
}
std::size_t body_size(const twalk& m) {
  std::size_t n = std::min(m.wnames.size(), max_string);
  std::size_t s = 4 + 4 + 2;
  for (std::size_t i = 0; i < n; i++) s += 2 + str_len(m.wnames[i]);
  return s;
}

bool read(cursor& c, rwalk& m) {
  std::uint16_t n = 0;
  if (!c.u16(n)) return false;
  if (n > maxwelem) {
    c.fail(fmt::format("nwqid {} exceeds {}", n, maxwelem));
    return false;
  }
  m.qids.resize(n);
  for (auto& q : m.qids)
    if (!c.get_qid(q)) return false;
  return true;
}
void put(writer& w, const rwalk& m) {
  std::size_t n = std::min(m.qids.size(), max_string);
  w.u16(static_cast<std::uint16_t>(n));
  for (std::size_t i = 0; i < n; i++) w.put_qid(m.qids[i]);
}
std::size_t body_size(const rwalk& m) { return 2 + qid_size * std::min(m.qids.size(), max_string); }

bool read(cursor& c, topen& m) { return c.u32(m.fid) && c.u8(m.mode); }
void put(writer& w, const topen& m) { w.u32(m.fid); w.u8(m.mode); }
std::size_t body_size(const topen&) { return 5; }

bool read(cursor& c, ropen& m) { return c.get_qid(m.qid) && c.u32(m.iounit); }
void put(writer& w, const ropen& m) { w.put_qid(m.qid); w.u32(m.iounit); }
std::size_t body_size(const ropen&) { return qid_size + 4; }

bool read(cursor& c, tcreate& m) {
  return c.u32(m.fid) && c.str(m.name) && c.u32(m.perm) && c.u8(m.mode);
}
void put(writer& w, const tcreate& m) {
  w.u32(m.fid);
  w.str(m.name, str_len(m.name));
  w.u32(m.perm);
  w.u8(m.mode);
}
std::size_t body_size(const tcreate& m) { return 4 + 2 + str_len(m.name) + 4 + 1; }

bool read(cursor& c, rcreate& m) { return c.get_qid(m.qid) && c.u32(m.iounit); }
void put(writer& w, const rcreate& m) { w.put_qid(m.qid); w.u32(m.iounit); }
std::size_t body_size(const rcreate&) { return qid_size + 4; }

bool read(cursor& c, tread& m) { return c.u32(m.fid) && c.u64(m.offset) && c.u32(m.count); }
void put(writer& w, const tread& m) { w.u32(m.fid); w.u64(m.offset); w.u32(m.count); }
std::size_t body_size(const tread&) { return 16; }

// count[4] data[count]: the data is the rest of the message, exactly.
bool read_data(cursor& c, std::string& data) {
  std::uint32_t n = 0;
  if (!c.u32(n)) return false;
  if (n < c.left()) {
    c.fail(fmt::format("count {} but {} bytes left in message", n, c.left()));
    return false;
  }
  return c.data(data, n);
}
// Data beyond 4 GiB cannot be counted; the caller keeps within msize long before that.
std::size_t data_len(const std::string& data) { return std::min<std::size_t>(data.size(), 0xFFFFFFFF); }

bool read(cursor& c, rread& m) { return read_data(c, m.data); }
// The data itself is the message's bulk, which encode() appends (bulk_of).
void put(writer& w, const rread& m) { w.u32(static_cast<std::uint32_t>(data_len(m.data))); }
std::size_t body_size(const rread& m) { return 4 + data_len(m.data); }

bool read(cursor& c, twrite& m) { return c.u32(m.fid) && c.u64(m.offset) && read_data(c, m.data); }
void put(writer& w, const twrite& m) {  // the data: bulk_of
  w.u32(m.fid);
  w.u64(m.offset);
  w.u32(static_cast<std::uint32_t>(data_len(m.data)));
}
std::size_t body_size(const twrite& m) { return 16 + data_len(m.data); }

// A message's bulk: a Rread's or Twrite's data, up to its count[4], which put() leaves out
// and encode() appends after the fixed fields. A Tread's reply is up to msize, and
// zero-filling a buffer of that size only to copy over it was a quarter of galaxy-node's
// CPU on a long read (bench/RESULTS.md, "Kernel 9P mounts"). Empty for other messages.
template <class M>
std::string_view bulk_of(const M& m) {
  if constexpr (std::is_same_v<M, rread> || std::is_same_v<M, twrite>) {
    return std::string_view(m.data).substr(0, data_len(m.data));
  } else {
    return {};
  }
}

bool read(cursor& c, rwrite& m) { return c.u32(m.count); }
void put(writer& w, const rwrite& m) { w.u32(m.count); }
std::size_t body_size(const rwrite&) { return 4; }

bool read(cursor& c, tclunk& m) { return c.u32(m.fid); }
void put(writer& w, const tclunk& m) { w.u32(m.fid); }
std::size_t body_size(const tclunk&) { return 4; }

bool read(cursor&, rclunk&) { return true; }
void put(writer&, const rclunk&) {}
std::size_t body_size(const rclunk&) { return 0; }

bool read(cursor& c, tremove& m) { return c.u32(m.fid); }
void put(writer& w, const tremove& m) { w.u32(m.fid); }
std::size_t body_size(const tremove&) { return 4; }

bool read(cursor&, rremove&) { return true; }
void put(writer&, const rremove&) {}
std::size_t body_size(const rremove&) { return 0; }

bool read(cursor& c, tstat& m) { return c.u32(m.fid); }
void put(writer& w, const tstat& m) { w.u32(m.fid); }
std::size_t body_size(const tstat&) { return 4; }

// n[2] stat[n]; n counts the stat's own size[2] (stat(5)).
bool read(cursor& c, rstat& m) { return read_stat_field(c, m.stat); }
void put(writer& w, const rstat& m) {
  auto lens = dir_string_lens(m.stat);
  w.u16(static_cast<std::uint16_t>(stat_fixed + lens[0] + lens[1] + lens[2] + lens[3]));
  put_dir(w, m.stat, lens);
}
std::size_t body_size(const rstat& m) { return 2 + dir_size(m.stat); }

bool read(cursor& c, twstat& m) { return c.u32(m.fid) && read_stat_field(c, m.stat); }
void put(writer& w, const twstat& m) {
  auto lens = dir_string_lens(m.stat);
  w.u32(m.fid);
  w.u16(static_cast<std::uint16_t>(stat_fixed + lens[0] + lens[1] + lens[2] + lens[3]));
  put_dir(w, m.stat, lens);
}
std::size_t body_size(const twstat& m) { return 4 + 2 + dir_size(m.stat); }

bool read(cursor&, rwstat&) { return true; }
void put(writer&, const rwstat&) {}
std::size_t body_size(const rwstat&) { return 0; }

// ---- 9P2000.L ----
// Tauth and Tattach add n_uname[4] (net/9p/client.c: "dssd", "ddssd").
bool read_l(cursor& c, tauth& m) { return read(c, m) && c.u32(m.n_uname); }
bool read_l(cursor& c, tattach& m) { return read(c, m) && c.u32(m.n_uname); }

// The structs with tie(): every field in wire order, each of a wire type.
template <class M>
concept tied = requires(M m) { m.tie(); };

bool read_field(cursor& c, std::uint8_t& v) { return c.u8(v); }
bool read_field(cursor& c, std::uint32_t& v) { return c.u32(v); }
bool read_field(cursor& c, std::uint64_t& v) { return c.u64(v); }
bool read_field(cursor& c, std::string& v) { return c.str(v); }
bool read_field(cursor& c, qid& v) { return c.get_qid(v); }
void put_field(writer& w, std::uint8_t v) { w.u8(v); }
void put_field(writer& w, std::uint32_t v) { w.u32(v); }
void put_field(writer& w, std::uint64_t v) { w.u64(v); }
void put_field(writer& w, const std::string& v) { w.str(v, str_len(v)); }
void put_field(writer& w, const qid& v) { w.put_qid(v); }
template <class T>
std::size_t field_size(const T&) { return sizeof(T); }
std::size_t field_size(const std::string& v) { return 2 + str_len(v); }
std::size_t field_size(const qid&) { return qid_size; }

template <tied M>
bool read(cursor& c, M& m) {
  return std::apply([&c](auto&... f) { return (read_field(c, f) && ...); }, m.tie());
}
template <tied M>
void put(writer& w, const M& m) {
  std::apply([&w](const auto&... f) { (put_field(w, f), ...); }, m.tie());
}
template <tied M>
std::size_t body_size(const M& m) {
  return std::apply([](const auto&... f) { return (std::size_t{0} + ... + field_size(f)); }, m.tie());
}

bool read(cursor& c, rreaddir& m) { return read_data(c, m.data); }
void put(writer& w, const rreaddir& m) {
  std::size_t n = data_len(m.data);
  w.u32(static_cast<std::uint32_t>(n));
  w.bytes(std::string_view(m.data).substr(0, n));
}
std::size_t body_size(const rreaddir& m) { return 4 + data_len(m.data); }

// Decodes the body of a message of type M; the cursor covers everything after the header.
template <class M>
std::expected<fcall, std::string> decode_body(cursor& c, std::uint16_t tag, dialect d = dialect::p9_2000) {
  fcall f{.tag = tag, .msg = message(std::in_place_type<M>)};
  M& m = *std::get_if<M>(&f.msg);
  bool ok = false;
  if constexpr (std::is_same_v<M, tauth> || std::is_same_v<M, tattach>) {
    ok = d == dialect::p9_2000_l ? read_l(c, m) : read(c, m);
  } else {
    ok = read(c, m);
  }
  if (!ok) return std::unexpected(fmt::format("{}: {}", type_name(type_of(f.msg)), c.fault()));
  if (c.left() != 0)
    return std::unexpected(fmt::format("{}: {} trailing bytes", type_name(type_of(f.msg)), c.left()));
  return f;
}

constexpr std::string_view names[] = {
    "Tversion", "Rversion", "Tauth",  "Rauth",  "Tattach", "Rattach", "Terror",
    "Rerror",   "Tflush",   "Rflush", "Twalk",  "Rwalk",   "Topen",   "Ropen",
    "Tcreate",  "Rcreate",  "Tread",  "Rread",  "Twrite",  "Rwrite",  "Tclunk",
    "Rclunk",   "Tremove",  "Rremove", "Tstat", "Rstat",   "Twstat",  "Rwstat",
};

// The 9P2000.L types, in the variant's order after the 9P2000 ones.
constexpr std::pair<msg_type, std::string_view> dotl_types[] = {
    {msg_type::rlerror, "Rlerror"},         {msg_type::tstatfs, "Tstatfs"},
    {msg_type::rstatfs, "Rstatfs"},         {msg_type::tlopen, "Tlopen"},
    {msg_type::rlopen, "Rlopen"},           {msg_type::tlcreate, "Tlcreate"},
    {msg_type::rlcreate, "Rlcreate"},       {msg_type::tsymlink, "Tsymlink"},
    {msg_type::rsymlink, "Rsymlink"},       {msg_type::tmknod, "Tmknod"},
    {msg_type::rmknod, "Rmknod"},           {msg_type::trename, "Trename"},
    {msg_type::rrename, "Rrename"},         {msg_type::treadlink, "Treadlink"},
    {msg_type::rreadlink, "Rreadlink"},     {msg_type::tgetattr, "Tgetattr"},
    {msg_type::rgetattr, "Rgetattr"},       {msg_type::tsetattr, "Tsetattr"},
    {msg_type::rsetattr, "Rsetattr"},       {msg_type::txattrwalk, "Txattrwalk"},
    {msg_type::rxattrwalk, "Rxattrwalk"},   {msg_type::txattrcreate, "Txattrcreate"},
    {msg_type::rxattrcreate, "Rxattrcreate"}, {msg_type::treaddir, "Treaddir"},
    {msg_type::rreaddir, "Rreaddir"},       {msg_type::tfsync, "Tfsync"},
    {msg_type::rfsync, "Rfsync"},           {msg_type::tlock, "Tlock"},
    {msg_type::rlock, "Rlock"},             {msg_type::tgetlock, "Tgetlock"},
    {msg_type::rgetlock, "Rgetlock"},       {msg_type::tlink, "Tlink"},
    {msg_type::rlink, "Rlink"},             {msg_type::tmkdir, "Tmkdir"},
    {msg_type::rmkdir, "Rmkdir"},           {msg_type::trenameat, "Trenameat"},
    {msg_type::rrenameat, "Rrenameat"},     {msg_type::tunlinkat, "Tunlinkat"},
    {msg_type::runlinkat, "Runlinkat"},
};
constexpr std::size_t p9_2000_alternatives = 27;
static_assert(p9_2000_alternatives + std::size(dotl_types) == std::variant_size_v<message>);

// Decodes a 9P2000.L message of type t (one of dotl_types) by its variant index.
template <std::size_t... I>
std::expected<fcall, std::string> decode_dotl(cursor& c, std::uint16_t tag, std::size_t k,
                                              std::index_sequence<I...>) {
  using fn = std::expected<fcall, std::string> (*)(cursor&, std::uint16_t);
  static constexpr fn table[] = {
      [](cursor& c2, std::uint16_t t2) {
        return decode_body<std::variant_alternative_t<p9_2000_alternatives + I, message>>(c2, t2);
      }...};
  return table[k](c, tag);
}

}  // namespace

dir dont_touch_dir() {
  dir d;
  d.type = 0xFFFF;
  d.dev = 0xFFFFFFFF;
  d.qid = {.type = 0xFF, .version = 0xFFFFFFFF, .path = ~std::uint64_t{0}};
  d.mode = 0xFFFFFFFF;
  d.atime = 0xFFFFFFFF;
  d.mtime = 0xFFFFFFFF;
  d.length = ~std::uint64_t{0};
  return d;  // strings are empty: don't touch
}

msg_type type_of(const message& m) {
  // The 9P2000 part follows msg_type with one gap: there is no Terror (106) alternative.
  std::size_t i = m.index();
  if (i >= p9_2000_alternatives) return dotl_types[i - p9_2000_alternatives].first;
  return static_cast<msg_type>(i < 6 ? 100 + i : 101 + i);
}

bool is_dotl(msg_type t) {
  return std::any_of(std::begin(dotl_types), std::end(dotl_types), [t](const auto& e) { return e.first == t; });
}

std::string_view type_name(msg_type t) {
  auto v = static_cast<unsigned>(t);
  for (const auto& [type, name] : dotl_types)
    if (type == t) return name;
  if (v < 100 || v - 100 >= std::size(names) || v == 106) return "unknown";
  return names[v - 100];
}

bool is_request(msg_type t) {
  auto v = static_cast<unsigned>(t);
  return v % 2 == 0 && type_name(t) != "unknown";
}

std::uint32_t peek_size(std::span<const std::uint8_t> bytes) {
  return std::uint32_t(bytes[0]) | std::uint32_t(bytes[1]) << 8 | std::uint32_t(bytes[2]) << 16 |
         std::uint32_t(bytes[3]) << 24;
}

std::expected<fcall, std::string> decode(std::span<const std::uint8_t> bytes, dialect d) {
  if (bytes.size() < header_size)
    return std::unexpected(fmt::format("message of {} bytes is shorter than its header", bytes.size()));
  std::uint32_t size = peek_size(bytes);
  if (size != bytes.size()) return std::unexpected(fmt::format("message size {} but {} bytes", size, bytes.size()));
  std::uint8_t type = bytes[4];
  std::uint16_t tag = static_cast<std::uint16_t>(bytes[5] | bytes[6] << 8);
  cursor c(bytes.subspan(header_size), "message");
  switch (static_cast<msg_type>(type)) {
    case msg_type::tversion: return decode_body<tversion>(c, tag);
    case msg_type::rversion: return decode_body<rversion>(c, tag);
    case msg_type::tauth: return decode_body<tauth>(c, tag, d);
    case msg_type::rauth: return decode_body<rauth>(c, tag);
    case msg_type::tattach: return decode_body<tattach>(c, tag, d);
    case msg_type::rattach: return decode_body<rattach>(c, tag);
    case msg_type::rerror: return decode_body<rerror>(c, tag);
    case msg_type::tflush: return decode_body<tflush>(c, tag);
    case msg_type::rflush: return decode_body<rflush>(c, tag);
    case msg_type::twalk: return decode_body<twalk>(c, tag);
    case msg_type::rwalk: return decode_body<rwalk>(c, tag);
    case msg_type::topen: return decode_body<topen>(c, tag);
    case msg_type::ropen: return decode_body<ropen>(c, tag);
    case msg_type::tcreate: return decode_body<tcreate>(c, tag);
    case msg_type::rcreate: return decode_body<rcreate>(c, tag);
    case msg_type::tread: return decode_body<tread>(c, tag);
    case msg_type::rread: return decode_body<rread>(c, tag);
    case msg_type::twrite: return decode_body<twrite>(c, tag);
    case msg_type::rwrite: return decode_body<rwrite>(c, tag);
    case msg_type::tclunk: return decode_body<tclunk>(c, tag);
    case msg_type::rclunk: return decode_body<rclunk>(c, tag);
    case msg_type::tremove: return decode_body<tremove>(c, tag);
    case msg_type::rremove: return decode_body<rremove>(c, tag);
    case msg_type::tstat: return decode_body<tstat>(c, tag);
    case msg_type::rstat: return decode_body<rstat>(c, tag);
    case msg_type::twstat: return decode_body<twstat>(c, tag);
    case msg_type::rwstat: return decode_body<rwstat>(c, tag);
    default: break;
  }
  if (d == dialect::p9_2000_l) {
    for (std::size_t k = 0; k < std::size(dotl_types); k++) {
      if (static_cast<std::uint8_t>(dotl_types[k].first) == type)
        return decode_dotl(c, tag, k, std::make_index_sequence<std::size(dotl_types)>());
    }
  }
  // Includes Terror (106), which intro(5) declares illegal.
  return std::unexpected(fmt::format("unknown message type {}", type));
}

namespace {

// Appends the message to out without its bulk (bulk_of), which it returns for the caller
// to append or to send beside; the size[4] counts the bulk. reserve_bulk: make room for
// the bulk in out as well.
std::string_view encode_head(const fcall& f, std::vector<std::uint8_t>& out, dialect d, bool reserve_bulk) {
  const bool l = d == dialect::p9_2000_l;
  std::size_t body = std::visit(
      [l](const auto& m) {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, tauth> || std::is_same_v<M, tattach>) return body_size(m) + (l ? 4 : 0);
        else return body_size(m);
      },
      f.msg);
  std::size_t size = header_size + body;
  std::size_t start = out.size();
  std::string_view bulk = std::visit([](const auto& m) { return bulk_of(m); }, f.msg);
  out.reserve(start + size - (reserve_bulk ? 0 : bulk.size()));
  out.resize(start + size - bulk.size());
  writer w(out.data() + start);
  w.u32(static_cast<std::uint32_t>(size));
  w.u8(static_cast<std::uint8_t>(type_of(f.msg)));
  w.u16(f.tag);
  std::visit(
      [&w, l](const auto& m) {
        put(w, m);
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, tauth> || std::is_same_v<M, tattach>) {
          if (l) w.u32(m.n_uname);
        }
      },
      f.msg);
  return bulk;
}

void append(std::vector<std::uint8_t>& out, std::string_view bytes) {
  const auto* b = reinterpret_cast<const std::uint8_t*>(bytes.data());
  out.insert(out.end(), b, b + bytes.size());
}

}  // namespace

void encode(const fcall& f, std::vector<std::uint8_t>& out, dialect d) {
  append(out, encode_head(f, out, d, true));
}

void encode_parts(fcall&& f, wire_message& out, dialect d) {
  std::string_view bulk = encode_head(f, out.head, d, false);
  if (auto* r = std::get_if<rread>(&f.msg)) {
    r->data.resize(bulk.size());  // (data_len's clamp; never shorter in practice)
    out.bulk = std::move(r->data);
  } else {
    append(out.head, bulk);
  }
}

std::vector<std::uint8_t> wire_message::joined() const {
  std::vector<std::uint8_t> all;
  all.reserve(size());
  all.insert(all.end(), head.begin(), head.end());
  append(all, bulk);
  return all;
}

std::vector<std::uint8_t> encode(const fcall& f, dialect d) {
  std::vector<std::uint8_t> out;
  encode(f, out, d);
  return out;
}

std::size_t dirent_size(const dirent& d) { return qid_size + 8 + 1 + 2 + str_len(d.name); }

void encode_dirent(const dirent& d, std::vector<std::uint8_t>& out) {
  std::size_t start = out.size();
  out.resize(start + dirent_size(d));
  writer w(out.data() + start);
  w.put_qid(d.qid);
  w.u64(d.offset);
  w.u8(d.type);
  w.str(d.name, str_len(d.name));
}

std::expected<std::vector<dirent>, std::string> decode_dirents(std::span<const std::uint8_t> bytes) {
  std::vector<dirent> out;
  cursor c(bytes, "readdir data");
  while (c.left() > 0) {
    dirent d;
    if (!(c.get_qid(d.qid) && c.u64(d.offset) && c.u8(d.type) && c.str(d.name)))
      return std::unexpected(fmt::format("entry {}: {}", out.size(), c.fault()));
    out.push_back(std::move(d));
  }
  return out;
}

std::size_t dir_size(const dir& d) {
  auto lens = dir_string_lens(d);
  return stat_fixed + lens[0] + lens[1] + lens[2] + lens[3];
}

void encode_dir(const dir& d, std::vector<std::uint8_t>& out) {
  auto lens = dir_string_lens(d);
  std::size_t start = out.size();
  out.resize(start + stat_fixed + lens[0] + lens[1] + lens[2] + lens[3]);
  writer w(out.data() + start);
  put_dir(w, d, lens);
}

std::expected<std::pair<dir, std::size_t>, std::string> decode_dir(std::span<const std::uint8_t> bytes) {
  return read_dir(bytes);
}

std::expected<std::vector<dir>, std::string> decode_dirs(std::span<const std::uint8_t> bytes) {
  // Count the entries by their size[2] first, so the vector is allocated once.
  std::size_t count = 0;
  for (std::size_t at = 0; at + 2 <= bytes.size(); count++)
    at += 2 + (std::size_t(bytes[at]) | std::size_t(bytes[at + 1]) << 8);
  std::vector<dir> dirs;
  dirs.reserve(count);
  std::size_t at = 0;
  while (at < bytes.size()) {
    auto r = read_dir(bytes.subspan(at));
    if (!r) return std::unexpected(fmt::format("entry at offset {}: {}", at, r.error()));
    dirs.push_back(std::move(r->first));
    at += r->second;
  }
  return dirs;
}

}  // namespace srv9p
