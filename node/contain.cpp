// Containment of tasks (node/contain.hpp): finding the cgroup parent, a cgroup per task
// with its limits, and killing a cgroup whole.
#include "node/contain.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include "node/resources.hpp"
#include "node/safe_fs.hpp"

namespace node {

namespace fs = std::filesystem;

namespace {

// Writes text to an existing file (a cgroup control file). Returns errno, or 0.
int write_file(const fs::path& p, std::string_view text) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int e = 0;
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) e = errno == 0 ? EIO : errno;
  ::close(fd);
  return e;
}

bool lists(const fs::path& file, std::string_view controller) {
  auto text = read_small_file(file);
  if (!text) return false;
  std::string_view s = *text;
  while (!s.empty()) {
    auto sp = s.find_first_of(" \n");
    if (s.substr(0, sp) == controller) return true;
    if (sp == std::string_view::npos) break;
    s.remove_prefix(sp + 1);
  }
  return false;
}

// The daemon's cgroup directory on the cgroup2 mount, and whether it is the root.
std::expected<std::pair<fs::path, bool>, std::string> own_cgroup() {
  auto mountinfo = read_small_file("/proc/self/mountinfo");
  if (!mountinfo) return std::unexpected("cannot read /proc/self/mountinfo");
  fs::path mount;
  std::string_view mi = *mountinfo;
  while (!mi.empty() && mount.empty()) {
    auto nl = mi.find('\n');
    std::string_view line = mi.substr(0, nl);
    mi.remove_prefix(nl == std::string_view::npos ? mi.size() : nl + 1);
    if (line.find(" - cgroup2 ") == std::string_view::npos) continue;
    // Fields: id parent major:minor root mountpoint ...
    std::string_view f = line;
    for (int i = 0; i < 4; i++) {
      auto sp = f.find(' ');
      if (sp == std::string_view::npos) break;
      f.remove_prefix(sp + 1);
    }
    mount = std::string(f.substr(0, f.find(' ')));
  }
  if (mount.empty()) return std::unexpected("no cgroup2 file system is mounted");
  auto self = read_small_file("/proc/self/cgroup");
  if (!self) return std::unexpected("cannot read /proc/self/cgroup");
  auto at = self->find("0::");
  if (at == std::string::npos || (at != 0 && (*self)[at - 1] != '\n')) {
    return std::unexpected("no cgroup v2 entry in /proc/self/cgroup");
  }
  std::string rel = self->substr(at + 3, self->find('\n', at) - at - 3);
  fs::path d = mount;
  auto r = fs::path(rel).relative_path();
  if (!r.empty()) d /= r;
  return std::pair{d, r.empty()};
}

}  // namespace

containment containment::probe(bool use_cgroups, const std::function<void(std::string_view)>& log) {
  containment c;
  auto say = [&](std::string_view line) {
    if (log) log(line);
  };
  if (!use_cgroups) {
    say("containment: process groups (cgroups turned off)");
    return c;
  }
  auto own = own_cgroup();
  if (!own) {
    say(fmt::format("containment: process groups only (no cgroup v2: {}); a task's setsid descendants can outlive it",
                    own.error()));
    return c;
  }
  auto [d, is_root] = *own;
  fs::path parent = d;
  if (!is_root) {
    if (d.filename() == "galaxy-node") {
      parent = d.parent_path();  // a second runner in this process, or a restart in place
    } else {
      // Into a leaf of our own, so that d may hand controllers to the task cgroups.
      fs::path leaf = d / "galaxy-node";
      if ((::mkdir(leaf.c_str(), 0755) == 0 || errno == EEXIST) &&
          write_file(leaf / "cgroup.procs", std::to_string(::getpid())) == 0) {
        parent = d;
      }  // else: task cgroups beside us in d all the same, without controllers
    }
  }
  for (std::string_view ctl : {"memory", "cpu", "pids"}) {
    if (lists(parent / "cgroup.subtree_control", ctl)) continue;
    if (lists(parent / "cgroup.controllers", ctl)) (void)write_file(parent / "cgroup.subtree_control", fmt::format("+{}", ctl));
  }
  c.memory_ = lists(parent / "cgroup.subtree_control", "memory");
  c.cpu_ = lists(parent / "cgroup.subtree_control", "cpu");
  c.pids_ = lists(parent / "cgroup.subtree_control", "pids");
  // The proof: a cgroup made, joined by nobody, and removed.
  fs::path test = parent / fmt::format("galaxy-probe-{}", ::getpid());
  if (::mkdir(test.c_str(), 0755) < 0 && errno != EEXIST) {
    say(fmt::format("containment: process groups only (cannot make a cgroup in {}: {}); a task's setsid "
                    "descendants can outlive it",
                    parent.string(), errno_text(errno)));
    return c;
  }
  bool killable = ::access((test / "cgroup.kill").c_str(), W_OK) == 0;
  ::rmdir(test.c_str());
  if (!killable) {
    say(fmt::format("containment: process groups only ({} has no cgroup.kill: Linux 5.14 or later is needed)",
                    parent.string()));
    return c;
  }
  c.parent_ = parent;
  c.sweep(log);
  say(fmt::format("containment: a cgroup v2 per task under {} (memory.max: {}, cpu.max: {}, pids.max: {})",
                  parent.string(), c.memory_ ? "yes" : "no, RLIMIT_AS for mem", c.cpu_ ? "yes" : "no",
                  c.pids_ ? "yes" : "no, a task's processes are not limited"));
  return c;
}

std::string containment::limits_name() const {
  std::string s;
  if (!cgroups()) return "none";
  for (auto [on, name] : {std::pair{memory_, "memory"}, {cpu_, "cpu"}, {pids_, "pids"}}) {
    if (!on) continue;
    if (!s.empty()) s += ',';
    s += name;
  }
  return s.empty() ? "none" : s;
}

std::expected<task_cgroup, std::string> containment::make(std::uint64_t id, std::uint64_t mem_bytes,
                                                          std::uint32_t cpu_millis, std::uint64_t pids_max) {
  if (!parent_) return std::unexpected("no cgroup");
  task_cgroup cg;
  cg.path = *parent_ / fmt::format("galaxy-{}-{}", ::getpid(), id);
  if (::mkdir(cg.path.c_str(), 0755) < 0 && errno != EEXIST) {
    return std::unexpected(fmt::format("mkdir {}: {}", cg.path.string(), errno_text(errno)));
  }
  auto undo = [&](std::string why) {
    ::rmdir(cg.path.c_str());
    return std::unexpected(std::move(why));
  };
  if (mem_bytes > 0 && memory_) {
    if (int e = write_file(cg.path / "memory.max", std::to_string(mem_bytes)); e != 0) {
      return undo(fmt::format("{}/memory.max: {}", cg.path.string(), errno_text(e)));
    }
    write_file(cg.path / "memory.swap.max", "0");  // a limit, not a push into swap; may be absent
    write_file(cg.path / "memory.oom.group", "1");  // the OOM killer takes the whole task
    cg.mem_limited = true;
  }
  if (cpu_millis > 0 && cpu_) {
    // cpu.max: quota and period in microseconds; 1000 millicores is one period per period.
    constexpr std::uint64_t period = 100000;
    std::uint64_t quota = std::max<std::uint64_t>(1000, static_cast<std::uint64_t>(cpu_millis) * period / 1000);
    if (int e = write_file(cg.path / "cpu.max", fmt::format("{} {}", quota, period)); e != 0) {
      return undo(fmt::format("{}/cpu.max: {}", cg.path.string(), errno_text(e)));
    }
  }
  if (pids_max > 0 && pids_) {
    if (int e = write_file(cg.path / "pids.max", std::to_string(pids_max)); e != 0) {
      return undo(fmt::format("{}/pids.max: {}", cg.path.string(), errno_text(e)));
    }
  }
  int fd = ::open((cg.path / "cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return undo(fmt::format("{}/cgroup.procs: {}", cg.path.string(), errno_text(errno)));
  cg.procs_fd = fd;
  return cg;
}

void containment::signal(const fs::path& cg, int sig) {
  if (sig == SIGKILL && write_file(cg / "cgroup.kill", "1") == 0) return;
  auto text = read_small_file((cg / "cgroup.procs").string());
  if (!text) return;
  std::string_view s = *text;
  while (!s.empty()) {
    auto nl = s.find('\n');
    std::string_view line = s.substr(0, nl);
    pid_t pid = 0;
    auto r = std::from_chars(line.data(), line.data() + line.size(), pid);
    if (r.ec == std::errc{} && pid > 0) ::kill(pid, sig);
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
}

std::uint64_t containment::oom_kills(const fs::path& cg) const {
  auto text = read_small_file((cg / "memory.events").string());
  if (!text) return 0;
  // Lines "key value"; cgroup-v2.rst: oom_kill is the number of processes killed by any
  // kind of OOM killer in the cgroup.
  std::string_view s = *text;
  while (!s.empty()) {
    auto nl = s.find('\n');
    std::string_view line = s.substr(0, nl);
    if (line.starts_with("oom_kill ")) {
      std::uint64_t n = 0;
      std::from_chars(line.data() + 9, line.data() + line.size(), n);
      return n;
    }
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
  return 0;
}

void containment::kill_and_remove(const fs::path& cg) {
  write_file(cg / "cgroup.kill", "1");
  // The killed need a moment to exit (a few milliseconds even for many): wait that long
  // rather than leave the cgroup for the next collection, which a daemon stopped soon
  // after would never reach. An empty cgroup (the usual case) goes at the first try.
  for (int i = 0; i < 100; i++) {
    if (::rmdir(cg.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) break;
    ::usleep(1000);
  }
  pending_.push_back(cg);
}

void containment::sweep(const std::function<void(std::string_view)>& log) {
  if (!parent_) return;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(*parent_, ec)) {
    std::string name = e.path().filename().string();
    // galaxy-PID-N (a task's) and galaxy-probe-PID, of daemons no longer running.
    std::string_view rest = name;
    if (!rest.starts_with("galaxy-")) continue;
    rest.remove_prefix(7);
    if (rest.starts_with("probe-")) rest.remove_prefix(6);
    pid_t pid = 0;
    auto r = std::from_chars(rest.data(), rest.data() + rest.size(), pid);
    if (r.ec != std::errc{} || pid <= 0 || (r.ptr != rest.data() + rest.size() && *r.ptr != '-')) continue;
    if (::kill(pid, 0) == 0 || errno == EPERM) continue;  // its daemon lives
    kill_and_remove(e.path());
    if (log) log(fmt::format("cgroup {}: removed, left by a daemon that is gone", e.path().string()));
  }
}

void containment::retry() {
  std::erase_if(pending_, [](const fs::path& cg) {
    write_file(cg / "cgroup.kill", "1");
    return ::rmdir(cg.c_str()) == 0 || errno == ENOENT;
  });
}

}  // namespace node
