// Tests of the 9P2000 wire codec (srv9p/fcall.cpp): golden bytes for every message in both
// directions (tests/srv9p/fcall_samples.hpp), every kind of malformed message, stat
// entries, and a randomized round-trip. Also writes the fuzz seed corpus on request.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <fstream>
#include <random>
#include <set>

#include "srv9p/fcall.hpp"
#include "tests/srv9p/fcall_samples.hpp"

namespace srv9p {
namespace {

using srv9p::testing::from_hex;
using srv9p::testing::samples;
using bytes = std::vector<std::uint8_t>;

// The error decode() gives, or "" when it succeeds.
std::string decode_error(const bytes& b, dialect d = dialect::p9_2000) {
  auto r = decode(b, d);
  return r ? "" : r.error();
}

// Rewrites the size[4] prefix to the buffer's length.
void fix_size(bytes& b) {
  auto n = static_cast<std::uint32_t>(b.size());
  for (int i = 0; i < 4; i++) b[i] = static_cast<std::uint8_t>(n >> (8 * i));
}

const testing::sample& sample_named(std::string_view name) {
  for (const auto& s : samples())
    if (s.name == name) return s;
  ADD_FAILURE() << "no sample " << name;
  return samples().front();
}

TEST(Fcall, SamplesCoverEveryMessageType) {
  std::set<std::size_t> seen;
  for (const auto& s : samples()) seen.insert(s.call.msg.index());
  EXPECT_EQ(seen.size(), std::variant_size_v<message>);
}

TEST(Fcall, GoldenEncode) {
  for (const auto& s : samples()) {
    SCOPED_TRACE(s.name);
    EXPECT_EQ(encode(s.call, s.d), from_hex(s.hex));
  }
}

TEST(Fcall, GoldenDecode) {
  for (const auto& s : samples()) {
    SCOPED_TRACE(s.name);
    auto r = decode(from_hex(s.hex), s.d);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(*r, s.call);
    // 9P2000 does not know the .L types; .L decodes everything 9P2000 has.
    if (s.d == dialect::p9_2000_l && is_dotl(type_of(s.call.msg))) {
      EXPECT_FALSE(decode(from_hex(s.hex)));
    }
    if (s.d == dialect::p9_2000 && !std::holds_alternative<tauth>(s.call.msg) &&
        !std::holds_alternative<tattach>(s.call.msg)) {
      auto l = decode(from_hex(s.hex), dialect::p9_2000_l);
      ASSERT_TRUE(l) << l.error();
      EXPECT_EQ(*l, s.call);
    }
  }
}

TEST(Fcall, EncodeAppends) {
  bytes out = {1, 2, 3};
  encode(sample_named("tclunk").call, out);
  bytes want = {1, 2, 3};
  auto msg = from_hex(sample_named("tclunk").hex);
  want.insert(want.end(), msg.begin(), msg.end());
  EXPECT_EQ(out, want);
}

// encode_parts() is encode() in two pieces: every sample joins to its golden bytes, and
// only a Rread has a bulk, which is its data's own buffer, moved rather than copied.
TEST(Fcall, EncodePartsJoinToTheGoldenBytesAndMoveOnlyARreadsData) {
  for (const auto& s : samples()) {
    SCOPED_TRACE(s.name);
    wire_message w;
    fcall f = s.call;
    encode_parts(std::move(f), w, s.d);
    EXPECT_EQ(w.joined(), from_hex(s.hex));
    if (const auto* r = std::get_if<rread>(&s.call.msg)) {
      EXPECT_EQ(w.bulk, r->data);
      EXPECT_EQ(w.head.size(), header_size + 4);
    } else {
      EXPECT_TRUE(w.bulk.empty());
    }
  }
  std::string data(1 << 20, 'x');
  const char* buffer = data.data();
  fcall big{7, rread{std::move(data)}};
  wire_message w;
  encode_parts(std::move(big), w);
  EXPECT_EQ(w.bulk.data(), buffer);  // the same allocation: no copy of the megabyte
  EXPECT_EQ(w.size(), header_size + 4 + (1u << 20));
  EXPECT_EQ(peek_size(w.head), w.size());
}

TEST(Fcall, PeekSize) {
  EXPECT_EQ(peek_size(bytes{0x13, 0, 0, 0}), 19u);
  EXPECT_EQ(peek_size(bytes{0x01, 0x02, 0x03, 0x04, 0x99}), 0x04030201u);
}

TEST(Fcall, TypeOfNameAndDirection) {
  for (const auto& s : samples()) {
    SCOPED_TRACE(s.name);
    msg_type t = type_of(s.call.msg);
    auto b = from_hex(s.hex);
    EXPECT_EQ(static_cast<std::uint8_t>(t), b[4]);
    EXPECT_EQ(is_request(t), s.name[0] == 't');
    std::string name(type_name(t));
    EXPECT_EQ(name.size() > 1 ? char(std::tolower(name[0])) + name.substr(1) : name,
              std::string(s.name.substr(0, s.name.find('_'))));
  }
  EXPECT_EQ(type_name(static_cast<msg_type>(106)), "unknown");
  EXPECT_EQ(type_name(static_cast<msg_type>(99)), "unknown");
  EXPECT_EQ(type_name(static_cast<msg_type>(128)), "unknown");
  EXPECT_FALSE(is_request(static_cast<msg_type>(106)));
  EXPECT_FALSE(is_request(static_cast<msg_type>(200)));
  EXPECT_TRUE(is_request(msg_type::tversion));
  EXPECT_FALSE(is_request(msg_type::rerror));
}

// ---- malformed messages ----

// Every prefix of a message fails, whether its size[4] then lies or is rewritten to match.
TEST(FcallMalformed, EveryPrefixFails) {
  for (auto name : {"tversion", "tattach", "twalk", "rwalk", "tcreate", "rread", "twrite", "rstat",
                    "twstat", "rerror", "tattach_l", "tauth_l", "rgetattr", "tsetattr", "tlcreate",
                    "rreaddir", "tlock", "rgetlock", "trenameat", "rstatfs"}) {
    SCOPED_TRACE(name);
    auto whole = from_hex(sample_named(name).hex);
    dialect d = sample_named(name).d;
    for (std::size_t n = 0; n < whole.size(); n++) {
      SCOPED_TRACE(n);
      bytes prefix(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
      EXPECT_NE(decode_error(prefix, d), "");
      if (n >= 4) {
        fix_size(prefix);
        EXPECT_NE(decode_error(prefix, d), "");
      }
    }
  }
}

TEST(FcallMalformed, ShortHeader) {
  EXPECT_EQ(decode_error({}), "message of 0 bytes is shorter than its header");
  EXPECT_EQ(decode_error({7, 0, 0, 0, 0x78, 0}), "message of 6 bytes is shorter than its header");
}

TEST(FcallMalformed, SizeLies) {
  auto b = from_hex(sample_named("tclunk").hex);  // 11 bytes
  b[0] = 12;
  EXPECT_EQ(decode_error(b), "message size 12 but 11 bytes");
  b[0] = 10;
  EXPECT_EQ(decode_error(b), "message size 10 but 11 bytes");
  b[0] = 3;  // smaller than the header itself
  EXPECT_EQ(decode_error(b), "message size 3 but 11 bytes");
  b[0] = 11;
  b[3] = 1;  // 16 MiB + 11
  EXPECT_EQ(decode_error(b), "message size 16777227 but 11 bytes");

  auto v = from_hex(sample_named("tversion").hex);
  v.resize(12);
  v[0] = 9;
  EXPECT_EQ(decode_error(v), "message size 9 but 12 bytes");
}

TEST(FcallMalformed, StringPastEnd) {
  auto b = from_hex(sample_named("twalk").hex);
  b[b.size() - 8] = 7;  // "glenda" claims 7 bytes; 6 remain
  EXPECT_EQ(decode_error(b), "Twalk: string runs past end of message");
  auto v = from_hex(sample_named("tversion").hex);
  v[11] = 0xff;  // version len 255
  EXPECT_EQ(decode_error(v), "Tversion: string runs past end of message");
  auto e = from_hex(sample_named("rerror").hex);
  e[8] = 0xff;  // ename len 0xff13
  EXPECT_EQ(decode_error(e), "Rerror: string runs past end of message");
}

TEST(FcallMalformed, FixedFieldPastEnd) {
  bytes b = {9, 0, 0, 0, 0x78, 1, 0, 2, 0};  // Tclunk with half a fid
  EXPECT_EQ(decode_error(b), "Tclunk: field runs past end of message");
}

TEST(FcallMalformed, CountLargerThanMessage) {
  auto r = from_hex(sample_named("rread").hex);
  r[7] = 100;
  EXPECT_EQ(decode_error(r), "Rread: count 100 but 6 bytes left in message");
  r[7] = 0xff;
  r[10] = 0xff;  // count 0xff0000ff
  EXPECT_EQ(decode_error(r), "Rread: count 4278190335 but 6 bytes left in message");
  auto w = from_hex(sample_named("twrite").hex);
  w[19] = 6;
  EXPECT_EQ(decode_error(w), "Twrite: count 6 but 5 bytes left in message");
}

TEST(FcallMalformed, CountSmallerThanMessage) {
  auto r = from_hex(sample_named("rread").hex);
  r[7] = 3;
  EXPECT_EQ(decode_error(r), "Rread: count 3 but 6 bytes left in message");
  auto w = from_hex(sample_named("twrite").hex);
  w[19] = 0;
  EXPECT_EQ(decode_error(w), "Twrite: count 0 but 5 bytes left in message");
}

TEST(FcallMalformed, TrailingBytes) {
  for (const auto& s : samples()) {
    if (s.name.starts_with("rread") || s.name == "twrite") continue;  // data takes the rest (rreaddir too)
    SCOPED_TRACE(s.name);
    auto b = from_hex(s.hex);
    b.push_back(0);
    fix_size(b);
    std::string want = fmt::format("{}: 1 trailing bytes", type_name(type_of(s.call.msg)));
    // In Rstat and Twstat the stat's n[2] must reach the end of the message.
    if (s.name == "rstat") want = "Rstat: n 61 but 62 bytes left in message";
    if (s.name == "twstat") want = "Twstat: n 49 but 50 bytes left in message";
    EXPECT_EQ(decode_error(b, s.d), want);
  }
}

TEST(FcallMalformed, UnknownTypes) {
  for (int t : {106, 99, 200, 0, 128, 255}) {
    SCOPED_TRACE(t);
    bytes b = {7, 0, 0, 0, static_cast<std::uint8_t>(t), 1, 0};
    EXPECT_EQ(decode_error(b), fmt::format("unknown message type {}", t));
  }
}

TEST(FcallMalformed, TooManyWalkElements) {
  twalk w{0, 1, {}};
  w.wnames.assign(maxwelem, "a");
  EXPECT_TRUE(decode(encode(fcall{1, w})));
  w.wnames.push_back("b");
  EXPECT_EQ(decode_error(encode(fcall{1, w})), "Twalk: nwname 17 exceeds 16");

  rwalk r;
  r.qids.resize(maxwelem + 1);
  EXPECT_EQ(decode_error(encode(fcall{1, r})), "Rwalk: nwqid 17 exceeds 16");
  // nwname 0xffff with nothing after it: refused before anything is allocated.
  bytes b = {17, 0, 0, 0, 110, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff};
  EXPECT_EQ(decode_error(b), "Twalk: nwname 65535 exceeds 16");
}

TEST(FcallMalformed, StatSizeDisagrees) {
  auto r = from_hex(sample_named("rstat").hex);
  r[9] = 0x3a;  // stat size[2] 58, n still 61
  EXPECT_EQ(decode_error(r), "Rstat: n 61 disagrees with stat size 58");
  r[9] = 0x3c;
  EXPECT_EQ(decode_error(r), "Rstat: n 61 disagrees with stat size 60");
  r[9] = 0x3b;
  r[7] = 0x3c;  // n 60, but 61 bytes follow
  EXPECT_EQ(decode_error(r), "Rstat: n 60 but 61 bytes left in message");
  r[7] = 0x3e;
  EXPECT_EQ(decode_error(r), "Rstat: n 62 but 61 bytes left in message");

  auto w = from_hex(sample_named("twstat").hex);
  w[13] = 0x2e;
  EXPECT_EQ(decode_error(w), "Twstat: n 49 disagrees with stat size 46");
}

TEST(FcallMalformed, StatFieldsDisagreeWithItsSize) {
  // muid's len[2] says 1 but the entry ends: the string runs past the stat entry even
  // though it would still be inside the buffer if the stat were not bounded.
  auto r = from_hex(sample_named("rstat").hex);
  r[r.size() - 2] = 1;
  EXPECT_EQ(decode_error(r), "Rstat: stat: string runs past end of stat entry");

  // An entry with a byte after its muid, size[2] and n[2] both counting it.
  auto t = from_hex(sample_named("rstat").hex);
  t.push_back(0);
  t[7]++;
  t[9]++;
  fix_size(t);
  EXPECT_EQ(decode_error(t), "Rstat: stat: 1 trailing bytes");

  // n[2] too small to hold even the size[2].
  bytes tiny = {10, 0, 0, 0, 125, 1, 0, 1, 0, 0};
  EXPECT_EQ(decode_error(tiny), "Rstat: stat: 1 bytes, no room for size[2]");
}

// ---- stat entries ----

TEST(FcallDir, SizeEncodeDecode) {
  dir d = testing::sample_dir();
  EXPECT_EQ(dir_size(d), 61u);
  bytes b;
  encode_dir(d, b);
  auto rstat_bytes = from_hex(sample_named("rstat").hex);
  EXPECT_EQ(b, bytes(rstat_bytes.begin() + 9, rstat_bytes.end()));
  auto r = decode_dir(b);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->first, d);
  EXPECT_EQ(r->second, b.size());
}

TEST(FcallDir, DecodeDirTakesOnlyTheFirstEntry) {
  dir a = testing::sample_dir(), z = testing::sample_dir();
  z.name = "other";
  bytes b;
  encode_dir(a, b);
  encode_dir(z, b);
  auto r = decode_dir(b);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->first, a);
  EXPECT_EQ(r->second, dir_size(a));
}

TEST(FcallDir, DecodeDirs) {
  std::vector<dir> want;
  bytes b;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20; i++) {
    want.push_back(testing::random_dir(rng));
    encode_dir(want.back(), b);
  }
  auto r = decode_dirs(b);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(*r, want);

  auto empty = decode_dirs({});
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST(FcallDir, DecodeDirsRejectsPartialEntries) {
  bytes b;
  encode_dir(testing::sample_dir(), b);
  encode_dir(testing::sample_dir(), b);
  for (std::size_t n = 1; n < b.size(); n++) {
    if (n == 61) continue;  // exactly one entry
    SCOPED_TRACE(n);
    EXPECT_FALSE(decode_dirs(std::span(b).first(n)));
  }
  EXPECT_EQ(decode_dirs(std::span(b).first(62)).error(), "entry at offset 61: stat: 1 bytes, no room for size[2]");
  EXPECT_EQ(decode_dirs(std::span(b).first(100)).error(), "entry at offset 61: stat: size 59 but 37 bytes");
}

TEST(FcallDir, DontTouch) {
  dir d = dont_touch_dir();
  EXPECT_EQ(d.type, 0xFFFF);
  EXPECT_EQ(d.dev, 0xFFFFFFFFu);
  EXPECT_EQ(d.qid.type, 0xFF);
  EXPECT_EQ(d.qid.version, 0xFFFFFFFFu);
  EXPECT_EQ(d.qid.path, ~std::uint64_t{0});
  EXPECT_EQ(d.mode, 0xFFFFFFFFu);
  EXPECT_EQ(d.atime, 0xFFFFFFFFu);
  EXPECT_EQ(d.mtime, 0xFFFFFFFFu);
  EXPECT_EQ(d.length, ~std::uint64_t{0});
  EXPECT_TRUE(d.name.empty() && d.uid.empty() && d.gid.empty() && d.muid.empty());
}

// Strings longer than len[2] allows are cut, and so is an entry that would not fit its
// size[2]; the result still decodes.
TEST(FcallDir, OversizedStringsAreCut) {
  fcall e{1, rerror{std::string(70000, 'x')}};
  auto r = decode(encode(e));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(std::get<rerror>(r->msg).ename, std::string(65535, 'x'));

  dir d = testing::sample_dir();
  d.name = std::string(40000, 'n');
  d.uid = std::string(40000, 'u');
  EXPECT_EQ(dir_size(d), 65535u);
  bytes b;
  encode_dir(d, b);
  EXPECT_EQ(b.size(), 65535u);
  auto back = decode_dir(b);
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back->first.name, d.name);
  EXPECT_EQ(back->first.uid.size(), 65535u - 49 - 40000);
  EXPECT_EQ(back->first.gid, "");

  auto rs = decode(encode(fcall{2, rstat{d}}));
  ASSERT_TRUE(rs) << rs.error();
  EXPECT_EQ(std::get<rstat>(rs->msg).stat, back->first);
}

// ---- randomized ----

TEST(FcallRandom, RoundTrip) {
  std::mt19937_64 rng(20240601);
  bytes buf;
  for (int i = 0; i < 20000; i++) {
    std::size_t index = rng() % std::variant_size_v<message>;
    fcall f = testing::random_fcall(rng, index);
    buf.clear();
    encode(f, buf, testing::dialect_of(index));
    ASSERT_EQ(peek_size(buf), buf.size());
    auto r = decode(buf, testing::dialect_of(index));
    ASSERT_TRUE(r) << r.error();
    ASSERT_EQ(*r, f) << "message " << type_name(type_of(f.msg));
  }
}

// Random corruption of valid messages never reads out of bounds (run under the
// sanitizers) and never turns into a different message that re-encodes differently.
TEST(FcallRandom, CorruptedMessages) {
  std::mt19937_64 rng(99);
  for (int i = 0; i < 20000; i++) {
    std::size_t index = rng() % std::variant_size_v<message>;
    dialect d = testing::dialect_of(index);
    auto b = encode(testing::random_fcall(rng, index), d);
    int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; k++) b[rng() % b.size()] = static_cast<std::uint8_t>(rng());
    if (rng() % 2) fix_size(b);
    auto r = decode(b, d);
    if (r) {
      ASSERT_EQ(encode(*r, d), b);
    }
  }
}

// The fuzz seed corpus (fuzz/corpus/decode) is these samples, as wire bytes and as text,
// plus one directory-read buffer. The checked-in seeds must be exactly what the samples
// give; after changing the samples, rewrite them with
//   GALAXY_WRITE_CORPUS=1 ./srv9p_test --gtest_filter=FcallCorpus.*
TEST(FcallCorpus, CheckedInSeedsMatchTheSamples) {
  const std::filesystem::path dir = GALAXY_SOURCE_DIR "/fuzz/corpus/decode";
  const bool rewrite = std::getenv("GALAXY_WRITE_CORPUS") != nullptr;
  std::map<std::string, std::string> want;
  for (const auto& s : samples()) {
    auto b = from_hex(s.hex);
    want[std::string(s.name)] = std::string(b.begin(), b.end());
    want["text_" + std::string(s.name)] = std::string(s.text);
  }
  bytes dirs;
  encode_dir(testing::sample_dir(), dirs);
  encode_dir(testing::truncate_dir(), dirs);
  want["dirs"] = std::string(dirs.begin(), dirs.end());

  if (rewrite) std::filesystem::create_directories(dir);
  for (const auto& [name, content] : want) {
    if (rewrite) {
      std::ofstream out(dir / name, std::ios::binary);
      out << content;
      ASSERT_TRUE(out.good()) << name;
    }
    std::ifstream in(dir / name, std::ios::binary);
    ASSERT_TRUE(in) << "missing seed " << name << "; rewrite the corpus (see above)";
    std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(got, content) << "stale seed " << name << "; rewrite the corpus (see above)";
  }
}

}  // namespace
}  // namespace srv9p
