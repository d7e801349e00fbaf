"""Every resource, argument and block in infra/gcp exists in the Google provider that versions.tf pins.

The schema is the provider's own, read offline (tests/provider_schema.py); this is what
`terraform validate` would have said of a removed argument such as an Eventarc trigger's
retry_policy in provider 6.x, or of a missing required one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests import provider_schema

INFRA = Path(__file__).resolve().parent.parent / "infra" / "gcp"
TF_FILES = sorted(INFRA.rglob("*.tf"))
META_ARGUMENTS = {"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner", "connection"}
# Providers other than Google's that infra/gcp may use, with their schema written out
# (registry.terraform.io/providers/hashicorp/time/latest/docs/resources/sleep, and Terraform's
# built-in terraform_data: developer.hashicorp.com/terraform/language/resources/terraform-data).
OTHER_SCHEMAS: dict[str, provider_schema.Block] = {
    "resource.terraform_data": {
        "args": {name: {"required": False, "block": None} for name in ("input", "triggers_replace", "output", "id")}
    },
    "resource.time_sleep": {
        "args": {
            name: {"required": False, "block": None}
            for name in ("create_duration", "destroy_duration", "triggers", "id")
        }
    },
}


@pytest.fixture(scope="module")
def schema() -> dict[str, provider_schema.Block]:
    return provider_schema.load("google") | OTHER_SCHEMAS


@pytest.fixture(scope="module")
def beta_schema() -> dict[str, provider_schema.Block]:
    return provider_schema.load("google-beta") | OTHER_SCHEMAS


def unquote(value: str) -> str:
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


def declarations(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind.type, name, body) of every resource and data source in a file."""
    parsed = hcl2.loads(path.read_text())
    found = []
    for kind in ("resource", "data"):
        for entry in parsed.get(kind, []):
            for type_name, named in entry.items():
                for name, body in named.items():
                    found.append((f"{kind}.{unquote(type_name)}", unquote(name), body))
    return found


def problems(block: provider_schema.Block, body: dict[str, Any], where: str) -> list[str]:
    """What `terraform validate` would refuse in one block body."""
    found = []
    args = block["args"]
    present = set()
    for key, value in body.items():
        if key.startswith("__") or key in META_ARGUMENTS:
            continue
        if key == "dynamic":
            for dynamic in value:
                for label, spec in dynamic.items():
                    name = unquote(label)
                    present.add(name)
                    found += nested(args, name, [c for c in spec.get("content", [])], where)
            continue
        present.add(key)
        if key not in args:
            found.append(f"{where}: unsupported argument or block {key!r}")
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) and v.get("__is_block__") for v in value):
            found += nested(args, key, value, where)
    for name, spec in args.items():
        if spec["required"] and name not in present:
            found.append(f"{where}: required argument or block {name!r} is missing")
    return found


def nested(args: dict[str, Any], name: str, bodies: list[dict[str, Any]], where: str) -> list[str]:
    if name not in args:
        return [f"{where}: unsupported block {name!r}"]
    if args[name]["block"] is None:
        return [f"{where}: {name!r} is an argument, not a block"]
    return [p for body in bodies for p in problems(args[name]["block"], body, f"{where}.{name}")]


def uses_beta(body: dict[str, Any]) -> bool:
    return "google-beta" in str(body.get("provider", ""))


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_resources_match_the_provider_schema(
    path: Path, schema: dict[str, provider_schema.Block], beta_schema: dict[str, provider_schema.Block]
) -> None:
    found = []
    for type_name, name, body in declarations(path):
        source = beta_schema if uses_beta(body) else schema
        if type_name not in source:
            hint = " (it exists in google-beta only)" if type_name in beta_schema else ""
            found.append(f"{type_name}.{name}: no such type in the provider{hint}")
            continue
        found += problems(source[type_name], body, f"{type_name}.{name}")
    assert found == []


def test_checker_catches_what_validate_would(schema: dict[str, provider_schema.Block]) -> None:
    trigger = schema["resource.google_eventarc_trigger"]
    body = hcl2.loads(
        'resource "google_eventarc_trigger" "t" {\n  name = "x"\n  retry_policy {\n    max_attempts = 5\n  }\n}\n'
    )["resource"][0]['"google_eventarc_trigger"']['"t"']
    found = problems(trigger, body, "t")
    assert "t: unsupported argument or block 'retry_policy'" in found
    assert "t: required argument or block 'location' is missing" in found


def test_versions_admit_the_release_the_schema_describes() -> None:
    wanted = tuple(int(part) for part in provider_schema.PROVIDER_VERSION.split("."))
    for versions in sorted(INFRA.rglob("versions.tf")):
        for provider, spec in re.findall(r"(google(?:-beta)?)\s*=\s*{([^}]*)}", versions.read_text(), re.S):
            constraint = re.search(r'version\s*=\s*"([^"]+)"', spec)
            assert constraint, f"{versions}: {provider} has no version constraint"
            for op, version in re.findall(r"(>=|<=|<|>|=|~>)\s*([\d.]+)", constraint.group(1)):
                bound = tuple(int(part) for part in version.split("."))
                holds = {
                    ">=": wanted >= bound,
                    ">": wanted > bound,
                    "<": wanted < bound,
                    "<=": wanted <= bound,
                    "=": wanted == bound,
                    "~>": wanted[: len(bound) - 1] == bound[:-1] and wanted >= bound,
                }[op]
                assert holds, (
                    f"{versions}: {provider} {constraint.group(1)} excludes {provider_schema.PROVIDER_VERSION}"
                )
