"""Runs one shell command of a sandboxed app, bounded and cut off from the job.

The command runs in the isolation backend this job selected (functions/isolation.py: bubblewrap,
Cloud Run sandboxes, or, locally and only when asked by name, none): its workspace at /workspace,
a private /tmp, no job environment, credentials, source tree, emulators or metadata server, and
never the job's network. When its run may use the network, its only way out is the egress proxy
(functions/egress.py). Either way it runs under an unprivileged uid when the job is root (so that
the process limit binds), with limits on CPU time, memory, processes and file size, a wall-clock
timeout that kills the whole process group, and a watchdog on the workspace's and /tmp's size.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import select
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from functions import confined
from functions.egress import EgressProxy, proxy_for
from functions.isolation import Ids, Isolation, IsolationBackend, IsolationUnavailable, Limits, shm_of
from functions.scratch import scratch_folder
from functions.stdio_tunnel import Tunnel
from vibesdk_gcp.settings import Settings

logger = logging.getLogger("functions.sandbox")

__all__ = ["CommandResult", "Egress", "IsolationUnavailable", "Limits", "prepare_workspace", "run_command"]

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"  # Debian's bundle (ca-certificates), bound read-only
KILL_GRACE_SECONDS = 2.0
WATCH_INTERVAL_SECONDS = 0.1
# Inside the sandbox: the proxy's socket in the command's /tmp, and the port the bridge opens.
EGRESS_SOCKET = ".vibesdk-egress.sock"
EGRESS_PORT = 3128
BRIDGE_SOURCE = (Path(__file__).parent / "egress_bridge.py").read_text()
# In a Cloud Run sandbox, the tunnel's end (functions/tunnel_agent.py): PORT and the command follow.
# The image's python3, by the sandbox's PATH: the job's own may be in a folder its user cannot reach.
TUNNEL_AGENT = ["python3", "-I", "-S", "-c", (Path(__file__).parent / "tunnel_agent.py").read_text()]
# Start the bridge (it returns once its port is open), then the command itself.
WITH_BRIDGE = (
    'python3 -c "$1" "$2" "$3" || { echo "the egress bridge did not start" >&2; exit 125; }; '
    'shift 3; exec /bin/sh -c "$1"'
)


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_seconds: float
    killed_reason: str | None = None  # "timeout", "workspace over quota", "output over N MiB", "memory over N MiB"

    @property
    def ended(self) -> str:
        """How the command ended, for a message: "timed out", "killed: <reason>" or "exited with code N"."""
        if self.killed_reason == "timeout":
            return "timed out"
        if self.killed_reason:
            return f"killed: {self.killed_reason}"
        return f"exited with code {self.exit_code}"


@dataclass(frozen=True)
class Egress:
    """A command that may reach the allow-listed hosts, through the proxy, on behalf of one run."""

    session_id: str
    run_id: str
    owner: str


def prepare_workspace(
    path: Path, ids: Ids | None, given: str | None = None, backend: IsolationBackend | None = None
) -> None:
    """Hand the workspace to the sandbox uid (`ids`, None: the job's own) so commands can write
    it, and nothing else; to everyone, for a backend whose user writes only that (Cloud Run's).

    `given` is the folder of an installed tree linked in (functions/dependencies.py): its files
    are the job's, shared with other workspaces, and stay so, wherever a command moved them.
    """
    if backend is not None and backend.files_for_all:
        confined.open_up(path, given)
    elif ids is not None:
        confined.give_away(path, ids, given)


def _proxy_env(port: int) -> dict[str, str]:
    url = f"http://127.0.0.1:{port}"
    names = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "npm_config_proxy", "npm_config_https_proxy")
    return {name: url for name in names} | {"PIP_PROXY": url, "NO_PROXY": "", "no_proxy": ""}


def _tree_size(path: Path) -> int:
    """Bytes under path as a save and a restore write them: a sparse file counts whole.

    The command is running meanwhile and may swap any folder for a link: the walk goes through
    folders it opened without following links (os.fwalk), one descriptor per level at most.
    """
    total = 0
    try:
        for _, _, filenames, folder in os.fwalk(path):
            for name in filenames:
                try:
                    info = os.stat(name, dir_fd=folder, follow_symlinks=False)
                except OSError:
                    continue  # gone meanwhile
                total += max(info.st_size, info.st_blocks * 512)
    except OSError:
        pass
    return total


class Sandbox:
    """Commands as one job process runs them: with its isolation backend (probed on first use) and,
    when asked, through its egress proxy (started on first use). One per Context; tests make their own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.isolation = Isolation(settings)
        self._proxy: EgressProxy | None = None
        self._lock = threading.Lock()

    def proxy(self) -> EgressProxy:
        with self._lock:
            if self._proxy is None:
                self._proxy = proxy_for(self.settings)
            return self._proxy

    def prepare(self, path: Path, given: str | None = None) -> None:
        backend, _ = self.isolation.selected()
        prepare_workspace(path, self.isolation.ids, given, backend)

    def run(
        self,
        command: str,
        workspace: Path,
        timeout_seconds: float,
        env: dict[str, str] | None = None,
        limits: Limits = Limits(),
        egress_for: Egress | None = None,
    ) -> CommandResult:
        proxy = self.proxy() if egress_for else None
        backend = self.isolation.backend()
        return run_command(command, workspace, timeout_seconds, env, limits, egress_for, backend=backend, proxy=proxy)


def run_command(
    command: str,
    workspace: Path,
    timeout_seconds: float,
    env: dict[str, str] | None = None,
    limits: Limits = Limits(),
    egress_for: Egress | None = None,
    *,
    backend: IsolationBackend,
    proxy: EgressProxy | None = None,
) -> CommandResult:
    """Run `/bin/sh -c command` in the workspace and wait for it, within every bound (with egress:
    through the proxy)."""
    if egress_for and not backend.isolated:
        raise IsolationUnavailable("network for a command needs an isolation backend; nothing was run")
    with scratch_folder() as scratch_path:
        scratch_path.chmod(0o711)  # the sandbox uid must reach its /tmp, and list nothing here
        tmp = scratch_path / "tmp"
        tmp.mkdir()
        prepare_workspace(tmp, backend.ids, backend=backend)
        shm = shm_of(tmp)
        shm.mkdir()
        shm.chmod(0o1777)  # whatever the umask
        prepare_workspace(shm, backend.ids, backend=backend)
        # What the command sees: the sandbox's own paths, or the real ones without isolation.
        seen_tmp = backend.tmp_inside or str(tmp)
        base_env = {
            "PATH": SANDBOX_PATH,
            "HOME": seen_tmp,
            "TMPDIR": seen_tmp,
            "LANG": "C.UTF-8",
            "PWD": backend.workspace_inside or str(workspace),
            "CI": "true",
            # Plain text: outputs are read by agents and parsed here, not shown on a terminal.
            "NO_COLOR": "1",
            "FORCE_COLOR": "0",
        }
        if Path(SYSTEM_CAS).exists():
            # Node.js's own builds trust their bundled list only; commands trust what the system does.
            base_env["NODE_EXTRA_CA_CERTS"] = SYSTEM_CAS
        shell = ["/bin/sh", "-c", command]
        tunnelled = bool(egress_for) and backend.egress_over_stdio
        # The proxy's socket: in the command's /tmp for the bridge, or the job's side of the tunnel.
        socket_path = (scratch_path if tunnelled else tmp) / EGRESS_SOCKET
        if egress_for:
            assert proxy is not None, "a command given egress needs the proxy"
            proxy.open(socket_path, egress_for.session_id, egress_for.run_id, egress_for.owner)
            base_env |= _proxy_env(EGRESS_PORT)
            if tunnelled:
                shell = [*TUNNEL_AGENT, str(EGRESS_PORT), *shell]
            else:
                inside_socket = f"{seen_tmp}/{EGRESS_SOCKET}"
                shell = ["/bin/sh", "-c", WITH_BRIDGE, "sh", BRIDGE_SOURCE, inside_socket, str(EGRESS_PORT), command]
        cpu = int(timeout_seconds) + 1
        launch = backend.launch(shell, workspace, tmp, base_env | (env or {}), limits, cpu, stdin=tunnelled)
        started = time.monotonic()
        process = None
        try:
            process = subprocess.Popen(
                launch.argv,
                cwd=str(workspace),
                env=launch.env,
                stdin=subprocess.PIPE if tunnelled else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
            assert isinstance(process.stdout, io.BufferedReader) and isinstance(process.stderr, io.BufferedReader)
            out: _Capped | Tunnel
            if tunnelled:
                assert process.stdin is not None
                out = Tunnel(process.stdout, process.stdin, socket_path, limits.output_bytes)
            else:
                out = _Capped(process.stdout, limits.output_bytes)
            err = _Capped(process.stderr, limits.output_bytes)
            killed = _wait(process, workspace, (tmp, shm), (out, err), timeout_seconds, limits, backend.contained)
            out.join()
            err.join()
        finally:
            # On every path, a failure to wait included: nothing of the sandbox outlives its
            # command, unwatched, to race the job's next file operations.
            if process is not None and process.returncode is None:
                _end(process, backend.contained)
            if egress_for and proxy is not None:
                proxy.close(socket_path)
        duration = time.monotonic() - started
        exit_code = _status_of(tmp, backend.status_file, process.returncode)
        return CommandResult(
            command=command,
            exit_code=exit_code if not killed else (process.returncode or -signal.SIGKILL),
            stdout=bytes(out.data),
            stderr=bytes(err.data),
            duration_seconds=duration,
            killed_reason=killed,
        )


def _status_of(tmp: Path, status_file: str | None, launched: int) -> int:
    """The command's exit status: the launch's own, or what the sandbox wrote (its CLI says 0 or 1)."""
    if status_file is None:
        return launched
    # The command writes its /tmp: a link there would lead the job's read out of it, a FIFO would
    # hold it forever, /dev/zero would fill its memory. A regular file of /tmp's own, a few bytes.
    try:
        with os.fdopen(confined.open_file(tmp, status_file), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return launched
            return int(handle.read(16).strip())
    except (OSError, ValueError):
        return launched  # the command never got to its end (killed), or a tenant removed the file


class _Capped:
    """Reads one output of the command as it comes, keeping at most `limit` bytes: no more ever
    reaches the job's memory or disk (past it the command is stopped, and told why)."""

    def __init__(self, pipe: io.BufferedReader, limit: int) -> None:
        self.data = bytearray()
        self.over = False
        self._pipe, self._limit = pipe, limit
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._pipe:
            while chunk := self._pipe.read1(65536):
                room = self._limit - len(self.data)
                self.data += chunk[:room]
                if len(chunk) > room:
                    self.over = True
                    return  # the watchdog stops the command; its writes no longer go anywhere

    def join(self) -> None:
        # Everything that could write to the pipe is gone by now; a straggler is not waited for.
        self._thread.join(timeout=KILL_GRACE_SECONDS)


def _wait(
    process: subprocess.Popen[bytes],
    workspace: Path,
    scratch: tuple[Path, ...],
    outputs: tuple[_Capped | Tunnel, ...],
    timeout: float,
    limits: Limits,
    contained: bool = True,
) -> str | None:
    """Wait for the command; kill its process group on timeout or when it passes a quota
    (`contained` False: the sandbox's own limits may have been raised, so its processes are
    counted from here too, and it is ended through its reaper).

    A pidfd wakes us the moment the command exits (Popen.wait(timeout) polls with sleeps,
    which cost a quick command milliseconds); between wake-ups we check the quotas.
    """
    deadline = time.monotonic() + timeout
    exited = _exit_waiter(process)
    walk_due = 0.0
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _stop(process, contained)
                process.wait()
                return "timeout"
            if exited(min(WATCH_INTERVAL_SECONDS, remaining)):
                break
            reason = None
            if time.monotonic() >= walk_due:
                began = time.monotonic()
                reason = _over_disk_quota(workspace, scratch, limits)
                # A big tree (thousands of installed files) is walked less often: the walk takes
                # at most a twentieth of a core from the command it watches.
                walk_due = time.monotonic() + max(WATCH_INTERVAL_SECONDS, 20 * (time.monotonic() - began))
            reason = reason or _over_quota(process.pid, outputs, limits, contained)
            if reason:
                _stop(process, contained)
                process.wait()
                return reason
    finally:
        exited(None)
    # The shell may be gone while children it put in the background still run.
    _stop(process, contained)
    if any(output.over for output in outputs):
        # Its pipe closed past the cap, the command died of SIGPIPE before the watchdog saw it.
        return f"output over {limits.output_bytes >> 20} MiB"
    return None


def _over_disk_quota(workspace: Path, scratch: tuple[Path, ...], limits: Limits) -> str | None:
    if _tree_size(workspace) > limits.workspace_bytes or sum(map(_tree_size, scratch)) > limits.tmp_bytes:
        return "workspace over quota"
    return None


def _over_quota(pid: int, outputs: tuple[_Capped | Tunnel, ...], limits: Limits, contained: bool = True) -> str | None:
    """Which of the other quotas the running command has passed, if any."""
    if any(output.over for output in outputs):
        return f"output over {limits.output_bytes >> 20} MiB"
    resident, tasks = _tree_usage(pid)
    if resident > limits.total_memory_bytes:
        return f"memory over {limits.total_memory_bytes >> 20} MiB"
    if not contained and tasks > limits.processes + LAUNCH_TASKS:
        return f"processes over {limits.processes}"
    return None


PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
# The launch's own tasks in the tree (reaper, CLI, its sandbox's init and broker), beside the command's.
LAUNCH_TASKS = 16


def _tree_usage(pid: int) -> tuple[int, int]:
    """Memory and tasks (threads count, as RLIMIT_NPROC counts them) of the command's whole process
    tree: each process's own limit does not bound them all, and in a sandbox whose user has sudo
    none binds. Memory is what is resident, and the files held open after their removal (a
    memfd, a /tmp file removed while written), which no folder's size shows."""
    total, tasks, todo = 0, 0, [pid]
    held: set[tuple[int, int]] = set()
    while todo:
        current = todo.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * PAGE_BYTES
            total += _removed_but_open(current, held)
            for task in os.scandir(f"/proc/{current}/task"):
                tasks += 1
                todo += [int(child) for child in Path(task.path, "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total, tasks


def _removed_but_open(pid: int, seen: set[tuple[int, int]]) -> int:
    """Bytes of the files `pid` holds open that no folder has any more, each file counted once."""
    total = 0
    try:
        descriptors = list(os.scandir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for descriptor in descriptors:
        try:
            if not os.readlink(descriptor.path).endswith(" (deleted)"):
                continue
            info = os.stat(descriptor.path)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += max(info.st_size, info.st_blocks * 512)
    return total


def _exit_waiter(process: subprocess.Popen[bytes]) -> Callable[[float | None], bool]:
    """A function that waits up to a timeout for the process to exit (None: release it)."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        pidfd = None

    def exited(seconds: float | None) -> bool:
        if seconds is None:
            if pidfd is not None:
                os.close(pidfd)
            return True
        if pidfd is not None:
            ready, _, _ = select.select([pidfd], [], [], seconds)
            if not ready:
                return False
        try:
            process.wait(timeout=0 if pidfd is not None else seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    return exited


def _end(process: subprocess.Popen[bytes], contained: bool = True) -> None:
    """Kill the command's whole process group and reap it.

    The group's leader is the backend's launcher (bubblewrap): killing it ends its PID namespace,
    and every process of the sandbox with it (--die-with-parent). A Cloud Run sandbox's are ended
    by its reaper first (functions/sandbox_reaper.py).
    """
    _stop(process, contained)
    try:
        process.wait(timeout=KILL_GRACE_SECONDS * 5)
    except subprocess.TimeoutExpired:
        logger.error("sandbox process %s did not end after SIGKILL", process.pid)


def _stop(process: subprocess.Popen[bytes], contained: bool) -> None:
    if not contained and process.returncode is None:
        # The reaper kills every process its sandbox left, then exits: killed first, it could not.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=KILL_GRACE_SECONDS * 5)
    _kill_group(process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
