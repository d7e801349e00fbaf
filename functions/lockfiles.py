"""Which install a project's lockfile names, for an instance made from files (no catalog entry).

A lockfile at the project's top decides the tool: bun's (bun.lock, or the older binary bun.lockb)
or npm's (package-lock.json), each installed exactly as locked; with neither, nothing is
installed. Both present: bun's, as VibSDK's own runner installs with bun.
"""

from __future__ import annotations

from collections.abc import Iterable

from functions.dependencies import InstallSpec

NODE_MODULES = "node_modules"
# The lockfile first: the cache key covers every input (functions/dependencies.py).
BY_LOCKFILE = {
    "bun.lock": InstallSpec("bun install --frozen-lockfile", NODE_MODULES, ("bun.lock", "package.json")),
    "bun.lockb": InstallSpec("bun install --frozen-lockfile", NODE_MODULES, ("bun.lockb", "package.json")),
    "package-lock.json": InstallSpec(
        "npm ci --no-audit --no-fund --loglevel=error", NODE_MODULES, ("package-lock.json", "package.json")
    ),
}


def install_for(paths: Iterable[str]) -> InstallSpec | None:
    """The install the project's files (workspace paths) call for; None without a lockfile."""
    present = set(paths)
    return next((spec for lockfile, spec in BY_LOCKFILE.items() if lockfile in present), None)
