"""One typed settings object, read once at start-up from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vibesdk_gcp.errors import ConfigurationError

LOCAL_PROJECT = "vibesdk-local"
# Where Google publishes the certificates that sign its ID tokens.
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key"


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{key} must be an integer, got {raw!r}") from None


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = (env.get(key) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{key} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    project: str
    api_token: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    body_timeout_seconds: float = 30.0
    workspace_root: Path = field(default_factory=lambda: Path("/tmp/vibesdk-workspaces"))
    command_timeout_seconds: int = 120
    # What one action may take in all: less than the tuned ack deadline and Cloud Run's timeout (600 s).
    max_action_seconds: int = 540
    # Working copies a job instance keeps on its disk (in memory on Cloud Run); older ones are
    # dropped, and restored from Cloud Storage when their session acts again.
    max_local_workspaces: int = 16
    output_excerpt_bytes: int = 16 * 1024
    public_url: str = "http://127.0.0.1:8080"
    # Where previews are served from, when not from public_url (a separate origin for user content).
    preview_origin: str | None = None
    bucket_prefix: str = ""
    pubsub_emulator_host: str | None = None
    firestore_emulator_host: str | None = None
    storage_emulator_host: str | None = None
    # Security (docs/SECURITY.md).
    verify_push: bool = True
    push_service_account: str | None = None
    push_audience: str | None = None
    api_audience: str | None = None
    google_certs_url: str = GOOGLE_CERTS_URL
    iap_audience: str | None = None
    iap_certs_url: str = IAP_CERTS_URL
    max_active_runs_per_owner: int = 50
    requests_per_minute: int = 600
    max_file_bytes: int = 4 * 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    # Who may be an owner by a Google ID token: emails, or @domain for a whole domain. Empty: none on
    # Google Cloud (API keys an operator issued still work), anyone on a local stack.
    allowed_owners: tuple[str, ...] = ()
    # Actions one owner may run at once in a job instance; 0: half its workers (functions/fairness.py).
    max_actions_per_owner: int = 0
    # A sandbox's disk: on Cloud Run both live in the instance's memory (infra/gcp sizes for them).
    workspace_bytes: int = 1 << 30
    sandbox_tmp_bytes: int = 256 << 20
    command_memory_bytes: int = 2 << 30
    # Which isolation backend runs commands (functions/isolation.py); "auto": the first that works.
    sandbox_backend: str = "auto"
    cloud_run_sandbox_command: str | None = None  # where Cloud Run's `sandbox` is, when not on PATH
    # Hosts a command may reach through the egress proxy (comma-separated); None: the registries.
    egress_allow: str | None = None

    @property
    def on_google_cloud(self) -> bool:
        """Running against real Google services, not the emulators: the development token is refused."""
        return not (self.firestore_emulator_host or self.pubsub_emulator_host)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            project=env.get("GOOGLE_CLOUD_PROJECT") or LOCAL_PROJECT,
            api_token=env.get("VIBESDK_API_TOKEN") or None,
            max_body_bytes=_int(env, "VIBESDK_MAX_BODY_BYTES", 8 * 1024 * 1024),
            body_timeout_seconds=_int(env, "VIBESDK_BODY_TIMEOUT_SECONDS", 30),
            workspace_root=Path(env.get("VIBESDK_WORKSPACE_ROOT") or "/tmp/vibesdk-workspaces"),
            command_timeout_seconds=_int(env, "VIBESDK_COMMAND_TIMEOUT_SECONDS", 120),
            max_action_seconds=_int(env, "VIBESDK_MAX_ACTION_SECONDS", 540),
            max_local_workspaces=_int(env, "VIBESDK_MAX_LOCAL_WORKSPACES", 16),
            output_excerpt_bytes=_int(env, "VIBESDK_OUTPUT_EXCERPT_BYTES", 16 * 1024),
            public_url=(env.get("VIBESDK_PUBLIC_URL") or "http://127.0.0.1:8080").rstrip("/"),
            preview_origin=(env.get("VIBESDK_PREVIEW_ORIGIN") or "").rstrip("/") or None,
            bucket_prefix=env.get("VIBESDK_BUCKET_PREFIX") or "",
            pubsub_emulator_host=env.get("PUBSUB_EMULATOR_HOST") or None,
            firestore_emulator_host=env.get("FIRESTORE_EMULATOR_HOST") or None,
            storage_emulator_host=env.get("STORAGE_EMULATOR_HOST") or None,
            verify_push=_bool(env, "VIBESDK_VERIFY_PUSH", True),
            push_service_account=env.get("VIBESDK_PUSH_SERVICE_ACCOUNT") or None,
            push_audience=env.get("VIBESDK_PUSH_AUDIENCE") or None,
            api_audience=env.get("VIBESDK_API_AUDIENCE") or None,
            google_certs_url=env.get("VIBESDK_GOOGLE_CERTS_URL") or GOOGLE_CERTS_URL,
            iap_audience=env.get("VIBESDK_IAP_AUDIENCE") or None,
            iap_certs_url=env.get("VIBESDK_IAP_CERTS_URL") or IAP_CERTS_URL,
            max_active_runs_per_owner=_int(env, "VIBESDK_MAX_ACTIVE_RUNS_PER_OWNER", 50),
            requests_per_minute=_int(env, "VIBESDK_REQUESTS_PER_MINUTE", 600),
            max_file_bytes=_int(env, "VIBESDK_MAX_FILE_BYTES", 4 * 1024 * 1024),
            workspace_bytes=_int(env, "VIBESDK_WORKSPACE_BYTES", 1 << 30),
            sandbox_tmp_bytes=_int(env, "VIBESDK_SANDBOX_TMP_BYTES", 256 << 20),
            command_memory_bytes=_int(env, "VIBESDK_COMMAND_MEMORY_BYTES", 2 << 30),
            sandbox_backend=env.get("VIBESDK_SANDBOX_BACKEND") or "auto",
            cloud_run_sandbox_command=env.get("VIBESDK_CLOUD_RUN_SANDBOX_COMMAND") or None,
            egress_allow=env.get("VIBESDK_EGRESS_ALLOW") or None,
            cors_origins=tuple(o.strip() for o in (env.get("VIBESDK_CORS_ORIGINS") or "").split(",") if o.strip()),
            max_actions_per_owner=_int(env, "VIBESDK_MAX_ACTIONS_PER_OWNER", 0),
            allowed_owners=tuple(
                o.strip().lower() for o in (env.get("VIBESDK_ALLOWED_OWNERS") or "").split(",") if o.strip()
            ),
        )
