"""The egress proxy: a sandboxed command's only way out, to allow-listed hosts only.

A command never shares the job's network. When its run asks for network, it gets a Unix socket
in its own /tmp that leads here (functions/egress_bridge.py turns it into a local port inside
the sandbox, and HTTP_PROXY / HTTPS_PROXY / npm's and pip's proxy settings point at that port).
The proxy takes HTTPS through CONNECT only, resolves the name itself, admits only allow-listed
names on allowed ports, and only globally routable unicast addresses whatever a name resolves to
(no loopback, link-local 169.254.0.0/16 and so the metadata server, private, shared, unique-local,
site-local, benchmarking or special-purpose address, and no IPv6 form that embeds such an IPv4:
mapped, translated, compatible, NAT64, 6to4, Teredo; the IPv4 documentation ranges, routed nowhere,
are the one exception, see DOCUMENTATION_NETWORKS); it refuses the metadata server by name, and
connects to the address it checked, so a second lookup cannot change the answer.

After its 200 it reads the client's TLS ClientHello and lets the tunnel on only when the
ClientHello's server name (SNI) is the CONNECT host: a client cannot CONNECT to a registry and then
ask the registry's content network for another site by SNI. What it cannot see is the name inside
the encrypted stream (an HTTP Host header sent to another site of the same content network): that
would take breaking TLS, which the proxy does not do; the allow-list (the package registries only)
bounds it to the networks those registries use.

A command's connections are bounded (CONNECTIONS_PER_COMMAND on its socket, CONNECTIONS_PER_OWNER
across its owner's sockets), and the proxy takes no connection when the job comes near its
descriptor limit: a flood of connections cannot take the job's descriptors from other runs.
Each refusal is logged with the run's sessionId and runId (a flood of connections once a run),
and told to the command in the answer's status line (a refused server name by a TLS alert).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import re
import resource
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from vibesdk_gcp import logs
from vibesdk_gcp.bounded import BoundedDict
from vibesdk_gcp.settings import Settings

logger = logging.getLogger("functions.egress")

ALLOWED_PORTS = frozenset({443})
# The metadata server's names (its address, link-local 169.254.169.254, is refused by `blocked`).
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata"})
BLOCKED_NAMES = METADATA_NAMES | {"localhost"}
# Never a destination, whatever a name resolves to: a floor under the `is_global` check below,
# including what Python 3.11 wrongly counts as global (192.0.0.0/24, fec0::/10, IPv4 multicast).
BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/96",
        "::ffff:0:0:0/96",
        "64:ff9b:1::/48",
        "3fff::/20",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
# Not global, and refused on Google Cloud: the IPv4 documentation ranges (RFC 5737) lead nowhere on
# the internet, but a development machine's registry gateway may answer there (the machines this
# project is built on answer every registry with 203.0.113.80), so off Google Cloud only they are
# admitted. Never an embedded form of them: plain or IPv4-mapped addresses only.
DOCUMENTATION_NETWORKS = tuple(
    ipaddress.ip_network(network) for network in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)
# NAT64's well-known prefix: a translator takes the connection to the IPv4 in its last 32 bits.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
HEAD_LIMIT_BYTES = 8192
CONNECT_TIMEOUT_SECONDS = 10.0

# npm opens at most 15 sockets at a time (its `maxsockets`), pip a few: twice npm's on one socket
# leaves room for both, and an owner's commands at once share twice that.
CONNECTIONS_PER_COMMAND = 32
CONNECTIONS_PER_OWNER = 64
# The job needs descriptors of its own (its Firestore, Pub/Sub and Storage clients, each command's
# pipes and workspace files): the proxy takes no connection that would leave the job fewer than a
# quarter of its soft RLIMIT_NOFILE, and never fewer than 256 (at the common 1024, a quarter is
# exactly that; more would leave the proxy too little to serve a few installs at once).
DESCRIPTOR_RESERVE_SHARE = 4
DESCRIPTOR_RESERVE_MIN = 256
# Refusals are logged once a run: this many runs are remembered (a bound on the memory it takes).
REMEMBERED_RUNS = 1024

TLS_HANDSHAKE = 22
TLS_CLIENT_HELLO = 1
TLS_SERVER_NAME = 0
TLS_HOST_NAME = 0
TLS_ENCRYPTED_CLIENT_HELLO = 0xFE0D
TLS_RECORD_LIMIT_BYTES = 2**14  # the most a TLS plaintext record may carry (RFC 8446, 5.1)
TLS_HEADER_BYTES = 5
CLIENT_HELLO_LIMIT_BYTES = TLS_HEADER_BYTES + TLS_RECORD_LIMIT_BYTES
# A fatal unrecognized_name alert: what the command's TLS library reports when its SNI is refused.
TLS_UNRECOGNIZED_NAME_ALERT = bytes([21, 3, 3, 0, 2, 2, 112])
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")

Resolver = Callable[[str, int], list[str]]
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Dialer = Callable[[str, int], Awaitable[Streams]]


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
    host: str = ""


def addresses_of(host: str, port: int) -> list[str]:
    """The addresses a name resolves to, as a socket would connect to them."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


# --- which addresses a sandbox may reach


def _global_unicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    special = ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_link_local or ip.is_loopback
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    floor = any(ip in network for network in BLOCKED_NETWORKS if network.version == ip.version)
    return ip.is_global and not (special or site_local or ip.is_private or floor)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (compatible, translated, 6to4, Teredo)."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    embedded = [low32] if int(ip) >> 32 in (0, 0xFFFF0000) else []  # ::a.b.c.d, ::ffff:0:a.b.c.d
    if ip.sixtofour:
        embedded.append(ip.sixtofour)
    if ip.teredo:
        embedded += ip.teredo  # the Teredo server and the (deobfuscated) client
    return embedded  # 6to4 and Teredo are admitted only when every IPv4 they carry is global


def blocked(address: str, documentation: bool = False) -> bool:
    """Whether a sandbox may not reach `address`: anything but a globally routable unicast one
    (and, with `documentation`, an IPv4 documentation address: off Google Cloud only)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # the socket goes to the IPv4 address itself
    if isinstance(ip, ipaddress.IPv4Address):
        return not (_global_unicast(ip) or documentation and any(ip in net for net in DOCUMENTATION_NETWORKS))
    if ip in NAT64:
        # Admitted when the IPv4 it translates to is global: that is where the translator goes, and
        # an IPv6-only network with DNS64 answers the registries' names this way.
        return not _global_unicast(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return not _global_unicast(ip) or not all(_global_unicast(ipv4) for ipv4 in _embedded_ipv4(ip))


def _listed(host: str, allow: Iterable[str]) -> bool:
    return any(host == name or (name.startswith("*.") and host.endswith(name[1:])) for name in allow)


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{target!r} is not host:port")
    return host.strip("[]").lower().rstrip("."), int(port)


def decide(
    target: str, allow: Iterable[str], resolve: Resolver = addresses_of, documentation: bool = False
) -> Decision:
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
    refused = [address for address in addresses if blocked(address, documentation)]
    if refused or not addresses:
        return Decision(False, f"{host} resolves to {', '.join(refused) or 'nothing'}, which a sandbox may not reach")
    return Decision(True, "allowed", addresses[0], port, host)


# --- the TLS server name a tunnel asks for


class _Cursor:
    """Reads a TLS structure front to back; any read past its end is a ValueError."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def take(self, size: int) -> bytes:
        if self._at + size > len(self._data):
            raise ValueError("truncated")
        chunk = self._data[self._at : self._at + size]
        self._at += size
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> _Cursor:
        """A field prefixed by its length in `length_size` bytes."""
        return _Cursor(self.take(self.number(length_size)))

    def done(self) -> bool:
        return self._at == len(self._data)

    def end(self, what: str) -> None:
        if not self.done():
            raise ValueError(f"bytes after the {what}")


def server_name(record: bytes) -> str | None:
    """The host name in the SNI of the ClientHello that is `record` (one TLS record), or None.

    ValueError when `record` is anything but one whole ClientHello in one record, names more than
    one server, or hides its server name (an encrypted ClientHello)."""
    outer = _Cursor(record)
    if outer.number(1) != TLS_HANDSHAKE or outer.number(1) != 3:
        raise ValueError("not a TLS handshake record")
    outer.take(1)  # the record's minor version
    fragment = outer.vector(2)
    outer.end("record")
    if len(record) > CLIENT_HELLO_LIMIT_BYTES:
        raise ValueError("a record over the TLS limit")
    if fragment.number(1) != TLS_CLIENT_HELLO:
        raise ValueError("not a ClientHello")
    hello = fragment.vector(3)  # truncated when it goes on in another record: not read here
    fragment.end("ClientHello")
    hello.take(2 + 32)  # legacy_version, random
    hello.vector(1)  # legacy_session_id
    hello.vector(2)  # cipher_suites
    hello.vector(1)  # legacy_compression_methods
    if hello.done():
        return None  # no extensions at all
    extensions = hello.vector(2)
    hello.end("extensions")
    seen: set[int] = set()
    name = None
    while not extensions.done():
        kind, body = extensions.number(2), extensions.vector(2)
        if kind in seen:
            raise ValueError(f"extension {kind} twice")  # a server might read the other one
        seen.add(kind)
        if kind == TLS_ENCRYPTED_CLIENT_HELLO:
            raise ValueError("an encrypted ClientHello hides its server name")
        if kind == TLS_SERVER_NAME:
            name = _host_name(body)
    return name


def _host_name(extension: _Cursor) -> str:
    names = extension.vector(2)
    extension.end("server_name extension")
    if names.number(1) != TLS_HOST_NAME:
        raise ValueError("a server name that is not a host name")
    name = names.take(names.number(2))
    names.end("first server name")
    text = name.decode("ascii").lower()  # UnicodeDecodeError is a ValueError
    if not _HOST_NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a host name")
    return text.rstrip(".")


def sni_refusal(record: bytes, host: str) -> str | None:
    """Why the tunnel to `host` may not carry this first TLS record, or None when it may."""
    try:
        name = server_name(record)
    except ValueError as error:
        return f"the tunnel did not start with a TLS ClientHello the proxy can read ({error})"
    if name is None:
        return "the TLS ClientHello names no server (SNI)"
    if name != host:
        return f"the TLS server name {name} is not the CONNECT host {host}"
    return None


async def _read_client_hello(reader: asyncio.StreamReader) -> bytes:
    """The client's first TLS record, at most CLIENT_HELLO_LIMIT_BYTES (only its header if longer)."""
    header = await reader.readexactly(TLS_HEADER_BYTES)
    length = int.from_bytes(header[3:5], "big")
    if header[0] != TLS_HANDSHAKE or length > TLS_RECORD_LIMIT_BYTES:
        return header  # server_name says why it is refused; nothing more is read
    return header + await reader.readexactly(length)


# --- descriptors


def open_descriptors() -> int:
    """How many descriptors this process holds now (0 where that cannot be known)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(folder))
    return 0


def descriptor_reserve(soft_limit: int) -> int:
    return max(DESCRIPTOR_RESERVE_MIN, soft_limit // DESCRIPTOR_RESERVE_SHARE)


def near_descriptor_limit() -> bool:
    """Whether one more connection (its own descriptor and its upstream's) would eat the reserve.

    Connections still setting up may each add their upstream after this check: at most the caps'
    worth, far fewer than the reserve."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return False
    return soft - open_descriptors() - 2 < descriptor_reserve(soft)


# --- the proxy


@dataclass(eq=False)
class _Command:
    """One command's socket: whose it is, and the connections it holds now."""

    session_id: str
    run_id: str
    owner: str
    server: asyncio.AbstractServer | None = None
    held: set[asyncio.StreamWriter] = field(default_factory=set)


class EgressProxy:
    """An HTTP CONNECT proxy on Unix sockets, one socket per command, served from one thread.

    `dial` opens the connection to the address that was checked (a test's stand-in may take it to
    a local listener instead; the checks before it are the same)."""

    def __init__(
        self,
        allow: tuple[str, ...],
        resolve: Resolver = addresses_of,
        dial: Dialer = asyncio.open_connection,
        documentation: bool = False,
    ) -> None:
        self.allow = allow
        self._documentation = documentation
        self._resolve = resolve
        self._dial = dial
        self._loop = asyncio.new_event_loop()
        self._commands: dict[str, _Command] = {}
        self._by_owner: Counter[str] = Counter()
        # Runs whose turned-away connections were logged.
        self._logged_runs: BoundedDict[str, None] = BoundedDict(REMEMBERED_RUNS)
        self._lock = threading.Lock()  # the counts are changed in the proxy's thread, read anywhere
        threading.Thread(target=self._loop.run_forever, name="egress-proxy", daemon=True).start()

    def open(self, path: Path, session_id: str, run_id: str, owner: str) -> None:
        """Listen on `path` for one command of one run; anyone in the sandbox may connect."""
        command = _Command(session_id, run_id, owner)

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_unix_server(
                functools.partial(self._serve, command=command), str(path), limit=HEAD_LIMIT_BYTES
            )

        command.server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        self._commands[str(path)] = command
        os.chmod(path, 0o666)

    def close(self, path: Path) -> None:
        """Stop listening on `path` and end what its command left open (its sandbox is gone)."""
        command = self._commands.pop(str(path), None)
        if command is not None:
            self._loop.call_soon_threadsafe(self._end, command)

    def connections(self, owner: str | None = None) -> int:
        """The connections the proxy holds now (each with a descriptor, and one upstream once
        connected): all of them, or one owner's."""
        with self._lock:
            return self._by_owner[owner] if owner is not None else sum(self._by_owner.values())

    def _end(self, command: _Command) -> None:
        if command.server is not None:
            command.server.close()
        for writer in list(command.held):
            writer.transport.abort()

    def _admit(self, command: _Command, writer: asyncio.StreamWriter) -> str | None:
        """Count the connection in, or say why it is turned away (cheapest checks first)."""
        with self._lock:
            if len(command.held) >= CONNECTIONS_PER_COMMAND:
                return f"this command already holds {CONNECTIONS_PER_COMMAND} connections"
            if self._by_owner[command.owner] >= CONNECTIONS_PER_OWNER:
                return f"this owner's commands already hold {CONNECTIONS_PER_OWNER} connections"
            if near_descriptor_limit():
                return "the job is near its limit of open descriptors"
            command.held.add(writer)
            self._by_owner[command.owner] += 1
        return None

    def _release(self, command: _Command, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            command.held.discard(writer)
            self._by_owner[command.owner] -= 1
            if self._by_owner[command.owner] <= 0:
                del self._by_owner[command.owner]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, command: _Command) -> None:
        refusal = self._admit(command, writer)
        if refusal is not None:
            self._turn_away(writer, command, refusal)
            return
        try:
            await self._tunnel(reader, writer, command)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()  # its descriptor is released only now
            self._release(command, writer)

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, command: _Command) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT_SECONDS)
            method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method.upper() != "CONNECT":
                await self._refuse(writer, command, target, "only HTTPS through CONNECT goes out", 405)
                return
            decision = await self._loop.run_in_executor(
                None, decide, target, self.allow, self._resolve, self._documentation
            )
            if not decision.allowed or decision.address is None:
                await self._refuse(writer, command, target, decision.reason)
                return
            upstream_reader, upstream_writer = await asyncio.wait_for(
                self._dial(decision.address, decision.port), CONNECT_TIMEOUT_SECONDS
            )
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            hello = await asyncio.wait_for(_read_client_hello(reader), CONNECT_TIMEOUT_SECONDS)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            upstream_writer.close()
            return
        refusal = sni_refusal(hello, decision.host)
        if refusal is not None:
            self._log(command, f"egress refused to {target}: {refusal}")
            writer.write(TLS_UNRECOGNIZED_NAME_ALERT)
            upstream_writer.close()
            return
        upstream_writer.write(hello)
        await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))

    def _turn_away(self, writer: asyncio.StreamWriter, command: _Command, reason: str) -> None:
        """Close a connection over a bound at once; logged once a run, so a flood floods no log."""
        if command.run_id not in self._logged_runs:
            self._logged_runs[command.run_id] = None
            self._log(command, f"egress turned a connection away: {reason} (not logged again for this run)")
        writer.write(
            f"HTTP/1.1 503 egress refused: {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        writer.close()

    def _log(self, command: _Command, message: str) -> None:
        with logs.log_context(sessionId=command.session_id, runId=command.run_id):
            logger.warning("%s", message)

    async def _refuse(
        self, writer: asyncio.StreamWriter, command: _Command, target: str, reason: str, status: int = 403
    ) -> None:
        self._log(command, f"egress refused to {target}: {reason}")
        text = f"egress refused: {reason}"
        body = (text + "\n").encode()
        writer.write(f"HTTP/1.1 {status} {text}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        writer.write(body)
        with contextlib.suppress(OSError):
            await writer.drain()


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


def proxy_for(settings: Settings) -> EgressProxy:
    """A proxy with the allow-list of the settings (one per job process: functions/context.py)."""
    allow = allow_list(settings.egress_allow)
    logger.info("egress allow-list: %s", ", ".join(allow) or "(empty)")
    # On Cloud Run, global addresses only.
    return EgressProxy(allow, documentation=not settings.on_cloud_run)
