"""functions-framework entry points, as Cloud Run functions run them.

functions-framework --source functions/main.py --target sandbox_job --signature-type cloudevent
functions-framework --source functions/main.py --target status_recorder
"""

from __future__ import annotations

import logging
import os
import threading

import flask
import functions_framework
from cloudevents.http import CloudEvent

from functions import warmup
from functions.context import Context
from functions.job import handle_request
from functions.recorder import record
from functions.sweeper import sweep
from vibesdk_gcp import logs
from vibesdk_gcp.envelope import from_push_body, from_push_bytes
from vibesdk_gcp.errors import Busy, Forbidden, PoisonMessage, Unauthenticated
from vibesdk_gcp.identity import audiences, bearer, verify_google_token
from vibesdk_gcp.metrics import work
from vibesdk_gcp.settings import Settings

# Read and checked once, as functions-framework imports this module: a bad setting stops the
# process here, naming its variable.
SETTINGS = Settings.from_env()
logs.setup(SETTINGS.log_name("functions"), SETTINGS)
logger = logging.getLogger("functions")

_context: Context | None = None
_making = threading.Lock()


def context() -> Context:
    """This process's one Context, made on first use: gunicorn forks its worker after importing
    this module, and the clients' gRPC channels must not cross a fork."""
    global _context
    with _making:
        if _context is None:
            _context = Context.from_settings(SETTINGS)
        return _context


def verify_caller(request: flask.Request) -> None:
    """Only Google-signed tokens of the expected service account get in (docs/SECURITY.md).

    Checked before the delivery is decoded; off only where VIBESDK_VERIFY_PUSH=false (make dev).
    """
    settings = SETTINGS
    if not settings.verify_push:
        if settings.on_google_cloud or settings.on_cloud_run:
            flask.abort(403, description="VIBESDK_VERIFY_PUSH=false is refused on Google Cloud")
        return
    try:
        if not settings.push_service_account:
            raise Forbidden("VIBESDK_PUSH_SERVICE_ACCOUNT is not set: no caller can be accepted")
        if not settings.push_audience:
            raise Forbidden("VIBESDK_PUSH_AUDIENCE is not set: the audience never comes from the Host header")
        token = bearer(request.headers.get("Authorization"))
        verify_google_token(
            token,
            audiences(settings.push_audience),
            settings.google_certs_url,
            settings.push_service_account,
            service=settings.service,
        )
    except Unauthenticated as error:
        flask.abort(401, description=str(error))
    except Forbidden as error:
        flask.abort(403, description=str(error))


def healthz() -> flask.typing.ResponseReturnValue:
    """Whether this instance can run sandboxed commands, and with which isolation backend."""
    state = context().sandbox.isolation.status()
    return {"status": "ok" if state["backend"] else "isolation unavailable", "isolation": state}, (
        200 if state["backend"] else 503
    )


def readyz() -> flask.typing.ResponseReturnValue:
    """Started once the warm-up has ended (Cloud Run's startup probe asks this, infra/gcp)."""
    if warmup.ended.is_set():
        return {"status": "ready"}, 200
    return {"status": "warming up"}, 503


_warming = False


def _warm_up_in_worker() -> None:
    """In gunicorn's worker, once (a process it forks later inherits the flag): the instance readies
    itself while it waits for its first delivery (functions/warmup.py)."""
    global _warming
    if not _warming:
        _warming = True
        warmup.start_warm_up(context)


# GET /healthz beside the job's own routes (functions-framework loads this module inside its app,
# named after the target), and the warm-up once gunicorn has forked the worker that serves them.
if flask.has_app_context() and flask.current_app.name == "sandbox_job":
    flask.current_app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    flask.current_app.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])
    os.register_at_fork(after_in_child=_warm_up_in_worker)


@functions_framework.cloud_event
def sandbox_job(event: CloudEvent) -> None:
    """Eventarc target: one request message, one sandbox action."""
    work.add("http.deliveries.sandbox_job")
    verify_caller(flask.request)
    try:
        message = from_push_body(event.data)
    except PoisonMessage as error:
        # A nack: the trigger's dead-letter policy takes it after the last attempt.
        logger.error("undecodable delivery %s: %s", event["id"], error)
        flask.abort(400, description=str(error))
    try:
        handle_request(message, context())
    except Busy as busy:
        # A negative ack: the message comes back after the backoff, once the other delivery is
        # done or gone, or the session's earlier actions have ended.
        logger.info("negative ack of %s: %s", event["id"], busy)
        flask.abort(409, description=str(busy))


@functions_framework.http
def status_recorder(request: flask.Request) -> flask.typing.ResponseReturnValue:
    """Push endpoint of the status subscription: one transition, one transaction."""
    work.add("http.deliveries.status_recorder")
    verify_caller(request)
    try:
        message = from_push_bytes(request.get_data())
    except PoisonMessage as error:
        logger.error("undecodable status delivery: %s", error)
        return {"error": str(error)}, 400
    record(message, context())
    return "", 204


@functions_framework.http
def sweeper(request: flask.Request) -> flask.typing.ResponseReturnValue:
    """Cloud Scheduler target: end the runs whose sandbox job is gone for good."""
    verify_caller(request)
    ended = sweep(context())
    return {"ended": [{"runId": run_id, "reason": reason} for run_id, reason in ended]}, 200
