#!/usr/bin/env bash
# The host rows of bench/run_kernel.sh alone, in rounds, with each server's CPU: one file
# of MIB MiB (a task's stdout on /dev/shm, hard-linked into diod's export) read by
# `galaxy cat` from galaxy-node (msize 1 MiB + 24) and by `diodcat` from diod (msize
# 65536), taking turns. Prints per round: MiB/s and the server's CPU (utime + stime,
# /proc/PID/stat, 10 ms ticks) per MiB read, and the load average. Never part of the
# tests; takes under a minute. Needs diod (apt-get install diod).
#
#   bench/run_read_host.sh [BUILD_DIR (build)] [MIB (512)] [ROUNDS (3)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
b=${1:-build}; mib=${2:-512}; rounds=${3:-3}
[[ -x /usr/sbin/diod && -x /usr/sbin/diodcat ]] || { echo "run_read_host.sh: needs diod (apt-get install diod)" >&2; exit 77; }
tmp=$(mktemp -d /dev/shm/hr.XXXXXX); chmod 711 $tmp; mkdir $tmp/export
np=""; dpid=""
trap 'kill $np $dpid 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
$b/galaxy-node --listen 'tcp!127.0.0.1!0' --auth none --spool $tmp/spool --name hr >$tmp/out 2>$tmp/err & np=$!
sleep 0.5; port=$(sed -n 's/^listening on tcp!127\.0\.0\.1!\([0-9]*\)$/\1/p' $tmp/out); ga=(--auth none -a "tcp!127.0.0.1!$port")
n=$($b/galaxy cat "${ga[@]}" task/clone); echo "exec dd if=/dev/zero bs=1048576 count=$mib" | $b/galaxy write "${ga[@]}" task/$n/ctl
$b/galaxy cat "${ga[@]}" task/$n/wait >/dev/null; ln $tmp/spool/task/$n/stdout $tmp/export/big
dp=5739; while ss -ltn | grep -q ":$dp "; do dp=$((dp+1)); done
/usr/sbin/diod -f -n -l "127.0.0.1:$dp" -e $tmp/export -L $tmp/diod.log & dpid=$!; sleep 1
t() { awk '{print $14+$15}' /proc/$1/stat; }
for r in $(seq $rounds); do
  a=$(t $np); t0=$EPOCHREALTIME; $b/galaxy cat "${ga[@]}" task/$n/stdout >/dev/null; t1=$EPOCHREALTIME; c=$(t $np)
  g=$(awk -v m=$mib -v t0=$t0 -v t1=$t1 -v c=$((c-a)) 'BEGIN{printf "%.0f MiB/s %.2f ms/MiB", m/(t1-t0), c*10/m}')
  a=$(t $dpid); t0=$EPOCHREALTIME; /usr/sbin/diodcat -s "127.0.0.1:$dp" -a $tmp/export big >/dev/null; t1=$EPOCHREALTIME; c=$(t $dpid)
  d=$(awk -v m=$mib -v t0=$t0 -v t1=$t1 -v c=$((c-a)) 'BEGIN{printf "%.0f MiB/s %.2f ms/MiB", m/(t1-t0), c*10/m}')
  echo "round $r: galaxy cat $g | diodcat $d | load $(cut -d' ' -f1 /proc/loadavg)"
done
