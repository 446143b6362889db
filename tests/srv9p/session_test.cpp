// The session's protocol rules, driven message by message through the in-memory harness:
// framing errors, fid bookkeeping, flush, clunk hooks, Tversion reset and hang-up.
#include <gtest/gtest.h>

#include "srv9p/errors.hpp"
#include "tests/srv9p/harness.hpp"

namespace srv9p {
namespace {

using testing::harness;

std::string error_of(const fcall& f) {
  if (auto* e = std::get_if<rerror>(&f.msg)) return e->ename;
  return "<not an error: " + to_string(f) + ">";
}

TEST(Session, FramingErrorsAskToCloseTheConnection) {
  harness h;
  std::vector<std::uint8_t> tiny{5, 0, 0, 0, 100};
  EXPECT_FALSE(h.send_bytes(tiny).has_value());
  auto lying = encode(fcall{notag, tversion{8192, "9P2000"}});
  lying[0] += 3;  // size says 3 bytes more than there are
  EXPECT_FALSE(h.send_bytes(lying).has_value());
  EXPECT_TRUE(h.out.empty());
}

TEST(Session, MalformedBodyGetsAnErrorAndTheConnectionLives) {
  harness h;
  h.start();
  // A Tstat whose body is one byte short.
  std::vector<std::uint8_t> bad{10, 0, 0, 0, 124, 7, 0, 0, 0, 0};
  ASSERT_TRUE(h.send_bytes(bad).has_value());
  auto r = h.next();
  EXPECT_EQ(r.tag, 7);
  EXPECT_TRUE(error_of(r).starts_with("botch:")) << error_of(r);
  // An R-message sent to a server.
  ASSERT_TRUE(h.send_bytes(encode(fcall{8, rclunk{}})).has_value());
  EXPECT_TRUE(error_of(h.next()).starts_with("botch:"));
  // Still serving.
  h.send(9, tstat{0});
  EXPECT_TRUE(std::holds_alternative<rstat>(h.next().msg));
}

TEST(Session, MessagesBeforeVersionAreRefused) {
  harness h;
  h.send(1, tattach{0, nofid, "glenda", ""});
  EXPECT_EQ(error_of(h.next()), err::not_version);
}

TEST(Session, VersionNegotiatesMsizeAndDialect) {
  harness h;
  h.send(notag, tversion{1u << 30, "9P2000.L"});
  auto r = std::get<rversion>(h.next().msg);
  EXPECT_EQ(r.msize, max_msize);
  EXPECT_EQ(r.version, "9P2000.L");
  h.send(notag, tversion{8192, "9P2000.u"});
  EXPECT_EQ(std::get<rversion>(h.next().msg).version, "9P2000");
  h.send(notag, tversion{8192, "9P1999"});
  EXPECT_EQ(std::get<rversion>(h.next().msg).version, "unknown");
  h.send(notag, tversion{100, "9P2000"});
  EXPECT_EQ(error_of(h.next()), err::bad_msize);
}

TEST(Session, MessageOverMsizeClosesTheConnection) {
  harness h;
  h.send(notag, tversion{512, "9P2000"});
  h.next();
  h.send(1, tattach{0, nofid, "glenda", ""});
  h.next();
  auto big = encode(fcall{2, twrite{0, 0, std::string(600, 'x')}});
  EXPECT_FALSE(h.send_bytes(big).has_value());
}

TEST(Session, FidRules) {
  harness h;
  h.start();
  h.send(2, tattach{0, nofid, "glenda", ""});
  EXPECT_EQ(error_of(h.next()), err::fid_in_use);
  h.send(3, tstat{42});
  EXPECT_EQ(error_of(h.next()), err::unknown_fid);
  h.send(4, twalk{0, 1, {}});  // clone
  EXPECT_TRUE(std::holds_alternative<rwalk>(h.next().msg));
  h.send(5, twalk{0, 1, {}});
  EXPECT_EQ(error_of(h.next()), err::fid_in_use);
  h.send(6, topen{1, oread});
  EXPECT_TRUE(std::holds_alternative<ropen>(h.next().msg));
  h.send(7, twalk{1, 2, {"events"}});
  EXPECT_EQ(error_of(h.next()), err::walk_open);
  h.send(8, topen{1, oread});
  EXPECT_EQ(error_of(h.next()), err::already_open);
  h.send(9, tread{0, 0, 100});
  EXPECT_EQ(error_of(h.next()), err::not_open);
  h.send(10, tclunk{1});
  EXPECT_TRUE(std::holds_alternative<rclunk>(h.next().msg));
  h.send(11, tclunk{1});
  EXPECT_EQ(error_of(h.next()), err::unknown_fid);
  EXPECT_EQ(h.s->fids(), 1u);
}

TEST(Session, DuplicateTagOfAPendingRequestIsRefused) {
  harness h;
  h.start();
  h.send(2, twalk{0, 1, {"events"}});
  h.next();
  h.send(3, topen{1, oread});
  h.next();
  h.send(4, tread{1, 0, 100});  // parks
  EXPECT_TRUE(h.out.empty());
  h.send(4, tstat{0});
  EXPECT_EQ(error_of(h.next()), err::dup_tag);
}

TEST(Session, RequestsOnAFidWaitForTheWalkAndOpenThatMakeIt) {
  // A client pipelines Twalk newfid, Topen newfid, Tstat newfid; the tree answers the walk
  // and the open later. The later requests wait for them instead of failing "unknown fid"
  // or "fid not open", and start in their order.
  harness h;
  h.start();
  h.fs.hold = true;
  h.send(2, twalk{0, 1, {"big"}});
  h.send(3, topen{1, oread});
  h.send(4, tstat{1});
  h.send(5, tread{1, 0, 10});
  h.send(6, twalk{0, 1, {"big"}});  // newfid is being made: in use
  EXPECT_EQ(error_of(h.next()), err::fid_in_use);
  h.send(7, tflush{4});             // a waiting request is flushed before it starts
  EXPECT_TRUE(std::holds_alternative<rflush>(h.next().msg));
  h.send(4, tstat{0});              // and its tag is free again
  EXPECT_TRUE(std::holds_alternative<rstat>(h.next().msg));
  EXPECT_TRUE(h.out.empty());
  EXPECT_EQ(h.fs.held.size(), 1u);  // the walk; the open has not started yet
  h.fs.hold = true;
  h.fs.release();
  h.fs.hold = true;
  h.run();
  auto w = h.next();
  EXPECT_EQ(w.tag, 2);
  EXPECT_TRUE(std::holds_alternative<rwalk>(w.msg)) << to_string(w);
  EXPECT_TRUE(h.out.empty());
  EXPECT_EQ(h.fs.held.size(), 1u);  // now the open
  h.fs.release();
  h.run();
  auto o = h.next();
  EXPECT_EQ(o.tag, 3);
  EXPECT_TRUE(std::holds_alternative<ropen>(o.msg)) << to_string(o);
  auto rd = h.next();
  EXPECT_EQ(rd.tag, 5);
  EXPECT_TRUE(std::holds_alternative<rread>(rd.msg)) << to_string(rd);
  EXPECT_TRUE(h.out.empty());  // no Rstat for the flushed tag 4
}

TEST(Session, FlushCancelsAParkedReadAndTellsTheTree) {
  harness h;
  h.start();
  h.send(2, twalk{0, 1, {"events"}});
  h.next();
  h.send(3, topen{1, oread});
  h.next();
  h.send(4, tread{1, 0, 100});
  EXPECT_TRUE(h.out.empty());
  EXPECT_EQ(h.fs.parked_readers(), 1u);
  h.send(5, tflush{4});
  auto r = h.next();
  EXPECT_EQ(r.tag, 5);
  EXPECT_TRUE(std::holds_alternative<rflush>(r.msg));
  EXPECT_EQ(h.fs.parked_readers(), 0u);  // the tree was told
  EXPECT_EQ(h.s->outstanding(), 0u);
  // A change now must not produce a reply for the flushed tag.
  h.send(6, twalk{0, 2, {}});
  h.next();
  h.send(7, tcreate{2, "x", 0644, owrite});
  EXPECT_TRUE(std::holds_alternative<rcreate>(h.next().msg));
  EXPECT_TRUE(h.out.empty());
  // Flushing a tag that is not pending is answered at once.
  h.send(8, tflush{4});
  EXPECT_TRUE(std::holds_alternative<rflush>(h.next().msg));
}

TEST(Session, ParkedReadIsAnsweredWhenTheTreeChanges) {
  harness h;
  h.start();
  h.send(2, twalk{0, 1, {"events"}});
  h.next();
  h.send(3, topen{1, oread});
  h.next();
  h.send(4, tread{1, 0, 100});
  h.send(5, twalk{0, 2, {}});
  auto walked = h.next();
  EXPECT_EQ(walked.tag, 5);
  h.send(6, tcreate{2, "note", 0644, owrite});
  auto a = h.next();
  auto b = h.next();
  // The create's answer and the read's can come in either order; both must come.
  if (a.tag != 4) std::swap(a, b);
  EXPECT_EQ(a.tag, 4);
  EXPECT_EQ(std::get<rread>(a.msg).data, "create note\n");
  EXPECT_TRUE(std::holds_alternative<rcreate>(b.msg));
}

TEST(Session, ClunkHookWaitsForOutstandingRequests) {
  harness h;
  h.start();
  h.send(2, twalk{0, 1, {"events"}});
  h.next();
  h.send(3, topen{1, oread});
  h.next();
  h.send(4, tread{1, 0, 100});  // parked, holds fid 1
  int before = h.fs.clunks;
  h.send(5, tclunk{1});
  EXPECT_TRUE(std::holds_alternative<rclunk>(h.next().msg));
  EXPECT_EQ(h.fs.clunks, before);  // the parked read still needs the fid's state
  h.send(6, tflush{4});
  h.next();
  EXPECT_EQ(h.fs.clunks, before + 1);
}

TEST(Session, VersionResetsFidsAndAbortsRequests) {
  harness h;
  h.start();
  h.send(2, twalk{0, 1, {"events"}});
  h.next();
  h.send(3, topen{1, oread});
  h.next();
  h.send(4, tread{1, 0, 100});
  EXPECT_EQ(h.fs.parked_readers(), 1u);
  h.send(notag, tversion{8192, "9P2000"});
  EXPECT_TRUE(std::holds_alternative<rversion>(h.next().msg));
  EXPECT_TRUE(h.out.empty());  // the aborted read is never answered
  EXPECT_EQ(h.fs.parked_readers(), 0u);
  EXPECT_EQ(h.fs.clunks, 2);  // fids 0 and 1
  EXPECT_EQ(h.s->fids(), 0u);
  h.send(5, tstat{0});
  EXPECT_EQ(error_of(h.next()), err::unknown_fid);
}

TEST(Session, CloseClunksEverythingAndDropsLateReplies) {
  harness h;
  h.start();
  h.send(2, twalk{0, 1, {"events"}});
  h.next();
  h.send(3, topen{1, oread});
  h.next();
  h.send(4, tread{1, 0, 100});
  h.s->close();
  EXPECT_EQ(h.fs.parked_readers(), 0u);
  EXPECT_EQ(h.fs.clunks, 2);
  EXPECT_FALSE(h.send_bytes(encode(fcall{5, tstat{0}})).has_value());
  EXPECT_TRUE(h.out.empty());
}

TEST(Session, RemoveClunksTheFidEvenWhenItFails) {
  harness h;
  h.start();
  h.send(2, twalk{0, 1, {}});
  h.next();
  h.send(3, tremove{1});  // the root: not removable
  EXPECT_EQ(error_of(h.next()), err::perm);
  h.send(4, tstat{1});
  EXPECT_EQ(error_of(h.next()), err::unknown_fid);
}

TEST(Session, PermissionsFollowTheAttachName) {
  harness h;
  h.start("glenda");
  h.send(2, twalk{0, 1, {}});
  h.next();
  h.send(3, tcreate{1, "secret", 0600, owrite});
  h.next();
  h.send(4, twrite{1, 0, "mine"});
  EXPECT_EQ(std::get<rwrite>(h.next().msg).count, 4u);
  h.send(5, tattach{10, nofid, "bob", ""});
  h.next();
  h.send(6, twalk{10, 11, {"secret"}});
  h.next();
  h.send(7, topen{11, oread});
  EXPECT_EQ(error_of(h.next()), err::perm);
  h.send(8, twalk{10, 12, {"secret"}});
  h.next();
  h.send(9, tremove{12});  // root is 0777: bob may remove from it, as in Plan 9
  EXPECT_TRUE(std::holds_alternative<rremove>(h.next().msg));
}

TEST(Session, TruncatingWstatOnASyntheticFileIsAccepted) {
  harness h;
  h.start();
  h.send(2, twalk{0, 1, {"events"}});
  h.next();
  dir d = dont_touch_dir();
  d.length = 0;
  h.send(3, twstat{1, d});
  // /events is 0444: a truncation needs write permission.
  EXPECT_EQ(error_of(h.next()), err::perm);
  h.send(4, twstat{1, dont_touch_dir()});  // a no-op wstat (Plan 9's "sync")
  EXPECT_TRUE(std::holds_alternative<rwstat>(h.next().msg));
}

}  // namespace
}  // namespace srv9p
