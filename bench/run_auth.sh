#!/usr/bin/env bash
# Builds bench_auth and bench_node in Release (build-bench/) and measures, in one run, what
# issue 12 (trust) costs: attaches/s over a Unix socket, TCP --auth none and TCP --auth
# munge beside munge_encode+decode itself, galaxy-node's memory with MUNGE (also after
# tasks as the owner; bench/run_node_memory.sh compares two builds), and /bin/true
# tasks/s with tasks as their owner in a cgroup vs as nobody without one, beside xargs -P2
# (bench_auth.cpp and bench_node.cpp say what each row measures). Prints markdown.
#
#   ./bench/run_auth.sh            (as root: it makes the user galaxy-bench with useradd)
#
# Environment: QUIET_MAX (20), QUIET_WAIT (60): the quiet gate (bench/run.sh); JOBS (2);
# OWNER (galaxy-bench): the local user whose tasks are measured.
# The run's output is kept in build-bench/results-auth-<UTC date>.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ((EUID != 0)); then
  echo "run_auth.sh: run as root (tasks as their owner need a root node and a user of their own)" >&2
  exit 1
fi
./scripts/deps.sh
owner=${OWNER:-galaxy-bench}
id "$owner" >/dev/null 2>&1 ||
  useradd --system --no-create-home --user-group --shell /usr/sbin/nologin "$owner"

cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DGALAXY_TESTS=OFF \
  -DGALAXY_BENCH=ON >/dev/null
cmake --build build-bench -j "${JOBS:-2}" --target bench_auth bench_node galaxy-node galaxy-ramfs

out=build-bench/results-auth-$(date -u +%Y%m%dT%H%M%SZ).md
gate=(--quiet-max "${QUIET_MAX:-20}" --quiet-wait "${QUIET_WAIT:-60}")
{
  echo "## bench_auth and bench_node --owner, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo))," \
    "$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)," \
    "$( . /etc/os-release && echo "$PRETTY_NAME"), munge $(dpkg-query -W -f='${Version}' munge)"
  echo "- compiler: $(c++ --version | head -n 1); build: Release"
  echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- commands: bench/run_auth.sh (build-bench/bench/bench_auth --owner $owner; build-bench/bench/bench_node --owner $owner --spool-in /tmp)"
  echo
  build-bench/bench/bench_auth "${gate[@]}" --owner "$owner"
  echo
  build-bench/bench/bench_node "${gate[@]}" --owner "$owner" --spool-in /tmp
} | tee "$out"
echo
echo "(kept in $out)"
