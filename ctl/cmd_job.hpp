#pragma once
// The `galaxy` tool's job verbs, all thin over the scheduler's files (man/man4/galaxy.4):
// they do nothing a shell user could not do with echo and cat on a mounted /galaxy.
//
//   galaxy run    [OPTS] -- CMD ARG...   like srun: clone, write the ctl lines, exec;
//                                        stream stdout and stderr; exit as the job did
//   galaxy submit [OPTS] -- CMD ARG...   like sbatch: prints the job id
//   galaxy jobs | nodes | kill J [SIG] | wait J...
//
// Each works natively over 9P (-a DIAL; default ctl::cluster::default_addr()) or through a
// mount (-m MOUNTPOINT, plain file I/O). Design: galaxy.md, "Command lines"; issue 7. The
// man page is man/man1/galaxy.1 (JOBS).
#include <string_view>

namespace CLI {
class App;
}

namespace ctl {

// The exit status that `galaxy run` and `galaxy wait` give for a job's wait text:
// "exit N" is N, "signal N" is 128+N, "killed" (by galaxy kill before it ran) is 128+9,
// anything else (an error, a failed dependency) is 1.
int job_exit_status(std::string_view wait_text);

// Registers run, submit, jobs, nodes, kill and wait as subcommands of app; each stores
// its exit status in status (as add_9p_commands does).
void add_job_commands(CLI::App& app, int& status);

}  // namespace ctl
