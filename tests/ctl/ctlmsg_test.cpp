// The ctl-message language: Plan 9 tokenizing and quoting, verb lookup with its error
// texts (exact, because users read them and scripts match them), the line buffer that
// ctl files read writes through, and the typed argument parsers.
#include "ctl/ctlmsg.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <random>

#include "ctl/verbs.hpp"

namespace {

using words = std::vector<std::string>;

words tok(std::string_view line) {
  auto w = ctl::tokenize(line);
  EXPECT_TRUE(w.has_value()) << line << ": " << w.error();
  return w.value_or(words{});
}

template <typename T>
std::string error_of(const std::expected<T, std::string>& r) {
  EXPECT_FALSE(r.has_value()) << "no error";
  if (r) return {};
  EXPECT_LT(r.error().size(), 128u) << r.error();
  return r.error();
}

// ---- tokenize, quote, join -------------------------------------------------------------

// printable(): what the tool prints from the tree (another user's job name, a node's
// status) can neither move the cursor, clear the screen nor set the window title.
TEST(Printable, ControlBytesAndC1BecomeQuestionMarks) {
  EXPECT_EQ(ctl::printable("plain words, caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "plain words, caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(ctl::printable("x\x1b]0;pwned\x07"), "x?]0;pwned?");
  EXPECT_EQ(ctl::printable("\x1b[2J\r\n\t\x7f"), "?[2J????");
  EXPECT_EQ(ctl::printable(std::string_view("a\0b", 3)), "a?b");
  // C1 controls: U+009B (CSI), U+009D (OSC), U+009C (ST) in UTF-8; bare 8-bit CSI; and
  // bytes that are not well-formed UTF-8 (a lone lead, overlong, surrogate, past U+10FFFF).
  EXPECT_EQ(ctl::printable("\xc2\x9b" "2J\xc2\x9d" "0;t\xc2\x9c"), "??2J??0;t??");
  EXPECT_EQ(ctl::printable("\x9b" "2J"), "?2J");
  EXPECT_EQ(ctl::printable("\xc2"), "?");
  EXPECT_EQ(ctl::printable("\xc0\x9b"), "??");
  EXPECT_EQ(ctl::printable("\xe0\x80\x9b"), "???");
  EXPECT_EQ(ctl::printable("\xed\xa0\x80"), "???");
  EXPECT_EQ(ctl::printable("\xf4\x90\x80\x80"), "????");
  EXPECT_EQ(ctl::printable("\xe2\x82"), "??");
  EXPECT_EQ(ctl::printable("\xff"), "?");
  EXPECT_EQ(ctl::printable("\xc2\xa0\xc2\x9b"), "\xc2\xa0??");  // U+00A0 is not a control
}

TEST(Tokenize, Blanks) {
  EXPECT_EQ(tok("exec ls -l"), (words{"exec", "ls", "-l"}));
  EXPECT_EQ(tok("  exec\t\tls  "), (words{"exec", "ls"}));
  EXPECT_EQ(tok(""), words{});
  EXPECT_EQ(tok(" \t "), words{});
}

TEST(Tokenize, TrailingNewlineIgnored) {
  EXPECT_EQ(tok("rm\n"), words{"rm"});
  EXPECT_EQ(tok("kill 9\r\n"), (words{"kill", "9"}));
  EXPECT_EQ(tok("\n"), words{});
}

TEST(Tokenize, Quotes) {
  EXPECT_EQ(tok("exec sh -c 'echo hello world'"), (words{"exec", "sh", "-c", "echo hello world"}));
  EXPECT_EQ(tok("exec echo 'it''s'"), (words{"exec", "echo", "it's"}));
  EXPECT_EQ(tok("''"), words{""});
  EXPECT_EQ(tok("a '' b"), (words{"a", "", "b"}));
  EXPECT_EQ(tok("''''"), words{"'"});
  // A quoted section may sit inside a word, as in rc: 'a b'c is one word.
  EXPECT_EQ(tok("x'a b'c y"), (words{"xa bc", "y"}));
  EXPECT_EQ(tok("'\t'"), words{"\t"});
  EXPECT_EQ(tok("'a\nb'\n"), words{"a\nb"});
}

TEST(Tokenize, UnterminatedQuote) {
  EXPECT_EQ(error_of(ctl::tokenize("exec echo 'hi")), "unterminated quote in 'exec echo 'hi'");
  EXPECT_EQ(error_of(ctl::tokenize("exec 'it''s\n")), "unterminated quote in 'exec 'it''s'");
  EXPECT_EQ(error_of(ctl::tokenize("'")), "unterminated quote in '''");
}

TEST(Tokenize, LineBreakInsideIsAnError) {
  // Two commands in one line must not run as one.
  EXPECT_EQ(error_of(ctl::tokenize("exec a\nrm\n")), "line break in 'exec a?rm'");
  EXPECT_EQ(error_of(ctl::tokenize("exec a\rb")), "line break in 'exec a?b'");
}

TEST(Tokenize, NulIsAnErrorNotACut) {
  // exec and setenv take C strings: a NUL would cut the argument without a word.
  using namespace std::string_literals;
  EXPECT_EQ(error_of(ctl::tokenize("env A=b\0c"s)), "NUL in ctl message");
  EXPECT_EQ(error_of(ctl::tokenize("exec 'a\0b'"s)), "NUL in ctl message");
  EXPECT_EQ(error_of(ctl::tokenize("\0"s)), "NUL in ctl message");
  EXPECT_EQ(error_of(ctl::parse("exec /bin/echo\0rm -rf /"s, ctl::task_verbs)), "NUL in ctl message");
}

TEST(Tokenize, LongLineErrorIsCut) {
  std::string line = "exec '" + std::string(70000, 'x');
  std::string e = error_of(ctl::tokenize(line));
  EXPECT_EQ(e.size(), ctl::max_error);
  EXPECT_TRUE(e.starts_with("unterminated quote in 'exec 'xxx")) << e;
  EXPECT_TRUE(e.ends_with("xxx...'")) << e;
}

TEST(Quote, BareOrQuoted) {
  EXPECT_EQ(ctl::quote("ls"), "ls");
  EXPECT_EQ(ctl::quote("a=b"), "a=b");
  EXPECT_EQ(ctl::quote(""), "''");
  EXPECT_EQ(ctl::quote("a b"), "'a b'");
  EXPECT_EQ(ctl::quote("a\tb"), "'a\tb'");
  EXPECT_EQ(ctl::quote("it's"), "'it''s'");
  EXPECT_EQ(ctl::quote("'"), "''''");
  EXPECT_EQ(ctl::quote("a\nb"), "'a\nb'");
}

TEST(Quote, Join) {
  words w{"exec", "sh", "-c", "echo 'hi' there", ""};
  EXPECT_EQ(ctl::join(w), "exec sh -c 'echo ''hi'' there' ''");
  EXPECT_EQ(ctl::join(words{}), "");
  EXPECT_EQ(ctl::join(words{"rm"}), "rm");
}

TEST(Quote, RoundTripRandomWords) {
  // Any words at all come back from tokenize(join(words)) unchanged.
  std::mt19937 rng(9);
  const std::string alphabet = "ab '\t\n\r=-\\\"";
  for (int round = 0; round < 2000; ++round) {
    words w(rng() % 5);
    for (auto& word : w) {
      std::size_t n = rng() % 6;
      for (std::size_t i = 0; i < n; ++i) word.push_back(alphabet[rng() % alphabet.size()]);
    }
    std::string line = ctl::join(w);
    EXPECT_EQ(tok(line), w) << line;
    EXPECT_EQ(tok(line + "\n"), w) << line;
  }
}

// ---- parse -----------------------------------------------------------------------------

TEST(Parse, TaskVerbs) {
  auto c = ctl::parse("exec sh -c 'echo hi'\n", ctl::task_verbs);
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(static_cast<ctl::task_verb>(c->verb), ctl::task_verb::exec);
  EXPECT_EQ(c->name, "exec");
  EXPECT_EQ(c->args, (words{"sh", "-c", "echo hi"}));

  auto k = ctl::parse("kill", ctl::task_verbs);
  ASSERT_TRUE(k.has_value()) << k.error();
  EXPECT_EQ(static_cast<ctl::task_verb>(k->verb), ctl::task_verb::kill);
  EXPECT_TRUE(k->args.empty());

  auto rm = ctl::parse("rm", ctl::task_verbs);
  ASSERT_TRUE(rm.has_value());
  EXPECT_EQ(static_cast<ctl::task_verb>(rm->verb), ctl::task_verb::rm);
}

TEST(Parse, EveryTaskVerbWithItsUsage) {
  for (const char* line : {"exec true", "dir /tmp", "env A=1 B=2", "cpu 500m", "mem 64k", "time 1.5", "nice 10",
                           "kill TERM", "kill", "rm"}) {
    auto c = ctl::parse(line, ctl::task_verbs);
    EXPECT_TRUE(c.has_value()) << line << ": " << c.error();
  }
}

TEST(Parse, UnknownCommand) {
  EXPECT_EQ(error_of(ctl::parse("exce ls", ctl::task_verbs)),
            "unknown command 'exce': expected exec, dir, env, cpu, mem, time, nice, kill, rm");
  EXPECT_EQ(error_of(ctl::parse("EXEC ls", ctl::task_verbs)),
            "unknown command 'EXEC': expected exec, dir, env, cpu, mem, time, nice, kill, rm");
  EXPECT_EQ(error_of(ctl::parse("halt", ctl::node_verbs)),
            "unknown command 'halt': expected drain, undrain, label, share, nice, maxtasks, kill, lease");
}

TEST(Parse, BadArgCount) {
  EXPECT_EQ(error_of(ctl::parse("exec", ctl::task_verbs)), "bad # args to 'exec': expected at least 1 (exec ARG...)");
  EXPECT_EQ(error_of(ctl::parse("kill 9 15", ctl::task_verbs)),
            "bad # args to 'kill': expected at most 1 (kill [SIGNAL])");
  EXPECT_EQ(error_of(ctl::parse("dir", ctl::task_verbs)), "bad # args to 'dir': expected 1 (dir PATH)");
  EXPECT_EQ(error_of(ctl::parse("dir a b", ctl::task_verbs)), "bad # args to 'dir': expected 1 (dir PATH)");
  EXPECT_EQ(error_of(ctl::parse("rm now", ctl::task_verbs)), "bad # args to 'rm': expected none (rm)");
  EXPECT_EQ(error_of(ctl::parse("drain now", ctl::node_verbs)), "bad # args to 'drain': expected none (drain)");
}

TEST(Parse, RangeOfArgs) {
  constexpr ctl::verb_spec table[] = {{0, "node", 2, 3, "node add|rm NAME [DIAL]"}, {1, "x", 0, 2}};
  EXPECT_EQ(error_of(ctl::parse("node add", table)), "bad # args to 'node': expected 2 to 3 (node add|rm NAME [DIAL])");
  // No usage: no parenthesis.
  EXPECT_EQ(error_of(ctl::parse("x 1 2 3", table)), "bad # args to 'x': expected at most 2");
  EXPECT_TRUE(ctl::parse("node rm n1", table).has_value());
}

TEST(Parse, KillAllTakesOnlyTheWordAll) {
  auto c = ctl::parse("kill all", ctl::node_verbs);
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(static_cast<ctl::node_verb>(c->verb), ctl::node_verb::kill);
  EXPECT_EQ(c->args, words{"all"});
  EXPECT_EQ(error_of(ctl::parse("kill 12", ctl::node_verbs)), "bad argument to 'kill': expected all (kill all)");
  EXPECT_EQ(error_of(ctl::parse("kill ALL", ctl::node_verbs)), "bad argument to 'kill': expected all (kill all)");
  EXPECT_EQ(error_of(ctl::parse("kill", ctl::node_verbs)), "bad # args to 'kill': expected 1 (kill all)");
}

TEST(Parse, AdminVerbs) {
  for (const char* line : {"drain", "undrain", "label site=lab arch=arm64", "share 50", "nice 5", "maxtasks 8"}) {
    auto c = ctl::parse(line, ctl::node_verbs);
    EXPECT_TRUE(c.has_value()) << line << ": " << c.error();
  }
}

TEST(Parse, EmptyAndTokenizeErrors) {
  EXPECT_EQ(error_of(ctl::parse("", ctl::task_verbs)), "empty command");
  EXPECT_EQ(error_of(ctl::parse("  \n", ctl::task_verbs)), "empty command");
  EXPECT_EQ(error_of(ctl::parse("exec 'x", ctl::task_verbs)), "unterminated quote in 'exec 'x'");
  EXPECT_EQ(error_of(ctl::parse("'' x", ctl::task_verbs)),
            "unknown command '': expected exec, dir, env, cpu, mem, time, nice, kill, rm");
}

TEST(Parse, ErrorsStayShort) {
  std::string huge(100000, 'v');
  std::string e = error_of(ctl::parse(huge, ctl::task_verbs));
  EXPECT_TRUE(e.starts_with("unknown command 'vvv")) << e;
  EXPECT_TRUE(e.ends_with("...': expected exec, dir, env, cpu, mem, time, nice, kill, rm")) << e;
  EXPECT_EQ(e.size(), ctl::max_error);

  std::string many = "rm";
  for (int i = 0; i < 20000; ++i) many += " x";
  e = error_of(ctl::parse(many, ctl::task_verbs));
  EXPECT_EQ(e, "bad # args to 'rm': expected none (rm)");

  // A multi-byte character is never cut in half.
  std::string utf8;
  for (int i = 0; i < 100; ++i) utf8 += "\xc3\xa9";  // é
  e = error_of(ctl::parse(utf8, ctl::task_verbs));
  std::size_t q = e.find("...'");
  ASSERT_NE(q, std::string::npos) << e;
  EXPECT_EQ(e.substr(q - 2, 2), "\xc3\xa9");

  // A large table's list is cut too.
  std::vector<ctl::verb_spec> big;
  for (int i = 0; i < 50; ++i) big.push_back({i, "verbnumber", 0, 0, ""});
  e = error_of(ctl::parse("x", big));
  EXPECT_LE(e.size(), ctl::max_error);
  EXPECT_TRUE(e.starts_with("unknown command 'x': expected verbnumber, verbnumber")) << e;
  EXPECT_TRUE(e.ends_with(", verbnumber, ...")) << e;
}

// ---- line_buffer -----------------------------------------------------------------------

TEST(LineBuffer, AWriteWithoutNewlineIsACommandUnlessItIsAWholePage) {
  ctl::line_buffer b;
  EXPECT_EQ(b.feed_write("exec ls"), (std::vector<std::string>{"exec ls"}));  // echo -n
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.feed_write("a\n\n  \nb\n"), (std::vector<std::string>{"a", "b"}));  // blank lines dropped
  std::string page = "env X=" + std::string(4096 - 6, 'y');                     // FUSE's 4 KiB piece
  EXPECT_TRUE(b.feed_write(page).empty());
  EXPECT_EQ(b.feed_write("z\n"), (std::vector<std::string>{page + "z"}));
}

TEST(LineBuffer, AWriteOfTheConnectionsLargestSizeIsAPieceOfALongerLine) {
  // plan9port's lib9pclient (9p write -l, 9pserve) and v9fs split a long write at
  // msize - 24: with msize 8192, a 10000-byte line arrives as 8168 bytes, then 1832.
  constexpr std::size_t max_write = 8192 - 24;
  ctl::line_buffer b;
  std::string line = "exec sh -c 'echo ${#1}' _ " + std::string(10000, 'x');
  EXPECT_TRUE(b.feed_write(std::string_view(line).substr(0, max_write), max_write).empty());
  EXPECT_FALSE(b.empty());
  EXPECT_EQ(b.feed_write(std::string_view(line).substr(max_write), max_write), (std::vector<std::string>{line}));
  EXPECT_TRUE(b.empty());
  // Without max_write (or another size), the same first write is a command of its own.
  ctl::line_buffer c;
  EXPECT_EQ(c.feed_write(std::string_view(line).substr(0, max_write)).size(), 1u);
  ctl::line_buffer d;
  EXPECT_EQ(d.feed_write(std::string_view(line).substr(0, max_write - 1), max_write).size(), 1u);
  // feed_ctl takes it the same way.
  ctl::line_buffer e;
  auto first = e.feed_ctl(std::string_view(line).substr(0, max_write), max_write);
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->empty());
  auto rest = e.feed_ctl(std::string_view(line).substr(max_write), max_write);
  ASSERT_TRUE(rest);
  EXPECT_EQ(*rest, (std::vector<std::string>{line}));
}

TEST(LineBuffer, OneLinePerWrite) {
  ctl::line_buffer b;
  EXPECT_EQ(b.feed("exec ls\n"), words{"exec ls"});
  EXPECT_TRUE(b.empty());
}

TEST(LineBuffer, SplitAcrossWrites) {
  ctl::line_buffer b;
  EXPECT_EQ(b.feed("exec sh -c 'ec"), words{});
  EXPECT_FALSE(b.empty());
  EXPECT_EQ(b.feed("ho hi'"), words{});
  EXPECT_EQ(b.feed("\nrm"), words{"exec sh -c 'echo hi'"});
  EXPECT_EQ(b.take_rest(), "rm");
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.take_rest(), "");
}

TEST(LineBuffer, SeveralLinesInOneWrite) {
  ctl::line_buffer b;
  EXPECT_EQ(b.feed("dir /tmp\nenv A=1\n\nexec true\npart"), (words{"dir /tmp", "env A=1", "", "exec true"}));
  EXPECT_EQ(b.feed("ial\n"), words{"partial"});
}

TEST(LineBuffer, Crlf) {
  ctl::line_buffer b;
  EXPECT_EQ(b.feed("kill 9\r\nrm\r"), words{"kill 9"});
  EXPECT_EQ(b.feed("\n"), words{"rm"});  // the CR arrived in one write, the LF in the next
  EXPECT_EQ(b.feed("exec x\r"), words{});
  EXPECT_EQ(b.take_rest(), "exec x");
}

TEST(LineBuffer, ByteAtATime) {
  ctl::line_buffer b;
  std::string text = "exec a\r\nenv K=V\nrm\n";
  words got;
  for (char c : text) {
    for (auto& l : b.feed(std::string_view(&c, 1))) got.push_back(l);
  }
  EXPECT_EQ(got, (words{"exec a", "env K=V", "rm"}));
}

TEST(LineBuffer, OverlongLineRefused) {
  ctl::line_buffer b;
  std::string chunk(4096, 'x');
  std::size_t refused = 0;
  // Written the way FUSE splits a write: 4 KiB at a time, 80 KiB in all.
  EXPECT_EQ(b.feed("exec "), words{});
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(b.feed(chunk), words{});
    refused += b.take_refused();
  }
  EXPECT_EQ(refused, 1u);
  EXPECT_TRUE(b.empty());
  // The rest of the refused line, up to its newline, is dropped; the next line is fine.
  EXPECT_EQ(b.feed("yyy\nrm\n"), words{"rm"});
  EXPECT_EQ(b.take_refused(), 0u);
}

TEST(LineBuffer, MaxLineExactly) {
  ctl::line_buffer b;
  std::string line(ctl::line_buffer::max_line, 'a');
  EXPECT_EQ(b.feed(line + "\n"), words{line});
  EXPECT_EQ(b.feed(line + "\r\n"), words{line});
  EXPECT_EQ(b.take_refused(), 0u);
  EXPECT_EQ(b.feed(line + "a\nok\n"), words{"ok"});
  EXPECT_EQ(b.take_refused(), 1u);
  // Two refused lines in one write count twice.
  EXPECT_EQ(b.feed(line + "a\n" + line + "b\n"), words{});
  EXPECT_EQ(b.take_refused(), 2u);
}

TEST(LineBuffer, FeedCtlRefusesAWriteWithAnOverlongLineWhole) {
  ctl::line_buffer b;
  std::string line(ctl::line_buffer::max_line + 1, 'a');
  auto r = b.feed_ctl("env A=1\n" + line + "\nenv B=2\n");
  EXPECT_EQ(error_of(r), "ctl line longer than 65536 bytes");
  EXPECT_TRUE(b.empty());
  auto ok = b.feed_ctl("env C=3\n");
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(*ok, words{"env C=3"});
  // A 10 MB line written in 1 MiB pieces (msize) is refused in the write where it grew too
  // long, and every later piece of it too; the buffer never holds more than one line's
  // worth. The write that ends it is refused whole; the next line is fine.
  std::string piece(1 << 20, 'x');
  std::vector<std::string> errors;
  for (int i = 0; i < 10; ++i) {
    auto w = b.feed_ctl(piece);
    ASSERT_FALSE(w.has_value());
    errors.push_back(w.error());
    EXPECT_TRUE(b.empty());
  }
  EXPECT_EQ(errors.front(), "ctl line longer than 65536 bytes");
  EXPECT_EQ(errors.back(), "rest of a ctl line longer than 65536 bytes discarded");
  EXPECT_EQ(error_of(b.feed_ctl("x\nrm\n")), "rest of a ctl line longer than 65536 bytes discarded");
  auto after = b.feed_ctl("rm\n");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(*after, words{"rm"});
}

// The attack on issue 14: after a piece (a whole 4 KiB page) that made a line too long, a
// short write without a newline ends that line. Its bytes are the refused line's, so they
// are dropped, and the write says so instead of answering success for a command that never
// ran. The write after it is a command again.
TEST(LineBuffer, AShortWriteThatEndsARefusedLineIsAnErrorNotASilentSuccess) {
  ctl::line_buffer b;
  std::string page(4096, 'x');
  std::vector<std::string> errors;
  for (int i = 0; i < 17; ++i) {
    if (auto w = b.feed_ctl(page); !w) errors.push_back(w.error());
  }
  EXPECT_EQ(errors, (words{"ctl line longer than 65536 bytes"}));
  EXPECT_EQ(error_of(b.feed_ctl("exec ls")), "rest of a ctl line longer than 65536 bytes discarded");
  auto next = b.feed_ctl("exec ls");
  ASSERT_TRUE(next.has_value()) << next.error();
  EXPECT_EQ(*next, words{"exec ls"});
  EXPECT_EQ(b.take_refusal(), "");
}

TEST(LineBuffer, TwentyThousandLinesInOneWrite) {
  ctl::line_buffer b;
  std::string data;
  for (int i = 0; i < 20000; ++i) data += "env K" + std::to_string(i) + "=v\n\n";
  auto lines = b.feed_ctl(data);
  ASSERT_TRUE(lines.has_value());
  ASSERT_EQ(lines->size(), 20000u);  // blank lines are dropped as they complete
  EXPECT_EQ(lines->front(), "env K0=v");
  EXPECT_EQ(lines->back(), "env K19999=v");
  // A megabyte of newlines gives nothing, and keeps nothing.
  auto none = b.feed_ctl(std::string(1 << 20, '\n'));
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(none->capacity(), 0u);
}

TEST(LineBuffer, TakeRestEndsDiscarding) {
  ctl::line_buffer b;
  b.feed(std::string(ctl::line_buffer::max_line + 10, 'z'));
  EXPECT_EQ(b.take_refused(), 1u);
  EXPECT_EQ(b.take_rest(), "");
  EXPECT_EQ(b.feed("rm\n"), words{"rm"});
}

// ---- Typed arguments -------------------------------------------------------------------

std::uint64_t bytes(std::string_view s) {
  auto v = ctl::parse_bytes(s);
  EXPECT_TRUE(v.has_value()) << s << ": " << v.error();
  return v.value_or(0);
}

TEST(ParseBytes, Multiples) {
  EXPECT_EQ(bytes("4096"), 4096u);
  EXPECT_EQ(bytes("0"), 0u);
  EXPECT_EQ(bytes("64k"), 65536u);
  EXPECT_EQ(bytes("64K"), 65536u);
  EXPECT_EQ(bytes("512m"), 512ull << 20);
  EXPECT_EQ(bytes("2g"), 2ull << 30);
  EXPECT_EQ(bytes("2G"), 2ull << 30);
  EXPECT_EQ(bytes("1t"), 1ull << 40);
  EXPECT_EQ(bytes("64KiB"), 65536u);
  EXPECT_EQ(bytes("64kb"), 65536u);
  EXPECT_EQ(bytes("3GIB"), 3ull << 30);
  EXPECT_EQ(bytes("512B"), 512u);
  EXPECT_EQ(bytes("1.5g"), 1610612736u);
  EXPECT_EQ(bytes("0.1k"), 102u);  // rounded down to whole bytes
  EXPECT_EQ(bytes("16777215t"), 16777215ull << 40);
}

// Fractions to the 19th digit, whose products with the multiple need more than 64 bits
// before the division (ctlmsg.cpp's mul_div, which does without a 128-bit integer on
// 32-bit ARM), and results at the top of the range.
TEST(ParseBytes, LongFractions) {
  EXPECT_EQ(bytes("16777215.9999999999999999999t"), UINT64_MAX);
  EXPECT_EQ(bytes("16777215.99999999999999999999999t"), UINT64_MAX);  // past 19 digits: dropped
  EXPECT_EQ(bytes("7.1234567890123456789g"), 7648753485u);
  EXPECT_EQ(bytes("0.0000000000000000001t"), 0u);
  EXPECT_EQ(error_of(ctl::parse_bytes("1.0000000000000000001")), "bad size '1.0000000000000000001': not a whole number of bytes");
  EXPECT_EQ(error_of(ctl::parse_bytes("16777216.0000000000000000001t")), "bad size '16777216.0000000000000000001t': too large");
  EXPECT_EQ(ctl::parse_seconds_ms("18446744073709551.615"), UINT64_MAX);
  EXPECT_EQ(error_of(ctl::parse_seconds_ms("18446744073709551.616")), "bad time '18446744073709551.616': too large");
}

TEST(ParseBytes, Errors) {
  EXPECT_EQ(error_of(ctl::parse_bytes("12q")),
            "bad size '12q': expected a number of bytes with an optional k, m, g or t suffix");
  for (const char* s : {"", "k", "-1", "1 k", "1kk", "1ibk", "1i", "1.2.3g", "0x10", "1e3", " 1", "1p"}) {
    EXPECT_TRUE(error_of(ctl::parse_bytes(s)).starts_with("bad size '")) << s;
  }
  EXPECT_EQ(error_of(ctl::parse_bytes("1.5")), "bad size '1.5': not a whole number of bytes");
  EXPECT_EQ(error_of(ctl::parse_bytes("18446744073709551616")), "bad size '18446744073709551616': too large");
  EXPECT_EQ(error_of(ctl::parse_bytes("16777216t")), "bad size '16777216t': too large");
  EXPECT_EQ(error_of(ctl::parse_bytes("99999999999999999999999g")), "bad size '99999999999999999999999g': too large");
  EXPECT_EQ(bytes("18446744073709551615"), UINT64_MAX);
}

TEST(ParseCpu, Millicores) {
  EXPECT_EQ(ctl::parse_cpu_millis("2"), 2000u);
  EXPECT_EQ(ctl::parse_cpu_millis("1.5"), 1500u);
  EXPECT_EQ(ctl::parse_cpu_millis("0.25"), 250u);
  EXPECT_EQ(ctl::parse_cpu_millis("1.500"), 1500u);
  EXPECT_EQ(ctl::parse_cpu_millis("500m"), 500u);
  EXPECT_EQ(ctl::parse_cpu_millis("1m"), 1u);
  EXPECT_EQ(ctl::parse_cpu_millis("0.001"), 1u);
}

TEST(ParseCpu, Errors) {
  EXPECT_EQ(error_of(ctl::parse_cpu_millis("0")), "bad cpu '0': must be more than 0");
  EXPECT_EQ(error_of(ctl::parse_cpu_millis("0m")), "bad cpu '0m': must be more than 0");
  EXPECT_EQ(error_of(ctl::parse_cpu_millis("two")), "bad cpu 'two': expected CPUs (2, 1.5) or millicores (500m)");
  EXPECT_EQ(error_of(ctl::parse_cpu_millis("1.0005")), "bad cpu '1.0005': finer than a millicore");
  EXPECT_EQ(error_of(ctl::parse_cpu_millis("1.5m")), "bad cpu '1.5m': finer than a millicore");
  EXPECT_EQ(error_of(ctl::parse_cpu_millis("5000000")), "bad cpu '5000000': too large");
  for (const char* s : {"", "m", "-1", "2M", "2 ", "1,5"}) {
    EXPECT_TRUE(error_of(ctl::parse_cpu_millis(s)).starts_with("bad cpu '")) << s;
  }
}

TEST(ParseSeconds, ToMilliseconds) {
  EXPECT_EQ(ctl::parse_seconds_ms("10"), 10000u);
  EXPECT_EQ(ctl::parse_seconds_ms("1.5"), 1500u);
  EXPECT_EQ(ctl::parse_seconds_ms("0.001"), 1u);
  EXPECT_EQ(error_of(ctl::parse_seconds_ms("0")), "bad time '0': must be more than 0");
  EXPECT_EQ(error_of(ctl::parse_seconds_ms("10s")), "bad time '10s': expected seconds (10, 1.5)");
  EXPECT_EQ(error_of(ctl::parse_seconds_ms("0.0001")), "bad time '0.0001': finer than a millisecond");
  EXPECT_EQ(error_of(ctl::parse_seconds_ms("18446744073709552")), "bad time '18446744073709552': too large");
}

TEST(ParseInt, Range) {
  EXPECT_EQ(ctl::parse_int("10", -20, 19, "nice"), 10);
  EXPECT_EQ(ctl::parse_int("-20", -20, 19, "nice"), -20);
  EXPECT_EQ(ctl::parse_int("+5", -20, 19, "nice"), 5);
  EXPECT_EQ(error_of(ctl::parse_int("40", -20, 19, "nice")), "bad nice '40': expected an integer from -20 to 19");
  EXPECT_EQ(error_of(ctl::parse_int("x", 1, 100, "share")), "bad share 'x': expected an integer from 1 to 100");
  for (const char* s : {"", "+", "-", "1.0", "5 ", "+-5", "99999999999999999999"}) {
    EXPECT_TRUE(error_of(ctl::parse_int(s, -20, 19, "nice")).starts_with("bad nice '")) << s;
  }
}

TEST(ParseKv, KeysAndValues) {
  auto kv = ctl::parse_kv("arch=arm64");
  ASSERT_TRUE(kv.has_value());
  EXPECT_EQ(kv->first, "arch");
  EXPECT_EQ(kv->second, "arm64");
  kv = ctl::parse_kv("PATH=/bin:/usr/bin=x");
  ASSERT_TRUE(kv.has_value());
  EXPECT_EQ(kv->second, "/bin:/usr/bin=x");
  kv = ctl::parse_kv("my.key-2_b=");
  ASSERT_TRUE(kv.has_value());
  EXPECT_EQ(kv->first, "my.key-2_b");
  EXPECT_EQ(kv->second, "");
  EXPECT_EQ(error_of(ctl::parse_kv("site")), "bad key=value 'site': expected KEY=VALUE");
  EXPECT_EQ(error_of(ctl::parse_kv("=x")), "bad key=value '=x': expected KEY=VALUE");
  EXPECT_EQ(error_of(ctl::parse_kv("a b=c")), "bad key in 'a b=c': a key is letters, digits, '_', '.' and '-'");
}

TEST(ParseSignal, NumbersAndNames) {
  EXPECT_EQ(ctl::parse_signal("9"), 9);
  EXPECT_EQ(ctl::parse_signal("1"), 1);
  EXPECT_EQ(ctl::parse_signal("64"), 64);
  EXPECT_EQ(ctl::parse_signal("KILL"), SIGKILL);
  EXPECT_EQ(ctl::parse_signal("SIGKILL"), SIGKILL);
  EXPECT_EQ(ctl::parse_signal("term"), SIGTERM);
  EXPECT_EQ(ctl::parse_signal("SigTerm"), SIGTERM);
  EXPECT_EQ(ctl::parse_signal("hup"), SIGHUP);
  EXPECT_EQ(ctl::parse_signal("USR1"), SIGUSR1);
  EXPECT_EQ(ctl::parse_signal("CHLD"), SIGCHLD);
  EXPECT_EQ(ctl::parse_signal("CLD"), SIGCHLD);
  EXPECT_EQ(ctl::parse_signal("IOT"), SIGABRT);
  EXPECT_EQ(ctl::parse_signal("sigwinch"), SIGWINCH);
  EXPECT_EQ(ctl::parse_signal("SYS"), SIGSYS);
}

TEST(ParseSignal, Errors) {
  EXPECT_EQ(error_of(ctl::parse_signal("0")), "bad signal '0': expected a number 1-64 or a name such as KILL or TERM");
  for (const char* s : {"65", "-9", "", "SIG", "SIGSIGKILL", "KILLL", "9x", " 9", "NOPE"}) {
    EXPECT_TRUE(error_of(ctl::parse_signal(s)).starts_with("bad signal '")) << s;
  }
}

TEST(SignalName, RoundTrip) {
  EXPECT_EQ(ctl::signal_name(SIGKILL), "KILL");
  EXPECT_EQ(ctl::signal_name(SIGTERM), "TERM");
  EXPECT_EQ(ctl::signal_name(SIGABRT), "ABRT");
  EXPECT_EQ(ctl::signal_name(SIGCHLD), "CHLD");
  EXPECT_EQ(ctl::signal_name(40), "40");
  EXPECT_EQ(ctl::signal_name(0), "0");
  for (int sig = 1; sig <= 64; ++sig) {
    EXPECT_EQ(ctl::parse_signal(ctl::signal_name(sig)), sig) << sig;
  }
}

TEST(HumanBytes, Units) {
  EXPECT_EQ(ctl::human_bytes(0), "0 B");
  EXPECT_EQ(ctl::human_bytes(512), "512 B");
  EXPECT_EQ(ctl::human_bytes(1023), "1023 B");
  EXPECT_EQ(ctl::human_bytes(1024), "1 KiB");
  EXPECT_EQ(ctl::human_bytes(1536), "1.5 KiB");
  EXPECT_EQ(ctl::human_bytes(1572864), "1.5 MiB");
  EXPECT_EQ(ctl::human_bytes(64ull << 30), "64 GiB");
  EXPECT_EQ(ctl::human_bytes(25165824000ull), "23.4 GiB");
  EXPECT_EQ(ctl::human_bytes((1ull << 20) - 1), "1 MiB");  // not "1024 KiB"
  EXPECT_EQ(ctl::human_bytes(1ull << 40), "1 TiB");
  EXPECT_EQ(ctl::human_bytes(UINT64_MAX), "16 EiB");
}

}  // namespace

// ---- The join line (ctl/join.hpp) ------------------------------------------------------

#include "ctl/join.hpp"

TEST(JoinLine, RoundTripsWithQuotedLabels) {
  ctl::join_request r;
  r.name = "pi-4.b";
  r.nonce = "0123456789abcdef0123456789abcdef";
  r.arch = "arm64";
  r.ncpu = 4;
  r.mem_bytes = 8ull << 30;
  r.labels = {{"zone", "shed by the door"}, {"gpu", ""}};
  auto line = ctl::format_join(r);
  EXPECT_EQ(line, "join version=1 name=pi-4.b nonce=0123456789abcdef0123456789abcdef arch=arm64 ncpu=4 "
                  "mem=8589934592 'label=zone=shed by the door' label=gpu=\n");
  auto back = ctl::parse_join(line);
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back->name, r.name);
  EXPECT_EQ(back->nonce, r.nonce);
  EXPECT_EQ(back->ncpu, 4u);
  EXPECT_EQ(back->mem_bytes, r.mem_bytes);
  EXPECT_EQ(back->labels, r.labels);
}

TEST(JoinLine, ErrorsSayWhat) {
  const std::string rest = " nonce=0123456789abcdef0123456789abcdef arch=amd64 ncpu=1 mem=1";
  auto err = [](std::string_view l) {
    auto r = ctl::parse_join(l);
    return r ? std::string("ok") : r.error();
  };
  // The version is answered before anything else, whatever the rest says.
  EXPECT_EQ(err("join version=2 name=../x whatever"), "join: version 2 not spoken here (1)");
  EXPECT_EQ(err("join name=n1" + rest), "join: missing version=");
  EXPECT_EQ(err("jion version=1"), "join: expected 'join' first");
  EXPECT_EQ(err("join version=1 name=a/b" + rest), "join: bad name 'a/b': expected letters, digits, '-', '_' or '.'");
  EXPECT_EQ(err("join version=1 name=.." + rest), "join: bad name '..': expected letters, digits, '-', '_' or '.'");
  EXPECT_EQ(err("join version=1 name=n1 nonce=00 arch=amd64 ncpu=1 mem=1"),
            "join: bad nonce: expected 32 lower-case hex digits");
  EXPECT_EQ(err("join version=1 name=n1 name=n2" + rest), "join: name= given twice");
  EXPECT_EQ(err("join version=1 name=n1 colour=red" + rest), "join: unknown word 'colour=red'");
  EXPECT_EQ(err("join version=1 name=n1 nonce=0123456789abcdef0123456789abcdef arch=amd64 ncpu=0 mem=1"),
            "join: bad ncpu '0': expected 1 to 65536");
  EXPECT_EQ(err("join version=1 nonce=0123456789abcdef0123456789abcdef arch=amd64 ncpu=1 mem=1"), "join: missing name=");
  EXPECT_TRUE(err("join version=1 name=n1" + rest + "\nexec rm -rf /").starts_with("join: line break in "));
}
