#!/usr/bin/env bash
# THE test command (README's second command; .ci/run calls exactly this).
#
#   1. scripts/deps.sh                       installs whatever Debian package is missing
#   2. build/        RelWithDebInfo (-g1)     build + ctest
#   3. build-asan/   ASan + UBSan             build + ctest but the qemu-labelled tests
#                                                                      (SKIP_ASAN=1 skips)
#   4. mandoc -Tlint -W warning man/*/*.*    any warning fails the run
#   5. build-fuzz/   clang-16 + libFuzzer     every build-fuzz/fuzz/fuzz_* target runs on a
#                    scratch copy of fuzz/corpus/<name without fuzz_>/ (SKIP_FUZZ=1 skips)
#   6. build-armhf/  cross build for armhf    galaxy-node and its tests under qemu-user
#                    (scripts/test-arch.sh --node armhf; SKIP_ARM=1 skips)
#
# Every step runs even when an earlier one failed (except the tests of a build that did
# not build), so one run shows every problem. The last line is "N passed, M failed",
# counted over the ctest runs, with the failed steps named after it; the exit status is
# non-zero when anything failed.
#
# Environment: SKIP_ASAN=1, SKIP_FUZZ=1, SKIP_ARM=1, FUZZ_SECONDS=N (default 60: the total fuzzing
# time, split evenly between the targets, at least 10 s each), JOBS (default 2).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

SKIP_ASAN=${SKIP_ASAN:-0}
SKIP_FUZZ=${SKIP_FUZZ:-0}
SKIP_ARM=${SKIP_ARM:-0}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
JOBS=${JOBS:-2}
export CTEST_OUTPUT_ON_FAILURE=1

start=$SECONDS
passed=0 failed=0   # ctest tests, summed over the runs
failed_steps=()     # every step that failed, by name
report=()           # one line per step for the summary

section() { printf '\n==== %s ====  (%s, +%ds)\n' "$*" "$(date +%H:%M:%S)" $((SECONDS - start)); }
ok()   { report+=("ok      $1"); }
fail() { report+=("FAILED  $1"); failed_steps+=("$1"); printf '\n*** FAILED: %s\n' "$1"; }

# build DIR LABEL CMAKE-ARGS... : configure and build with Ninja; $targets (default: all)
# names what to build.
build() {
  local dir=$1 label=$2; shift 2
  section "configure + build $dir ($label)"
  if cmake -S . -B "$dir" -G Ninja "$@" && cmake --build "$dir" -j "$JOBS" --target ${targets:-all}; then
    ok "build $dir"
    return 0
  fi
  fail "build $dir"
  return 1
}

# run_ctest DIR [CTEST-ARGS...] : runs ctest and adds its "tests passed, N tests failed out
# of M" line to the totals. A run that ends without that line (no tests, ctest crashed) is
# a failure.
run_ctest() {
  local dir=$1 log="$1/ctest.log"
  shift
  section "ctest $dir $*"
  ctest --test-dir "$dir" --output-on-failure -j "$JOBS" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line; line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
  if [[ -z $line ]]; then
    fail "ctest $dir (no result line from ctest)"
    return
  fi
  local nfail ntotal
  nfail=$(sed -E 's/.*tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
  ntotal=$(sed -E 's/.*tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
  passed=$((passed + ntotal - nfail))
  failed=$((failed + nfail))
  if ((rc == 0 && nfail == 0)); then ok "ctest $dir: $((ntotal - nfail)) passed"
  else fail "ctest $dir: $nfail of $ntotal failed"; fi
}

# ---- 1. dependencies --------------------------------------------------------------------
section "dependencies (scripts/deps.sh)"
if ./scripts/deps.sh; then ok "deps"; else fail "deps"; fi

# ---- 2. the normal build ----------------------------------------------------------------
# -g1: line tables only (file and line in traces and gdb, no variables), a quarter less
# build time than -g (one test file: 32 s at -O2 -g, 24 s at -O2 -g1).
build build RelWithDebInfo -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" &&
  run_ctest build

# ---- 3. sanitizers ----------------------------------------------------------------------
if [[ $SKIP_ASAN == 1 ]]; then
  section "ASan+UBSan: skipped (SKIP_ASAN=1)"
  report+=("skipped ASan+UBSan build")
else
  # detect_leaks: every test must free what it allocates. UB already stops the program
  # (-fno-sanitize-recover); print where.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  # -O1 -g1 (line tables only), as ASan's documentation advises: stack traces keep file
  # and line, and the build is faster (one test file, measured: 81 s at -O2 -g, 58 s at
  # -O1 -g1; CMakeLists.txt's GALAXY_SANITIZE leaves out UBSan's vptr check: 45 s).
  build build-asan "ASan+UBSan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGALAXY_SANITIZE=ON \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
    -DGALAXY_BENCH=OFF && run_ctest build-asan -LE '^qemu$'
  # (-LE qemu: the three QEMU guest tests, which boot a kernel under TCG and drive the
  # daemons with the kernel's 9P client, run in the normal build only: under ASan they
  # took 290 s of test time against 80 s there, over CI's 45 minutes. What is lost is
  # ASan watching the daemons under the kernel client's traffic; the same server code is
  # under ASan in the other tests and the fuzzers.)
  unset ASAN_OPTIONS UBSAN_OPTIONS
fi

# ---- 4. man pages -----------------------------------------------------------------------
section "man page lint (mandoc -Tlint -W warning)"
shopt -s nullglob
pages=(man/*/*.*)
shopt -u nullglob
if ((${#pages[@]} == 0)); then
  echo "no man pages yet"
  report+=("skipped man lint (no pages under man/)")
else
  # mandoc exits non-zero on warnings with -W warning; print them all, then fail.
  if lint=$(mandoc -Tlint -W warning "${pages[@]}" 2>&1) && [[ -z $lint ]]; then
    echo "${#pages[@]} pages, no warnings"
    ok "man lint (${#pages[@]} pages)"
  else
    printf '%s\n' "$lint"
    fail "man lint"
  fi
fi

# ---- 5. fuzzing -------------------------------------------------------------------------
if [[ $SKIP_FUZZ == 1 ]]; then
  section "fuzz: skipped (SKIP_FUZZ=1)"
  report+=("skipped fuzzing")
elif [[ ! -f fuzz/CMakeLists.txt ]]; then
  section "fuzz: no fuzz/CMakeLists.txt yet"
  report+=("skipped fuzzing (no fuzz/CMakeLists.txt)")
else
  # Only the fuzz targets (fuzz/all: Ninja's per-folder target) and what they link.
  if targets=fuzz/all CC=clang-16 CXX=clang++-16 build build-fuzz "clang-16, libFuzzer" \
       -DCMAKE_CXX_COMPILER=clang++-16 -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGALAXY_FUZZ=ON -DGALAXY_TESTS=OFF \
       -DGALAXY_BENCH=OFF; then
    shopt -s nullglob
    targets=()
    for t in build-fuzz/fuzz/fuzz_*; do [[ -f $t && -x $t ]] && targets+=("$t"); done
    shopt -u nullglob
    if ((${#targets[@]} == 0)); then
      section "fuzz: no build-fuzz/fuzz/fuzz_* targets"
      fail "fuzz (no targets were built)"
    else
      per=$((FUZZ_SECONDS / ${#targets[@]}))
      ((per < 10)) && per=10
      for t in "${targets[@]}"; do
        name=$(basename "$t")
        corpus=fuzz/corpus/${name#fuzz_}
        scratch=fuzz/corpus-run/${name#fuzz_}
        artifacts=build-fuzz/artifacts
        section "fuzz $name for ${per}s (corpus: $corpus)"
        rm -rf "$scratch"; mkdir -p "$scratch" "$artifacts"
        if [[ -d $corpus ]]; then cp -r "$corpus"/. "$scratch"/; else echo "($corpus does not exist; starting empty)"; fi
        dict=()
        [[ -f fuzz/${name#fuzz_}.dict ]] && dict=(-dict="fuzz/${name#fuzz_}.dict")
        # The scratch copy takes new inputs, so the checked-in corpus never changes here.
        if "$t" -max_total_time="$per" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
             -artifact_prefix="$artifacts/$name-" "${dict[@]}" "$scratch" >"build-fuzz/$name.log" 2>&1; then
          grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "build-fuzz/$name.log" || tail -n 3 "build-fuzz/$name.log"
          ok "fuzz $name (${per}s)"
        else
          tail -n 60 "build-fuzz/$name.log"
          echo "crash input (if any) under $root/$artifacts/; full log build-fuzz/$name.log"
          fail "fuzz $name"
        fi
      done
    fi
  fi
fi

# ---- 6. ARM --------------------------------------------------------------------------------
# The armhf (32-bit ARM) cross build of galaxy-node and its tests under qemu-user: the
# 32-bit size_t and long where a 9P server's 64-bit offsets and lengths are easiest to cut.
# The rest of the suite, and arm64, are scripts/test-arch.sh's (README, "ARM": the times
# that decided this).
if [[ $SKIP_ARM == 1 ]]; then
  section "ARM: skipped (SKIP_ARM=1)"
  report+=("skipped ARM (armhf) build and tests")
else
  section "ARM: scripts/test-arch.sh --node armhf"
  mkdir -p build-armhf
  JOBS=$JOBS ./scripts/test-arch.sh --node armhf 2>&1 | tee build-armhf/test-arch.log
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' build-armhf/test-arch.log | tail -n 1)
  if [[ -z $line ]]; then
    fail "ARM armhf (no result line from test-arch.sh)"
  else
    np=$(sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
    nf=$(sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
    passed=$((passed + np))
    failed=$((failed + nf))
    if ((rc == 0)); then ok "ARM armhf (galaxy-node and its tests): $np passed"
    else fail "ARM armhf: $nf failed${line#*failed}"; fi
  fi
fi

# ---- summary ----------------------------------------------------------------------------
section "summary ($((SECONDS - start)) s)"
printf '  %s\n' "${report[@]}"
if ((${#failed_steps[@]})); then
  printf '%d passed, %d failed; failed steps: %s\n' "$passed" "$failed" "$(IFS=';'; echo "${failed_steps[*]}" | sed 's/;/; /g')"
  exit 1
fi
printf '%d passed, %d failed\n' "$passed" "$failed"
