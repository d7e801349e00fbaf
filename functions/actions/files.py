"""writeFiles and getFiles, confined to the instance's workspace."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path, PurePosixPath

from functions import confined, live, templates
from functions.actions.common import REDACTED, Result, ready_workspace
from functions.context import Context
from functions.instances import Instance, workspace_of
from functions.workspace import Workspace
from vibesdk_gcp.errors import ActionFailed, InvalidRequest
from vibesdk_gcp.params import FileContents, GetFilesParams, WriteFilesParams
from vibesdk_gcp.schemas import SandboxRequest

logger = logging.getLogger("functions.actions.files")

MAX_FILE_BYTES = 4 << 20
# VibSDK's lists of workspace paths (JSON arrays), as its runner reads them: files writeFiles
# leaves alone, and files getFiles shows as REDACTED.
DONT_TOUCH_LIST = templates.META_FILES["dontTouchFiles"]
REDACTED_LIST = templates.META_FILES["redactedFiles"]
MAX_LIST_BYTES = 1 << 20
FORBIDDEN = "File is forbidden to be modified"


def inside(workspace: Path, file_path: str) -> Path:
    """The file's place in the workspace; refuses `..`, absolute paths and links that leave it."""
    relative = PurePosixPath(file_path.removeprefix("./"))
    if relative.is_absolute() or ".." in relative.parts or not relative.parts or "\0" in file_path:
        raise InvalidRequest(f"filePath {file_path!r} is outside the workspace")
    target = workspace / relative
    resolved = Path(os.path.realpath(target))
    if resolved != workspace.resolve() and workspace.resolve() not in resolved.parents:
        raise InvalidRequest(f"filePath {file_path!r} leads outside the workspace through a link")
    return target


def placed(workspace: Path, files: list[FileContents]) -> list[tuple[FileContents, str]]:
    """Each file with its path in the workspace, all checked before any is written: a path that
    leaves the workspace, or a content over the limit, fails the run."""
    targets = [(item, inside(workspace, item.filePath).relative_to(workspace).as_posix()) for item in files]
    for item in files:
        if len(item.fileContents.encode()) > MAX_FILE_BYTES:
            raise ActionFailed(f"file {item.filePath!r} is over the {MAX_FILE_BYTES}-byte limit")
    return targets


def write_placed(workspace: Path, targets: list[tuple[FileContents, str]]) -> None:
    for item, rel in targets:
        _write(item.filePath, workspace, rel, item.fileContents)


def write_files(request: SandboxRequest, params: WriteFilesParams, ctx: Context, instance: Instance) -> Result:
    workspace = workspace_of(ctx, request.sessionId)
    workspace.restore()
    targets = placed(workspace.path, params.files)
    # As VibSDK's runner does: a don't-touch file is left as it is, and its item says so.
    forbidden = listed_paths(workspace.path, DONT_TOUCH_LIST)
    write_placed(workspace.path, [(item, rel) for item, rel in targets if rel not in forbidden])
    report = workspace.save()
    live.after_change(ctx, request, instance, report)
    return {
        "files": [
            {"file": item.filePath, "success": False, "error": FORBIDDEN}
            if rel in forbidden
            else {"file": item.filePath, "success": True}
            for item, rel in targets
        ],
        "commitMessage": params.commitMessage,
        "uploaded": report.uploaded,
    }


def listed_paths(workspace: Path, list_name: str) -> set[str]:
    """The workspace paths a list file of VibSDK's names (a JSON array), read now, through real
    folders only: missing, it is empty; malformed, empty too, and logged."""
    try:
        descriptor = confined.open_file(workspace, list_name)
    except FileNotFoundError:
        return set()
    except OSError as error:
        logger.warning("%s cannot be read (%s): taken as empty", list_name, error.strerror)
        return set()
    with os.fdopen(descriptor, "rb") as handle:
        data = handle.read(MAX_LIST_BYTES + 1) if stat.S_ISREG(os.fstat(descriptor).st_mode) else b""
    try:
        paths = json.loads(data) if len(data) <= MAX_LIST_BYTES else None
    except (ValueError, RecursionError):  # RecursionError: nested too deep ("[" * 200000)
        paths = None
    if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
        logger.warning("%s is not a JSON array of paths: taken as empty", list_name)
        return set()
    return {PurePosixPath(path.removeprefix("./")).as_posix() for path in paths}


def listed_files(workspace: Workspace) -> list[str]:
    return _listing(workspace)[0]


def _listing(workspace: Workspace) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """Every regular file, every link as a link (its target as text), and names that are not UTF-8.

    Links are never followed; a name that is not UTF-8 cannot be sent or stored, so it is reported
    (its bytes escaped) and its folder is not entered. The installed dependencies are not listed
    (thousands of files no agent edits); they can still be read by name.
    """
    files, links, unreadable = [], [], []
    base = workspace.base()
    for dirpath, dirnames, filenames in os.walk(workspace.path):
        if base and dirpath == str(workspace.path) and base["folder"] in dirnames:
            dirnames.remove(base["folder"])
        for name in list(dirnames) + filenames:
            path = Path(dirpath) / name
            relative = path.relative_to(workspace.path).as_posix()
            if not _utf8(relative):
                unreadable.append(os.fsencode(relative).decode("utf-8", errors="backslashreplace"))
                if name in dirnames:
                    dirnames.remove(name)
                continue
            if path.is_symlink():
                target = os.readlink(path)
                links.append({"filePath": relative, "linkTarget": target if _utf8(target) else repr(target)})
            elif name in filenames and path.is_file():
                files.append(relative)
    return sorted(files), sorted(links, key=lambda link: link["filePath"]), sorted(unreadable)


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _write(file_path: str, root: Path, rel: str, contents: str) -> None:
    """One file, never written through a link; what is in the way (a folder there, a file or a
    link above it) fails the run, saying so.

    Nothing is saved when one fails: the next action's restore puts the workspace back.
    """
    try:
        confined.write(root, rel, contents.encode(), clear=False)
    except IsADirectoryError:
        raise ActionFailed(f"filePath {file_path!r} is a folder; write the files inside it") from None
    except NotADirectoryError:
        raise ActionFailed(f"filePath {file_path!r} goes under something that is a file or a link") from None
    except OSError as error:
        raise ActionFailed(f"filePath {file_path!r} cannot be written: {error.strerror}") from None


def get_files(request: SandboxRequest, params: GetFilesParams, ctx: Context, instance: Instance) -> Result:
    # The installed tree too, as a command on this instance would see it, whichever instance
    # installed it (an instance new to the session gave none, and node_modules/ read as missing).
    workspace = ready_workspace(ctx, request, instance, build=False)
    links: list[dict[str, str]] = []
    unreadable: list[str] = []
    if params.filePaths is None:
        paths, links, unreadable = _listing(workspace)
    else:
        paths = params.filePaths
    redacted = _redacted_files(workspace.path)
    files, missing = [], []
    for file_path in paths:
        target = inside(workspace.path, file_path)
        if not target.is_file():
            missing.append(file_path)
            continue
        if _identity(workspace.path, target) & redacted:
            files.append({"filePath": file_path, "fileContents": REDACTED})  # as VibSDK's runner answers
            continue
        files.append({"filePath": file_path, "fileContents": target.read_bytes().decode("utf-8", errors="replace")})
    result: Result = {"files": files, "missing": missing, "links": links}
    if unreadable:
        result["unreadableNames"] = unreadable  # not UTF-8: left out, and not kept by saves
    return result


def _redacted_files(workspace: Path) -> set[str | tuple[int, int]]:
    """The redacted list's files, each by its resolved path and its (st_dev, st_ino): a symbolic
    link to one (or through a linked folder), or a hard link, shows as REDACTED too."""
    found: set[str | tuple[int, int]] = set()
    for path in listed_paths(workspace, REDACTED_LIST):
        try:
            found |= _identity(workspace, inside(workspace, path))
        except InvalidRequest:
            continue  # a listed path outside the workspace names nothing getFiles can show
    return found


def _identity(workspace: Path, target: Path) -> set[str | tuple[int, int]]:
    """The file's resolved path in the workspace, and its device and inode once it exists."""
    identity: set[str | tuple[int, int]] = {Path(os.path.realpath(target)).relative_to(workspace.resolve()).as_posix()}
    try:
        info = os.stat(target)
    except OSError:
        return identity
    return identity | {(info.st_dev, info.st_ino)}
