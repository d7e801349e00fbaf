"""Tool output read into VibSDK's shapes: CodeIssue for static analysis, errors for getInstanceErrors.

Readers, most precise first: ESLint's and ruff's JSON, tsc's `file(line,col): error TSnnnn`
(with its indented continuation lines), mypy's and ESLint's unix `file:line:col: severity: message
[rule]`, Vite's `error during build:` blocks, then the generic error lines of node, Python and shells.
Paths are made relative to the workspace, whichever path the sandbox showed it at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Issue = dict[str, Any]
MAX_SCANNED_LINE = 1000
# Pino's levels, which VibSDK's RuntimeError carries.
ERROR_LEVEL = 50

TSC_LINE = re.compile(
    r"^(?P<file>[^(\s][^(]*)\((?P<line>\d+),(?P<column>\d+)\):\s*(?P<severity>error|warning)\s+(?P<rule>TS\d+):\s*(?P<message>.*)$"
)
UNIX_LINE = re.compile(
    r"^(?P<file>[^:\s][^:]*):(?P<line>\d+):(?:(?P<column>\d+):)?\s*(?P<severity>error|warning|info|note)\s*:?\s*"
    r"(?P<message>.*?)(?:\s+(?:\((?P<rule>[\w/@.-]+)\)|\[(?P<code>[\w-]+)\]))?$"
)
ESBUILD_LINE = re.compile(r"^(?P<file>[^:\s][^:]*):(?P<line>\d+):(?P<column>\d+): ERROR: (?P<message>.+)$")
BUILD_FILE_LINE = re.compile(r"^file: (?P<file>[^:]+)(?::(?P<line>\d+):(?P<column>\d+))?$")
UNRESOLVED = re.compile(r'Could not resolve "(?P<spec>[^"]+)" from "(?P<file>[^"]+)"')
NOT_LOADED = re.compile(r"Could not load (?P<spec>\S+) \(imported by (?P<file>[^)]+)\)")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
GENERIC_ERRORS = (
    re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)'),
    re.compile(r"^(?P<message>(?:\w*Error|error|ERR!)\b[:\s].+)$"),
    re.compile(r"^(?P<message>sh: \d+: .+)$"),
)


class Paths:
    """Turns the paths a tool printed into paths relative to the workspace."""

    def __init__(self, workspace: Path, seen_at: Iterable[str | None]) -> None:
        self.workspace = workspace
        self._roots = sorted({str(workspace), *(root for root in seen_at if root)}, key=len, reverse=True)

    def relative(self, path: str) -> str:
        for root in self._roots:
            if path.startswith(root + "/"):
                return path[len(root) + 1 :]
        return path.removeprefix("./")


def summary(issues: list[Issue]) -> dict[str, int]:
    return {
        f"{severity}Count": sum(1 for issue in issues if issue["severity"] == severity)
        for severity in ("error", "warning", "info")
    }


def _issue(
    paths: Paths, file: str, line: Any, column: Any, severity: str, message: str, rule: Any, source: str
) -> Issue:
    return {
        "message": message.strip(),
        "filePath": paths.relative(file.strip()),
        "line": int(line or 0),
        "column": int(column) if column else None,
        "severity": severity if severity in ("error", "warning", "info") else "info",
        "ruleId": rule or None,
        "source": source,
    }


def _line_issue(paths: Paths, fields: dict[str, Any], rule: str | None, source: str) -> Issue:
    """An issue from a matched line: file, line, column, severity and message groups."""
    return _issue(
        paths, fields["file"], fields["line"], fields["column"], fields["severity"], fields["message"], rule, source
    )


def analysis_issues(stdout: str, stderr: str, paths: Paths, source: str) -> list[Issue]:
    """The issues a linter or type checker reported, from its JSON or its lines."""
    stdout, stderr = ANSI.sub("", stdout), ANSI.sub("", stderr)
    structured = _json_issues(stdout, paths)
    if structured is not None:
        return structured
    issues: list[Issue] = []
    for line in (stdout + "\n" + stderr).splitlines():
        if len(line) > MAX_SCANNED_LINE:
            continue
        if line.startswith((" ", "\t")) and issues and issues[-1]["source"] == "typescript":
            issues[-1]["message"] += " " + line.strip()  # tsc continues a message on indented lines
            continue
        match = TSC_LINE.match(line.strip())
        if match:
            issues.append(_line_issue(paths, match.groupdict(), match["rule"], "typescript"))
            continue
        match = UNIX_LINE.match(line.strip())
        if match and match["severity"] != "note":
            issues.append(_line_issue(paths, match.groupdict(), match["rule"] or match["code"], source))
    return issues


def _json_issues(stdout: str, paths: Paths) -> list[Issue] | None:
    """ESLint's `-f json` or ruff's `--output-format json`; None when the output is neither."""
    text = stdout.strip()
    if not text.startswith("["):
        return None
    try:
        results = json.loads(text)
    except ValueError:
        return None
    if not isinstance(results, list) or not all(isinstance(item, dict) for item in results):
        return None
    issues = []
    for item in results:
        if "messages" in item:  # ESLint: one entry per file; severity 2 error, 1 warning
            for message in item["messages"]:
                severity = {2: "error", 1: "warning"}.get(message.get("severity"), "info")
                # html-validate writes ESLint's format, and says so in its rule URLs.
                tool = "html-validate" if "html-validate" in str(message.get("ruleUrl")) else "eslint"
                issues.append(
                    _issue(
                        paths,
                        item.get("filePath", ""),
                        message.get("line"),
                        message.get("column"),
                        severity,
                        message.get("message", ""),
                        message.get("ruleId"),
                        tool,
                    )
                )
        elif "location" in item:  # ruff: one entry per issue
            location = item.get("location") or {}
            issues.append(
                _issue(
                    paths,
                    item.get("filename", ""),
                    location.get("row"),
                    location.get("column"),
                    "error",
                    item.get("message", ""),
                    item.get("code"),
                    "ruff",
                )
            )
        else:
            return None
    return issues


def runtime_error(
    message: str, raw: str, source: str, file: str | None = None, line: Any = None, column: Any = None
) -> Issue:
    """VibSDK's RuntimeError (timestamp, level, message, rawOutput) with where, when known."""
    return {
        "timestamp": datetime.now(UTC).isoformat(),
        "level": ERROR_LEVEL,
        "message": message.strip()[:500],
        "rawOutput": raw[:2000],
        "source": source,
        "filePath": file,
        "line": int(line) if line else None,
        "column": int(column) if column else None,
    }


def command_errors(text: str, source: str, paths: Paths | None = None) -> list[Issue]:
    """The errors in a command's output: Vite's build errors as one each, then the generic lines."""
    paths = paths or Paths(Path("/nonexistent"), ())
    lines = ANSI.sub("", text).splitlines()
    found, used = _build_errors(lines, source, paths)
    for index, line in enumerate(lines):
        # An error line is short; scanning a huge one would only cost time (the patterns backtrack).
        if index in used or len(line) > MAX_SCANNED_LINE:
            continue
        stripped = line.strip()
        match = TSC_LINE.match(stripped)
        if match:
            found.append(
                runtime_error(
                    f"{match['rule']}: {match['message']}",
                    line,
                    source,
                    paths.relative(match["file"]),
                    match["line"],
                    match["column"],
                )
            )
            continue
        for pattern in GENERIC_ERRORS:
            match = pattern.search(stripped)
            if match:
                fields = match.groupdict()
                file = paths.relative(fields["file"]) if fields.get("file") else None
                found.append(runtime_error(fields.get("message") or stripped, line, source, file, fields.get("line")))
                break
    return found


def _build_errors(lines: list[str], source: str, paths: Paths) -> tuple[list[Issue], set[int]]:
    """Vite's `error during build:` blocks: the message, and the file and line when it names them."""
    found, used = [], set()
    for start, line in enumerate(lines):
        if line.strip() != "error during build:":
            continue
        block = list(range(start, min(start + 8, len(lines))))
        used.update(block)
        text = [lines[i].strip() for i in block[1:] if lines[i].strip() and not lines[i].strip().startswith("at ")]
        if not text:
            continue
        message = re.sub(r"^\[[\w:-]+\]\s*", "", text[0])
        file = line_no = column = None
        for candidate in text:
            esbuild = ESBUILD_LINE.match(candidate)
            if esbuild:
                message = esbuild["message"]
                file, line_no, column = esbuild["file"], esbuild["line"], esbuild["column"]
                break
            located = BUILD_FILE_LINE.match(candidate)
            if located:
                file, line_no, column = located["file"], located["line"], located["column"]
        unresolved = UNRESOLVED.search(message) or NOT_LOADED.search(message)
        if unresolved:
            file = file or unresolved["file"]
            if not line_no:
                line_no = _line_naming(paths, paths.relative(file), unresolved["spec"])
        relative = paths.relative(file) if file else None
        found.append(runtime_error(message, "\n".join(text), source, relative, line_no, column))
    return found, used


def _line_naming(paths: Paths, relative: str, spec: str) -> int | None:
    """The line of the file that imports spec (the bundler names the file, not the line)."""
    name = spec.rsplit("/", 1)[-1]
    try:
        target = (paths.workspace / relative).resolve()
        if paths.workspace.resolve() not in target.parents:
            return None
        for number, text in enumerate(target.read_text(errors="replace").splitlines(), 1):
            if "import" in text and name in text:
                return number
    except OSError:
        return None
    return None
