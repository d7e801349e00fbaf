"""Pub/Sub messages out of the shapes they arrive in.

A Pub/Sub push request body, an Eventarc CloudEvent's data (binary or
structured mode) and functions-framework's conversion of a raw push all carry
the same `message` object; this module turns any of them into one PubsubMessage.
Field names follow https://cloud.google.com/pubsub/docs/push#receive_push and
https://cloud.google.com/eventarc/docs/cloudevents (MessagePublishedData).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from vibesdk_gcp.errors import PoisonMessage, first_error
from vibesdk_gcp.names import SCHEMA_VERSION

# Real deliveries carry both spellings; the emulator only the camelCase one.
_MESSAGE_ID_KEYS = ("messageId", "message_id")
_PUBLISH_TIME_KEYS = ("publishTime", "publish_time")


@dataclass(frozen=True)
class PubsubMessage:
    data: bytes
    message_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    publish_time: str | None = None
    ordering_key: str | None = None
    subscription: str | None = None
    delivery_attempt: int | None = None

    def json(self) -> Any:
        try:
            return json.loads(self.data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PoisonMessage(f"message {self.message_id} is not JSON: {error}") from None

    def parse(self, model: type[BaseModel]) -> Any:
        version = self.attributes.get("schemaVersion", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise PoisonMessage(f"message {self.message_id} has unknown schema version {version!r}")
        try:
            return model.model_validate(self.json())
        except ValidationError as error:
            raise PoisonMessage(
                f"message {self.message_id} is not a valid {model.__name__}: {first_error(error)}"
            ) from None


def _first(mapping: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((mapping[key] for key in keys if mapping.get(key)), None)


def from_push_body(body: Any) -> PubsubMessage:
    """Decode {"message": {...}, "subscription": ..., "deliveryAttempt": ...}."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        raise PoisonMessage("push body has no 'message' object")
    message = body["message"]
    message_id = _first(message, _MESSAGE_ID_KEYS)
    if not message_id:
        raise PoisonMessage("pushed message has no messageId")
    try:
        data = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise PoisonMessage(f"message {message_id} data is not base64") from None
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise PoisonMessage(f"message {message_id} attributes are not an object")
    attempt = body.get("deliveryAttempt") or message.get("deliveryAttempt")
    return PubsubMessage(
        data=data,
        message_id=str(message_id),
        attributes={str(k): str(v) for k, v in attributes.items()},
        publish_time=_first(message, _PUBLISH_TIME_KEYS),
        ordering_key=message.get("orderingKey") or message.get("ordering_key") or None,
        subscription=body.get("subscription"),
        delivery_attempt=int(attempt) if attempt else None,
    )


def from_push_bytes(raw: bytes) -> PubsubMessage:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PoisonMessage(f"push body is not JSON: {error}") from None
    return from_push_body(body)
