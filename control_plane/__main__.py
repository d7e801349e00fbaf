"""`python -m control_plane`: serve the API with uvicorn on $PORT, as Cloud Run does."""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from control_plane.app import create_app
from vibesdk_gcp import logs
from vibesdk_gcp.settings import Settings


class HeadersInTime(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request headers trickle in (408).

    uvicorn bounds idle keep-alive connections, not one that sends a byte now and then: enough of
    those would hold every connection the API can take.
    """

    # What a client may take to send a request's headers (a body has its own bound in the app).
    header_seconds: float = Settings.header_timeout_seconds
    _deadline: asyncio.TimerHandle | None = None

    # uvicorn's own signature (and its own ignore): asyncio hands a stream protocol a Transport,
    # narrower than the BaseTransport that asyncio.BaseProtocol declares.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's headers, on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        self._deadline = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.transport.close()


def headers_within(seconds: float) -> type[HeadersInTime]:
    """The protocol, cutting off headers that take longer than `seconds`."""
    return type("HeadersInTime", (HeadersInTime,), {"header_seconds": seconds})


def main() -> None:
    # Read and checked once, at start-up: a bad setting stops the process here, naming its variable.
    settings = Settings.from_env()
    logs.setup(settings.log_name("control-plane"), settings)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep the JSON lines set up above
        access_log=False,
        http=headers_within(settings.header_timeout_seconds),
    )


if __name__ == "__main__":
    main()
