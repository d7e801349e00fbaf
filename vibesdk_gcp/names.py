"""Every Pub/Sub, Firestore and Cloud Storage name, defined once.

The code, the local launcher, the Eventarc definitions and the Terraform tests
all read these constants.
"""

from __future__ import annotations

REQUESTS_TOPIC = "vibesdk-sandbox-requests"
STATUS_TOPIC = "vibesdk-sandbox-status"
DEAD_LETTER_TOPIC = "vibesdk-sandbox-dead-letter"

# Eventarc names the subscription it creates after the trigger; locally we do the same.
SANDBOX_JOB_TRIGGER = "vibesdk-sandbox-job"
SANDBOX_JOB_SUBSCRIPTION = f"eventarc-{SANDBOX_JOB_TRIGGER}-sub"
STATUS_RECORDER_SUBSCRIPTION = "vibesdk-sandbox-status-recorder"
# A topic without a subscription drops what it receives: this one keeps dead letters.
DEAD_LETTER_SUBSCRIPTION = "vibesdk-sandbox-dead-letter-hold"

# Attributes a handler adds when it dead-letters a message itself.
DEAD_LETTER_REASON = "vibesdkDeadLetterReason"
DEAD_LETTER_SOURCE_TOPIC = "vibesdkDeadLetterSourceTopic"
DEAD_LETTER_ORIGINAL_ID = "vibesdkOriginalMessageId"

RUNS_COLLECTION = "sandboxRuns"
RUNS_SUBCOLLECTION = "runs"
# Each queued run's request, beside its run: any job instance can start it (functions/job.py).
QUEUED_REQUESTS_SUBCOLLECTION = "queuedRequests"
# ownerShares/{owner}: the actions an owner runs at once on any job instance (functions/fairness.py).
OWNER_SHARES_COLLECTION = "ownerShares"
API_KEYS_COLLECTION = "apiKeys"

TEMPLATES_BUCKET = "vibesdk-templates"
WORKSPACES_BUCKET = "vibesdk-workspaces"
LOGS_BUCKET = "vibesdk-logs"
PREVIEWS_BUCKET = "vibesdk-previews"
BUCKETS = (TEMPLATES_BUCKET, WORKSPACES_BUCKET, LOGS_BUCKET, PREVIEWS_BUCKET)

TEMPLATE_CATALOG_OBJECT = "template_catalog.json"

SCHEMA_VERSION = "1"

# The three Cloud Run services, one image; each entry point is fixed here.
CONTROL_PLANE_SERVICE = "vibesdk-control-plane"
SANDBOX_JOB_SERVICE = "vibesdk-sandbox-job"
STATUS_RECORDER_SERVICE = "vibesdk-status-recorder"
SWEEPER_SERVICE = "vibesdk-sweeper"

# How each Cloud Run service starts from the one image (the image's working directory is the
# project root); `make dev` starts the same commands with --host and --port added.
ENTRY_POINTS: dict[str, list[str]] = {
    CONTROL_PLANE_SERVICE: ["python", "-m", "control_plane"],
    SANDBOX_JOB_SERVICE: [
        "functions-framework",
        "--source",
        "functions/main.py",
        "--target",
        "sandbox_job",
        "--signature-type",
        "cloudevent",
    ],
    STATUS_RECORDER_SERVICE: ["functions-framework", "--source", "functions/main.py", "--target", "status_recorder"],
    SWEEPER_SERVICE: ["functions-framework", "--source", "functions/main.py", "--target", "sweeper"],
}

# The environment each service reads at start-up (vibesdk_gcp.settings), besides PORT.
SERVICE_ENV: dict[str, list[str]] = {
    CONTROL_PLANE_SERVICE: [
        "GOOGLE_CLOUD_PROJECT",
        "VIBESDK_BUCKET_PREFIX",
        "VIBESDK_PUBLIC_URL",
        "VIBESDK_API_AUDIENCE",
        "VIBESDK_MAX_BODY_BYTES",
        "VIBESDK_CORS_ORIGINS",
        "VIBESDK_ALLOWED_OWNERS",
        "VIBESDK_PREVIEW_DOMAIN",
        "VIBESDK_PREVIEW_FRAME_ANCESTORS",
        "VIBESDK_MAX_ACTION_SECONDS",
        "VIBESDK_MAX_WAITS_PER_OWNER",
    ],
    SANDBOX_JOB_SERVICE: [
        "GOOGLE_CLOUD_PROJECT",
        "VIBESDK_BUCKET_PREFIX",
        "VIBESDK_PUBLIC_URL",
        "VIBESDK_SANDBOX_BACKEND",
        "VIBESDK_JOB_INSTANCES",
        "VIBESDK_WARM_TEMPLATES",
        "VIBESDK_MAX_ACTIONS_PER_OWNER",
        "VIBESDK_WORKSPACE_ROOT",
        "VIBESDK_WORKSPACE_BYTES",
        "VIBESDK_SANDBOX_TMP_BYTES",
        "VIBESDK_COMMAND_MEMORY_BYTES",
        "VIBESDK_COMMAND_TIMEOUT_SECONDS",
        "VIBESDK_MAX_ACTION_SECONDS",
        "VIBESDK_PUSH_SERVICE_ACCOUNT",
        "VIBESDK_PUSH_AUDIENCE",
        "VIBESDK_PREVIEW_DOMAIN",
    ],
    STATUS_RECORDER_SERVICE: ["GOOGLE_CLOUD_PROJECT", "VIBESDK_PUSH_SERVICE_ACCOUNT", "VIBESDK_PUSH_AUDIENCE"],
    SWEEPER_SERVICE: [
        "GOOGLE_CLOUD_PROJECT",
        "VIBESDK_PUSH_SERVICE_ACCOUNT",
        "VIBESDK_PUSH_AUDIENCE",
        "VIBESDK_SWEEP_GRACE_SECONDS",
        "VIBESDK_QUEUE_TIMEOUT_SECONDS",
    ],
}
# The templateName (and source) of an instance made from files: upstream VibSDK names no template.
FILES_TEMPLATE = "files"
