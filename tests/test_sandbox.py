"""Escape attempts against the sandbox: each bound, proved."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from functions import egress, isolation, sandbox
from functions.sandbox import CommandResult, Limits
from tests.conftest import Commands, require_backend
from vibesdk_gcp import clients
from vibesdk_gcp.errors import ConfigurationError
from vibesdk_gcp.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
UseBackend = Callable[[str], Commands]
RunCommand = Callable[..., CommandResult]


@pytest.fixture(params=["bubblewrap", "cloud-run"])
def backend(request: pytest.FixtureRequest, use_backend: UseBackend) -> Commands:
    """Every escape attempt runs against both isolation backends; one that does not work here fails them."""
    commands = use_backend(request.param)
    require_backend(commands, request.param)
    return commands


@pytest.fixture
def run_command(backend: Commands) -> RunCommand:
    return backend.run


def wait_until(condition: Callable[[], object], what: str, seconds: float = 60) -> None:
    """Wait for `condition`, however loaded the machine: a generous bound, then a failure saying what."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {seconds:.0f} s for {what}", pytrace=False)
        time.sleep(0.05)


@pytest.fixture
def workspace(sandbox_root: Path, backend: Commands) -> Path:
    path = Path(tempfile.mkdtemp(dir=sandbox_root))
    path.chmod(0o755)
    backend.prepare(path)
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


def test_command_runs_in_workspace(workspace: Path, run_command: RunCommand) -> None:
    result = run_command("echo hello > greeting && cat greeting", workspace, 10)
    assert result.exit_code == 0
    assert result.stdout == b"hello\n"
    assert (workspace / "greeting").read_text() == "hello\n"


def test_exit_code_and_stderr(workspace: Path, run_command: RunCommand) -> None:
    result = run_command("echo oops >&2; exit 7", workspace, 10)
    assert (result.exit_code, result.stderr) == (7, b"oops\n")


def test_secret_variable_is_invisible(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, run_command: RunCommand
) -> None:
    monkeypatch.setenv("VIBESDK_TEST_SECRET", "hunter2")
    result = run_command('env; echo "[$VIBESDK_TEST_SECRET]"', workspace, 10)
    assert b"hunter2" not in result.stdout
    assert b"[]" in result.stdout


def test_requested_env_vars_are_passed(workspace: Path, run_command: RunCommand) -> None:
    assert run_command("echo $GREETING", workspace, 10, env={"GREETING": "hi"}).stdout == b"hi\n"


def test_a_commands_variables_never_choose_what_the_job_runs(
    workspace: Path, tmp_path: Path, run_command: RunCommand
) -> None:
    """A tenant's PATH or LD_PRELOAD (VibSDK's envVars) reach the command only: never setpriv, prlimit
    or bwrap, which the job starts as root, nor the limits the command runs under."""
    marker = tmp_path / "ran-as-the-job"
    planted = workspace / "bin"
    planted.mkdir()
    for tool in ("setpriv", "prlimit", "bwrap", "sandbox", "env"):
        # Outside the sandbox it would leave the marker; inside, it skips the limits and says so.
        (planted / tool).write_text(f'#!/bin/sh\ntouch {marker}; echo planted {tool} ran >&2; shift 99; exec "$@"\n')
        (planted / tool).chmod(0o755)
    inside = ":".join(f"{root}/bin" for root in (isolation.BWRAP_WORKSPACE, isolation.CLOUD_RUN_WORKSPACE))
    env = {"PATH": f"{planted}:{inside}:/usr/bin:/bin", "LD_PRELOAD": str(workspace / "absent.so")}
    result = run_command(
        "echo $PATH; grep 'Max processes' /proc/self/limits", workspace, 10, env=env, limits=Limits(processes=64)
    )
    assert result.exit_code == 0, result.stderr
    assert not marker.exists() and b"planted" not in result.stderr
    assert result.stdout.split(b"\n")[0].startswith(str(planted).encode())  # the command has its PATH
    assert b"unlimited" not in result.stdout.split(b"\n")[1]  # and its limits


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build the preloaded library")
def test_a_preloaded_library_of_the_tenants_still_runs_under_the_limits(
    workspace: Path, backend: Commands, run_command: RunCommand
) -> None:
    """LD_PRELOAD set before the limits would let a library re-exec the command without prlimit."""
    source = workspace / "skip.c"
    source.write_text(
        "#include <stdlib.h>\n#include <unistd.h>\n"
        "__attribute__((constructor)) static void skip(void) {\n"
        '  if (getenv("SKIPPED")) return;\n  setenv("SKIPPED", "1", 1); unsetenv("LD_PRELOAD");\n'
        '  execl("/bin/sh", "sh", "-c", "echo SKIPPED; ulimit -t", (char *)0);\n}\n'
    )
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(workspace / "skip.so"), str(source)], check=True)
    (workspace / "skip.so").chmod(0o755)
    inside = backend.isolation.backend().workspace_inside
    result = run_command("ulimit -t", workspace, 10, env={"LD_PRELOAD": f"{inside}/skip.so"})
    # The library runs (in the command's own shell, under the limits), and the limit holds.
    assert result.stdout.startswith(b"SKIPPED\n") and b"unlimited" not in result.stdout, result


def test_host_file_is_unreadable(workspace: Path, tmp_path: Path, backend: Commands, run_command: RunCommand) -> None:
    secret = tmp_path / "credentials.json"
    secret.write_text("private-key")
    secret.chmod(0o600)
    result = run_command(f"cat {secret}", workspace, 10)
    assert b"private-key" not in result.stdout
    assert result.exit_code != 0
    if (
        backend.settings.sandbox_backend == "bubblewrap"
    ):  # Cloud Run sandboxes show the image's own root, read-only, by design
        result = run_command(f"cat {secret}; cat {PROJECT_ROOT / 'README.md'}", workspace, 10)
        assert b"private-key" not in result.stdout
        assert result.exit_code != 0


def test_source_tree_is_not_writable(workspace: Path, run_command: RunCommand) -> None:
    target = PROJECT_ROOT / "functions" / "escaped.txt"
    result = run_command(f"echo pwned > {target}", workspace, 10)
    assert result.exit_code != 0
    assert not target.exists()


@pytest.mark.parametrize("target", ["/usr/evil", "/etc/evil", "/evil", "/var/evil"])
def test_writes_outside_workspace_and_tmp_fail(workspace: Path, target: str, run_command: RunCommand) -> None:
    result = run_command(f"echo x > {target}", workspace, 10)
    assert result.exit_code != 0
    assert not Path(target).exists()


def test_private_tmp_is_writable_and_private(workspace: Path, run_command: RunCommand) -> None:
    first = run_command("echo mine > /tmp/note && cat /tmp/note", workspace, 10)
    assert first.stdout == b"mine\n"
    second = run_command("cat /tmp/note", workspace, 10)
    assert second.exit_code != 0


def test_no_network_to_loopback_services(workspace: Path, listener: int, run_command: RunCommand) -> None:
    probe = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {listener}), 2)\""
    result = run_command(probe, workspace, 10)
    assert result.exit_code != 0
    assert b"Connection refused" in result.stderr or b"unreachable" in result.stderr


def test_timeout_kills_the_whole_group(workspace: Path, run_command: RunCommand) -> None:
    # Far longer than the test waits: only the kill ends them. The unique length finds them in /proc.
    nap = f"300.{uuid.uuid4().int % 10**9:09d}"
    result = run_command(f"sleep {nap} & sleep {nap}", workspace, 1)
    assert result.killed_reason == "timeout"
    assert result.exit_code != 0
    assert result.duration_seconds >= 1  # not before its timeout
    # The shell's sleep and the one it put in the background alike.
    wait_until(lambda: not _sandbox_processes(nap.encode()), f"the timed-out command's `sleep {nap}`s to end")


def test_fork_bomb_is_bounded(workspace: Path, run_command: RunCommand) -> None:
    limits = Limits(processes=64)
    marker = f"bomb-{uuid.uuid4().hex}"  # in the command line of every shell the bomb forks
    bomb = f": {marker}; bomb() {{ bomb | bomb & }}; bomb; sleep 2; echo survived"
    result = run_command(bomb, workspace, 5, limits=limits)
    # The process limit stopped it: inside, or counted from outside (a Cloud Run sandbox's user may raise it).
    assert b"Cannot fork" in result.stderr or result.killed_reason == "processes over 64", result
    wait_until(lambda: not _sandbox_processes(marker.encode()), "every process of the fork bomb to end")
    # The job's own process can still fork after the bomb.
    assert run_command("echo alive", workspace, 5).stdout == b"alive\n"


# Start {n} processes, say so in the file {name}, and hold them until the test creates `release`.
HOLD = (
    'pids=; for i in $(seq {n}); do sleep 600 & pids="$pids $!"; done; touch {name}; '
    "i=0; while [ ! -e release ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; "
    "kill $pids; wait; echo done"
)


def test_process_limit_binds_each_command_alone(workspace: Path, run_command: RunCommand) -> None:
    """Each command may start its own budget of processes, whatever another one runs meanwhile."""
    limits = Limits(processes=48)
    with ThreadPoolExecutor(max_workers=2) as pool:
        try:
            first = pool.submit(run_command, HOLD.format(n=40, name="held-1"), workspace, 180, limits=limits)
            wait_until(lambda: (workspace / "held-1").exists() or first.done(), "the first command's 40 processes")
            second = pool.submit(run_command, HOLD.format(n=40, name="held-2"), workspace, 180, limits=limits)
            wait_until(lambda: (workspace / "held-2").exists() or second.done(), "the second command's 40 processes")
            # Both hold their 40 at once: the first is still waiting for `release`.
            assert not first.done(), f"the first command ended before the second held its 40: {first.result()}"
            assert (workspace / "held-2").exists(), f"the second command did not hold its 40: {second.result()}"
        finally:
            (workspace / "release").touch()
        results = [first.result(), second.result()]
    assert [result.stdout for result in results] == [b"done\n"] * 2, [result.stderr[-500:] for result in results]
    over = run_command("for i in $(seq 80); do sleep 3 & done; wait; echo done", workspace, 20, limits=limits)
    # dash's "Cannot fork", or in a sandbox whose user may raise its limits (Cloud Run's), the count from outside.
    assert b"fork" in over.stderr.lower() or over.killed_reason == "processes over 48", over


def test_memory_is_bounded(workspace: Path, run_command: RunCommand) -> None:
    """The address space stops at the limit: 64 MiB under it is granted, the limit itself is not."""
    limits = Limits(memory_bytes=256 << 20)
    allowed = run_command('python3 -c "b = bytearray(192 * 1024 * 1024)"', workspace, 10, limits=limits)
    assert allowed.exit_code == 0, allowed.stderr[-500:]
    result = run_command('python3 -c "b = bytearray(256 * 1024 * 1024)"', workspace, 10, limits=limits)
    assert result.exit_code != 0
    assert b"MemoryError" in result.stderr


def test_single_file_size_is_bounded(workspace: Path, run_command: RunCommand) -> None:
    limits = Limits(file_bytes=1 << 20)
    result = run_command("head -c 5000000 /dev/zero > big", workspace, 10, limits=limits)
    assert result.exit_code != 0
    assert (workspace / "big").stat().st_size <= 1 << 20


def watched_sizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, int]]:
    """Each size the watchdog measured (folder, bytes), in order: what it saw when it decided."""
    measure = sandbox._tree_size
    seen: list[tuple[Path, int]] = []

    def recorded(path: Path) -> int:
        size = measure(path)
        seen.append((Path(path), size))
        return size

    monkeypatch.setattr(sandbox, "_tree_size", recorded)
    return seen


def test_filling_the_disk_is_stopped(workspace: Path, monkeypatch: pytest.MonkeyPatch, run_command: RunCommand) -> None:
    limits = Limits(file_bytes=4 << 20, workspace_bytes=16 << 20)
    seen = watched_sizes(monkeypatch)
    script = "i=0; while true; do head -c 3000000 /dev/zero > f$i || true; i=$((i+1)); done"
    result = run_command(script, workspace, 30, limits=limits)
    assert result.killed_reason == "workspace over quota"
    # Stopped by the first look that saw the quota passed: every look before it saw 16 MiB or less.
    # (What the writer adds between that look and the kill depends on the machine's speed: make bench.)
    sizes = [size for path, size in seen if path == workspace]
    assert sizes[-1] > limits.workspace_bytes and all(size <= limits.workspace_bytes for size in sizes[:-1]), sizes


def test_output_is_captured_beyond_pipe_size(workspace: Path, run_command: RunCommand) -> None:
    result = run_command("head -c 300000 /dev/zero | tr '\\0' a", workspace, 10)
    assert len(result.stdout) == 300000


def test_unsafe_local_mode_without_namespaces_still_bounds(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, use_backend: UseBackend
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")  # a local stack
    monkeypatch.delenv("K_SERVICE", raising=False)
    run_command = use_backend("unsafe-no-isolation").run
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
    with pytest.raises(sandbox.IsolationUnavailable, match="no isolation backend works here") as refused:
        Commands(Settings.from_env()).run("touch ran", workspace, 10)
    assert "bubblewrap is not installed" in str(refused.value) and "enable sandboxes" in str(refused.value)
    assert not (workspace / "ran").exists()


def test_running_without_isolation_is_refused_on_google_cloud(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, use_backend: UseBackend
) -> None:
    monkeypatch.setenv("K_SERVICE", "vibesdk-sandbox-job")
    commands = use_backend("unsafe-no-isolation")
    with pytest.raises(sandbox.IsolationUnavailable, match="refused on Google Cloud"):
        commands.run("touch ran", workspace, 10)
    assert not (workspace / "ran").exists()


def test_an_unknown_backend_is_refused_by_name(use_backend: UseBackend) -> None:
    """At start-up: the job's settings are read once, and a bad one stops it, naming its variable."""
    with pytest.raises(ConfigurationError, match="VIBESDK_SANDBOX_BACKEND must be one of"):
        use_backend("firecracker")


def test_the_probe_holds_while_the_jobs_grpc_clients_are_busy(backend: Commands, settings: Settings) -> None:
    """The job probes its backend during its first action, while its Firestore and Pub/Sub clients
    run: a fork() of it then failed about one probe in a hundred ("epoll_wait error: Bad file
    descriptor" from gRPC's threads in the child), and the job refused every command for its life."""
    publisher = clients.publisher_client(settings)
    topic = publisher.topic_path(settings.project, "probe-under-load")
    publisher.create_topic(name=topic)
    documents = clients.firestore_client(settings).collection("probeUnderLoad")
    stop = threading.Event()

    def busy(index: int) -> None:
        while not stop.is_set():
            publisher.publish(topic, b"busy").result()
            documents.document(str(index)).set({"at": time.time()})

    threads = [threading.Thread(target=busy, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    failures = []
    try:
        # Cloud Run's probe checks what it relies on with two sandboxes (a second each): fewer of them.
        for _ in range(200 if backend.isolation.selected()[0].name == "bubblewrap" else 20):  # type: ignore[union-attr]
            found, why = isolation.Isolation(backend.settings).selected()  # probed afresh
            if found is None:
                failures.append(why)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []


def test_cloud_run_backend_passes_the_documented_flags(sandbox_root: Path, use_backend: UseBackend) -> None:
    commands = use_backend("cloud-run")
    workspace = sandbox_root
    launch = commands.isolation.backend().launch(
        ["/bin/sh", "-c", "true"], workspace, workspace, {"K": "V"}, Limits(), 5
    )
    cli = launch.argv.index(str(commands.settings.cloud_run_sandbox_command))
    assert launch.argv[:cli] == isolation.REAPER  # the CLI runs under the job's reaper, outside the sandbox
    assert launch.argv[cli + 1 : cli + 4] == ["do", "--stdin=false", "-e"] and "K=V" in launch.argv
    assert "--allow-egress" not in launch.argv
    assert f"type=bind,source={workspace},destination=/tmp/workspace" in launch.argv
    assert launch.argv.index("--") < launch.argv.index(isolation.PRLIMIT)  # by absolute path, inside
    assert set(launch.env) == {"PATH"}  # nothing of the job's environment reaches the sandbox command


def test_limits_hold_against_a_command_that_uses_sudo(sandbox_root: Path, use_backend: UseBackend) -> None:
    """A Cloud Run sandbox's user has sudo, which raises any limit set inside: what binds is what the
    job watches from outside (the stand-in's sudo runs its command free of the inner limits)."""
    commands = use_backend("cloud-run")
    require_backend(commands, "cloud-run")
    workspace = Path(tempfile.mkdtemp(dir=sandbox_root))
    commands.prepare(workspace)
    raised = commands.run(
        "prlimit --nproc --noheadings --output SOFT; sudo prlimit --nproc --noheadings --output SOFT", workspace, 20
    )
    inner, freed = raised.stdout.split()
    assert int(inner) < int(freed), raised  # sudo is free of the limit set inside, as on Cloud Run
    limits = Limits(processes=32, total_memory_bytes=256 << 20)
    forks = commands.run("sudo sh -c 'for i in $(seq 100); do sleep 20 & done; wait'", workspace, 30, limits=limits)
    assert forks.killed_reason == "processes over 32", forks
    hold = "sudo python3 -c \"import time; b = 'x' * (400 * 1024 * 1024); time.sleep(20)\""
    memory = commands.run(hold, workspace, 30, limits=limits)
    assert memory.killed_reason == "memory over 256 MiB", memory
    nap = f"600.{uuid.uuid4().int % 10**9:09d}"
    left = commands.run(
        f"sudo sh -c 'sleep {nap} >/dev/null 2>&1 &'; setsid sleep {nap} >/dev/null 2>&1 & echo left", workspace, 20
    )
    assert left.stdout == b"left\n" and left.exit_code == 0, left
    wait_until(lambda: not _sandbox_processes(nap.encode()), f"the `sleep {nap}`s left behind to end")
    assert commands.run("exit 42", workspace, 10).exit_code == 42  # the CLI says 1; the status comes back


def test_a_cloud_run_sandbox_user_writes_only_what_the_job_opened(sandbox_root: Path, use_backend: UseBackend) -> None:
    """Its user writes a bound folder only when it is world-writable (or root-owned 0755): the job
    opens the workspace up, and the stand-in binds anything else read-only."""
    commands = use_backend("cloud-run")
    require_backend(commands, "cloud-run")
    workspace = Path(tempfile.mkdtemp(dir=sandbox_root))
    (workspace / "src").mkdir()
    (workspace / "src" / "app.js").write_text("old")
    commands.prepare(workspace)
    result = commands.run(
        "echo new > src/app.js && mkdir -p out && echo built > out/x && echo h > $HOME/h && id -u", workspace, 20
    )
    assert result.exit_code == 0, result.stderr
    assert int(result.stdout) != os.getuid()  # never the job's own uid
    assert (workspace / "src" / "app.js").read_text() == "new\n" and (workspace / "out" / "x").read_text() == "built\n"
    closed = Path(tempfile.mkdtemp(dir=sandbox_root))
    closed.chmod(0o755)  # the job's own, as a job that is not root would leave it
    refused = commands.run("touch made", closed, 20)
    assert refused.exit_code != 0 and not (closed / "made").exists()


def test_dev_shm_counts_in_the_quota(workspace: Path, monkeypatch: pytest.MonkeyPatch, run_command: RunCommand) -> None:
    """/dev/shm was a tmpfs outside every quota (the red team kept 750 MB there)."""
    limits = Limits(tmp_bytes=16 << 20, file_bytes=64 << 20)
    seen = watched_sizes(monkeypatch)
    result = run_command("head -c 50000000 /dev/zero > /dev/shm/big; sleep 5", workspace, 20, limits=limits)
    assert result.killed_reason == "workspace over quota"
    # What it wrote went into the folder the quota counts as /dev/shm: the first look past 16 MiB stopped it.
    shm = [size for path, size in seen if path.name == "shm"]
    assert shm[-1] > limits.tmp_bytes and all(size <= limits.tmp_bytes for size in shm[:-1]), shm
    assert run_command("ls /dev/shm", workspace, 10).stdout == b""  # and it is the command's own


def test_output_is_bounded(workspace: Path, run_command: RunCommand) -> None:
    """The job holds a command's output until it is stored: it may not grow without end."""
    limits = Limits(output_bytes=1 << 20)
    result = run_command("while true; do head -c 1000000 /dev/zero; done", workspace, 30, limits=limits)
    assert result.killed_reason == "output over 1 MiB"
    assert len(result.stdout) == limits.output_bytes  # kept up to the cap, not a byte past it


def test_memory_of_all_the_command_processes_is_bounded(workspace: Path, run_command: RunCommand) -> None:
    """Each process's own limit let three processes hold 3.6 GB: their total is watched too."""
    limits = Limits(total_memory_bytes=512 << 20)
    hold = "python3 -c \"import time; b = 'x' * (300 * 1024 * 1024); time.sleep(20)\""
    result = run_command(f"{hold} & {hold} & {hold} & wait", workspace, 30, limits=limits)
    assert result.killed_reason == "memory over 512 MiB"


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


def test_a_failure_while_waiting_still_ends_the_whole_sandbox(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, run_command: RunCommand
) -> None:
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


def test_sparse_files_count_whole_in_the_disk_quota(workspace: Path, run_command: RunCommand) -> None:
    """`truncate -s 200M` takes no blocks, but a save stores it whole and a restore writes it
    dense elsewhere: eight of them passed a 1 GiB quota and took 1.6 GB on the next instance."""
    limits = Limits(file_bytes=64 << 20, workspace_bytes=16 << 20)
    result = run_command("truncate -s 40M sparse && sleep 30", workspace, 60, limits=limits)
    assert result.killed_reason == "workspace over quota", result


def test_a_hostile_command_leaves_no_scratch_behind(
    run_command: RunCommand, workspace: Path, sandbox_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch_root = Path(tempfile.mkdtemp(dir=sandbox_root))
    scratch_root.chmod(0o711)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))
    hostile = (
        "mkdir -p /tmp/a/b/c /dev/shm/d/e && echo x > /tmp/a/b/c/f && chmod 444 /tmp/a/b/c/f"
        " && chmod 000 /tmp/a/b/c /tmp/a/b /tmp/a /dev/shm/d/e /dev/shm/d"
        # Its own mount points where it may (a Cloud Run sandbox's user does not own them).
        "; chmod 500 /tmp /dev/shm 2>/dev/null; exit 0"
    )
    result = run_command(hostile, workspace, 30)
    assert result.exit_code == 0, result.stderr
    assert list(scratch_root.iterdir()) == []


@pytest.mark.parametrize(
    ("exit_code", "killed_reason", "ended"),
    [
        (3, None, "exited with code 3"),
        (-9, "timeout", "timed out"),
        (-9, "memory over 512 MiB", "killed: memory over 512 MiB"),
    ],
)
def test_how_a_command_ended_in_words(exit_code: int, killed_reason: str | None, ended: str) -> None:
    result = sandbox.CommandResult("true", exit_code, b"", b"", 0.1, killed_reason)
    assert result.ended == ended


@pytest.mark.parametrize(
    "plant",
    [
        # A link out of the sandbox to a job's file that reads "0": a failed command passed for a success.
        "ln -sf {zero} /tmp/.vibesdk-status",
        # A FIFO: the job's read of it waited for a writer forever, after the sandbox was gone.
        "rm -f /tmp/.vibesdk-status && mkfifo /tmp/.vibesdk-status",
    ],
)
def test_a_cloud_run_status_file_the_command_planted_is_not_followed(
    sandbox_root: Path, use_backend: UseBackend, plant: str
) -> None:
    """The status file is in the command's /tmp, which it writes: the job reads it as a file of the
    tenant's, never through a link and never when it is not a regular file."""
    commands = use_backend("cloud-run")
    require_backend(commands, "cloud-run")
    workspace = Path(tempfile.mkdtemp(dir=sandbox_root))
    commands.prepare(workspace)
    zero = sandbox_root / f"zero-{uuid.uuid4().hex}"
    zero.write_text("0\n")
    done: list[CommandResult] = []
    worker = threading.Thread(
        target=lambda: done.append(commands.run(f"{plant.format(zero=zero)}; exit 3", workspace, 3)), daemon=True
    )
    worker.start()
    worker.join(timeout=60)
    assert done, "the job still waits on the status file the command planted"
    assert done[0].exit_code != 0, done[0]


FLOOD = """
import os, socket, time
# Through the agent itself: each connection to its port is an OPEN frame to the job, then a CLOSE.
for _ in range(2000):
    socket.create_connection(("127.0.0.1", int(os.environ["EGRESS_PORT"]))).close()
open("flooded", "w").close()
for _ in range(600):
    if os.path.exists("release"):
        break
    time.sleep(0.1)
"""


def test_a_flood_of_tunnelled_connections_holds_no_more_of_the_jobs_descriptors_than_the_proxy_admits(
    sandbox_root: Path, use_backend: UseBackend
) -> None:
    """Each connection to the tunnel agent's port is an OPEN frame: the job's end of each, to the proxy,
    stayed open after the connection ended, until the command did (2000 descriptors of the job's)."""
    commands = use_backend("cloud-run")
    require_backend(commands, "cloud-run")
    workspace = Path(tempfile.mkdtemp(dir=sandbox_root))
    commands.prepare(workspace)
    (workspace / "flood.py").write_text(FLOOD)
    commands.proxy()  # its own descriptors before the count
    before = len(os.listdir("/proc/self/fd"))
    egress_for = sandbox.Egress("session-flood", "run-flood", "owner-flood")
    done: list[CommandResult] = []
    worker = threading.Thread(
        target=lambda: done.append(
            commands.run(f"EGRESS_PORT={sandbox.EGRESS_PORT} python3 flood.py", workspace, 90, egress_for=egress_for)
        ),
        daemon=True,
    )
    worker.start()
    try:
        wait_until(lambda: (workspace / "flooded").exists() or done, "the command's forged frames")
        time.sleep(2)  # the job takes them in
        held = len(os.listdir("/proc/self/fd")) - before
    finally:
        (workspace / "release").touch()
        worker.join(timeout=60)
    assert done and done[0].exit_code == 0, done
    # The proxy holds at most its cap of the command's connections, each with the job's end of it.
    assert held <= 2 * egress.CONNECTIONS_PER_COMMAND + 16, held


@pytest.mark.parametrize(
    "hold",
    [
        "exec 3>/tmp/held; rm /tmp/held; head -c 200000000 /dev/zero >&3; sleep 20",
        "python3 -c \"import os, time; fd = os.memfd_create('m'); [os.write(fd, b'x' * (1 << 20)) for _ in range(200)]; time.sleep(20)\"",
    ],
    ids=["removed-file", "memfd"],
)
def test_files_held_open_after_removal_count_as_memory(workspace: Path, run_command: RunCommand, hold: str) -> None:
    """No folder's size shows them (the review held 200 MB past a 128 MiB bound this way)."""
    limits = Limits(total_memory_bytes=128 << 20, tmp_bytes=16 << 20)
    result = run_command(hold, workspace, 30, limits=limits)
    assert result.killed_reason == "memory over 128 MiB", result
