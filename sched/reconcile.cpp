// What happens when a node goes away and comes back: the scheduler's member functions
// for it (declared in sched/scheduler.hpp), in one place. Issue 13, "No finished job runs
// twice".
//
// Going away. A node link (sched/node_link.hpp) that hears nothing for down_after_ms, or
// whose connection closes, calls node_down: every job running or starting there is lost
// (after a close, once the node's lease has run out: "Held", below)
// (lost()): requeued while attempts ≤ retries, else failed; a backup copy there is
// dropped. The copy given up is not forgotten: it is remembered as a cut-off copy (node,
// task, job, owner, attempt) in cut_off_ and in the store's cut_off table, because a
// node that was only cut off (a stopped daemon, a pulled cable, a Wi-Fi hiccup) still runs
// it, and it may finish there while nobody listens. A copy whose start was never answered
// is remembered with task 0 and found later by its GALAXY_JOB and GALAXY_ATTEMPT markers.
//
// Coming back. When the link is up again (node_up), the node's cut-off copies are read
// from its task files (task/N/status and wait, find_task, on a pool thread). No placement
// pass runs until the copies with known tasks are read (cut_off_reads_), so a requeued job
// is not started elsewhere under the reader's feet. Then settle_cut_off decides, for a
// copy that:
//   - finished with exit 0, its job not ended, not being collected, not being killed: it
//     gives the job its result (recover, event `recover J NODE TASK`). A job still queued
//     takes the copy back (its queue entry is dropped) and collects it. A job running
//     elsewhere gets it as a backup copy that has just succeeded, so speculation's rule
//     applies (job::backup, promote_backup, drop_backup): the first copy to succeed wins
//     and the requeued copy is killed. A job still starting elsewhere, or still being
//     reconciled after a restart, is settled once that answers (retry_cut_offs, each tick).
//   - still runs, its job queued: taken back (take_back, event `adopt J NODE TASK`): the job
//     runs there again as the same attempt, its queue entry dropped.
//   - still runs (or never started), its job placed elsewhere meanwhile or ended: killed
//     (event `duplicate J NODE TASK killed`).
//   - failed, was killed, was lost, or the node no longer has it: it goes away; the job's
//     requeue stands.
//   - finished with exit 0 after its job had ended (or while its result was being
//     collected): nothing can undo that run; event `duplicate J NODE TASK finished`.
// Each outcome is also written in the job's note (job::reconcile_note while it runs, its
// stored note once it ends). A read that fails because the node went down again keeps
// the copy for its next return.
//
// What is remembered where. Cut-off copies live in cut_off_ and in the store: put before
// the requeued job's record (the store commits in call order), removed once settled. So a
// scheduler restarted while a node is cut off (its jobs queued, their copies unknown to the
// new process) still settles them when the node returns; without that a requeued job and
// its cut-off copy would both run to the end. A copy on a node that is no longer
// configured is forgotten at start.
//
// Fencing: what the scheduler alone cannot prevent. Two copies that both finish while the
// node is cut off (the requeued one elsewhere, the cut-off one there) would both run to
// completion; only the node can stop that, by killing its copies before they are
// requeued. So every node is given a lease when its link comes up (node_up writes
// `lease MS` to its /ctl, galaxy-node(4)): a node that hears no heartbeat for MS ms kills
// the tasks the scheduler started there, and they become lost ("lost fenced: no word from
// the scheduler for N ms"); read back here they are lost copies like any other, and the
// requeue stands. The rule (fence_lease_ms) is MS = down_after − 2 × heartbeat, at least
// down_after / 2, and it is safe because of how the two sides count:
//   - the node renews its lease only when a heartbeat (a read of /status on the session
//     and attach name that wrote `lease`) reaches it, nothing else (node/tree.hpp);
//   - the link sends one heartbeat at a time and marks the node down only once the one in
//     flight, sent at S, is unanswered at S + down_after (node_link.cpp); the requeue
//     (node_down, lost) comes after that;
//   - every heartbeat that reached the node was sent at or before S, and arrived at A ≥ S:
//     the node fences by A + MS. So the node fences first whenever A − S, that heartbeat's
//     one-way delay, plus the difference of the two clocks' rates over MS (parts per
//     million) plus the kill itself (milliseconds), stay below down_after − MS: two
//     heartbeat periods by default. The `lease` write itself renews too, and is sent just
//     after a heartbeat was answered (node_up), so it is covered the same way.
// What it does not cover: a copy that finished in the MS ms between the cut and the fence
// has run to its end (reconcile.cpp settles it when the node returns, if its requeued
// copy has not also finished); a heartbeat delayed longer than the margin; a node daemon
// that is itself stopped (SIGSTOP; it fences as soon as it runs again, but its tasks ran
// on meanwhile and may have finished: settled here on its return); a node daemon that
// is dead (its tasks outlive it, and nobody fences them: its jobs are held until the
// lease would have run out, "Held" below, then requeued); a node that does not know `lease` (logged; it never fences). A
// restarted scheduler cannot renew the old connection's lease: its nodes fence after MS
// unless it is back within MS, and the copies they killed are requeued by reconcile().
//
// A restarted scheduler's reconcile(), for jobs the store says were running or starting
// on a node, is here too: it is the same question asked of a node after a restart.
#include <asio/post.hpp>
#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <csignal>

#include "ctl/ctlmsg.hpp"
#include "sched/scheduler.hpp"

namespace sched {

namespace {

std::unexpected<std::string> fail(std::string s) { return std::unexpected(std::move(s)); }

// What a node's task status line says: "id=3 state=running pid=..." → the state word.
std::string status_word(std::string_view line, std::string_view key) {
  auto pos = line.find(std::string(key) + "=");
  while (pos != std::string_view::npos && pos != 0 && line[pos - 1] != ' ') pos = line.find(std::string(key) + "=", pos + 1);
  if (pos == std::string_view::npos) return "";
  auto start = pos + key.size() + 1;
  auto end = line.find_first_of(" \n", start);
  return std::string(line.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
}

// What a restarted scheduler, or a node's return, finds of one of its jobs on a node.
// Blocking (a pool thread). task 0: the start's answer was never stored, so the node's tasks are searched
// for the markers of that start (GALAXY_JOB and GALAXY_ATTEMPT; not a GALAXY_BACKUP copy):
// an older attempt's task, or a backup copy, is not this start.
struct found_task {
  std::uint64_t task = 0;   // 0: the node has no such task
  std::string state;        // the node's word: new, running, done, failed, killed, lost
  std::string wait;         // the wait text when finished
};
std::expected<found_task, std::string> find_task(fsclient::client& c, const std::string& owner, std::uint64_t job,
                                                 int attempt, std::uint64_t task) {
  auto root = c.attach(owner);
  if (!root) return fail("attach: " + root.error());
  found_task f;
  if (task == 0) {
    auto tasks = c.list_dir(*root, "task");
    if (!tasks) {
      (void)c.clunk(*root);
      return fail(tasks.error());
    }
    // The node gives the spec back one env line per variable (galaxy-node(4)).
    std::string job_line = fmt::format("env GALAXY_JOB={}", job);
    std::string attempt_line = fmt::format("env GALAXY_ATTEMPT={}", attempt);
    for (const auto& d : *tasks) {
      auto n = ctl::parse_u64(d.name);
      if (!n) continue;
      auto spec = c.read_file(*root, fmt::format("task/{}/ctl", *n));
      if (!spec) continue;
      bool is_job = false, is_attempt = false, is_backup = false;
      std::string_view s = *spec;
      for (std::size_t start = 0; start < s.size();) {
        auto nl = s.find('\n', start);
        auto line = s.substr(start, (nl == std::string_view::npos ? s.size() : nl) - start);
        is_job = is_job || line == job_line;
        is_attempt = is_attempt || line == attempt_line;
        is_backup = is_backup || line == "env GALAXY_BACKUP=1";
        start = nl == std::string_view::npos ? s.size() : nl + 1;
      }
      if (is_job && is_attempt && !is_backup) task = *n;
      if (task != 0) break;
    }
  }
  if (task != 0) {
    auto status = c.read_file(*root, fmt::format("task/{}/status", task));
    if (status) {
      f.task = task;
      f.state = status_word(*status, "state");
      if (f.state != "new" && f.state != "running") {
        auto wait = c.read_file(*root, fmt::format("task/{}/wait", task));
        if (wait) f.wait = wait->substr(0, wait->find('\n'));
      }
    }
  }
  (void)c.clunk(*root);
  return f;
}

}  // namespace

// ---- Going away and coming back ---------------------------------------------------------

std::uint32_t fence_lease_ms(std::uint32_t down_after_ms, std::uint32_t heartbeat_ms) {
  std::uint32_t margin = 2 * heartbeat_ms;
  std::uint32_t floor = down_after_ms / 2;
  return down_after_ms > margin && down_after_ms - margin > floor ? down_after_ms - margin : floor;
}

void scheduler::give_lease(const std::string& name) {
  node_link* n = find_node(name);
  if (n == nullptr || opts_.lease_ms == 0) return;
  // On the link's own attach: the heartbeats that renew it are read there (node_link).
  std::string line = fmt::format("lease {}\n", opts_.lease_ms);
  n->batch(opts_.link.uname,
           [line](node_conn& c, std::uint32_t root) {
             std::uint32_t f = c.client().alloc_fid();
             return std::vector<srv9p::message>{srv9p::twalk{root, f, {"ctl"}}, srv9p::topen{f, srv9p::owrite},
                                                srv9p::twrite{f, 0, line}, srv9p::tclunk{f}};
           },
           [this, name](node_link::replies r) {
             for (const auto& x : r) {
               if (!x) return log(fmt::format("node {}: lease not taken ({}): it will not fence", name, x.error()));
             }
           });
}

void scheduler::node_up(const std::string& name) {
  give_lease(name);  // first: the node's tasks started from now on are the lease's
  update_node(name);
  post_event("node up " + name);
  log("node " + name + " up");
  read_cut_offs(name);
  for (auto& [id, j] : jobs_) {
    if (j->reconcile && j->rec.node == name) {
      reconcile(*j);
    } else if (j->held_until && j->rec.node == name) {
      recheck_held(*j);
    }
  }
  schedule();
}

// ---- Held -------------------------------------------------------------------------------
//
// A node whose connection closed (rather than fell silent) may still run its copies: a
// closed connection says nothing about the tasks (a node daemon that was killed leaves
// them running until its next start kills them; a reset or a rejoin leaves them running
// under a live daemon), and the node fences them only when its lease runs out. So its
// jobs are not lost at once: they are held, still running as far as the policy and the
// job's status say, until lost_after (the link's last heartbeat sent plus down_after,
// when the lease has run out by fencing's rule above), and only then lost and requeued.
// The same holds after a scheduler restart for a node not yet back (the new process's
// first instant stands for the old one's last heartbeat). A node that returns before
// then has its held jobs' tasks read (recheck_held, reconcile after a restart): still
// running, they go on; ended, they end with that result (the exits sent while it was
// away were missed); unknown to the node, lost. So a short reconnect (a rejoin after a
// Wi-Fi drop, a reset connection) loses nothing and runs nothing twice. Silence
// (down_after without an answer) gives lost_after ≤ now: lost at once, as before. A held
// job that is killed ends at once; its copy is killed when the node returns.

void scheduler::hold(job& j, std::chrono::steady_clock::time_point lost_after, const std::string& why) {
  j.held_until = lost_after;
  j.held_why = why;
  held_.insert(j.rec.id);
  post_event(fmt::format("held {} {}", j.rec.id, j.rec.node));
  changed(j);
}

void scheduler::end_hold(job& j) {
  if (!j.held_until) return;
  j.held_until.reset();
  j.held_why.clear();
  held_.erase(j.rec.id);
}

void scheduler::expire_holds() {
  auto now = std::chrono::steady_clock::now();
  std::vector<std::uint64_t> due;
  for (auto id : held_) {
    job* j = find(id);
    if (j == nullptr || !j->held_until) continue;
    node_link* n = find_node(j->rec.node);
    // A node that is back is being read (recheck_held, reconcile): that decides.
    if (*j->held_until <= now && (n == nullptr || !n->up()) && !j->collecting) due.push_back(id);
  }
  for (auto id : due) {
    job* j = find(id);
    if (j == nullptr || !j->held_until) continue;
    std::string why = j->held_why;
    lost(*j, fmt::format("node {} down: {}; its lease has run out", j->rec.node, why));
  }
  if (!due.empty()) {
    open_gate();
    schedule();
  }
}

void scheduler::recheck_held(job& j) {
  node_link* n = find_node(j.rec.node);
  auto conn = n ? n->conn() : nullptr;
  if (!conn) return;
  std::uint64_t id = j.rec.id;
  std::string node = j.rec.node;
  std::uint64_t task = j.rec.task;
  asio::post(pool_, [this, conn, id, node, owner = j.rec.owner, task, attempt = j.rec.attempts] {
    auto found = find_task(conn->client(), owner, id, attempt, task);
    if (!conn->connected()) found = fail("the node went down again");
    asio::post(io_, [this, id, node, task, found] {
      job* j = find(id);
      if (j == nullptr || !j->held_until || j->rec.node != node || j->rec.task != task) return;
      if (!found) return;  // down again: node_down held it anew
      if (found->task == 0) return lost(*j, "its node returned without the task");
      end_hold(*j);
      log(fmt::format("job {}: task {} on {} is {} after its node returned", id, task, node, found->state));
      if (found->state == "new" || found->state == "running") {
        if (auto e = early_exits_.find({node, task}); e != early_exits_.end()) {
          std::string wait = e->second;
          early_exits_.erase(e);
          return task_ended(node, task, wait);
        }
        return changed(*j);
      }
      task_ended(node, task, found->wait.empty() ? "lost" : found->wait);
    });
  });
}

void scheduler::node_down(const std::string& name, const std::string& why,
                          std::chrono::steady_clock::time_point lost_after) {
  post_event(fmt::format("node down {} {}", name, ctl::quote(why)));
  bool fenced = lost_after <= std::chrono::steady_clock::now();
  auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(lost_after - std::chrono::steady_clock::now());
  log(fmt::format("node {} down: {}{}", name, why,
                  fenced ? "" : fmt::format("; its jobs are held {} ms, until its lease has run out", wait_ms.count())));
  std::vector<job*> hit;
  for (auto& [id, j] : jobs_) {
    if (j->rec.node == name && (j->rec.state == job_state::running || j->starting || j->reconcile) && !j->collecting) {
      hit.push_back(j.get());
    }
  }
  for (job* j : hit) {
    // Held: a copy that runs on a known task (or, after a restart, the store's word that
    // it ran), with no backup elsewhere (the backup carries on, lost() below). A start
    // still in flight is lost now: its answer never comes, and its copy is remembered.
    bool holdable = (j->reconcile && !j->starting) ||
                    (j->rec.state == job_state::running && j->rec.task != 0 && !j->starting && !j->backup);
    if (!fenced && holdable) {
      hold(*j, lost_after, why);
    } else {
      lost(*j, "node " + name + " down: " + why);
    }
  }
  for (auto& [id, j] : jobs_) {
    if (j->backup && j->backup->node == name) {
      // A backup still starting (task 0) has no marker of its own to be found by: its
      // start's answer fails with the link and drops it.
      if (j->backup->task != 0) remember_cut_off(*j, name, j->backup->task, j->rec.attempts);
      drop_backup(*j, true, policy::outcome::lost, true);
    }
  }
  policy_.remove_node(name);
  // Exits that arrived before their start's answer mean nothing on a new connection.
  std::erase_if(early_exits_, [&](const auto& e) { return e.first.first == name; });
  schedule();
}

void scheduler::lost(job& j, const std::string& why) {
  end_hold(j);
  if (j.backup && j.backup->task != 0 && j.rec.state == job_state::running && !j.collecting) {
    // The job's copy is lost, its backup carries on as the job's copy.
    post_event(fmt::format("lost {} {}", j.rec.id, j.rec.node));
    promote_backup(j);
    remember_cut_off(j, j.backup->node, j.backup->task, j.rec.attempts);  // the lost copy, now the backup
    drop_backup(j, true, policy::outcome::lost, true);
    save(j);
    return changed(j);
  }
  drop_backup(j, true, policy::outcome::lost, false);  // a backup still starting is no copy
  std::string node = j.rec.node;
  bool ran = j.rec.state == job_state::running || j.rec.task != 0;
  // Remembered before the requeue is stored: the store commits in call order. A running
  // copy carries GALAXY_ATTEMPT=attempts, a start not yet answered attempts + 1.
  remember_cut_off(j, node, j.rec.task, j.rec.state == job_state::running ? j.rec.attempts : j.rec.attempts + 1);
  bool requeue = !ran || j.rec.attempts <= j.rec.retries;
  if (requeue) policy_end(j, policy::outcome::lost);  // the policy queues it again
  release(j);
  if (j.rec.task != 0) by_task_.erase({node, j.rec.task});
  j.starting = false;
  j.reconcile = false;
  post_event(fmt::format("lost {} {}", j.rec.id, node));
  if (requeue) {
    j.rec.state = job_state::queued;
    j.rec.node.clear();
    j.rec.task = 0;
    j.rec.note = ran ? fmt::format("lost on {} ({}); requeued after attempt {}", node, why, j.rec.attempts)
                     : fmt::format("start on {} not confirmed ({}); requeued", node, why);
    save(j);
    changed(j);
    if (gate_open_ && !in_policy_.contains(j.rec.id)) to_policy(j);
    schedule();
    open_gate();
    return;
  }
  finish(j, job_state::failed, "lost",
         fmt::format("lost on {} ({}) after {} attempts", node, why, j.rec.attempts));
}

void scheduler::remember_cut_off(const job& j, const std::string& node, std::uint64_t task, int attempt) {
  // Only for a node that is configured and down: a removed node cannot come back, and an
  // up node has just said what it has (reconcile's "no such task").
  node_link* n = find_node(node);
  if (n == nullptr || n->up() || (task == 0 && attempt <= 0)) return;
  cut_off_record rec{node, task, j.rec.id, j.rec.owner, attempt};
  store_->put_cut_off(rec, [this](std::expected<void, std::string> ok) {
    if (!ok) asio::post(io_, [this, e = ok.error()] { log("storing a cut-off copy: " + e); });
  });
  log(fmt::format("job {}: copy on {} (task {}, attempt {}) cut off: remembered until the node returns", j.rec.id,
                  node, task, attempt));
  cut_off_[cut_off_key{node, task, j.rec.id}] = cut_off_copy{.rec = std::move(rec)};
}

void scheduler::forget_cut_off(const cut_off_key& key) {
  auto it = cut_off_.find(key);
  if (it == cut_off_.end()) return;
  store_->remove_cut_off(std::get<0>(key), std::get<1>(key), std::get<2>(key), nullptr);
  cut_off_.erase(it);
}

void scheduler::read_cut_offs(const std::string& node) {
  node_link* n = find_node(node);
  auto conn = n ? n->conn() : nullptr;
  if (!conn) return;
  std::vector<cut_off_record> known, unknown;
  for (auto it = cut_off_.lower_bound(cut_off_key{node, 0, 0}); it != cut_off_.end() && std::get<0>(it->first) == node;
       ++it) {
    if (it->second.reading) continue;
    it->second.reading = true;
    (it->second.rec.task != 0 ? known : unknown).push_back(it->second.rec);
  }
  // Copies with a known task are a status read each, and hold placement back until they
  // are in; a copy whose start was never answered costs a search of the node's tasks
  // (find_task), which placement does not wait for: its job was requeued long ago.
  auto read = [this, conn, node](std::vector<cut_off_record> todo, bool gate) {
    if (todo.empty()) return;
    if (gate) ++cut_off_reads_;
    asio::post(pool_, [this, conn, node, todo = std::move(todo), gate] {
      std::vector<std::optional<found_task>> found;
      for (const auto& c : todo) {
        auto f = find_task(conn->client(), c.owner, c.job, c.attempt, c.task);
        found.push_back(f ? std::optional<found_task>(*f) : std::nullopt);
      }
      // A read that failed because the connection closed says nothing about the task.
      if (!conn->connected()) found.assign(found.size(), std::nullopt);
      asio::post(io_, [this, todo, found, gate] {
        if (gate) --cut_off_reads_;
        for (std::size_t i = 0; i < todo.size(); ++i) {
          cut_off_key key{todo[i].node, todo[i].task, todo[i].job};
          if (found[i]) {
            settle_cut_off(key, found[i]->task, found[i]->state, found[i]->wait);
          } else if (auto it = cut_off_.find(key); it != cut_off_.end()) {
            it->second.reading = false;  // asked again when the node next returns
          }
        }
        schedule();
      });
    });
  };
  read(std::move(known), true);
  read(std::move(unknown), false);
}

void scheduler::settle_cut_off(const cut_off_key& key, std::uint64_t task, const std::string& state,
                               const std::string& wait) {
  auto it = cut_off_.find(key);
  if (it == cut_off_.end()) return;
  it->second.reading = false;
  cut_off_record c = it->second.rec;
  node_link* n = find_node(c.node);
  if (n == nullptr || !n->up()) return;  // down again: settled when it next returns
  job* j = find(c.job);
  if (task == 0) {
    log(fmt::format("job {}: cut-off copy on {} (task {}): the node does not have it", c.job, c.node, c.task));
    return forget_cut_off(key);
  }
  // open: the job may still take this copy's run as its own.
  bool open = j != nullptr && !is_final(j->rec.state) && !j->collecting && !j->kill_requested;
  bool queued = open && j->rec.state == job_state::queued && !j->starting && !j->reconcile;
  if (state == "running" || state == "new") {
    if (state == "running" && queued && take_back(*j, c.node, task)) {
      post_event(fmt::format("adopt {} {} {}", c.job, c.node, task));
      add_reconcile_note(*j, fmt::format("taken back on {} (task {}), still running when its node returned", c.node,
                                         task));
      forget_cut_off(key);
      if (auto e = early_exits_.find({c.node, task}); e != early_exits_.end()) {
        std::string w = e->second;  // it ended between the read and now
        early_exits_.erase(e);
        task_ended(c.node, task, w);
      }
      return;
    }
    kill_duplicate(j, c, task);
    return forget_cut_off(key);
  }
  if (wait == "exit 0" && open) {
    if (j->starting || j->reconcile) {
      // Its job's start elsewhere (or its restart reconcile) has not answered: the copy's
      // result waits for that (retry_cut_offs).
      it->second.found = task;
      it->second.wait = wait;
      return;
    }
    recover(*j, c.node, task, wait);
    return forget_cut_off(key);
  }
  if (wait == "exit 0" && j != nullptr && (j->collecting || j->rec.state == job_state::done)) {
    // Both copies ran to the end while the node was cut off: the scheduler cannot undo it.
    post_event(fmt::format("duplicate {} {} {} finished", c.job, c.node, task));
    add_reconcile_note(*j, fmt::format("also finished on {} (task {}) while its node was cut off", c.node, task));
  }
  if (wait.starts_with("lost fenced") && j != nullptr) {
    add_reconcile_note(*j, fmt::format("cut-off copy on {} (task {}) fenced by its node", c.node, task));
  }
  log(fmt::format("job {}: cut-off copy on {} (task {}) ended ({}) while cut off: {}", c.job, c.node, task,
                  wait.empty() ? state : wait, open ? "its requeue stands" : "the job has ended"));
  forget_cut_off(key);
}

void scheduler::retry_cut_offs() {
  std::vector<std::pair<cut_off_key, std::uint64_t>> due;
  for (const auto& [key, c] : cut_off_) {
    if (c.wait.empty() || c.reading) continue;
    const job* j = find(c.rec.job);
    if (j == nullptr || (!j->starting && !j->reconcile)) due.emplace_back(key, c.found);
  }
  for (const auto& [key, task] : due) {
    auto it = cut_off_.find(key);
    if (it != cut_off_.end()) settle_cut_off(key, task, "done", std::string(it->second.wait));
  }
}

bool scheduler::take_back(job& j, const std::string& node, std::uint64_t task) {
  // The job is queued: the policy starts it on node without a decision (policy adopt), or,
  // before the gate opens after a restart, gets it there when fed (to_policy, adopted).
  std::uint64_t id = j.rec.id;
  if (in_policy_.contains(id)) {
    if (auto ok = policy_.adopt(id, node, now_ms()); !ok) {
      log(fmt::format("job {}: taking back its copy on {}: policy: {}", id, node, ok.error()));
      return false;
    }
  } else if (gate_open_) {
    return false;  // not the policy's (nor waiting to be): nothing to take it back into
  } else {
    j.adopted = true;
  }
  j.rec.state = job_state::running;
  j.rec.node = node;
  j.rec.task = task;
  auto& u = used_[node];
  u.cpu_millis += j.cpu_millis ? j.cpu_millis : opts_.default_cpu_millis;
  u.mem_bytes += static_cast<std::int64_t>(j.mem_bytes);
  u.jobs++;
  j.holds = true;
  by_task_[{node, task}] = id;
  save(j);
  changed(j);
  return true;
}

void scheduler::recover(job& j, const std::string& node, std::uint64_t task, std::string wait) {
  std::uint64_t id = j.rec.id;
  post_event(fmt::format("recover {} {} {}", id, node, task));
  add_reconcile_note(j, fmt::format("result recovered from {} (task {}), which finished while its node was cut off",
                                    node, task));
  if (j.rec.state == job_state::queued) {
    // Still queued: it leaves the queue, running on its copy, which has ended.
    if (!take_back(j, node, task)) return;
    return task_ended(node, task, std::move(wait));
  }
  if (j.rec.node == node) {
    // Requeued onto the same node: the new copy is the duplicate.
    std::uint64_t dup = j.rec.task;
    by_task_.erase({node, dup});
    kill_task(node, j.rec.owner, dup, SIGKILL);
    post_event(fmt::format("duplicate {} {} {} killed", id, node, dup));
    j.rec.task = task;
    by_task_[{node, task}] = id;
    save(j);
    return task_ended(node, task, std::move(wait));
  }
  // Running elsewhere: the cut-off copy joins as a backup copy that has just succeeded,
  // and speculation's rule decides: the first copy to succeed wins (promote_backup), the
  // other is killed (the policy preempts it; finish drops it).
  if (j.backup) drop_backup(j, true, policy::outcome::lost, false);
  if (in_policy_.contains(id) && !j.policy_ended) {
    if (auto ok = policy_.adopt(id, node, now_ms()); !ok) {
      log(fmt::format("job {}: recovering its copy on {}: policy: {}", id, node, ok.error()));
      return;
    }
  }
  j.backup = job::copy{node, task, next_token_++};
  auto& u = used_[node];
  u.cpu_millis += j.cpu_millis ? j.cpu_millis : opts_.default_cpu_millis;
  u.mem_bytes += static_cast<std::int64_t>(j.mem_bytes);
  u.jobs++;
  by_task_[{node, task}] = id;
  task_ended(node, task, std::move(wait));
}

void scheduler::kill_duplicate(job* j, const cut_off_record& c, std::uint64_t task) {
  kill_task(c.node, c.owner, task, SIGKILL);
  early_exits_.erase({c.node, task});
  post_event(fmt::format("duplicate {} {} {} killed", c.job, c.node, task));
  log(fmt::format("job {}: cut-off copy on {} (task {}) killed on its return", c.job, c.node, task));
  if (j != nullptr) {
    add_reconcile_note(*j, fmt::format("cut-off copy on {} (task {}) killed when its node returned", c.node, task));
  }
}

void scheduler::add_reconcile_note(job& j, const std::string& text) {
  auto append = [&text](std::string& to) { to = to.empty() ? text : to + "; " + text; };
  if (is_final(j.rec.state)) {
    append(j.rec.note);
    save(j);
  } else {
    append(j.reconcile_note);
  }
  changed(j);
}

// ---- After a restart ---------------------------------------------------------------------

void scheduler::reconcile(job& j) {
  node_link* n = find_node(j.rec.node);
  auto conn = n ? n->conn() : nullptr;
  if (!conn) return;
  std::uint64_t id = j.rec.id;
  std::string node = j.rec.node;
  asio::post(pool_, [this, conn, id, node, owner = j.rec.owner, task = j.rec.task, attempt = j.rec.attempts + 1] {
    auto found = find_task(conn->client(), owner, id, attempt, task);
    asio::post(io_, [this, id, node, found] {
      job* j = find(id);
      if (j == nullptr || !j->reconcile || j->rec.node != node) return;
      if (!found) return;  // the node went down meanwhile: node_down handles the job
      if (found->task == 0) return lost(*j, "the node has no such task");
      end_hold(*j);
      j->reconcile = false;
      j->rec.task = found->task;
      if (j->rec.state != job_state::running) {
        j->rec.state = job_state::running;
        j->rec.attempts++;
        j->rec.started_ms = now_ms();
      }
      std::int64_t cpu = j->cpu_millis ? j->cpu_millis : opts_.default_cpu_millis;
      auto& u = used_[node];
      u.cpu_millis += cpu;
      u.mem_bytes += static_cast<std::int64_t>(j->mem_bytes);
      u.jobs++;
      j->holds = true;
      by_task_[{node, found->task}] = id;
      save(*j);
      log(fmt::format("job {}: found task {} on {} ({})", id, found->task, node, found->state));
      if (found->state == "new" || found->state == "running") {
        if (gate_open_ && !in_policy_.contains(id)) {
          // Held while the gate opened (its node came back late): it enters the policy
          // queued and is adopted where it runs, taking its room there at once.
          to_policy(*j);
          if (!in_policy_.contains(id)) return;  // to_policy ended it or defers it
          if (auto ok = policy_.adopt(id, node, now_ms()); !ok) {
            log(fmt::format("job {}: adopting it on {}: policy: {}", id, node, ok.error()));
          }
        } else {
          j->adopted = true;
        }
        if (auto e = early_exits_.find({node, found->task}); e != early_exits_.end()) {
          std::string wait = e->second;
          early_exits_.erase(e);
          return task_ended(node, found->task, wait);
        }
        changed(*j);
        return open_gate();
      }
      task_ended(node, found->task, found->wait.empty() ? "lost" : found->wait);
    });
  });
}

}  // namespace sched
