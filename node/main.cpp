// galaxy-node: serves one machine's CPUs, memory and tasks as a 9P file tree
// (man/man8/galaxy-node.8, the tree in man/man4/galaxy-node.4).
//
//   galaxy-node [--listen DIAL]... [--join DIAL] --spool DIR [--name NAME] [--cpus N] [--mem BYTES]
//               [--label K=V]... [--run-as USER] [--unknown-user USER] [--allow-root-tasks]
//               [--no-cgroups] [--keep-finished SECONDS] [--new-task-timeout SECONDS]
//               [--max-new-tasks N] [--task-pids-max N] [--config FILE]
//               [--auth munge|none] [--munge-socket PATH] [--trust USER]...
//               [--join-retry SECONDS] [--join-retry-max SECONDS]
//
// Prints "listening on DIAL" per listener (none by default with --join) and "joining
// DIAL as NAME" with --join (node/join.hpp), then serves until SIGINT or SIGTERM. Tasks
// still running then are left alone; the next start finds them lost (the spool says
// they were running) and kills what remains of them.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <asio/io_context.hpp>
#include <fmt/format.h>
#include <malloc.h>
#include <pwd.h>
#include <unistd.h>


#include "ctl/ctlmsg.hpp"
#include "node/join.hpp"
#include "ctl/version.hpp"
#include "node/task.hpp"
#include "node/tree.hpp"
#include "srv9p/auth_options.hpp"
#include "srv9p/daemon.hpp"
#include "srv9p/nss.hpp"
#include "srv9p/server.hpp"

namespace {

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "node";
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  // NSS look-ups (users, groups) run in a helper process, so that the daemon never maps
  // NSS modules: its memory at rest (srv9p/nss.hpp, bench/RESULTS.md).
  srv9p::lookups_in_helper();
  CLI::App app{"galaxy-node: this machine's CPUs, memory and tasks as a 9P file tree"};
  std::vector<std::string> listen{"tcp!127.0.0.1!5640"};
  std::string spool;
  std::string mem = "0";
  std::vector<std::string> labels;
  std::string run_as = "nobody";
  std::string unknown_user;
  bool allow_root_tasks = false;
  bool no_cgroups = false;
  std::string keep_finished = "86400";
  std::string new_task_timeout = "600";
  std::size_t max_new_tasks = 1024;
  std::uint64_t task_pids_max = 4096;
  node::node_options opts;
  opts.name = host_name();
  opts.admin = srv9p::daemon_user();
  app.add_option("--listen,-l", listen,
                 "dial string to listen on (repeatable; port 0 picks one; default tcp!127.0.0.1!5640, none with --join)");
  std::string join;
  std::string join_retry = "1", join_retry_max = "60";
  app.add_option("--join", join, "dial the scheduler at DIAL and serve the tree on that connection");
  app.add_option("--join-retry", join_retry, "seconds before the first new join after a failure (default 1; doubles)");
  app.add_option("--join-retry-max", join_retry_max, "the most seconds between joins (default 60)");
  app.add_option("--spool", spool, "directory for tasks' specs, output and files")->required();
  app.add_option("--name", opts.name, "the node's name (default: the host name)");
  app.add_option("--cpus", opts.cpus, "CPUs to advertise (default: the online CPUs)");
  app.add_option("--mem", mem, "memory to advertise, bytes with k/m/g (default: MemTotal)");
  app.add_option("--label", labels, "a label K=V (repeatable)");
  app.add_option("--run-as", run_as,
                 "account that root's tasks run as (without --allow-root-tasks) when the daemon is root "
                 "(default: nobody)");
  app.add_option("--unknown-user", unknown_user,
                 "account that tasks of users unknown on this node run as (default: such tasks are refused)");
  app.add_flag("--allow-root-tasks", allow_root_tasks, "run tasks of root's as root");
  app.add_flag("--no-cgroups", no_cgroups, "contain tasks by process group only, never by cgroup");
  app.add_option("--keep-finished", keep_finished,
                 "seconds a finished task is kept before it is removed (default: 86400, a day)");
  app.add_option("--new-task-timeout", new_task_timeout,
                 "seconds a task made by clone may wait for exec before it is removed (default: 600; 0: forever)");
  app.add_option("--max-new-tasks", max_new_tasks,
                 "tasks not yet started that one user may have at once (default: 1024; 0: no limit)");
  app.add_option("--task-pids-max", task_pids_max,
                 "processes one task may have at once, as its cgroup's pids.max where the pids controller is "
                 "delegated (default: 4096; 0: no limit)");
  app.add_option("--admin", opts.admin, "the attach name that owns /ctl (default: the daemon's user)");
  srv9p::auth_config auth;
  srv9p::add_auth_options(app, auth, true);
  app.set_config("--config", "", "read options from this file (key = value lines)");
  ctl::add_version_flag(app, "galaxy-node");
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const std::string& why) {
    fmt::print(stderr, "galaxy-node: {}\n", why);
    return 2;
  };
  if (mem != "0") {
    auto bytes = ctl::parse_bytes(mem);
    if (!bytes) return fail("--mem: " + bytes.error());
    opts.mem_bytes = *bytes;
  }
  for (const auto& kv : labels) {
    auto p = ctl::parse_kv(kv);
    if (!p) return fail("--label: " + p.error());
    opts.labels.push_back(*p);
  }
  auto keep_ms = ctl::parse_seconds_ms(keep_finished);
  if (!keep_ms) return fail("--keep-finished: " + keep_ms.error());
  auto new_ms = ctl::parse_seconds_ms(new_task_timeout);
  if (!new_ms) return fail("--new-task-timeout: " + new_ms.error());
  // A joined node needs no listener: --listen is none unless given.
  if (!join.empty() && app.count("--listen") == 0) listen.clear();
  if (!join.empty() && !ctl::valid_node_name(opts.name)) {
    return fail(fmt::format("--name '{}': a joining node's name must be letters, digits, '-', '_' or '.'", opts.name));
  }
  auto retry_ms = ctl::parse_seconds_ms(join_retry);
  if (!retry_ms) return fail("--join-retry: " + retry_ms.error());
  auto retry_max_ms = ctl::parse_seconds_ms(join_retry_max);
  if (!retry_max_ms) return fail("--join-retry-max: " + retry_max_ms.error());
  srv9p::server_options sopts{.log = srv9p::stderr_log("galaxy-node")};
  auto warnings = srv9p::configure_server(auth, listen, sopts);
  if (!warnings) return fail(warnings.error());
  if (!join.empty()) {
    // The joined connection is served as a listener's would be: the same policy.
    std::string dials[] = {join};
    auto joined = srv9p::check_listeners(dials, auth.auth());
    if (!joined) return fail("--join: " + joined.error());
    warnings->insert(warnings->end(), joined->begin(), joined->end());
  }
  for (const auto& w : *warnings) fmt::print(stderr, "galaxy-node: {}\n", w);
  // One malloc arena for all threads: the io thread does nearly all the work, and the
  // worker thread's occasional deletions need no arena of their own (each costs RSS).
  ::mallopt(M_ARENA_MAX, 1);
  // (task_runner::create ignores SIGPIPE, so a task closing its stdin cannot kill us.)
  asio::io_context io;
  opts.log = srv9p::stderr_log("galaxy-node");
  node::node_tree tree(io, opts);
  node::runner_options ropts;
  // Absolute, so that tasks (which run in their own directories) get a usable $GALAXY_OUT.
  std::error_code ec;
  ropts.spool = std::filesystem::absolute(spool, ec);
  if (ec) return fail("--spool " + spool + ": " + ec.message());
  ropts.run_as = run_as;
  ropts.unknown_user = unknown_user;
  ropts.allow_root_tasks = allow_root_tasks;
  ropts.use_cgroups = !no_cgroups;
  ropts.node_name = opts.name;
  ropts.finished_ttl = std::chrono::milliseconds(*keep_ms);
  ropts.new_task_ttl = std::chrono::milliseconds(*new_ms);
  ropts.max_new_per_owner = max_new_tasks;
  ropts.task_pids_max = task_pids_max;
  ropts.log = srv9p::stderr_log("galaxy-node");
  auto runner = node::task_runner::create(io, ropts, tree.make_hooks());
  if (!runner) return fail(runner.error());
  tree.set_runner(runner->get());
  if (auto ok = (*runner)->restore(); !ok) return fail("restoring the spool: " + ok.error());

  srv9p::server srv(io, tree, std::move(sopts));
  std::unique_ptr<node::joiner> joiner;
  if (!join.empty()) {
    node::join_options jo;
    jo.dial = join;
    jo.uname = srv9p::daemon_user();
    jo.credential = srv9p::credential_source(auth);
    jo.retry_ms = static_cast<std::uint32_t>(*retry_ms);
    jo.retry_max_ms = static_cast<std::uint32_t>(std::max(*retry_ms, *retry_max_ms));
    jo.log = srv9p::stderr_log("galaxy-node");
    jo.who.name = opts.name;
    // What /status says (the CPUs and memory resolved from the machine when not given).
    auto words = ctl::tokenize(tree.status_text());
    for (const auto& w : words ? *words : std::vector<std::string>{}) {
      auto kv = ctl::parse_kv(w);
      if (!kv) continue;
      if (kv->first == "arch") jo.who.arch = kv->second;
      if (kv->first == "ncpu") jo.who.ncpu = static_cast<std::uint32_t>(std::strtoul(kv->second.c_str(), nullptr, 10));
      if (kv->first == "mem") jo.who.mem_bytes = std::strtoull(kv->second.c_str(), nullptr, 10);
    }
    jo.who.labels = opts.labels;
    joiner = std::make_unique<node::joiner>(io, srv, std::move(jo));
    fmt::print("joining {} as {}\n", join, opts.name);
  }
  if (joiner) joiner->start();
  srv9p::lookup_helper_linger(io, std::chrono::seconds(2));  // start-up's look-ups are done
  int status = srv9p::serve_until_signalled(io, srv, listen, "galaxy-node");
  if (joiner) joiner->stop();
  return status;
}
