#!/usr/bin/env bash
# Builds galaxy-node and bench_node in Release (build-bench/) and measures, in one run:
# tasks/s through the node's files next to a posix_spawn loop and xargs -P2, the daemon's
# memory idle and with 100 running tasks (bench_node.cpp says how), and the size of the
# stripped binary (strip -o, the binary itself untouched). Prints a markdown section.
#
#   ./bench/run_node.sh [bench_node options...]     e.g. --reps 5 --tasks 1000
#
# Environment: QUIET_MAX (20), QUIET_WAIT (60): the quiet gate (bench/run.sh); JOBS (2).
# The run's output is kept in build-bench/results-node-<UTC date>.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DGALAXY_TESTS=OFF \
  -DGALAXY_BENCH=ON >/dev/null
cmake --build build-bench -j "${JOBS:-2}" --target bench_node galaxy-node

out=build-bench/results-node-$(date -u +%Y%m%dT%H%M%SZ).md
stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
strip -o "$stripped" build-bench/galaxy-node
size=$(stat -c %s "$stripped")
{
  echo "## bench_node, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo))," \
    "$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)," \
    "$( . /etc/os-release && echo "$PRETTY_NAME")"
  echo "- compiler: $(c++ --version | head -n 1); build: Release"
  echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: bench/run_node.sh $*"
  echo
  build-bench/bench/bench_node --quiet-max "${QUIET_MAX:-20}" --quiet-wait "${QUIET_WAIT:-60}" "$@"
  echo
  echo "| galaxy-node binary | bytes | MiB | target | met? |"
  echo "|---|---:|---:|---|---|"
  echo "| \`strip -o\` of build-bench/galaxy-node ($(ldd build-bench/galaxy-node | grep -c '=>') shared libraries) |" \
    "$size | $(awk -v s="$size" 'BEGIN{printf "%.2f", s/1048576}') | ≤ 2 |" \
    "$( ((size <= 2097152)) && echo met || echo missed) |"
} | tee "$out"
echo
echo "(kept in $out)"
