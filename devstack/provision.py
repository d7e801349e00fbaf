"""Applies the Eventarc definitions, topics and buckets to the emulators."""

from __future__ import annotations

from google.api_core import exceptions as api_exceptions
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2

from eventarc.definitions import PUSH_SUBSCRIPTIONS, TOPICS, TRIGGERS, PushSubscription
from vibesdk_gcp.names import BUCKETS, DEAD_LETTER_SUBSCRIPTION, DEAD_LETTER_TOPIC
from vibesdk_gcp.storage import Storage


def _subscription_request(
    subscriber: pubsub_v1.SubscriberClient, project: str, subscription: PushSubscription, endpoint: str
) -> dict[str, object]:
    request: dict[str, object] = {
        "name": subscriber.subscription_path(project, subscription.name),
        "topic": subscriber.topic_path(project, subscription.topic),
        "push_config": {"push_endpoint": endpoint},
        "ack_deadline_seconds": subscription.ack_deadline_seconds,
        "enable_message_ordering": subscription.message_ordering,
        "message_retention_duration": duration_pb2.Duration(seconds=subscription.retention_seconds),
        "retry_policy": {
            "minimum_backoff": duration_pb2.Duration(seconds=subscription.retry.minimum_backoff_seconds),
            "maximum_backoff": duration_pb2.Duration(seconds=subscription.retry.maximum_backoff_seconds),
        },
    }
    if subscription.dead_letter_topic:
        request["dead_letter_policy"] = {
            "dead_letter_topic": subscriber.topic_path(project, subscription.dead_letter_topic),
            "max_delivery_attempts": subscription.max_delivery_attempts,
        }
    return request


def _create_subscription(subscriber: pubsub_v1.SubscriberClient, request: dict[str, object]) -> None:
    try:
        subscriber.create_subscription(request=request)
    except api_exceptions.AlreadyExists:
        # Definitions may have changed since the last start: apply them afresh.
        subscriber.delete_subscription(subscription=request["name"])
        subscriber.create_subscription(request=request)


def provision_pubsub(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    project: str,
    router_url: str,
    service_urls: dict[str, str],
    delivery: str = "managed",
) -> None:
    """Topics, the trigger's subscription (pushing to the router) and the push subscriptions.

    The trigger's subscription is made as Eventarc makes it ("managed") or as the pipeline
    tunes it ("tuned"): eventarc/definitions.py.
    """
    for topic in TOPICS:
        try:
            publisher.create_topic(name=publisher.topic_path(project, topic))
        except api_exceptions.AlreadyExists:
            pass
    for trigger in TRIGGERS:
        endpoint = f"{router_url}/triggers/{trigger.name}"
        subscription = trigger.subscription(delivery)
        _create_subscription(subscriber, _subscription_request(subscriber, project, subscription, endpoint))
    for subscription in PUSH_SUBSCRIPTIONS:
        endpoint = service_urls[subscription.service].rstrip("/") + subscription.path
        _create_subscription(subscriber, _subscription_request(subscriber, project, subscription, endpoint))
    try:
        subscriber.create_subscription(
            name=subscriber.subscription_path(project, DEAD_LETTER_SUBSCRIPTION),
            topic=subscriber.topic_path(project, DEAD_LETTER_TOPIC),
        )
    except api_exceptions.AlreadyExists:
        pass


def provision_buckets(storage: Storage) -> None:
    for bucket in BUCKETS:
        storage.create_bucket(bucket)
