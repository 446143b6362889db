// The local cluster's record and process handling (ctl/cluster.hpp).
//
// STATE/cluster is one key=value per line (the value runs to the end of the line, so a
// path may hold blanks), '#' lines are comments:
//
//   state=/tmp/galaxy-0
//   sched_addr=tcp!127.0.0.1!41234   sched_pid=...   sched_start=...
//   nodes=2   node1_name=n1   node1_addr=...   node1_pid=...   node1_start=...
//   mount=/galaxy   mount_pid=...   mount_start=...
#include "ctl/ctlmsg.hpp"
#include "ctl/cluster.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/core.h>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

namespace ctl::cluster {
namespace fs = std::filesystem;

namespace {

// /proc/PID/stat: "pid (comm) S ppid ...": comm may hold blanks and parentheses, so the
// fields are counted from the last ')'. Returns the state letter and field 22.
std::optional<std::pair<char, std::uint64_t>> proc_stat(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/stat", pid));
  if (!f) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto rp = text.rfind(')');
  if (rp == std::string::npos) return std::nullopt;
  std::istringstream in(text.substr(rp + 1));
  std::string field;
  char state = '?';
  // Field 3 is the state; field 22 the start time: 20 more fields after the state.
  if (!(in >> state)) return std::nullopt;
  for (int i = 4; i <= 22; i++) {
    if (!(in >> field)) return std::nullopt;
  }
  auto t = ctl::parse_u64(field);
  if (!t) return std::nullopt;
  return std::pair{state, *t};
}

// mountinfo(5) escapes blanks, tabs, newlines and backslashes as \ooo.
std::string unescape_mount(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      auto oct = s.substr(i + 1, 3);
      if (oct.size() == 3 && oct.find_first_not_of("01234567") == std::string_view::npos) {
        out += static_cast<char>((oct[0] - '0') * 64 + (oct[1] - '0') * 8 + (oct[2] - '0'));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

}  // namespace

std::string default_state_dir() {
  if (::geteuid() != 0) {
    if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x != nullptr && *x == '/') {
      return std::string(x) + "/galaxy";
    }
  }
  return fmt::format("/tmp/galaxy-{}", ::geteuid());
}

std::string record_path(const std::string& state) { return state + "/cluster"; }

// Why what state holds may have been written by someone else, or nothing. A record names
// processes that down signals, a mount it unmounts and the address every verb dials, and
// down creates STATE/lock: a directory or record that another user owns or may write in
// (another user's /tmp/galaxy-0 made before root's first up, $GALAXY_STATE pointing into
// another user's home) would let them choose those. Ours or root's, and writable by
// neither group nor others; the record a regular file, not a symbolic link. A directory
// that does not exist is not refused (there is no record in it).
std::optional<std::string> untrusted(const std::string& state) {
  auto why = [](const std::string& path, const struct stat& st) -> std::optional<std::string> {
    if (st.st_uid != ::geteuid() && st.st_uid != 0) {
      return fmt::format("{}: owned by uid {}, not by us (uid {}) or root; not trusted", path, st.st_uid,
                         ::geteuid());
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
      return fmt::format("{}: mode {:04o} lets others write in it; not trusted", path, st.st_mode & 07777);
    }
    return std::nullopt;
  };
  struct stat st {};
  if (::stat(state.c_str(), &st) != 0) return std::nullopt;
  if (auto bad = why(state, st)) return bad;
  std::string rec = record_path(state);
  if (::lstat(rec.c_str(), &st) != 0) return std::nullopt;
  if (!S_ISREG(st.st_mode)) return fmt::format("{}: not a regular file; not trusted", rec);
  return why(rec, st);
}

std::expected<record, std::string> load(const std::string& state) {
  if (auto bad = untrusted(state)) return std::unexpected(std::move(*bad));
  std::ifstream f(record_path(state));
  if (!f) {
    if (errno == ENOENT) return std::unexpected(std::string("no cluster record"));
    return std::unexpected(fmt::format("{}: {}", record_path(state), std::strerror(errno)));
  }
  std::map<std::string, std::string> kv;
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    auto eq = line.find('=');
    if (eq == std::string::npos || eq == 0) {
      return std::unexpected(fmt::format("{}: line {}: expected key=value", record_path(state), n));
    }
    kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  auto get = [&](const std::string& k) -> std::string {
    auto it = kv.find(k);
    return it == kv.end() ? std::string() : it->second;
  };
  auto proc = [&](const std::string& prefix) {
    proc_id p;
    p.pid = static_cast<pid_t>(ctl::parse_u64(get(prefix + "_pid")).value_or(0));
    p.start_ticks = ctl::parse_u64(get(prefix + "_start")).value_or(0);
    return p;
  };
  record r;
  r.state = get("state").empty() ? state : get("state");
  r.sched_addr = get("sched_addr");
  r.sched = proc("sched");
  auto count = ctl::parse_u64(get("nodes")).value_or(0);
  if (count > 1024) return std::unexpected(fmt::format("{}: nodes={}: too many", record_path(state), count));
  for (std::uint64_t i = 1; i <= count; i++) {
    auto k = fmt::format("node{}", i);
    r.nodes.push_back({get(k + "_name"), get(k + "_addr"), proc(k)});
  }
  r.mount = get("mount");
  r.mount_proc = proc("mount");
  return r;
}

std::expected<void, std::string> save(const record& r) {
  std::string text = "# galaxy up: what it started; galaxy down stops exactly these processes\n";
  auto proc = [&](const std::string& prefix, const proc_id& p) {
    text += fmt::format("{}_pid={}\n{}_start={}\n", prefix, p.pid, prefix, p.start_ticks);
  };
  text += fmt::format("state={}\nsched_addr={}\n", r.state, r.sched_addr);
  proc("sched", r.sched);
  text += fmt::format("nodes={}\n", r.nodes.size());
  for (std::size_t i = 0; i < r.nodes.size(); i++) {
    auto k = fmt::format("node{}", i + 1);
    text += fmt::format("{}_name={}\n{}_addr={}\n", k, r.nodes[i].name, k, r.nodes[i].addr);
    proc(k, r.nodes[i].proc);
  }
  text += fmt::format("mount={}\n", r.mount);
  proc("mount", r.mount_proc);

  std::string path = record_path(r.state), tmp = path + ".new";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return std::unexpected(fmt::format("{}: {}", tmp, std::strerror(errno)));
  }
  // Only the cluster's owner reads it (its dial strings and pids are theirs).
  if (::chmod(tmp.c_str(), 0600) != 0) return std::unexpected(fmt::format("{}: chmod: {}", tmp, std::strerror(errno)));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return std::unexpected(fmt::format("{}: {}", path, ec.message()));
  return {};
}

std::optional<std::uint64_t> start_ticks(pid_t pid) {
  auto s = proc_stat(pid);
  if (!s) return std::nullopt;
  return s->second;
}

bool alive(const proc_id& p) {
  if (p.pid <= 0) return false;
  auto s = proc_stat(p.pid);
  return s && s->second == p.start_ticks && s->first != 'Z' && s->first != 'X';
}

bool stop(const proc_id& p, std::chrono::milliseconds timeout) {
  using namespace std::chrono_literals;
  if (!alive(p)) return false;
  ::kill(p.pid, SIGTERM);
  auto wait_until = [&](std::chrono::steady_clock::time_point deadline) {
    while (alive(p)) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  };
  if (wait_until(std::chrono::steady_clock::now() + timeout)) return true;
  ::kill(p.pid, SIGKILL);
  return wait_until(std::chrono::steady_clock::now() + 5s);
}

namespace {

constexpr const char* sched_default_addr = "tcp!127.0.0.1!5641";
constexpr const char* say_where =
    "start one with galaxy up, or say where one is: -a DIAL, -m MOUNTPOINT, --state DIR, "
    "$GALAXY_ADDR or $GALAXY_STATE";

// The scheduler recorded in state, or why there is none running.
std::expected<std::string, std::string> recorded_sched(const std::string& state) {
  auto r = load(state);
  if (!r) {
    if (r.error() == "no cluster record") return std::unexpected(std::string("no cluster is recorded there"));
    return std::unexpected(r.error());
  }
  if (r->sched_addr.empty()) return std::unexpected(std::string("its record names no scheduler"));
  if (!alive(r->sched)) {
    return std::unexpected(fmt::format("the cluster recorded there is not running (its scheduler, pid {}, has ended)",
                                       r->sched.pid));
  }
  return r->sched_addr;
}

std::string joined(const std::vector<std::string>& tried) {
  std::string out;
  for (const auto& t : tried) out += (out.empty() ? "" : "; ") + t;
  return out;
}

}  // namespace

std::expected<target, std::string> find(const given& g) {
  int n = !g.addr.empty() + !g.mount.empty() + !g.state.empty();
  if (n > 1) return std::unexpected(std::string("give one of -a DIAL, -m MOUNTPOINT and --state DIR, not several"));
  target t;
  if (!g.addr.empty()) {
    t.addr = g.addr;
    t.source = "-a";
    return t;
  }
  if (!g.mount.empty()) {
    t.mount = g.mount;
    t.source = "-m";
    return t;
  }
  auto from_state = [&](const std::string& state, const std::string& source) -> std::expected<target, std::string> {
    auto a = recorded_sched(state);
    if (!a) {
      return std::unexpected(
          fmt::format("{}: {}; galaxy up --state {} starts one there", source, a.error(), state));
    }
    t.addr = *a;
    t.source = source;
    return t;
  };
  if (!g.state.empty()) return from_state(g.state, "--state " + g.state);
  if (const char* e = std::getenv("GALAXY_ADDR"); e != nullptr && *e != '\0') {
    t.addr = e;
    t.source = fmt::format("$GALAXY_ADDR={}", e);
    return t;
  }
  t.tried.emplace_back("$GALAXY_ADDR is not set");
  if (const char* e = std::getenv("GALAXY_STATE"); e != nullptr && *e != '\0') {
    return from_state(e, fmt::format("$GALAXY_STATE={}", e));
  }
  t.tried.emplace_back("$GALAXY_STATE is not set");
  std::string dflt = default_state_dir();
  if (auto a = recorded_sched(dflt)) {
    t.addr = *a;
    t.source = fmt::format("the cluster galaxy up started in {}", dflt);
    return t;
  } else {
    t.tried.push_back(fmt::format("galaxy up's default state directory {}: {}", dflt, a.error()));
  }
  t.addr = sched_default_addr;
  t.source = "galaxy-sched's default address";
  return t;
}

std::string not_answering(const target& t, const std::string& dial_error) {
  if (t.source == "-a") return dial_error;
  if (t.tried.empty()) return fmt::format("{} (from {})", dial_error, t.source);
  return fmt::format("no cluster answers: {}; {}: {}; {}", joined(t.tried), t.source, dial_error, say_where);
}

std::optional<std::string> mount_type(const std::string& dir) {
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  std::optional<std::string> found;
  // "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw": field 5 is
  // the mount point; the type follows the " - " separator. The last match wins (the
  // mount on top).
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string id, parent, devno, root, point;
    if (!(in >> id >> parent >> devno >> root >> point)) continue;
    if (unescape_mount(point) != dir) continue;
    auto sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::istringstream rest(line.substr(sep + 3));
    std::string type;
    rest >> type;
    found = type;
  }
  return found;
}

}  // namespace ctl::cluster
