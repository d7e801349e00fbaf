"""Isolation backends: how one command is cut off from the job, and which backend this job uses.

- bubblewrap: fresh user, PID, IPC, UTS and network namespaces, a read-only system, the
  workspace at /workspace and a private /tmp (any Linux that allows user namespaces);
- cloud-run: Cloud Run sandboxes, the `sandbox` command of the second-generation environment when
  the service enables them (`sandboxLauncher`). `sandbox do` gives no egress, no inherited
  environment, secrets or metadata credentials, a read-only root and an in-memory /tmp
  (https://docs.cloud.google.com/run/docs/reference/sandbox-cli); the workspace and the command's
  /tmp are bound in, so the quotas watch them as with bubblewrap;
- unsafe-no-isolation: limits only, for a local stack on a machine without either; its name says
  what it is, and it is refused on Google Cloud.

VIBESDK_SANDBOX_BACKEND names one; by default ("auto") the job takes the first of bubblewrap and
cloud-run that works here, probed once per process (its Isolation, in functions/context.py). When
none works, commands are refused (fail closed, ../shared/DESIGN.md) with the reason, which the
job's /healthz also shows.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vibesdk_gcp.errors import ActionFailed
from vibesdk_gcp.settings import SANDBOX_BACKENDS, Settings

logger = logging.getLogger("functions.isolation")

# Where Cloud Run puts the sandbox command when it is not on PATH.
CLOUD_RUN_SANDBOX_COMMAND = "/usr/local/gcp/bin/sandbox"
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
# Where a command sees its workspace and /tmp. Cloud Run's sandbox root is the image's, read-only:
# the workspace is bound under the (bound) /tmp, where a mount point can be made.
INSIDE_TMP = "/tmp"
BWRAP_WORKSPACE = "/workspace"
CLOUD_RUN_WORKSPACE = "/tmp/workspace"
# Where a Cloud Run sandbox's command leaves its exit status, in its /tmp (the CLI passes 0 or 1 only).
STATUS_FILE = ".vibesdk-status"
# Commands of the job at once, at most (Settings.concurrency's ceiling), for a limit they may share.
PROCESS_ROOM = 8
# What starts the Cloud Run CLI: the reaper, by the job's own interpreter, outside the sandbox.
REAPER = [sys.executable, "-I", "-S", "-c", (Path(__file__).parent / "sandbox_reaper.py").read_text()]


class IsolationUnavailable(ActionFailed):
    """No isolation backend works here: the command is refused, never run without one."""


Ids = tuple[int, int]  # the uid and gid commands run as


@dataclass(frozen=True)
class Limits:
    # Address space of each process: generous, because V8 reserves about 10 GiB of it (not memory)
    # for every WebAssembly memory, and Vite's toolchain instantiates several (es-module-lexer);
    # what a command really uses is bounded by total_memory_bytes.
    memory_bytes: int = 64 << 30
    processes: int = 256
    file_bytes: int = 256 << 20
    workspace_bytes: int = Settings.workspace_bytes
    tmp_bytes: int = Settings.sandbox_tmp_bytes  # /tmp and /dev/shm together
    output_bytes: int = 16 << 20  # each of stdout and stderr: the job keeps them until they are stored
    # All the command's processes together (memory_bytes bounds each one's address space); infra/gcp
    # sizes the instance for its concurrency x (this + the disks) + the job.
    total_memory_bytes: int = Settings.command_memory_bytes

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            workspace_bytes=settings.workspace_bytes,
            tmp_bytes=settings.sandbox_tmp_bytes,
            total_memory_bytes=settings.command_memory_bytes,
        )


@dataclass(frozen=True)
class Launch:
    """What to start, and the environment to start it with."""

    argv: list[str]
    env: dict[str, str]


def shm_of(tmp: Path) -> Path:
    """The folder a command gets as /dev/shm: beside its /tmp, counted in the same quota."""
    return tmp.parent / "shm"


def sandbox_ids(settings: Settings) -> Ids | None:
    """The unprivileged uid and gid commands run as when the job itself is root (None: the job's own)."""
    if os.geteuid() != 0:
        return None
    return settings.sandbox_uid, settings.sandbox_gid


# The tools a launch runs, by absolute path, and the environment the job's side of it runs with: never
# a command's own variables, which are a tenant's (a PATH or LD_PRELOAD of theirs would choose what
# setpriv, prlimit and bwrap run as root, or let a command skip its limits).
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SETPRIV = shutil.which("setpriv", path=SYSTEM_PATH) or "/usr/bin/setpriv"
PRLIMIT = shutil.which("prlimit", path=SYSTEM_PATH) or "/usr/bin/prlimit"
ENV = shutil.which("env", path=SYSTEM_PATH) or "/usr/bin/env"
HOST_ENV = {"PATH": SYSTEM_PATH}


def _with_env(env: dict[str, str], shell: list[str]) -> list[str]:
    """The command with its variables, set by `env -i` after the limits: a tenant's LD_PRELOAD or PATH
    then reaches only what runs under them (set before prlimit, it could have prlimit skip them)."""
    return [ENV, "-i", *(f"{key}={value}" for key, value in env.items()), *shell]


def _drop_privileges(ids: Ids | None) -> list[str]:
    return [SETPRIV, f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups"] if ids else []


def _limits(limits: Limits, cpu_seconds: int, processes: int) -> list[str]:
    """The command prefix that sets the resource limits.

    setpriv and prlimit (util-linux) do in the child what a preexec_fn would, but let
    Python start the child with vfork: a fork of a job process that has grown to hundreds of
    megabytes costs tens of milliseconds per command.
    """
    return [
        PRLIMIT,
        f"--cpu={cpu_seconds}",
        f"--as={limits.memory_bytes}",
        f"--fsize={limits.file_bytes}",
        f"--nproc={processes}",
        "--core=0",
        "--",
    ]


@functools.cache
def _per_namespace_process_count() -> bool:
    """Linux 5.14+ counts RLIMIT_NPROC per user namespace: one set inside a sandbox binds it alone."""
    try:
        major, minor = (int(part) for part in platform.release().split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 14)


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


class IsolationBackend(Protocol):
    """How a command is started cut off from the job; what it allows is in its capability flags."""

    @property
    def name(self) -> str: ...

    @property
    def ids(self) -> Ids | None:
        """Whom the command's files are given to (None: the job's own uid)."""

    @property
    def workspace_inside(self) -> str | None:
        """Where the command sees its workspace (None: at its real path)."""

    @property
    def tmp_inside(self) -> str | None: ...

    @property
    def isolated(self) -> bool:
        """The command is cut off from the job's network and files: it may be given the egress proxy."""

    @property
    def hard_links_allowed(self) -> bool:
        """A command cannot write a file the job hard-links into its workspace (no root inside)."""

    @property
    def files_for_all(self) -> bool:
        """Its user writes only what is world-writable: the job opens files up instead of giving them away."""

    @property
    def contained(self) -> bool:
        """Its limits hold inside the sandbox. False: a command may raise them (sudo), and only what
        the job watches from outside binds (processes and memory of the launch's tree, time, disks)."""

    @property
    def status_file(self) -> str | None:
        """The file in the command's /tmp its exit status is written to (None: the launch's own status)."""

    @property
    def egress_over_stdio(self) -> bool:
        """Network reaches it only through its standard input and output (functions/stdio_tunnel.py)."""

    def launch(
        self,
        shell: list[str],
        workspace: Path,
        tmp: Path,
        env: dict[str, str],
        limits: Limits,
        cpu: int,
        stdin: bool = False,
    ) -> Launch: ...


@dataclass(frozen=True)
class Bubblewrap:
    path: str
    ids: Ids | None
    name: str = "bubblewrap"
    workspace_inside: str | None = BWRAP_WORKSPACE
    tmp_inside: str | None = INSIDE_TMP
    isolated: bool = True
    hard_links_allowed: bool = True
    files_for_all: bool = False
    contained: bool = True
    status_file: str | None = None
    egress_over_stdio: bool = False

    def launch(
        self,
        shell: list[str],
        workspace: Path,
        tmp: Path,
        env: dict[str, str],
        limits: Limits,
        cpu: int,
        stdin: bool = False,
    ) -> Launch:
        # --unshare-user: the process limit is counted per user namespace. The network namespace
        # is never shared: the job's network reaches the emulators, the API and, on Google Cloud,
        # the metadata server and its credentials.
        argv = [self.path, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"]
        argv += ["--hostname", "sandbox", "--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev"]
        for link in ("bin", "lib", "lib64", "sbin"):
            top = Path("/") / link
            if top.is_symlink():
                argv += ["--symlink", os.readlink(top), str(top)]
            elif top.exists():
                argv += ["--ro-bind", str(top), str(top)]
        for entry in ETC_ENTRIES:
            if (Path("/etc") / entry).exists():
                argv += ["--ro-bind", f"/etc/{entry}", f"/etc/{entry}"]
        argv += ["--bind", str(tmp), INSIDE_TMP, "--bind", str(workspace), BWRAP_WORKSPACE]
        # --dev gives a /dev/shm of its own, a tmpfs outside every quota: the command's own shm instead.
        argv += ["--bind", str(shm_of(tmp)), "/dev/shm"]
        # The root bwrap builds is a tmpfs outside every quota: freeze it.
        argv += ["--chdir", BWRAP_WORKSPACE, "--remount-ro", "/"]
        # The command's variables are set last, under the limits (_with_env): until then, HOST_ENV's PATH.
        argv += ["--clearenv", "--setenv", "PATH", SYSTEM_PATH]
        if _per_namespace_process_count():
            # Limits set inside bwrap's user namespace: the process limit counts this sandbox's
            # tasks only, so no scan of /proc for the uid's other commands is needed.
            inner = _limits(limits, cpu, limits.processes) + _with_env(env, shell)
            return Launch(_drop_privileges(self.ids) + argv + ["--", *inner], HOST_ENV)
        outer = _drop_privileges(self.ids) + _limits(limits, cpu, _process_budget(limits, self.ids))
        return Launch(outer + argv + ["--", *_with_env(env, shell)], HOST_ENV)


@dataclass(frozen=True)
class CloudRunSandbox:
    """Cloud Run sandboxes as they really run (docs/DEPLOY.md, "Cloud Run as it really runs"):

    - the command's user is not root and has sudo, and writes a bound folder only when it is
      world-writable (or root-owned 0755, which a job that is not root cannot make): the job opens
      the workspace and the command's /tmp to everyone, which only this sandbox sees bound;
    - with sudo a command can raise any limit set inside (prlimit), so those are a first line only:
      the job bounds processes and memory from outside, on the tree of functions/sandbox_reaper.py,
      which also ends every process the sandbox left when the CLI exits or the job stops it
      (killing the CLI is reported to leave the command's children running);
    - the CLI exits 0 or 1 whatever the command's status, so the status is written to STATUS_FILE;
    - no host Unix socket works in the sandbox and it never gets --allow-egress: a command's network
      is carried over the CLI's standard input and output (functions/tunnel_agent.py).
    """

    path: str
    ids: Ids | None
    search_path: str  # the sandbox command's own PATH
    name: str = "cloud-run"
    workspace_inside: str | None = CLOUD_RUN_WORKSPACE
    tmp_inside: str | None = INSIDE_TMP
    isolated: bool = True
    # Its user has sudo (https://docs.cloud.google.com/run/docs/code-execution): copies only.
    hard_links_allowed: bool = False
    files_for_all: bool = True
    contained: bool = False
    status_file: str | None = STATUS_FILE
    egress_over_stdio: bool = True

    def launch(
        self,
        shell: list[str],
        workspace: Path,
        tmp: Path,
        env: dict[str, str],
        limits: Limits,
        cpu: int,
        stdin: bool = False,
    ) -> Launch:
        # `sandbox do` inherits no environment: it gets PATH alone, and the command its variables after
        # the limits (_with_env).
        argv = [*REAPER, self.path, "do", f"--stdin={'true' if stdin else 'false'}", "-e", f"PATH={SYSTEM_PATH}"]
        argv += ["--mount", f"type=bind,source={tmp},destination={INSIDE_TMP}"]
        argv += ["--mount", f"type=bind,source={workspace},destination={CLOUD_RUN_WORKSPACE}"]
        argv += ["--mount", f"type=bind,source={shm_of(tmp)},destination=/dev/shm"]
        # umask 000: what the command makes stays the job's to read and remove.
        status = f"{INSIDE_TMP}/{STATUS_FILE}"
        inner = ["/bin/sh", "-c", f'cd {CLOUD_RUN_WORKSPACE} && umask 000 && "$@"; echo $? > {status}', "sh"]
        # The process limit inside is a first line only (sudo raises it) and may count every sandbox
        # whose user shares the uid: room for all of them; the job counts each command's from outside.
        inner += _limits(limits, cpu, limits.processes * PROCESS_ROOM) + _with_env(env, shell)
        host_env = {"PATH": self.search_path}
        return Launch(argv + ["--", *inner], host_env)


@dataclass(frozen=True)
class NoIsolation:
    ids: Ids | None
    name: str = "unsafe-no-isolation"
    workspace_inside: str | None = None  # the real paths
    tmp_inside: str | None = None
    isolated: bool = False
    hard_links_allowed: bool = True
    files_for_all: bool = False
    contained: bool = True
    status_file: str | None = None
    egress_over_stdio: bool = False

    def launch(
        self,
        shell: list[str],
        workspace: Path,
        tmp: Path,
        env: dict[str, str],
        limits: Limits,
        cpu: int,
        stdin: bool = False,
    ) -> Launch:
        argv = _drop_privileges(self.ids) + _limits(limits, cpu, _process_budget(limits, self.ids))
        return Launch(argv + _with_env(env, shell), HOST_ENV)


def _process_budget(limits: Limits, ids: Ids | None) -> int:
    """RLIMIT_NPROC for a command limited outside a user namespace: the uid's tasks elsewhere count too."""
    return limits.processes + _tasks_of(ids[0] if ids else os.getuid())


def _probe(argv: list[str], ids: Ids | None) -> str | None:
    """None when the probe command succeeds, else why it did not.

    As the sandbox's uid, through setpriv as a command is launched: subprocess's own user= and
    group= make Python fork() rather than vfork(), and a fork of the job while its gRPC threads
    run failed about one probe in a hundred ("epoll_wait error: Bad file descriptor" from the
    child), which left the job refusing every command for the rest of its life.
    """
    try:
        done = subprocess.run(_drop_privileges(ids) + argv, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if done.returncode == 0 else (done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}")


Selection = tuple[IsolationBackend | None, str]


def _bubblewrap(settings: Settings, ids: Ids | None) -> Selection:
    path = shutil.which("bwrap", path=settings.search_path)
    if path is None:
        return None, "bubblewrap is not installed"
    failure = _probe([path, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"], ids)
    if failure:
        return None, f"bubblewrap cannot create namespaces here ({failure})"
    return Bubblewrap(path, ids), "bubblewrap works"


def _cloud_run(settings: Settings, ids: Ids | None) -> Selection:
    path = (
        settings.cloud_run_sandbox_command
        or shutil.which("sandbox", path=settings.search_path)
        or CLOUD_RUN_SANDBOX_COMMAND
    )
    if not Path(path).exists():
        return None, f"the Cloud Run sandbox command is not here ({path}: enable sandboxes on the service)"
    # As a command is launched: by the job's own uid (the CLI gives the sandbox its user).
    failure = _probe([path, "do", "--stdin=false", "--", "/bin/true"], None)
    if failure:
        return None, f"the Cloud Run sandbox command does not run ({failure})"
    backend = CloudRunSandbox(path, ids, settings.search_path)
    failure = _cloud_run_behaves(backend)
    if failure:
        return None, f"Cloud Run sandboxes do not behave as this job needs: {failure}"
    return backend, "Cloud Run sandboxes work"


def _cloud_run_behaves(backend: CloudRunSandbox) -> str | None:
    """What the Cloud Run backend relies on and no document states, checked before any command runs
    (fail closed): None when it all holds, else which does not."""
    from functions.sandbox_reaper import descendants

    root = Path(tempfile.mkdtemp(prefix="vibesdk-probe-"))
    try:
        workspace, tmp = root / "workspace", root / "tmp"
        for folder in (workspace, tmp, shm_of(tmp)):
            folder.mkdir()
            folder.chmod(0o777)
        # Made private to the sandbox's user, as any command may: the job must still read and remove it.
        write = "mkdir made && echo written > made/file && chmod 600 made/file && chmod 700 made && exit 7"
        launch = backend.launch(["/bin/sh", "-c", write], workspace, tmp, {}, Limits(), 10)
        try:
            subprocess.run(launch.argv, env=launch.env, capture_output=True, timeout=30, check=False)
            status = (tmp / STATUS_FILE).read_text().strip()
            written = (workspace / "made" / "file").read_text()
            shutil.rmtree(workspace / "made")
        except (OSError, subprocess.TimeoutExpired) as error:
            return (
                "its user cannot write a world-writable bound folder, or the job cannot read and remove"
                f" what it wrote and made its own ({error})"
            )
        if status != "7" or written != "written\n":
            return f"the command's exit status did not come back (got {status!r})"
        marker = f"600.{os.getpid()}{threading.get_ident() % 1000:03d}"
        launch = backend.launch(["/bin/sh", "-c", f"sleep {marker}"], workspace, tmp, {}, Limits(), 10)
        held = subprocess.Popen(launch.argv, env=launch.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def sleeping() -> list[int]:
            return [pid for pid in descendants(held.pid) if marker.encode() in _cmdline(pid)]

        try:
            deadline = time.monotonic() + 10
            while not (found := sleeping()):
                if held.poll() is not None or time.monotonic() > deadline:
                    return "the job cannot see a sandbox's processes, so it could neither bound their memory and number nor end them"
                time.sleep(0.05)
            try:
                os.listdir(f"/proc/{found[0]}/fd")  # the files it holds open count as its memory
            except OSError as error:
                return f"the job cannot read which files a sandbox's process holds open ({error})"
            held.terminate()  # the reaper ends the sandbox's processes, then itself
            held.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return "stopping a sandbox's reaper did not end it"
        finally:
            if held.poll() is None:
                held.kill()
                held.wait()
        if any(marker.encode() in _cmdline(int(entry.name)) for entry in os.scandir("/proc") if entry.name.isdigit()):
            return "a sandbox's processes outlived the end of its command"
        return None
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _unsafe(settings: Settings, ids: Ids | None) -> Selection:
    if settings.on_google_cloud or settings.on_cloud_run:
        return None, "unsafe-no-isolation is refused on Google Cloud"
    logger.warning("VIBESDK_SANDBOX_BACKEND=unsafe-no-isolation: commands run with resource limits only")
    return NoIsolation(ids), "no isolation (unsafe, local only)"


def select(settings: Settings) -> Selection:
    """The backend settings ask for, probed, and a sentence saying why, or what is missing."""
    ids = sandbox_ids(settings)
    choice = settings.sandbox_backend
    if choice not in SANDBOX_BACKENDS:  # from_env() refuses it at start-up; Settings made in code may not
        return None, f"VIBESDK_SANDBOX_BACKEND must be one of {', '.join(SANDBOX_BACKENDS)}, got {choice!r}"
    if choice == "unsafe-no-isolation":
        return _unsafe(settings, ids)
    probes = {"bubblewrap": _bubblewrap, "cloud-run": _cloud_run}
    reasons = []
    for name in probes if choice == "auto" else (choice,):
        backend, reason = probes[name](settings, ids)
        if backend is not None:
            return backend, reason
        reasons.append(reason)
    why = "; ".join(reasons)
    logger.error("no isolation backend works here (%s): sandboxed commands are refused", why)
    return None, why


class Isolation:
    """The isolation of one job process (functions/context.py): selected on first use, probed once."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.ids = sandbox_ids(settings)
        self._lock = threading.Lock()
        self._selected: Selection | None = None

    def selected(self) -> Selection:
        """The backend (None when none works) and a sentence saying why, or what is missing."""
        with self._lock:
            if self._selected is None:
                self._selected = select(self._settings)
            return self._selected

    def backend(self) -> IsolationBackend:
        """The backend to run a command with; IsolationUnavailable when there is none."""
        found, why = self.selected()
        if found is None:
            raise IsolationUnavailable(
                f"sandboxed commands are refused: no isolation backend works here ({why}); nothing was run"
            )
        return found

    def status(self) -> dict[str, object]:
        found, why = self.selected()
        return {"backend": found.name if found else None, "detail": why}
