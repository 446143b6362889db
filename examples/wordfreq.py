#!/usr/bin/env python3
"""wordfreq.py: the main job of examples/wordfreq.sh again, in Python with plain file I/O.

    examples/wordfreq.py [-m MOUNT] [--maps N] [--slice N] [--files LIST]

Nothing Galaxy-specific is imported: a job is made by reading MOUNT/jobs/clone and
writing lines to MOUNT/jobs/J/ctl, its end is a read of MOUNT/jobs/J/wait, its output a
read of MOUNT/jobs/J/stdout (design: galaxy.md, "The unified tree"). The map and reduce
jobs run python3 too. A word is a run of ASCII letters, lower-cased, as tr -cs
'[:alpha:]' does in the C locale, so both examples count the same words.

Exit status: 0 when the cluster's table equals one local computation of it; 1 when a job
failed (the report names the map job, its node, its input and its stderr), when they
differ, or on bad usage.
"""

import argparse
import collections
import glob
import os
import re
import sys
import time

# The jobs' programs, one line each: a ctl message is one line.
MAP = (
    "import re, sys, collections as C; "
    "c = C.Counter(w.lower() for f in sys.argv[1:] for w in re.findall(rb'[A-Za-z]+', open(f, 'rb').read())); "
    "sys.stdout.buffer.write(b''.join(b'%d %s\\n' % (n, w) for w, n in c.items()))"
)
REDUCE = (
    "import sys, collections as C; g = sys.argv[1]; c = C.Counter(); "
    "[c.update({w: int(n)}) for j in sys.argv[2:] for n, w in (l.split() for l in open(g + '/jobs/' + j + '/stdout', 'rb'))]; "
    "sys.stdout.buffer.write(b''.join(b'%d %s\\n' % (n, w) for w, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))))"
)


def quote(word):
    """Plan 9 quoting (quote(2)) for a ctl line: '...' with a quote doubled."""
    return "'" + word.replace("'", "''") + "'"


def read(path):
    with open(path) as f:
        return f.read()


def submit(mount, lines):
    """Clones a job, writes each ctl line with its own write, returns the job number."""
    j = read(f"{mount}/jobs/clone").strip()
    with open(f"{mount}/jobs/{j}/ctl", "w", buffering=1) as ctl:
        for line in lines:
            ctl.write(line + "\n")
    return j


def status(mount, j):
    """jobs/J/status as a dict (its values here never hold blanks)."""
    return dict(w.split("=", 1) for w in read(f"{mount}/jobs/{j}/status").split() if "=" in w)


def local_counts(files):
    """The same computation, in this process."""
    c = collections.Counter()
    for f in files:
        with open(f, "rb") as fh:
            c.update(w.lower() for w in re.findall(rb"[A-Za-z]+", fh.read()))
    return b"".join(b"%d %s\n" % (n, w) for w, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def main():
    default_mount = os.environ.get("GALAXY_MOUNT") or ("/galaxy" if os.geteuid() == 0 else os.path.expanduser("~/galaxy"))
    p = argparse.ArgumentParser(prog="wordfreq.py", description="A word-frequency MapReduce on a mounted Galaxy tree.")
    p.add_argument("-m", "--mount", default=default_mount, help="where the Galaxy tree is mounted")
    p.add_argument("--maps", type=int, default=0, help="map jobs (default 4 per node)")
    p.add_argument("--slice", type=int, default=0, help="only the first N input files")
    p.add_argument("--files", help="a file listing the input paths, one per line")
    a = p.parse_args()
    mount = a.mount.rstrip("/") or "/"
    if not os.path.exists(f"{mount}/jobs/clone"):
        sys.exit(f"wordfreq.py: no Galaxy tree is mounted on {mount} (start one with galaxy up, or name it with -m)")
    if a.files:
        files = [l for l in read(a.files).splitlines() if l]
        what = f"the files listed in {a.files}"
    else:
        files = sorted(glob.glob("/usr/share/doc/*/copyright"))
        what = "/usr/share/doc/*/copyright"
    if a.slice > 0:
        files, what = files[: a.slice], f"the first {a.slice} of {what}"
    if not files:
        sys.exit(f"wordfreq.py: no input files ({what})")
    nodes = os.listdir(f"{mount}/nodes")
    if not nodes:
        sys.exit(f"wordfreq.py: no node is up in {mount}/nodes")
    maps = min(a.maps if a.maps > 0 else 4 * len(nodes), len(files))
    shares = [files[i::maps] for i in range(maps)]

    start = time.monotonic()
    ids = []
    for i, share in enumerate(shares):
        line = "exec python3 -c " + quote(MAP) + " " + " ".join(quote(f) for f in share)
        ids.append(submit(mount, [f"name map{i}", line]))
    # queue-anyway: a map that failed already would make the reduce refused at exec;
    # queued, it fails with "dependency J failed", and the failed map is reported.
    r = submit(mount, ["name reduce", "after " + " ".join(ids), "queue-anyway",
                       "exec python3 -c " + quote(REDUCE) + " " + quote(mount) + " " + " ".join(ids)])
    outcome = read(f"{mount}/jobs/{r}/wait").strip()
    elapsed = time.monotonic() - start

    if outcome != "exit 0":
        for i, j in enumerate(ids):
            w = read(f"{mount}/jobs/{j}/wait").strip()
            if w == "exit 0":
                continue
            print(f"wordfreq.py: map job {j} failed ({w}) on node {status(mount, j).get('node', '-')}; "
                  f"its input (share {i} of {maps}, {len(shares[i])} files):", file=sys.stderr)
            for f in shares[i]:
                print("    " + f, file=sys.stderr)
            print("  its stderr:", file=sys.stderr)
            for l in read(f"{mount}/jobs/{j}/stderr").splitlines():
                print("    " + l, file=sys.stderr)
        print(f"wordfreq.py: the reduce job {r} ended with: {outcome}", file=sys.stderr)
        sys.exit(1)

    with open(f"{mount}/jobs/{r}/stdout", "rb") as f:
        cluster = f.read()
    print(f"wordfreq.py: {len(files)} files ({what}), {maps} map jobs and 1 reduce job on {len(nodes)} nodes, "
          f"through {mount}\n")
    print("The 20 most frequent words:")
    for l in cluster.splitlines()[:20]:
        n, w = l.split()
        print(f"  {int(n):8d}  {w.decode()}")
    per_node = collections.Counter(status(mount, j).get("node", "-") for j in ids + [r])
    print(f"\njobs: {maps + 1} ({maps} map, 1 reduce): {','.join(ids + [r])}")
    print("jobs per node: " + ", ".join(f"{n} ran {k}" for n, k in sorted(per_node.items())))
    print(f"elapsed on the cluster: {elapsed * 1000:.0f} ms")
    lstart = time.monotonic()
    local = local_counts(files)
    print(f"elapsed for one local computation: {(time.monotonic() - lstart) * 1000:.0f} ms")
    if cluster == local:
        words = local.count(b"\n")
        print(f"result: match: the cluster's counts equal the local computation's ({words} distinct words)")
        return 0
    print("result: MISMATCH: the cluster's counts differ from the local computation's", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
