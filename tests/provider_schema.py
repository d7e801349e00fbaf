"""The Google providers' published schema, offline, from their generated CDK bindings.

cdktf-cdktf-provider-google 16.12.1 (and -beta) are generated from hashicorp/google 6.50.0's own
schema; their jsii assembly names every resource, data source, argument and nested block, and
whether each is optional. `make test` downloads the two wheels once (pip download --no-deps, no
cdktf runtime); this module reduces each assembly to {type: Block} and caches it beside them.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "provider-schema"
# What versions.tf must admit: the bindings describe exactly this provider release.
PROVIDER_VERSION = "6.50.0"
WHEELS = {
    "google": "cdktf_cdktf_provider_google-16.12.1-py3-none-any.whl",
    "google-beta": "cdktf_cdktf_provider_google_beta-16.12.1-py3-none-any.whl",
}
_REGISTRY_LINK = re.compile(r"docs/(resources|data-sources)/(\w+)[ }]")
_ANCHOR = re.compile(r"\{@link https://registry\.terraform\.io/\S+#(\w+) \w+#\w+\}")

# Block = {"args": {name: {"required": bool, "block": Block | None}}}
Block = dict[str, Any]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _struct_of(type_ref: dict[str, Any]) -> str | None:
    """The struct fqn a property's type names (single, list, or list-or-IResolvable), if any."""
    if "fqn" in type_ref:
        return str(type_ref["fqn"])
    if "collection" in type_ref:
        return _struct_of(type_ref["collection"]["elementtype"])
    for option in type_ref.get("union", {}).get("types", []):
        found = _struct_of(option)
        if found and not found.startswith("cdktf."):
            return found
    return None


def _block(types: dict[str, Any], fqn: str, depth: int = 0) -> Block:
    args: dict[str, Any] = {}
    for prop in types[fqn].get("properties", []):
        remarks = prop.get("docs", {}).get("remarks", "") + prop.get("docs", {}).get("summary", "")
        anchor = _ANCHOR.search(remarks)
        name = anchor.group(1) if anchor else _snake(prop["name"])
        struct = _struct_of(prop["type"])
        nested = None
        if struct and struct in types and types[struct].get("datatype") and depth < 12:
            nested = _block(types, struct, depth + 1)
        args[name] = {"required": not prop.get("optional", False), "block": nested}
    return {"args": args}


def _reduce(assembly: dict[str, Any]) -> dict[str, Block]:
    types = assembly["types"]
    schema: dict[str, Block] = {}
    for fqn, entry in types.items():
        if entry.get("kind") != "class":
            continue
        link = _REGISTRY_LINK.search(entry.get("docs", {}).get("summary", ""))
        config = fqn + "Config"
        if not link or config not in types:
            continue
        kind = "resource" if link.group(1) == "resources" else "data"
        # google's links name google_x by x, google-beta's by google_x.
        name = link.group(2) if link.group(2).startswith("google_") else f"google_{link.group(2)}"
        schema[f"{kind}.{name}"] = _block(types, config)
    return schema


def load(provider: str) -> dict[str, Block]:
    """{"resource.google_x" | "data.google_x": Block} of one provider (google or google-beta)."""
    wheel = CACHE / WHEELS[provider]
    reduced = wheel.with_suffix(".schema.json")
    if reduced.exists() and reduced.stat().st_mtime >= wheel.stat().st_mtime:
        return dict(json.loads(reduced.read_text()))
    assert wheel.exists(), f"{wheel} is missing: `make test` downloads it (make provider-schema)"
    with zipfile.ZipFile(wheel) as archive:
        inner = next(name for name in archive.namelist() if name.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(archive.read(inner))) as tar:
            member = tar.extractfile("package/.jsii")
            assert member is not None
            schema = _reduce(json.load(member))
    reduced.write_text(json.dumps(schema))
    return schema
