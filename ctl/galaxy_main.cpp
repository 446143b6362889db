// galaxy: the user's tool. main only builds the command line and runs the chosen verb;
// the verbs live beside it (ctl/cmd_9p.cpp: ls, cat, write, stat, rm, mkdir;
// ctl/cmd_mount.cpp: mount, umount; ctl/cmd_up.cpp: up, down; ctl/cmd_job.cpp: run, submit,
// jobs, nodes, kill, wait; ctl/cmd_top.cpp: top).
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "ctl/auth.hpp"
#include "ctl/cmd_9p.hpp"
#include "ctl/cmd_job.hpp"
#include "ctl/cmd_mount.hpp"
#include "ctl/cmd_top.hpp"
#include "ctl/cmd_up.hpp"
#include "ctl/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"galaxy: use a Galaxy file tree over 9P", "galaxy"};
  ctl::add_version_flag(app, "galaxy");
  app.require_subcommand(1);
  // --auth and --munge-socket may also follow the verb.
  app.fallthrough();
  ctl::add_auth_options(app);
  int status = 0;
  ctl::add_9p_commands(app, status);
  ctl::add_mount_commands(app, status);
  ctl::add_up_commands(app, status);
  ctl::add_top_command(app, status);
  // run's and submit's command is cut off first: CLI11 would read its words as options.
  std::vector<std::string> command;
  ctl::add_job_commands(app, status, command);
  auto split = ctl::split_command(app, argc, argv);
  command = std::move(split.command);
  try {
    app.parse(split.argc, argv);
  } catch (const CLI::ParseError& e) {
    // Usage errors and --help: CLI11 prints them; any failure exits 1, as the verbs do.
    return app.exit(e) == 0 ? 0 : 1;
  }
  return status;
}
