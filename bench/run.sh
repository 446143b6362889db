#!/usr/bin/env bash
# Builds the benchmarks in Release (build-bench/) and runs them all in one go, printing a
# markdown table (bench_9p.cpp says what each row measures). Never part of the tests.
#
#   ./bench/run.sh [bench_9p options...]     e.g. --reps 5 --seconds 3, --floors-only
#
# Environment: QUIET_MAX (20) and QUIET_WAIT (60): before each measurement, wait up to
# QUIET_WAIT s for the machine's other tenants to use less than QUIET_MAX % of the CPUs
# (the quiet gate of shared/peers/common.sh); JOBS (2) for the build.
# The run's output is kept in build-bench/results-<UTC date>.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/deps.sh
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DGALAXY_TESTS=OFF \
  -DGALAXY_BENCH=ON >/dev/null
cmake --build build-bench -j "${JOBS:-2}" --target bench_9p galaxy-ramfs

out=build-bench/results-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "## bench_9p, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo))," \
    "$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)," \
    "$( . /etc/os-release && echo "$PRETTY_NAME")"
  echo "- compiler: $(c++ --version | head -n 1); build: Release"
  echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: bench/run.sh $*"
  echo
  build-bench/bench/bench_9p --quiet-max "${QUIET_MAX:-20}" --quiet-wait "${QUIET_WAIT:-60}" "$@"
} | tee "$out"
echo
echo "(kept in $out)"

# The job store's durable submissions/s (bench/run_store.sh, its own table and results file).
./bench/run_store.sh
# The scheduling policy on a simulated cluster (bench/run_policy.sh).
./bench/run_policy.sh
# galaxy-node's task rate, memory and binary size (issue 3): a section of its own.
echo
./bench/run_node.sh
# The FUSE bridge's benchmark (galaxy mount), in the same run.
echo
./bench/run_fuse.sh
# The main job (examples/wordfreq.sh) on a galaxy up cluster vs GNU parallel and one pipeline.
echo
./bench/run_wordfreq.sh

# galaxy-sched end to end: jobs/s, sha256 jobs, one job's latency and durable submissions/s,
# each beside xargs/GNU parallel run in the same go (bench/run_sched.sh, its own table).
./bench/run_sched.sh
