#!/usr/bin/env bash
# The main job's benchmark: examples/wordfreq.sh on the full input (every
# /usr/share/doc/*/copyright) in one run, three ways on the same cores, with the same map
# and reduce commands:
#
#   cluster   a local cluster from `galaxy up` (2 nodes × 1 CPU on 2 cores), 8 map jobs
#             and 1 reduce job through the FUSE mount; the time wordfreq.sh reports from
#             its first clone to the reduce's wait
#   parallel  GNU parallel -j2 running the same 8 map commands over the same shares, then
#             the same reduce pipeline: the floor for "the same work, spread the same way"
#   local     one pipeline over all the files (cat | tr | sort | uniq -c), the check that
#             wordfreq.sh itself compares against
#
# and the overhead per job two ways: (cluster - parallel) / jobs, and the round trip of one
# `true` job through the mount the way wordfreq.sh submits (cat clone, echo exec > ctl,
# cat wait), sequentially. Each row is the median of REPS runs (default 5) after one warm-up
# of the page cache. Never part of the tests.
#
#   ./bench/run_wordfreq.sh            # builds build-bench/ (Release) first
#   BUILD_DIR=build ./bench/run_wordfreq.sh   # use an existing build instead
#
# Needs /dev/fuse and GNU parallel (scripts/deps.sh installs it). The output is kept in
# build-bench/results-wordfreq-<UTC date>.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LC_ALL=C

reps=${REPS:-5}
maps=${MAPS:-8}
trues=${TRUES:-50}
if [[ ! -e /dev/fuse ]]; then
  echo "run_wordfreq.sh: /dev/fuse is absent: the main job needs a mount; nothing measured" >&2
  exit 0
fi
command -v parallel >/dev/null || { echo "run_wordfreq.sh: GNU parallel is missing (scripts/deps.sh)" >&2; exit 1; }

build=${BUILD_DIR:-build-bench}
if [[ $build == build-bench ]]; then
  cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DGALAXY_TESTS=OFF -DGALAXY_BENCH=ON >/dev/null
  cmake --build build-bench -j "${JOBS:-2}" --target galaxy galaxy-node galaxy-sched
fi
g=$PWD/$build/galaxy
mkdir -p build-bench

tmp=$(mktemp -d /tmp/galaxy-wordfreq-bench.XXXXXX)
chmod 0755 "$tmp"
state=$tmp/state mnt=$tmp/mnt
cleanup() {
  "$g" down --state "$state" >/dev/null 2>&1 || true
  grep -qs " $mnt " /proc/self/mountinfo && "$g" umount -z "$mnt"
  grep -qs " $mnt " /proc/self/mountinfo || rm -rf "$tmp"
}
trap cleanup EXIT

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f\n", (b - a) * 1000 }'; }

# The input and its shares, as wordfreq.sh makes them (round-robin over the sorted list).
ls -d /usr/share/doc/*/copyright >"$tmp/inputs"
nfiles=$(wc -l <"$tmp/inputs")
bytes=$(tr '\n' '\0' <"$tmp/inputs" | xargs -0 cat -- | wc -c)
awk -v n="$maps" -v dir="$tmp" '{ print > (dir "/share." (NR - 1) % n) }' "$tmp/inputs"
# The map and reduce commands, the same text as in examples/wordfreq.sh.
MAP=$(sed -n "s/^MAP='\(.*\)'\$/\1/p" examples/wordfreq.sh)
[[ -n $MAP ]] || { echo "run_wordfreq.sh: cannot find MAP in examples/wordfreq.sh" >&2; exit 1; }
printf '%s\n' "$MAP" >"$tmp/map.sh"

"$g" up --state "$state" --mount "$mnt" >"$tmp/up.log" || { cat "$tmp/up.log"; exit 1; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
local_ms=() cluster_ms=() parallel_ms=()
for ((r = 0; r <= reps; r++)); do   # run 0 warms the page cache and is not counted
  # local
  t=$EPOCHREALTIME
  tr '\n' '\0' <"$tmp/inputs" | xargs -0 cat -- | tr -cs '[:alpha:]' '\n' | tr '[:upper:]' '[:lower:]' |
    sed '/^$/d' | sort | uniq -c | awk '{ print $1, $2 }' | sort -k1,1nr -k2,2 >"$tmp/local.out"
  l=$(ms_since "$t")
  # cluster (wordfreq.sh also checks its table against the local pipeline)
  out=$(examples/wordfreq.sh -m "$mnt" --maps "$maps")
  grep -q '^result: match' <<<"$out" || { echo "$out"; echo "run_wordfreq.sh: the main job failed" >&2; exit 1; }
  c=$(sed -n 's/^elapsed on the cluster: \([0-9]*\) ms$/\1/p' <<<"$out")
  # GNU parallel: the same map commands over the same shares, then the same reduce
  t=$EPOCHREALTIME
  parallel -j2 'xargs -d "\n" sh '"$tmp"'/map.sh < {} > {}.out' ::: "$tmp"/share.[0-9]*
  cat "$tmp"/share.*.out | awk '{ c[$2] += $1 } END { for (w in c) print c[w], w }' |
    sort -k1,1nr -k2,2 >"$tmp/parallel.out"
  p=$(ms_since "$t")
  rm -f "$tmp"/share.*.out
  cmp -s "$tmp/parallel.out" "$tmp/local.out" || { echo "run_wordfreq.sh: GNU parallel's table differs" >&2; exit 1; }
  if ((r > 0)); then
    local_ms+=("$l") cluster_ms+=("$c") parallel_ms+=("$p")
  fi
done

# One `true` job at a time through the mount, as wordfreq.sh submits.
true_ms=()
for ((r = 0; r < reps; r++)); do
  t=$EPOCHREALTIME
  for ((i = 0; i < trues; i++)); do
    j=$(cat "$mnt/jobs/clone")
    echo 'exec true' >"$mnt/jobs/$j/ctl"
    [[ $(cat "$mnt/jobs/$j/wait") == 'exit 0' ]] || { echo "run_wordfreq.sh: a true job failed" >&2; exit 1; }
  done
  true_ms+=("$(ms_since "$t")")
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

L=$(printf '%s\n' "${local_ms[@]}" | median)
C=$(printf '%s\n' "${cluster_ms[@]}" | median)
P=$(printf '%s\n' "${parallel_ms[@]}" | median)
T=$(printf '%s\n' "${true_ms[@]}" | median)
jobs=$((maps + 1))

out=build-bench/results-wordfreq-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "## wordfreq (the main job), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo))," \
    "$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)," \
    "$( . /etc/os-release && echo "$PRETTY_NAME"), $(parallel --version | head -n 1)"
  echo "- binaries: $build ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt"))"
  echo "- input: $nfiles files, $bytes bytes (/usr/share/doc/*/copyright); $maps map jobs + 1 reduce"
  echo "- cluster: galaxy up, 2 nodes × 1 CPU; median of $reps runs after one warm-up"
  echo "- load average before / after: $load_before / $load_after"
  echo "- command: bench/run_wordfreq.sh (REPS=$reps MAPS=$maps TRUES=$trues)"
  echo
  echo "| what | median | runs (ms) |"
  echo "|---|---:|---|"
  echo "| one local pipeline | $L ms | ${local_ms[*]} |"
  echo "| GNU parallel -j2, same map and reduce commands | $P ms | ${parallel_ms[*]} |"
  echo "| Galaxy local cluster (wordfreq.sh through the mount) | $C ms | ${cluster_ms[*]} |"
  echo "| cluster / parallel | $(awk -v c="$C" -v p="$P" 'BEGIN { printf "%.2f×", c / p }') | |"
  echo "| overhead per job: (cluster − parallel) / $jobs jobs | $(awk -v c="$C" -v p="$P" -v n="$jobs" 'BEGIN { printf "%.1f ms", (c - p) / n }') | |"
  echo "| one \`true\` job through the mount (clone, exec, wait), sequential | $(awk -v t="$T" -v n="$trues" 'BEGIN { printf "%.2f ms", t / n }') | $trues jobs: ${true_ms[*]} ms |"
} | tee "$out"
echo
echo "(kept in $out)"
