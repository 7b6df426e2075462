#!/usr/bin/env python3
"""Times two commands alternately (A B, B A, A B, ...) RUNS times each, so that both see
the same machine conditions, and prints one line per pair with microsecond resolution:

    wall_a_ms cpu_a_ms wall_b_ms cpu_b_ms

(cpu = user + sys of the command, from os.wait4; see rusage.py, whose run_once this uses).
A ratio of B to A from these pairs is far less sensitive to a busy or drifting machine
than one between two separate series. Every argument containing @NOW@ gets it replaced,
in pair i (0-based), by START + i * STEP (both commands get the same value).

usage: pair.py RUNS START STEP -- [--stdin TEXT] CMD_A [ARG...] -- [--stdin TEXT] CMD_B [ARG...]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rusage import run_once  # noqa: E402


def split_command(args):
    stdin_text = None
    if args[:1] == ["--stdin"]:
        if len(args) < 2:
            sys.exit(__doc__)
        stdin_text, args = args[1], args[2:]
    if not args:
        sys.exit(__doc__)
    return args, stdin_text


def main():
    args = sys.argv[1:]
    if len(args) < 6 or args[3] != "--" or "--" not in args[4:]:
        sys.exit(__doc__)
    runs, start, step = int(args[0]), int(args[1]), int(args[2])
    rest = args[4:]
    cut = rest.index("--")
    a = split_command(rest[:cut])
    b = split_command(rest[cut + 1 :])
    for i in range(runs):
        now = str(start + i * step)
        results = {}
        order = (("a", a), ("b", b)) if i % 2 == 0 else (("b", b), ("a", a))
        for name, (argv, stdin_text) in order:
            argv = [x.replace("@NOW@", now) for x in argv]
            wall, user, system, _ = run_once(argv, stdin_text)
            results[name] = (wall, user + system)
        print("%.3f %.3f %.3f %.3f" % (*results["a"], *results["b"]))


if __name__ == "__main__":
    main()
