"""The egress proxy: a sandboxed command's only way out, to allow-listed hosts only.

A command never shares the job's network. When its run asks for network, it gets a Unix socket
in its own /tmp that leads here (functions/egress_bridge.py turns it into a local port inside
the sandbox, and HTTP_PROXY / HTTPS_PROXY / npm's and pip's proxy settings point at that port).
The proxy takes HTTPS through CONNECT only, resolves the name itself, admits only allow-listed
names on allowed ports, and refuses loopback, link-local (169.254.0.0/16, the metadata server),
private, shared and unique-local addresses whatever a name resolves to, and the metadata server
by name; it connects to the address it checked, so a second lookup cannot change the answer.
Each refusal is logged with the run's sessionId and runId, and told to the command in the
answer's status line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vibesdk_gcp import logs
from vibesdk_gcp.settings import Settings

logger = logging.getLogger("functions.egress")

ALLOWED_PORTS = frozenset({443})
BLOCKED_NAMES = frozenset({"metadata.google.internal", "metadata", "localhost"})
# Never a destination, whatever a name resolves to.
BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)
HEAD_LIMIT_BYTES = 8192
CONNECT_TIMEOUT_SECONDS = 10.0

Resolver = Callable[[str, int], list[str]]


def default_allow_list() -> tuple[str, ...]:
    """The registries the image's package managers use by default: npm's and pip's own."""
    hosts: list[str] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        registry = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, timeout=20)
        host = urlsplit(registry.stdout.strip()).hostname
        if registry.returncode == 0 and host:
            hosts.append(host)
    with contextlib.suppress(ImportError):
        from pip._internal.models.index import PyPI  # pip's own default index and file host

        hosts += [PyPI.netloc, PyPI.file_storage_domain]
    return tuple(dict.fromkeys(hosts))


def allow_list(setting: str | None) -> tuple[str, ...]:
    """VIBESDK_EGRESS_ALLOW (comma-separated names, `*.` for subdomains), else the registries."""
    if setting:
        return tuple(name.strip().lower().rstrip(".") for name in setting.split(",") if name.strip())
    return default_allow_list()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    address: str | None = None
    port: int = 0


def _resolve(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def blocked(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in BLOCKED_NETWORKS if network.version == ip.version)


def _listed(host: str, allow: Iterable[str]) -> bool:
    return any(host == name or (name.startswith("*.") and host.endswith(name[1:])) for name in allow)


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{target!r} is not host:port")
    return host.strip("[]").lower().rstrip("."), int(port)


def decide(target: str, allow: Iterable[str], resolve: Resolver = _resolve) -> Decision:
    """Whether a CONNECT to host:port may go out, and to which address."""
    try:
        host, port = _split(target)
    except ValueError as error:
        return Decision(False, str(error))
    if host in BLOCKED_NAMES:
        return Decision(False, f"{host} is never reachable from a sandbox")
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return Decision(False, f"{host} is an address: only allow-listed names are reachable")
    if port not in ALLOWED_PORTS:
        return Decision(False, f"port {port} is not allowed (only {sorted(ALLOWED_PORTS)})")
    if not _listed(host, allow):
        return Decision(False, f"{host} is not on the egress allow-list")
    try:
        addresses = resolve(host, port)
    except OSError as error:
        return Decision(False, f"{host} does not resolve ({error})")
    refused = [address for address in addresses if blocked(address)]
    if refused or not addresses:
        return Decision(False, f"{host} resolves to {', '.join(refused) or 'nothing'}, which a sandbox may not reach")
    return Decision(True, "allowed", addresses[0], port)


class EgressProxy:
    """An HTTP CONNECT proxy on Unix sockets, one socket per command, served from one thread."""

    def __init__(self, allow: tuple[str, ...], resolve: Resolver = _resolve) -> None:
        self.allow = allow
        self._resolve = resolve
        self._loop = asyncio.new_event_loop()
        self._servers: dict[str, asyncio.AbstractServer] = {}
        threading.Thread(target=self._loop.run_forever, name="egress-proxy", daemon=True).start()

    def open(self, path: Path, session_id: str, run_id: str) -> None:
        """Listen on `path` for one command of one run; anyone in the sandbox may connect."""

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_unix_server(
                functools.partial(self._serve, ids=(session_id, run_id)), str(path), limit=HEAD_LIMIT_BYTES
            )

        self._servers[str(path)] = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        os.chmod(path, 0o666)

    def close(self, path: Path) -> None:
        server = self._servers.pop(str(path), None)
        if server is not None:
            self._loop.call_soon_threadsafe(server.close)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ids: tuple[str, str]) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT_SECONDS)
            method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method.upper() != "CONNECT":
                await self._refuse(writer, ids, target, "only HTTPS through CONNECT goes out", 405)
                return
            decision = await self._loop.run_in_executor(None, decide, target, self.allow, self._resolve)
            if not decision.allowed or decision.address is None:
                await self._refuse(writer, ids, target, decision.reason)
                return
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(decision.address, decision.port), CONNECT_TIMEOUT_SECONDS
            )
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))

    async def _refuse(
        self, writer: asyncio.StreamWriter, ids: tuple[str, str], target: str, reason: str, status: int = 403
    ) -> None:
        with logs.log_context(sessionId=ids[0], runId=ids[1]):
            logger.warning("egress refused to %s: %s", target, reason)
        text = f"egress refused: {reason}"
        body = (text + "\n").encode()
        writer.write(f"HTTP/1.1 {status} {text}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        writer.write(body)
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


@functools.cache
def proxy() -> EgressProxy:
    """This process's proxy, made on first use with the allow-list of its settings."""
    allow = allow_list(Settings.from_env().egress_allow)
    logger.info("egress allow-list: %s", ", ".join(allow) or "(empty)")
    return EgressProxy(allow)
