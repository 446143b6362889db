#!/usr/bin/env bash
# Installs the Debian 12 packages Galaxy needs to build, test, fuzz and benchmark.
# Idempotent and quiet: only missing packages are installed, and `apt-get update` runs only
# when something is missing. Works as root, or through sudo otherwise. Safe without a
# terminal (CI runs it with no stdin): apt is told to be noninteractive.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config          # toolchain
  libasio-dev libcli11-dev libfmt-dev                   # srv9p, fsclient, the galaxy tool
  libgtest-dev googletest libbenchmark-dev              # tests/ and bench/
  libfuse3-dev fuse3                                    # the FUSE bridge (galaxy mount)
  libsqlite3-dev libssl-dev                             # the job store, the cluster key
  munge libmunge-dev                                    # authentication (srv9p/munge.*)
  mandoc                                                # man page lint
  clang-16 libclang-rt-16-dev                           # libFuzzer targets in fuzz/
  hyperfine parallel                                    # bench/ and the peer comparisons
  qemu-system-x86 linux-image-amd64 busybox-static cpio # scripts/qemu-guest.sh (a kernel for
                                                        # tests: cgroup limits, 9p mounts)
)

missing=()
for p in "${packages[@]}"; do
  # dpkg -s succeeds for removed-but-configured packages too; ask for the real state.
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo -n)
  [[ -t 0 ]] && as_root=(sudo)   # may prompt for a password only when someone can answer
else
  echo "deps.sh: missing packages (${missing[*]}) and not root, and sudo is not installed" >&2
  exit 1
fi

echo "deps.sh: installing ${missing[*]}"
log=$(mktemp /tmp/galaxy-deps.XXXXXX)
export DEBIAN_FRONTEND=noninteractive
if ! { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
       "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
         --no-install-recommends "${missing[@]}"; } </dev/null >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "deps.sh: apt-get failed (full log: $log)" >&2
  exit 1
fi
rm -f "$log"
