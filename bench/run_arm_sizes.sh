#!/usr/bin/env bash
# galaxy-node's small-machine figures on ARM, from cross builds: the stripped size of the
# executable, its segments, the shared libraries it needs (readelf -d NEEDED) and the size
# of those libraries as Debian 12 ships them for the architecture, and a start under
# qemu-user that shows the node runs and answers. Prints markdown.
#
#   ./bench/run_arm_sizes.sh [arm64] [armhf]      (default: both; as root, for apt)
#
# Builds only galaxy-node, in build-ARCH/ (RelWithDebInfo: -O2, the optimisation a Debian
# package gets; scripts/test-arch.sh's tree) after scripts/cross-deps.sh --emulation.
# What is NOT measured, because qemu-user cannot show it: the node's resident memory. The
# VmRSS of an emulated process is the emulator's (its translator, its code cache and the
# guest's whole address-space reservation), not what the node would use on a board;
# that, and the kernel's page size there (a Pi 5's kernel uses 16 KiB pages), need a Pi.
# The run's output is kept in build-bench/results-arm-sizes-<UTC date>.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
arches=("$@")
((${#arches[@]})) || arches=(arm64 armhf)
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
mkdir -p build-bench
out=build-bench/results-arm-sizes-$(date -u +%Y%m%dT%H%M%SZ).md
mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }

for arch in "${arches[@]}"; do
  case $arch in
    arm64) triplet=aarch64-linux-gnu ;;
    armhf) triplet=arm-linux-gnueabihf ;;
    *) echo "run_arm_sizes.sh: unknown architecture '$arch'" >&2; exit 2 ;;
  esac
  ./scripts/cross-deps.sh --emulation "$arch" "build-$arch/sysroot" >&2
  toolchain=()   # counts only when the build tree is made
  [[ -f build-$arch/CMakeCache.txt ]] || toolchain=(-DCMAKE_TOOLCHAIN_FILE="cmake/toolchain-$arch.cmake")
  cmake -S . -B "build-$arch" -G Ninja "${toolchain[@]}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGALAXY_BENCH=OFF "${launcher[@]}" >/dev/null
  cmake --build "build-$arch" -j "${JOBS:-2}" --target galaxy-node >&2
done

{
  echo "## galaxy-node on ARM: sizes, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- built on: $(nproc) CPUs, $( . /etc/os-release && echo "$PRETTY_NAME"), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + changes')"
  echo "- compilers: $(for a in "${arches[@]}"; do case $a in arm64) t=aarch64-linux-gnu ;; armhf) t=arm-linux-gnueabihf ;; esac; "$t-g++" --version | head -n 1; done | paste -sd ';' -)"
  echo "- build: RelWithDebInfo (-O2), the shipped lean link (CMakeLists.txt: static libstdc++ and libgcc, fmt header-only, --gc-sections), then \`TRIPLET-strip\`"
  echo
  echo "| arch | stripped bytes | MiB | target ≤ 1.5 MiB | text | data | bss | NEEDED | those libraries' files (Debian 12) |"
  echo "|---|---:|---:|---|---:|---:|---:|---|---|"
  for arch in "${arches[@]}"; do
    case $arch in arm64) triplet=aarch64-linux-gnu ;; armhf) triplet=arm-linux-gnueabihf ;; esac
    bin=build-$arch/galaxy-node
    stripped=build-$arch/galaxy-node.stripped
    "$triplet-strip" -o "$stripped" "$bin"
    bytes=$(stat -c %s "$stripped")
    read -r text data bss _ < <("$triplet-size" "$stripped" | tail -n 1)
    needed=$("$triplet-readelf" -d "$stripped" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | paste -sd ' ' -)
    libs=()
    for l in $needed; do
      f=$(readlink -f "/usr/lib/$triplet/$l" 2>/dev/null || true)
      [[ -f $f ]] || f=$(readlink -f "build-$arch/sysroot/usr/lib/$triplet/$l" 2>/dev/null || true)
      [[ -f $f ]] && libs+=("$l $(mib "$(stat -c %s "$f")") MiB")
    done
    interp=$("$triplet-readelf" -l "$stripped" | sed -n 's/.*interpreter: \(.*\)\]/\1/p')
    interp_f=$(readlink -f "$interp")
    [[ -f $interp_f && " $needed " != *" $(basename "$interp") "* ]] &&
      libs+=("$(basename "$interp") $(mib "$(stat -c %s "$interp_f")") MiB")
    met=missed
    ((bytes <= 1572864)) && met=met
    echo "| $arch | $bytes | $(mib "$bytes") | $met | $text | $data | $bss | $needed | $(IFS=';'; echo "${libs[*]}" | sed 's/;/, /g') |"
  done
  echo
  echo "Under qemu-user (binfmt_misc), each started with \`--listen unix!DIR/s --spool DIR/spool\`; what it printed at start, and the status it served to the amd64 \`galaxy cat\`:"
  echo
  for arch in "${arches[@]}"; do
    dir=$(mktemp -d /tmp/galaxy-armsize.XXXXXX)
    chmod 711 "$dir"
    "build-$arch/galaxy-node" --listen "unix!$dir/s" --spool "$dir/spool" >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q '^listening on' "$dir/log" && break; sleep 0.1; done
    g=${GALAXY:-}
    [[ -z $g && -x build-$arch/galaxy ]] && g=build-$arch/galaxy
    [[ -z $g && -x build/galaxy ]] && g=build/galaxy
    status="(no galaxy tool built to ask: GALAXY=PATH)"
    [[ -n $g ]] && status=$("$g" cat -a "$dir/s" /status 2>&1 | head -n 1)
    echo "- $arch: \`$(grep '^listening on' "$dir/log" || echo 'no listening line')\`; status: \`$status\`"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
} | tee "$out"
echo
echo "(kept in $out)"
