"""The job's end of a Cloud Run sandbox's network (functions/tunnel_agent.py is the other end).

Reads the frames the agent writes on the `sandbox` CLI's standard output: the command's output,
kept up to a cap as functions/sandbox.py's _Capped keeps it, and connections, each handed to the
egress proxy's socket for the command (outside the sandbox, never bound into it), whose answers go
back as frames on the CLI's standard input. The frames come from inside the sandbox, where a
hostile command may forge them: anything malformed ends the tunnel and is told to the command's
output, and a frame can only do what a connection to the proxy can. The job's end of each connection
is closed when the proxy's ends, and at most the proxy's cap of them is open at once: a command that
opens and drops connections in a loop holds none of the job's descriptors.
"""

from __future__ import annotations

import io
import socket
import struct
import threading
from pathlib import Path
from typing import IO

from functions.egress import CONNECTIONS_PER_COMMAND

HEADER = struct.Struct(">cII")  # kind, connection, payload length (functions/tunnel_agent.py)
OUTPUT, OPEN, DATA, CLOSE = b"O", b"N", b"D", b"C"
MAX_FRAME = 1 << 20
CHUNK = 65536
JOIN_SECONDS = 2.0


class Tunnel:
    """Demultiplexes one command's framed output; `data` and `over` as _Capped has them."""

    def __init__(self, stdout: io.BufferedReader, stdin: IO[bytes], proxy_socket: Path, limit: int) -> None:
        self.data = bytearray()
        self.over = False
        self.corrupt: str | None = None
        self._stdout, self._stdin, self._socket, self._limit = stdout, stdin, proxy_socket, limit
        self._write_lock = threading.Lock()
        self._upstreams: dict[int, socket.socket] = {}
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with self._stdout:
                while header := self._exactly(HEADER.size):
                    kind, connection, length = HEADER.unpack(header)
                    if length > MAX_FRAME or kind not in (OUTPUT, OPEN, DATA, CLOSE):
                        self._fail("the sandbox's output is not the agent's frames")
                        return
                    payload = self._exactly(length) if length else b""
                    if payload is None:
                        return
                    if not self._dispatch(kind, connection, payload):
                        return
        finally:
            self._close_all()

    def _dispatch(self, kind: bytes, connection: int, payload: bytes) -> bool:
        if kind == OUTPUT:
            room = self._limit - len(self.data)
            self.data += payload[:room]
            if len(payload) > room:
                self.over = True
                return False
        elif kind == OPEN:
            self._open(connection)
        elif (upstream := self._upstreams.get(connection)) is not None:
            try:
                if kind == DATA:
                    upstream.sendall(payload)
                else:
                    upstream.shutdown(socket.SHUT_WR)
            except OSError:
                self._send(CLOSE, connection)
        return True

    def _open(self, connection: int) -> None:
        if connection in self._upstreams or len(self._upstreams) >= CONNECTIONS_PER_COMMAND:
            self._send(CLOSE, connection)  # what the proxy would turn away, refused before a descriptor
            return
        upstream = socket.socket(socket.AF_UNIX)
        try:
            upstream.connect(str(self._socket))
        except OSError:
            upstream.close()
            self._send(CLOSE, connection)
            return
        self._upstreams[connection] = upstream
        threading.Thread(target=self._answers, args=(connection, upstream), daemon=True).start()

    def _answers(self, connection: int, upstream: socket.socket) -> None:
        try:
            while chunk := upstream.recv(CHUNK):
                self._send(DATA, connection, chunk)
        except OSError:
            pass
        # Only this thread removes the connection, and no OPEN of its number is taken while it is here.
        if self._upstreams.get(connection) is upstream:
            del self._upstreams[connection]
        upstream.close()
        self._send(CLOSE, connection)

    def _send(self, kind: bytes, connection: int, payload: bytes = b"") -> None:
        try:
            with self._write_lock:
                self._stdin.write(HEADER.pack(kind, connection, len(payload)) + payload)
                self._stdin.flush()
        except (OSError, ValueError):
            pass  # the sandbox is gone

    def _exactly(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = self._stdout.read(size - len(data))
            if not chunk:
                if data:
                    self._fail("the sandbox's output ended inside a frame")
                return None
            data += chunk
        return data

    def _fail(self, why: str) -> None:
        self.corrupt = why
        self.data += f"\n[vibesdk: {why}; the network tunnel was closed]\n".encode()[
            : max(0, self._limit - len(self.data))
        ]

    def _close_all(self) -> None:
        for upstream in list(self._upstreams.values()):
            upstream.close()
        try:
            self._stdin.close()
        except OSError:
            pass

    def join(self) -> None:
        self._thread.join(timeout=JOIN_SECONDS)
