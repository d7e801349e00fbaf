"""A job instance's disk under the workspace root, and the one place that knows its layout.

- `{root}/{session}/`: a session's working copy (functions/workspace.py): `files/`, the working
  copy itself, `state.json`, what the job knows of it, and `base.json`, the installed tree it was given;
- `{root}/.deps/{key}/` and `{root}/.deps/{key}.lock`: an installed tree (functions/dependencies.py):
  `tree/`, the tree itself, `files.json`, the record of its files, `complete`, its marker, written
  last, `used`, touched whenever it is given, and its lock;
- `{root}/.templates/`: the template bundles (functions/templates.py).

The root and `.deps` are traversable, not listable: the sandbox uid reaches its own workspace and
sees no others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vibesdk_gcp.bounded import BoundedDict

DEPENDENCIES_FOLDER = ".deps"
TEMPLATES_FOLDER = ".templates"
# Working-copy states kept in this process: the most recently used few.
MAX_CACHED_STATES = 64


@dataclass(frozen=True)
class Home:
    """One session's folder on the disk."""

    path: Path

    @property
    def session_id(self) -> str:
        return self.path.name

    @property
    def files(self) -> Path:
        return self.path / "files"

    @property
    def state(self) -> Path:
        return self.path / "state.json"

    @property
    def base(self) -> Path:
        return self.path / "base.json"


@dataclass(frozen=True)
class TreeHome:
    """One key's folder in the dependency cache (or an install's scratch, which has no `used`)."""

    path: Path

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def tree(self) -> Path:
        return self.path / "tree"

    @property
    def record(self) -> Path:
        """Size, time, mode and sha256 of every file of the tree, as the job made it."""
        return self.path / "files.json"

    @property
    def complete(self) -> Path:
        """Written last: a tree without it is partial."""
        return self.path / "complete"

    @property
    def used(self) -> Path:
        """Touched whenever the tree is given: the trim keeps the most recently given."""
        return self.path / "used"

    @property
    def lock(self) -> Path:
        """The file whose flock guards the tree: shared while it is given, exclusive to change it."""
        return self.path.with_name(f"{self.path.name}.lock")


class LocalDisk:
    def __init__(self, root: Path) -> None:
        self.root = root
        # Working-copy states by state file, for the next action of the session in this process
        # (functions/workspace.py keeps the most recently used few; the others are read back from
        # their files).
        self.states: BoundedDict[Path, dict[str, Any]] = BoundedDict(MAX_CACHED_STATES)

    def _made(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o711)  # whatever the umask
        return folder

    def home(self, session_id: str) -> Home:
        """A session's folder (made or not), under the root, which is made."""
        return Home(self._made(self.root) / session_id)

    def homes(self) -> list[Home]:
        """Every session's folder on the disk."""
        if not self.root.is_dir():
            return []
        return [Home(path) for path in self.root.iterdir() if path.is_dir() and not path.name.startswith(".")]

    def dependencies(self) -> Path:
        """The folder of the installed trees, made."""
        return self._made(self.root / DEPENDENCIES_FOLDER)

    def trees(self) -> list[TreeHome]:
        """Every folder in the dependency cache (a key's, or an install's scratch)."""
        cache = self.root / DEPENDENCIES_FOLDER
        return [TreeHome(entry) for entry in cache.iterdir() if entry.is_dir()] if cache.is_dir() else []

    def tree_home(self, key: str) -> TreeHome:
        """A key's folder in the dependency cache, made or not (a path only: reading it costs no call)."""
        return TreeHome(self.root / DEPENDENCIES_FOLDER / key)

    def templates(self) -> Path:
        """The folder of the template bundles, made."""
        cache = self.root / TEMPLATES_FOLDER
        cache.mkdir(parents=True, exist_ok=True)
        return cache
