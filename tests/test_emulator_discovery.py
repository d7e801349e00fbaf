"""Finding an emulator: explicit setting, then the Google Cloud CLI, then ../shared/emulators."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devstack import emulators
from devstack.config import Ports
from devstack.processes import Supervisor
from devstack.stack import start_emulators
from tests import PORT_SHIFT
from vibesdk_gcp.errors import ConfigurationError


@pytest.fixture
def no_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    return tmp_path


def fake_cli(root: Path) -> Path:
    """A Google Cloud CLI layout: <root>/bin/gcloud and the jars under platform/."""
    (root / "bin").mkdir(parents=True)
    gcloud = root / "bin" / "gcloud"
    gcloud.write_text("#!/bin/sh\nexit 1\n")
    gcloud.chmod(0o755)
    jar = root / "platform/pubsub-emulator/lib/cloud-pubsub-emulator-0.8.20-all.jar"
    jar.parent.mkdir(parents=True)
    jar.write_text("jar")
    return jar


def test_explicit_setting_wins(tmp_path: Path) -> None:
    jar = tmp_path / "mine.jar"
    jar.write_text("jar")
    found = emulators.find(emulators.PUBSUB, {emulators.PUBSUB.setting: str(jar), "PATH": os.environ["PATH"]})
    assert found == emulators.Found(jar, "setting")


def test_explicit_setting_to_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="names no file"):
        emulators.find(emulators.PUBSUB, {emulators.PUBSUB.setting: str(tmp_path / "absent.jar")})


def test_cli_copy_before_shared(no_cli: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jar = fake_cli(no_cli / "sdk")
    monkeypatch.setenv("PATH", str(no_cli / "sdk" / "bin"))
    shared = no_cli / "shared"
    shared.mkdir()
    (shared / "cloud-pubsub-emulator-0.8.20-all.jar").write_text("jar")
    found = emulators.find(emulators.PUBSUB, {"VIBESDK_SHARED_EMULATORS": str(shared)})
    assert found == emulators.Found(jar, "Google Cloud CLI")


def test_shared_folder_without_cli(no_cli: Path) -> None:
    shared = no_cli / "shared"
    shared.mkdir()
    jar = shared / "cloud-firestore-emulator.jar"
    jar.write_text("jar")
    found = emulators.find(emulators.FIRESTORE, {"VIBESDK_SHARED_EMULATORS": str(shared)})
    assert found == emulators.Found(jar, "shared/emulators")


def test_nothing_found_names_what_is_missing(no_cli: Path) -> None:
    with pytest.raises(ConfigurationError) as error:
        emulators.find(emulators.FIRESTORE, {"VIBESDK_SHARED_EMULATORS": str(no_cli)})
    message = str(error.value)
    assert "Firestore emulator is missing" in message
    assert emulators.FIRESTORE.setting in message
    assert "google-cloud-cli-firestore-emulator" in message


def test_firestore_command_is_the_clis() -> None:
    argv = emulators.command(emulators.FIRESTORE, emulators.Found(Path("/x.jar"), "setting"), "127.0.0.1", 8086)
    assert argv[-4:] == [
        "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
        "start",
        "--host=127.0.0.1",
        "--port=8086",
    ]


def test_emulator_jvm_options_default_and_override() -> None:
    found = emulators.Found(Path("/x.jar"), "setting")
    assert "-XX:TieredStopAtLevel=1" in emulators.command(emulators.PUBSUB, found, "127.0.0.1", 8085, {})
    chosen = emulators.command(emulators.PUBSUB, found, "127.0.0.1", 8085, {"VIBESDK_EMULATOR_JVM_OPTIONS": "-Xmx1g"})
    assert chosen[1:3] == ["-Xmx1g", "-jar"]


def test_bad_jvm_options_are_named(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    env = dict(os.environ) | {"VIBESDK_EMULATOR_JVM_OPTIONS": "-XX:NoSuchOption"}
    try:
        with pytest.raises(ConfigurationError) as error:
            start_emulators(supervisor, Ports.shifted(13500 + PORT_SHIFT), env)
    finally:
        supervisor.stop()
    assert "NoSuchOption" in str(error.value) and "VIBESDK_EMULATOR_JVM_OPTIONS" in str(error.value)
