# `galaxy mount --kernel` against a MUNGE node, all inside one guest of
# scripts/qemu-guest.sh, where no address translation stands between the client and the
# server (through QEMU's user network the credential's binding cannot match: see
# guest_9p.sh). Sourced by guest_9p.sh (it uses ok, bad, expect, nb and V from there),
# as root, when kernel_9p.sh put /usr/sbin/munged and /usr/local/bin/galaxy-node in.
#
# Starts a munged with a key made here (1 KiB of /dev/urandom, 0600 root's, as munged
# demands) on /run/munge/sock, a second one with another key on /run/munge2/sock, and a
# galaxy-node with --auth munge on tcp!127.0.0.1!0 (port read from its "listening on"
# line). Cases:
#   - galaxy mount --kernel --munge-socket /run/munge/sock -u nobody ... /mnt/km succeeds
#     (Tversion, Tauth with root's credential naming nobody, Tattach; then trans=fd)
#   - as nobody: cat status, and a task through task/clone, ctl, wait, stdout on /mnt/km
#   - root on that single-user mount (access=65534) is refused
#   - a credential from the munged with the other key is refused (the mount fails)
#   - a plain mount -t 9p -o trans=tcp (no Tauth) of the MUNGE listener is refused, and
#     the node keeps serving /mnt/km
# Leaves both munged and the node running (the guest powers off after).

km_node() {  # km_node: starts the MUNGE galaxy-node; sets KP to its port, or "" on failure
  galaxy-node --listen 'tcp!127.0.0.1!0' --auth munge --munge-socket /run/munge/sock \
    --spool /tmp/km-spool --name km >/tmp/km.out 2>/tmp/km.err &
  KP="" i=0
  while [ $i -lt 100 ]; do
    KP=$(sed -n 's/^listening on tcp!127\.0\.0\.1!\([0-9]*\)$/\1/p' /tmp/km.out | head -n 1)
    [ -n "$KP" ] && return 0
    sleep 0.1; i=$((i + 1))
  done
  return 1
}

# km_munged DIR: a munged with a key of its own in DIR (0711, as munged wants its
# socket's directory searchable), socket DIR/sock. Returns 1 if the socket never came.
km_munged() {
  mkdir -p "$1" && chmod 0711 "$1"
  dd if=/dev/urandom of="$1/key" bs=1024 count=1 2>/dev/null && chmod 0600 "$1/key"
  # --origin: the guest's hostname has no address, which munged would warn of.
  munged --socket="$1/sock" --key-file="$1/key" --pid-file="$1/pid" --log-file="$1/log" \
    --seed-file="$1/seed" --origin=127.0.0.1 || return 1
  i=0
  while [ $i -lt 50 ] && [ ! -S "$1/sock" ]; do sleep 0.1; i=$((i + 1)); done
  [ -S "$1/sock" ]
}

if ! km_munged /run/munge || ! km_munged /run/munge2; then
  bad "munged in the guest did not start: $(cat /run/munge/log /run/munge2/log 2>&1 | tail -n 5)"
elif ! km_node; then
  bad "galaxy-node --auth munge in the guest did not start: $(cat /tmp/km.err)"
else
  mkdir -p /mnt/km /mnt/kx
  kdial="tcp!127.0.0.1!$KP"
  if out=$(galaxy mount --kernel --munge-socket /run/munge2/sock -u nobody -o "version=$V" "$kdial" /mnt/km 2>&1); then
    bad "galaxy mount --kernel with a credential of another MUNGE key succeeded"
    umount /mnt/km
  else
    ok "galaxy mount --kernel with a credential of another MUNGE key is refused ($out)"
  fi
  if out=$(galaxy mount --kernel --munge-socket /run/munge/sock -u nobody -o "version=$V" "$kdial" /mnt/km 2>&1); then
    ok "galaxy mount --kernel -o version=$V of a MUNGE node (Tauth in user space, then trans=fd)"
    case $(nb 'cat /mnt/km/status' 2>&1) in *"name=km "*) ok "MUNGE --kernel mount: cat status as nobody" ;;
      *) bad "MUNGE --kernel mount: cat /mnt/km/status as nobody: $(nb 'cat /mnt/km/status' 2>&1)" ;; esac
    nk=$(nb 'cat /mnt/km/task/clone' 2>&1)
    case $nk in
      ''|*[!0-9]*) bad "MUNGE --kernel mount: cat task/clone as nobody: $nk" ;;
      *) nb "echo 'exec id -u' > /mnt/km/task/$nk/ctl"
         expect "MUNGE --kernel mount: nobody's task $nk runs as nobody" \
           "$(nb "timeout 60 cat /mnt/km/task/$nk/wait /mnt/km/task/$nk/stdout" 2>&1)" "exit 0
65534" ;;
    esac
    if out=$(cat /mnt/km/status 2>&1); then bad "MUNGE --kernel mount: root read nobody's mount: $out"
    else ok "MUNGE --kernel mount: root is refused on nobody's mount ($out)"; fi
    if out=$(mount -t 9p -o "trans=tcp,port=$KP,version=$V,cache=none" 127.0.0.1 /mnt/kx 2>&1); then
      bad "a plain mount -t 9p (no Tauth) of the MUNGE listener succeeded"
      umount /mnt/kx
    else
      ok "a plain mount -t 9p (no Tauth) of the MUNGE listener is refused ($out)"
    fi
    case $(nb 'cat /mnt/km/status' 2>&1) in *"name=km "*) ok "the MUNGE node serves after the refused mounts" ;;
      *) bad "the MUNGE node after the refused mounts: $(nb 'cat /mnt/km/status' 2>&1)" ;; esac
    umount /mnt/km
  else
    bad "galaxy mount --kernel of a MUNGE node: $out"
  fi
fi
