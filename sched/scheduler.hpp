#pragma once
// galaxy-sched's core: the nodes, the jobs and their lifecycle, without the file tree
// (sched/tree.* serves it). Design: shared/design/galaxy.md, "The unified tree" and
// "Scheduling"; issue 5.
//
// A job goes new → queued → running → done | failed | killed. `exec` on its ctl makes it
// queued once the store has it on disk (the write returns only then). A placement pass
// starts queued jobs on nodes (place(); the policy library replaces its first fit). A
// start is written to the store ("starting on NODE") before the node is asked, and the
// task is started with env GALAXY_JOB=J so that a scheduler that died in between finds
// it again. Exits come from each node's /events; then the job's stdout, stderr and out/
// are copied into STATE/jobs/J/ (so they outlive the node) and the final state is stored;
// the job's room goes back to the policy at the exit, before the copy.
// A node marked down loses its running jobs: each is requeued while attempts ≤ retries,
// else failed, and the given-up copy is remembered until the node comes back; then its
// task files decide (adopted, gives the job its result, or killed). After a restart, jobs
// that were running are reconciled with the node's task files too (adopted if still
// running, collected if finished meanwhile, requeued if the node lost them), so a job
// known to have finished never runs again (as Mesos rebuilds its state from the agents).
// sched/reconcile.cpp holds all of "what happens when a node goes away and comes back",
// and the lease that makes a node cut off kill its copies before they are requeued.
//
// An array job (`array N`) runs nowhere itself: at exec it makes N jobs, its tasks, that
// name it and their index (stored before it, so a restart that finds tasks without their
// array job drops them); its state follows theirs (array_changed). A job that may
// speculate can get a backup copy from the policy (job::backup, never stored): the first
// copy to succeed becomes the job's own (promote_backup) and the other is killed.
//
// Threads: everything runs on the io_context; copying results uses blocking 9P calls on
// a small thread pool and posts back.
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "sched/node_link.hpp"
#include "sched/policy.hpp"
#include "sched/results.hpp"
#include "sched/store.hpp"

namespace sched {

// The group of every job file, the scheduler's fixed files and its relayed creations; its
// members are the admins (scheduler::is_admin), so group permission is admin permission.
inline constexpr std::string_view admin_group = "admin";

// A node name: 1 to 64 letters, digits, '-', '_' or '.', not "." or "..".
bool valid_node_name(std::string_view n);

// What a job's spec may hold, so that one client cannot make the scheduler store (and
// send to a node, in one write) without bound: bytes of the spec as stored, and
// variables of its env lines.
inline constexpr std::size_t max_spec_bytes = 256 * 1024;
inline constexpr std::size_t max_env_vars = 1024;

// Now as Unix time in milliseconds (the unit of every time in job records and status).
inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct sched_options {
  std::filesystem::path state;          // the state directory: sched.db and jobs/J/ results
  // The attach names with admin rights on /ctl and every job (--admin, repeatable, and the
  // daemon's user); root is an admin whatever this says. The first owns the fixed files.
  std::vector<std::string> admins;
  link_options link;                    // heartbeats and reconnects (link.uname: our attach name)
  std::vector<std::pair<std::string, std::string>> nodes;  // --node NAME=DIAL
  std::uint32_t default_cpu_millis = 1000;   // a job without `cpu` takes one CPU
  std::int64_t new_job_timeout_ms = 600000;  // a cloned job never exec'd is dropped after this
  std::size_t copy_threads = 4;              // threads that copy results from nodes
  result_limits results;                     // the most one job's results may take (--max-result-*)
  // The lease given to each node when its link comes up (`lease MS` on its /ctl; fencing,
  // sched/reconcile.cpp): 0 gives none (--no-fence), and nodes never fence. fence_lease_ms
  // says what galaxy-sched uses by default.
  std::uint32_t lease_ms = 0;
  std::function<void(std::string_view)> log;
  // Uids that may join nodes through /join (--join-user), besides root and the daemon's.
  std::vector<uid_t> join_uids;
};

// The lease a node is given so that it fences before the scheduler requeues its jobs
// (galaxy-sched(8), FENCING): down_after_ms − 2 × heartbeat_ms, but at least
// down_after_ms / 2. Why that is safe is written in sched/reconcile.cpp.
std::uint32_t fence_lease_ms(std::uint32_t down_after_ms, std::uint32_t heartbeat_ms);

// A finished task's accounting from its node's status line (galaxy-node(4): "... usertime=MS
// systime=MS maxrss=BYTES ..."), into rec.user_ms, rec.sys_ms and rec.maxrss_bytes: each
// field a decimal number of at most 18 digits, else 0 (a node's answer: a sign, a unit, a
// fraction or a number past 10^18 - 1 counts as none). Never fails.
void take_usage(std::string_view line, job_record& rec);

// One job: its durable record and what was parsed from its spec.
struct job {
  job_record rec;
  // Parsed from rec.spec (replayable, so a restart rebuilds these):
  std::vector<std::string> task_lines;  // dir, env, cpu, mem, time, nice: sent to the node as they are
  std::vector<std::string> argv;
  std::uint32_t cpu_millis = 0;
  std::uint64_t mem_bytes = 0;
  std::vector<std::pair<std::string, std::string>> needs;
  std::size_t env_vars = 0;      // variables set by env lines (at most max_env_vars)
  std::uint32_t array_size = 0;  // `array N`: this job is an array of N tasks (jobs/J/0..N-1)
  bool speculate = false;        // `speculate`: may get a backup copy when it straggles
  bool queue_anyway = false;     // `queue-anyway`: exec queues it though no node known can run it
  // Run time only:
  std::vector<std::uint64_t> tasks;  // an array job's tasks (their job ids), by index
  std::int64_t created_ms = 0;
  bool starting = false;        // a start on rec.node is in flight
  std::int64_t defer_ms = 0;    // its last deferral after a start that failed for its own reason
  bool reconcile = false;       // after a restart: must be checked against rec.node's tasks
  // Its node is down but its copy there may still run until the node's lease has run out
  // (sched/reconcile.cpp, "Held"): lost only at this time, unless the node is back first.
  std::optional<std::chrono::steady_clock::time_point> held_until;
  std::string held_why;         // why its node went down, for the note when it is lost
  bool kill_requested = false;  // kill asked while running or starting
  int kill_signal = 9;
  bool collecting = false;      // results are being copied from the node
  bool collected = false;       // stdout, stderr and out/ are in the scheduler's spool
  bool holds = false;           // counted in its node's used resources
  bool adopted = false;         // after a restart: found running; the policy must place it there
  bool policy_ended = false;    // its final outcome went to the policy (at the exit, before the copy)
  // What reconciling a returned node did to it ("recovered from n2 task 7, ..."): shown
  // in its note, and kept in the stored note when it ends (sched/reconcile.cpp).
  std::string reconcile_note;
  // A second copy started by speculation (MapReduce's backup task), never stored: the
  // first copy to succeed wins (it becomes rec.node/rec.task), the other is killed.
  struct copy {
    std::string node;
    std::uint64_t task = 0;  // 0 while its start is in flight
    std::uint64_t token = 0;  // names this start, so a late answer for a dropped copy is known
  };
  std::optional<copy> backup;
};

class scheduler {
 public:
  struct hooks {
    std::function<void(const job&)> changed;     // state, output or status changed: wake readers
    std::function<void(std::string line)> event;  // a line for /events
  };

  // Opens STATE/sched.db (creating STATE), loads the stored jobs and nodes. Errors: the
  // state directory or the store cannot be opened; a bad --node.
  static std::expected<std::unique_ptr<scheduler>, std::string> create(asio::io_context& io, sched_options opts,
                                                                       hooks h);
  ~scheduler();
  // Connects to every node (stored and --node) and starts the timers.
  void start();
  // Closes the node connections and commits what is queued.
  void stop();

  // ---- Nodes ----------------------------------------------------------------------------
  // node add NAME DIAL: stored, then connected. done runs once it is durable. Errors: a
  // name that exists, a bad dial string, a bad name.
  void add_node(std::string name, std::string dial, std::function<void(std::expected<void, std::string>)> done);
  // node rm NAME: its running jobs are lost (and requeued). Errors: unknown node.
  void remove_node(const std::string& name, std::function<void(std::expected<void, std::string>)> done);
  std::expected<void, std::string> drain(const std::string& name, bool on);
  const std::map<std::string, std::shared_ptr<node_link>>& nodes() const { return links_; }
  bool drained(const std::string& name) const { return drained_.contains(name); }
  node_link* find_node(std::string_view name) const;

  // ---- Joins (galaxy-node --join; the /join file of sched/tree.cpp) -------------------
  // (sched/membership.cpp.) A joined node is stored (its name and the uid that joined it)
  // and its link exists while the node is connected and after, listed down, until it joins
  // again (a new link replaces it) or `node rm` (which also frees the name); a restarted
  // scheduler starts with every stored joined node down, waiting for it to join again.
  // Its jobs follow the rules of any node that goes down.
  //
  // Whether the attach name uname, local uid uid, may join nodes: root, the daemon's own
  // uid, or one of sched_options::join_uids. Error: "join: uid 1001 (bob) may not join
  // nodes" ("join: bob is not a user of this host" without a uid).
  std::expected<void, std::string> may_join(std::optional<uid_t> uid, std::string_view uname) const;
  // Holds name while a join's connection is handed over (the answer to the join write is
  // being sent), so that a second join of it meanwhile is refused; let go when the last
  // copy of the ticket goes. uid: who joins (may_join's). Errors: "join: node n1 is already
  // connected", "join: node n1 is dialled by the scheduler (--node or node add)", "join:
  // node n1 is joining already", "join: node n1 was joined by uid 1000; uid 1001 may not
  // take its name (an admin frees it with `node rm n1`)".
  using join_ticket = std::shared_ptr<const std::string>;
  std::expected<join_ticket, std::string> reserve_join(const std::string& name, uid_t uid);
  // A node joined as name, saying info (its join line), and serves its tree on fd (taken),
  // a connection whose credentials must be bound to binding (srv9p::join_binding(NONCE)).
  // The name stays reserved (reserve_join) while the connection is adopted on io() as an
  // io-mode fsclient (fsclient::client::adopt: Tversion within link_options::
  // dial_timeout_ms); then it becomes name's link (node_link's joined constructor), which
  // attaches at once, is stored (name and uid) and never dials, replaces a joined link of that name
  // that is down, and is up once its first heartbeat is answered. done gets success once
  // the link is made, or why not (the checks of reserve_join, made again; Tversion's
  // error; the scheduler stopped); fd is closed then.
  void join_node(std::string name, uid_t uid, node_info info, int fd, std::string binding,
                 std::function<void(std::expected<void, std::string>)> done);

  // ---- Jobs -----------------------------------------------------------------------------
  job& create_job(const std::string& owner);  // jobs/clone
  job* find(std::uint64_t id);
  const std::map<std::uint64_t, std::unique_ptr<job>>& jobs() const { return jobs_; }
  // One ctl line on a job, from uname (the tree has checked write permission). done gets
  // the error text or success; exec answers once the job is durable. Errors: the verb
  // table's ("unknown command 'exce': expected exec, dir, ..."), typed arguments', "job J
  // already submitted: 'env' must come before exec", "after: no job 99", "after: 5 would
  // make a cycle", "job J has ended" for kill on a finished job.
  void job_ctl(job& j, std::string line, std::string_view uname,
               std::function<void(std::expected<void, std::string>)> done);
  // /ctl commands (sched_verbs). Errors as for job_ctl; "permission denied" unless admin.
  void admin_ctl(std::string line, std::string_view uname, std::function<void(std::expected<void, std::string>)> done);

  // The status line of jobs/J/status: id owner state node attempts exit submitted started
  // ended (and name, task, note), key=value with ctl quoting.
  std::string status_line(const job& j) const;
  // Why job j can never run on the nodes the scheduler knows, or nothing (galaxy(4), "JOBS
  // THAT CANNOT RUN"): no node, even empty, has its CPUs or memory or the labels it needs
  // (a node whose resources are not known yet could hold anything); there are no nodes at
  // all (once the first down_after_ms since start() have passed, in which nodes that were
  // joined before a restart come back); or an `after` job failed or was killed. exec is
  // refused with this reason unless the job has `queue-anyway`; a queued job without
  // queue-anyway that comes to this (its last node was removed) shows it in its note and
  // its wait file answers "cannot run: REASON".
  std::optional<std::string> cannot_run(const job& j) const;
  // jobs/J/wait's text once the job ended ("exit 0", "signal 9", "error TEXT", "killed",
  // "failed: REASON"), "cannot run: REASON" for a queued job that cannot_run says will
  // never run (not queue-anyway), or "" while it has not ended.
  std::string wait_text(const job& j) const;
  // Where the job's copied results live.
  std::filesystem::path spool(std::uint64_t id) const;
  // Queued jobs in the order placement considers them.
  std::vector<const job*> queue() const;
  std::string cluster_status() const;   // /status
  std::string metrics() const;           // /metrics, Prometheus text format 0.0.4
  // Users with jobs or quotas, and one user's share, quota and usage (/users/NAME).
  std::vector<std::string> users() const;
  std::string user_text(std::string_view user) const;
  // The owner of the tree's fixed files: the first admin.
  const std::string& admin() const { return admin_; }
  // Whether uname has admin rights: root, or one of sched_options::admins. Every
  // permission decision of the scheduler and of its tree (admin_group) asks this.
  bool is_admin(std::string_view uname) const;
  asio::io_context& io() { return io_; }
  // A line for the scheduler's log (sched_options::log).
  void log_line(std::string_view line) const { log(line); }

 private:
  scheduler(asio::io_context& io, sched_options opts, hooks h);

  std::expected<void, std::string> apply_spec_line(job& j, std::string_view line, bool replay);
  void submit(job& j, std::function<void(std::expected<void, std::string>)> done);
  void submit_array(job& a, std::function<void(std::expected<void, std::string>)> done);
  void array_changed(std::uint64_t array_id);  // a task of the array moved: the array's own state follows
  void kill_job(job& j, int sig, std::function<void(std::expected<void, std::string>)> done);
  void forget_job(job& j, std::function<void(std::expected<void, std::string>)> done);

  std::shared_ptr<node_link> make_link(const std::string& name, const std::string& dial);  // sched/membership.cpp
  node_link::hooks link_hooks(const std::string& name);
  // link_options for name's link: the scheduler's, with its log lines prefixed "node NAME: ".
  link_options link_options_for(const std::string& name) const;
  // Why name may not join now (reserve_join's checks but the reservation), or nothing.
  std::optional<std::string> join_refusal(const std::string& name, uid_t uid) const;
  void node_up(const std::string& name);
  // Writes `lease opts_.lease_ms` to the node's /ctl (fencing; reconcile.cpp). A refusal
  // (an older node) is logged: that node will not fence.
  void give_lease(const std::string& name);
  // The node's link went down (why); its copies may run until lost_after (its lease has
  // certainly run out by then): running jobs are held until then (sched/reconcile.cpp).
  void node_down(const std::string& name, const std::string& why, std::chrono::steady_clock::time_point lost_after);
  void node_event(const std::string& name, const std::string& line);

  void schedule();   // posts one placement pass (coalesced)
  void place();      // one pass of the policy (sched/policy.hpp) and its decisions carried out
  void start_on(job& j, node_link& n);
  void started(std::uint64_t id, std::string node, std::uint64_t task);
  // Whose fault a failed start was, as far as the scheduler knows: refused (the node's
  // answer, which may be the job's fault or the node's: start_failed decides), node (the
  // node misbehaved: a short or malformed answer, or it is gone), ours (the scheduler's
  // own store: neither the job's nor the node's).
  enum class start_fault : std::uint8_t { refused, node, ours };
  void start_failed(std::uint64_t id, const std::string& why, start_fault fault = start_fault::refused);
  // The node is left alone for every job: doubling, from 1 s up to max_backoff_ms, at
  // most once per period (refusals of starts already in flight count but do not double);
  // or, when !doubling, for 1 s (a refusal that may be the jobs' fault).
  void back_off_node(const std::string& node, const std::string& why, bool doubling);
  // Whether a job of an owner other than `owner` is queued (start_failed's rule).
  bool other_owner_queued(const std::string& owner) const;
  void task_ended(const std::string& node, std::uint64_t task, std::string wait);
  void collect(job& j, std::string wait);
  void copy_in_pool(job& j, std::string wait);  // collect's general path: blocking copies on pool_
  void collected(std::uint64_t id, std::string wait, std::string note);
  void finish(job& j, job_state s, std::string exit, std::string note);
  void lost(job& j, const std::string& why);
  void reconcile(job& j);
  // Held jobs (sched/reconcile.cpp, "Held"): hold until lost_after; end_hold forgets the
  // hold (nothing else); expire_holds loses those whose time has come (each tick);
  // recheck_held reads a held job's task on its returned node.
  void hold(job& j, std::chrono::steady_clock::time_point lost_after, const std::string& why);
  void end_hold(job& j);
  void expire_holds();
  void recheck_held(job& j);
  // Copies given up while their node was cut off (sched/reconcile.cpp).
  using cut_off_key = std::tuple<std::string, std::uint64_t, std::uint64_t>;  // node, task, job
  void remember_cut_off(const job& j, const std::string& node, std::uint64_t task, int attempt);
  void read_cut_offs(const std::string& node);  // the node is back: what became of them
  void settle_cut_off(const cut_off_key& key, std::uint64_t task, const std::string& state, const std::string& wait);
  void forget_cut_off(const cut_off_key& key);
  void retry_cut_offs();  // those that wait for their job's start or restart reconcile to answer
  bool take_back(job& j, const std::string& node, std::uint64_t task);  // a queued job runs on its cut-off copy
  void recover(job& j, const std::string& node, std::uint64_t task, std::string wait);
  void kill_duplicate(job* j, const cut_off_record& c, std::uint64_t task);
  void add_reconcile_note(job& j, const std::string& text);
  void release(job& j);  // gives back what the job held on its node
  // Tells the policy how a job it knows ended (o) or that it was cancelled (killed while
  // not running); nothing for a job the policy does not hold.
  void policy_end(job& j, policy::outcome o);
  void to_policy(job& j);        // a queued job enters the policy
  std::vector<std::uint64_t> deps_of(const job& j) const;  // rec.after, an array job standing for its tasks
  void open_gate();              // after a restart: feeds the policy once every job is reconciled
  void update_node(const std::string& name);  // the node's spec, as the policy sees it
  void preempt(job& j, const std::string& node);
  void start_backup(job& j, node_link& n);
  // Forgets j's backup copy: tells the policy how it ended when tell_policy (o), gives back
  // its room, and kills its task unless it has ended (or is killed once its start answers).
  void drop_backup(job& j, bool tell_policy, policy::outcome o, bool task_ended);
  // The backup becomes the job's copy (rec.node/rec.task) and the old copy its backup.
  void promote_backup(job& j);
  void kill_task(const std::string& node, const std::string& owner, std::uint64_t task, int sig);
  // Writes rm to the node's task/N/ctl (its directory and spooled output go); a node that
  // is down keeps it (logged).
  void rm_task(const std::string& node, const std::string& owner, std::uint64_t task);
  std::string task_spec(const job& j, bool backup) const;  // what a start writes to the task's ctl
  void save(job& j);  // store.put without waiting
  void changed(job& j);
  void post_event(std::string line);
  void sweep();      // drops new jobs past new_job_timeout_ms
  void tick();       // a placement pass every second
  void log(std::string_view line) const;

  struct usage {
    std::int64_t cpu_millis = 0;
    std::int64_t mem_bytes = 0;
    int jobs = 0;
  };
  usage node_used(const std::string& node) const;
  std::int64_t node_cpu_capacity(const node_link& n) const;

  asio::io_context& io_;
  sched_options opts_;
  std::string admin_;  // opts_.admins' first, or root
  hooks hooks_;
  std::unique_ptr<job_store> store_;
  asio::thread_pool pool_;
  asio::steady_timer sweep_timer_;
  asio::steady_timer backoff_timer_;   // a placement pass after a node refused a start
  // Nodes that refused starts (start_failed): drained for the policy until until_ms (Unix
  // ms), then tried again; each refusal in a row doubles delay_ms from 1 s up to
  // max_backoff_ms, and a start that works forgets it (started()).
  struct node_backoff {
    std::int64_t until_ms = 0;
    std::int64_t delay_ms = 0;
    int refusals = 0;
    std::string why;       // the last refusal, as shown in notes ("spool full: ...")
    std::int64_t logged_ms = 0;  // when a refusal was last logged (at most one a minute)
    bool released = false;  // until_ms has passed: the policy may use the node again
    bool logged = false;    // a refusal of this run of refusals was logged
  };
  static constexpr std::int64_t max_backoff_ms = 30000;
  std::map<std::string, node_backoff> backoff_;
  // Per node, the owners whose starts it refused since its last start that worked: one
  // owner alone defers only its own job (job::defer_ms), so no user can back a node off
  // for everyone else (start_failed).
  std::map<std::string, std::set<std::string>> refusers_;
  void arm_backoff();  // the backoff timer, for the next node to release
  // "waiting for nodes that refused starts: n1 (spool full: ...; 3 refusals, backoff 4 s,
  // next try in 3 s)", or "".
  std::string backoff_note() const;
  std::string policy_mode_ = "binpack";
  policy::scheduler policy_;
  std::set<std::uint64_t> in_policy_;  // jobs the policy holds (queued, running, or ended and not forgotten)
  // After a restart the policy is fed only once every job is reconciled (adopted jobs
  // first, so that nothing else takes their room): until then no pass runs.
  bool gate_open_ = false;
  std::set<std::pair<std::string, std::uint64_t>> preempted_tasks_;  // (node, task) killed by preemption
  // Copies of jobs given up as lost while their node was cut off, kept in memory and in the
  // store (a restarted scheduler still knows them) until the node comes back and its task
  // files say what became of each (sched/reconcile.cpp).
  struct cut_off_copy {
    cut_off_record rec;
    bool reading = false;  // its task's status is being read from the node
    // It succeeded (its wait text, as task `found` on the node) while its job was
    // starting elsewhere or being reconciled: settled once that answers (retry_cut_offs).
    std::uint64_t found = 0;
    std::string wait;
  };
  std::map<cut_off_key, cut_off_copy> cut_off_;
  int cut_off_reads_ = 0;  // reads of returned nodes in flight: no placement pass meanwhile
  // Jobs some other job waits for (`after`, an array standing for its tasks). Their room
  // goes back at the exit only with their results: a dependent may read them.
  std::set<std::uint64_t> awaited_;
  // Dependents submitted while a predecessor's results were being copied: fed to the
  // policy once they are in (finish()), by predecessor.
  std::map<std::uint64_t, std::vector<std::uint64_t>> after_collect_;
  asio::steady_timer tick_timer_;      // a pass every second for time-based rules (reservations)
  std::map<std::string, std::shared_ptr<node_link>> links_;
  std::set<std::string> drained_;
  // Names whose join is being handed over (reserve_join), shared with the tickets.
  std::shared_ptr<std::set<std::string>> joining_ = std::make_shared<std::set<std::string>>();
  std::map<std::string, uid_t> join_uids_;  // joined nodes (stored): the uid that joined each
  std::set<std::uint64_t> held_;            // jobs with held_until set
  std::map<std::uint64_t, std::unique_ptr<job>> jobs_;
  std::map<std::pair<std::string, std::uint64_t>, std::uint64_t> by_task_;  // (node, task) → job
  std::map<std::pair<std::string, std::uint64_t>, std::string> early_exits_;  // exit seen before the start's answer
  std::map<std::string, usage> used_;   // by node: jobs running or starting there
  std::map<std::string, quota_record> quotas_;
  std::uint64_t next_id_ = 1;
  std::uint64_t next_token_ = 1;  // backup starts
  int lock_fd_ = -1;  // flock on STATE/lock, held for the scheduler's life
  int jobs_fd_ = -1;  // STATE/jobs: results are made relative to it (sched/results.hpp)
  bool pass_posted_ = false;
  std::int64_t started_ms_ = 0;  // when start() ran (cannot_run's grace for "no nodes")
  bool stopped_ = false;
  std::uint64_t submitted_total_ = 0;
  std::map<std::string, std::uint64_t> finished_total_;  // by final state
};

}  // namespace sched
