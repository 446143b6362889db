#!/usr/bin/env bash
# Builds the Debian packages galaxy, galaxy-node and galaxy-sched (debian/) into build-deb/:
#
#   scripts/packages.sh [amd64|arm64|armhf]...      (default: all three)
#
# Each architecture is built by dpkg-buildpackage -b in a copy of the tree
# (build-deb/src-ARCH/galaxy: the files git tracks or would track, so that nothing is
# written beside the checkout and the checkout's build trees are not copied), then its
# .debs, .buildinfo and .changes are moved to build-deb/ and checked with lintian
# (`lintian --fail-on error,warning`, the overrides in debian/*.lintian-overrides).
# --version prints the checkout's `git describe --always --dirty` (GALAXY_GIT_DESCRIBE).
#
# - First, every run installs the packaging tools (build-essential, debhelper, dpkg-dev,
#   fakeroot, lintian) and the Build-Depends for the machine's own architecture
#   (`apt-get build-dep ./`), so that it works on a fresh Debian 12 machine.
# - The build machine's architecture: natively, with the Build-Depends checked.
# - Another (arm64, armhf on amd64): cross, `dpkg-buildpackage -a ARCH` with Debian's
#   cross toolchain and multiarch libraries, which scripts/cross-deps.sh ARCH DIR installs.
#   libmunge-dev has no Multi-Arch field and cannot be installed for ARCH beside the
#   machine's own libmunge2 (munged needs it): cross-deps.sh unpacks it into DIR
#   (build-deb/sysroot-ARCH) and debian/rules finds it there through GALAXY_MUNGE_SYSROOT.
#   For that one reason the Build-Depends are not checked (-d): dpkg would report
#   libmunge-dev:ARCH missing. scripts/cross-deps.sh comes from the cross-build work
#   (branch arm); CROSS_DEPS=PATH names another copy of it.
#
# ccache is used when installed (CMAKE_CXX_COMPILER_LAUNCHER). DEB_BUILD_OPTIONS defaults
# to "parallel=2 nocheck" (debian/rules runs no tests in any case).
# Exit status non-zero when a build or lintian fails; the last lines say which.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=$here/build-deb
native=$(dpkg --print-architecture)
archs=("$@")
((${#archs[@]})) || archs=(amd64 arm64 armhf)
cross_deps=${CROSS_DEPS:-$here/scripts/cross-deps.sh}
export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-"parallel=2 nocheck"}
command -v ccache >/dev/null && export CMAKE_CXX_COMPILER_LAUNCHER=ccache
export GALAXY_GIT_DESCRIBE
GALAXY_GIT_DESCRIBE=$(git -C "$here" describe --always --dirty 2>/dev/null || echo unknown)
version=$(cd "$here" && dpkg-parsechangelog -S Version)
mkdir -p "$out"

results=()
status=0
# The packaging tools (debhelper, dpkg-dev, fakeroot, lintian), and the Build-Depends for
# the machine's own architecture (apt-get build-dep, which reads debian/control; for a
# cross build the ARCH libraries come from cross-deps.sh below). As root, else sudo.
as_root=(); ((EUID == 0)) || as_root=(sudo)
apt_install() {
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get -q -o DPkg::Lock::Timeout=600 install -y \
    --no-install-recommends "$@"
}
if ! apt_install build-essential debhelper dpkg-dev fakeroot lintian >"$out/apt.log" 2>&1 ||
   ! (cd "$here" && DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get -q -o DPkg::Lock::Timeout=600 \
        build-dep -y ./) >>"$out/apt.log" 2>&1; then
  tail -n 20 "$out/apt.log" >&2
  echo "packages.sh: installing the packaging tools or the Build-Depends failed ($out/apt.log)" >&2
  exit 1
fi
for arch in "${archs[@]}"; do
  case $arch in amd64|arm64|armhf) ;; *) echo "packages.sh: unknown architecture '$arch'" >&2; exit 2 ;; esac
  log=$out/build-$arch.log
  src=$out/src-$arch/galaxy
  rm -rf "$out/src-$arch"
  mkdir -p "$src"
  (cd "$here" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src")
  flags=(-us -uc -b)
  env_extra=()
  if [[ $arch != "$native" ]]; then
    sysroot=$out/sysroot-$arch
    if [[ ! -x $cross_deps ]]; then
      echo "packages.sh: $arch: $cross_deps is missing (the cross-build branch 'arm' brings it)" >&2
      results+=("$arch: not built (no cross-deps.sh)"); status=1; continue
    fi
    if ! "$cross_deps" "$arch" "$sysroot" >"$log" 2>&1; then
      tail -n 20 "$log" >&2
      results+=("$arch: cross-deps.sh failed ($log)"); status=1; continue
    fi
    # TRIPLET-pkg-config, which debhelper's cmake names for a cross build, is pkgconf:ARCH
    # (Multi-Arch: same, beside the native one); cross-deps.sh does not install it.
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "pkgconf:$arch" 2>/dev/null) != installed ]]; then
      DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 install -y \
        --no-install-recommends "pkgconf:$arch" >>"$log" 2>&1 \
        || { results+=("$arch: apt-get install pkgconf:$arch failed ($log)"); status=1; continue; }
    fi
    flags=(-a "$arch" -d -us -uc -B)
    env_extra=(GALAXY_MUNGE_SYSROOT="$sysroot")
  fi
  echo "packages.sh: $arch: dpkg-buildpackage ${flags[*]} in $src (log: $log)"
  start=$SECONDS
  if ! (cd "$src" && env "${env_extra[@]}" dpkg-buildpackage "${flags[@]}") >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    results+=("$arch: dpkg-buildpackage failed after $((SECONDS - start)) s ($log)"); status=1; continue
  fi
  took=$((SECONDS - start))
  changes=$out/src-$arch/galaxy_${version}_$arch.changes
  # Every file the .changes names, and the .changes itself.
  for f in $(awk '/^Files:/ {on=1; next} /^[^ ]/ {on=0} on {print $5}' "$changes"); do
    mv "$out/src-$arch/$f" "$out/"
  done
  mv "$changes" "$out/"
  rm -rf "$out/src-$arch"
  if lintian --fail-on error,warning "$out/galaxy_${version}_$arch.changes" >"$out/lintian-$arch.log" 2>&1; then
    results+=("$arch: built in $took s; lintian: $(grep -c . "$out/lintian-$arch.log" || true) lines ($out/lintian-$arch.log)")
  else
    cat "$out/lintian-$arch.log" >&2
    results+=("$arch: built in $took s; lintian FAILED ($out/lintian-$arch.log)"); status=1
  fi
done
printf 'packages.sh: %s\n' "${results[@]}"
ls -l "$out"/*.deb 2>/dev/null || true
exit $status
