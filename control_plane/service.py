"""What the API does, without HTTP: queue runs, read sessions and runs back."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from control_plane.errors import NotRunHere
from control_plane.feed import REPLAY_RUNS, TransitionFeed
from control_plane.live import LIVE_LISTENERS, LiveVersions
from control_plane.models import CreateSession, Preview, PreviewState, QueueAction, Queued, Run, Session
from control_plane.quota import ActiveRunQuota
from vibesdk_gcp import logs, previews
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.catalog import template_catalog
from vibesdk_gcp.errors import Forbidden, NotFound, ServiceUnavailable, TooLarge, TooMany
from vibesdk_gcp.follow_ups import follow_up, queue_follow_up
from vibesdk_gcp.media import content_type
from vibesdk_gcp.names import LOGS_BUCKET, PREVIEWS_BUCKET
from vibesdk_gcp.params import Params, RuntimeErrorsParams, WriteFilesParams
from vibesdk_gcp.registry import spec_of
from vibesdk_gcp.runs import RunStore, SessionDoc
from vibesdk_gcp.schemas import PublishedPreview, SandboxRequest, utcnow
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.state import TERMINAL
from vibesdk_gcp.storage import ObjectInfo, Storage

logger = logging.getLogger("control_plane")


def jsonable(value: Any) -> Any:
    """Firestore values as JSON: timestamps become RFC 3339 strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    return value


@dataclass(frozen=True)
class PreviewFile:
    """A preview's file as it is read: its chunks (read as they are sent), its size and its media type."""

    chunks: Iterator[bytes]
    size: int
    media_type: str
    # The version of a live preview this page is (its HTML then gets the reload script), else None.
    live_version: int | None = None


@dataclass(frozen=True)
class Limits:
    max_active_runs: int = Settings.max_active_runs_per_owner
    max_file_bytes: int = Settings.max_file_bytes
    max_waits: int = Settings.max_waits_per_owner
    max_streams: int = Settings.max_streams_per_owner

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            settings.max_active_runs_per_owner,
            settings.max_file_bytes,
            settings.max_waits_per_owner,
            settings.max_streams_per_owner,
        )


MAX_LIVE_PAGES_PER_PREVIEW = 4

# A retry after this many seconds may find one of the owner's waits or streams ended.
RETRY_AFTER_OPEN = 5


class PerOwner:
    """What each owner has open on this instance (waits, or streams), at most `most` each: each
    holds a Firestore listener and its threads."""

    def __init__(self, what: str, most: int) -> None:
        self._what = what
        self._most = most
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, owner: str) -> None:
        # Checked and counted under one lock: two requests cannot both take the last place.
        with self._lock:
            if self._open.get(owner, 0) >= self._most:
                raise TooMany(f"{self._most} {self._what} already open for this owner; retry later", RETRY_AFTER_OPEN)
            self._open[owner] = self._open.get(owner, 0) + 1

    def give_back(self, owner: str) -> None:
        with self._lock:
            left = self._open.pop(owner) - 1
            if left:
                self._open[owner] = left

    def slot(self, owner: str) -> OwnerSlot:
        return OwnerSlot(self, owner)

    @asynccontextmanager
    async def held(self, owner: str) -> AsyncIterator[None]:
        self.take(owner)
        try:
            yield
        finally:
            self.give_back(owner)


@dataclass
class OwnerSlot:
    """One owner's place in a PerOwner, for a feed to take when it opens and give back when it ends."""

    bound: PerOwner
    owner: str

    def take(self) -> None:
        self.bound.take(self.owner)

    def give_back(self) -> None:
        self.bound.give_back(self.owner)


class ControlPlane:
    def __init__(
        self,
        store: RunStore,
        bus: Bus,
        storage: Storage,
        limits: Limits | None = None,
        settings: Settings | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._storage = storage
        self._limits = limits or Limits()
        self._waits = PerOwner("waits", self._limits.max_waits)
        self._streams = PerOwner("event streams", self._limits.max_streams)
        # A preview's open pages (tabs) each hold a listener: a few per preview, whoever opens them.
        self._live = PerOwner("live pages", MAX_LIVE_PAGES_PER_PREVIEW)
        self._settings = settings or Settings()  # where previews are served (preview_urls)
        self._quota = ActiveRunQuota(store.active_runs, self._limits.max_active_runs)

    def _check(self, action: str, params: Params, egress: bool) -> None:
        """What the caller may ask beyond the params' own checks: network, and file sizes."""
        if spec_of(action).asks_network(params) and not egress:
            raise Forbidden("this API key may not give commands network (allowNetwork); ask for a key with egress")
        if isinstance(params, WriteFilesParams):
            for item in params.files:
                size = len(item.fileContents.encode())
                if size > self._limits.max_file_bytes:
                    raise TooLarge(
                        f"file {item.filePath!r} is {size} bytes; the limit is {self._limits.max_file_bytes}"
                    )

    def runs(self, owner: str, session_id: str) -> list[Run]:
        self._owned_session(owner, session_id)
        return [Run.model_validate(jsonable(run.model_dump())) for run in self._store.runs_of(session_id)]

    def templates(self) -> list[dict[str, Any]]:
        return template_catalog(self._storage)

    def sessions(self, owner: str) -> list[Session]:
        return [Session.model_validate(jsonable(session.model_dump())) for session in self._store.sessions_of(owner)]

    def create_session(self, owner: str, body: CreateSession, egress: bool = False) -> Queued:
        self._check(body.action, body.params, egress)
        request = SandboxRequest(
            sessionId=str(uuid.uuid4()),
            runId=str(uuid.uuid4()),
            agentId=body.agentId,
            action=body.action,
            templateName=body.templateName,
            projectName=body.projectName,
            params=body.params,
            issuedAt=utcnow(),
            owner=owner,
            egress=egress,
        )
        # The preview's token is the session's from the start: its URL is known before anything is deployed.
        return self._queue(request, new_session=True, preview_token=previews.new_token())

    def queue_action(self, owner: str, session_id: str, body: QueueAction, egress: bool = False) -> Queued:
        self._check(body.action, body.params, egress)
        session = self._owned_session(owner, session_id)
        request = SandboxRequest(
            sessionId=session_id,
            runId=str(uuid.uuid4()),
            agentId=session.agentId,
            action=body.action,
            templateName=session.templateName,
            projectName=session.projectName,
            params=body.params,
            issuedAt=utcnow(),
            owner=owner,
            egress=egress,
        )
        return self._queue(request, new_session=False)

    def _queue(self, request: SandboxRequest, new_session: bool, preview_token: str | None = None) -> Queued:
        # Admitted under the owner's bound, and counted as in flight until the run is written.
        with logs.log_context(sessionId=request.sessionId, runId=request.runId), self._quota.admission(request.owner):
            return self._queue_in_context(request, new_session, preview_token)

    def _queue_in_context(self, request: SandboxRequest, new_session: bool, preview_token: str | None) -> Queued:
        self._store.queue_run(request, new_session, preview_token)
        try:
            self._bus.publish_request(request)
        except ServiceUnavailable as error:
            # Nothing will ever run it: end it now rather than leave it queued.
            self._store.fail_queued(request.sessionId, request.runId, f"not queued: {error}")
            raise
        logger.info("%s queued for %s", request.action, request.owner)
        base = f"/api/agent/{request.sessionId}"
        return Queued(
            sessionId=request.sessionId,
            runId=request.runId,
            action=request.action,
            status="queued",
            statusUrl=base,
            runUrl=f"{base}/runs/{request.runId}",
        )

    def _owned_session(self, owner: str, session_id: str) -> SessionDoc:
        session = self._store.get_session(session_id)
        if session.owner != owner:
            # Someone else's session is answered exactly like a missing one.
            raise NotFound(f"session {session_id!r} does not exist")
        return session

    def session(self, owner: str, session_id: str) -> Session:
        return self.session_and_urls(owner, session_id)[0]

    def run(self, owner: str, session_id: str, run_id: str) -> Run:
        self._owned_session(owner, session_id)
        return Run.model_validate(jsonable(self._store.get_run(session_id, run_id).model_dump()))

    async def run_when_terminal(self, owner: str, session_id: str, run_id: str, seconds: float) -> Run:
        """The run as soon as it is terminal, or as it stands after `seconds` (woken by Firestore's
        listener, not a poll)."""
        run = await run_in_threadpool(self.run, owner, session_id, run_id)
        if run.status in TERMINAL or seconds <= 0:
            return run
        async with self._waits.held(owner):
            done = await self._store.until_terminal(session_id, run_id, seconds)
        if done is None:
            return await run_in_threadpool(self.run, owner, session_id, run_id)
        return Run.model_validate(jsonable(done.model_dump()))

    async def transition_feed(self, owner: str, session_id: str, last_event_id: str | None) -> TransitionFeed:
        """The session's run transitions as they land, after `last_event_id` if given: entered (the
        owner's place and a listener taken, subscribed), for the caller to leave.

        Entered before the stream's headers go, a refusal (TooMany, ServiceUnavailable) is the
        caller's answer; the owner's place is checked and taken at once, under PerOwner's lock.
        """
        await run_in_threadpool(self._owned_session, owner, session_id)
        feed = TransitionFeed(
            self._store.session_runs(session_id, REPLAY_RUNS), last_event_id, self._streams.slot(owner)
        )
        return await feed.__aenter__()

    def full_log(self, owner: str, session_id: str, log: str, stream: str) -> bytes:
        """A command's whole stdout or stderr, by the `log` name its run result gives."""
        self._owned_session(owner, session_id)
        prefix = f"gs://{LOGS_BUCKET}/{session_id}/logs/"
        name = log.removeprefix(prefix)
        if name == log or not name or "/" in name or ".." in name or stream not in ("stdout", "stderr"):
            raise NotFound("no such log")
        return self._storage.read(LOGS_BUCKET, f"{session_id}/logs/{name}.{stream}")

    def preview(self, owner: str, session_id: str) -> Preview:
        """The preview's details; their state: the instance is ready, being made, or failed."""
        session = self._owned_session(owner, session_id)
        details = Preview(
            sessionId=session_id,
            instanceId=session.instanceId,
            state=PreviewState.CREATING,
            status=session.status,
            previewUrl=session.preview.previewUrl if session.preview else None,
        )
        if session.instanceId:
            if not details.previewUrl:
                details.message = "instance ready; queue deployInstance to publish a preview"
            details.state = PreviewState.READY
            return details
        if session.status == "failed":
            run = self._store.get_run(session_id, session.runId)
            details.message = run.error or "the instance could not be created"
            details.state = PreviewState.FAILED
            return details
        details.message = "the instance is being created"
        return details

    def preview_urls(self, owner: str, session_id: str) -> tuple[str, str] | None:
        """(previewURL, tunnelURL) of the session's preview, known from its creation on.

        A session older than its token has its URL once deployInstance published it, else None.
        """
        return self._urls_of(self._owned_session(owner, session_id))

    def _urls_of(self, session: SessionDoc) -> tuple[str, str] | None:
        token = session.previewToken
        if token:
            return previews.preview_url(self._settings, session.sessionId, token), previews.tunnel_url(
                self._settings, session.sessionId, token
            )
        published = session.preview.previewUrl if session.preview else None
        return (published, published) if published else None

    def session_and_urls(self, owner: str, session_id: str) -> tuple[Session, tuple[str, str] | None]:
        """The session with its latest run, and its preview URLs, from one read of its document."""
        session = self._owned_session(owner, session_id)
        latest = self._store.get_run(session_id, session.runId)
        shown = Session.model_validate(jsonable(session.model_dump() | {"latestRun": latest.model_dump()}))
        return shown, self._urls_of(session)

    def instances(self, owner: str) -> list[tuple[Session, tuple[str, str] | None]]:
        """The owner's sessions that hold an instance, with their preview URLs, from one query."""
        return [
            (Session.model_validate(jsonable(session.model_dump())), self._urls_of(session))
            for session in self._store.sessions_of(owner)
            if session.instanceId
        ]

    def preview_page(self, label: str, path: str) -> PreviewFile:
        """A file of the preview served at `{label}.{preview domain}`."""
        named = previews.parse_label(label)
        if named is None:
            raise NotFound("no such preview")
        return self.preview_file(*named, path)

    def preview_file(self, session_id: str, token: str, path: str) -> PreviewFile:
        """A file of the version the session's document names, streamed; the unguessable token in the
        URL is the only key. A path without an extension that is no file is the page itself
        (index.html), so a single-page app's client routes load."""
        if ".." in path.split("/") or not token:
            raise NotFound("no such preview file")
        preview = self.published_preview(session_id, token)
        if preview.worker and (path == "api" or path.startswith("api/")):
            raise NotRunHere(
                "this app's Worker backend (worker/, /api/*) does not run on this runtime: only its client is served"
            )
        page = path if path and not path.endswith("/") else path + "index.html"
        info, chunks, page = self._version_file(f"{session_id}/{token}/", preview.version, page)
        media = content_type(page)
        live = preview.version if preview.live and media.startswith("text/html") else None
        return PreviewFile(chunks, info.size, media, live)

    def _version_file(self, folder: str, version: int | None, page: str) -> tuple[ObjectInfo, Iterator[bytes], str]:
        """The file of the version (of the one before it, for a page of that one still loading its
        assets: it is kept until the next), else the version's page for a client route."""
        base = folder + (f"{version}/" if version is not None else "")
        try:
            return (*self._storage.stream(PREVIEWS_BUCKET, base + page), page)
        except NotFound:
            if "." not in page.rsplit("/", 1)[-1]:
                return (*self._storage.stream(PREVIEWS_BUCKET, base + "index.html"), "index.html")
            if not version or version < 2 or page.endswith(".html"):
                raise NotFound("no such preview file") from None
        try:
            return (*self._storage.stream(PREVIEWS_BUCKET, f"{folder}{version - 1}/{page}"), page)
        except NotFound:
            raise NotFound("no such preview file") from None

    def published_preview(self, session_id: str, token: str) -> PublishedPreview:
        """The session's published preview, when `token` is its token; else NotFound, as for no preview."""
        preview = self._previewed_session(session_id, token).preview
        assert preview is not None
        return preview

    def _previewed_session(self, session_id: str, token: str) -> SessionDoc:
        try:
            session = self._store.get_session(session_id)
        except NotFound:
            raise NotFound("no such preview") from None
        preview = session.preview
        # A session older than its token knows its token from the URL it published alone.
        token_known = session.previewToken or (preview and previews.token_of(preview.previewUrl))
        if preview is None or not secrets.compare_digest(token_known or "", token):
            raise NotFound("no such preview")
        return session

    def report_errors(self, session_id: str, token: str, report: RuntimeErrorsParams) -> None:
        """Queue a page's errors as the session's reportRuntimeErrors run (the job keeps and sends them)."""
        session = self._previewed_session(session_id, token)
        preview = session.preview
        if not session.instanceId or (preview and report.version is not None and report.version != preview.version):
            return  # a page of an older version, or of an instance gone: its errors are not the app's now
        # One report waits at a time per session, so a page's visitors cannot fill the owner's queue
        # (nor their quota): the page sends its next batch once this one is taken.
        pending = self._store.unfinished_in_session(session_id)
        if any(run.action == "reportRuntimeErrors" and not run.claimed for run in pending):
            raise TooMany("a report of this preview is waiting to be recorded; send it again shortly", 2)
        queue_follow_up(self._store, self._bus, follow_up(session, "reportRuntimeErrors", report))

    async def live_versions(self, session_id: str, token: str) -> LiveVersions:
        """The preview's versions as they are published, entered (a listener taken) for the caller to leave."""
        await run_in_threadpool(self.published_preview, session_id, token)
        feed = LiveVersions(
            self._store.session_listener(session_id, LIVE_LISTENERS), token, self._live.slot(session_id)
        )
        return await feed.__aenter__()

    def rename(self, owner: str, session_id: str, project_name: str) -> None:
        """Set the session's projectName: the runs queued from now on carry it (VibSDK's rename)."""
        self._owned_session(owner, session_id)
        self._store.rename_session(session_id, project_name)

    def whole_result(self, run: Run) -> dict[str, Any]:
        """A terminal run's whole result (`{}` for none): read back from where functions/job.py keeps
        one too big for Firestore."""
        result = run.result or {}
        if "resultObject" not in result:
            return result
        whole: dict[str, Any] = json.loads(self._storage.read(LOGS_BUCKET, f"{run.sessionId}/results/{run.runId}.json"))
        return whole
