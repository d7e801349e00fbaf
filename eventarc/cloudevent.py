"""The CloudEvent that Eventarc makes of a Pub/Sub push delivery.

Shape per https://cloud.google.com/eventarc/docs/cloudevents-json (Pub/Sub,
binary content mode): ce-* headers, and MessagePublishedData as the JSON body.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from eventarc.definitions import MESSAGE_PUBLISHED
from vibesdk_gcp.envelope import PubsubMessage

PUBSUB_SOURCE = "//pubsub.googleapis.com/projects/{project}/topics/{topic}"


def _rfc3339_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_published(
    message: PubsubMessage, project: str, topic: str, raw_message: dict[str, Any]
) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers and body of the binary-mode CloudEvent for one pushed message."""
    headers = {
        "ce-specversion": "1.0",
        "ce-type": MESSAGE_PUBLISHED,
        "ce-source": PUBSUB_SOURCE.format(project=project, topic=topic),
        "ce-id": message.message_id,
        "ce-time": message.publish_time or _rfc3339_now(),
        "Content-Type": "application/json",
    }
    # Eventarc passes the message through and names both id and time in both spellings.
    forwarded = dict(raw_message)
    forwarded.setdefault("messageId", message.message_id)
    forwarded.setdefault("message_id", message.message_id)
    if message.publish_time:
        forwarded.setdefault("publishTime", message.publish_time)
        forwarded.setdefault("publish_time", message.publish_time)
    body: dict[str, Any] = {"subscription": message.subscription, "message": forwarded}
    if message.delivery_attempt is not None:
        body["deliveryAttempt"] = message.delivery_attempt
    return headers, body
