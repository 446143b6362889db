#pragma once
// The `galaxy` tool's job verbs, all thin over the scheduler's files (man/man4/galaxy.4):
// they do nothing a shell user could not do with echo and cat on a mounted /galaxy.
//
//   galaxy run    [OPTS] -- CMD ARG...   like srun: clone, write the ctl lines, exec;
//                                        stream stdout and stderr; exit as the job did
//   galaxy submit [OPTS] -- CMD ARG...   like sbatch: prints the job id
//   galaxy jobs [FILTERS] [-o FORMAT] [J...]   like squeue; array tasks as J/I
//   galaxy history [FILTERS] [-o FORMAT] [J...]  like sacct: ended jobs, CPU time, max RSS
//   galaxy nodes | kill [-s SIG] [FILTERS] [J...] | wait J...   (J or J/I)
//
// Each works natively over 9P (-a DIAL, --state DIR, or as ctl::cluster::find finds the
// cluster) or through a mount (-m MOUNTPOINT, plain file I/O). Design: galaxy.md, "Command lines"; issue 7. The
// man page is man/man1/galaxy.1 (JOBS).
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class App;
}

namespace ctl {

// The exit status that `galaxy run` and `galaxy wait` give for a job's wait text:
// "exit N" is N, "signal N" is 128+N, "killed" (by galaxy kill before it ran) is 128+9,
// anything else (an error, a failed dependency) is 1.
int job_exit_status(std::string_view wait_text);

// galaxy's command line cut in two before CLI11 sees it, as srun and sbatch read theirs:
// for a verb that takes a command (run, submit), galaxy's own options end at `--` or at
// the first word that is neither an option nor an option's value, and everything from
// there on is the command, never read as galaxy's (`submit --need arch=amd64 -- make -C
// /src`, `run -e K=V sh -c 'echo hi'`). Which options take a value is read from app's
// own options (the verb's, then galaxy's), so the two cannot drift.
struct command_split {
  int argc = 0;                      // argv[0..argc) is galaxy's part, for CLI11
  std::vector<std::string> command;  // the command and its arguments (empty: none given)
};
command_split split_command(const CLI::App& app, int argc, const char* const* argv);

// Registers run, submit, jobs, history, nodes, kill and wait as subcommands of app; each stores
// its exit status in status (as add_9p_commands does). run and submit take their
// command from command, which split_command fills before app parses.
void add_job_commands(CLI::App& app, int& status, const std::vector<std::string>& command);

}  // namespace ctl
