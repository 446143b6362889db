#pragma once
// The `galaxy` tool's FUSE verbs: `galaxy mount DIAL MOUNTPOINT` and
// `galaxy umount MOUNTPOINT` (fsclient/fuse_bridge.hpp does the work).
// The man page is man/man1/galaxy.1.
namespace CLI {
class App;
}

namespace ctl {

// Registers mount and umount as subcommands of app; as add_9p_commands, each stores its
// exit status (0, or 1 after printing "galaxy: ..." to standard error) in status.
//
// mount without -f forks before it dials: the child dials, attaches and mounts, then
// tells the parent "mounted" or why not through a pipe, detaches from the terminal and
// serves; the parent exits 0 or prints the child's error and exits 1. So `galaxy mount`
// returns once the mount is usable, and its errors reach the terminal.
void add_mount_commands(CLI::App& app, int& status);

}  // namespace ctl
