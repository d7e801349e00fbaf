"""Preview naming: a preview's host label and its parse back, and the URLs a preview is served at.

A preview is served by host, `{label}.{VIBESDK_PREVIEW_DOMAIN}`, one origin per preview, and by path,
`{public}/preview/{sessionId}/{token}/` (the tunnel URL). The label is the session's uuid without
dashes, "-" and the preview's token: 32 + 1 + 24 = 57 characters, within a DNS label's 63.
"""

from __future__ import annotations

import re
import secrets
import uuid

from vibesdk_gcp.settings import Settings

TOKEN_BYTES = 12
TOKEN = re.compile(rf"[0-9a-f]{{{2 * TOKEN_BYTES}}}")
LABEL = re.compile(rf"([0-9a-f]{{32}})-({TOKEN.pattern})")
# Browsers resolve these to loopback without DNS (RFC 6761), and no certificate serves them.
LOCAL_DOMAIN = re.compile(r"(.+\.)?localhost(:\d+)?")
# A Host header the API may answer: a name or an IP literal, and an optional port.
HOST = re.compile(r"([a-z0-9_-]+(\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\])(:\d{1,5})?")


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def label_of(session_id: str, token: str) -> str | None:
    """The preview's host label; None for a session id that is no uuid4, or a token of an older release."""
    try:
        session = uuid.UUID(session_id)
    except ValueError:
        return None
    if str(session) != session_id or session.version != 4 or not TOKEN.fullmatch(token):
        return None
    return f"{session.hex}-{token}"


def parse_label(label: str) -> tuple[str, str] | None:
    """(session id, token) of a host label, or None when the label is none of ours."""
    found = LABEL.fullmatch(label)
    if not found:
        return None
    session = uuid.UUID(hex=found[1])
    # The control plane makes uuid4 session ids only: another version or variant is no session.
    if session.version != 4:
        return None
    return str(session), found[2]


def host_label(host: str, domain: str) -> str | None:
    """What precedes `.{domain}` in a Host header ("" for the domain itself), or None for a host not
    under the preview domain.

    The port is cut at the first ':' whatever follows it (empty, not a number): a host under the
    domain on any port, or on none, is a preview's, never the API's.
    """
    name = _hostname(domain)
    host = _hostname(host).rstrip(".")
    if host == name:
        return ""
    return host.removesuffix("." + name) if host.endswith("." + name) else None


def is_preview_host(host: str, domain: str) -> bool:
    """Whether the previews' site answers this Host: one under the preview domain, or one that is no
    host name at all (`a.example@evil`), which the control plane's own name never is. No Host: the API."""
    return host_label(host, domain) is not None or (bool(host) and not HOST.fullmatch(host.lower()))


def _hostname(host: str) -> str:
    return host.lower().partition(":")[0]


def token_of(url: str) -> str | None:
    """The token in a preview URL of either form (by host or by path), or None."""
    found = re.search(rf"[/-]({TOKEN.pattern})[./]", url)
    return found[1] if found else None


def preview_scheme(domain: str) -> str:
    return "http" if LOCAL_DOMAIN.fullmatch(domain) else "https"


def tunnel_url(settings: Settings, session_id: str, token: str) -> str:
    """The preview by path, on the control plane (or VIBESDK_PREVIEW_ORIGIN): always served."""
    return f"{settings.preview_origin or settings.public_url}/preview/{session_id}/{token}/"


def preview_url(settings: Settings, session_id: str, token: str) -> str:
    """The preview on its own origin when a preview domain is set (and the names allow a label), else by path."""
    label = label_of(session_id, token)
    if not settings.preview_domain or label is None:
        return tunnel_url(settings, session_id, token)
    return f"{preview_scheme(settings.preview_domain)}://{label}.{settings.preview_domain}/"
