// Tests of the text form of 9P messages (srv9p/fcall_text.cpp): the golden line of every
// sample message, round-trips of random messages, Plan 9 quoting of odd strings, the
// liberties parse() allows, and its errors.
#include <gtest/gtest.h>

#include <random>

#include "srv9p/fcall.hpp"
#include "tests/srv9p/fcall_samples.hpp"

namespace srv9p {
namespace {

using srv9p::testing::samples;

// The error parse() gives, or "" when it succeeds.
std::string parse_error(std::string_view line) {
  auto r = parse(line);
  return r ? "" : r.error();
}

// The quoted form of s, as to_string writes an Rerror's ename.
std::string quoted(const std::string& s) {
  std::string line = to_string(fcall{1, rerror{s}});
  return line.substr(std::string_view("Rerror tag=1 ename=").size());
}

TEST(FcallText, GoldenLines) {
  for (const auto& s : samples()) {
    SCOPED_TRACE(s.name);
    EXPECT_EQ(to_string(s.call), s.text);
    auto r = parse(s.text);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(*r, s.call);
  }
}

TEST(FcallText, RandomRoundTrip) {
  std::mt19937_64 rng(5);
  for (int i = 0; i < 20000; i++) {
    fcall f = testing::random_fcall(rng, rng() % std::variant_size_v<message>);
    std::string line = to_string(f);
    auto r = parse(line);
    ASSERT_TRUE(r) << r.error() << "\n" << line;
    ASSERT_EQ(*r, f) << line;
    ASSERT_EQ(to_string(*r), line);
    ASSERT_EQ(line.find('\n'), std::string::npos) << line;
  }
}

TEST(FcallText, Quoting) {
  EXPECT_EQ(quoted("plain-name_1.2/x:y+z@w"), "plain-name_1.2/x:y+z@w");
  EXPECT_EQ(quoted(""), "''");
  EXPECT_EQ(quoted("two words"), "'two words'");
  EXPECT_EQ(quoted("it's"), "'it''s'");
  EXPECT_EQ(quoted("'"), "''''");
  EXPECT_EQ(quoted("a\nb\tc"), "'a\\nb\\tc'");
  EXPECT_EQ(quoted("back\\slash"), "'back\\\\slash'");
  EXPECT_EQ(quoted(std::string("nul\0", 4)), "'nul\\x00'");
  EXPECT_EQ(quoted("\x7f\r"), "'\\x7f\\x0d'");
  EXPECT_EQ(quoted("(x)"), "'(x)'");
  EXPECT_EQ(quoted("a=b"), "'a=b'");
  // Valid UTF-8 stays readable; stray bytes >= 0x80 and C1 controls are escaped.
  EXPECT_EQ(quoted("caf\xc3\xa9"), "'caf\xc3\xa9'");
  EXPECT_EQ(quoted("\xe2\x8c\x98"), "'\xe2\x8c\x98'");
  EXPECT_EQ(quoted("\xff\x80"), "'\\xff\\x80'");
  EXPECT_EQ(quoted("\xc3"), "'\\xc3'");            // truncated sequence
  EXPECT_EQ(quoted("\xc0\xaf"), "'\\xc0\\xaf'");   // overlong '/'
  EXPECT_EQ(quoted("\xed\xa0\x80"), "'\\xed\\xa0\\x80'");  // a surrogate
  EXPECT_EQ(quoted("\xc2\x85"), "'\\xc2\\x85'");   // U+0085, a C1 control
}

TEST(FcallText, EveryByteRoundTrips) {
  for (int b = 0; b < 256; b++) {
    std::string s(1, static_cast<char>(b));
    for (const std::string& v : {s, "x" + s + "y", s + s}) {
      fcall f{7, twrite{1, 2, v}};
      auto r = parse(to_string(f));
      ASSERT_TRUE(r) << r.error() << " for byte " << b;
      EXPECT_EQ(*r, f) << "byte " << b;
    }
  }
}

TEST(FcallText, QidTypes) {
  EXPECT_EQ(to_string(fcall{1, rattach{{qtdir | qtappend | qtexcl | qtauth | qttmp, 7, 0xabc}}}),
            "Rattach tag=1 qid=(0000000000000abc 7 dalAt)");
  // QTMOUNT (0x10) has no letter here; the type is written in hex.
  fcall mount{1, rattach{{0x10, 0, 1}}};
  EXPECT_EQ(to_string(mount), "Rattach tag=1 qid=(0000000000000001 0 0x10)");
  auto r = parse(to_string(mount));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(*r, mount);
}

TEST(FcallText, TwstatShowsOnlyWhatItTouches) {
  dir d = dont_touch_dir();
  EXPECT_EQ(to_string(fcall{1, twstat{3, d}}), "Twstat tag=1 fid=3");
  d.name = "new name";
  d.mode = 0600;
  EXPECT_EQ(to_string(fcall{1, twstat{3, d}}), "Twstat tag=1 fid=3 name='new name' mode=0600");
  // Every field spelled out parses too.
  auto r = parse("Twstat tag=1 fid=3 name='new name' uid='' gid='' muid='' mode=0600"
                 " length=18446744073709551615 qid=(ffffffffffffffff 4294967295 0xff)"
                 " atime=4294967295 mtime=4294967295 type=65535 dev=4294967295");
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(*r, (fcall{1, twstat{3, d}}));
}

TEST(FcallText, ParseIsLenient) {
  auto want = fcall{5, twalk{0, 1, {"usr", "glenda"}}};
  for (std::string_view line : {
           "Twalk tag=5 fid=0 newfid=1 wname=usr wname=glenda",
           "  Twalk\ttag=5  fid=0 newfid=1 wname=usr wname=glenda \r\n",
           "Twalk wname=usr newfid=1 wname=glenda fid=0 tag=5",  // any order; wnames keep theirs
           "Twalk tag=0x5 fid=00 newfid=01 wname='usr' wname='glen''da'",
       }) {
    SCOPED_TRACE(line);
    auto r = parse(line);
    ASSERT_TRUE(r) << r.error();
    if (line.find("''") != std::string_view::npos) {
      EXPECT_EQ(std::get<twalk>(r->msg).wnames[1], "glen'da");
    } else {
      EXPECT_EQ(*r, want);
    }
  }
  // Rread and Twrite: count= may be left out or wrong; data decides it.
  for (std::string_view line : {"Rread tag=3 data='hello\\n'", "Rread tag=3 count=99 data='hello\\n'"}) {
    auto r = parse(line);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(*r, (fcall{3, rread{"hello\n"}}));
  }
  auto w = parse("Twrite tag=1 fid=2 offset=0 data=x");
  ASSERT_TRUE(w) << w.error();
  EXPECT_EQ(*w, (fcall{1, twrite{2, 0, "x"}}));
  // Octal modes need their leading 0; escapes in quoted values.
  auto c = parse("Tcreate tag=1 fid=2 name='a\\x20b\\\\' perm=0x800001ed mode=0");
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(*c, (fcall{1, tcreate{2, "a b\\", dmdir | 0755, 0}}));
}

TEST(FcallText, ParseErrors) {
  struct {
    std::string_view line, error;
  } cases[] = {
      {"", "empty line"},
      {"   \n", "empty line"},
      {"Tfoo tag=1", "unknown message 'Tfoo'"},
      {"Terror tag=1", "unknown message 'Terror'"},
      {"twalk tag=1", "unknown message 'twalk'"},
      {"Tclunk fid=1", "Tclunk: missing tag"},
      {"Tclunk tag=1", "Tclunk: missing fid"},
      {"Twalk tag=1 fid=0", "Twalk: missing newfid"},
      {"Tclunk tag=1 fid=x", "Tclunk: fid: bad number 'x'"},
      {"Tclunk tag=70000 fid=1", "Tclunk: tag: bad number '70000'"},
      {"Tclunk tag=-1 fid=1", "Tclunk: tag: bad number '-1'"},
      {"Tclunk tag=1 fid=4294967296", "Tclunk: fid: bad number '4294967296'"},
      {"Tclunk tag=1 fid=09", "Tclunk: fid: bad number '09'"},
      {"Tclunk tag=1 fid=(1 2 d)", "Tclunk: fid: bad number '1 2 d'"},
      {"Tclunk tag=1 fid=1 fid=2", "Tclunk: fid given twice"},
      {"Tclunk tag=1 fid=1 bogus=3", "Tclunk: unknown field bogus"},
      {"Rattach tag=1 qid=(1 0 d) qid=(2 0 d)", "Rattach: qid given twice"},
      {"Tclunk tag=1 fid", "Tclunk: expected key=value, not 'fid'"},
      {"Tclunk tag=1 =1", "Tclunk: expected key=value, not '=1'"},
      {"Tclunk tag=1 Fid=1", "Tclunk: expected key=value, not 'Fid=1'"},
      {"Tclunk tag=1 fid=", "Tclunk: fid: empty value (write '' for an empty string)"},
      {"Tclunk tag=1 fid=1'2'", "Tclunk: fid: quote inside an unquoted value"},
      {"Rerror tag=1 ename='abc", "Rerror: ename: unterminated quote"},
      {"Rerror tag=1 ename='abc\\", "Rerror: ename: unterminated quote"},
      {"Rerror tag=1 ename='a'b", "Rerror: ename: junk after value"},
      {"Rerror tag=1 ename='a\\qb'", "Rerror: ename: unknown escape \\q"},
      {"Rerror tag=1 ename='\\x4'", "Rerror: ename: \\x needs two hex digits"},
      {"Rerror tag=1 ename='\\xg0'", "Rerror: ename: \\x needs two hex digits"},
      {"Rerror tag=1 ename=(x)", "Rerror: ename: a string must be quoted when it starts with '('"},
      {"Rattach tag=1 qid=(0 0 d", "Rattach: qid: missing ')'"},
      {"Rattach tag=1 qid=(0 0 d)x", "Rattach: qid: junk after value"},
      {"Rattach tag=1 qid=(zz 0 d)", "Rattach: qid: bad qid '(zz 0 d)'"},
      {"Rattach tag=1 qid=(0 0 q)", "Rattach: qid: bad qid '(0 0 q)'"},
      {"Rattach tag=1 qid=(0)", "Rattach: qid: bad qid '(0)'"},
      {"Rattach tag=1 qid=(0 0 d x)", "Rattach: qid: bad qid '(0 0 d x)'"},
      {"Rattach tag=1 qid=(00000000000000001 0 d)", "Rattach: qid: bad qid '(00000000000000001 0 d)'"},
      {"Rattach tag=1 qid=(0 4294967296 d)", "Rattach: qid: bad qid '(0 4294967296 d)'"},
      {"Rattach tag=1 qid=(0 0 0x100)", "Rattach: qid: bad qid '(0 0 0x100)'"},
      {"Rattach tag=1 qid=0", "Rattach: qid: bad qid '0', not (path version type)"},
      {"Rstat tag=1 name=a", "Rstat: missing uid"},
      {"Topen tag=1 fid=1 mode=256", "Topen: mode: bad number '256'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    EXPECT_EQ(parse_error(c.line), c.error);
  }
}

}  // namespace
}  // namespace srv9p
