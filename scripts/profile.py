#!/usr/bin/env python3
"""Where a faultline run spends its CPU: reads `perf script -F ip,sym --inline` on stdin and
charges each sample to the category of its leaf-most recognised frame (so an allocation made by
the raft core counts as engine, one made by madsim's spawn as scheduling). Prints the split and,
with --folded FILE, writes folded stacks for flamegraph tools (inferno, flamegraph.pl)."""

import argparse
import collections
import re
import sys

# First match wins, walking from the leaf towards the root.
CATEGORIES = [
    ("checkers", re.compile(r"sim::check::|World::end_checks|World::converged")),
    ("trace", re.compile(r"sim::trace::|sim::world::World::observe|sim::world::World::record")),
    ("disk", re.compile(r"sim::disk::|engine::log_store::|engine::storage::")),
    ("network", re.compile(r"madsim::sim::net::")),
    ("scheduling", re.compile(r"madsim::sim::(task|time|runtime)|naive_timer|async_task::|futures_channel::|futures_util::")),
    ("engine", re.compile(r"engine::")),
    ("harness", re.compile(r"sim::")),
]


def samples(lines):
    frames = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                yield frames
            frames = []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            frames.append(parts[1].replace(" (inlined)", ""))
    if frames:
        yield frames


def category(frames):
    for f in frames:
        for name, pat in CATEGORIES:
            if pat.search(f):
                return name
    return "other (startup, kernel, libc outside a known caller)"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--folded", help="write folded stacks here")
    args = ap.parse_args()
    counts = collections.Counter()
    folded = collections.Counter()
    total = 0
    for frames in samples(sys.stdin):
        total += 1
        counts[category(frames)] += 1
        if args.folded:
            folded[";".join(reversed([f.replace(";", ":") for f in frames]))] += 1
    if total == 0:
        sys.exit("profile.py: no samples on stdin (was perf recorded with --call-graph dwarf?)")
    print(f"{total} samples")
    for name, n in counts.most_common():
        print(f"{100.0 * n / total:6.1f}%  {name}")
    if args.folded:
        with open(args.folded, "w") as out:
            for stack, n in folded.most_common():
                out.write(f"{stack} {n}\n")
        print(f"folded stacks: {args.folded}")


if __name__ == "__main__":
    main()
