"""Who may call what: API keys, Google ID tokens, owners, verified pushes, limits and headers."""

from __future__ import annotations

import datetime
import html
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import functions_framework
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt
from starlette.testclient import TestClient

from control_plane import auth
from control_plane.app import create_app
from control_plane.auth import Authenticator
from control_plane.keys import KeyStore
from control_plane.middleware import preview_framing
from control_plane.quota import ActiveRunQuota
from control_plane.service import ControlPlane, Limits
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.errors import Forbidden, TooMany
from vibesdk_gcp.names import REQUESTS_TOPIC
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage

ROOT = Path(__file__).resolve().parent.parent
API = "https://api.example.test"
PUSH_ACCOUNT = "vibesdk-push@project.iam.gserviceaccount.com"
RECORDER = "https://recorder.example.test"


@pytest.fixture(scope="module")
def signing() -> Iterator[tuple[Any, str]]:
    """A test key and its certificate, published the way Google publishes its own."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    body = json.dumps({"test-kid": cert.public_bytes(serialization.Encoding.PEM).decode()}).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    yield crypt.RSASigner.from_string(pem, key_id="test-kid"), f"http://127.0.0.1:{server.server_port}/certs"
    server.shutdown()


def token(signer: Any, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": API,
        "email": "alice@example.com",
        "email_verified": True,
        "iat": now,
        "exp": now + 600,
        "sub": "1",
    } | overrides
    return jwt.encode(signer, claims).decode()


# --- API callers


@pytest.fixture
def cloud(
    settings: Settings, signing: tuple[Any, str], store: RunStore, storage: Storage
) -> Iterator[tuple[TestClient, KeyStore]]:
    """The API configured as on Google Cloud (Firestore and Pub/Sub are still the emulators underneath)."""
    on_cloud = Settings(
        project=settings.project,
        api_token="dev-token",
        public_url=API,
        google_certs_url=signing[1],
        requests_per_minute=600,
        cors_origins=("https://app.example.test",),
        allowed_owners=("@example.com",),  # the operator admits one domain
    )
    assert on_cloud.on_google_cloud
    publisher = clients.publisher_client(settings)
    publisher.create_topic(name=publisher.topic_path(settings.project, REQUESTS_TOPIC))
    keys = KeyStore(clients.firestore_client(settings))
    plane = ControlPlane(
        store, Bus(publisher, settings.project), storage, Limits(max_active_runs=3, max_file_bytes=1000)
    )
    with TestClient(create_app(on_cloud, plane, Authenticator(on_cloud, keys))) as client:
        yield client, keys


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_api_key_issued_used_and_revoked(cloud: tuple[TestClient, KeyStore]) -> None:
    client, keys = cloud
    key_id, key = keys.issue("carol@example.com")
    stored = keys.listing()
    assert key.split("_")[-1] not in json.dumps(stored, default=str)  # only the hash is kept
    created = client.post("/api/agent", json={"templateName": "static-site"}, headers=bearer(key))
    assert created.status_code == 202
    assert keys.revoke(key_id)
    time.sleep(0.01)
    keys._cache.clear()  # as after the cache's few seconds
    assert client.get(f"/api/agent/{created.json()['sessionId']}", headers=bearer(key)).status_code == 401


def test_network_is_a_capability_of_the_key(cloud: tuple[TestClient, KeyStore]) -> None:
    client, keys = cloud
    _, plain = keys.issue("erin@example.com")
    _, offline = keys.issue("frank@example.com", egress=False)
    asks = {
        "templateName": "static-site",
        "action": "executeCommands",
        "params": {"commands": ["true"], "allowNetwork": True},
    }
    assert client.post("/api/agent", json=asks, headers=bearer(plain)).status_code == 202
    refused = client.post("/api/agent", json=asks, headers=bearer(offline))
    assert refused.status_code == 403 and "allowNetwork" in refused.json()["detail"]
    asks["params"]["allowNetwork"] = False
    assert client.post("/api/agent", json=asks, headers=bearer(offline)).status_code == 202


def test_owners_by_id_token_are_only_those_admitted(
    cloud: tuple[TestClient, KeyStore], signing: tuple[Any, str]
) -> None:
    client, _ = cloud
    admitted = client.get("/api/agent", headers=bearer(token(signing[0], email="dana@example.com")))
    assert admitted.status_code == 200
    # Any Google identity can get an ID token, a service account of any project among them.
    stranger = client.get(
        "/api/agent", headers=bearer(token(signing[0], email="x@evil-project.iam.gserviceaccount.com"))
    )
    assert stranger.status_code == 403 and "not an admitted owner" in stranger.json()["detail"]
    unverified = client.get("/api/agent", headers=bearer(token(signing[0], email_verified=None)))
    assert unverified.status_code == 401


def test_no_id_token_owner_by_default_on_google_cloud(settings: Settings) -> None:
    from control_plane.auth import admitted

    closed = replace(settings, firestore_emulator_host=None, pubsub_emulator_host=None)
    with pytest.raises(Forbidden, match="admits no ID token here"):
        admitted(closed, "alice@example.com")
    assert admitted(settings, "alice@example.com") == "alice@example.com"  # a local stack is open
    assert admitted(replace(closed, allowed_owners=("alice@example.com",)), "Alice@example.com")


def test_unknown_and_malformed_keys(cloud: tuple[TestClient, KeyStore]) -> None:
    client, _ = cloud
    assert client.get("/api/agent", headers=bearer("vsk_nope_nope")).status_code == 401
    assert client.get("/api/agent", headers=bearer("vsk_")).status_code == 401
    assert client.get("/api/agent", headers=bearer("vsk_.._secret")).status_code == 401
    assert client.get("/api/agent", headers=bearer("vsk_0123456789abcdef_secret")).status_code == 401
    assert client.get("/api/agent").status_code == 401


def test_development_token_refused_on_google_cloud(cloud: tuple[TestClient, KeyStore]) -> None:
    client, _ = cloud
    response = client.get("/api/agent", headers=bearer("dev-token"))
    assert response.status_code == 401
    assert "refused on Google Cloud" in response.json()["detail"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
        ({"aud": "https://elsewhere.example.test"}, "audience"),
        ({"iss": "https://evil.example.test"}, "not issued by Google"),
        ({"email_verified": False}, "no verified email"),
    ],
)
def test_bad_id_tokens_are_refused(
    cloud: tuple[TestClient, KeyStore], signing: tuple[Any, str], overrides: dict[str, Any], reason: str
) -> None:
    client, _ = cloud
    response = client.get("/api/agent", headers=bearer(token(signing[0], **overrides)))
    assert response.status_code == 401
    assert reason.split()[0].lower() in response.json()["detail"].lower()


def test_identity_aware_proxy_assertion(
    settings: Settings, signing: tuple[Any, str], store: RunStore, storage: Storage
) -> None:
    behind_iap = Settings(
        project=settings.project, iap_audience="/projects/1/global/backendServices/2", iap_certs_url=signing[1]
    )
    plane = ControlPlane(store, Bus(clients.publisher_client(settings), settings.project), storage)
    keys = KeyStore(clients.firestore_client(settings))
    with TestClient(create_app(behind_iap, plane, Authenticator(behind_iap, keys))) as client:
        good = token(signing[0], iss="https://cloud.google.com/iap", aud="/projects/1/global/backendServices/2")
        assert client.get("/api/agent", headers={"x-goog-iap-jwt-assertion": good}).status_code == 200
        forged = token(signing[0], aud="/projects/1/global/backendServices/2")  # not IAP's issuer
        assert client.get("/api/agent", headers={"x-goog-iap-jwt-assertion": forged}).status_code == 401


def test_sessions_belong_to_their_owner(cloud: tuple[TestClient, KeyStore], signing: tuple[Any, str]) -> None:
    client, _ = cloud
    alice, bob = bearer(token(signing[0])), bearer(token(signing[0], email="bob@example.com"))
    created = client.post("/api/agent", json={"templateName": "static-site"}, headers=alice).json()
    session = f"/api/agent/{created['sessionId']}"
    for path in (session, f"{session}/runs/{created['runId']}", f"{session}/preview"):
        assert client.get(path, headers=alice).status_code in (200, 202)
        assert client.get(path, headers=bob).status_code == 404
    assert client.post(f"{session}/actions", json={"action": "getLogs"}, headers=bob).status_code == 404
    assert [s["sessionId"] for s in client.get("/api/agent", headers=alice).json()["sessions"]] == [
        created["sessionId"]
    ]
    assert client.get("/api/agent", headers=bob).json()["sessions"] == []


def test_active_runs_per_owner_are_bounded(cloud: tuple[TestClient, KeyStore], signing: tuple[Any, str]) -> None:
    client, _ = cloud
    dave = bearer(token(signing[0], email="dave@example.com"))
    for _ in range(3):
        assert client.post("/api/agent", json={"templateName": "static-site"}, headers=dave).status_code == 202
    refused = client.post("/api/agent", json={"templateName": "static-site"}, headers=dave)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    # Someone else is not held back by dave's runs.
    assert (
        client.post("/api/agent", json={"templateName": "static-site"}, headers=bearer(token(signing[0]))).status_code
        == 202
    )


def test_written_file_over_limit(cloud: tuple[TestClient, KeyStore], signing: tuple[Any, str]) -> None:
    client, _ = cloud
    alice = bearer(token(signing[0], email=f"{uuid.uuid4().hex}@example.com"))
    created = client.post("/api/agent", json={"templateName": "static-site"}, headers=alice).json()
    files = [{"filePath": "big.txt", "fileContents": "x" * 2000}]
    response = client.post(
        f"/api/agent/{created['sessionId']}/actions",
        json={"action": "writeFiles", "params": {"files": files}},
        headers=alice,
    )
    assert response.status_code == 413 and "big.txt" in response.json()["detail"]


def test_request_rate_is_bounded(settings: Settings, store: RunStore, storage: Storage) -> None:
    local = Settings(
        project=settings.project,
        api_token="t",
        requests_per_minute=3,
        firestore_emulator_host=settings.firestore_emulator_host,
    )
    plane = ControlPlane(store, Bus(clients.publisher_client(settings), settings.project), storage)
    with TestClient(
        create_app(local, plane, Authenticator(local, KeyStore(clients.firestore_client(settings))))
    ) as client:
        answers = [client.get("/api/agent", headers=bearer("t")) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["retry-after"]) >= 1


def test_security_headers_and_cors(cloud: tuple[TestClient, KeyStore]) -> None:
    client, _ = cloud
    response = client.get("/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "sandbox" in client.get("/preview/s/t/index.html").headers["content-security-policy"]
    allowed = client.options(
        "/api/agent", headers={"Origin": "https://app.example.test", "Access-Control-Request-Method": "POST"}
    )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.test"
    other = client.options(
        "/api/agent", headers={"Origin": "https://evil.example.test", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in other.headers


CREATE = json.dumps({"templateName": "static-site"})


def test_cross_site_form_writes_are_refused(cloud: tuple[TestClient, KeyStore], signing: tuple[Any, str]) -> None:
    """With sign-in by cookie (IAP), a cross-site `text/plain` form POST of JSON was answered 202."""
    client, _ = cloud
    owner = bearer(token(signing[0], email=f"{uuid.uuid4().hex}@example.com"))
    attack = client.post("/api/agent", content=CREATE, headers=owner | {"Content-Type": "text/plain", "Origin": "null"})
    assert attack.status_code in (403, 415), attack.text
    assert set(attack.json()) >= {"error", "detail"}
    assert client.get("/api/agent", headers=owner).json()["sessions"] == []  # nothing queued
    no_origin = client.post("/api/agent", content=CREATE, headers=owner | {"Content-Type": "text/plain"})
    assert no_origin.status_code == 415 and no_origin.json()["error"] == "unsupported_media_type"
    assert "application/json" in no_origin.json()["detail"]
    undeclared = client.post("/api/agent", content=CREATE, headers=owner)  # no Content-Type at all
    assert undeclared.status_code == 415
    evil = client.post(
        "/api/agent", json={"templateName": "static-site"}, headers=owner | {"Origin": "https://evil.example"}
    )
    assert evil.status_code == 403 and "https://evil.example" in evil.json()["detail"]
    for lookalike in (f"{API}.evil.example", API.replace("https:", "http:"), "https://app.example.test:8443"):
        refused = client.post("/api/agent", json={"templateName": "static-site"}, headers=owner | {"Origin": lookalike})
        assert refused.status_code == 403, lookalike
    # Sec-Fetch-Site is set by browsers only, and no page can forge it: cross-site without an Origin.
    stripped = client.post(
        "/api/agent", json={"templateName": "static-site"}, headers=owner | {"Sec-Fetch-Site": "cross-site"}
    )
    assert stripped.status_code == 403
    # A body-less write needs no content type (no payload to smuggle); the Origin rule holds for it too.
    assert client.post("/api/agent", headers=owner | {"Origin": "null"}).status_code == 403
    assert client.post("/api/agent", headers=owner).status_code == 422  # past both checks: no JSON to read
    assert client.get("/api/agent", headers=owner).json()["sessions"] == []


def test_same_origin_and_cors_origin_writes_are_accepted(
    cloud: tuple[TestClient, KeyStore], signing: tuple[Any, str]
) -> None:
    client, _ = cloud
    for origin, fetch_site in (
        ("https://app.example.test", "cross-site"),  # one of settings.cors_origins
        (API, "same-origin"),  # settings.public_url
        ("http://testserver", "same-origin"),  # the request's own scheme and Host, as the dashboard sends it
        (None, None),  # curl, the CLI, server-to-server
    ):
        owner = bearer(token(signing[0], email=f"{uuid.uuid4().hex}@example.com"))
        browser = {"Origin": origin, "Sec-Fetch-Site": fetch_site} if origin and fetch_site else {}
        json_utf8 = {"Content-Type": "application/json; charset=utf-8"}
        accepted = client.post("/api/agent", content=CREATE, headers=owner | browser | json_utf8)
        assert accepted.status_code == 202, (origin, accepted.text)
        action = f"/api/agent/{accepted.json()['sessionId']}/actions"
        queued = client.post(action, json={"action": "getLogs"}, headers=owner | browser)
        assert queued.status_code == 202, (origin, queued.text)
        assert len(client.get("/api/agent", headers=owner).json()["sessions"]) == 1
    # Reads are not writes: another origin's GET is for CORS to guard, not refused here.
    owner = bearer(token(signing[0]))
    assert client.get("/api/agent", headers=owner | {"Origin": "https://evil.example"}).status_code == 200


def test_previews_may_be_framed_by_the_control_plane_only(cloud: tuple[TestClient, KeyStore]) -> None:
    client, _ = cloud
    preview = client.get("/preview/s/t/index.html").headers
    assert (
        preview["content-security-policy"] == "sandbox allow-scripts allow-forms allow-popups; frame-ancestors 'self'"
    )
    assert preview["x-frame-options"] == "SAMEORIGIN"
    dashboard = client.get("/dashboard").headers
    assert "default-src 'self'" in dashboard["content-security-policy"]  # frames of its own origin
    assert client.get("/healthz").headers["x-frame-options"] == "DENY"  # nothing else may be framed


def test_previews_on_a_separate_origin(settings: Settings) -> None:
    separate = replace(settings, public_url="https://api.example.test", preview_origin="https://previews.example.test")
    preview_csp, headers = preview_framing(separate)
    assert preview_csp.endswith("frame-ancestors https://api.example.test") and preview_csp.startswith("sandbox ")
    assert "X-Frame-Options" not in headers and headers["X-Content-Type-Options"] == "nosniff"


def test_vibsdks_origin_may_frame_path_previews_when_named(settings: Settings) -> None:
    """VibSDK frames its previews (the tunnelURL in development) on its own origin."""
    named = replace(settings, preview_frame_ancestors=("https://build.example.test",))
    preview_csp, headers = preview_framing(named)
    assert preview_csp.endswith("frame-ancestors 'self' https://build.example.test")
    assert "X-Frame-Options" not in headers  # it could only say SAMEORIGIN, which would refuse VibSDK
    separate = replace(named, public_url="https://api.example.test", preview_origin="https://previews.example.test")
    assert preview_framing(separate)[0].endswith("frame-ancestors https://api.example.test https://build.example.test")


# --- push and Eventarc deliveries


CE_HEADERS = {"ce-specversion": "1.0", "ce-type": "t", "ce-source": "s", "ce-id": "1"}


def verifying_functions(
    monkeypatch: pytest.MonkeyPatch, emulators: dict[str, str], signing: tuple[Any, str], **env: str
) -> dict[str, Any]:
    """functions/main.py's targets as test clients, verifying pushes as on Google Cloud."""
    settings = emulators | {
        "GOOGLE_CLOUD_PROJECT": f"push-{uuid.uuid4().hex[:8]}",
        "VIBESDK_VERIFY_PUSH": "true",
        "VIBESDK_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
        "VIBESDK_GOOGLE_CERTS_URL": signing[1],
    }
    for key, value in (settings | env).items():
        monkeypatch.setenv(key, value)
    # Each app loads functions/main.py afresh: a new job process, with its own settings and context.
    return {
        target: functions_framework.create_app(target, str(ROOT / "functions" / "main.py"), signature).test_client()
        for target, signature in (("status_recorder", "http"), ("sandbox_job", "cloudevent"))
    }


@pytest.fixture
def recorder(emulators: dict[str, str], signing: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    yield verifying_functions(monkeypatch, emulators, signing, VIBESDK_PUSH_AUDIENCE=RECORDER)


def push_token(signer: Any, **overrides: Any) -> str:
    return token(signer, **({"aud": RECORDER, "email": PUSH_ACCOUNT} | overrides))


@pytest.fixture(scope="module")
def forger() -> Any:
    """A key that is not Google's, signing under the kid of Google's (a forged token copies the header)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return crypt.RSASigner.from_string(pem, key_id="test-kid")


def refusal(response: Any) -> str:
    """The reason in a refused delivery's answer (werkzeug's error page: one <p>, HTML-escaped)."""
    found = re.findall(r"<p>(.*)</p>", response.get_data(as_text=True))
    assert len(found) == 1, response.get_data(as_text=True)
    return html.unescape(found[0])


# docs/SECURITY.md: missing, expired, wrong-audience or forged tokens get 401, another account 403.
UNVERIFIED = {
    "missing": (lambda s, f: {}, 401, re.escape("send Authorization: Bearer <token>")),
    "expired": (
        lambda s, f: bearer(push_token(s, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)),
        401,
        r"token refused: Token expired, \d+ < \d+",
    ),
    "wrong-audience": (
        lambda s, f: bearer(push_token(s, aud="https://elsewhere.example.test")),
        401,
        re.escape("token refused: audience 'https://elsewhere.example.test' is not this service"),
    ),
    "forged": (lambda s, f: bearer(push_token(f)), 401, re.escape("token refused: Could not verify token signature.")),
    "garbage": (
        lambda s, f: bearer("not-a-jwt"),
        401,
        re.escape("token refused: Wrong number of segments in token: b'not-a-jwt'"),
    ),
    "wrong-account": (
        lambda s, f: bearer(push_token(s, email="someone@project.iam.gserviceaccount.com")),
        403,
        re.escape("token of someone@project.iam.gserviceaccount.com may not call this endpoint"),
    ),
}


@pytest.mark.parametrize("case", list(UNVERIFIED))
@pytest.mark.parametrize("target", ["status_recorder", "sandbox_job"])
def test_unverified_deliveries_are_refused(
    recorder: Any, signing: tuple[Any, str], forger: Any, case: str, target: str
) -> None:
    make_header, status, reason = UNVERIFIED[case]
    headers = make_header(signing[0], forger) | CE_HEADERS
    response = recorder[target].post("/", data=b"{}", headers=headers, content_type="application/json")
    # Refused as a caller, before the body is decoded (which would answer 400 for this empty push).
    assert response.status_code == status, response.get_data(as_text=True)
    assert re.fullmatch(reason, refusal(response)), refusal(response)


def test_verified_delivery_gets_through(recorder: Any, signing: tuple[Any, str]) -> None:
    # Past verification, an empty push body is refused as such (400), not as a caller (401/403).
    response = recorder["status_recorder"].post(
        "/", data=b"{}", headers=bearer(push_token(signing[0])), content_type="application/json"
    )
    assert response.status_code == 400


def test_active_run_quota_counts_once_a_second_and_confirms_each_refusal() -> None:
    active = {"dave": 0}
    counts: list[str] = []
    now = [0.0]

    def count(owner: str) -> int:
        counts.append(owner)
        return active[owner]

    quota = ActiveRunQuota(count, limit=3, refresh=1.0, clock=lambda: now[0])
    for _ in range(3):
        quota.admit("dave")
        active["dave"] += 1
    assert counts == ["dave"]  # one count, then this process's own admissions
    with pytest.raises(TooMany):
        quota.admit("dave")
    assert counts == ["dave", "dave"]  # the refusal was confirmed by a fresh count
    active["dave"] = 1  # two runs ended: admitted again at once, no waiting for the refresh
    quota.admit("dave")
    now[0] = 5.0
    quota.admit("dave")
    assert counts == ["dave"] * 4


# --- the audiences Google may sign a push token for (docs/DEPLOY.md, defect 10)

JOB_SERVICE = "vibesdk-sandbox-job"
JOB_DETERMINISTIC = f"https://{JOB_SERVICE}-123456789012.europe-west1.run.app"


@pytest.fixture
def job(emulators: dict[str, str], signing: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The sandbox job configured as infra/gcp configures it: the deterministic URL, K_SERVICE set by Cloud Run."""
    apps = verifying_functions(
        monkeypatch, emulators, signing, VIBESDK_PUSH_AUDIENCE=JOB_DETERMINISTIC, K_SERVICE=JOB_SERVICE
    )
    yield apps["sandbox_job"]


@pytest.mark.parametrize(
    ("audience", "email", "status"),
    [
        (JOB_DETERMINISTIC, PUSH_ACCOUNT, 400),
        (JOB_DETERMINISTIC + "/", PUSH_ACCOUNT, 400),
        (f"https://{JOB_SERVICE}-abcdefghij-ew.a.run.app", PUSH_ACCOUNT, 400),  # status.url, Eventarc's default
        (f"https://{JOB_SERVICE}-abcdefghij-ew.a.run.app/", PUSH_ACCOUNT, 400),
        ("https://vibesdk-status-recorder-abcdefghij-ew.a.run.app", PUSH_ACCOUNT, 401),  # another service
        (f"https://{JOB_SERVICE}-abcdefghij-ew.a.run.app.evil.example.test", PUSH_ACCOUNT, 401),
        ("https://recorder.example.test", PUSH_ACCOUNT, 401),
        (JOB_DETERMINISTIC, "someone@project.iam.gserviceaccount.com", 403),
    ],
    ids=[
        "deterministic",
        "deterministic-slash",
        "status-url",
        "status-url-slash",
        "other-service",
        "lookalike",
        "elsewhere",
        "wrong-email",
    ],
)
def test_push_token_audiences_google_may_sign(
    job: Any, signing: tuple[Any, str], audience: str, email: str, status: int
) -> None:
    headers = bearer(token(signing[0], aud=audience, email=email)) | CE_HEADERS
    # Past verification, an empty body is refused as such (400), not as a caller (401/403).
    response = job.post("/", data=b"{}", headers=headers, content_type="application/json")
    assert response.status_code == status, response.text


def test_push_audience_never_comes_from_the_host_header(
    job: Any, signing: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VIBESDK_PUSH_AUDIENCE")
    app = functions_framework.create_app("sandbox_job", str(ROOT / "functions" / "main.py"), "cloudevent").test_client()
    headers = bearer(token(signing[0], aud="http://localhost", email=PUSH_ACCOUNT)) | CE_HEADERS
    response = app.post("/", data=b"{}", headers=headers, content_type="application/json")
    assert response.status_code == 403
    assert "VIBESDK_PUSH_AUDIENCE is not set" in response.text


def test_unverified_pushes_are_refused_on_google_cloud(
    emulators: dict[str, str], signing: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    apps = verifying_functions(monkeypatch, emulators, signing, VIBESDK_VERIFY_PUSH="false", K_SERVICE="x")
    response = apps["status_recorder"].post("/", data=b"{}", content_type="application/json")
    assert response.status_code == 403 and "refused on Google Cloud" in response.text


def test_job_healthz_names_its_isolation_or_why_there_is_none(
    emulators: dict[str, str], signing: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIBESDK_SANDBOX_BACKEND", "auto")
    job = verifying_functions(monkeypatch, emulators, signing, VIBESDK_PUSH_AUDIENCE=RECORDER)["sandbox_job"]
    healthy = job.get("/healthz")
    chosen = healthy.json["isolation"]
    assert chosen["backend"] is not None, f"no isolation backend works here: {chosen['detail']}"
    assert healthy.status_code == 200 and chosen["backend"] == "bubblewrap"
    monkeypatch.setenv("VIBESDK_SANDBOX_BACKEND", "cloud-run")
    monkeypatch.setenv("VIBESDK_CLOUD_RUN_SANDBOX_COMMAND", "/nonexistent/sandbox")
    job = verifying_functions(monkeypatch, emulators, signing, VIBESDK_PUSH_AUDIENCE=RECORDER)["sandbox_job"]
    refused = job.get("/healthz")
    assert refused.status_code == 503
    assert "enable sandboxes on the service" in refused.json["isolation"]["detail"]


def test_concurrent_admissions_never_pass_the_limit() -> None:
    """200 concurrent POSTs of one owner against a limit of 50: the count was taken outside the lock."""
    admitted: list[int] = []
    lock = threading.Lock()

    def count(owner: str) -> int:
        time.sleep(0.01)  # a Firestore aggregation takes a while
        with lock:
            return len(admitted)

    quota = ActiveRunQuota(count, limit=50)

    def post(index: int) -> None:
        try:
            with quota.admission("mallory"):
                time.sleep(0.02)  # the run is written to Firestore a moment after it was admitted
                with lock:
                    admitted.append(index)
        except TooMany:
            return

    threads = [threading.Thread(target=post, args=(i,)) for i in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 50


def test_unauthenticated_requests_are_rate_limited_per_client(
    cloud: tuple[TestClient, KeyStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """12k made-up keys cost 12k Firestore reads and grew the key cache: now 60 a minute per client."""
    client, keys = cloud
    made_up = [bearer(f"vsk_{i:016x}_secret") for i in range(61)]
    # The burst within one instant: on a loaded machine 61 requests took over a second, and the
    # bucket had refilled a token (one a second) by the 61st.
    instant = time.monotonic()
    monkeypatch.setattr(auth, "time", SimpleNamespace(monotonic=lambda: instant))
    answers = [client.get("/api/agent", headers=h | {"X-Forwarded-For": "203.0.113.9"}).status_code for h in made_up]
    monkeypatch.undo()
    assert answers[:60] == [401] * 60 and answers[60] == 429
    _, key = keys.issue("gina@example.com")
    other = client.get("/api/agent", headers=bearer(key) | {"X-Forwarded-For": "198.51.100.2"})
    assert other.status_code == 200


def test_a_scan_of_preview_labels_is_rate_limited_per_client(
    settings: Settings, store: RunStore, storage: Storage
) -> None:
    """Preview hosts ask no credential: each miss is charged to the visitor's address, in a bucket of its own."""
    hosted = replace(settings, public_url=API, preview_domain="previews.example.test", unauthenticated_per_minute=3)
    plane = ControlPlane(store, Bus(clients.publisher_client(settings), settings.project), storage)
    load_balancer = "34.120.0.1"  # the forwarding rule's address, last in every visitor's X-Forwarded-For

    def visit(client: TestClient, visitor: str) -> int:
        label = f"{uuid.uuid4().hex}-{uuid.uuid4().hex[:24]}"
        headers = {"Host": f"{label}.previews.example.test", "X-Forwarded-For": f"{visitor}, {load_balancer}"}
        return client.get("/", headers=headers).status_code

    with TestClient(
        create_app(hosted, plane, Authenticator(hosted, KeyStore(clients.firestore_client(settings))))
    ) as client:
        assert [visit(client, "203.0.113.9") for _ in range(4)] == [404, 404, 404, 429]
        assert visit(client, "198.51.100.2") == 404  # another visitor behind the same load balancer
        # A bucket of its own, never the sign-ins': any web page can make its visitors' browsers miss
        # previews (60 <img> tags), and must not lock them out of the API. A sign-in is still judged.
        signing_in = client.get("/api/agent", headers=bearer("vsk_0_x") | {"X-Forwarded-For": "203.0.113.9"})
        assert signing_in.status_code == 401
        # A scan of tokens by path costs the same (straight to Cloud Run: its last entry is the client).
        scan = [f"/preview/{uuid.uuid4()}/{uuid.uuid4().hex[:24]}/" for _ in range(4)]
        by_path = [client.get(path, headers={"X-Forwarded-For": "192.0.2.7"}).status_code for path in scan]
        assert by_path == [404, 404, 404, 429]
