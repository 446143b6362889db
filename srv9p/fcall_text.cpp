// The text form of 9P messages, for transcripts, logs and tests: to_string() and parse().
//
//   Twalk tag=2 fid=0 newfid=1 wname=a wname=b
//   Rread tag=3 count=6 data='hello\n'
//
// A line is the message name, then tag=, then the fields as key=value in wire order
// (the dir of Rstat/Twstat flattened in the order fcall.hpp gives). Numbers are decimal,
// except modes and permissions, which are octal with a leading 0; parse() reads C-style
// numbers (0x hex, leading-0 octal, else decimal) everywhere. Strings are bare or
// Plan 9-quoted; a qid is (path version type) as Plan 9's fcallfmt prints it.
//
// Arrangement: quoting helpers, then print() per message for to_string(), then a field
// reader and fields() per message for parse(). parse() accepts fields in any order but
// each at most once (wname in Twalk and qid in Rwalk repeat, in order), rejects unknown
// fields, and requires every field except count= in Rread/Twrite (the data decides it)
// and, in Twstat, dir fields left out, which mean "don't touch" (to_string leaves out the
// don't-touch fields of a Twstat, so `Twstat tag=1 fid=2 length=0` truncates).
#include <algorithm>
#include <charconv>
#include <iterator>
#include <limits>
#include <utility>

#include <fmt/format.h>

#include "srv9p/fcall.hpp"

namespace srv9p {
namespace {

// ---- quoting ----

bool is_bare(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '/' || c == ':' || c == '+' || c == '@' || c == '-';
}

// The length of the valid UTF-8 sequence at s[i], or 0 when the bytes there are not one.
// C1 controls (U+0080..U+009F) count as invalid so that they are escaped too.
std::size_t utf8_len(std::string_view s, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  unsigned char c = b(0);
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    if (c == 0xC2) lo = 0xA0;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size() || b(1) < lo || b(1) > hi) return 0;
  for (std::size_t k = 2; k < n; k++)
    if (b(k) < 0x80 || b(k) > 0xBF) return 0;
  return n;
}

// Appends s bare if it is a non-empty run of bare characters, otherwise quoted: '...' with
// '' for a quote, \n \t \\ escapes, valid UTF-8 kept, every other byte as \xHH.
void quote(std::string& out, std::string_view s) {
  if (!s.empty() && std::all_of(s.begin(), s.end(), is_bare)) {
    out += s;
    return;
  }
  out += '\'';
  for (std::size_t i = 0; i < s.size();) {
    char c = s[i];
    auto u = static_cast<unsigned char>(c);
    if (c == '\'') {
      out += "''";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u >= 0x20 && u < 0x7F) {
      out += c;
    } else if (std::size_t n = u >= 0x80 ? utf8_len(s, i) : 0; n > 0) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    } else {
      fmt::format_to(std::back_inserter(out), "\\x{:02x}", u);
    }
    i++;
  }
  out += '\'';
}

// ---- to_string ----

constexpr std::pair<std::uint8_t, char> qid_letters[] = {
    {qtdir, 'd'}, {qtappend, 'a'}, {qtexcl, 'l'}, {qtauth, 'A'}, {qttmp, 't'}};
constexpr std::uint8_t qid_lettered = qtdir | qtappend | qtexcl | qtauth | qttmp;
// The qid of dont_touch_dir(): every bit set.
constexpr qid dont_touch_qid{.type = 0xFF, .version = 0xFFFFFFFF, .path = ~std::uint64_t{0}};

class printer {
 public:
  explicit printer(std::string& out) : out_(out) {}

  void num(std::string_view key, std::uint64_t v) { fmt::format_to(it(), " {}={}", key, v); }
  void oct(std::string_view key, std::uint64_t v) { fmt::format_to(it(), " {}=0{:o}", key, v); }
  void str(std::string_view key, std::string_view s) {
    fmt::format_to(it(), " {}=", key);
    quote(out_, s);
  }
  // (path version type): type as letters, or in hex when it has bits no letter names.
  void qid(std::string_view key, const srv9p::qid& q) {
    fmt::format_to(it(), " {}=({:016x} {} ", key, q.path, q.version);
    if (q.type & ~qid_lettered) {
      fmt::format_to(it(), "0x{:02x}", q.type);
    } else {
      for (auto [bit, letter] : qid_letters)
        if (q.type & bit) out_ += letter;
    }
    out_ += ')';
  }

  // stat(5) entry, flattened; in a Twstat the don't-touch fields are left out.
  void dir(const srv9p::dir& d, bool skip_dont_touch) {
    const bool all = !skip_dont_touch;
    if (all || !d.name.empty()) str("name", d.name);
    if (all || !d.uid.empty()) str("uid", d.uid);
    if (all || !d.gid.empty()) str("gid", d.gid);
    if (all || !d.muid.empty()) str("muid", d.muid);
    if (all || d.mode != 0xFFFFFFFF) oct("mode", d.mode);
    if (all || d.length != ~std::uint64_t{0}) num("length", d.length);
    if (all || d.qid != dont_touch_qid) qid("qid", d.qid);
    if (all || d.atime != 0xFFFFFFFF) num("atime", d.atime);
    if (all || d.mtime != 0xFFFFFFFF) num("mtime", d.mtime);
    if (all || d.type != 0xFFFF) num("type", d.type);
    if (all || d.dev != 0xFFFFFFFF) num("dev", d.dev);
  }

 private:
  std::back_insert_iterator<std::string> it() { return std::back_inserter(out_); }
  std::string& out_;
};

void print(printer& p, const tversion& m) { p.num("msize", m.msize); p.str("version", m.version); }
void print(printer& p, const rversion& m) { p.num("msize", m.msize); p.str("version", m.version); }
void print(printer& p, const tauth& m) {
  p.num("afid", m.afid);
  p.str("uname", m.uname);
  p.str("aname", m.aname);
  if (m.n_uname != nofid) p.num("n_uname", m.n_uname);
}
void print(printer& p, const rauth& m) { p.qid("aqid", m.aqid); }
void print(printer& p, const tattach& m) {
  p.num("fid", m.fid);
  p.num("afid", m.afid);
  p.str("uname", m.uname);
  p.str("aname", m.aname);
  if (m.n_uname != nofid) p.num("n_uname", m.n_uname);
}
void print(printer& p, const rattach& m) { p.qid("qid", m.qid); }
void print(printer& p, const rerror& m) { p.str("ename", m.ename); }
void print(printer& p, const tflush& m) { p.num("oldtag", m.oldtag); }
void print(printer&, const rflush&) {}
void print(printer& p, const twalk& m) {
  p.num("fid", m.fid);
  p.num("newfid", m.newfid);
  for (const auto& w : m.wnames) p.str("wname", w);
}
void print(printer& p, const rwalk& m) {
  for (const auto& q : m.qids) p.qid("qid", q);
}
void print(printer& p, const topen& m) { p.num("fid", m.fid); p.num("mode", m.mode); }
void print(printer& p, const ropen& m) { p.qid("qid", m.qid); p.num("iounit", m.iounit); }
void print(printer& p, const tcreate& m) {
  p.num("fid", m.fid);
  p.str("name", m.name);
  p.oct("perm", m.perm);
  p.num("mode", m.mode);
}
void print(printer& p, const rcreate& m) { p.qid("qid", m.qid); p.num("iounit", m.iounit); }
void print(printer& p, const tread& m) {
  p.num("fid", m.fid);
  p.num("offset", m.offset);
  p.num("count", m.count);
}
void print(printer& p, const rread& m) { p.num("count", m.data.size()); p.str("data", m.data); }
void print(printer& p, const twrite& m) {
  p.num("fid", m.fid);
  p.num("offset", m.offset);
  p.num("count", m.data.size());
  p.str("data", m.data);
}
void print(printer& p, const rwrite& m) { p.num("count", m.count); }
void print(printer& p, const tclunk& m) { p.num("fid", m.fid); }
void print(printer&, const rclunk&) {}
void print(printer& p, const tremove& m) { p.num("fid", m.fid); }
void print(printer&, const rremove&) {}
void print(printer& p, const tstat& m) { p.num("fid", m.fid); }
void print(printer& p, const rstat& m) { p.dir(m.stat, false); }
void print(printer& p, const twstat& m) { p.num("fid", m.fid); p.dir(m.stat, true); }
void print(printer&, const rwstat&) {}

// 9P2000.L: the fields in wire order, mode in octal.
template <class M>
concept tied = requires(M m) { m.tie(); };
void print_field(printer& p, std::string_view key, std::uint64_t v) {
  if (key == "mode") {
    p.oct(key, v);
  } else {
    p.num(key, v);
  }
}
void print_field(printer& p, std::string_view key, const std::string& v) { p.str(key, v); }
void print_field(printer& p, std::string_view key, const qid& v) { p.qid(key, v); }
template <tied M>
void print(printer& p, const M& m) {
  std::size_t i = 0;
  std::apply([&](const auto&... f) { (print_field(p, M::field_names[i++], f), ...); }, m.tie());
}
void print(printer& p, const rreaddir& m) { p.num("count", m.data.size()); p.str("data", m.data); }

// ---- parse ----

// One key=value of a line. A qid's value is the text between its parentheses.
struct field {
  std::string_view key;
  std::string value;
  bool paren = false;
  bool used = false;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// C-style unsigned number: 0x hex, leading-0 octal, else decimal; the whole text.
bool parse_uint(std::string_view s, std::uint64_t& v) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  } else if (s.size() > 1 && s[0] == '0') {
    base = 8;
    s.remove_prefix(1);
  }
  if (s.empty() || s[0] == '-' || s[0] == '+') return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  return ec == std::errc() && p == s.data() + s.size();
}

// Splits the fields of a line (after its message name) into key and value, undoing the
// quoting.
std::expected<std::vector<field>, std::string> tokenize(std::string_view line) {
  std::size_t i = 0, n = line.size(), start = 0;
  auto skip = [&] {
    while (i < n && is_space(line[i])) i++;
  };
  std::vector<field> fields;
  fields.reserve(8);
  for (skip(); i < n; skip()) {
    start = i;
    while (i < n && ((line[i] >= 'a' && line[i] <= 'z') || line[i] == '_')) i++;  // n_uname, atime_sec
    if (i == start || i == n || line[i] != '=') {
      std::size_t end = start;
      while (end < n && !is_space(line[end])) end++;
      return std::unexpected(fmt::format("expected key=value, not '{}'", line.substr(start, end - start)));
    }
    field f{.key = line.substr(start, i - start)};
    i++;  // '='
    if (i < n && line[i] == '\'') {
      for (i++;; i++) {
        if (i == n) return std::unexpected(fmt::format("{}: unterminated quote", f.key));
        char c = line[i];
        if (c == '\'') {
          if (i + 1 < n && line[i + 1] == '\'') {
            f.value += '\'';
            i++;
            continue;
          }
          i++;
          break;
        }
        if (c != '\\') {
          f.value += c;
          continue;
        }
        if (++i == n) return std::unexpected(fmt::format("{}: unterminated quote", f.key));
        switch (line[i]) {
          case 'n': f.value += '\n'; break;
          case 't': f.value += '\t'; break;
          case '\\': f.value += '\\'; break;
          case 'x': {
            std::uint8_t b = 0;
            auto [p, ec] = std::from_chars(line.data() + i + 1, line.data() + std::min(n, i + 3), b, 16);
            if (ec != std::errc() || p != line.data() + i + 3)
              return std::unexpected(fmt::format("{}: \\x needs two hex digits", f.key));
            f.value += static_cast<char>(b);
            i += 2;
            break;
          }
          default:
            return std::unexpected(fmt::format("{}: unknown escape \\{}", f.key, line[i]));
        }
      }
    } else if (i < n && line[i] == '(') {
      std::size_t close = line.find(')', i);
      if (close == std::string_view::npos) return std::unexpected(fmt::format("{}: missing ')'", f.key));
      f.value = line.substr(i + 1, close - i - 1);
      f.paren = true;
      i = close + 1;
    } else {
      start = i;
      while (i < n && !is_space(line[i])) i++;
      f.value = line.substr(start, i - start);
      if (f.value.empty())
        return std::unexpected(fmt::format("{}: empty value (write '' for an empty string)", f.key));
      if (f.value.find('\'') != std::string::npos)
        return std::unexpected(fmt::format("{}: quote inside an unquoted value", f.key));
    }
    if (i < n && !is_space(line[i]))
      return std::unexpected(fmt::format("{}: junk after value", f.key));
    fields.push_back(std::move(f));
  }
  return fields;
}

// Hands out a line's fields by key, remembering the first error.
class reader {
 public:
  explicit reader(std::vector<field>& fields) : fields_(fields) {}

  const std::string& error() const { return error_; }

  template <class T>
  bool num(std::string_view key, T& v, bool optional = false) {
    field* f = one(key, optional);
    if (!f) return optional && error_.empty();
    std::uint64_t x = 0;
    if (f->paren || !parse_uint(f->value, x) || x > std::numeric_limits<T>::max())
      return fail(fmt::format("{}: bad number '{}'", key, f->value));
    v = static_cast<T>(x);
    return true;
  }

  bool str(std::string_view key, std::string& s, bool optional = false) {
    field* f = one(key, optional);
    if (!f) return optional && error_.empty();
    if (f->paren) return fail(fmt::format("{}: a string must be quoted when it starts with '('", key));
    s = std::move(f->value);
    return true;
  }

  bool get_qid(std::string_view key, qid& q, bool optional = false) {
    field* f = one(key, optional);
    if (!f) return optional && error_.empty();
    return read_qid(key, *f, q);
  }

  // Every field named key, in line order.
  bool all_str(std::string_view key, std::vector<std::string>& out) {
    for (auto& f : fields_) {
      if (f.key != key) continue;
      f.used = true;
      if (f.paren) return fail(fmt::format("{}: a string must be quoted when it starts with '('", key));
      out.push_back(std::move(f.value));
    }
    return true;
  }
  bool all_qid(std::string_view key, std::vector<qid>& out) {
    for (auto& f : fields_) {
      if (f.key != key) continue;
      f.used = true;
      if (!read_qid(key, f, out.emplace_back())) return false;
    }
    return true;
  }

  // The flattened stat(5) entry; in a Twstat, missing fields stay "don't touch".
  bool get_dir(dir& d, bool optional) {
    return str("name", d.name, optional) && str("uid", d.uid, optional) && str("gid", d.gid, optional) &&
           str("muid", d.muid, optional) && num("mode", d.mode, optional) &&
           num("length", d.length, optional) && get_qid("qid", d.qid, optional) &&
           num("atime", d.atime, optional) && num("mtime", d.mtime, optional) &&
           num("type", d.type, optional) && num("dev", d.dev, optional);
  }

  // Fails if a field was not asked for.
  bool finish() {
    for (const auto& f : fields_)
      if (!f.used) return fail(fmt::format("unknown field {}", f.key));
    return true;
  }

 private:
  bool fail(std::string e) {
    if (error_.empty()) error_ = std::move(e);
    return false;
  }

  field* one(std::string_view key, bool optional) {
    field* found = nullptr;
    for (auto& f : fields_) {
      if (f.key != key) continue;
      if (found) {
        fail(fmt::format("{} given twice", key));
        return nullptr;
      }
      found = &f;
    }
    if (!found) {
      if (!optional) fail(fmt::format("missing {}", key));
      return nullptr;
    }
    found->used = true;
    return found;
  }

  // (path version type): path in hex, version decimal, type as letters or 0xHH.
  bool read_qid(std::string_view key, const field& f, qid& q) {
    auto bad = [&] {
      return fail(f.paren ? fmt::format("{}: bad qid '({})'", key, f.value)
                          : fmt::format("{}: bad qid '{}', not (path version type)", key, f.value));
    };
    if (!f.paren) return bad();
    std::string_view s = f.value;
    std::string_view parts[3];
    std::size_t count = 0;
    while (!s.empty()) {
      std::size_t sp = s.find(' ');
      std::string_view p = s.substr(0, sp);
      if (!p.empty()) {
        if (count == 3) return bad();
        parts[count++] = p;
      }
      s = sp == std::string_view::npos ? std::string_view{} : s.substr(sp + 1);
    }
    if (count < 2 || parts[0].size() > 16) return bad();
    auto [p, ec] = std::from_chars(parts[0].data(), parts[0].data() + parts[0].size(), q.path, 16);
    if (ec != std::errc() || p != parts[0].data() + parts[0].size()) return bad();
    std::uint64_t v = 0;
    if (!parse_uint(parts[1], v) || v > 0xFFFFFFFF) return bad();
    q.version = static_cast<std::uint32_t>(v);
    q.type = 0;
    std::string_view t = parts[2];
    if (t.starts_with("0x")) {
      if (!parse_uint(t, v) || v > 0xFF) return bad();
      q.type = static_cast<std::uint8_t>(v);
      return true;
    }
    for (char c : t) {
      auto l = std::find_if(std::begin(qid_letters), std::end(qid_letters),
                            [c](auto bl) { return bl.second == c; });
      if (l == std::end(qid_letters)) return bad();
      q.type |= l->first;
    }
    return true;
  }

  std::vector<field>& fields_;
  std::string error_;
};

bool fields(reader& r, tversion& m) { return r.num("msize", m.msize) && r.str("version", m.version); }
bool fields(reader& r, rversion& m) { return r.num("msize", m.msize) && r.str("version", m.version); }
bool fields(reader& r, tauth& m) {
  return r.num("afid", m.afid) && r.str("uname", m.uname) && r.str("aname", m.aname) &&
         r.num("n_uname", m.n_uname, true);
}
bool fields(reader& r, rauth& m) { return r.get_qid("aqid", m.aqid); }
bool fields(reader& r, tattach& m) {
  return r.num("fid", m.fid) && r.num("afid", m.afid) && r.str("uname", m.uname) && r.str("aname", m.aname) &&
         r.num("n_uname", m.n_uname, true);
}
bool fields(reader& r, rattach& m) { return r.get_qid("qid", m.qid); }
bool fields(reader& r, rerror& m) { return r.str("ename", m.ename); }
bool fields(reader& r, tflush& m) { return r.num("oldtag", m.oldtag); }
bool fields(reader&, rflush&) { return true; }
bool fields(reader& r, twalk& m) {
  return r.num("fid", m.fid) && r.num("newfid", m.newfid) && r.all_str("wname", m.wnames);
}
bool fields(reader& r, rwalk& m) { return r.all_qid("qid", m.qids); }
bool fields(reader& r, topen& m) { return r.num("fid", m.fid) && r.num("mode", m.mode); }
bool fields(reader& r, ropen& m) { return r.get_qid("qid", m.qid) && r.num("iounit", m.iounit); }
bool fields(reader& r, tcreate& m) {
  return r.num("fid", m.fid) && r.str("name", m.name) && r.num("perm", m.perm) && r.num("mode", m.mode);
}
bool fields(reader& r, rcreate& m) { return r.get_qid("qid", m.qid) && r.num("iounit", m.iounit); }
bool fields(reader& r, tread& m) {
  return r.num("fid", m.fid) && r.num("offset", m.offset) && r.num("count", m.count);
}
bool fields(reader& r, rread& m) {
  std::uint32_t ignored = 0;
  return r.num("count", ignored, true) && r.str("data", m.data);
}
bool fields(reader& r, twrite& m) {
  std::uint32_t ignored = 0;
  return r.num("fid", m.fid) && r.num("offset", m.offset) && r.num("count", ignored, true) &&
         r.str("data", m.data);
}
bool fields(reader& r, rwrite& m) { return r.num("count", m.count); }
bool fields(reader& r, tclunk& m) { return r.num("fid", m.fid); }
bool fields(reader&, rclunk&) { return true; }
bool fields(reader& r, tremove& m) { return r.num("fid", m.fid); }
bool fields(reader&, rremove&) { return true; }
bool fields(reader& r, tstat& m) { return r.num("fid", m.fid); }
bool fields(reader& r, rstat& m) { return r.get_dir(m.stat, false); }
bool fields(reader& r, twstat& m) {
  m.stat = dont_touch_dir();
  return r.num("fid", m.fid) && r.get_dir(m.stat, true);
}
bool fields(reader&, rwstat&) { return true; }

bool field(reader& r, std::string_view key, std::string& v) { return r.str(key, v); }
bool field(reader& r, std::string_view key, qid& v) { return r.get_qid(key, v); }
template <class T>
bool field(reader& r, std::string_view key, T& v) { return r.num(key, v); }
template <tied M>
bool fields(reader& r, M& m) {
  std::size_t i = 0;
  return std::apply([&](auto&... f) { return (field(r, M::field_names[i++], f) && ...); }, m.tie());
}
bool fields(reader& r, rreaddir& m) {
  std::uint32_t ignored = 0;
  return r.num("count", ignored, true) && r.str("data", m.data);
}

// A default-constructed message of alternative i.
template <std::size_t... I>
message make_message(std::size_t i, std::index_sequence<I...>) {
  static constexpr message (*make[])() = {[] { return message(std::in_place_index<I>); }...};
  return make[i]();
}

}  // namespace

std::string to_string(const fcall& f) {
  std::string out;
  out.reserve(64);
  out += type_name(type_of(f.msg));
  printer p(out);
  p.num("tag", f.tag);
  std::visit([&p](const auto& m) { print(p, m); }, f.msg);
  return out;
}

std::expected<fcall, std::string> parse(std::string_view line) {
  std::size_t start = 0;
  while (start < line.size() && is_space(line[start])) start++;
  std::size_t end = start;
  while (end < line.size() && !is_space(line[end])) end++;
  std::string_view name = line.substr(start, end - start);
  if (name.empty()) return std::unexpected("empty line");

  std::size_t index = std::variant_size_v<message>;
  for (std::size_t i = 0; i < std::variant_size_v<message>; i++) {
    if (type_name(type_of(make_message(i, std::make_index_sequence<std::variant_size_v<message>>()))) == name) {
      index = i;
      break;
    }
  }
  if (index == std::variant_size_v<message>) return std::unexpected(fmt::format("unknown message '{}'", name));

  auto flds = tokenize(line.substr(end));
  if (!flds) return std::unexpected(fmt::format("{}: {}", name, flds.error()));
  fcall f{.tag = notag, .msg = make_message(index, std::make_index_sequence<std::variant_size_v<message>>())};
  reader r(*flds);
  bool ok = r.num("tag", f.tag) && std::visit([&r](auto& m) { return fields(r, m); }, f.msg) && r.finish();
  if (!ok) return std::unexpected(fmt::format("{}: {}", name, r.error()));
  return f;
}

}  // namespace srv9p
