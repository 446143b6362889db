// srv9p/nss.hpp: user accounts through NSS (getpwnam_r(3), getpwuid_r(3),
// getgrouplist(3)), in this process or in a short-lived helper process.
//
// NSS may load modules named in /etc/nsswitch.conf (libnss_systemd, libnss_sss,
// libnss_ldap ...) into the calling process, and glibc never unloads them: on Debian 12
// libnss_systemd.so.2 with the libcap and libm it needs maps about 0.55 MiB. galaxy-node
// must stay small at rest (≤ 4 MiB resident, shared/design/galaxy.md), so it calls
// lookups_in_helper() first thing: from then on each look-up is answered by a child
// process forked for it, which the modules load into instead. The child serves the
// look-ups that follow while they keep coming and is ended when they stop
// (lookup_helper_linger), so a burst of task starts costs one fork, not one per
// look-up, and the daemon at rest holds nothing of NSS. Every answer comes from NSS at
// the time it is asked: nothing is cached. Other programs look up in process.
//
// The helper: a fork(2) of the daemon (same uid, same NSS configuration), one thread,
// signals at their defaults, every descriptor closed but its end of a socketpair (stdio
// on /dev/null); it reads requests from the daemon, and nothing else, and exits at EOF.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace asio {
class io_context;
}

namespace srv9p {

struct account {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;              // the primary group
  std::vector<gid_t> groups;  // getgrouplist(3), gid among them; empty unless asked for
};

// name's account (getpwnam_r), with its groups if with_groups. Returns nothing for a
// name NSS does not know, and for a name holding NUL or longer than 64 KiB (getpwnam_r(3): 0, ENOENT, ESRCH, EBADF or EPERM without an
// entry). Errors: NSS failing ("looking up user 'alice': Connection refused" for an LDAP
// server away), more than 65536 groups, or the helper failing.
std::expected<std::optional<account>, std::string> account_by_name(std::string_view name, bool with_groups = false);

// uid's account (getpwuid_r), without groups. Nothing and errors as account_by_name's.
std::expected<std::optional<account>, std::string> account_by_uid(uid_t uid);

// From now on this process's look-ups (the two above, and so srv9p::local_uid,
// local_name, daemon_user and authorize) run in the helper. Call it first in main,
// before any look-up. Until lookup_helper_linger is called the helper stays.
void lookups_in_helper();

// Start-up's look-ups are done: ends the helper now, and from now on ends each helper
// linger after its last look-up, on a timer of io (the helper exits when the daemon
// closes its socket; the daemon reaps it). No effect without lookups_in_helper().
void lookup_helper_linger(asio::io_context& io, std::chrono::milliseconds linger);

// Ends the helper and waits until it has exited (it is idle: look-ups wait for their
// answers), for a caller that needs no process of the helper's left, such as the node
// moving itself into a cgroup leaf (a process left in the parent would keep the parent
// from handing controllers to task cgroups: cgroups(7), "no internal processes"). The
// next look-up starts a new helper, in the caller's new cgroup.
void end_lookup_helper();

// The helper's pid, or -1 when there is none (for tests).
pid_t lookup_helper_pid();

}  // namespace srv9p
