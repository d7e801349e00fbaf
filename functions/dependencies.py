"""Installed dependencies: built once per lockfile, kept in Cloud Storage, given to workspaces by link.

A template's catalog entry may name an install (`install`: the command, the folder it fills and
the files it reads, the lockfile first), or an instance's lockfile does (functions/lockfiles.py).
The installed folder depends on those files and on the platform only, so it is kept once per key
(their sha256s, the command, the version of its tool and the platform):
- in Cloud Storage, `deps/{key}.json` (written last: the archive's sha256 and size) naming
  `deps/{key}/{sha256}.tar.gz`, shared by every session and owner. Only the job writes there: a sandbox
  holds no credential. An archive without its record, or whose sha256 differs, is rebuilt;
- on each job instance, `{workspace root}/.deps/{key}/tree`, unpacked once (or, where it was
  installed, the installed folder itself), with a `complete` marker written last (a tree without
  one is unpacked again);
- in a workspace, by hard links to the instance's tree when commands run as another uid than the
  job (they cannot write the job's files, so the shared tree stays intact), else by a copy.

The workspace saves only what differs from the tree (functions/workspace.py), so a session's saves
and restores stay the size of its own files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from functions import confined
from functions.isolation import Isolation
from functions.local_disk import LocalDisk, TreeHome
from functions.sandbox import SANDBOX_PATH
from vibesdk_gcp.errors import ActionFailed, NotFound
from vibesdk_gcp.names import WORKSPACES_BUCKET
from vibesdk_gcp.storage import Storage

if TYPE_CHECKING:
    from functions.workspace import Workspace

logger = logging.getLogger("functions.dependencies")

DEPS_PREFIX = "deps/"
MAX_INPUT_BYTES = 16 << 20
# Files at a project's top that would change what npm or bun install (a registry, its token,
# scripts settings): never copied to the install, which reads its spec's inputs only, so that
# the cache key (those inputs) is all the tree depends on.
PROJECT_CONFIG = (".npmrc", "bunfig.toml")
# File stat that tells a workspace file is still the tree's: size, mtime, mode.
Stat = tuple[int, int, int]
# What the job records of each file of a tree: size, mtime, mode and sha256.
Record = tuple[int, int, int, str]


@dataclass(frozen=True)
class InstallSpec:
    command: str
    folder: str
    inputs: tuple[str, ...]

    @classmethod
    def of(cls, entry: dict[str, Any] | None) -> InstallSpec | None:
        if not entry:
            return None
        return cls(str(entry["command"]), str(entry["folder"]), tuple(entry["inputs"]))

    def as_entry(self) -> dict[str, Any]:
        """As a catalog entry's `install` names it (and an instance records it)."""
        return {"command": self.command, "folder": self.folder, "inputs": list(self.inputs)}

    def without_scripts(self, inputs: dict[str, bytes]) -> InstallSpec:
        """The same install with no tenant-controlled code run: for a caller whose key has no
        network, while the packages are fetched through the egress proxy."""
        words = self.command.split()
        if words[:1] in (["npm"], ["bun"]):
            return dataclasses.replace(self, command=f"{self.command} --ignore-scripts")
        if "pip" in words[:3] and "install" in words:
            for name, data in inputs.items():
                refused = _not_plain_requirement(data)
                if refused:
                    raise ActionFailed(
                        f"{name} has {refused}, which a key without network may not use: ask for a key "
                        "with egress, or list pinned, hashed requirements only (name==version --hash=sha256:...)"
                    )
            # Wheels only: building a source distribution runs its setup code.
            return dataclasses.replace(self, command=f"{self.command} --only-binary=:all:")
        raise ActionFailed(
            f"{self.command!r} cannot run without its packages' scripts, and this API key has no network"
        )

    def key(self, inputs: dict[str, bytes]) -> str:
        digest = hashlib.sha256()
        for part in (self.command, self.folder, platform_tag(), tool_version(self.command)):
            digest.update(part.encode() + b"\0")
        for name in self.inputs:
            digest.update(name.encode() + b"\0" + hashlib.sha256(inputs[name]).digest())
        return digest.hexdigest()


# What a key without network may install with pip: pinned names with their hashes, comments.
# Anything else (a URL or path, an option such as --no-binary or an index, even one after a
# hash, an encoding pip would decode otherwise) can make pip build and run a package's code.
_PINNED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?===?[A-Za-z0-9.!+_-]+")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
_CODING = re.compile(r"^[ \t\f]*#.*?coding[:=]")


def _not_plain_requirement(data: bytes) -> str | None:
    """What in a requirements file is more than pinned, hashed names (None: nothing)."""
    if not data.isascii():
        return "bytes that are not ASCII"
    for number, line in enumerate(data.decode().replace("\\\n", " ").splitlines(), 1):
        if number <= 2 and _CODING.search(line):
            return f"an encoding declaration on line {number}"  # pip would decode the file by it
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if not _PINNED.fullmatch(words[0]) or not all(_HASH.fullmatch(word) for word in words[1:]):
            return f"a line that is not a pinned, hashed requirement ({line.strip()[:80]!r})"
    return None


@functools.cache
def platform_tag() -> str:
    """What an installed tree depends on besides its inputs: the machine and the toolchains' versions."""
    versions = []
    for tool in ("node", "python3"):
        try:
            done = subprocess.run([tool, "--version"], capture_output=True, timeout=10, check=False)
            versions.append(f"{tool}-{done.stdout.decode().strip()}")
        except OSError:
            versions.append(f"{tool}-none")
    return "-".join([platform.system(), platform.machine(), *versions])


def tool_version(command: str) -> str:
    """The version of the tool an install command runs (npm, bun, pip): a tree another version
    installed may differ."""
    words = command.split()
    return _version_of(tuple(words[: words.index("pip") + 1] if "pip" in words[:3] else words[:1]))


@functools.cache
def _version_of(tool: tuple[str, ...]) -> str:
    """`tool --version` as the sandbox's PATH finds it, read once per process."""
    try:
        done = subprocess.run(
            [*tool, "--version"], capture_output=True, timeout=20, check=False, env={"PATH": SANDBOX_PATH}
        )
    except (OSError, subprocess.SubprocessError):
        return f"{' '.join(tool)}-none"
    # pip says where it lives too ("pip 24.0 from /usr/lib/..."): its version alone.
    version = done.stdout.decode(errors="replace").strip().split(" from ")[0] if done.returncode == 0 else "none"
    return f"{' '.join(tool)}-{version}"


def read_inputs(spec: InstallSpec, workspace: Path) -> dict[str, bytes] | None:
    """The install's input files, or None when one is missing; a link or a folder is refused.

    The job reads them as itself: following a link a command planted could read a file the
    sandbox must not see, into a build folder it then does.
    """
    found = {}
    for name in spec.inputs:
        try:
            # Not blocking: a command may have left a pipe of that name, which no writer opens.
            descriptor = confined.open_file(workspace, name)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ActionFailed(f"{name} cannot be read for the install: {error.strerror}") from None
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise ActionFailed(f"{name} is not a regular file")
        with os.fdopen(descriptor, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            raise ActionFailed(f"{name} is over {MAX_INPUT_BYTES} bytes")
        found[name] = data
    return found


def tree_index(home: TreeHome) -> dict[str, Stat]:
    """Every file of a complete tree by path under the tree; {} when the tree is gone or partial.

    A complete tree never changes, so its index is kept, by its marker's time: a tree unpacked
    again at the same path (after a corrupt entry) is indexed again.
    """
    try:
        stamp = home.complete.stat().st_mtime_ns
    except FileNotFoundError:
        return {}
    return {rel: (size, mtime, mode) for rel, (size, mtime, mode, _) in _recorded(home, stamp).items()}


@functools.lru_cache(maxsize=32)
def _recorded(home: TreeHome, stamp: int) -> dict[str, Record]:
    """What the job recorded of the tree when it completed it."""
    try:
        return {rel: tuple(entry) for rel, entry in json.loads(home.record.read_text()).items()}
    except (FileNotFoundError, ValueError):
        return {}


def _record_of(tree: Path) -> dict[str, Record]:
    """Size, time, mode and sha256 of every file of a tree the job has just made its own."""
    record: dict[str, Record] = {}
    folders = [("", str(tree))]
    while folders:
        rel_folder, folder = folders.pop()
        with os.scandir(folder) as entries:
            for item in entries:
                if item.is_dir(follow_symlinks=False):
                    folders.append((rel_folder + item.name + "/", item.path))
                elif item.is_file(follow_symlinks=False):
                    info = item.stat(follow_symlinks=False)
                    mode = 0o755 if info.st_mode & 0o100 else 0o644
                    record[rel_folder + item.name] = (info.st_size, info.st_mtime_ns, mode, file_sha256(item.path))
    return record


def _altered(tree: Path, record: dict[str, Record], hashes: bool) -> str | None:
    """What in the tree differs from its record (None: nothing). Every file and folder must still
    be the job's, with its recorded mode, size and time; `hashes` also reads every content."""
    ids, seen = (os.getuid(), os.getgid()), 0
    folders = [("", str(tree))]
    while folders:
        rel_folder, folder = folders.pop()
        with os.scandir(folder) as entries:
            for item in entries:
                rel = rel_folder + item.name
                info = item.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    continue  # the tree's own links, in the job's folders: no sandbox can change them
                if (info.st_uid, info.st_gid) != ids:
                    return f"{rel} is no longer the job's"
                if stat.S_ISDIR(info.st_mode):
                    if stat.S_IMODE(info.st_mode) != 0o755:
                        return f"{rel}/ has mode {stat.S_IMODE(info.st_mode):o}"
                    folders.append((rel + "/", item.path))
                    continue
                expected = record.get(rel)
                if expected is None or not stat.S_ISREG(info.st_mode):
                    return f"{rel} was not in the tree"
                if (info.st_size, info.st_mtime_ns, stat.S_IMODE(info.st_mode)) != expected[:3]:
                    return f"{rel} changed"
                if hashes and file_sha256(item.path) != expected[3]:
                    return f"{rel} has other contents"
                seen += 1
    return None if seen == len(record) else "files of the tree are missing"


@dataclass(frozen=True)
class InstallReport:
    """What giving a workspace its dependencies did: the action's `dependencies` result."""

    source: str  # none, workspace (it had them), instance, storage or install (where the tree came from)
    key: str | None = None
    scripts: str | None = None  # whether the packages' scripts ran
    files: int | None = None  # files given to the workspace
    seconds: float | None = None
    reason: str | None = None  # why nothing was installed
    # The project's own install settings (PROJECT_CONFIG) the install did not read: it runs on
    # the key's inputs only, so that one tree serves every project with the same lockfile.
    ignored: list[str] | None = None

    def as_result(self) -> dict[str, Any]:
        return {name: value for name, value in dataclasses.asdict(self).items() if value is not None}


@dataclass(frozen=True)
class Held:
    """A key's tree, held while it is given, and where it was found."""

    tree: Path
    source: str  # instance, storage or install


# Runs an install command in a folder holding its inputs (in the sandbox); ActionFailed if it fails.
RunInstall = Callable[[str, Path], None]


class DependencyCache:
    """The installed trees this job instance holds, backed by Cloud Storage (one per process:
    functions/context.py).

    A tree is given out under a shared lock on its key, and made, checked or dropped under an
    exclusive one (functions/local_copies.py trims only what it can lock): no tree goes away
    between the check and the giving.
    """

    def __init__(self, storage: Storage, disk: LocalDisk, isolation: Isolation) -> None:
        self._storage = storage
        self._disk = disk
        self._isolation = isolation
        # Trees whose every content was read against the record by this process: a restart reads
        # them again (a poisoned tree once outlived a restart of `make dev`).
        self._hashed: set[tuple[str, int]] = set()

    @property
    def root(self) -> Path:
        return self._disk.dependencies()

    def install(
        self, spec: InstallSpec, workspace: Workspace, network: bool, run: RunInstall, build: bool = True
    ) -> InstallReport:
        """Give the workspace the installed tree of its current lockfile, building it on a first use.

        The install reaches the package registries through the egress proxy. Its packages' scripts
        (and the project's own lifecycle scripts, which the tenant writes) run only with `network`:
        without, a tree from the cache, else an install with scripts off. Without `build`, only a
        tree some cache holds is given (a read shows what a command there would see, and installs
        nothing).
        """
        started = time.monotonic()
        ignored = _ignored_config(spec, workspace.path)
        inputs = read_inputs(spec, workspace.path)
        if inputs is None:
            # Nothing to install from; what was given stays, still not the workspace's own files.
            absent = [name for name in spec.inputs if not os.path.lexists(workspace.path / name)] or list(spec.inputs)
            return InstallReport("none", reason=f"no {' or '.join(absent)} in the workspace", ignored=ignored)
        if network:
            choices = [(spec, "on")]
        else:
            choices = [(spec, "none run: the tree was in the cache"), (spec.without_scripts(inputs), "off")]
        for number, (chosen, scripts) in enumerate(choices, 1):
            key = chosen.key(inputs)
            base = workspace.base()
            if base and base["key"] == key and base.get("stamp") == self.stamp(key):
                return InstallReport("workspace", key, scripts, seconds=_since(started), ignored=ignored)
            builder = _builder(chosen, inputs, run) if number == len(choices) and build else None
            with self.holding(key, builder) as held:
                if held is None:
                    continue  # not in any cache: installed with scripts off
                remade = bool(base and base["key"] == key)  # the tree was made again since it was given
                if base:
                    # A new lockfile (or a tree made again): the new tree replaces the old one, and
                    # what was changed in it.
                    shutil.rmtree(workspace.path / chosen.folder, ignore_errors=True)
                given = give(held.tree, workspace.path, chosen.folder, self._isolation)
                stamp = self.stamp(key)
                workspace.set_base({"key": key, "folder": chosen.folder, "tree": str(held.tree), "stamp": stamp})
            if remade:
                workspace.restore()  # the session's own changes in the folder come back
            return InstallReport(held.source, key, scripts, given, _since(started), ignored=ignored)
        assert not build, "the last choice always builds"
        return InstallReport("none", reason="no cache holds the tree of this lockfile yet", ignored=ignored)

    def stamp(self, key: str) -> int | None:
        """Which making of the key's tree this instance holds (None: none): a workspace given
        another one is given this one anew."""
        try:
            return self._disk.tree_home(key).complete.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def holding(self, key: str, build: Callable[[Path], Path] | None) -> Iterator[Held | None]:
        """The tree for key, checked, held for the block: on this instance, else unpacked from
        Cloud Storage, else built (build(scratch) runs the install in scratch, where the inputs
        are, and returns the folder it filled). Without build, None when no cache holds it."""
        source = "instance"
        self._disk.dependencies()  # made, for the key's lock beside its folder
        home = self._disk.tree_home(key)
        while True:
            with self._locked(home, fcntl.LOCK_SH):
                found = home.complete.exists()
                if found and self._intact(home):
                    home.used.touch()  # the most recently used trees are kept
                    yield Held(home.tree, source)
                    return
            with self._locked(home, fcntl.LOCK_EX):
                found = home.complete.exists()
                if found and self._intact(home):
                    continue  # made meanwhile: held shared on the next turn
                if found:
                    shutil.rmtree(home.path, ignore_errors=True)
                made = self._fetch(key, build)
                if made is None:
                    yield None
                    return
                source = made

    def _fetch(self, key: str, build: Callable[[Path], Path] | None) -> str | None:
        """Make the tree from Cloud Storage, else by build: where it came from; None when neither can."""
        archive = self._download(key)
        if archive is not None:
            try:
                self._unpack(key, archive)
            finally:
                archive.unlink(missing_ok=True)
            return "storage"
        if build is None:
            return None
        self._build(key, build)
        return "install"

    def _intact(self, home: TreeHome) -> bool:
        """The tree is as recorded: by stat on every use, by content on a first use in this process."""
        stamp = home.complete.stat().st_mtime_ns
        record = _recorded(home, stamp)
        hashes = (home.key, stamp) not in self._hashed
        problem = _altered(home.tree, record, hashes) if record else "it has no record of its files"
        if problem is None:
            self._hashed.add((home.key, stamp))
            return True
        logger.error("installed tree %s is dropped and made again: %s", home.key, problem)
        return False

    @contextlib.contextmanager
    def _locked(self, home: TreeHome, mode: int) -> Iterator[None]:
        with open(home.lock, "a") as handle:
            fcntl.flock(handle, mode)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _download(self, key: str) -> Path | None:
        """The stored archive, checked against its record; None when missing, partial or corrupt."""
        try:
            record = json.loads(self._storage.read(WORKSPACES_BUCKET, f"{DEPS_PREFIX}{key}.json"))
        except NotFound:
            return None
        except ValueError:
            return None  # a record that does not parse is rebuilt, and overwritten
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
            return None
        target = self.root / f"{key}-{uuid.uuid4().hex}.tar.gz"
        try:
            self._storage.download(WORKSPACES_BUCKET, _archive_name(key, record["sha256"]), target)
        except NotFound:
            return None
        if target.stat().st_size != record.get("size") or file_sha256(target) != record.get("sha256"):
            target.unlink()
            return None
        return target

    def _build(self, key: str, build: Callable[[Path], Path]) -> Path:
        """Install, store the archive, and keep the installed folder itself as this instance's tree."""
        scratch = Path(tempfile.mkdtemp(prefix=f"build-{key[:12]}-", dir=self.root))
        archive = self.root / f"{key}-{uuid.uuid4().hex}.tar.gz"
        try:
            folder = build(scratch)
            # The command has ended, its processes with it: the folder is the job's from here.
            with tarfile.open(archive, "w:gz", compresslevel=1) as packed:
                packed.add(folder, arcname=".", filter=lambda member: _owned_by_job(member, str(folder)))
            # The archive first, named by its own sha256, its record last: a record always names
            # a whole archive, even when instances that built the same key at once race (the last
            # record wins, and each names the archive its writer wrote).
            digest = file_sha256(archive)
            self._storage.write(WORKSPACES_BUCKET, _archive_name(key, digest), archive.read_bytes(), "application/gzip")
            record = {"sha256": digest, "size": archive.stat().st_size, "platform": platform_tag()}
            self._storage.write(
                WORKSPACES_BUCKET, f"{DEPS_PREFIX}{key}.json", json.dumps(record).encode(), "application/json"
            )
            if os.geteuid() != 0:
                # The folder may hold files of the sandbox's own user, which only root could take
                # over: unpacked from the archive instead, as other instances do.
                return self._unpack(key, archive)
            # What the archive holds is this very folder once it is made the job's own: the cold
            # path writes the tree once.
            home = self._fresh_home(key)
            _make_owned_by_job(folder)
            folder.rename(home.tree)
            return self._complete(home)
        finally:
            archive.unlink(missing_ok=True)
            shutil.rmtree(scratch, ignore_errors=True)

    def _unpack(self, key: str, archive: Path) -> Path:
        home = self._fresh_home(key)
        with tarfile.open(archive, "r:gz") as packed:
            packed.extractall(home.tree, filter=_owned_by_job)
        return self._complete(home)

    def _fresh_home(self, key: str) -> TreeHome:
        home = self._disk.tree_home(key)
        shutil.rmtree(home.path, ignore_errors=True)  # a tree without its marker is partial
        home.path.mkdir()
        home.path.chmod(0o755)
        return home

    def _complete(self, home: TreeHome) -> Path:
        home.record.write_text(json.dumps(_record_of(home.tree)))
        home.complete.write_text(home.key)
        self._hashed.add((home.key, home.complete.stat().st_mtime_ns))  # recorded from these very contents
        home.used.touch()
        return home.tree


def _ignored_config(spec: InstallSpec, workspace: Path) -> list[str] | None:
    """The project's npm or bun settings files the install does not read (None: none)."""
    if spec.command.split()[:1] not in (["npm"], ["bun"]):
        return None
    ignored = [name for name in PROJECT_CONFIG if name not in spec.inputs and os.path.lexists(workspace / name)]
    return ignored or None


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _builder(spec: InstallSpec, inputs: dict[str, bytes], run: RunInstall) -> Callable[[Path], Path]:
    """What builds the tree on a cache miss: the install run in a scratch folder holding its inputs."""

    def build(scratch: Path) -> Path:
        for name, data in inputs.items():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            (scratch / name).write_bytes(data)
        run(spec.command, scratch)
        folder = scratch / spec.folder
        if folder.is_symlink() or not folder.is_dir():
            raise ActionFailed(f"installing dependencies ({spec.command!r}) left no {spec.folder}/ folder")
        return folder

    return build


def _archive_name(key: str, digest: str) -> str:
    return f"{DEPS_PREFIX}{key}/{digest}.tar.gz"


def _make_owned_by_job(folder: Path) -> None:
    """The installed folder as _owned_by_job unpacks it: the job's read-only files, no link leaving it."""
    root = os.path.realpath(folder)
    ids = os.getuid(), os.getgid()
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                target = os.path.realpath(path)
                if os.path.isabs(os.readlink(path)) or not (target == root or target.startswith(root + os.sep)):
                    os.unlink(path)
                else:
                    os.lchown(path, *ids)
            elif stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
                os.chown(path, *ids, follow_symlinks=False)
                executable = stat.S_ISDIR(info.st_mode) or info.st_mode & 0o100
                os.chmod(path, 0o755 if executable else 0o644)  # not a link: lstat said so, and the command is gone
            else:
                os.unlink(path)  # devices and pipes are no part of a package
    os.chown(folder, *ids)
    os.chmod(folder, 0o755)


def _owned_by_job(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
    """Unpacked as the job's own read-only files: what a command wrote is never writable by the next.

    Links that leave the tree are dropped (the data filter refuses them).
    """
    try:
        member = tarfile.data_filter(member, path)
    except tarfile.FilterError:
        return None
    mode = 0o755 if member.isdir() or (member.mode or 0) & 0o100 else 0o644
    return member.replace(uid=os.getuid(), gid=os.getgid(), uname="", gname="", mode=mode, deep=False)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def give(tree: Path, workspace: Path, folder: str, isolation: Isolation) -> int:
    """Put the tree's files in the workspace's `folder`, keeping what it already holds (a session's
    own changes). Returns the files given.

    Hard links when commands run as another, unprivileged uid: they cannot write the job's files,
    and root never gives a file with more than one link away (functions/confined.py), wherever a
    command moves it. A copy otherwise, so a command can never write the tree another workspace
    shares: when the job is not root, and in Cloud Run sandboxes, whose user has sudo
    (https://docs.cloud.google.com/run/docs/code-execution). Every step is made relative to an
    open folder, so a folder a command swapped for a link leads nowhere outside.
    """
    ids = isolation.ids
    backend, _ = isolation.selected()
    link = ids is not None and (backend is None or backend.hard_links_allowed)
    given = 0
    with confined.folder(workspace, [folder], make=True, clear=True) as top:
        folders = [(str(tree), os.dup(top))]
    while folders:
        source, destination = folders.pop()
        try:
            # Commands may add and remove packages.
            if backend is not None and backend.files_for_all:
                os.fchmod(destination, 0o777)
            elif ids:
                os.fchown(destination, *ids)
            with os.scandir(source) as entries:
                for item in entries:
                    if item.is_dir(follow_symlinks=False):
                        folders.append((item.path, _subfolder(item.name, destination)))
                    elif _exists(item.name, destination):
                        continue
                    elif item.is_symlink():
                        os.symlink(os.readlink(item.path), item.name, dir_fd=destination)
                        if ids:
                            os.chown(item.name, *ids, dir_fd=destination, follow_symlinks=False)
                    else:
                        if link:
                            os.link(item.path, item.name, dst_dir_fd=destination)
                        else:
                            _copy(item.path, item.name, destination)
                        given += 1
        finally:
            os.close(destination)
    return given


def _subfolder(name: str, parent: int) -> int:
    """parent/name as a real folder, opened: a link or a file in the way is replaced."""
    for _ in range(2):
        try:
            return os.open(name, confined.FOLDER_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(name, 0o755, dir_fd=parent)
        except OSError:  # a link or a file
            os.unlink(name, dir_fd=parent)
            os.mkdir(name, 0o755, dir_fd=parent)
    return os.open(name, confined.FOLDER_FLAGS, dir_fd=parent)


def _exists(name: str, parent: int) -> bool:
    try:
        os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _copy(source: str, name: str, parent: int) -> None:
    """A copy with the source's mode and time, as the workspace tells given files by them."""
    info = os.stat(source)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(source, "rb") as reader, os.fdopen(os.open(name, flags, 0o600, dir_fd=parent), "wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
        writer.flush()
        os.fchmod(writer.fileno(), stat.S_IMODE(info.st_mode))
        os.utime(writer.fileno(), ns=(info.st_atime_ns, info.st_mtime_ns))
