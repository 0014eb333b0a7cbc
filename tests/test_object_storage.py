"""Exports to S3 (moto's real S3 HTTP server on loopback), through the real operator under dag.test().

On an object store the CSV is uploaded straight to its key and only published when the upload is
committed: a broken download must leave no object, no temporary object and no unfinished multipart
upload, and must not disturb an object already there. The bulk cases are larger than one upload part
(s3fs uploads in parts of ``S3FileSystem.default_block_size``), so the failure happens with parts
already uploaded.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from airflow.sdk import ObjectStoragePath
from moto.server import ThreadedMotoServer
from s3fs import S3FileSystem

from airflow_provider_flexinsights.emulator import (
    BULK_REPORT,
    DEMO_WORKSPACE,
    EMPTY_REPORT,
    QUEUE_REPORT,
    Emulator,
    EmulatorConfig,
    Fault,
    Report,
    render_report,
)
from airflow_provider_flexinsights.emulator.data import iter_bulk_report
from airflow_provider_flexinsights.library import validation
from airflow_provider_flexinsights.library.exceptions import FlexInsightsInputError
from airflow_provider_flexinsights.library.storage import check_writable, write_atomically

from tests.conftest import DagRunResult, secrets_in

Run = Callable[..., DagRunResult]

DATES = ("2024-03-01", "2024-03-03")
QUEUE_CSV = render_report(DEMO_WORKSPACE, QUEUE_REPORT, *DATES)
PART = S3FileSystem.default_block_size  # s3fs's upload part size (50 MiB)
BULK_BYTES = PART + (6 << 20)  # more than one part...
AFTER_ONE_PART = PART + (2 << 20)  # ...and broken once a whole part has been uploaded
ACCESS_KEY = "AKIAFLEXINSIGHTSTEST"
SECRET_KEY = f"flex-insights-test-secret-{uuid.uuid4().hex}"
OLD_OBJECT = b"previous export\n"


@dataclass(frozen=True)
class Bucket:
    """A fresh bucket on the S3 server, and the Airflow connection that reaches it."""

    conn_id: str
    name: str
    client: Any  # boto3's S3 client

    def uri(self, key: str) -> str:
        return f"s3://{self.conn_id}@{self.name}/{key}"

    def keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.name)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def read(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def unfinished_uploads(self) -> list[str]:
        listed = self.client.list_multipart_uploads(Bucket=self.name)
        return [upload["Key"] for upload in listed.get("Uploads", [])]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A new bucket and an ``aws`` connection (a new id: Airflow caches a filesystem per connection)."""
    suffix = uuid.uuid4().hex[:10]
    conn_id = f"moto_s3_{suffix}"
    connection = {
        "conn_type": "aws",
        "login": ACCESS_KEY,
        "password": SECRET_KEY,
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    name = f"exports-{suffix}"
    client.create_bucket(Bucket=name)
    return Bucket(conn_id, name, client)


def with_bulk_report(*faults: Fault) -> EmulatorConfig:
    config = EmulatorConfig(pending_polls=1, faults=list(faults))
    bulk = Report("Bulk queue report", kind="bulk", size_bytes=BULK_BYTES)
    config.workspaces[DEMO_WORKSPACE].reports[BULK_REPORT] = bulk
    return config


def bulk_sha256() -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    for block in iter_bulk_report(DEMO_WORKSPACE, BULK_REPORT, dt.date.fromisoformat(DATES[0]), BULK_BYTES):
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


def export(run_export: Run, destination: str, report_id: str = QUEUE_REPORT, **kwargs: Any) -> DagRunResult:
    return run_export(
        report_id=report_id,
        date_from=DATES[0],
        date_to=DATES[1],
        destination=destination,
        deferrable=False,
        poll_interval=0.05,
        **kwargs,
    )


def assert_nothing_secret(run: DagRunResult, output: str, emulator: Emulator) -> None:
    for text in (output, str(run.result)):
        assert SECRET_KEY not in text and ACCESS_KEY not in text
        assert secrets_in(text, emulator) == []


def test_the_object_holds_exactly_the_served_bytes(
    run_export: Run,
    flex_connection: str,
    emulator: Emulator,
    bucket: Bucket,
    capfd: pytest.CaptureFixture[str],
) -> None:
    run = export(run_export, bucket.uri("exports/queue-{{ ds }}.csv"))
    output = capfd.readouterr().out

    assert run.task_state == "success", output[-3000:]
    key = "exports/queue-2024-03-02.csv"
    assert bucket.keys() == [key]
    assert hashlib.sha256(bucket.read(key)).hexdigest() == hashlib.sha256(QUEUE_CSV).hexdigest()
    assert run.result is not None
    assert (run.result["path"], run.result["bytes"], run.result["sha256"]) == (
        f"s3://{bucket.name}/{key}",
        len(QUEUE_CSV),
        hashlib.sha256(QUEUE_CSV).hexdigest(),
    )
    assert bucket.unfinished_uploads() == []
    assert_nothing_secret(run, output, emulator)


@pytest.mark.parametrize(
    ("emulator_config", "report_id"),
    [
        (with_bulk_report(Fault("export", "truncate", after_bytes=AFTER_ONE_PART)), BULK_REPORT),
        (
            EmulatorConfig(pending_polls=1, faults=[Fault("export", "reset", after_bytes=50_000)]),
            QUEUE_REPORT,
        ),
    ],
    ids=["truncated-after-a-part", "reset-before-a-part"],
)
def test_a_broken_download_publishes_nothing(
    run_export: Run,
    flex_connection: str,
    emulator: Emulator,
    bucket: Bucket,
    report_id: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    run = export(run_export, bucket.uri("exports/report.csv"), report_id, download_attempts=1)
    output = capfd.readouterr().out

    assert run.task_state == "failed", output[-3000:]
    assert "broke before its end" in output
    assert bucket.keys() == []  # no object, no temporary object
    assert bucket.unfinished_uploads() == []  # the multipart upload was aborted
    assert_nothing_secret(run, output, emulator)


@pytest.mark.parametrize(
    "emulator_config", [with_bulk_report(Fault("export", "truncate", after_bytes=AFTER_ONE_PART))]
)
def test_a_download_broken_then_fetched_again_gives_the_whole_object(
    run_export: Run, flex_connection: str, emulator: Emulator, bucket: Bucket
) -> None:
    run = export(run_export, bucket.uri("exports/bulk.csv"), BULK_REPORT, download_attempts=2)

    size, sha256 = bulk_sha256()
    assert run.task_state == "success"
    assert bucket.keys() == ["exports/bulk.csv"]
    assert hashlib.sha256(bucket.read("exports/bulk.csv")).hexdigest() == sha256
    assert run.result is not None and (run.result["bytes"], run.result["sha256"]) == (size, sha256)
    assert bucket.unfinished_uploads() == []


@pytest.mark.parametrize(
    "emulator_config",
    [EmulatorConfig(pending_polls=1, faults=[Fault("export", "reset", after_bytes=50_000)])],
)
def test_an_existing_object_is_replaced_only_by_a_whole_export(
    run_export: Run, flex_connection: str, emulator: Emulator, bucket: Bucket
) -> None:
    bucket.client.put_object(Bucket=bucket.name, Key="queue.csv", Body=OLD_OBJECT)

    failed = export(run_export, bucket.uri("queue.csv"), download_attempts=1)  # the only fault
    assert failed.task_state == "failed"
    assert bucket.keys() == ["queue.csv"] and bucket.read("queue.csv") == OLD_OBJECT

    succeeded = export(run_export, bucket.uri("queue.csv"), download_attempts=1)
    assert succeeded.task_state == "success"
    assert bucket.keys() == ["queue.csv"] and bucket.read("queue.csv") == QUEUE_CSV
    assert bucket.unfinished_uploads() == []


def test_a_report_without_data_gives_an_empty_object(
    run_export: Run, flex_connection: str, emulator: Emulator, bucket: Bucket
) -> None:
    run = export(run_export, bucket.uri("empty.csv"), EMPTY_REPORT)

    assert run.task_state == "success"
    assert bucket.keys() == ["empty.csv"] and bucket.read("empty.csv") == b""
    assert bucket.unfinished_uploads() == []


def broken_stream(blocks: int) -> Iterator[bytes]:
    for n in range(blocks):
        yield bytes([n]) * (1 << 20)
    raise ConnectionResetError("stream broke")


class _Requests(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def served_requests() -> Iterator[list[str]]:
    """The request lines moto's server (werkzeug) logs while the test runs."""
    logger, handler = logging.getLogger("werkzeug"), _Requests()
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(previous_level)


def test_the_bytes_go_straight_to_the_destination_key(bucket: Bucket, served_requests: list[str]) -> None:
    """No temporary object to copy and delete: every write the server sees is to the final key."""
    blocks = [bytes([n]) * (1 << 20) for n in range(3)]

    written = write_atomically(bucket.uri("direct.csv"), iter(blocks))

    writes = [
        line for line in served_requests if any(f'"{verb} /' in line for verb in ("PUT", "POST", "DELETE"))
    ]
    assert writes and all(f" /{bucket.name}/direct.csv?" in line for line in writes), writes
    assert bucket.read("direct.csv") == b"".join(blocks)
    assert written.path == f"s3://{bucket.name}/direct.csv"


@pytest.mark.parametrize("blocks", [3, (PART >> 20) + 3], ids=["within-a-part", "after-a-part"])
def test_write_atomically_aborts_the_upload_on_any_error(bucket: Bucket, blocks: int) -> None:
    with pytest.raises(ConnectionResetError):
        write_atomically(bucket.uri("direct.csv"), broken_stream(blocks))
    gc.collect()  # whatever later closes or collects the file object must not upload again

    assert bucket.keys() == []
    assert bucket.unfinished_uploads() == []
    assert not ObjectStoragePath(bucket.uri("direct.csv")).fs.transaction.files  # nothing kept alive


def test_a_destination_carrying_credentials_is_refused_without_repeating_them() -> None:
    for destination in (f"s3://{ACCESS_KEY}:{SECRET_KEY}@bucket/queue.csv", f"s3://u:{SECRET_KEY}@bucket/"):
        with pytest.raises(FlexInsightsInputError, match="connection") as refused:
            validation.destination(destination)

        assert SECRET_KEY not in str(refused.value)
    assert validation.destination("s3://aws_exports@bucket/queue.csv") == "s3://aws_exports@bucket/queue.csv"


def test_a_missing_bucket_fails_the_task_once_before_any_request(
    run_export: Run,
    flex_connection: str,
    emulator: Emulator,
    bucket: Bucket,
    capfd: pytest.CaptureFixture[str],
) -> None:
    missing = f"{bucket.name}-missing"

    # A short retry delay: a wrongly retried error fails the test in seconds, not after 3 x 300 s.
    run = export(run_export, f"s3://{bucket.conn_id}@{missing}/flex/queue.csv", retries=3, retry_delay=0.1)

    output = capfd.readouterr().out
    assert run.task_state == "failed" and "up_for_retry" not in output  # tried once
    assert (
        f"Cannot write s3://{missing}/flex/queue.csv: the bucket {missing!r} does not exist (or the "
        f"connection {bucket.conn_id!r} cannot see it); create it, or fix the destination." in output
    )
    assert emulator.requests == []
    assert SECRET_KEY not in output


def test_the_bucket_probe_writes_nothing(bucket: Bucket) -> None:
    check_writable(bucket.uri("flex/queue.csv"))

    assert bucket.keys() == [] and bucket.unfinished_uploads() == []
