"""Live previews' side of the control plane: the reload script each page of a live preview carries,
the stream of versions it listens to, and the errors it reports.

The script (static/live.js) is a file of the preview's own origin (or of its path, for the path
form), never inline, so the previews' Content-Security-Policy need not admit inline scripts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from control_plane.errors import field_error
from control_plane.feed import ListenedFeed, Slot
from control_plane.sse import Message
from vibesdk_gcp.errors import InvalidRequest
from vibesdk_gcp.params import RuntimeErrorsParams
from vibesdk_gcp.runs import SessionDoc
from vibesdk_gcp.runs.watches import Listener, ListenerSlots

# The paths the runtime answers inside every live preview (an app's own files there are shadowed).
LIVE_FOLDER = "__vibesdk"
SCRIPT = (Path(__file__).parent / "static" / "live.js").read_bytes()
# Each open page holds a Firestore listener: these are the process's, apart from the API's
# (vibesdk_gcp/runs/watches.py MAX_LISTENERS), and together below a channel's 100 streams.
LIVE_LISTENERS = ListenerSlots(24)
# A page's open stream ends after this long; the browser's EventSource opens the next itself.
LIVE_SECONDS = 300.0
# A page bigger than this is served as it is, without the reload script.
MAX_INJECTED_BYTES = 2 << 20
MAX_REPORT_BYTES = 16 << 10
# Where the head's start tag ends: found in bounded steps, as a page may hold `<head` without an end.
MAX_TAG_BYTES = 1024
HEAD = re.compile(rb"<head([\s/][^>]*)?>", re.I)


def script_tag(base: str, version: int) -> bytes:
    return f'<script src="{base}{LIVE_FOLDER}/live.js" data-base="{base}" data-version="{version}"></script>'.encode()


def inject(html: bytes, base: str, version: int) -> bytes:
    """The page with the reload script first in its head: a classic script, run before the app's
    modules, so the app's first errors are seen."""
    tag = script_tag(base, version)
    start = html.lower().find(b"<head")
    found = HEAD.search(html, start, start + MAX_TAG_BYTES) if start >= 0 else None
    if found is None:
        return tag + html
    return html[: found.end()] + tag + html[found.end() :]


def report_of(body: bytes, base: str) -> RuntimeErrorsParams:
    """A page's report, its sources made paths in the preview (`assets/index-1a2b.js`)."""
    try:
        report = RuntimeErrorsParams.model_validate(json.loads(body), strict=False)
    except (ValueError, RecursionError):
        raise InvalidRequest("a report is a JSON object: {errors: [...], version}") from None
    except ValidationError as error:
        raise field_error(error) from None
    for item in report.errors:
        item.source = _path_in(item.source, base) if item.source else None
    return report


def _path_in(source: str, base: str) -> str:
    """A script's URL as the file's path in the preview (`assets/index-1a2b.js`): by its path alone,
    as the scheme and host a browser saw may not be the ones this process is asked by (a load
    balancer in front)."""
    path = urlsplit(source).path if "://" in source else source
    return path.removeprefix(base) if path.startswith(base) else path


class LiveVersions(ListenedFeed):
    """The preview's version each time the session's document names a new one; `gone` when the
    preview is shut down (its token changed), after which the page stops listening."""

    def __init__(self, listener: Listener, token: str, slot: Slot) -> None:
        super().__init__(listener, slot)
        self._token = token
        self._sent: int | None = None

    async def next(self) -> Sequence[Message]:
        update = await self._listener.take()
        found = [snapshot.to_dict() for snapshot in update.snapshots if snapshot.exists]
        session = SessionDoc.model_validate(found[-1]) if found and found[-1] else None
        if session is None or (session.previewToken or self._token) != self._token or session.preview is None:
            return [Message("gone", "gone", "the preview was shut down")]
        version = session.preview.version
        if version is None or version == self._sent:
            return []
        self._sent = version
        return [Message(str(version), "version", str(version))]
