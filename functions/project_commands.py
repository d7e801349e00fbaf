"""The lint, type-check and build commands of an instance made from files (no catalog entry names them).

As VibSDK's own runner runs a project (cloudflare/vibesdk worker/services/sandbox/sandboxSdkClient.ts):
its package.json's `lint` and `build` scripts with the tool its lockfile installs with, and its
`typecheck` script or else the TypeScript compiler where the project has a tsconfig.json and TypeScript
among its packages.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger("functions.project_commands")

# Vite's build folder, which VibSDK's templates keep.
OUTPUT_DIR = "dist"
# The installed compiler, never fetched: a command without network could not anyway.
TYPECHECK = "./node_modules/.bin/tsc -b --noEmit --pretty false"


def _package(project: Path) -> dict[str, Any]:
    path = project / "package.json"
    # Written by createInstance a moment ago, as a regular file (a link would be refused): read as such.
    if path.is_symlink() or not path.is_file():
        return {}
    try:
        package = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        logger.warning("package.json is not JSON (%s): the project has no commands", error)
        return {}
    return package if isinstance(package, dict) else {}


def commands_for(project: Path, tool: str) -> dict[str, str]:
    """The commands the project's top-level files call for; `tool` runs its scripts (npm or bun)."""
    package = _package(project)
    found = package.get("scripts")
    scripts: dict[str, Any] = found if isinstance(found, dict) else {}
    quiet = " --silent" if tool == "npm" else ""
    kinds = ("lint", "build", "typecheck")
    commands = {kind: f"{tool} run {kind}{quiet}" for kind in kinds if isinstance(scripts.get(kind), str)}
    if "build" in commands:
        commands["outputDir"] = OUTPUT_DIR
    packages = {
        name
        for field in ("dependencies", "devDependencies")
        if isinstance(package.get(field), dict)
        for name in package[field]
    }
    if "typecheck" not in commands and (project / "tsconfig.json").is_file() and "typescript" in packages:
        commands["typecheck"] = TYPECHECK
    return commands
