"""Every pinned image is a current release, and the image runs the Node.js the tests run on."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "infra" / "images.json"
BUILD_FILES = ("cloudbuild.yaml", "cloudbuild-ci.yaml")
# Registries drop images past about a year; eleven months leaves a month to move on.
MAX_AGE_DAYS = 11 * 30
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"  # functions/sandbox.py's SANDBOX_PATH


def pinned_images() -> set[str]:
    """The Dockerfile's FROM and every image substitution or step image of the build files."""
    found = set(re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.M))
    for name in BUILD_FILES:
        build = yaml.safe_load((ROOT / name).read_text())
        substitutions = build.get("substitutions", {})
        found |= {value for key, value in substitutions.items() if key.endswith("_IMAGE") and key != "_IMAGE"}
        for step in build["steps"]:
            image = step["name"]
            if not image.startswith("${"):
                found.add(image)
            else:
                assert image.strip("${}") in substitutions, f"{name}: step {step['id']} names an undefined image"
    return found


def released() -> dict[str, datetime.date]:
    table = json.loads(TABLE.read_text())["images"]
    for image, entry in table.items():
        assert entry["source"].strip(), f"{image}: say where the release date comes from"
    return {image: datetime.date.fromisoformat(entry["released"]) for image, entry in table.items()}


def test_every_pinned_image_has_a_release_date() -> None:
    images = pinned_images()
    assert images, "no pinned image found"
    assert images - set(released()) == set(), f"add them to {TABLE.relative_to(ROOT)}"
    for image in images:
        tag = image.rsplit(":", 1)[-1]
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{image} is not pinned to a release"


@pytest.mark.parametrize("image", sorted(pinned_images()))
def test_no_pinned_image_is_older_than_eleven_months(image: str) -> None:
    age = (datetime.date.today() - released()[image]).days
    assert age <= MAX_AGE_DAYS, f"{image} came out {age} days ago: pin a current release and date it"


def test_the_table_holds_no_stale_entries() -> None:
    assert set(released()) - pinned_images() == set()


def dockerfile_node_version() -> str:
    found = re.search(r"^ARG NODE_VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert found, "the Dockerfile pins NODE_VERSION"
    return found.group(1)


def test_the_image_and_the_tests_pin_one_node_release() -> None:
    script = (ROOT / "devstack" / "install-system-packages.sh").read_text()
    found = re.search(r"^node_version=(\S+)$", script, re.M)
    assert found and found.group(1) == dockerfile_node_version()


def test_the_tests_run_on_the_images_node_major() -> None:
    """Commands run on the sandbox's PATH: that Node.js is the one the tests exercise."""
    version = subprocess.run(
        ["node", "--version"], env={"PATH": SANDBOX_PATH}, capture_output=True, text=True, check=True
    ).stdout.strip()
    major = dockerfile_node_version().split(".")[0]
    assert version.startswith(f"v{major}."), (
        f"node {version} on {SANDBOX_PATH}, the image runs {major}: sh devstack/install-system-packages.sh"
    )
