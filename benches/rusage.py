#!/usr/bin/env python3
"""Runs a command RUNS times and prints one line per run with microsecond resolution:

    wall_ms user_ms sys_ms maxrss_kib

GNU time (`/usr/bin/time -f '%e %U %S %M'`) prints seconds with two decimals, which is
too coarse for a ~10 ms process; this uses os.wait4() on the command itself (no shell in
between) so wall and CPU time are the command's own (plus the spawned child's few
microseconds before exec). maxrss_kib is NOT the command's own: Linux carries the RSS
high-water mark of the forked python child across exec, so it is at least python's RSS
(~10 MiB); use GNU time's %M for peak RSS. stdout goes to /dev/null; stdin is
--stdin TEXT if given, else /dev/null.

With --seq START STEP, every argument containing the token @NOW@ gets it replaced, on run
i (0-based), by START + i * STEP: e.g. `hapwatch run --now @NOW@` with a fresh simulated
clock per run, so that each run of a stateful command sees the time advance.

usage: rusage.py [--stdin TEXT] [--seq START STEP] RUNS CMD [ARG...]
"""

import os
import sys
import time


def run_once(argv, stdin_text):
    if stdin_text is not None:
        rfd, wfd = os.pipe()
    else:
        rfd, wfd = os.open(os.devnull, os.O_RDONLY), None
    devnull = os.open(os.devnull, os.O_WRONLY)
    actions = [(os.POSIX_SPAWN_DUP2, rfd, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)]
    if wfd is not None:
        actions.append((os.POSIX_SPAWN_CLOSE, wfd))
    start = time.perf_counter_ns()
    # posix_spawn (glibc: clone(CLONE_VM | CLONE_VFORK) + exec) rather than fork: the
    # child never touches python's pages, so no copy-on-write faults are billed to it.
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    os.close(rfd)
    os.close(devnull)
    if wfd is not None:
        os.write(wfd, stdin_text.encode())
        os.close(wfd)
    _, status, ru = os.wait4(pid, 0)
    wall_ns = time.perf_counter_ns() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"rusage.py: {' '.join(argv)} exited with {code}")
    return wall_ns / 1e6, ru.ru_utime * 1e3, ru.ru_stime * 1e3, ru.ru_maxrss


def main():
    args = sys.argv[1:]
    stdin_text = None
    seq = None
    while args[:1] in (["--stdin"], ["--seq"]):
        if args[0] == "--stdin" and len(args) >= 2:
            stdin_text, args = args[1], args[2:]
        elif args[0] == "--seq" and len(args) >= 3:
            seq, args = (int(args[1]), int(args[2])), args[3:]
        else:
            sys.exit(__doc__)
    if len(args) < 2:
        sys.exit(__doc__)
    runs, argv = int(args[0]), args[1:]
    for i in range(runs):
        if seq is not None:
            now = str(seq[0] + i * seq[1])
            run_argv = [a.replace("@NOW@", now) for a in argv]
        else:
            run_argv = argv
        print("%.3f %.3f %.3f %d" % run_once(run_argv, stdin_text))


if __name__ == "__main__":
    main()
