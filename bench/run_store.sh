#!/usr/bin/env bash
# Builds bench_store in Release (build-bench/) and runs it, printing a markdown table
# (bench_store.cpp says what each row measures). Never part of the tests. bench/run.sh
# calls it after bench_9p; it runs alone too:
#
#   ./bench/run_store.sh [bench_store options...]     e.g. --reps 5 --seconds 3
#
# The database files go to build-bench/store/ (on the repository's disk: never a tmpfs,
# where fsync is free). Environment as for run.sh: QUIET_MAX (20), QUIET_WAIT (60), JOBS (2).
# The run's output is kept in build-bench/results-store-<UTC date>.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/deps.sh
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DGALAXY_TESTS=OFF \
  -DGALAXY_BENCH=ON >/dev/null
cmake --build build-bench -j "${JOBS:-2}" --target bench_store

out=build-bench/results-store-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "## bench_store, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo))," \
    "$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)," \
    "$( . /etc/os-release && echo "$PRETTY_NAME")"
  echo "- disk: $(df -T build-bench | awk 'NR==2{print $1" ("$2")"}')"
  echo "- compiler: $(c++ --version | head -n 1); build: Release"
  echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: bench/run_store.sh $*"
  echo
  build-bench/bench/bench_store --dir build-bench/store --quiet-max "${QUIET_MAX:-20}" \
    --quiet-wait "${QUIET_WAIT:-60}" "$@"
} | tee "$out"
echo
echo "(kept in $out)"
