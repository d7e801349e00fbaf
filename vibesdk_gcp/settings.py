"""One typed settings object, read once at start-up from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vibesdk_gcp.errors import ConfigurationError

LOCAL_PROJECT = "vibesdk-local"


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{key} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    project: str
    api_token: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    workspace_root: Path = field(default_factory=lambda: Path("/tmp/vibesdk-workspaces"))
    command_timeout_seconds: int = 120
    output_excerpt_bytes: int = 16 * 1024
    public_url: str = "http://127.0.0.1:8080"
    bucket_prefix: str = ""
    pubsub_emulator_host: str | None = None
    firestore_emulator_host: str | None = None
    storage_emulator_host: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            project=env.get("GOOGLE_CLOUD_PROJECT") or LOCAL_PROJECT,
            api_token=env.get("VIBESDK_API_TOKEN") or None,
            max_body_bytes=_int(env, "VIBESDK_MAX_BODY_BYTES", 8 * 1024 * 1024),
            workspace_root=Path(env.get("VIBESDK_WORKSPACE_ROOT") or "/tmp/vibesdk-workspaces"),
            command_timeout_seconds=_int(env, "VIBESDK_COMMAND_TIMEOUT_SECONDS", 120),
            output_excerpt_bytes=_int(env, "VIBESDK_OUTPUT_EXCERPT_BYTES", 16 * 1024),
            public_url=(env.get("VIBESDK_PUBLIC_URL") or "http://127.0.0.1:8080").rstrip("/"),
            bucket_prefix=env.get("VIBESDK_BUCKET_PREFIX") or "",
            pubsub_emulator_host=env.get("PUBSUB_EMULATOR_HOST") or None,
            firestore_emulator_host=env.get("FIRESTORE_EMULATOR_HOST") or None,
            storage_emulator_host=env.get("STORAGE_EMULATOR_HOST") or None,
        )
