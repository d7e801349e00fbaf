"""Root's file operations on a workspace while a command swaps its folders for links.

The red team's race: a process of the sandbox, left running, swapped a workspace folder for a
link to a root-owned folder outside every workspace (renameat2 RENAME_EXCHANGE, in a loop), and
root's chown in prepare_workspace followed it. Here the swapping runs for real, as fast as it can,
while root gives the workspace away, writes, removes and tidies in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from functions import confined
from functions.isolation import sandbox_ids
from functions.sandbox import prepare_workspace
from vibesdk_gcp.settings import Settings

IDS = sandbox_ids(Settings())  # whom the job gives a workspace to

ROUNDS_SECONDS = 1.5


@pytest.fixture(autouse=True)
def as_root() -> None:
    # A security test that cannot run fails: it must never pass by skipping.
    assert os.geteuid() == 0, "these tests give files away as root does in the job: run them as root"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace whose `src` a command keeps swapping with a link to `outside`."""
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "victim").write_text("the job's")
    (outside / "a.txt").write_text("outside")
    workspace = tmp_path / "home" / "files"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "a.txt").write_text("inside")
    (workspace / "swap").symlink_to(outside)
    return workspace, outside


# Swaps two paths as fast as it can until it is stopped, then prints how often it did.
SWAPPER = """
import ctypes, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b, swaps = sys.argv[1].encode(), sys.argv[2].encode(), 0
signal.signal(signal.SIGTERM, lambda *_: (print(swaps), sys.exit(0)))
print("ready", flush=True)
while True:
    if libc.renameat2(-100, a, -100, b, 2) == 0:
        swaps += 1
"""


@pytest.fixture
def swapping(layout: tuple[Path, Path]) -> Iterator[Callable[[], int]]:
    """Swaps src and the link (RENAME_EXCHANGE) from a process of its own, as a command would,
    until the test ends; the callable stops it and says how many swaps it made."""
    workspace, _ = layout
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(workspace / "src"), str(workspace / "swap")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert swapper.stdout and swapper.stdout.readline() == "ready\n"

    def stop() -> int:
        if swapper.poll() is None:
            swapper.terminate()
        out, _ = swapper.communicate(timeout=10)
        return int(out.strip() or 0)

    yield stop
    stop()


def repeatedly(action: Callable[[], None]) -> int:
    """Run action over and over for a while; errors from a swap mid-way are the point, not a failure."""
    deadline, rounds = time.monotonic() + ROUNDS_SECONDS, 0
    while time.monotonic() < deadline:
        try:
            action()
        except OSError:
            pass
        rounds += 1
    return rounds


def owners(root: Path) -> set[int]:
    return {os.lstat(path).st_uid for path in [root, *root.rglob("*")]}


def test_giving_the_workspace_away_never_follows_a_swapped_link(
    layout: tuple[Path, Path], swapping: Callable[[], int]
) -> None:
    workspace, outside = layout
    rounds = repeatedly(lambda: prepare_workspace(workspace, IDS))
    assert swapping() > 100 and rounds > 10
    assert owners(outside) == {0}, "root gave away a folder outside the workspace"


def test_writes_removals_and_tidying_stay_inside(layout: tuple[Path, Path], swapping: Callable[[], int]) -> None:
    workspace, outside = layout

    def restore_like() -> None:
        confined.write(workspace, "src/written.txt", b"from the store")
        confined.set_mode(workspace, "src/a.txt", 0o755)
        confined.unlink(workspace, "src/victim")
        confined.unlink(workspace, "src/written.txt")
        confined.remove_empty_folders(workspace)

    repeatedly(restore_like)
    assert swapping() > 100
    assert sorted(p.name for p in outside.iterdir()) == ["a.txt", "keep", "victim"]
    assert (outside / "victim").read_text() == "the job's" and (outside / "keep").is_dir()
    assert (outside / "a.txt").stat().st_mode & 0o777 == 0o644


def test_a_file_shared_with_a_tree_is_never_given_away_or_changed_in_place(tmp_path: Path) -> None:
    tree_file = tmp_path / "tree" / "lib" / "tool.js"
    tree_file.parent.mkdir(parents=True)
    tree_file.write_text("module.exports = 1\n")
    tree_file.chmod(0o644)
    workspace = tmp_path / "files"
    (workspace / "src").mkdir(parents=True)
    # What `mv node_modules/somepkg/lib/tool.js src/t.js` leaves: the tree's inode, outside node_modules.
    os.link(tree_file, workspace / "src" / "t.js")
    prepare_workspace(workspace, IDS)
    assert (workspace / "src").stat().st_uid != 0  # the workspace's own folders are given away
    assert tree_file.stat().st_uid == 0 and tree_file.stat().st_nlink == 2

    confined.set_mode(workspace, "src/t.js", 0o755)  # as a restore whose store says executable
    assert tree_file.stat().st_mode & 0o777 == 0o644 and tree_file.stat().st_nlink == 1
    copy = workspace / "src" / "t.js"
    assert copy.read_text() == "module.exports = 1\n" and copy.stat().st_mode & 0o777 == 0o755
