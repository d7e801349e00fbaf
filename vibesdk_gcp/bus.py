"""Publishing requests and status events to Pub/Sub."""

from __future__ import annotations

import contextlib

from google.cloud import pubsub_v1

from vibesdk_gcp import access, logs
from vibesdk_gcp.envelope import PubsubMessage
from vibesdk_gcp.errors import ServiceUnavailable
from vibesdk_gcp.metrics import work
from vibesdk_gcp.names import (
    DEAD_LETTER_ORIGINAL_ID,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE_TOPIC,
    DEAD_LETTER_TOPIC,
    REQUESTS_TOPIC,
    STATUS_TOPIC,
)
from vibesdk_gcp.schemas import SandboxRequest, StatusEvent

PUBLISH_TIMEOUT_SECONDS = 10.0


class Bus:
    def __init__(self, publisher: pubsub_v1.PublisherClient, project: str) -> None:
        self._publisher = publisher
        self._requests = publisher.topic_path(project, REQUESTS_TOPIC)
        self._status = publisher.topic_path(project, STATUS_TOPIC)
        self._dead_letters = publisher.topic_path(project, DEAD_LETTER_TOPIC)

    def publish_request(self, request: SandboxRequest) -> str:
        # Ordering key = session, as the design asks; Eventarc's subscription ignores it, so the
        # job keeps a session's order itself (functions/ordering.py).
        return self._publish(
            self._requests, request.model_dump_json().encode(), request.attributes(), request.sessionId
        )

    def dead_letter(self, message: PubsubMessage, topic: str, reason: str) -> str:
        """Set an unprocessable message aside with why, for listing and replay."""
        attributes = dict(message.attributes) | {
            DEAD_LETTER_REASON: reason[:1000],
            DEAD_LETTER_SOURCE_TOPIC: topic,
            DEAD_LETTER_ORIGINAL_ID: message.message_id,
        }
        return self._publish(self._dead_letters, message.data, attributes, "")

    def publish_status(self, event: StatusEvent) -> str:
        # No ordering key: the recorder orders a run's events by seq itself, and unkeyed
        # messages from concurrent runs share publish calls.
        return self._publish(self._status, event.model_dump_json().encode(), event.attributes(), "")

    def _publish(self, topic: str, data: bytes, attributes: dict[str, str], ordering_key: str) -> str:
        work.add("pubsub.publishes")
        access.note(access.PUBLISH, topic.rsplit("/", 1)[-1])
        trace = logs.current(logs.TRACE_ATTRIBUTE)
        if trace:
            attributes = attributes | {logs.TRACE_ATTRIBUTE: trace}
        try:
            # Our attribute names (camelCase) never take publish's retry or timeout keywords.
            future = self._publisher.publish(topic, data, ordering_key=ordering_key, **attributes)  # type: ignore[arg-type]
            return str(future.result(timeout=PUBLISH_TIMEOUT_SECONDS))
        except Exception as error:  # the client raises several unrelated types
            # A failed ordered publish pauses its key until resumed (a timed-out one does not).
            with contextlib.suppress(RuntimeError):
                self._publisher.resume_publish(topic, ordering_key)
            raise ServiceUnavailable(f"could not publish to {topic.rsplit('/', 1)[-1]}: {error}") from error
