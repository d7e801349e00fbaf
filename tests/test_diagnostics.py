"""Tool outputs read into VibSDK's shapes (the tools' real formats; the end-to-end tests run the tools)."""

from __future__ import annotations

import json
from pathlib import Path

from functions.diagnostics import Paths, analysis_issues, command_errors, summary

WORKSPACE = Path("/srv/ws/files")
PATHS = Paths(WORKSPACE, ("/workspace",))


def test_eslint_json_and_severities() -> None:
    output = json.dumps(
        [
            {
                "filePath": "/workspace/src/App.tsx",
                "messages": [
                    {
                        "ruleId": "react-hooks/exhaustive-deps",
                        "severity": 2,
                        "message": "missing dep",
                        "line": 7,
                        "column": 6,
                    },
                    {
                        "ruleId": "react-refresh/only-export-components",
                        "severity": 1,
                        "message": "only",
                        "line": 1,
                        "column": 1,
                    },
                ],
            },
            {"filePath": "/workspace/src/main.tsx", "messages": []},
        ]
    )
    issues = analysis_issues(output, "", PATHS, "lint")
    assert [(i["filePath"], i["line"], i["column"], i["severity"], i["ruleId"], i["source"]) for i in issues] == [
        ("src/App.tsx", 7, 6, "error", "react-hooks/exhaustive-deps", "eslint"),
        ("src/App.tsx", 1, 1, "warning", "react-refresh/only-export-components", "eslint"),
    ]
    assert summary(issues) == {"errorCount": 1, "warningCount": 1, "infoCount": 0}


def test_ruff_json() -> None:
    output = json.dumps(
        [
            {
                "code": "F401",
                "message": "`os` imported but unused",
                "filename": "/srv/ws/files/app/x.py",
                "location": {"row": 1, "column": 8},
            }
        ]
    )
    [issue] = analysis_issues(output, "", PATHS, "lint")
    assert (issue["filePath"], issue["line"], issue["column"], issue["ruleId"], issue["source"]) == (
        "app/x.py",
        1,
        8,
        "F401",
        "ruff",
    )


def test_tsc_lines_with_continuations_and_mypy_lines() -> None:
    tsc = (
        "src/a.tsx(3,7): error TS2322: Type '{ a: number; }' is not assignable to type 'B'.\n"
        "  Object literal may only specify known properties.\n"
        "src/b.ts(10,1): error TS2304: Cannot find name 'x'.\n"
    )
    issues = analysis_issues(tsc, "", PATHS, "typecheck")
    assert [(i["filePath"], i["line"], i["column"], i["ruleId"]) for i in issues] == [
        ("src/a.tsx", 3, 7, "TS2322"),
        ("src/b.ts", 10, 1, "TS2304"),
    ]
    assert issues[0]["message"].endswith("Object literal may only specify known properties.")
    mypy = 'app/x.py:2:10: error: Incompatible types in assignment (expression has type "str", variable has type "int")  [assignment]\n'
    [issue] = analysis_issues(mypy, "", PATHS, "typecheck")
    assert (issue["filePath"], issue["line"], issue["column"], issue["ruleId"], issue["severity"]) == (
        "app/x.py",
        2,
        10,
        "assignment",
        "error",
    )
    assert issue["source"] == "typecheck"  # the line does not say which tool wrote it
    assert issues[0]["source"] == "typescript"  # tsc's lines do


def test_vite_build_errors_with_and_without_a_line(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "App.tsx").write_text("import { useState } from 'react'\nimport Missing from './Missing'\n")
    paths = Paths(tmp_path, ("/workspace",))
    unresolved = (
        "\x1b[31m✗\x1b[39m Build failed in 181ms\n\x1b[31merror during build:\n"
        '\x1b[31mCould not resolve "./Missing" from "src/App.tsx"\x1b[31m\n'
        "file: \x1b[36m/workspace/src/App.tsx\x1b[31m\n    at getRollupError (file:///workspace/node_modules/rollup/x.js:1:1)\n"
    )
    [error] = command_errors(unresolved, "npm run build", paths)
    assert (error["message"], error["filePath"], error["line"], error["level"]) == (
        'Could not resolve "./Missing" from "src/App.tsx"',
        "src/App.tsx",
        2,
        50,
    )
    syntax = (
        "error during build:\n[vite:esbuild] Transform failed with 1 error:\n"
        '/workspace/src/App.tsx:6:2: ERROR: Unexpected "return"\nfile: /workspace/src/App.tsx:6:2\n'
    )
    [error] = command_errors(syntax, "npm run build", paths)
    assert (error["message"], error["filePath"], error["line"], error["column"]) == (
        'Unexpected "return"',
        "src/App.tsx",
        6,
        2,
    )
