"""One exception hierarchy; the HTTP edges pick a status for each class."""

from __future__ import annotations

import errno

from pydantic import ValidationError

# What the job itself ran out of (descriptors, processes, memory, disk): no fault of the run's.
EXHAUSTION_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM, errno.ENOBUFS, errno.ENOSPC, errno.EDQUOT}
)


def first_error(error: ValidationError, *prefix: str) -> str:
    """The first thing pydantic refused, as one line: where it is (dotted), and why."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in (*prefix, *first["loc"])) or "body"
    return f"{where}: {first['msg']}"


class VibsdkError(Exception):
    """Base of every error this runtime raises on purpose."""


class InvalidRequest(VibsdkError):
    """The caller sent something we cannot act on (422 at the API)."""


class NotFound(VibsdkError):
    """A session, run, template or file that does not exist (404)."""


class Conflict(VibsdkError):
    """The request is valid but the resource's state forbids it (409)."""


class Unauthenticated(VibsdkError):
    """No credential, or one that does not hold (401)."""


class Forbidden(VibsdkError):
    """A valid credential for someone who may not do this (403)."""


class TooMany(VibsdkError):
    """Over a per-owner limit; retry after `retry_after` seconds (429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooLarge(VibsdkError):
    """A body, file or bundle over its size limit (413)."""


class TooSlow(VibsdkError):
    """A request body that did not arrive in time (408)."""


class ServiceUnavailable(VibsdkError):
    """A Google service we depend on did not answer; the caller may retry (503)."""


class ConfigurationError(VibsdkError):
    """A setting is missing or wrong; raised at start-up."""


class Busy(VibsdkError):
    """Another delivery of the same run is at work: come back later (a negative ack)."""


class PoisonMessage(VibsdkError):
    """A delivered message that can never be processed, however often it comes back."""


class ActionFailed(VibsdkError):
    """A sandbox action ran and failed; the run ends failed with this message."""

    def __init__(self, message: str, result: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.result = result or {}


class Unsupported(ActionFailed):
    """An action that exists in VibSDK but cannot run on this runtime."""


def exhausted(error: BaseException) -> OSError | None:
    """The OSError behind error (itself, or what it was raised from) that says the job ran out
    of a resource; None when there is none."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in EXHAUSTION_ERRNOS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
