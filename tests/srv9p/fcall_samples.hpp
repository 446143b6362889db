#pragma once
// Sample 9P2000 messages shared by the codec tests (fcall_test.cpp, fcall_text_test.cpp):
// one golden sample or more per message type, each with its wire bytes written by hand
// from intro(5) and stat(5) and its text form, plus a generator of random messages.
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
    default: f.msg = rwstat{}; break;
  }
  return f;
}

}  // namespace srv9p::testing
