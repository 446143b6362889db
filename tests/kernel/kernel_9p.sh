#!/usr/bin/env bash
# The Linux kernel's 9P client against the real daemons: starts a galaxy-node and a
# galaxy-sched over it on the host (port 0, --auth none, loopback, a temporary
# directory), boots a QEMU guest (scripts/qemu-guest.sh: Debian's kernel, TCG) that
# mounts both with `mount -t 9p` and runs tests/kernel/guest_9p.sh, then checks that the
# daemons outlived it. galaxy-node goes into the guest too, for a trans=unix mount of a
# node started there (tests/kernel/guest_unix.sh); with /usr/sbin/munged on the host,
# munged too, for the authenticated `galaxy mount --kernel` (tests/kernel/guest_munge.sh:
# munged and a --auth munge node started in the guest, no NAT between). tests/CMakeLists.txt
# registers it once per dialect (label qemu).
#
#   tests/kernel/kernel_9p.sh VERSION BUILD_DIR
#
# VERSION: the mount's version= (9p2000 or 9p2000.L). Before booting, the node is asked
# with a Tversion of that dialect (bash's /dev/tcp); if it answers another, the test is
# skipped (exit 77) with "server does not speak VERSION yet".
# Exit status: the guest script's (0 all passed, 1 some failed), 77 when skipped (no
# qemu, kernel or busybox: qemu-guest.sh says which), 1 when a daemon died or did not
# start. Prints the guest's lines and the wall time of the guest.
set -uo pipefail
version=${1:?usage: kernel_9p.sh VERSION BUILD_DIR}
build=${2:?usage: kernel_9p.sh VERSION BUILD_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)

tmp=$(mktemp -d /tmp/kernel-9p.XXXXXX)
chmod 0711 "$tmp"  # tasks run as nobody (the daemon is root) and must reach the spool
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# start NAME PROGRAM ARG...: runs a daemon that prints "listening on DIAL" first; sets
# $port to the TCP port it chose.
start() {
  local name=$1; shift
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  local i=0
  port=""
  while ((i < 100)); do
    port=$(sed -n 's/^listening on tcp!127\.0\.0\.1!\([0-9]*\)$/\1/p' "$tmp/$name.out" | head -n 1)
    [[ -n $port ]] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
  done
  echo "kernel_9p: $name did not start:"; cat "$tmp/$name.err"
  exit 1
}

start node "$build/galaxy-node" --listen 'tcp!127.0.0.1!0' --auth none --spool "$tmp/spool" --name n1
node_port=$port

# The dialect the node answers to a Tversion of $version (msize 8192, tag NOTAG).
answered=$(
  exec 3<>"/dev/tcp/127.0.0.1/$node_port" || exit 1
  v=${version/9p/9P}
  len=${#v}
  size=$((4 + 1 + 2 + 4 + 2 + len))
  printf "$(printf '\\x%02x\\x00\\x00\\x00\\x64\\xff\\xff\\x00\\x20\\x00\\x00\\x%02x\\x00' "$size" "$len")%s" "$v" >&3
  # Rversion: size[4] type[1] tag[2] msize[4] then version[s]: len[2] and the bytes.
  hdr=$(timeout 5 dd bs=1 count=13 <&3 2>/dev/null | od -An -tu1)
  read -r -a b <<<"$hdr"
  ((${#b[@]} == 13 && b[4] == 101)) || exit 1
  timeout 5 dd bs=1 count=$((b[11] + 256 * b[12])) <&3 2>/dev/null
)
if [[ $answered != "${version/9p/9P}" ]]; then
  if [[ ${version,,} == 9p2000.l ]]; then
    echo "kernel_9p: SKIP: server does not speak 9P2000.L yet (it answered '$answered' to a Tversion of ${version/9p/9P})"
    exit 77
  fi
  echo "kernel_9p: the node answered '$answered' to a Tversion of ${version/9p/9P}"
  exit 1
fi

start sched "$build/galaxy-sched" --listen 'tcp!127.0.0.1!0' --auth none --state "$tmp/state" \
  --node "n1=tcp!127.0.0.1!$node_port"
sched_port=$port
# Until the scheduler has the node up (its status lists it as up).
for ((i = 0; i < 100; i++)); do
  "$build/galaxy" cat -a "tcp!127.0.0.1!$sched_port" status 2>/dev/null | grep -q 'n1.*up' && break
  sleep 0.1
done

# The trans=unix mount (guest_unix.sh) and the MUNGE --kernel mount (guest_munge.sh) run
# wholly in the guest, against a galaxy-node started there; munged goes in too when the
# host has it, else the guest says SKIP for the MUNGE part.
guest_files=(--file "$here/guest_munge.sh:/root/guest_munge.sh" --file "$here/guest_unix.sh:/root/guest_unix.sh"
             --file "$build/galaxy-node:/usr/local/bin/galaxy-node")
if [[ -x /usr/sbin/munged ]]; then
  guest_files+=(--file /usr/sbin/munged:/usr/sbin/munged)
fi
start_s=$SECONDS
"$src/scripts/qemu-guest.sh" --net --module 9p --module 9pnet_fd --timeout 500 --mem 512 \
  --file "$here/guest_9p.sh:/root/guest_9p.sh" --file "$build/galaxy:/usr/local/bin/galaxy" "${guest_files[@]}" \
  -- sh /root/guest_9p.sh "$version" "$node_port" "$sched_port"
rc=$?
echo "kernel_9p: the guest took $((SECONDS - start_s)) s of wall time (boot included)"
((rc == 77)) && exit 77
for n in node sched; do
  i=$([[ $n == node ]] && echo 0 || echo 1)
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "FAIL galaxy-$n died during the guest's tests:"; tail -n 20 "$tmp/$n.err"
    rc=1
  fi
done
exit "$rc"
