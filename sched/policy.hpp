#pragma once
// The scheduling policy of galaxy-sched: which queued job starts on which node, which job
// is preempted, which job fails because a dependency failed. No I/O, no clock, no threads:
// the daemon (and bench/sim_policy.cpp, with 10 000 simulated nodes) feeds a `scheduler`
// events — nodes, submissions, ends of runs — and calls decide(now_ms), which returns
// decisions that the caller carries out. The rules are shared/design/galaxy.md
// ("Scheduling") and issue 6:
//
//   - Between users, Dominant Resource Fairness (Ghodsi et al., "Dominant Resource
//     Fairness: Fair Allocation of Multiple Resource Types", NSDI 2011): the next job
//     comes from the user whose dominant share — the larger of its CPU and memory use over
//     the cluster's totals, divided by its weight (the paper's weighted DRF, §4.3) — is
//     smallest. Within a user: higher priority first, then earlier submission, then
//     smaller id.
//   - Quotas: a user's non-preemptible jobs never use more than its quota; preemptible
//     jobs ignore quotas, fill idle room and are preempted when a non-preemptible job
//     that is within its user's quota finds no room.
//   - Placement: hard label constraints, then bin-packing (default) or spreading.
//   - Backfill: a job that fits nowhere does not block the jobs behind it. Reservation:
//     a user's first job that has waited `reserve_after_ms` and still fits nowhere gets a
//     node reserved for it, so that a stream of small jobs cannot starve it.
//   - DAGs through `after`; speculative backup copies of stragglers (Dean and Ghemawat,
//     "MapReduce: Simplified Data Processing on Large Clusters", OSDI 2004, §3.6).
//   - Job arrays are expanded by the daemon into N jobs that share a `group`; the policy
//     sees N ordinary jobs (the group matters only to speculation).
//
// How it is arranged (scheduler's private part, policy.cpp): per user, one queue per job
// "shape" (the same need, label constraints and preemptibility), ordered by priority and
// submission; the users with queued jobs in a set ordered by dominant share; per
// distinct set of node labels, two treaps of its nodes, keyed by free room and by the
// room preemption could free, with the largest free memory of each subtree, so that a
// best-fit (or most-free) node is found in O(log nodes) per label set. A shape that fits
// nowhere is marked failed, for every user, until room grows on a node where it would
// fit; from then on the nodes where its room grew are kept with it (up to 8), so that
// placing it looks at those nodes rather than the trees. The jobs live in dense slots
// that the queues refer to; per shape a bit per user says whose queue of it is at the
// head, so a failed or cleared mark costs O(1). A placement pass therefore costs
// O(log nodes) per started job plus a few node checks per shape whose mark was cleared,
// never a scan of the queue or of the nodes (the one O(nodes) scan is choosing a
// reservation's node). See decide() for the whole pass.
//
// Units: CPU in millicores (1000 = one CPU), memory in bytes, time in milliseconds on
// the caller's clock (any epoch, but one clock for every call). Not thread-safe: one
// caller at a time.
#include <cstdint>
#include <expected>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sched::policy {

// No limit, for a quota dimension.
inline constexpr std::int64_t unlimited = std::numeric_limits<std::int64_t>::max();

struct resources {
  std::int64_t cpu_millis = 0;
  std::int64_t mem_bytes = 0;
  friend bool operator==(const resources&, const resources&) = default;
};

// One label, "arch" = "arm64". A job's `needs` must all be among a node's labels.
using label = std::pair<std::string, std::string>;

struct node_spec {
  std::string name;
  // What jobs may use: ncpu × share and memory minus the reserve, worked out by the
  // caller (galaxy.md, "Scheduling").
  resources capacity;
  std::vector<label> labels;
  bool drained = false;  // runs what it runs, gets nothing new
};

struct job_spec {
  std::uint64_t id = 0;
  std::string user;
  resources need;
  std::vector<label> needs;            // hard constraints: every one must be a node label
  int priority = 0;                    // higher first, within the user
  bool preemptible = false;
  std::vector<std::uint64_t> after;    // runs when all of these are done
  std::string group;                   // array or name group: siblings for speculation
  bool speculate = false;              // may get a backup copy when it straggles
  std::int64_t submitted_ms = 0;       // orders a user's jobs of equal priority
};

// How a run ended, as the caller reports it to finished().
//   done    the command exited 0 (the job succeeded)
//   failed  the command failed (or the caller gave up retrying a lost job)
//   killed  a user killed the job
//   lost    the node died or the start failed: the job is queued again
enum class outcome : std::uint8_t { done, failed, killed, lost };

enum class mode : std::uint8_t { binpack, spread };

struct decision {
  // start    run `job` on `node`; resources are reserved as the decision is returned.
  // preempt  kill the copy of `job` that runs on `node`. The policy has already freed
  //          its room and, unless another copy still runs, queued the job again: the
  //          caller must not report the killed run to finished(), and must not count it
  //          as a failure or a retry.
  // fail     `job` ended without running; `reason` says why ("dependency 3 failed").
  //          The policy has already recorded it as failed.
  // backup   start a second copy of the running `job` on `node` (speculation).
  enum class kind : std::uint8_t { start, preempt, fail, backup };
  kind what = kind::start;
  std::uint64_t job = 0;
  std::string node;    // empty for fail
  std::string reason;  // for people: "dependency 3 failed", "room for job 12", ...
  friend bool operator==(const decision&, const decision&) = default;
};

struct config {
  mode placement = mode::binpack;
  // A user's first queued job that has waited this long since it became ready and fits
  // on no node gets a reservation (see decide()).
  std::int64_t reserve_after_ms = 60'000;
  // At most this many nodes are held for reservations at once.
  int max_reservations = 16;
  // A waiting job that could not be reserved (the cap, or no node is big enough) is
  // looked at again after this long; also the retry period of a backup that found free
  // room only on its own node or is over its user's quota (a backup for which no node
  // has free room waits, without polling, until a node's free room grows to fit it).
  std::int64_t recheck_ms = 1'000;
  // Speculation: a running copy of a `speculate` job is a straggler when it has run at
  // least speculate_factor × the median run time of the done jobs of its group, the group
  // has at least speculate_min_done done jobs, and it has run at least speculate_min_ms.
  double speculate_factor = 2.0;
  int speculate_min_done = 3;
  std::int64_t speculate_min_ms = 1'000;
};

class scheduler {
 public:
  explicit scheduler(config cfg = {});
  ~scheduler();
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;
  scheduler(scheduler&&) noexcept;
  scheduler& operator=(scheduler&&) noexcept;

  // Adds a node or replaces its spec (capacity, labels, drained) by name. Jobs running
  // there stay; if the node held a reservation that it can no longer honour (drained,
  // labels changed, too small), the reserved job is queued again. Errors: empty name,
  // negative capacity. A node that was removed while jobs still ran there comes back
  // with them.
  std::expected<void, std::string> set_node(node_spec spec);
  // The node is down or gone: it gets nothing more and leaves the cluster totals. Its
  // running jobs stay accounted to it until the caller reports each with finished() —
  // lost (requeued) or failed when its retries are spent. Unknown names are ignored.
  void remove_node(std::string_view name);

  // A user's quota for non-preemptible jobs; `unlimited` in a dimension (the default)
  // means no limit. Errors: a negative value. Lowering a quota below current use
  // preempts nothing: it only stops new starts.
  std::expected<void, std::string> set_quota(std::string_view user, resources quota);
  // Weighted DRF (§4.3 of the paper): a user's dominant share is divided by its weight,
  // so weight 2 gets twice the share of weight 1. Default 1. Errors: not finite or ≤ 0.
  std::expected<void, std::string> set_weight(std::string_view user, double weight);
  void set_mode(mode m);

  // Queues a job. Errors (nothing changes): an id already known (queued, running or
  // ended), an empty user, a negative need, an empty label name in needs, `after`
  // naming an unknown job, `after` naming the job itself (a cycle: the predecessors
  // must exist already, so no longer cycle can form). A job after one that already
  // failed or was killed is accepted and fails at the next decide().
  std::expected<void, std::string> submit(job_spec spec);

  // A run of `job` ended at now_ms. `node` says which copy when the job runs on more
  // than one node (a backup copy); it may be empty otherwise. Frees the copy's room.
  //   done    the job is done; its dependents whose predecessors are all done become
  //           ready; any other copy is preempted by the next decide().
  //   failed  if another copy still runs, only this copy ends; otherwise the job fails
  //           and so do its dependents, transitively ("dependency J failed").
  //   killed  the whole job ends (every copy: the caller kills them all); dependents
  //           fail as for failed.
  //   lost    if another copy still runs, only this copy ends; otherwise the job is
  //           queued again (the caller counts retries and reports failed when spent).
  // Errors: unknown job, job not running, no copy on `node`, two copies and no node
  // (unless killed).
  std::expected<void, std::string> finished(std::uint64_t job, outcome o, std::int64_t now_ms,
                                            std::string_view node = {});
  // A copy of `job` that the policy did not place runs on `node` (its node was cut off,
  // the copy was reported lost, and the node came back with it: sched/reconcile.cpp).
  // A queued or reserved job starts there; a running job gets it as a second copy, as a
  // backup (no more backups are made for it). No decision is returned for it: the copy
  // runs already. Its room is taken even where the node's free room is short. Errors
  // (nothing changes): unknown or ended job, a job waiting for dependencies, an unknown
  // or removed node, a copy of the job on that node already.
  std::expected<void, std::string> adopt(std::uint64_t job, std::string_view node, std::int64_t now_ms);
  // Kills a job that is not running (queued, waiting for dependencies or holding a
  // reservation): it ends killed and its dependents fail. Errors: unknown or ended job;
  // a running job (report its end with finished(killed) instead).
  std::expected<void, std::string> cancel(std::uint64_t job);
  // Keeps a queued job out of every pass until now_ms >= until_ms (the first decide()
  // from then on puts it back in its queue, with the waiting time it had). For a job
  // whose start failed for a reason of its own (its owner cannot attach on the node the
  // pass chose, the node refused its spec): reported finished(lost), it would be placed
  // on the same node at once. A deferred job counts as queued (queue(), its user's
  // queued jobs); cancel(), set_priority() and adopt() take it as a queued one;
  // defer() again moves its time. Errors (nothing changes): unknown or ended job, a job
  // that is not queued (waiting for dependencies, reserved, running).
  std::expected<void, std::string> defer(std::uint64_t job, std::int64_t until_ms);
  // Forgets an ended job (its outcome is kept so that a later `after` can name it).
  // Memory: about 40 bytes per ended job until forgotten. Unknown ids are ignored.
  void forget(std::uint64_t job);
  // Changes the priority of a job that is not running and has not ended (queued, waiting
  // for dependencies or holding a reservation): a queued job moves in its user's queue at
  // once (higher first, then submission, as submit()), for the next decide() and for
  // queue(); a reserved job keeps its reservation. The daemon's `priority JOB N`.
  // Errors (nothing changes): unknown job, ended job, running job.
  std::expected<void, std::string> set_priority(std::uint64_t job, int priority);

  // One scheduling pass at now_ms. Returns, in order: the fail and preempt decisions
  // caused by earlier calls (finished, cancel, submit), then what this pass decided:
  //   1. reserved jobs whose node now has room start there (preempting preemptible
  //      jobs on it if that is what is missing);
  //   2. DRF, in two phases — non-preemptible jobs, then preemptible ones in the room
  //      left, so that preemptible jobs take only idle room: repeatedly the user with
  //      the smallest weighted dominant share gives its first job (by priority, then
  //      submission) whose shape can still fit. Backfill: a shape (need, constraints,
  //      preemptibility) that fits nowhere is skipped, for every user, until room grows
  //      on a node where it would fit. A non-preemptible job within quota that finds no
  //      room preempts the newest preemptible copies on one node (the best fit by the
  //      room preemption could free) and starts there. A non-preemptible job that would
  //      exceed its user's quota waits, with its user's other jobs of that shape, until
  //      the user's use falls or its quota grows;
  //   3. reservations: each user's first queued job (by priority, then submission) that
  //      is not preemptible (preemptible jobs are scavengers), has been ready for
  //      reserve_after_ms and still fits on no node, even by preemption, gets a
  //      reservation (at most max_reservations at once; the others look again after
  //      recheck_ms) on the eligible node closest to fitting it; the node then takes
  //      no other job until the reserved one starts there (step 1). Without run-time
  //      estimates the node "that frees first" is taken to be the one whose shortfall
  //      (the larger of the missing CPU and missing memory, each as a fraction of the
  //      need) is smallest; ties: fewer running jobs, then name. This scan is O(nodes)
  //      but happens once per reservation;
  //   4. speculation: stragglers (see config) get a backup copy on another node with
  //      free room, at most one per job, from room left after step 2 (backups never
  //      preempt). A group whose straggler finds no free room anywhere is looked at
  //      again at the first decide() after which free room for it is left.
  // Decisions are assumed carried out: a start whose exec fails must be reported as
  // finished(job, lost).
  std::vector<decision> decide(std::int64_t now_ms);

  // Why a job is where it is, for its status file: "waiting for 3 7", "unschedulable:
  // no node has 64 GiB", "unschedulable: no node has arch=riscv", "over quota: alice
  // uses 3 CPUs, 12 GiB of 4 CPUs, 16 GiB", "reserved on n2", "queued", "running on n1",
  // "running on n1, backup on n4", "done", "failed", "killed". Unknown job: "".
  // O(nodes) for a queued job (the unschedulable check).
  std::string note(std::uint64_t job) const;
  // Jobs not running and not ended, in the order the next pass would consider them if
  // every one fitted: reserved jobs, then the DRF interleaving of the users' queues
  // (each job's need added to its user's share as it is taken), then jobs waiting for
  // dependencies by submission. O(n log n).
  std::vector<std::uint64_t> queue() const;

  struct user_info {
    resources usage;         // every running copy, preemptible included
    resources quota;         // `unlimited` where none
    double weight = 1;
    double dominant_share = 0;  // max(usage.cpu/total.cpu, usage.mem/total.mem) / weight
    int running = 0;         // jobs with at least one running copy
    int queued = 0;          // jobs neither running nor ended
    // Queued non-preemptible jobs whose dependencies are done (over-quota ones included,
    // reserved ones not), leaving out those that no node could ever hold (a need above
    // the largest CPU or memory of the present nodes with their labels): the demand that
    // the first DRF phase weighs. A user whose backlog is 0 cannot grow its share,
    // whatever its weight (preemptible jobs only take idle room). O(user's shapes).
    int backlog = 0;
  };
  std::optional<user_info> user(std::string_view name) const;
  std::vector<std::string> users() const;  // every user ever seen, sorted
  resources total() const;                 // capacity of the nodes not removed

  // For tests: checks the private indexes (placement trees, failed and tracked shapes,
  // queue heads, per-shape user bits, ready counts, speculation waits) against the
  // records they summarize. Returns "" if all hold, else the first broken one ("shape 3
  // is marked failed but fits on n7"). O(nodes × shapes + jobs); changes no decision
  // (it brings the lazily kept placement trees up to date first, as a lookup would).
  std::string check_invariants() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// Formats an amount for notes: "64 GiB" (binary units, one decimal at most, as
// ctl::human_bytes) and "1.5 CPUs".
std::string human_bytes(std::int64_t bytes);
std::string human_cpus(std::int64_t cpu_millis);

}  // namespace sched::policy
