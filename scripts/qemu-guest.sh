#!/usr/bin/env bash
# Runs a command in a throwaway QEMU guest and exits as it did.
#
#   scripts/qemu-guest.sh [OPTION]... -- COMMAND [ARG]...
#
# The guest is Debian's own kernel (linux-image-amd64: /boot's, else the copy scripts/deps.sh unpacks into /var/cache/galaxy-kernel) under
# qemu-system-x86_64 with TCG (no KVM needed), booted straight into an initramfs made on
# the fly: busybox (busybox-static) for a shell and its tools, the files given with
# --file (an ELF binary brings the shared libraries `ldd` lists, and its loader), the
# kernel modules given with --module (with the modules they need, from modules.dep), a
# minimal /etc (root and nobody, files-only NSS). Nothing of the host is shared; what the
# command needs is copied in, so the host needs no 9p or KVM.
#
# In the guest, as root (PID 1 is a busybox sh script, /init): /proc, /sys, /dev
# (devtmpfs), /tmp and /run (tmpfs), cgroup2 at /sys/fs/cgroup with every controller the
# kernel has (memory cpu pids io ...) enabled in the root's cgroup.subtree_control, lo up.
# COMMAND runs with stdin /dev/null and PATH /usr/local/bin:/usr/bin:/usr/sbin, in /root;
# a single word is run as a shell script line (`sh -c WORD`), several words as a command
# (each quoted). Its output, and only the kernel's critical messages, come over the
# serial console to this script's stdout. At the end the guest prints a line
# "qemu-guest: exit N" and powers off; this script exits N.
#
# Options:
#   --file HOSTPATH[:GUESTPATH]  copy a file or directory in (default: the same path);
#                                repeatable. ELF files bring their libraries, and lose
#                                their debug sections in the guest (symbols stay).
#   --module NAME                load a kernel module (e.g. 9p, 9pnet_virtio, virtio_net)
#                                and what it depends on; built-in ones are skipped;
#                                repeatable.
#   --net                        user-mode networking (QEMU slirp, virtio-net): the guest is
#                                10.0.2.15/24 on eth0, and 10.0.2.2 is the host: a
#                                connection to 10.0.2.2:PORT reaches the host's
#                                127.0.0.1:PORT. Loads virtio_pci and virtio_net.
#   --qemu-arg ARG               one more argument for qemu-system-x86_64; repeatable.
#   --timeout SECONDS            stop the guest after this long (default 300): exit 124.
#   --mem MIB                    guest memory (default 512).
#   --smp N                      guest CPUs (default 1).
#   --kernel PATH                the kernel (default: the newest /boot/vmlinuz-*); its
#                                modules come from /lib/modules/VERSION.
#   --keep DIR                   leave the initramfs tree and the console log in DIR.
#   -v                           show the kernel's boot messages too.
#
# Examples:
#   scripts/qemu-guest.sh -- 'cat /sys/fs/cgroup/cgroup.subtree_control'
#   scripts/qemu-guest.sh --file build/galaxy-node:/usr/local/bin/galaxy-node \
#     --file t.sh:/root/t.sh -- sh /root/t.sh
#   # the kernel's 9P client mounting a daemon that listens on the host's 127.0.0.1:PORT
#   # (trans=tcp lives in 9pnet_fd; trans=virtio in 9pnet_virtio):
#   scripts/qemu-guest.sh --net --module 9p --module 9pnet_fd -- \
#     'mkdir /mnt/g && mount -t 9p -o trans=tcp,port=PORT,version=9p2000 10.0.2.2 /mnt/g && ls -l /mnt/g'
#
# Boot time (TCG, -smp 1): about 1.6 s of guest time to the command, 2.5 s of wall time
# for `-- true` on an idle machine; 6 s with the machine's 2 cores busy.
#
# Exit status: the command's; 124 when the time limit ended the guest; 125 when the
# guest could not be built or ended without the exit line (the console log's end is
# printed); 77 when qemu-system-x86_64, a kernel in /boot or busybox is missing (the
# message says which): tests use it as ctest's SKIP_RETURN_CODE.
#
# Needs: qemu-system-x86 busybox-static cpio and a kernel (scripts/deps.sh gets them all). The
# kernel image in /boot must be readable (it is 0644 on Debian; some distributions make
# it 0600: run as root there).
set -euo pipefail

files=() modules=() qemu_extra=()
net=0 timeout_s=300 mem_mib=512 smp=1 kernel="" keep="" verbose=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 125; }
while (($#)); do
  case $1 in
    --file) files+=("$2"); shift 2 ;;
    --module) modules+=("$2"); shift 2 ;;
    --net) net=1; shift ;;
    --qemu-arg) qemu_extra+=("$2"); shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --mem) mem_mib=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --kernel) kernel=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    -v) verbose=1; shift ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "qemu-guest: unknown option $1" >&2; usage ;;
  esac
done
(($#)) || { echo "qemu-guest: no command (put it after --)" >&2; exit 125; }

skip() { echo "qemu-guest: SKIP: $*" >&2; exit 77; }
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (Debian: qemu-system-x86)"
command -v cpio >/dev/null || skip "cpio is not installed"
busybox=""
for b in /bin/busybox /usr/bin/busybox; do [[ -x $b ]] && { busybox=$b; break; }; done
[[ -n $busybox ]] || skip "busybox is not installed (Debian: busybox-static)"
if [[ -z $kernel ]]; then
  # /boot's, else the one scripts/deps.sh unpacked from Debian's linux-image-amd64.
  kernel=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
  [[ -n $kernel ]] || kernel=$(ls -1 /var/cache/galaxy-kernel/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
  [[ -n $kernel ]] || skip "no kernel in /boot nor /var/cache/galaxy-kernel/boot (scripts/deps.sh unpacks one)"
fi
[[ -e $kernel ]] || skip "$kernel does not exist"
[[ -r $kernel ]] || skip "$kernel is not readable (run as root)"
kver=${kernel##*/vmlinuz-}
kver=${kver##*/vmlinux-}
# The modules beside the kernel: PREFIX/lib/modules/VERSION for PREFIX/boot/vmlinuz-VERSION
# (the guest has them at /lib/modules/VERSION either way).
kprefix=$(dirname "$(dirname "$(readlink -f "$kernel")")")
[[ $kprefix == / ]] && kprefix=""
moddir=$kprefix/lib/modules/$kver
guest_moddir=/lib/modules/$kver
((${#modules[@]} == 0 && net == 0)) || [[ -f $moddir/modules.dep ]] || skip "no $moddir/modules.dep for $kernel"

work=$(mktemp -d /tmp/qemu-guest.XXXXXX)
cleanup() { [[ -n $keep ]] && { mkdir -p "$keep"; cp -a "$work"/. "$keep"/; }; rm -rf "$work"; }
trap cleanup EXIT
root=$work/root
fail() { echo "qemu-guest: $*" >&2; exit 125; }

# ---- the initramfs tree: merged /usr, as on Debian 12 -----------------------------------
mkdir -p "$root"/{usr/bin,usr/sbin,usr/lib,usr/lib64,usr/local/bin,etc,proc,sys,dev,tmp,run,root,mnt}
ln -s usr/bin "$root/bin"; ln -s usr/sbin "$root/sbin"; ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
chmod 1777 "$root/tmp"

# copy_elf_libs FILE: the shared libraries and loader ldd lists for FILE, at their paths.
copy_elf_libs() {
  local lib
  # "libx.so => /path (0x..)", "/lib64/ld-linux-x86-64.so.2 (0x..)"; linux-vdso has no path.
  while read -r lib; do
    [[ -e $root$lib ]] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
  done < <(ldd "$1" 2>/dev/null | sed -nE 's@.*=> (/[^ ]+) .*@\1@p; s@^[[:space:]]*(/[^ ]+) \(0x.*@\1@p')
}
is_elf() { [[ -f $1 && $(head -c 4 "$1" | od -An -c | tr -d ' ') == '177ELF' ]]; }

# add HOSTPATH GUESTPATH: copies a file or a directory tree, with the libraries of its ELFs.
# The guest's copies lose their debug sections (symbols stay): the initramfs is unpacked
# into the guest's memory, and a sanitizer build's binaries are 100 MB with them.
add() {
  local src=$1 dst=$2 f
  [[ -e $src ]] || fail "--file $src: no such file"
  mkdir -p "$root$(dirname "$dst")"
  cp -a -L --remove-destination "$src" "$root$dst"
  if [[ -d $src ]]; then
    while IFS= read -r -d '' f; do
      is_elf "$f" && { copy_elf_libs "$f"; strip_debug "$root$dst/${f#"$src"/}"; }
    done < <(find "$src" -type f -print0)
  elif is_elf "$src"; then
    copy_elf_libs "$src"
    strip_debug "$root$dst"
  fi
}
strip_debug() { command -v strip >/dev/null && strip --strip-debug "$1" 2>/dev/null || true; }

add "$busybox" /usr/bin/busybox
# Its applets as links in /usr/bin, made here in one go rather than in the slow guest.
"$busybox" --install -s "$root/usr/bin" 2>/dev/null || fail "busybox --install failed"

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' >"$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n10.0.2.2 host\n' >"$root/etc/hosts"
echo guest >"$root/etc/hostname"

# ---- kernel modules, in dependency order (modules.dep lists every module a module needs)
declare -A mod_path=() mod_seen=()
mod_order=()
if ((net)); then modules=(virtio_pci virtio_net "${modules[@]}"); fi
if ((${#modules[@]})); then
  while IFS= read -r line; do
    p=${line%%:*}; n=${p##*/}; n=${n%%.ko*}; mod_path[${n//-/_}]=$p
  done <"$moddir/modules.dep"
fi
is_builtin() { grep -qE "/${1//_/[-_]}\.ko\$" "$moddir/modules.builtin" 2>/dev/null; }
resolve() {  # resolve NAME: appends NAME's dependencies, then NAME, to mod_order
  local n=${1//-/_} p dep
  [[ -n ${mod_seen[$n]:-} ]] && return 0
  mod_seen[$n]=1
  p=${mod_path[$n]:-}
  if [[ -z $p ]]; then
    is_builtin "$n" && return 0
    fail "--module $1: no such module in $moddir/modules.dep, nor built in"
  fi
  for dep in $(grep -m1 "^$p:" "$moddir/modules.dep" | cut -d: -f2); do
    dep=${dep##*/}; resolve "${dep%%.ko*}"
  done
  mod_order+=("$p")
}
for m in "${modules[@]}"; do resolve "$m"; done
: >"$root/etc/modules-load"
for p in "${mod_order[@]}"; do
  mkdir -p "$root$guest_moddir/$(dirname "$p")"
  case $p in
    *.ko) cp "$moddir/$p" "$root$guest_moddir/$p" ;;
    *.ko.xz) xz -dc "$moddir/$p" >"$root$guest_moddir/${p%.xz}"; p=${p%.xz} ;;
    *.ko.zst) zstd -qdc "$moddir/$p" >"$root$guest_moddir/${p%.zst}"; p=${p%.zst} ;;
    *.ko.gz) gzip -dc "$moddir/$p" >"$root$guest_moddir/${p%.gz}"; p=${p%.gz} ;;
  esac
  echo "$guest_moddir/$p" >>"$root/etc/modules-load"
done

# ---- the given files and the command --------------------------------------------------
for spec in "${files[@]}"; do
  src=${spec%%:*}; dst=${spec#*:}
  [[ $spec == *:* ]] || dst=$src
  [[ $dst == /* ]] || fail "--file $spec: the guest path must be absolute"
  add "$src" "$dst"
done

# The command as POSIX sh text: one word as it is, several each in single quotes.
if (($# == 1)); then
  cmd=$1
else
  cmd=""
  for a in "$@"; do cmd+=" '${a//\'/\'\\\'\'}'"; done
fi
printf '%s\n' "$cmd" >"$root/etc/command"

cat >"$root/init" <<EOF
#!/usr/bin/busybox sh
export PATH=/usr/local/bin:/usr/bin:/usr/sbin HOME=/root USER=root LOGNAME=root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=0755 run /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
for c in \$(cat /sys/fs/cgroup/cgroup.controllers); do echo "+\$c" >/sys/fs/cgroup/cgroup.subtree_control; done
hostname guest
while read -r m; do insmod "\$m" || echo "qemu-guest: insmod \$m failed"; done </etc/modules-load
ip link set lo up
if [ $net = 1 ]; then
  ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 ||
    echo "qemu-guest: no eth0"
fi
cd /root
sh /etc/command </dev/null
echo "qemu-guest: exit \$?"
sync
poweroff -f
EOF
chmod 0755 "$root/init"

(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) >"$work/initramfs.cpio" || fail "cpio failed"

# ---- boot -------------------------------------------------------------------------------
# TCG takes seconds to run the bzImage's own xz decompressor, so boot the ELF inside it
# instead (QEMU loads an ELF kernel with a PVH entry note directly: CONFIG_PVH), unpacked
# once on the host and kept in a cache. Any trouble there: the bzImage as it is.
boot=$kernel
if [[ $(head -c 4 "$kernel" | od -An -c | tr -d ' ') != '177ELF' ]] && command -v xz >/dev/null; then
  cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/galaxy-qemu
  vmlinux=$cache/vmlinux-$kver-$(stat -c %Y-%s "$kernel")
  if [[ ! -s $vmlinux ]] && mkdir -p "$cache" 2>/dev/null; then
    off=$(LC_ALL=C grep -abo $'\xfd7zXZ\x00' "$kernel" | head -n 1 | cut -d: -f1 || true)
    if [[ -n $off ]]; then
      # xz complains of the bzImage's bytes after the stream: the ELF is whole all the same.
      tail -c +$((off + 1)) "$kernel" | xz -dc >"$vmlinux.$$" 2>/dev/null || true
      if is_elf "$vmlinux.$$"; then mv "$vmlinux.$$" "$vmlinux"; else rm -f "$vmlinux.$$"; fi
    fi
  fi
  [[ -s $vmlinux ]] && boot=$vmlinux
fi
append="console=ttyS0 panic=-1 rdinit=/init 8250.nr_uarts=1 mitigations=off"
((verbose)) || append+=" quiet loglevel=2"
qemu=(qemu-system-x86_64 -machine pc,accel=tcg -cpu max -smp "$smp" -m "$mem_mib"
      -nodefaults -no-user-config -nographic -no-reboot -serial stdio -monitor none
      -fw_cfg name=etc/sercon-port,string=0
      -kernel "$boot" -initrd "$work/initramfs.cpio" -append "$append")
((net)) && qemu+=(-netdev user,id=n0 -device virtio-net-pci,netdev=n0)
qemu+=("${qemu_extra[@]}")

console=$work/console.log
set +e
timeout -k 10 "$timeout_s" "${qemu[@]}" </dev/null 2> >(grep -v "should be prefixed with \"opt/\"" >&2) | sed -u 's/\r$//' | tee "$console"
rc=${PIPESTATUS[0]}
set -e
[[ -s $console && -n $(tail -c 1 "$console") ]] && echo  # the kernel's last line has no newline
if ((rc == 124)); then
  echo "qemu-guest: timed out after ${timeout_s}s" >&2
  exit 124
fi
status=$(sed -n 's/^qemu-guest: exit \([0-9]\{1,3\}\)$/\1/p' "$console" | tail -n 1)
if [[ -z $status ]]; then
  echo "qemu-guest: the guest ended without an exit line (qemu exit $rc); the console's end:" >&2
  tail -n 20 "$console" >&2
  exit 125
fi
exit "$status"
