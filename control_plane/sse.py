"""Server-Sent Events: the frames (https://html.spec.whatwg.org/multipage/server-sent-events.html), and a
stream of them from a source, kept alive by comments and ended after a set time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

MEDIA_TYPE = "text/event-stream"
# Proxies and Cloud Run's front end cut a stream that sends nothing for a while.
KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keep-alive\n\n"
# The line ends the format knows; str.splitlines would also split on \x0b, \x1c and others.
LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Message:
    id: str
    event: str
    data: str


class Source(Protocol):
    """Messages as they come, in batches; `next` may be cut short (a timeout) without losing any."""

    async def __aenter__(self) -> Source: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def next(self) -> Sequence[Message]: ...


def frame(message: Message) -> bytes:
    assert not LINE_END.search(message.id + message.event), f"an id or event name holds a line end: {message}"
    lines = [f"id: {message.id}", f"event: {message.event}"]
    lines += [f"data: {line}" for line in LINE_END.split(message.data)]
    return ("\n".join(lines) + "\n\n").encode()


async def stream(source: Source, lifetime: float, every: float = KEEPALIVE_SECONDS) -> AsyncGenerator[bytes, None]:
    """The source's messages as frames, a comment when `every` s pass without one, for `lifetime` s.

    The caller enters the source, so that a refusal is an answer rather than an empty 200 (the
    headers go before the first frame); it is left here when the stream ends, however it ends: when
    the client goes, Starlette cancels the response, and the cancellation reaches the wait below. A
    client that stops reading holds this generator at a `yield`; a task of its own leaves the source
    at the deadline all the same (the source takes being left twice).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lifetime
    closer = asyncio.create_task(leave_at(source, deadline))
    try:
        while (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(min(every, left)):
                    messages = await source.next()
            except TimeoutError:
                if deadline - loop.time() > 0:
                    yield KEEPALIVE
                continue
            for message in messages:
                yield frame(message)
    finally:
        closer.cancel()
        await source.__aexit__(None, None, None)


class EventStream(StreamingResponse):
    """The stream of an entered source as a response, which leaves the source however it ends: also
    when its body is never read (the client gone before it, or with the headers unsent)."""

    def __init__(self, source: Source, lifetime: float, headers: Mapping[str, str] | None = None) -> None:
        self._source = source
        self._frames = stream(source, lifetime)
        super().__init__(self._frames, media_type=MEDIA_TYPE, headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A generator never started runs no `finally` of its own: the source is left here too.
            await self._frames.aclose()
            await self._source.__aexit__(None, None, None)


async def leave_at(source: Source, deadline: float) -> None:
    await asyncio.sleep(deadline - asyncio.get_running_loop().time())
    await source.__aexit__(None, None, None)
