#!/usr/bin/env bash
# Issue 14: Galaxy through the Linux kernel's 9P client, through the FUSE bridge and
# natively, beside diod (the peer) through the same kernel client, all in ONE QEMU guest
# boot (scripts/qemu-guest.sh: Debian's kernel under TCG, --smp 1). Never part of the
# tests. Measures, inside the guest (bench/guest_kernel.sh says exactly how):
#   - a sequential read of a 1 GiB task stdout file (MiB/s, MiB = 2^20 bytes) through
#     kernel 9P2000.L mounts of galaxy-node (cache=none; msize 64 KiB as diod's, the
#     kernel's default, and 1 MiB), the FUSE bridge (galaxy mount), galaxy cat; diod's
#     kernel mount of the same file (hard-linked into its export); dd of the file itself
#     (the floor); the mounts read it in quarters, taking turns;
#   - the small-file rate: one stat then one cat of FILES task/N/status files (files/s),
#     through the node's kernel mount, FUSE, galaxy stat + cat; diod serving copies of the
#     same texts; the copies on tmpfs (floor);
#   - a task's round trip: read task/clone, write "exec true" to ctl, read wait (ms,
#     median and min – max of ROUNDS), through the kernel mount, FUSE and galaxy's verbs;
#     beside the shell's fork+exec+wait of the same true (floor).
# Before the guest boots, the same 1 GiB read on the host itself (no TCG), for scale: dd
# of the file on /dev/shm, galaxy cat from a galaxy-node there, diodcat (diod's own
# client) from diod there; the guest's floor against the host's is TCG's slowdown for
# plain copying. Prints markdown tables with each figure's ratio to diod's and to the
# floor; the output is kept in build-bench/results-kernel-<UTC date>.md.
#
#   sudo ./bench/run_kernel.sh
#
# Environment: BUILD_DIR (build: it must hold galaxy-node and galaxy already; this
# script builds nothing), BYTES (1073741824; a multiple of 4 MiB), FILES (200), ROUNDS
# (9), MEM (guest MiB, default BYTES + 1536 MiB), TIMEOUT (900 s for the guest),
# QUIET_MAX (20) and QUIET_WAIT (60): before starting, wait at most QUIET_WAIT s until
# other tenants use less than QUIET_MAX % of the host's CPUs (the gate of bench/run.sh; it
# cannot hold them off during the run, which is why the load is printed before and
# after). Needs qemu-system-x86, busybox-static and a kernel (scripts/deps.sh), diod
# (/usr/sbin/diod and diodcat: apt-get install diod), bash and coreutils' true (copied
# into the guest, where everything runs as the guest's root); root on the host only
# where /boot's kernel is 0600. Exits 77 when something is missing, else the guest
# script's status (1: a step failed). Takes 7-9 minutes on a 2-core machine.
#
# What limits the figures:
#   - TCG. The guest's CPU is emulated (no KVM): about 12 times slower than the host for
#     copying memory on this machine, and slower by other factors for system calls, page
#     faults and switches between processes. The absolute figures say little about the
#     host; only the ratios within the guest (same kernel, same emulation, same minutes)
#     are meant to be compared. One guest CPU: --smp 2 made a read through diod 3.6 times
#     slower (wake-ups across emulated CPUs on a busy 2-core host), and with one CPU
#     client and server share it, as on a 1-CPU machine.
#   - The shared host: the guest is one host thread competing with whatever else runs,
#     and guest time is host time; hence the turns, and the load printed before and after.
#   - No slirp: every connection is 127.0.0.1 inside the guest. tmpfs: the files are in
#     the guest's memory, so no disk is measured.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build=${BUILD_DIR:-build}
bytes=${BYTES:-1073741824}
files=${FILES:-200}
rounds=${ROUNDS:-9}
mem=${MEM:-$((bytes / 1048576 + 1536))}
timeout_s=${TIMEOUT:-900}
((bytes > 0 && bytes % 4194304 == 0)) || { echo "run_kernel.sh: BYTES must be a multiple of 4 MiB (4194304)" >&2; exit 2; }

skip() { echo "run_kernel.sh: SKIP: $*" >&2; exit 77; }
for b in galaxy-node galaxy; do
  [[ -x $build/$b ]] || skip "no $build/$b (cmake --build $build --target galaxy-node galaxy)"
done
[[ -x /usr/sbin/diod && -x /usr/sbin/diodcat ]] || skip "no /usr/sbin/diod or diodcat (Debian: apt-get install diod)"
bash_bin=$(command -v bash)
true_bin=$(type -P true)

out_dir=build-bench
mkdir -p "$out_dir"
out=$out_dir/results-kernel-$(date -u +%Y%m%dT%H%M%SZ).md
tmp=$(mktemp -d /dev/shm/run-kernel.XXXXXX)
trap 'stop_host; rm -rf "$tmp"' EXIT
kernel=$(ls -1 /boot/vmlinuz-* /var/cache/galaxy-kernel/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
# bg_load: the other tenants' CPU use over 1 s, % of all CPUs (bench/quiet.sh).
source bench/quiet.sh  # (the working directory is the checkout, from the cd above)
# host_rows: the same 1 GiB read on the host itself, no TCG, for scale: the file read
# with dd from /dev/shm (the floor), read from a galaxy-node there by galaxy cat (msize
# 1 MiB + 24), and from diod by diod's own user-space client, diodcat (msize 65536, its
# largest). Prints a small table. Everything it starts is stopped by pid.
host_pids=()
stop_host() {
  local p
  for p in "${host_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  host_pids=()
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a / b}'; }
host_rows() {
  local mib=$((bytes / 1048576)) np="" dp=5739 i n t0 t1 f_dd f_cat f_diod
  chmod 0711 "$tmp"  # tasks run as nobody and must reach the spool
  mkdir -p "$tmp/export"
  "$build/galaxy-node" --listen 'tcp!127.0.0.1!0' --auth none --spool "$tmp/spool" --name h1 \
    >"$tmp/node.out" 2>"$tmp/node.err" &
  host_pids+=($!)
  for ((i = 0; i < 100; i++)); do
    np=$(sed -n 's/^listening on tcp!127\.0\.0\.1!\([0-9]*\)$/\1/p' "$tmp/node.out" | head -n 1)
    [[ -n $np ]] && break
    sleep 0.1
  done
  local g=(--auth none -a "tcp!127.0.0.1!$np")
  n=$("$build/galaxy" cat "${g[@]}" task/clone) &&
    echo "exec dd if=/dev/zero bs=1048576 count=$mib" | "$build/galaxy" write "${g[@]}" "task/$n/ctl" &&
    [[ $("$build/galaxy" cat "${g[@]}" "task/$n/wait") == "exit 0" ]] &&
    ln "$tmp/spool/task/$n/stdout" "$tmp/export/big" || {
    echo "- host rows: the node's task failed: $(cat "$tmp/node.err")"
    stop_host
    return
  }
  while ss -ltn | grep -q ":$dp "; do dp=$((dp + 1)); done
  /usr/sbin/diod -f -n -l "127.0.0.1:$dp" -e "$tmp/export" -L "$tmp/diod.log" &
  host_pids+=($!)
  for ((i = 0; i < 100; i++)); do ss -ltn | grep -q "127.0.0.1:$dp " && break; sleep 0.1; done
  mibs() { awk -v a="$1" -v b="$2" -v n="$bytes" 'BEGIN{printf "%.0f", n / 1048576 / (b - a)}'; }
  t0=$EPOCHREALTIME; dd if="$tmp/export/big" of=/dev/null bs=1M status=none; t1=$EPOCHREALTIME
  f_dd=$(mibs "$t0" "$t1")
  t0=$EPOCHREALTIME; "$build/galaxy" cat "${g[@]}" "task/$n/stdout" >/dev/null; t1=$EPOCHREALTIME
  f_cat=$(mibs "$t0" "$t1")
  t0=$EPOCHREALTIME
  /usr/sbin/diodcat -s "127.0.0.1:$dp" -a "$tmp/export" big >/dev/null
  t1=$EPOCHREALTIME
  f_diod=$(mibs "$t0" "$t1")
  stop_host
  rm -rf "$tmp/spool" "$tmp/export"
  echo "- the same $mib MiB read on the host, no TCG, for scale (one pass each, before the guest):"
  echo
  echo "| host, no TCG | MiB/s | vs diodcat | vs floor |"
  echo "|---|---:|---:|---:|"
  echo "| dd bs=1M of the file on /dev/shm — **floor** | $f_dd |  | 1 |"
  echo "| diodcat (diod's client, msize 65536) from diod — **peer** | $f_diod | 1 | $(ratio "$f_diod" "$f_dd") |"
  echo "| galaxy cat (msize 1048600) from galaxy-node, task/N/stdout | $f_cat |" \
    "$(ratio "$f_cat" "$f_diod") | $(ratio "$f_cat" "$f_dd") |"
}
start=$SECONDS
bg=$(bg_load)
while ((bg >= ${QUIET_MAX:-20} && SECONDS - start < ${QUIET_WAIT:-60})); do bg=$(bg_load); done
waited=$((SECONDS - start))
start=$SECONDS
host_rows >"$tmp/host.md" 2>&1
{
  echo "## Kernel 9P mounts (bench/run_kernel.sh), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- host: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo))," \
    "$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)," \
    "$( . /etc/os-release && echo "$PRETTY_NAME")"
  echo "- guest: ${kernel##*/} under $(qemu-system-x86_64 --version | head -n 1) (TCG, -cpu max, --smp 1, --mem $mem)"
  echo "- binaries: $build ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt" 2>/dev/null));" \
    "$("$build/galaxy" --version 2>/dev/null | head -n 1); diod $(dpkg-query -W -f '${Version}' diod 2>/dev/null)"
  echo "- host load before: other tenants used ${bg} % of the CPUs over the last second" \
    "(the quiet gate waited ${waited} s for < ${QUIET_MAX:-20} %); uptime: $(uptime)"
  echo "- command: BYTES=$bytes FILES=$files ROUNDS=$rounds bench/run_kernel.sh"
  cat "$tmp/host.md"
  echo
  set +e
  scripts/qemu-guest.sh --mem "$mem" --smp 1 --timeout "$timeout_s" \
    --module 9p --module 9pnet_fd --module fuse \
    --file "$build/galaxy-node:/usr/local/bin/galaxy-node" --file "$build/galaxy:/usr/local/bin/galaxy" \
    --file /usr/sbin/diod:/usr/sbin/diod --file "$bash_bin:/usr/local/bin/bash" \
    --file "$true_bin:/usr/local/bin/true" --file bench/guest_kernel.sh:/root/guest_kernel.sh \
    -- /usr/local/bin/bash /root/guest_kernel.sh "$bytes" "$files" "$rounds"
  rc=$?
  echo "$rc" >"$tmp/rc"
  set -e
  echo
  echo "- host uptime after: $(uptime)"
  echo "- the whole run (guest built, booted, measured, powered off): $((SECONDS - start)) s of wall time; guest exit $rc"
} 2>&1 | grep --line-buffered -v -E '^\[ *[0-9]+\.[0-9]+\] reboot: Power down$' | tee "$out"
echo
echo "(kept in $out)"
exit "$(cat "$tmp/rc" 2>/dev/null || echo 1)"
