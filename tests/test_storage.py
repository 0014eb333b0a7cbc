"""Atomic streaming writes: whole or nothing, for local paths and file:// URIs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_flexinsights.exceptions import FlexInsightsDestinationError
from airflow_provider_flexinsights.storage import _BackgroundWriter, write_atomically

from tests.conftest import immutable


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
