// galaxy-sched: one 9P tree over every node; jobs that are never lost
// (man/man8/galaxy-sched.8, the tree in man/man4/galaxy.4).
//
//   galaxy-sched --listen DIAL --state DIR [--node NAME=DIAL]... [--admin USER]... [--config FILE]
//                [--auth munge|none] [--munge-socket PATH] [--trust USER]... [--join-user USER]...
//                [--max-result-bytes N] [--max-result-files N]
//                [--relay-fids N] [--relay-requests N] [--relay-fids-total N] [--relay-requests-total N]
//                [--heartbeat S] [--down-after S] [--reconnect S] [--keepalive S] [--link-queue-bytes N]
//
// Prints "listening on DIAL" per listener, then serves until SIGINT or SIGTERM.
#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>

#include "ctl/ctlmsg.hpp"
#include "ctl/version.hpp"
#include "sched/scheduler.hpp"
#include "sched/tree.hpp"
#include "srv9p/auth_options.hpp"
#include "srv9p/daemon.hpp"
#include "srv9p/server.hpp"

int main(int argc, char** argv) {
  CLI::App app{"galaxy-sched: one 9P tree over every node; jobs that are never lost"};
  std::vector<std::string> listen{"tcp!127.0.0.1!5641"};
  std::vector<std::string> nodes;
  // Failure detection (galaxy-sched(8), FAILURE DETECTION): a heartbeat a second, down
  // after 30 s of silence; a closed connection is down at once.
  double heartbeat_s = 1, down_after_s = 30, reconnect_s = 1, new_job_timeout_s = 600;
  std::uint32_t keepalive_s = 10;
  sched::sched_options opts;
  std::vector<std::string> admins;
  app.add_option("--listen,-l", listen, "dial string to listen on (repeatable; port 0 picks one)");
  std::string state;
  app.add_option("--state", state, "directory for the job store (sched.db) and jobs' results")->required();
  app.add_option("--node", nodes, "a node NAME=DIAL (repeatable)");
  app.add_option("--admin", admins,
                 "an attach name that may use /ctl and every job (repeatable; the daemon's user and root always may)");
  app.add_option("--heartbeat", heartbeat_s, "seconds between reads of each node's status");
  app.add_option("--down-after", down_after_s, "seconds a node may leave a heartbeat unanswered before it is down");
  app.add_option("--reconnect", reconnect_s, "seconds between dials of a node that is down");
  app.add_option("--keepalive", keepalive_s, "idle seconds before TCP keepalive probes on node links (0: off)");
  app.add_option("--link-queue-bytes", opts.link.max_queue_bytes,
                 "bytes queued for a node that is not reading before its link is closed and the node marked down");
  app.add_option("--new-job-timeout", new_job_timeout_s, "seconds a job made by clone may wait for exec");
  double lease_s = 0;
  bool no_fence = false;
  app.add_option("--lease", lease_s,
                 "seconds of silence after which a node kills the jobs it runs (fencing); default: --down-after "
                 "minus two heartbeats, at least half of --down-after");
  app.add_flag("--no-fence", no_fence, "give nodes no lease: a node cut off runs its jobs on (they may run twice)");
  app.add_option("--default-cpu", opts.default_cpu_millis, "millicores a job without 'cpu' takes");
  app.add_option("--max-result-bytes", opts.results.max_bytes,
                 "bytes of one job's results (stdout, stderr, out/) kept at most; the rest is not copied");
  app.add_option("--max-result-files", opts.results.max_files,
                 "files and directories of one job's results kept at most");
  sched::relay_limits relay;
  app.add_option("--relay-fids", relay.fids_per_user, "files one user may hold open on one node through nodes/");
  app.add_option("--relay-requests", relay.requests_per_user,
                 "requests one user may have outstanding on one node through nodes/");
  app.add_option("--relay-fids-total", relay.fids_total, "files all users together may hold open on one node");
  app.add_option("--relay-requests-total", relay.requests_total,
                 "requests all users together may have outstanding on one node");
  std::vector<std::string> join_users;
  app.add_option("--join-user", join_users,
                 "a user (name or uid) whose nodes may join through /join (repeatable; root and the daemon's user "
                 "always may)");
  srv9p::auth_config auth;
  srv9p::add_auth_options(app, auth, true);
  app.set_config("--config", "", "read options from this file (key = value lines)");
  ctl::add_version_flag(app, "galaxy-sched");
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const std::string& why) {
    fmt::print(stderr, "galaxy-sched: {}\n", why);
    return 2;
  };
  for (double s : {heartbeat_s, down_after_s, reconnect_s, new_job_timeout_s}) {
    if (!(s > 0) || s > 1e6) return fail("times must be seconds above 0");
  }
  if (down_after_s < heartbeat_s) return fail("--down-after must be at least --heartbeat");
  if (opts.link.max_queue_bytes < (1u << 20) + 64) {
    return fail("--link-queue-bytes must be at least 1 MiB and 64 bytes (one message of the largest msize)");
  }
  if (opts.results.max_bytes == 0 || opts.results.max_files < 2) {
    return fail("--max-result-bytes must be at least 1 and --max-result-files at least 2 (stdout and stderr)");
  }
  // A relayed walk or stat is three requests (walk, stat, clunk of the fid it walked).
  if (relay.fids_per_user < 1 || relay.requests_per_user < 3 || relay.fids_total < relay.fids_per_user ||
      relay.requests_total < relay.requests_per_user) {
    return fail("--relay-fids must be at least 1 and --relay-requests at least 3, and each total at least its per-user value");
  }
  opts.state = state;
  // The daemon's user first: it owns the fixed files and is the nodes' attach name.
  opts.admins.push_back(srv9p::daemon_user());
  for (const auto& a : admins) {
    if (a.empty()) return fail("--admin: empty user name");
    if (std::find(opts.admins.begin(), opts.admins.end(), a) == opts.admins.end()) opts.admins.push_back(a);
  }
  opts.link.uname = opts.admins.front();
  opts.link.heartbeat_ms = static_cast<std::uint32_t>(heartbeat_s * 1000);
  opts.link.down_after_ms = static_cast<std::uint32_t>(down_after_s * 1000);
  opts.link.reconnect_ms = static_cast<std::uint32_t>(reconnect_s * 1000);
  opts.link.keepalive_s = keepalive_s;
  opts.link.log = srv9p::stderr_log("galaxy-sched");
  opts.new_job_timeout_ms = static_cast<std::int64_t>(new_job_timeout_s * 1000);
  if (no_fence && lease_s != 0) return fail("--lease and --no-fence: choose one");
  if (lease_s != 0) {
    // A lease as long as --down-after fences after the requeue: no protection at all.
    if (!(lease_s > 0) || lease_s >= down_after_s) return fail("--lease must be above 0 and below --down-after");
    opts.lease_ms = static_cast<std::uint32_t>(lease_s * 1000);
  } else if (!no_fence) {
    opts.lease_ms = sched::fence_lease_ms(opts.link.down_after_ms, opts.link.heartbeat_ms);
  }
  opts.log = srv9p::stderr_log("galaxy-sched");
  for (const auto& n : nodes) {
    auto eq = n.find('=');
    if (eq == std::string::npos || eq == 0) return fail(fmt::format("--node '{}': expected NAME=DIAL", n));
    opts.nodes.emplace_back(n.substr(0, eq), n.substr(eq + 1));
  }
  for (const auto& u : join_users) {
    uid_t uid = 0;
    auto [end, ec] = std::from_chars(u.data(), u.data() + u.size(), uid);
    if (!u.empty() && ec == std::errc() && end == u.data() + u.size()) {
      opts.join_uids.push_back(uid);
    } else if (auto local = srv9p::local_uid(u)) {
      opts.join_uids.push_back(*local);
    } else {
      return fail(fmt::format("--join-user {}: no such user on this host", u));
    }
  }
  srv9p::server_options sopts{.log = srv9p::stderr_log("galaxy-sched")};
  auto warnings = srv9p::configure_server(auth, listen, sopts);
  if (!warnings) return fail(warnings.error());
  for (const auto& w : *warnings) fmt::print(stderr, "galaxy-sched: {}\n", w);
  // The links to the nodes authenticate the same way (each attach a fresh credential).
  opts.link.credential = srv9p::credential_source(auth);

  // Everything galaxy-sched writes (sched.db and its -wal and -shm, results) is its own:
  // other users read jobs only through the tree, which checks who asks.
  ::umask(077);
  asio::io_context io;
  sched::sched_tree tree(4096, relay);
  auto s = sched::scheduler::create(io, opts, tree.make_hooks());
  if (!s) return fail(s.error());
  tree.set_scheduler(s->get());
  (*s)->start();
  srv9p::server srv(io, tree, std::move(sopts));
  int status = srv9p::serve_until_signalled(io, srv, listen, "galaxy-sched");
  (*s)->stop();
  return status;
}
