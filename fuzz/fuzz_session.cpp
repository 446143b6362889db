// libFuzzer target for the server's message handling: the input is a byte stream as a
// client would send it, cut into messages by their size[4] fields as the connection's
// reader cuts them, and fed to a session over a ramfs after a fixed Tversion, Tauth
// (afid 100), credential write and Tattach (fid 0, "glenda"), so the fuzzer starts from
// an attached connection on an authenticating listener.
//
// The session authenticates with a test authenticator (no munged): a credential is a
// line, and only the line "galaxy-fuzz-credential" is good. Verifications are held and
// answered after every message with an even tag, so Tattach, Twrite, Tclunk and Tflush
// also meet afids whose verification is still in flight.
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
#include <unistd.h>

#include "srv9p/auth.hpp"
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

constexpr std::string_view good_credential = "galaxy-fuzz-credential\n";
// The endpoint the fuzzed session plays the server of, and its credentials are bound to.
constexpr std::string_view fuzz_binding = "galaxy-9p tcp!127.0.0.1!5641";

class fuzz_authenticator : public srv9p::authenticator {
 public:
  bool complete(std::string_view c) const override { return c.ends_with('\n'); }
  void verify(std::string c, std::shared_ptr<const std::atomic<bool>>, std::function<void(verified)> done) override {
    held_.emplace_back(std::move(c), std::move(done));
  }
  std::size_t max_bytes() const override { return 64; }
  // Answers every held verification: the fuzzer's own uid (trusted, so it may attach as
  // anyone), bound to the session's endpoint and the last challenge an afid's Tread
  // returned (srv9p/auth.hpp), for the good credential, a refusal for any other.
  void answer_all() {
    auto held = std::move(held_);
    held_.clear();
    for (auto& [c, done] : held) {
      if (c == good_credential) {
        done(srv9p::credential_owner{::getuid(), ::getgid(), srv9p::credential_payload(fuzz_binding, last_challenge)});
      } else {
        done(std::unexpected(std::string("credential invalid (not from this cluster's key?)")));
      }
    }
  }
  std::string last_challenge;  // from the last Rread that held one

 private:
  std::vector<std::pair<std::string, std::function<void(verified)>>> held_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace srv9p;
  asio::io_context io;
  ramfs fs(ramfs_options{.owner = "glenda", .big_bytes = 300, .event_backlog = 8, .max_bytes = 1 << 20});
  std::set<std::uint16_t> sent_tags{notag};
  auto auth = std::make_shared<fuzz_authenticator>();
  server_options opts{.max_msize = 64 * 1024, .auth = auth, .max_fids = 64, .max_outstanding = 32};
  auto s = std::make_shared<session>(io.get_executor(), fs, opts,
                                     [&](wire_message reply) {
                                       auto f = decode(reply.joined(), dialect::p9_2000_l);  // (a superset)
                                       check(f.has_value(), "the server sent an undecodable reply");
                                       check(!is_request(type_of(f->msg)), "the server sent a T-message");
                                       check(sent_tags.contains(f->tag), "a reply to a tag never sent");
                                       if (auto* r = std::get_if<rread>(&f->msg)) {
                                         if (auto c = parse_challenge(r->data)) auth->last_challenge = *c;
                                       }
                                     },
                                     peer_info{.binding = std::string(fuzz_binding)});
  auto feed = [&](std::span<const std::uint8_t> msg) {
    if (msg.size() >= header_size) sent_tags.insert(static_cast<std::uint16_t>(msg[5] | (msg[6] << 8)));
    auto ok = s->handle(msg);
    io.poll();
    io.restart();
    if (msg.size() >= header_size && (msg[5] & 1) == 0) {
      auth->answer_all();
      io.poll();
      io.restart();
    }
    return ok.has_value();
  };
  // The first byte chooses the dialect: odd is 9P2000.L, even 9P2000.
  if (size == 0) return 0;
  dialect d = (data[0] & 1) ? dialect::p9_2000_l : dialect::p9_2000;
  feed(encode(fcall{notag, tversion{8192, d == dialect::p9_2000_l ? "9P2000.L" : "9P2000"}}));
  feed(encode(fcall{2, tauth{100, "glenda", ""}}, d));
  feed(encode(fcall{2, tread{100, 0, 64}}, d));
  feed(encode(fcall{2, twrite{100, 0, std::string(good_credential)}}));
  feed(encode(fcall{2, tattach{0, 100, "glenda", ""}}, d));
  check(s->attached(), "the fixed attach failed");

  std::size_t off = 1;
  while (size - off >= 4) {
    std::uint32_t n = peek_size(std::span(data + off, 4));
    // The connection's reader closes on a size outside [7, msize]; so do we.
    if (n < header_size || n > s->msize() || n > size - off) break;
    if (!feed(std::span(data + off, n))) break;
    off += n;
  }
  s->close();
  auth->answer_all();  // verifications that end after the hang-up are dropped
  io.poll();
  check(s->fids() == 0 && s->outstanding() == 0, "close() left fids or requests behind");
  check(fs.parked_readers() == 0, "a parked read outlived its connection");
  return 0;
}
