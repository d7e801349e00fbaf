"""Which install a project's lockfile names, for an instance made from files (no catalog entry).

A lockfile at the project's top decides the tool: bun's (bun.lock) or npm's (package-lock.json),
each installed exactly as locked; with neither, nothing is installed. Both present: bun's, as
VibSDK's own runner installs with bun. bun's older binary bun.lockb cannot come as files (their
contents are text: vibesdk_gcp/params.py refuses it); a template's bundle may carry one, but a
template's install is its catalog entry's (functions/actions/instance.py), never this table.
"""

from __future__ import annotations

from collections.abc import Iterable

from functions.dependencies import InstallSpec
from vibesdk_gcp.errors import ActionFailed

NODE_MODULES = "node_modules"
PACKAGE_JSON = "package.json"
# The lockfile first: the cache key covers every input (functions/dependencies.py).
BY_LOCKFILE = {
    "bun.lock": InstallSpec("bun install --frozen-lockfile", NODE_MODULES, ("bun.lock", PACKAGE_JSON)),
    "package-lock.json": InstallSpec(
        "npm ci --no-audit --no-fund --loglevel=error", NODE_MODULES, ("package-lock.json", PACKAGE_JSON)
    ),
}


# The tool that runs the project's scripts, by the same lockfile; npm without one.
SCRIPTS_BY_LOCKFILE = {"bun.lock": "bun", "package-lock.json": "npm"}


def script_runner(paths: Iterable[str]) -> str:
    """npm or bun: the tool the project's lockfile names (as install_for picks it), else npm."""
    present = set(paths)
    return next((tool for lockfile, tool in SCRIPTS_BY_LOCKFILE.items() if lockfile in present), "npm")


def install_for(paths: Iterable[str]) -> InstallSpec | None:
    """The install the project's files (workspace paths) call for; None without a lockfile.

    A lockfile without package.json fails, as `bun install` and `npm ci` would in VibSDK's runner."""
    present = set(paths)
    found = next(((lockfile, spec) for lockfile, spec in BY_LOCKFILE.items() if lockfile in present), None)
    if found and PACKAGE_JSON not in present:
        raise ActionFailed(f"the files have {found[0]} but no {PACKAGE_JSON} at the project's top: send it too")
    return found[1] if found else None
