"""Google-signed ID tokens: verified for API callers and for push and Eventarc deliveries.

The signature is checked against Google's published certificates (fetched once an hour), then
the issuer, audience, expiry and the email the token was issued to.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from typing import Any

from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from vibesdk_gcp.errors import Forbidden, ServiceUnavailable, Unauthenticated

ISSUERS = ("accounts.google.com", "https://accounts.google.com")
# Identity-Aware Proxy signs its own assertions (x-goog-iap-jwt-assertion), with its own keys.
IAP_ISSUERS = ("https://cloud.google.com/iap",)
IAP_HEADER = "x-goog-iap-jwt-assertion"
CERTS_TTL_SECONDS = 3600
# A Cloud Run service has two URLs, and a token may name either: the deterministic one
# (https://SERVICE-PROJECTNUMBER.REGION.run.app, what Terraform knows before it exists) and the
# one in status.url (https://SERVICE-HASH-REGIONCODE.a.run.app), which Eventarc signs its tokens
# for when the trigger sets no audience ("If unspecified, the destination URI will be used":
# Eventarc's OidcToken reference). https://cloud.google.com/run/docs/triggering/https-request#deterministic
_STATUS_URL = re.compile(r"https://(?P<service>[a-z0-9-]+)-[a-z0-9]{10}-[a-z]{2,4}\.a\.run\.app")
CLOCK_SKEW_SECONDS = 10

_certs: dict[str, tuple[float, dict[str, str]]] = {}
_certs_lock = threading.Lock()


def _certificates(url: str) -> dict[str, str]:
    with _certs_lock:
        fetched = _certs.get(url)
        if fetched and time.monotonic() - fetched[0] < CERTS_TTL_SECONDS:
            return fetched[1]
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            certs = dict(json.loads(response.read()))
    except (OSError, ValueError) as error:
        raise ServiceUnavailable(f"cannot fetch Google's token certificates: {error}") from error
    with _certs_lock:
        _certs[url] = (time.monotonic(), certs)
    return certs


def bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <token>")
    return token.strip()


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def audience_accepted(audience: object, configured: tuple[str, ...], service: str | None) -> bool:
    """Whether a token's aud names this service: a configured URL, or its own status.url form."""
    if not isinstance(audience, str):
        return False
    url = audience.rstrip("/")
    if url in {c.rstrip("/") for c in configured}:
        return True
    match = _STATUS_URL.fullmatch(url)
    return bool(service and match and match.group("service") == service)


def audiences(value: str | None) -> tuple[str, ...]:
    """VIBESDK_*_AUDIENCE: one URL or several, comma-separated."""
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def verify_google_token(
    token: str,
    audience: str | tuple[str, ...],
    certs_url: str,
    expected_email: str | None = None,
    issuers: tuple[str, ...] = ISSUERS,
    service: str | None = None,
) -> dict[str, Any]:
    """The token's claims; Unauthenticated when it does not hold, Forbidden when it names someone else.

    `audience` is the URL (or URLs) the token must name; with `service`, the status.url form of that
    Cloud Run service is accepted too.
    """
    configured = (audience,) if isinstance(audience, str) else audience
    try:
        claims = dict(
            jwt.decode(token, certs=_certificates(certs_url), audience=None, clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
        )
    except (ValueError, auth_exceptions.GoogleAuthError) as error:
        raise Unauthenticated(f"token refused: {error}") from None
    if not audience_accepted(claims.get("aud"), configured, service):
        raise Unauthenticated(f"token refused: audience {claims.get('aud')!r} is not this service")
    if claims.get("iss") not in issuers:
        raise Unauthenticated("token refused: not issued by Google")
    email = claims.get("email")
    if not email or claims.get("email_verified") is not True:
        raise Unauthenticated("token refused: it names no verified email")
    if expected_email is not None and email != expected_email:
        raise Forbidden(f"token of {email} may not call this endpoint")
    return claims
