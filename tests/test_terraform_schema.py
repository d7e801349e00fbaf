"""Every resource, argument and block in infra/gcp exists in the Google provider that versions.tf pins.

The schema is the provider's own, extracted from its Go source at the pinned tag by
tests/terraform_schema/extract.py and committed as tests/terraform_schema/google.json; no network.
This is what `terraform validate` would say of an argument the provider does not have (or only
computes), of a missing required argument or block, of a block written as an argument or the other
way round, and of more blocks than the provider allows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest

INFRA = Path(__file__).resolve().parent.parent / "infra" / "gcp"
SCHEMA = json.loads((Path(__file__).resolve().parent / "terraform_schema" / "google.json").read_text())
TF_FILES = sorted(INFRA.rglob("*.tf"))
META_ARGUMENTS = {"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner", "connection"}
REGENERATE = "rerun tests/terraform_schema/extract.py (its docstring says how)"

# Block = {"arguments": {name: "required" | "optional" | "computed"},
#          "blocks": {name: Block | {"nesting", "min_items", "max_items"}}}
Block = dict[str, Any]


def _optional(*names: str) -> Block:
    return {"arguments": dict.fromkeys(names, "optional"), "blocks": {}}


# Providers other than Google's that infra/gcp may use, with their schema written out
# (registry.terraform.io/providers/hashicorp/time/latest/docs/resources/sleep, and Terraform's
# built-in terraform_data: developer.hashicorp.com/terraform/language/resources/terraform-data).
OTHER_SCHEMAS: dict[str, Block] = {
    "resource.terraform_data": {
        "arguments": {"input": "optional", "triggers_replace": "optional", "id": "computed", "output": "computed"},
        "blocks": {},
    },
    "resource.time_sleep": _optional("create_duration", "destroy_duration", "triggers", "id"),
}


def schema_of(provider: str) -> dict[str, Block]:
    return dict(SCHEMA["providers"][provider]) | OTHER_SCHEMAS


def unquote(value: str) -> str:
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


def declarations(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind.type, name, body) of every resource and data source in a file's text."""
    parsed = hcl2.loads(text)
    found = []
    for kind in ("resource", "data"):
        for entry in parsed.get(kind, []):
            for type_name, named in entry.items():
                for name, body in named.items():
                    found.append((f"{kind}.{unquote(type_name)}", unquote(name), body))
    return found


def is_block_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


def problems(block: Block, body: dict[str, Any], where: str) -> list[str]:
    """What `terraform validate` would refuse in one block body."""
    found: list[str] = []
    arguments, blocks = block["arguments"], block["blocks"]
    present: set[str] = set()
    counts: dict[str, int | None] = {}  # None: a dynamic block, its count unknown until plan
    for key, value in body.items():
        if key.startswith("__") or key in META_ARGUMENTS:
            continue
        if key == "dynamic":
            for dynamic in value:
                for label, spec in dynamic.items():
                    name = unquote(label)
                    present.add(name)
                    counts[name] = None
                    found += nested(block, name, list(spec.get("content", [])), where)
            continue
        present.add(key)
        if key in blocks:
            if not is_block_list(value):
                found.append(f"{where}: {key!r} is a block, not an argument")
                continue
            if counts.get(key, 0) is not None:
                counts[key] = (counts.get(key) or 0) + len(value)
            found += nested(block, key, value, where)
        elif key in arguments:
            if is_block_list(value):
                found.append(f"{where}: {key!r} is an argument, not a block")
            elif arguments[key] == "computed":
                found.append(f"{where}: {key!r} is computed by the provider and cannot be set")
        else:
            found.append(f"{where}: unsupported argument or block {key!r}")
    for name, kind in arguments.items():
        if kind == "required" and name not in present:
            found.append(f"{where}: required argument {name!r} is missing")
    for name, spec in blocks.items():
        count = counts.get(name, 0)
        if spec["min_items"] and name not in present:
            found.append(f"{where}: required block {name!r} is missing")
        elif count is not None and count < spec["min_items"]:
            found.append(f"{where}: block {name!r} needs at least {spec['min_items']}, has {count}")
        if count is not None and spec["max_items"] and count > spec["max_items"]:
            found.append(f"{where}: block {name!r} allows at most {spec['max_items']}, has {count}")
    return found


def nested(block: Block, name: str, bodies: list[dict[str, Any]], where: str) -> list[str]:
    if name in block["arguments"]:
        return [f"{where}: {name!r} is an argument, not a block"]
    if name not in block["blocks"]:
        return [f"{where}: unsupported block {name!r}"]
    return [p for body in bodies for p in problems(block["blocks"][name], body, f"{where}.{name}")]


def uses_beta(body: dict[str, Any]) -> bool:
    return "google-beta" in str(body.get("provider", ""))


def file_problems(text: str) -> list[str]:
    google, beta = schema_of("google"), schema_of("google-beta")
    found = []
    for type_name, name, body in declarations(text):
        source = beta if uses_beta(body) else google
        if type_name not in source:
            hint = " (it exists in google-beta only)" if type_name in beta else f"; if it is new here, {REGENERATE}"
            found.append(f"{type_name}.{name}: no such type in the provider{hint}")
            continue
        found += problems(source[type_name], body, f"{type_name}.{name}")
    return found


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_resources_match_the_provider_schema(path: Path) -> None:
    assert file_problems(path.read_text()) == []


# ---- the checker fails on what validate would refuse (planted errors) -----------------------

SERVICE = """
resource "google_cloud_run_v2_service" "s" {
  name     = "x"
  location = "europe-west1"
%s
}
"""
TEMPLATE = """
  template {
    containers {
      image            = "i"
      sandbox_launcher = true
    }
  }
"""


def service_problems(body: str) -> list[str]:
    return file_problems(SERVICE % body)


def test_a_good_service_passes() -> None:
    assert service_problems(TEMPLATE) == []


def test_an_unknown_argument_fails() -> None:
    assert service_problems(TEMPLATE + '  launcher = "on"\n') == [
        "resource.google_cloud_run_v2_service.s: unsupported argument or block 'launcher'"
    ]


def test_a_computed_argument_fails() -> None:
    assert service_problems(TEMPLATE + '  uri = "https://x"\n') == [
        "resource.google_cloud_run_v2_service.s: 'uri' is computed by the provider and cannot be set"
    ]


def test_a_missing_required_argument_fails() -> None:
    text = SERVICE.replace('  location = "europe-west1"\n', "") % TEMPLATE
    assert file_problems(text) == ["resource.google_cloud_run_v2_service.s: required argument 'location' is missing"]


def test_a_missing_required_block_fails() -> None:
    assert service_problems("") == ["resource.google_cloud_run_v2_service.s: required block 'template' is missing"]


def test_a_missing_required_argument_in_a_nested_block_fails() -> None:
    assert service_problems(TEMPLATE.replace('image            = "i"', "")) == [
        "resource.google_cloud_run_v2_service.s.template.containers: required argument 'image' is missing"
    ]


def test_bad_nested_blocks_fail() -> None:
    where = "resource.google_cloud_run_v2_service.s.template"
    unknown = TEMPLATE.replace("sandbox_launcher = true", "sandbox_launcher = true\n      sandbox {}")
    assert service_problems(unknown) == [f"{where}.containers: unsupported argument or block 'sandbox'"]
    argument_as_block = TEMPLATE.replace("sandbox_launcher = true", "sandbox_launcher {}")
    assert service_problems(argument_as_block) == [
        f"{where}.containers: 'sandbox_launcher' is an argument, not a block"
    ]
    block_as_argument = TEMPLATE + "  scaling = { min_instance_count = 0 }\n"
    assert service_problems(block_as_argument) == [
        "resource.google_cloud_run_v2_service.s: 'scaling' is a block, not an argument"
    ]
    dynamic_unknown = TEMPLATE.replace(
        "containers {", 'dynamic "sandboxez" {\n      for_each = []\n      content {}\n    }\n    containers {'
    )
    assert service_problems(dynamic_unknown) == [f"{where}: unsupported block 'sandboxez'"]


def test_too_many_blocks_fail() -> None:
    assert service_problems(TEMPLATE + TEMPLATE) == [
        "resource.google_cloud_run_v2_service.s: block 'template' allows at most 1, has 2"
    ]


def test_a_planted_error_in_a_real_file_fails() -> None:
    runtime = (INFRA / "modules" / "runtime" / "main.tf").read_text()
    assert "sandbox_launcher" in runtime
    found = file_problems(runtime.replace("sandbox_launcher", "sandbox_launchr"))
    assert (
        "resource.google_cloud_run_v2_service.service.template.containers: unsupported argument or block 'sandbox_launchr'"
        in found
    )


def test_a_type_missing_from_the_schema_fails() -> None:
    found = file_problems('resource "google_cloud_run_v3_service" "s" {\n  name = "x"\n}\n')
    assert found == [
        f"resource.google_cloud_run_v3_service.s: no such type in the provider; if it is new here, {REGENERATE}"
    ]


# ---- the schema is the pinned release's ------------------------------------------------------


def version_tuple(version: str) -> tuple[int, ...]:
    parts = tuple(int(part) for part in version.lstrip("v").split("."))
    return parts + (0,) * (3 - len(parts))


def test_the_schema_is_of_the_release_versions_tf_pins() -> None:
    """The schema's tag is the oldest release every versions.tf admits: later 7.x releases only add."""
    tag = version_tuple(SCHEMA["tag"])
    checked = 0
    for versions in sorted(INFRA.rglob("versions.tf")):
        for provider, spec in re.findall(r"(google(?:-beta)?)\s*=\s*{([^}]*)}", versions.read_text(), re.S):
            constraint = re.search(r'version\s*=\s*"([^"]+)"', spec)
            assert constraint, f"{versions}: {provider} has no version constraint"
            lowest = None
            for op, version in re.findall(r"(>=|<=|<|>|=|~>)\s*([\d.]+)", constraint.group(1)):
                bound = version_tuple(version)
                length = len(version.split("."))
                holds = {
                    ">=": tag >= bound,
                    ">": tag > bound,
                    "<": tag < bound,
                    "<=": tag <= bound,
                    "=": tag == bound,
                    "~>": tag[: length - 1] == bound[: length - 1] and tag >= bound,
                }[op]
                assert holds, f"{versions}: {provider} {constraint.group(1)} excludes {SCHEMA['tag']}"
                if op in (">=", "~>", "="):
                    lowest = max(lowest or bound, bound)
            assert lowest == tag, (
                f"{versions}: {provider} {constraint.group(1)} admits older releases than {SCHEMA['tag']}"
            )
            checked += 1
    assert checked >= 12


def test_the_schema_covers_every_type_infra_uses() -> None:
    used = {
        f"{kind}.{name}"
        for path in TF_FILES
        for kind, name in re.findall(r'^(resource|data)\s+"(google\w*)"', path.read_text(), re.M)
    }
    extracted = set(SCHEMA["providers"]["google"]) | set(SCHEMA["providers"]["google-beta"])
    assert used - extracted == set(), REGENERATE


def test_the_schema_has_the_sandbox_launcher() -> None:
    # Why the pin is 7.x: sandbox_launcher came in 7.43.0 (CHANGELOG.md; magic-modules #18396).
    containers = SCHEMA["providers"]["google"]["resource.google_cloud_run_v2_service"]["blocks"]["template"]["blocks"][
        "containers"
    ]
    assert containers["arguments"]["sandbox_launcher"] == "optional"
