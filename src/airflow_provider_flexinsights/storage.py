"""Write a stream of bytes to a local path or object storage URI, whole or not at all.

Bytes go to a hidden temporary sibling and are renamed over the destination only once the stream
has ended; any failure removes the temporary. Local renames are atomic (``os.rename``); object
stores (via Airflow's ``ObjectStoragePath``) copy the finished temporary object, so readers never
see a partial destination either.

Receiving and hashing run in the caller's thread while a second thread writes, so the network,
SHA-256 and the disk (or the object store's upload) overlap instead of taking turns; the queue
between them holds at most a few chunks, so memory stays flat whatever the size of the export.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import uuid
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

_QUEUED_CHUNKS = 8
_END = b""


@dataclass(frozen=True)
class WrittenFile:
    path: str
    bytes: int
    sha256: str


def storage_path(destination: str) -> ObjectStoragePath:
    """``ObjectStoragePath`` for a URI, or for a plain local path (made absolute)."""
    from airflow.sdk import ObjectStoragePath  # heavy import: only when a file is written

    if "://" not in destination:
        destination = Path(destination).expanduser().absolute().as_uri()
    return ObjectStoragePath(destination)


def display_path(target: ObjectStoragePath) -> str:
    """A local file's plain path, or the object's URI."""
    return str(target.path) if target.protocol in ("file", "local", "") else str(target)


def write_atomically(destination: str, chunks: Iterable[bytes]) -> WrittenFile:
    """Stream ``chunks`` to ``destination``; return its size and SHA-256, computed as bytes pass."""
    target = storage_path(destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.part"
    digest, size = hashlib.sha256(), 0
    try:
        with temporary.open("wb") as out, _BackgroundWriter(out) as writer:  # type: ignore[no-untyped-call]
            for chunk in chunks:
                if chunk:
                    digest.update(chunk)
                    size += len(chunk)
                    writer.put(chunk)
        temporary.rename(target)
    except BaseException:
        with suppress(Exception):
            temporary.unlink(missing_ok=True)
        raise
    return WrittenFile(display_path(target), size, digest.hexdigest())


class _BackgroundWriter:
    """Writes queued chunks to ``out`` in its own thread; re-raises its error in the caller."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._chunks: queue.Queue[bytes] = queue.Queue(maxsize=_QUEUED_CHUNKS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="flex-insights-writer", daemon=True)

    def __enter__(self) -> _BackgroundWriter:
        self._thread.start()
        return self

    def put(self, chunk: bytes) -> None:
        self._raise_if_failed()
        self._chunks.put(chunk)

    def __exit__(self, *exc_info: object) -> None:
        if self._error is None:
            self._chunks.put(_END)  # on a caller error too: the writer stops, nothing is left hanging
        self._thread.join()
        if exc_info[0] is None:
            self._raise_if_failed()

    def _drain(self) -> None:
        try:
            while chunk := self._chunks.get():
                self._out.write(chunk)
        except BaseException as err:
            self._error = err
            with suppress(queue.Empty):  # unblock a caller waiting on a full queue
                while True:
                    self._chunks.get_nowait()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
