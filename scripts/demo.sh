#!/usr/bin/env bash
# README's first command: from a fresh Debian 12 machine to Galaxy's main job.
#
#   ./scripts/demo.sh [wordfreq.sh options...]      e.g. --slice 100
#
# Installs what is missing (scripts/deps.sh), builds galaxy, galaxy-node and galaxy-sched
# in build/, starts a local cluster with `galaxy up` (a scheduler and two nodes, the tree
# mounted with FUSE) in a state directory of its own, shows the tree with cat and ls, runs
# one job with `galaxy run`, runs the main job (examples/wordfreq.sh: a word-frequency
# MapReduce over /usr/share/doc/*/copyright, checked against one local pipeline), and
# stops the cluster with `galaxy down`. Every step is printed before it runs; the first
# that fails stops the demo with a non-zero status, and the cluster is stopped on the way
# out whatever happened. A cluster you started yourself is never touched: the demo's own
# lives in a temporary directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bold=$'\e[1m' dim=$'\e[2m' off=$'\e[0m'
[[ -t 1 ]] || bold='' dim='' off=''
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$off"; }
show() { printf '%s$ %s%s\n' "$dim" "$*" "$off"; }
die() { printf '\ndemo.sh: %s\n' "$*" >&2; exit 1; }

step "Installing missing packages (scripts/deps.sh)"
./scripts/deps.sh

step "Building galaxy, galaxy-node and galaxy-sched in build/"
mkdir -p build
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >build/demo-configure.log ||
  { cat build/demo-configure.log; die "cmake configure failed"; }
cmake --build build -j "${JOBS:-2}" --target galaxy galaxy-node galaxy-sched
g=$PWD/build/galaxy

# The demo's cluster: a state directory and a mount point of its own. As root, other
# users' tasks (and root's, where the nodes run them as nobody) must reach their spools
# under it, so the directory must be searchable by others; galaxy up makes the state
# directory itself private (0700) for an ordinary user, with the sockets in it.
tmp=$(mktemp -d /tmp/galaxy-demo.XXXXXX)
chmod 0755 "$tmp"
state=$tmp/state mnt=$tmp/galaxy
up=no
cleanup() {
  local rc=$?
  set +e
  if [[ $up == yes ]]; then
    printf '\n%s==> Stopping the cluster: galaxy down%s\n' "$bold" "$off"
    "$g" down --state "$state" || rc=1
  fi
  # Never remove files through a mount that is still there.
  if grep -qs " $mnt " /proc/self/mountinfo; then
    "$g" umount -z "$mnt"
  fi
  grep -qs " $mnt " /proc/self/mountinfo || rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

step "Starting a local cluster: galaxy up"
show "galaxy up --state $state --mount $mnt"
up=yes
"$g" up --state "$state" --mount "$mnt" || die "galaxy up failed"
grep -qs " $mnt " /proc/self/mountinfo ||
  die "galaxy up started the cluster but could not mount it (see above); the main job needs the mount"

step "The cluster is a file tree"
show "cat $mnt/status"
cat "$mnt/status"
show "ls $mnt/nodes"
ls "$mnt/nodes"
show "cat $mnt/nodes/n1/status"
cat "$mnt/nodes/n1/status"

step "One job, the shell way: clone, ctl, wait, stdout"
show "j=\$(cat $mnt/jobs/clone)"
j=$(cat "$mnt/jobs/clone")
show "echo 'exec uname -sm' > $mnt/jobs/$j/ctl"
echo 'exec uname -sm' >"$mnt/jobs/$j/ctl"
show "cat $mnt/jobs/$j/wait $mnt/jobs/$j/stdout"
cat "$mnt/jobs/$j/wait" "$mnt/jobs/$j/stdout"
[[ $(cat "$mnt/jobs/$j/wait") == 'exit 0' ]] || die "job $j did not exit 0"

step "The same with the galaxy tool (like srun): galaxy run"
show "galaxy run -m $mnt -- sh -c 'echo hello from \$(hostname), task \$GALAXY_TASK'"
"$g" run -m "$mnt" -- sh -c 'echo hello from $(hostname), task $GALAXY_TASK' || die "galaxy run failed"

step "The main job: a word-frequency MapReduce (examples/wordfreq.sh)"
show "examples/wordfreq.sh -m $mnt $*"
examples/wordfreq.sh -m "$mnt" "$@" || die "the main job failed"

step "Every job of this session"
show "galaxy jobs -m $mnt"
"$g" jobs -m "$mnt"

trap - EXIT
up=no
step "Stopping the cluster: galaxy down"
show "galaxy down --state $state"
"$g" down --state "$state" || die "galaxy down failed"
grep -qs " $mnt " /proc/self/mountinfo && die "the mount is still there after galaxy down"
rm -rf "$tmp"
printf '\n%sdemo finished: every step worked.%s\n' "$bold" "$off"
