#!/usr/bin/env python3
"""Runs a command RUNS times and prints one line per run with microsecond resolution:

    wall_ms user_ms sys_ms maxrss_kib

GNU time (`/usr/bin/time -f '%e %U %S %M'`) prints seconds with two decimals, which is
too coarse for a ~10 ms process; this uses os.wait4() on the command itself (no shell in
between) so wall and CPU time are the command's own (plus the forked child's few
microseconds before exec). maxrss_kib is NOT the command's own: Linux carries the RSS
high-water mark of the forked python child across exec, so it is at least python's RSS
(~10 MiB); use GNU time's %M for peak RSS. stdout goes to /dev/null; stdin is
--stdin TEXT if given, else /dev/null.

usage: rusage.py [--stdin TEXT] RUNS CMD [ARG...]
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
    start = time.perf_counter_ns()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(rfd, 0)
            os.dup2(devnull, 1)
            if wfd is not None:
                os.close(wfd)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
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
    if args[:1] == ["--stdin"]:
        stdin_text, args = args[1], args[2:]
    if len(args) < 2:
        sys.exit(__doc__)
    runs, argv = int(args[0]), args[1:]
    for _ in range(runs):
        print("%.3f %.3f %.3f %d" % run_once(argv, stdin_text))


if __name__ == "__main__":
    main()
