"""Builds the shipped templates into VibSDK bundles and uploads them.

templates/<name>/ is a template's file tree; templates/<name>.json its
catalog entry. The bundle is <name>.zip, and template_catalog.json lists every
entry. `python -m devstack.templates` uploads to the templates bucket of
GOOGLE_CLOUD_PROJECT (the emulator's when STORAGE_EMULATOR_HOST is set);
`--out DIR` writes the files locally instead.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from vibesdk_gcp.names import TEMPLATE_CATALOG_OBJECT, TEMPLATES_BUCKET
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage, storage_for

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
# A fixed time keeps a bundle's bytes, and so its object, the same from build to build.
ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def build_bundle(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), ZIP_TIME)
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def build_all(templates_dir: Path = TEMPLATES_DIR) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    bundles, catalog = {}, []
    for entry_file in sorted(templates_dir.glob("*.json")):
        entry = json.loads(entry_file.read_text())
        folder = templates_dir / entry["name"]
        assert folder.is_dir(), f"catalog entry {entry_file} has no folder {folder}"
        bundles[f"{entry['name']}.zip"] = build_bundle(folder)
        catalog.append(entry)
    return bundles, catalog


def upload_templates(storage: Storage, templates_dir: Path = TEMPLATES_DIR) -> list[str]:
    bundles, catalog = build_all(templates_dir)
    for name, data in bundles.items():
        storage.write(TEMPLATES_BUCKET, name, data, "application/zip")
    storage.write(TEMPLATES_BUCKET, TEMPLATE_CATALOG_OBJECT, json.dumps(catalog, indent=2).encode(), "application/json")
    return sorted(bundles)


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the template bundles and upload them.")
    parser.add_argument("--out", type=Path, help="write the bundles and catalog here instead of uploading")
    args = parser.parse_args()
    if args.out:
        bundles, catalog = build_all()
        args.out.mkdir(parents=True, exist_ok=True)
        for name, data in bundles.items():
            (args.out / name).write_bytes(data)
        (args.out / TEMPLATE_CATALOG_OBJECT).write_text(json.dumps(catalog, indent=2))
        print(f"wrote {len(bundles)} bundles and {TEMPLATE_CATALOG_OBJECT} to {args.out}")
        return
    settings = Settings.from_env()
    storage = storage_for(settings)
    storage.create_bucket(TEMPLATES_BUCKET)
    names = upload_templates(storage)
    print(f"uploaded {', '.join(names)} and {TEMPLATE_CATALOG_OBJECT} to gs://{TEMPLATES_BUCKET}")


if __name__ == "__main__":
    main()
