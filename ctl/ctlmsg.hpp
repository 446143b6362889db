#pragma once
// The ctl-message language shared by galaxy-node and galaxy-sched (and the `galaxy`
// tool): Plan 9 tokenizing, verb tables, typed arguments with units, and one error format.
//
// After Plan 9's parsecmd(2)/lookupcmd: a ctl file takes one command per line; a command
// is words separated by blanks, where '...' quotes a word and '' inside quotes is a
// quote. A verb table (Cmdtab) gives each verb its argument counts; lookup answers
// "unknown command 'exce': expected exec, dir, env, ..." or "bad # args to 'exec':
// expected at least 1 (exec ARG...)", quoting the command back. The typed parsers say
// the unit and what was expected: "bad size '12q': expected a number of bytes with an
// optional k, m, g or t suffix". Every error is shorter than 128 bytes (max_error): text
// quoted back is cut with "..." to fit.
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ctl {

// Errors are at most this many bytes (under 128: one short Rerror, one log line).
inline constexpr std::size_t max_error = 127;

// Splits one line into words, Plan 9 tokenize(2) with quoting. Blanks are spaces and
// tabs; a trailing newline ("\n" or "\r\n") is ignored. Inside quotes every byte is
// part of the word. Errors: "unterminated quote in '...'"; "line break in '...'" for a
// CR or LF outside quotes elsewhere than at the end (two commands in one line would
// otherwise run as one); "NUL in ctl message" for a NUL byte anywhere (an argument
// handed to exec or setenv as a C string would be cut there without a word).
std::expected<std::vector<std::string>, std::string> tokenize(std::string_view line);

// Quotes a word so that tokenize() gives it back: bare when it has no blank, quote, CR
// or LF and is not empty, else '...' with quotes doubled (Plan 9 quote(2)).
std::string quote(std::string_view word);
// Words joined by single spaces, each quoted as needed.
std::string join(std::span<const std::string> words);

// s made safe to print on a terminal: every C0 control byte (below 0x20, so ESC, CR, LF,
// TAB, BEL), DEL, C1 control (U+0080 to U+009F, ECMA-48's 8-bit CSI, OSC, ...) and byte
// that is not part of well-formed UTF-8 becomes '?'; everything else is kept. The tool
// prints text from the tree (another user's job name and note, a node's status, labels
// and errors) through this, so that none of it can move the cursor, clear the screen,
// set the window title or write the clipboard (ECMA-48 escape and control sequences).
std::string printable(std::string_view s);

// One verb of a table. max_args < 0 means no upper bound.
struct verb_spec {
  int verb;                 // the table's own enum value
  std::string_view name;    // "exec"
  int min_args;
  int max_args;
  std::string_view usage;   // "exec ARG...", for error text and man pages
  std::string_view word;    // if not empty, the first argument must be this word ("kill all")
};

struct command {
  int verb = -1;
  std::string_view name;
  std::vector<std::string> args;  // the words after the verb
};

// Tokenizes line and finds its verb in table, Plan 9 parsecmd(2) and lookupcmd. Verbs
// match exactly (case matters). Errors quote the verb back, or the line for tokenizing
// errors: "empty command" (a blank line); "unknown command 'exce': expected exec, dir,
// ..." (every verb of the table, in order); "bad # args to 'exec': expected at least 1
// (exec ARG...)" (or "at most N", "N", "N to M", "none"); "bad argument to 'kill':
// expected all (kill all)" for a verb_spec::word that does not match.
std::expected<command, std::string> parse(std::string_view line, std::span<const verb_spec> table);

// ctl files take input by lines even when a client splits one write into several
// (FUSE at 4 KiB, v9fs at msize) or sends several lines in one write.
class line_buffer {
 public:
  // Appends data; returns every line it completed, without the newline (a "\r" before
  // the newline is dropped too). Blank lines are returned as empty strings.
  std::vector<std::string> feed(std::string_view data);
  // feed() for one whole write to a ctl file, and the lines that are not blank: a write
  // that does not end in a newline is a whole command too (echo -n 'exec ls' > ctl),
  // unless it is a whole number of 4 KiB pages or exactly max_write bytes (the
  // connection's largest write, msize - 24; 0: none): then it is a piece of a longer
  // line that a client split (FUSE at 4 KiB; plan9port's lib9pclient and v9fs at
  // msize - 24), and the line goes on in the next write.
  std::vector<std::string> feed_write(std::string_view data, std::size_t max_write = 0);
  // feed_write() for a ctl file that answers each write: its lines, or take_refusal()'s
  // error. Then no line of the write is returned, so the write changes nothing; the rest
  // of the refused line is discarded from later writes up to its newline, and each such
  // write is refused too. Memory: the lines of one write (at most msize bytes) and one
  // partial line, never more.
  std::expected<std::vector<std::string>, std::string> feed_ctl(std::string_view data, std::size_t max_write = 0);
  // Why the writes fed since the last call must be answered with an error, and resets
  // it; "" when they need not. "ctl line longer than 65536 bytes": a line grew too long.
  // "rest of a ctl line longer than 65536 bytes discarded": a write carried only bytes of
  // a line refused in an earlier write (so that none is dropped with a success: a short
  // "exec ls" after a refused piece would be taken as the refused line's end).
  std::string take_refusal();
  // The unterminated rest (a last line without a newline), taken at clunk; empties it
  // and ends the discarding of a refused line.
  std::string take_rest();
  bool empty() const { return partial_.empty(); }
  // A line longer than this is refused (the rest of it is discarded up to its newline).
  static constexpr std::size_t max_line = 64 * 1024;
  // How many lines were refused since the last call, counted by the feed() in which
  // they grew too long; resets the count. A ctl file answers that write with an error.
  std::size_t take_refused();

 private:
  // Appends data, putting each completed line into lines (blank ones too when keep_blank).
  void feed_into(std::string_view data, bool keep_blank, std::vector<std::string>& lines);

  std::string partial_;
  bool discarding_ = false;  // inside a refused line: drop bytes up to the next newline
  std::size_t refused_ = 0;
  bool discarded_ = false;  // bytes of a refused line were dropped (take_refusal)
};

// ---- Typed arguments -------------------------------------------------------------------

// A whole string of decimal digits as a number (file contents and names that the daemons
// read from each other: task ids, node status fields). Nullopt for an empty string, any
// other character (sign, blank, newline) or a value over 2^64-1.
std::optional<std::uint64_t> parse_u64(std::string_view s);

// Bytes: "4096", "64k", "512m", "2g", "1t" (binary multiples, case-insensitive; a
// trailing "b" or "ib" is allowed: "64KiB", "512B"). A fraction is allowed with a
// multiple and rounded down to whole bytes: "1.5g". Errors name the text and what was
// expected; more than 2^64-1 bytes is "too large".
std::expected<std::uint64_t, std::string> parse_bytes(std::string_view s);
// CPU in millicores: "2" is 2000, "1.5" is 1500, "500m" is 500. Must be > 0 and a
// whole number of millicores ("1.0005" is an error), at most 2^32-1.
std::expected<std::uint32_t, std::string> parse_cpu_millis(std::string_view s);
// Seconds as written by a user ("10", "1.5") to milliseconds. Must be > 0 and a whole
// number of milliseconds.
std::expected<std::uint64_t, std::string> parse_seconds_ms(std::string_view s);
// A decimal integer within [min, max], optionally signed; what names the argument in
// errors: "bad nice '40': expected an integer from -20 to 19".
std::expected<std::int64_t, std::string> parse_int(std::string_view s, std::int64_t min, std::int64_t max,
                                                   std::string_view what);
// "key=value" with a non-empty key of [A-Za-z0-9_.-]; the value may be empty.
std::expected<std::pair<std::string, std::string>, std::string> parse_kv(std::string_view s);
// A signal by number (1-64, Linux's range) or name: "9", "KILL", "SIGKILL", "term"
// (case-insensitive; the standard names of signal(7), with this machine's numbers).
// Returns the number.
std::expected<int, std::string> parse_signal(std::string_view s);
// The name of a signal number without "SIG" ("KILL"), or the number as text.
std::string signal_name(int sig);

// Formats bytes for people: "64 GiB", "1.5 MiB", "512 B" (binary units, one decimal at
// most, rounded to nearest).
std::string human_bytes(std::uint64_t bytes);

}  // namespace ctl
