// 9P2000.L sessions (srv9p/server_dotl.cpp), message by message through the in-memory
// harness over the ramfs and over a tiny tree with a ctl file: version negotiation,
// n_uname, every translated request, the requests answered with an errno, Treaddir
// offsets while a directory grows, a flushed parked read, and errors as Rlerror.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <set>

#include "srv9p/errno.hpp"
#include "srv9p/errors.hpp"
#include "srv9p/nss.hpp"
#include "tests/srv9p/harness.hpp"

namespace srv9p {
namespace {

using testing::harness;

// The errno of an Rlerror, or -1 (with a failure) for anything else.
int errno_of_reply(const fcall& f) {
  if (auto* e = std::get_if<rlerror>(&f.msg)) return static_cast<int>(e->ecode);
  ADD_FAILURE() << "not an Rlerror: " << to_string(f);
  return -1;
}

template <class R>
R reply_as(harness& h) {
  fcall f = h.next();
  if (auto* r = std::get_if<R>(&f.msg)) return *r;
  ADD_FAILURE() << "unexpected reply: " << to_string(f);
  return R{};
}

// Tversion 9P2000.L and Tattach of fid 0 as glenda.
void start_l(harness& h, const std::string& uname = "glenda") {
  h.send(notag, tversion{8192 + iohdrsz, "9P2000.L"});
  ASSERT_EQ(reply_as<rversion>(h).version, "9P2000.L");
  ASSERT_EQ(h.d, dialect::p9_2000_l);
  h.send(1, tattach{0, nofid, uname, "", nofid});
  auto r = h.next();
  ASSERT_TRUE(std::holds_alternative<rattach>(r.msg)) << to_string(r);
}

// All entries of an Rreaddir.
std::vector<dirent> entries(const rreaddir& r) {
  auto d = decode_dirents(std::span(reinterpret_cast<const std::uint8_t*>(r.data.data()), r.data.size()));
  EXPECT_TRUE(d) << d.error();
  return d ? *d : std::vector<dirent>{};
}

TEST(Dotl, VersionChoosesTheDialect) {
  harness h;
  h.send(notag, tversion{8192, "9P2000.L"});
  EXPECT_EQ(reply_as<rversion>(h).version, "9P2000.L");
  h.send(notag, tversion{8192, "9P2000.u"});
  EXPECT_EQ(reply_as<rversion>(h).version, "9P2000");
  // In 9P2000 the .L types are unknown: an Rerror, not an Rlerror.
  h.send(1, tattach{0, nofid, "glenda", ""});
  h.next();
  auto bytes = encode(fcall{2, tgetattr{0, getattr_basic}});
  ASSERT_TRUE(h.send_bytes(bytes));
  auto r = h.next();
  ASSERT_TRUE(std::holds_alternative<rerror>(r.msg)) << to_string(r);
  EXPECT_EQ(std::get<rerror>(r.msg).ename, "botch: unknown message type 24");
  h.send(notag, tversion{8192, "9P2001"});
  EXPECT_EQ(reply_as<rversion>(h).version, "unknown");
}

TEST(Dotl, TauthWithoutAuthenticatorIsEnoentThenAttachWithoutAfid) {
  // diod's diodls and diodcat (libnpclient npc_auth) attach without an afid only when
  // Tauth's Rlerror is ENOENT (or 0), as diod's own server answers; any other errno is
  // "error authenticating to server" and they give up.
  harness h;
  h.send(notag, tversion{8192 + iohdrsz, "9P2000.L"});
  ASSERT_EQ(reply_as<rversion>(h).version, "9P2000.L");
  h.send(1, tauth{1, "", "", ::getuid()});
  EXPECT_EQ(errno_of_reply(h.next()), ENOENT);
  h.send(2, tattach{0, nofid, "", "", ::getuid()});
  auto r = h.next();
  EXPECT_TRUE(std::holds_alternative<rattach>(r.msg)) << to_string(r);
}

TEST(Dotl, ErrorsAreRlerrorsFromTheTable) {
  harness h;
  start_l(h);
  h.send(2, twalk{0, 1, {"nonesuch"}});
  EXPECT_EQ(errno_of_reply(h.next()), ENOENT);
  h.send(3, tgetattr{77, getattr_basic});
  EXPECT_EQ(errno_of_reply(h.next()), EBADF);
  // An unknown type, and the 9P2000 requests .L replaces.
  std::vector<std::uint8_t> unknown{7, 0, 0, 0, 200, 4, 0};
  ASSERT_TRUE(h.send_bytes(unknown));
  EXPECT_EQ(errno_of_reply(h.next()), EOPNOTSUPP);
  h.send(5, tstat{0});
  EXPECT_EQ(errno_of_reply(h.next()), EOPNOTSUPP);
  h.send(6, topen{0, oread});
  EXPECT_EQ(errno_of_reply(h.next()), EOPNOTSUPP);
  // A malformed body is a protocol error, and the connection lives.
  std::vector<std::uint8_t> bad{10, 0, 0, 0, 24, 7, 0, 0, 0, 0};
  ASSERT_TRUE(h.send_bytes(bad));
  EXPECT_EQ(errno_of_reply(h.next()), EPROTO);
  h.send(8, tgetattr{0, getattr_basic});
  reply_as<rgetattr>(h);
}

TEST(Dotl, AttachByNumberUsesTheUidsName) {
  harness h;
  h.send(notag, tversion{8192, "9P2000.L"});
  h.next();
  // The kernel's access=user attach: no name, the uid.
  auto me = local_name(::getuid());
  ASSERT_TRUE(me);
  h.send(1, tattach{0, nofid, "", "", ::getuid()});
  reply_as<rattach>(h);
  // The file it creates is its own, and Rgetattr gives its number back.
  h.send(2, twalk{0, 1, {}});
  h.next();
  h.send(3, tlcreate{1, "mine", 02 | 0100, 0640, 0});
  reply_as<rlcreate>(h);
  h.send(4, tgetattr{1, getattr_basic});
  auto g = reply_as<rgetattr>(h);
  EXPECT_EQ(g.uid, ::getuid());
  EXPECT_EQ(g.mode, S_IFREG | 0640u);
  // A uid without a name cannot attach.
  h.send(5, tattach{2, nofid, "", "", 0x7ffffff0});
  EXPECT_EQ(errno_of_reply(h.next()), EINVAL);
}

TEST(Dotl, GetattrOpenReadWrite) {
  harness h;
  start_l(h);
  h.send(2, tgetattr{0, getattr_basic});
  auto root = reply_as<rgetattr>(h);
  EXPECT_EQ(root.valid, getattr_basic);
  EXPECT_EQ(root.mode, S_IFDIR | 0777u);
  EXPECT_EQ(root.qid.type, qtdir);
  EXPECT_EQ(root.uid, 65534u);  // glenda is no user here
  h.send(3, twalk{0, 1, {"big"}});
  h.next();
  h.send(4, tgetattr{1, getattr_basic});
  auto big = reply_as<rgetattr>(h);
  EXPECT_EQ(big.mode & S_IFMT, unsigned(S_IFREG));
  EXPECT_EQ(big.size, 100u);
  h.send(5, tlopen{1, 0});  // O_RDONLY
  reply_as<rlopen>(h);
  h.send(6, tread{1, 90, 100});
  EXPECT_EQ(reply_as<rread>(h).data.size(), 10u);
  // A new file: Tlcreate, Twrite, then read back through another fid.
  h.send(7, twalk{0, 2, {}});
  h.next();
  h.send(8, tlcreate{2, "f", 02, 0644, 0});  // O_RDWR
  reply_as<rlcreate>(h);
  h.send(9, twrite{2, 0, "hello"});
  EXPECT_EQ(reply_as<rwrite>(h).count, 5u);
  h.send(10, tfsync{2, 0});
  reply_as<rfsync>(h);
  h.send(11, twalk{0, 3, {"f"}});
  h.next();
  h.send(12, tlopen{3, 0});
  reply_as<rlopen>(h);
  h.send(13, tread{3, 0, 100});
  EXPECT_EQ(reply_as<rread>(h).data, "hello");
}

TEST(Dotl, AWalkFromAnOpenDirectoryToAnotherFidIsAllowed) {
  // diodls -l reads a directory and walks from that same open fid to stat each entry
  // (diod's server allows it). In 9P2000 walk(5) refuses it (Session.FidRules).
  harness h;
  start_l(h);
  h.send(2, twalk{0, 1, {}});
  h.next();
  h.send(3, tlopen{1, 0200000});  // O_RDONLY|O_DIRECTORY
  reply_as<rlopen>(h);
  h.send(4, twalk{1, 2, {"big"}});
  EXPECT_EQ(reply_as<rwalk>(h).qids.size(), 1u);
  h.send(5, tgetattr{2, getattr_basic});
  EXPECT_EQ(reply_as<rgetattr>(h).size, 100u);
  // newfid starts unopened: a read of it is refused until it is opened itself.
  h.send(6, tread{2, 0, 10});
  EXPECT_EQ(errno_of_reply(h.next()), EBADF);
  h.send(7, twalk{1, 3, {}});  // a clone of the open fid, unopened too
  reply_as<rwalk>(h);
  h.send(8, tlopen{3, 0200000});
  reply_as<rlopen>(h);
  // The open fid itself cannot be moved.
  h.send(9, twalk{1, 1, {"big"}});
  EXPECT_EQ(errno_of_reply(h.next()), EBUSY);
  // And it still reads its directory.
  h.send(10, treaddir{1, 0, 8192});
  EXPECT_FALSE(entries(reply_as<rreaddir>(h)).empty());
}

TEST(Dotl, SetattrTruncatesAndRenames) {
  harness h;
  start_l(h);
  h.send(2, twalk{0, 1, {}});
  h.next();
  h.send(3, tlcreate{1, "f", 02, 0644, 0});
  h.next();
  h.send(4, twrite{1, 0, "0123456789"});
  h.next();
  // What the kernel sends for O_TRUNC: size 0 with mtime and ctime "now".
  h.send(5, tsetattr{1, attr_size | attr_mtime | attr_ctime, 0, 0, 0, 0, 0, 0, 0, 0});
  reply_as<rsetattr>(h);
  h.send(6, tgetattr{1, getattr_basic});
  EXPECT_EQ(reply_as<rgetattr>(h).size, 0u);
  // chmod.
  h.send(7, tsetattr{1, attr_mode, 0600, 0, 0, 0, 0, 0, 0, 0});
  reply_as<rsetattr>(h);
  h.send(8, tgetattr{1, getattr_basic});
  EXPECT_EQ(reply_as<rgetattr>(h).mode, S_IFREG | 0600u);
  // Rename within its directory: Trenameat is EOPNOTSUPP so that the kernel sends Trename.
  h.send(9, trenameat{0, "f", 0, "g"});
  EXPECT_EQ(errno_of_reply(h.next()), EOPNOTSUPP);
  h.send(10, trename{1, 0, "g"});
  reply_as<rrename>(h);
  h.send(11, twalk{0, 2, {"g"}});
  reply_as<rwalk>(h);
  // Into another directory: EXDEV.
  h.send(12, tmkdir{0, "d", 0755, 0});
  reply_as<rmkdir>(h);
  h.send(13, twalk{0, 3, {"d"}});
  h.next();
  h.send(14, trename{2, 3, "g"});
  EXPECT_EQ(errno_of_reply(h.next()), EXDEV);
}

// A tree of one ctl file that takes lines, with the default wstat (length 0 only).
class ctl_tree : public tree {
 public:
  std::expected<dir, std::string> attach(std::string_view, std::string_view) override { return root(); }
  std::expected<dir, std::string> walk1(const dir&, std::string_view name, std::string_view) override {
    if (name == "ctl") return ctl();
    return std::unexpected(std::string(err::not_found));
  }
  std::expected<std::vector<dir>, std::string> list(const dir&, std::string_view) override {
    return std::vector<dir>{ctl()};
  }
  void write(request r) override {
    got += r.get<twrite>().data;
    r.respond(rwrite{static_cast<std::uint32_t>(r.get<twrite>().data.size())});
  }
  static dir root() {
    dir d;
    d.qid = {qtdir, 0, 1};
    d.mode = dmdir | 0555;
    d.name = "/";
    d.uid = d.gid = "glenda";
    return d;
  }
  static dir ctl() {
    dir d;
    d.qid = {qtfile, 0, 2};
    d.mode = 0666;
    d.name = "ctl";
    d.uid = d.gid = "glenda";
    return d;
  }
  std::string got;
};

TEST(Dotl, SetattrSizeZeroOnACtlFile) {
  asio::io_context io;
  ctl_tree t;
  std::deque<fcall> out;
  auto s = std::make_shared<session>(io.get_executor(), t, server_options{}, [&out](wire_message m) {
    auto f = decode(m.joined(), dialect::p9_2000_l);
    ASSERT_TRUE(f) << f.error();
    out.push_back(std::move(*f));
  });
  auto send = [&](std::uint16_t tag, message m) {
    ASSERT_TRUE(s->handle(encode(fcall{tag, std::move(m)}, dialect::p9_2000_l)));
    io.poll();
    io.restart();
  };
  auto next = [&] {
    EXPECT_FALSE(out.empty());
    fcall f = out.empty() ? fcall{} : out.front();
    if (!out.empty()) out.pop_front();
    return f;
  };
  send(notag, tversion{8192, "9P2000.L"});
  next();
  send(1, tattach{0, nofid, "glenda", "", nofid});
  next();
  send(2, twalk{0, 1, {"ctl"}});
  next();
  // `echo kill > ctl` on a kernel mount: open for writing, truncate (size 0 + mtime +
  // ctime, on the open fid), write.
  send(3, tlopen{1, 01 | 01000});
  EXPECT_TRUE(std::holds_alternative<rlopen>(next().msg));
  send(4, tsetattr{1, attr_size | attr_mtime | attr_ctime, 0, 0, 0, 0, 0, 0, 0, 0});
  auto r = next();
  EXPECT_TRUE(std::holds_alternative<rsetattr>(r.msg)) << to_string(r);
  send(5, twrite{1, 0, "kill\n"});
  EXPECT_TRUE(std::holds_alternative<rwrite>(next().msg));
  EXPECT_EQ(t.got, "kill\n");
  // A time the client sets itself is a real wstat of mtime, which the tree refuses.
  send(6, tsetattr{1, attr_mtime | attr_mtime_set, 0, 0, 0, 0, 0, 0, 12345, 0});
  r = next();
  ASSERT_TRUE(std::holds_alternative<rlerror>(r.msg)) << to_string(r);
  EXPECT_EQ(std::get<rlerror>(r.msg).ecode, unsigned(EPERM));
  s->close();
}

TEST(Dotl, ReaddirOffsetsStayValidWhileTheDirectoryGrows) {
  harness h;
  start_l(h);
  h.send(2, twalk{0, 1, {}});
  h.next();
  for (int i = 0; i < 6; i++) {
    h.send(3, twalk{0, 2, {}});
    h.next();
    h.send(4, tlcreate{2, "f" + std::to_string(i), 0, 0644, 0});
    h.next();
    h.send(5, tclunk{2});
    h.next();
  }
  h.send(6, tlopen{1, 0200000});  // O_RDONLY|O_DIRECTORY
  reply_as<rlopen>(h);
  // Room for about three entries a time.
  std::vector<std::string> names;
  std::set<std::uint64_t> offsets;
  std::uint64_t offset = 0;
  for (int round = 0; round < 20; round++) {
    h.send(7, treaddir{1, offset, 80});
    auto got = entries(reply_as<rreaddir>(h));
    if (got.empty()) break;
    for (const auto& e : got) {
      names.push_back(e.name);
      EXPECT_TRUE(offsets.insert(e.offset).second) << "offset " << e.offset << " twice";
      EXPECT_EQ(e.type, e.name == "." || e.name == ".." || (e.qid.type & qtdir) ? 4 : 8) << e.name;
    }
    offset = got.back().offset;
    if (round == 0) {
      // The directory grows (a file created by another fid) while it is being read.
      h.send(8, twalk{0, 3, {}});
      h.next();
      h.send(9, tlcreate{3, "a-new-one", 0, 0644, 0});
      h.next();
    }
  }
  // Every entry of the listing taken at offset 0 came once, none skipped, none repeated.
  std::vector<std::string> want{".", "..", "big", "events", "f0", "f1", "f2", "f3", "f4", "f5"};
  std::multiset<std::string> have(names.begin(), names.end());
  EXPECT_EQ(have, std::multiset<std::string>(want.begin(), want.end()));
  EXPECT_EQ(names[0], ".");
  EXPECT_EQ(names[1], "..");
  // Reading from offset 0 again takes a new listing, with the new file.
  h.send(10, treaddir{1, 0, 8000});
  bool seen = false;
  for (const auto& e : entries(reply_as<rreaddir>(h))) seen = seen || e.name == "a-new-one";
  EXPECT_TRUE(seen);
  // Treaddir needs an open directory.
  h.send(11, twalk{0, 4, {"big"}});
  h.next();
  h.send(12, tlopen{4, 0});
  h.next();
  h.send(13, treaddir{4, 0, 8000});
  EXPECT_EQ(errno_of_reply(h.next()), ENOTDIR);
  h.send(14, twalk{0, 5, {}});
  h.next();
  h.send(15, treaddir{5, 0, 8000});
  EXPECT_EQ(errno_of_reply(h.next()), EBADF);
}

// Directory reads answered later, as galaxy-sched's nodes/NAME relay answers them (after
// its own 9P2000 round trip to the node), and in small pieces.
class relaying_ramfs : public ramfs {
 public:
  using ramfs::ramfs;
  void read(request r) override {
    if (!r.fid().is_dir()) return ramfs::read(std::move(r));
    held.push_back(std::move(r));
  }
  // Answers the held reads (each with at most two entries, as a small msize would).
  void release() {
    auto h = std::move(held);
    held.clear();
    for (auto& r : h) {
      if (r.done()) continue;
      auto all = list(r.fid().file(), r.uname());
      ASSERT_TRUE(all);
      std::uint64_t off = r.get<tread>().offset;
      // Entries by offset: the relay's far end keeps its own cursor; here offsets are
      // byte sums over whole entries, as read(5) requires.
      std::vector<std::uint8_t> out;
      std::uint64_t at = 0;
      int taken = 0;
      for (const auto& d : *all) {
        std::size_t n = dir_size(d);
        if (at >= off && taken < 2) {
          encode_dir(d, out);
          ++taken;
        }
        at += n;
      }
      r.respond(rread{std::string(out.begin(), out.end())});
    }
  }
  std::vector<request> held;
};

TEST(Dotl, ReaddirThroughARelayThatAnswersLater) {
  asio::io_context io;
  relaying_ramfs fs{ramfs_options{.owner = "glenda", .big_bytes = 100}};
  std::deque<fcall> out;
  auto s = std::make_shared<session>(io.get_executor(), fs, server_options{}, [&out](wire_message m) {
    auto f = decode(m.joined(), dialect::p9_2000_l);
    ASSERT_TRUE(f) << f.error();
    out.push_back(std::move(*f));
  });
  auto run = [&] {
    io.poll();
    io.restart();
  };
  auto send = [&](std::uint16_t tag, message m) {
    ASSERT_TRUE(s->handle(encode(fcall{tag, std::move(m)}, dialect::p9_2000_l)));
    run();
  };
  auto next = [&] {
    EXPECT_FALSE(out.empty());
    fcall f = out.empty() ? fcall{} : out.front();
    if (!out.empty()) out.pop_front();
    return f;
  };
  send(notag, tversion{8192, "9P2000.L"});
  next();
  send(1, tattach{0, nofid, "glenda", "", nofid});
  next();
  for (auto name : {"a", "b", "c"}) {
    send(2, twalk{0, 1, {}});
    next();
    send(3, tlcreate{1, name, 0, 0644, 0});
    next();
    send(4, tclunk{1});
    next();
  }
  send(5, twalk{0, 1, {}});
  next();
  send(6, tlopen{1, 0});
  next();
  send(7, treaddir{1, 0, 8000});
  // Five entries two at a time, then the empty read: four reads of the tree, each held.
  int rounds = 0;
  while (out.empty() && rounds < 10) {
    ASSERT_EQ(fs.held.size(), 1u);
    fs.release();
    run();
    ++rounds;
  }
  EXPECT_EQ(rounds, 4);
  auto r = next();
  ASSERT_TRUE(std::holds_alternative<rreaddir>(r.msg)) << to_string(r);
  std::vector<std::string> names;
  for (const auto& e : entries(std::get<rreaddir>(r.msg))) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{".", "..", "events", "big", "a", "b", "c"}));
  // A Tflush while the listing is being read: answered at once, and nothing follows.
  send(8, treaddir{1, 0, 8000});
  ASSERT_EQ(fs.held.size(), 1u);
  fs.release();
  run();
  send(9, tflush{8});
  r = next();
  EXPECT_TRUE(std::holds_alternative<rflush>(r.msg)) << to_string(r);
  EXPECT_TRUE(fs.held.empty() || fs.held.front().done());
  fs.release();
  run();
  EXPECT_TRUE(out.empty()) << to_string(out.front());
  s->close();
}

TEST(Dotl, FlushOfAParkedReadIsAnsweredAtOnce) {
  harness h;
  start_l(h);
  h.send(2, twalk{0, 1, {"events"}});
  h.next();
  h.send(3, tlopen{1, 0});
  reply_as<rlopen>(h);
  h.send(4, tread{1, 0, 100});
  EXPECT_TRUE(h.out.empty());  // parked
  EXPECT_EQ(h.fs.parked_readers(), 1u);
  h.send(5, tflush{4});
  auto r = h.next();
  EXPECT_EQ(r.tag, 5);
  EXPECT_TRUE(std::holds_alternative<rflush>(r.msg)) << to_string(r);
  EXPECT_EQ(h.fs.parked_readers(), 0u);
  EXPECT_TRUE(h.out.empty());  // the read is never answered
  // A flushed Treaddir leaves nothing behind under its tag either.
  h.send(6, twalk{0, 2, {}});
  h.next();
  h.send(7, tlopen{2, 0});
  h.next();
  h.send(4, treaddir{2, 0, 8000});
  reply_as<rreaddir>(h);
}

TEST(Dotl, MkdirLeavesDfidAndClunksItsClone) {
  harness h;
  start_l(h);
  int clunks = h.fs.clunks;
  h.send(2, tmkdir{0, "d", 0755, 0});
  auto m = reply_as<rmkdir>(h);
  EXPECT_EQ(m.qid.type, qtdir);
  EXPECT_EQ(h.fs.clunks, clunks + 1);  // the clone the Tcreate ran on
  // fid 0 is still the root: it walks to d.
  h.send(3, twalk{0, 1, {"d"}});
  auto w = reply_as<rwalk>(h);
  ASSERT_EQ(w.qids.size(), 1u);
  EXPECT_EQ(w.qids[0], m.qid);
  h.send(4, tmkdir{0, "d", 0755, 0});
  EXPECT_EQ(errno_of_reply(h.next()), EEXIST);
  h.send(5, tmkdir{0, "..", 0755, 0});
  EXPECT_EQ(errno_of_reply(h.next()), EINVAL);
  // Tunlinkat is EOPNOTSUPP: the kernel then removes by Tremove.
  h.send(6, tunlinkat{0, "d", at_removedir});
  EXPECT_EQ(errno_of_reply(h.next()), EOPNOTSUPP);
  h.send(7, tremove{1});
  EXPECT_TRUE(std::holds_alternative<rremove>(h.next().msg));
  h.send(8, twalk{0, 2, {"d"}});
  EXPECT_EQ(errno_of_reply(h.next()), ENOENT);
}

TEST(Dotl, RequestsAnsweredWithoutTheTree) {
  harness h;
  start_l(h);
  h.send(2, tstatfs{0});
  auto s = reply_as<rstatfs>(h);
  EXPECT_EQ(s.type, 0x01021997u);  // V9FS_MAGIC
  EXPECT_EQ(s.bsize, 4096u);
  EXPECT_EQ(s.namelen, 255u);
  h.send(3, tstatfs{9});
  EXPECT_EQ(errno_of_reply(h.next()), EBADF);
  h.send(4, txattrwalk{0, 1, ""});
  EXPECT_EQ(errno_of_reply(h.next()), EOPNOTSUPP);
  h.send(5, txattrwalk{0, 1, "security.selinux"});
  EXPECT_EQ(errno_of_reply(h.next()), ENODATA);
  h.send(6, txattrcreate{0, "user.a", 1, 0});
  EXPECT_EQ(errno_of_reply(h.next()), EOPNOTSUPP);
  h.send(7, tsymlink{0, "l", "/etc", 0});
  EXPECT_EQ(errno_of_reply(h.next()), EPERM);
  h.send(8, tmknod{0, "n", 010644, 0, 0, 0});
  EXPECT_EQ(errno_of_reply(h.next()), EPERM);
  h.send(9, tlink{0, 0, "h"});
  EXPECT_EQ(errno_of_reply(h.next()), EPERM);
  h.send(10, treadlink{0});
  EXPECT_EQ(errno_of_reply(h.next()), EINVAL);
  h.send(11, tlock{0, 1, 0, 0, 0, 1, "x"});
  EXPECT_EQ(errno_of_reply(h.next()), ENOLCK);
  h.send(12, tgetlock{0, 1, 0, 0, 1, "x"});
  EXPECT_EQ(errno_of_reply(h.next()), ENOLCK);
  // None of them made a fid.
  EXPECT_EQ(h.s->fids(), 1u);
}

TEST(Dotl, EveryServerErrorHasAnErrno) {
  // Every string of srv9p/errors.hpp maps to an errno by the table, none to the default.
  for (std::string_view e :
       {err::botch, err::unknown_fid, err::fid_in_use, err::dup_tag, err::walk_open, err::walk_no_dir,
        err::too_many_wnames, err::not_found, err::exists, err::perm, err::is_dir, err::not_dir, err::not_open,
        err::already_open, err::bad_offset, err::bad_mode, err::not_empty, err::no_create, err::no_remove,
        err::no_wstat, err::bad_name, err::no_auth, err::auth_required, err::auth_fid, err::not_afid,
        err::nofid_afid, err::no_credential, err::cred_given, err::afid_other_name, err::cred_expired,
        err::cred_replayed, err::cred_rewound, err::cred_invalid, err::cred_malformed, err::cred_too_long,
        err::munged_unreachable, err::may_not_attach, err::cred_unbound, err::cred_other_server, err::bad_uname,
        err::too_many_afids, err::cred_bytes_held, err::uid_no_name, err::too_many_fids, err::too_many_requests,
        err::bad_msize, err::not_version, err::no_attach, err::interrupted, err::hungup, err::io, err::read_only,
        err::write_only, err::bad_ctl, err::no_space, err::handoff_trailing, err::handoff_refused}) {
    bool known = false;
    errno_of(e, &known);
    EXPECT_TRUE(known) << e;
  }
  EXPECT_EQ(errno_of("uid 5 (bob) may not attach as root"), EPERM);
  EXPECT_EQ(errno_of("uid 5 has no user name on this host"), EINVAL);
  EXPECT_EQ(errno_of("too many fids on this connection: limit 9"), EMFILE);
  EXPECT_EQ(errno_of("botch: unknown message type 3"), EOPNOTSUPP);
  EXPECT_EQ(errno_of("botch: Tstat: field runs past end of message"), EPROTO);
  EXPECT_EQ(errno_of("fid unknown or out of range"), EBADF);
  bool known = true;
  EXPECT_EQ(errno_of("something else entirely", &known), EIO);
  EXPECT_FALSE(known);
}

}  // namespace
}  // namespace srv9p
