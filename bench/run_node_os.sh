#!/usr/bin/env bash
# What -Os costs galaxy-node in speed against -O2 (issue 15: the ARM builds and packages
# compile the node's files with -Os for size, GALAXY_NODE_OS in CMakeLists.txt). Prints
# markdown.
#
#   sudo ./bench/run_node_os.sh [amd64] [arm64] [armhf]     (default: amd64 arm64)
#
# For each architecture, two galaxy-node builds of the same commit that differ only in
# GALAXY_NODE_OS (Release, the shipped lean link): build-bench/ and build-bench-os/ for
# amd64; build-ARCH-o2/ and build-ARCH-os/ cross-built for ARM (after
# scripts/cross-deps.sh --emulation, which registers qemu-user with binfmt_misc). The
# client side is always amd64 and the same for both: build-bench/'s galaxy tool and
# bench_node.
#
# ROUNDS rounds (default 5); in each, each of the two nodes in turn is started afresh
# (loopback TCP, --auth none, spool on /dev/shm) and measured:
#   - tasks/s: bench_node --addr, TASKS × /bin/true with 2 in flight (its "(d)" rate:
#     clone, ctl, wait, remove; each task a fork+exec, the node's code a small part);
#   - the node's CPU per task: utime+stime of the node's process (/proc/PID/stat) over
#     those tasks, in µs;
#   - a read: a task writes MIB MiB of zeros to its stdout, then `galaxy cat` reads it
#     (msize 1 MiB + 24): MiB/s, and the node's CPU per MiB read, in ms (the 9P codec, the
#     tree and the copies: where the node's own code is most of the work).
# Each figure is the median over the rounds; each -Os/-O2 ratio is the median of the
# per-round ratios, so that the machine's other tenants weigh on both alike. CPU time is
# counted in clock ticks (10 ms), hence the large TASKS and MIB.
#
# Under qemu-user (arm64, armhf) the node's code is translated by TCG on this amd64
# machine: its figures are the emulator's, not a Pi's. Only the ratio within one
# architecture means anything, and only roughly (TCG's cost follows the guest's
# instruction count, not a Cortex-A53's pipeline or caches). A board is needed for a
# board's figure.
#
# Environment: ROUNDS (5), TASKS (1000), MIB (256), JOBS (2), QUIET_MAX (20), QUIET_WAIT
# (60): the quiet gate before each round (bench/quiet.sh). Output is kept in
# build-bench/results-node-os-<UTC time>.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. bench/quiet.sh
arches=("$@")
((${#arches[@]})) || arches=(amd64 arm64)
rounds=${ROUNDS:-5} tasks=${TASKS:-1000} mib=${MIB:-256} jobs=${JOBS:-2}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
build_dir() {  # build_dir ARCH O2|OS: the tree that holds that galaxy-node
  case $1:$2 in
    amd64:O2) echo build-bench ;;
    amd64:OS) echo build-bench-os ;;
    *:O2) echo "build-$1-o2" ;;
    *:OS) echo "build-$1-os" ;;
  esac
}

# The client and the amd64 nodes.
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DGALAXY_TESTS=OFF \
  -DGALAXY_BENCH=ON -DGALAXY_NODE_OS=OFF "${launcher[@]}" >/dev/null
cmake --build build-bench -j "$jobs" --target bench_node galaxy galaxy-node >&2
for arch in "${arches[@]}"; do
  for v in O2 OS; do
    dir=$(build_dir "$arch" "$v")
    [[ $arch:$v == amd64:O2 ]] && continue
    opts=(-DCMAKE_BUILD_TYPE=Release -DGALAXY_TESTS=OFF -DGALAXY_BENCH=OFF "${launcher[@]}")
    [[ $v == OS ]] && opts+=(-DGALAXY_NODE_OS=ON) || opts+=(-DGALAXY_NODE_OS=OFF)
    case $arch in
      amd64) ;;
      arm64 | armhf)
        ./scripts/cross-deps.sh --emulation "$arch" "$dir/sysroot" >&2
        [[ -f $dir/CMakeCache.txt ]] || opts+=(-DCMAKE_TOOLCHAIN_FILE="cmake/toolchain-$arch.cmake") ;;
      *) echo "run_node_os.sh: unknown architecture '$arch' (amd64, arm64, armhf)" >&2; exit 2 ;;
    esac
    cmake -S . -B "$dir" -G Ninja "${opts[@]}" >/dev/null
    cmake --build "$dir" -j "$jobs" --target galaxy-node >&2
  done
done

tmp=$(mktemp -d /dev/shm/galaxy-os.XXXXXX)
chmod 0711 "$tmp"  # tasks run as nobody and must reach the spool
node_pid=""
stop_node() { [[ -n $node_pid ]] && { kill "$node_pid" 2>/dev/null; wait "$node_pid" 2>/dev/null || true; }; node_pid=""; }
trap 'stop_node; rm -rf "$tmp"' EXIT
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
g() { build-bench/galaxy "$@"; }

measure() {  # measure BINARY: prints "tasks_per_s cpu_us_per_task mib_per_s cpu_ms_per_mib"
  local bin=$1 port="" i n a b t0 t1 rate
  rm -rf "$tmp/spool"
  "$bin" --listen 'tcp!127.0.0.1!0' --auth none --spool "$tmp/spool" --name os >"$tmp/node.out" 2>"$tmp/node.err" &
  node_pid=$!
  for ((i = 0; i < 300; i++)); do
    port=$(sed -n 's/^listening on tcp!127\.0\.0\.1!\([0-9]*\)$/\1/p' "$tmp/node.out" | head -n 1)
    [[ -n $port ]] && break
    sleep 0.1
  done
  [[ -n $port ]] || { echo "run_node_os.sh: $bin did not listen: $(cat "$tmp/node.err")" >&2; exit 1; }
  local addr="tcp!127.0.0.1!$port" ga=(--auth none -a "tcp!127.0.0.1!$port")
  a=$(ticks "$node_pid")
  rate=$(build-bench/bench/bench_node --addr "$addr" --tasks "$tasks" --inflight 2 --reps 1 |
    sed -n 's/.*: \([0-9]*\) tasks\/s.*/\1/p')
  b=$(ticks "$node_pid")
  [[ -n $rate ]] || { echo "run_node_os.sh: bench_node gave no rate" >&2; exit 1; }
  local us_task=$(((b - a) * 1000000 / hz / tasks))
  n=$(g cat "${ga[@]}" task/clone)
  echo "exec dd if=/dev/zero bs=1048576 count=$mib" | g write "${ga[@]}" "task/$n/ctl"
  [[ $(g cat "${ga[@]}" "task/$n/wait") == "exit 0" ]] || { echo "run_node_os.sh: the dd task failed" >&2; exit 1; }
  a=$(ticks "$node_pid"); t0=$EPOCHREALTIME
  g cat "${ga[@]}" "task/$n/stdout" >/dev/null
  t1=$EPOCHREALTIME; b=$(ticks "$node_pid")
  stop_node
  awk -v r="$rate" -v u="$us_task" -v m="$mib" -v t0="$t0" -v t1="$t1" -v c=$((b - a)) -v hz="$hz" \
    'BEGIN { printf "%s %s %.0f %.2f\n", r, u, m / (t1 - t0), c * 1000 / hz / m }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

out=build-bench/results-node-os-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "## galaxy-node at -Os against -O2, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), kernel $(uname -r); commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + changes')"
  echo "- command: ROUNDS=$rounds TASKS=$tasks MIB=$mib bench/run_node_os.sh ${arches[*]}"
  echo "- each row: the median of $rounds rounds; the ratio columns: the median of the per-round -Os/-O2 ratios (above 1: -Os is faster, or for CPU, dearer)"
  echo
  echo "| arch | node | stripped bytes | tasks/s | node CPU µs/task | read MiB/s | node CPU ms/MiB read |"
  echo "|---|---|---:|---:|---:|---:|---:|"
} | tee "$out"
for arch in "${arches[@]}"; do
  case $arch in arm64) strip=aarch64-linux-gnu-strip ;; armhf) strip=arm-linux-gnueabihf-strip ;; *) strip=strip ;; esac
  declare -A row=()
  for ((r = 1; r <= rounds; r++)); do
    start=$SECONDS; bg=$(bg_load)
    while ((bg >= ${QUIET_MAX:-20} && SECONDS - start < ${QUIET_WAIT:-60})); do bg=$(bg_load); done
    echo "run_node_os.sh: $arch round $r (other tenants ${bg} %)" >&2
    for v in O2 OS; do row[$v:$r]=$(measure "$(build_dir "$arch" "$v")/galaxy-node"); done
  done
  for v in O2 OS; do
    bin=$(build_dir "$arch" "$v")/galaxy-node
    "$strip" -o "$tmp/stripped" "$bin"
    cols=()
    for k in 1 2 3 4; do
      cols+=("$(for ((r = 1; r <= rounds; r++)); do echo "${row[$v:$r]}" | cut -d' ' -f"$k"; done | median)")
    done
    echo "| $arch | -${v/OS/Os} | $(stat -c %s "$tmp/stripped") | ${cols[0]} | ${cols[1]} | ${cols[2]} | ${cols[3]} |" | tee -a "$out"
  done
  ratios=()
  for k in 1 2 3 4; do
    ratios+=("$(for ((r = 1; r <= rounds; r++)); do
      awk -v a="$(echo "${row[O2:$r]}" | cut -d' ' -f"$k")" -v b="$(echo "${row[OS:$r]}" | cut -d' ' -f"$k")" \
        'BEGIN { if (a > 0) printf "%.3f\n", b / a; else print "nan" }'
    done | median)")
  done
  echo "| $arch | -Os/-O2 | | ${ratios[0]} | ${ratios[1]} | ${ratios[2]} | ${ratios[3]} |" | tee -a "$out"
  unset row
done
echo | tee -a "$out"
echo "(kept in $out)" >&2
