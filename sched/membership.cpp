// Node membership: which nodes galaxy-sched has, and its link to each (see
// sched/scheduler.hpp; links in sched/node_link.hpp; what happens to jobs when a node
// goes down or comes back is sched/reconcile.cpp's).
//
// Links. links_ maps a node's name to its node_link, one connection each, held on the
// scheduler's io_context with no thread of its own, so the scheduler's threads do not
// grow with the number of nodes.
//
// Dialled and joined nodes. A dialled node is configured (--node NAME=DIAL, or `node add`,
// kept in the store): its link dials it and dials again every --reconnect while it is
// down. A joined node dialled us (galaxy-node --join) and serves its tree on that
// connection. The way in is sched/tree.cpp's /join: may_join (who may), reserve_join (the
// name, held while the connection is handed over), then join_node(), which adopts the
// connection as an io-mode fsclient and makes the node's link from it (node_link's
// joined constructor): never dialled; when it goes down its link stays down until the
// node joins again, and the new join replaces the old link.
//
// Joined nodes are stored (nodes table, dial "" and join_uid): the name and the uid that
// joined it. So a restarted scheduler knows them: each gets a joined link that is down
// until the node joins again (node_link with no connection), and the jobs the store says
// ran there are held like a cut-off node's (sched/reconcile.cpp, "Held") instead of
// being lost before the node could rejoin. And a name is the uid's that joined it first:
// a join under it by any other uid is refused (the node logs why), so a --join-user
// cannot take the name, and with it the jobs and results, of another uid's node that is
// down. `node rm NAME` (an admin, /ctl) forgets the node and frees its name.
//
// Failure detection (galaxy-sched(8), FAILURE DETECTION) is the links': a node is marked
// down after --down-after of silence (heartbeats unanswered; default 30 s, to ride out a
// Wi-Fi hiccup) or at once when its connection closes; the down hook (node_down) then
// loses its jobs at once after silence, and after a close once the node's lease has run
// out (sched/reconcile.cpp).
#include <asio/post.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>

#include "ctl/join.hpp"
#include "sched/scheduler.hpp"
#include "srv9p/dial.hpp"

namespace sched {

namespace {

using done_fn = std::function<void(std::expected<void, std::string>)>;

std::unexpected<std::string> fail(std::string s) { return std::unexpected(std::move(s)); }

}  // namespace

// One rule for node names, the join line's (ctl/join.hpp).
bool valid_node_name(std::string_view n) { return ctl::valid_node_name(n); }

node_link::hooks scheduler::link_hooks(const std::string& name) {
  return node_link::hooks{
      .up = [this, name] { node_up(name); },
      .down = [this, name](std::string why, std::chrono::steady_clock::time_point lost_after) {
        node_down(name, why, lost_after);
      },
      .event = [this, name](std::string line) { node_event(name, line); },
      .info = [this, name] {
        update_node(name);
        schedule();
      },
  };
}

link_options scheduler::link_options_for(const std::string& name) const {
  link_options lo = opts_.link;
  if (lo.log) lo.log = [log = lo.log, name](std::string_view line) { log(fmt::format("node {}: {}", name, line)); };
  return lo;
}

std::shared_ptr<node_link> scheduler::make_link(const std::string& name, const std::string& dial) {
  return std::make_shared<node_link>(io_, name, dial, link_options_for(name), link_hooks(name));
}

// ---- Joins ------------------------------------------------------------------------------

std::expected<void, std::string> scheduler::may_join(std::optional<uid_t> uid, std::string_view uname) const {
  if (!uid) return fail(fmt::format("join: {} is not a user of this host", uname.substr(0, 64)));
  if (*uid == 0 || *uid == ::getuid() ||
      std::find(opts_.join_uids.begin(), opts_.join_uids.end(), *uid) != opts_.join_uids.end()) {
    return {};
  }
  return fail(fmt::format("join: uid {} ({}) may not join nodes", *uid, uname.substr(0, 64)));
}

std::optional<std::string> scheduler::join_refusal(const std::string& name, uid_t uid) const {
  if (stopped_) return "join: the scheduler is stopping";
  if (!valid_node_name(name)) return fmt::format("join: bad node name '{}'", name.substr(0, 64));
  auto it = links_.find(name);
  if (it == links_.end()) return std::nullopt;
  if (!it->second->joined()) return fmt::format("join: node {} is dialled by the scheduler (--node or node add)", name);
  if (it->second->connected()) return fmt::format("join: node {} is already connected", name);
  if (auto u = join_uids_.find(name); u != join_uids_.end() && u->second != uid) {
    return fmt::format("join: node {} was joined by uid {}; uid {} may not take its name (an admin frees it with "
                       "`node rm {}`)",
                       name, u->second, uid, name);
  }
  return std::nullopt;
}

std::expected<scheduler::join_ticket, std::string> scheduler::reserve_join(const std::string& name, uid_t uid) {
  if (auto why = join_refusal(name, uid)) return fail(std::move(*why));
  if (joining_->contains(name)) return fail(fmt::format("join: node {} is joining already", name));
  joining_->insert(name);
  std::weak_ptr<std::set<std::string>> set = joining_;
  return join_ticket(new std::string(name), [set](const std::string* n) {
    if (auto s = set.lock()) s->erase(*n);
    delete n;
  });
}

void scheduler::join_node(std::string name, uid_t uid, node_info info, int fd, std::string binding, done_fn done) {
  // The caller's ticket is gone: the name is taken again, now until the link is made, so
  // that a second join of it during Tversion is refused.
  auto ticket = reserve_join(name, uid);
  if (!ticket) {
    ::close(fd);
    return done(fail(std::move(ticket.error())));
  }
  link_options lo = link_options_for(name);
  fsclient::client::options copts;
  copts.version_timeout_ms = lo.dial_timeout_ms;
  copts.credential = lo.credential;
  copts.keepalive_s = lo.keepalive_s;
  copts.max_queue_bytes = lo.max_queue_bytes;
  copts.log = lo.log;
  // joining_ lives as long as the scheduler: the callback runs only while it does.
  std::weak_ptr<std::set<std::string>> alive = joining_;
  fsclient::client::adopt(
      io_, fd, std::move(binding), std::move(copts),
      [this, alive, name, uid, info = std::move(info), lo = std::move(lo), ticket = std::move(*ticket),
       done = std::move(done)](fsclient::result<std::unique_ptr<fsclient::client>> c) mutable {
        if (alive.expired()) return;
        ticket.reset();
        if (!c) return done(fail(fmt::format("join: {}", c.error())));
        // Checked again: a `node add` of the name, or the scheduler stopping, meanwhile.
        if (auto why = join_refusal(name, uid)) return done(fail(std::move(*why)));
        if (!join_uids_.contains(name)) {
          // Stored before anything can be started there: the store commits in call order,
          // so a job record naming this node never outlives the node's own record.
          join_uids_[name] = uid;
          store_->put_node(node_record{name, "", static_cast<std::int64_t>(uid)},
                           [this, name](std::expected<void, std::string> ok) {
                             if (!ok) asio::post(io_, [this, name, e = ok.error()] {
                               log(fmt::format("node {}: storing the join: {}", name, e));
                             });
                           });
        }
        bool known = false;
        if (auto it = links_.find(name); it != links_.end()) {
          // The node's earlier connection, down (what ran there followed the rules for a
          // node that went down): replaced.
          known = true;
          it->second->stop();
          links_.erase(it);
        }
        auto l = std::make_shared<node_link>(io_, name, std::move(*c), std::move(lo), link_hooks(name));
        links_[name] = l;
        log(fmt::format("node {} joined{}: arch={} ncpu={} mem={}", name, known ? " again" : "", info.arch, info.ncpu,
                        info.mem_bytes));
        post_event("node join " + name);
        l->start();
        done({});
      });
}

node_link* scheduler::find_node(std::string_view name) const {
  auto it = links_.find(std::string(name));
  return it == links_.end() ? nullptr : it->second.get();
}


void scheduler::add_node(std::string name, std::string dial, done_fn done) {
  if (!valid_node_name(name)) {
    return done(fail(fmt::format("bad node name '{}': expected letters, digits, '-', '_' or '.'", name)));
  }
  if (links_.contains(name)) return done(fail(fmt::format("node {} exists", name)));
  if (auto d = srv9p::parse_dial(dial); !d) return done(fail(d.error()));
  store_->put_node(node_record{name, dial}, [this, name, dial, done](std::expected<void, std::string> ok) {
    asio::post(io_, [this, name, dial, done, ok] {
      if (!ok) return done(ok);
      if (!links_.contains(name) && !stopped_) {
        links_[name] = make_link(name, dial);
        links_[name]->start();
        post_event("node add " + name);
      }
      done({});
    });
  });
}

void scheduler::remove_node(const std::string& name, done_fn done) {
  auto it = links_.find(name);
  if (it == links_.end()) return done(fail(fmt::format("no node {}", name)));
  it->second->stop();
  links_.erase(it);
  drained_.erase(name);
  backoff_.erase(name);    // a node added again under this name starts afresh
  refusers_.erase(name);
  join_uids_.erase(name);  // a joined node's name is free again
  for (auto h = held_.begin(); h != held_.end();) {
    job* j = find(*h++);
    if (j != nullptr && j->rec.node == name) end_hold(*j);  // lost below, at once
  }
  for (auto& [id, j] : jobs_) {
    if (j->rec.node == name && (j->rec.state == job_state::running || j->starting || j->reconcile) &&
        !j->collecting) {
      lost(*j, "node " + name + " removed");
    }
    if (j->backup && j->backup->node == name) drop_backup(*j, true, policy::outcome::lost, true);
  }
  policy_.remove_node(name);
  post_event("node rm " + name);
  // Queued jobs may have lost the last node that could run them: their status and
  // waiting readers are told (cannot_run).
  for (auto& [id, j] : jobs_) {
    if (j->rec.state == job_state::queued) changed(*j);
  }
  store_->remove_node(name, [this, done](std::expected<void, std::string> ok) {
    asio::post(io_, [done, ok] { done(ok); });
  });
  schedule();
}

}  // namespace sched
