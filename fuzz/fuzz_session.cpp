// libFuzzer target for the server's message handling: the input is a byte stream as a
// client would send it, cut into messages by their size[4] fields as the connection's
// reader cuts them, and fed to a session over a ramfs after a fixed Tversion and
// Tattach (fid 0, "glenda"), so the fuzzer starts from an attached connection.
//
// Checked on every input: no crash, leak or undefined behaviour (ASan, UBSan); every
// reply the session sends decodes as a 9P2000 R-message whose tag is that of a request
// we sent (or NOTAG); after close() no fid and no request is left and no parked reader
// remains in the tree.
#include <asio/io_context.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <set>

#include "srv9p/fcall.hpp"
#include "srv9p/ramfs.hpp"
#include "srv9p/server.hpp"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_session: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace srv9p;
  asio::io_context io;
  ramfs fs(ramfs_options{.owner = "glenda", .big_bytes = 300, .event_backlog = 8, .max_bytes = 1 << 20});
  std::set<std::uint16_t> sent_tags{notag};
  auto s = std::make_shared<session>(io.get_executor(), fs, server_options{.max_msize = 64 * 1024},
                                     [&](std::vector<std::uint8_t> reply) {
                                       auto f = decode(reply);
                                       check(f.has_value(), "the server sent an undecodable reply");
                                       check(!is_request(type_of(f->msg)), "the server sent a T-message");
                                       check(sent_tags.contains(f->tag), "a reply to a tag never sent");
                                     });
  auto feed = [&](std::span<const std::uint8_t> msg) {
    if (msg.size() >= header_size) sent_tags.insert(static_cast<std::uint16_t>(msg[5] | (msg[6] << 8)));
    auto ok = s->handle(msg);
    io.poll();
    io.restart();
    return ok.has_value();
  };
  feed(encode(fcall{notag, tversion{8192, "9P2000"}}));
  feed(encode(fcall{1, tattach{0, nofid, "glenda", ""}}));

  std::size_t off = 0;
  while (size - off >= 4) {
    std::uint32_t n = peek_size(std::span(data + off, 4));
    // The connection's reader closes on a size outside [7, msize]; so do we.
    if (n < header_size || n > s->msize() || n > size - off) break;
    if (!feed(std::span(data + off, n))) break;
    off += n;
  }
  s->close();
  io.poll();
  check(s->fids() == 0 && s->outstanding() == 0, "close() left fids or requests behind");
  check(fs.parked_readers() == 0, "a parked read outlived its connection");
  return 0;
}
