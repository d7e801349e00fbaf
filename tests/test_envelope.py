from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from eventarc.cloudevent import message_published
from vibesdk_gcp.envelope import from_push_body, from_push_bytes
from vibesdk_gcp.errors import PoisonMessage
from vibesdk_gcp.schemas import StatusEvent

GOLDEN = Path(__file__).parent / "golden"
DECODING_CASES = ["eventarc_pubsub_binary.json", "pubsub_push_wrapped.json", "pubsub_push_snake_case.json"]


def load(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / name).read_text())


@pytest.mark.parametrize("name", DECODING_CASES)
def test_golden_push_bodies_decode(name: str) -> None:
    case = load(name)
    message = from_push_body(case["body"])
    expected = case["expected"]
    assert message.data.decode() == expected["data"]
    assert message.message_id == expected["message_id"]
    assert message.attributes == expected["attributes"]
    assert message.publish_time == expected["publish_time"]
    assert message.subscription == expected["subscription"]
    assert message.ordering_key == expected["ordering_key"]
    assert message.delivery_attempt == expected["delivery_attempt"]


def test_router_builds_googles_published_event() -> None:
    case = load("eventarc_pubsub_binary.json")
    message = from_push_body(case["body"])
    headers, body = message_published(message, "my-project", "my-topic", case["body"]["message"])
    assert headers == case["headers"]
    assert body["subscription"] == case["body"]["subscription"]
    for key, value in case["body"]["message"].items():
        assert body["message"][key] == value
    # Eventarc passes both spellings of the id and the publish time.
    assert body["message"]["message_id"] == body["message"]["messageId"]
    assert body["message"]["publish_time"] == body["message"]["publishTime"]


def test_router_event_carries_delivery_attempt_and_ordering_key() -> None:
    case = load("pubsub_push_wrapped.json")
    message = from_push_body(case["body"])
    headers, body = message_published(message, "myproject", "vibesdk-sandbox-requests", case["body"]["message"])
    assert headers["ce-source"] == "//pubsub.googleapis.com/projects/myproject/topics/vibesdk-sandbox-requests"
    assert body["deliveryAttempt"] == 3
    assert body["message"]["orderingKey"] == "session-1"
    assert from_push_body(body) == message


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "no 'message'"),
        ({"message": {"data": "e30="}}, "no messageId"),
        ({"message": {"messageId": "1", "data": "not base64!"}}, "not base64"),
        ({"message": {"messageId": "1", "data": "e30=", "attributes": ["x"]}}, "attributes"),
    ],
)
def test_invalid_push_body(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(PoisonMessage, match=reason):
        from_push_body(body)


def test_push_body_not_json() -> None:
    with pytest.raises(PoisonMessage, match="not JSON"):
        from_push_bytes(b"{nope")


def _message(data: bytes, attributes: dict[str, str] | None = None) -> Any:
    body = {"message": {"messageId": "7", "data": base64.b64encode(data).decode(), "attributes": attributes or {}}}
    return from_push_body(body)


def test_message_with_unknown_schema_version() -> None:
    with pytest.raises(PoisonMessage, match="unknown schema version '99'"):
        _message(b"{}", {"schemaVersion": "99"}).parse(StatusEvent)


def test_message_that_is_not_json() -> None:
    with pytest.raises(PoisonMessage, match="not JSON"):
        _message(b"\xff\xfe").parse(StatusEvent)


def test_message_missing_fields_names_the_model() -> None:
    with pytest.raises(PoisonMessage, match="not a valid StatusEvent"):
        _message(b'{"runId": "r"}').parse(StatusEvent)
