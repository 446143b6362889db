#!/usr/bin/env bash
# Builds bench_fuse, galaxy and galaxy-ramfs in Release (build-bench/) and runs the FUSE
# benchmark once, printing a markdown table (bench_fuse.cpp says what each row measures).
# Never part of the tests. Needs root or a usable /dev/fuse for the mounts.
#
#   ./bench/run_fuse.sh [bench_fuse options...]     e.g. --reps 5 --files 1000
#
# Environment: QUIET_MAX (20) and QUIET_WAIT (60), the quiet gate as in bench/run.sh;
# JOBS (2) for the build. The output is kept in build-bench/results-fuse-<UTC date>.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -e /dev/fuse ]]; then
  echo "run_fuse.sh: /dev/fuse is absent: no FUSE benchmark on this machine" >&2
  exit 0
fi
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DGALAXY_TESTS=OFF \
  -DGALAXY_BENCH=ON >/dev/null
cmake --build build-bench -j "${JOBS:-2}" --target bench_fuse galaxy galaxy-ramfs

out=build-bench/results-fuse-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "## bench_fuse, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo))," \
    "$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)," \
    "$( . /etc/os-release && echo "$PRETTY_NAME"), libfuse $(pkg-config --modversion fuse3)"
  echo "- compiler: $(c++ --version | head -n 1); build: Release"
  echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: bench/run_fuse.sh $*"
  echo
  build-bench/bench/bench_fuse --quiet-max "${QUIET_MAX:-20}" --quiet-wait "${QUIET_WAIT:-60}" "$@"
} | tee "$out"
echo
echo "(kept in $out)"
