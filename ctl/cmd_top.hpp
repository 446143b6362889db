#pragma once
// `galaxy top`: a live view of the cluster, as top(1) is of one machine, made only from
// the files of the scheduler's tree (man/man4/galaxy.4), read natively over 9P or under a
// mount (-m): /status, nodes/NAME/status, users/NAME, jobs/N/status (and jobs/J/I/status
// for array tasks), and /events for what no status file keeps (nodes going up or down,
// drains). Nothing passes through a private channel: everything shown, a shell user
// could cat.
//
//   galaxy top [-a DIAL | -m DIR | --state DIR] [-u NAME] [-d SECONDS] [-n FRAMES] [--filter TEXT]
//
// On a terminal it draws with ncurses and takes keys (q quits; n, c, m, u, t sort; /
// filters); when standard output is not a terminal, or with -n, it prints plain-text
// frames (no escape codes) and -n 1 prints one and exits. The man page is
// man/man1/galaxy.1 (TOP); issue 16.

namespace CLI {
class App;
}

namespace ctl {

// Registers top as a subcommand of app; it stores its exit status in status (0, or 1 when
// the cluster cannot be reached or an option is bad).
void add_top_command(CLI::App& app, int& status);

}  // namespace ctl
