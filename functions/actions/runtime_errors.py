"""The instance's runtime errors: its builds' and commands' errors and its preview page's, each kept
once, and each new one sent once as VibSDK's runtime_error webhook when the instance has a webhookUrl."""

from __future__ import annotations

import logging

from functions import webhooks
from functions.actions.common import Result
from functions.context import Context
from functions.diagnostics import Issue, runtime_error
from functions.instances import Instance, save_instance
from vibesdk_gcp.params import BrowserError, RuntimeErrorsParams
from vibesdk_gcp.schemas import SandboxRequest

logger = logging.getLogger("functions.actions.runtime_errors")

MAX_KEPT_ERRORS = 100
# A page's errors are reported by whoever opens the preview: they never push the builds' and
# commands' errors out, and keep at most this many places of the list.
MAX_BROWSER_ERRORS = 20
# The hashes of errors already sent: enough to never send one error twice in a session's life.
MAX_NOTIFIED = 1_000


def record_errors(ctx: Context, request: SandboxRequest, instance: Instance, found: list[Issue]) -> int:
    """Add the errors the instance does not hold yet (newest last) and save it: how many were new."""
    held = {webhooks.error_hash(error) for error in instance.errors}
    new = []
    for error in found:
        digest = webhooks.error_hash(error)
        if digest not in held:
            held.add(digest)
            new.append(error)
    if not new:
        return 0
    instance.errors = kept(instance.errors + new)
    _notify(ctx, request, instance, new)
    save_instance(ctx, request.sessionId, instance)
    return len(new)


def kept(errors: list[Issue]) -> list[Issue]:
    """The errors kept, newest last: the newest MAX_BROWSER_ERRORS of the browser's, then the newest
    of all up to MAX_KEPT_ERRORS."""
    browser = [index for index, error in enumerate(errors) if error.get("source") == "browser"]
    dropped = set(browser[: max(0, len(browser) - MAX_BROWSER_ERRORS)])
    return [error for index, error in enumerate(errors) if index not in dropped][-MAX_KEPT_ERRORS:]


def _notify(ctx: Context, request: SandboxRequest, instance: Instance, errors: list[Issue]) -> None:
    """The errors never sent before, to the instance's webhook; a webhook that fails fails no run."""
    url = instance.webhookUrl
    if not url:
        return
    unsent = [error for error in errors if webhooks.error_hash(error) not in instance.notifiedErrors]
    if not unsent:
        return
    instance.notifiedErrors = (instance.notifiedErrors + [webhooks.error_hash(e) for e in unsent])[-MAX_NOTIFIED:]
    refusal = webhooks.webhook_refusal(url, ctx.settings)
    if refusal:
        logger.warning("runtime_error webhook not sent: %s", refusal)
        return
    events = [webhooks.runtime_error_event(instance.instanceId, request.agentId, request.runId, e) for e in unsent]
    for note in webhooks.deliver(url, events, ctx.settings):
        logger.warning("runtime_error webhook: %s", note)


def browser_error(report: BrowserError) -> Issue:
    """A page's error in VibSDK's RuntimeError shape, where it happened when the browser said."""
    prefix = "Unhandled rejection: " if report.kind == "unhandledrejection" else ""
    raw = f"[{report.kind}] {report.message}" + (f"\n{report.stack}" if report.stack else "")
    return runtime_error(prefix + report.message, raw, "browser", report.source, report.line, report.column)


def report_runtime_errors(
    request: SandboxRequest, params: RuntimeErrorsParams, ctx: Context, instance: Instance
) -> Result:
    return {"recorded": record_errors(ctx, request, instance, [browser_error(report) for report in params.errors])}
