#pragma once
// Containment of tasks: every task in a cgroup v2 of its own, so that all it started
// (a `setsid sleep 300 &`, a double-forked daemon) ends with it, by cgroup.kill; its
// `mem` as memory.max and its `cpu` as cpu.max where those controllers are delegated, and
// a pids.max of the node's (--task-pids-max) where the pids controller is: a fork bomb
// in one task then stops at its own limit. Without it nothing bounds a task's processes
// but the machine's: RLIMIT_NPROC counts every process of the user (all their tasks and
// logins), so it is not set.
// Where no cgroup v2 can be had, the process group is all there is (a task's own
// session, killed with kill(-pgid)); the mode is decided once, at start-up, logged, and
// shown in /status as contain=cgroup or contain=pgroup, and the limits a task's cgroup can
// have as limits=memory,cpu,pids (or fewer, or none).
//
// Where the cgroups go (cgroups(7), the kernel's cgroup-v2.rst): beside the daemon, in
// the cgroup the daemon was started in (/proc/self/cgroup on the cgroup2 mount). The
// no-internal-process rule lets a cgroup other than the root hand controllers to its
// children only when it holds no process itself, so a daemon in cgroup D (a systemd
// service with Delegate=yes, say) moves itself into the leaf D/galaxy-node and makes task
// cgroups beside its leaf; a daemon at the root makes them at the root. cgroup.procs and
// cgroup.kill (Linux 5.14) need no controller, so containment works on a hybrid
// hierarchy too, where cgroup2 has no controllers at all.
#include <cstdint>
#include <expected>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace node {

// One task's cgroup, made for a start.
struct task_cgroup {
  std::filesystem::path path;
  int procs_fd = -1;      // its cgroup.procs, open for writing (the child writes "0")
  bool mem_limited = false;  // memory.max holds the task's mem
};

class containment {
 public:
  // Finds the cgroup parent and checks that a cgroup can be made and removed there, or
  // settles for process groups (use_cgroups false forces that). log gets one line saying
  // which, and why.
  static containment probe(bool use_cgroups, const std::function<void(std::string_view)>& log);

  bool cgroups() const { return parent_.has_value(); }
  std::string_view mode_name() const { return cgroups() ? "cgroup" : "pgroup"; }
  bool has_memory() const { return memory_; }
  bool has_cpu() const { return cpu_; }
  bool has_pids() const { return pids_; }
  // The limits task cgroups get, as /status shows them: "memory,cpu,pids" (those of the
  // three whose controllers are delegated, in that order), or "none".
  std::string limits_name() const;

  // A cgroup for task id: memory.max = mem_bytes (0: none), cpu.max for cpu_millis (0:
  // none) and pids.max = pids_max (0: none) where the controllers are there. Errors: the
  // file system.
  std::expected<task_cgroup, std::string> make(std::uint64_t id, std::uint64_t mem_bytes,
                                               std::uint32_t cpu_millis, std::uint64_t pids_max = 0);
  // Kills everything in the cgroup (cgroup.kill) and removes it, or remembers it for
  // retry() while its processes are dying.
  void kill_and_remove(const std::filesystem::path& cg);
  // Sends sig to every process in the cgroup (cgroup.procs); SIGKILL is cgroup.kill.
  void signal(const std::filesystem::path& cg, int sig);
  // How many processes of the cgroup the OOM killer has killed (memory.events oom_kill);
  // 0 where it cannot be read.
  std::uint64_t oom_kills(const std::filesystem::path& cg) const;
  // Removes the cgroups kill_and_remove could not yet.
  void retry();
  // Kills and removes task cgroups of daemons no longer running (galaxy-PID-N whose PID
  // is gone), such as one stopped before it could remove them; logs each.
  void sweep(const std::function<void(std::string_view)>& log);

 private:
  std::optional<std::filesystem::path> parent_;
  bool memory_ = false, cpu_ = false, pids_ = false;
  std::vector<std::filesystem::path> pending_;
};

}  // namespace node
