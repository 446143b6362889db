#pragma once
// The `galaxy` tool's 9P verbs, after plan9port's 9p(1): ls, cat, write, stat, rm, mkdir.
// Each talks 9P2000 directly to a server named by a dial string (no FUSE mount needed).
// The man page is man/man1/galaxy.1.
namespace CLI {
class App;
}

#include <string>

namespace ctl {

// The name to attach as when -u is not given: $USER, the login name, the passwd entry of
// the real uid, or "none".
std::string login_name();

// Registers the verbs as subcommands of app. A verb runs as app.parse() finishes; it
// stores its exit status in status: 0, or 1 after printing "galaxy: PATH: error" (the
// server's error text) to standard error. status must outlive app.parse().
void add_9p_commands(CLI::App& app, int& status);

}  // namespace ctl
