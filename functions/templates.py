"""Template bundles (VibSDK's format) read from the templates bucket.

A bundle is `<name>.zip` beside `template_catalog.json` (vibesdk_gcp/catalog.py); the zip may carry
`.important_files.json`, `.donttouch_files.json` and `.redacted_files.json`.
Bundles are untrusted: extraction refuses entries that leave the target,
links, absurd compression ratios and oversize contents.
"""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from vibesdk_gcp.errors import ActionFailed, NotFound
from vibesdk_gcp.names import TEMPLATES_BUCKET
from vibesdk_gcp.storage import Storage

MAX_BUNDLE_BYTES = 64 << 20
MAX_EXTRACTED_BYTES = 256 << 20
MAX_ENTRIES = 20_000
MAX_RATIO = 200
META_FILES = {
    "importantFiles": ".important_files.json",
    "dontTouchFiles": ".donttouch_files.json",
    "redactedFiles": ".redacted_files.json",
}


def bundle(storage: Storage, name: str, cache_dir: Path) -> Path:
    """The template's zip on local disk, fetched once per object generation."""
    object_name = f"{name}.zip"
    try:
        info = storage.stat(TEMPLATES_BUCKET, object_name)
    except NotFound:
        raise ActionFailed(f"template {name!r} does not exist in gs://{TEMPLATES_BUCKET}") from None
    if info.size > MAX_BUNDLE_BYTES:
        raise ActionFailed(f"template {name!r} is {info.size} bytes, over the {MAX_BUNDLE_BYTES} limit")
    cached = cache_dir / f"{name}-{info.generation}.zip"
    if not cached.exists():
        partial = cached.with_suffix(".part")
        storage.download(TEMPLATES_BUCKET, object_name, partial, generation=info.generation)
        partial.replace(cached)
    return cached


def _checked_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    if len(members) > MAX_ENTRIES:
        raise ActionFailed(f"template bundle has {len(members)} entries, over the {MAX_ENTRIES} limit")
    total = 0
    for member in members:
        path = PurePosixPath(member.filename)
        if path.is_absolute() or ".." in path.parts or "\\" in member.filename:
            raise ActionFailed(f"template bundle entry {member.filename!r} leaves the target folder")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise ActionFailed(f"template bundle entry {member.filename!r} is a link")
        if member.compress_size and member.file_size / member.compress_size > MAX_RATIO:
            raise ActionFailed(f"template bundle entry {member.filename!r} has an absurd compression ratio")
        total += member.file_size
    if total > MAX_EXTRACTED_BYTES:
        raise ActionFailed(f"template bundle expands to {total} bytes, over the {MAX_EXTRACTED_BYTES} limit")
    return members


def extract(zip_path: Path, target: Path) -> list[str]:
    """Unpack a bundle into target; returns the files written (meta files excluded)."""
    written = []
    with zipfile.ZipFile(zip_path) as archive:
        for member in _checked_members(archive):
            if member.is_dir() or member.filename in META_FILES.values():
                continue
            destination = target / member.filename
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, destination.open("wb") as sink:
                sink.write(source.read(member.file_size + 1)[: member.file_size])
            if (member.external_attr >> 16) & 0o100:
                destination.chmod(0o755)
            written.append(member.filename)
    return sorted(written)


def file_tree(paths: list[str]) -> dict[str, Any]:
    """VibSDK's FileTreeNode: {path, type, children} from a list of file paths."""
    root: dict[str, Any] = {"path": "", "type": "directory", "children": []}
    folders = {"": root}
    for rel in sorted(paths):
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in folders:
                node = {"path": folder, "type": "directory", "children": []}
                folders["/".join(parts[: depth - 1])]["children"].append(node)
                folders[folder] = node
        folders["/".join(parts[:-1])]["children"].append({"path": rel, "type": "file"})
    return root


def details(zip_path: Path, name: str, catalog_entry: dict[str, Any] | None) -> dict[str, Any]:
    """What getTemplateDetails returns: tree, contents and the three file lists."""
    with zipfile.ZipFile(zip_path) as archive:
        members = [m for m in _checked_members(archive) if not m.is_dir()]
        meta = {
            key: json.loads(archive.read(filename)) if filename in archive.namelist() else []
            for key, filename in META_FILES.items()
        }
        files = [m.filename for m in members if m.filename not in META_FILES.values()]
        redacted = set(meta["redactedFiles"])
        all_files = {
            path: archive.read(path).decode("utf-8", errors="replace") for path in files if path not in redacted
        }
    entry = catalog_entry or {}
    return {
        "name": name,
        "description": entry.get("description", {}),
        "language": entry.get("language"),
        "frameworks": entry.get("frameworks", []),
        "fileTree": file_tree(files),
        "allFiles": all_files,
        **meta,
    }
