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
// connection: join_node() makes its link from the connection, never stored and never
// dialled; when it goes down its link stays down until the node joins again, and the new
// join replaces the old link.
//
// Failure detection (galaxy-sched(8), FAILURE DETECTION) is the links': a node is marked
// down after --down-after of silence (heartbeats unanswered; default 30 s, to ride out a
// Wi-Fi hiccup) or at once when its connection closes; the down hook (node_down) then
// loses its jobs.
#include <asio/post.hpp>
#include <fmt/format.h>

#include <algorithm>

#include "sched/scheduler.hpp"
#include "srv9p/dial.hpp"

namespace sched {

namespace {

using done_fn = std::function<void(std::expected<void, std::string>)>;

std::unexpected<std::string> fail(std::string s) { return std::unexpected(std::move(s)); }

}  // namespace

bool valid_node_name(std::string_view n) {
  if (n.empty() || n.size() > 64 || n == "." || n == "..") return false;
  return std::all_of(n.begin(), n.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'; });
}

node_link::hooks scheduler::link_hooks(const std::string& name) {
  return node_link::hooks{
      .up = [this, name] { node_up(name); },
      .down = [this, name](std::string why) { node_down(name, why); },
      .event = [this, name](std::string line) { node_event(name, line); },
      .info = [this, name] {
        update_node(name);
        schedule();
      },
  };
}

std::shared_ptr<node_link> scheduler::make_link(const std::string& name, const std::string& dial) {
  link_options lo = opts_.link;
  if (lo.log) lo.log = [log = lo.log, name](std::string_view line) { log(fmt::format("node {}: {}", name, line)); };
  return std::make_shared<node_link>(io_, name, dial, std::move(lo), link_hooks(name));
}

std::expected<void, std::string> scheduler::join_node(std::string name, std::unique_ptr<fsclient::client> c) {
  if (!valid_node_name(name)) {
    return fail(fmt::format("bad node name '{}': expected letters, digits, '-', '_' or '.'", name));
  }
  if (!c || !c->io_mode() || !c->connected()) return fail("join: no connection");
  if (stopped_) return fail("the scheduler is stopping");
  if (auto it = links_.find(name); it != links_.end()) {
    if (!it->second->joined()) return fail(fmt::format("node {} is dialled by the scheduler", name));
    if (it->second->up()) return fail(fmt::format("node {} is already connected", name));
    // The node's earlier connection, down (its jobs were lost with it): replaced.
    it->second->stop();
    links_.erase(it);
  }
  auto l = std::make_shared<node_link>(io_, name, std::move(c), opts_.link, link_hooks(name));
  links_[name] = l;
  l->start();
  post_event("node join " + name);
  return {};
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
  for (auto& [id, j] : jobs_) {
    if (j->rec.node == name && (j->rec.state == job_state::running || j->starting || j->reconcile) &&
        !j->collecting) {
      lost(*j, "node " + name + " removed");
    }
    if (j->backup && j->backup->node == name) drop_backup(*j, true, policy::outcome::lost, true);
  }
  policy_.remove_node(name);
  post_event("node rm " + name);
  store_->remove_node(name, [this, done](std::expected<void, std::string> ok) {
    asio::post(io_, [done, ok] { done(ok); });
  });
  schedule();
}

}  // namespace sched
