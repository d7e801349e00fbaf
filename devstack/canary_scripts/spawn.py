"""Run inside a sandbox by the canary (devstack/canary.py): `python3 spawn.py COUNT`.

Raises its own process limit as far as it may, then starts COUNT processes that stay alive
together. Exit 0, printing `ESCAPED: …`, when all of them started; otherwise exit 1 with
`held at N`. Every process it started is killed before it ends.
"""

from __future__ import annotations

import resource
import subprocess
import sys


def main() -> int:
    count = int(sys.argv[1])
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print("setrlimit(RLIMIT_NPROC, unlimited) allowed")
    except (ValueError, OSError) as error:
        print(f"setrlimit(RLIMIT_NPROC, unlimited) refused: {error}")
    print(f"RLIMIT_NPROC now {resource.getrlimit(resource.RLIMIT_NPROC)}", flush=True)
    started: list[subprocess.Popen[bytes]] = []
    refusal = ""
    try:
        while len(started) < count:
            started.append(subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL))
    except OSError as error:
        refusal = f"{type(error).__name__}: {error}"
    finally:
        for process in started:
            process.kill()
        for process in started:
            process.wait()
    if len(started) == count:
        print(f"ESCAPED: all {count} processes ran at once")
        return 0
    print(f"held at {len(started)} processes: {refusal}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
