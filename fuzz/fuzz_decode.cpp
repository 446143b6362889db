// libFuzzer target for the 9P2000 and 9P2000.L codec (srv9p/fcall.cpp, srv9p/fcall_text.cpp).
//
// The input is tried as one whole message in each dialect, as a directory-read buffer, as
// an Rreaddir buffer, and as a line of the text form. Whatever decodes must survive the trip back: decode() is
// canonical (a message that decodes re-encodes to the very same bytes), and the text form
// round-trips through to_string() and parse(). A mismatch aborts with both sides printed.
// Seed corpus: fuzz/corpus/decode/, written by the FcallCorpus.Write test.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "srv9p/fcall.hpp"

namespace {

[[noreturn]] void fail(std::string_view what, std::string_view detail) {
  std::fprintf(stderr, "fuzz_decode: %.*s\n%.*s\n", int(what.size()), what.data(), int(detail.size()),
               detail.data());
  std::abort();
}

bool same(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

// The text form of f parses back to f, and prints the same again.
void check_text(const srv9p::fcall& f) {
  std::string line = srv9p::to_string(f);
  auto p = srv9p::parse(line);
  if (!p) fail("to_string output does not parse: " + p.error(), line);
  if (*p != f) fail("parse(to_string(f)) != f", line);
  if (srv9p::to_string(*p) != line) fail("to_string(parse(s)) != s", line);
}

// More walk elements than decode() accepts; the text form allows them.
bool too_long_walk(const srv9p::fcall& f) {
  if (auto* w = std::get_if<srv9p::twalk>(&f.msg)) return w->wnames.size() > srv9p::maxwelem;
  if (auto* w = std::get_if<srv9p::rwalk>(&f.msg)) return w->qids.size() > srv9p::maxwelem;
  return false;
}

void fuzz_message(std::span<const std::uint8_t> in, srv9p::dialect d) {
  if (in.size() >= 4) (void)srv9p::peek_size(in);
  auto f = srv9p::decode(in, d);
  if (!f) return;
  std::vector<std::uint8_t> again = srv9p::encode(*f, d);
  if (!same(again, in)) fail("encode(decode(b)) != b", srv9p::to_string(*f));
  auto g = srv9p::decode(again, d);
  if (!g) fail("re-encoded message does not decode: " + g.error(), srv9p::to_string(*f));
  if (*g != *f) fail("decode(encode(f)) != f", srv9p::to_string(*f));
  check_text(*f);
}

void fuzz_dirs(std::span<const std::uint8_t> in) {
  auto dirs = srv9p::decode_dirs(in);
  if (!dirs) return;
  std::vector<std::uint8_t> again;
  for (const auto& d : *dirs) srv9p::encode_dir(d, again);
  if (!same(again, in)) fail("encode_dir(decode_dirs(b)) != b", "");
}

void fuzz_dirents(std::span<const std::uint8_t> in) {
  auto ents = srv9p::decode_dirents(in);
  if (!ents) return;
  std::vector<std::uint8_t> again;
  for (const auto& e : *ents) srv9p::encode_dirent(e, again);
  if (!same(again, in)) fail("encode_dirent(decode_dirents(b)) != b", "");
}

void fuzz_text(std::string_view text) {
  auto f = srv9p::parse(text);
  if (!f) return;
  check_text(*f);
  // Text can say what the wire cannot (17 walk names, a 70000-byte string), so only a
  // message within the wire's limits must come back from its bytes unchanged.
  // .L messages, and Tauth/Tattach with an n_uname, exist on the wire only in 9P2000.L.
  auto d = srv9p::dialect::p9_2000;
  if (srv9p::is_dotl(srv9p::type_of(f->msg))) d = srv9p::dialect::p9_2000_l;
  if (auto* a = std::get_if<srv9p::tauth>(&f->msg); a && a->n_uname != srv9p::nofid) d = srv9p::dialect::p9_2000_l;
  if (auto* a = std::get_if<srv9p::tattach>(&f->msg); a && a->n_uname != srv9p::nofid) d = srv9p::dialect::p9_2000_l;
  auto b = srv9p::encode(*f, d);
  auto g = srv9p::decode(b, d);
  if (!g) {
    if (too_long_walk(*f)) return;
    fail("encoded parse() result does not decode: " + g.error(), std::string(text));
  }
  // Strings over 65535 bytes are cut on the wire; shorter text cannot hold one.
  if (text.size() <= 0xFFFF && *g != *f) fail("decode(encode(parse(s))) != parse(s)", std::string(text));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> in(data, size);
  fuzz_message(in, srv9p::dialect::p9_2000);
  fuzz_message(in, srv9p::dialect::p9_2000_l);
  fuzz_dirs(in);
  fuzz_dirents(in);
  fuzz_text(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
