"""Finding Google's Pub/Sub and Firestore emulators, and the command that starts each.

Order: an explicit setting (a jar's path), then the Google Cloud CLI's own
copy, then ../shared/emulators beside the project. When none is found the
error names what is missing and how to install it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vibesdk_gcp.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Emulator:
    name: str
    setting: str  # the variable that names its jar explicitly
    cli_glob: str  # where the Google Cloud CLI keeps the jar, under its sdk root
    shared_glob: str
    debian_package: str
    main_class: str | None  # None: the jar is runnable with -jar


PUBSUB = Emulator(
    name="Pub/Sub emulator",
    setting="VIBESDK_PUBSUB_EMULATOR_JAR",
    cli_glob="platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar",
    shared_glob="cloud-pubsub-emulator-*.jar",
    debian_package="google-cloud-cli-pubsub-emulator",
    main_class=None,
)
FIRESTORE = Emulator(
    name="Firestore emulator",
    setting="VIBESDK_FIRESTORE_EMULATOR_JAR",
    cli_glob="platform/cloud-firestore-emulator/cloud-firestore-emulator*.jar",
    shared_glob="cloud-firestore-emulator*.jar",
    debian_package="google-cloud-cli-firestore-emulator",
    main_class="com.google.cloud.datastore.emulator.firestore.CloudFirestore",
)


@dataclass(frozen=True)
class Found:
    jar: Path
    origin: str  # "setting", "Google Cloud CLI" or "shared/emulators"


def _sdk_root() -> Path | None:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    # The CLI lays itself out as <root>/bin/gcloud; asking it costs a second, so try that first.
    guess = Path(os.path.realpath(gcloud)).parent.parent
    if (guess / "platform").is_dir():
        return guess
    try:
        out = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def _newest(pattern: str) -> Path | None:
    matches = sorted(glob.glob(pattern))
    return Path(matches[-1]) if matches else None


def shared_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("VIBESDK_SHARED_EMULATORS") or PROJECT_ROOT.parent / "shared" / "emulators")


def find(emulator: Emulator, env: Mapping[str, str] | None = None) -> Found:
    env = os.environ if env is None else env
    explicit = env.get(emulator.setting)
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigurationError(f"{emulator.setting}={explicit} names no file")
        return Found(Path(explicit), "setting")
    root = _sdk_root()
    if root is not None:
        jar = _newest(str(root / emulator.cli_glob))
        if jar is not None:
            return Found(jar, "Google Cloud CLI")
    jar = _newest(str(shared_dir(env) / emulator.shared_glob))
    if jar is not None:
        return Found(jar, "shared/emulators")
    raise ConfigurationError(
        f"the {emulator.name} is missing: set {emulator.setting} to its jar, or install the Google Cloud CLI "
        f"with its emulator (Debian package {emulator.debian_package}), or put the jar in {shared_dir(env)}"
    )


# Measured under `make bench`: with the default tiered JIT, C2 kept compiling through the whole
# run and took most of a core on a 2-core machine; C1 alone, a serial collector and pools sized
# for one CPU cut the emulators' CPU by more than half (docs/PERFORMANCE.md).
DEFAULT_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ActiveProcessorCount=1"


def java() -> str:
    path = shutil.which("java")
    if path is None:
        raise ConfigurationError(
            "java is missing: the Google emulators need Java 17 or newer (apt-get install openjdk-17-jre-headless)"
        )
    return path


def jvm_options(env: Mapping[str, str] | None = None) -> list[str]:
    """JVM options for the emulators: VIBESDK_EMULATOR_JVM_OPTIONS, else DEFAULT_JVM_OPTIONS."""
    env = os.environ if env is None else env
    return env.get("VIBESDK_EMULATOR_JVM_OPTIONS", DEFAULT_JVM_OPTIONS).split()


def command(emulator: Emulator, found: Found, host: str, port: int, env: Mapping[str, str] | None = None) -> list[str]:
    if emulator.main_class is None:
        return [java(), *jvm_options(env), "-jar", str(found.jar), f"--host={host}", f"--port={port}"]
    return [
        java(),
        *jvm_options(env),
        "-Duser.language=en",
        "-cp",
        str(found.jar),
        emulator.main_class,
        "start",
        f"--host={host}",
        f"--port={port}",
    ]
