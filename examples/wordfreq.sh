#!/bin/sh
# wordfreq.sh: Galaxy's main job, a word-frequency MapReduce over real text, in plain
# shell on a mounted Galaxy tree: it only reads and writes files under the mount (cat,
# and printf as echo), as any program could (design: galaxy.md, "Shell use"; issue 7).
#
#   examples/wordfreq.sh [-m MOUNT] [--maps N] [--slice N] [--files LIST]
#
# The input is every /usr/share/doc/*/copyright (every Debian machine has them), or the
# first N of them (--slice N), or the paths listed one per line in LIST (--files). The
# input is read where the jobs run: on a cluster from `galaxy up`, this machine.
#
# 1. Split the input into N shares (--maps, default 4 per node) and submit one map job per
#    share: j=$(cat MOUNT/jobs/clone); printf 'exec sh -c ...' > MOUNT/jobs/$j/ctl. A map
#    job turns its files into "count word" lines (tr, sort, uniq -c) on its stdout.
# 2. Submit one reduce job with `after` all the maps: it sums the maps' counts, reading
#    MOUNT/jobs/J/stdout of each (so the node it runs on needs the tree mounted too, as
#    every node of a cluster from `galaxy up` has), and prints the table sorted by count.
# 3. cat MOUNT/jobs/R/wait blocks until the reduce has ended (on a terminal, a progress
#    line on stderr counts the jobs done, running and queued meanwhile). Print the 20 most frequent
#    words, the job count, how many jobs each node ran (jobs/J/status node=), and the
#    elapsed time; then compute the same table with one local pipeline and say whether
#    they match.
#
# Exit status: 0 when the cluster's table equals the local pipeline's; 1 when a job
# failed (the report names the map job, its node and its input, and shows its stderr),
# when they differ, or on bad usage. Needs: sh, cat, tr, sort, uniq, awk, sed, date.
set -eu
export LC_ALL=C

prog=wordfreq.sh
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
usage() { sed -n '5,6p' "$0" | sed 's/^# *//'; }

if [ "$(id -u)" = 0 ]; then mount=${GALAXY_MOUNT:-/galaxy}; else mount=${GALAXY_MOUNT:-$HOME/galaxy}; fi
maps=0 slice=0 list=''
while [ $# -gt 0 ]; do
  case $1 in
    -m | --mount) [ $# -ge 2 ] || die "$1 needs a directory"; mount=$2; shift 2 ;;
    --maps) [ $# -ge 2 ] || die "$1 needs a number"; maps=$2; shift 2 ;;
    --slice) [ $# -ge 2 ] || die "$1 needs a number"; slice=$2; shift 2 ;;
    --files) [ $# -ge 2 ] || die "$1 needs a file"; list=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1'; usage: $(usage | head -n 1)" ;;
  esac
done
case $maps in '' | *[!0-9]*) die "--maps '$maps': expected a number of map jobs" ;; esac
case $slice in '' | *[!0-9]*) die "--slice '$slice': expected a number of files" ;; esac
[ -r "$mount/jobs/clone" ] ||
  die "no Galaxy tree is mounted on $mount (start one with galaxy up, or name it with -m MOUNT)"

# The map and the reduce, as the jobs run them (sh -c TEXT NAME ARG...). One line each:
# a ctl message is one line. The local check below spells the same rule out again.
MAP='export LC_ALL=C; for f; do test -r "$f" || { echo "map: cannot read $f" >&2; exit 2; }; done; cat -- "$@" | tr -cs "[:alpha:]" "\n" | tr "[:upper:]" "[:lower:]" | sed "/^\$/d" | sort | uniq -c'
REDUCE='export LC_ALL=C; g=$1; shift; for j; do test -r "$g/jobs/$j/stdout" || { echo "reduce: cannot read $g/jobs/$j/stdout" >&2; exit 2; }; done; for j; do cat "$g/jobs/$j/stdout"; done | awk "{ c[\$2] += \$1 } END { for (w in c) print c[w], w }" | sort -k1,1nr -k2,2'

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wordfreq.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# The input, one path per line.
if [ -n "$list" ]; then
  [ -r "$list" ] || die "--files $list: cannot read it"
  sed '/^$/d' "$list" >"$tmp/inputs"
  what="the files listed in $list"
else
  ls -d /usr/share/doc/*/copyright >"$tmp/inputs" 2>/dev/null || true
  what="/usr/share/doc/*/copyright"
fi
if [ "$slice" -gt 0 ]; then
  head -n "$slice" "$tmp/inputs" >"$tmp/slice" && mv "$tmp/slice" "$tmp/inputs"
  what="the first $slice of $what"
fi
nfiles=$(wc -l <"$tmp/inputs")
[ "$nfiles" -gt 0 ] || die "no input files ($what)"
case $(cat "$tmp/inputs") in *"'"*) die "input paths with a quote (') are not supported" ;; esac
nnodes=$(ls "$mount/nodes" | wc -l)
[ "$nnodes" -gt 0 ] || die "no node is up in $mount/nodes"
[ "$maps" -gt 0 ] || maps=$((4 * nnodes))
[ "$maps" -le "$nfiles" ] || maps=$nfiles

# Plan 9 quoting for a ctl line (quote(2)): every word in '...', a quote doubled.
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

# submit LINE...: clone a job, write each line to its ctl, print its number.
submit() {
  j=$(cat "$mount/jobs/clone") || die "cannot clone a job ($mount/jobs/clone)"
  for line; do
    printf '%s\n' "$line" >"$mount/jobs/$j/ctl" || die "job $j refused: $line"
  done
  echo "$j"
}

start=$(date +%s%N)
awk -v n="$maps" -v dir="$tmp" '{ print > (dir "/share." (NR - 1) % n) }' "$tmp/inputs"
ids=''
i=0
while [ "$i" -lt "$maps" ]; do
  files=$(sed "s/.*/'&'/" "$tmp/share.$i" | tr '\n' ' ')
  j=$(submit "name map$i" "exec sh -c $(q "$MAP") map $files")
  echo "$i" >"$tmp/map.$j"
  ids="$ids $j"
  i=$((i + 1))
done
ids=${ids# }
# queue-anyway: a map that failed already would make the reduce refused at exec; queued,
# it fails with "dependency J failed", and the failed map is reported below.
r=$(submit "name reduce" "after $ids" "queue-anyway" "exec sh -c $(q "$REDUCE") reduce $(q "$mount") $ids")
# While it waits, on a terminal only (stderr is one: test -t 2), one line on stderr redrawn
# each second with \r from the jobs' status files: how many of the jobs have ended, run,
# or wait in the queue, and the time since the start; blanked when the wait is over. A pipe
# gets nothing of it.
progress_line() {
  ended=0 running=0 queued=0
  for j in $ids $r; do
    case $(sed -n 's/.* state=\([^ ]*\).*/\1/p' "$mount/jobs/$j/status" 2>/dev/null) in
      done | failed | killed) ended=$((ended + 1)) ;;
      running) running=$((running + 1)) ;;
      *) queued=$((queued + 1)) ;;
    esac
  done
  s=$((($(date +%s%N) - start) / 1000000000))
  printf '\r%s: %s/%s done, %s running, %s queued, %d:%02d ' "$prog" "$ended" "$(($(echo $ids | wc -w) + 1))" \
    "$running" "$queued" $((s / 60)) $((s % 60)) >&2
}
progress_pid=''
if [ -t 2 ]; then
  progress_line
  while sleep 1; do progress_line; done &
  progress_pid=$!
  # (set -e holds in a trap too: a kill that fails must not end the script.)
  trap 'if [ -n "$progress_pid" ]; then kill "$progress_pid" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT INT TERM
fi
outcome=$(cat "$mount/jobs/$r/wait")
end=$(date +%s%N)
if [ -n "$progress_pid" ]; then
  kill "$progress_pid" 2>/dev/null || true
  wait "$progress_pid" 2>/dev/null || true
  printf '\r%72s\r' '' >&2
  progress_pid=''
fi

# A failed job: say which, where, on what input, and what it said.
if [ "$outcome" != "exit 0" ]; then
  for j in $ids; do
    w=$(cat "$mount/jobs/$j/wait")
    [ "$w" = "exit 0" ] && continue
    node=$(sed -n 's/.* node=\([^ ]*\).*/\1/p' "$mount/jobs/$j/status")
    share=$(cat "$tmp/map.$j")
    printf '%s: map job %s failed (%s) on node %s; its input (share %s of %s, %s files):\n' "$prog" "$j" "$w" \
      "$node" "$share" "$maps" "$(wc -l <"$tmp/share.$share")" >&2
    sed 's/^/    /' "$tmp/share.$share" >&2
    printf '  its stderr:\n' >&2
    sed 's/^/    /' "$mount/jobs/$j/stderr" >&2
  done
  printf '%s: the reduce job %s ended with: %s\n' "$prog" "$r" "$outcome" >&2
  sed 's/^/    /' "$mount/jobs/$r/stderr" >&2
  exit 1
fi

cat "$mount/jobs/$r/stdout" >"$tmp/cluster"
echo "wordfreq: $nfiles files ($what), $maps map jobs and 1 reduce job on $nnodes nodes, through $mount"
echo
echo "The 20 most frequent words:"
head -n 20 "$tmp/cluster" | awk '{ printf "  %8d  %s\n", $1, $2 }'
echo
echo "jobs: $((maps + 1)) ($maps map, 1 reduce): $(echo "$ids $r" | tr ' ' ',')"
for j in $ids $r; do
  sed -n 's/.* node=\([^ ]*\).*/\1/p' "$mount/jobs/$j/status"
done | sort | uniq -c | awk '{ s = s (s == "" ? "" : ", ") $2 " ran " $1 } END { print "jobs per node: " s }'
echo "elapsed on the cluster: $(((end - start) / 1000000)) ms"

# The same computation, one local pipeline.
lstart=$(date +%s%N)
tr '\n' '\0' <"$tmp/inputs" | xargs -0 cat -- | tr -cs '[:alpha:]' '\n' | tr '[:upper:]' '[:lower:]' |
  sed '/^$/d' | sort | uniq -c | awk '{ print $1, $2 }' | sort -k1,1nr -k2,2 >"$tmp/local"
lend=$(date +%s%N)
echo "elapsed for one local pipeline: $(((lend - lstart) / 1000000)) ms"
if cmp -s "$tmp/cluster" "$tmp/local"; then
  echo "result: match: the cluster's counts equal the local pipeline's ($(wc -l <"$tmp/local") distinct words)"
else
  echo "result: MISMATCH: the cluster's counts differ from the local pipeline's:" >&2
  diff "$tmp/cluster" "$tmp/local" | head -n 20 >&2
  exit 1
fi
