#!/usr/bin/env bash
# README's first command. Until galaxy-node and galaxy-sched exist (and with them the
# MapReduce main job on a local cluster), it starts the example 9P server galaxy-ramfs
# on a loopback port of its own choosing and walks through it with the `galaxy` tool:
# mkdir, write, ls -l, cat, and a blocking read of /events that wakes on a change.
# Every step is printed before it runs; the first step that fails stops the demo with a
# non-zero status. The server is stopped on the way out, whatever happened.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bold=$'\e[1m' dim=$'\e[2m' off=$'\e[0m'
[[ -t 1 ]] || bold='' dim='' off=''
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$off"; }
show() { printf '%s$ %s%s\n' "$dim" "$*" "$off"; }
die() { printf '\ndemo.sh: %s\n' "$*" >&2; exit 1; }

tmp=$(mktemp -d /tmp/galaxy-demo.XXXXXX)
server_pid='' events_pid=''
cleanup() {
  local rc=$?
  set +e
  if [[ -n $events_pid ]]; then kill "$events_pid" 2>/dev/null; wait "$events_pid" 2>/dev/null; fi
  if [[ -n $server_pid ]]; then kill -TERM "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

step "Installing missing packages (scripts/deps.sh)"
./scripts/deps.sh

step "Building galaxy and galaxy-ramfs in build/"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$tmp/configure.log" ||
  { cat "$tmp/configure.log"; die "cmake configure failed"; }
cmake --build build -j "${JOBS:-2}" --target galaxy galaxy-ramfs
g=$PWD/build/galaxy

step "Starting the example 9P server: galaxy-ramfs --listen 'tcp!127.0.0.1!0'"
build/galaxy-ramfs --listen 'tcp!127.0.0.1!0' >"$tmp/ramfs.out" 2>"$tmp/ramfs.err" &
server_pid=$!
for ((i = 0; i < 100; i++)); do
  grep -q '^listening on ' "$tmp/ramfs.out" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/ramfs.err" >&2; die "galaxy-ramfs exited"; }
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$tmp/ramfs.out" | head -n 1)
[[ -n $addr ]] || die "galaxy-ramfs printed no 'listening on' line within 10 s"
echo "galaxy-ramfs (pid $server_pid) is listening on $addr"

# quote ARG... : the arguments as one would type them into a shell ('tcp!...' quoted, since
# an interactive shell expands '!').
quote() {
  local a out=()
  for a; do
    if [[ $a =~ ^[A-Za-z0-9_./=:-]+$ ]]; then out+=("$a"); else out+=("'${a//\'/\'\\\'\'}'"); fi
  done
  printf '%s' "${out[*]}"
}
# run CMD... : show the command (with the galaxy binary as plain `galaxy`), then run it.
run() { show "galaxy $(quote "${@:2}")"; "$@" || die "'galaxy ${*:2}' failed"; }

step "Making a directory and writing a file into it"
run "$g" mkdir -a "$addr" /demo
show "echo 'hello from galaxy' | galaxy write -a '$addr' /demo/hello"
echo 'hello from galaxy' | "$g" write -a "$addr" /demo/hello || die "galaxy write failed"

step "Listing and reading it back"
run "$g" ls -l -a "$addr" /demo
run "$g" cat -a "$addr" /demo/hello
[[ $("$g" cat -a "$addr" /demo/hello) == 'hello from galaxy' ]] || die "read back something else"

step "A blocking read: /events waits until something changes"
show "galaxy cat -a '$addr' /events &"
"$g" cat -a "$addr" /events >"$tmp/events" 2>&1 &
events_pid=$!
sleep 1
[[ -s $tmp/events ]] && die "/events answered before anything changed: $(cat "$tmp/events")"
echo "(after 1 s, the read of /events is still waiting, as it should)"
show "echo 'a change' | galaxy write -a '$addr' /demo/change"
echo 'a change' | "$g" write -a "$addr" /demo/change || die "galaxy write failed"
for ((i = 0; i < 50; i++)); do [[ -s $tmp/events ]] && break; sleep 0.1; done
[[ -s $tmp/events ]] || die "/events did not report the change within 5 s"
echo "/events woke up with:"
sed 's/^/    /' "$tmp/events"
kill "$events_pid" 2>/dev/null; wait "$events_pid" 2>/dev/null || true
events_pid=''

step "Stat and remove"
run "$g" stat -a "$addr" /demo/change
run "$g" rm -a "$addr" /demo/change
run "$g" ls -l -a "$addr" /demo

step "Stopping the server (SIGTERM)"
kill -TERM "$server_pid"
rc=0; wait "$server_pid" || rc=$?
server_pid=''
((rc == 0)) || die "galaxy-ramfs exited with status $rc on SIGTERM"
echo "stopped."
printf '\n%sdemo finished: every step worked.%s\n' "$bold" "$off"
