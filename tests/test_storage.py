"""Atomic streaming writes: whole or nothing, for local paths and file:// URIs; permissions kept,
synced to disk before done, and safe with several writers of one destination."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flexinsights.emulator import QUEUE_REPORT
from airflow_provider_flexinsights.library.exceptions import FlexInsightsDestinationError
from airflow_provider_flexinsights.library.storage import _BackgroundWriter, write_atomically

from tests.conftest import REPO_ROOT, DagRunResult, immutable

Run = Callable[..., DagRunResult]


def chunks(count: int, *, fail_after: int | None = None) -> Iterator[bytes]:
    for n in range(count):
        if fail_after is not None and n == fail_after:
            raise ConnectionResetError("stream broke")
        yield bytes([n % 256]) * 100_000


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_writes_whole_file_with_size_and_sha256(tmp_path: Path, as_uri: bool) -> None:
    target = tmp_path / "deep" / "er" / "out.csv"
    expected = b"".join(chunks(50))

    written = write_atomically(target.as_uri() if as_uri else str(target), chunks(50))

    assert target.read_bytes() == expected
    assert (written.path, written.bytes, written.sha256) == (
        str(target),
        len(expected),
        hashlib.sha256(expected).hexdigest(),
    )
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.csv"]


def test_a_local_write_reports_no_hook_lineage_per_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ObjectStoragePath.open()'s file reports an output asset on every write() (its hidden
    temporary, at that, and at a cost per call); the operator reports the real file instead."""
    try:  # where ObjectStoragePath's wrapper finds Airflow's collector
        from airflow.sdk import lineage
    except ImportError:  # Airflow 3.1
        from airflow.lineage import hook as lineage  # type: ignore[no-redef]
    collector = lineage.HookLineageCollector()  # Airflow's own; it collects only once a reader is set up
    monkeypatch.setattr(lineage, "get_hook_lineage_collector", lambda: collector)

    write_atomically(str(tmp_path / "out.csv"), chunks(50))

    assert collector.collected_assets.outputs == []


def test_a_broken_stream_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_bytes(b"previous export")

    with pytest.raises(ConnectionResetError):
        write_atomically(str(target), chunks(50, fail_after=30))

    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_failing_write_reaches_the_caller(tmp_path: Path) -> None:
    out = (tmp_path / "closed.bin").open("wb")
    out.close()  # every write now raises ValueError, in the writer thread

    with pytest.raises(ValueError, match="closed file"), _BackgroundWriter(out) as writer:
        for chunk in chunks(100):
            writer.put(chunk)


def test_a_folder_at_the_destination_is_refused_not_written_into(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.mkdir()  # appeared after the probe, say

    with pytest.raises(FlexInsightsDestinationError, match=r"^Cannot write .*out\.csv: it is a folder;"):
        write_atomically(str(target), chunks(3))

    assert list(target.iterdir()) == []  # fsspec's move would have put the file inside


def test_a_write_refused_by_the_file_system_is_one_sentence(tmp_path: Path) -> None:
    refusal = pytest.raises(FlexInsightsDestinationError, match="may not write in")
    with immutable(tmp_path), refusal as refused:
        write_atomically(str(tmp_path / "out.csv"), chunks(3))

    assert refused.value.__cause__ is None and refused.value.__suppress_context__  # no OSError under it
    assert list(tmp_path.iterdir()) == []


# Safe files: permissions kept, fsynced before done, concurrent writers never destroy each other's work.

FAST_POLLS = {"poll_interval": 0.05, "max_poll_interval": 0.2}
# Another process writing the destination: half its stream, "halfway" on stdout, the rest once told.
WRITER_PROCESS = """
import sys
from airflow_provider_flexinsights.library.storage import write_atomically

def stream():
    yield b"theirs" * 500_000
    print("halfway", flush=True)
    sys.stdin.readline()
    yield b"theirs"

write_atomically(sys.argv[1], stream())
"""


def temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".part"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("kept", [0o600, 0o640, 0o664], ids=oct)
def test_an_overwritten_file_keeps_its_permissions_from_the_first_byte(tmp_path: Path, kept: int) -> None:
    """Not the 0644 of a new file: and the temporary has them before any new byte is in it."""
    target = tmp_path / "out.csv"
    target.write_bytes(b"previous export")
    target.chmod(kept)
    while_written: list[int] = []

    def stream() -> Iterator[bytes]:
        yield b"a" * (2 << 20)  # more than a buffer: some of it is handed to the writer thread
        while_written.extend(mode(p) for p in temporaries(tmp_path))
        yield b"b"

    write_atomically(str(target), stream())

    assert while_written == [kept]
    assert mode(target) == kept


def test_a_new_file_gets_the_mode_open_gives_it(tmp_path: Path) -> None:
    """0666 less the umask, as for any file the task creates (not a temporary file's 0600)."""
    umask = os.umask(0o027)
    try:
        write_atomically(str(tmp_path / "out.csv"), chunks(3))
    finally:
        os.umask(umask)

    assert mode(tmp_path / "out.csv") == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another owner")
def test_an_overwritten_file_keeps_its_owner_when_root_writes_it(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_bytes(b"previous export")
    os.chown(target, 4242, 4343)

    write_atomically(str(target), chunks(3))

    assert (target.stat().st_uid, target.stat().st_gid) == (4242, 4343)


def test_the_data_then_the_folder_are_fsynced_before_the_write_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash cannot be staged here: what is checked is that the file's data are synced whole
    before the rename (else the new name could lead to a partial file), and the folder after it
    (else the rename could be lost)."""
    target = tmp_path / "out.csv"
    target.write_bytes(b"previous export")
    expected = b"".join(chunks(30))
    real_fsync, synced = os.fsync, []

    def fsync(fd: int) -> None:
        synced_stat = os.fstat(fd)
        kind = "folder" if stat.S_ISDIR(synced_stat.st_mode) else f"{synced_stat.st_size} bytes"
        synced.append((kind, "renamed" if target.read_bytes() == expected else "not renamed"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomically(str(target), chunks(30))

    assert synced == [(f"{len(expected)} bytes", "not renamed"), ("folder", "renamed")]


def test_a_folder_that_cannot_be_fsynced_does_not_fail_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux answers EINVAL where a file system cannot sync folders at all: the file is in place."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomically(str(tmp_path / "out.csv"), chunks(3))

    assert (tmp_path / "out.csv").read_bytes() == b"".join(chunks(3))


def test_two_writers_to_one_destination_both_succeed_and_the_last_rename_wins_whole(tmp_path: Path) -> None:
    """The first writer pauses halfway while the second writes the whole file and cleans up: the
    first one's temporary survives, the first one finishes, and a reader only ever sees one
    complete file (the old one, the second's, then the first's)."""
    target = tmp_path / "out.csv"
    old, first, second = b"old" * 1_000_000, b"1st" * 1_000_000, b"2nd" * 1_000_000
    target.write_bytes(old)
    halfway, resume, stop = threading.Event(), threading.Event(), threading.Event()
    seen: set[bytes] = set()

    def first_stream() -> Iterator[bytes]:
        yield first[: len(first) // 2]
        halfway.set()
        assert resume.wait(30)
        yield first[len(first) // 2 :]

    def read_until_stopped() -> None:
        while not stop.is_set():
            seen.add(target.read_bytes())

    with ThreadPoolExecutor(2) as pool:
        reader = pool.submit(read_until_stopped)
        first_write = pool.submit(write_atomically, str(target), first_stream())
        try:
            assert halfway.wait(30)
            (in_progress,) = temporaries(tmp_path)
            write_atomically(str(target), [second])
            assert target.read_bytes() == second
            assert in_progress.exists()  # the second writer's cleanup left the first one's alone
            resume.set()
            first_written = first_write.result(30)
        finally:
            resume.set()
            stop.set()
        reader.result(30)

    assert target.read_bytes() == first and first_written.sha256 == hashlib.sha256(first).hexdigest()
    assert seen <= {old, first, second}
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_temporary_taken_by_a_cleanup_before_its_writer_locked_it_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cleanup cannot tell a temporary created a moment ago from a killed writer's: another writer
    finishing between this one's creating its temporary and locking it removes it. This writer
    must notice, and write to a new one."""
    target = tmp_path / "out.csv"
    real_flock, interrupted = fcntl.flock, []

    def flock(file: Any, operation: int) -> None:
        if operation == fcntl.LOCK_EX and not interrupted:  # this writer, about to lock its temporary
            interrupted.append(True)
            write_atomically(str(target), [b"the other writer's"])  # ends with a cleanup
        real_flock(file, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    written = write_atomically(str(target), chunks(3))

    assert interrupted and target.read_bytes() == b"".join(chunks(3)) and written.bytes == 300_000
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_leftover_temporary_of_a_dead_writer_is_removed_once_the_file_is_in_place(tmp_path: Path) -> None:
    leftover = tmp_path / f".out.csv.{'0' * 32}.part"
    leftover.write_bytes(b"half of a killed try's export")
    unrelated = tmp_path / ".other.csv.part"
    unrelated.write_bytes(b"not a temporary of out.csv")

    write_atomically(str(tmp_path / "out.csv"), chunks(3))

    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.csv.part", "out.csv"]


def test_another_process_keeps_its_temporary_while_alive_and_loses_it_once_killed(tmp_path: Path) -> None:
    """flock locks belong to the open file: the kernel releases a killed process's (SIGKILL: no
    cleanup of its own), so the next write removes what it left, and only then."""
    target = tmp_path / "out.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    command = [sys.executable, "-c", WRITER_PROCESS, str(target)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env) as writer:
        try:
            assert writer.stdout is not None and writer.stdout.readline() == b"halfway\n"
            (theirs,) = temporaries(tmp_path)
            write_atomically(str(target), [b"ours"])
            assert theirs.exists()  # alive and locked: left alone
        finally:
            writer.kill()
    assert writer.returncode == -signal.SIGKILL

    write_atomically(str(target), [b"ours again"])

    assert not theirs.exists() and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_an_export_over_a_0600_file_leaves_it_0600(
    run_export: Run, flex_connection: str, tmp_path: Path
) -> None:
    destination = tmp_path / "queue.csv"
    destination.write_bytes(b"yesterday's export, for the owner only")
    destination.chmod(0o600)

    run = run_export(report_id=QUEUE_REPORT, destination=str(destination), deferrable=False, **FAST_POLLS)

    assert run.task_state == "success"
    assert hashlib.sha256(destination.read_bytes()).hexdigest() == run.result["sha256"]
    assert mode(destination) == 0o600
