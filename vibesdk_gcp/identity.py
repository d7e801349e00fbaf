"""Google-signed ID tokens: verified for API callers and for push and Eventarc deliveries.

The signature is checked against Google's published certificates (fetched once an hour), then
the issuer, audience, expiry and the email the token was issued to.
"""

from __future__ import annotations

import json
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


def verify_google_token(
    token: str,
    audience: str,
    certs_url: str,
    expected_email: str | None = None,
    issuers: tuple[str, ...] = ISSUERS,
) -> dict[str, Any]:
    """The token's claims; Unauthenticated when it does not hold, Forbidden when it names someone else."""
    try:
        claims = dict(
            jwt.decode(
                token, certs=_certificates(certs_url), audience=audience, clock_skew_in_seconds=CLOCK_SKEW_SECONDS
            )
        )
    except (ValueError, auth_exceptions.GoogleAuthError) as error:
        raise Unauthenticated(f"token refused: {error}") from None
    if claims.get("iss") not in issuers:
        raise Unauthenticated("token refused: not issued by Google")
    email = claims.get("email")
    if not email or claims.get("email_verified") is False:
        raise Unauthenticated("token refused: it names no verified email")
    if expected_email is not None and email != expected_email:
        raise Forbidden(f"token of {email} may not call this endpoint")
    return claims
