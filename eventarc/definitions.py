"""The trigger and subscriptions, as data.

The local launcher applies these to the emulators and the Terraform tests hold
infra/gcp against them, so the two can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vibesdk_gcp import names

# https://cloud.google.com/eventarc/docs/cloudevents#pubsub
MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


@dataclass(frozen=True)
class Retry:
    minimum_backoff_seconds: int
    maximum_backoff_seconds: int


@dataclass(frozen=True)
class PushSubscription:
    name: str
    topic: str
    service: str  # the Cloud Run service that receives the pushes
    path: str
    ack_deadline_seconds: int  # also the push request's timeout
    retry: Retry
    max_delivery_attempts: int | None  # None: no dead-letter policy, retried until retention ends
    dead_letter_topic: str | None
    message_ordering: bool
    retention_seconds: int = 7 * 24 * 3600


@dataclass(frozen=True)
class Trigger:
    """An Eventarc Pub/Sub trigger: a push subscription that delivers CloudEvents.

    Eventarc creates and owns the subscription; neither the trigger nor Terraform can set it
    (terraform-provider-google #17701, #10755). `managed` is what it gets on creation; `tuned`
    is what the pipeline sets afterwards with `gcloud pubsub subscriptions update` (ordering can
    never be turned on for an existing subscription). The code must be right under both.
    """

    name: str
    event_type: str
    managed: PushSubscription
    tuned: PushSubscription

    def subscription(self, delivery: str) -> PushSubscription:
        assert delivery in DELIVERY_MODES, f"delivery mode {delivery!r} is not one of {DELIVERY_MODES}"
        return self.managed if delivery == "managed" else self.tuned


# Local delivery of the trigger: as Eventarc creates the subscription (the default), or as the
# pipeline tunes it. VIBESDK_EVENTARC_DELIVERY picks one.
DELIVERY_MODES = ("managed", "tuned")

# Eventarc's default retry: exponential backoff from 10 s to 600 s.
EVENTARC_RETRY = Retry(minimum_backoff_seconds=10, maximum_backoff_seconds=600)

# https://cloud.google.com/eventarc/docs/run/create-trigger-pubsub: the subscription Eventarc makes
# has Pub/Sub's defaults: 10 s ack deadline, no ordering, no dead-letter topic, 24 h retention.
EVENTARC_MANAGED_SUBSCRIPTION = PushSubscription(
    name=names.SANDBOX_JOB_SUBSCRIPTION,
    topic=names.REQUESTS_TOPIC,
    service=names.SANDBOX_JOB_SERVICE,
    path="/",
    ack_deadline_seconds=10,
    retry=EVENTARC_RETRY,
    max_delivery_attempts=None,
    dead_letter_topic=None,
    message_ordering=False,
    retention_seconds=24 * 3600,
)

SANDBOX_JOB_TRIGGER = Trigger(
    name=names.SANDBOX_JOB_TRIGGER,
    event_type=MESSAGE_PUBLISHED,
    managed=EVENTARC_MANAGED_SUBSCRIPTION,
    # Pub/Sub's largest ack deadline: a sandbox action may take minutes. Still unordered.
    tuned=replace(
        EVENTARC_MANAGED_SUBSCRIPTION,
        ack_deadline_seconds=600,
        max_delivery_attempts=5,
        dead_letter_topic=names.DEAD_LETTER_TOPIC,
    ),
)

STATUS_RECORDER_SUBSCRIPTION = PushSubscription(
    name=names.STATUS_RECORDER_SUBSCRIPTION,
    topic=names.STATUS_TOPIC,
    service=names.STATUS_RECORDER_SERVICE,
    path="/",
    ack_deadline_seconds=60,
    # Outlasts minutes of recorder outage (attempts at 0, 1, 3, 7, 15, 31, 63, ... s); malformed
    # events do not wait for this: the recorder dead-letters them itself at once.
    retry=Retry(minimum_backoff_seconds=1, maximum_backoff_seconds=60),
    max_delivery_attempts=10,
    dead_letter_topic=names.DEAD_LETTER_TOPIC,
    message_ordering=False,
)

TRIGGERS = (SANDBOX_JOB_TRIGGER,)
PUSH_SUBSCRIPTIONS = (STATUS_RECORDER_SUBSCRIPTION,)
TOPICS = (names.REQUESTS_TOPIC, names.STATUS_TOPIC, names.DEAD_LETTER_TOPIC)


def terraform_inputs() -> dict[str, object]:
    """What infra/gcp reads from definitions.json: every name and setting, from this one source."""

    def subscription(sub: PushSubscription) -> dict[str, object]:
        return {
            "name": sub.name,
            "topic": sub.topic,
            "service": sub.service,
            "path": sub.path,
            "ack_deadline_seconds": sub.ack_deadline_seconds,
            "minimum_backoff_seconds": sub.retry.minimum_backoff_seconds,
            "maximum_backoff_seconds": sub.retry.maximum_backoff_seconds,
            "max_delivery_attempts": sub.max_delivery_attempts,
            "dead_letter_topic": sub.dead_letter_topic,
            "message_ordering": sub.message_ordering,
            "retention_seconds": sub.retention_seconds,
        }

    return {
        "topics": {
            "requests": names.REQUESTS_TOPIC,
            "status": names.STATUS_TOPIC,
            "dead_letter": names.DEAD_LETTER_TOPIC,
        },
        "dead_letter_subscription": names.DEAD_LETTER_SUBSCRIPTION,
        "trigger": {
            "name": SANDBOX_JOB_TRIGGER.name,
            "event_type": SANDBOX_JOB_TRIGGER.event_type,
            "managed_subscription": subscription(SANDBOX_JOB_TRIGGER.managed),
            "tuned_subscription": subscription(SANDBOX_JOB_TRIGGER.tuned),
        },
        "status_subscription": subscription(STATUS_RECORDER_SUBSCRIPTION),
        "collection": names.RUNS_COLLECTION,
        "subcollection": names.RUNS_SUBCOLLECTION,
        "queued_requests_subcollection": names.QUEUED_REQUESTS_SUBCOLLECTION,
        "buckets": {
            "templates": names.TEMPLATES_BUCKET,
            "workspaces": names.WORKSPACES_BUCKET,
            "logs": names.LOGS_BUCKET,
            "previews": names.PREVIEWS_BUCKET,
        },
        "services": {
            "control_plane": names.CONTROL_PLANE_SERVICE,
            "sandbox_job": names.SANDBOX_JOB_SERVICE,
            "status_recorder": names.STATUS_RECORDER_SERVICE,
            "sweeper": names.SWEEPER_SERVICE,
        },
        "entry_points": names.ENTRY_POINTS,
        "service_env": names.SERVICE_ENV,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(terraform_inputs(), indent=2))
