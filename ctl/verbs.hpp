#pragma once
// The verb tables of Galaxy's ctl files, shared by galaxy-node, galaxy-sched and the
// `galaxy` tool so that every ctl file takes the same words with the same argument
// counts, and the man pages list the same usage lines (design: "The node's tree").
//
// Each table is a Cmdtab (Plan 9 parsecmd(2)) for ctl::parse(): an enum whose values are
// the table's indexes, and a constexpr array in the same order (checked at compile time
// below, so the two cannot drift). A consumer switches on the verb:
//
//   auto c = ctl::parse(line, ctl::task_verbs);
//   if (!c) return error(c.error());
//   switch (static_cast<ctl::task_verb>(c->verb)) { case ctl::task_verb::exec: ... }
//
// parse() checks verb names and argument counts only; each argument's meaning is
// checked by the typed parsers of ctl/ctlmsg.hpp (parse_bytes for mem, ...).
#include <iterator>
#include <span>

#include "ctl/ctlmsg.hpp"

namespace ctl {

// task/N/ctl (node) and jobs/N/ctl (scheduler): a task's spec before exec, and its end.
enum class task_verb : int { exec, dir, env, cpu, mem, time, nice, kill, rm };
inline constexpr verb_spec task_verbs[] = {
    {int(task_verb::exec), "exec", 1, -1, "exec ARG..."},       // start the task with this argv
    {int(task_verb::dir), "dir", 1, 1, "dir PATH"},             // working directory
    {int(task_verb::env), "env", 1, -1, "env K=V..."},          // parse_kv each
    {int(task_verb::cpu), "cpu", 1, 1, "cpu N|Nm"},             // parse_cpu_millis
    {int(task_verb::mem), "mem", 1, 1, "mem BYTES[k|m|g]"},     // parse_bytes
    {int(task_verb::time), "time", 1, 1, "time SECONDS"},       // parse_seconds_ms: kill after
    {int(task_verb::nice), "nice", 1, 1, "nice N"},             // parse_int
    {int(task_verb::kill), "kill", 0, 1, "kill [SIGNAL]"},      // parse_signal
    {int(task_verb::rm), "rm", 0, 0, "rm"},                     // forget a finished task
};

// The node's /ctl, for its administrator (node admin verbs).
enum class node_verb : int { drain, undrain, label, share, nice, maxtasks, kill, lease };
inline constexpr verb_spec node_verbs[] = {
    {int(node_verb::drain), "drain", 0, 0, "drain"},                  // take no new tasks
    {int(node_verb::undrain), "undrain", 0, 0, "undrain"},
    {int(node_verb::label), "label", 1, -1, "label K=V..."},          // parse_kv each
    {int(node_verb::share), "share", 1, 1, "share PCT"},              // parse_int 1-100
    {int(node_verb::nice), "nice", 1, 1, "nice N"},                   // parse_int
    {int(node_verb::maxtasks), "maxtasks", 1, 1, "maxtasks N"},       // parse_int
    {int(node_verb::kill), "kill", 1, 1, "kill all", "all"},          // kill every task
    {int(node_verb::lease), "lease", 1, 1, "lease MS"},               // fencing: galaxy-node(4)
};

// jobs/N/ctl (scheduler): the task verbs in the same order (a job_verb below
// task_verb_count means the same as that task_verb), then the scheduler's own.
enum class job_verb : int {
  exec, dir, env, cpu, mem, time, nice, kill, rm,
  need, after, priority, retries, preemptible, name, array, speculate, queue_anyway,
};
inline constexpr int task_verb_count = 9;
inline constexpr verb_spec job_verbs[] = {
    task_verbs[0], task_verbs[1], task_verbs[2], task_verbs[3], task_verbs[4],
    task_verbs[5], task_verbs[6], task_verbs[7], task_verbs[8],
    {int(job_verb::need), "need", 1, -1, "need K=V..."},                // label constraints, parse_kv
    {int(job_verb::after), "after", 1, -1, "after JOB..."},             // run after these succeeded
    {int(job_verb::priority), "priority", 1, 1, "priority N"},          // parse_int, higher first
    {int(job_verb::retries), "retries", 1, 1, "retries N"},             // requeues after a lost attempt
    {int(job_verb::preemptible), "preemptible", 0, 0, "preemptible"},   // may be killed and requeued
    {int(job_verb::name), "name", 1, 1, "name NAME"},                   // a user-visible name
    {int(job_verb::array), "array", 1, 1, "array N"},                   // N tasks jobs/J/0..N-1, $GALAXY_INDEX
    {int(job_verb::speculate), "speculate", 0, 0, "speculate"},         // a backup copy when it straggles
    {int(job_verb::queue_anyway), "queue-anyway", 0, 0, "queue-anyway"},  // exec queues what no node can run yet
};

// The scheduler's /ctl, for the cluster's administrator.
enum class sched_verb : int { node, drain, undrain, quota, policy, priority };
inline constexpr verb_spec sched_verbs[] = {
    {int(sched_verb::node), "node", 2, 3, "node add NAME DIAL | node rm NAME"},
    {int(sched_verb::drain), "drain", 1, 1, "drain NODE"},
    {int(sched_verb::undrain), "undrain", 1, 1, "undrain NODE"},
    {int(sched_verb::quota), "quota", 2, 4, "quota USER cpu=N mem=M weight=W"},
    {int(sched_verb::policy), "policy", 1, 1, "policy binpack|spread"},
    {int(sched_verb::priority), "priority", 2, 2, "priority JOB N"},
};

namespace detail {
constexpr bool in_enum_order(std::span<const verb_spec> table) {
  for (std::size_t i = 0; i < table.size(); ++i) {
    if (table[i].verb != static_cast<int>(i)) return false;
  }
  return true;
}
}  // namespace detail
static_assert(detail::in_enum_order(task_verbs), "task_verbs must follow task_verb's order");
static_assert(detail::in_enum_order(node_verbs), "node_verbs must follow node_verb's order");
static_assert(detail::in_enum_order(job_verbs), "job_verbs must follow job_verb's order");
static_assert(detail::in_enum_order(sched_verbs), "sched_verbs must follow sched_verb's order");
static_assert(std::size(task_verbs) == task_verb_count);

}  // namespace ctl
