// The ctl-message language (ctl/ctlmsg.hpp): tokenizing and quoting after Plan 9's
// tokenize(2) and quote(2), verb lookup after parsecmd(2)/lookupcmd, the line buffer
// that ctl files read their writes through, and the typed argument parsers.
//
// Arranged as: error text (everything quoted back goes through quoted_error(), which keeps
// errors under 128 bytes), words, commands, lines, then numbers. The numeric parsers
// share one decimal reader that scales exactly in 128-bit integers, so "1.5g" and "1.5"
// CPUs neither lose precision nor overflow unnoticed; nothing here throws (std::from_chars,
// never std::stoull).
#include "ctl/ctlmsg.hpp"

#include <algorithm>
#include <charconv>
#include <csignal>
#include <limits>

namespace ctl {
namespace {

// ---- Error text ------------------------------------------------------------------------

// Cuts s to at most room bytes, ending in "..." when cut, without splitting a UTF-8
// sequence; control characters become '?' so that an error stays one printable line.
std::string cut(std::string_view s, std::size_t room) {
  std::string out;
  if (s.size() <= room) {
    out.assign(s);
  } else if (room < 3) {
    out.assign(room, '.');
  } else {
    std::size_t n = room - 3;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    out.assign(s.substr(0, n));
    out.append("...");
  }
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

// before 'quoted' after, with quoted cut so that the whole fits in max_error bytes. An
// after that is itself too long (a very large verb table) is cut at the end.
std::string quoted_error(std::string_view before, std::string_view quoted, std::string_view after) {
  std::size_t fixed = before.size() + 2 + after.size();
  std::size_t room = fixed < max_error ? std::max<std::size_t>(max_error - fixed, 3) : 3;
  std::string e;
  e.append(before);
  e.push_back('\'');
  e.append(cut(quoted, room));
  e.push_back('\'');
  e.append(after);
  if (e.size() > max_error) e = cut(e, max_error);
  return e;
}

std::unexpected<std::string> fail(std::string_view before, std::string_view quoted, std::string_view after) {
  return std::unexpected(quoted_error(before, quoted, after));
}

bool is_blank(char c) { return c == ' ' || c == '\t'; }

// ---- Numbers ---------------------------------------------------------------------------

enum class num_error { syntax, range };

// A plain decimal: digits with at most one '.', at least one digit, no sign, no blanks.
struct decimal {
  std::uint64_t whole = 0;
  std::string_view frac;  // the digits after the point
};

std::expected<decimal, num_error> parse_decimal(std::string_view s) {
  std::size_t dot = s.find('.');
  std::string_view w = s.substr(0, dot);
  std::string_view f = dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
  if (w.empty() && f.empty()) return std::unexpected(num_error::syntax);
  auto digits = [](std::string_view d) {
    return std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!digits(w) || !digits(f)) return std::unexpected(num_error::syntax);
  decimal d;
  d.frac = f;
  if (!w.empty()) {
    auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), d.whole);
    if (ec == std::errc::result_out_of_range) return std::unexpected(num_error::range);
    if (ec != std::errc{} || end != w.data() + w.size()) return std::unexpected(num_error::syntax);
  }
  return d;
}

struct scaled {
  std::uint64_t value = 0;  // d × mult, rounded down
  bool exact = true;        // nothing was rounded away
};

// q = ⌊a × b / d⌋ and whether a × b / d is a whole number, for a < d (so q < b): binary
// long multiplication modulo d over b's bits, in 64 bits with no overflow (r < d stays
// below 2^64 and is never doubled or added to past d), so that it works where there is
// no 128-bit integer (32-bit ARM).
struct mul_div_result {
  std::uint64_t q = 0;
  bool exact = true;
};
mul_div_result mul_div(std::uint64_t a, std::uint64_t b, std::uint64_t d) {
  std::uint64_t q = 0, r = 0;  // a × (b's bits so far) = q × d + r, r < d
  for (int bit = 63; bit >= 0; bit--) {
    q <<= 1;  // (q, r) × 2
    if (r >= d - r) {
      r -= d - r;
      q++;
    } else {
      r += r;
    }
    if ((b >> bit) & 1) {  // + a
      if (r >= d - a) {
        r -= d - a;
        q++;
      } else {
        r += a;
      }
    }
  }
  return {q, r == 0};
}

// d × mult exactly (mult ≤ 2^40), rounded down. Fraction digits past the 19th are
// dropped, marking the result inexact (10^19 still fits in 64 bits).
std::expected<scaled, num_error> scale(const decimal& d, std::uint64_t mult) {
  std::string_view f = d.frac;
  while (!f.empty() && f.back() == '0') f.remove_suffix(1);
  scaled r;
  if (f.size() > 19) {
    r.exact = false;
    f = f.substr(0, 19);
  }
  std::uint64_t num = 0, den = 1;  // the fraction is num / den, num < den ≤ 10^19
  for (char c : f) {
    num = num * 10 + static_cast<unsigned>(c - '0');
    den *= 10;
  }
  mul_div_result part = mul_div(num, mult, den);
  if (!part.exact) r.exact = false;
  std::uint64_t whole = 0;
  if (__builtin_mul_overflow(d.whole, mult, &whole) || __builtin_add_overflow(whole, part.q, &r.value)) {
    return std::unexpected(num_error::range);
  }
  return r;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return lower(x) == lower(y);
         });
}

// The standard names of signal(7), primary names first so that signal_name() gives them;
// numbers from <csignal>, so they are right on every Linux architecture.
struct signal_entry {
  std::string_view name;
  int number;
};
constexpr signal_entry signals[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},       {"QUIT", SIGQUIT},   {"ILL", SIGILL},
    {"TRAP", SIGTRAP},     {"ABRT", SIGABRT},     {"BUS", SIGBUS},     {"FPE", SIGFPE},
    {"KILL", SIGKILL},     {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},   {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE},     {"ALRM", SIGALRM},     {"TERM", SIGTERM},
#ifdef SIGSTKFLT
    {"STKFLT", SIGSTKFLT},
#endif
    {"CHLD", SIGCHLD},     {"CONT", SIGCONT},     {"STOP", SIGSTOP},   {"TSTP", SIGTSTP},
    {"TTIN", SIGTTIN},     {"TTOU", SIGTTOU},     {"URG", SIGURG},     {"XCPU", SIGXCPU},
    {"XFSZ", SIGXFSZ},     {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},   {"WINCH", SIGWINCH},
    {"IO", SIGIO},
#ifdef SIGPWR
    {"PWR", SIGPWR},
#endif
    {"SYS", SIGSYS},
    // Aliases, after the primary names.
    {"IOT", SIGABRT},      {"CLD", SIGCHLD},      {"POLL", SIGIO},
};
constexpr int max_signal = 64;  // Linux: _NSIG is 65, signals are 1-64

}  // namespace

// ---- Words -----------------------------------------------------------------------------

std::expected<std::vector<std::string>, std::string> tokenize(std::string_view line) {
  if (line.find('\0') != std::string_view::npos) return std::unexpected(std::string("NUL in ctl message"));
  std::string_view s = line;
  if (s.ends_with('\n')) {
    s.remove_suffix(1);
    if (s.ends_with('\r')) s.remove_suffix(1);
  }
  std::vector<std::string> words;
  std::size_t i = 0;
  for (;;) {
    while (i < s.size() && is_blank(s[i])) ++i;
    if (i == s.size()) break;
    std::string w;
    bool quoting = false;
    // tokenize(2)'s qtoken: a quote opens a quoted section anywhere in a word; inside
    // one, '' is a quote and a lone ' closes it. So 'a b'c is "a bc" and '' is "".
    for (; i < s.size(); ++i) {
      char c = s[i];
      if (quoting) {
        if (c != '\'') {
          w.push_back(c);
        } else if (i + 1 < s.size() && s[i + 1] == '\'') {
          w.push_back('\'');
          ++i;
        } else {
          quoting = false;
        }
        continue;
      }
      if (is_blank(c)) break;
      if (c == '\'') {
        quoting = true;
      } else if (c == '\n' || c == '\r') {
        return fail("line break in ", s, "");
      } else {
        w.push_back(c);
      }
    }
    if (quoting) return fail("unterminated quote in ", s, "");
    words.push_back(std::move(w));
  }
  return words;
}

std::string quote(std::string_view word) {
  bool bare = !word.empty() && word.find_first_of(" \t'\r\n") == std::string_view::npos;
  if (bare) return std::string(word);
  std::string q = "'";
  for (char c : word) {
    if (c == '\'') q.push_back('\'');
    q.push_back(c);
  }
  q.push_back('\'');
  return q;
}

std::string join(std::span<const std::string> words) {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out.push_back(' ');
    out.append(quote(words[i]));
  }
  return out;
}

// ---- Printing ---------------------------------------------------------------------------

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out.push_back(b < 0x20 || b == 0x7f ? '?' : static_cast<char>(b));
      i++;
      continue;
    }
    // A UTF-8 sequence (RFC 3629): its length from the lead byte, its first continuation
    // byte's range from the lead (no overlong forms, no surrogates, nothing past U+10FFFF).
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      n = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      n = 3;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      n = 4;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    }
    bool ok = n != 0 && i + n <= s.size();
    for (std::size_t k = 1; ok && k < n; k++) {
      auto c = static_cast<unsigned char>(s[i + k]);
      ok = k == 1 ? c >= lo && c <= hi : c >= 0x80 && c <= 0xBF;
    }
    // U+0080 to U+009F are C2 80 to C2 9F: the C1 controls.
    if (ok && b == 0xC2 && static_cast<unsigned char>(s[i + 1]) <= 0x9F) ok = false;
    if (!ok) {
      out.push_back('?');
      i++;  // only the bad byte: what follows it is looked at afresh
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

// ---- Commands --------------------------------------------------------------------------

std::expected<command, std::string> parse(std::string_view line, std::span<const verb_spec> table) {
  auto words = tokenize(line);
  if (!words) return std::unexpected(std::move(words.error()));
  if (words->empty()) return std::unexpected(std::string("empty command"));
  const std::string& verb = words->front();
  std::size_t nargs = words->size() - 1;
  for (const verb_spec& v : table) {
    if (v.name != verb) continue;
    auto min = static_cast<std::size_t>(std::max(v.min_args, 0));
    bool too_many = v.max_args >= 0 && nargs > static_cast<std::size_t>(v.max_args);
    if (nargs < min || too_many) {
      std::string want = " expected ";
      if (v.max_args < 0) {
        want += "at least " + std::to_string(v.min_args);
      } else if (v.max_args == 0) {
        want += "none";
      } else if (v.min_args == v.max_args) {
        want += std::to_string(v.min_args);
      } else if (v.min_args <= 0) {
        want += "at most " + std::to_string(v.max_args);
      } else {
        want += std::to_string(v.min_args) + " to " + std::to_string(v.max_args);
      }
      if (!v.usage.empty()) want += " (" + std::string(v.usage) + ")";
      return fail("bad # args to ", verb, ":" + want);
    }
    if (!v.word.empty() && (nargs == 0 || (*words)[1] != v.word)) {
      std::string want = ": expected " + std::string(v.word);
      if (!v.usage.empty()) want += " (" + std::string(v.usage) + ")";
      return fail("bad argument to ", verb, want);
    }
    command c;
    c.verb = v.verb;
    c.name = v.name;
    words->erase(words->begin());
    c.args = std::move(*words);
    return c;
  }
  // The verbs of the table, as many as fit beside the quoted verb (a long verb is cut to
  // leave them room); the rest become "...".
  std::size_t room = max_error - std::string_view("unknown command ''").size() - std::min<std::size_t>(verb.size(), 24);
  std::string known;
  for (const verb_spec& v : table) {
    std::string next = known + (known.empty() ? ": expected " : ", ") + std::string(v.name);
    if (next.size() + 5 > room && &v != &table.back()) {
      known += ", ...";
      break;
    }
    known = std::move(next);
  }
  return fail("unknown command ", verb, known);
}

// ---- Lines -----------------------------------------------------------------------------

namespace {
bool is_blank_line(std::string_view l) { return l.find_first_not_of(" \t\r") == std::string_view::npos; }
}  // namespace

std::vector<std::string> line_buffer::feed_write(std::string_view data, std::size_t max_write) {
  // Blank lines are dropped as they complete, so a write of a million newlines costs no
  // more than the write itself.
  std::vector<std::string> lines;
  feed_into(data, false, lines);
  bool a_piece = data.size() % 4096 == 0 || data.size() == max_write;
  if (!data.empty() && data.back() != '\n' && !a_piece) {
    std::string rest = take_rest();
    if (!is_blank_line(rest)) lines.push_back(std::move(rest));
  }
  return lines;
}

std::expected<std::vector<std::string>, std::string> line_buffer::feed_ctl(std::string_view data,
                                                                          std::size_t max_write) {
  std::vector<std::string> lines = feed_write(data, max_write);
  if (std::string why = take_refusal(); !why.empty()) return std::unexpected(why);
  return lines;
}

std::string line_buffer::take_refusal() {
  bool refused = take_refused() > 0, discarded = std::exchange(discarded_, false);
  if (refused) return "ctl line longer than " + std::to_string(max_line) + " bytes";
  if (discarded) return "rest of a ctl line longer than " + std::to_string(max_line) + " bytes discarded";
  return "";
}

std::vector<std::string> line_buffer::feed(std::string_view data) {
  std::vector<std::string> lines;
  feed_into(data, true, lines);
  return lines;
}

void line_buffer::feed_into(std::string_view data, bool keep_blank, std::vector<std::string>& lines) {
  while (!data.empty()) {
    std::size_t nl = data.find('\n');
    std::string_view piece = data.substr(0, nl);
    data = nl == std::string_view::npos ? std::string_view() : data.substr(nl + 1);
    if (discarding_) discarded_ = true;
    if (!discarding_ && !piece.empty()) {
      // Checked before appending, so that the buffer never holds more than one line's
      // worth. A line of max_line bytes may still be followed by the "\r" of a CRLF.
      std::size_t n = partial_.size() + piece.size();
      if (n > max_line + 1 || (n == max_line + 1 && piece.back() != '\r')) {
        ++refused_;
        discarding_ = true;
        partial_.clear();
        partial_.shrink_to_fit();
      } else {
        partial_.append(piece);
      }
    }
    if (nl == std::string_view::npos) break;
    if (discarding_) {
      discarding_ = false;
      continue;
    }
    if (partial_.ends_with('\r')) partial_.pop_back();
    if (keep_blank || !is_blank_line(partial_)) lines.push_back(std::move(partial_));
    partial_.clear();
  }
}

std::string line_buffer::take_rest() {
  std::string rest = std::move(partial_);
  partial_.clear();
  discarding_ = false;
  if (rest.ends_with('\r')) rest.pop_back();
  return rest;
}

std::size_t line_buffer::take_refused() { return std::exchange(refused_, 0); }

// ---- Typed arguments -------------------------------------------------------------------

std::expected<std::uint64_t, std::string> parse_bytes(std::string_view s) {
  constexpr std::string_view expected = ": expected a number of bytes with an optional k, m, g or t suffix";
  std::size_t end = s.find_first_not_of("0123456789.");
  std::string_view num = s.substr(0, end);
  std::string suffix;
  if (end != std::string_view::npos) {
    for (char c : s.substr(end)) suffix.push_back(lower(c));
  }
  int shift = -1;
  if (suffix.empty() || suffix == "b") {
    shift = 0;
  } else {
    std::string_view u = suffix;
    std::string_view units = "kmgt";
    std::size_t k = units.find(u.front());
    std::string_view tail = u.substr(1);
    if (k != std::string_view::npos && (tail.empty() || tail == "b" || tail == "ib")) {
      shift = 10 * static_cast<int>(k + 1);
    }
  }
  if (shift < 0) return fail("bad size ", s, expected);
  auto d = parse_decimal(num);
  if (!d) return fail("bad size ", s, d.error() == num_error::range ? ": too large" : expected);
  auto v = scale(*d, std::uint64_t{1} << shift);
  if (!v) return fail("bad size ", s, ": too large");
  // Rounding a fraction of a multiple down is fine ("0.1k" is 102); a fraction of a
  // byte means the user wrote something else than they meant.
  if (shift == 0 && !v->exact) return fail("bad size ", s, ": not a whole number of bytes");
  return v->value;
}

std::expected<std::uint32_t, std::string> parse_cpu_millis(std::string_view s) {
  constexpr std::string_view expected = ": expected CPUs (2, 1.5) or millicores (500m)";
  bool millis = s.ends_with('m');
  auto d = parse_decimal(millis ? s.substr(0, s.size() - 1) : s);
  if (!d) return fail("bad cpu ", s, d.error() == num_error::range ? ": too large" : expected);
  auto v = scale(*d, millis ? 1 : 1000);
  if (!v || v->value > std::numeric_limits<std::uint32_t>::max()) return fail("bad cpu ", s, ": too large");
  if (!v->exact) return fail("bad cpu ", s, ": finer than a millicore");
  if (v->value == 0) return fail("bad cpu ", s, ": must be more than 0");
  return static_cast<std::uint32_t>(v->value);
}

std::expected<std::uint64_t, std::string> parse_seconds_ms(std::string_view s) {
  auto d = parse_decimal(s);
  if (!d) {
    return fail("bad time ", s, d.error() == num_error::range ? ": too large" : ": expected seconds (10, 1.5)");
  }
  auto v = scale(*d, 1000);
  if (!v) return fail("bad time ", s, ": too large");
  if (!v->exact) return fail("bad time ", s, ": finer than a millisecond");
  if (v->value == 0) return fail("bad time ", s, ": must be more than 0");
  return v->value;
}

std::expected<std::int64_t, std::string> parse_int(std::string_view s, std::int64_t min, std::int64_t max,
                                                   std::string_view what) {
  std::string_view digits = s;
  // from_chars takes '-' but not '+'; "+5" is how some people write a positive nice.
  if (digits.starts_with('+') && digits.size() > 1 && digits[1] != '-') digits.remove_prefix(1);
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || v < min || v > max) {
    std::string before = "bad " + std::string(what) + " ";
    return fail(before, s, ": expected an integer from " + std::to_string(min) + " to " + std::to_string(max));
  }
  return v;
}

std::expected<std::pair<std::string, std::string>, std::string> parse_kv(std::string_view s) {
  std::size_t eq = s.find('=');
  if (eq == std::string_view::npos || eq == 0) return fail("bad key=value ", s, ": expected KEY=VALUE");
  std::string_view key = s.substr(0, eq);
  bool ok = std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
  if (!ok) return fail("bad key in ", s, ": a key is letters, digits, '_', '.' and '-'");
  return std::pair{std::string(key), std::string(s.substr(eq + 1))};
}

std::expected<int, std::string> parse_signal(std::string_view s) {
  constexpr std::string_view expected = ": expected a number 1-64 or a name such as KILL or TERM";
  if (!s.empty() && s.front() >= '0' && s.front() <= '9') {
    int n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc{} || end != s.data() + s.size() || n < 1 || n > max_signal) {
      return fail("bad signal ", s, expected);
    }
    return n;
  }
  std::string_view name = s;
  if (name.size() > 3 && iequal(name.substr(0, 3), "SIG")) name.remove_prefix(3);
  for (const signal_entry& e : signals) {
    if (iequal(name, e.name)) return e.number;
  }
  return fail("bad signal ", s, expected);
}

std::string signal_name(int sig) {
  for (const signal_entry& e : signals) {
    if (e.number == sig) return std::string(e.name);
  }
  return std::to_string(sig);
}

std::string human_bytes(std::uint64_t bytes) {
  constexpr std::string_view units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  // Tenths of the largest unit that gives at least 1, rounded to nearest; a value that
  // rounds up to 1024 of a unit is shown as 1 of the next ("1 MiB", not "1024 KiB").
  std::size_t u = 1;
  while (u + 1 < std::size(units) && bytes >= (std::uint64_t{1} << (10 * (u + 1)))) ++u;
  // ⌊(bytes × 10 + 2^(k-1)) / 2^k⌋ for k = 10 × unit ≤ 60, in 64 bits: the whole units
  // and the remainder apart (rem × 10 + 2^(k-1) < 2^64).
  auto tenths = [&](std::size_t unit) {
    unsigned k = 10 * static_cast<unsigned>(unit);
    std::uint64_t rem = bytes & ((std::uint64_t{1} << k) - 1);
    return (bytes >> k) * 10 + ((rem * 10 + (std::uint64_t{1} << (k - 1))) >> k);
  };
  std::uint64_t t = tenths(u);
  if (t >= 10240 && u + 1 < std::size(units)) t = tenths(++u);
  std::string out = std::to_string(t / 10);
  if (t % 10 != 0) out += "." + std::to_string(t % 10);
  out += " ";
  out.append(units[u]);
  return out;
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

}  // namespace ctl
