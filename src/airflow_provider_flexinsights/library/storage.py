"""Write a stream of bytes to a local path or object storage URI, whole or not at all.

How a file is committed depends on what the filesystem can do atomically:

- A local filesystem renames atomically. Bytes go to a hidden temporary sibling that is renamed over
  the destination once the stream has ended; any failure removes the temporary. The temporary
  takes the permissions of the file it replaces, its data and then the folder's new entry are
  fsynced before the write is reported done, and it is locked while written, so that a writer
  cleaning up after a killed try never removes the temporary of another writer still at work.
- An object store (S3, GCS, Azure... via Airflow's ``ObjectStoragePath`` and fsspec) cannot rename:
  a "rename" is a server-side copy and a delete, slow for a large export and briefly showing a
  temporary object. But a single upload is already atomic: the object appears only when the
  (multipart) upload completes. So bytes go straight to the destination key through an fsspec file
  opened with ``autocommit=False``, and are published by ``commit()`` once the stream has ended; any
  failure calls ``discard()``, which aborts the upload (parts already sent included), so neither a
  partial object nor a temporary one is ever visible, and an object already there stays as it was.

Receiving runs in the caller's thread while a second thread hashes and a third writes, so the
network, SHA-256 and the disk (or the object store's upload) overlap instead of taking turns;
between them are at most 8 reused buffers of 1 MiB, and an object store's file buffers at most
one upload part, so memory stays flat whatever the size of the export.

Before the export starts, :func:`check_writable` makes sure the destination can be written at all,
so a mistake costs no export and no retry: the same errors met while writing are raised, whatever
the moment, as one :class:`~.exceptions.FlexInsightsDestinationError` sentence naming the path and
the fix (an error no retry can fix: a file where a folder is needed, no permission, a read-only
file system, a folder at the destination, no such bucket).
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import hashlib
import io
import logging
import os
import queue
import stat
import threading
import uuid
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from airflow_provider_flexinsights.library.exceptions import FlexInsightsDestinationError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath
    from fsspec import AbstractFileSystem

log = logging.getLogger(__name__)

# Per buffer: each one handed over wakes a thread (on a VM, an interrupt to the other vCPU), so fewer,
# larger buffers cost less; 1 MiB (a core's L2 cache on this project's VM) took 7-20% less time
# than 256 KiB, at every chunk size (benchmarks/HISTORY.md, "Where the time went", 4).
_BUFFER_BYTES = 1 << 20
_BUFFERS = 8  # per file being written: at most 8 MiB of buffers, slack for a disk that stalls
# Per write() call: 4 KiB calls cost 2.5x as much page-cache time, 16 KiB the same, 256 KiB never
# less and once 6x more (benchmarks/HISTORY.md, "Where the time went", 3).
_WRITE_BYTES = 64 << 10
# Stores whose first path component is a bucket (or container) that an upload cannot create.
_BUCKET_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
# Errors of the filesystem that the same write will meet again, however often it is retried.
_PERMANENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR})
_PERMANENT_TYPES = (PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError)


@dataclass(frozen=True)
class WrittenFile:
    """Where the CSV landed (a local path or ``s3://bucket/key``), its size and its SHA-256."""

    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class _Digest:
    bytes: int
    sha256: str


class _DeferredFile(Protocol):
    """An fsspec file opened with ``autocommit=False``: written and closed, then committed or discarded."""

    def write(self, data: bytes | memoryview) -> int: ...
    def close(self) -> None: ...
    def commit(self) -> None: ...
    def discard(self) -> None: ...


def storage_path(destination: str) -> ObjectStoragePath:
    """``ObjectStoragePath`` for a URI, or for a plain local path (made absolute)."""
    from airflow.sdk import ObjectStoragePath  # heavy import: only when a file is written

    if "://" not in destination:
        # not Path.as_uri(), which percent-encodes: "date=2024-03-01" would become "date%3D2024-03-01"
        destination = f"file://{Path(destination).expanduser().absolute()}"
    return ObjectStoragePath(destination)


def is_local(target: ObjectStoragePath) -> bool:
    """Whether ``target`` is on a local filesystem, where a rename is atomic."""
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(target.fs, LocalFileSystem)


def display_path(target: ObjectStoragePath) -> str:
    """A local file's plain path, or the object's URI without its connection id (``s3://bucket/key``)."""
    return str(target.path) if is_local(target) else f"{target.protocol}://{target.path}"


def check_writable(destination: str) -> None:
    """Raise :class:`FlexInsightsDestinationError` now if ``destination`` cannot be written.

    Local: the missing folders are created, and a hidden file is created and removed beside the
    target (what the write itself will do). Object stores: the bucket must exist and answer with
    the connection's credentials; nothing is written, since a probe object would be seen by
    whoever lists the bucket (a key the credentials may not write is found at the upload).
    Other errors (a full disk, an unreachable store) are left to the write, where a retry may help.
    """
    target = storage_path(destination)
    try:
        if is_local(target):
            _probe_folder(target)
        elif target.protocol in _BUCKET_STORES:
            _probe_bucket(target)
    except OSError as err:
        _raise_if_permanent(target, err)
        raise


def write_atomically(destination: str, chunks: Iterable[bytes]) -> WrittenFile:
    """Stream ``chunks`` to ``destination``; return its size and SHA-256, computed as bytes pass."""
    target = storage_path(destination)
    write = _write_then_rename if is_local(target) else _upload_then_commit
    try:
        digest = write(target, chunks)
    except OSError as err:  # the folder changed since the probe, or a key the store refuses
        _raise_if_permanent(target, err)
        raise
    return WrittenFile(display_path(target), digest.bytes, digest.sha256)


def _probe_folder(target: ObjectStoragePath) -> None:
    """Create the folders and a hidden file beside ``target``, then remove the file."""
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(target.path))
    target.parent.mkdir(parents=True, exist_ok=True)
    probe = _temporary_sibling(Path(target.path))  # named like one: a killed try's probe is cleaned up too
    with probe.open("xb"):
        pass
    probe.unlink(missing_ok=True)  # unlocked: another writer's cleanup may have removed it already


def _probe_bucket(target: ObjectStoragePath) -> None:
    """Ask the store about the bucket (S3: HeadBucket): it exists and the credentials reach it."""
    bucket = target.path.split("/", 1)[0]  # not .bucket: Airflow 3.1 leaves the conn id in it
    try:
        target.fs.info(bucket)
    except FileNotFoundError:
        raise FlexInsightsDestinationError(
            f"Cannot write {display_path(target)}: the bucket {bucket!r} does not exist (or the "
            f"{_connection_of(target)} cannot see it); create it, or fix the destination."
        ) from None


def _raise_if_permanent(target: ObjectStoragePath, err: OSError) -> None:
    """Raise the one sentence for ``err`` if no retry can fix it; return for the others."""
    if not (isinstance(err, _PERMANENT_TYPES) or err.errno in _PERMANENT_ERRNOS):
        return
    raise _unwritable(target, err) from None  # the sentence says it all: no OSError traceback under it


def _unwritable(target: ObjectStoragePath, err: OSError) -> FlexInsightsDestinationError:
    """What stands in the way of writing ``target``, and what to do about it, in one sentence."""
    path = display_path(target)
    if isinstance(err, IsADirectoryError) or err.errno == errno.EISDIR:
        return FlexInsightsDestinationError(
            f"Cannot write {path}: it is a folder; give the destination a file name, such as "
            f"{path}/export.csv."
        )
    if not is_local(target):
        return FlexInsightsDestinationError(
            f"Cannot write {path}: the store refused access ({type(err).__name__}); check that the "
            f"{_connection_of(target)} may write there."
        )
    folder = _nearest_existing(Path(target.path).parent)
    if not folder.is_dir():
        return FlexInsightsDestinationError(
            f"Cannot write {path}: {folder} is a file, not a folder; move it away, or choose another "
            "destination."
        )
    if err.errno == errno.EROFS:
        return FlexInsightsDestinationError(
            f"Cannot write {path}: {folder} is on a read-only file system; choose a destination on a "
            "writable one."
        )
    return FlexInsightsDestinationError(
        f"Cannot write {path}: {_user()} may not write in {folder} ({err.strerror or type(err).__name__}); "
        "give it write access there, or choose another destination."
    )


def _nearest_existing(folder: Path) -> Path:
    """``folder`` if it exists, else its nearest ancestor that does: where creating it fails."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _user() -> str:
    try:
        return f"user {getpass.getuser()!r}"
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "this process's user"


def _connection_of(target: ObjectStoragePath) -> str:
    # Airflow 3.1's ObjectStoragePath has no .conn_id (AttributeError: retried, not this sentence);
    # it keeps the id in storage_options, which 3.2+ strip of it.
    conn_id = getattr(target, "conn_id", None) or target.storage_options.get("conn_id")
    return f"connection {conn_id!r}" if conn_id else "default credentials"


def _temporary_sibling(destination: Path) -> Path:
    """A hidden, unique name beside ``destination``, which :func:`_remove_leftover_temporaries` knows."""
    return destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")


def _write_then_rename(target: ObjectStoragePath, chunks: Iterable[bytes]) -> _Digest:
    """Local files: write a hidden temporary sibling, then rename it over ``target`` (atomic).

    Plain files, not ``ObjectStoragePath.open``: its wrapper reports hook lineage on every write()
    call (an asset built each time, about 10 µs with the GIL held), for a hidden temporary at that;
    the operator reports the real file's lineage. And a plain rename, not ``ObjectStoragePath.rename``:
    fsspec's move puts the file *into* a folder found at the destination (and reports success); a
    rename fails there, as it should.

    Durability costs two fsyncs per file, none per buffer: the temporary's data before the rename
    (else a crash soon after could leave the new name on an empty or partial file), and the folder
    after it (else the rename itself could be lost, the old file back). The first waits for the
    disk to take what the page cache still holds of the file, so it grows with the file: 0.3 s per
    GiB on this project's VM, about a third of the download's own time (docs/outputs.md, "On disk
    before the task reports it"). The second writes one folder entry: a few milliseconds.
    """
    destination = Path(target.path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary, out = _create_locked_temporary(destination)
    try:
        with out:  # the lock lasts until the rename is done, so no cleanup can take the temporary first
            _keep_permissions(destination, out.fileno())
            digest = _stream(chunks, out)
            out.flush()
            os.fsync(out.fileno())
            temporary.replace(destination)
        _fsync_folder(destination.parent)
    except BaseException:
        with suppress(Exception):
            temporary.unlink(missing_ok=True)
        raise
    _remove_leftover_temporaries(destination)
    return digest


def _create_locked_temporary(destination: Path) -> tuple[Path, io.BufferedWriter]:
    """A new temporary beside ``destination``, open and locked (``flock``) until it is closed.

    A cleanup cannot tell a temporary created a moment ago from a killed writer's, and may remove
    this one between its creation and its lock: then its name leads to another file or none, and a
    new temporary is made. The lock waits only for such a cleanup, which holds it just to unlink.
    """
    while True:
        temporary = _temporary_sibling(destination)
        out = temporary.open("xb")
        try:
            fcntl.flock(out, fcntl.LOCK_EX)
            if _names(temporary, out.fileno()):
                return temporary, out
        except BaseException:
            out.close()
            temporary.unlink(missing_ok=True)
            raise
        out.close()


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still leads to the file open as ``fd``."""
    try:
        return os.path.samestat(path.stat(), os.fstat(fd))
    except FileNotFoundError:
        return False


def _keep_permissions(destination: Path, fd: int) -> None:
    """Give the temporary ``fd`` the permission bits (as root, the owner too) of the file it will
    replace, before any byte is written: overwriting a 0600 file leaves it 0600, and the new
    contents are never more exposed than the old ones. A new file keeps what ``open()`` gave it,
    0666 less the umask. The owner is changed first: a chown clears set-user-ID bits."""
    try:
        existing = destination.stat()
    except FileNotFoundError:
        return
    if not stat.S_ISREG(existing.st_mode):
        return  # a folder, say: the rename refuses it
    current = os.fstat(fd)
    if os.geteuid() == 0 and (current.st_uid, current.st_gid) != (existing.st_uid, existing.st_gid):
        os.fchown(fd, existing.st_uid, existing.st_gid)
    if stat.S_IMODE(current.st_mode) != stat.S_IMODE(existing.st_mode):
        os.fchmod(fd, stat.S_IMODE(existing.st_mode))


def _fsync_folder(folder: Path) -> None:
    """Write ``folder``'s entries to disk: the rename is durable only once its folder is."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as err:
        # Linux answers EINVAL for a file system whose folders cannot be synced at all; nothing
        # more can be done there (PostgreSQL concludes the same), and the file is in place.
        if err.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def _remove_leftover_temporaries(destination: Path) -> None:
    """Delete temporaries of ``destination`` that a killed try (a lost worker: no cleanup ran) left
    behind, once the whole file is in place: a partial file never outlives the try that succeeds.
    A temporary that another writer is still writing is locked, and left alone."""
    prefix = f".{destination.name}."
    for sibling in destination.parent.iterdir():
        leftover = sibling.name.removeprefix(prefix).removesuffix(".part")
        if sibling.name.startswith(prefix) and sibling.name.endswith(".part") and len(leftover) == 32:
            _remove_if_abandoned(sibling)


def _remove_if_abandoned(temporary: Path) -> None:
    """Delete ``temporary`` if no writer holds its lock: the kernel releases the locks of a process
    that dies, however it dies. It is unlinked while locked here, so that a writer which created it
    but has not locked it yet finds, once it has, that its name is gone."""
    try:
        fd = os.open(temporary, os.O_RDONLY)
    except OSError:  # gone already, or not this user's to open: left as it is
        return
    try:
        with suppress(BlockingIOError):  # locked: a live writer's, left alone
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            temporary.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _upload_then_commit(target: ObjectStoragePath, chunks: Iterable[bytes]) -> _Digest:
    """Object stores: upload to ``target`` itself, published only by ``commit()``.

    Never inside a ``with`` block: an fsspec file commits when it is closed, and a ``with`` closes it
    on an error too, which would publish a partial object. No ``mkdir`` either: object stores have no
    folders, and s3fs would try to create a missing bucket. Opened on the filesystem itself, not via
    ``ObjectStoragePath.open``, whose wrapper hides the file object that ``_forget`` must find.
    """
    fs = target.fs
    out: _DeferredFile = fs.open(target.path, "wb", autocommit=False)
    try:
        digest = _stream(chunks, out)
        out.close()  # sends the last part; nothing is visible yet
        out.commit()  # the object appears, whole
    except BaseException:
        _abort(out, target)
        raise
    finally:
        _forget(fs, out)
    return digest


def _abort(out: _DeferredFile, target: ObjectStoragePath) -> None:
    """Close, then discard, the order fsspec's transactions use: an s3fs file closed after its
    discard (as the garbage collector does) would start a new multipart upload and leave it open."""
    with suppress(Exception):
        out.close()  # no-op if already closed; never publishes with autocommit=False
    try:
        out.discard()
    except Exception as err:
        log.warning(
            "Could not abort the unfinished upload to %s (%s); nothing was published, but the store "
            "may keep its parts until a lifecycle rule removes incomplete uploads.",
            display_path(target),
            type(err).__name__,
        )


def _forget(fs: AbstractFileSystem, out: _DeferredFile) -> None:
    """fsspec lists every file opened with ``autocommit=False`` in its filesystem's transaction, for
    a ``with fs.transaction:`` block to commit. This one is committed or discarded here, so drop it:
    the cached filesystem would otherwise keep every exported file object alive for good."""
    with suppress(ValueError):
        fs.transaction.files.remove(out)


def _stream(chunks: Iterable[bytes], out: IO[bytes] | _DeferredFile) -> _Digest:
    """Write ``chunks`` to ``out`` through a background writer; a body that can ``pipe`` its pieces
    (a download) hands them over as they are decoded."""
    with _BackgroundWriter(out) as writer:
        if isinstance(chunks, _Pipe):
            chunks.pipe(writer.put)
        else:
            for chunk in chunks:
                writer.put(chunk)
    return writer.digest()


@runtime_checkable
class _Pipe(Protocol):
    """A source that pushes its pieces to a sink (``transport.DownloadBody``)."""

    def pipe(self, sink: Callable[[bytes], object]) -> None: ...


class _BackgroundWriter:
    """Coalesces pieces into a few reused buffers, which two threads of its own take in turn: one
    hashes each full buffer, the other then writes it to ``out``; their error is re-raised in the
    caller.

    Pieces of any size (8 KiB chunks included) cost the caller one copy into the current buffer,
    and the threads see 1 MiB at a time. SHA-256 alone costs about as much CPU as receiving, so
    hashing and writing in one thread would pace the download; as a pipeline, receiving, hashing
    and writing run at once on different buffers (hashlib, file writes and socket reads release
    the GIL for large buffers). The buffers are allocated once per file and reused, so a long
    download allocates nothing (fresh large allocations cost a page fault per 4 KiB). At most
    ``_BUFFERS`` of ``_BUFFER_BYTES`` exist: memory is flat whatever the size of the file.
    """

    def __init__(self, out: IO[bytes] | _DeferredFile) -> None:
        self._out = out
        self._sha256 = hashlib.sha256()
        self._size = 0
        self._allocated = 0
        self._free: queue.SimpleQueue[_Filled | None] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[_Filled | None] = queue.SimpleQueue()
        hashed: queue.SimpleQueue[_Filled | None] = queue.SimpleQueue()
        self._buffer = self._new_buffer()
        self._filled = 0
        self._error: BaseException | None = None
        self._threads = [
            self._stage("flex-insights-hasher", self._sha256.update, self._full, hashed),
            self._stage("flex-insights-writer", self._write, hashed, self._free),
        ]

    def __enter__(self) -> _BackgroundWriter:
        for thread in self._threads:
            thread.start()
        return self

    def put(self, piece: bytes) -> None:
        """Copy ``piece`` into the current buffer, handing full buffers to the threads."""
        room = len(self._buffer) - self._filled
        if len(piece) < room:  # the common case, kept short: one copy
            self._buffer[self._filled : self._filled + len(piece)] = piece
            self._filled += len(piece)
            return
        rest = memoryview(piece)
        while len(rest) >= room:
            self._buffer[self._filled :] = rest[:room]
            rest = rest[room:]
            self._hand_over(len(self._buffer))
            self._buffer, self._filled = self._take_free_buffer(), 0
            room = len(self._buffer)
        self._buffer[: len(rest)] = rest
        self._filled = len(rest)

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None and self._error is None and self._filled:
            self._hand_over(self._filled)
        self._full.put(None)  # on a caller error too: the threads stop, nothing is left hanging
        for thread in self._threads:
            thread.join()
        if exc_info[0] is None:
            self._raise_if_failed()

    def digest(self) -> _Digest:
        """Size and SHA-256 of what was written (once the threads have finished)."""
        return _Digest(self._size, self._sha256.hexdigest())

    def _hand_over(self, length: int) -> None:
        """Queue the first ``length`` bytes of the current buffer for the threads."""
        self._raise_if_failed()
        self._full.put(_Filled(self._buffer, length))

    def _take_free_buffer(self) -> memoryview:
        if self._free.empty() and self._allocated < _BUFFERS:
            return self._new_buffer()  # small files use one buffer, large ones at most _BUFFERS
        free = self._free.get()
        assert free is not None  # only the end of the pipeline sends None, after the last buffer
        return free.buffer

    def _new_buffer(self) -> memoryview:
        self._allocated += 1
        return memoryview(bytearray(_BUFFER_BYTES))

    def _write(self, data: memoryview) -> None:
        for start in range(0, len(data), _WRITE_BYTES):
            self._out.write(data[start : start + _WRITE_BYTES])  # io's contract: the buffer is not kept
        self._size += len(data)

    def _stage(
        self,
        name: str,
        work: Callable[[memoryview], object],
        inbox: queue.SimpleQueue[_Filled | None],
        outbox: queue.SimpleQueue[_Filled | None],
    ) -> threading.Thread:
        """A thread doing ``work`` on each buffer from ``inbox``, in order, then passing it on.
        After an error (its own or an earlier stage's) buffers still pass, undone, until the end."""

        def run() -> None:
            while (filled := inbox.get()) is not None:
                if self._error is None:
                    try:
                        work(filled.buffer[: filled.length])
                    except BaseException as err:
                        self._error = err  # the caller raises it
                outbox.put(filled)
            outbox.put(None)

        return threading.Thread(target=run, name=name, daemon=True)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


class _Filled(NamedTuple):
    """A buffer, and how many of its first bytes hold data."""

    buffer: memoryview
    length: int
