// Authentication in srv9p: the afid protocol (attach(5)) and the attach rule, driven
// message by message against a session with a test authenticator; then the real thing:
// munged processes started here with their own keys, the server on real sockets, the
// fsclient client, and the galaxy-ramfs daemon and galaxy tool run as real local users
// (made with useradd; CI runs as root).
//
// Each refusal is checked for its exact text, because that text is what a user reads.
#include <gtest/gtest.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <fmt/format.h>
#include <fstream>
#include <future>
#include <thread>

#include "fsclient/client.hpp"
#include "srv9p/auth.hpp"
#include "srv9p/errors.hpp"
#include "srv9p/munge.hpp"
#include "srv9p/ramfs.hpp"
#include "srv9p/server.hpp"
#include "tests/srv9p/harness.hpp"
#include "tests/testmunge.hpp"
#include "tests/testutil.hpp"

namespace srv9p {
namespace {

using namespace std::chrono_literals;
using testing::harness;
using testmunge::credential;
using testmunge::munged;
using testmunge::test_user;

std::string error_of(const fcall& f) {
  if (auto* e = std::get_if<rerror>(&f.msg)) return e->ename;
  return "<not an Rerror: " + to_string(f) + ">";
}

// ==== The afid protocol, with a test authenticator ==========================================

// The server endpoint the in-process sessions below play, as a credential's binding.
const std::string test_binding = "galaxy-9p tcp!127.0.0.1!5641";

// Credentials are lines "uid N\n"; verification waits until the test answers it, so
// the test sees what happens while it is in flight.
class held_authenticator : public authenticator {
 public:
  bool complete(std::string_view c) const override { return c.ends_with('\n'); }
  void verify(std::string c, std::shared_ptr<const std::atomic<bool>> cancelled,
              std::function<void(verified)> done) override {
    held.emplace_back(std::move(c), std::move(done));
    cancels.push_back(std::move(cancelled));
  }
  std::size_t max_bytes() const override { return 64; }
  // Answers the oldest held credential: its uid if it reads "uid N", with payload `bind`
  // (by default the right one: test_binding and the oldest challenge the test read,
  // auth_harness::challenge), else refused.
  void answer(std::string_view refusal = "", std::optional<std::string> bind = std::nullopt) {
    auto [c, done] = std::move(held.front());
    held.erase(held.begin());
    cancels.erase(cancels.begin());
    std::string challenge;
    if (!challenges.empty()) {
      challenge = std::move(challenges.front());
      challenges.erase(challenges.begin());
    }
    if (!refusal.empty()) return done(std::unexpected(std::string(refusal)));
    if (!bind) bind = challenge.empty() ? test_binding : credential_payload(test_binding, challenge);
    done(credential_owner{static_cast<uid_t>(std::stoul(c.substr(4))), 0, std::move(*bind)});
  }
  std::vector<std::string> challenges;  // read by the test, oldest first
  std::vector<std::pair<std::string, std::function<void(verified)>>> held;
  std::vector<std::shared_ptr<const std::atomic<bool>>> cancels;  // each held one's flag
};

struct auth_harness : harness {
  std::shared_ptr<held_authenticator> auth;
  explicit auth_harness(std::shared_ptr<held_authenticator> a, server_options o = {})
      : harness(
            [&] {
              o.auth = a;
              return o;
            }(),
            peer_info{.binding = test_binding}),
        auth(std::move(a)) {
    send(notag, tversion{8192, "9P2000"});
    next();
  }
  // Reads afid's challenge (srv9p/auth.hpp) and queues it for the authenticator's next
  // default answer; returns it ("" and a failure if the read did not give one).
  std::string challenge(std::uint32_t afid) {
    send(60, tread{afid, 0, 64});
    auto r = next();
    auto* rd = std::get_if<rread>(&r.msg);
    EXPECT_TRUE(rd != nullptr) << to_string(r);
    if (rd == nullptr) return "";
    auto c = parse_challenge(rd->data);
    EXPECT_TRUE(c.has_value()) << rd->data;
    auth->challenges.push_back(c.value_or(""));
    return c.value_or("");
  }
};

// The uname a fid was attached with, as the tree records it: the owner of a file it makes.
std::string owner_seen(harness& h, std::uint32_t root, const std::string& name) {
  h.send(50, twalk{root, 99, {}});
  h.next();
  h.send(51, tcreate{99, name, 0644, owrite});
  auto c = h.next();
  if (!std::holds_alternative<rcreate>(c.msg)) return "<create failed: " + to_string(c) + ">";
  h.send(52, tstat{99});
  auto st = h.next();
  h.send(53, tclunk{99});
  h.next();
  if (auto* s = std::get_if<rstat>(&st.msg)) return s->stat.uid;
  return "<stat failed>";
}

TEST(Auth, TauthWithoutAuthenticatorIsNotRequired) {
  harness h;
  h.send(notag, tversion{8192, "9P2000"});
  h.next();
  h.send(1, tauth{5, "glenda", ""});
  EXPECT_EQ(error_of(h.next()), err::no_auth);
  h.send(2, tattach{0, nofid, "glenda", ""});
  EXPECT_TRUE(std::holds_alternative<rattach>(h.next().msg));
}

TEST(Auth, AttachWithoutAfidOnMungeListenerIsRefused) {
  auth_harness h(std::make_shared<held_authenticator>());
  h.send(1, tattach{0, nofid, "glenda", ""});
  EXPECT_EQ(error_of(h.next()), "authentication required");
  EXPECT_EQ(h.s->fids(), 0u);
  EXPECT_FALSE(h.s->attached());
}

TEST(Auth, PipelinedAuthWriteAttachWaitsForVerification) {
  auto a = std::make_shared<held_authenticator>();
  auth_harness h(a);
  h.send(1, tauth{5, "nobody", ""});
  auto r = h.next();
  ASSERT_TRUE(std::holds_alternative<rauth>(r.msg)) << to_string(r);
  EXPECT_EQ(std::get<rauth>(r.msg).aqid.type, qtauth);
  // Reading an afid gives its challenge (and a read past its end, nothing); walking from
  // it is refused.
  auto c = h.challenge(5);
  EXPECT_EQ(c.size(), 32u);
  h.send(2, tread{5, 0, 100});
  EXPECT_EQ(std::get<rread>(h.next().msg).data, "challenge " + c + "\n");
  h.send(2, tread{5, 10, 4});
  EXPECT_EQ(std::get<rread>(h.next().msg).data, c.substr(0, 4));
  h.send(2, tread{5, 43, 100});
  EXPECT_EQ(std::get<rread>(h.next().msg).data, "");
  h.send(3, twalk{5, 6, {}});
  EXPECT_EQ(error_of(h.next()), err::auth_fid);
  // The credential in two writes; the second completes it and waits, and so does the attach.
  h.send(4, twrite{5, 0, "uid 65"});
  EXPECT_EQ(std::get<rwrite>(h.next().msg).count, 6u);
  h.send(5, twrite{5, 6, "534\n"});
  h.send(6, tattach{0, 5, "nobody", ""});
  h.send(7, twalk{0, 1, {"big"}});  // from the root the attach is still making
  h.send(8, topen{1, oread});        // the fid that walk will make
  h.send(9, tread{1, 0, 10});
  EXPECT_TRUE(h.out.empty()) << to_string(h.out.front());
  ASSERT_EQ(a->held.size(), 1u);
  a->answer();
  h.run();
  auto w = h.next();
  EXPECT_EQ(w.tag, 5);
  EXPECT_EQ(std::get<rwrite>(w.msg).count, 4u);
  auto at = h.next();
  EXPECT_EQ(at.tag, 6);
  ASSERT_TRUE(std::holds_alternative<rattach>(at.msg)) << to_string(at);
  auto wk = h.next();
  EXPECT_EQ(wk.tag, 7);
  EXPECT_TRUE(std::holds_alternative<rwalk>(wk.msg)) << to_string(wk);
  auto op = h.next();
  EXPECT_EQ(op.tag, 8);
  EXPECT_TRUE(std::holds_alternative<ropen>(op.msg)) << to_string(op);
  auto rd = h.next();
  EXPECT_EQ(rd.tag, 9);
  ASSERT_TRUE(std::holds_alternative<rread>(rd.msg)) << to_string(rd);
  EXPECT_EQ(std::get<rread>(rd.msg).data.size(), 10u);
  EXPECT_TRUE(h.s->attached());
  EXPECT_EQ(owner_seen(h, 0, "f"), "nobody");
}

TEST(Auth, RefusedCredentialIsTheWritesAndTheAttachsError) {
  auto a = std::make_shared<held_authenticator>();
  auth_harness h(a);
  h.send(1, tauth{5, "nobody", ""});
  h.next();
  h.challenge(5);
  h.send(2, twrite{5, 0, "uid 1\n"});
  a->answer(err::cred_expired);
  h.run();
  EXPECT_EQ(error_of(h.next()), "credential expired");
  h.send(3, tattach{0, 5, "nobody", ""});
  EXPECT_EQ(error_of(h.next()), "credential expired");
  EXPECT_EQ(h.s->fids(), 1u);  // the afid only
}

TEST(Auth, VerifiedUidMustBeTheNamesUid) {
  auto a = std::make_shared<held_authenticator>();
  auth_harness h(a);
  h.send(1, tauth{5, "root", ""});
  h.next();
  h.challenge(5);
  h.send(2, twrite{5, 0, "uid 65534\n"});
  a->answer();
  h.run();
  h.next();
  h.send(3, tattach{0, 5, "root", ""});
  EXPECT_EQ(error_of(h.next()), "uid 65534 (nobody) may not attach as root");
  // An attach name other than the afid's is refused before the rule is even asked.
  h.send(4, tattach{0, 5, "nobody", ""});
  EXPECT_EQ(error_of(h.next()), err::afid_other_name);
}

// galaxy mount --kernel: after an attach with a verified credential, the connection is
// handed to the kernel, which sends its own Tversion and a Tattach without afid. That
// attach gets the proven identity, for the proven name only; a connection that proved
// nothing still needs a credential.
TEST(Auth, ConnectionKeepsItsProvenNameAcrossTversion) {
  auto a = std::make_shared<held_authenticator>();
  auth_harness h(a);
  h.send(1, tattach{0, nofid, "nobody", ""});
  EXPECT_EQ(error_of(h.next()), err::auth_required) << "nothing proven yet";
  h.send(2, tauth{5, "nobody", ""});
  h.next();
  h.challenge(5);
  h.send(3, twrite{5, 0, "uid 65534\n"});
  a->answer();
  h.run();
  h.next();
  h.send(4, tattach{0, 5, "nobody", ""});
  ASSERT_TRUE(std::holds_alternative<rattach>(h.next().msg));
  h.send(5, tclunk{5});
  h.next();
  h.send(notag, tversion{8192, "9P2000"});
  ASSERT_TRUE(std::holds_alternative<rversion>(h.next().msg));
  EXPECT_EQ(h.s->fids(), 0u);
  h.send(6, tattach{1, nofid, "root", ""});
  EXPECT_EQ(error_of(h.next()), err::auth_required) << "another name than the proven one";
  h.send(7, tattach{1, nofid, "nobody", ""});
  ASSERT_TRUE(std::holds_alternative<rattach>(h.next().msg));
  EXPECT_EQ(owner_seen(h, 1, "f"), "nobody");
}

TEST(Auth, DotlNunameCannotChangeWhoIsProven) {
  // 9P2000.L's n_uname names the user by number; it must prove no more than a name does.
  auto a = std::make_shared<held_authenticator>();
  auth_harness h(a);
  h.send(notag, tversion{8192, "9P2000.L"});
  h.next();
  // Tauth for root by number; a credential of nobody's verifies, and cannot attach as root
  // whichever way the Tattach names it.
  h.send(1, tauth{5, "nobody", "", 0});
  ASSERT_TRUE(std::holds_alternative<rauth>(h.next().msg));
  h.challenge(5);
  h.send(2, twrite{5, 0, "uid 65534\n"});
  a->answer();
  h.run();
  ASSERT_TRUE(std::holds_alternative<rwrite>(h.next().msg));
  h.send(3, tattach{0, 5, "nobody", "", nofid});
  EXPECT_TRUE(std::holds_alternative<rlerror>(h.next().msg)) << "the afid is root's, not nobody's";
  h.send(4, tattach{0, 5, "", "", 0});
  EXPECT_TRUE(std::holds_alternative<rlerror>(h.next().msg)) << "nobody's credential attached as root";
  EXPECT_EQ(h.s->fids(), 1u);
  // Nobody's own afid, proven; then, after a Tversion, root by number is still refused.
  h.send(5, tauth{6, "", "", 65534});
  h.next();
  h.challenge(6);
  h.send(6, twrite{6, 0, "uid 65534\n"});
  a->answer();
  h.run();
  h.next();
  h.send(7, tattach{0, 6, "nobody", "", nofid});
  ASSERT_TRUE(std::holds_alternative<rattach>(h.next().msg));
  h.send(notag, tversion{8192, "9P2000.L"});
  h.next();
  h.send(8, tattach{1, nofid, "nobody", "", 0});
  EXPECT_TRUE(std::holds_alternative<rlerror>(h.next().msg)) << "proven nobody became root by n_uname";
  h.send(9, tattach{1, nofid, "root", "", 65534});
  ASSERT_TRUE(std::holds_alternative<rattach>(h.next().msg)) << "n_uname is the name";
}

TEST(Auth, DotlNunameUnderPeerCred) {
  harness h(server_options{}, peer_info{65534});
  h.send(notag, tversion{8192, "9P2000.L"});
  h.next();
  h.send(1, tattach{0, nofid, "nobody", "", 0});
  EXPECT_TRUE(std::holds_alternative<rlerror>(h.next().msg)) << "peer nobody attached as uid 0";
  h.send(2, tattach{0, nofid, "root", "", 65534});
  ASSERT_TRUE(std::holds_alternative<rattach>(h.next().msg));
}

TEST(Auth, TrustedUidMaySpeakForOthers) {
  auto a = std::make_shared<held_authenticator>();
  auth_harness h(a, server_options{.trusted = {65534}});
  h.send(1, tauth{5, "glenda", ""});
  h.next();
  h.challenge(5);
  h.send(2, twrite{5, 0, "uid 65534\n"});
  a->answer();
  h.run();
  h.next();
  h.send(3, tattach{0, 5, "glenda", ""});
  ASSERT_TRUE(std::holds_alternative<rattach>(h.next().msg));
  EXPECT_EQ(owner_seen(h, 0, "g"), "glenda");
}

TEST(Auth, FlushOfCompletingWriteAndOfWaitingAttach) {
  auto a = std::make_shared<held_authenticator>();
  auth_harness h(a);
  h.send(1, tauth{5, "nobody", ""});
  h.next();
  h.challenge(5);
  h.send(2, twrite{5, 0, "uid 65534\n"});
  h.send(3, tattach{0, 5, "nobody", ""});
  h.send(30, twalk{0, 1, {}});  // waits for the attach's fid
  h.send(4, tflush{3});  // the attach that waits: it never starts
  EXPECT_TRUE(std::holds_alternative<rflush>(h.next().msg));
  EXPECT_EQ(error_of(h.next()), err::unknown_fid);  // the walk from the fid never made
  h.send(5, tflush{2});  // the write being verified: its answer is suppressed
  EXPECT_TRUE(std::holds_alternative<rflush>(h.next().msg));
  a->answer();
  h.run();
  EXPECT_TRUE(h.out.empty()) << to_string(h.out.front());
  // The verification itself stands.
  h.send(6, tattach{0, 5, "nobody", ""});
  EXPECT_TRUE(std::holds_alternative<rattach>(h.next().msg));
}

TEST(Auth, HangUpOrVersionWhileVerifying) {
  auto a = std::make_shared<held_authenticator>();
  auth_harness h(a);
  h.send(1, tauth{5, "nobody", ""});
  h.next();
  h.challenge(5);
  h.send(2, twrite{5, 0, "uid 65534\n"});
  h.send(3, tattach{0, 5, "nobody", ""});
  // Tversion: every request aborted and every fid clunked; the late answer changes nothing.
  h.send(notag, tversion{8192, "9P2000"});
  EXPECT_TRUE(std::holds_alternative<rversion>(h.next().msg));
  a->answer();
  h.run();
  EXPECT_TRUE(h.out.empty()) << to_string(h.out.front());
  EXPECT_EQ(h.s->fids(), 0u);
  h.send(4, tattach{0, 5, "nobody", ""});
  EXPECT_EQ(error_of(h.next()), err::unknown_fid);
  // A hang-up while verifying: nothing is sent after it.
  h.send(5, tauth{6, "nobody", ""});
  h.next();
  h.challenge(6);
  h.send(6, twrite{6, 0, "uid 65534\n"});
  h.s->close();
  a->answer();
  h.run();
  EXPECT_TRUE(h.out.empty());
  EXPECT_EQ(h.s->fids(), 0u);
  EXPECT_EQ(h.s->outstanding(), 0u);
}

TEST(Auth, OversizedCredentialIsRefusedAndChangesNothing) {
  auto a = std::make_shared<held_authenticator>();
  auth_harness h(a);
  h.send(1, tauth{5, "nobody", ""});
  h.next();
  h.challenge(5);
  h.send(2, twrite{5, 0, std::string(65, 'x')});
  EXPECT_EQ(error_of(h.next()), "credential too long: 65 bytes; a MUNGE credential is at most 64 bytes");
  h.send(3, twrite{5, 0, "uid 65534\n"});
  ASSERT_EQ(a->held.size(), 1u);
  EXPECT_EQ(a->held[0].first, "uid 65534\n");
  a->answer();
  h.run();
  EXPECT_TRUE(std::holds_alternative<rwrite>(h.next().msg));
  h.send(4, twrite{5, 0, "more"});
  EXPECT_EQ(error_of(h.next()), err::cred_given);
}

TEST(Auth, CredentialBoundElsewhereOrUnboundIsRefused) {
  // Channel binding: a credential verified by the authenticator is still refused unless
  // its payload names this connection's server end, and nothing is attached.
  auth_harness h(std::make_shared<held_authenticator>());
  h.send(1, tauth{5, "nobody", ""});
  h.next();
  h.challenge(5);
  h.send(2, twrite{5, 0, "uid 65534\n"});
  h.auth->answer("", "galaxy-9p tcp!127.0.0.1!9999");
  h.run();
  const std::string elsewhere = "credential was made for tcp!127.0.0.1!9999, not this server (tcp!127.0.0.1!5641)";
  EXPECT_EQ(error_of(h.next()), elsewhere);
  h.send(3, tattach{0, 5, "nobody", ""});
  EXPECT_EQ(error_of(h.next()), elsewhere);
  h.send(4, tauth{6, "nobody", ""});
  h.next();
  h.challenge(6);
  h.send(5, twrite{6, 0, "uid 65534\n"});
  h.auth->answer("", "");
  h.run();
  EXPECT_EQ(error_of(h.next()), "credential not bound to a server address");
  h.send(6, tattach{0, 6, "nobody", ""});
  EXPECT_EQ(error_of(h.next()), "credential not bound to a server address");
  EXPECT_FALSE(h.s->attached());
  // The right binding attaches.
  h.send(7, tauth{7, "nobody", ""});
  h.next();
  h.challenge(7);
  h.send(8, twrite{7, 0, "uid 65534\n"});
  h.auth->answer();
  h.run();
  h.next();
  h.send(9, tattach{0, 7, "nobody", ""});
  EXPECT_TRUE(std::holds_alternative<rattach>(h.next().msg));
}

TEST(Auth, CredentialMustCarryItsAfidsChallenge) {
  // A credential bound to the right server is still refused unless its payload ends with
  // the challenge of the afid it is written to (srv9p/auth.hpp).
  auth_harness h(std::make_shared<held_authenticator>());
  h.send(1, tauth{5, "nobody", ""});
  h.next();
  h.send(2, tauth{6, "nobody", ""});
  h.next();
  auto c5 = h.challenge(5), c6 = h.challenge(6);
  EXPECT_NE(c5, c6);  // each afid its own
  h.auth->challenges.clear();
  // Afid 5's challenge, written to afid 6.
  h.send(3, twrite{6, 0, "uid 65534\n"});
  h.auth->answer("", credential_payload(test_binding, c5));
  h.run();
  EXPECT_EQ(error_of(h.next()), err::cred_other_challenge);
  h.send(4, tattach{0, 6, "nobody", ""});
  EXPECT_EQ(error_of(h.next()), err::cred_other_challenge);
  // No challenge at all (a client that did not read the afid): the binding alone.
  h.send(5, twrite{5, 0, "uid 65534\n"});
  h.auth->answer("", test_binding);
  h.run();
  EXPECT_EQ(error_of(h.next()), "credential has no challenge: read the afid's challenge first and put it in the credential");
  h.send(6, tattach{0, 5, "nobody", ""});
  EXPECT_EQ(error_of(h.next()), err::cred_no_challenge);
  // One the client made up, of the right shape.
  h.send(7, tauth{7, "nobody", ""});
  h.next();
  h.send(8, twrite{7, 0, "uid 65534\n"});
  h.auth->answer("", credential_payload(test_binding, std::string(32, '0')));
  h.run();
  EXPECT_EQ(error_of(h.next()), err::cred_other_challenge);
  EXPECT_FALSE(h.s->attached());
  // Its own challenge attaches.
  h.send(9, tauth{8, "nobody", ""});
  h.next();
  h.challenge(8);
  h.send(10, twrite{8, 0, "uid 65534\n"});
  h.auth->answer();
  h.run();
  EXPECT_TRUE(std::holds_alternative<rwrite>(h.next().msg));
  h.send(11, tattach{0, 8, "nobody", ""});
  EXPECT_TRUE(std::holds_alternative<rattach>(h.next().msg));
}

TEST(Auth, ChallengeTextAndPayload) {
  auto c = make_challenge();
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->size(), 32u);
  EXPECT_NE(*c, make_challenge().value_or(""));
  EXPECT_EQ(challenge_text(*c), "challenge " + *c + "\n");
  EXPECT_EQ(parse_challenge(challenge_text(*c)).value_or(""), *c);
  EXPECT_EQ(parse_challenge("").error(), "server gave no challenge (read of the afid was empty)");
  EXPECT_EQ(parse_challenge("challenge XYZ\n").error(), "bad challenge from server: 'challenge XYZ?'");
  // A Unix path with a space: the challenge is the last word.
  EXPECT_EQ(credential_refusal(credential_payload("galaxy-9p unix!/a b", *c), "galaxy-9p unix!/a b", *c),
            std::nullopt);
  EXPECT_EQ(credential_refusal("galaxy-9p unix!/a b", "galaxy-9p unix!/a b", *c), std::string(err::cred_no_challenge));
}

TEST(Auth, OneCredentialPerConnectionIsVerifiedAtATime) {
  auth_harness h(std::make_shared<held_authenticator>());
  for (std::uint32_t f = 1; f <= 3; ++f) {
    h.send(static_cast<std::uint16_t>(f), tauth{f, "nobody", ""});
    h.next();
    h.challenge(f);
  }
  for (std::uint32_t f = 1; f <= 3; ++f) h.send(static_cast<std::uint16_t>(10 + f), twrite{f, 0, "uid 65534\n"});
  ASSERT_EQ(h.auth->held.size(), 1u);  // the others wait in the session, not in the authenticator
  h.auth->answer();
  h.run();
  auto r = h.next();
  EXPECT_EQ(r.tag, 11);
  EXPECT_TRUE(std::holds_alternative<rwrite>(r.msg)) << to_string(r);
  ASSERT_EQ(h.auth->held.size(), 1u);
  h.auth->answer("credential invalid (not from this cluster's key?)");
  h.run();
  EXPECT_EQ(error_of(h.next()), "credential invalid (not from this cluster's key?)");
  ASSERT_EQ(h.auth->held.size(), 1u);
  h.auth->answer();
  h.run();
  EXPECT_EQ(h.next().tag, 13);
  EXPECT_TRUE(h.auth->held.empty());
}

TEST(Auth, HangUpCancelsTheCredentialBeingVerified) {
  auth_harness h(std::make_shared<held_authenticator>());
  h.send(1, tauth{1, "nobody", ""});
  h.next();
  h.challenge(1);
  h.send(2, twrite{1, 0, "uid 65534\n"});
  ASSERT_EQ(h.auth->cancels.size(), 1u);
  EXPECT_FALSE(h.auth->cancels[0]->load());
  h.s->close();
  EXPECT_TRUE(h.auth->cancels[0]->load());
  h.auth->answer();
  h.run();
  EXPECT_TRUE(h.out.empty());
}

TEST(Auth, BadAttachNamesAreRefusedWhereTheIdentityIsMade) {
  // root's peer may attach as anyone, so only the name's shape can refuse these.
  harness h(server_options{}, peer_info{0});
  h.send(notag, tversion{8192, "9P2000"});
  h.next();
  std::pair<std::string, std::string> bad[] = {
      {std::string("nobody\0root", 11), "bad attach name: contains NUL"},
      {"a/b", "bad attach name: contains '/'"},
      {"nobody\n", "bad attach name: contains control character 0x0a"},
      {std::string(65, 'a'), "bad attach name: 65 bytes; at most 64"},
  };
  std::uint16_t tag = 1;
  for (const auto& [name, want] : bad) {
    h.send(tag++, tattach{0, nofid, name, ""});
    EXPECT_EQ(error_of(h.next()), want);
  }
  EXPECT_EQ(h.s->fids(), 0u);
  EXPECT_FALSE(h.s->attached());
  // The same on an --auth none listener, which believes any good name.
  harness open_h;
  open_h.send(notag, tversion{8192, "9P2000"});
  open_h.next();
  open_h.send(1, tattach{0, nofid, std::string("bob\0alice", 9), ""});
  EXPECT_EQ(error_of(open_h.next()), "bad attach name: contains NUL");
  h.send(tag++, tattach{0, nofid, "nobody", ""});
  EXPECT_TRUE(std::holds_alternative<rattach>(h.next().msg));
}

TEST(Auth, PeerCredIsTheRuleForUnixSockets) {
  harness h(server_options{}, peer_info{65534});
  h.send(notag, tversion{8192, "9P2000"});
  h.next();
  h.send(1, tauth{5, "nobody", ""});
  EXPECT_EQ(error_of(h.next()), err::no_auth);
  h.send(2, tattach{0, nofid, "root", ""});
  EXPECT_EQ(error_of(h.next()), "uid 65534 (nobody) may not attach as root");
  h.send(3, tattach{0, nofid, "", ""});  // empty: the peer's own name
  ASSERT_TRUE(std::holds_alternative<rattach>(h.next().msg));
  EXPECT_EQ(owner_seen(h, 0, "f"), "nobody");
}

// ==== Limits per connection ===============================================================

TEST(AuthLimits, FidsAndAfidsAreBounded) {
  harness h(server_options{.max_fids = 4});
  h.start();
  for (std::uint32_t f = 1; f < 4; ++f) {
    h.send(static_cast<std::uint16_t>(f + 1), twalk{0, f, {}});
    ASSERT_TRUE(std::holds_alternative<rwalk>(h.next().msg));
  }
  h.send(9, twalk{0, 4, {}});
  EXPECT_EQ(error_of(h.next()), "too many fids on this connection: limit 4");
  h.send(10, tattach{4, nofid, "glenda", ""});
  EXPECT_EQ(error_of(h.next()), "too many fids on this connection: limit 4");
  EXPECT_EQ(h.s->fids(), 4u);
  // Letting one go makes room again.
  h.send(11, tclunk{3});
  h.next();
  h.send(12, twalk{0, 4, {}});
  EXPECT_TRUE(std::holds_alternative<rwalk>(h.next().msg));
}

TEST(AuthLimits, TauthFloodIsBounded) {
  // Before its first attach a connection holds at most max_afids_unattached afids
  // (default 4), whatever max_fids allows; clunking one makes room.
  auth_harness h(std::make_shared<held_authenticator>(), server_options{.max_fids = 8});
  for (std::uint32_t f = 0; f < 4; ++f) {
    h.send(static_cast<std::uint16_t>(f + 1), tauth{f, "nobody", ""});
    ASSERT_TRUE(std::holds_alternative<rauth>(h.next().msg));
  }
  h.send(20, tauth{4, "nobody", ""});
  EXPECT_EQ(error_of(h.next()), "too many authentication fids on this connection: limit 4");
  EXPECT_EQ(h.s->fids(), 4u);
  h.send(21, tclunk{0});
  h.next();
  h.send(22, tauth{4, "nobody", ""});
  EXPECT_TRUE(std::holds_alternative<rauth>(h.next().msg));
  // Once attached, the limit is max_afids, and max_fids still holds above it.
  h.challenge(1);
  h.send(23, twrite{1, 0, "uid 65534\n"});
  h.auth->answer();
  h.run();
  EXPECT_TRUE(std::holds_alternative<rwrite>(h.next().msg));
  h.send(24, tattach{10, 1, "nobody", ""});
  ASSERT_TRUE(std::holds_alternative<rattach>(h.next().msg));
  h.send(25, tauth{11, "nobody", ""});
  EXPECT_TRUE(std::holds_alternative<rauth>(h.next().msg));
  h.send(26, tauth{12, "nobody", ""});
  EXPECT_TRUE(std::holds_alternative<rauth>(h.next().msg));
  h.send(27, tauth{13, "nobody", ""});
  EXPECT_TRUE(std::holds_alternative<rauth>(h.next().msg));  // 8 fids: 7 afids and a root
  h.send(28, tauth{14, "nobody", ""});
  EXPECT_EQ(error_of(h.next()), "too many fids on this connection: limit 8");
}

TEST(AuthLimits, UnfinishedCredentialBytesAreBounded) {
  auth_harness h(std::make_shared<held_authenticator>(), server_options{.max_pending_credential_bytes = 100});
  for (std::uint32_t f = 1; f <= 3; ++f) {
    h.send(static_cast<std::uint16_t>(f), tauth{f, "nobody", ""});
    h.next();
  }
  h.send(10, twrite{1, 0, std::string(60, 'x')});  // no newline: unfinished
  EXPECT_TRUE(std::holds_alternative<rwrite>(h.next().msg));
  h.send(11, twrite{2, 0, std::string(60, 'x')});
  EXPECT_EQ(error_of(h.next()), "too many credential bytes pending on this connection: limit 100");
  h.send(12, twrite{2, 0, std::string(40, 'x')});
  EXPECT_TRUE(std::holds_alternative<rwrite>(h.next().msg));
  // A clunked afid's bytes are given back.
  h.send(13, tclunk{1});
  h.next();
  h.send(14, twrite{3, 0, std::string(60, 'x')});
  EXPECT_TRUE(std::holds_alternative<rwrite>(h.next().msg));
  // The refused write changed nothing: afid 2 holds 40 bytes, and 24 more complete it.
  h.send(15, twrite{2, 0, std::string(25, 'x')});
  EXPECT_EQ(error_of(h.next()), "credential too long: 65 bytes; a MUNGE credential is at most 64 bytes");
}

TEST(AuthLimits, OutstandingRequestsAreBounded) {
  harness h(server_options{.max_outstanding = 3});
  h.start();
  h.send(2, twalk{0, 1, {"events"}});
  h.next();
  h.send(3, topen{1, oread});
  h.next();
  for (std::uint16_t t = 10; t < 13; ++t) h.send(t, tread{1, 0, 100});  // each blocks
  EXPECT_TRUE(h.out.empty());
  h.send(13, tread{1, 0, 100});
  EXPECT_EQ(error_of(h.next()), "too many outstanding requests on this connection: limit 3");
  h.send(14, tflush{10});  // a flush is always answered
  EXPECT_TRUE(std::holds_alternative<rflush>(h.next().msg));
  h.send(15, tstat{0});
  EXPECT_TRUE(std::holds_alternative<rstat>(h.next().msg));
}

// ==== Real munged ==========================================================================

// The ramfs served over real sockets, MUNGE on TCP, on an io thread of its own.
struct served {
  asio::io_context io;
  ramfs fs{ramfs_options{.owner = "root"}};
  std::unique_ptr<server> srv;
  std::string tcp;
  std::thread thread;
  std::vector<std::string> logged;
  std::mutex log_mu;

  explicit served(server_options o) {
    o.log = [this](std::string_view l) {
      std::lock_guard lk(log_mu);
      logged.emplace_back(l);
    };
    srv = std::make_unique<server>(io, fs, std::move(o));
    tcp = srv->listen("tcp!127.0.0.1!0").value_or("");
    thread = std::thread([this] {
      auto guard = asio::make_work_guard(io);
      io.run();
    });
  }
  ~served() {
    asio::post(io, [this] {
      srv->stop();
      io.stop();
    });
    thread.join();
  }
};

server_options munge_opts(const std::string& socket) {
  server_options o;
  o.auth = std::make_shared<munge_authenticator>(socket);
  return o;
}

// Makes a credential with the payload it is given.
using cred_maker = std::function<std::string(const std::string& payload)>;

// A cred_maker: `munge` at socket, run as uid/gid when given (testmunge::credential).
cred_maker munge_as(const std::string& socket, std::optional<std::pair<uid_t, gid_t>> as = {},
                    std::vector<std::string> extra = {}) {
  return [=](const std::string& payload) { return credential(socket, payload, as, extra); };
}

// On a fresh connection: Tauth as uname and the Tread of the afid's challenge; then
// Twrite of make(payload), payload being what an honest client binds its credential to
// (the binding of addr and the challenge), and Tattach as uname. The attach's answer.
std::string attach_with(const std::string& addr, const cred_maker& make, const std::string& uname) {
  auto c = fsclient::client::dial(addr);
  if (!c) return "dial: " + c.error();
  auto first = (*c)->rpc_batch({tauth{1, uname, ""}, tread{1, 0, 64}});
  if (!first[0]) return "Tauth: " + first[0].error();
  if (!first[1]) return "Tread: " + first[1].error();
  auto challenge = parse_challenge(std::get<rread>(*first[1]).data);
  if (!challenge) return "challenge: " + challenge.error();
  auto cred = make(credential_payload(testmunge::bound_to(addr), *challenge));
  auto rs = (*c)->rpc_batch({twrite{1, 0, cred}, tattach{0, 1, uname, ""}});
  if (!rs[1]) return rs[1].error();
  return "ok";
}

// The same with a credential made beforehand (captured, replayed, garbage), written
// without reading the challenge.
std::string attach_with(const std::string& addr, const std::string& cred, const std::string& uname) {
  auto c = fsclient::client::dial(addr);
  if (!c) return "dial: " + c.error();
  auto rs = (*c)->rpc_batch({tauth{1, uname, ""}, twrite{1, 0, cred}, tattach{0, 1, uname, ""}});
  if (!rs[0]) return "Tauth: " + rs[0].error();
  if (!rs[2]) return rs[2].error();
  return "ok";
}

TEST(Munge, HappyPathWithFsclient) {
  REQUIRE_MUNGED();
  munged m;
  served s(munge_opts(m.socket()));
  fsclient::client::options o;
  o.credential = [sock = m.socket()](std::string_view bind) { return munge_credential(sock, bind); };
  auto c = fsclient::client::dial(s.tcp, o);
  ASSERT_TRUE(c) << c.error();
  auto root = (*c)->attach("");  // the credential's own user
  ASSERT_TRUE(root) << root.error();
  EXPECT_TRUE((*c)->server_authenticates());
  auto f = (*c)->walk(*root, "");
  ASSERT_TRUE(f);
  ASSERT_TRUE((*c)->create(*f, "mine", 0644, owrite));
  auto st = (*c)->stat(*f);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->uid, local_name(::getuid()).value_or("?"));
  // A second attach on the same connection needs and gets a fresh credential.
  EXPECT_TRUE((*c)->attach(local_name(::getuid()).value_or("?")));
}

TEST(Munge, AttachWithoutCredentialIsRefused) {
  REQUIRE_MUNGED();
  munged m;
  served s(munge_opts(m.socket()));
  auto c = fsclient::client::dial(s.tcp);
  ASSERT_TRUE(c);
  auto root = (*c)->attach("root");
  ASSERT_FALSE(root);
  EXPECT_EQ(root.error(), "authentication required");
}

TEST(Munge, CredentialFromAnotherKeyIsInvalid) {
  REQUIRE_MUNGED();
  munged ours, theirs;
  served s(munge_opts(ours.socket()));
  EXPECT_EQ(attach_with(s.tcp, munge_as(theirs.socket()), "root"),
            "credential invalid (not from this cluster's key?)");
  EXPECT_EQ(attach_with(s.tcp, munge_as(ours.socket()), "root"), "ok");
}

TEST(Munge, ExpiredCredential) {
  REQUIRE_MUNGED();
  munged m;
  served s(munge_opts(m.socket()));
  auto stale = [&](const std::string& payload) {
    auto cred = credential(m.socket(), payload, {}, {"--ttl=1"});
    std::this_thread::sleep_for(2200ms);
    return cred;
  };
  EXPECT_EQ(attach_with(s.tcp, stale, "root"), "credential expired");
}

TEST(Munge, ReplayedCredential) {
  REQUIRE_MUNGED();
  munged m;
  served s(munge_opts(m.socket()));
  std::string cred;
  auto keep = [&](const std::string& payload) { return cred = credential(m.socket(), payload); };
  EXPECT_EQ(attach_with(s.tcp, keep, "root"), "ok");
  EXPECT_EQ(attach_with(s.tcp, cred, "root"), "credential replayed");
}

TEST(Munge, GarbageAndUnreachableMunged) {
  REQUIRE_MUNGED();
  munged m;
  served s(munge_opts(m.socket()));
  EXPECT_EQ(attach_with(s.tcp, "hello\n", "root"), "credential malformed: not a MUNGE credential");
  served lost(munge_opts("/nonexistent/munge.sock"));
  auto e = attach_with(lost.tcp, munge_as(m.socket()), "root");
  EXPECT_TRUE(e.starts_with("munged unreachable at /nonexistent/munge.sock: ")) << e;
  EXPECT_LT(e.size(), errmax);
}

TEST(Munge, UidOfOneUserCannotAttachAsAnother) {
  REQUIRE_MUNGED();
  REQUIRE_USERS(alice, bob);
  munged m;
  served s(munge_opts(m.socket()));
  EXPECT_EQ(attach_with(s.tcp, munge_as(m.socket(), alice), "gx-bob"),
            fmt::format("uid {} (gx-alice) may not attach as gx-bob", alice->first));
  EXPECT_EQ(attach_with(s.tcp, munge_as(m.socket(), alice), "gx-alice"), "ok");
  // The server goes on serving the others.
  EXPECT_EQ(attach_with(s.tcp, munge_as(m.socket(), bob), "gx-bob"), "ok");
  // A uid given with --trust speaks for anyone.
  server_options o = munge_opts(m.socket());
  o.trusted = {alice->first};
  served trusting(std::move(o));
  EXPECT_EQ(attach_with(trusting.tcp, munge_as(m.socket(), alice), "gx-bob"), "ok");
}

TEST(Munge, AuthFloodOnOneConnectionLeavesOthersServed) {
  REQUIRE_MUNGED();
  munged m;
  server_options o = munge_opts(m.socket());
  o.max_fids = 32;
  served s(std::move(o));
  auto c = fsclient::client::dial(s.tcp);
  ASSERT_TRUE(c);
  std::vector<message> flood;
  for (std::uint32_t f = 0; f < 40; ++f) flood.push_back(tauth{f, "root", ""});
  auto rs = (*c)->rpc_batch(flood);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_TRUE(rs[i]) << i;
  for (std::size_t i = 4; i < 40; ++i) {
    ASSERT_FALSE(rs[i]);
    EXPECT_EQ(rs[i].error(), "too many authentication fids on this connection: limit 4");
  }
  auto big = (*c)->rpc(twrite{0, 0, std::string(5000, 'M')});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error(), "credential too long: 5000 bytes; a MUNGE credential is at most 4096 bytes");
  EXPECT_EQ(attach_with(s.tcp, munge_as(m.socket()), "root"), "ok");
}

TEST(Munge, ConnectionThatNeverAttachesIsClosed) {
  REQUIRE_MUNGED();
  munged m;
  server_options o = munge_opts(m.socket());
  o.attach_timeout_ms = 300;
  served s(std::move(o));
  auto idle = fsclient::client::dial(s.tcp);
  ASSERT_TRUE(idle);
  fsclient::client::options co;
  co.credential = [sock = m.socket()](std::string_view bind) { return munge_credential(sock, bind); };
  auto attached = fsclient::client::dial(s.tcp, co);
  ASSERT_TRUE(attached);
  auto root = (*attached)->attach("root");
  ASSERT_TRUE(root) << root.error();
  std::this_thread::sleep_for(900ms);
  auto r = (*idle)->rpc(tstat{0});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), err::hungup);
  EXPECT_TRUE((*attached)->stat(*root).has_value());
  std::lock_guard lk(s.log_mu);
  EXPECT_NE(std::find(s.logged.begin(), s.logged.end(), "closing connection: not attached within 300 ms"),
            s.logged.end());
}

// An impostor: a server that keeps the credential a client writes to it and refuses it.
class capturing_authenticator : public authenticator {
 public:
  bool complete(std::string_view c) const override { return munge_authenticator().complete(c); }
  void verify(std::string c, std::shared_ptr<const std::atomic<bool>>, std::function<void(verified)> done) override {
    {
      std::lock_guard lk(mu);
      captured = std::move(c);
    }
    done(std::unexpected(std::string("captured")));
  }
  std::size_t max_bytes() const override { return munge_max_credential_bytes; }
  std::mutex mu;
  std::string captured;
};

TEST(Munge, CredentialCapturedByAnImpostorIsRefusedByTheRealServer) {
  REQUIRE_MUNGED();
  munged m;
  served real(munge_opts(m.socket()));
  auto trap = std::make_shared<capturing_authenticator>();
  server_options io;
  io.auth = trap;
  served impostor(std::move(io));
  // root's galaxy tool dials the impostor (say, on the default port) and writes a fresh
  // credential, as the real client does.
  fsclient::client::options o;
  o.credential = [sock = m.socket()](std::string_view bind) { return munge_credential(sock, bind); };
  auto victim = fsclient::client::dial(impostor.tcp, o);
  ASSERT_TRUE(victim) << victim.error();
  EXPECT_EQ((*victim)->binding(), testmunge::bound_to(impostor.tcp));
  auto r = (*victim)->attach("root");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "captured");
  std::string stolen;
  {
    std::lock_guard lk(trap->mu);
    stolen = trap->captured;
  }
  ASSERT_TRUE(stolen.starts_with("MUNGE:")) << stolen;
  // Forwarded within its lifetime to the real server, on another port: refused.
  EXPECT_EQ(attach_with(real.tcp, stolen, "root"),
            fmt::format("credential was made for {}, not this server ({})", impostor.tcp, real.tcp));
  // A credential with no payload (as munge -n makes it, or an older client) is refused too.
  EXPECT_EQ(attach_with(real.tcp, credential(m.socket(), ""), "root"), "credential not bound to a server address");
  // The real client still attaches to the real server.
  auto honest = fsclient::client::dial(real.tcp, o);
  ASSERT_TRUE(honest);
  EXPECT_TRUE((*honest)->attach("root")) << "the real path must still work";
  std::lock_guard lk(real.log_mu);
  EXPECT_NE(std::find_if(real.logged.begin(), real.logged.end(),
                         [](const std::string& l) { return l.find("not this server") != std::string::npos; }),
            real.logged.end());
}

TEST(Munge, CredentialReadForOneAfidIsRefusedOnAnother) {
  REQUIRE_MUNGED();
  munged m;
  served s(munge_opts(m.socket()));
  auto c = fsclient::client::dial(s.tcp);
  ASSERT_TRUE(c);
  auto rs = (*c)->rpc_batch({tauth{1, "root", ""}, tread{1, 0, 64}, tauth{2, "root", ""}});
  ASSERT_TRUE(rs[0] && rs[1] && rs[2]);
  auto c1 = parse_challenge(std::get<rread>(*rs[1]).data);
  ASSERT_TRUE(c1) << c1.error();
  // A good credential, from this cluster's key, for this server, with afid 1's challenge:
  // written to afid 2, it is refused, and afid 2 attaches nobody.
  auto cred = credential(m.socket(), credential_payload(testmunge::bound_to(s.tcp), *c1));
  auto w = (*c)->rpc_batch({twrite{2, 0, cred}, tattach{0, 2, "root", ""}});
  ASSERT_FALSE(w[0]);
  EXPECT_EQ(w[0].error(), "credential was made for another challenge (replayed or captured?)");
  ASSERT_FALSE(w[1]);
  EXPECT_EQ(w[1].error(), "credential was made for another challenge (replayed or captured?)");
  // Afid 1 with a fresh credential of its own attaches (the one above was decoded once).
  auto mine = credential(m.socket(), credential_payload(testmunge::bound_to(s.tcp), *c1));
  auto ok = (*c)->rpc_batch({twrite{1, 0, mine}, tattach{0, 1, "root", ""}});
  EXPECT_TRUE(ok[0] && ok[1]) << (ok[1] ? "" : ok[1].error());
}

TEST(Munge, CredentialWithoutChallengeIsRefused) {
  // A client that writes a credential without reading the afid (the binding alone, as
  // clients made them before the challenge).
  REQUIRE_MUNGED();
  munged m;
  served s(munge_opts(m.socket()));
  EXPECT_EQ(attach_with(s.tcp, credential(m.socket(), testmunge::bound_to(s.tcp)), "root"),
            "credential has no challenge: read the afid's challenge first and put it in the credential");
  EXPECT_EQ(attach_with(s.tcp, munge_as(m.socket()), "root"), "ok");
}

TEST(Munge, CancelledCredentialIsNotSentToMunged) {
  // The worker answers a credential whose session is gone without asking munged: here
  // munged is unreachable, so an attempt would say so.
  munge_authenticator a("/nonexistent/munge.sock");
  auto ask = [&](bool cancelled) {
    std::promise<std::string> said;
    auto flag = std::make_shared<std::atomic<bool>>(cancelled);
    a.verify("MUNGE:AwQDAAA:", flag, [&](authenticator::verified v) { said.set_value(v ? "ok" : v.error()); });
    return said.get_future().get();
  };
  EXPECT_EQ(ask(true), err::hungup);
  EXPECT_TRUE(ask(false).starts_with("munged unreachable at /nonexistent/munge.sock")) << ask(false);
}

TEST(Munge, GarbageFloodFromManyConnectionsLeavesLoginsServed) {
  // The attack, scaled down: connections that pipeline Tauth and a complete but bogus
  // credential many times over. Each gets 4 afids and one verification at a time; the
  // rest is refused at once, and a real login goes through promptly.
  REQUIRE_MUNGED();
  munged m;
  served s(munge_opts(m.socket()));
  std::vector<std::unique_ptr<fsclient::client>> flooders;
  std::size_t refused = 0, accepted = 0;
  for (int c = 0; c < 10; ++c) {
    auto f = fsclient::client::dial(s.tcp);
    ASSERT_TRUE(f);
    std::vector<message> flood;
    for (std::uint32_t a = 0; a < 200; ++a) {
      flood.push_back(tauth{a, "root", ""});
      flood.push_back(twrite{a, 0, "MUNGE:" + std::string(200, 'A') + ":\n"});
    }
    for (auto& r : (*f)->rpc_batch(flood)) {
      if (r) {
        ++accepted;
      } else if (r.error() == "too many authentication fids on this connection: limit 4") {
        ++refused;
      }
    }
    flooders.push_back(std::move(*f));
  }
  EXPECT_EQ(accepted, 10u * 4u);  // the Rauths; every bogus credential is refused
  EXPECT_EQ(refused, 10u * 196u);
  auto t0 = std::chrono::steady_clock::now();
  fsclient::client::options o;
  o.credential = [sock = m.socket()](std::string_view bind) { return munge_credential(sock, bind); };
  auto c = fsclient::client::dial(s.tcp, o);
  ASSERT_TRUE(c);
  EXPECT_TRUE((*c)->attach("root"));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST(Munge, UnattachedConnectionsAreCappedServerWide) {
  REQUIRE_MUNGED();
  munged m;
  server_options so = munge_opts(m.socket());
  so.max_unattached_connections = 3;
  served s(std::move(so));
  fsclient::client::options o;
  o.credential = [sock = m.socket()](std::string_view bind) { return munge_credential(sock, bind); };
  std::vector<std::unique_ptr<fsclient::client>> idle;
  for (int i = 0; i < 3; ++i) {
    auto c = fsclient::client::dial(s.tcp, o);
    ASSERT_TRUE(c) << c.error();
    idle.push_back(std::move(*c));
  }
  EXPECT_FALSE(fsclient::client::dial(s.tcp, fsclient::client::options{.version_timeout_ms = 2000}));
  {
    std::lock_guard lk(s.log_mu);
    EXPECT_NE(std::find(s.logged.begin(), s.logged.end(),
                        "closing connection from 127.0.0.1: 3 connections not yet attached (limit)"),
              s.logged.end());
  }
  // One of them attaches: that frees a place, and those attached are not counted.
  ASSERT_TRUE(idle[0]->attach("root"));
  auto late = fsclient::client::dial(s.tcp, o);
  ASSERT_TRUE(late) << late.error();
  EXPECT_TRUE((*late)->attach("root"));
}

TEST(Munge, AUnixSocketIsOpenToEveryUserWhoIsThenProvenByPeercred) {
  // The listener makes its socket 0666 whatever the umask: SO_PEERCRED proves each
  // peer, and the socket's directory decides who may reach it. Then nobody connects and
  // may attach as nobody, not as root.
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  testutil::temp_dir dir;
  ::chmod(dir.path().c_str(), 0711);
  served s{server_options{}};
  std::string path = dir.file("sock");
  std::promise<std::string> bound;
  ::mode_t old = ::umask(077);
  asio::post(s.io, [&] { bound.set_value(s.srv->listen("unix!" + path).value_or("")); });
  ASSERT_FALSE(bound.get_future().get().empty());
  ::umask(old);
  struct ::stat st{};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  // The galaxy tool as nobody (setpriv), listing the root.
  auto ls_as_nobody = [&](const std::string& uname) {
    return testutil::run({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          GALAXY_BINARY_DIR "/galaxy", "ls", "-a", "unix!" + path, "-u", uname, "/"});
  };
  auto as_nobody = ls_as_nobody("nobody");
  EXPECT_EQ(as_nobody.status, 0) << as_nobody.err;
  auto as_root = ls_as_nobody("root");
  EXPECT_NE(as_root.status, 0) << as_root.out;
  EXPECT_NE(as_root.err.find("may not attach as root"), std::string::npos) << as_root.err;
  EXPECT_EQ(as_root.err.find("Permission denied"), std::string::npos) << "connect refused: " << as_root.err;
}

TEST(Munge, AUnixSocketIsRemovedThroughItsDirectoryNotItsPath) {
  // The listener holds the socket's directory open: when another user swaps a directory
  // of the path for a link to elsewhere while the daemon runs, stop() removes nothing
  // there (before, unlink(path) deleted whatever had the socket's name at the new place).
  testutil::temp_dir dir;
  std::string a = dir.file("a"), moved = dir.file("moved"), victim = dir.file("victim");
  ASSERT_EQ(::mkdir(a.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(victim.c_str(), 0755), 0);
  { std::ofstream(victim + "/s.sock") << "precious\n"; }
  auto s = std::make_unique<served>(server_options{});
  std::promise<std::string> bound;
  asio::post(s->io, [&] { bound.set_value(s->srv->listen("unix!" + a + "/s.sock").value_or("")); });
  ASSERT_EQ(bound.get_future().get(), "unix!" + a + "/s.sock");
  ASSERT_EQ(::rename(a.c_str(), moved.c_str()), 0);
  ASSERT_EQ(::symlink(victim.c_str(), a.c_str()), 0);
  s.reset();  // stop()
  struct ::stat st{};
  EXPECT_EQ(::stat((victim + "/s.sock").c_str(), &st), 0) << "stop() removed the file the swapped path now names";
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_NE(::lstat((moved + "/s.sock").c_str(), &st), 0) << "stop() left its own socket behind";
}

TEST(Munge, UnixSocketConnectionsPerUidAreBounded) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  testutil::temp_dir dir;
  ::chmod(dir.path().c_str(), 0711);
  server_options so;
  so.max_connections_per_uid = 2;
  served s(std::move(so));
  std::string path = dir.file("sock");
  std::promise<std::string> bound;
  asio::post(s.io, [&] { bound.set_value(s.srv->listen("unix!" + path).value_or("")); });
  ASSERT_FALSE(bound.get_future().get().empty());
  ::chmod(path.c_str(), 0777);
  std::vector<std::uint8_t> tversion_bytes;
  encode(fcall{notag, tversion{8192, "9P2000"}}, tversion_bytes);
  auto answered_as = [&](uid_t uid) {
    // A child as uid opens three connections and counts those that answer Tversion.
    pid_t pid = ::fork();
    if (pid == 0) {
      if (::setgid(uid) != 0 || ::setuid(uid) != 0) ::_exit(100);
      int answered = 0;
      int fds[3];
      for (int& fd : fds) {
        fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        ::sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
        if (::connect(fd, reinterpret_cast<::sockaddr*>(&sa), sizeof sa) != 0) continue;
        // The server may already have closed a connection over the limit: no SIGPIPE.
        if (::send(fd, tversion_bytes.data(), tversion_bytes.size(), MSG_NOSIGNAL) < 0) continue;
        ::pollfd p{fd, POLLIN, 0};
        char buf[64];
        if (::poll(&p, 1, 2000) == 1 && ::read(fd, buf, sizeof buf) > 0) ++answered;
      }
      ::_exit(answered);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(answered_as(65534), 2);
  EXPECT_EQ(answered_as(0), 3);  // root is exempt
  std::lock_guard lk(s.log_mu);
  EXPECT_NE(std::find(s.logged.begin(), s.logged.end(), "closing connection: uid 65534 has 2 connections (limit)"),
            s.logged.end());
}

// ==== The daemon and the tool, as real users ================================================

const std::string bin_dir = GALAXY_BINARY_DIR;

TEST(MungeDaemon, RamfsAndGalaxyToolAsRealUsers) {
  REQUIRE_MUNGED();
  REQUIRE_USERS(alice, bob);
  munged m;
  testutil::temp_dir dir;
  ::chmod(dir.path().c_str(), 0711);
  std::string unix_sock = dir.file("ramfs");
  auto d = testutil::start_daemon({bin_dir + "/galaxy-ramfs", "--listen", "tcp!127.0.0.1!0", "--listen",
                                   "unix!" + unix_sock, "--munge-socket", m.socket(), "--auth", "munge"},
                                  2);
  ASSERT_TRUE(d) << d.error();
  ::chmod(unix_sock.c_str(), 0777);
  const std::string tcp = d->dials[0], unix_dial = d->dials[1];
  auto as = [&](std::pair<uid_t, gid_t> u, std::vector<std::string> args) {
    std::vector<std::string> argv{"/usr/bin/setpriv", fmt::format("--reuid={}", u.first),
                                  fmt::format("--regid={}", u.second), "--clear-groups",
                                  bin_dir + "/galaxy", "--munge-socket", m.socket()};
    argv.insert(argv.end(), args.begin(), args.end());
    return testutil::run(argv);
  };
  auto ok = as(*alice, {"ls", "-a", tcp, "-u", "gx-alice", "/"});
  EXPECT_EQ(ok.status, 0) << ok.err;
  auto no = as(*alice, {"ls", "-a", tcp, "-u", "gx-bob", "/"});
  EXPECT_NE(no.status, 0);
  EXPECT_NE(no.err.find(fmt::format("uid {} (gx-alice) may not attach as gx-bob", alice->first)),
            std::string::npos)
      << no.err;
  // A Unix-socket peer is who the kernel says: claiming another name is refused.
  auto peer_no = as(*alice, {"ls", "-a", unix_dial, "-u", "gx-bob", "/"});
  EXPECT_NE(peer_no.status, 0);
  EXPECT_NE(peer_no.err.find("may not attach as gx-bob"), std::string::npos) << peer_no.err;
  auto peer_ok = as(*bob, {"ls", "-a", unix_dial, "-u", "gx-bob", "/"});
  EXPECT_EQ(peer_ok.status, 0) << peer_ok.err;
  // The daemon still serves root over TCP with a credential.
  auto root_ok = testutil::run({bin_dir + "/galaxy", "--munge-socket", m.socket(), "ls", "-a", tcp, "/"});
  EXPECT_EQ(root_ok.status, 0) << root_ok.err;
}

TEST(MungeDaemon, PortSquatterCannotReplayACapturedCredential) {
  // The attack: while the real server is down (a restart), local user bob listens on its
  // port; alice's galaxy tool dials it, authenticates and writes a fresh credential
  // bound to that address; bob keeps it, and once the real server is back on the same
  // port, presents it within its lifetime. The afid's challenge (srv9p/auth.hpp) must
  // make it worthless there: bob's afid had a challenge the real server never gave.
  REQUIRE_MUNGED();
  REQUIRE_USERS(alice, bob);
  (void)bob;  // played by this test
  munged m;
  auto trap = std::make_shared<capturing_authenticator>();
  std::string port_dial;
  {
    server_options io;
    io.auth = trap;
    served squatter(std::move(io));
    port_dial = squatter.tcp;
    auto victim = testutil::run({"/usr/bin/setpriv", fmt::format("--reuid={}", alice->first),
                                 fmt::format("--regid={}", alice->second), "--clear-groups", bin_dir + "/galaxy",
                                 "--munge-socket", m.socket(), "ls", "-a", port_dial, "-u", "gx-alice", "/"});
    EXPECT_NE(victim.status, 0);
    EXPECT_NE(victim.err.find("captured"), std::string::npos) << victim.err;
  }  // bob lets the port go: the real server comes back on it
  std::string stolen;
  {
    std::lock_guard lk(trap->mu);
    stolen = trap->captured;
  }
  ASSERT_TRUE(stolen.starts_with("MUNGE:")) << stolen;
  auto d = testutil::start_daemon(
      {bin_dir + "/galaxy-ramfs", "--listen", port_dial, "--munge-socket", m.socket(), "--auth", "munge"});
  ASSERT_TRUE(d) << d.error();
  ASSERT_EQ(d->dials[0], port_dial);
  // Bob presents alice's credential on a new afid of the real server, as gx-alice; the
  // binding matches (same address), MUNGE has never seen it (not replayed), alice's uid
  // is gx-alice's: only the challenge tells.
  EXPECT_EQ(attach_with(port_dial, stolen, "gx-alice"), "credential was made for another challenge (replayed or captured?)");
  // Reading the real afid's challenge first changes nothing: the credential is sealed.
  auto c = fsclient::client::dial(port_dial);
  ASSERT_TRUE(c);
  auto rs = (*c)->rpc_batch({tauth{1, "gx-alice", ""}, tread{1, 0, 64}, twrite{1, 0, stolen},
                             tattach{0, 1, "gx-alice", ""}});
  ASSERT_TRUE(rs[1]);
  ASSERT_FALSE(rs[3]);
  EXPECT_EQ(rs[3].error(), "credential replayed");  // the attempt above decoded it once
  // Alice herself attaches to the real server.
  auto ok = testutil::run({"/usr/bin/setpriv", fmt::format("--reuid={}", alice->first),
                           fmt::format("--regid={}", alice->second), "--clear-groups", bin_dir + "/galaxy",
                           "--munge-socket", m.socket(), "ls", "-a", port_dial, "-u", "gx-alice", "/"});
  EXPECT_EQ(ok.status, 0) << ok.err;
}

TEST(MungeDaemon, ListenerPolicy) {
  auto wide = testutil::run({bin_dir + "/galaxy-ramfs", "--listen", "tcp!0.0.0.0!0", "--auth", "none"});
  EXPECT_EQ(wide.status, 2);
  EXPECT_NE(wide.err.find("refusing --auth none on tcp!0.0.0.0!0"), std::string::npos) << wide.err;
  EXPECT_EQ(wide.out.find("listening on"), std::string::npos);
  // Loopback without authentication starts, and says what it means; killed at the timeout.
  auto loop = testutil::run({bin_dir + "/galaxy-ramfs", "--listen", "tcp!127.0.0.1!0", "--auth", "none"}, {}, 1500ms);
  EXPECT_NE(loop.out.find("listening on tcp!127.0.0.1!"), std::string::npos) << loop.out;
  EXPECT_NE(loop.err.find("warning: tcp!127.0.0.1!0 has no authentication (--auth none): every local user can "
                          "attach as anyone"),
            std::string::npos)
      << loop.err;
  auto bad = testutil::run({bin_dir + "/galaxy-ramfs", "--listen", "tcp!127.0.0.1!0", "--auth", "kerberos"});
  EXPECT_NE(bad.status, 0);
}

}  // namespace
}  // namespace srv9p
