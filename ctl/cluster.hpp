#pragma once
// A local cluster started by `galaxy up`: where its state lives, the record of what was
// started (STATE/cluster, key=value lines), and the process handling that up and down
// share. The verbs are in ctl/cmd_up.cpp; the man page is man/man1/galaxy.1 (UP AND DOWN).
//
// A process is named by its pid and its start time (proc(5), /proc/PID/stat field 22,
// clock ticks after boot), so that `galaxy down` never signals a process that merely
// reused a recorded pid: it stops exactly what `up` started.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <vector>

namespace ctl::cluster {

// A process started by up: its pid and start time (0: none).
struct proc_id {
  pid_t pid = 0;
  std::uint64_t start_ticks = 0;
};

// What STATE/cluster records.
struct record {
  std::string state;        // the state directory, absolute
  std::string sched_addr;   // the scheduler's dial string
  proc_id sched;
  struct node {
    std::string name;       // n1, n2, ...
    std::string addr;       // its dial string
    proc_id proc;
  };
  std::vector<node> nodes;
  std::string mount;        // where the unified tree is mounted; "" when it is not
  proc_id mount_proc;       // the `galaxy mount -f` process serving it
};

// The default state directory: $XDG_RUNTIME_DIR/galaxy for a user with a runtime
// directory, else /tmp/galaxy-UID. Root always gets /tmp/galaxy-0: its tasks run as
// nobody and must be able to reach their spool, and /run/user/0 is mode 0700.
std::string default_state_dir();

// STATE/cluster's path.
std::string record_path(const std::string& state);

// Reads STATE/cluster. Errors: "no cluster record" when the file does not exist (nothing
// was started there), "STATE: owned by uid 1001, not by us (uid 0) or root; not trusted"
// and "...: mode 0777 lets others write in it; not trusted" (for the directory or the
// record, which must also be a regular file: another user could name the processes down
// stops and the address every verb dials), or the file's problem ("line 3: expected
// key=value").
std::expected<record, std::string> load(const std::string& state);
// Writes STATE/cluster atomically (a temporary file renamed over it).
std::expected<void, std::string> save(const record& r);

// The start time of pid (proc(5) stat field 22), or nullopt if there is no such process.
std::optional<std::uint64_t> start_ticks(pid_t pid);
// Whether the recorded process still runs: the pid exists, has the recorded start time,
// and is not a zombie (an orphan's zombie may wait for a parent that never reaps).
bool alive(const proc_id& p);
// SIGTERM, then SIGKILL once timeout has passed; waits until the process is gone (at most
// timeout + 5 s). Returns true if it is gone; false if it was never alive.
bool stop(const proc_id& p, std::chrono::milliseconds timeout);

// Where a verb finds the cluster: one way for every verb (galaxy(1), FINDING THE
// CLUSTER), the first of
//   -a DIAL, -m MOUNTPOINT, --state DIR    at most one may be given;
//   $GALAXY_ADDR                           a dial string;
//   $GALAXY_STATE                          a galaxy up state directory: its recorded scheduler;
//   default_state_dir()                    if a cluster galaxy up started there still runs;
//   tcp!127.0.0.1!5641                     galaxy-sched's own default.
// A place that is given (an option, a variable set) is used alone: if its cluster is not
// there, that is the error, without looking further.
struct given {
  std::string addr;   // -a
  std::string mount;  // -m ("" where the verb has no -m)
  std::string state;  // --state
};
struct target {
  std::string addr;                // the dial string, or "" with mount
  std::string mount;               // -m: the mount point
  std::string source;              // how it was found: "-a", "$GALAXY_ADDR", "--state DIR", ...
  std::vector<std::string> tried;  // the places looked at before it, each with why it did not serve
};
// Errors: two places given at once; a state directory (--state, $GALAXY_STATE) with no
// cluster recorded or whose scheduler has ended, saying what was tried and what to do.
std::expected<target, std::string> find(const given& g);

// The message for a target whose dial failed with dial_error: for -a, dial_error alone;
// else it names where the address came from and, for the last resort, what was tried
// before and how to say where a cluster is.
std::string not_answering(const target& t, const std::string& dial_error);

// Whether dir is a mount point (/proc/self/mountinfo), and its file system type
// ("fuse.galaxy"); nullopt if it is not one.
std::optional<std::string> mount_type(const std::string& dir);

}  // namespace ctl::cluster
