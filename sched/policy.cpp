// The scheduling policy (policy.hpp says what it decides and why). This file is arranged
// as: node_treap (the placement index); the records (nodes, node label sets, job label
// classes, shapes, users and their queues, jobs, speculation groups); scheduler::impl
// with the bookkeeping helpers, then the public calls in the header's order, decide()
// last.
//
// Invariants the helpers keep:
//   - a node is `indexed` iff it is not drained, not removed and holds no reservation;
//     once flush() has run (every lookup starts with it) the indexed nodes are those in
//     the trees of their label set, keyed by free room (capacity − used), and in the
//     "reclaimable" tree (only while it runs preemptible copies) free + preemptible use;
//   - a queued job is in exactly one user queue (user × shape); the queue's first job is
//     in the user's `heads` set unless the queue is parked (its user is over quota for
//     it); a user is in `active_` (by dominant share) iff its `heads` is not empty;
//   - each user's first head job has one entry in `starving_`, keyed by the time it may
//     ask for a reservation;
//   - shape.ready counts the queued jobs of a shape in unparked queues; active_shapes
//     counts the shapes whose ready count is not 0, failed_active those of them marked
//     failed (per kind, preemptible or not);
//   - a shape marked failed fits on no indexed node (non-preemptible shapes: not even
//     counting preemptible copies' room): every change that adds room to a node calls
//     room_grew, which clears the marks of the failed shapes that now fit there; a
//     tracked shape (failed once, since) has among its hints every indexed node where it
//     fits; check() verifies all of these against the records.
#include "sched/policy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <compare>
#include <functional>
#include <map>
#include <queue>
#include <set>
#include <tuple>
#include <unordered_map>

namespace sched::policy {

namespace {

using u64 = std::uint64_t;
using i64 = std::int64_t;

// ---------------------------------------------------------------------------------------
// node_treap: a treap of node indexes keyed by (cpu, mem, index) with the largest mem of
// each subtree, so that "the first node in key order with cpu ≥ a and mem ≥ b" (best
// fit by CPU, then memory) and "the last one" (most free) take O(log n): keys below a
// are skipped by the order, subtrees without enough memory by the maximum. Node storage
// is a vector indexed by node index (each node is in a tree at most once).
class node_treap {
 public:
  bool contains(int i) const { return i < static_cast<int>(pool_.size()) && pool_[i].in; }
  // For check(): the key node i was inserted with.
  std::pair<i64, i64> key(int i) const { return {pool_[i].cpu, pool_[i].mem}; }
  // For check(): "" if the tree is ordered by key, a heap by priority, every subtree's
  // max_mem right and every member reachable; else what is wrong.
  std::string verify() const {
    int count = 0;
    std::string err;
    verify_at(root_, -1, -1, count, err);
    int members = 0;
    for (const tnode& t : pool_) members += t.in;
    if (err.empty() && count != members) err = fmt::format("treap reaches {} of {} members", count, members);
    return err;
  }

  void insert(int i, i64 cpu, i64 mem) {
    if (static_cast<int>(pool_.size()) <= i) pool_.resize(i + 1);
    tnode& t = pool_[i];
    assert(!t.in);
    t = tnode{.cpu = cpu, .mem = mem, .max_mem = mem, .l = -1, .r = -1, .prio = priority(i), .in = true};
    root_ = insert_at(root_, i);
  }

  void erase(int i) {
    assert(contains(i));
    root_ = erase_at(root_, i);
    pool_[i].in = false;
  }

  // The node with the smallest (cpu, mem) that has cpu ≥ cpu_min and mem ≥ mem_min, not
  // `exclude`; -1 if none.
  int first_fit(i64 cpu_min, i64 mem_min, int exclude) const {
    return first_at(root_, cpu_min, mem_min, exclude);
  }
  // The node with the largest (cpu, mem) that has mem ≥ mem_min, not `exclude`, if it
  // also has cpu ≥ cpu_min (it has the most CPU of those with enough memory); else -1.
  int most_free(i64 cpu_min, i64 mem_min, int exclude) const {
    return last_at(root_, cpu_min, mem_min, exclude);
  }

 private:
  struct tnode {
    i64 cpu = 0, mem = 0, max_mem = 0;
    int l = -1, r = -1;
    std::uint32_t prio = 0;
    bool in = false;
  };

  static std::uint32_t priority(int i) {  // splitmix64: fixed, well-mixed priorities
    u64 z = static_cast<u64>(i) + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<std::uint32_t>(z ^ (z >> 31));
  }
  bool less(int a, int b) const {
    const tnode& x = pool_[a];
    const tnode& y = pool_[b];
    return std::tie(x.cpu, x.mem, a) < std::tie(y.cpu, y.mem, b);
  }
  void pull(int t) {
    tnode& n = pool_[t];
    n.max_mem = n.mem;
    if (n.l >= 0) n.max_mem = std::max(n.max_mem, pool_[n.l].max_mem);
    if (n.r >= 0) n.max_mem = std::max(n.max_mem, pool_[n.r].max_mem);
  }
  // Splits t into the keys below x's and those above (x is not in t).
  void split(int t, int x, int& l, int& r) {
    if (t < 0) {
      l = r = -1;
      return;
    }
    if (less(t, x)) {
      split(pool_[t].r, x, pool_[t].r, r);
      l = t;
    } else {
      split(pool_[t].l, x, l, pool_[t].l);
      r = t;
    }
    pull(t);
  }
  int merge(int a, int b) {
    if (a < 0) return b;
    if (b < 0) return a;
    if (pool_[a].prio > pool_[b].prio) {
      pool_[a].r = merge(pool_[a].r, b);
      pull(a);
      return a;
    }
    pool_[b].l = merge(a, pool_[b].l);
    pull(b);
    return b;
  }
  int insert_at(int t, int x) {
    if (t < 0) return x;
    if (pool_[x].prio > pool_[t].prio) {
      split(t, x, pool_[x].l, pool_[x].r);
      pull(x);
      return x;
    }
    if (less(x, t)) {
      pool_[t].l = insert_at(pool_[t].l, x);
    } else {
      pool_[t].r = insert_at(pool_[t].r, x);
    }
    pull(t);
    return t;
  }
  int erase_at(int t, int x) {
    assert(t >= 0);  // x is in the tree with the key it was inserted with
    if (t == x) return merge(pool_[t].l, pool_[t].r);
    if (less(x, t)) {
      pool_[t].l = erase_at(pool_[t].l, x);
    } else {
      pool_[t].r = erase_at(pool_[t].r, x);
    }
    pull(t);
    return t;
  }
  int first_at(int t, i64 a, i64 b, int ex) const {
    if (t < 0 || pool_[t].max_mem < b) return -1;
    const tnode& n = pool_[t];
    if (n.cpu < a) return first_at(n.r, a, b, ex);  // the left subtree has less CPU still
    if (int f = first_at(n.l, a, b, ex); f >= 0) return f;
    if (n.mem >= b && t != ex) return t;
    return first_at(n.r, a, b, ex);
  }
  int last_at(int t, i64 a, i64 b, int ex) const {
    if (t < 0 || pool_[t].max_mem < b) return -1;
    const tnode& n = pool_[t];
    if (int f = last_at(n.r, a, b, ex); f >= 0) return f;
    if (n.cpu < a) return -1;  // everything left of here has less CPU
    if (n.mem >= b && t != ex) return t;
    return last_at(n.l, a, b, ex);
  }

  // Checks the subtree t, whose keys must lie strictly between those of lo and hi.
  i64 verify_at(int t, int lo, int hi, int& count, std::string& err) const {
    if (t < 0 || !err.empty()) return std::numeric_limits<i64>::min();
    const tnode& n = pool_[t];
    ++count;
    if (!n.in) err = fmt::format("treap node {} reachable but not a member", t);
    if ((lo >= 0 && !less(lo, t)) || (hi >= 0 && !less(t, hi))) err = fmt::format("treap node {} out of order", t);
    if ((n.l >= 0 && pool_[n.l].prio > n.prio) || (n.r >= 0 && pool_[n.r].prio > n.prio)) {
      err = fmt::format("treap node {} breaks the heap order", t);
    }
    i64 m = std::max({n.mem, verify_at(n.l, lo, t, count, err), verify_at(n.r, t, hi, count, err)});
    if (err.empty() && m != n.max_mem) err = fmt::format("treap node {}: max_mem {} should be {}", t, n.max_mem, m);
    return m;
  }

  std::vector<tnode> pool_;
  int root_ = -1;
};

// ---------------------------------------------------------------------------------------
// Records.

struct node_rec {
  std::string name;
  resources cap;
  std::vector<label> labels;  // sorted
  bool drained = false;
  bool gone = false;          // removed: kept while copies are still accounted to it
  resources used;             // every copy placed here
  resources preempt_used;     // the preemptible ones among them
  struct pcopy {
    u64 id = 0;
    i64 start_ms = 0;
    int slot = 0;
  };
  std::vector<pcopy> preemptible;  // the preemptible copies
  int copies = 0;
  std::optional<int> reserved_for;  // the slot of the job it is held for
  std::vector<int> classes;   // the label classes whose needs this node satisfies
  int lset = -1;              // its label set
  bool indexed = false;       // in its classes' free trees (and reclaimable ones)
  bool recl_indexed = false;
  // What the trees hold, which may lag behind the above until flush(): the label set
  // whose trees hold it (-1: none), and in which of the two.
  int tree_lset = -1;
  bool in_free = false, in_recl = false;
  bool stale = false;         // in stale_nodes: its trees' keys or membership are behind
  bool dirty = false;         // in dirty_: its reservation should be looked at
  i64 free_cpu() const { return cap.cpu_millis - used.cpu_millis; }
  i64 free_mem() const { return cap.mem_bytes - used.mem_bytes; }
};

// A distinct set of node labels, with the placement indexes of the nodes that have it.
// A node is in one label set's trees only, whatever the number of job classes it
// satisfies, so that a start or an end updates two treaps at most.
struct lset_rec {
  std::vector<label> labels;  // sorted
  node_treap free_tree;       // key: free room
  node_treap recl_tree;       // key: free room + preemptible copies' room (nodes that run any)
};

// A distinct set of label constraints (a job's `needs`): the label sets satisfying it
// (a lookup queries each and takes the best) and the nodes.
struct class_rec {
  std::vector<label> needs;  // sorted
  std::vector<int> lsets;
  std::vector<int> members;  // node indexes, removed ones included
  // The largest capacity of a member that is neither drained nor removed, per
  // dimension (recomputed when caps_stale): a need above it fits no node, at O(1).
  mutable resources max_cap;  // a cache: max_cap() is const
  mutable bool caps_stale = true;
};

// A job shape: what the placement pass can decide once for every job alike.
struct shape_rec {
  resources need;
  int cls = 0;
  bool preemptible = false;
  int ready = 0;         // queued jobs in unparked queues
  bool failed = false;   // fitted nowhere at its last try, and no node's room grew since
  int failed_pos = -1;   // its place in failed_shapes
  int open_pos = -1;     // its place in open_shapes (ready jobs and not failed)
  // Tracked (since it was last marked failed, until it has more than max_hints hints):
  // every indexed node where it fits — free room, or with preemption if it is not
  // preemptible — is among `hints`, so that placing it looks at a few nodes instead of
  // the trees. (When it was marked failed it fitted nowhere; room_grew adds each node
  // whose room grew to where it fits.) Failed and tracked with no hints are the same.
  bool tracked = false;
  int tracked_pos = -1;  // its place in tracked_shapes
  std::vector<int> hints;
  // For backups, which never preempt: no node had free room at the last look, and no
  // node's free room grew since to where it would fit.
  bool no_free_room = false;
  // The speculation groups whose straggler waits for this shape's free room (decide()
  // step 4): looked at again when the mark is cleared, not every recheck_ms.
  std::vector<int> spec_waiting;
  // Bit u set: user u's queue of this shape is in its heads (not parked, not empty).
  std::vector<u64> head_users;
};

struct order_key {
  i64 neg_priority = 0;
  i64 submitted_ms = 0;
  u64 id = 0;
  int slot = -1;  // the job's slot in job_table (ids are unique: never decides the order)
  friend auto operator<=>(const order_key&, const order_key&) = default;
};

struct user_queue {
  int shape = 0;
  std::set<order_key> jobs;
  order_key head;  // a copy of *jobs.begin() while not empty, for the DRF pass's probes
  bool parked = false;
};

struct user_rec {
  std::string name;
  resources quota{unlimited, unlimited};
  double weight = 1;
  resources usage;     // every running copy
  resources np_usage;  // non-preemptible copies: what quotas bound
  int running = 0;
  int queued = 0;
  double share_key = 0;  // the share it is filed under in active_
  bool in_active = false;
  std::vector<int> queue_of_shape;  // by shape: its queue, or -1 (shorter: none)
  int queue_of(int s) const { return s < static_cast<int>(queue_of_shape.size()) ? queue_of_shape[s] : -1; }
  std::vector<user_queue> queues;
  // (first job, queue, its shape) of the unparked queues that are not empty
  std::set<std::tuple<order_key, int, int>> heads;
  std::vector<int> parked;
  std::optional<std::tuple<i64, u64, int>> starve_entry;
};

// deferred: queued, but out of its queue until defer_until_ms (defer(): a start failed
// for a reason of the job's own, and it must not be placed again at once).
enum class jstate : std::uint8_t { waiting, queued, reserved, running, deferred };

struct copy_rec {
  int node = 0;
  i64 start_ms = 0;
};

struct job_rec {
  u64 id = 0;
  int slot = -1;   // -1: a free slot
  int user = 0;
  int shape = 0;
  int group = -1;
  resources need;
  bool preemptible = false;
  bool speculate = false;
  order_key key;
  std::vector<u64> after;
  std::vector<std::pair<u64, int>> dependents;  // (id, slot): the slot may have been reused
  int pending = 0;  // predecessors not done
  jstate state = jstate::waiting;
  i64 ready_since_ms = 0;
  i64 recheck_at_ms = 0;
  i64 defer_until_ms = 0;  // while deferred: its key in impl::deferred
  int reserved_node = -1;
  std::vector<copy_rec> copies;
  bool backed_up = false;
  bool candidate = false;  // in its group's speculation candidates
};

// The records of the jobs that have not ended, in dense slots (a freed slot is reused):
// the pass refers to jobs by slot, and looks an id up only where a caller names one.
// Only add() may move the records (references across it are not kept).
struct job_table {
  std::vector<job_rec> slots;
  std::vector<int> free;
  std::unordered_map<u64, int> by_id;

  job_rec& operator[](int s) { return slots[s]; }
  const job_rec& operator[](int s) const { return slots[s]; }
  job_rec* find(u64 id) {
    auto it = by_id.find(id);
    return it == by_id.end() ? nullptr : &slots[it->second];
  }
  const job_rec* find(u64 id) const {
    auto it = by_id.find(id);
    return it == by_id.end() ? nullptr : &slots[it->second];
  }
  bool contains(u64 id) const { return by_id.contains(id); }
  // The job of `id` if slot s still holds it.
  job_rec* at_slot(int s, u64 id) { return slots[s].slot >= 0 && slots[s].id == id ? &slots[s] : nullptr; }
  job_rec& add(u64 id) {
    int s;
    if (free.empty()) {
      s = static_cast<int>(slots.size());
      slots.emplace_back();
    } else {
      s = free.back();
      free.pop_back();
    }
    by_id.emplace(id, s);
    slots[s].id = id;
    slots[s].slot = s;
    return slots[s];
  }
  void erase(job_rec& j) {
    by_id.erase(j.id);
    int s = j.slot;
    slots[s] = job_rec{};
    free.push_back(s);
  }
};

// A group's done run times (for the median) and its running speculation candidates.
struct group_rec {
  std::string name;
  std::priority_queue<i64> low;                                        // lower half
  std::priority_queue<i64, std::vector<i64>, std::greater<i64>> high;  // upper half
  std::set<std::tuple<i64, u64, int>> candidates;                      // (start_ms, job, slot)
  std::optional<i64> due_ms;                                           // its key in spec_due_
  int waiting_shape = -1;  // in that shape's spec_waiting (at wait_pos) instead of spec_due
  int wait_pos = -1;
  int done() const { return static_cast<int>(low.size() + high.size()); }
  // The lower median of the done run times.
  i64 median() const { return low.empty() ? 0 : low.top(); }
  void add(i64 v) {
    if (low.empty() || v <= low.top()) {
      low.push(v);
    } else {
      high.push(v);
    }
    if (low.size() > high.size() + 1) {
      high.push(low.top());
      low.pop();
    } else if (high.size() > low.size()) {
      low.push(high.top());
      high.pop();
    }
  }
};

bool fits(const resources& need, i64 free_cpu, i64 free_mem) {
  return need.cpu_millis <= free_cpu && need.mem_bytes <= free_mem;
}

resources operator+(resources a, const resources& b) {
  return {a.cpu_millis + b.cpu_millis, a.mem_bytes + b.mem_bytes};
}
resources operator-(resources a, const resources& b) {
  return {a.cpu_millis - b.cpu_millis, a.mem_bytes - b.mem_bytes};
}

bool has_labels(const std::vector<label>& node_labels, const std::vector<label>& needs) {
  // Both sorted: every need must be among the labels.
  return std::includes(node_labels.begin(), node_labels.end(), needs.begin(), needs.end());
}

std::string labels_text(const std::vector<label>& ls) {
  std::string out;
  for (const label& l : ls) {
    if (!out.empty()) out += ' ';
    out += l.first + "=" + l.second;
  }
  return out;
}

std::string quota_text(const resources& r) {
  std::string cpu = r.cpu_millis == unlimited ? "unlimited CPUs" : human_cpus(r.cpu_millis);
  std::string mem = r.mem_bytes == unlimited ? "unlimited memory" : human_bytes(r.mem_bytes);
  return cpu + ", " + mem;
}

std::string duration_text(i64 ms) {
  if (ms % 1000 == 0) return fmt::format("{} s", ms / 1000);
  return fmt::format("{:.3f} s", static_cast<double>(ms) / 1000);
}

}  // namespace

std::string human_bytes(std::int64_t bytes) {
  constexpr std::string_view units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 0) {
    std::string out(1, '-');
    out += human_bytes(bytes == INT64_MIN ? INT64_MAX : -bytes);
    return out;
  }
  auto b = static_cast<u64>(bytes);
  if (b < 1024) return std::to_string(b) + " B";
  // Tenths of the largest unit that gives at least 1, rounded to nearest; a value that
  // rounds up to 1024 of a unit is shown as 1 of the next, as ctl::human_bytes.
  std::size_t u = 1;
  while (u + 1 < std::size(units) && b >= (u64{1} << (10 * (u + 1)))) ++u;
  // ⌊(b × 10 + 2^(k-1)) / 2^k⌋ for k = 10 × unit ≤ 60, in 64 bits (32-bit ARM has no
  // 128-bit integer): the whole units and the remainder apart (rem × 10 + 2^(k-1) < 2^64).
  auto tenths = [&](std::size_t unit) {
    unsigned k = 10 * static_cast<unsigned>(unit);
    u64 rem = b & ((u64{1} << k) - 1);
    return (b >> k) * 10 + ((rem * 10 + (u64{1} << (k - 1))) >> k);
  };
  u64 t = tenths(u);
  if (t >= 10240 && u + 1 < std::size(units)) t = tenths(++u);
  std::string out = std::to_string(t / 10);
  if (t % 10 != 0) out += "." + std::to_string(t % 10);
  out += " ";
  out.append(units[u]);
  return out;
}

std::string human_cpus(std::int64_t cpu_millis) {
  std::string n = std::to_string(cpu_millis / 1000);
  if (i64 frac = std::abs(cpu_millis % 1000); frac != 0) {
    std::string f = fmt::format("{:03}", frac);
    while (f.back() == '0') f.pop_back();
    n = (cpu_millis < 0 && cpu_millis > -1000 ? "-" : "") + n + "." + f;
  }
  return n + (cpu_millis == 1000 ? " CPU" : " CPUs");
}

// ---------------------------------------------------------------------------------------
struct scheduler::impl {
  config cfg;
  std::vector<node_rec> nodes;
  std::unordered_map<std::string, int> node_index;
  std::vector<class_rec> classes;
  std::vector<lset_rec> lsets;
  std::map<std::vector<label>, int> lset_index;
  std::map<std::vector<label>, int> class_index;
  std::vector<shape_rec> shapes;
  std::map<std::tuple<i64, i64, int, bool>, int> shape_index;
  std::vector<user_rec> users;
  std::unordered_map<std::string, int> user_index;
  job_table jobs;
  std::unordered_map<u64, outcome> ended;
  std::vector<group_rec> groups;
  std::unordered_map<std::string, int> group_index;

  resources total;
  std::set<std::pair<double, int>> active;        // (dominant share, user)
  std::set<std::tuple<i64, u64, int>> starving;   // (may reserve at, job, slot): user heads
  std::set<std::pair<i64, int>> spec_due;         // (check at, group)
  std::set<std::tuple<i64, u64, int>> deferred;   // (back in its queue at, job, slot)
  std::vector<int> dirty;                         // reserved nodes whose room grew
  int reservations = 0;
  // Per kind (0 non-preemptible, 1 preemptible): shapes with ready jobs, and those of
  // them marked failed. A pass phase has work iff the first exceeds the second.
  int active_shapes[2] = {0, 0};
  int failed_active[2] = {0, 0};
  // Per kind: the shapes with ready jobs that are not failed (what a DRF phase can
  // still start), in no order.
  std::vector<int> open_shapes[2];
  std::vector<int> failed_shapes;
  std::vector<int> stale_nodes;  // see flush()
  std::vector<int> tracked_shapes;
  static constexpr std::size_t max_hints = 8;
  // Kept apart from the records, small and dense, for the loops of the DRF pass: per
  // shape, 1 if preemptible | 2 if failed; the users with a head of an open shape (bits,
  // worked out for each pick).
  std::vector<std::uint8_t> shape_flags;
  std::vector<u64> open_users;
  std::vector<int> no_free_room;  // shapes so marked
  std::vector<int> room_check;    // shapes unmarked since the last speculate() with groups waiting
  std::vector<decision> out;

  explicit impl(config c) : cfg(c) {}

  // The error of a call that names a job which is not live: ended, or never known.
  std::string no_job(u64 id) const {
    return ended.contains(id) ? fmt::format("job {} has ended already", id) : fmt::format("no job {}", id);
  }

  // ----- nodes and their indexes
  // unindex(n), a change of n's room or state, index(n): `indexed` and `recl_indexed`
  // follow at once; the trees are brought up to date by flush(), before the next lookup
  // (a node that gets a copy back soon after one ended is re-keyed once, not twice).
  void unindex(int n) {
    node_rec& nd = nodes[n];
    nd.indexed = nd.recl_indexed = false;
    mark_stale(n);
  }
  void index(int n) {
    node_rec& nd = nodes[n];
    assert(!nd.indexed && !nd.recl_indexed);
    if (nd.drained || nd.gone || nd.reserved_for) return;
    nd.indexed = true;
    nd.recl_indexed = nd.preempt_used.cpu_millis > 0 || nd.preempt_used.mem_bytes > 0;
    mark_stale(n);
  }
  void mark_stale(int n) {
    if (nodes[n].stale) return;
    nodes[n].stale = true;
    stale_nodes.push_back(n);
  }
  void flush() {
    for (int n : stale_nodes) {
      node_rec& nd = nodes[n];
      nd.stale = false;
      if (nd.in_free) lsets[nd.tree_lset].free_tree.erase(n);
      if (nd.in_recl) lsets[nd.tree_lset].recl_tree.erase(n);
      nd.in_free = nd.indexed;
      nd.in_recl = nd.recl_indexed;
      nd.tree_lset = nd.indexed ? nd.lset : -1;
      if (nd.in_free) lsets[nd.lset].free_tree.insert(n, nd.free_cpu(), nd.free_mem());
      if (nd.in_recl) {
        lsets[nd.lset].recl_tree.insert(n, nd.free_cpu() + nd.preempt_used.cpu_millis,
                                        nd.free_mem() + nd.preempt_used.mem_bytes);
      }
    }
    stale_nodes.clear();
  }
  const resources& max_cap(int c) const {
    const class_rec& cr = classes[c];
    if (cr.caps_stale) {
      cr.max_cap = {};
      for (int n : cr.members) {
        const node_rec& nd = nodes[n];
        if (nd.gone || nd.drained) continue;
        cr.max_cap.cpu_millis = std::max(cr.max_cap.cpu_millis, nd.cap.cpu_millis);
        cr.max_cap.mem_bytes = std::max(cr.max_cap.mem_bytes, nd.cap.mem_bytes);
      }
      cr.caps_stale = false;
    }
    return cr.max_cap;
  }
  void caps_changed() {
    for (class_rec& c : classes) c.caps_stale = true;
  }

  int lset_of(const std::vector<label>& labels) {
    if (auto it = lset_index.find(labels); it != lset_index.end()) return it->second;
    int l = static_cast<int>(lsets.size());
    lsets.emplace_back();
    lsets[l].labels = labels;
    lset_index.emplace(labels, l);
    for (class_rec& c : classes) {
      if (has_labels(labels, c.needs)) c.lsets.push_back(l);
    }
    return l;
  }
  // The best node of class c for a job needing `need`, by the key of the trees chosen
  // by `recl` (free room, or room with preemption): the least key that fits (binpack),
  // or with `most` the greatest. -1 if none.
  int lookup(int c, const resources& need, bool recl, bool most, int exclude) {
    flush();
    int best = -1;
    auto key = [&](int n) {
      const node_rec& nd = nodes[n];
      i64 cpu = nd.free_cpu(), mem = nd.free_mem();
      if (recl) {
        cpu += nd.preempt_used.cpu_millis;
        mem += nd.preempt_used.mem_bytes;
      }
      return std::make_tuple(cpu, mem, n);
    };
    for (int l : classes[c].lsets) {
      const node_treap& t = recl ? lsets[l].recl_tree : lsets[l].free_tree;
      int n = most ? t.most_free(need.cpu_millis, need.mem_bytes, exclude)
                   : t.first_fit(need.cpu_millis, need.mem_bytes, exclude);
      if (n >= 0 && (best < 0 || (most ? key(best) < key(n) : key(n) < key(best)))) best = n;
    }
    return best;
  }
  void mark_dirty(int n) {
    node_rec& nd = nodes[n];
    if (nd.reserved_for && !nd.dirty) {
      nd.dirty = true;
      dirty.push_back(n);
    }
  }

  int class_of(std::vector<label> needs) {
    std::sort(needs.begin(), needs.end());
    needs.erase(std::unique(needs.begin(), needs.end()), needs.end());
    if (auto it = class_index.find(needs); it != class_index.end()) return it->second;
    int c = static_cast<int>(classes.size());
    classes.emplace_back();
    classes[c].needs = needs;
    class_index.emplace(std::move(needs), c);
    for (int l = 0; l < static_cast<int>(lsets.size()); ++l) {
      if (has_labels(lsets[l].labels, classes[c].needs)) classes[c].lsets.push_back(l);
    }
    for (int n = 0; n < static_cast<int>(nodes.size()); ++n) {
      if (!has_labels(nodes[n].labels, classes[c].needs)) continue;
      nodes[n].classes.push_back(c);
      classes[c].members.push_back(n);
    }
    return c;
  }

  int shape_of(const resources& need, int cls, bool preemptible) {
    auto key = std::make_tuple(need.cpu_millis, need.mem_bytes, cls, preemptible);
    if (auto it = shape_index.find(key); it != shape_index.end()) return it->second;
    int s = static_cast<int>(shapes.size());
    shapes.push_back(shape_rec{.need = need, .cls = cls, .preemptible = preemptible});
    shape_flags.push_back(preemptible ? 1 : 0);
    shape_index.emplace(key, s);
    return s;
  }

  int user_of(std::string_view name) {
    if (auto it = user_index.find(std::string(name)); it != user_index.end()) return it->second;
    int u = static_cast<int>(users.size());
    users.emplace_back();
    users[u].name = std::string(name);
    users[u].share_key = share(users[u]);
    user_index.emplace(std::string(name), u);
    return u;
  }

  int group_of(const std::string& name) {
    if (auto it = group_index.find(name); it != group_index.end()) return it->second;
    int g = static_cast<int>(groups.size());
    groups.emplace_back();
    groups[g].name = name;
    group_index.emplace(name, g);
    return g;
  }

  // ----- users: dominant shares, the active set, heads
  double share(const user_rec& u) const {
    double c = total.cpu_millis > 0 ? static_cast<double>(u.usage.cpu_millis) / static_cast<double>(total.cpu_millis) : 0;
    double m = total.mem_bytes > 0 ? static_cast<double>(u.usage.mem_bytes) / static_cast<double>(total.mem_bytes) : 0;
    return std::max(c, m) / u.weight;
  }
  void reshare(int u) {
    user_rec& ur = users[u];
    double s = share(ur);
    if (ur.in_active && s != ur.share_key) {
      active.erase({ur.share_key, u});
      active.insert({s, u});
    }
    ur.share_key = s;
  }
  void reshare_all() {
    active.clear();
    for (int u = 0; u < static_cast<int>(users.size()); ++u) {
      users[u].share_key = share(users[u]);
      if (users[u].in_active) active.insert({users[u].share_key, u});
    }
  }
  void set_active(int u) {
    user_rec& ur = users[u];
    bool want = !ur.heads.empty();
    if (want == ur.in_active) return;
    if (want) {
      active.insert({ur.share_key, u});
    } else {
      active.erase({ur.share_key, u});
    }
    ur.in_active = want;
  }
  // Keeps the user's first head job's entry in `starving` and the user in `active`.
  void refresh_head(int u) {
    user_rec& ur = users[u];
    const order_key* head = ur.heads.empty() ? nullptr : &std::get<0>(*ur.heads.begin());
    if (ur.starve_entry && (!head || std::get<1>(*ur.starve_entry) != head->id)) {
      starving.erase(*ur.starve_entry);
      ur.starve_entry.reset();
    }
    if (head && !ur.starve_entry) {
      const job_rec& j = jobs[head->slot];
      std::tuple<i64, u64, int> e{std::max(j.ready_since_ms + cfg.reserve_after_ms, j.recheck_at_ms), head->id, head->slot};
      starving.insert(e);
      ur.starve_entry = e;
    }
    set_active(u);
  }
  // Keeps s in open_shapes iff it has ready jobs and is not failed.
  void sync_open(int s) {
    shape_rec& sh = shapes[s];
    std::vector<int>& v = open_shapes[sh.preemptible ? 1 : 0];
    bool want = sh.ready > 0 && !sh.failed;
    if (want == (sh.open_pos >= 0)) return;
    if (want) {
      sh.open_pos = static_cast<int>(v.size());
      v.push_back(s);
    } else {
      int last = v.back();
      v[sh.open_pos] = last;
      shapes[last].open_pos = sh.open_pos;
      v.pop_back();
      sh.open_pos = -1;
    }
  }
  void shape_ready(int s, int delta) {
    shape_rec& sh = shapes[s];
    int k = sh.preemptible ? 1 : 0;
    int before = sh.ready;
    sh.ready += delta;
    if (before == 0 && sh.ready > 0) {
      ++active_shapes[k];
      if (sh.failed) ++failed_active[k];
    } else if (before > 0 && sh.ready == 0) {
      --active_shapes[k];
      if (sh.failed) --failed_active[k];
    }
    sync_open(s);
  }
  // A queue joins or leaves its user's heads (it became non-empty or empty, parked or
  // unparked): its shape's head_users bit follows.
  void head_added(int u, int q) {
    shape_rec& sh = shapes[users[u].queues[q].shape];
    auto w = static_cast<std::size_t>(u / 64);
    if (sh.head_users.size() <= w) sh.head_users.resize(w + 1, 0);
    sh.head_users[w] |= u64{1} << (u % 64);
  }
  void head_removed(int u, int q) {
    shape_rec& sh = shapes[users[u].queues[q].shape];
    sh.head_users[static_cast<std::size_t>(u / 64)] &= ~(u64{1} << (u % 64));
  }
  void set_failed(int s) {
    shape_rec& sh = shapes[s];
    if (sh.failed) return;
    shape_flags[s] |= 2;
    sh.failed = true;
    sh.hints.clear();
    if (!sh.tracked) {
      sh.tracked = true;
      sh.tracked_pos = static_cast<int>(tracked_shapes.size());
      tracked_shapes.push_back(s);
    }
    sh.failed_pos = static_cast<int>(failed_shapes.size());
    failed_shapes.push_back(s);
    if (sh.ready > 0) ++failed_active[sh.preemptible ? 1 : 0];
    sync_open(s);
  }
  void clear_failed(int s) {
    shape_rec& sh = shapes[s];
    if (!sh.failed) return;
    shape_flags[s] &= ~2;
    sh.failed = false;
    int last = failed_shapes.back();
    failed_shapes[sh.failed_pos] = last;
    shapes[last].failed_pos = sh.failed_pos;
    failed_shapes.pop_back();
    sh.failed_pos = -1;
    if (sh.ready > 0) --failed_active[sh.preemptible ? 1 : 0];
    sync_open(s);
  }
  void untrack(int s) {
    shape_rec& sh = shapes[s];
    assert(sh.tracked && !sh.failed);
    int last = tracked_shapes.back();
    tracked_shapes[sh.tracked_pos] = last;
    shapes[last].tracked_pos = sh.tracked_pos;
    tracked_shapes.pop_back();
    sh.tracked = false;
    sh.tracked_pos = -1;
    sh.hints.clear();
  }
  // Node n has more room than before (a copy ended, it came back, it was released from a
  // reservation), or more room by preemption (np_only: a preemptible copy started): the
  // failed shapes that fit there now are worth a try again, and the tracked shapes that
  // fit there get n as a hint. O(tracked shapes).
  void room_grew(int n, bool np_only = false) {
    const node_rec& nd = nodes[n];
    if (!nd.indexed) return;
    for (std::size_t i = tracked_shapes.size(); i-- > 0;) {
      int s = tracked_shapes[i];
      shape_rec& sh = shapes[s];
      if (np_only && sh.preemptible) continue;
      if (std::find(nd.classes.begin(), nd.classes.end(), sh.cls) == nd.classes.end()) continue;
      i64 cpu = nd.free_cpu(), mem = nd.free_mem();
      if (!sh.preemptible) {
        cpu += nd.preempt_used.cpu_millis;
        mem += nd.preempt_used.mem_bytes;
      }
      if (!fits(sh.need, cpu, mem)) continue;
      clear_failed(s);
      if (sh.hints.size() >= max_hints) {
        untrack(s);  // placing it looks at the trees again
      } else if (sh.hints.empty() || sh.hints.back() != n) {
        sh.hints.push_back(n);
      }
    }
    if (np_only) return;
    std::erase_if(no_free_room, [&](int s) {
      shape_rec& sh = shapes[s];
      bool there = std::find(nd.classes.begin(), nd.classes.end(), sh.cls) != nd.classes.end();
      if (!there || !fits(sh.need, nd.free_cpu(), nd.free_mem())) return false;
      sh.no_free_room = false;
      if (!sh.spec_waiting.empty()) room_check.push_back(s);  // speculate() looks
      return true;
    });
  }
  bool quota_ok(const user_rec& ur, const resources& need) const {
    auto ok = [](i64 used, i64 n, i64 q) { return q == unlimited || n <= q - used; };
    return ok(ur.np_usage.cpu_millis, need.cpu_millis, ur.quota.cpu_millis) &&
           ok(ur.np_usage.mem_bytes, need.mem_bytes, ur.quota.mem_bytes);
  }
  void park(int u, int q) {
    user_rec& ur = users[u];
    user_queue& uq = ur.queues[q];
    assert(!uq.parked && !uq.jobs.empty());
    ur.heads.erase({*uq.jobs.begin(), q, uq.shape});
    head_removed(u, q);
    uq.parked = true;
    shape_ready(uq.shape, -static_cast<int>(uq.jobs.size()));
    ur.parked.push_back(q);
  }
  void unpark_all(int u) {
    user_rec& ur = users[u];
    if (ur.parked.empty()) return;
    for (int q : ur.parked) {
      user_queue& uq = ur.queues[q];
      uq.parked = false;
      if (uq.jobs.empty()) continue;
      ur.heads.insert({*uq.jobs.begin(), q, uq.shape});
      head_added(u, q);
      shape_ready(uq.shape, static_cast<int>(uq.jobs.size()));
    }
    ur.parked.clear();
    refresh_head(u);
  }

  // ----- the queues
  void enqueue(job_rec& j) {
    user_rec& ur = users[j.user];
    int q = ur.queue_of(j.shape);
    if (q < 0) {
      q = static_cast<int>(ur.queues.size());
      ur.queues.push_back(user_queue{.shape = j.shape});
      if (static_cast<int>(ur.queue_of_shape.size()) <= j.shape) ur.queue_of_shape.resize(j.shape + 1, -1);
      ur.queue_of_shape[j.shape] = q;
    }
    user_queue& uq = ur.queues[q];
    if (!uq.parked) {
      if (uq.jobs.empty()) {
        ur.heads.insert({j.key, q, j.shape});
        head_added(j.user, q);
      } else if (j.key < *uq.jobs.begin()) {
        ur.heads.erase({*uq.jobs.begin(), q, j.shape});
        ur.heads.insert({j.key, q, j.shape});
      }
      shape_ready(j.shape, 1);
    }
    uq.jobs.insert(j.key);
    uq.head = *uq.jobs.begin();
    j.state = jstate::queued;
    refresh_head(j.user);
  }
  void dequeue(job_rec& j) {
    assert(j.state == jstate::queued);
    user_rec& ur = users[j.user];
    int q = ur.queue_of(j.shape);
    user_queue& uq = ur.queues[q];
    bool was_head = *uq.jobs.begin() == j.key;
    if (!uq.parked && was_head) ur.heads.erase({j.key, q, j.shape});
    uq.jobs.erase(j.key);
    if (!uq.jobs.empty()) uq.head = *uq.jobs.begin();
    if (!uq.parked) {
      if (uq.jobs.empty()) {
        head_removed(j.user, q);
      } else if (was_head) {
        ur.heads.insert({*uq.jobs.begin(), q, j.shape});
      }
      shape_ready(j.shape, -1);
    }
    refresh_head(j.user);
  }
  void make_ready(job_rec& j, i64 now) {
    j.ready_since_ms = now;
    j.recheck_at_ms = 0;
    enqueue(j);
  }

  // ----- copies
  void start_copy(job_rec& j, int n, i64 now) {
    node_rec& nd = nodes[n];
    unindex(n);
    nd.used = nd.used + j.need;
    if (j.preemptible) {
      nd.preempt_used = nd.preempt_used + j.need;
      nd.preemptible.push_back({.id = j.id, .start_ms = now, .slot = j.slot});
    }
    ++nd.copies;
    index(n);
    if (j.preemptible) room_grew(n, true);
    j.copies.push_back(copy_rec{.node = n, .start_ms = now});
    user_rec& ur = users[j.user];
    ur.usage = ur.usage + j.need;
    if (!j.preemptible) ur.np_usage = ur.np_usage + j.need;
    reshare(j.user);
  }
  // Frees copy i of j (and unparks its user's queues if its quota room grew).
  void stop_copy(job_rec& j, std::size_t i) {
    int n = j.copies[i].node;
    node_rec& nd = nodes[n];
    unindex(n);
    nd.used = nd.used - j.need;
    if (j.preemptible) {
      nd.preempt_used = nd.preempt_used - j.need;
      auto it = std::find_if(nd.preemptible.begin(), nd.preemptible.end(),
                             [&](const auto& p) { return p.slot == j.slot; });
      assert(it != nd.preemptible.end());
      *it = nd.preemptible.back();
      nd.preemptible.pop_back();
    }
    --nd.copies;
    index(n);
    room_grew(n);
    mark_dirty(n);
    j.copies.erase(j.copies.begin() + static_cast<std::ptrdiff_t>(i));
    user_rec& ur = users[j.user];
    ur.usage = ur.usage - j.need;
    if (!j.preemptible) ur.np_usage = ur.np_usage - j.need;
    reshare(j.user);
    if (!j.preemptible) unpark_all(j.user);
  }

  // ----- speculation groups
  i64 straggler_ms(const group_rec& g) const {
    auto t = static_cast<i64>(std::ceil(cfg.speculate_factor * static_cast<double>(g.median())));
    return std::max(t, cfg.speculate_min_ms);
  }
  void regroup(int g, std::optional<i64> not_before = {}) {
    group_rec& gr = groups[g];
    unwait(g);
    if (gr.due_ms) spec_due.erase({*gr.due_ms, g});
    gr.due_ms.reset();
    if (gr.candidates.empty() || gr.done() < cfg.speculate_min_done) return;
    i64 due = std::get<0>(*gr.candidates.begin()) + straggler_ms(gr);
    if (not_before) due = std::max(due, *not_before);
    gr.due_ms = due;
    spec_due.insert({due, g});
  }
  // Group g's straggler found no free room for its shape s anywhere: g sleeps until
  // room_grew clears the shape's no_free_room mark.
  void wait_for_room(int g, int s) {
    group_rec& gr = groups[g];
    assert(gr.waiting_shape < 0 && !gr.due_ms);
    shape_rec& sh = shapes[s];
    gr.waiting_shape = s;
    gr.wait_pos = static_cast<int>(sh.spec_waiting.size());
    sh.spec_waiting.push_back(g);
  }
  void unwait(int g) {
    group_rec& gr = groups[g];
    if (gr.waiting_shape < 0) return;
    std::vector<int>& w = shapes[gr.waiting_shape].spec_waiting;
    int last = w.back();
    w[gr.wait_pos] = last;
    groups[last].wait_pos = gr.wait_pos;
    w.pop_back();
    gr.waiting_shape = gr.wait_pos = -1;
  }
  void drop_candidate(job_rec& j) {
    if (!j.candidate) return;
    j.candidate = false;
    groups[j.group].candidates.erase({j.copies.empty() ? 0 : j.copies[0].start_ms, j.id, j.slot});
    regroup(j.group);
  }

  // Starts j's first copy on n (j queued or reserved); tell: return a start decision
  // (not for a copy that runs already, adopt()).
  void start(job_rec& j, int n, i64 now, std::string reason, bool tell = true) {
    if (j.state == jstate::queued) dequeue(j);
    if (j.state == jstate::reserved) unreserve(j);
    if (j.state == jstate::deferred) deferred.erase({j.defer_until_ms, j.id, j.slot});
    j.state = jstate::running;
    user_rec& ur = users[j.user];
    --ur.queued;
    ++ur.running;
    start_copy(j, n, now);
    if (tell) out.push_back(decision{decision::kind::start, j.id, nodes[n].name, std::move(reason)});
    if (j.speculate && j.group >= 0 && !j.backed_up) {
      j.candidate = true;
      groups[j.group].candidates.insert({now, j.id, j.slot});
      regroup(j.group);
    }
  }

  // Takes the reservation off j's node (j stays in state reserved for the caller).
  void unreserve(job_rec& j) {
    int n = j.reserved_node;
    unindex(n);
    nodes[n].reserved_for.reset();
    index(n);
    room_grew(n);
    j.reserved_node = -1;
    --reservations;
  }
  // Gives up j's reservation and queues it again; it keeps its waiting time, so it may
  // ask again once `recheck_ms` has passed.
  void release(job_rec& j, i64 recheck_at) {
    unreserve(j);
    j.recheck_at_ms = recheck_at;
    enqueue(j);
  }

  int place(const job_rec& j, int exclude = -1) {
    return lookup(shapes[j.shape].cls, j.need, false, cfg.placement == mode::spread, exclude);
  }
  // lookup() for shape s, over its hints if it is tracked (the same node: every node
  // where it fits is a hint).
  int place_shape(int s, bool recl, bool most) {
    const shape_rec& sh = shapes[s];
    if (!sh.tracked) return lookup(sh.cls, sh.need, recl, most, -1);
    int best = -1;
    std::tuple<i64, i64, int> best_key;
    for (int n : sh.hints) {
      const node_rec& nd = nodes[n];
      if (!(recl ? nd.recl_indexed : nd.indexed)) continue;
      if (std::find(nd.classes.begin(), nd.classes.end(), sh.cls) == nd.classes.end()) continue;
      i64 cpu = nd.free_cpu(), mem = nd.free_mem();
      if (recl) {
        cpu += nd.preempt_used.cpu_millis;
        mem += nd.preempt_used.mem_bytes;
      }
      if (!fits(sh.need, cpu, mem)) continue;
      std::tuple<i64, i64, int> key{cpu, mem, n};
      if (best < 0 || (most ? best_key < key : key < best_key)) {
        best = n;
        best_key = key;
      }
    }
    return best;
  }

  // Preempts the newest preemptible copies on node n until j fits there.
  void preempt_for(const job_rec& j, int n, i64 now) {
    node_rec& nd = nodes[n];
    std::vector<node_rec::pcopy> victims = nd.preemptible;
    std::sort(victims.begin(), victims.end(),
              [](const auto& a, const auto& b) { return std::tie(a.start_ms, a.id) > std::tie(b.start_ms, b.id); });
    for (const auto& victim : victims) {
      if (fits(j.need, nd.free_cpu(), nd.free_mem())) break;
      job_rec& v = jobs[victim.slot];
      out.push_back(decision{decision::kind::preempt, v.id, nd.name, fmt::format("room for job {}", j.id)});
      auto it = std::find_if(v.copies.begin(), v.copies.end(), [&](const copy_rec& c) { return c.node == n; });
      assert(it != v.copies.end());
      drop_candidate(v);
      stop_copy(v, static_cast<std::size_t>(it - v.copies.begin()));
      if (v.copies.empty()) requeue(v, now);
    }
    assert(fits(j.need, nd.free_cpu(), nd.free_mem()));
  }

  // For a non-preemptible job that fits nowhere: preempts on the best-fitting node
  // where the preemptible copies' room would make it fit, and starts it there.
  // The job is in `slot`, of shape si.
  bool start_by_preempting(int si, int slot, i64 now) {
    if (shapes[si].preemptible) return false;
    int n = place_shape(si, true, false);
    if (n < 0) return false;
    job_rec& j = jobs[slot];
    std::size_t before = out.size();
    preempt_for(j, n, now);
    start(j, n, now, fmt::format("preempted {}", out.size() - before));
    return true;
  }

  // A run ended for good or the job is back in the queue: running → queued.
  void requeue(job_rec& j, i64 now) {
    assert(j.copies.empty());
    drop_candidate(j);
    user_rec& ur = users[j.user];
    --ur.running;
    ++ur.queued;
    j.backed_up = false;
    make_ready(j, now);
  }

  // Ends j (not running any more): records the outcome, releases or fails dependents.
  // Iterative: a 10 000-job chain fails without deep recursion.
  void end(job_rec& first, outcome o, i64 now) {
    std::vector<std::tuple<u64, int, u64>> failing;  // (job, its slot, failed predecessor)
    auto finish_one = [&](job_rec& j, outcome oc) {
      user_rec& ur = users[j.user];
      switch (j.state) {
        case jstate::queued: dequeue(j); --ur.queued; break;
        case jstate::reserved: unreserve(j); --ur.queued; break;
        case jstate::waiting: --ur.queued; break;
        case jstate::deferred: deferred.erase({j.defer_until_ms, j.id, j.slot}); --ur.queued; break;
        case jstate::running: --ur.running; break;
      }
      drop_candidate(j);
      ended[j.id] = oc;
      for (auto [d, ds] : j.dependents) {
        job_rec* dj = jobs.at_slot(ds, d);
        if (dj == nullptr || dj->state != jstate::waiting) continue;  // cancelled
        if (oc == outcome::done) {
          if (--dj->pending == 0) make_ready(*dj, now);
        } else {
          failing.emplace_back(d, ds, j.id);
        }
      }
      jobs.erase(j);
    };
    finish_one(first, o);
    while (!failing.empty()) {
      auto [d, ds, pred] = failing.back();
      failing.pop_back();
      job_rec* dj = jobs.at_slot(ds, d);
      if (dj == nullptr) continue;  // two failed predecessors: failed already
      out.push_back(decision{decision::kind::fail, d, "", fmt::format("dependency {} failed", pred)});
      finish_one(*dj, outcome::failed);
    }
  }

  // ----- the steps of decide()
  void start_reserved(i64 now) {
    std::vector<int> todo;
    todo.swap(dirty);
    for (int n : todo) {
      node_rec& nd = nodes[n];
      nd.dirty = false;
      if (!nd.reserved_for) continue;
      job_rec& j = jobs[*nd.reserved_for];
      bool room = fits(j.need, nd.free_cpu(), nd.free_mem());
      bool by_preempting = !room && !j.preemptible &&
                           fits(j.need, nd.free_cpu() + nd.preempt_used.cpu_millis,
                                nd.free_mem() + nd.preempt_used.mem_bytes);
      if (!room && !by_preempting) continue;
      if (!j.preemptible && !quota_ok(users[j.user], j.need)) {
        release(j, now + cfg.recheck_ms);
        continue;
      }
      if (by_preempting) preempt_for(j, n, now);
      start(j, n, now, "reserved");
    }
  }

  // The eligible node closest to fitting j (decide() step 2 defines "closest").
  int reservation_node(const job_rec& j) const {
    const class_rec& c = classes[shapes[j.shape].cls];
    int best = -1;
    double best_short = 0;
    auto shortfall = [&](const node_rec& nd) {
      auto part = [](i64 need, i64 free) {
        return need <= 0 || free >= need ? 0.0 : static_cast<double>(need - std::max<i64>(free, 0)) / static_cast<double>(need);
      };
      return std::max(part(j.need.cpu_millis, nd.free_cpu()), part(j.need.mem_bytes, nd.free_mem()));
    };
    for (int n : c.members) {
      const node_rec& nd = nodes[n];
      if (nd.gone || nd.drained || nd.reserved_for || !fits(j.need, nd.cap.cpu_millis, nd.cap.mem_bytes)) continue;
      double s = shortfall(nd);
      if (best < 0 || std::tie(s, nd.copies, nd.name) < std::tie(best_short, nodes[best].copies, nodes[best].name)) {
        best = n;
        best_short = s;
      }
    }
    return best;
  }

  void reserve_starving(i64 now) {
    while (!starving.empty() && std::get<0>(*starving.begin()) <= now) {
      auto [due, id, slot] = *starving.begin();
      job_rec& j = jobs[slot];
      user_rec& ur = users[j.user];
      starving.erase(starving.begin());
      ur.starve_entry.reset();
      // After a DRF pass every shape with ready jobs that fits nowhere (preemption
      // included) is marked failed, and those that fit have been started: a head whose
      // shape is not failed is not starving for room.
      bool fits_now = !shapes[j.shape].failed;
      int n = -1;
      // Preemptible jobs are scavengers: no node is held for them.
      if (!fits_now && !j.preemptible && reservations < cfg.max_reservations &&
          fits(j.need, max_cap(shapes[j.shape].cls).cpu_millis, max_cap(shapes[j.shape].cls).mem_bytes)) {
        n = reservation_node(j);
      }
      if (n < 0) {  // the DRF pass will start it, or nothing can be held for it yet
        j.recheck_at_ms = now + std::max<i64>(cfg.recheck_ms, 1);
        refresh_head(j.user);
        continue;
      }
      dequeue(j);
      j.state = jstate::reserved;
      j.reserved_node = n;
      unindex(n);
      nodes[n].reserved_for = slot;
      index(n);
      ++reservations;
      mark_dirty(n);  // preemption may already make room
    }
  }

  // Step 3 of decide(): DRF in two phases, non-preemptible jobs first, then preemptible
  // ones in the room left (so that preemptible jobs take only idle room and are not
  // started to be preempted at once). A shape that fits nowhere is marked failed and
  // skipped, for every user, until room grows on a node where it would fit
  // (room_grew); a phase ends when every shape of its kind with ready jobs is failed,
  // or no user is left.
  void drf_pass(i64 now) {
    for (int phase = 0; phase < 2; ++phase) {
      while (failed_active[phase] < active_shapes[phase]) {
        // The user with the smallest share that has a head of an open shape of this
        // kind (users without one are passed over in O(1) each).
        open_users.assign((users.size() + 63) / 64, 0);
        for (int os : open_shapes[phase]) {
          const std::vector<u64>& hu = shapes[os].head_users;
          for (std::size_t w = 0; w < hu.size(); ++w) open_users[w] |= hu[w];
        }
        auto has_open = [&](int u) { return (open_users[static_cast<std::size_t>(u / 64)] >> (u % 64)) & 1; };
        auto ui = active.begin();
        while (ui != active.end() && !has_open(ui->second)) ++ui;
        if (ui == active.end()) break;
        int u = ui->second;
        user_rec& ur = users[u];
        bool started = false, acted = false;
        for (;;) {
          // The user's first head (by priority, then submission) whose shape is of this
          // kind and not failed: by looking up the user's queue of each open shape when
          // there are fewer open shapes than heads (after an end, a handful), else by
          // walking the heads in order.
          const std::vector<int>& os = open_shapes[phase];
          int si = -1, q = -1;
          const order_key* key = nullptr;
          if (os.size() < ur.heads.size()) {
            for (int cand : os) {
              int cq = ur.queue_of(cand);
              if (cq < 0) continue;
              const user_queue& uq = ur.queues[cq];
              if (uq.parked || uq.jobs.empty()) continue;
              const order_key& k = uq.head;
              if (key == nullptr || k < *key) {
                key = &k;
                si = cand;
                q = cq;
              }
            }
          } else {
            const std::uint8_t want = static_cast<std::uint8_t>(phase);  // this kind, not failed
            for (const auto& [k, hq, hs] : ur.heads) {
              if (shape_flags[hs] != want) continue;
              key = &k;
              si = hs;
              q = hq;
              break;
            }
          }
          if (key == nullptr) break;
          shape_rec& s = shapes[si];
          if (!s.preemptible && !quota_ok(ur, s.need)) {
            park(u, q);  // until the user's use falls or its quota grows
            refresh_head(u);
            acted = true;
            continue;
          }
          // (the job's record is read only to start it: most tries fail)
          int slot = key->slot;
          if (int n = place_shape(si, false, cfg.placement == mode::spread); n >= 0) {
            start(jobs[slot], n, now, "");
            started = true;
            break;
          }
          if (start_by_preempting(si, slot, now)) {
            started = true;
            break;
          }
          set_failed(si);
          acted = true;
        }
        // Without a start, park or failure the user's open heads were out of step with
        // head_users: stop rather than loop.
        if (!started && !acted) break;
      }
    }
  }

  // check_invariants(): the indexes against the records. O(nodes × shapes + jobs).
  std::string check() const {
    auto in_class = [&](const node_rec& nd, int c) {
      return std::find(nd.classes.begin(), nd.classes.end(), c) != nd.classes.end();
    };
    // Nodes: use from the jobs' copies; tree membership and keys.
    std::vector<resources> used(nodes.size()), pused(nodes.size());
    std::vector<resources> usage(users.size());
    std::vector<int> ready(shapes.size(), 0);
    std::vector<int> n_running(users.size(), 0), n_queued(users.size(), 0);
    for (const job_rec& j : jobs.slots) {
      if (j.slot < 0) continue;
      ++(j.state == jstate::running ? n_running : n_queued)[j.user];
      for (const copy_rec& c : j.copies) {
        used[c.node] = used[c.node] + j.need;
        if (j.preemptible) pused[c.node] = pused[c.node] + j.need;
        usage[j.user] = usage[j.user] + j.need;
      }
      if ((j.state == jstate::running) == j.copies.empty()) return fmt::format("job {}: state and copies disagree", j.id);
      if ((j.state == jstate::deferred) != deferred.contains({j.defer_until_ms, j.id, j.slot})) {
        return fmt::format("job {}: deferred state and set disagree", j.id);
      }
    }
    for (const auto& [until, id, slot] : deferred) {
      const job_rec& j = jobs[slot];
      if (j.slot < 0 || j.id != id || j.state != jstate::deferred || j.defer_until_ms != until) {
        return fmt::format("deferred entry {} is stale", id);
      }
    }
    for (int n = 0; n < static_cast<int>(nodes.size()); ++n) {
      const node_rec& nd = nodes[n];
      if (nd.used != used[n] || nd.preempt_used != pused[n]) return fmt::format("node {}: used room is off", nd.name);
      bool want = !nd.drained && !nd.gone && !nd.reserved_for;
      if (nd.indexed != want) return fmt::format("node {}: indexed is {}", nd.name, nd.indexed);
      bool want_recl = want && (nd.preempt_used.cpu_millis > 0 || nd.preempt_used.mem_bytes > 0);
      if (nd.recl_indexed != want_recl) return fmt::format("node {}: recl_indexed is {}", nd.name, nd.recl_indexed);
      for (const lset_rec& l : lsets) {
        bool mine = &l == &lsets[nd.lset];
        if (l.free_tree.contains(n) != (mine && nd.indexed)) return fmt::format("node {}: free tree membership", nd.name);
        if (l.recl_tree.contains(n) != (mine && nd.recl_indexed)) return fmt::format("node {}: recl tree membership", nd.name);
      }
      if (nd.indexed && lsets[nd.lset].free_tree.key(n) != std::pair{nd.free_cpu(), nd.free_mem()}) {
        return fmt::format("node {}: stale free key", nd.name);
      }
      if (nd.recl_indexed && lsets[nd.lset].recl_tree.key(n) != std::pair{nd.free_cpu() + nd.preempt_used.cpu_millis,
                                                                           nd.free_mem() + nd.preempt_used.mem_bytes}) {
        return fmt::format("node {}: stale reclaimable key", nd.name);
      }
    }
    for (const lset_rec& l : lsets) {
      if (std::string e = l.free_tree.verify(); !e.empty()) return "free tree: " + e;
      if (std::string e = l.recl_tree.verify(); !e.empty()) return "reclaimable tree: " + e;
    }
    // Users: usage, heads, parked queues, head_users bits.
    for (int u = 0; u < static_cast<int>(users.size()); ++u) {
      const user_rec& ur = users[u];
      if (ur.usage != usage[u]) return fmt::format("user {}: usage is off", ur.name);
      if (ur.running != n_running[u] || ur.queued != n_queued[u]) {
        return fmt::format("user {}: {} running and {} queued counted, {} and {} held", ur.name, ur.running, ur.queued,
                           n_running[u], n_queued[u]);
      }
      if (ur.in_active != !ur.heads.empty()) return fmt::format("user {}: in_active is off", ur.name);
      std::size_t heads = 0;
      for (int q = 0; q < static_cast<int>(ur.queues.size()); ++q) {
        const user_queue& uq = ur.queues[q];
        if (ur.queue_of(uq.shape) != q) return fmt::format("user {}: queue_of_shape is off", ur.name);
        if (!uq.jobs.empty() && !(uq.head == *uq.jobs.begin())) return fmt::format("user {}: stale head copy", ur.name);
        bool in_heads = !uq.parked && !uq.jobs.empty();
        if (in_heads) {
          ++heads;
          if (!ur.heads.contains({*uq.jobs.begin(), q, uq.shape})) return fmt::format("user {}: a head is missing", ur.name);
          ready[uq.shape] += static_cast<int>(uq.jobs.size());
        }
        const std::vector<u64>& hu = shapes[uq.shape].head_users;
        auto w = static_cast<std::size_t>(u / 64);
        bool bit = w < hu.size() && ((hu[w] >> (u % 64)) & 1);
        if (bit != in_heads) return fmt::format("user {}: head_users bit of shape {} is off", ur.name, uq.shape);
        for (const order_key& k : uq.jobs) {
          const job_rec& j = jobs[k.slot];
          if (j.slot < 0 || j.id != k.id || j.state != jstate::queued || j.shape != uq.shape) {
            return fmt::format("user {}: queue entry {} is stale", ur.name, k.id);
          }
        }
      }
      if (heads != ur.heads.size()) return fmt::format("user {}: {} heads, {} expected", ur.name, ur.heads.size(), heads);
    }
    // Shapes: ready counts, open_shapes, failed marks (fits nowhere), tracked hints
    // (every node where it fits is a hint), no_free_room marks.
    for (int si = 0; si < static_cast<int>(shapes.size()); ++si) {
      const shape_rec& sh = shapes[si];
      if (sh.ready != ready[si]) return fmt::format("shape {}: ready {} should be {}", si, sh.ready, ready[si]);
      const std::vector<int>& os = open_shapes[sh.preemptible ? 1 : 0];
      bool open = sh.open_pos >= 0 && sh.open_pos < static_cast<int>(os.size()) && os[sh.open_pos] == si;
      if (open != (sh.ready > 0 && !sh.failed)) return fmt::format("shape {}: open_shapes is off", si);
      if (((shape_flags[si] & 2) != 0) != sh.failed) return fmt::format("shape {}: flags are off", si);
      if (sh.failed && !sh.tracked) return fmt::format("shape {}: failed but not tracked", si);
      if (sh.tracked && (sh.tracked_pos < 0 || tracked_shapes[sh.tracked_pos] != si)) {
        return fmt::format("shape {}: tracked_shapes is off", si);
      }
      for (const node_rec& nd : nodes) {
        if (!nd.indexed || !in_class(nd, sh.cls)) continue;
        bool free_fit = fits(sh.need, nd.free_cpu(), nd.free_mem());
        bool fit = free_fit || (!sh.preemptible && nd.recl_indexed &&
                                fits(sh.need, nd.free_cpu() + nd.preempt_used.cpu_millis,
                                     nd.free_mem() + nd.preempt_used.mem_bytes));
        if (fit && sh.failed) return fmt::format("shape {} is marked failed but fits on {}", si, nd.name);
        int n = static_cast<int>(&nd - nodes.data());
        if (fit && sh.tracked && std::find(sh.hints.begin(), sh.hints.end(), n) == sh.hints.end()) {
          return fmt::format("shape {} fits on {}, which is not among its hints", si, nd.name);
        }
        bool waking = std::find(room_check.begin(), room_check.end(), si) != room_check.end();
        if (free_fit && sh.no_free_room && !waking) {
          return fmt::format("shape {} is marked without free room but fits on {}", si, nd.name);
        }
      }
    }
    // Speculation groups waiting for room.
    for (int g = 0; g < static_cast<int>(groups.size()); ++g) {
      const group_rec& gr = groups[g];
      if (gr.waiting_shape < 0) continue;
      if (gr.due_ms) return fmt::format("group {} is both due and waiting", gr.name);
      const std::vector<int>& w = shapes[gr.waiting_shape].spec_waiting;
      if (gr.wait_pos >= static_cast<int>(w.size()) || w[gr.wait_pos] != g) return fmt::format("group {}: wait list is off", gr.name);
    }
    return "";
  }

  void speculate(i64 now) {
    // Groups waiting for free room for a shape whose mark was cleared: due again if
    // room for the shape is still free after the DRF pass (one lookup per shape), else
    // the mark goes back and they go on waiting.
    for (int s : std::exchange(room_check, {})) {
      shape_rec& sh = shapes[s];
      if (sh.no_free_room || sh.spec_waiting.empty()) continue;
      if (lookup(sh.cls, sh.need, false, false, -1) >= 0) {
        while (!sh.spec_waiting.empty()) regroup(sh.spec_waiting.back());
      } else {
        sh.no_free_room = true;
        no_free_room.push_back(s);
      }
    }
    while (!spec_due.empty() && spec_due.begin()->first <= now) {
      int g = spec_due.begin()->second;
      group_rec& gr = groups[g];
      spec_due.erase(spec_due.begin());
      gr.due_ms.reset();
      i64 limit = straggler_ms(gr);
      std::optional<i64> retry;
      int wait_shape = -1;
      while (!gr.candidates.empty()) {
        auto [start_ms, id, slot] = *gr.candidates.begin();
        if (start_ms + limit > now) break;
        job_rec& j = jobs[slot];
        // (a shape marked has no free room anywhere: no need to look)
        shape_rec& sh = shapes[j.shape];
        bool may = !sh.no_free_room && (j.preemptible || quota_ok(users[j.user], j.need));
        int n = may ? place(j, j.copies[0].node) : -1;
        if (may && n < 0 && place(j) < 0) {
          sh.no_free_room = true;
          no_free_room.push_back(j.shape);
        }
        if (sh.no_free_room) {  // no free room for it anywhere: wait until some grows
          wait_shape = j.shape;
          break;
        }
        if (n < 0) {  // room only on its own node, or over quota: look again later
          retry = now + std::max<i64>(cfg.recheck_ms, 1);
          break;
        }
        gr.candidates.erase(gr.candidates.begin());
        j.candidate = false;
        j.backed_up = true;
        start_copy(j, n, now);
        out.push_back(decision{decision::kind::backup, id, nodes[n].name,
                               fmt::format("straggler: running {} on {}, median of {} done in {} is {}",
                                           duration_text(now - start_ms), nodes[j.copies[0].node].name,
                                           gr.done(), gr.name, duration_text(gr.median()))});
      }
      if (wait_shape >= 0) {
        wait_for_room(g, wait_shape);
      } else {
        regroup(g, retry);
      }
    }
  }
};

// ---------------------------------------------------------------------------------------
scheduler::scheduler(config cfg) : impl_(std::make_unique<impl>(cfg)) {}
scheduler::~scheduler() = default;
scheduler::scheduler(scheduler&&) noexcept = default;
scheduler& scheduler::operator=(scheduler&&) noexcept = default;

std::expected<void, std::string> scheduler::set_node(node_spec spec) {
  impl& m = *impl_;
  if (spec.name.empty()) return std::unexpected("node has no name");
  if (spec.capacity.cpu_millis < 0 || spec.capacity.mem_bytes < 0) {
    return std::unexpected(fmt::format("node {}: negative capacity", spec.name));
  }
  std::sort(spec.labels.begin(), spec.labels.end());
  spec.labels.erase(std::unique(spec.labels.begin(), spec.labels.end()), spec.labels.end());
  auto [it, fresh] = m.node_index.try_emplace(spec.name, static_cast<int>(m.nodes.size()));
  int n = it->second;
  if (fresh) {
    m.nodes.emplace_back();
    m.nodes[n].name = spec.name;
    m.nodes[n].gone = true;  // joins the totals below
  }
  node_rec& nd = m.nodes[n];
  if (!fresh && !nd.gone && nd.cap == spec.capacity && nd.labels == spec.labels && nd.drained == spec.drained) {
    return {};
  }
  m.unindex(n);
  m.caps_changed();
  if (nd.gone) {
    m.total = m.total + spec.capacity;
  } else {
    m.total = m.total + spec.capacity - nd.cap;
  }
  bool relabel = fresh || nd.labels != spec.labels;
  nd.cap = spec.capacity;
  nd.labels = std::move(spec.labels);
  nd.drained = spec.drained;
  nd.gone = false;
  if (relabel) {
    nd.lset = m.lset_of(nd.labels);
    for (int c : nd.classes) std::erase(m.classes[c].members, n);
    nd.classes.clear();
    for (int c = 0; c < static_cast<int>(m.classes.size()); ++c) {
      if (!has_labels(nd.labels, m.classes[c].needs)) continue;
      nd.classes.push_back(c);
      m.classes[c].members.push_back(n);
    }
  }
  if (nd.reserved_for) {
    job_rec& j = m.jobs[*nd.reserved_for];
    const shape_rec& s = m.shapes[j.shape];
    if (nd.drained || !has_labels(nd.labels, m.classes[s.cls].needs) ||
        !fits(j.need, nd.cap.cpu_millis, nd.cap.mem_bytes)) {
      m.release(j, 0);  // index(n) happens in unreserve
      m.reshare_all();
      return {};
    }
  }
  m.index(n);
  m.room_grew(n);
  m.mark_dirty(n);
  m.reshare_all();
  return {};
}

void scheduler::remove_node(std::string_view name) {
  impl& m = *impl_;
  auto it = m.node_index.find(std::string(name));
  if (it == m.node_index.end()) return;
  int n = it->second;
  node_rec& nd = m.nodes[n];
  if (nd.gone) return;
  m.unindex(n);
  m.caps_changed();
  nd.gone = true;
  m.total = m.total - nd.cap;
  if (nd.reserved_for) m.release(m.jobs[*nd.reserved_for], 0);
  m.reshare_all();
}

std::expected<void, std::string> scheduler::set_quota(std::string_view user, resources quota) {
  impl& m = *impl_;
  if (user.empty()) return std::unexpected("quota: empty user name");
  if (quota.cpu_millis < 0 || quota.mem_bytes < 0) {
    return std::unexpected(fmt::format("quota for {}: negative amount", user));
  }
  int u = m.user_of(user);
  m.users[u].quota = quota;
  m.unpark_all(u);
  return {};
}

std::expected<void, std::string> scheduler::set_weight(std::string_view user, double weight) {
  impl& m = *impl_;
  if (user.empty()) return std::unexpected("weight: empty user name");
  if (!std::isfinite(weight) || weight <= 0) {
    return std::unexpected(fmt::format("weight for {}: expected a positive number, not {}", user, weight));
  }
  int u = m.user_of(user);
  m.users[u].weight = weight;
  m.reshare(u);
  return {};
}

void scheduler::set_mode(mode md) { impl_->cfg.placement = md; }

std::expected<void, std::string> scheduler::submit(job_spec spec) {
  impl& m = *impl_;
  if (m.jobs.contains(spec.id) || m.ended.contains(spec.id)) {
    return std::unexpected(fmt::format("job {} exists already", spec.id));
  }
  if (spec.user.empty()) return std::unexpected(fmt::format("job {}: no user", spec.id));
  if (spec.need.cpu_millis < 0 || spec.need.mem_bytes < 0) {
    return std::unexpected(fmt::format("job {}: negative need", spec.id));
  }
  for (const label& l : spec.needs) {
    if (l.first.empty()) return std::unexpected(fmt::format("job {}: a need has no label name", spec.id));
  }
  std::sort(spec.after.begin(), spec.after.end());
  spec.after.erase(std::unique(spec.after.begin(), spec.after.end()), spec.after.end());
  std::optional<u64> failed_pred;
  for (u64 a : spec.after) {
    if (a == spec.id) return std::unexpected(fmt::format("job {} cannot run after itself (a cycle)", spec.id));
    if (m.jobs.contains(a)) continue;
    auto e = m.ended.find(a);
    if (e == m.ended.end()) {
      return std::unexpected(fmt::format("job {}: after {}: no such job", spec.id, a));
    }
    if (e->second != outcome::done && !failed_pred) failed_pred = a;
  }

  int u = m.user_of(spec.user);
  int cls = m.class_of(std::move(spec.needs));
  int s = m.shape_of(spec.need, cls, spec.preemptible);
  if (failed_pred) {
    m.ended[spec.id] = outcome::failed;
    m.out.push_back(decision{decision::kind::fail, spec.id, "", fmt::format("dependency {} failed", *failed_pred)});
    return {};
  }
  job_rec& j = m.jobs.add(spec.id);
  j.id = spec.id;
  j.user = u;
  j.shape = s;
  j.need = spec.need;
  j.preemptible = spec.preemptible;
  j.speculate = spec.speculate;
  j.group = spec.group.empty() ? -1 : m.group_of(spec.group);
  j.key = order_key{.neg_priority = -static_cast<i64>(spec.priority), .submitted_ms = spec.submitted_ms, .id = spec.id,
                    .slot = j.slot};
  for (u64 a : spec.after) {
    if (job_rec* p = m.jobs.find(a)) {
      p->dependents.emplace_back(spec.id, j.slot);
      ++j.pending;
    }
  }
  j.after = std::move(spec.after);
  ++m.users[u].queued;
  if (j.pending == 0) {
    m.make_ready(j, spec.submitted_ms);
  } else {
    j.state = jstate::waiting;
  }
  return {};
}

std::expected<void, std::string> scheduler::finished(std::uint64_t job, outcome o, std::int64_t now_ms,
                                                     std::string_view node) {
  impl& m = *impl_;
  job_rec* jp = m.jobs.find(job);
  if (jp == nullptr) return std::unexpected(m.no_job(job));
  job_rec& j = *jp;
  if (j.state != jstate::running) return std::unexpected(fmt::format("job {} is not running", job));
  std::size_t ci = 0;
  if (!node.empty()) {
    auto c = std::find_if(j.copies.begin(), j.copies.end(),
                          [&](const copy_rec& cr) { return m.nodes[cr.node].name == node; });
    if (c == j.copies.end()) return std::unexpected(fmt::format("job {} does not run on {}", job, node));
    ci = static_cast<std::size_t>(c - j.copies.begin());
  } else if (j.copies.size() > 1 && o != outcome::killed) {
    return std::unexpected(fmt::format("job {} runs on {} nodes: say which copy ended", job, j.copies.size()));
  }

  switch (o) {
    case outcome::done: {
      i64 ran = now_ms - j.copies[ci].start_ms;
      std::string winner = m.nodes[j.copies[ci].node].name;
      m.drop_candidate(j);
      m.stop_copy(j, ci);
      while (!j.copies.empty()) {
        m.out.push_back(decision{decision::kind::preempt, job, m.nodes[j.copies.back().node].name,
                                 fmt::format("the copy on {} finished first", winner)});
        m.stop_copy(j, j.copies.size() - 1);
      }
      if (j.group >= 0) {
        m.groups[j.group].add(std::max<i64>(ran, 0));
        m.regroup(j.group);
      }
      m.end(j, outcome::done, now_ms);
      break;
    }
    case outcome::killed:
      m.drop_candidate(j);
      while (!j.copies.empty()) m.stop_copy(j, j.copies.size() - 1);
      m.end(j, outcome::killed, now_ms);
      break;
    case outcome::failed:
    case outcome::lost:
      m.drop_candidate(j);
      m.stop_copy(j, ci);
      if (!j.copies.empty()) break;  // the other copy goes on
      if (o == outcome::failed) {
        m.end(j, outcome::failed, now_ms);
      } else {
        m.requeue(j, now_ms);
      }
      break;
  }
  return {};
}

std::expected<void, std::string> scheduler::adopt(std::uint64_t job, std::string_view node, std::int64_t now_ms) {
  impl& m = *impl_;
  job_rec* jp = m.jobs.find(job);
  if (jp == nullptr) return std::unexpected(m.no_job(job));
  job_rec& j = *jp;
  auto it = m.node_index.find(std::string(node));
  if (it == m.node_index.end() || m.nodes[it->second].gone) return std::unexpected(fmt::format("no node {}", node));
  int n = it->second;
  switch (j.state) {
    case jstate::waiting:
      return std::unexpected(fmt::format("job {} waits for its dependencies", job));
    case jstate::queued:
    case jstate::reserved:
    case jstate::deferred:
      m.start(j, n, now_ms, "adopted", false);
      return {};
    case jstate::running:
      if (std::any_of(j.copies.begin(), j.copies.end(), [&](const copy_rec& c) { return c.node == n; })) {
        return std::unexpected(fmt::format("job {} runs on {} already", job, node));
      }
      m.drop_candidate(j);
      j.backed_up = true;
      m.start_copy(j, n, now_ms);
      return {};
  }
  return {};
}

std::expected<void, std::string> scheduler::cancel(std::uint64_t job) {
  impl& m = *impl_;
  job_rec* j = m.jobs.find(job);
  if (j == nullptr) return std::unexpected(m.no_job(job));
  if (j->state == jstate::running) {
    return std::unexpected(fmt::format("job {} is running: kill it and report finished", job));
  }
  m.end(*j, outcome::killed, 0);
  return {};
}

std::expected<void, std::string> scheduler::defer(std::uint64_t job, std::int64_t until_ms) {
  impl& m = *impl_;
  job_rec* j = m.jobs.find(job);
  if (j == nullptr) return std::unexpected(m.no_job(job));
  if (j->state == jstate::deferred) {
    m.deferred.erase({j->defer_until_ms, j->id, j->slot});
  } else if (j->state == jstate::queued) {
    m.dequeue(*j);
  } else {
    return std::unexpected(fmt::format("job {} is not queued", job));
  }
  j->state = jstate::deferred;
  j->defer_until_ms = until_ms;
  m.deferred.insert({until_ms, j->id, j->slot});
  return {};
}

void scheduler::forget(std::uint64_t job) { impl_->ended.erase(job); }

std::expected<void, std::string> scheduler::set_priority(std::uint64_t job, int priority) {
  impl& m = *impl_;
  job_rec* j = m.jobs.find(job);
  if (j == nullptr) return std::unexpected(m.no_job(job));
  if (j->state == jstate::running) {
    return std::unexpected(fmt::format("job {} is running: its priority can no longer change", job));
  }
  i64 neg = -static_cast<i64>(priority);
  if (j->key.neg_priority == neg) return {};
  // A queued job leaves its queue and comes back under its new key (enqueue keeps its
  // ready_since_ms: it does not lose its waiting time).
  bool queued = j->state == jstate::queued;
  if (queued) m.dequeue(*j);
  j->key.neg_priority = neg;
  if (queued) m.enqueue(*j);
  return {};
}

std::vector<decision> scheduler::decide(std::int64_t now_ms) {
  impl& m = *impl_;
  // Deferred jobs whose time has come go back to their queues, keeping their waiting
  // time (enqueue leaves ready_since_ms as it was).
  while (!m.deferred.empty() && std::get<0>(*m.deferred.begin()) <= now_ms) {
    job_rec& j = m.jobs[std::get<2>(*m.deferred.begin())];
    m.deferred.erase(m.deferred.begin());
    m.enqueue(j);
  }
  m.start_reserved(now_ms);
  m.drf_pass(now_ms);
  m.reserve_starving(now_ms);
  m.speculate(now_ms);
  return std::exchange(m.out, {});
}

std::string scheduler::note(std::uint64_t job) const {
  const impl& m = *impl_;
  const job_rec* jp = m.jobs.find(job);
  if (jp == nullptr) {
    auto e = m.ended.find(job);
    if (e == m.ended.end()) return "";
    switch (e->second) {
      case outcome::done: return "done";
      case outcome::failed: return "failed";
      case outcome::killed: return "killed";
      case outcome::lost: return "lost";
    }
    return "";
  }
  const job_rec& j = *jp;
  switch (j.state) {
    case jstate::running: {
      std::string s = "running on " + m.nodes[j.copies[0].node].name;
      for (std::size_t i = 1; i < j.copies.size(); ++i) s += ", backup on " + m.nodes[j.copies[i].node].name;
      return s;
    }
    case jstate::reserved:
      return "reserved on " + m.nodes[j.reserved_node].name;
    case jstate::waiting: {
      std::string s = "waiting for";
      int shown = 0, more = 0;
      for (u64 a : j.after) {
        if (!m.jobs.contains(a)) continue;
        if (shown < 5) {
          s += " " + std::to_string(a);
          ++shown;
        } else {
          ++more;
        }
      }
      if (more > 0) s += fmt::format(" and {} more", more);
      return s;
    }
    case jstate::deferred:
      return "deferred after a failed start";
    case jstate::queued: break;
  }
  const shape_rec& sh = m.shapes[j.shape];
  const class_rec& c = m.classes[sh.cls];
  bool any = false, cpu = false, mem = false, both = false;
  for (int n : c.members) {
    const node_rec& nd = m.nodes[n];
    if (nd.gone || nd.drained) continue;
    any = true;
    bool cf = nd.cap.cpu_millis >= j.need.cpu_millis;
    bool mf = nd.cap.mem_bytes >= j.need.mem_bytes;
    cpu |= cf;
    mem |= mf;
    if (cf && mf) {
      both = true;
      break;
    }
  }
  if (!both) {
    std::string who = c.needs.empty() ? "no node" : "no node with " + labels_text(c.needs);
    if (!any) {
      return c.needs.empty() ? "unschedulable: no nodes" : "unschedulable: no node has " + labels_text(c.needs);
    }
    if (!mem && cpu) return fmt::format("unschedulable: {} has {}", who, human_bytes(j.need.mem_bytes));
    if (!cpu && mem) return fmt::format("unschedulable: {} has {}", who, human_cpus(j.need.cpu_millis));
    if (!cpu && !mem) {
      return fmt::format("unschedulable: {} has {} or {}", who, human_cpus(j.need.cpu_millis),
                         human_bytes(j.need.mem_bytes));
    }
    return fmt::format("unschedulable: {} has both {} and {}", who, human_cpus(j.need.cpu_millis),
                       human_bytes(j.need.mem_bytes));
  }
  const user_rec& ur = m.users[j.user];
  if (!j.preemptible && !m.quota_ok(ur, j.need)) {
    return fmt::format("over quota: {} uses {} of {}", ur.name, quota_text(ur.np_usage), quota_text(ur.quota));
  }
  return "queued";
}

std::vector<std::uint64_t> scheduler::queue() const {
  const impl& m = *impl_;
  std::vector<const job_rec*> reserved, waiting;
  std::vector<std::vector<order_key>> per_user(m.users.size());
  for (const job_rec& j : m.jobs.slots) {
    if (j.slot < 0) continue;  // a free slot
    switch (j.state) {
      case jstate::reserved: reserved.push_back(&j); break;
      case jstate::waiting: waiting.push_back(&j); break;
      case jstate::queued:
      case jstate::deferred: per_user[j.user].push_back(j.key); break;
      case jstate::running: break;
    }
  }
  std::vector<u64> order;
  std::sort(reserved.begin(), reserved.end(), [](auto* a, auto* b) { return a->key < b->key; });
  for (const job_rec* j : reserved) order.push_back(j->id);
  // DRF interleaving: the user with the smallest share gives its next job, whose need
  // is then added to its share.
  std::set<std::pair<double, int>> heap;
  std::vector<resources> usage(m.users.size());
  std::vector<std::size_t> next(m.users.size(), 0);
  for (int u = 0; u < static_cast<int>(m.users.size()); ++u) {
    std::sort(per_user[u].begin(), per_user[u].end());
    usage[u] = m.users[u].usage;
    if (!per_user[u].empty()) heap.insert({m.share(m.users[u]), u});
  }
  while (!heap.empty()) {
    int u = heap.begin()->second;
    heap.erase(heap.begin());
    const order_key& k = per_user[u][next[u]++];
    order.push_back(k.id);
    if (next[u] == per_user[u].size()) continue;
    usage[u] = usage[u] + m.jobs[k.slot].need;
    user_rec tmp;
    tmp.usage = usage[u];
    tmp.weight = m.users[u].weight;
    heap.insert({m.share(tmp), u});
  }
  std::sort(waiting.begin(), waiting.end(), [](auto* a, auto* b) {
    return std::tie(a->key.submitted_ms, a->id) < std::tie(b->key.submitted_ms, b->id);
  });
  for (const job_rec* j : waiting) order.push_back(j->id);
  return order;
}

std::optional<scheduler::user_info> scheduler::user(std::string_view name) const {
  const impl& m = *impl_;
  auto it = m.user_index.find(std::string(name));
  if (it == m.user_index.end()) return std::nullopt;
  const user_rec& ur = m.users[it->second];
  int backlog = 0;
  for (const user_queue& uq : ur.queues) {
    const shape_rec& sh = m.shapes[uq.shape];
    const resources& most = m.max_cap(sh.cls);
    if (!sh.preemptible && fits(sh.need, most.cpu_millis, most.mem_bytes)) backlog += static_cast<int>(uq.jobs.size());
  }
  return user_info{.usage = ur.usage,
                   .quota = ur.quota,
                   .weight = ur.weight,
                   .dominant_share = m.share(ur),
                   .running = ur.running,
                   .queued = ur.queued,
                   .backlog = backlog};
}

std::vector<std::string> scheduler::users() const {
  std::vector<std::string> names;
  for (const user_rec& u : impl_->users) names.push_back(u.name);
  std::sort(names.begin(), names.end());
  return names;
}

resources scheduler::total() const { return impl_->total; }

std::string scheduler::check_invariants() const {
  impl_->flush();  // the trees as the next lookup sees them
  return impl_->check();
}

}  // namespace sched::policy
