#!/usr/bin/env bash
# plan9port's third-party 9P clients against the real daemons (issue 14): `9p`, `9pfuse`
# and `9pserve` (9P2000, msize 8192; `9p` sends a Tauth first, which an --auth none
# listener answers "authentication not required", and then attaches without an afid;
# 9pfuse attaches at once). Starts a galaxy-node and a galaxy-sched over it from BUILD_DIR
# (port 0 on loopback with --auth none, plus a Unix-socket listener each, in a temporary
# directory) and checks, printing "ok NAME" or "FAIL NAME: why" per check and
# "N passed, M failed" at the end:
#
#   9p over TCP    ls and read status of both trees; the Tauth/Tattach exchange (9p -D);
#                  stat of a length-0 file; a task (read task/clone, the task outlives the
#                  connection, write exec to task/N/ctl: an OWRITE|OTRUNC open, read wait
#                  and stdout); the same in one connection with `9p rdwr task/clone`; a
#                  job on the scheduler (jobs/clone, ctl, wait, stdout); error texts of a
#                  missing file and a bad ctl command; an unknown attach name (-A).
#   9p over unix!  as root on both trees; as an ordinary user (nobody, through setpriv)
#                  with a task that runs as that user; the SO_PEERCRED rule: nobody in a
#                  user namespace (unshare -r), whose 9p attaches as "root", is refused on
#                  both trees. The daemons make the sockets 0666 (checked).
#   9pfuse         mounts of the node and the scheduler: ls -l, cat status, a task and a job
#                  made with cat clone, echo exec ... > ctl (O_TRUNC: the truncation comes
#                  as a Twstat of length 0 or an OTRUNC open), cat wait, cat stdout, a
#                  1 MB stdout read whole (sha256), rm -r of a job, fusermount -u.
#   9pserve        one TCP connection to the node (bash's /dev/tcp as 9pserve's stdin and
#                  stdout) shared by 8 concurrent `9p read status` clients and by a task,
#                  with 6 clients blocked in its wait at once while the node has exactly
#                  one more connection than before (/proc/net/tcp); the scheduler through
#                  `9pserve -c` with concurrent clients and a job.
#
#   tests/p9p/p9p_test.sh BUILD_DIR
#
# The tools are taken from $PLAN9/bin, else from PATH, else built from the plan9port
# source tree named by $PLAN9_SRC into the test's scratch space (its mk, then lib9,
# libbio, libregexp, libthread, lib9pclient, libauth, libauthsrv, libmux, libndb, libip
# and the three programs: about 2 minutes on 2 cores; the tree is not written to).
# Debian 12 has no package of them. Checks that need root (setpriv to nobody), user
# namespaces, /dev/fuse or fusermount print "skip NAME: why" instead.
# Exit status: 0 all passed, 1 some failed (or a daemon did not start, or the build from
# $PLAN9_SRC failed), 77 skipped: no plan9port to be had ("p9p_test: SKIP: ...").
set -uo pipefail
build=${1:?usage: p9p_test.sh BUILD_DIR}
build=$(cd "$build" && pwd)

tmp=$(mktemp -d /tmp/p9p-test.XXXXXX)
chmod 0711 "$tmp"  # tasks run as nobody (the daemon is root) and must reach the spool
pids=()
serves=()  # the addresses of the 9pserve started here
mounts=()
# serve_pids ADDR: the processes whose arguments include ADDR (a path in $tmp): the
# 9pserve announced there. It forks itself into the background (plan9port's libthread;
# with NOLIBTHREADDAEMONIZE set it dies "threads in main proc exited w/o
# threadmaybackground"), so its pid is not $!.
serve_pids() {
  local f
  for f in /proc/[0-9]*/cmdline; do
    tr '\0' '\n' 2>/dev/null <"$f" | grep -qxF -- "$1" && { f=${f%/cmdline}; echo "${f#/proc/}"; }
  done
}
cleanup() {
  for m in "${mounts[@]}"; do fusermount -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
  for a in "${serves[@]}"; do for p in $(serve_pids "$a"); do kill "$p" 2>/dev/null; done; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

skip() {
  echo "p9p_test: SKIP: $*"
  exit 77
}

# The tools: $PLAN9/bin, PATH, or a build from $PLAN9_SRC.
tools=(9p 9pfuse 9pserve)
have_all() {  # have_all DIR: the three are executables in DIR
  local t
  for t in "${tools[@]}"; do [[ -f $1/$t && -x $1/$t ]] || return 1; done
}
# build_p9p SRC DEST: the commands that build the three (DEST/bin) from a plan9port
# tree SRC without writing to it: DEST is a tree of symbolic links to SRC (cp -rs) in
# which mk writes its objects, libraries and programs.
build_p9p() (
  set -e
  src=$1 dest=$2
  mkdir -p "$dest"
  cp -rs "$(cd "$src" && pwd)/." "$dest/"
  cd "$dest"
  PLAN9=$(pwd) PATH=$(pwd)/bin:$PATH NPROC=$(nproc 2>/dev/null || echo 1)
  export PLAN9 PATH NPROC
  unset FORCERCFORMK MKSHELL
  rm -f config
  echo "egrep='grep -E'" >config
  cd src
  ../dist/buildmk  # mk itself, with lib9, libbio and libregexp
  for d in libthread lib9pclient libauth libauthsrv libmux libndb libip; do
    (cd "$d" && mk install)
  done
  cd cmd
  mk 9p.install 9pserve.install
  cd 9pfuse
  mk install
)
bindir=""
if [[ -n ${PLAN9:-} ]] && have_all "$PLAN9/bin"; then
  bindir=$PLAN9/bin
  where="\$PLAN9/bin ($bindir)"
elif p=$(command -v 9pserve 2>/dev/null) && have_all "$(dirname "$p")"; then
  bindir=$(dirname "$p")
  where="PATH ($bindir)"
elif [[ -n ${PLAN9_SRC:-} ]]; then
  [[ -f $PLAN9_SRC/src/cmd/9p.c && -f $PLAN9_SRC/dist/buildmk ]] ||
    skip "PLAN9_SRC=$PLAN9_SRC is not a plan9port source tree (no src/cmd/9p.c, dist/buildmk)"
  command -v cc >/dev/null || skip "no C compiler (cc) to build plan9port from PLAN9_SRC=$PLAN9_SRC: apt-get install gcc"
  echo "p9p_test: building 9p, 9pfuse and 9pserve from $PLAN9_SRC in $tmp/p9p"
  start_s=$SECONDS
  if ! build_p9p "$PLAN9_SRC" "$tmp/p9p" >"$tmp/p9p-build.log" 2>&1 || ! have_all "$tmp/p9p/bin"; then
    echo "p9p_test: building plan9port from $PLAN9_SRC failed:"
    tail -n 30 "$tmp/p9p-build.log"
    exit 1
  fi
  echo "p9p_test: built in $((SECONDS - start_s)) s"
  bindir=$tmp/p9p/bin
  where="a build from PLAN9_SRC=$PLAN9_SRC"
else
  skip "plan9port's 9p, 9pfuse and 9pserve not found (not in \$PLAN9/bin, not on PATH) and PLAN9_SRC is not set:" \
    "set PLAN9 to an installed plan9port, or PLAN9_SRC to a plan9port source tree" \
    "(git clone https://github.com/9fans/plan9port) to build them in the test's scratch space; Debian has no package"
fi
P9=$bindir/9p P9FUSE=$bindir/9pfuse P9SERVE=$bindir/9pserve
echo "p9p_test: plan9port from $where"
# $bindir leaves PATH: plan9port's ls, mount, kill, ... would shadow the system's.
PATH=$(tr ':' '\n' <<<"$PATH" | grep -vxF -- "$bindir" | paste -sd: -)

pass=0
fail=0
ok() { echo "ok $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
skipcase() { echo "skip $1: $2"; }
# expect NAME WANT GOT [MORE]: ok when equal, else FAIL with both (and MORE, e.g. stderr).
expect() {
  if [[ $3 == "$2" ]]; then ok "$1"; else bad "$1" "want '$2', got '$3'${4:+; $4}"; fi
}
# expect_match NAME REGEX GOT [MORE]
expect_match() {
  if [[ $3 =~ $2 ]]; then ok "$1"; else bad "$1" "want /$2/, got '$3'${4:+; $4}"; fi
}
one_line() { tr '\n' ' ' <"$1" | sed 's/ $//'; }  # a file's lines joined by blanks
# p9 ADDR ARGS...: plan9port's 9p against ADDR, given 30 s; stderr in $tmp/err.
p9() {
  local addr=$1
  shift
  timeout 30 "$P9" -a "$addr" "$@" 2>"$tmp/err"
}

# start NAME PROGRAM ARG...: runs a daemon that prints "listening on DIAL" lines first;
# sets $port to its TCP port.
start() {
  local name=$1
  shift
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  local i
  port=""
  for ((i = 0; i < 200; i++)); do
    port=$(sed -n 's/^listening on tcp!127\.0\.0\.1!\([0-9]*\)$/\1/p' "$tmp/$name.out" | head -n 1)
    [[ -n $port ]] && grep -q '^listening on unix!' "$tmp/$name.out" && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "p9p_test: $name did not start:"
  cat "$tmp/$name.err"
  exit 1
}
start node "$build/galaxy-node" --listen 'tcp!127.0.0.1!0' --listen "unix!$tmp/node.sock" --auth none \
  --spool "$tmp/spool" --name n1
node_port=$port
node_pid=${pids[-1]}
start sched "$build/galaxy-sched" --listen 'tcp!127.0.0.1!0' --listen "unix!$tmp/sched.sock" --auth none \
  --state "$tmp/state" --node "n1=tcp!127.0.0.1!$node_port"
sched_port=$port
sched_pid=${pids[-1]}
# The daemons make their sockets 0666 whatever their umask (connecting needs write
# permission, and the peer's uid is proven by SO_PEERCRED anyway).
for sock in node.sock sched.sock; do
  expect "the daemon made $sock 0666" "socket 666" "$(stat -c '%F %a' "$tmp/$sock")"
done
N="tcp!127.0.0.1!$node_port"
me=$(id -un)  # the name plan9port attaches as (getpwuid(getuid())), and the daemons' user
S="tcp!127.0.0.1!$sched_port"
NU="unix!$tmp/node.sock"
SU="unix!$tmp/sched.sock"
# Until the scheduler has the node up.
for ((i = 0; i < 300; i++)); do
  [[ $(p9 "$S" read status) == *nodes_up=1* ]] && break
  sleep 0.1
done

# ---------------------------------------------------------------- 9p over TCP
node_root="arch cpu ctl events labels mem status task"
sched_root="ctl events jobs join metrics nodes queue status users"
p9 "$N" ls >"$tmp/out"
expect "9p tcp node: ls /" "$node_root" "$(one_line "$tmp/out")" "$(cat "$tmp/err")"
expect_match "9p tcp node: read status" '^name=n1 .*state=up' "$(p9 "$N" read status)" "$(cat "$tmp/err")"
p9 "$S" ls >"$tmp/out"
expect "9p tcp sched: ls /" "$sched_root" "$(one_line "$tmp/out")" "$(cat "$tmp/err")"
expect_match "9p tcp sched: read status" '^nodes_up=1 nodes_down=0 ' "$(p9 "$S" read status)" "$(cat "$tmp/err")"
expect "9p tcp sched: ls nodes" "n1" "$(p9 "$S" ls nodes)" "$(cat "$tmp/err")"

# The exchange: Tversion 9P2000/8192, a Tauth answered "authentication not required",
# then a Tattach with afid -1 (NOFID) and the caller's name, aname empty.
timeout 30 "$P9" -D -a "$N" read arch >"$tmp/out" 2>"$tmp/debug"
if grep -q "^-> Rversion tag 65535 msize 8192 version '9P2000'" "$tmp/debug" &&
  grep -q "^<- Tauth tag [0-9]* afid [0-9]* uname $me aname <nil>\$" "$tmp/debug" &&
  grep -q '^-> Rerror tag [0-9]* ename authentication not required$' "$tmp/debug" &&
  grep -q "^<- Tattach tag [0-9]* fid [0-9]* afid -1 uname $me aname \$" "$tmp/debug" &&
  grep -q '^-> Rattach ' "$tmp/debug" && [[ $(cat "$tmp/out") == "amd64 linux" || $(cat "$tmp/out") == *linux ]]; then
  ok "9p tcp node: 9P2000 msize 8192, Tauth refused as not required, Tattach without afid"
else
  bad "9p tcp node: 9P2000 msize 8192, Tauth refused as not required, Tattach without afid" "9p -D said: $(tr '\n' '|' <"$tmp/debug")"
fi
# Synthetic files have length 0 (9p stat prints "l LENGTH").
expect_match "9p tcp node: stat status (length 0)" "^'status' '$me' '$me' '$me' q \(.*\) m 0444 .* l 0 t 0 d 0\$" \
  "$(p9 "$N" stat status)" "$(cat "$tmp/err")"

# A task: the clone read's connection ends; the task stays (new) until exec.
n=$(p9 "$N" read task/clone)
expect_match "9p tcp node: read task/clone gives a number" '^[0-9]+$' "$n" "$(cat "$tmp/err")"
expect_match "9p tcp node: the task outlives the clone's connection" "^id=$n state=new " \
  "$(p9 "$N" read "task/$n/status")" "$(cat "$tmp/err")"
echo "exec sh -c 'echo hello from task \$GALAXY_TASK'" | p9 "$N" write "task/$n/ctl"
expect "9p tcp node: write exec to task/$n/ctl (OWRITE|OTRUNC)" "0" "$?" "$(cat "$tmp/err")"
expect "9p tcp node: read task/$n/wait" "exit 0" "$(p9 "$N" read "task/$n/wait")" "$(cat "$tmp/err")"
expect "9p tcp node: read task/$n/stdout" "hello from task $n" "$(p9 "$N" read "task/$n/stdout")" "$(cat "$tmp/err")"
expect_match "9p tcp node: read task/$n/ctl (the spec)" "exec sh -c 'echo hello from task \\\$GALAXY_TASK'" \
  "$(p9 "$N" read "task/$n/ctl")" "$(cat "$tmp/err")"
# rdwr: one connection; the open clone file is the task's ctl (reads give its number).
printf 'exec echo made with rdwr\n' | p9 "$N" rdwr task/clone >"$tmp/out"
m=$(head -n 1 "$tmp/out")
if [[ $m =~ ^[0-9]+$ ]]; then
  expect "9p tcp node: rdwr task/clone then exec, wait" "exit 0" "$(p9 "$N" read "task/$m/wait")" "$(cat "$tmp/err")"
  expect "9p tcp node: rdwr task/clone then exec, stdout" "made with rdwr" "$(p9 "$N" read "task/$m/stdout")"
else
  bad "9p tcp node: rdwr task/clone then exec" "no task number: '$(cat "$tmp/out")' $(cat "$tmp/err")"
fi
# A ctl line longer than one write (msize 8192: 8168 bytes of data): lib9pclient cuts
# `9p write -l`'s line into a write of exactly 8168 bytes and the rest, which the node
# takes as one line (the largest write is a piece of a longer line, as a 4 KiB page is).
n=$(p9 "$N" read task/clone)
long=$(head -c 9000 /dev/zero | tr '\0' x)
echo "exec sh -c 'echo \${#1}' _ $long" | p9 "$N" write -l "task/$n/ctl"
expect "9p tcp node: a 9000-byte argument in a ctl line cut at 8168 bytes (write -l): wait" "exit 0" \
  "$(p9 "$N" read "task/$n/wait")" "$(cat "$tmp/err")"
expect "9p tcp node: ... the task saw the whole argument" "9000" "$(p9 "$N" read "task/$n/stdout")" "$(cat "$tmp/err")"
j=$(p9 "$S" read jobs/clone)
echo "exec sh -c 'echo \${#1}' _ $long" | p9 "$S" write -l "jobs/$j/ctl"
expect "9p tcp sched: the same line to jobs/$j/ctl: wait" "exit 0" "$(p9 "$S" read "jobs/$j/wait")" "$(cat "$tmp/err")"
expect "9p tcp sched: ... the job saw the whole argument" "9000" "$(p9 "$S" read "jobs/$j/stdout")" "$(cat "$tmp/err")"
# Errors are shown as the server's text.
p9 "$N" read nosuch >/dev/null
expect "9p tcp node: read of a missing file fails" "1 $P9: fsopen nosuch: file does not exist" "$? $(cat "$tmp/err")"
echo bogus | p9 "$N" write "task/$n/ctl"
expect_match "9p tcp node: a bad ctl command fails with its reason" "^1 .*write error: unknown command 'bogus': expected exec" \
  "$? $(cat "$tmp/err")"
timeout 30 "$P9" -a "$N" -A nosuch ls >/dev/null 2>"$tmp/err"
expect_match "9p tcp node: attach name other than '' is refused" '^1 .*mount: file does not exist' "$? $(cat "$tmp/err")"

# A job on the scheduler.
j=$(p9 "$S" read jobs/clone)
expect_match "9p tcp sched: read jobs/clone gives a number" '^[0-9]+$' "$j" "$(cat "$tmp/err")"
echo "exec sh -c 'echo job \$GALAXY_TASK on the node'" | p9 "$S" write "jobs/$j/ctl"
expect "9p tcp sched: write exec to jobs/$j/ctl" "0" "$?" "$(cat "$tmp/err")"
expect "9p tcp sched: read jobs/$j/wait" "exit 0" "$(p9 "$S" read "jobs/$j/wait")" "$(cat "$tmp/err")"
expect_match "9p tcp sched: read jobs/$j/stdout" '^job [0-9]+ on the node$' "$(p9 "$S" read "jobs/$j/stdout")" "$(cat "$tmp/err")"
expect_match "9p tcp sched: read jobs/$j/status" "^id=$j owner=$me state=done node=n1 " \
  "$(p9 "$S" read "jobs/$j/status")" "$(cat "$tmp/err")"

# ---------------------------------------------------------------- 9p over unix!
expect_match "9p unix node as root: read status" '^name=n1 ' "$(p9 "$NU" read status)" "$(cat "$tmp/err")"
p9 "$SU" ls >"$tmp/out"
expect "9p unix sched as root: ls /" "$sched_root" "$(one_line "$tmp/out")" "$(cat "$tmp/err")"
nobody_uid=$(id -u nobody 2>/dev/null)
# as_nobody CMD...: CMD as the ordinary user nobody (its name is what plan9port attaches as).
as_nobody() { setpriv --reuid="$nobody_uid" --regid="$(id -g nobody)" --clear-groups "$@"; }
if [[ $(id -u) != 0 ]]; then
  skipcase "9p unix as another user" "not root: cannot become nobody"
elif [[ -z $nobody_uid ]] || ! command -v setpriv >/dev/null; then
  skipcase "9p unix as another user" "no user nobody, or no setpriv (util-linux)"
else
  # nobody must reach the binaries: a scratch build lies in $tmp (0711).
  expect_match "9p unix node as nobody: read status" '^name=n1 ' \
    "$(as_nobody timeout 30 "$P9" -a "$NU" read status 2>"$tmp/err")" "$(cat "$tmp/err")"
  n=$(as_nobody timeout 30 "$P9" -a "$NU" read task/clone 2>"$tmp/err")
  echo "exec id -un" | as_nobody timeout 30 "$P9" -a "$NU" write "task/$n/ctl" 2>>"$tmp/err"
  expect "9p unix node as nobody: a task's wait" "exit 0" \
    "$(as_nobody timeout 30 "$P9" -a "$NU" read "task/$n/wait" 2>>"$tmp/err")" "$(cat "$tmp/err")"
  expect "9p unix node as nobody: the task ran as nobody" "nobody" \
    "$(as_nobody timeout 30 "$P9" -a "$NU" read "task/$n/stdout" 2>>"$tmp/err")" "$(cat "$tmp/err")"
  expect_match "9p unix node as nobody: the task's files are nobody's" "^--rw-rw---- M 0 nobody [a-z]+ 0 .* ctl\$" \
    "$(p9 "$NU" ls -l "task/$n/ctl")" "$(cat "$tmp/err")"
  expect_match "9p unix sched as nobody: ls jobs" 'clone' \
    "$(as_nobody timeout 30 "$P9" -a "$SU" ls jobs 2>"$tmp/err")" "$(cat "$tmp/err")"
  # In a user namespace of its own nobody is uid 0 inside, so plan9port attaches as
  # "root"; SO_PEERCRED still says 65534: refused.
  if ! as_nobody unshare -r true 2>/dev/null; then
    skipcase "9p unix: SO_PEERCRED refusal" "unprivileged user namespaces (unshare -r) not allowed here"
  else
    for t in node sched; do
      a=$([[ $t == node ]] && echo "$NU" || echo "$SU")
      as_nobody unshare -r timeout 30 "$P9" -a "$a" read status >"$tmp/out" 2>"$tmp/err"
      rc=$?
      expect "9p unix $t: nobody attaching as root is refused" \
        "1 $P9: mount: uid $nobody_uid (nobody) may not attach as root" "$rc $(cat "$tmp/err")" "stdout '$(cat "$tmp/out")'"
    done
  fi
fi

# ---------------------------------------------------------------- 9pfuse
# 9pfuse runs fusermount (PATH); Debian 12's fuse3 has fusermount3 and a link to it.
fusebin=$tmp/fusebin
mkdir -p "$fusebin"
if ! command -v fusermount >/dev/null && command -v fusermount3 >/dev/null; then
  ln -s "$(command -v fusermount3)" "$fusebin/fusermount"
fi
if [[ ! -c /dev/fuse ]]; then
  skipcase "9pfuse" "no /dev/fuse"
elif ! PATH=$fusebin:$PATH command -v fusermount >/dev/null; then
  skipcase "9pfuse" "no fusermount or fusermount3 (apt-get install fuse3)"
else
  # mount9p NAME ADDR: mounts ADDR at $tmp/NAME with 9pfuse -D (its exchange in $tmp/NAME.fuse).
  mount9p() {
    mkdir -p "$tmp/$1"
    if PATH=$fusebin:$PATH timeout 30 "$P9FUSE" -D "$2" "$tmp/$1" 2>"$tmp/$1.fuse" &&
      grep -q " $tmp/$1 fuse" /proc/mounts; then
      mounts+=("$tmp/$1")
      ok "9pfuse $1: mount $2"
      return 0
    fi
    bad "9pfuse $1: mount $2" "$(tail -n 5 "$tmp/$1.fuse")"
    return 1
  }
  if mount9p nmnt "$N"; then
    m=$tmp/nmnt
    expect "9pfuse node: ls" "$node_root" "$(ls "$m" | tr '\n' ' ' | sed 's/ $//')"
    expect_match "9pfuse node: ls -l status (length 0)" '^-r--r--r-- 1 [^ ]+ [^ ]+ 0 ' "$(ls -l "$m/status")"
    expect_match "9pfuse node: cat status" '^name=n1 .*state=up' "$(timeout 30 cat "$m/status")"
    if grep -q "^<- Tattach tag [0-9]* fid [0-9]* afid -1 uname $me aname \$" "$tmp/nmnt.fuse" &&
      grep -q "^-> Rversion tag 65535 msize 8192 version '9P2000'" "$tmp/nmnt.fuse"; then
      ok "9pfuse node: 9P2000 msize 8192, Tattach without afid"
    else
      bad "9pfuse node: 9P2000 msize 8192, Tattach without afid" "$(head -n 4 "$tmp/nmnt.fuse" | tr '\n' '|')"
    fi
    n=$(timeout 30 cat "$m/task/clone")
    expect_match "9pfuse node: cat task/clone" '^[0-9]+$' "$n"
    lines_before=$(wc -l <"$tmp/nmnt.fuse")
    # The shell opens ctl with O_TRUNC.
    (echo "exec sh -c 'echo fuse task \$GALAXY_TASK; seq 1 150000 >&2'" >"$m/task/$n/ctl") 2>"$tmp/err"
    expect "9pfuse node: echo exec ... > task/$n/ctl" "0" "$?" "$(cat "$tmp/err")"
    # 9pfuse -D: the request, then its answer on the next 9P line.
    if tail -n +"$lines_before" "$tmp/nmnt.fuse" | grep -v '^FUSE' | grep -A1 -E '^<- (Twstat .* l 0 |Topen .* mode 17$)' |
      grep -q -E '^-> R(wstat|open) '; then
      ok "9pfuse node: the O_TRUNC came as a Twstat of length 0 or an OTRUNC open, and was taken"
    else
      bad "9pfuse node: the O_TRUNC came as a Twstat of length 0 or an OTRUNC open, and was taken" \
        "no such message in 9pfuse -D's log"
    fi
    expect "9pfuse node: cat task/$n/wait" "exit 0" "$(timeout 30 cat "$m/task/$n/wait")"
    expect "9pfuse node: cat task/$n/stdout" "fuse task $n" "$(timeout 30 cat "$m/task/$n/stdout")"
    expect "9pfuse node: cat task/$n/stderr whole (1 MB, sha256)" "$(seq 1 150000 | sha256sum)" \
      "$(timeout 60 cat "$m/task/$n/stderr" | sha256sum)"
    # A blocked read of wait returns when the task ends.
    n2=$(timeout 30 cat "$m/task/clone")
    (timeout 30 cat "$m/task/$n2/wait" >"$tmp/wait2") &
    waiter=$!
    sleep 0.5
    echo "exec sleep 1" >"$m/task/$n2/ctl"
    wait "$waiter"
    expect "9pfuse node: a cat of wait blocked before exec returns at the end" "exit 0" "$(cat "$tmp/wait2")"
  fi
  if mount9p smnt "$S"; then
    m=$tmp/smnt
    expect "9pfuse sched: ls" "$sched_root" "$(ls "$m" | tr '\n' ' ' | sed 's/ $//')"
    expect_match "9pfuse sched: cat status" '^nodes_up=1 ' "$(timeout 30 cat "$m/status")"
    j=$(timeout 30 cat "$m/jobs/clone")
    (echo "exec echo fuse job" >"$m/jobs/$j/ctl") 2>"$tmp/err"
    expect "9pfuse sched: echo exec ... > jobs/$j/ctl" "0" "$?" "$(cat "$tmp/err")"
    expect "9pfuse sched: cat jobs/$j/wait" "exit 0" "$(timeout 30 cat "$m/jobs/$j/wait")"
    expect "9pfuse sched: cat jobs/$j/stdout" "fuse job" "$(timeout 30 cat "$m/jobs/$j/stdout")"
    rm -r "$m/jobs/$j" 2>"$tmp/err"
    expect "9pfuse sched: rm -r jobs/$j" "0 absent" "$? $([[ -e $m/jobs/$j ]] && echo present || echo absent)" "$(cat "$tmp/err")"
  fi
  for m in "${mounts[@]}"; do
    PATH=$fusebin:$PATH fusermount -u "$m" 2>"$tmp/err"
    rc=$?
    if ((rc == 0)) && ! grep -q " $m fuse" /proc/mounts; then ok "9pfuse: fusermount -u ${m##*/}"; else bad "9pfuse: fusermount -u ${m##*/}" "$(cat "$tmp/err")"; fi
  done
  mounts=()
fi

# ---------------------------------------------------------------- 9pserve
# conns PORT: established TCP connections whose local port is PORT (the server's side).
conns() {
  local hex
  hex=$(printf '%04X' "$1")
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v p=":$hex" '$2 ~ p"$" && $4 == "01"' | wc -l
}
before=$(conns "$node_port")
(
  exec 3<>"/dev/tcp/127.0.0.1/$node_port" || exit 1
  exec "$P9SERVE" "unix!$tmp/9pserve.sock" <&3 >&3 2>"$tmp/9pserve.err"
) &
X="unix!$tmp/9pserve.sock"
serves+=("$X")
for ((i = 0; i < 100; i++)); do [[ -S $tmp/9pserve.sock ]] && break; sleep 0.1; done
expect "9pserve: the node has one more connection" "$((before + 1))" "$(conns "$node_port")"
cpids=()
for i in 1 2 3 4 5 6 7 8; do
  (timeout 30 "$P9" -a "$X" read status >"$tmp/c$i.out" 2>&1; echo "rc=$?" >>"$tmp/c$i.out") &
  cpids+=($!)
done
wait "${cpids[@]}"
good=0
for i in 1 2 3 4 5 6 7 8; do
  [[ $(head -n 1 "$tmp/c$i.out") == name=n1\ * && $(tail -n 1 "$tmp/c$i.out") == rc=0 ]] && good=$((good + 1))
done
expect "9pserve: 8 concurrent 9p read status" "8" "$good" "$(cat "$tmp"/c*.out | sort | uniq -c | tr '\n' '|')"
n=$(p9 "$X" read task/clone)
expect_match "9pserve: read task/clone" '^[0-9]+$' "$n" "$(cat "$tmp/err")"
echo "exec sh -c 'sleep 3; echo through 9pserve'" | p9 "$X" write "task/$n/ctl"
expect "9pserve: write exec to task/$n/ctl" "0" "$?" "$(cat "$tmp/err")"
cpids=()
for i in 1 2 3 4 5 6; do
  (timeout 30 "$P9" -a "$X" read "task/$n/wait" >"$tmp/w$i.out" 2>&1; echo "rc=$?" >>"$tmp/w$i.out") &
  cpids+=($!)
done
sleep 1
expect "9pserve: 6 clients blocked in wait over the node's one connection" "$((before + 1))" "$(conns "$node_port")"
wait "${cpids[@]}"
good=0
for i in 1 2 3 4 5 6; do [[ $(cat "$tmp/w$i.out") == $'exit 0\nrc=0' ]] && good=$((good + 1)); done
expect "9pserve: 6 concurrent reads of task/$n/wait" "6" "$good" "$(cat "$tmp"/w*.out | sort | uniq -c | tr '\n' '|')"
expect "9pserve: read task/$n/stdout" "through 9pserve" "$(p9 "$X" read "task/$n/stdout")" "$(cat "$tmp/err")"
expect_match "9pserve: still serving after its clients left" '^name=n1 ' "$(p9 "$X" read status)" "$(cat "$tmp/err") $(cat "$tmp/9pserve.err")"
# The scheduler through 9pserve -c (9pserve dials it).
before=$(conns "$sched_port")
Y="unix!$tmp/9pserve-sched.sock"
serves+=("$Y")
"$P9SERVE" -c "$S" "$Y" 2>"$tmp/9pserve-sched.err" &
for ((i = 0; i < 100; i++)); do [[ -S $tmp/9pserve-sched.sock ]] && break; sleep 0.1; done
cpids=()
for i in 1 2 3 4 5; do
  (timeout 30 "$P9" -a "$Y" read status >"$tmp/sc$i.out" 2>&1; echo "rc=$?" >>"$tmp/sc$i.out") &
  cpids+=($!)
done
wait "${cpids[@]}"
good=0
for i in 1 2 3 4 5; do
  [[ $(head -n 1 "$tmp/sc$i.out") == nodes_up=1\ * && $(tail -n 1 "$tmp/sc$i.out") == rc=0 ]] && good=$((good + 1))
done
expect "9pserve -c sched: 5 concurrent 9p read status" "5" "$good" "$(cat "$tmp"/sc*.out | sort | uniq -c | tr '\n' '|')"
j=$(p9 "$Y" read jobs/clone)
echo "exec echo job through 9pserve" | p9 "$Y" write "jobs/$j/ctl"
expect "9pserve -c sched: a job's wait" "exit 0" "$(p9 "$Y" read "jobs/$j/wait")" "$(cat "$tmp/err")"
expect "9pserve -c sched: a job's stdout" "job through 9pserve" "$(p9 "$Y" read "jobs/$j/stdout")" "$(cat "$tmp/err")"
expect "9pserve -c sched: all over one connection" "$((before + 1))" "$(conns "$sched_port")"

for d in node sched; do
  p=$([[ $d == node ]] && echo "$node_pid" || echo "$sched_pid")
  if kill -0 "$p" 2>/dev/null; then ok "galaxy-$d outlived the clients"; else bad "galaxy-$d outlived the clients" "$(tail -n 20 "$tmp/$d.err")"; fi
done
echo "$pass passed, $fail failed"
((fail == 0))
