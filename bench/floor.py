"""The floor loop: the design's own shape with no application code, on the same emulators.

API handler (one Firestore write, one publish) → push → functions-framework CloudEvent function
(one publish) → push → functions-framework HTTP function (one Firestore write). What the pipeline
costs beyond this is what our code costs.

    uvicorn --factory bench.floor:create_app
    functions-framework --source bench/floor.py --target floor_job --signature-type cloudevent
    functions-framework --source bench/floor.py --target floor_recorder
"""

from __future__ import annotations

import functools
import sys
import uuid
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

from vibesdk_gcp import clients
from vibesdk_gcp.envelope import from_push_body, from_push_bytes
from vibesdk_gcp.settings import Settings

COLLECTION = "benchFloor"
REQUESTS, STATUS = "bench-floor-requests", "bench-floor-status"
UNITS = ("floor-api", "floor-job", "floor-recorder")


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
    def queue() -> str:
        key = str(uuid.uuid4())
        _firestore().collection(COLLECTION).document(key).set({"status": "queued"})
        _publish(REQUESTS, key)
        return f"{COLLECTION}/{key}"

    async def run(request: Request) -> JSONResponse:
        return JSONResponse({"path": await run_in_threadpool(queue)}, 202)

    return Starlette(routes=[Route("/run", run, methods=["POST"])])


@functions_framework.cloud_event
def floor_job(event: CloudEvent) -> None:
    _publish(STATUS, from_push_body(event.data).attributes["id"])


@functions_framework.http
def floor_recorder(request: flask.Request) -> flask.typing.ResponseReturnValue:
    key = from_push_bytes(request.get_data()).attributes["id"]
    _firestore().collection(COLLECTION).document(key).set({"status": "succeeded"})
    return "", 204


def start(stack: object, ports: dict[str, int]) -> None:
    """The three floor units beside the stack, and their topics and push subscriptions."""
    from devstack.config import HOST
    from devstack.stack import PROJECT_ROOT, Stack

    assert isinstance(stack, Stack)
    bin_dir = Path(sys.executable).parent
    source = str(PROJECT_ROOT / "bench" / "floor.py")
    argv = {
        "floor-api": [str(bin_dir / "uvicorn"), "--factory", "bench.floor:create_app", "--host", HOST, "--port"],
        "floor-job": [str(bin_dir / "functions-framework"), "--source", source, "--target", "floor_job"]
        + ["--signature-type", "cloudevent", "--host", HOST, "--port"],
        "floor-recorder": [str(bin_dir / "functions-framework"), "--source", source, "--target", "floor_recorder"]
        + ["--host", HOST, "--port"],
    }
    for unit in UNITS:
        child = stack.supervisor.start(
            unit, argv[unit] + [str(ports[unit])], stack.env | {"PORT": str(ports[unit])}, PROJECT_ROOT
        )
        stack.supervisor.wait_for_port(child, HOST, ports[unit])
    settings = Settings.from_env(stack.env)
    for topic, unit in ((REQUESTS, "floor-job"), (STATUS, "floor-recorder")):
        push_subscription(settings, stack.project, topic, ports[unit])


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
