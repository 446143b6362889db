// Transcript tests, after 9fans/go plan9/srv9p: each tests/transcripts/*.txt is a
// protocol conversation replayed against a fresh in-memory ramfs (owner glenda, /big of
// 100 bytes). Line kinds:
//
//   Tversion tag=65535 msize=8192 version=9P2000    a request, in srv9p::to_string form
//   Rversion tag=65535 msize=8192 version=9P2000    the next reply must match it
//   bytes 0a000000 7c...                            raw bytes sent as one message
//   closed                                          the last message broke framing: the
//                                                   session asked to close the connection
//   silent                                          no reply is waiting
//   # comment, or a blank line
//
// A reply matches when it has the same fields in the same order; an expected value of *
// matches anything (key=*). At the end of a transcript no reply may be left unread.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/srv9p/harness.hpp"

namespace srv9p {
namespace {

// Splits a to_string line into tokens at spaces outside quotes and parentheses.
std::vector<std::string> tokens(std::string_view line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  int depth = 0;
  for (char c : line) {
    if (c == '\'') quoted = !quoted;  // '' inside a quote toggles twice: still fine
    if (!quoted && c == '(') ++depth;
    if (!quoted && c == ')') --depth;
    if (c == ' ' && !quoted && depth == 0) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
      continue;
    }
    cur += c;
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

// Empty when `got` matches `want`, else a description of the first difference.
std::string mismatch(std::string_view want, std::string_view got) {
  auto w = tokens(want);
  auto g = tokens(got);
  for (std::size_t i = 0; i < std::max(w.size(), g.size()); ++i) {
    if (i >= w.size()) return "extra field " + g[i];
    if (i >= g.size()) return "missing field " + w[i];
    if (w[i] == g[i]) continue;
    auto eq = w[i].find('=');
    if (eq != std::string::npos && w[i].substr(eq + 1) == "*" && g[i].starts_with(w[i].substr(0, eq + 1))) {
      continue;
    }
    return "field " + std::to_string(i) + ": want " + w[i] + ", got " + g[i];
  }
  return {};
}

std::vector<std::uint8_t> unhex(std::string_view s) {
  std::vector<std::uint8_t> out;
  std::string digits;
  for (char c : s) {
    if (std::isxdigit(static_cast<unsigned char>(c))) digits += c;
  }
  for (std::size_t i = 0; i + 1 < digits.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  }
  return out;
}

class Transcript : public ::testing::TestWithParam<std::filesystem::path> {};

TEST_P(Transcript, Replays) {
  std::ifstream in(GetParam());
  ASSERT_TRUE(in) << "cannot open " << GetParam();
  testing::harness h;
  std::string line;
  int lineno = 0;
  bool last_closed = false;
  while (std::getline(in, line)) {
    ++lineno;
    SCOPED_TRACE(GetParam().filename().string() + ":" + std::to_string(lineno) + ": " + line);
    if (line.empty() || line[0] == '#') continue;
    if (line.starts_with("bytes ")) {
      last_closed = !h.send_bytes(unhex(line.substr(6))).has_value();
    } else if (line == "closed") {
      EXPECT_TRUE(last_closed) << "the session did not ask to close the connection";
    } else if (line == "silent") {
      EXPECT_TRUE(h.out.empty()) << "unexpected reply: " << (h.out.empty() ? "" : to_string(h.out.front()));
    } else if (line[0] == 'T') {
      auto f = parse(line);
      ASSERT_TRUE(f.has_value()) << f.error();
      last_closed = !h.send_bytes(encode(*f, h.d)).has_value();  // in the dialect the session chose
    } else if (line[0] == 'R') {
      ASSERT_FALSE(h.out.empty()) << "expected a reply, none came";
      std::string got = to_string(h.next());
      EXPECT_EQ(mismatch(line, got), "") << "got: " << got;
    } else {
      FAIL() << "unknown transcript line";
    }
  }
  EXPECT_TRUE(h.out.empty()) << "unread reply at the end: " << (h.out.empty() ? "" : to_string(h.out.front()));
}

std::vector<std::filesystem::path> transcripts() {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(GALAXY_SOURCE_DIR "/tests/transcripts")) {
    if (e.path().extension() == ".txt") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

INSTANTIATE_TEST_SUITE_P(Files, Transcript, ::testing::ValuesIn(transcripts()),
                         [](const auto& info) { return info.param.stem().string(); });

TEST(TranscriptMatcher, Wildcards) {
  EXPECT_EQ(mismatch("Rwalk tag=2 qid=*", "Rwalk tag=2 qid=(0000000000000001 0 d)"), "");
  EXPECT_NE(mismatch("Rwalk tag=3 qid=*", "Rwalk tag=2 qid=(0000000000000001 0 d)"), "");
  EXPECT_NE(mismatch("Rread tag=2 count=3 data=abc", "Rread tag=2 count=3 data=abd"), "");
  EXPECT_NE(mismatch("Rclunk tag=2", "Rclunk tag=2 extra=1"), "");
}

}  // namespace
}  // namespace srv9p
