"""The floor loop: the design's own shape with no application code, on the same emulators.

API handler (one Firestore write, one publish) → push → functions-framework CloudEvent function
(one publish) → push → functions-framework HTTP function (one Firestore write). What the pipeline
costs beyond this is what our code costs.

Two ways in to the CloudEvent function: `POST /run` publishes to a topic the emulator pushes
straight to it; `POST /routed/run` to a topic of a trigger of its own, which the emulator pushes
to a local Eventarc router (eventarc/router.py, the pipeline's code and settings: the shuffle's
hold, the ack deadline) that forwards the CloudEvent, as the pipeline's requests travel.

    uvicorn --factory bench.floor:create_app
    uvicorn --factory bench.floor:create_router
    functions-framework --source bench/floor.py --target floor_job --signature-type cloudevent
    functions-framework --source bench/floor.py --target floor_recorder
"""

from __future__ import annotations

import functools
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import flask
import functions_framework
from cloudevents.http import CloudEvent
from google.api_core import exceptions as api_exceptions
from google.cloud import firestore, pubsub_v1
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventarc import router
from eventarc.definitions import SANDBOX_JOB_TRIGGER, PushSubscription, Trigger
from vibesdk_gcp import clients
from vibesdk_gcp.envelope import from_push_body, from_push_bytes
from vibesdk_gcp.settings import Settings

COLLECTION = "benchFloor"
REQUESTS, ROUTED_REQUESTS, STATUS = "bench-floor-requests", "bench-floor-routed-requests", "bench-floor-status"
UNITS = ("floor-api", "floor-job", "floor-recorder")
ROUTED_UNITS = (*UNITS, "floor-router")
FLOOR_JOB_SERVICE = "bench-floor-job"


def _floor_subscription(pipeline: PushSubscription) -> PushSubscription:
    return replace(pipeline, name=FLOOR_JOB_SERVICE, topic=ROUTED_REQUESTS, service=FLOOR_JOB_SERVICE)


# The pipeline's trigger, moved to the floor's topic and CloudEvent function: same delivery, either mode.
FLOOR_TRIGGER = Trigger(
    name=FLOOR_JOB_SERVICE,
    event_type=SANDBOX_JOB_TRIGGER.event_type,
    managed=_floor_subscription(SANDBOX_JOB_TRIGGER.managed),
    tuned=_floor_subscription(SANDBOX_JOB_TRIGGER.tuned),
)


@functools.cache
def _firestore() -> firestore.Client:
    return clients.firestore_client(Settings.from_env())


@functools.cache
def _publisher() -> pubsub_v1.PublisherClient:
    return clients.publisher_client(Settings.from_env())


def _publish(topic: str, key: str) -> None:
    publisher = _publisher()
    publisher.publish(publisher.topic_path(Settings.from_env().project, topic), b"{}", id=key).result(10)


def create_app() -> Starlette:
    def queue(topic: str) -> str:
        key = str(uuid.uuid4())
        _firestore().collection(COLLECTION).document(key).set({"status": "queued"})
        _publish(topic, key)
        return f"{COLLECTION}/{key}"

    async def run(request: Request) -> JSONResponse:
        return JSONResponse({"path": await run_in_threadpool(queue, REQUESTS)}, 202)

    async def run_routed(request: Request) -> JSONResponse:
        return JSONResponse({"path": await run_in_threadpool(queue, ROUTED_REQUESTS)}, 202)

    return Starlette(routes=[Route("/run", run, methods=["POST"]), Route("/routed/run", run_routed, methods=["POST"])])


def create_router() -> Starlette:
    """The local Eventarc router, routing the floor's trigger only."""
    return router.create_app(routed=(FLOOR_TRIGGER,))


@functions_framework.cloud_event
def floor_job(event: CloudEvent) -> None:
    _publish(STATUS, from_push_body(event.data).attributes["id"])


@functions_framework.http
def floor_recorder(request: flask.Request) -> flask.typing.ResponseReturnValue:
    key = from_push_bytes(request.get_data()).attributes["id"]
    _firestore().collection(COLLECTION).document(key).set({"status": "succeeded"})
    return "", 204


def start(stack: object, ports: dict[str, int]) -> None:
    """The four floor units beside the stack, their topics, push subscriptions and the floor's trigger."""
    from devstack.config import HOST
    from devstack.provision import _create_subscription, _subscription_request
    from devstack.stack import PROJECT_ROOT, Stack

    assert isinstance(stack, Stack)
    bin_dir = Path(sys.executable).parent
    source = str(PROJECT_ROOT / "bench" / "floor.py")
    uvicorn = [str(bin_dir / "uvicorn"), "--factory"]
    argv = {
        "floor-api": [*uvicorn, "bench.floor:create_app", "--host", HOST, "--port"],
        "floor-job": [str(bin_dir / "functions-framework"), "--source", source, "--target", "floor_job"]
        + ["--signature-type", "cloudevent", "--host", HOST, "--port"],
        "floor-recorder": [str(bin_dir / "functions-framework"), "--source", source, "--target", "floor_recorder"]
        + ["--host", HOST, "--port"],
        # Started as devstack starts the pipeline's router, then the port, as the others.
        "floor-router": [*uvicorn, "bench.floor:create_router", "--host", HOST, "--log-level", "warning", "--port"],
    }
    job_url = {router.destination_env_key(FLOOR_JOB_SERVICE): f"http://{HOST}:{ports['floor-job']}/"}
    for unit in ROUTED_UNITS:
        env = stack.env | {"PORT": str(ports[unit]), "VIBESDK_UNIT": unit} | job_url
        child = stack.supervisor.start(unit, argv[unit] + [str(ports[unit])], env, PROJECT_ROOT)
        stack.supervisor.wait_for_port(child, HOST, ports[unit])
    settings = Settings.from_env(stack.env)
    for topic, unit in ((REQUESTS, "floor-job"), (STATUS, "floor-recorder")):
        push_subscription(settings, stack.project, topic, ports[unit])
    # The floor's trigger provisioned as devstack provisions the pipeline's (devstack/provision.py).
    publisher, subscriber = clients.publisher_client(settings), clients.subscriber_client(settings)
    try:
        publisher.create_topic(name=publisher.topic_path(stack.project, ROUTED_REQUESTS))
    except api_exceptions.AlreadyExists:
        pass
    subscription = FLOOR_TRIGGER.subscription(router.delivery_mode(stack.env))
    endpoint = f"http://{HOST}:{ports['floor-router']}/triggers/{FLOOR_TRIGGER.name}"
    _create_subscription(subscriber, _subscription_request(subscriber, stack.project, subscription, endpoint))


def push_subscription(settings: Settings, project: str, topic: str, port: int) -> None:
    """The topic and a push subscription of the same name to a local unit, as Eventarc would make."""
    from devstack.config import HOST

    publisher, subscriber = clients.publisher_client(settings), clients.subscriber_client(settings)
    path = publisher.topic_path(project, topic)
    try:
        publisher.create_topic(name=path)
        subscriber.create_subscription(
            name=subscriber.subscription_path(project, topic),
            topic=path,
            push_config={"push_endpoint": f"http://{HOST}:{port}/projects/{project}/topics/{topic}"},
            ack_deadline_seconds=60,
        )
    except api_exceptions.AlreadyExists:
        pass
