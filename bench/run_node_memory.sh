#!/usr/bin/env bash
# galaxy-node's memory at rest, this tree's build beside an older commit's, in one run and
# by one method: bench_auth --memory-only (bench_auth.cpp, "(b)": VmRSS 300 ms after the
# listening line, after one attach, and after tasks run as a real local user once the
# NSS look-up helper has gone; --auth none and --auth munge on loopback TCP, our own
# munged). Both binaries are Release builds of the shipped (lean) link. Prints markdown.
#
#   ./bench/run_node_memory.sh [BEFORE_COMMIT]     (as root: tasks run as their owner)
#
# BEFORE_COMMIT (default: none, only this tree) is extracted with `git archive` into
# build-bench/before-src and built in build-bench/before-build; nothing in the repository
# changes. Environment: OWNER (galaxy-bench), made with useradd if missing; ROUNDS (3):
# each round measures the old binary, then this one; JOBS (2).
# The run's output is kept in build-bench/results-node-memory-<UTC date>.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ((EUID != 0)); then
  echo "run_node_memory.sh: run as root (tasks as their owner need a root node and a user of their own)" >&2
  exit 1
fi
before=${1:-}
owner=${OWNER:-galaxy-bench}
id "$owner" >/dev/null 2>&1 ||
  useradd --system --no-create-home --user-group --shell /usr/sbin/nologin "$owner"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DGALAXY_TESTS=OFF \
  -DGALAXY_BENCH=ON "${launcher[@]}" >/dev/null
cmake --build build-bench -j "${JOBS:-2}" --target bench_auth galaxy-node
nodes=("build-bench/galaxy-node")
labels=("this tree, $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + changes')")
if [[ -n $before ]]; then
  rev=$(git rev-parse --short "$before")
  rm -rf build-bench/before-src
  mkdir -p build-bench/before-src
  git archive "$rev" | tar -x -C build-bench/before-src
  cmake -S build-bench/before-src -B build-bench/before-build -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGALAXY_TESTS=OFF -DGALAXY_BENCH=OFF "${launcher[@]}" >/dev/null
  cmake --build build-bench/before-build -j "${JOBS:-2}" --target galaxy-node
  nodes=("build-bench/before-build/galaxy-node" "${nodes[@]}")
  labels=("before: $rev" "${labels[@]}")
fi

out=build-bench/results-node-memory-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "## galaxy-node's memory at rest (bench_auth --memory-only), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo))," \
    "$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)," \
    "$( . /etc/os-release && echo "$PRETTY_NAME"), munge $(dpkg-query -W -f='${Version}' munge)"
  echo "- compiler: $(c++ --version | head -n 1); build: Release"
  echo "- nsswitch.conf: $(grep -E '^(passwd|group):' /etc/nsswitch.conf | tr -s ' \t' ' ' | paste -sd ';' -)"
  echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: bench/run_node_memory.sh $before (OWNER=$owner)"
  for i in "${!nodes[@]}"; do
    echo "- ${labels[$i]}: $(ldd "${nodes[$i]}" | grep -c '=>') shared libraries ($(ldd "${nodes[$i]}" | awk '/=>/{print $1}' | paste -sd ' ' -))"
  done
  for ((round = 1; round <= ${ROUNDS:-3}; round++)); do
    for i in "${!nodes[@]}"; do
      echo
      echo "### round $round: ${labels[$i]}"
      echo
      build-bench/bench/bench_auth --memory-only --node "${nodes[$i]}" --owner "$owner" --label "${labels[$i]}"
    done
  done
} | tee "$out"
echo
echo "(kept in $out)"
