#!/usr/bin/env bash
# The packages' install test, in a fresh Debian 12 root (issue 15):
#
#   scripts/install-test.sh [--arch ARCH] [DEBDIR]
#
# DEBDIR: the .debs (default build-deb/); ARCH: amd64, arm64 or armhf (default this
# machine's). As root.
#
# Another architecture than the machine's runs under qemu-user: every program in the root
# (apt, dpkg's scripts, munged, galaxy-node, galaxy) is ARCH's, run by the kernel through
# binfmt_misc with qemu-ARCH-static registered with the F flag, which
# `scripts/cross-deps.sh --emulation ARCH DIR` sets up (this script calls it when
# binfmt_misc has no qemu-ARCH entry). debootstrap then makes the root in one stage, as
# for the machine's own architecture. systemd-analyze and readelf stay the machine's.
#
# 1. debootstrap --variant=minbase --arch ARCH bookworm into a temporary directory (the
#    tarball of its packages is kept in /var/cache/galaxy-debootstrap, so a second run
#    downloads nothing from debootstrap; apt in the root still downloads munge and the
#    libraries);
# 2. `apt install ./galaxy-node_*.deb ./galaxy_*.deb` in the root: it must pull munge;
#    galaxy-node --version, galaxy --version run; galaxy-node links neither SQLite nor
#    FUSE (readelf -d); the spool is root's 0711 and the galaxy user exists;
# 3. a node started from the installed /etc/galaxy/node.conf, edited as an administrator
#    would (join commented out, listen = tcp!127.0.0.1!5640), with munged running on a
#    key made for the test, answers `galaxy cat -a tcp!127.0.0.1!5640 /status` over TCP
#    with MUNGE; all of it in a network namespace of its own (unshare -n), so the port is
#    the test's alone; no systemd runs in a chroot, so munged and the node are started by
#    hand;
# 4. systemd-analyze verify accepts the installed units (run on this machine with
#    --root=ROOT, since no systemd runs in the root);
# 5. removal: purge, then install all three packages again over a snapshot of the root's
#    files, `apt remove` them: what is left beyond the snapshot must be the admin's config
#    (/etc/galaxy) and state (/var/spool/galaxy, /var/lib/galaxy) only; `apt purge`: the
#    root's files must be exactly the snapshot's.
#
# Prints one "ok: ..." or "FAIL: ..." line per check and ends with "N passed, M failed";
# the exit status is non-zero when anything failed. KEEP=1 keeps the root for a look.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
arch=$(dpkg --print-architecture)
if [[ ${1:-} == --arch ]]; then arch=${2:?usage: install-test.sh [--arch ARCH] [DEBDIR]}; shift 2; fi
case $arch in amd64|arm64|armhf) ;; *) echo "install-test.sh: unknown architecture '$arch'" >&2; exit 2 ;; esac
debdir=$(cd "${1:-$here/build-deb}" && pwd) || exit 2
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=/var/cache/galaxy-debootstrap
((EUID == 0)) || { echo "install-test.sh: needs root (debootstrap, chroot)" >&2; exit 2; }
if [[ $arch != "$(dpkg --print-architecture)" ]]; then
  qemu=qemu-aarch64; [[ $arch == armhf ]] && qemu=qemu-arm
  if ! grep -qs '^flags: .*F' "/proc/sys/fs/binfmt_misc/$qemu"; then
    "$here/scripts/cross-deps.sh" --emulation "$arch" "$here/build-$arch/sysroot" >/dev/null ||
      { echo "install-test.sh: cannot set up qemu-user for $arch (scripts/cross-deps.sh --emulation)" >&2; exit 2; }
  fi
  echo "install-test.sh: $arch under qemu-user ($qemu-static through binfmt_misc)"
fi
for t in debootstrap unshare systemd-analyze readelf; do
  command -v "$t" >/dev/null || { echo "install-test.sh: $t is missing (apt install debootstrap)" >&2; exit 2; }
done
shopt -s nullglob
debs_node=("$debdir"/galaxy-node_*_"$arch".deb)
debs_tool=("$debdir"/galaxy_*_"$arch".deb)
debs_sched=("$debdir"/galaxy-sched_*_"$arch".deb)
if ((${#debs_node[@]} != 1 || ${#debs_tool[@]} != 1 || ${#debs_sched[@]} != 1)); then
  echo "install-test.sh: want exactly one galaxy, galaxy-node and galaxy-sched .deb for $arch in $debdir" >&2
  exit 2
fi

passed=0 failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

root=$(mktemp -d /var/tmp/galaxy-install-test.XXXXXX)
chmod 755 "$root"   # the root's /: mktemp's 0700 would shut out munge's postinst (su munge)
mounted=()
cleanup() {
  # munged and the node run in their own network namespace, started from a shell that
  # waits for them; they are ended by pid below, before the unmounts.
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null; done
  if [[ ${KEEP:-0} == 1 ]]; then echo "install-test.sh: kept $root"; else rm -rf --one-file-system "$root"; fi
}
trap cleanup EXIT

# 1. The root.
mkdir -p "$cache"
tarball=$cache/bookworm-$arch-minbase.tgz
if [[ ! -s $tarball ]]; then
  echo "install-test.sh: debootstrap --make-tarball $tarball (once)"
  tmp=$(mktemp -d /var/tmp/galaxy-dbs.XXXXXX)
  if ! debootstrap --arch="$arch" --variant=minbase --include=ca-certificates --make-tarball="$tarball.part" \
       bookworm "$tmp" "$mirror" >"$root.log" 2>&1; then
    tail -n 20 "$root.log"; rm -rf "$tmp" "$tarball.part"; echo "FAIL: debootstrap --make-tarball"; exit 1
  fi
  rm -rf "$tmp"
  mv "$tarball.part" "$tarball"
fi
start=$SECONDS
if ! debootstrap --arch="$arch" --variant=minbase --include=ca-certificates --unpack-tarball="$tarball" \
     bookworm "$root" "$mirror" >"$root.log" 2>&1; then
  tail -n 20 "$root.log"; echo "FAIL: debootstrap bookworm"; exit 1
fi
rm -f "$root.log"
echo "install-test.sh: debootstrap took $((SECONDS - start)) s"
for m in proc dev dev/pts; do
  case $m in
    proc) mount -t proc proc "$root/proc" ;;
    dev) mount --bind /dev "$root/dev" ;;
    dev/pts) mount --bind /dev/pts "$root/dev/pts" ;;
  esac && mounted+=("$root/$m")
done
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/debs"
cp "${debs_node[0]}" "${debs_tool[0]}" "${debs_sched[0]}" "$root/debs/"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  DEBIAN_FRONTEND=noninteractive "$@"; }
apt_root() { in_root apt-get -q -y -o APT::Sandbox::User=root "$@" >>"$root/apt.log" 2>&1 \
  || { tail -n 20 "$root/apt.log"; return 1; }; }
apt_root update || { echo "FAIL: apt-get update in the root"; exit 1; }
# systemd (not running: its units, for systemd-analyze verify --root below); part of the
# baseline, as on any Debian machine with units to verify.
apt_root install --no-install-recommends systemd || { echo "FAIL: apt-get install systemd in the root"; exit 1; }

# The root's files, less what changes by itself (apt's and dpkg's records, caches, logs).
snapshot() {
  (cd "$root" && find . -xdev \( -path ./proc -o -path ./dev -o -path ./sys -o -path ./run -o -path ./tmp \
      -o -path ./var/lib/dpkg -o -path ./var/lib/apt -o -path ./var/cache -o -path ./var/log -o -path ./debs \
      -o -path ./apt.log -o -path ./etc/ld.so.cache \) -prune -o -print | LC_ALL=C sort)
}

# 2. Installation pulls munge; the programs run.
n=$(basename "${debs_node[0]}") t=$(basename "${debs_tool[0]}") s=$(basename "${debs_sched[0]}")
start=$SECONDS
check "apt install ./$n ./$t" apt_root install "./debs/$n" "./debs/$t"
echo "install-test.sh: apt install took $((SECONDS - start)) s"
[[ $(in_root dpkg-query -W -f='${db:Status-Status}' munge 2>/dev/null) == installed ]] && ok "apt pulled in munge" \
  || fail "munge is not installed"
v=$(in_root galaxy-node --version 2>&1) && [[ $v == *galaxy-node* ]] && ok "galaxy-node --version: $v" || fail "galaxy-node --version: $v"
v=$(in_root galaxy --version 2>&1) && [[ $v == *galaxy* ]] && ok "galaxy --version: $v" || fail "galaxy --version: $v"
libs=$(readelf -d "$root/usr/sbin/galaxy-node" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
if [[ -n $libs && $libs != *sqlite* && $libs != *fuse* ]]; then ok "galaxy-node links no SQLite or FUSE: $libs"
else fail "galaxy-node's libraries: $libs"; fi
[[ $(stat -c '%U %a' "$root/var/spool/galaxy") == "root 711" ]] && ok "/var/spool/galaxy is root's, 0711" \
  || fail "/var/spool/galaxy: $(stat -c '%U %a' "$root/var/spool/galaxy" 2>&1)"
check "the galaxy system user exists" in_root getent passwd galaxy
check "/etc/galaxy/node.conf is a conffile" grep -q '^ /etc/galaxy/node.conf ' <(in_root dpkg-query -W -f='${Conffiles}\n' galaxy-node)

# 3. A node from the installed config answers galaxy cat /status over TCP with MUNGE.
sed -i 's|^join = |# join = |; s|^# listen = tcp!\*!5640|listen = tcp!127.0.0.1!5640|' "$root/etc/galaxy/node.conf"
# munge's postinst made a key unless it could not; make one for the test either way.
in_root sh -c 'mungekey -f -c -k /etc/munge/munge.key && chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key \
  && install -d -o munge -g munge -m 755 /run/munge' >/dev/null 2>&1 || fail "making a MUNGE key in the root"
cat >"$root/node-test.sh" <<'EOF'
# Runs inside the root, in a network namespace of its own (loopback up): munged, the node,
# the client.
setpriv --reuid=munge --regid=munge --clear-groups munged --foreground >/tmp/munged.log 2>&1 &
munged=$!
for i in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
galaxy-node --config /etc/galaxy/node.conf >/tmp/node.log 2>&1 &
node=$!
for i in $(seq 100); do grep -q 'listening on' /tmp/node.log && break; sleep 0.1; done
status=1
if galaxy cat -a 'tcp!127.0.0.1!5640' /status >/tmp/status.out 2>/tmp/status.err; then status=0; fi
echo "--- galaxy cat /status:"; cat /tmp/status.out /tmp/status.err
echo "--- the node's log:"; cat /tmp/node.log
kill "$node" "$munged" 2>/dev/null; wait "$node" "$munged" 2>/dev/null
exit $status
EOF
if unshare -n sh -c 'ip link set lo up && exec chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin sh /node-test.sh' sh "$root" >"$root/node-test.out" 2>&1 && grep -q . "$root/tmp/status.out"; then
  ok "a node from the installed node.conf answers galaxy cat /status: $(head -n 1 "$root/tmp/status.out")"
else
  fail "galaxy cat /status from a node started from node.conf"; sed 's/^/  /' "$root/node-test.out"
fi
rm -f "$root/node-test.sh" "$root/node-test.out"

# 4. The units.
apt_root install "./debs/$s" || fail "apt install ./$s"
for m in man1/galaxy.1 man4/galaxy.4 man4/galaxy-node.4 man8/galaxy-node.8 man8/galaxy-sched.8; do
  [[ -f $root/usr/share/man/$m.gz ]] || fail "the man page $m (Documentation= of the units) is not installed"
done
for u in galaxy-node galaxy-sched; do
  f=/lib/systemd/system/$u.service
  if [[ -f $root$f ]] && out=$(systemd-analyze verify --man=no --root="$root" "$f" 2>&1) && [[ -z $out ]]; then
    ok "systemd-analyze verify $f"
  else
    fail "systemd-analyze verify $f: ${out:-missing}"
  fi
done
[[ ! -e $root/etc/systemd/system/multi-user.target.wants/galaxy-node.service ]] && ok "galaxy-node.service is not enabled on installation" \
  || fail "galaxy-node.service was enabled on installation"

# 5. Removal.
apt_root purge galaxy galaxy-node galaxy-sched || fail "apt purge (first)"
before=$(snapshot)
for p in /usr/sbin/galaxy-node /usr/bin/galaxy /usr/sbin/galaxy-sched /etc/galaxy /var/spool/galaxy /var/lib/galaxy; do
  [[ ! -e $root$p ]] || fail "$p is left after purge"
done
apt_root install "./debs/$n" "./debs/$t" "./debs/$s" || fail "apt install of the three packages"
echo "made by hand" >"$root/var/spool/galaxy/admin-file"   # state the admin or node left
apt_root remove galaxy galaxy-node galaxy-sched || fail "apt remove"
after=$(snapshot)
# Allowed: the config, the state, and deb-systemd-helper's record of the units, which
# debhelper's postrm keeps until purge for every package with units.
extra=$(comm -13 <(echo "$before") <(echo "$after") \
  | grep -vE '^\./(etc/galaxy|var/spool/galaxy|var/lib/galaxy)(/|$)|^\./var/lib/systemd/deb-systemd-helper-enabled/galaxy-(node|sched)\.service\.dsh-also$')
gone=$(comm -23 <(echo "$before") <(echo "$after"))
kept=$(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')
if [[ -z $extra && -z $gone ]]; then ok "apt remove leaves only config and state: $kept"
else fail "apt remove: left: ${extra:-nothing else}; removed from before: ${gone:-nothing}"; fi
[[ -f $root/etc/galaxy/node.conf && -f $root/var/spool/galaxy/admin-file ]] && ok "remove kept node.conf and the spool" \
  || fail "remove lost node.conf or the spool"
apt_root purge galaxy galaxy-node galaxy-sched || fail "apt purge"
after=$(snapshot)
if [[ $after == "$before" ]]; then ok "apt purge leaves the root's files as before the installation"
else fail "apt purge: differences: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | tr '\n' ' ')"; fi

echo "$passed passed, $failed failed"
((failed == 0))
