"""A job instance's disk stays bounded: old working copies and unused trees go, never one in use."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from functions.local_copies import LocalCopies
from functions.local_disk import DEPENDENCIES_FOLDER, LocalDisk


def _home(root: Path, session: str, age: int, tree: Path | None = None) -> Path:
    home = root / session
    (home / "files").mkdir(parents=True)
    (home / "state.json").write_text("{}")
    if tree:
        (home / "base.json").write_text(
            json.dumps({"key": tree.parent.name, "folder": "node_modules", "tree": str(tree)})
        )
    for path in (home, home / "state.json"):
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    return home


def _tree(root: Path, key: str, age: int) -> Path:
    home = root / DEPENDENCIES_FOLDER / key
    (home / "tree").mkdir(parents=True)
    (home / "complete").write_text(key)
    (home / "used").touch()
    os.utime(home / "used", (1_000_000 + age, 1_000_000 + age))
    return home / "tree"


def test_the_least_recently_used_copies_go_but_never_a_busy_one(tmp_path: Path) -> None:
    for age in range(6):
        _home(tmp_path, f"s{age}", age)
    (tmp_path / ".templates").mkdir()
    copies = LocalCopies(LocalDisk(tmp_path))
    with copies.in_use("s0"):
        dropped = copies.trim(keep=3)
    assert sorted(dropped) == ["s1", "s2"]  # s0 is the oldest, but an action is using it
    assert sorted(p.name for p in tmp_path.iterdir()) == [".templates", "s0", "s3", "s4", "s5"]


def test_trees_in_use_stay_and_only_a_few_unused_ones(tmp_path: Path) -> None:
    used_by_old = _tree(tmp_path, "a", age=0)
    for age, key in enumerate("bcde", start=1):
        _tree(tmp_path, key, age)
    _home(tmp_path, "s-new", 10, used_by_old)
    _home(tmp_path, "s-gone", 0, tmp_path / DEPENDENCIES_FOLDER / "b" / "tree")
    partial = tmp_path / DEPENDENCIES_FOLDER / "f"
    partial.mkdir()  # being unpacked: no marker yet
    assert LocalCopies(LocalDisk(tmp_path)).trim(keep=1) == ["s-gone"]
    # "a" is given to a kept copy; of the unused, the two most recently used stay.
    assert sorted(p.name for p in (tmp_path / DEPENDENCIES_FOLDER).iterdir() if p.is_dir()) == ["a", "d", "e", "f"]


def test_a_tree_held_between_its_check_and_its_giving_is_never_trimmed(tmp_path: Path) -> None:
    """An action holds its tree from the check until a working copy names it: no trim drops it meanwhile."""
    held = _tree(tmp_path, "held", age=0)  # the least recently used: the first a trim would drop
    for age, key in enumerate("xyz", start=1):
        _tree(tmp_path, key, age)
    disk = LocalDisk(tmp_path)
    copies = LocalCopies(disk)
    with open(disk.tree_home("held").lock, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # as DependencyCache.holding() holds it
        copies.trim(keep=1)
        assert held.is_dir()
        fcntl.flock(lock, fcntl.LOCK_UN)
    copies.trim(keep=1)
    assert not held.exists()
