#!/usr/bin/env python3
"""Runs one command as a whole process and prints what it cost, for the side-by-side bench
(`benches/rotator.rs`, `BENCH_ONLY=side`): the same measure for both sides, secret-rotator and
the Python rotator.

    measure_process.py OUT ERR -- COMMAND [ARG...]

The command's stdout goes to the file OUT and its stderr to ERR (the environment is passed on
unchanged). Prints one JSON line: `wallS` (spawn to exit, monotonic clock), `cpuS` (user +
system time of the process and of any child it waited for, from `wait4`'s rusage), `maxRssKb`
(its peak resident set, `ru_maxrss`) and `exit` (the exit status, or minus the signal).
"""

import json
import os
import subprocess
import sys
import time


def main() -> int:
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out_path, err_path, command = sys.argv[1], sys.argv[2], sys.argv[4:]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    print(
        json.dumps(
            {
                "wallS": wall,
                "cpuS": usage.ru_utime + usage.ru_stime,
                "maxRssKb": usage.ru_maxrss,
                "exit": proc.returncode,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
