"""Runs one shell command of a sandboxed app, bounded and cut off from the job.

With bubblewrap, a command sees only the system's read-only /usr and a few
/etc files, its workspace at /workspace and a private /tmp, in fresh user,
PID, IPC, UTS and network namespaces (never the job's network): no job environment,
credentials, source tree, emulators or metadata server. Where namespaces are
unavailable, commands are refused (fail closed, ../shared/DESIGN.md), unless
VIBESDK_UNSAFE_NO_ISOLATION=true on a local stack (refused on Google Cloud). It runs under an unprivileged uid when the job is root (so that the
process limit binds) with limits on CPU time, memory, processes and file
size, a wall-clock timeout that kills the whole process group, and a
watchdog on the workspace's size.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vibesdk_gcp.errors import ActionFailed
from vibesdk_gcp.settings import Settings

logger = logging.getLogger("functions.sandbox")

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# /etc entries a toolchain needs to start; nothing with secrets.
ETC_ENTRIES = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "passwd",
    "group",
    "nsswitch.conf",
    "ssl",
    "ca-certificates",
    "localtime",
    "mime.types",
)
KILL_GRACE_SECONDS = 2.0
WATCH_INTERVAL_SECONDS = 0.1


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 4 << 30
    processes: int = 256
    file_bytes: int = 256 << 20
    workspace_bytes: int = 1 << 30
    tmp_bytes: int = 256 << 20

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(workspace_bytes=settings.workspace_bytes, tmp_bytes=settings.sandbox_tmp_bytes)


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_seconds: float
    killed_reason: str | None = None  # "timeout" or "workspace over quota"


class IsolationUnavailable(ActionFailed):
    """No isolation backend works here: the command is refused, never run without one."""


def unsafe_without_isolation() -> bool:
    """VIBESDK_UNSAFE_NO_ISOLATION=true runs commands with limits only: a local stack's choice alone."""
    if os.environ.get("VIBESDK_UNSAFE_NO_ISOLATION", "").lower() != "true":
        return False
    if Settings.from_env().on_google_cloud or os.environ.get("K_SERVICE"):
        raise IsolationUnavailable("VIBESDK_UNSAFE_NO_ISOLATION is refused on Google Cloud; nothing was run")
    return True


@functools.cache
def bubblewrap() -> str | None:
    """bwrap's path when it can make namespaces here, else None (and a warning)."""
    path = shutil.which("bwrap")
    if path is None:
        logger.warning("bubblewrap is not installed: sandboxed commands are refused")
        return None
    probe = subprocess.run(
        [path, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
        capture_output=True,
        **_drop_privileges_kwargs(),
    )
    if probe.returncode != 0:
        logger.warning(
            "bubblewrap cannot create namespaces here (%s): sandboxed commands are refused",
            probe.stderr.decode(errors="replace").strip(),
        )
        return None
    return path


def _sandbox_ids() -> tuple[int, int] | None:
    """The unprivileged uid and gid commands run as when the job itself is root."""
    if os.geteuid() != 0:
        return None
    uid = int(os.environ.get("VIBESDK_SANDBOX_UID", "65534"))
    return uid, int(os.environ.get("VIBESDK_SANDBOX_GID", str(uid)))


def _drop_privileges_kwargs() -> dict[str, object]:
    ids = _sandbox_ids()
    return {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}


def prepare_workspace(path: Path) -> None:
    """Hand the workspace to the sandbox uid so commands can write it, and nothing else."""
    ids = _sandbox_ids()
    if ids is None:
        return
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chown(dirpath, *ids)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), *ids, follow_symlinks=False)


def _bwrap_argv(bwrap: str, workspace: Path, tmp: Path) -> list[str]:
    # --unshare-user: the process limit is counted per user namespace (see _argv). The network
    # namespace is never shared: the job's network reaches the emulators, the API and, on Google
    # Cloud, the metadata server and its credentials.
    argv = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    argv += ["--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev"]
    for link in ("bin", "lib", "lib64", "sbin"):
        top = Path("/") / link
        if top.is_symlink():
            argv += ["--symlink", os.readlink(top), str(top)]
        elif top.exists():
            argv += ["--ro-bind", str(top), str(top)]
    for entry in ETC_ENTRIES:
        if (Path("/etc") / entry).exists():
            argv += ["--ro-bind", f"/etc/{entry}", f"/etc/{entry}"]
    argv += ["--bind", str(tmp), "/tmp", "--bind", str(workspace), "/workspace", "--chdir", "/workspace"]
    # The root bwrap builds is a tmpfs outside every quota: freeze it.
    argv += ["--remount-ro", "/"]
    return argv


def _tasks_of(uid: int) -> int:
    """Threads and processes the uid already runs: RLIMIT_NPROC counts them all."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except (FileNotFoundError, PermissionError):
                pass
    return count


def _process_budget(limits: Limits) -> int:
    """RLIMIT_NPROC for a command run outside bubblewrap: the uid's tasks elsewhere count too."""
    ids = _sandbox_ids()
    return limits.processes + _tasks_of(ids[0] if ids else os.getuid())


@functools.cache
def _per_namespace_process_count() -> bool:
    """Linux 5.14+ counts RLIMIT_NPROC per user namespace: one set inside bwrap binds that sandbox alone."""
    try:
        major, minor = (int(part) for part in platform.release().split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 14)


def _drop_privileges() -> list[str]:
    ids = _sandbox_ids()
    return ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups"] if ids else []


def _limits(limits: Limits, cpu_seconds: int, processes: int) -> list[str]:
    """The command prefix that sets the resource limits.

    setpriv and prlimit (util-linux) do in the child what a preexec_fn would, but let
    Python start the child with vfork: a fork of a job process that has grown to hundreds of
    megabytes costs tens of milliseconds per command.
    """
    return [
        "prlimit",
        f"--cpu={cpu_seconds}",
        f"--as={limits.memory_bytes}",
        f"--fsize={limits.file_bytes}",
        f"--nproc={processes}",
        "--core=0",
        "--",
    ]


def _argv(command: str, bwrap: str | None, workspace: Path, tmp: Path, limits: Limits, cpu: int) -> list[str]:
    shell = ["/bin/sh", "-c", command]
    if bwrap and _per_namespace_process_count():
        # Limits set inside bwrap's user namespace: the process limit counts this sandbox's
        # tasks only, so no scan of /proc for the uid's other commands is needed.
        inside = _limits(limits, cpu, limits.processes) + shell
        return _drop_privileges() + _bwrap_argv(bwrap, workspace, tmp) + ["--", *inside]
    if bwrap:
        shell = _bwrap_argv(bwrap, workspace, tmp) + ["--", *shell]
    return _drop_privileges() + _limits(limits, cpu, _process_budget(limits)) + shell


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def run_command(
    command: str,
    workspace: Path,
    timeout_seconds: float,
    env: dict[str, str] | None = None,
    limits: Limits = Limits(),
) -> CommandResult:
    """Run `/bin/sh -c command` in the workspace and wait for it, within every bound."""
    bwrap = bubblewrap()
    if bwrap is None and not unsafe_without_isolation():
        raise IsolationUnavailable(
            "sandboxed commands are refused: no isolation backend works here (bubblewrap is missing or "
            "cannot create user namespaces); nothing was run"
        )
    with tempfile.TemporaryDirectory(prefix="vibesdk-run-") as scratch:
        scratch_path = Path(scratch)
        scratch_path.chmod(0o711)  # the sandbox uid must reach its /tmp, and list nothing here
        tmp = scratch_path / "tmp"
        tmp.mkdir()
        prepare_workspace(tmp)
        cwd = "/workspace" if bwrap else str(workspace)
        base_env = {
            "PATH": SANDBOX_PATH,
            "HOME": "/tmp" if bwrap else str(tmp),
            "TMPDIR": "/tmp" if bwrap else str(tmp),
            "LANG": "C.UTF-8",
            "PWD": cwd,
            "CI": "true",
        }
        child_env = base_env | (env or {})
        argv = _argv(command, bwrap, workspace, tmp, limits, int(timeout_seconds) + 1)
        stdout_path, stderr_path = scratch_path / "stdout", scratch_path / "stderr"
        started = time.monotonic()
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                argv,
                cwd=str(workspace),
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
            killed = _wait(process, workspace, tmp, timeout_seconds, limits)
        duration = time.monotonic() - started
        return CommandResult(
            command=command,
            exit_code=process.returncode if not killed else (process.returncode or -signal.SIGKILL),
            stdout=stdout_path.read_bytes(),
            stderr=stderr_path.read_bytes(),
            duration_seconds=duration,
            killed_reason=killed,
        )


def _wait(process: subprocess.Popen[bytes], workspace: Path, tmp: Path, timeout: float, limits: Limits) -> str | None:
    """Wait for the command; kill its process group on timeout or when its disk use passes the quota.

    A pidfd wakes us the moment the command exits (Popen.wait(timeout) polls with sleeps,
    which cost a quick command milliseconds); between wake-ups we check the disk quota.
    """
    deadline = time.monotonic() + timeout
    exited = _exit_waiter(process)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill_group(process)
                process.wait()
                return "timeout"
            if exited(min(WATCH_INTERVAL_SECONDS, remaining)):
                break
            if _tree_size(workspace) > limits.workspace_bytes or _tree_size(tmp) > limits.tmp_bytes:
                _kill_group(process)
                process.wait()
                return "workspace over quota"
    finally:
        exited(None)
    # The shell may be gone while children it put in the background still run.
    _kill_group(process)
    return None


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


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
