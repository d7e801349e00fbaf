"""Template bundles: building, reading by generation, and refusing hostile zips."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from devstack.templates import build_all, upload_templates
from functions import templates
from tests.test_workspace import storage_requests
from vibesdk_gcp.catalog import template_catalog
from vibesdk_gcp.errors import ActionFailed
from vibesdk_gcp.names import TEMPLATES_BUCKET
from vibesdk_gcp.storage import Storage

SHIPPED = ("node-app", "python-app", "react-vite", "static-site")


def test_shipped_templates_build() -> None:
    bundles, catalog = build_all()
    assert sorted(bundles) == [f"{name}.zip" for name in SHIPPED]
    assert sorted(entry["name"] for entry in catalog) == list(SHIPPED)
    for entry in catalog:
        assert entry["commands"]["build"] and entry["commands"]["outputDir"]
        assert entry["description"]["selection"]


def test_bundles_are_reproducible() -> None:
    assert build_all()[0] == build_all()[0]


def test_details_follow_vibesdk(storage: Storage, tmp_path: Path) -> None:
    upload_templates(storage)
    bundle = templates.bundle(storage, "static-site", tmp_path)
    entry = next(e for e in template_catalog(storage) if e["name"] == "static-site")
    details = templates.details(bundle, "static-site", entry)
    assert details["importantFiles"] == ["src/index.html", "src/style.css"]
    assert "build.mjs" in details["dontTouchFiles"]
    assert "src/index.html" in details["allFiles"]
    assert ".important_files.json" not in details["allFiles"]
    top = {child["path"] for child in details["fileTree"]["children"]}
    assert {"src", "package.json"} <= top


def test_bundle_is_fetched_once_per_generation(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_templates(storage)
    requests = storage_requests(storage, monkeypatch)

    def fetched() -> list[str]:
        """The generations of node-app.zip whose contents were downloaded since the last call."""
        found = [parse_qs(urlsplit(r.url).query)["generation"][0] for r in requests if r.fetches("node-app.zip")]
        requests.clear()
        return found

    first_generation = storage.stat(TEMPLATES_BUCKET, "node-app.zip").generation
    first = templates.bundle(storage, "node-app", tmp_path)
    assert fetched() == [str(first_generation)]
    assert first.read_bytes() == storage.read(TEMPLATES_BUCKET, "node-app.zip", first_generation)
    requests.clear()
    for _ in range(3):  # the same generation: served from the cache, no download
        assert templates.bundle(storage, "node-app", tmp_path) == first
    assert fetched() == []

    upload_templates(storage)  # a new generation
    second_generation = storage.stat(TEMPLATES_BUCKET, "node-app.zip").generation
    assert second_generation != first_generation
    requests.clear()
    second = templates.bundle(storage, "node-app", tmp_path)
    assert fetched() == [str(second_generation)]  # fetched once more, at the new generation only
    assert second.read_bytes() == storage.read(TEMPLATES_BUCKET, "node-app.zip", second_generation)
    requests.clear()
    assert templates.bundle(storage, "node-app", tmp_path) == second
    assert fetched() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])  # no partial left


def test_missing_template(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(ActionFailed, match="template 'nope' does not exist"):
        templates.bundle(storage, "nope", tmp_path)


def hostile(folder: Path, name: str, data: bytes = b"x", mode: int | None = None, compress: bool = False) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        archive.writestr(info, data, zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
    path = folder / "hostile.zip"
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize(
    ("zip_path", "reason"),
    [
        (lambda folder: hostile(folder, "../escape.txt"), "leaves the target"),
        (lambda folder: hostile(folder, "/etc/passwd"), "leaves the target"),
        (lambda folder: hostile(folder, "link", b"/etc/passwd", stat.S_IFLNK | 0o777), "is a link"),
        (lambda folder: hostile(folder, "bomb.txt", b"\0" * (4 << 20), compress=True), "compression ratio"),
    ],
)
def test_hostile_bundles_are_refused(zip_path, reason: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle, target = zip_path(tmp_path), tmp_path / "target"
    target.mkdir()
    with pytest.raises(ActionFailed, match=reason):
        templates.extract(bundle, target)
    assert list(target.iterdir()) == []


def test_upload_writes_catalog(storage: Storage) -> None:
    upload_templates(storage)
    catalog = json.loads(storage.read(TEMPLATES_BUCKET, "template_catalog.json"))
    assert {entry["name"] for entry in catalog} == set(SHIPPED)
