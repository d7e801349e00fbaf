"""Root's file operations inside a workspace: relative to open folders, never through a link.

A workspace's folders belong to the sandbox's user, so a command can swap any of them for a link
(renameat2 with RENAME_EXCHANGE makes the swap atomic). A path-based call of the job would then
act wherever the link points, as root. Here every step is opened relative to the folder before
it with O_NOFOLLOW, and each call acts on the descriptor it opened: a swap makes the call fail or
land in the workspace, never outside it. Files shared with an installed tree (more than one link,
functions/dependencies.py) are never given away or changed in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def open_root(root: Path) -> int:
    """The workspace's own folder: its parents are the job's, so only its last step can be a link."""
    return os.open(root, FOLDER_FLAGS)


@contextlib.contextmanager
def folder(root: Path, parts: Sequence[str], make: bool = False, clear: bool = False) -> Iterator[int]:
    """root/parts opened step by step; `make` creates what is missing, `clear` removes a link or
    a file in the way (otherwise NotADirectoryError)."""
    descriptor = open_root(root)
    try:
        for part in parts:
            try:
                step = os.open(part, FOLDER_FLAGS, dir_fd=descriptor)
            except FileNotFoundError:
                if not make:
                    raise
                os.mkdir(part, 0o755, dir_fd=descriptor)
                step = os.open(part, FOLDER_FLAGS, dir_fd=descriptor)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                # A link (ELOOP) or a file (ENOTDIR) is in the way.
                if not clear:
                    raise NotADirectoryError(f"{part} is not a folder") from None
                os.unlink(part, dir_fd=descriptor)
                os.mkdir(part, 0o755, dir_fd=descriptor)
                step = os.open(part, FOLDER_FLAGS, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = step
        yield descriptor
    finally:
        os.close(descriptor)


def open_file(root: Path, rel: str) -> int:
    """root/rel opened for reading, through real folders only and without blocking on a pipe:
    the caller checks what it is (fstat)."""
    parents, name = _split(rel)
    with folder(root, parents) as parent:
        return os.open(name, FILE_FLAGS, dir_fd=parent)


def _split(rel: str) -> tuple[list[str], str]:
    parts = rel.split("/")
    return parts[:-1], parts[-1]


def _is_folder(name: str, parent: int) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def write(root: Path, rel: str, data: bytes, mode: int = 0o644, clear: bool = True) -> None:
    """root/rel made anew with data and mode. `clear`: a folder or a link in the way is removed
    (a restore puts the stored state back); otherwise IsADirectoryError or NotADirectoryError."""
    parents, name = _split(rel)
    with folder(root, parents, make=True, clear=clear) as parent:
        if _is_folder(name, parent):
            if not clear:
                raise IsADirectoryError(f"{rel} is a folder")
            shutil.rmtree(name, dir_fd=parent)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=parent)
        descriptor = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent
        )
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(descriptor, mode)  # whatever the umask
            handle.write(data)


def unlink(root: Path, rel: str) -> None:
    """Remove root/rel if it is there as a real path (through a link, it is not)."""
    parents, name = _split(rel)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), folder(root, parents) as parent:
        os.unlink(name, dir_fd=parent)


def set_mode(root: Path, rel: str, mode: int) -> None:
    """Give root/rel this mode; a file shared with a tree gets a copy of its own instead."""
    parents, name = _split(rel)
    with folder(root, parents) as parent:
        descriptor = os.open(name, FILE_FLAGS, dir_fd=parent)
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(descriptor)
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                os.fchmod(descriptor, mode)
                return
            data = handle.read()
    write(root, rel, data, mode)


def remove_empty_folders(root: Path) -> None:
    for _, dirnames, _, parent in os.fwalk(root, topdown=False):
        for name in dirnames:
            with contextlib.suppress(OSError):  # not empty, or a link
                os.rmdir(name, dir_fd=parent)


def _own_folders(root: Path, skip: str | None) -> Iterator[tuple[int, list[str]]]:
    """Each folder under root, opened without following a link, with its file names: all but the
    top-level folder `skip` and what is under it."""
    for dirpath, dirnames, filenames, parent in os.fwalk(root):
        if skip and dirpath == str(root) and skip in dirnames:
            dirnames.remove(skip)
        yield parent, filenames


def _on_own_file(name: str, parent: int, act: Callable[[int, os.stat_result], None]) -> None:
    """`act` on parent/name, opened, when it is still a regular file with a single link (one of
    the job's own, not a tree's), whatever a command swapped in meanwhile."""
    try:
        descriptor = os.open(name, FILE_FLAGS, dir_fd=parent)
    except OSError:
        return  # swapped meanwhile for something that is not a file
    try:
        info = os.fstat(descriptor)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            act(descriptor, info)
    finally:
        os.close(descriptor)


def give_away(root: Path, ids: tuple[int, int], skip: str | None = None) -> None:
    """Every folder and every regular file of the job's own under root to the sandbox's uid,
    except the top-level folder `skip` and files shared with an installed tree."""
    for parent, filenames in _own_folders(root, skip):
        os.fchown(parent, *ids)
        for name in filenames:
            _give_file(name, parent, ids)


def _give_file(name: str, parent: int, ids: tuple[int, int]) -> None:
    try:
        seen = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if (seen.st_uid, seen.st_gid) == ids:
        return  # the sandbox's already: the common case, one call
    if stat.S_ISLNK(seen.st_mode):
        os.chown(name, *ids, dir_fd=parent, follow_symlinks=False)
        return
    if not stat.S_ISREG(seen.st_mode) or seen.st_nlink != 1:
        return  # a tree's file (shared by link) stays the job's; pipes and sockets are not files
    _on_own_file(name, parent, lambda descriptor, _: os.fchown(descriptor, *ids))


def open_up(root: Path, skip: str | None = None) -> None:
    """Every folder and every regular file of the job's own under root made world-writable, except
    under the top-level folder `skip` (an installed tree's files stay read-only; its folders are
    open already, functions/dependencies.py): for a sandbox whose user writes nothing else
    (functions/isolation.py, CloudRunSandbox). Only that sandbox sees the folder bound."""
    for parent, filenames in _own_folders(root, skip):
        if stat.S_IMODE(os.fstat(parent).st_mode) != 0o777:
            os.fchmod(parent, 0o777)
        for name in filenames:
            _open_file(name, parent)


def _open_file(name: str, parent: int) -> None:
    try:
        seen = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(seen.st_mode) or seen.st_nlink != 1 or seen.st_mode & 0o666 == 0o666:
        return  # open already (the common case, one call), a link, or a tree's file
    _on_own_file(name, parent, lambda descriptor, info: os.fchmod(descriptor, stat.S_IMODE(info.st_mode) | 0o666))
