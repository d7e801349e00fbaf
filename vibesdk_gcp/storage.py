"""Cloud Storage adapter: objects by name, with generations for preconditions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from google.api_core import exceptions as api_exceptions
from google.cloud import storage

from vibesdk_gcp import access, clients
from vibesdk_gcp.errors import Conflict, NotFound, ServiceUnavailable
from vibesdk_gcp.metrics import work
from vibesdk_gcp.settings import Settings

# What one range read of a streamed object holds in memory (Storage.stream).
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    generation: int
    size: int


def _translate(error: Exception, what: str) -> Exception:
    if isinstance(error, api_exceptions.NotFound):
        return NotFound(f"{what} does not exist")
    if isinstance(error, api_exceptions.PreconditionFailed):
        return Conflict(f"{what} was changed by another writer")
    return ServiceUnavailable(f"Cloud Storage is unavailable ({what}): {error}")


class Storage:
    """Objects by the bucket names the code uses; `prefix` makes them globally unique names."""

    def __init__(self, client: storage.Client, prefix: str = "") -> None:
        self._client = client
        self._prefix = prefix

    def _bucket(self, bucket: str) -> storage.Bucket:
        return cast(storage.Bucket, self._client.bucket(self._prefix + bucket))  # unannotated in the client

    def create_bucket(self, bucket: str) -> None:
        try:
            self._client.create_bucket(self._prefix + bucket)
        except api_exceptions.Conflict:
            pass

    def stat(self, bucket: str, name: str) -> ObjectInfo:
        work.add("storage.reads")
        access.note(access.OBJECT_GET, bucket)
        try:
            blob = self._bucket(bucket).get_blob(name)
        except api_exceptions.GoogleAPICallError as error:
            raise _translate(error, f"gs://{bucket}/{name}") from error
        if blob is None:
            raise NotFound(f"gs://{bucket}/{name} does not exist")
        return ObjectInfo(blob.name, int(blob.generation), int(blob.size or 0))

    def read(self, bucket: str, name: str, generation: int | None = None) -> bytes:
        work.add("storage.reads")
        access.note(access.OBJECT_GET, bucket)
        try:
            return bytes(self._bucket(bucket).blob(name, generation=generation).download_as_bytes())
        except api_exceptions.GoogleAPICallError as error:
            raise _translate(error, f"gs://{bucket}/{name}") from error

    def read_tail(self, bucket: str, name: str, size: int, limit: int) -> bytes:
        """The last `limit` bytes of an object of `size` bytes (a range read: never the whole object)."""
        work.add("storage.reads")
        access.note(access.OBJECT_GET, bucket)
        if size <= 0 or limit <= 0:
            return b""
        try:
            return bytes(self._bucket(bucket).blob(name).download_as_bytes(start=max(0, size - limit), end=size - 1))
        except api_exceptions.GoogleAPICallError as error:
            raise _translate(error, f"gs://{bucket}/{name}") from error

    def stream(self, bucket: str, name: str, chunk_bytes: int = CHUNK_BYTES) -> tuple[ObjectInfo, Iterator[bytes]]:
        """The object as range reads of one generation, `chunk_bytes` at a time: never whole in memory.
        A missing object raises NotFound here, before any chunk is asked for."""
        info = self.stat(bucket, name)
        return info, self._chunks(bucket, info, chunk_bytes)

    def _chunks(self, bucket: str, info: ObjectInfo, chunk_bytes: int) -> Iterator[bytes]:
        blob = self._bucket(bucket).blob(info.name, generation=info.generation)
        for start in range(0, info.size, chunk_bytes):
            work.add("storage.reads")
            access.note(access.OBJECT_GET, bucket)
            try:
                yield bytes(blob.download_as_bytes(start=start, end=min(info.size, start + chunk_bytes) - 1))
            except api_exceptions.GoogleAPICallError as error:
                raise _translate(error, f"gs://{bucket}/{info.name}") from error

    def download(self, bucket: str, name: str, target: Path, generation: int | None = None) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        work.add("storage.reads")
        access.note(access.OBJECT_GET, bucket)
        try:
            self._bucket(bucket).blob(name, generation=generation).download_to_filename(str(target))
        except api_exceptions.GoogleAPICallError as error:
            target.unlink(missing_ok=True)
            raise _translate(error, f"gs://{bucket}/{name}") from error

    def write(
        self,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        if_generation_match: int | None = None,
    ) -> int:
        """Write an object; with if_generation_match (0: must not exist) a racing writer loses."""
        blob = self._bucket(bucket).blob(name)
        work.add("storage.writes")
        access.note(access.OBJECT_CREATE, bucket)
        if if_generation_match != 0:
            access.note(access.OBJECT_DELETE, bucket)  # it may overwrite
        try:
            blob.upload_from_string(data, content_type=content_type, if_generation_match=if_generation_match)
        except api_exceptions.GoogleAPICallError as error:
            raise _translate(error, f"gs://{bucket}/{name}") from error
        return int(blob.generation)

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        access.note(access.OBJECT_LIST, bucket)
        try:
            for blob in self._client.list_blobs(self._prefix + bucket, prefix=prefix):
                yield ObjectInfo(blob.name, int(blob.generation), int(blob.size or 0))
        except api_exceptions.GoogleAPICallError as error:
            raise _translate(error, f"gs://{bucket}/{prefix}*") from error

    def delete(self, bucket: str, name: str) -> None:
        access.note(access.OBJECT_DELETE, bucket)
        try:
            self._bucket(bucket).blob(name).delete()
        except api_exceptions.NotFound:
            pass
        except api_exceptions.GoogleAPICallError as error:
            raise _translate(error, f"gs://{bucket}/{name}") from error

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        names = [info.name for info in self.list(bucket, prefix)]
        for name in names:
            self.delete(bucket, name)
        return len(names)


def storage_for(settings: Settings) -> Storage:
    return Storage(clients.storage_client(settings), settings.bucket_prefix)
