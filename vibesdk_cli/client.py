"""The HTTP API as Python calls; every error a user can cause comes out as ClientError."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from typing import Any

import httpx


class ClientError(Exception):
    """A message for the user: the server's own words, or why it could not be reached."""


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 30) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self._timeout = timeout
        self.url = url.rstrip("/")

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None, wait: float = 0) -> Any:
        # A waiting GET holds its answer up to `wait` s: its read timeout allows for that.
        params = {"wait": f"{wait:g}"} if wait else None
        try:
            response = self._http.request(method, path, json=body, params=params, timeout=self._timeout + wait)
        except httpx.HTTPError as error:
            raise ClientError(f"cannot reach {self.url}: {error}") from None
        _check(response)
        return response.json()

    def templates(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/templates")["templates"])

    def sessions(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/agent")["sessions"])

    def create(self, template: str, project: str | None, params: dict[str, Any]) -> dict[str, Any]:
        body = {"templateName": template, "projectName": project, "params": params}
        return dict(self._call("POST", "/api/agent", body))

    def act(self, session: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", f"/api/agent/{session}/actions", {"action": action, "params": params}))

    def session(self, session: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/agent/{session}"))

    def run(self, session: str, run: str, wait: float = 0) -> dict[str, Any]:
        """The run; with `wait`, as soon as it has ended, or as it stands after `wait` s."""
        return dict(self._call("GET", f"/api/agent/{session}/runs/{run}", wait=wait))

    def events(self, session: str, last_event_id: str | None = None) -> Generator[dict[str, Any] | None, None, None]:
        """The session's events stream (docs/API.md) until the server ends it: each event's fields,
        `data` parsed; None for each keep-alive, so that a reader can look at its clock."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        try:
            with self._http.stream("GET", f"/api/agent/{session}/events", headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    _check(response)
                yield from parse_events(response.iter_lines())
        except httpx.HTTPError as error:
            raise ClientError(f"cannot reach {self.url}: {error}") from None

    def preview(self, session: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/agent/{session}/preview"))


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail") or response.text
        except ValueError:
            detail = response.text
        raise ClientError(f"{response.status_code}: {detail}")


def parse_events(lines: Iterator[str]) -> Iterator[dict[str, Any] | None]:
    """Server-Sent Events' fields, an event per blank line; a comment is None."""
    fields: dict[str, Any] = {}
    for line in lines:
        if line.startswith(":"):
            yield None
        elif line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            # An event's data lines are one text, joined by line ends.
            fields[name] = f"{fields['data']}\n{value}" if name == "data" and "data" in fields else value
        elif fields:
            yield fields | {"data": json.loads(fields.get("data", "null"))}
            fields = {}
