"""VibSDK's `runtime_error` webhooks: the event for a new runtime error, and its delivery.

An instance created with `webhookUrl` is told each new runtime error once (by `error_hash`) as
VibSDK's WebhookRuntimeErrorEvent (worker/services/sandbox/sandboxTypes.ts, in both
cloudflare/vibesdk and arun-qikfox/vibesdk). The URL is the tenant's, and the request leaves from
the job itself, so it is held to the egress proxy's address rule (functions/egress.py `blocked`):
https only, to a host whose every address is globally routable unicast, never the metadata server
by name. The request goes to the address that was checked (no second lookup a rebinding DNS could
answer otherwise), with the URL's host as TLS server name, certificate name and Host header.
Loopback targets, over http too, are admitted only with VIBESDK_WEBHOOK_LOOPBACK: the local stack
turns it on, Terraform never sets it, and Cloud Run refuses it (vibesdk_gcp/settings.py).

`deliver` never raises and is bounded: ATTEMPTS tries of at most ATTEMPT_SECONDS each (retried on
connection errors, time-outs, 5xx and 429 only; a time-out retried may reach the receiver twice),
redirects not followed, and BUDGET_SECONDS for the whole call, so a dead webhook never holds a run
long. The time-outs are urllib3's, per socket operation ("the maximum amount of time to wait
between consecutive read operations", urllib3/util/timeout.py): a receiver that answers a byte at a
time, each within ATTEMPT_SECONDS, can stretch its own attempt past the budget.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3

from functions import egress
from vibesdk_gcp.schemas import utcnow
from vibesdk_gcp.settings import Settings

Event = dict[str, Any]

USER_AGENT = "vibesdk-gcp-webhooks/1 (VibSDK runtime on Google Cloud)"
DEFAULT_PORTS = {"https": 443, "http": 80}
ATTEMPTS = 3
ATTEMPT_SECONDS = 3.0
BUDGET_SECONDS = 10.0
BACKOFF_SECONDS = (0.25, 0.5)  # before the second and the third attempt
TOO_MANY_REQUESTS = 429
# What makes two errors the same error: where it is and what it says, never when it was seen nor
# which command saw it (the live rebuild and deployInstance report one broken import alike).
IDENTITY_FIELDS = ("message", "filePath", "line", "column")


def error_hash(error: dict[str, Any]) -> str:
    """The identity of a runtime error, the same each time it is seen again."""
    identity = json.dumps([error.get(key) for key in IDENTITY_FIELDS], separators=(",", ":"))
    return hashlib.sha256(identity.encode()).hexdigest()


def runtime_error_event(instance_id: str, agent_id: str | None, run_id: str, error: dict[str, Any]) -> Event:
    """VibSDK's WebhookRuntimeErrorEvent for one error (a RuntimeError, functions/diagnostics.py)."""
    event: Event = {
        "eventType": "runtime_error",
        "instanceId": instance_id,
        "timestamp": utcnow().isoformat(),
        "payload": {"runId": run_id, "error": dict(error), "instanceInfo": {"instanceId": instance_id}},
    }
    if agent_id is not None:  # zod's .optional(): absent, never null
        event["agentId"] = agent_id
    return event


@dataclass(frozen=True)
class _Target:
    """A webhook URL that was checked, and the address it was checked at."""

    scheme: str
    host: str
    port: int
    address: str
    path: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _target(url: str, settings: Settings, resolve: egress.Resolver) -> _Target | str:
    """Where a webhook to `url` goes, or why it may not go anywhere."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"not a URL ({error})"
    scheme, host = parts.scheme.lower(), (parts.hostname or "").rstrip(".")
    if scheme not in DEFAULT_PORTS or not host:
        return "not an http(s) URL with a host"
    if parts.username is not None or parts.password is not None:
        return "a webhook URL carries no user name or password"
    if host in egress.METADATA_NAMES:
        return f"{host} is the metadata server, never a webhook target"
    if scheme != "https" and not settings.webhook_loopback:
        return "webhooks are sent over https only"
    port = port or DEFAULT_PORTS[scheme]
    try:
        addresses = resolve(host, port)
    except OSError as error:
        return f"{host} does not resolve ({error})"
    if not addresses:
        return f"{host} resolves to nothing"
    if not (settings.webhook_loopback and all(_loopback(address) for address in addresses)):
        if scheme != "https":
            return "webhooks are sent over https only (http to loopback only, with VIBESDK_WEBHOOK_LOOPBACK)"
        # Documentation addresses too (the egress proxy admits them off Cloud Run): they lead nowhere.
        refused = [address for address in addresses if egress.blocked(address)]
        if refused:
            return f"{host} resolves to {', '.join(refused)}, which is not a public address"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme, host, port, addresses[0], path)


def webhook_refusal(url: str, settings: Settings, resolve: egress.Resolver = egress.addresses_of) -> str | None:
    """Why `url` may not be a webhook target, or None when it may."""
    target = _target(url, settings, resolve)
    return target if isinstance(target, str) else None


def _pool(target: _Target) -> urllib3.HTTPConnectionPool:
    if target.scheme == "https":
        # urllib3 checks the certificate against the system's trust store and assert_hostname.
        return urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(target.address, target.port, retries=False)


def _post(pool: urllib3.HTTPConnectionPool, target: _Target, body: bytes, deadline: float) -> str | None:
    """POST one event, retried within the bounds; None once it is taken, else what went wrong."""
    headers = {"Host": target.host_header, "Content-Type": "application/json", "User-Agent": USER_AGENT}
    failure = "not attempted"
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(max(0.0, min(BACKOFF_SECONDS[attempt - 1], deadline - time.monotonic())))
        left = deadline - time.monotonic()
        if left <= 0:
            return f"{failure}; the {BUDGET_SECONDS:g} s budget is spent"
        try:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                timeout=urllib3.Timeout(total=min(ATTEMPT_SECONDS, left)),
                preload_content=False,
            )
        except urllib3.exceptions.SSLError as error:
            return f"TLS failed ({error})"  # a certificate does not get better on a retry
        except (urllib3.exceptions.HTTPError, OSError) as error:
            failure = f"{type(error).__name__}: {error}"
            continue
        response.close()  # the answer's body is not read: a receiver cannot hold the job with it
        if 200 <= response.status < 300:
            return None
        failure = f"answered HTTP {response.status}"
        if 300 <= response.status < 400:
            return failure + " (redirects are not followed)"
        if response.status < 500 and response.status != TOO_MANY_REQUESTS:
            return failure
    return f"{failure} ({ATTEMPTS} attempts)"


def deliver(
    url: str, events: list[Event], settings: Settings, resolve: egress.Resolver = egress.addresses_of
) -> list[str]:
    """POST each event to the webhook; never raises. Short notes of what was not delivered, for the log."""
    if not events:
        return []
    target = _target(url, settings, resolve)
    if isinstance(target, str):
        return [f"webhook not sent: {target}"]
    deadline = time.monotonic() + BUDGET_SECONDS
    notes: list[str] = []
    try:
        with _pool(target) as pool:
            for index, event in enumerate(events):
                if time.monotonic() >= deadline:
                    notes.append(
                        f"webhook to {target.host}: {len(events) - index} events not sent, the budget is spent"
                    )
                    break
                failure = _post(pool, target, json.dumps(event).encode(), deadline)
                if failure is not None:
                    notes.append(
                        f"webhook to {target.host}: event {index + 1} of {len(events)} not delivered: {failure}"
                    )
    except Exception as error:  # a webhook is told on the side: it never fails the run that found the errors
        notes.append(f"webhook to {target.host}: failed ({type(error).__name__}: {error})")
    return notes
