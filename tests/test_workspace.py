"""Workspaces kept in the Cloud Storage emulator between actions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from functions.workspace import Workspace
from vibesdk_gcp.errors import Conflict
from vibesdk_gcp.names import WORKSPACES_BUCKET
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage


def fill(path: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)


def test_save_then_restore_elsewhere(storage: Storage, settings: Settings, tmp_path: Path) -> None:
    first = Workspace(storage, settings.workspace_root, "s1")
    first.start_empty()
    fill(first.path, {"a.txt": "A", "src/b.txt": "B"})
    (first.path / "run.sh").write_text("#!/bin/sh\n")
    (first.path / "run.sh").chmod(0o755)
    report = first.save()
    assert report.uploaded == 3

    # Another job instance, with an empty disk.
    second = Workspace(storage, tmp_path / "other-instance", "s1")
    second.restore()
    assert (second.path / "src/b.txt").read_text() == "B"
    assert (second.path / "run.sh").stat().st_mode & 0o100


def test_save_uploads_only_what_changed(storage: Storage, settings: Settings) -> None:
    workspace = Workspace(storage, settings.workspace_root, "s2")
    workspace.start_empty()
    fill(workspace.path, {f"f{i}.txt": f"file {i}" for i in range(50)})
    workspace.save()
    (workspace.path / "f7.txt").write_text("changed")
    (workspace.path / "f8.txt").unlink()
    report = workspace.save()
    assert (report.uploaded, report.removed) == (1, 1)
    manifest = json.loads(storage.read(WORKSPACES_BUCKET, "sessions/s2/manifest.json"))
    assert "f8.txt" not in manifest["files"] and len(manifest["files"]) == 49
    # Two saves, two packs: the first with 50 contents, the second with the one change.
    assert len(set(manifest["packs"].values())) == 2


def test_many_packs_are_compacted(storage: Storage, settings: Settings) -> None:
    workspace = Workspace(storage, settings.workspace_root, "s7")
    workspace.start_empty()
    for index in range(40):
        fill(workspace.path, {"counter.txt": str(index), f"f{index}": "x" * index})
        workspace.save()
    manifest = json.loads(storage.read(WORKSPACES_BUCKET, "sessions/s7/manifest.json"))
    packs = {info.name for info in storage.list(WORKSPACES_BUCKET, "sessions/s7/packs/")}
    assert len(packs) == len(set(manifest["packs"].values())) <= 32


def test_unchanged_save_writes_nothing(storage: Storage, settings: Settings) -> None:
    workspace = Workspace(storage, settings.workspace_root, "s3")
    workspace.start_empty()
    fill(workspace.path, {"a": "1"})
    generation = workspace.save().generation
    assert workspace.save().generation == generation


def test_restore_removes_files_deleted_elsewhere(storage: Storage, settings: Settings, tmp_path: Path) -> None:
    mine = Workspace(storage, settings.workspace_root, "s4")
    mine.start_empty()
    fill(mine.path, {"keep": "k", "drop": "d"})
    mine.save()
    theirs = Workspace(storage, tmp_path / "other", "s4")
    theirs.restore()
    (theirs.path / "drop").unlink()
    theirs.save()
    mine.restore()
    assert sorted(p.name for p in mine.path.iterdir()) == ["keep"]


def test_racing_writers_cannot_lose_an_update(storage: Storage, settings: Settings, tmp_path: Path) -> None:
    origin = Workspace(storage, settings.workspace_root, "s5")
    origin.start_empty()
    fill(origin.path, {"shared.txt": "v0"})
    origin.save()
    a = Workspace(storage, tmp_path / "a", "s5")
    b = Workspace(storage, tmp_path / "b", "s5")
    a.restore()
    b.restore()
    fill(a.path, {"shared.txt": "from a"})
    fill(b.path, {"shared.txt": "from b"})
    a.save()
    with pytest.raises(Conflict):
        b.save()
    check = Workspace(storage, tmp_path / "check", "s5")
    check.restore()
    assert (check.path / "shared.txt").read_text() == "from a"


def test_destroy_removes_every_object(storage: Storage, settings: Settings) -> None:
    workspace = Workspace(storage, settings.workspace_root, "s6")
    workspace.start_empty()
    fill(workspace.path, {"a": "1"})
    workspace.save()
    workspace.destroy()
    assert not workspace.exists()
    assert list(storage.list(WORKSPACES_BUCKET, "sessions/s6/")) == []
