"""runtime_error webhooks: the event VibSDK's schemas take, the targets refused, delivery's bounds."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import urllib3.util.connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from functions import egress, webhooks
from functions.diagnostics import runtime_error
from tests.vibesdk_schemas import PORT, UPSTREAM, assert_valid, problems
from vibesdk_gcp.errors import ConfigurationError
from vibesdk_gcp.settings import Settings

GOOGLE_CLOUD = Settings()  # as on Google Cloud: VIBESDK_WEBHOOK_LOOPBACK off
LOCAL = Settings(webhook_loopback=True)  # as the local stack sets it
PUBLIC = "104.16.1.34"  # globally routable (never contacted: the resolver is the test's)
HOOK_PATH = "/api/webhook/sandbox/agent-1/runtime_error"
HANG = "hang"


def resolver(answers: dict[str, list[str]], asked: list[str] | None = None) -> egress.Resolver:
    def resolve(host: str, port: int) -> list[str]:
        if asked is not None:
            asked.append(host)
        if host in answers:
            return answers[host]
        if host == "localhost" or ":" in host or host.replace(".", "").isdigit():
            return egress.addresses_of(host, port)  # from /etc/hosts or the literal: no DNS server is asked
        raise OSError("no such name")

    return resolve


def an_error(line: int = 12) -> dict[str, Any]:
    return runtime_error(
        "TypeError: Cannot read properties of undefined (reading 'map')",
        "Uncaught TypeError: Cannot read properties of undefined (reading 'map')\n    at App (src/App.tsx:12:5)",
        "browser",
        "src/App.tsx",
        line,
        5,
    )


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers in turn (the last one again), HANG for none."""

    port: int
    answers: list[int | str]
    requests: list[dict[str, Any]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = HOOK_PATH, scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def next_answer(self) -> int | str:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def serve(
    answers: list[int | str], family: int = socket.AF_INET, tls: ssl.SSLContext | None = None
) -> Iterator[Receiver]:
    class Server(http.server.ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            answer = receiver.next_answer()
            if answer == HANG:
                receiver.stopping.wait(30)
                return
            assert isinstance(answer, int)
            self.send_response(answer)
            if 300 <= answer < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = Server(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0), Handler)
    receiver = Receiver(server.server_address[1], answers)
    if tls is not None:
        tls.sni_callback = lambda sock, name, context: receiver.server_names.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve([200])


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    """Receivers with answers of the test's own; each stopped after the test."""
    started: list[Iterator[Receiver]] = []

    def start(answers: list[int | str], family: int = socket.AF_INET, tls: ssl.SSLContext | None = None) -> Receiver:
        started.append(serve(answers, family, tls))
        return next(started[-1])

    yield start
    for running in started:
        next(running, None)


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every connection delivery opens; anything but loopback fails the test before a packet leaves."""
    opened: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(address)
        assert ipaddress.ip_address(address[0]).is_loopback, f"delivery tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    return opened


# --- the event


@pytest.mark.parametrize("agent_id", ["agent-1", None])
def test_a_loopback_receiver_gets_the_event_valid_for_both_versions(receiver: Receiver, agent_id: str | None) -> None:
    error = an_error()
    event = webhooks.runtime_error_event("session-1", agent_id, "run-1", error)

    notes = webhooks.deliver(receiver.url(HOOK_PATH + "?via=test"), [event], LOCAL)

    assert notes == []
    (request,) = receiver.requests
    assert request["path"] == HOOK_PATH + "?via=test"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"].startswith("vibesdk-gcp-webhooks/")
    assert request["body"] == event
    assert_valid("WebhookRuntimeErrorEvent", request["body"])
    assert request["body"]["payload"]["error"] == error
    assert ("agentId" in request["body"]) == (agent_id is not None)
    assert datetime.datetime.fromisoformat(request["body"]["timestamp"]).tzinfo is not None


def test_the_event_schemas_refuse_what_zod_would() -> None:
    event = webhooks.runtime_error_event("session-1", "agent-1", "run-1", an_error())
    name = "WebhookRuntimeErrorEvent"
    assert problems(UPSTREAM, name, event | {"agentId": None}) and problems(PORT, name, event | {"agentId": None})
    assert problems(PORT, name, event | {"eventType": "build_status"})
    assert problems(UPSTREAM, name, {**event, "payload": {**event["payload"], "error": {"message": "x"}}})
    no_instance_id = {**event, "payload": {**event["payload"], "instanceInfo": {}}}
    assert problems(UPSTREAM, name, no_instance_id) and not problems(PORT, name, no_instance_id)


def test_delivery_goes_to_the_address_checked_with_the_urls_host_name(
    receiver: Receiver, connections: list[tuple[str, int]]
) -> None:
    asked: list[str] = []
    url = receiver.url(host="agent.example.test")  # no DNS knows it: only the checked address is used

    notes = webhooks.deliver(
        url,
        [webhooks.runtime_error_event("s", "a", "r", an_error())],
        LOCAL,
        resolver({"agent.example.test": ["127.0.0.1"]}, asked),
    )

    assert notes == [] and asked == ["agent.example.test"]  # one lookup, the check's
    assert connections == [("127.0.0.1", receiver.port)]
    assert receiver.requests[0]["headers"]["Host"] == f"agent.example.test:{receiver.port}"


def test_an_ipv6_loopback_receiver_is_reached_with_the_setting_on(receivers: Callable[..., Receiver]) -> None:
    receiver = receivers([200], socket.AF_INET6)
    url = receiver.url(host="[::1]")
    assert webhooks.deliver(url, [webhooks.runtime_error_event("s", "a", "r", an_error())], LOCAL) == []
    assert receiver.requests[0]["headers"]["Host"] == f"[::1]:{receiver.port}"


def test_the_same_error_seen_again_has_the_same_hash_and_another_line_another() -> None:
    first = an_error()
    time.sleep(0.002)
    again = an_error()
    assert first["timestamp"] != again["timestamp"]
    assert webhooks.error_hash(first) == webhooks.error_hash(again)
    assert webhooks.error_hash(an_error(line=13)) != webhooks.error_hash(first)
    assert webhooks.error_hash(first | {"message": "ReferenceError: x is not defined"}) != webhooks.error_hash(first)
    assert webhooks.error_hash(first | {"source": "npm run build --silent"}) == webhooks.error_hash(first)


# --- refused targets


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:{port}/hook", "https only"),
        ("https://127.0.0.1:{port}/hook", "127.0.0.1, which is not a public address"),
        ("https://localhost:{port}/hook", "which is not a public address"),
        ("https://[::1]:{port}/hook", "::1, which is not a public address"),
        ("http://hooks.example.test/hook", "https only"),
    ],
)
def test_loopback_and_http_are_refused_on_google_cloud_and_nothing_is_sent(
    receiver: Receiver, connections: list[tuple[str, int]], url: str, why: str
) -> None:
    url = url.format(port=receiver.port)
    resolve = resolver({"hooks.example.test": [PUBLIC]})
    refusal = webhooks.webhook_refusal(url, GOOGLE_CLOUD, resolve)
    assert refusal is not None and why in refusal

    notes = webhooks.deliver(url, [webhooks.runtime_error_event("s", "a", "r", an_error())], GOOGLE_CLOUD, resolve)

    assert notes == [f"webhook not sent: {refusal}"]
    assert receiver.requests == [] and connections == []


@pytest.mark.parametrize("settings", [GOOGLE_CLOUD, LOCAL], ids=["google-cloud", "local"])
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://10.0.0.1/hook", "10.0.0.1, which is not a public address"),
        ("https://192.168.1.1/hook", "192.168.1.1, which is not a public address"),
        ("https://[fd00::1]/hook", "fd00::1, which is not a public address"),
        ("https://169.254.169.254/computeMetadata/v1/", "169.254.169.254, which is not a public address"),
        ("https://metadata.google.internal/computeMetadata/v1/", "the metadata server"),
        ("http://METADATA.GOOGLE.INTERNAL./computeMetadata/v1/", "the metadata server"),
        ("https://inward.example.test/hook", "10.0.0.5, which is not a public address"),
        ("https://mixed.example.test/hook", "192.168.0.1, which is not a public address"),
        ("https://doc.example.test/hook", "203.0.113.80, which is not a public address"),
        ("https://loop-and-public.example.test/hook", "127.0.0.1, which is not a public address"),
        ("http://hooks.example.test/hook", "https only"),
        ("ftp://hooks.example.test/hook", "not an http(s) URL"),
        ("https://user:secret@hooks.example.test/hook", "no user name or password"),
        ("https://hooks.example.test:99999/hook", "not a URL"),
        ("https://nowhere.invalid/hook", "does not resolve"),
    ],
)
def test_inward_targets_are_refused_whatever_the_setting_and_nothing_is_sent(
    connections: list[tuple[str, int]], settings: Settings, url: str, why: str
) -> None:
    resolve = resolver(
        {
            "hooks.example.test": [PUBLIC],
            "inward.example.test": ["10.0.0.5"],
            "mixed.example.test": [PUBLIC, "192.168.0.1"],
            "doc.example.test": ["203.0.113.80"],  # what this machine's DNS answers: routed nowhere
            "loop-and-public.example.test": [PUBLIC, "127.0.0.1"],
        }
    )
    refusal = webhooks.webhook_refusal(url, settings, resolve)
    assert refusal is not None and why in refusal, refusal
    notes = webhooks.deliver(url, [webhooks.runtime_error_event("s", "a", "r", an_error())], settings, resolve)
    assert notes == [f"webhook not sent: {refusal}"] and connections == []


@pytest.mark.parametrize("settings", [GOOGLE_CLOUD, LOCAL], ids=["google-cloud", "local"])
def test_https_to_a_name_of_public_addresses_only_is_allowed(settings: Settings) -> None:
    resolve = resolver({"agent.example.test": [PUBLIC, "2606:4700::6810:122"]})
    assert webhooks.webhook_refusal("https://agent.example.test/api/webhook/x/runtime_error", settings, resolve) is None


def test_loopback_webhooks_are_a_setting_off_by_default_and_refused_on_cloud_run() -> None:
    assert Settings.from_env({}).webhook_loopback is False
    assert Settings.from_env({"VIBESDK_WEBHOOK_LOOPBACK": "true"}).webhook_loopback is True
    with pytest.raises(ConfigurationError, match="^VIBESDK_WEBHOOK_LOOPBACK must be true or false"):
        Settings.from_env({"VIBESDK_WEBHOOK_LOOPBACK": "sometimes"})
    with pytest.raises(ConfigurationError, match="^VIBESDK_WEBHOOK_LOOPBACK must be off on Cloud Run"):
        Settings.from_env({"VIBESDK_WEBHOOK_LOOPBACK": "1", "K_SERVICE": "vibesdk-sandbox-job"})


# --- retries and bounds


@pytest.mark.parametrize("first", [500, 503, 429])
def test_a_receiver_that_fails_once_gets_the_event_after_a_retry(
    receivers: Callable[..., Receiver], first: int
) -> None:
    receiver = receivers([first, 200])
    event = webhooks.runtime_error_event("s", "a", "r", an_error())
    assert webhooks.deliver(receiver.url(), [event], LOCAL) == []
    assert [request["body"] for request in receiver.requests] == [event, event]


@pytest.mark.parametrize(("status", "says"), [(404, "HTTP 404"), (302, "redirects are not followed")])
def test_other_answers_are_final_and_redirects_are_not_followed(
    receivers: Callable[..., Receiver], status: int, says: str
) -> None:
    receiver = receivers([status, 200])
    notes = webhooks.deliver(receiver.url(), [webhooks.runtime_error_event("s", "a", "r", an_error())], LOCAL)
    assert len(notes) == 1 and says in notes[0]
    assert [request["path"] for request in receiver.requests] == [HOOK_PATH]


def test_a_receiver_that_keeps_failing_is_tried_three_times(receivers: Callable[..., Receiver]) -> None:
    receiver = receivers([500])
    notes = webhooks.deliver(receiver.url(), [webhooks.runtime_error_event("s", "a", "r", an_error())], LOCAL)
    assert notes == ["webhook to 127.0.0.1: event 1 of 1 not delivered: answered HTTP 500 (3 attempts)"]
    assert len(receiver.requests) == webhooks.ATTEMPTS == 3


def test_a_closed_port_is_retried_and_noted_without_raising() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens on it
    notes = webhooks.deliver(
        f"http://127.0.0.1:{port}/hook", [webhooks.runtime_error_event("s", "a", "r", an_error())], LOCAL
    )
    assert len(notes) == 1 and "NewConnectionError" in notes[0] and "(3 attempts)" in notes[0]


def test_a_receiver_that_hangs_costs_the_call_its_budget_and_no_more(
    receivers: Callable[..., Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "BUDGET_SECONDS", 2.0)  # under one attempt's 3 s: the budget cuts it
    receiver = receivers([HANG])
    events = [webhooks.runtime_error_event("s", "a", "r", an_error(line)) for line in (1, 2, 3)]

    started = time.monotonic()
    notes = webhooks.deliver(receiver.url(), events, LOCAL)
    elapsed = time.monotonic() - started

    assert 1.9 < elapsed < 2.0 + 0.5, elapsed
    assert len(notes) == 2 and "event 1 of 3 not delivered" in notes[0] and "timed out" in notes[0]
    assert notes[1] == "webhook to 127.0.0.1: 2 events not sent, the budget is spent"
    assert len(receiver.requests) == 1


def test_the_default_bounds_fit_the_budget() -> None:
    attempts = webhooks.ATTEMPTS * webhooks.ATTEMPT_SECONDS + sum(webhooks.BACKOFF_SECONDS)
    assert webhooks.ATTEMPTS == 3 and attempts <= webhooks.BUDGET_SECONDS <= 10


# --- TLS


@dataclass(frozen=True)
class Certificates:
    authority: Path
    chain: Path
    key: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A test authority and a server certificate it signed for hooks.example.test."""
    folder = tmp_path_factory.mktemp("webhook-tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook test authority")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.example.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.example.test")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    found = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    found.authority.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    found.chain.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    found.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return found


@pytest.fixture
def tls_receiver(receivers: Callable[..., Receiver], certificates: Certificates) -> Receiver:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.chain, certificates.key)
    return receivers([200], tls=context)


LOOPBACK_NAMES = {"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]}


def test_https_names_the_urls_host_in_sni_host_and_the_certificate_check(
    tls_receiver: Receiver, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.authority))  # the trust store, as OpenSSL reads it
    url = tls_receiver.url(scheme="https", host="hooks.example.test")
    event = webhooks.runtime_error_event("s", "a", "r", an_error())

    assert webhooks.deliver(url, [event], LOCAL, resolver(LOOPBACK_NAMES)) == []
    assert tls_receiver.server_names == ["hooks.example.test"]
    assert tls_receiver.requests[0]["headers"]["Host"] == f"hooks.example.test:{tls_receiver.port}"


@pytest.mark.parametrize(
    ("host", "trusted", "says"),
    [("other.example.test", True, "hostname"), ("hooks.example.test", False, "CERTIFICATE_VERIFY_FAILED")],
)
def test_a_certificate_for_another_name_or_from_an_unknown_authority_sends_nothing(
    tls_receiver: Receiver,
    certificates: Certificates,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    trusted: bool,
    says: str,
) -> None:
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(certificates.authority))
    else:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the system's trust store
    url = tls_receiver.url(scheme="https", host=host)
    notes = webhooks.deliver(
        url, [webhooks.runtime_error_event("s", "a", "r", an_error())], LOCAL, resolver(LOOPBACK_NAMES)
    )
    assert len(notes) == 1 and "TLS failed" in notes[0] and says in notes[0], notes
    assert tls_receiver.requests == []  # no request is written to a server that did not prove its name
