#!/usr/bin/env bash
# Installs what a cross build of Galaxy for ARCH needs on a Debian 12 amd64 machine, and
# unpacks MUNGE for ARCH into DIR (the toolchain file's GALAXY_CROSS_SYSROOT).
#
#   scripts/cross-deps.sh [--emulation] ARCH DIR        ARCH: arm64 | armhf
#
#   - dpkg --add-architecture ARCH (once; apt-get update follows);
#   - crossbuild-essential-ARCH: TRIPLET-gcc/g++ 12, the native build's GCC;
#   - the libraries as multiarch packages: libfmt-dev, libsqlite3-dev, libfuse3-dev,
#     libgtest-dev and libncurses-dev (galaxy top) for ARCH (Multi-Arch: same, so they sit
#     beside the amd64 ones in /usr/lib/TRIPLET); CLI11 and Asio are header-only (arch all: scripts/deps.sh);
#   - libmunge-dev and libmunge2 for ARCH have no Multi-Arch field: dpkg cannot install
#     them beside the amd64 libmunge2 that munged needs. They are fetched with
#     `apt-get download` and unpacked with `dpkg-deb -x` into DIR (DIR/usr/include/munge.h,
#     DIR/usr/lib/TRIPLET/libmunge.so*), and DIR/usr/lib/TRIPLET/pkgconfig/munge.pc is
#     rewritten to name DIR's absolute paths. cmake/cross-debian.cmake puts that directory
#     first on pkg-config's path. The binaries built find libmunge.so.2 there through the
#     build tree's RUNPATH (CMake's, for a library outside the system directories); an
#     installed binary finds the system's /usr/lib/TRIPLET/libmunge.so.2 of the ARM
#     machine (package libmunge2). DIR/.munge-version records what was unpacked; a newer
#     candidate version is unpacked again.
#   - --emulation: also qemu-user-static, binfmt_misc mounted on /proc/sys/fs/binfmt_misc
#     when it is not, and the interpreters for ARCH registered from
#     /usr/lib/binfmt.d/qemu-*.conf (flags OPF: F opens the interpreter at registration,
#     so that it works in other mount namespaces and chroots too). ARM programs then run
#     like native ones, finding their loader and libraries in Debian's multiarch
#     directories (/lib/ld-linux-armhf.so.3, /usr/lib/arm-linux-gnueabihf).
#
# Idempotent: installs only what is missing. As root, or through sudo (as scripts/deps.sh).
# Exit status non-zero, with the reason, when anything fails.
set -euo pipefail

emulation=0
if [[ ${1:-} == --emulation ]]; then emulation=1; shift; fi
if (($# != 2)); then
  echo "usage: scripts/cross-deps.sh [--emulation] arm64|armhf DIR" >&2
  exit 2
fi
arch=$1
dir=$2
case $arch in
  arm64) triplet=aarch64-linux-gnu qemu=qemu-aarch64 ;;
  armhf) triplet=arm-linux-gnueabihf qemu=qemu-arm ;;
  *) echo "cross-deps.sh: unknown architecture '$arch' (arm64 or armhf)" >&2; exit 2 ;;
esac
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo -n)
  [[ -t 0 ]] && as_root=(sudo)
else
  as_root=(false)   # fails below, only if something needs root
fi
log=$(mktemp /tmp/galaxy-cross-deps.XXXXXX)
trap 'rm -f "$log"' EXIT
# apt-get as root; other helpers' apt runs may hold the lock: wait up to 10 minutes.
apt_root() {
  if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 "$@" \
       </dev/null >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "cross-deps.sh: apt-get $* failed" >&2
    exit 1
  fi
}

updated=0
foreign=" $(dpkg --print-foreign-architectures | tr '\n' ' ') "
if [[ $foreign != *" $arch "* ]]; then
  echo "cross-deps.sh: dpkg --add-architecture $arch"
  "${as_root[@]}" dpkg --add-architecture "$arch"
  apt_root update
  updated=1
fi

packages=(crossbuild-essential-"$arch" pkg-config
          libfmt-dev:"$arch" libsqlite3-dev:"$arch" libfuse3-dev:"$arch" libgtest-dev:"$arch"
          libncurses-dev:"$arch")
((emulation)) && packages+=(qemu-user-static)
missing=()
for p in "${packages[@]}"; do
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "cross-deps.sh: installing ${missing[*]}"
  ((updated)) || apt_root update
  updated=1
  apt_root install -y --no-install-recommends "${missing[@]}"
fi

# MUNGE for ARCH, unpacked (see the top).
want=$(apt-cache policy "libmunge-dev:$arch" 2>/dev/null | awk '/Candidate:/ {print $2}')
if [[ -z $want || $want == "(none)" ]]; then
  ((updated)) || apt_root update
  want=$(apt-cache policy "libmunge-dev:$arch" 2>/dev/null | awk '/Candidate:/ {print $2}')
fi
if [[ -z $want || $want == "(none)" ]]; then
  echo "cross-deps.sh: apt knows no libmunge-dev:$arch" >&2
  exit 1
fi
if [[ $(cat "$dir/.munge-version" 2>/dev/null) != "$want" || ! -e $dir/usr/lib/$triplet/libmunge.so.2 ]]; then
  echo "cross-deps.sh: unpacking libmunge-dev:$arch and libmunge2:$arch $want into $dir"
  dl=$(mktemp -d /tmp/galaxy-munge.XXXXXX)
  chmod 755 "$dl"   # apt-get download drops to the _apt user
  if ! (cd "$dl" && apt-get download -q "libmunge-dev:$arch=$want" "libmunge2:$arch=$want") </dev/null >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    rm -rf "$dl"
    echo "cross-deps.sh: apt-get download of libmunge-dev:$arch failed" >&2
    exit 1
  fi
  for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
  rm -rf "$dl"
  pc=$dir/usr/lib/$triplet/pkgconfig/munge.pc
  sed -i -E "s|^(prefix\|exec_prefix)=/usr$|\1=$dir/usr|; s|^includedir=/usr/|includedir=$dir/usr/|; s|^libdir=/usr/|libdir=$dir/usr/|" "$pc"
  grep -q "^libdir=$dir/" "$pc" || { echo "cross-deps.sh: could not rewrite $pc" >&2; exit 1; }
  echo "$want" >"$dir/.munge-version"
fi

if ((emulation)); then
  mnt=/proc/sys/fs/binfmt_misc
  if [[ ! -e $mnt/register ]]; then
    echo "cross-deps.sh: mounting binfmt_misc on $mnt"
    "${as_root[@]}" mount -t binfmt_misc binfmt_misc "$mnt"
  fi
  if [[ ! -e $mnt/$qemu ]]; then
    conf=/usr/lib/binfmt.d/$qemu.conf
    [[ -f $conf ]] || { echo "cross-deps.sh: $conf is missing (qemu-user-static)" >&2; exit 1; }
    echo "cross-deps.sh: registering $conf with binfmt_misc"
    grep -v '^#' "$conf" | "${as_root[@]}" tee "$mnt/register" >/dev/null
  fi
  if [[ $(sed -n 's/^flags: //p' "$mnt/$qemu") != *F* ]]; then
    echo "cross-deps.sh: warning: $mnt/$qemu lacks the F flag; ARM programs will not start" \
      "in other mount namespaces (ip netns exec) or chroots" >&2
  fi
  if [[ $(head -n 1 "$mnt/$qemu") != enabled ]]; then
    echo 1 | "${as_root[@]}" tee "$mnt/$qemu" >/dev/null
  fi
fi
