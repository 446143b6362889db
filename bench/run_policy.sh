#!/usr/bin/env bash
# Builds bench/sim_policy in Release (build-bench/) and runs it: the scheduling policy
# (sched/policy.*) on a simulated cluster of 10 000 nodes with 1 000 000 jobs, beside a
# naive first-fit scheduler on the same workload. Prints a markdown table (what each
# column means: the opening comment of bench/sim_policy.cpp). Never part of the tests.
#
#   ./bench/run_policy.sh [sim_policy options...]   e.g. --nodes 1000 --jobs 100000
#
# Environment: JOBS (2) for the build. Called by bench/run.sh. The output is kept in
# build-bench/policy-<UTC date>.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DGALAXY_TESTS=OFF \
  -DGALAXY_BENCH=ON >/dev/null
cmake --build build-bench -j "${JOBS:-2}" --target sim_policy

out=build-bench/policy-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "## sim_policy, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo))," \
    "$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
  echo "- compiler: $(c++ --version | head -n 1); build: Release"
  echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: bench/run_policy.sh $*"
  echo
  build-bench/bench/sim_policy "$@"
  echo
  echo "- load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"
echo
echo "(kept in $out)"
