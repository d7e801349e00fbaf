"""A command's scratch folder (its /tmp and /dev/shm): made for it and removed after it, always.

The folder goes when the command is done, whatever modes the command set on what it made there
(the job on Cloud Run is not root: a folder the command made unreadable stops a plain removal).
A job killed meanwhile (SIGKILL, or a worker stopped mid-command) cannot remove its own folder:
each folder's name carries its job's pid, and the next command of any job removes the folders
whose job is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

PREFIX = "vibesdk-run-"


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A new scratch folder for one command, removed when the block ends."""
    remove_orphans()
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    try:
        yield path
    finally:
        remove(path)


def remove_orphans(root: Path | None = None) -> list[Path]:
    """Remove the scratch folders under root (the temporary folder) of jobs that no longer run."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        pid = folder.name.removeprefix(PREFIX).partition("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            remove(folder)
            removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def remove(path: Path) -> None:
    """Remove the folder and all in it, whatever the modes in it.

    What cannot be listed or removed for its modes is made the job's again (0700, only if it is
    a folder and not a link) and removed again. Nothing of the command runs any more by then.
    """
    top = str(path)
    retried: set[str] = set()

    def open_up(name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(name).st_mode):
                os.chmod(name, 0o700)

    def retry(function: Any, name: str, exc_info: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        error = exc_info[1]
        if isinstance(error, FileNotFoundError):
            return  # removed meanwhile (by another job's sweep)
        if not isinstance(error, PermissionError) or name in retried:
            raise error
        retried.add(name)
        if name != top:
            open_up(os.path.dirname(name))
        open_up(name)
        try:
            if stat.S_ISDIR(os.lstat(name).st_mode):
                shutil.rmtree(name, onerror=retry)
            else:
                os.unlink(name)
        except FileNotFoundError:
            pass

    shutil.rmtree(path, onerror=retry)
