"""The egress proxy: what it lets out, what it refuses, and a sandboxed command's only way out."""

from __future__ import annotations

import logging
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions import egress, isolation
from functions.sandbox import Egress, prepare_workspace, run_command
from tests.test_sandbox import CLOUD_RUN_STANDIN

ALLOW = ("registry.example.test", "*.mirror.example.test")
PUBLIC = "203.0.113.7"


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
    answers = {"registry.example.test": [PUBLIC], "files.mirror.example.test": ["198.51.100.4"]}
    for target, address in (("registry.example.test:443", PUBLIC), ("files.mirror.example.test:443", "198.51.100.4")):
        decision = egress.decide(target, ALLOW, resolver(answers))
        assert (decision.allowed, decision.address, decision.port) == (True, address, 443)
    assert not egress.decide("mirror.example.test.evil.test:443", ALLOW, resolver(answers)).allowed


def test_allow_list_comes_from_one_setting_or_the_package_managers() -> None:
    assert egress.allow_list(" A.example.test, *.b.example.test ,") == ("a.example.test", "*.b.example.test")
    defaults = egress.default_allow_list()
    assert len(defaults) >= 2 and all("." in host for host in defaults)  # npm's registry, pip's index and files


# --- through a real sandbox, on both backends


@pytest.fixture(params=["bubblewrap", "cloud-run"])
def workspace(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, sandbox_root: Path) -> Iterator[Path]:
    monkeypatch.setenv("VIBESDK_SANDBOX_BACKEND", request.param)
    monkeypatch.setenv("VIBESDK_CLOUD_RUN_SANDBOX_COMMAND", str(CLOUD_RUN_STANDIN))
    isolation.selected.cache_clear()
    if isolation.selected()[0] is None:
        pytest.skip(isolation.selected()[1])
    path = Path(tempfile.mkdtemp(dir=sandbox_root))
    path.chmod(0o755)
    prepare_workspace(path)
    yield path
    isolation.selected.cache_clear()


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


RUN = Egress("session-egress", "run-egress")


def test_npm_install_and_pip_download_go_through_the_proxy(workspace: Path) -> None:
    npm = run_command("npm install --no-audit --no-fund --silent is-number@7.0.0", workspace, 120, egress_for=RUN)
    assert npm.exit_code == 0, npm.stderr[-2000:]
    assert (workspace / "node_modules" / "is-number" / "package.json").exists()
    pip = run_command("python3 -m pip download --quiet --no-deps --dest dl six==1.16.0", workspace, 120, egress_for=RUN)
    assert pip.exit_code == 0, pip.stderr[-2000:]
    assert [p.name for p in (workspace / "dl").iterdir()] == ["six-1.16.0-py2.py3-none-any.whl"]


def test_no_loopback_listener_is_reachable_with_network_allowed(workspace: Path, listener: int) -> None:
    direct = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {listener}), 2)\""
    assert run_command(direct, workspace, 20, egress_for=RUN).exit_code != 0
    for url in (f"http://127.0.0.1:{listener}/", f"https://127.0.0.1:{listener}/"):
        fetch = f"python3 -c \"import urllib.request; print(urllib.request.urlopen('{url}', timeout=5).read())\""
        result = run_command(fetch, workspace, 20, egress_for=RUN)
        assert result.exit_code != 0 and b"secret documents" not in result.stdout
        assert b"egress refused" in result.stderr or b"403" in result.stderr, result.stderr[-800:]


def test_a_host_off_the_list_is_refused_and_logged(workspace: Path, caplog: pytest.LogCaptureFixture) -> None:
    command = "python3 -c \"import urllib.request; urllib.request.urlopen('https://example.com/', timeout=5)\""
    with caplog.at_level(logging.WARNING, logger="functions.egress"):
        result = run_command(command, workspace, 30, egress_for=RUN)
    assert result.exit_code != 0
    assert b"Tunnel connection failed: 403 egress refused: example.com is not on the egress allow-list" in result.stderr
    assert any("example.com is not on the egress allow-list" in r.getMessage() for r in caplog.records)


def test_without_network_there_is_no_proxy_either(workspace: Path) -> None:
    result = run_command("env | grep -i proxy; ls -a /tmp", workspace, 20)
    assert b"proxy" not in result.stdout.lower() and b"vibesdk-egress" not in result.stdout
