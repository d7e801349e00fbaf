"""Who is calling: an API key, a Google-signed ID token, or (locally only) the development token."""

from __future__ import annotations

import hmac
import threading
import time

from control_plane.keys import PREFIX, Caller, KeyStore
from vibesdk_gcp.bounded import BoundedDict
from vibesdk_gcp.errors import Forbidden, TooMany, Unauthenticated
from vibesdk_gcp.identity import IAP_ISSUERS, audiences, bearer, looks_like_jwt, verify_google_token
from vibesdk_gcp.settings import Settings

LOCAL_OWNER = "local"


class Authenticator:
    def __init__(self, settings: Settings, keys: KeyStore) -> None:
        self._settings = settings
        self._keys = keys

    def caller(self, authorization: str | None, iap_assertion: str | None = None) -> Caller:
        token = bearer(authorization) if authorization else ""
        if token.startswith(PREFIX + "_") and not (iap_assertion and self._settings.iap_audience):
            return self._keys.caller(token)
        return Caller(self.owner(authorization, iap_assertion))

    def owner(self, authorization: str | None, iap_assertion: str | None = None) -> str:
        settings = self._settings
        if iap_assertion and settings.iap_audience:
            # Behind Identity-Aware Proxy: the proxy's signed assertion names the user.
            claims = verify_google_token(
                iap_assertion, settings.iap_audience, settings.iap_certs_url, issuers=IAP_ISSUERS
            )
            return str(claims["email"])
        if authorization is None and settings.api_token is None and not settings.on_google_cloud:
            return LOCAL_OWNER  # a local stack started without a token is open, as documented
        token = bearer(authorization)
        if token.startswith(PREFIX + "_"):
            return self._keys.owner_of(token)
        if looks_like_jwt(token):
            accepted = audiences(settings.api_audience) or (settings.public_url,)
            claims = verify_google_token(token, accepted, settings.google_certs_url, service=settings.service)
            return admitted(settings, str(claims["email"]))
        if settings.api_token and hmac.compare_digest(token.encode(), settings.api_token.encode()):
            if settings.on_google_cloud:
                raise Unauthenticated("the development token is refused on Google Cloud: use an API key or an ID token")
            return LOCAL_OWNER
        raise Unauthenticated("unknown token")


def admitted(settings: Settings, email: str) -> str:
    """The owner an ID token names, if the operator admitted them (VIBESDK_ALLOWED_OWNERS)."""
    allowed = settings.allowed_owners
    if not allowed:
        if settings.on_google_cloud:
            raise Forbidden(f"{email} is not an admitted owner: VIBESDK_ALLOWED_OWNERS admits no ID token here")
        return email
    domain = "@" + email.rpartition("@")[2].lower()
    if email.lower() not in allowed and domain not in allowed:
        raise Forbidden(f"{email} is not an admitted owner (VIBESDK_ALLOWED_OWNERS)")
    return email


# Buckets kept at most; the stalest go first (a full bucket is what a forgotten one becomes).
MAX_BUCKETS = 10_000


class RateLimiter:
    """A token bucket per owner (or per client address): `per_minute` requests a minute, in bursts of as many."""

    def __init__(self, per_minute: int) -> None:
        self._rate = per_minute / 60.0
        self._capacity = float(per_minute)
        self._buckets: BoundedDict[str, tuple[float, float]] = BoundedDict(MAX_BUCKETS)
        self._lock = threading.Lock()

    def take(self, owner: str, cost: int = 1) -> None:
        """Spend `cost` tokens of the owner's bucket (0: only check there is one left)."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(owner, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - last) * self._rate)
            self._buckets[owner] = (tokens if tokens < 1 else tokens - cost, now)
            if tokens < 1:
                raise TooMany("request rate over the limit", retry_after=max(1, round((1 - tokens) / self._rate)))
