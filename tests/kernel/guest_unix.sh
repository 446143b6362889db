# The kernel's 9P client on a Unix-socket listener (mount -t 9p -o trans=unix), all
# inside one guest of scripts/qemu-guest.sh. Sourced by guest_9p.sh (it uses ok, bad,
# expect, nb and V from there), as root, when kernel_9p.sh put /usr/local/bin/galaxy-node
# and /usr/local/bin/galaxy in.
#
# A Unix-socket listener proves who connects by the kernel's word (SO_PEERCRED): the
# peer's uid must be the attach name's uid, or one trusted to speak for others (root,
# the daemon's own uid, --trust). v9fs connects the socket in the mount(2) call, so the
# peer of a trans=unix mount is the user who mounted it: root, trusted. In 9P2000.L with
# the default access=user, v9fs then attaches once per local uid with n_uname = that uid,
# and each caller acts as itself; in 9P2000 (access=any) every caller acts as the
# mount's uname (default nobody).
#
# Starts galaxy-node --listen unix!/run/gu.sock (no --auth: Unix sockets always use
# SO_PEERCRED), which makes the socket 0666 itself (nobody must reach it). Cases:
#   - mount -t 9p -o trans=unix,version=$V,cache=none /run/gu.sock /mnt/u
#   - cat status, and root's task through task/clone, ctl, wait, stdout on /mnt/u: in
#     9P2000.L it is root's (ls -ln: uid 0), in 9P2000 the mount's uname's, nobody's
#     (ls -ln: v9fs's dfltuid); it runs as nobody either way (root's tasks run as
#     --run-as)
#   - 9P2000.L: nobody's task on root's mount runs as nobody (65534), ls -ln shows it
#   - the peer check itself: nobody's own connection to the socket (the galaxy tool)
#     attaches as nobody, and is refused when it names root
#   - the node keeps serving the mount after the refusal
# Leaves the node running (the guest powers off after).

gu_node() {  # gu_node: starts the node on /run/gu.sock; returns 1 if it never listened
  galaxy-node --listen 'unix!/run/gu.sock' --spool /tmp/gu-spool --name gu >/tmp/gu.out 2>/tmp/gu.err &
  i=0
  while [ $i -lt 100 ]; do
    grep -q '^listening on unix!/run/gu.sock$' /tmp/gu.out 2>/dev/null && return 0
    sleep 0.1; i=$((i + 1))
  done
  return 1
}

if ! gu_node; then
  bad "galaxy-node --listen unix!/run/gu.sock did not start: $(cat /tmp/gu.err)"
else
  mkdir -p /mnt/u
  if out=$(mount -t 9p -o "trans=unix,version=$V,cache=none" /run/gu.sock /mnt/u 2>&1); then
    ok "mount -t 9p -o trans=unix,version=$V of a Unix-socket listener"
    case $(cat /mnt/u/status 2>&1) in *"name=gu "*) ok "trans=unix: cat status" ;;
      *) bad "trans=unix: cat /mnt/u/status: $(cat /mnt/u/status 2>&1)" ;; esac
    # Root's calls: in 9P2000.L (access=user) the task is root's, shown as uid 0, and
    # runs as the node's --run-as account (nobody) as every root task does without
    # --allow-root-tasks; in 9P2000 (access=any) it is the mount's uname's, nobody's,
    # and v9fs shows every file as its dfltuid (4294967294) there.
    owner=0
    [ "$V" = 9p2000 ] && owner=4294967294
    nu=$(cat /mnt/u/task/clone 2>&1)
    case $nu in
      ''|*[!0-9]*) bad "trans=unix: cat task/clone: $nu" ;;
      *) echo 'exec id -u' > "/mnt/u/task/$nu/ctl"
         expect "trans=unix: root's task $nu runs (as nobody, --run-as)" \
           "$(timeout 60 cat "/mnt/u/task/$nu/wait" "/mnt/u/task/$nu/stdout" 2>&1)" "exit 0
65534"
         expect "trans=unix: ls -ln of root's task/$nu/ctl shows uid $owner" \
           "$(ls -ln "/mnt/u/task/$nu/ctl" | awk '{print $3}')" "$owner" ;;
    esac
    if [ "$V" = 9p2000.L ]; then
      nn=$(nb 'cat /mnt/u/task/clone' 2>&1)
      case $nn in
        ''|*[!0-9]*) bad "trans=unix, access=user: cat task/clone as nobody: $nn" ;;
        *) nb "echo 'exec id -u' > /mnt/u/task/$nn/ctl"
           expect "trans=unix, access=user: nobody's task $nn runs as nobody" \
             "$(nb "timeout 60 cat /mnt/u/task/$nn/wait /mnt/u/task/$nn/stdout" 2>&1)" "exit 0
65534"
           expect "trans=unix, access=user: ls -ln of nobody's task/$nn/ctl shows uid 65534" \
             "$(ls -ln "/mnt/u/task/$nn/ctl" | awk '{print $3}')" "65534" ;;
      esac
    fi
    # The peer check: nobody's own connection (not the kernel's, which is root's).
    case $(nb "galaxy cat -a 'unix!/run/gu.sock' -u nobody status" 2>&1) in
      *"name=gu "*) ok "nobody's own connection to the socket attaches as nobody" ;;
      *) bad "nobody's galaxy cat -u nobody on the socket: $(nb "galaxy cat -a 'unix!/run/gu.sock' -u nobody status" 2>&1)" ;;
    esac
    if out=$(nb "galaxy cat -a 'unix!/run/gu.sock' -u root status" 2>&1); then
      bad "nobody attached as root through the Unix socket: $out"
    else
      ok "nobody naming root on the Unix socket is refused (SO_PEERCRED): $out"
    fi
    case $(cat /mnt/u/status 2>&1) in *"name=gu "*) ok "trans=unix: the node serves the mount after the refusal" ;;
      *) bad "trans=unix: cat /mnt/u/status after the refusal: $(cat /mnt/u/status 2>&1)" ;; esac
    umount /mnt/u
  else
    bad "mount -t 9p -o trans=unix,version=$V /run/gu.sock: $out"
  fi
fi
