"""Scratch folders: removed after their command whatever it did to modes, and after a killed job by the next."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.scratch import PREFIX, remove_orphans, scratch_folder

PROJECT_ROOT = Path(__file__).resolve().parent.parent
UNPRIVILEGED = 65534


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """This process as a job that is not root (as on Cloud Run): modes bind it."""
    os.setegid(UNPRIVILEGED)
    os.seteuid(UNPRIVILEGED)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def make_hostile(tmp: Path, outside: Path) -> None:
    """What a command may leave in its /tmp: unreadable nested folders, read-only files and folders, a link out."""
    (tmp / "a" / "b" / "c").mkdir(parents=True)
    (tmp / "a" / "b" / "c" / "f").write_text("x")
    (tmp / "a" / "b" / "c" / "f").chmod(0o444)
    for folder in ("a/b/c", "a/b", "a"):
        (tmp / folder).chmod(0o000)
    (tmp / "read-only").mkdir()
    (tmp / "read-only" / "f").write_text("x")
    (tmp / "read-only" / "out").symlink_to(outside)
    (tmp / "read-only").chmod(0o500)
    (tmp / "write-only" / "inner").mkdir(parents=True)
    (tmp / "write-only").chmod(0o300)
    tmp.chmod(0o000)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")
def test_a_job_that_is_not_root_removes_whatever_its_command_left(
    sandbox_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(tempfile.mkdtemp(dir=sandbox_root))
    outside = root / "outside"
    outside.mkdir(mode=0o755)
    os.chown(root, UNPRIVILEGED, UNPRIVILEGED)
    os.chown(outside, UNPRIVILEGED, UNPRIVILEGED)
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    with unprivileged(), scratch_folder() as scratch:
        (scratch / "tmp").mkdir()
        make_hostile(scratch / "tmp", outside)
        with pytest.raises(PermissionError):
            list((scratch / "tmp").iterdir())  # the modes bind this job
    assert list(root.glob(f"{PREFIX}*")) == []
    assert outside.is_dir() and outside.stat().st_mode & 0o777 == 0o755  # a link was not followed


def test_the_scratch_of_a_killed_job_goes_at_the_next_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hold = "import time\nfrom functions.scratch import scratch_folder\nwith scratch_folder() as s:\n    print(s, flush=True)\n    time.sleep(60)\n"
    job = subprocess.Popen(
        [sys.executable, "-c", hold],
        cwd=PROJECT_ROOT,
        env=dict(os.environ) | {"TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert job.stdout
    left = Path(job.stdout.readline().strip())
    job.kill()
    job.wait()
    job.stdout.close()
    assert left.is_dir() and left.parent == tmp_path  # SIGKILL: nothing of the job ran after it
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with scratch_folder() as mine:
        assert not left.exists()
    assert not mine.exists()


def test_only_the_folders_of_jobs_that_are_gone_are_removed(tmp_path: Path) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    gone, running, unnamed = (tmp_path / f"{PREFIX}{pid}-x" for pid in (ended.pid, os.getpid(), "old"))
    for folder in (gone, running, unnamed):
        (folder / "tmp").mkdir(parents=True)
    assert remove_orphans(tmp_path) == [gone]
    assert not gone.exists() and running.is_dir() and unnamed.is_dir()
