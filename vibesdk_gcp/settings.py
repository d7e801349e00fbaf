"""One typed settings object, read once at start-up from the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from vibesdk_gcp.errors import ConfigurationError

LOCAL_PROJECT = "vibesdk-local"
# Where Google publishes the certificates that sign its ID tokens.
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key"
# The isolation backends functions/isolation.py knows; "auto": the first that works.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SANDBOX_BACKENDS = ("auto", "bubblewrap", "cloud-run", "unsafe-no-isolation")
# A preview domain: DNS labels (RFC 1123), an optional port. Under it a preview's 57-character label
# and its dot leave at most 195 characters of a name's 253.
DOMAIN = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*(:\d{1,5})?")
MAX_PREVIEW_DOMAIN = 253 - 58
# An origin a CSP frame-ancestors source may name: scheme, host (a leading *. for any subdomain), port.
ORIGIN = re.compile(r"https?://(\*\.)?[a-z0-9.-]+(:\d{1,5})?")


def _int(env: Mapping[str, str], key: str, default: int, minimum: int | None = None) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{key} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigurationError(f"{key} must be at least {minimum}, got {raw!r}")
    return value


def _seconds(env: Mapping[str, str], key: str, default: float, zero: bool = False) -> float:
    """A positive number of seconds (or zero, where zero means "at once")."""
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{key} must be a number of seconds, got {raw!r}") from None
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        least = "zero or more" if zero else "a positive number of"
        raise ConfigurationError(f"{key} must be {least} seconds, got {raw!r}")
    return value


# A wait answers inside the control plane's Cloud Run request timeout (600 s, infra/gcp: the
# subscription's ack deadline), with time to spare for the answer itself.
MAX_WAIT_LIMIT_SECONDS = 540.0


def _wait_seconds(env: Mapping[str, str]) -> float:
    value = _seconds(env, "VIBESDK_MAX_WAIT_SECONDS", Settings.max_wait_seconds, zero=True)
    if value > MAX_WAIT_LIMIT_SECONDS:
        raise ConfigurationError(
            f"VIBESDK_MAX_WAIT_SECONDS must be at most {MAX_WAIT_LIMIT_SECONDS:g} (under the request timeout), "
            f"got {env['VIBESDK_MAX_WAIT_SECONDS']!r}"
        )
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = (env.get(key) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{key} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(key) or default
    chosen = next((choice for choice in choices if choice.lower() == value.lower()), None)
    if chosen is None:
        raise ConfigurationError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return chosen


def _names(env: Mapping[str, str], key: str, lower: bool = False) -> tuple[str, ...]:
    """A comma-separated list."""
    names = (name.strip() for name in (env.get(key) or "").split(","))
    return tuple(name.lower() if lower else name for name in names if name)


def _domain(env: Mapping[str, str], key: str) -> str | None:
    """A host[:port], no scheme and no path; lower case."""
    raw = (env.get(key) or "").strip()
    if not raw:
        return None
    value = raw.lower().rstrip(".")
    port = value.rpartition(":")[2] if ":" in value else None
    if not DOMAIN.fullmatch(value) or (port is not None and not 0 < int(port) < 65536):
        raise ConfigurationError(f"{key} must be a host name with an optional port (no scheme, no path), got {raw!r}")
    if len(value.split(":")[0]) > MAX_PREVIEW_DOMAIN:
        raise ConfigurationError(f"{key} must be at most {MAX_PREVIEW_DOMAIN} characters, got {raw!r}")
    return value


def _origins(env: Mapping[str, str], key: str) -> tuple[str, ...]:
    """A space-separated list of http(s) origins, as a CSP names them."""
    origins = tuple(origin.lower().rstrip("/") for origin in (env.get(key) or "").split())
    for origin in origins:
        if not ORIGIN.fullmatch(origin):
            raise ConfigurationError(
                f"{key} must be space-separated origins like https://app.example.com, got {origin!r}"
            )
    return origins


def default_threads() -> int:
    """functions-framework's default worker threads: 4 per core."""
    return (os.cpu_count() or 1) * 4


@dataclass(frozen=True)
class Settings:
    """Every setting of every process, with its one default; Settings.from_env() reads and checks them."""

    project: str = LOCAL_PROJECT
    api_token: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    body_timeout_seconds: float = 30.0
    # The longest `?wait=` a run's GET may hold: at most MAX_WAIT_LIMIT_SECONDS.
    max_wait_seconds: float = 60.0
    # What one owner may hold open on one instance: each holds a Firestore listener (runs/watches.py).
    max_waits_per_owner: int = 32
    max_streams_per_owner: int = 8
    # What a client may take to send a request's headers (control_plane/__main__.py).
    header_timeout_seconds: float = 10.0
    host: str = "0.0.0.0"
    port: int = 8080
    workspace_root: Path = field(default_factory=lambda: Path("/tmp/vibesdk-workspaces"))
    command_timeout_seconds: int = 120
    # What one action may take in all: less than the tuned ack deadline and Cloud Run's timeout (600 s).
    max_action_seconds: int = 540
    # How long a claim on a run lasts without renewal: a dead job's run can be retaken after it.
    lease_seconds: float = 60.0
    # The stale-run sweep (functions/sweeper.py): a lapsed claim's grace, a queued run's timeout.
    sweep_grace_seconds: float = 900.0
    queue_timeout_seconds: float = 3600.0
    # Working copies a job instance keeps on its disk (in memory on Cloud Run); older ones are
    # dropped, and restored from Cloud Storage when their session acts again.
    max_local_workspaces: int = 16
    output_excerpt_bytes: int = 16 * 1024
    public_url: str = "http://127.0.0.1:8080"
    # Where previews are served from, when not from public_url (a separate origin for user content).
    preview_origin: str | None = None
    # Previews by host, one origin each: {label}.{preview_domain} (vibesdk_gcp/previews.py); None: by path only.
    preview_domain: str | None = None
    # Who may frame a host preview besides the control plane's own pages: VibSDK's origin, which frames its previews.
    preview_frame_ancestors: tuple[str, ...] = ()
    bucket_prefix: str = ""
    pubsub_emulator_host: str | None = None
    firestore_emulator_host: str | None = None
    storage_emulator_host: str | None = None
    # Cloud Run names every service's instances in K_SERVICE; `make dev` names its unit.
    service: str | None = None
    log_level: str = "INFO"
    unit: str | None = None
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
    # Requests that fail to authenticate, per client address: each may cost a Firestore read.
    unauthenticated_per_minute: int = 60
    max_file_bytes: int = 4 * 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    # Who may be an owner by a Google ID token: emails, or @domain for a whole domain. Empty: none on
    # Google Cloud (API keys an operator issued still work), anyone on a local stack.
    allowed_owners: tuple[str, ...] = ()
    # The job's worker threads (functions-framework's THREADS), its instances at most, and the
    # actions one owner may run at once over all of them; 0: half of all their workers
    # (functions/fairness.py).
    threads: int = field(default_factory=default_threads)
    job_instances: int = 1
    # The templates whose dependency trees a new job instance fetches as it starts (functions/warmup.py).
    warm_templates: tuple[str, ...] = ("react-vite", "static-site")
    max_actions_per_owner: int = 0
    # A sandbox's disk: on Cloud Run both live in the instance's memory (infra/gcp sizes for them).
    workspace_bytes: int = 1 << 30
    sandbox_tmp_bytes: int = 256 << 20
    command_memory_bytes: int = 2 << 30
    # Which isolation backend runs commands (functions/isolation.py); "auto": the first that works.
    sandbox_backend: str = "auto"
    cloud_run_sandbox_command: str | None = None  # where Cloud Run's `sandbox` is, when not on PATH
    # The unprivileged uid and gid commands run as when the job is root.
    sandbox_uid: int = 65534
    sandbox_gid: int = 65534
    # Where the job finds bwrap and Cloud Run's `sandbox` command (PATH).
    search_path: str = "/usr/local/bin:/usr/bin:/bin"
    # Hosts a command may reach through the egress proxy (comma-separated); None: the registries.
    egress_allow: str | None = None
    # Whether a runtime_error webhook may go to a loopback address, over http too (functions/webhooks.py):
    # the local stack's receivers. Off: https to public addresses only. Refused on Cloud Run.
    webhook_loopback: bool = False

    @property
    def on_google_cloud(self) -> bool:
        """Running against real Google services, not the emulators: the development token is refused."""
        return not (self.firestore_emulator_host or self.pubsub_emulator_host)

    @property
    def on_cloud_run(self) -> bool:
        return self.service is not None

    def log_name(self, default: str) -> str:
        """What this process's log lines are named after: its Cloud Run service, its `make dev` unit."""
        return self.service or self.unit or default

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings of this process, checked: a bad value fails here, naming its variable."""
        env = os.environ if env is None else env
        base = cls()  # the defaults, written once above
        uid = _int(env, "VIBESDK_SANDBOX_UID", base.sandbox_uid, minimum=1)
        settings = cls(
            project=env.get("GOOGLE_CLOUD_PROJECT") or base.project,
            api_token=env.get("VIBESDK_API_TOKEN") or None,
            max_body_bytes=_int(env, "VIBESDK_MAX_BODY_BYTES", base.max_body_bytes, minimum=1),
            body_timeout_seconds=_seconds(env, "VIBESDK_BODY_TIMEOUT_SECONDS", base.body_timeout_seconds),
            header_timeout_seconds=_seconds(env, "VIBESDK_HEADER_TIMEOUT_SECONDS", base.header_timeout_seconds),
            max_wait_seconds=_wait_seconds(env),
            max_waits_per_owner=_int(env, "VIBESDK_MAX_WAITS_PER_OWNER", base.max_waits_per_owner, minimum=1),
            max_streams_per_owner=_int(env, "VIBESDK_MAX_STREAMS_PER_OWNER", base.max_streams_per_owner, minimum=1),
            host=env.get("HOST") or base.host,
            port=_int(env, "PORT", base.port, minimum=1),
            workspace_root=Path(env.get("VIBESDK_WORKSPACE_ROOT") or base.workspace_root),
            command_timeout_seconds=_int(env, "VIBESDK_COMMAND_TIMEOUT_SECONDS", base.command_timeout_seconds, 1),
            max_action_seconds=_int(env, "VIBESDK_MAX_ACTION_SECONDS", base.max_action_seconds, minimum=1),
            lease_seconds=_seconds(env, "VIBESDK_LEASE_SECONDS", base.lease_seconds),
            sweep_grace_seconds=_seconds(env, "VIBESDK_SWEEP_GRACE_SECONDS", base.sweep_grace_seconds, zero=True),
            queue_timeout_seconds=_seconds(env, "VIBESDK_QUEUE_TIMEOUT_SECONDS", base.queue_timeout_seconds, zero=True),
            max_local_workspaces=_int(env, "VIBESDK_MAX_LOCAL_WORKSPACES", base.max_local_workspaces, minimum=1),
            output_excerpt_bytes=_int(env, "VIBESDK_OUTPUT_EXCERPT_BYTES", base.output_excerpt_bytes, minimum=1),
            public_url=(env.get("VIBESDK_PUBLIC_URL") or base.public_url).rstrip("/"),
            preview_origin=(env.get("VIBESDK_PREVIEW_ORIGIN") or "").rstrip("/") or None,
            preview_domain=_domain(env, "VIBESDK_PREVIEW_DOMAIN"),
            preview_frame_ancestors=_origins(env, "VIBESDK_PREVIEW_FRAME_ANCESTORS"),
            bucket_prefix=env.get("VIBESDK_BUCKET_PREFIX") or "",
            pubsub_emulator_host=env.get("PUBSUB_EMULATOR_HOST") or None,
            firestore_emulator_host=env.get("FIRESTORE_EMULATOR_HOST") or None,
            storage_emulator_host=env.get("STORAGE_EMULATOR_HOST") or None,
            service=env.get("K_SERVICE") or None,
            unit=env.get("VIBESDK_UNIT") or None,
            verify_push=_bool(env, "VIBESDK_VERIFY_PUSH", base.verify_push),
            push_service_account=env.get("VIBESDK_PUSH_SERVICE_ACCOUNT") or None,
            push_audience=env.get("VIBESDK_PUSH_AUDIENCE") or None,
            api_audience=env.get("VIBESDK_API_AUDIENCE") or None,
            google_certs_url=env.get("VIBESDK_GOOGLE_CERTS_URL") or base.google_certs_url,
            iap_audience=env.get("VIBESDK_IAP_AUDIENCE") or None,
            iap_certs_url=env.get("VIBESDK_IAP_CERTS_URL") or base.iap_certs_url,
            max_active_runs_per_owner=_int(env, "VIBESDK_MAX_ACTIVE_RUNS_PER_OWNER", base.max_active_runs_per_owner, 1),
            requests_per_minute=_int(env, "VIBESDK_REQUESTS_PER_MINUTE", base.requests_per_minute, minimum=1),
            unauthenticated_per_minute=_int(
                env, "VIBESDK_UNAUTHENTICATED_PER_MINUTE", base.unauthenticated_per_minute, minimum=1
            ),
            max_file_bytes=_int(env, "VIBESDK_MAX_FILE_BYTES", base.max_file_bytes, minimum=1),
            cors_origins=_names(env, "VIBESDK_CORS_ORIGINS"),
            allowed_owners=_names(env, "VIBESDK_ALLOWED_OWNERS", lower=True),
            threads=_int(env, "THREADS", base.threads, minimum=1),
            job_instances=_int(env, "VIBESDK_JOB_INSTANCES", base.job_instances, minimum=1),
            warm_templates=base.warm_templates
            if env.get("VIBESDK_WARM_TEMPLATES") is None
            else _names(env, "VIBESDK_WARM_TEMPLATES"),
            max_actions_per_owner=_int(env, "VIBESDK_MAX_ACTIONS_PER_OWNER", base.max_actions_per_owner, minimum=0),
            workspace_bytes=_int(env, "VIBESDK_WORKSPACE_BYTES", base.workspace_bytes, minimum=1),
            sandbox_tmp_bytes=_int(env, "VIBESDK_SANDBOX_TMP_BYTES", base.sandbox_tmp_bytes, minimum=1),
            command_memory_bytes=_int(env, "VIBESDK_COMMAND_MEMORY_BYTES", base.command_memory_bytes, minimum=1),
            sandbox_backend=_choice(env, "VIBESDK_SANDBOX_BACKEND", base.sandbox_backend, SANDBOX_BACKENDS),
            log_level=_choice(env, "LOG_LEVEL", base.log_level, LOG_LEVELS),
            cloud_run_sandbox_command=env.get("VIBESDK_CLOUD_RUN_SANDBOX_COMMAND") or None,
            sandbox_uid=uid,
            sandbox_gid=_int(env, "VIBESDK_SANDBOX_GID", uid, minimum=1),
            search_path=env.get("PATH") or base.search_path,
            egress_allow=env.get("VIBESDK_EGRESS_ALLOW") or None,
            webhook_loopback=_bool(env, "VIBESDK_WEBHOOK_LOOPBACK", base.webhook_loopback),
        )
        _check_preview_domain(settings)
        _check_webhook_loopback(settings)
        return settings


def _check_preview_domain(settings: Settings) -> None:
    """The control plane's own host must not be a preview's: every API request would go to the previews' site."""
    if not settings.preview_domain:
        return
    domain = settings.preview_domain.partition(":")[0]
    host = (urlsplit(settings.public_url).hostname or "").rstrip(".")
    if host == domain or host.endswith("." + domain):
        raise ConfigurationError(
            f"VIBESDK_PUBLIC_URL ({settings.public_url}) is on VIBESDK_PREVIEW_DOMAIN ({settings.preview_domain}): "
            "the control plane's host would be a preview's; give previews a domain of their own"
        )


def _check_webhook_loopback(settings: Settings) -> None:
    """On Cloud Run a loopback webhook reaches the job's own server: never a receiver of VibSDK's."""
    if settings.webhook_loopback and settings.on_cloud_run:
        raise ConfigurationError(
            "VIBESDK_WEBHOOK_LOOPBACK must be off on Cloud Run (K_SERVICE is set): it is for the local stack only"
        )
