#pragma once
// Sample 9P messages shared by the codec tests (fcall_test.cpp, fcall_text_test.cpp):
// one golden sample or more per message type, each with its wire bytes written by hand
// from intro(5) and stat(5) and its text form, plus a generator of random messages. The
// 9P2000.L samples' bytes were written by a script of their own from the formats in
// Linux's net/9p/client.c ("dsddd" and the like), not by srv9p's codec.
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "srv9p/fcall.hpp"

namespace srv9p::testing {

struct sample {
  std::string_view name;  // a file name for the fuzz corpus too
  fcall call;
  std::string_view hex;   // the wire bytes, two hex digits per byte, spaces ignored
  std::string_view text;  // to_string()
  dialect d = dialect::p9_2000;  // the dialect that decodes it (9P2000.L for .L messages)
};

inline std::vector<std::uint8_t> from_hex(std::string_view hex) {
  std::vector<std::uint8_t> out;
  int half = -1;
  for (char c : hex) {
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) continue;
    if (half < 0) {
      half = v;
    } else {
      out.push_back(static_cast<std::uint8_t>(half << 4 | v));
      half = -1;
    }
  }
  return out;
}

// The stat of Rstat below: a 6-byte file "ctl" owned by glenda, group sys, mode 0644.
inline dir sample_dir() {
  dir d;
  d.qid = {.type = qtfile, .version = 1, .path = 0x42};
  d.mode = 0644;
  d.atime = 1000000000;
  d.mtime = 1000000001;
  d.length = 6;
  d.name = "ctl";
  d.uid = "glenda";
  d.gid = "sys";
  return d;
}

inline dir truncate_dir() {
  dir d = dont_touch_dir();
  d.length = 0;
  return d;
}

inline const std::vector<sample>& samples() {
  static const std::vector<sample> s = {
      {"tversion", {0xFFFF, tversion{8192, "9P2000"}},
       "13 00 00 00 64 ff ff 00 20 00 00 06 00 39 50 32 30 30 30",
       "Tversion tag=65535 msize=8192 version=9P2000"},
      {"rversion", {0xFFFF, rversion{8192, "9P2000"}},
       "13 00 00 00 65 ff ff 00 20 00 00 06 00 39 50 32 30 30 30",
       "Rversion tag=65535 msize=8192 version=9P2000"},
      {"tauth", {1, tauth{5, "glenda", ""}},
       "15 00 00 00 66 01 00 05 00 00 00 06 00 67 6c 65 6e 64 61 00 00",
       "Tauth tag=1 afid=5 uname=glenda aname=''"},
      {"rauth", {1, rauth{{qtauth, 0, 0x0102030405060708}}},
       "14 00 00 00 67 01 00 08 00 00 00 00 08 07 06 05 04 03 02 01",
       "Rauth tag=1 aqid=(0102030405060708 0 A)"},
      {"tattach", {2, tattach{0, nofid, "glenda", "/"}},
       "1a 00 00 00 68 02 00 00 00 00 00 ff ff ff ff 06 00 67 6c 65 6e 64 61 01 00 2f",
       "Tattach tag=2 fid=0 afid=4294967295 uname=glenda aname=/"},
      {"rattach", {2, rattach{{qtdir, 1, 0x2a}}},
       "14 00 00 00 69 02 00 80 01 00 00 00 2a 00 00 00 00 00 00 00",
       "Rattach tag=2 qid=(000000000000002a 1 d)"},
      {"rerror", {3, rerror{"file does not exist"}},
       "1c 00 00 00 6b 03 00 13 00 66 69 6c 65 20 64 6f 65 73 20 6e 6f 74 20 65 78 69 73 74",
       "Rerror tag=3 ename='file does not exist'"},
      {"tflush", {4, tflush{3}}, "09 00 00 00 6c 04 00 03 00", "Tflush tag=4 oldtag=3"},
      {"rflush", {4, rflush{}}, "07 00 00 00 6d 04 00", "Rflush tag=4"},
      {"twalk", {5, twalk{0, 1, {"usr", "glenda"}}},
       "1e 00 00 00 6e 05 00 00 00 00 00 01 00 00 00 02 00 03 00 75 73 72 06 00 67 6c 65 6e 64 61",
       "Twalk tag=5 fid=0 newfid=1 wname=usr wname=glenda"},
      {"rwalk", {5, rwalk{{{qtdir, 0, 1}, {qtfile, 3, 2}}}},
       "23 00 00 00 6f 05 00 02 00"
       " 80 00 00 00 00 01 00 00 00 00 00 00 00"
       " 00 03 00 00 00 02 00 00 00 00 00 00 00",
       "Rwalk tag=5 qid=(0000000000000001 0 d) qid=(0000000000000002 3 )"},
      {"twalk_clone", {6, twalk{1, 2, {}}}, "11 00 00 00 6e 06 00 01 00 00 00 02 00 00 00 00 00",
       "Twalk tag=6 fid=1 newfid=2"},
      {"rwalk_clone", {6, rwalk{}}, "09 00 00 00 6f 06 00 00 00", "Rwalk tag=6"},
      {"topen", {7, topen{1, otrunc | owrite}}, "0c 00 00 00 70 07 00 01 00 00 00 11",
       "Topen tag=7 fid=1 mode=17"},
      {"ropen", {7, ropen{{qtfile, 0, 0x10}, 8168}},
       "18 00 00 00 71 07 00 00 00 00 00 00 10 00 00 00 00 00 00 00 e8 1f 00 00",
       "Ropen tag=7 qid=(0000000000000010 0 ) iounit=8168"},
      {"tcreate", {8, tcreate{1, "new", dmdir | 0755, oread}},
       "15 00 00 00 72 08 00 01 00 00 00 03 00 6e 65 77 ed 01 00 80 00",
       "Tcreate tag=8 fid=1 name=new perm=020000000755 mode=0"},
      {"rcreate", {8, rcreate{{qtdir, 0, 0x11}, 0}},
       "18 00 00 00 73 08 00 80 00 00 00 00 11 00 00 00 00 00 00 00 00 00 00 00",
       "Rcreate tag=8 qid=(0000000000000011 0 d) iounit=0"},
      {"tread", {9, tread{1, 0x100000000, 8192}},
       "17 00 00 00 74 09 00 01 00 00 00 00 00 00 00 01 00 00 00 00 20 00 00",
       "Tread tag=9 fid=1 offset=4294967296 count=8192"},
      {"rread", {9, rread{"hello\n"}}, "11 00 00 00 75 09 00 06 00 00 00 68 65 6c 6c 6f 0a",
       "Rread tag=9 count=6 data='hello\\n'"},
      {"rread_eof", {9, rread{""}}, "0b 00 00 00 75 09 00 00 00 00 00", "Rread tag=9 count=0 data=''"},
      {"twrite", {10, twrite{2, 5, "kill\n"}},
       "1c 00 00 00 76 0a 00 02 00 00 00 05 00 00 00 00 00 00 00 05 00 00 00 6b 69 6c 6c 0a",
       "Twrite tag=10 fid=2 offset=5 count=5 data='kill\\n'"},
      {"rwrite", {10, rwrite{5}}, "0b 00 00 00 77 0a 00 05 00 00 00", "Rwrite tag=10 count=5"},
      {"tclunk", {11, tclunk{2}}, "0b 00 00 00 78 0b 00 02 00 00 00", "Tclunk tag=11 fid=2"},
      {"rclunk", {11, rclunk{}}, "07 00 00 00 79 0b 00", "Rclunk tag=11"},
      {"tremove", {12, tremove{3}}, "0b 00 00 00 7a 0c 00 03 00 00 00", "Tremove tag=12 fid=3"},
      {"rremove", {12, rremove{}}, "07 00 00 00 7b 0c 00", "Rremove tag=12"},
      {"tstat", {13, tstat{1}}, "0b 00 00 00 7c 0d 00 01 00 00 00", "Tstat tag=13 fid=1"},
      {"rstat", {13, rstat{sample_dir()}},
       "46 00 00 00 7d 0d 00"
       " 3d 00"                                    // n
       " 3b 00"                                    // size
       " 00 00"                                    // type
       " 00 00 00 00"                              // dev
       " 00 01 00 00 00 42 00 00 00 00 00 00 00"   // qid
       " a4 01 00 00"                              // mode 0644
       " 00 ca 9a 3b"                              // atime 1000000000
       " 01 ca 9a 3b"                              // mtime
       " 06 00 00 00 00 00 00 00"                  // length
       " 03 00 63 74 6c"                           // name ctl
       " 06 00 67 6c 65 6e 64 61"                  // uid glenda
       " 03 00 73 79 73"                           // gid sys
       " 00 00",                                   // muid ''
       "Rstat tag=13 name=ctl uid=glenda gid=sys muid='' mode=0644 length=6"
       " qid=(0000000000000042 1 ) atime=1000000000 mtime=1000000001 type=0 dev=0"},
      {"twstat", {14, twstat{1, truncate_dir()}},
       "3e 00 00 00 7e 0e 00"
       " 01 00 00 00"                              // fid
       " 31 00"                                    // n
       " 2f 00"                                    // size
       " ff ff"                                    // type
       " ff ff ff ff"                              // dev
       " ff ff ff ff ff ff ff ff ff ff ff ff ff"   // qid
       " ff ff ff ff ff ff ff ff ff ff ff ff"      // mode atime mtime
       " 00 00 00 00 00 00 00 00"                  // length 0
       " 00 00 00 00 00 00 00 00",                 // four empty strings
       "Twstat tag=14 fid=1 length=0"},
      {"rwstat", {14, rwstat{}}, "07 00 00 00 7f 0e 00", "Rwstat tag=14"},
      // ---- 9P2000.L ----
      {"tauth_l", {1, tauth{5, "", "", 1000}},
       "13 00 00 00 66 01 00 05 00 00 00 00 00 00 00 e8 03 00 00",
       "Tauth tag=1 afid=5 uname='' aname='' n_uname=1000", dialect::p9_2000_l},
      {"tattach_l", {2, tattach{0, nofid, "nobody", "", nofid}},
       "1d 00 00 00 68 02 00 00 00 00 00 ff ff ff ff 06 00 6e 6f 62 6f 64 79 00 00 ff ff ff ff",
       "Tattach tag=2 fid=0 afid=4294967295 uname=nobody aname=''", dialect::p9_2000_l},
      {"rlerror", {3, rlerror{2}},
       "0b 00 00 00 07 03 00 02 00 00 00",
       "Rlerror tag=3 ecode=2", dialect::p9_2000_l},
      {"tstatfs", {4, tstatfs{1}},
       "0b 00 00 00 08 04 00 01 00 00 00",
       "Tstatfs tag=4 fid=1", dialect::p9_2000_l},
      {"rstatfs", {4, rstatfs{0x01021997, 4096, 1, 2, 3, 4, 5, 6, 255}},
       "43 00 00 00 09 04 00 97 19 02 01 00 10 00 00 01 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 05 00 00 00 00 00 00 00 06 00 00 00 00 00 00 00 ff 00 00 00",
       "Rstatfs tag=4 type=16914839 bsize=4096 blocks=1 bfree=2 bavail=3 files=4 ffree=5 fsid=6 namelen=255", dialect::p9_2000_l},
      {"tlopen", {5, tlopen{1, 01001}},
       "0f 00 00 00 0c 05 00 01 00 00 00 01 02 00 00",
       "Tlopen tag=5 fid=1 flags=513", dialect::p9_2000_l},
      {"rlopen", {5, rlopen{{qtfile, 2, 0x10}, 0}},
       "18 00 00 00 0d 05 00 00 02 00 00 00 10 00 00 00 00 00 00 00 00 00 00 00",
       "Rlopen tag=5 qid=(0000000000000010 2 ) iounit=0", dialect::p9_2000_l},
      {"tlcreate", {6, tlcreate{1, "out", 01102, 0644, 1000}},
       "1c 00 00 00 0e 06 00 01 00 00 00 03 00 6f 75 74 42 02 00 00 a4 01 00 00 e8 03 00 00",
       "Tlcreate tag=6 fid=1 name=out flags=578 mode=0644 gid=1000", dialect::p9_2000_l},
      {"rlcreate", {6, rlcreate{{qtfile, 0, 0x11}, 8168}},
       "18 00 00 00 0f 06 00 00 00 00 00 00 11 00 00 00 00 00 00 00 e8 1f 00 00",
       "Rlcreate tag=6 qid=(0000000000000011 0 ) iounit=8168", dialect::p9_2000_l},
      {"tsymlink", {7, tsymlink{1, "ln", "/etc", 0}},
       "19 00 00 00 10 07 00 01 00 00 00 02 00 6c 6e 04 00 2f 65 74 63 00 00 00 00",
       "Tsymlink tag=7 fid=1 name=ln symtgt=/etc gid=0", dialect::p9_2000_l},
      {"rsymlink", {7, rsymlink{{qtfile, 0, 0x12}}},
       "14 00 00 00 11 07 00 00 00 00 00 00 12 00 00 00 00 00 00 00",
       "Rsymlink tag=7 qid=(0000000000000012 0 )", dialect::p9_2000_l},
      {"tmknod", {8, tmknod{1, "fifo", 010644, 0, 0, 0}},
       "21 00 00 00 12 08 00 01 00 00 00 04 00 66 69 66 6f a4 11 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
       "Tmknod tag=8 dfid=1 name=fifo mode=010644 major=0 minor=0 gid=0", dialect::p9_2000_l},
      {"rmknod", {8, rmknod{{qtfile, 0, 0x13}}},
       "14 00 00 00 13 08 00 00 00 00 00 00 13 00 00 00 00 00 00 00",
       "Rmknod tag=8 qid=(0000000000000013 0 )", dialect::p9_2000_l},
      {"trename", {9, trename{2, 1, "b"}},
       "12 00 00 00 14 09 00 02 00 00 00 01 00 00 00 01 00 62",
       "Trename tag=9 fid=2 dfid=1 name=b", dialect::p9_2000_l},
      {"rrename", {9, rrename{}},
       "07 00 00 00 15 09 00",
       "Rrename tag=9", dialect::p9_2000_l},
      {"treadlink", {10, treadlink{2}},
       "0b 00 00 00 16 0a 00 02 00 00 00",
       "Treadlink tag=10 fid=2", dialect::p9_2000_l},
      {"rreadlink", {10, rreadlink{"/etc"}},
       "0d 00 00 00 17 0a 00 04 00 2f 65 74 63",
       "Rreadlink tag=10 target=/etc", dialect::p9_2000_l},
      {"tgetattr", {11, tgetattr{1, getattr_basic}},
       "13 00 00 00 18 0b 00 01 00 00 00 ff 07 00 00 00 00 00 00",
       "Tgetattr tag=11 fid=1 request_mask=2047", dialect::p9_2000_l},
      {"rgetattr", {11, rgetattr{getattr_basic, {qtdir, 0, 0x2a}, 040755, 1000, 1000, 2, 0, 0, 4096, 0, 1000000000, 0, 1000000001, 0, 1000000001, 0, 0, 0, 0, 0}},
       "a0 00 00 00 19 0b 00 ff 07 00 00 00 00 00 00 80 00 00 00 00 2a 00 00 00 00 00 00 00 ed 41 00 00 e8 03 00 00 e8 03 00 00 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 10 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ca 9a 3b 00 00 00 00 00 00 00 00 00 00 00 00 01 ca 9a 3b 00 00 00 00 00 00 00 00 00 00 00 00 01 ca 9a 3b 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
       "Rgetattr tag=11 valid=2047 qid=(000000000000002a 0 d) mode=040755 uid=1000 gid=1000 nlink=2 rdev=0 size=0 blksize=4096 blocks=0 atime_sec=1000000000 atime_nsec=0 mtime_sec=1000000001 mtime_nsec=0 ctime_sec=1000000001 ctime_nsec=0 btime_sec=0 btime_nsec=0 gen=0 data_version=0", dialect::p9_2000_l},
      {"tsetattr", {12, tsetattr{1, attr_size | attr_mtime | attr_ctime, 0, 0, 0, 0, 0, 0, 0, 0}},
       "43 00 00 00 1a 0c 00 01 00 00 00 68 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
       "Tsetattr tag=12 fid=1 valid=104 mode=00 uid=0 gid=0 size=0 atime_sec=0 atime_nsec=0 mtime_sec=0 mtime_nsec=0", dialect::p9_2000_l},
      {"rsetattr", {12, rsetattr{}},
       "07 00 00 00 1b 0c 00",
       "Rsetattr tag=12", dialect::p9_2000_l},
      {"txattrwalk", {13, txattrwalk{1, 2, "security.selinux"}},
       "21 00 00 00 1e 0d 00 01 00 00 00 02 00 00 00 10 00 73 65 63 75 72 69 74 79 2e 73 65 6c 69 6e 75 78",
       "Txattrwalk tag=13 fid=1 newfid=2 name=security.selinux", dialect::p9_2000_l},
      {"rxattrwalk", {13, rxattrwalk{0}},
       "0f 00 00 00 1f 0d 00 00 00 00 00 00 00 00 00",
       "Rxattrwalk tag=13 size=0", dialect::p9_2000_l},
      {"txattrcreate", {14, txattrcreate{2, "user.a", 3, 0}},
       "1f 00 00 00 20 0e 00 02 00 00 00 06 00 75 73 65 72 2e 61 03 00 00 00 00 00 00 00 00 00 00 00",
       "Txattrcreate tag=14 fid=2 name=user.a attr_size=3 flags=0", dialect::p9_2000_l},
      {"rxattrcreate", {14, rxattrcreate{}},
       "07 00 00 00 21 0e 00",
       "Rxattrcreate tag=14", dialect::p9_2000_l},
      {"treaddir", {15, treaddir{1, 2, 8168}},
       "17 00 00 00 28 0f 00 01 00 00 00 02 00 00 00 00 00 00 00 e8 1f 00 00",
       "Treaddir tag=15 fid=1 offset=2 count=8168", dialect::p9_2000_l},
      {"rreaddir", {15, rreaddir{std::string("\x00\x00\x00\x00\x00\x42\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x08\x03\x00" "ctl", 27)}},
       "26 00 00 00 29 0f 00 1b 00 00 00 00 00 00 00 00 42 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 08 03 00 63 74 6c",
       "Rreaddir tag=15 count=27 data='\\x00\\x00\\x00\\x00\\x00B\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x03\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x08\\x03\\x00ctl'", dialect::p9_2000_l},
      {"tfsync", {16, tfsync{1, 0}},
       "0f 00 00 00 32 10 00 01 00 00 00 00 00 00 00",
       "Tfsync tag=16 fid=1 datasync=0", dialect::p9_2000_l},
      {"rfsync", {16, rfsync{}},
       "07 00 00 00 33 10 00",
       "Rfsync tag=16", dialect::p9_2000_l},
      {"tlock", {17, tlock{1, 1, 0, 0, 0, 42, "host"}},
       "2a 00 00 00 34 11 00 01 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 2a 00 00 00 04 00 68 6f 73 74",
       "Tlock tag=17 fid=1 type=1 flags=0 start=0 length=0 proc_id=42 client_id=host", dialect::p9_2000_l},
      {"rlock", {17, rlock{0}},
       "08 00 00 00 35 11 00 00",
       "Rlock tag=17 status=0", dialect::p9_2000_l},
      {"tgetlock", {18, tgetlock{1, 0, 0, 0, 42, "host"}},
       "26 00 00 00 36 12 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 2a 00 00 00 04 00 68 6f 73 74",
       "Tgetlock tag=18 fid=1 type=0 start=0 length=0 proc_id=42 client_id=host", dialect::p9_2000_l},
      {"rgetlock", {18, rgetlock{2, 0, 0, 42, "host"}},
       "22 00 00 00 37 12 00 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 2a 00 00 00 04 00 68 6f 73 74",
       "Rgetlock tag=18 type=2 start=0 length=0 proc_id=42 client_id=host", dialect::p9_2000_l},
      {"tlink", {19, tlink{1, 2, "hard"}},
       "15 00 00 00 46 13 00 01 00 00 00 02 00 00 00 04 00 68 61 72 64",
       "Tlink tag=19 dfid=1 fid=2 name=hard", dialect::p9_2000_l},
      {"rlink", {19, rlink{}},
       "07 00 00 00 47 13 00",
       "Rlink tag=19", dialect::p9_2000_l},
      {"tmkdir", {20, tmkdir{1, "d", 0755, 1000}},
       "16 00 00 00 48 14 00 01 00 00 00 01 00 64 ed 01 00 00 e8 03 00 00",
       "Tmkdir tag=20 dfid=1 name=d mode=0755 gid=1000", dialect::p9_2000_l},
      {"rmkdir", {20, rmkdir{{qtdir, 0, 0x14}}},
       "14 00 00 00 49 14 00 80 00 00 00 00 14 00 00 00 00 00 00 00",
       "Rmkdir tag=20 qid=(0000000000000014 0 d)", dialect::p9_2000_l},
      {"trenameat", {21, trenameat{1, "a", 1, "b"}},
       "15 00 00 00 4a 15 00 01 00 00 00 01 00 61 01 00 00 00 01 00 62",
       "Trenameat tag=21 olddirfid=1 oldname=a newdirfid=1 newname=b", dialect::p9_2000_l},
      {"rrenameat", {21, rrenameat{}},
       "07 00 00 00 4b 15 00",
       "Rrenameat tag=21", dialect::p9_2000_l},
      {"tunlinkat", {22, tunlinkat{1, "d", at_removedir}},
       "12 00 00 00 4c 16 00 01 00 00 00 01 00 64 00 02 00 00",
       "Tunlinkat tag=22 dirfid=1 name=d flags=512", dialect::p9_2000_l},
      {"runlinkat", {22, runlinkat{}},
       "07 00 00 00 4d 16 00",
       "Runlinkat tag=22", dialect::p9_2000_l},

  };
  return s;
}

// ---- random messages ----

inline std::string random_string(std::mt19937_64& rng, std::size_t max_len) {
  std::string s(rng() % (max_len + 1), '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

inline qid random_qid(std::mt19937_64& rng) {
  return {.type = static_cast<std::uint8_t>(rng()), .version = static_cast<std::uint32_t>(rng()), .path = rng()};
}

inline dir random_dir(std::mt19937_64& rng) {
  dir d;
  d.type = static_cast<std::uint16_t>(rng());
  d.dev = static_cast<std::uint32_t>(rng());
  d.qid = random_qid(rng);
  d.mode = static_cast<std::uint32_t>(rng());
  d.atime = static_cast<std::uint32_t>(rng());
  d.mtime = static_cast<std::uint32_t>(rng());
  d.length = rng();
  d.name = random_string(rng, 30);
  d.uid = random_string(rng, 10);
  d.gid = random_string(rng, 10);
  d.muid = random_string(rng, 10);
  return d;
}

inline void random_field(std::mt19937_64& rng, std::uint8_t& v) { v = static_cast<std::uint8_t>(rng()); }
inline void random_field(std::mt19937_64& rng, std::uint32_t& v) { v = static_cast<std::uint32_t>(rng()); }
inline void random_field(std::mt19937_64& rng, std::uint64_t& v) { v = rng(); }
inline void random_field(std::mt19937_64& rng, std::string& v) { v = random_string(rng, 20); }
inline void random_field(std::mt19937_64& rng, qid& v) { v = random_qid(rng); }

// A random 9P2000.L message of variant alternative index (27 and up).
template <std::size_t I>
message random_dotl_at(std::mt19937_64& r) {
  std::variant_alternative_t<27 + I, message> m;
  if constexpr (requires { m.tie(); }) {
    std::apply([&r](auto&... f) { (random_field(r, f), ...); }, m.tie());
  } else {
    m.data = random_string(r, 300);  // rreaddir
  }
  return m;
}
template <std::size_t... I>
message random_dotl_of(std::mt19937_64& rng, std::size_t index, std::index_sequence<I...>) {
  using fn = message (*)(std::mt19937_64&);
  static constexpr fn make[] = {&random_dotl_at<I>...};
  return make[index - 27](rng);
}
inline message random_dotl(std::mt19937_64& rng, std::size_t index) {
  return random_dotl_of(rng, index, std::make_index_sequence<std::variant_size_v<message> - 27>());
}

// A random message of variant alternative index (0 .. variant_size - 1), within the limits
// decode() accepts (at most 16 walk names and qids).
inline fcall random_fcall(std::mt19937_64& rng, std::size_t index) {
  auto u32 = [&] { return static_cast<std::uint32_t>(rng()); };
  auto str = [&] { return random_string(rng, 20); };
  fcall f;
  f.tag = static_cast<std::uint16_t>(rng());
  switch (index) {
    case 0: f.msg = tversion{u32(), str()}; break;
    case 1: f.msg = rversion{u32(), str()}; break;
    case 2: f.msg = tauth{u32(), str(), str()}; break;
    case 3: f.msg = rauth{random_qid(rng)}; break;
    case 4: f.msg = tattach{u32(), u32(), str(), str()}; break;
    case 5: f.msg = rattach{random_qid(rng)}; break;
    case 6: f.msg = rerror{str()}; break;
    case 7: f.msg = tflush{static_cast<std::uint16_t>(rng())}; break;
    case 8: f.msg = rflush{}; break;
    case 9: {
      twalk m{u32(), u32(), {}};
      m.wnames.resize(rng() % (maxwelem + 1));
      for (auto& w : m.wnames) w = str();
      f.msg = std::move(m);
      break;
    }
    case 10: {
      rwalk m;
      m.qids.resize(rng() % (maxwelem + 1));
      for (auto& q : m.qids) q = random_qid(rng);
      f.msg = std::move(m);
      break;
    }
    case 11: f.msg = topen{u32(), static_cast<std::uint8_t>(rng())}; break;
    case 12: f.msg = ropen{random_qid(rng), u32()}; break;
    case 13: f.msg = tcreate{u32(), str(), u32(), static_cast<std::uint8_t>(rng())}; break;
    case 14: f.msg = rcreate{random_qid(rng), u32()}; break;
    case 15: f.msg = tread{u32(), rng(), u32()}; break;
    case 16: f.msg = rread{random_string(rng, 300)}; break;
    case 17: f.msg = twrite{u32(), rng(), random_string(rng, 300)}; break;
    case 18: f.msg = rwrite{u32()}; break;
    case 19: f.msg = tclunk{u32()}; break;
    case 20: f.msg = rclunk{}; break;
    case 21: f.msg = tremove{u32()}; break;
    case 22: f.msg = rremove{}; break;
    case 23: f.msg = tstat{u32()}; break;
    case 24: f.msg = rstat{random_dir(rng)}; break;
    case 25: f.msg = twstat{u32(), random_dir(rng)}; break;
    case 26: f.msg = rwstat{}; break;
    default: f.msg = random_dotl(rng, index); break;
  }
  return f;
}

// The dialect that decodes a message of variant alternative index.
inline dialect dialect_of(std::size_t index) { return index >= 27 ? dialect::p9_2000_l : dialect::p9_2000; }

}  // namespace srv9p::testing
