#!/bin/sh
# galaxy-node's cgroup limits on a kernel whose cgroup2 has the controllers (the
# development machines' cgroup2 has none: they are bound to cgroup v1). Runs INSIDE a
# guest of scripts/qemu-guest.sh, as root, with galaxy-node and galaxy in /usr/local/bin;
# tests/CMakeLists.txt registers it (ctest -L qemu). Everything is checked through the
# node's own files with the galaxy tool over a Unix socket (SO_PEERCRED: root), and
# through the task cgroups' files.
#
# 1. A node at the cgroup root: /status says contain=cgroup limits=memory,cpu,pids, and a
#    task's `mem 64m` is its memory.max.
# 2. A node started in a delegated cgroup (/sys/fs/cgroup/svc, as systemd's Delegate=yes
#    gives one): it moves into svc/galaxy-node and hands the controllers to task cgroups
#    beside it; then
#    - mem 64m: memory.max 67108864; a task that allocates 100 MiB is OOM-killed, its
#      wait "signal 9 out of memory"; one that allocates 32 MiB is not;
#    - cpu 0.5: cpu.max "50000 100000", and a busy task is throttled (cpu.stat);
#    - --task-pids-max 64: pids.max 64; a fork bomb stops at 64 (pids.events max > 0,
#      pids.current <= 64) while the node serves status and runs another task; killing
#      it leaves nothing;
#    - a setsid'd grandchild is gone when its task ends (cgroup.kill).
# Prints "ok NAME" or "FAIL NAME: why" per check and "N passed, M failed"; exits 1 if any
# failed.
set -u
passes=0 fails=0
ok() { echo "ok   $*"; passes=$((passes + 1)); }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
# expect NAME GOT WANT
expect() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', want '$3'"; fi; }

sock=/run/node.sock
g() { galaxy "$1" -a "unix!$sock" -u root "$2"; }
# task CTL-LINE...: makes a task, writes each line to its ctl, prints its number.
task() {
  n=$(g cat task/clone) || return 1
  for line in "$@"; do
    printf '%s\n' "$line" | g write "task/$n/ctl" || { echo "ctl '$line' failed" >&2; return 1; }
  done
  echo "$n"
}
# The cgroup of a task: its spec's first record names it (the last, of an ended task, has
# an empty cgroup=, the cgroup gone).
cgroup_of() { sed -n 's/^cgroup=\(..*\)/\1/p' "$spool/task/$1/spec" | head -n 1; }
# A task that prints a file of its own cgroup.
own_cgroup_file() { echo "exec sh -c 'cat /sys/fs/cgroup\$(sed -n \"s/^0:://p\" /proc/self/cgroup)/$1'"; }

# [in_cgroup=DIR] start_node SPOOL [ARG]...: a galaxy-node on $sock (started in cgroup DIR,
# as a service manager would), waited for; its pid in $node.
start_node() {
  spool=$1; shift
  rm -f "$sock"
  mkdir -p "$spool"
  chmod 0711 "$(dirname "$spool")"
  # The shell moves itself into the cgroup and becomes the node: nothing else of ours is
  # ever in it (a cgroup with processes of its own cannot hand controllers on).
  sh -c 'if [ -n "$1" ]; then echo $$ >"$1/cgroup.procs" || exit 1; fi; shift; exec galaxy-node "$@"' \
    sh "${in_cgroup:-}" --listen "unix!$sock" --spool "$spool" --name guest "$@" >/tmp/node.log 2>&1 &
  node=$!
  i=0
  while [ ! -S "$sock" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
  [ -S "$sock" ] || { echo "galaxy-node did not start:"; cat /tmp/node.log; exit 1; }
}
stop_node() { kill "$node"; wait "$node" 2>/dev/null; }

# ---- 1. at the root ---------------------------------------------------------------------
start_node /srv/a/spool
sed -n 's/^/node: /p' /tmp/node.log
status=$(g cat status)
case $status in
  *" contain=cgroup limits=memory,cpu,pids"*) ok "root: status says contain=cgroup limits=memory,cpu,pids" ;;
  *) bad "root: status: $status" ;;
esac
n=$(task "mem 64m" "$(own_cgroup_file memory.max)")
expect "root: wait of a task reading its memory.max" "$(g cat task/$n/wait)" "exit 0"
expect "root: mem 64m is memory.max" "$(g cat task/$n/stdout)" "67108864"
case $(cgroup_of "$n") in
  /sys/fs/cgroup/galaxy-*) ok "root: the task's cgroup is at the root" ;;
  *) bad "root: the task's cgroup: $(cgroup_of "$n")" ;;
esac
stop_node

# ---- 2. in a delegated cgroup -----------------------------------------------------------
mkdir /sys/fs/cgroup/svc
in_cgroup=/sys/fs/cgroup/svc start_node /srv/b/spool --task-pids-max 64
expect "svc: the node moved itself into svc/galaxy-node" \
  "$(sed -n 's/^0:://p' /proc/$node/cgroup)" "/svc/galaxy-node"
expect "svc: svc hands memory, cpu and pids to the task cgroups" \
  "$(tr ' ' '\n' </sys/fs/cgroup/svc/cgroup.subtree_control | grep -xE 'memory|cpu|pids' | sort | tr '\n' ' ')" \
  "cpu memory pids "
case $(g cat status) in
  *" contain=cgroup limits=memory,cpu,pids"*) ok "svc: status says contain=cgroup limits=memory,cpu,pids" ;;
  *) bad "svc: status: $(g cat status)" ;;
esac

# mem
n=$(task "mem 64m" "$(own_cgroup_file memory.max)")
g cat task/$n/wait >/dev/null
expect "mem 64m is memory.max" "$(g cat task/$n/stdout)" "67108864"
case $(cgroup_of "$n") in
  /sys/fs/cgroup/svc/galaxy-*) ok "the task's cgroup is beside the node's leaf in svc" ;;
  *) bad "the task's cgroup: $(cgroup_of "$n")" ;;
esac
# dd allocates its block (bs) and fills it: 100 MiB against a limit of 64.
n=$(task "mem 64m" "exec dd if=/dev/zero of=/dev/null bs=100M count=1")
expect "a task allocating 100 MiB under mem 64m: wait" "$(g cat task/$n/wait)" "signal 9 out of memory"
n=$(task "mem 64m" "exec dd if=/dev/zero of=/dev/null bs=32M count=1")
expect "a task allocating 32 MiB under mem 64m: wait" "$(g cat task/$n/wait)" "exit 0"

# cpu
n=$(task "cpu 0.5" "$(own_cgroup_file cpu.max)")
g cat task/$n/wait >/dev/null
expect "cpu 0.5 is cpu.max" "$(g cat task/$n/stdout)" "50000 100000"
n=$(task "cpu 250m" "$(own_cgroup_file cpu.max)")
g cat task/$n/wait >/dev/null
expect "cpu 250m is cpu.max" "$(g cat task/$n/stdout)" "25000 100000"
# Busy until it has had 1 s of CPU, ten periods' (100 ms) worth of a quota of half of
# one: it must have been throttled on the way. (Counted in CPU used, not in loop turns: a
# guest slowed by a loaded host or a sanitizer build may not reach a period's quota in
# a fixed number of turns.)
n=$(task "cpu 0.5" "exec sh -c 'f=/sys/fs/cgroup\$(sed -n \"s/^0:://p\" /proc/self/cgroup)/cpu.stat; while [ \$(sed -n \"s/^usage_usec //p\" \$f) -lt 1000000 ]; do i=0; while [ \$i -lt 2000 ]; do i=\$((i+1)); done; done; cat \$f'")
expect "a busy task under cpu 0.5: wait" "$(g cat task/$n/wait)" "exit 0"
throttled=$(g cat task/$n/stdout | sed -n 's/^nr_throttled //p')
if [ "${throttled:-0}" -gt 0 ]; then ok "a busy task under cpu 0.5 is throttled (nr_throttled $throttled)"
else bad "a busy task under cpu 0.5 is not throttled: $(g cat task/$n/stdout | tr '\n' ' ')"; fi

# pids
n=$(task "$(own_cgroup_file pids.max)")
g cat task/$n/wait >/dev/null
expect "--task-pids-max 64 is pids.max" "$(g cat task/$n/stdout)" "64"
# A fork bomb of bounded size (2^9 - 1 shells and 256 sleeps), so that a node without the
# limit fails this test rather than the guest. A shell whose fork is refused gives up, so
# the bomb may wither: the task's first process forks it and becomes a sleep, which
# keeps the task running until it is killed.
bomb=$(task "time 120" "exec sh -c 'b() { if [ \$1 -gt 0 ]; then b \$((\$1-1)) & b \$((\$1-1)) & wait; else sleep 100; fi; }; b 8 & exec sleep 100' ")
cg=""
i=0
while [ $i -lt 300 ]; do
  cg=$(cgroup_of "$bomb")
  [ -n "$cg" ] && [ "$(sed -n 's/^max //p' "$cg/pids.events" 2>/dev/null)" -gt 0 ] 2>/dev/null && break
  sleep 0.1
  i=$((i + 1))
done
refused=$(sed -n 's/^max //p' "$cg/pids.events" 2>/dev/null)
current=$(cat "$cg/pids.current" 2>/dev/null)
if [ "${refused:-0}" -gt 0 ] && [ "${current:-999}" -le 64 ]; then
  ok "a fork bomb stops at pids.max (forks refused: $refused, processes: $current)"
else
  bad "a fork bomb is not stopped: pids.events max ${refused:-?}, pids.current ${current:-?}, in '$cg'"
fi
case $(g cat status) in
  *"name=guest "*) ok "the node serves status during the fork bomb" ;;
  *) bad "status during the fork bomb: $(g cat status)" ;;
esac
n=$(task "exec echo alive")
expect "the node runs another task during the fork bomb" "$(g cat task/$n/wait) $(g cat task/$n/stdout)" "exit 0 alive"
printf 'kill\n' | g write "task/$bomb/ctl"
expect "the fork bomb, killed: wait" "$(g cat task/$bomb/wait)" "signal 9"
i=0
while [ -d "$cg" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -d "$cg" ]; then ok "the fork bomb's cgroup is gone"; else bad "the fork bomb's cgroup is still there: $(cat "$cg/cgroup.procs" | wc -l) processes"; fi

# cgroup.kill
n=$(task "exec sh -c 'setsid sleep 300 >/dev/null 2>&1 & echo \$! >\$GALAXY_OUT/p'")
expect "a task that leaves a setsid'd sleep: wait" "$(g cat task/$n/wait)" "exit 0"
p=$(g cat task/$n/out/p)
i=0
while [ -n "$p" ] && [ -d /proc/$p ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -n "$p" ] && [ ! -d /proc/$p ]; then ok "the setsid'd grandchild ($p) is gone when its task ends"
else bad "the setsid'd grandchild '$p' outlived its task: $(cat /proc/$p/cmdline 2>/dev/null | tr '\0' ' ')"; fi

left=$(ps -o user,pid,args | awk '$1 == "nobody"' | wc -l)
expect "no process of a task is left" "$left" "0"
stop_node
case $(cat /tmp/node.log) in
  *"containment: a cgroup v2 per task under /sys/fs/cgroup/svc (memory.max: yes, cpu.max: yes, pids.max: yes)"*)
    ok "the node's start-up line names svc and every limit" ;;
  *) bad "the node's start-up line: $(grep containment /tmp/node.log)" ;;
esac

echo "$passes passed, $fails failed"
[ "$fails" = 0 ]
