#pragma once
// galaxy-sched's unified tree (man/man4/galaxy.4), on the srv9p tree API:
//
//   /status /ctl /events /metrics /queue /join /users/NAME
//   /nodes/NAME/...                        each node's own tree, relayed
//   /jobs/clone
//   /jobs/N/{ctl,status,wait,stdout,stderr}  /jobs/N/out/
//   /jobs/N/I/...                          task I of array job N (a job of its own)
//
// Static levels are Dirtab tables; jobs/N, users/NAME and nodes/NAME are generated.
// nodes/NAME/ is a relay, as Plan 9's exportfs/import: a walk below it is one Twalk to the
// node (plus a Tstat of the last file, for its permissions); an open takes a fid on the
// node and keeps it in the open's state; reads and writes go to that fid, and a Tflush
// from our client flushes the node's request. Requests are made under the user's own
// attach name. qids below nodes/ are renumbered (a table of (node, path) → number), so
// they never collide with the scheduler's own or another node's.
//
// Every user shares the scheduler's one connection to a node, and the node bounds fids
// and outstanding requests per connection (srv9p::server_options: 16384 and 4096). So the
// relay counts what each user holds there (relay_quota): open files, and requests on
// their way; past a user's share, or past the share of all users together, a request is
// refused with an error that says which, and the rest of the node's room stays the
// scheduler's own (starts, result copies, heartbeats).
//
// Reads that wait (events, jobs/N/wait, stdout and stderr of a job not yet running) are
// parked requests woken when the job changes, and cancelled by Tflush.
#include <expected>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "sched/scheduler.hpp"
#include "srv9p/event_log.hpp"
#include "srv9p/parked.hpp"
#include "srv9p/tree.hpp"

namespace sched {

// What relayed requests may hold on one node's connection (galaxy-sched(8) --relay-*).
// The totals are for all users together and stay below the node's per-connection limits
// (16384 fids, 4096 requests), so the scheduler keeps the rest.
struct relay_limits {
  std::size_t fids_per_user = 256;       // relayed files a user holds open on one node
  std::size_t requests_per_user = 256;   // relayed 9P requests of a user outstanding on one node
  std::size_t fids_total = 8192;         // the same, all users together
  std::size_t requests_total = 2048;
};

// The counts behind relay_limits, per (user, node) and per node. A slot is what one
// relayed operation holds, given back when the slot is destroyed (on any thread: replies
// arrive on the client's reader thread), so no count outlives what it counts.
class relay_quota : public std::enable_shared_from_this<relay_quota> {
 public:
  explicit relay_quota(relay_limits l) : limits_(l) {}
  enum class what : std::uint8_t { fids, requests };
  class slot {
   public:
    slot(std::shared_ptr<relay_quota> q, what w, std::string user, std::string node, std::size_t n)
        : q_(std::move(q)), what_(w), user_(std::move(user)), node_(std::move(node)), n_(n) {}
    slot(const slot&) = delete;
    slot& operator=(const slot&) = delete;
    ~slot() { q_->give_back(what_, user_, node_, n_); }

   private:
    std::shared_ptr<relay_quota> q_;
    what what_;
    std::string user_, node_;
    std::size_t n_;
  };
  // Takes n fids or n requests for user on node. Errors: "relay limit: bob has 256 files
  // open on node n1" (or "256 requests outstanding"), "relay limit: node n1 has 8192
  // relayed files open for all users"; nothing is taken then.
  std::expected<std::shared_ptr<slot>, std::string> take(what w, const std::string& user, const std::string& node,
                                                         std::size_t n);
  // What user holds on node now (tests, status).
  std::size_t held(what w, const std::string& user, const std::string& node);

 private:
  struct counts {
    std::size_t fids = 0, requests = 0;
    std::size_t& of(what w) { return w == what::fids ? fids : requests; }
  };
  void give_back(what w, const std::string& user, const std::string& node, std::size_t n);

  relay_limits limits_;
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, counts> users_;  // (user, node); no zero entries
  std::map<std::string, counts> nodes_;
};
using relay_slot = std::shared_ptr<relay_quota::slot>;

class sched_tree : public srv9p::tree {
 public:
  explicit sched_tree(std::size_t event_backlog = 4096, relay_limits limits = {});
  ~sched_tree() override;

  // Hooks for scheduler::create that route its changes here; then set_scheduler.
  scheduler::hooks make_hooks();
  void set_scheduler(scheduler* s) { sched_ = s; }

  std::expected<srv9p::dir, std::string> attach(std::string_view uname, std::string_view aname) override;
  std::expected<srv9p::dir, std::string> walk1(const srv9p::dir& parent, std::string_view name,
                                               std::string_view uname) override;
  std::expected<std::vector<srv9p::dir>, std::string> list(const srv9p::dir& d, std::string_view uname) override;
  std::expected<srv9p::dir, std::string> stat1(const srv9p::dir& f) override;
  // The group admin_group has every admin as a member (scheduler::is_admin: --admin users,
  // the daemon's user, root); any other group only the user of its name.
  bool in_group(std::string_view uname, std::string_view gid) const override;
  void walk(srv9p::request r) override;
  void open(srv9p::request r) override;
  void create(srv9p::request r) override;
  void read(srv9p::request r) override;
  void write(srv9p::request r) override;
  // jobs/N is removed as the ctl command rm does (its owner or an admin; jobs/ is 0555
  // and says nothing). The files inside it, out/ and what is below, and the directories
  // of an array's tasks answer a remove with success and do nothing while the job may be
  // removed (it has ended or was never submitted), so that `rm -r jobs/N` ends by
  // removing jobs/N, which takes them all; else the refusal rm would give.
  void remove(srv9p::request r) override;
  bool may_remove(const srv9p::fid& f, const srv9p::dir& parent) const override;
  void stat(srv9p::request r) override;
  void wstat(srv9p::request r) override;
  void clunk(srv9p::fid& f) override;
  // /join's writes take the connection (srv9p::request::hand_off).
  bool hands_off(const srv9p::dir& f) const override;

 private:
  void join_write(srv9p::request r);
  struct relay_entry {
    std::string node;
    std::string path;  // below the node's root, "" for the root, "task/3/ctl"
  };

  void job_changed(const job& j);
  void park(std::uint64_t key, srv9p::request r);
  void wake(std::uint64_t key);

  srv9p::dir job_file(std::uint16_t kind, const job& j) const;
  std::uint64_t user_id(std::string_view user);
  std::uint64_t relay_id(const std::string& node, const std::string& path);
  srv9p::dir relay_dir(std::uint64_t id, srv9p::dir d) const;  // renumbers d's qid
  std::uint64_t disk_id(const std::string& path, std::uint64_t job);
  std::expected<srv9p::dir, std::string> disk_dir(std::uint64_t id) const;

  void serve_output(srv9p::request r, job& j, bool err);
  void relay_read(srv9p::request r);
  void relay_write(srv9p::request r);
  void relay_open(srv9p::request r, const relay_entry& e);
  // Takes what a relayed operation holds, or answers r with the quota's error (null).
  relay_slot take(relay_quota::what w, const srv9p::request& r, const std::string& node, std::size_t n);
  void relay_lines(std::shared_ptr<node_conn> conn, std::uint32_t fid, std::string text, std::size_t off,
                   std::function<void(std::expected<void, std::string>)> done);
  // The lines of one ctl write, applied one after another.
  struct line_run {
    srv9p::request r;
    std::vector<std::string> lines;
    std::size_t next = 0;
    std::uint64_t job = 0;  // 0 for /ctl
  };
  // Feeds ctl lines one after another (each may wait for the store), answering the
  // write after the last or at the first error. Iterates; see tree.cpp.
  void run_lines(std::shared_ptr<line_run> run);

  // walk1 and list without the times: the public ones stamp what has none (stamp()).
  std::expected<srv9p::dir, std::string> walk1_unstamped(const srv9p::dir& parent, std::string_view name,
                                                std::string_view uname);
  std::expected<std::vector<srv9p::dir>, std::string> list_unstamped(const srv9p::dir& d, std::string_view uname);
  // A file made up by the tree (the fixed files, users/NAME, nodes/NAME and the
  // directories the relay walks through) has no time of its own: it gets the server's
  // start as atime and mtime, not 1970. Files with times (jobs, out/) keep theirs.
  srv9p::dir stamp(srv9p::dir d) const;
  // The job a file of jobs/N (or below its out/) belongs to, or null; and whether it may
  // be removed now: the error rm would answer, or nothing.
  job* job_of(const srv9p::dir& f) const;

  std::uint32_t start_unix_s_;  // when the tree was made: the time of the fixed files
  scheduler* sched_ = nullptr;
  std::shared_ptr<relay_quota> quota_;
  srv9p::event_log events_;
  srv9p::parked_reads parked_;  // reads of wait, stdout and stderr
  std::vector<std::string> users_;
  std::unordered_map<std::string, std::uint64_t> user_ids_;
  std::vector<relay_entry> relay_;
  std::unordered_map<std::string, std::uint64_t> relay_ids_;  // node + '\0' + path → index
  struct disk_entry {
    std::string path;
    std::uint64_t job = 0;
  };
  std::vector<disk_entry> disk_;
  std::unordered_map<std::string, std::uint64_t> disk_ids_;
};

}  // namespace sched
