"""Write a stream of bytes to a local path or object storage URI, whole or not at all.

Bytes go to a hidden temporary sibling and are renamed over the destination only once the stream
has ended; any failure removes the temporary. Local renames are atomic (``os.rename``); object
stores (via Airflow's ``ObjectStoragePath``) copy the finished temporary object, so readers never
see a partial destination either.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


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
        with temporary.open("wb") as out:  # type: ignore[no-untyped-call]
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        temporary.rename(target)
    except BaseException:
        with suppress(Exception):
            temporary.unlink(missing_ok=True)
        raise
    return WrittenFile(display_path(target), size, digest.hexdigest())
