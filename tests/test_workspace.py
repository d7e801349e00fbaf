"""Workspaces kept in the Cloud Storage emulator between actions."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from functions.local_disk import LocalDisk
from functions.workspace import CHANGES, DELTAS, MAX_DELTAS, MAX_PACKS, SaveReport, Workspace
from vibesdk_gcp.errors import Conflict
from vibesdk_gcp.names import WORKSPACES_BUCKET
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage


@dataclass(frozen=True)
class StorageRequest:
    """One HTTP request the Storage adapter's client sent, and what the server answered."""

    method: str
    url: str
    headers: dict[str, str]
    status: int
    response_headers: dict[str, str]

    @property
    def writes(self) -> bool:
        return self.method != "GET"

    def fetches(self, name: str) -> bool:
        """Whether it downloaded the contents of an object (not only its metadata)."""
        path = urlsplit(self.url).path
        return self.method == "GET" and "alt=media" in self.url and unquote(path).endswith(f"/o/{name}")


def storage_requests(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> list[StorageRequest]:
    """Every request `storage` sends to Cloud Storage from now on, observed on its client's HTTP session."""
    http = storage._client._http
    real = http.request
    seen: list[StorageRequest] = []

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = real(method, url, *args, **kwargs)
        headers = {str(k).lower(): str(v) for k, v in (kwargs.get("headers") or {}).items()}
        answered = {k.lower(): v for k, v in response.headers.items()}
        seen.append(StorageRequest(method, url, headers, response.status_code, answered))
        return response

    monkeypatch.setattr(http, "request", request)
    return seen


def objects(storage: Storage, bucket: str) -> dict[str, int]:
    """Every object of the bucket, with its generation."""
    return {info.name: info.generation for info in storage.list(bucket, "")}


def fill(path: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)


def new_workspace(storage: Storage, root: Path, session: str, files: dict[str, str]) -> Workspace:
    """A session's first working copy, holding `files` (not saved yet)."""
    workspace = Workspace(storage, LocalDisk(root), session)
    workspace.start_empty()
    fill(workspace.path, files)
    return workspace


def restored(storage: Storage, root: Path, session: str) -> Workspace:
    """Another job instance's copy of the session, brought up to date."""
    workspace = Workspace(storage, LocalDisk(root), session)
    workspace.restore()
    return workspace


def test_save_then_restore_elsewhere(storage: Storage, settings: Settings, tmp_path: Path) -> None:
    first = new_workspace(storage, settings.workspace_root, "s1", {"a.txt": "A", "src/b.txt": "B"})
    (first.path / "run.sh").write_text("#!/bin/sh\n")
    (first.path / "run.sh").chmod(0o755)
    report = first.save()
    assert report.uploaded == 3

    # Another job instance, with an empty disk.
    second = restored(storage, tmp_path / "other-instance", "s1")
    assert (second.path / "src/b.txt").read_text() == "B"
    assert (second.path / "run.sh").stat().st_mode & 0o100


def stored(storage: Storage, session: str) -> list[str]:
    prefix = f"sessions/{session}/"
    return sorted(info.name[len(prefix) :] for info in storage.list(WORKSPACES_BUCKET, prefix))


def test_save_uploads_only_what_changed(storage: Storage, settings: Settings, tmp_path: Path) -> None:
    workspace = new_workspace(storage, settings.workspace_root, "s2", {f"f{i}.txt": f"file {i}" for i in range(50)})
    workspace.save()
    base = stored(storage, "s2")
    (workspace.path / "f7.txt").write_text("changed")
    (workspace.path / "f8.txt").unlink()
    report = workspace.save()
    assert (report.uploaded, report.removed) == (1, 1)
    # One new object: the delta, holding the one new content and the change list.
    (delta,) = set(stored(storage, "s2")) - set(base)
    assert delta.startswith(f"{DELTAS}/")
    with zipfile.ZipFile(io.BytesIO(storage.read(WORKSPACES_BUCKET, f"sessions/s2/{delta}"))) as archive:
        changes = json.loads(archive.read(CHANGES))["files"]
        assert len(archive.namelist()) == 2
    assert changes["f8.txt"] is None and changes["f7.txt"]["size"] == len("changed") and len(changes) == 2
    elsewhere = restored(storage, tmp_path / "elsewhere", "s2")
    assert (elsewhere.path / "f7.txt").read_text() == "changed" and not (elsewhere.path / "f8.txt").exists()
    assert len(list(elsewhere.path.iterdir())) == 49


def test_sealed_chain_rewrites_the_base_and_stays_bounded(storage: Storage, settings: Settings, tmp_path: Path) -> None:
    workspace = Workspace(storage, LocalDisk(settings.workspace_root), "s7")
    workspace.start_empty()
    for index in range(3 * MAX_DELTAS + 5):
        fill(workspace.path, {"counter.txt": str(index), f"f{index}": "x" * index})
        workspace.save()
    names = stored(storage, "s7")
    manifest = json.loads(storage.read(WORKSPACES_BUCKET, "sessions/s7/manifest.json"))
    assert sum(name.startswith(f"{DELTAS}/") for name in names) <= MAX_DELTAS + MAX_PACKS
    assert set(manifest["packs"].values()) <= set(names)  # every content the base names is there
    fresh = restored(storage, tmp_path / "fresh", "s7")
    assert (fresh.path / "counter.txt").read_text() == str(3 * MAX_DELTAS + 4)
    assert len(list(fresh.path.iterdir())) == 3 * MAX_DELTAS + 6


def test_restore_finishes_a_sealed_chain_whose_writer_died(
    storage: Storage, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = new_workspace(storage, settings.workspace_root, "s8", {"a": "0"})
    workspace.save()
    for index in range(1, MAX_DELTAS):
        fill(workspace.path, {"a": str(index)})
        workspace.save()
    before = storage.stat(WORKSPACES_BUCKET, "sessions/s8/manifest.json").generation

    def died(self: Workspace) -> None:
        raise SystemExit("the job was killed between sealing the chain and rewriting the base")

    monkeypatch.setattr(Workspace, "_rewrite_base", died)
    fill(workspace.path, {"a": "sealed"})
    with pytest.raises(SystemExit):
        workspace.save()
    monkeypatch.undo()
    other = restored(storage, tmp_path / "other", "s8")
    assert (other.path / "a").read_text() == "sealed"
    assert storage.stat(WORKSPACES_BUCKET, "sessions/s8/manifest.json").generation != before
    fill(other.path, {"a": "after"})
    other.save()
    again = restored(storage, tmp_path / "again", "s8")
    assert (again.path / "a").read_text() == "after"


def test_unchanged_save_writes_nothing(storage: Storage, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = new_workspace(storage, settings.workspace_root, "s3", {"a": "1"})
    generation = workspace.save().generation
    before = objects(storage, WORKSPACES_BUCKET)
    assert "sessions/s3/manifest.json" in before
    requests = storage_requests(storage, monkeypatch)
    assert workspace.save() == SaveReport(uploaded=0, unchanged=1, removed=0, generation=generation, changed=False)
    assert [r for r in requests if r.writes] == []  # no upload, no delete: not even a delta
    assert objects(storage, WORKSPACES_BUCKET) == before  # the same objects, each at its same generation
    # The same checks see a save that does write: one change, one new object (a delta).
    fill(workspace.path, {"a": "2"})
    workspace.save()
    assert [r.method for r in requests if r.writes] == ["POST"]
    after = objects(storage, WORKSPACES_BUCKET)
    (delta,) = set(after) - set(before)
    assert delta.startswith(f"sessions/s3/{DELTAS}/") and {name: after[name] for name in before} == before


def test_restore_removes_files_deleted_elsewhere(storage: Storage, settings: Settings, tmp_path: Path) -> None:
    mine = new_workspace(storage, settings.workspace_root, "s4", {"keep": "k", "drop": "d"})
    mine.save()
    theirs = restored(storage, tmp_path / "other", "s4")
    (theirs.path / "drop").unlink()
    theirs.save()
    mine.restore()
    assert sorted(p.name for p in mine.path.iterdir()) == ["keep"]


def test_racing_writers_cannot_lose_an_update(storage: Storage, settings: Settings, tmp_path: Path) -> None:
    origin = new_workspace(storage, settings.workspace_root, "s5", {"shared.txt": "v0"})
    origin.save()
    a = restored(storage, tmp_path / "a", "s5")
    b = restored(storage, tmp_path / "b", "s5")
    fill(a.path, {"shared.txt": "from a"})
    fill(b.path, {"shared.txt": "from b"})
    a.save()
    with pytest.raises(Conflict):
        b.save()
    check = restored(storage, tmp_path / "check", "s5")
    assert (check.path / "shared.txt").read_text() == "from a"


def test_destroy_removes_every_object(storage: Storage, settings: Settings) -> None:
    workspace = new_workspace(storage, settings.workspace_root, "s6", {"a": "1"})
    workspace.save()
    workspace.destroy()
    assert not workspace.exists()
    assert list(storage.list(WORKSPACES_BUCKET, "sessions/s6/")) == []


def test_a_new_process_on_the_same_disk_restores_from_a_stale_state_file(
    storage: Storage, settings: Settings, tmp_path: Path
) -> None:
    workspace = new_workspace(storage, settings.workspace_root, "s9", {"a": "1", "b": "2"})
    workspace.save()  # the state file is written here
    fill(workspace.path, {"a": "changed"})
    workspace.save()  # a delta: this process remembers it, the state file does not
    again = restored(storage, settings.workspace_root, "s9")  # a new process: a disk of its own, nothing remembered
    assert (again.path / "a").read_text() == "changed"
    fill(again.path, {"b": "3"})
    again.save()
    check = restored(storage, tmp_path / "check", "s9")
    assert sorted((p.name, p.read_text()) for p in check.path.iterdir()) == [("a", "changed"), ("b", "3")]


def test_restore_never_writes_through_a_link(storage: Storage, settings: Settings, tmp_path: Path) -> None:
    """A command swaps folders for links to the outside and the action ends without a save."""
    first = new_workspace(storage, settings.workspace_root, "links", {"src/a.txt": "A", "lib/site/b.txt": "B"})
    first.save()
    outside = tmp_path / "outside"
    (outside / "site").mkdir(parents=True)
    (outside / "a.txt").write_text("root's own file")
    (outside / "site" / "b.txt").write_text("root's other file")
    before = {p: p.read_text() for p in outside.rglob("*") if p.is_file()}
    # What `rm -rf src && ln -s /outside src` does, deeper down too.
    shutil.rmtree(first.path / "src")
    (first.path / "src").symlink_to(outside)
    shutil.rmtree(first.path / "lib" / "site")
    (first.path / "lib" / "site").symlink_to(outside / "site")
    first.restore()  # the next action, on the same instance

    assert {p: p.read_text() for p in outside.rglob("*") if p.is_file()} == before
    assert not (first.path / "src").is_symlink() and (first.path / "src" / "a.txt").read_text() == "A"
    assert not (first.path / "lib" / "site").is_symlink() and (first.path / "lib/site/b.txt").read_text() == "B"
    assert sorted(p.name for p in outside.iterdir()) == ["a.txt", "site"]


def test_a_tail_is_read_by_range_not_whole(
    storage: Storage, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """getLogs reads only the tails it shows: a 2.4 GB log history no longer lands in the job's memory."""
    data = bytes(range(256)) * 4096  # 1 MiB
    storage.write("vibesdk-logs", "s/logs/big.stdout", data, "text/plain")
    requests = storage_requests(storage, monkeypatch)
    assert storage.read_tail("vibesdk-logs", "s/logs/big.stdout", len(data), 10) == data[-10:]
    (tail,) = [r for r in requests if r.fetches("s/logs/big.stdout")]
    # Asked for the last ten bytes only, and sent only them.
    assert tail.headers["range"] == f"bytes={len(data) - 10}-{len(data) - 1}"
    assert tail.status == 206 and tail.response_headers["content-length"] == "10"
    requests.clear()
    # A limit beyond the object is a range of the whole object, never past its end.
    assert storage.read_tail("vibesdk-logs", "s/logs/big.stdout", len(data), 5 << 20) == data
    (whole,) = [r for r in requests if r.fetches("s/logs/big.stdout")]
    assert whole.headers["range"] == f"bytes=0-{len(data) - 1}"
    assert whole.response_headers["content-length"] == str(len(data))


def test_a_stale_copy_on_one_instance_catches_up_with_what_another_saved(
    storage: Storage, settings: Settings, tmp_path: Path
) -> None:
    """Instance A keeps its working copy between actions; instance B changes the session meanwhile.
    A's next action starts from B's state, and a save from A's stale copy never overwrites B's."""
    on_a = new_workspace(storage, settings.workspace_root, "s-stale", {"a.txt": "1", "b.txt": "keep", "d.txt": "d"})
    on_a.save()
    on_b = restored(storage, tmp_path / "instance-b", "s-stale")
    fill(on_b.path, {"a.txt": "2", "c/new.txt": "from B"})
    (on_b.path / "b.txt").unlink()
    on_b.save()
    on_a.restore()  # the same process's copy, stale since B's save
    assert (on_a.path / "a.txt").read_text() == "2"
    assert (on_a.path / "c/new.txt").read_text() == "from B"
    assert not (on_a.path / "b.txt").exists()
    # Both up to date, both change the session: the second save is refused, not merged over the first.
    fill(on_b.path, {"d.txt": "B's"})
    fill(on_a.path, {"a.txt": "A's"})
    on_b.save()
    with pytest.raises(Conflict):
        on_a.save()
    elsewhere = restored(storage, tmp_path / "instance-c", "s-stale")
    assert (elsewhere.path / "d.txt").read_text() == "B's" and (elsewhere.path / "a.txt").read_text() == "2"
