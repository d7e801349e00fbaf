"""Dead letters: set aside what can never be processed, list it, replay chosen messages.

Handlers dead-letter an undecodable message themselves (Bus.dead_letter), at once, with the reason; Pub/Sub's
dead-letter policy is the backstop for messages that keep failing. Both land on the dead-letter
topic, kept by its hold subscription:

    python -m functions.deadletters list
    python -m functions.deadletters replay MESSAGE_ID [MESSAGE_ID ...]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from eventarc.definitions import PUSH_SUBSCRIPTIONS, TRIGGERS
from vibesdk_gcp import clients
from vibesdk_gcp.names import (
    DEAD_LETTER_ORIGINAL_ID,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE_TOPIC,
    DEAD_LETTER_SUBSCRIPTION,
)
from vibesdk_gcp.settings import Settings

REASON, SOURCE_TOPIC, ORIGINAL_ID = DEAD_LETTER_REASON, DEAD_LETTER_SOURCE_TOPIC, DEAD_LETTER_ORIGINAL_ID
# Set by Pub/Sub's own dead-letter policy.
PUBSUB_SOURCE = "CloudPubSubDeadLetterSourceSubscription"
OUR_ATTRIBUTES = (REASON, SOURCE_TOPIC, ORIGINAL_ID)


@dataclass(frozen=True)
class DeadLetter:
    ack_id: str
    message_id: str
    original_id: str
    source: str
    reason: str
    attributes: dict[str, str]
    data: bytes


def _source_topic(attributes: dict[str, str]) -> str:
    if SOURCE_TOPIC in attributes:
        return attributes[SOURCE_TOPIC]
    subscription = attributes.get(PUBSUB_SOURCE, "").rsplit("/", 1)[-1]
    for trigger in TRIGGERS:
        # On Google Cloud, Eventarc names it eventarc-REGION-TRIGGER-NNN-sub-NNN.
        if subscription == trigger.managed.name or (
            subscription.startswith("eventarc-") and trigger.name in subscription
        ):
            return trigger.managed.topic
    for sub in PUSH_SUBSCRIPTIONS:
        if sub.name == subscription:
            return sub.topic
    return ""


class DeadLetterBox:
    def __init__(self, settings: Settings) -> None:
        self._project = settings.project
        self._subscriber = clients.subscriber_client(settings)
        self._publisher = clients.publisher_client(settings)
        self._subscription = self._subscriber.subscription_path(settings.project, DEAD_LETTER_SUBSCRIPTION)

    def peek(self, limit: int = 100) -> list[DeadLetter]:
        """The waiting dead letters; they stay waiting (their lease is given back at once)."""
        response = self._subscriber.pull(subscription=self._subscription, max_messages=limit, timeout=10)
        letters = []
        for received in response.received_messages:
            attributes = dict(received.message.attributes)
            letters.append(
                DeadLetter(
                    ack_id=received.ack_id,
                    message_id=received.message.message_id,
                    original_id=attributes.get(ORIGINAL_ID, received.message.message_id),
                    source=_source_topic(attributes),
                    reason=attributes.get(
                        REASON,
                        f"delivery failed {attributes.get('CloudPubSubDeadLetterSourceDeliveryCount', '?')} times",
                    ),
                    attributes=attributes,
                    data=bytes(received.message.data),
                )
            )
        if letters:
            self._subscriber.modify_ack_deadline(
                subscription=self._subscription, ack_ids=[letter.ack_id for letter in letters], ack_deadline_seconds=0
            )
        return letters

    def replay(self, message_ids: set[str]) -> list[str]:
        """Publish the chosen letters again to the topic they came from, then drop them from the box."""
        replayed = []
        response = self._subscriber.pull(subscription=self._subscription, max_messages=1000, timeout=10)
        for received in response.received_messages:
            attributes = dict(received.message.attributes)
            original = attributes.get(ORIGINAL_ID, received.message.message_id)
            if original not in message_ids and received.message.message_id not in message_ids:
                self._subscriber.modify_ack_deadline(
                    subscription=self._subscription, ack_ids=[received.ack_id], ack_deadline_seconds=0
                )
                continue
            clean = {
                k: v
                for k, v in attributes.items()
                if k not in OUR_ATTRIBUTES and not k.startswith("CloudPubSubDeadLetter")
            }
            topic = self._publisher.topic_path(self._project, _source_topic(attributes))
            # The attributes are ours (camelCase): none takes publish's retry or timeout keywords.
            self._publisher.publish(topic, received.message.data, **clean).result(timeout=30)  # type: ignore[arg-type]
            self._subscriber.acknowledge(subscription=self._subscription, ack_ids=[received.ack_id])
            replayed.append(original)
        return replayed


def masked(data: bytes) -> bytes:
    """A request as an operator may see it: its instance's envVars values masked (they may be secrets)."""
    try:
        body = json.loads(data)
        env = body["params"]["envVars"]
    except (ValueError, TypeError, KeyError):
        return data
    if not isinstance(env, dict):
        return data
    body["params"]["envVars"] = dict.fromkeys(env, "***")
    return json.dumps(body).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the waiting dead letters")
    replay = commands.add_parser("replay", help="publish chosen dead letters again")
    replay.add_argument("message_ids", nargs="+")
    args = parser.parse_args()
    box = DeadLetterBox(Settings.from_env())
    if args.command == "list":
        for letter in box.peek():
            excerpt = masked(letter.data)[:200].decode("utf-8", errors="replace")
            print(
                json.dumps(
                    {"messageId": letter.original_id, "source": letter.source, "reason": letter.reason, "data": excerpt}
                )
            )
    else:
        for message_id in box.replay(set(args.message_ids)):
            print(f"replayed {message_id}")


if __name__ == "__main__":
    main()
