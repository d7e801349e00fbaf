"""The HTTP API as Python calls; every error a user can cause comes out as ClientError."""

from __future__ import annotations

from typing import Any

import httpx


class ClientError(Exception):
    """A message for the user: the server's own words, or why it could not be reached."""


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 30) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.url = url.rstrip("/")

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as error:
            raise ClientError(f"cannot reach {self.url}: {error}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail") or response.text
            except ValueError:
                detail = response.text
            raise ClientError(f"{response.status_code}: {detail}")
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

    def run(self, session: str, run: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/agent/{session}/runs/{run}"))

    def preview(self, session: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/agent/{session}/preview"))
