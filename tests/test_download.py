"""The download body path: chunked bodies decoded from large socket reads, exact at any chunk size;
a cut or malformed body is a broken download, never a short file; other bodies go through requests."""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from airflow_provider_flexinsights.emulator import (
    BULK_REPORT,
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DEMO_WORKSPACE,
    QUEUE_REPORT,
    Emulator,
    EmulatorConfig,
    Fault,
    Report,
    render_report,
)
from airflow_provider_flexinsights.emulator.data import iter_bulk_report
from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsHook
from airflow_provider_flexinsights.library.exceptions import FlexInsightsDownloadError
from airflow_provider_flexinsights.library.export import download
from airflow_provider_flexinsights.library.protocol import Auth, Request
from airflow_provider_flexinsights.library.session import Send, TransportError
from airflow_provider_flexinsights.library.storage import _WRITE_BYTES, WrittenFile, _stream, write_atomically
from airflow_provider_flexinsights.library.transport import DOWNLOAD_CHUNK_SIZE, SyncTransport

DATES = ("2024-03-01", "2024-03-03")  # about 120 kB


def write_to(path: Path) -> Callable[[Iterator[bytes]], WrittenFile]:
    """The file writer as a download sink (the export operator's)."""
    return functools.partial(write_atomically, str(path))


def emulator_with(chunk_bytes: int, *faults: Fault, bulk_mb: int = 0) -> EmulatorConfig:
    config = EmulatorConfig(pending_polls=0, chunk_bytes=chunk_bytes, faults=list(faults))
    if bulk_mb:
        bulk = Report("Bulk", kind="bulk", size_bytes=bulk_mb << 20)
        config.workspaces[DEMO_WORKSPACE].reports[BULK_REPORT] = bulk
    return config


def temporary_token(url: str) -> str:
    login = {
        "postUserLogin": {"login": DEMO_EMAIL, "password": DEMO_PASSWORD, "remember": 0, "verify_level": 2}
    }
    sst = requests.post(f"{url}/gdc/account/login", json=login, timeout=10).json()["userLogin"]["token"]
    token: str = requests.get(f"{url}/gdc/account/token", headers={"X-GDC-AuthSST": sst}, timeout=10).json()[
        "userToken"
    ]["token"]
    return token


def raw_chunk_sizes(url: str, path: str, token: str) -> tuple[list[int], bytes]:
    """GET over a bare socket; the chunk sizes as framed on the wire, and the body they carry."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        headers = f"Host: {host}\r\nX-GDC-AuthTT: {token}\r\nConnection: close\r\n"
        conn.sendall(f"GET {path} HTTP/1.1\r\n{headers}\r\n".encode())
        received = b"".join(iter(lambda: conn.recv(1 << 16), b""))
    head, _, rest = received.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    sizes, body = [], bytearray()
    while True:
        line, _, rest = rest.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            return sizes, bytes(body)
        sizes.append(size)
        body += rest[:size]
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]


@pytest.mark.parametrize("emulator_config", [emulator_with(n) for n in (7, 8 << 10, 64 << 10)])
def test_the_emulator_sends_the_body_in_chunks_of_chunk_bytes(
    emulator: Emulator, flex_connection: str
) -> None:
    with FlexInsightsHook().session() as client:
        uri = client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, *DATES)
        client.check_export(uri, success_body="discard")
    sizes, body = raw_chunk_sizes(emulator.url, uri, temporary_token(emulator.url))

    chunk_bytes = emulator.config.chunk_bytes
    assert body == render_report(DEMO_WORKSPACE, QUEUE_REPORT, *DATES)
    assert sizes[:-1] == [chunk_bytes] * (len(sizes) - 1)
    assert 0 < sizes[-1] <= chunk_bytes


@pytest.mark.parametrize(
    ("emulator_config", "report_id"),
    [
        (emulator_with(1), QUEUE_REPORT),
        (emulator_with(1000), QUEUE_REPORT),
        (emulator_with(8 << 10, bulk_mb=3), BULK_REPORT),
        (emulator_with(64 << 10, bulk_mb=3), BULK_REPORT),
        (emulator_with(1 << 20, bulk_mb=3), BULK_REPORT),
    ],
    ids=["1B", "1000B", "8KiB", "64KiB", "1MiB"],
)
def test_a_download_is_exact_at_any_chunk_size(tmp_path: Path, flex_connection: str, report_id: str) -> None:
    with FlexInsightsHook().session() as client:
        uri = client.start_export(DEMO_WORKSPACE, report_id, *DATES)
        written, _ = download(client, client.check_export(uri), write_to(tmp_path / "export.csv"))

    expected = bulk_bytes(3) if report_id == BULK_REPORT else render_report(DEMO_WORKSPACE, report_id, *DATES)
    assert (tmp_path / "export.csv").read_bytes() == expected
    assert (written.bytes, written.sha256) == (len(expected), hashlib.sha256(expected).hexdigest())


@pytest.mark.parametrize(
    "emulator_config",
    [
        emulator_with(8 << 10, Fault("export", kind, after_bytes=300_000), bulk_mb=1)
        for kind in ("truncate", "reset")
    ],
    ids=["truncate", "reset"],
)
def test_a_body_cut_before_its_last_chunk_writes_nothing(
    tmp_path: Path, emulator: Emulator, flex_connection: str
) -> None:
    with FlexInsightsHook().session() as client:
        uri = client.start_export(DEMO_WORKSPACE, BULK_REPORT, *DATES)
        with pytest.raises(FlexInsightsDownloadError, match="broke before its end") as broken:
            download(client, client.check_export(uri), write_to(tmp_path / "export.csv"), attempts=1)

    if emulator.config.faults[0].kind == "truncate":
        assert "closed before the last chunk" in str(broken.value)
    assert list(tmp_path.iterdir()) == []


class RecordingFile:
    """A file that keeps what each write gave it (a copy: the writer reuses its buffers)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes | memoryview) -> int:
        self.writes.append(bytes(data))
        return len(data)


def bulk_bytes(mb: int) -> bytes:
    return b"".join(iter_bulk_report(DEMO_WORKSPACE, BULK_REPORT, dt.date(2024, 3, 1), mb << 20))


@pytest.mark.parametrize("emulator_config", [emulator_with(8 << 10, bulk_mb=3)], ids=["8KiB"])
def test_8_kib_chunks_reach_the_file_in_64_kib_writes(flex_connection: str) -> None:
    """The body is piped into the writer's buffers, written 64 KiB at a time (the last write
    excepted): not a write per chunk, per socket read nor per buffer; the hash covers those bytes."""
    out = RecordingFile()
    with FlexInsightsHook().session() as client:
        uri = client.start_export(DEMO_WORKSPACE, BULK_REPORT, *DATES)
        with client.open_csv(client.check_export(uri)) as body:
            digest = _stream(body, out)

    expected = bulk_bytes(3)
    assert b"".join(out.writes) == expected
    assert (digest.bytes, digest.sha256) == (len(expected), hashlib.sha256(expected).hexdigest())
    assert {len(write) for write in out.writes[:-1]} == {_WRITE_BYTES}
    assert len(out.writes) == -(-len(expected) // _WRITE_BYTES)


def test_small_pieces_from_any_source_are_coalesced_before_writing() -> None:
    pieces = [bytes([n % 251]) * 1000 for n in range(2000)]  # 2 MB in 1 kB pieces
    out = RecordingFile()

    digest = _stream(iter(pieces), out)

    expected = b"".join(pieces)
    assert b"".join(out.writes) == expected
    assert digest.sha256 == hashlib.sha256(expected).hexdigest()
    assert len(out.writes) == -(-len(expected) // _WRITE_BYTES)


@pytest.mark.parametrize("emulator_config", [emulator_with(8 << 10, bulk_mb=3)], ids=["8KiB"])
def test_iterating_a_body_of_8_kib_chunks_gives_large_pieces(flex_connection: str) -> None:
    """Other consumers (COPY into a database, Parquet) iterate: a piece per chunk would cost them."""
    with FlexInsightsHook().session() as client:
        uri = client.start_export(DEMO_WORKSPACE, BULK_REPORT, *DATES)
        with client.open_csv(client.check_export(uri)) as body:
            pieces = list(body)

    assert b"".join(pieces) == bulk_bytes(3)
    assert min(len(piece) for piece in pieces[:-1]) >= DOWNLOAD_CHUNK_SIZE


# --- bodies the fast path leaves to requests, and framing it refuses -------------------------------

PLAIN = b"id,value\n" + b"1,one\n" * 50_000
BODIES: dict[str, tuple[dict[str, str], bytes]] = {
    "/content-length": ({"Content-Length": str(len(PLAIN))}, PLAIN),
    "/gzip-chunked": (
        {"Transfer-Encoding": "chunked", "Content-Encoding": "gzip"},
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(gzip.compress(PLAIN)), gzip.compress(PLAIN)),
    ),
    "/chunk-extensions-and-trailer": (
        {"Transfer-Encoding": "chunked"},
        b"".join(
            b"%x;part=%d\r\n%s\r\n" % (len(PLAIN[i : i + 999]), i, PLAIN[i : i + 999])
            for i in range(0, len(PLAIN), 999)
        )
        + b"0\r\nX-Checksum: none\r\n\r\n",
    ),
    "/small-chunked": (
        {"Transfer-Encoding": "chunked"},
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(PLAIN[:500]), PLAIN[:500]),
    ),
    "/bad-chunk-size": ({"Transfer-Encoding": "chunked"}, b"4\r\nid,v\r\nzz\r\nvalue\r\n0\r\n\r\n"),
}


class _Bodies(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        headers, raw = BODIES[self.path]
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.wfile.write(f"HTTP/1.1 200 OK\r\n{head}\r\n".encode() + raw)  # one write: one packet

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def bodies_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Bodies)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def fetch(base_url: str, path: str) -> bytes:
    transport = SyncTransport(base_url, on_secret=lambda _: None)

    def flow():  # type: ignore[no-untyped-def]
        return (yield Send(Request("GET", path, "fetch", auth=Auth.NONE, success_body="stream")))

    try:
        reply = transport.run(flow())
        with transport.open_body(reply) as pieces:
            return b"".join(pieces)
    finally:
        transport.close()


@pytest.mark.parametrize("path", ["/content-length", "/gzip-chunked", "/chunk-extensions-and-trailer"])
def test_every_body_framing_and_encoding_arrives_decoded(bodies_url: str, path: str) -> None:
    assert fetch(bodies_url, path) == PLAIN


def test_a_small_body_read_with_the_headers_does_not_wait_for_more(bodies_url: str) -> None:
    """The whole body arrives in the same packet as the headers, so it is already buffered."""
    fetched: list[bytes] = []
    worker = threading.Thread(target=lambda: fetched.append(fetch(bodies_url, "/small-chunked")), daemon=True)
    worker.start()
    worker.join(timeout=20)

    assert fetched == [PLAIN[:500]]


def test_malformed_chunk_framing_is_a_broken_download(bodies_url: str) -> None:
    with pytest.raises(TransportError, match="HttpParserError"):
        fetch(bodies_url, "/bad-chunk-size")
