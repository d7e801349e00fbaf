"""Local Eventarc router: emulator push deliveries in, Eventarc CloudEvents out.

The Pub/Sub emulator pushes each message of a trigger's subscription to
/triggers/{trigger}; the router forwards it to the destination service as the
binary-mode CloudEvent Eventarc would send and answers with the destination's
status, so that a failure is a negative ack, retried (and, where the
subscription has a dead-letter policy, dead-lettered) by the emulator exactly
as on Google Cloud.

By default it delivers as the subscription Eventarc creates does (../shared/DESIGN.md):
unordered (each push is held a random moment, so one session's requests arrive
shuffled), cut off after the 10 s ack deadline while the destination still works
(a negative ack: the message comes back after the backoff), and without a
deliveryAttempt. VIBESDK_EVENTARC_DELIVERY=tuned delivers as the subscription the
pipeline tunes after `terraform apply` (600 s, dead-letter after 5 attempts).

A destination's variable may name several URLs, comma-separated: the instances of one service.
Each delivery, a redelivery included, goes to one of them picked at random, as Cloud Run's load
balancer sends each request to any instance with room: "by default ... requests from the same
client might be handled by different instances", and session affinity, where it is on, is a
cookie that a push never carries (https://cloud.google.com/run/docs/configuring/session-affinity).
Cloud Run never routes to an instance that is gone, and a request with no instance to take it is
queued "up to 3.5 times the average startup time ... or 10 seconds, whichever is greater", then
refused with 429 (https://cloud.google.com/run/docs/about-instance-autoscaling): so a delivery
goes to another instance when its pick does not answer, and while none does it waits up to 10 s
(within the ack deadline) before the 429, a negative ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventarc.cloudevent import message_published
from eventarc.definitions import DELIVERY_MODES, TRIGGERS, PushSubscription, Trigger
from vibesdk_gcp.bounded import BoundedDict
from vibesdk_gcp.envelope import from_push_body
from vibesdk_gcp.errors import ConfigurationError, PoisonMessage
from vibesdk_gcp.metrics import work
from vibesdk_gcp.settings import Settings

logger = logging.getLogger("eventarc.router")

MAX_TRACKED_MESSAGES = 100_000
# How long, at most, a push is held before it is forwarded: enough to shuffle a burst.
SHUFFLE_SECONDS = 0.05
# How long Cloud Run keeps a request pending while no instance can take it, at least.
PENDING_SECONDS = 10.0


class NoInstance(Exception):
    """No instance of the destination took the request within Cloud Run's pending time."""


def delivery_mode(env: dict[str, str]) -> str:
    mode = env.get("VIBESDK_EVENTARC_DELIVERY") or "managed"
    if mode not in DELIVERY_MODES:
        raise ConfigurationError(f"VIBESDK_EVENTARC_DELIVERY must be one of {DELIVERY_MODES}, got {mode!r}")
    return mode


def shuffle_seconds(env: dict[str, str]) -> float:
    raw = env.get("VIBESDK_EVENTARC_SHUFFLE_SECONDS") or str(SHUFFLE_SECONDS)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigurationError(f"VIBESDK_EVENTARC_SHUFFLE_SECONDS must be a number of seconds, got {raw!r}")
    return seconds


def destination_env_key(service: str) -> str:
    """The variable holding a destination's URL: vibesdk-sandbox-job -> VIBESDK_SANDBOX_JOB_URL."""
    return service.upper().replace("-", "_") + "_URL"


class DeliveryAttempts:
    """Counts deliveries per message: the emulator leaves deliveryAttempt out."""

    def __init__(self) -> None:
        self._counts: BoundedDict[str, int] = BoundedDict(MAX_TRACKED_MESSAGES)

    def next(self, message_id: str) -> int:
        count = self._counts.get(message_id, 0) + 1
        self._counts[message_id] = count
        return count


def create_app(
    settings: Settings | None = None, env: dict[str, str] | None = None, routed: tuple[Trigger, ...] = TRIGGERS
) -> Starlette:
    """The router of the `routed` triggers (the pipeline's; the bench's floor loop routes its own),
    its settings and its own variables (the destinations' URLs) read and checked here, at start-up."""
    settings = settings or Settings.from_env()
    env = dict(os.environ if env is None else env)
    triggers = {trigger.name: trigger for trigger in routed}
    destinations = {}
    for trigger in routed:
        key = destination_env_key(trigger.managed.service)
        if key not in env:
            raise KeyError(f"{key} is not set: the router needs the URL of {trigger.managed.service}")
        destinations[trigger.name] = [url.strip() for url in env[key].split(",") if url.strip()]
        if not destinations[trigger.name]:
            raise ConfigurationError(f"{key} names no URL: the router needs at least one of {trigger.managed.service}")
    mode = delivery_mode(env)
    subscriptions: dict[str, PushSubscription] = {t.name: t.subscription(mode) for t in routed}
    shuffle = shuffle_seconds(env)
    attempts = DeliveryAttempts()
    http = httpx.AsyncClient()

    async def deliver(request: Request) -> Response:
        work.add("http.deliveries.eventarc_router")
        trigger: Trigger | None = triggers.get(request.path_params["trigger"])
        if trigger is None:
            return JSONResponse({"error": f"no trigger named {request.path_params['trigger']!r}"}, 404)
        try:
            body = json.loads(await request.body())
            message = from_push_body(body)
        except (json.JSONDecodeError, UnicodeDecodeError, PoisonMessage) as error:
            # Eventarc would not deliver this either: a nack sends it to the dead-letter topic.
            logger.warning("undeliverable push on %s: %s", trigger.name, error)
            return JSONResponse({"error": str(error)}, 400)
        subscription = subscriptions[trigger.name]
        # Pub/Sub puts deliveryAttempt in a push only where a dead-letter policy is set.
        if message.delivery_attempt is None and subscription.dead_letter_topic:
            message = replace(message, delivery_attempt=attempts.next(message.message_id))
        headers, event = message_published(message, settings.project, subscription.topic, body["message"])
        if shuffle > 0 and not subscription.message_ordering:
            await asyncio.sleep(random.uniform(0, shuffle))
        try:
            response = await forward(destinations[trigger.name], json.dumps(event), headers, subscription)
        except NoInstance as error:
            logger.info("delivery of %s on %s found no instance: %s", message.message_id, trigger.name, error)
            return JSONResponse({"error": f"no instance available: {error}"}, 429)
        except httpx.TimeoutException:
            # The ack deadline passed: Pub/Sub takes that as a negative ack and delivers the message
            # again after the backoff, while the first delivery may still be at work.
            logger.info("delivery of %s on %s outlasted its ack deadline", message.message_id, trigger.name)
            return JSONResponse({"error": "ack deadline exceeded"}, 504)
        except httpx.HTTPError as error:
            logger.warning("destination of %s unreachable: %s", trigger.name, error)
            return JSONResponse({"error": f"destination unreachable: {error}"}, 503)
        return Response(response.content, response.status_code, media_type=response.headers.get("content-type"))

    async def forward(
        urls: list[str], body: str, headers: dict[str, str], subscription: PushSubscription
    ) -> httpx.Response:
        """To one instance picked at random; to another when it does not answer; pending while none does."""
        started = time.monotonic()
        pending = min(PENDING_SECONDS, subscription.ack_deadline_seconds)
        while True:
            for url in random.sample(urls, len(urls)):
                left = subscription.ack_deadline_seconds - (time.monotonic() - started)
                try:
                    return await http.post(url, content=body, headers=headers, timeout=max(left, 0.001))
                except httpx.ConnectError as error:
                    refused = error
            if time.monotonic() - started >= pending:
                raise NoInstance(str(refused))
            await asyncio.sleep(0.1)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await http.aclose()

    return Starlette(
        routes=[Route("/triggers/{trigger}", deliver, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )
