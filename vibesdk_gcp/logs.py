"""One JSON object a line, in the shape Cloud Logging reads, with the run it is about.

Every line carries severity, message, time and the unit; lines about a run carry sessionId and
runId, and `logging.googleapis.com/trace` when a trace is known. The trace travels from the API
request (X-Cloud-Trace-Context or traceparent, else a new one) through the Pub/Sub attributes to
the job and the recorder, so one id finds a run's lines in all three units.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

from vibesdk_gcp.settings import Settings

TRACE_ATTRIBUTE = "traceId"
_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("vibesdk_log_context", default=None)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def trace_from_headers(headers: Mapping[str, str]) -> str:
    """The request's trace id (Cloud Run's header, then W3C traceparent), or a new one."""
    cloud = headers.get("x-cloud-trace-context", "").split("/", 1)[0]
    if re.fullmatch(r"[0-9a-f]{32}", cloud):
        return cloud
    parent = _TRACEPARENT.match(headers.get("traceparent", ""))
    return parent.group(1) if parent else secrets.token_hex(16)


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Fields (traceId, sessionId, runId) added to every line logged inside the block."""
    token = _context.set((_context.get() or {}) | {key: value for key, value in fields.items() if value})
    try:
        yield
    finally:
        _context.reset(token)


def current(field: str) -> str | None:
    return (_context.get() or {}).get(field)


class CloudLoggingFormatter(logging.Formatter):
    def __init__(self, unit: str, project: str | None) -> None:
        super().__init__()
        self._unit = unit
        self._project = project

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "unit": self._unit,
            "logger": record.name,
        }
        fields = dict(_context.get() or {})
        trace = fields.pop(TRACE_ATTRIBUTE, None)
        if trace:
            entry["logging.googleapis.com/trace"] = (
                f"projects/{self._project}/traces/{trace}" if self._project else trace
            )
            entry[TRACE_ATTRIBUTE] = trace
        entry.update(fields)
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(unit: str, settings: Settings) -> None:
    """Send this process's logging to stdout as JSON lines (Cloud Run ships stdout to Cloud Logging)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(unit, settings.project))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
