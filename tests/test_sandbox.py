"""Escape attempts against the sandbox: each bound, proved."""

from __future__ import annotations

import errno
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from functions import isolation, sandbox
from functions.sandbox import Limits, prepare_workspace, run_command

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Cloud Run's `sandbox` command, stood in for by one that implements its documented flags on bubblewrap.
CLOUD_RUN_STANDIN = PROJECT_ROOT / "tests" / "standins" / "sandbox"


def use_backend(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("VIBESDK_SANDBOX_BACKEND", name)
    monkeypatch.setenv("VIBESDK_CLOUD_RUN_SANDBOX_COMMAND", str(CLOUD_RUN_STANDIN))
    isolation.selected.cache_clear()


@pytest.fixture(autouse=True)
def probe_afresh() -> Iterator[None]:
    """The backend is probed once per process: after a test that chose one, the next probes again."""
    yield
    isolation.selected.cache_clear()


@pytest.fixture(params=["bubblewrap", "cloud-run"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every escape attempt runs against both isolation backends."""
    use_backend(monkeypatch, request.param)
    if isolation.selected()[0] is None:
        pytest.skip(isolation.selected()[1])
    return str(request.param)


@pytest.fixture
def workspace(sandbox_root: Path, backend: str) -> Path:
    path = Path(tempfile.mkdtemp(dir=sandbox_root))
    path.chmod(0o755)
    prepare_workspace(path)
    return path


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback server standing in for the control plane and the emulators."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()
    for conn in accepted:
        conn.close()


def test_command_runs_in_workspace(workspace: Path) -> None:
    result = run_command("echo hello > greeting && cat greeting", workspace, 10)
    assert result.exit_code == 0
    assert result.stdout == b"hello\n"
    assert (workspace / "greeting").read_text() == "hello\n"


def test_exit_code_and_stderr(workspace: Path) -> None:
    result = run_command("echo oops >&2; exit 7", workspace, 10)
    assert (result.exit_code, result.stderr) == (7, b"oops\n")


def test_secret_variable_is_invisible(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIBESDK_TEST_SECRET", "hunter2")
    result = run_command('env; echo "[$VIBESDK_TEST_SECRET]"', workspace, 10)
    assert b"hunter2" not in result.stdout
    assert b"[]" in result.stdout


def test_requested_env_vars_are_passed(workspace: Path) -> None:
    assert run_command("echo $GREETING", workspace, 10, env={"GREETING": "hi"}).stdout == b"hi\n"


def test_host_file_is_unreadable(workspace: Path, tmp_path: Path, backend: str) -> None:
    secret = tmp_path / "credentials.json"
    secret.write_text("private-key")
    secret.chmod(0o600)
    result = run_command(f"cat {secret}", workspace, 10)
    assert b"private-key" not in result.stdout
    assert result.exit_code != 0
    if backend == "bubblewrap":  # Cloud Run sandboxes show the image's own root, read-only, by design
        result = run_command(f"cat {secret}; cat {PROJECT_ROOT / 'README.md'}", workspace, 10)
        assert b"private-key" not in result.stdout
        assert result.exit_code != 0


def test_source_tree_is_not_writable(workspace: Path) -> None:
    target = PROJECT_ROOT / "functions" / "escaped.txt"
    result = run_command(f"echo pwned > {target}", workspace, 10)
    assert result.exit_code != 0
    assert not target.exists()


@pytest.mark.parametrize("target", ["/usr/evil", "/etc/evil", "/evil", "/var/evil"])
def test_writes_outside_workspace_and_tmp_fail(workspace: Path, target: str) -> None:
    result = run_command(f"echo x > {target}", workspace, 10)
    assert result.exit_code != 0
    assert not Path(target).exists()


def test_private_tmp_is_writable_and_private(workspace: Path) -> None:
    first = run_command("echo mine > /tmp/note && cat /tmp/note", workspace, 10)
    assert first.stdout == b"mine\n"
    second = run_command("cat /tmp/note", workspace, 10)
    assert second.exit_code != 0


def test_no_network_to_loopback_services(workspace: Path, listener: int) -> None:
    probe = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {listener}), 2)\""
    result = run_command(probe, workspace, 10)
    assert result.exit_code != 0
    assert b"Connection refused" in result.stderr or b"unreachable" in result.stderr


def test_timeout_kills_the_whole_group(workspace: Path) -> None:
    started = time.monotonic()
    result = run_command("sleep 30 & sleep 30", workspace, 1)
    assert time.monotonic() - started < 10
    assert result.killed_reason == "timeout"
    assert result.exit_code != 0


def test_fork_bomb_is_bounded(workspace: Path) -> None:
    limits = Limits(processes=64)
    started = time.monotonic()
    result = run_command("bomb() { bomb | bomb & }; bomb; sleep 2; echo survived", workspace, 5, limits=limits)
    assert time.monotonic() - started < 20
    # The job's own process can still fork after the bomb.
    assert run_command("echo alive", workspace, 5).stdout == b"alive\n"
    assert result.duration_seconds < 20


def test_process_limit_binds_each_command_alone(workspace: Path) -> None:
    """Each command may start its own budget of processes, whatever another one runs meanwhile."""
    limits = Limits(processes=48)
    spawn = "for i in $(seq {n}); do sleep 3 & done; wait; echo done"
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(run_command, spawn.format(n=40), workspace, 20, limits=limits)
        time.sleep(0.5)  # the first one holds its 40 processes now
        second = pool.submit(run_command, spawn.format(n=40), workspace, 20, limits=limits)
        assert first.result().stdout == second.result().stdout == b"done\n"
    over = run_command(spawn.format(n=80), workspace, 20, limits=limits)
    assert b"fork" in over.stderr.lower()  # dash: "Cannot fork"


def test_memory_is_bounded(workspace: Path) -> None:
    limits = Limits(memory_bytes=256 << 20)
    result = run_command('python3 -c "b = bytearray(512 * 1024 * 1024)"', workspace, 10, limits=limits)
    assert result.exit_code != 0
    assert b"MemoryError" in result.stderr


def test_single_file_size_is_bounded(workspace: Path) -> None:
    limits = Limits(file_bytes=1 << 20)
    result = run_command("head -c 5000000 /dev/zero > big", workspace, 10, limits=limits)
    assert result.exit_code != 0
    assert (workspace / "big").stat().st_size <= 1 << 20


def test_filling_the_disk_is_stopped(workspace: Path) -> None:
    limits = Limits(file_bytes=4 << 20, workspace_bytes=16 << 20)
    script = "i=0; while true; do head -c 3000000 /dev/zero > f$i || true; i=$((i+1)); done"
    result = run_command(script, workspace, 30, limits=limits)
    assert result.killed_reason == "workspace over quota"
    # Stopped within one watch interval of the quota, not after 30 s of writing.
    assert sum(p.stat().st_size for p in workspace.iterdir()) < 512 << 20


def test_output_is_captured_beyond_pipe_size(workspace: Path) -> None:
    result = run_command("head -c 300000 /dev/zero | tr '\\0' a", workspace, 10)
    assert len(result.stdout) == 300000


def test_unsafe_local_mode_without_namespaces_still_bounds(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")  # a local stack
    monkeypatch.delenv("K_SERVICE", raising=False)
    use_backend(monkeypatch, "unsafe-no-isolation")
    monkeypatch.setenv("VIBESDK_TEST_SECRET", "hunter2")
    result = run_command('echo "[$VIBESDK_TEST_SECRET]"; pwd', workspace, 10)
    assert result.stdout.startswith(b"[]\n")
    assert run_command("sleep 30", workspace, 1).killed_reason == "timeout"
    if os.geteuid() == 0:
        target = PROJECT_ROOT / "functions" / "escaped.txt"
        assert run_command(f"echo pwned > {target}", workspace, 10).exit_code != 0
        assert not target.exists()


def test_commands_are_refused_without_isolation(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # neither bwrap nor the sandbox command is found
    monkeypatch.setenv("VIBESDK_CLOUD_RUN_SANDBOX_COMMAND", "/nonexistent/sandbox")
    monkeypatch.setenv("VIBESDK_SANDBOX_BACKEND", "auto")
    isolation.selected.cache_clear()
    with pytest.raises(sandbox.IsolationUnavailable, match="no isolation backend works here") as refused:
        run_command("touch ran", workspace, 10)
    assert "bubblewrap is not installed" in str(refused.value) and "enable sandboxes" in str(refused.value)
    assert not (workspace / "ran").exists()


def test_running_without_isolation_is_refused_on_google_cloud(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K_SERVICE", "vibesdk-sandbox-job")
    use_backend(monkeypatch, "unsafe-no-isolation")
    with pytest.raises(sandbox.IsolationUnavailable, match="refused on Google Cloud"):
        run_command("touch ran", workspace, 10)
    assert not (workspace / "ran").exists()


def test_an_unknown_backend_is_refused_by_name(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_backend(monkeypatch, "firecracker")
    with pytest.raises(sandbox.IsolationUnavailable, match="VIBESDK_SANDBOX_BACKEND must be one of"):
        run_command("touch ran", workspace, 10)


def test_cloud_run_backend_passes_the_documented_flags(sandbox_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_backend(monkeypatch, "cloud-run")
    workspace = sandbox_root
    launch = isolation.backend().launch(["/bin/sh", "-c", "true"], workspace, workspace, {"K": "V"}, Limits(), 5)
    assert launch.argv[1:4] == ["do", "--stdin=false", "-e"] and "K=V" in launch.argv
    assert "--allow-egress" not in launch.argv
    assert f"type=bind,source={workspace},destination=/tmp/workspace" in launch.argv
    assert launch.argv.index("--") < launch.argv.index("prlimit")
    assert set(launch.env) == {"PATH"}  # nothing of the job's environment reaches the sandbox command


def test_dev_shm_counts_in_the_quota(workspace: Path) -> None:
    """/dev/shm was a tmpfs outside every quota (the red team kept 750 MB there)."""
    limits = Limits(tmp_bytes=16 << 20, file_bytes=64 << 20)
    result = run_command("head -c 50000000 /dev/zero > /dev/shm/big; sleep 5", workspace, 20, limits=limits)
    assert result.killed_reason == "workspace over quota"
    assert run_command("ls /dev/shm", workspace, 10).stdout == b""  # and it is the command's own


def test_output_is_bounded(workspace: Path) -> None:
    """The job holds a command's output until it is stored: it may not grow without end."""
    limits = Limits(output_bytes=1 << 20)
    result = run_command("while true; do head -c 1000000 /dev/zero; done", workspace, 30, limits=limits)
    assert result.killed_reason == "output over 1 MiB"
    assert len(result.stdout) < 64 << 20


def test_memory_of_all_the_command_processes_is_bounded(workspace: Path) -> None:
    """Each process's own limit let three processes hold 3.6 GB: their total is watched too."""
    limits = Limits(total_memory_bytes=512 << 20)
    hold = "python3 -c \"import time; b = 'x' * (300 * 1024 * 1024); time.sleep(20)\""
    started = time.monotonic()
    result = run_command(f"{hold} & {hold} & {hold} & wait", workspace, 30, limits=limits)
    assert result.killed_reason == "memory over 512 MiB"
    assert time.monotonic() - started < 15


def _sandbox_processes(marker: bytes) -> list[str]:
    """Processes whose command line carries marker, and bubblewrap zombies left to this process."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes()
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        zombie_of_ours = fields[0] == "Z" and int(fields[1]) == os.getpid()
        if marker in cmdline or zombie_of_ours:
            found.append(f"{entry.name}: {cmdline[:80]!r} state {fields[0]}")
    return found


def test_a_failure_while_waiting_still_ends_the_whole_sandbox(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When waiting raised (descriptors ran out), a bubblewrap process went on writing the workspace
    for 90 s, watched by no limit: now every path kills and reaps the whole sandbox."""
    real = sandbox._over_quota

    def out_of_descriptors(*args: object) -> str | None:
        if (workspace / "alive").exists():
            raise OSError(errno.EMFILE, "Too many open files")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sandbox, "_over_quota", out_of_descriptors)
    marker = f"alive-{uuid.uuid4().hex}"
    command = f"(while :; do echo {marker} >> alive; sleep 0.05; done) & sleep 60"
    with pytest.raises(OSError, match="Too many open files"):
        run_command(command, workspace, 60)
    size = (workspace / "alive").stat().st_size
    time.sleep(0.5)
    assert (workspace / "alive").stat().st_size == size, "a process of the sandbox still writes the workspace"
    assert _sandbox_processes(marker.encode()) == []
