"""Reads of sessions and runs: one by its id, or many by query (each query has its index in infra/gcp)."""

from __future__ import annotations

import logging
from typing import TypeVar, cast

from google.cloud import firestore
from google.cloud.firestore_v1.base_aggregation import AggregationResult
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import BaseModel, ValidationError

from vibesdk_gcp import access
from vibesdk_gcp.errors import NotFound
from vibesdk_gcp.metrics import work
from vibesdk_gcp.names import RUNS_COLLECTION, RUNS_SUBCOLLECTION
from vibesdk_gcp.runs.calls import CALL_LIMITS, OUTAGES, FirestoreCalls, possible_id, unavailable
from vibesdk_gcp.runs.documents import Fields, RunDoc, SessionDoc, UnfinishedRun
from vibesdk_gcp.schemas import SandboxRequest

UNFINISHED = ["queued", "running"]

logger = logging.getLogger("vibesdk_gcp.runs")
Doc = TypeVar("Doc", bound=BaseModel)


def readable(model: type[Doc], documents: list[Fields]) -> list[Doc]:
    """The documents a listing can show: one malformed document is logged and left out, not the whole list."""
    found = []
    for document in documents:
        try:
            found.append(model.model_validate(document))
        except ValidationError as error:
            logger.error("%s left out of a listing: %s", document.get("runId") or document.get("sessionId"), error)
    return found


class Queries:
    def __init__(self, calls: FirestoreCalls) -> None:
        self._calls = calls
        self._client = calls.client

    def get_session(self, session_id: str) -> SessionDoc:
        document = self._get(self._calls.session_ref(session_id)) if possible_id(session_id) else None
        if document is None:
            raise NotFound(f"session {session_id!r} does not exist")
        return SessionDoc.model_validate(document)

    def queued_request(self, session_id: str, run_id: str) -> SandboxRequest | None:
        """The request a run was queued with, as Firestore keeps it (None: not kept, too big)."""
        document = (
            self._get(self._calls.request_ref(session_id, run_id))
            if possible_id(session_id) and possible_id(run_id)
            else None
        )
        if document is None:
            return None
        return SandboxRequest.model_validate_json(document["request"])

    def get_run(self, session_id: str, run_id: str) -> RunDoc:
        possible = possible_id(session_id) and possible_id(run_id)
        document = self._get(self._calls.run_ref(session_id, run_id)) if possible else None
        if document is None:
            raise NotFound(f"run {run_id!r} of session {session_id!r} does not exist")
        return RunDoc.model_validate(document)

    def _get(self, ref: firestore.DocumentReference) -> Fields | None:
        try:
            snapshot = self._calls.read([ref])[ref.path]
        except OUTAGES as error:
            raise unavailable(error) from error
        return snapshot.to_dict() if snapshot.exists else None

    def active_runs(self, owner: str) -> int:
        """The owner's queued and running runs (a count, not a read of each)."""
        query = (
            self._client.collection_group(RUNS_SUBCOLLECTION)
            .where(filter=FieldFilter("owner", "==", owner))
            .where(filter=FieldFilter("status", "in", UNFINISHED))
        )
        try:
            # Annotated as one AggregationResult; it is a list (one per aggregation) of lists.
            result = cast(list[list[AggregationResult]], query.count().get(**CALL_LIMITS))
        except OUTAGES as error:
            raise unavailable(error) from error
        work.add("firestore.reads")
        work.add("firestore.calls")
        access.note(access.FIRESTORE_READ, access.DATABASE)
        access.note(access.FIRESTORE_LIST, access.DATABASE)
        return int(result[0][0].value)

    def sessions_of(self, owner: str, limit: int = 100) -> list[SessionDoc]:
        """The owner's sessions, the latest updated first."""
        query = (
            self._client.collection(RUNS_COLLECTION)
            .where(filter=FieldFilter("owner", "==", owner))
            .order_by("updatedAt", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        return readable(SessionDoc, self._documents(query))

    def runs_of(self, session_id: str, limit: int = 100) -> list[RunDoc]:
        """The session's runs, the latest queued first."""
        query = (
            self._calls.session_ref(session_id)
            .collection(RUNS_SUBCOLLECTION)
            .order_by("createdAt", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        return readable(RunDoc, self._documents(query))

    def unfinished_in_session(self, session_id: str) -> list[UnfinishedRun]:
        """The session's queued and running runs (a few, by design)."""
        query = (
            self._calls.session_ref(session_id)
            .collection(RUNS_SUBCOLLECTION)
            .where(filter=FieldFilter("status", "in", UNFINISHED))
            .select(["runId", "createdAt", "status", "action", "claim.messageId", "claim.endedAt", "refusedAt"])
        )
        # A run its holder ended is done, whether or not the recorder has written so yet.
        documents = [
            doc | {"claimed": bool(doc.get("claim"))}
            for doc in self._documents(query)
            if not (doc.get("claim") or {}).get("endedAt")
        ]
        return readable(UnfinishedRun, documents)

    def unfinished(self) -> list[RunDoc]:
        """Every queued or running run, for the stale-run sweep."""
        query = self._client.collection_group(RUNS_SUBCOLLECTION).where(filter=FieldFilter("status", "in", UNFINISHED))
        return readable(RunDoc, self._documents(query))

    def _documents(self, query: firestore.Query) -> list[Fields]:
        access.note(access.FIRESTORE_READ, access.DATABASE)
        access.note(access.FIRESTORE_LIST, access.DATABASE)
        work.add("firestore.reads")
        work.add("firestore.calls")
        try:
            return [snapshot.to_dict() or {} for snapshot in query.stream(**CALL_LIMITS)]
        except OUTAGES as error:
            raise unavailable(error) from error
