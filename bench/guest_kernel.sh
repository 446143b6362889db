#!/usr/bin/env bash
# The guest half of bench/run_kernel.sh: runs INSIDE one guest of scripts/qemu-guest.sh
# (modules 9p, 9pnet_fd and fuse; no network but lo), as root, under bash (copied in for
# $EPOCHREALTIME: busybox has no clock finer than a second without starting a process).
#
#   bash guest_kernel.sh BYTES FILES ROUNDS
#
# Everything runs in this one guest, so every figure carries the same TCG slowdown, and
# every connection is to 127.0.0.1 inside it (no slirp). Steps:
#   1. a tmpfs at /b (BYTES + 160 MiB; the guest has --mem for it), a galaxy-node on
#      tcp!127.0.0.1!0 with --auth none and its spool in /b/spool, and diod (the peer,
#      -n no auth) exporting /b/export;
#   2. kernel 9P2000.L mounts of the node (cache=none) at msize 64 KiB (diod's largest),
#      the kernel's default and 1 MiB + 24 (the node's largest), of diod (cache=none, its
#      default msize, which diod caps), the FUSE bridge (galaxy mount, as root), and the
#      galaxy tool's own client (galaxy cat/stat/write -a DIAL --auth none);
#   3. one task writes BYTES of zeros to its stdout (dd bs=1M from /dev/zero, into the
#      spool on /b); the spool file is hard-linked into /b/export as big, so diod serves
#      the very same bytes on the same tmpfs;
#   4. the sequential read of that file through each path: dd bs=1M to /dev/null through
#      each mount and of /b/export/big itself (the floor), in four quarters that the paths
#      take in turns (so that the host's changing load falls on all of them alike), and
#      galaxy cat > /dev/null of the whole file once, halfway; MiB/s;
#   5. FILES tasks (exec true), then the small-file rate: one `stat` of the FILES
#      task/N/status files then one `cat` of them (busybox's stat and cat; galaxy stat and
#      galaxy cat for the tool), median of 3 passes, the paths in turns; diod serves
#      copies of the same status texts at the same paths (/b/export/task/N/status), and
#      the floor reads those copies from the tmpfs; files/s (FILES / seconds of both);
#   6. a task's round trip, ROUNDS times per path, the paths in turns: read task/clone,
#      write "exec true" to task/N/ctl, read task/N/wait (which ends when the task has
#      ended), through the kernel mount, FUSE and the tool (three galaxy processes);
#      beside it, the shell's own fork+exec+wait of the same /usr/local/bin/true
#      (coreutils'); median and min – max in ms.
# Prints a markdown table (with ratios) and "guest: ..." notes; exits 1 if a step failed.
set -u
BYTES=${1:?usage: guest_kernel.sh BYTES FILES ROUNDS} FILES=${2:?} ROUNDS=${3:?}
MIB=$((BYTES / 1048576))
fails=0
note() { echo "guest: $*"; }
die() { echo "guest: FAIL $*"; exit 1; }
bad() { echo "guest: FAIL $*"; fails=$((fails + 1)); }
us() { local t=${1/./}; echo $((10#$t)); }  # $EPOCHREALTIME as integer microseconds
G() { local verb=$1; shift; galaxy "$verb" --auth none -a "$D" "$@"; }

# ---- 1. tmpfs, the node, diod -----------------------------------------------------------
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd  # for <(...): the guest's devtmpfs has none
mkdir -p /b && mount -t tmpfs -o "size=$((MIB + 160))m,mode=0755" bench /b || die "tmpfs"
mkdir -p /b/export/task
galaxy-node --listen 'tcp!127.0.0.1!0' --auth none --spool /b/spool --name g1 >/tmp/node.out 2>/tmp/node.err &
NP=""
for ((i = 0; i < 200; i++)); do
  NP=$(sed -n 's/^listening on tcp!127\.0\.0\.1!\([0-9]*\)$/\1/p' /tmp/node.out | head -n 1)
  [ -n "$NP" ] && break
  sleep 0.1
done
[ -n "$NP" ] || die "galaxy-node did not start: $(cat /tmp/node.err)"
D="tcp!127.0.0.1!$NP"
DP=5640
[ "$DP" = "$NP" ] && DP=5641
diod -f -n -l "127.0.0.1:$DP" -e /b/export -L /tmp/diod.log &
# Until diod listens (busybox's nc has no -z): its port in /proc/net/tcp, state 0A (LISTEN).
hexport=$(printf '%04X' "$DP")
for ((i = 0; i < 100; i++)); do grep -q ":$hexport 00000000:0000 0A" /proc/net/tcp && break; sleep 0.1; done

# ---- 2. mounts --------------------------------------------------------------------------
o="trans=tcp,version=9p2000.L,cache=none"
mkdir -p /mnt/k64 /mnt/k /mnt/k1m /mnt/d /mnt/d1m /mnt/f
mount -t 9p -o "$o,port=$NP,msize=65536" 127.0.0.1 /mnt/k64 || die "mount of the node, msize 65536"
mount -t 9p -o "$o,port=$NP" 127.0.0.1 /mnt/k || die "mount of the node, default msize"
mount -t 9p -o "$o,port=$NP,msize=1048600" 127.0.0.1 /mnt/k1m || die "mount of the node, msize 1048600"
mount -t 9p -o "$o,port=$DP,aname=/b/export" 127.0.0.1 /mnt/d || die "mount of diod: $(tail -n 3 /tmp/diod.log)"
mount -t 9p -o "$o,port=$DP,aname=/b/export,msize=1048600" 127.0.0.1 /mnt/d1m || die "mount of diod, msize 1048600"
galaxy mount --auth none "$D" /mnt/f || die "galaxy mount (FUSE)"
msize() { sed -n "s@.* $1 9p .*msize=\([0-9]*\).*@\1@p" /proc/mounts; }
for m in k64 k k1m d d1m; do eval "MS_$m=$(msize /mnt/$m)"; done
# /proc/mounts leaves out an msize equal to the kernel's default (p9_show_client_options):
# find which it is by mounting with candidates until one is left out too.
if [ -z "$MS_k" ]; then
  mkdir -p /mnt/probe
  for c in 131072 8192 65536 524288 1048576; do
    mount -t 9p -o "$o,port=$NP,msize=$c" 127.0.0.1 /mnt/probe || continue
    left_out=$([ -z "$(msize /mnt/probe)" ] && echo y)
    umount /mnt/probe
    [ -n "$left_out" ] && { MS_k=$c; break; }
  done
  [ -n "$MS_k" ] || MS_k="?"
fi
note "negotiated msize: node $MS_k64 (asked 65536), $MS_k (the kernel's default), $MS_k1m (asked 1048600);" \
  "diod $MS_d (default), $MS_d1m (asked 1048600)"
note "mounts: $(grep -E ' /mnt/(k|k64|k1m|d|d1m|f) ' /proc/mounts | tr '\n' ';')"

# ---- 3. the big file ----------------------------------------------------------------------
n=$(cat /mnt/k/task/clone) || die "cat task/clone"
t0=$EPOCHREALTIME
echo "exec dd if=/dev/zero bs=1048576 count=$MIB" >"/mnt/k/task/$n/ctl" || die "exec dd"
w=$(timeout 600 cat "/mnt/k/task/$n/wait")
t1=$EPOCHREALTIME
[ "$w" = "exit 0" ] || die "the writing task: wait says '$w'; stderr: $(cat /mnt/k/task/$n/stderr)"
spool=/b/spool/task/$n/stdout
[ "$(stat -c %s "$spool")" = "$BYTES" ] || die "$spool has $(stat -c %s "$spool") bytes, not $BYTES"
ln "$spool" /b/export/big || die "ln $spool /b/export/big"
note "task $n wrote $MIB MiB to $spool in $((($(us "$t1") - $(us "$t0")) / 1000)) ms (clone to wait)"
note "guest memory after: $(free -m | awk '/^Mem/{print $2 " MiB total, " $3 " used, " $4 " free, " $6 " buff/cache"}')"

# ---- 4. sequential reads ----------------------------------------------------------------
# The host is shared and the guest's speed follows its load, so the paths take turns: the
# file is read in four quarters (dd bs=1M skip= count=, a fresh open each), every path's
# first quarter, then every path's second, ..., the order rotated by one each round; each
# path has read the whole file, in order, by the end, over the same stretch of time as
# the others. galaxy cat cannot start at an offset: it reads the whole file once, between
# the second and third rounds. R[NAME] is MiB/s over the four quarters' total time;
# RQ[NAME] the slowest and fastest quarter.
declare -A R=() RQ=() TQ=() QMIN=() QMAX=()
big=task/$n/stdout
declare -A SRC=([local]=/b/export/big [d]=/mnt/d/big [k64]=/mnt/k64/$big [k]=/mnt/k/$big [k1m]=/mnt/k1m/$big [fuse]=/mnt/f/$big)
order=(local d k64 k k1m fuse)
if [ "$MS_d1m" != "$MS_d" ]; then SRC[d1m]=/mnt/d1m/big; order+=(d1m)
else note "diod asked for msize 1048600 got $MS_d1m, as by default: that read would be the same, not repeated"; fi
Q=$((MIB / 4))
mibs() { awk -v m="$1" -v u="$2" 'BEGIN{printf "%.1f", m / (u / 1e6)}'; }
for name in "${order[@]}"; do TQ[$name]=0; QMIN[$name]=""; QMAX[$name]=""; done
for ((q = 0; q < 4; q++)); do
  for ((j = 0; j < ${#order[@]}; j++)); do
    name=${order[$(((j + q) % ${#order[@]}))]}
    t0=$EPOCHREALTIME
    err=$(dd if="${SRC[$name]}" of=/dev/null bs=1M skip=$((q * Q)) count=$Q 2>&1)
    rc=$?
    t1=$EPOCHREALTIME
    if [ $rc != 0 ] || ! echo "$err" | grep -q "^$Q+0 records in"; then bad "quarter $q through $name: rc $rc: $err"; continue; fi
    u=$(($(us "$t1") - $(us "$t0")))
    TQ[$name]=$((TQ[$name] + u))
    r=$(mibs "$Q" "$u")
    note "quarter $q ($Q MiB) through $name: $u us, $r MiB/s"
    if [ -z "${QMIN[$name]}" ] || awk -v a="$r" -v b="${QMIN[$name]}" 'BEGIN{exit !(a < b)}'; then QMIN[$name]=$r; fi
    if [ -z "${QMAX[$name]}" ] || awk -v a="$r" -v b="${QMAX[$name]}" 'BEGIN{exit !(a > b)}'; then QMAX[$name]=$r; fi
  done
  if [ $q = 1 ]; then
    t0=$EPOCHREALTIME
    err=$(G cat "$big" 2>&1 >/dev/null)
    rc=$?
    t1=$EPOCHREALTIME
    if [ $rc != 0 ]; then bad "galaxy cat $big: rc $rc: $err"; R[tool]=0
    else R[tool]=$(mibs "$MIB" $(($(us "$t1") - $(us "$t0")))); note "galaxy cat of $MIB MiB: $(($(us "$t1") - $(us "$t0"))) us, ${R[tool]} MiB/s"; fi
    RQ[tool]="whole file, once"
  fi
done
for name in "${order[@]}"; do
  R[$name]=$(mibs "$MIB" "${TQ[$name]}")
  RQ[$name]="quarters ${QMIN[$name]} – ${QMAX[$name]}"
  note "read $MIB MiB through $name: ${TQ[$name]} us in all, ${R[$name]} MiB/s (${RQ[$name]})"
done
[ -n "${R[d1m]:-}" ] || R[d1m]=${R[d]}

# ---- 5. small files ----------------------------------------------------------------------
ids=()
for ((i = 0; i < FILES; i++)); do
  t=$(cat /mnt/k/task/clone) || die "clone $i"
  echo 'exec true' >"/mnt/k/task/$t/ctl" || die "exec true in task $t"
  ids+=("$t")
done
for t in "${ids[@]}"; do
  w=$(timeout 60 cat "/mnt/k/task/$t/wait")
  [ "$w" = "exit 0" ] || die "task $t: wait says '$w'"
  mkdir -p "/b/export/task/$t"
  cat "/mnt/k/task/$t/status" >"/b/export/task/$t/status"
done
note "$FILES tasks made; a status file: '$(cat /b/export/task/${ids[0]}/status)' ($(stat -c %s /b/export/task/${ids[0]}/status) bytes)"
paths() { local t; for t in "${ids[@]}"; do echo "$1task/$t/status"; done; }
mapfile -t P_local < <(paths /b/export/)
mapfile -t P_k < <(paths /mnt/k/)
mapfile -t P_d < <(paths /mnt/d/)
mapfile -t P_f < <(paths /mnt/f/)
mapfile -t P_tool < <(paths "")
# Same bytes through every path?
want=$(cat "${P_local[@]}" | md5sum)
for p in k d f; do
  declare -n arr=P_$p
  got=$(cat "${arr[@]}" | md5sum)
  [ "$got" = "$want" ] || bad "the $FILES status files read through /mnt/$p differ from the copies"
done
[ "$(G cat "${P_tool[@]}" | md5sum)" = "$want" ] || bad "the status files read by galaxy cat differ from the copies"
# small NAME: one pass of stat then cat of the FILES files through NAME; sets US to the
# microseconds it took.
small() {
  local t0 t1 rc=0
  declare -n arr=P_$1
  t0=$EPOCHREALTIME
  if [ "$1" = tool ]; then
    G stat "${arr[@]}" >/dev/null || rc=1
    G cat "${arr[@]}" >/dev/null || rc=1
  else
    stat "${arr[@]}" >/dev/null || rc=1
    cat "${arr[@]}" >/dev/null || rc=1
  fi
  t1=$EPOCHREALTIME
  [ $rc = 0 ] || bad "stat+cat through $1 failed"
  US=$(($(us "$t1") - $(us "$t0")))
}
# Three passes, each through every path in turn (the order rotated), as the reads above.
declare -A S=() SR=() SP=()
spaths=(local k d f tool)
for ((q = 0; q < 3; q++)); do
  for ((j = 0; j < ${#spaths[@]}; j++)); do
    name=${spaths[$(((j + q) % ${#spaths[@]}))]}
    small "$name"; SP[$name]+="$US "
  done
done
for name in "${spaths[@]}"; do
  read -r a b c <<<"${SP[$name]}"
  med=$(printf '%s\n' "$a" "$b" "$c" | sort -n | sed -n 2p)
  S[$name]=$(awk -v n="$FILES" -v u="$med" 'BEGIN{printf "%.0f", n / (u / 1e6)}')
  SR[$name]="passes $(printf '%s\n' "$a" "$b" "$c" | sort -n | awk -v n="$FILES" 'NR==1{hi=n/($1/1e6)} NR==3{lo=n/($1/1e6)} END{printf "%.0f – %.0f", lo, hi}')"
  note "stat+cat of $FILES files through $name: $a $b $c us (median ${S[$name]} files/s)"
done

# ---- 6. round trips -------------------------------------------------------------------------
# rt NAME: one clone, exec true, wait through NAME; sets US to the microseconds it took.
rt() {
  local t0 t1 t w=""
  t0=$EPOCHREALTIME
  case $1 in
    local) /usr/local/bin/true; w="exit $?" ;;
    tool)
      t=$(G cat task/clone) && echo 'exec true' | G write "task/$t/ctl" && w=$(G cat "task/$t/wait") ;;
    *)
      t=$(cat "/mnt/$1/task/clone") && echo 'exec true' >"/mnt/$1/task/$t/ctl" && w=$(cat "/mnt/$1/task/$t/wait") ;;
  esac
  t1=$EPOCHREALTIME
  [ "${w:-}" = "exit 0" ] || bad "round trip through $1: wait said '${w:-}'"
  US=$(($(us "$t1") - $(us "$t0")))
}
declare -A RT=()
for name in local k f tool; do RT[$name]=""; done
for ((r = 0; r < ROUNDS; r++)); do
  for name in local k f tool; do rt $name; RT[$name]+="$US "; done
done
# ms_stats "US US ...": "median min max" in ms
ms_stats() {
  printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END{m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2;
    printf "%.1f %.1f %.1f\n", m/1000, a[1]/1000, a[NR]/1000}'
}
declare -A RTM=() RTR=()
for name in local k f tool; do
  read -r med mn mx <<<"$(ms_stats "${RT[$name]}")"
  RTM[$name]=$med RTR[$name]="$mn – $mx"
  note "round trips through $name (us): ${RT[$name]}"
done

# ---- the table -----------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
echo
echo "| figure | path | value | spread | unit | vs diod (kernel, same run) | vs floor |"
echo "|---|---|---:|---|---|---:|---:|"
echo "| $MIB MiB sequential read | tmpfs, dd bs=1M of the file itself — **floor** | ${R[local]} | ${RQ[local]} | MiB/s |  | 1 |"
echo "| | **diod**, kernel 9P2000.L, msize $MS_d (its default; asked 1048600: $MS_d1m) — **peer** | ${R[d]} | ${RQ[d]} | MiB/s | 1 | $(ratio "${R[d]}" "${R[local]}") |"
echo "| | Galaxy node, kernel 9P2000.L, msize $MS_k64 (as diod's) | ${R[k64]} | ${RQ[k64]} | MiB/s | $(ratio "${R[k64]}" "${R[d]}") | $(ratio "${R[k64]}" "${R[local]}") |"
echo "| | Galaxy node, kernel 9P2000.L, msize $MS_k (the kernel's default) | ${R[k]} | ${RQ[k]} | MiB/s | $(ratio "${R[k]}" "${R[d]}") | $(ratio "${R[k]}" "${R[local]}") |"
echo "| | Galaxy node, kernel 9P2000.L, msize $MS_k1m (asked 1048600) | ${R[k1m]} | ${RQ[k1m]} | MiB/s | $(ratio "${R[k1m]}" "${R[d]}") | $(ratio "${R[k1m]}" "${R[local]}") |"
echo "| | Galaxy node, FUSE bridge (galaxy mount), dd bs=1M | ${R[fuse]} | ${RQ[fuse]} | MiB/s | $(ratio "${R[fuse]}" "${R[d]}") | $(ratio "${R[fuse]}" "${R[local]}") |"
echo "| | Galaxy node, galaxy cat (its own client, msize 1048600) | ${R[tool]} | ${RQ[tool]} | MiB/s | $(ratio "${R[tool]}" "${R[d]}") | $(ratio "${R[tool]}" "${R[local]}") |"
echo "| stat+cat of $FILES small files (task/N/status; median of 3) | tmpfs, the copies — **floor** | ${S[local]} | ${SR[local]} | files/s |  | 1 |"
echo "| | **diod**, kernel, msize $MS_d, the copies — **peer** | ${S[d]} | ${SR[d]} | files/s | 1 | $(ratio "${S[d]}" "${S[local]}") |"
echo "| | Galaxy node, kernel, msize $MS_k | ${S[k]} | ${SR[k]} | files/s | $(ratio "${S[k]}" "${S[d]}") | $(ratio "${S[k]}" "${S[local]}") |"
echo "| | Galaxy node, FUSE bridge | ${S[f]} | ${SR[f]} | files/s | $(ratio "${S[f]}" "${S[d]}") | $(ratio "${S[f]}" "${S[local]}") |"
echo "| | Galaxy node, galaxy stat + galaxy cat (one process each) | ${S[tool]} | ${SR[tool]} | files/s | $(ratio "${S[tool]}" "${S[d]}") | $(ratio "${S[tool]}" "${S[local]}") |"
echo "| task round trip: clone, exec true, wait (median of $ROUNDS; min – max) | fork+exec+wait of the same true in the shell — **floor** | ${RTM[local]} | ${RTR[local]} | ms |  | 1 |"
echo "| | Galaxy node, kernel mount (cat, echo >, cat) | ${RTM[k]} | ${RTR[k]} | ms |  | $(ratio "${RTM[k]}" "${RTM[local]}") |"
echo "| | Galaxy node, FUSE bridge (cat, echo >, cat) | ${RTM[f]} | ${RTR[f]} | ms |  | $(ratio "${RTM[f]}" "${RTM[local]}") |"
echo "| | Galaxy node, galaxy cat, galaxy write, galaxy cat | ${RTM[tool]} | ${RTR[tool]} | ms |  | $(ratio "${RTM[tool]}" "${RTM[local]}") |"
echo
galaxy umount /mnt/f 2>/dev/null
umount /mnt/k64 /mnt/k /mnt/k1m /mnt/d /mnt/d1m 2>/dev/null
kill %1 %2 2>/dev/null
note "$fails failures"
[ "$fails" = 0 ]
