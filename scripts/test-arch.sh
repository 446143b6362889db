#!/usr/bin/env bash
# Cross-builds Galaxy for an ARM architecture and runs its test suite under emulation
# (qemu-user through binfmt_misc), on a Debian 12 amd64 machine, as root.
#
#   scripts/test-arch.sh [--node] arm64|armhf
#
#   1. scripts/deps.sh, then scripts/cross-deps.sh --emulation ARCH build-ARCH/sysroot:
#      the cross toolchain, the ARCH libraries (multiarch; MUNGE unpacked into the
#      sysroot), qemu-user-static, binfmt_misc mounted and the interpreter registered;
#   2. build-ARCH/: RelWithDebInfo with cmake/toolchain-ARCH.cmake (ccache when present),
#      at -O2 -g1: line tables only, for a shorter build (as test.sh's builds);
#   3. ctest in build-ARCH/: every test binary runs through qemu-ARCH-static
#      (CMAKE_CROSSCOMPILING_EMULATOR), and every program a test starts (galaxy-node,
#      galaxy-sched, galaxy, galaxy-ramfs, store_crasher) is the ARM build, run by the
#      kernel through binfmt_misc; munged and the system's tools stay amd64.
#
# --node: only what galaxy-node needs and its tests (scripts/test.sh runs this for armhf
# in CI; see the README, "ARM"): galaxy-node and the test executables srv9p_test (codec,
# server, authentication), nss_test and node_test, with the programs they start (galaxy,
# galaxy-ramfs). ctl_test (the ctl language, the tools' command lines) is left to the full
# run: it needs galaxy-sched, whose build would put CI over its 45 minutes.
#
# Tests that cannot run under emulation, with why (the list is also in the README):
#   - TaskTest.MemoryLimit where the limit is RLIMIT_AS: qemu-user ignores setrlimit of
#     RLIMIT_AS; the test checks this and skips, saying so.
#   - NodeE2E.ATaskInheritsNoDescriptorOfTheDaemonWithoutCloseRange: its wrapper makes
#     close_range fail through a seccomp filter, and qemu-user answers
#     prctl(PR_SET_SECCOMP) with EINVAL; the test tries the wrapper first and skips.
#   - node_qemu_cgroup_limits, kernel_9p_9p2000, kernel_9p_9p2000.L: scripts/qemu-guest.sh
#     boots an amd64 guest kernel (TCG), which cannot run the ARM programs;
#     tests/CMakeLists.txt registers them as tests that say so and exit 77 (skipped) in
#     cross builds.
#   - Testnet.HostsReachEachOtherOnlyOverTheirLinks, Netns.LossAndDelayOnANodeLink, where
#     the kernel has no sch_netem: the userspace wire that stands in for netem uses
#     packet(7) options (PACKET_VNET_HDR) that qemu-user does not implement (ENOPROTOOPT);
#     they skip, saying so (ASSERT_IMPAIRED, tests/testnet.hpp).
# Tests that skip themselves for reasons of the machine (not root, no munged, no FUSE,
# no cgroup controllers) say why in the log as in a native run.
#
# The last line is "N passed, M failed" as in scripts/test.sh (skipped tests count as
# passed there too; the line above it names them); the exit status is non-zero when
# anything failed. Environment: JOBS (default 2); CTEST_ARGS (extra ctest arguments,
# e.g. "-R node_test"). Build time and test time are printed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

node_only=0
if [[ ${1:-} == --node ]]; then node_only=1; shift; fi
arch=${1:-}
case $arch in
  arm64 | armhf) ;;
  *) echo "usage: scripts/test-arch.sh [--node] arm64|armhf" >&2; exit 2 ;;
esac
JOBS=${JOBS:-2}
build=build-$arch
export CTEST_OUTPUT_ON_FAILURE=1
start=$SECONDS
section() { printf '\n==== %s ====  (%s, +%ds)\n' "$*" "$(date +%H:%M:%S)" $((SECONDS - start)); }
finish() {  # finish PASSED FAILED WHY...: the summary line, and the exit status
  local p=$1 f=$2; shift 2
  section "summary $arch ($((SECONDS - start)) s)"
  if (($#)); then
    printf '%d passed, %d failed; failed steps: %s\n' "$p" "$f" "$*"
    exit 1
  fi
  printf '%d passed, %d failed\n' "$p" "$f"
  ((f == 0)) || exit 1
  exit 0
}

section "dependencies (scripts/deps.sh, scripts/cross-deps.sh --emulation $arch)"
./scripts/deps.sh || finish 0 0 "deps"
./scripts/cross-deps.sh --emulation "$arch" "$build/sysroot" || finish 0 0 "cross-deps"

section "configure + build $build"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
targets=(all)
tests=()
if ((node_only)); then
  targets=(galaxy-node srv9p_test nss_test node_test)
  tests=(-L '^(srv9p_test|nss_test|node_test)$')
fi
# The toolchain file counts only when a build tree is made (CMake warns about it after).
toolchain=()
if [[ ! -f $build/CMakeCache.txt ]]; then
  toolchain=(-DCMAKE_TOOLCHAIN_FILE="cmake/toolchain-$arch.cmake")
elif ! grep -q "^CMAKE_TOOLCHAIN_FILE:.*toolchain-$arch.cmake" "$build/CMakeCache.txt"; then
  echo "test-arch.sh: $build was not configured with cmake/toolchain-$arch.cmake; remove it" >&2
  finish 0 0 "build $build"
fi
build_start=$SECONDS
if ! { cmake -S . -B "$build" -G Ninja "${toolchain[@]}" \
         -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" \
         -DGALAXY_BENCH=OFF "${launcher[@]}" &&
       cmake --build "$build" -j "$JOBS" --target "${targets[@]}"; }; then
  finish 0 0 "build $build"
fi
echo "build: $((SECONDS - build_start)) s"

section "ctest $build (under qemu-user)"
log=$build/ctest.log
test_start=$SECONDS
# shellcheck disable=SC2086  # CTEST_ARGS is split on purpose
ctest --test-dir "$build" --output-on-failure -j "$JOBS" "${tests[@]}" ${CTEST_ARGS:-} 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo "tests: $((SECONDS - test_start)) s"
line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
[[ -n $line ]] || finish 0 0 "ctest $build (no result line from ctest)"
nfail=$(sed -E 's/.*tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
ntotal=$(sed -E 's/.*tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
skipped=$(sed -n '/The following tests did not run:/,/^$/p' "$log" | grep -E '^\s+[0-9]+ - ' |
          sed -E 's/^\s+[0-9]+ - (\S+).*/\1/' | paste -sd ' ' -)
[[ -n $skipped ]] && echo "skipped ($(wc -w <<<"$skipped"), counted as passed): $skipped"
if ((rc != 0 && nfail == 0)); then finish $((ntotal - nfail)) "$nfail" "ctest $build exited $rc"; fi
finish $((ntotal - nfail)) "$nfail"
