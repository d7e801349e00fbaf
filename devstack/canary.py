"""The isolation canary (issue 24, point 7): runs devstack/canary_probes.py's probes in a session
through the API, one line per probe, and says which did not behave.

Every run is queued at once (the job keeps a session's order), then each is read back as it
ends; a probe is judged on its commands' exit codes and output only, never on how the backend
isolates them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import IO, Any

from devstack.canary_probes import ESCAPED, FOLDER, NOT_REACHED, SCRIPTS, Probe
from vibesdk_cli.client import Client
from vibesdk_cli.progress import TERMINAL, until_ended

OBSERVED_CHARS = 200
# The egress proxy's answer to a refused CONNECT (docs/SANDBOX.md, "Egress").
REFUSED_BY_PROXY = "egress refused"
# Trailers that say nothing of what went wrong: npm ends every error with where its log is.
TRAILERS = ("A complete log of this run can be found in",)


@dataclass(frozen=True)
class Verdict:
    probe: Probe
    observed: str
    ok: bool

    def line(self, width: int) -> str:
        mark = "ok" if self.ok else "FAILED"
        return f"{self.probe.name:<{width}}  expected: {self.probe.expected}; observed: {self.observed}  {mark}"


def _said(result: dict[str, Any]) -> str:
    return f"{result.get('output') or ''}\n{result.get('error') or ''}"


def _gist(said: str) -> str:
    """The line that tells most: the escape, else the proxy's own refusal, else the last thing said;
    after how many routes were tried and not reached, when more than one was."""
    lines = [line.strip() for line in said.splitlines() if line.strip() and not any(t in line for t in TRAILERS)]
    chosen = next((line for line in lines if line.startswith(ESCAPED)), None)
    chosen = chosen or next((line for line in lines if REFUSED_BY_PROXY in line), lines[-1] if lines else "(no output)")
    tried = sum(line.startswith(NOT_REACHED) for line in lines)
    if tried > 1 and not chosen.startswith(ESCAPED):
        chosen = f"{tried} routes {NOT_REACHED}, e.g. {chosen.removeprefix(NOT_REACHED + ': ')}"
    return chosen if len(chosen) <= OBSERVED_CHARS else chosen[: OBSERVED_CHARS - 1] + "…"


def _ended(run: dict[str, Any], commands: int) -> tuple[list[dict[str, Any]], str]:
    """The run's command results, or why there is nothing to judge."""
    if run["status"] not in TERMINAL:
        return [], f"run still {run['status']}"
    results = list((run.get("result") or {}).get("results") or [])
    if (run["status"] == "succeeded" and len(results) == commands) or (results and results[-1].get("exitCode") != 0):
        return results, ""
    return [], f"not run: {run.get('error') or 'no command result'}"


def judge(probe: Probe, run: dict[str, Any], setup: dict[str, Any] | None = None) -> Verdict:
    """Whether the probe behaved, from its run (and its setup's) as the API answered them."""
    if probe.setup:
        assert setup is not None, f"{probe.name} has a setup to judge"
        results, why = _ended(setup, len(probe.setup))
        if why or setup["status"] != "succeeded":
            said = _gist(_said(results[-1])) if results else why
            return Verdict(probe, f"setup failed: {said}", False)
    results, why = _ended(run, len(probe.commands))
    if why:
        return Verdict(probe, why, False)
    last = results[-1]
    said = "\n".join(_said(result) for result in results)
    observed = f"exit {last.get('exitCode')}: {_gist(_said(last))}"
    if ESCAPED in said:
        return Verdict(probe, observed, False)
    if not probe.refused:
        return Verdict(probe, observed, run["status"] == "succeeded")
    missing = [text for text in probe.proof if text not in said]
    if missing:
        observed += f" (never said {', '.join(repr(text) for text in missing)}: it did not try)"
    return Verdict(probe, observed, last.get("exitCode") != 0 and not missing)


def _queue(client: Client, session: str, commands: tuple[str, ...], probe: Probe) -> str:
    params = {"commands": list(commands), "allowNetwork": probe.network, "timeout": probe.timeout}
    return str(client.act(session, "executeCommands", params)["runId"])


def run_canary(client: Client, session: str, probes: tuple[Probe, ...], out: IO[str], timeout: float) -> list[str]:
    """Run the probes in the session; print one line each and a summary. Returns the names of
    those that did not behave."""
    started = time.monotonic()
    files = [
        {"filePath": f"{FOLDER}/{path.name}", "fileContents": path.read_text()}
        for path in sorted(SCRIPTS.iterdir())
        if path.is_file()
    ]
    written = client.act(session, "writeFiles", {"files": files})["runId"]
    setups = {probe.name: _queue(client, session, probe.setup, probe) for probe in probes if probe.setup}
    runs = {probe.name: _queue(client, session, probe.commands, probe) for probe in probes}
    deadline = started + timeout

    def ended(run_id: str) -> dict[str, Any]:
        return until_ended(client, session, run_id, max(0.0, deadline - time.monotonic()))

    scripts = ended(str(written))
    if scripts["status"] != "succeeded":
        out.write(f"canary: writing its scripts {scripts['status']}: {scripts.get('error')}\n")
    verdicts = []
    width = max(len(probe.name) for probe in probes)
    for probe in probes:
        setup = ended(setups[probe.name]) if probe.name in setups else None
        verdict = judge(probe, ended(runs[probe.name]), setup)
        verdicts.append(verdict)
        out.write(verdict.line(width) + "\n")
        out.flush()
    failed = [verdict.probe.name for verdict in verdicts if not verdict.ok]
    seconds = time.monotonic() - started
    if failed:
        out.write(f"canary FAILED: {', '.join(failed)} ({len(failed)} of {len(verdicts)} did not behave)\n")
    else:
        out.write(f"canary: all {len(verdicts)} probes behaved in {seconds:.1f} s\n")
    return failed
