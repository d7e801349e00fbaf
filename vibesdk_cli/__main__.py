"""vibesdk: talk to a VibSDK control plane from the shell.

    vibesdk templates                         the template catalog
    vibesdk sessions                          your sessions
    vibesdk create TEMPLATE [--project NAME]  a session from a template, watched to its end
    vibesdk exec SESSION -- CMD [CMD ...]     run commands (each argument one command line)
    vibesdk write SESSION FILE[:DEST] ...     write local files into the session
    vibesdk run SESSION ACTION [key=value ...] [--params JSON]   any action
    vibesdk watch SESSION RUN                 follow a run to its end
    vibesdk status SESSION                    the session and its latest run
    vibesdk logs SESSION                      the instance's command output
    vibesdk logs --local RUN                  one run's log lines from a local `make dev`, all units
    vibesdk preview SESSION [--open]          the preview URL

The control plane is --url or VIBESDK_URL (default http://127.0.0.1:8080), the token --token
or VIBESDK_API_TOKEN. The exit code is 0 only when the run succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import webbrowser
from pathlib import Path
from typing import Any

from vibesdk_cli.client import Client, ClientError
from vibesdk_cli.locallogs import DEFAULT_DIR, run_lines
from vibesdk_cli.progress import describe, until_ended, watch


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vibesdk", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("VIBESDK_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("VIBESDK_API_TOKEN"))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("templates")
    commands.add_parser("sessions")
    create = commands.add_parser("create")
    create.add_argument("template")
    create.add_argument("--project")
    create.add_argument("--no-watch", action="store_true")
    exec_ = commands.add_parser("exec")
    exec_.add_argument("session")
    exec_.add_argument("commands", nargs="+")
    exec_.add_argument("--timeout", type=int)
    exec_.add_argument("--allow-network", action="store_true")
    exec_.add_argument("--no-watch", action="store_true")
    write = commands.add_parser("write")
    write.add_argument("session")
    write.add_argument("files", nargs="+", help="LOCAL[:DEST]")
    write.add_argument("--no-watch", action="store_true")
    run = commands.add_parser("run")
    run.add_argument("session")
    run.add_argument("action")
    run.add_argument("pairs", nargs="*", help="key=value (value parsed as JSON when it is JSON)")
    run.add_argument("--params", help="all params as a JSON object")
    run.add_argument("--no-watch", action="store_true")
    follow = commands.add_parser("watch")
    follow.add_argument("session")
    follow.add_argument("run")
    status = commands.add_parser("status")
    status.add_argument("session")
    logs = commands.add_parser("logs")
    logs.add_argument("target", help="SESSION, or RUN with --local")
    logs.add_argument("--local", action="store_true")
    logs.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    preview = commands.add_parser("preview")
    preview.add_argument("session")
    preview.add_argument("--open", action="store_true")
    return parser


def _params(pairs: list[str], raw: str | None) -> dict[str, Any]:
    params: dict[str, Any] = json.loads(raw) if raw else {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ClientError(f"expected key=value, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _files(specs: list[str]) -> list[dict[str, str]]:
    files = []
    for spec in specs:
        local, _, dest = spec.partition(":")
        try:
            files.append({"filePath": dest or Path(local).name, "fileContents": Path(local).read_text()})
        except OSError as error:
            raise ClientError(f"cannot read {local}: {error.strerror}") from None
    return files


def _queued(client: Client, queued: dict[str, Any], no_watch: bool) -> int:
    print(f"session {queued['sessionId']}  run {queued['runId']}  {queued['action']}")
    if no_watch:
        return 0
    run = watch(client, queued["sessionId"], queued["runId"])
    describe(run)
    return 0 if run["status"] == "succeeded" else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "logs" and args.local:
        for entry in run_lines(args.target, args.dir):
            print(
                f"{entry.get('time')}  {entry.get('unit', '?'):16} {entry.get('severity', ''):7} {entry.get('message')}"
            )
        return 0
    client = Client(args.url, args.token)
    try:
        if args.command == "templates":
            for template in client.templates():
                print(
                    f"{template['name']:14} {template.get('language', ''):11} {template.get('description', {}).get('selection', '')}"
                )
            return 0
        if args.command == "sessions":
            for session in client.sessions():
                print(
                    f"{session['sessionId']}  {session.get('templateName') or '':12} {session['action']:22} {session['status']}"
                )
            return 0
        if args.command == "create":
            return _queued(client, client.create(args.template, args.project, {}), args.no_watch)
        if args.command == "exec":
            params: dict[str, Any] = {"commands": args.commands, "allowNetwork": args.allow_network}
            if args.timeout:
                params["timeout"] = args.timeout
            return _queued(client, client.act(args.session, "executeCommands", params), args.no_watch)
        if args.command == "write":
            return _queued(client, client.act(args.session, "writeFiles", {"files": _files(args.files)}), args.no_watch)
        if args.command == "run":
            return _queued(
                client, client.act(args.session, args.action, _params(args.pairs, args.params)), args.no_watch
            )
        if args.command == "watch":
            run = watch(client, args.session, args.run)
            describe(run)
            return 0 if run["status"] == "succeeded" else 1
        if args.command == "status":
            session = client.session(args.session)
            latest = session.pop("latestRun") or {}
            print(json.dumps(session, indent=2))
            describe(latest)
            return 0 if session["status"] == "succeeded" else 1
        if args.command == "logs":
            queued = client.act(args.target, "getLogs", {})
            run = until_ended(client, queued["sessionId"], queued["runId"], timeout=1800)
            if run["status"] != "succeeded":
                describe(run)
                return 1
            print(run["result"]["logs"]["stdout"], end="")
            print(run["result"]["logs"]["stderr"], end="", file=sys.stderr)
            return 0
        if args.command == "preview":
            preview = client.preview(args.session)
            url = preview.get("previewUrl")
            if not url:
                print(preview.get("message") or "no preview yet: run `vibesdk run SESSION deployInstance`")
                return 1
            print(url)
            if args.open:
                webbrowser.open(url)
            return 0
    except ClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if "cannot reach" in str(error) else 1
    finally:
        client.close()
    return 1


if __name__ == "__main__":
    sys.exit(main())
