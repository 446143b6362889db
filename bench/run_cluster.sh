#!/usr/bin/env bash
# Several machines, measured on one (issue 13's benchmark), in one run:
#
#   (a) the main job (examples/wordfreq.sh through a FUSE mount) on 1 node host, then on 3
#       node hosts: network namespaces on a bridge (as tests/testnet.hpp makes them, here
#       with ip(8) and nsenter(1)), each node joined with `galaxy-node --join`, 1 CPU each,
#       MUNGE on every listener; beside GNU parallel -j1 and -j3 running the same map
#       commands over the same shares, then the same reduce (the peer, in the same run).
#       The namespaces share this machine's cores: 3 node hosts are 3 claimed CPUs on
#       $(nproc) real ones.
#   (b) a join storm on loopback: STORM (200) real `galaxy-node --join` processes started
#       at once; the time until the scheduler's /status counts them all up, then its CPU
#       over 10 s of idling (utime + stime from /proc/PID/stat), its RSS and its threads,
#       per node against the scheduler alone. Each galaxy-node takes an inotify instance
#       and the default limit is 128 per user: fs.inotify.max_user_instances is raised to
#       1024 for the run and restored at exit.
#   (c) how long a cut-off node takes to be noticed (down in /status) and its job to run
#       again elsewhere (attempts=2, running), with the defaults (heartbeat 1 s, down after
#       30 s) and with short settings (heartbeat 0.2 s, down after 1 s), two ways: the
#       host's link cut at the switch (silence), and the node daemon killed with SIGKILL
#       (a closed connection: its job is held until the lease has run out).
#
#   sudo ./bench/run_cluster.sh                 # uses build/ (any build type; say which)
#   sudo BUILD_DIR=build-bench ./bench/run_cluster.sh
#   REPS=3 MAPS=12 STORM=200 sudo -E ./bench/run_cluster.sh
#
# Needs root, ip, nsenter, munged, /dev/fuse and GNU parallel. Never part of the tests:
# it prints figures and asserts nothing about speed. The output is kept in
# build-bench/results-cluster-<UTC date>.md.
set -euo pipefail
trap 'echo "run_cluster.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LC_ALL=C

reps=${REPS:-3}
maps=${MAPS:-12}
storm=${STORM:-200}
build=${BUILD_DIR:-build}
g=$PWD/$build/galaxy S=$PWD/$build/galaxy-sched N=$PWD/$build/galaxy-node
[[ $(id -u) == 0 ]] || { echo "run_cluster.sh: needs root (network namespaces); nothing measured" >&2; exit 0; }
for x in "$g" "$S" "$N" /usr/sbin/munged /usr/bin/nsenter /usr/sbin/ip; do
  [[ -x $x ]] || { echo "run_cluster.sh: $x is missing" >&2; exit 1; }
done
[[ -e /dev/fuse ]] || { echo "run_cluster.sh: /dev/fuse is absent; nothing measured" >&2; exit 0; }
command -v parallel >/dev/null || { echo "run_cluster.sh: GNU parallel is missing (scripts/deps.sh)" >&2; exit 1; }
mkdir -p build-bench

tmp=$(mktemp -d /tmp/galaxy-cluster-bench.XXXXXX)
chmod 0711 "$tmp"
P=gxb$$                       # namespace names: $P-sw (the bridge), $P-sched, $P-n1 .. $P-n3
net=10.233.1                  # sched .2, nI .(I+2)
SD="tcp!$net.2!5641"
inotify_was=$(cat /proc/sys/fs/inotify/max_user_instances)
pids=()
mnt=$tmp/mnt
cleanup() {
  set +e
  grep -qs " $mnt " /proc/self/mountinfo && { fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt"; }
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  for ns in $(ip netns list | awk -v p="$P-" 'index($1, p) == 1 { print $1 }'); do ip netns del "$ns"; done
  echo "$inotify_was" >/proc/sys/fs/inotify/max_user_instances
  rm -rf "$tmp"
}
trap cleanup EXIT

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f\n", (b - a) * 1000 }'; }
# Run in the background only ("in_ns HOST CMD &"): exec, so that $! is the daemon's pid.
in_ns() { local ns=$1; shift; exec nsenter --net="/run/netns/$P-$ns" -- "$@"; }
# Waits (up to $2 s) until the command in $1 succeeds.
until_true() { local t=$EPOCHREALTIME; until eval "$1"; do (($(ms_since "$t") < ${2:-60} * 1000)) || return 1; sleep 0.05; done; }

# One munged for every host (one key; a credential is bound to the server's address, not
# to the munged that made it, so sharing it changes nothing that is measured).
head -c 1024 /dev/urandom >"$tmp/munge.key"; chmod 0600 "$tmp/munge.key"
mkdir -m 0711 "$tmp/munge"
/usr/sbin/munged --foreground --socket="$tmp/munge/sock" --key-file="$tmp/munge.key" --pid-file="$tmp/munge/pid" \
  --log-file="$tmp/munge/log" --seed-file="$tmp/munge/seed" &
pids+=($!)
until_true '[[ -S $tmp/munge/sock ]]' 10
M=(--auth munge --munge-socket "$tmp/munge/sock")

# The network: a bridge in a namespace of its own, a veth per host.
ip netns add "$P-sw"
ip -n "$P-sw" link add br0 type bridge
ip -n "$P-sw" link set br0 up
i=0
for h in sched n1 n2 n3; do
  ip netns add "$P-$h"
  ip -n "$P-sw" link add "h$i" type veth peer name eth0 netns "$P-$h"
  ip -n "$P-sw" link set "h$i" master br0 up
  ip -n "$P-$h" addr add "$net.$((i + 2))/24" dev eth0
  ip -n "$P-$h" link set eth0 up
  ip -n "$P-$h" link set lo up
  i=$((i + 1))
done

sched_pid=
start_sched() {  # extra options...
  in_ns sched "$S" --listen "$SD" "${M[@]}" --state "$tmp/state" "$@" >"$tmp/sched.out" 2>"$tmp/sched.log" &
  sched_pid=$!
  pids+=($sched_pid)
  until_true 'grep -q "^listening on" "$tmp/sched.out"' 20
}
declare -A node_pid
start_node() {  # NAME
  mkdir -p "$tmp/spool-$1"
  # --allow-root-tasks: the jobs are root's (this script's), and wordfreq's reduce reads
  # the maps' output through root's own mount, which no other user may enter.
  in_ns "$1" "$N" --join "$SD" "${M[@]}" --spool "$tmp/spool-$1" --name "$1" --cpus 1 --allow-root-tasks \
    --join-retry 0.2 --join-retry-max 1 >/dev/null 2>>"$tmp/node-$1.log" &
  node_pid[$1]=$!
  pids+=($!)
}
mount_sched() {
  mkdir -p "$mnt"
  in_ns sched "$g" mount -f "${M[@]}" "$SD" "$mnt" 2>>"$tmp/mount.log" &
  pids+=($!)
  until_true '[[ -r $mnt/status ]]' 20
}
nodes_up() { sed -n 's/.*nodes_up=\([0-9]*\).*/\1/p' "$mnt/status" 2>/dev/null; }

# ---- (a) the main job on 1 and on 3 node hosts, and GNU parallel beside it -------------
ls -d /usr/share/doc/*/copyright >"$tmp/inputs"
nfiles=$(wc -l <"$tmp/inputs")
bytes=$(tr '\n' '\0' <"$tmp/inputs" | xargs -0 cat -- | wc -c)
awk -v n="$maps" -v dir="$tmp" '{ print > (dir "/share." (NR - 1) % n) }' "$tmp/inputs"
MAP=$(sed -n "s/^MAP='\(.*\)'\$/\1/p" examples/wordfreq.sh)
printf '%s\n' "$MAP" >"$tmp/map.sh"
tr '\n' '\0' <"$tmp/inputs" | xargs -0 cat -- | tr -cs '[:alpha:]' '\n' | tr '[:upper:]' '[:lower:]' |
  sed '/^$/d' | sort | uniq -c | awk '{ print $1, $2 }' | sort -k1,1nr -k2,2 >"$tmp/local.out"

start_sched
mount_sched
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A cluster_ms parallel_ms
for hosts in 1 3; do
  for ((k = 1; k <= hosts; k++)); do [[ -n ${node_pid[n$k]:-} ]] || start_node "n$k"; done
  until_true '[[ $(nodes_up) == '"$hosts"' ]]' 30
  cs=() ps=()
  for ((r = 0; r <= reps; r++)); do  # run 0 warms the page cache and is not counted
    out=$(examples/wordfreq.sh -m "$mnt" --maps "$maps")
    grep -q '^result: match' <<<"$out" || { echo "$out"; echo "run_cluster.sh: the main job failed" >&2; exit 1; }
    c=$(sed -n 's/^elapsed on the cluster: \([0-9]*\) ms$/\1/p' <<<"$out")
    t=$EPOCHREALTIME
    parallel -j"$hosts" 'xargs -d "\n" sh '"$tmp"'/map.sh < {} > {}.out' ::: "$tmp"/share.[0-9]*
    cat "$tmp"/share.*.out | awk '{ c[$2] += $1 } END { for (w in c) print c[w], w }' | sort -k1,1nr -k2,2 >"$tmp/parallel.out"
    p=$(ms_since "$t")
    rm -f "$tmp"/share.*.out
    cmp -s "$tmp/parallel.out" "$tmp/local.out" || { echo "run_cluster.sh: GNU parallel's table differs" >&2; exit 1; }
    ((r > 0)) && cs+=("$c") ps+=("$p")
  done
  cluster_ms[$hosts]="${cs[*]}" parallel_ms[$hosts]="${ps[*]}"
  echo "(a) $hosts node hosts: galaxy ${cs[*]} ms; parallel ${ps[*]} ms" >&2
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- (c) noticing a cut-off node, and its job running again elsewhere -----------------
# One job of `sleep 600`; its host is cut (silence) or its daemon killed (a closed
# connection). Figures from the cut: down in /status, then attempts=2 and running.
declare -A notice_ms restart_ms
measure_cut() {  # LABEL HOW(cut|kill)
  local j st node idx t d=- r=-
  j=$(cat "$mnt/jobs/clone")
  echo 'exec sleep 600' >"$mnt/jobs/$j/ctl"
  until_true '[[ $(cat $mnt/jobs/'"$j"'/status) == *state=running* ]]' 30
  st=$(cat "$mnt/jobs/$j/status")
  node=$(sed -n 's/.* node=\([^ ]*\) .*/\1/p' <<<"$st")
  idx=${node#n}
  t=$EPOCHREALTIME
  if [[ $2 == cut ]]; then ip -n "$P-sw" link set "h$idx" down; else kill -9 "${node_pid[$node]}"; fi
  while :; do
    [[ $d == - && $(cat "$mnt/status") == *nodes_down=1* ]] && d=$(ms_since "$t")
    st=$(cat "$mnt/jobs/$j/status")
    if [[ $st == *attempts=2* && $st == *state=running* ]]; then r=$(ms_since "$t"); break; fi
    (($(ms_since "$t") < 120000)) || break
    sleep 0.05
  done
  notice_ms[$1]=$d restart_ms[$1]=$r
  echo "(c) $1: down after $d ms, running again after $r ms" >&2
  echo 'kill' >"$mnt/jobs/$j/ctl" 2>/dev/null || true
  if [[ $2 == cut ]]; then ip -n "$P-sw" link set "h$idx" up; else start_node "$node"; fi
  until_true '[[ $(nodes_up) == 3 ]]' 120 || true
}
measure_cut "defaults, link cut" cut
measure_cut "defaults, daemon killed" kill
# Short settings: the scheduler again (SIGTERM, same state), the nodes rejoin by themselves.
fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt"
kill "$sched_pid" 2>/dev/null || true; wait "$sched_pid" 2>/dev/null || true
start_sched --heartbeat 0.2 --down-after 1
mount_sched
until_true '[[ $(nodes_up) == 3 ]]' 60
measure_cut "heartbeat 0.2 s, down after 1 s, link cut" cut
measure_cut "heartbeat 0.2 s, down after 1 s, daemon killed" kill
fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt"
kill "$sched_pid" 2>/dev/null || true; wait "$sched_pid" 2>/dev/null || true
for n in n1 n2 n3; do kill -9 "${node_pid[$n]}" 2>/dev/null || true; done

# ---- (b) a join storm on loopback -------------------------------------------------------
echo 1024 >/proc/sys/fs/inotify/max_user_instances
LD="tcp!127.0.0.1!5741"
"$S" --listen "$LD" "${M[@]}" --state "$tmp/storm-state" >"$tmp/storm.out" 2>"$tmp/storm.log" &
spid=$!
pids+=($spid)
until_true 'grep -q "^listening on" "$tmp/storm.out"' 20
stat_of() { awk '/^VmRSS/ { r = $2 } /^Threads/ { t = $2 } END { print r, t }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
read -r rss0 thr0 < <(stat_of "$spid")
t=$EPOCHREALTIME
for ((k = 0; k < storm; k++)); do
  mkdir -p "$tmp/storm/s$k"
  "$N" --join "$LD" "${M[@]}" --spool "$tmp/storm/s$k" --name "s$k" --cpus 1 --no-cgroups \
    --join-retry 0.2 --join-retry-max 2 >/dev/null 2>>"$tmp/storm-nodes.log" &
  pids+=($!)
done
spawned_ms=$(ms_since "$t")
up() { "$g" cat -a "$LD" "${M[@]}" status 2>/dev/null | sed -n 's/.*nodes_up=\([0-9]*\).*/\1/p'; }
until_true '[[ $(up) == '"$storm"' ]]' 300 && all_ms=$(ms_since "$t") || all_ms="not reached in 300 s ($(up) up)"
sleep 2
hz=$(getconf CLK_TCK)
c0=$(cpu_ticks "$spid"); t=$EPOCHREALTIME
sleep 10
c1=$(cpu_ticks "$spid"); idle_s=$(awk -v t="$t" -v n="$EPOCHREALTIME" 'BEGIN { print n - t }')
read -r rss1 thr1 < <(stat_of "$spid")
idle_pct=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v s="$idle_s" 'BEGIN { printf "%.1f", (b - a) / hz / s * 100 }')
node_rss=$(for p in $(pgrep -f -- "--join $LD"); do awk '/^VmRSS/ { print $2 }' "/proc/$p/status" 2>/dev/null; done | median)
echo "$inotify_was" >/proc/sys/fs/inotify/max_user_instances

# ---- the record --------------------------------------------------------------------------
med() { printf '%s\n' $1 | median; }
out=build-bench/results-cluster-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "## Several machines on one (bench/run_cluster.sh), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), kernel $(uname -r);" \
    "shared with other work: load average before / after (a): $load_before / $load_after"
  echo "- binaries: $build ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt"))"
  echo "- command: bench/run_cluster.sh (REPS=$reps MAPS=$maps STORM=$storm); fs.inotify.max_user_instances" \
    "raised from $inotify_was to 1024 for (b), restored"
  echo
  echo "### (a) the main job: $nfiles files, $bytes bytes, $maps map jobs + 1 reduce; median of $reps after a warm-up"
  echo
  echo "Node hosts are network namespaces on a bridge, each node joined with --join and --cpus 1, MUNGE on."
  echo "All of them share this machine's $(nproc) cores: 3 node hosts claim 3 CPUs on $(nproc)."
  echo
  echo "| node hosts | Galaxy (wordfreq.sh through the mount) | GNU parallel -jN, same map and reduce | Galaxy / parallel | runs (Galaxy; parallel), ms |"
  echo "|---:|---:|---:|---:|---|"
  for h in 1 3; do
    C=$(med "${cluster_ms[$h]}") Pm=$(med "${parallel_ms[$h]}")
    echo "| $h | $C ms | $Pm ms | $(awk -v c="$C" -v p="$Pm" 'BEGIN { printf "%.2f×", c / p }') | ${cluster_ms[$h]}; ${parallel_ms[$h]} |"
  done
  echo
  echo "### (b) join storm: $storm galaxy-node --join processes on loopback"
  echo
  echo "| what | figure |"
  echo "|---|---:|"
  echo "| starting the $storm processes (fork + exec by this script) | $spawned_ms ms |"
  echo "| from the first start until /status says nodes_up=$storm | $all_ms ms |"
  echo "| scheduler CPU while the $storm nodes idle (heartbeat 1 s), over ${idle_s%.*} s | $idle_pct % of one core |"
  echo "| scheduler RSS alone / with $storm nodes | $rss0 KiB / $rss1 KiB |"
  echo "| scheduler RSS per node | $(awk -v a="$rss0" -v b="$rss1" -v n="$storm" 'BEGIN { printf "%.1f KiB", (b - a) / n }') |"
  echo "| scheduler threads alone / with $storm nodes | $thr0 / $thr1 |"
  echo "| one galaxy-node's RSS (median) | $node_rss KiB |"
  echo
  echo "### (c) a cut-off node: from the cut until it is down in /status, and until its job runs again elsewhere"
  echo
  echo "| settings, fault | noticed (down) | job running again (attempts=2) |"
  echo "|---|---:|---:|"
  for k in "defaults, link cut" "defaults, daemon killed" "heartbeat 0.2 s, down after 1 s, link cut" \
    "heartbeat 0.2 s, down after 1 s, daemon killed"; do
    echo "| $k | ${notice_ms[$k]} ms | ${restart_ms[$k]} ms |"
  done
} | tee "$out"
echo
echo "(kept in $out)"
