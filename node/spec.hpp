#pragma once
// The spec file of a task, SPOOL/task/N/spec (node/task.hpp): its codec, for the runner.
//
// The spec file, SPOOL/task/N/spec, is text: one key=value per line, "format=1" first.
// Values are escaped so that a line is always one line: a backslash is written "\\" and
// a newline "\n"; nothing else is escaped. Lists repeat their key in order: one "arg="
// line per argv word and one "env=" line per K=V. A key seen again overrides its earlier
// value (lists appear in the first record only). Unknown keys are ignored (a newer daemon
// may add some); a file without "format=1" and the id of its directory, or with a value
// that does not parse, is corrupt and skipped by restore() with a log line. Keys:
//   format id owner runuser state created start end pid pidstart exit signal error
//   timedout usertime systime maxrss dir cpu mem time nice stdin memlimit cgroup arg env
// pidstart is field 22 of /proc/PID/stat (starttime, clock ticks since boot): restore()
// kills a lost task's group only if its pid still names the same process. memlimit says
// how mem was enforced: "cgroup", "rlimit" or "none".
#include <charconv>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "node/task.hpp"

namespace node {

// A decimal number that is the whole of s (spec values, the spool's names).
template <typename T>
bool parse_num(std::string_view s, T& out) {
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc{} && r.ptr == s.data() + s.size();
}

// Bounds on what one task's ctl commands may set, so that a user's ctl writes cannot grow
// the daemon without end: galaxy-sched's own (sched/scheduler.hpp max_spec_bytes and
// max_env_vars), so that what a job may carry fits a node. Bytes count each argv word,
// env entry and the dir path with one more for its NUL, as execve(2)'s ARG_MAX does.
inline constexpr std::size_t max_spec_bytes = 256 * 1024;
inline constexpr std::size_t max_env_vars = 1024;

// The bytes of s that max_spec_bytes bounds.
std::size_t spec_bytes(const task_spec& s);
// Whether s may become s with its argv replaced by argv (replace_argv) or with env added.
// Errors (for the ctl write, which then changes nothing): "spec longer than 262144 bytes",
// "more than 1024 env variables".
std::expected<void, std::string> check_spec_growth(const task_spec& s, const std::vector<std::string>* replace_argv,
                                                   const std::vector<std::string>& env_added, std::size_t dir_size);

// What the runner keeps of a task besides struct task: persisted, not shown.
struct task_extra {
  std::uint64_t pid_start = 0;  // /proc/PID/stat starttime of the task's process
  std::string mem_limit;        // "cgroup", "rlimit", "none"; empty: not started
  std::string cgroup;           // the task's cgroup directory while it may exist
  bool on_disk = false;         // the spec file has its first record (not persisted)
  // Why the runner killed it by task_runner::fence, until it is reaped (not persisted:
  // the reaped task's state and error carry it).
  std::string fence_why;
};

// The first record, "format=1" first: the whole spec and state.
std::string encode_spec(const task& t, const task_extra& x);
// A later record: what changes after start (the end of the task), "state=" last.
std::string encode_update(const task& t, const task_extra& x);
// Reads a spec file's records into t and x. Errors: what is wrong with the text, for
// restore()'s log line.
std::expected<void, std::string> decode_spec(std::string_view text, task& t, task_extra& x);

}  // namespace node
