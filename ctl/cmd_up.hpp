#pragma once
// The `galaxy` tool's local-cluster verbs: `galaxy up [--nodes N] [--state DIR]
// [--mount DIR]` starts one galaxy-sched and N galaxy-node processes on Unix sockets in a
// 0700 directory (as root with munged running: loopback TCP with MUNGE) and mounts the
// unified tree (root's per-user, with allow_other); `galaxy down [--state DIR]` stops exactly
// what up started and unmounts (ctl/cluster.hpp keeps the record). Design: galaxy.md,
// "Command lines"; issue 7. The man page is man/man1/galaxy.1 (UP AND DOWN).
namespace CLI {
class App;
}

namespace ctl {

// Registers up and down as subcommands of app. Each stores its exit status in status:
// 0, or 1 after printing "galaxy: up: ..." / "galaxy: down: ..." to standard error
// (already up; nothing up; a daemon that would not start, with its log's last lines).
void add_up_commands(CLI::App& app, int& status);

}  // namespace ctl
