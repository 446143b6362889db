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
  libncurses-dev tmux                                   # galaxy top, and its test in a real terminal
  mandoc                                                # man page lint
  clang-16 libclang-rt-16-dev                           # libFuzzer targets in fuzz/
  hyperfine parallel                                    # bench/ and the peer comparisons
  diod                                                  # diodls/diodcat in tests/node/diod_test.cpp (its
                                                        # daemon stays off: /etc/default/diod DIOD_ENABLE=false)
  qemu-system-x86 busybox-static cpio kmod              # scripts/qemu-guest.sh (its kernel: below)
)

# The guest kernel of scripts/qemu-guest.sh (tests: cgroup limits, 9p mounts) is Debian's
# linux-image-amd64, unpacked into $kernel_root rather than installed: installing it runs
# update-initramfs, which took minutes on a fresh machine, and puts a kernel in /boot
# that the machine does not need. Skipped when /boot already has one.
kernel_root=/var/cache/galaxy-kernel
kernel_wanted() {
  ! compgen -G '/boot/vmlinuz-*' >/dev/null && ! compgen -G "$kernel_root/boot/vmlinuz-*" >/dev/null
}

# Whether package $1 is installed for this machine's architecture (or is arch all). dpkg -s
# succeeds for removed-but-configured packages too, so ask for the real state; and once
# other architectures are added (scripts/cross-deps.sh), a name matches one instance per
# architecture, so look for the native one.
native=$(dpkg --print-architecture)
is_installed() {
  dpkg-query -W -f='${Architecture} ${db:Status-Status}\n' "$1" 2>/dev/null | grep -Ex "($native|all) installed" >/dev/null
}
missing=()
for p in "${packages[@]}"; do
  is_installed "$p" || missing+=("$p")
done
((${#missing[@]} == 0)) && ! kernel_wanted && exit 0

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo -n)
  [[ -t 0 ]] && as_root=(sudo)   # may prompt for a password only when someone can answer
else
  echo "deps.sh: missing packages (${missing[*]}) and not root, and sudo is not installed" >&2
  exit 1
fi

log=$(mktemp /tmp/galaxy-deps.XXXXXX)
export DEBIAN_FRONTEND=noninteractive
if ((${#missing[@]} > 0)); then
  echo "deps.sh: installing ${missing[*]}"
  if ! { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
         "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
           --no-install-recommends "${missing[@]}"; } </dev/null >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "deps.sh: apt-get failed (full log: $log)" >&2
    exit 1
  fi
fi
if kernel_wanted; then
  # linux-image-amd64 is a meta-package: the kernel is the package it depends on.
  echo "deps.sh: unpacking Debian's kernel into $kernel_root (for scripts/qemu-guest.sh)"
  dl=$(mktemp -d /tmp/galaxy-kernel.XXXXXX)
  chmod 755 "$dl"   # apt-get download runs as _apt
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}' || true)
  if [[ -z $pkg ]]; then
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >>"$log" 2>&1 || true
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}' || true)
  fi
  if [[ -z $pkg ]] || ! (cd "$dl" && apt-get download -q "$pkg" </dev/null >>"$log" 2>&1) ||
     ! "${as_root[@]}" mkdir -p "$kernel_root" ||
     ! "${as_root[@]}" dpkg-deb -x "$dl"/"$pkg"_*.deb "$kernel_root" ||
     ! "${as_root[@]}" depmod -b "$kernel_root" "${pkg#linux-image-}"; then  # modules.dep: made at install
    tail -n 30 "$log" >&2
    echo "deps.sh: could not unpack the kernel package '${pkg:-?}' (full log: $log)" >&2
    rm -rf "$dl"
    exit 1
  fi
  rm -rf "$dl"
fi
rm -f "$log"
