"""Runs outside a Cloud Run sandbox, one per command, between the job and the `sandbox` CLI.

Killing the CLI is reported to leave the sandbox's processes running, and the CLI may exit while
processes a command started (with sudo, in the background) still run. This process makes itself
their child subreaper, so every process the CLI leaves behind becomes its child; when the CLI
exits, or when the job sends SIGTERM (timeout, quota), it kills every one of its descendants and
only then exits, with the CLI's status. The job watches memory and processes from it as well.
Started as `python -I -S -c SOURCE CLI ARGS...`; standard library only.
"""

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            for task in os.scandir(f"/proc/{current}/task"):
                with open(os.path.join(task.path, "children")) as children:
                    todo += [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        if current != pid:
            found.append(current)
    return found


def end_all() -> None:
    """Kill and reap every descendant, until none is left (a fork may race one pass)."""
    while pids := descendants(os.getpid()):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


def main() -> None:
    if ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1) != 0:
        print("sandbox reaper: cannot become a child subreaper", file=sys.stderr)
        os._exit(125)

    def stop(*_: object) -> None:
        end_all()
        os._exit(137)

    signal.signal(signal.SIGTERM, stop)
    cli = subprocess.Popen(sys.argv[1:])
    status = cli.wait()
    end_all()
    os._exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()
