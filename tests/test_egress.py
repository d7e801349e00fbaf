"""The egress proxy: what it lets out, what it refuses, and a sandboxed command's only way out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import resource
import select
import selectors
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from functions import egress
from functions.sandbox import CommandResult, Egress
from tests.conftest import Commands, require_backend
from vibesdk_gcp import logs
from vibesdk_gcp.settings import Settings

RunCommand = Callable[..., CommandResult]

ALLOW = ("registry.example.test", "*.mirror.example.test")
PUBLIC = "104.16.1.34"  # globally routable (never contacted: the resolver is the test's)


def resolver(answers: dict[str, list[str]]) -> egress.Resolver:
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError("no such name")
        return answers[host]

    return resolve


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("169.254.169.254:443", "is an address"),
        ("169.254.169.254:80", "is an address"),
        ("metadata.google.internal:443", "never reachable"),
        ("METADATA.GOOGLE.INTERNAL.:443", "never reachable"),
        ("10.0.0.1:443", "is an address"),
        ("192.168.1.1:443", "is an address"),
        ("[::1]:443", "is an address"),
        ("[fd00::1]:443", "is an address"),
        ("127.0.0.1:8086", "is an address"),
        ("localhost:443", "never reachable"),
        ("elsewhere.example.test:443", "not on the egress allow-list"),
        ("registry.example.test:80", "port 80 is not allowed"),
        ("registry.example.test", "is not host:port"),
    ],
)
def test_refused_without_sending_anything(target: str, why: str) -> None:
    # The resolver would answer a public address: refusals come before any lookup or traffic.
    decision = egress.decide(target, ALLOW, resolver({"registry.example.test": [PUBLIC]}))
    assert not decision.allowed and why in decision.reason, decision


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
    ],
)
def test_an_allowed_name_resolving_inward_is_refused(address: str) -> None:
    decision = egress.decide("registry.example.test:443", ALLOW, resolver({"registry.example.test": [PUBLIC, address]}))
    assert not decision.allowed and "which a sandbox may not reach" in decision.reason


def test_allowed_names_go_to_the_address_that_was_checked() -> None:
    answers = {"registry.example.test": [PUBLIC], "files.mirror.example.test": ["151.101.0.223"]}
    for target, address in (("registry.example.test:443", PUBLIC), ("files.mirror.example.test:443", "151.101.0.223")):
        decision = egress.decide(target, ALLOW, resolver(answers))
        assert (decision.allowed, decision.address, decision.port) == (True, address, 443)
    assert not egress.decide("mirror.example.test.evil.test:443", ALLOW, resolver(answers)).allowed


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata server
        "64:ff9b::7f00:1",  # NAT64 of loopback
        "64:ff9b:1::a00:1",  # local-use NAT64 (its embedding is the operator's)
        "::127.0.0.1",  # IPv4-compatible
        "::a9fe:a9fe",
        "::ffff:169.254.169.254",  # IPv4-mapped
        "::ffff:0:a00:1",  # IPv4-translated 10.0.0.1
        "::ffff:0:7f00:1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, client 192.0.2.45
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "fec0::1",  # site-local
        "198.18.0.1",  # benchmarking
        "198.19.255.254",
        "192.0.0.8",  # IETF protocol assignments (Python counts some as global)
        "192.0.0.9",
        "192.0.0.170",
        "224.0.0.251",  # IPv4 multicast (Python counts it as global)
        "239.255.255.250",
        "255.255.255.255",
        "ff02::1",
        "64:ff9b::cb00:7150",  # NAT64 of a documentation address (only the plain form is admitted)
        "2001:db8::1",  # IPv6 documentation
        "3fff::1",
    ],
)
def test_every_form_of_an_address_that_is_not_global_is_refused(address: str) -> None:
    assert egress.blocked(address)
    decision = egress.decide("registry.example.test:443", ALLOW, resolver({"registry.example.test": [address]}))
    assert not decision.allowed and "which a sandbox may not reach" in decision.reason


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        PUBLIC,
        "2606:4700::1111",
        "2a04:4e42::223",
        "::ffff:8.8.8.8",  # the socket reaches 8.8.8.8 itself
        "64:ff9b::808:808",  # NAT64 of a global address: admitted, the translator goes to 8.8.8.8
    ],
)
def test_globally_routable_addresses_are_admitted(address: str) -> None:
    assert not egress.blocked(address)
    decision = egress.decide("registry.example.test:443", ALLOW, resolver({"registry.example.test": [address]}))
    assert (decision.allowed, decision.address, decision.host) == (True, address, "registry.example.test")


@pytest.mark.parametrize("address", ["203.0.113.80", "::ffff:192.0.2.1", "198.51.100.7"])
def test_documentation_addresses_are_admitted_off_google_cloud_only(address: str) -> None:
    """This machine's DNS answers every registry with 203.0.113.80 (RFC 5737, routed nowhere): the
    local proxy admits the documentation ranges; the one on Google Cloud, only global addresses."""
    answers = resolver({"registry.example.test": [address]})
    assert egress.blocked(address) and not egress.decide("registry.example.test:443", ALLOW, answers).allowed
    assert not egress.blocked(address, documentation=True)
    assert egress.decide("registry.example.test:443", ALLOW, answers, documentation=True).allowed


def test_the_proxy_on_google_cloud_admits_no_documentation_address() -> None:
    on_cloud_run = Settings.from_env({"K_SERVICE": "vibesdk-sandbox-job"})  # as Cloud Run sets it
    assert egress.proxy_for(on_cloud_run)._documentation is False
    assert egress.proxy_for(Settings.from_env({}))._documentation is True  # here, off Google Cloud


def test_allow_list_comes_from_one_setting_or_the_package_managers() -> None:
    assert egress.allow_list(" A.example.test, *.b.example.test ,") == ("a.example.test", "*.b.example.test")
    defaults = egress.default_allow_list()
    assert len(defaults) >= 2 and all("." in host for host in defaults)  # npm's registry, pip's index and files


# --- through a real sandbox, on both backends


@pytest.fixture(params=["bubblewrap", "cloud-run"])
def commands(request: pytest.FixtureRequest, use_backend: Callable[[str], Commands]) -> Commands:
    """Each backend; a backend that does not work here fails the test (never a skip)."""
    commands = use_backend(request.param)
    require_backend(commands, request.param)
    return commands


@pytest.fixture
def workspace(commands: Commands, sandbox_root: Path) -> Path:
    """A workspace on each backend."""
    path = Path(tempfile.mkdtemp(dir=sandbox_root))
    path.chmod(0o755)
    commands.prepare(path)
    return path


@pytest.fixture
def run_command(commands: Commands) -> RunCommand:
    return commands.run


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback service of the job's machine: the emulators, the API, the job itself."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nsecret documents")
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


RUN = Egress("session-egress", "run-egress", "owner-egress")


# The proxy settings a command with network gets (functions/sandbox.py): without them it goes straight out.
WITHOUT_PROXY = (
    "unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy npm_config_proxy npm_config_https_proxy PIP_PROXY; "
)
NPM_INSTALL = "npm install --no-audit --no-fund --silent is-number@7.0.0"
PIP_DOWNLOAD = "python3 -m pip download --quiet --no-deps --dest dl six==1.16.0"


def decided_by_the_proxy(monkeypatch: pytest.MonkeyPatch) -> list[egress.Decision]:
    """Every CONNECT the proxy takes from now on, as it decided it (host, and the address it checked)."""
    decide = egress.decide
    seen: list[egress.Decision] = []

    def recorded(target: str, *args: object, **kwargs: object) -> egress.Decision:
        decision = decide(target, *args, **kwargs)  # type: ignore[arg-type]
        seen.append(decision)
        return decision

    monkeypatch.setattr(egress, "decide", recorded)
    return seen


def test_npm_install_and_pip_download_go_through_the_proxy(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, commands: Commands, run_command: RunCommand
) -> None:
    seen = decided_by_the_proxy(monkeypatch)
    allow = commands.proxy().allow
    # The same commands, network allowed, the proxy settings dropped: nothing gets out, the proxy saw nothing.
    npm = run_command(WITHOUT_PROXY + NPM_INSTALL + " --fetch-retries=0", workspace, 120, egress_for=RUN)
    assert npm.exit_code != 0 and not (workspace / "node_modules" / "is-number").exists(), npm.stderr[-2000:]
    pip = run_command(WITHOUT_PROXY + PIP_DOWNLOAD + " --retries 0", workspace, 120, egress_for=RUN)
    assert pip.exit_code != 0 and not list((workspace / "dl").glob("*.whl")), pip.stderr[-2000:]
    assert seen == []
    # Through the proxy: installed, and every connection was one the proxy admitted to an allow-listed registry.
    npm = run_command(NPM_INSTALL, workspace, 120, egress_for=RUN)
    assert npm.exit_code == 0, npm.stderr[-2000:]
    assert (workspace / "node_modules" / "is-number" / "package.json").exists()
    npm_hosts = {decision.host for decision in seen}
    pip = run_command(PIP_DOWNLOAD, workspace, 120, egress_for=RUN)
    assert pip.exit_code == 0, pip.stderr[-2000:]
    assert [p.name for p in (workspace / "dl").iterdir()] == ["six-1.16.0-py2.py3-none-any.whl"]
    pip_hosts = {decision.host for decision in seen} - npm_hosts
    assert npm_hosts and pip_hosts and all(decision.allowed and decision.port == 443 for decision in seen), seen
    assert npm_hosts | pip_hosts <= set(allow)
    # The very addresses the proxy reached are unreachable from the sandbox without it.
    for address in sorted({decision.address for decision in seen if decision.address}):
        direct = f"python3 -c \"import socket; socket.create_connection(('{address}', 443), 5)\""
        result = run_command(direct, workspace, 30, egress_for=RUN)
        assert result.exit_code != 0 and b"unreachable" in result.stderr, (address, result.stderr[-800:])


def test_no_loopback_listener_is_reachable_with_network_allowed(
    workspace: Path, listener: int, run_command: RunCommand
) -> None:
    direct = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {listener}), 2)\""
    assert run_command(direct, workspace, 20, egress_for=RUN).exit_code != 0
    for url in (f"http://127.0.0.1:{listener}/", f"https://127.0.0.1:{listener}/"):
        fetch = f"python3 -c \"import urllib.request; print(urllib.request.urlopen('{url}', timeout=5).read())\""
        result = run_command(fetch, workspace, 20, egress_for=RUN)
        assert result.exit_code != 0 and b"secret documents" not in result.stdout
        assert b"egress refused" in result.stderr or b"403" in result.stderr, result.stderr[-800:]


def test_a_host_off_the_list_is_refused_and_logged(
    workspace: Path, caplog: pytest.LogCaptureFixture, run_command: RunCommand
) -> None:
    command = "python3 -c \"import urllib.request; urllib.request.urlopen('https://example.com/', timeout=5)\""
    with caplog.at_level(logging.WARNING, logger="functions.egress"):
        result = run_command(command, workspace, 30, egress_for=RUN)
    assert result.exit_code != 0
    assert b"Tunnel connection failed: 403 egress refused: example.com is not on the egress allow-list" in result.stderr
    assert any("example.com is not on the egress allow-list" in r.getMessage() for r in caplog.records)


def test_without_network_there_is_no_proxy_either(workspace: Path, run_command: RunCommand) -> None:
    result = run_command("env | grep -i proxy; ls -a /tmp", workspace, 20)
    assert b"proxy" not in result.stdout.lower() and b"vibesdk-egress" not in result.stdout


# --- the TLS server name a tunnel asks for


def client_hello(server_hostname: str | None) -> bytes:
    """The first TLS record Python's own client sends (a real ClientHello)."""
    context = ssl.create_default_context()
    if server_hostname is None:
        context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def hello_with(extensions: list[tuple[int, bytes]]) -> bytes:
    """A minimal ClientHello record with these extensions (type, body), built by hand."""

    def vector(size: int, data: bytes) -> bytes:
        return len(data).to_bytes(size, "big") + data

    listed = b"".join(kind.to_bytes(2, "big") + vector(2, body) for kind, body in extensions)
    body = b"\x03\x03" + bytes(32) + vector(1, b"") + vector(2, b"\x13\x01") + vector(1, b"\x00") + vector(2, listed)
    return b"\x16\x03\x01" + vector(2, b"\x01" + vector(3, body))


def sni(*names: bytes) -> bytes:
    entries = b"".join(b"\x00" + len(name).to_bytes(2, "big") + name for name in names)
    return len(entries).to_bytes(2, "big") + entries


def largest_hello(name: bytes, over: int = 0) -> bytes:
    """A ClientHello filling a whole TLS record (16 KiB), padded (extension 21) to the limit (+ over)."""
    short = hello_with([(egress.TLS_SERVER_NAME, sni(name)), (21, b"")])
    padding = bytes(egress.CLIENT_HELLO_LIMIT_BYTES - len(short) + over)
    return hello_with([(egress.TLS_SERVER_NAME, sni(name)), (21, padding)])


def test_the_server_name_is_read_from_a_real_client_hello() -> None:
    hello = client_hello("registry.npmjs.org")
    assert hello[0] == egress.TLS_HANDSHAKE and len(hello) <= egress.CLIENT_HELLO_LIMIT_BYTES
    assert egress.server_name(hello) == "registry.npmjs.org"
    assert egress.server_name(client_hello("Registry.NPMJS.org.")) == "registry.npmjs.org"
    assert egress.sni_refusal(hello, "registry.npmjs.org") is None
    assert "is not the CONNECT host pypi.org" in str(egress.sni_refusal(hello, "pypi.org"))
    assert egress.server_name(hello_with([(egress.TLS_SERVER_NAME, sni(b"files.pythonhosted.org"))])) == (
        "files.pythonhosted.org"
    )


def test_a_client_hello_without_sni_names_no_server() -> None:
    assert egress.server_name(client_hello(None)) is None
    assert egress.server_name(hello_with([])) is None
    assert "names no server" in str(egress.sni_refusal(client_hello(None), "registry.npmjs.org"))


def test_every_truncation_of_a_client_hello_is_unreadable() -> None:
    hello = client_hello("registry.npmjs.org")
    for end in range(len(hello)):
        with pytest.raises(ValueError):
            egress.server_name(hello[:end])
    assert "can read" in str(egress.sni_refusal(hello[:-1], "registry.npmjs.org"))


@pytest.mark.parametrize(
    "record",
    [
        b"",
        b"GET / HTTP/1.1\r\nHost: registry.npmjs.org\r\n\r\n",
        b"\x16\x03\x01\xff\xff" + bytes(65535),  # over the TLS record limit
        largest_hello(b"registry.npmjs.org", over=1),  # one byte over it
        client_hello("registry.npmjs.org") + b"\x00",  # more than one record's worth
        hello_with([(egress.TLS_SERVER_NAME, sni(b"registry.npmjs.org")), (egress.TLS_SERVER_NAME, sni(b"evil.test"))]),
        hello_with([(egress.TLS_SERVER_NAME, sni(b"registry.npmjs.org", b"evil.test"))]),
        hello_with([(egress.TLS_SERVER_NAME, sni(b"registry.npmjs.org")), (egress.TLS_ENCRYPTED_CLIENT_HELLO, b"")]),
        hello_with([(egress.TLS_SERVER_NAME, sni(b"registry.npmjs.org\x00.evil.test"))]),
        hello_with([(egress.TLS_SERVER_NAME, sni("régistry.test".encode()))]),
        hello_with([(egress.TLS_SERVER_NAME, b"")]),
        random.Random(7).randbytes(600),
    ],
    ids=[
        "empty",
        "plain-http",
        "oversized",
        "one-byte-over",
        "trailing-bytes",
        "two-sni-extensions",
        "two-names",
        "encrypted-client-hello",
        "nul-in-name",
        "not-ascii",
        "empty-extension",
        "random",
    ],
)
def test_garbage_is_not_a_client_hello(record: bytes) -> None:
    with pytest.raises(ValueError):
        egress.server_name(record)


def test_no_corrupted_byte_of_a_client_hello_escapes_the_parser() -> None:
    # Bounds-checked: a changed byte gives a name, None or a ValueError, never another error.
    hello = client_hello("registry.npmjs.org")
    for at in range(len(hello)):
        for value in (0x00, 0xFF, hello[at] ^ 0x01):
            try:
                name = egress.server_name(hello[:at] + bytes([value]) + hello[at + 1 :])
            except ValueError:
                continue
            assert name is None or isinstance(name, str)


# --- the proxy itself, driven from this process (no sandbox)


def wait_until(condition: Callable[[], bool], seconds: float = 8.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


@dataclass
class Proxied:
    """A proxy of the test's own, and the command sockets it opened (closed after the test)."""

    proxy: egress.EgressProxy
    folder: Path
    paths: list[Path] = field(default_factory=list)

    def socket(self, owner: str, run: str) -> Path:
        path = self.folder / f"{len(self.paths)}.sock"  # short: Unix socket paths are bounded
        self.proxy.open(path, f"session-{run}", run, owner)
        self.paths.append(path)
        return path


def proxied(**hooks: egress.Dialer) -> Iterator[Proxied]:
    folder = Path(tempfile.mkdtemp(prefix="egress-"))
    served = Proxied(egress.EgressProxy(ALLOW, resolver({"registry.example.test": [PUBLIC]}), **hooks), folder)
    yield served
    for path in served.paths:
        served.proxy.close(path)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def proxy() -> Iterator[Proxied]:
    yield from proxied()


class Recorded(logging.Handler):
    """The proxy's warnings with the sessionId and runId they were logged with."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[tuple[str, str | None, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), logs.current("sessionId"), logs.current("runId")))


@pytest.fixture
def warnings() -> Iterator[Recorded]:
    recorded = Recorded()
    logger = logging.getLogger("functions.egress")
    level = logger.level
    logger.addHandler(recorded)
    logger.setLevel(logging.WARNING)
    yield recorded
    logger.removeHandler(recorded)
    logger.setLevel(level)


def connect(path: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX)
    client.connect(str(path))  # blocking: waits while the proxy's backlog is full (a timeout would not)
    client.settimeout(10)
    return client


def read_to_end(client: socket.socket) -> bytes:
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


def ask(path: Path, target: str) -> bytes:
    """What the proxy answers a CONNECT to `target` on `path`."""
    with connect(path) as client:
        client.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        return read_to_end(client)


def turned_away(clients: list[socket.socket], count: int) -> list[bytes]:
    """Wait until the proxy has answered and closed `count` of `clients`; their answers."""
    received: dict[socket.socket, bytes] = {}
    ended: list[bytes] = []
    with selectors.DefaultSelector() as selector:
        for client in clients:
            selector.register(client, selectors.EVENT_READ, client)
        deadline = time.monotonic() + 8
        while len(ended) < count:
            assert time.monotonic() < deadline, f"only {len(ended)} of {count} turned away"
            for key, _ in selector.select(0.5):
                client = key.data
                if chunk := client.recv(65536):  # readable: this does not wait
                    received[client] = received.get(client, b"") + chunk
                else:
                    selector.unregister(client)
                    ended.append(received.pop(client, b""))
    return ended


def answered(client: socket.socket) -> bool:
    """Whether the proxy has sent `client` anything (left unread), or closed it."""
    poll = select.poll()  # no descriptor of its own: the reserve test counts them
    poll.register(client, select.POLLIN)
    return bool(poll.poll(0))


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def room_for_a_flood() -> Iterator[None]:
    """Descriptors enough under the soft limit for the test's own 1,000 clients."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 4 * (fds() + 1100)  # the reserve (a quarter) stays out of the flood's way
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = hard if hard == resource.RLIM_INFINITY or hard >= needed else needed  # root may raise it
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, raised))
        except (ValueError, OSError) as error:  # a security test that cannot run fails, never skips
            pytest.fail(f"RLIMIT_NOFILE's hard limit {hard} is below the {needed} this test needs ({error})")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


REFUSED_OFF_LIST = b"HTTP/1.1 403 egress refused: example.com is not on the egress allow-list"
OVER_THE_COMMAND_CAP = (
    b"HTTP/1.1 503 egress refused: this command already holds 32 connections\r\n"
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)


def test_a_flood_on_one_socket_holds_its_cap_and_another_owner_is_still_served(
    proxy: Proxied, warnings: Recorded, room_for_a_flood: None
) -> None:
    flood, other = proxy.socket("owner-flood", "run-flood"), proxy.socket("owner-other", "run-other")
    before = fds()
    clients = [connect(flood) for _ in range(1000)]
    try:
        answers = turned_away(clients, 1000 - egress.CONNECTIONS_PER_COMMAND)
        assert set(answers) == {OVER_THE_COMMAND_CAP}
        assert proxy.proxy.connections("owner-flood") == proxy.proxy.connections() == egress.CONNECTIONS_PER_COMMAND
        # What the flood costs the job, this test's own 1,000 clients aside: a descriptor a
        # connection held (no upstream: nothing was asked), a few to spare for the event loop.
        assert fds() - before - len(clients) <= egress.CONNECTIONS_PER_COMMAND + 4
        assert ask(other, "example.com:443").startswith(REFUSED_OFF_LIST)  # served while the flood is held
    finally:
        for client in clients:
            client.close()
    wait_until(lambda: proxy.proxy.connections() == 0)
    flood_lines = [line for line in warnings.lines if line[2] == "run-flood"]
    assert len(flood_lines) == 1, flood_lines  # one line for 968 refusals
    assert "this command already holds 32 connections" in flood_lines[0][0]
    assert flood_lines[0][1:] == ("session-run-flood", "run-flood")


def test_an_owner_holds_at_most_its_cap_across_its_commands(proxy: Proxied, warnings: Recorded) -> None:
    owner = "owner-many"
    first, second, third = (proxy.socket(owner, f"run-many-{n}") for n in range(3))
    clients: list[socket.socket] = []
    try:
        for path in (first, second):
            batch = [connect(path) for _ in range(egress.CONNECTIONS_PER_COMMAND + 8)]
            clients += batch
            assert turned_away(batch, 8) == [OVER_THE_COMMAND_CAP] * 8
        assert proxy.proxy.connections(owner) == egress.CONNECTIONS_PER_OWNER
        batch = [connect(third) for _ in range(5)]
        clients += batch
        answers = turned_away(batch, 5)
        assert all(b"503 egress refused: this owner's commands already hold 64 connections" in a for a in answers)
        assert proxy.proxy.connections(owner) == egress.CONNECTIONS_PER_OWNER
        assert ask(proxy.socket("owner-other", "run-other"), "example.com:443").startswith(REFUSED_OFF_LIST)
        # A connection that ends gives its place back.
        clients.pop(0).close()
        wait_until(lambda: proxy.proxy.connections(owner) == egress.CONNECTIONS_PER_OWNER - 1)
        assert ask(third, "example.com:443").startswith(REFUSED_OFF_LIST)
    finally:
        for client in clients:
            client.close()
    wait_until(lambda: proxy.proxy.connections() == 0)
    turned_away_lines = [line[1:] for line in warnings.lines if "turned a connection away" in line[0]]
    assert turned_away_lines == [(f"session-run-many-{n}", f"run-many-{n}") for n in range(3)]


def connect_and_see(proxy: egress.EgressProxy, path: Path) -> tuple[socket.socket, str]:
    """A new connection to `path`, and whether the proxy held it or turned it away."""
    held = proxy.connections()
    client = connect(path)
    wait_until(lambda: proxy.connections() > held or answered(client))
    return client, "held" if proxy.connections() > held else "turned away"


def test_the_proxy_leaves_the_job_its_reserve_of_descriptors(
    proxy: Proxied, warnings: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    path = proxy.socket("owner-reserve", "run-reserve")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = fds()
    # A soft limit 10 descriptors above the reserve: room for a few connections, no more.
    lowered = in_use + egress.DESCRIPTOR_RESERVE_MIN + 10
    while lowered - in_use - egress.descriptor_reserve(lowered) < 10:
        lowered += 1
    reserve = egress.descriptor_reserve(lowered)
    seen: list[tuple[socket.socket, str]] = []
    spare: list[socket.socket] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            seen = [connect_and_see(proxy.proxy, path) for _ in range(20)]
            # The proxy kept out of the reserve: only this test's own clients (in a sandbox, not
            # the job's) are in it, and the rest of it can still be opened here.
            room = lowered - fds()
            assert room >= reserve - len(seen)
            spare = [socket.socket() for _ in range(room - 5)]
        assert not caplog.records  # asyncio never logged "accept() out of system resource"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for sock in spare:
            sock.close()
    outcomes = [outcome for _, outcome in seen]
    held = outcomes.count("held")
    assert 1 <= held <= 5 and outcomes == ["held"] * held + ["turned away"] * (20 - held), outcomes
    for client, _ in seen[held:]:
        answer = read_to_end(client)
        assert answer.startswith(b"HTTP/1.1 503 egress refused: the job is near its limit of open descriptors")
    assert [line[2] for line in warnings.lines] == ["run-reserve"]
    for client, _ in seen:
        client.close()
    wait_until(lambda: proxy.proxy.connections() == 0)
    assert ask(path, "example.com:443").startswith(REFUSED_OFF_LIST)  # the limit back: served again


@dataclass
class Upstream:
    """A local TCP listener standing in for a registry: what each connection sent it first."""

    port: int
    received: list[bytes] = field(default_factory=list)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    served = Upstream(server.getsockname()[1])
    stop = threading.Event()

    def first_record(conn: socket.socket) -> bytes:
        data = b""
        while (len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big")) and (chunk := conn.recv(65536)):
            data += chunk
        return data

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(10)
                received = first_record(conn)
                with contextlib.suppress(OSError):
                    conn.sendall(b"the registry answers")
                served.received.append(received)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield served
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def tunnels(upstream: Upstream) -> Iterator[tuple[Proxied, list[tuple[str, int]]]]:
    """A proxy whose checked connections are taken to `upstream`, and the addresses it dialled."""
    dialled: list[tuple[str, int]] = []

    async def dial(address: str, port: int) -> egress.Streams:
        dialled.append((address, port))
        return await asyncio.open_connection("127.0.0.1", upstream.port)

    yield from ((served, dialled) for served in proxied(dial=dial))


def tunnel(path: Path, first_bytes: bytes) -> tuple[bytes, bytes]:
    """CONNECT registry.example.test:443, send `first_bytes`; the proxy's answer, then what followed."""
    with connect(path) as client:
        client.sendall(b"CONNECT registry.example.test:443 HTTP/1.1\r\nHost: registry.example.test:443\r\n\r\n")
        answer = b""
        while not answer.endswith(b"\r\n\r\n") and (chunk := client.recv(1)):
            answer += chunk
        client.sendall(first_bytes)
        return answer, read_to_end(client)


@pytest.mark.parametrize(
    "hello",
    [client_hello("registry.example.test"), largest_hello(b"registry.example.test")],
    ids=["python-ssl", "16-KiB-record"],
)
def test_a_tunnel_whose_sni_is_its_connect_host_goes_through(
    tunnels: tuple[Proxied, list[tuple[str, int]]], upstream: Upstream, hello: bytes
) -> None:
    served, dialled = tunnels
    assert len(hello) <= egress.CLIENT_HELLO_LIMIT_BYTES
    answer, rest = tunnel(served.socket("owner-sni", "run-sni"), hello)
    assert answer == b"HTTP/1.1 200 Connection established\r\n\r\n" and rest == b"the registry answers"
    assert upstream.received == [hello]  # the ClientHello went on first, whole
    assert dialled == [(PUBLIC, 443)]  # to the address that was checked


# A real ClientHello whose handshake length runs past its record.
MALFORMED_HELLO = (lambda hello: hello[:6] + b"\xff\xff\xff" + hello[9:])(client_hello("registry.example.test"))


@pytest.mark.parametrize(
    ("first_bytes", "why"),
    [
        (client_hello("evil.example.test"), "the TLS server name evil.example.test is not the CONNECT host"),
        (client_hello("files.mirror.example.test"), "is not the CONNECT host registry.example.test"),
        (client_hello(None), "the TLS ClientHello names no server"),
        (b"GET / HTTP/1.1\r\nHost: evil.example.test\r\n\r\n", "did not start with a TLS ClientHello"),
        (MALFORMED_HELLO, "did not start with a TLS ClientHello"),
    ],
    ids=["another-host", "another-listed-host", "no-sni", "plain-http", "malformed"],
)
def test_a_tunnel_whose_first_record_is_not_a_client_hello_for_its_host_is_refused(
    tunnels: tuple[Proxied, list[tuple[str, int]]], upstream: Upstream, warnings: Recorded, first_bytes: bytes, why: str
) -> None:
    served, _ = tunnels
    answer, rest = tunnel(served.socket("owner-sni", "run-sni"), first_bytes)
    assert answer == b"HTTP/1.1 200 Connection established\r\n\r\n"
    assert rest == egress.TLS_UNRECOGNIZED_NAME_ALERT  # then both ends closed
    wait_until(lambda: len(upstream.received) == 1)
    assert upstream.received == [b""]  # nothing of it reached the registry
    [(message, session_id, run_id)] = warnings.lines
    assert message.startswith("egress refused to registry.example.test:443: ") and why in message, message
    assert (session_id, run_id) == ("session-run-sni", "run-sni")
