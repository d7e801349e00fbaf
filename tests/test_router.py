"""The local Eventarc router spreads deliveries over a service's instances as Cloud Run does: never
to one that is gone, and pending a while when none can take them (eventarc/router.py)."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from starlette.testclient import TestClient

from devstack.config import job_instances
from eventarc import router
from eventarc.definitions import SANDBOX_JOB_TRIGGER
from vibesdk_gcp.errors import ConfigurationError
from vibesdk_gcp.names import SANDBOX_JOB_SERVICE
from vibesdk_gcp.settings import Settings


class Instance:
    """A stand-in instance on loopback: answers 204 to every delivery and counts them."""

    def __init__(self, port: int = 0) -> None:
        counted = self.deliveries = [0]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                counted[0] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def live() -> Iterator[Instance]:
    instance = Instance()
    yield instance
    instance.stop()


def routed(*urls: str) -> TestClient:
    env = {router.destination_env_key(SANDBOX_JOB_SERVICE): ",".join(urls), "VIBESDK_EVENTARC_SHUFFLE_SECONDS": "0"}
    return TestClient(router.create_app(Settings.from_env({}), env))


def push(client: TestClient, index: int) -> int:
    body = {"message": {"messageId": f"m-{index}", "data": base64.b64encode(b"{}").decode(), "attributes": {}}}
    return client.post(f"/triggers/{SANDBOX_JOB_TRIGGER.name}", json=body).status_code


def test_deliveries_never_go_to_an_instance_that_is_gone(live: Instance) -> None:
    gone = f"http://127.0.0.1:{free_port()}/"
    with routed(gone, live.url) as client:
        answers = [push(client, index) for index in range(20)]
    assert answers == [204] * 20 and live.deliveries == [20]


def test_a_delivery_waits_for_an_instance_that_starts_within_the_pending_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(router, "PENDING_SECONDS", 5.0)
    port = free_port()
    started: list[Instance] = []
    starting = threading.Timer(1.0, lambda: started.append(Instance(port)))
    starting.start()
    try:
        with routed(f"http://127.0.0.1:{port}/") as client:
            assert push(client, 0) == 204
    finally:
        starting.join()
        for instance in started:
            instance.stop()


def test_with_no_instance_a_delivery_is_refused_with_429_after_the_pending_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(router, "PENDING_SECONDS", 1.0)
    with routed(f"http://127.0.0.1:{free_port()}/", f"http://127.0.0.1:{free_port()}/") as client:
        began = time.monotonic()
        assert push(client, 0) == 429
        assert time.monotonic() - began >= 1.0


def test_a_destination_naming_no_url_is_refused_at_start_up_naming_its_variable() -> None:
    key = router.destination_env_key(SANDBOX_JOB_SERVICE)
    with pytest.raises(ConfigurationError, match=f"{key} names no URL"):
        router.create_app(Settings.from_env({}), {key: " , "})


@pytest.mark.parametrize("raw", ["0", "10", "two", "-1"])
def test_a_job_instance_count_out_of_range_is_refused_naming_its_variable(raw: str) -> None:
    with pytest.raises(ConfigurationError, match=f"VIBESDK_JOB_INSTANCES must be a number from 1 to 9, got '{raw}'"):
        job_instances({"VIBESDK_JOB_INSTANCES": raw})
