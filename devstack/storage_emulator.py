"""gcp-storage-emulator with the generation preconditions it lacks.

The PyPI emulator ignores `ifGenerationMatch` on uploads, so it cannot show a
racing writer losing; Cloud Storage answers such a write with 412. This
wrapper adds that check (atomically, under one lock), a deeper listen backlog,
and runs it in memory without re-encoding its whole object index as JSON after
every write (only a restart from disk would read that index, and in memory there
is none: each write cost time in proportion to every object stored so far).
Otherwise the emulator runs unchanged: `python -m devstack.storage_emulator --host H --port P`.
"""

from __future__ import annotations

import argparse
import http.server
import threading
from http import HTTPStatus
from typing import Any

from gcp_storage_emulator import server, storage
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_plain_insert = objects.insert
_writes = threading.Lock()


def _object_name(request: Any) -> str | None:
    if "name" in request.query:
        return str(request.query["name"][0])
    data = request.data
    if isinstance(data, dict) and isinstance(data.get("meta"), dict):
        name = data["meta"].get("name")
        return str(name) if name else None
    return None


def insert_with_preconditions(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
    wanted = request.query.get("ifGenerationMatch")
    if not wanted:
        return _plain_insert(request, response, storage, *args, **kwargs)
    with _writes:
        name = _object_name(request)
        try:
            current = str(storage.get_file_obj(request.params["bucket_name"], name)["generation"])
        except NotFound:
            current = "0"
        if name is not None and current != wanted[0]:
            response.status = HTTPStatus.PRECONDITION_FAILED
            response.json(
                {"error": {"code": 412, "message": "At least one of the pre-conditions you specified did not hold."}}
            )
            return None
        return _plain_insert(request, response, storage, *args, **kwargs)


def _patch() -> None:
    storage.Storage._write_config_to_file = lambda self: None
    objects.insert = insert_with_preconditions
    for _, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler is _plain_insert:
                handlers[method] = insert_with_preconditions


def main() -> None:
    # The emulator serves one request at a time; a deep backlog keeps parallel clients queued, not refused.
    http.server.HTTPServer.request_queue_size = 256
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9023)
    args = parser.parse_args()
    _patch()
    emulator = server.create_server(args.host, args.port, in_memory=True)
    emulator.run()


if __name__ == "__main__":
    main()
