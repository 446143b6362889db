#!/bin/sh
# The Linux kernel's 9P client (v9fs) against a galaxy-node and a galaxy-sched on the
# host. Runs INSIDE a guest of scripts/qemu-guest.sh (--net, modules 9p and 9pnet_fd), as
# root; tests/kernel/kernel_9p.sh starts the daemons (--auth none, loopback) and boots
# the guest with it:
#
#   sh guest_9p.sh VERSION NODE_PORT SCHED_PORT
#
# VERSION is the mount's version= (9p2000 or 9p2000.L). The
# host's 127.0.0.1:PORT is 10.0.2.2:PORT here. Mounts with the default uname (nobody) and,
# in 9P2000.L, the default access=user (root's calls attach as root); a second mount of
# the node as uname=other (access=any in .L) checks that another user cannot remove a
# task. Cases:
#   - ls -l of both trees; mtimes are not 1970; status files (length 0) read fully
#   - a task (node) and a job (scheduler) through `cat clone`, `echo ... > ctl` (O_TRUNC:
#     Twstat length 0 + mtime), `>> ctl`, `cat wait`, `cat stdout`
#   - a 5 MiB stdout read whole, its sha256 checked, from the node and the scheduler
#   - an interrupted `cat wait` (SIGINT, as Ctrl-C) returns while the task still runs,
#     and the server keeps serving
#   - task/ listed while it grows: every listing succeeds, no name twice
#   - 9P2000.L only: access=user with root and nobody on one mount: nobody's task made
#     through task/clone shows uid 65534 in ls -ln and root's uid 0 (Rgetattr), nobody
#     cannot rm -r root's task nor read its stdout (0440)
#   - remove: rm -r of task/N and jobs/N, refused while running and for another user
#   - galaxy mount --kernel (when galaxy is in /usr/local/bin): the tool's attach, then
#     mount -t 9p -o trans=fd on its socket
#   - trans=unix: a galaxy-node on a Unix socket started in the guest, mounted by the
#     kernel; the peer check (SO_PEERCRED) refuses nobody naming root:
#     tests/kernel/guest_unix.sh
#   - galaxy mount --kernel of a MUNGE node started in the guest, with a munged started
#     there (when kernel_9p.sh put munged and galaxy-node in): tests/kernel/guest_munge.sh
#   - cache=loose: a length-0 file reads as empty there (checked, and documented)
# Prints "ok NAME" or "FAIL NAME: why" per check, then "N passed, M failed"; exits 1 if
# any failed.
set -u
V=$1 NP=$2 SP=$3
passes=0 fails=0
ok() { echo "ok   $*"; passes=$((passes + 1)); }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
expect() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', want '$3'"; fi; }
t0=$(date +%s)
# A read that would block for ever on a broken server (a wait of a task that never
# started) gives up after a minute, so a failing run fails rather than hangs.
w() { timeout 60 cat "$@"; }

opts="trans=tcp,version=$V,cache=none"
mkdir -p /mnt/n /mnt/s /mnt/o /mnt/nl
mount -t 9p -o "$opts,port=$NP" 10.0.2.2 /mnt/n || { echo "FAIL mount of the node"; exit 1; }
mount -t 9p -o "$opts,port=$SP" 10.0.2.2 /mnt/s || { echo "FAIL mount of the scheduler"; exit 1; }
# In 9P2000.L the default access=user attaches once per uid with n_uname = that uid, and
# the server lets a valid n_uname override uname (srv9p resolve_n_uname): /mnt/o would
# act as root. access=any makes v9fs attach once, at mount (v9fs_session_init in
# fs/9p/v9fs.c calls p9_client_attach with INVALID_UID, sent as n_uname ~0), and
# v9fs_fid_lookup (fs/9p/fid.c) then takes that one fid for every caller, so uname=other
# is the name the server uses. (In 9P2000 v9fs itself falls back from access=user to any.)
oacc=""
[ "$V" = 9p2000.L ] && oacc=",access=any"
mount -t 9p -o "$opts,port=$NP,uname=other$oacc" 10.0.2.2 /mnt/o || { echo "FAIL mount of the node as other"; exit 1; }
ok "mount -t 9p -o $opts of the node, the scheduler, and the node as uname=other$oacc"
nb() { su -s /bin/sh nobody -c "$1"; }

# ---- ls -l, times, length-0 files -------------------------------------------------------
l=$(ls -l /mnt/n 2>&1)
case $l in *status*task*) ok "ls -l of the node's tree" ;; *) bad "ls -l /mnt/n: $l" ;; esac
l=$(ls -l /mnt/s 2>&1)
case $l in *jobs*nodes*status*) ok "ls -l of the scheduler's tree" ;; *) bad "ls -l /mnt/s: $l" ;; esac
for f in /mnt/n/status /mnt/n/task /mnt/s/status /mnt/s/jobs /mnt/s/jobs/clone /mnt/s/nodes/n1; do
  m=$(stat -c %Y "$f" 2>&1)
  if [ "$m" -gt 1000000000 ] 2>/dev/null; then ok "mtime of $f is not 1970 ($m)"; else bad "mtime of $f: $m"; fi
done
expect "the node's status has length 0" "$(stat -c %s /mnt/n/status)" "0"
case $(cat /mnt/n/status) in *"name=n1 "*) ok "cat of the node's status (length 0) reads it whole" ;;
  *) bad "cat /mnt/n/status: $(cat /mnt/n/status 2>&1)" ;; esac
case $(cat /mnt/s/status) in *"nodes_up=1 "*) ok "cat of the scheduler's status (length 0) reads it whole" ;;
  *) bad "cat /mnt/s/status: $(cat /mnt/s/status 2>&1)" ;; esac
case $(cat /mnt/s/nodes/n1/status) in *"name=n1 "*) ok "cat of nodes/n1/status through the relay" ;;
  *) bad "cat /mnt/s/nodes/n1/status: $(cat /mnt/s/nodes/n1/status 2>&1)" ;; esac

# ---- a task and a job through cat clone, echo > ctl ----------------------------------
n=$(cat /mnt/n/task/clone)
if [ -d "/mnt/n/task/$n" ]; then ok "cat task/clone made task $n"; else bad "cat task/clone: '$n'"; fi
if echo "env GREETING=hello" > "/mnt/n/task/$n/ctl"; then ok "echo ... > task/$n/ctl (O_TRUNC)"
else bad "echo ... > task/$n/ctl failed"; fi
echo "exec sh -c 'echo \$GREETING from the node'" >> "/mnt/n/task/$n/ctl" || bad "echo exec >> task/$n/ctl failed"
expect "cat task/$n/wait" "$(w /mnt/n/task/$n/wait)" "exit 0"
expect "cat task/$n/stdout" "$(cat /mnt/n/task/$n/stdout)" "hello from the node"

j=$(cat /mnt/s/jobs/clone)
if [ -d "/mnt/s/jobs/$j" ]; then ok "cat jobs/clone made job $j"; else bad "cat jobs/clone: '$j'"; fi
if echo 'exec echo hello from a job' > "/mnt/s/jobs/$j/ctl"; then ok "echo exec ... > jobs/$j/ctl (O_TRUNC)"
else bad "echo ... > jobs/$j/ctl failed"; fi
expect "cat jobs/$j/wait" "$(w /mnt/s/jobs/$j/wait)" "exit 0"
expect "cat jobs/$j/stdout" "$(cat /mnt/s/jobs/$j/stdout)" "hello from a job"

# ---- 5 MiB of output, its sha256 -------------------------------------------------------
big='yes galaxy-kernel-9p | head -c 5242880'
want=$(sh -c "$big" | sha256sum | cut -d' ' -f1)
n5=$(cat /mnt/n/task/clone)
echo "exec sh -c '$big'" > "/mnt/n/task/$n5/ctl"
expect "5 MiB task: wait" "$(w /mnt/n/task/$n5/wait)" "exit 0"
expect "5 MiB task: sha256 of stdout read through the kernel" "$(sha256sum < /mnt/n/task/$n5/stdout | cut -d' ' -f1)" "$want"
j5=$(cat /mnt/s/jobs/clone)
echo "exec sh -c '$big'" > "/mnt/s/jobs/$j5/ctl"
expect "5 MiB job: wait" "$(w /mnt/s/jobs/$j5/wait)" "exit 0"
expect "5 MiB job: sha256 of stdout" "$(sha256sum < /mnt/s/jobs/$j5/stdout | cut -d' ' -f1)" "$want"

# ---- Ctrl-C on a blocked cat wait ------------------------------------------------------
# busybox timeout execs the command in this (foreground) process, so SIGINT is not
# ignored as it is for a background job of a non-interactive shell; its default action
# is fatal, which is what ends v9fs's killable wait (Tflush, then Rflush awaited).
ns=$(cat /mnt/n/task/clone)
echo 'exec sleep 120' > "/mnt/n/task/$ns/ctl"
timeout -s INT 2 cat "/mnt/n/task/$ns/wait" >/tmp/w 2>&1
rc=$?
st=$(cat "/mnt/n/task/$ns/status")
case $st in
  *state=running*) ok "SIGINT ended a blocked cat of task/$ns/wait (exit $rc) while the task runs" ;;
  *) bad "cat task/$ns/wait after SIGINT: rc $rc, '$(cat /tmp/w)', status '$st'" ;;
esac
case $(cat /mnt/n/status) in *"name=n1 "*) ok "the node serves after the flush" ;; *) bad "the node after the flush" ;; esac
js=$(cat /mnt/s/jobs/clone)
echo 'exec sleep 120' > "/mnt/s/jobs/$js/ctl"
timeout -s INT 2 cat "/mnt/s/jobs/$js/wait" >/tmp/w 2>&1
rc=$?
case $(cat "/mnt/s/jobs/$js/status") in
  *running*|*queued*) ok "SIGINT ended a blocked cat of jobs/$js/wait (exit $rc) while the job runs" ;;
  *) bad "cat jobs/$js/wait after SIGINT: rc $rc, status '$(cat /mnt/s/jobs/$js/status)'" ;;
esac
case $(cat /mnt/s/status) in *"nodes_up=1 "*) ok "the scheduler serves after the flush" ;; *) bad "the scheduler after the flush" ;; esac

# ---- access=user (9P2000.L): two users on one mount -----------------------------------------
# /mnt/n has the default access=user: root's calls attach as n_uname 0 and nobody's as
# 65534, each resolved to its name on the server. Task $n is root's.
if [ "$V" = 9p2000.L ]; then
  case $(nb 'cat /mnt/n/status' 2>&1) in *"name=n1 "*) ok "access=user: nobody reads status on root's mount" ;;
    *) bad "access=user: cat /mnt/n/status as nobody: $(nb 'cat /mnt/n/status' 2>&1)" ;; esac
  nu=$(nb 'cat /mnt/n/task/clone' 2>&1)
  if [ -d "/mnt/n/task/$nu" ]; then ok "access=user: nobody made task $nu through task/clone"
  else bad "access=user: cat task/clone as nobody: '$nu'"; fi
  nb "echo 'exec echo from nobody' > /mnt/n/task/$nu/ctl"
  expect "access=user: nobody's task runs" "$(nb "timeout 60 cat /mnt/n/task/$nu/wait /mnt/n/task/$nu/stdout" 2>&1)" "exit 0
from nobody"
  # Rgetattr's numeric owners: ls -ln prints the uid in its third column.
  expect "access=user: ls -ln of nobody's task/$nu/ctl shows uid 65534" \
    "$(ls -ln "/mnt/n/task/$nu/ctl" | awk '{print $3}')" "65534"
  expect "access=user: ls -ln of root's task/$n/ctl shows uid 0" \
    "$(ls -ln "/mnt/n/task/$n/ctl" | awk '{print $3}')" "0"
  if nb "rm -r /mnt/n/task/$n" 2>/dev/null || nb "rmdir /mnt/n/task/$n" 2>/dev/null; then
    bad "access=user: nobody removed root's task $n"
  elif [ -d "/mnt/n/task/$n" ] && [ -e "/mnt/n/task/$n/ctl" ]; then ok "access=user: nobody cannot rm -r root's task $n"
  else bad "access=user: root's task $n is gone or damaged after nobody's rm -r"; fi
  # task/N/stdout is 0440, the owner's and the node admin group's (galaxy-node(4)).
  if out=$(nb "cat /mnt/n/task/$n/stdout" 2>&1); then bad "access=user: nobody read root's task/$n/stdout: '$out'"
  else ok "access=user: nobody cannot read root's task/$n/stdout ($out)"; fi
fi

# ---- remove ------------------------------------------------------------------------------
if rm -r "/mnt/n/task/$ns" 2>/dev/null; then bad "rm -r of a running task succeeded"
elif [ -d "/mnt/n/task/$ns" ] && [ -e "/mnt/n/task/$ns/ctl" ]; then ok "rm -r of a running task is refused, and leaves it whole"
else bad "rm -r of a running task: it is gone or damaged"; fi
if rm -r "/mnt/o/task/$n" 2>/dev/null || rmdir "/mnt/o/task/$n" 2>/dev/null; then bad "another user removed task $n"
elif [ -d "/mnt/n/task/$n" ]; then ok "another user (uname=other) cannot remove task $n"
else bad "task $n went after another user's rm"; fi
if rm -r "/mnt/n/task/$n"; then ok "rm -r task/$n"; else bad "rm -r task/$n failed"; fi
if [ ! -e "/mnt/n/task/$n" ]; then ok "task/$n is gone"; else bad "task/$n is still there"; fi
if rmdir "/mnt/n/task/$n5"; then ok "rmdir task/$n5 (a finished task)"; else bad "rmdir task/$n5 failed"; fi
if rm -r "/mnt/s/jobs/$j"; then ok "rm -r jobs/$j"; else bad "rm -r jobs/$j failed"; fi
if [ ! -e "/mnt/s/jobs/$j" ]; then ok "jobs/$j is gone"; else bad "jobs/$j is still there"; fi
if rm -r "/mnt/s/jobs/$js" 2>/dev/null; then bad "rm -r of a running job succeeded"
else ok "rm -r of a running job is refused"; fi
echo kill >> "/mnt/n/task/$ns/ctl"
echo kill >> "/mnt/s/jobs/$js/ctl"
expect "a killed task's wait" "$(w /mnt/n/task/$ns/wait)" "signal 9"

# ---- task/ listed while it grows -----------------------------------------------------------
before=$(ls /mnt/n/task | grep -c '^[0-9]')
( i=0; while [ $i -lt 60 ]; do cat /mnt/n/task/clone >/dev/null || echo "clone failed" >>/tmp/grow.err; i=$((i + 1)); done ) &
grower=$!
lsfail=0 dup=0 k=0
while [ $k -lt 6 ]; do
  ls /mnt/n/task >/tmp/ls.out 2>/tmp/ls.err || lsfail=$((lsfail + 1))
  [ -z "$(sort /tmp/ls.out | uniq -d)" ] || dup=$((dup + 1))
  k=$((k + 1))
done
wait $grower
expect "listings of task/ while it grows: failed" "$lsfail" "0"
expect "listings of task/ while it grows: with a name twice" "$dup" "0"
expect "task/ after 60 more clones lists them all" "$(ls /mnt/n/task | grep -c '^[0-9]')" "$((before + 60))"
[ -s /tmp/grow.err ] && bad "clones while listing: $(cat /tmp/grow.err)"

# ---- galaxy mount --kernel: the connection attached by the tool, then the kernel's ---------
# (Against the host's node, --auth none: the tool's Tversion and Tattach, then mount -t 9p
# -o trans=fd on the same socket, whose Tversion and Tattach the server answers anew. The
# host's node cannot be a MUNGE one: the credential binds to the address the client
# dialled, tcp!10.0.2.2!PORT, and the server compares it, exactly (srv9p
# binding_refusal), with its own end of the accepted socket, which slirp connects from
# the host to 127.0.0.1:PORT; any NAT between the two ends refuses it, as it should. The
# MUNGE case runs wholly inside the guest instead, munged and node included:
# guest_munge.sh, below.)
if [ -x /usr/local/bin/galaxy ]; then
  mkdir -p /mnt/k
  if out=$(galaxy mount --kernel -u nobody "tcp!10.0.2.2!$NP" /mnt/k 2>&1); then
    ok "galaxy mount --kernel (trans=fd)"
    # A single-user mount (access=UID of nobody): root is kept out, nobody gets in.
    if cat /mnt/k/status >/dev/null 2>&1; then bad "root read the --kernel mount of nobody"
    else ok "the --kernel mount is nobody's alone (root is refused)"; fi
    case $(nb 'cat /mnt/k/status') in *"name=n1 "*) ok "cat status through the --kernel mount, as nobody" ;;
      *) bad "cat /mnt/k/status as nobody: $(nb 'cat /mnt/k/status' 2>&1)" ;; esac
    nk=$(nb 'cat /mnt/k/task/clone')
    nb "echo 'exec echo via fd' > /mnt/k/task/$nk/ctl"
    expect "a task through the --kernel mount" "$(nb "timeout 60 cat /mnt/k/task/$nk/wait /mnt/k/task/$nk/stdout")" "exit 0
via fd"
    grep -q ' /mnt/k 9p .*trans=fd' /proc/mounts && ok "/proc/mounts shows /mnt/k as 9p, trans=fd" ||
      bad "/proc/mounts: $(grep /mnt/k /proc/mounts)"
    umount /mnt/k
  else
    bad "galaxy mount --kernel: $out"
  fi
fi

# ---- trans=unix: a node on a Unix socket in the guest (SO_PEERCRED) ---------------------
if [ -x /usr/local/bin/galaxy-node ] && [ -x /usr/local/bin/galaxy ]; then
  . /root/guest_unix.sh
else
  echo "note: SKIP the trans=unix mount: no galaxy-node or galaxy in the guest"
fi

# ---- galaxy mount --kernel of a MUNGE node, munged and node in the guest ----------------
if [ -x /usr/sbin/munged ] && [ -x /usr/local/bin/galaxy-node ] && [ -x /usr/local/bin/galaxy ]; then
  tm=$(date +%s)
  . /root/guest_munge.sh
  echo "note: the MUNGE --kernel part took $(($(date +%s) - tm)) s"
else
  echo "note: SKIP the MUNGE --kernel mount: no munged (Debian: munge) or galaxy-node in the guest"
fi

# ---- cache=loose: a length-0 file ------------------------------------------------------
if mount -t 9p -o "trans=tcp,version=$V,cache=loose,port=$NP" 10.0.2.2 /mnt/nl; then
  loose=$(cat /mnt/nl/status | wc -c)
  echo "note: cache=loose: cat status (length 0) read $loose bytes"
  # With cache=loose the page cache believes the length (0), so cat reads nothing: the
  # synthetic files need cache=none (galaxy(4)). Checked so that a kernel or server that
  # changes it is noticed.
  expect "cache=loose: a length-0 file reads as empty (use cache=none)" "$loose" "0"
  umount /mnt/nl
else
  bad "mount with cache=loose"
fi

umount /mnt/o; umount /mnt/s; umount /mnt/n
echo "guest time $(($(date +%s) - t0)) s"
echo "$passes passed, $fails failed"
[ "$fails" = 0 ]
