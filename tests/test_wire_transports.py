"""Both transports on a hostile wire, and one environment giving both sides one verdict.

Workers speak through ``requests``, the triggerer through ``aiohttp``; every test drives them through
the public interface (the hook's client, the trigger, the async client) against real loopback
servers: the emulator, ``tests/hostile.py`` in front of it (raw answers where a test bends one), a
TLS front with a throwaway CA, and a forwarding proxy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flexinsights.emulator import (
    DEMO_EMAIL,
    DEMO_WORKSPACE,
    QUEUE_REPORT,
    Emulator,
    EmulatorConfig,
)
from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsHook
from airflow_provider_flexinsights.library import protocol, transport
from airflow_provider_flexinsights.library.backoff import RetryPolicy
from airflow_provider_flexinsights.library.client import AsyncFlexInsightsClient
from airflow_provider_flexinsights.library.exceptions import (
    FlexInsightsApiError,
    FlexInsightsDownloadError,
    FlexInsightsInputError,
    FlexInsightsTransientError,
)
from airflow_provider_flexinsights.library.export import download
from airflow_provider_flexinsights.library.protocol import Auth, Request
from airflow_provider_flexinsights.library.session import Send
from airflow_provider_flexinsights.library.transport import AsyncTransport, DownloadBody, SyncTransport

from tests.conftest import CONN_ENV, closed_port, connection_json
from tests.hostile import HostileServer, RawRequest, response
from tests.test_trigger import make_trigger, run_as_triggerer

ONE_TRY = RetryPolicy(max_attempts=1)
MIB = 1 << 20


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(pending_polls=3)


@pytest.fixture
def wire(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    """The hostile server in front of the emulator, and the default connection pointing at it."""
    with HostileServer(upstream=emulator.url) as server:
        monkeypatch.setenv(CONN_ENV, connection_json(server.url))
        yield server


def start_export() -> tuple[str, str]:
    """An export started by a worker: its URI, and the path hostile rules match it by."""
    with FlexInsightsHook().session() as client:
        uri = client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-02")
    return uri, uri.split("?", 1)[0]


def run_trigger(export_uri: str) -> dict[str, Any]:
    """The trigger rebuilt from its serialized form and run as the triggerer runs it: its one event."""
    events = run_as_triggerer(make_trigger(export_uri, end_time=time.time() + 60))
    assert len(events) == 1
    return events[0]


def pending(export_path: str, *, before: bytes = b"") -> Callable[[RawRequest], bytes]:
    """A rule's answer: ``before`` (raw bytes), then the 202 the service gives a computing export."""

    def answer(request: RawRequest) -> bytes:
        body = json.dumps({"uri": request.target}).encode()
        return before + response(202, body, reason="Accepted", headers={"Content-Type": "application/json"})

    return answer


def wait_for_delivery(wire: HostileServer, path: str) -> bool:
    """Whether the hostile server wrote its whole answer to ``path`` (waits until it knows)."""
    for _ in range(600):
        outcome = next((whole for where, whole in wire.delivered if where == path), None)
        if outcome is not None:
            return outcome
        time.sleep(0.05)
    raise AssertionError(f"the answer to {path} was never finished")


# --- The triggerer on a hostile wire ----------------------------------------------------------


INTERIM = {
    "100-continue": b"HTTP/1.1 100 Continue\r\n\r\n",
    "103-early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
}


@pytest.mark.parametrize("interim", INTERIM.values(), ids=INTERIM.keys())
def test_an_interim_answer_is_passed_over_and_the_next_poll_gets_its_own_answer(
    wire: HostileServer, interim: bytes
) -> None:
    export_uri, export_path = start_export()
    wire.answer(export_path, pending(export_path, before=interim), times=1)

    event = run_trigger(export_uri)

    # 1 bent 202, then the emulator's 202, 202, 202, 200: each poll read its own answer
    assert (event["status"], event["polls"]) == ("ready", 5)
    polls = [r for r in wire.requests if r.path == export_path]
    assert len(polls) == 5
    assert polls[1].connection == polls[0].connection  # the same connection, still in step


REPEATED_HEADERS = b"X-Repeated: a\r\n" * (32 * MIB // 15)  # 32 MiB of one header, over and over


def test_32_mib_of_repeated_headers_are_refused_after_a_few_lines_in_the_triggerer(
    wire: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    export_uri, export_path = start_export()
    wire.answer(export_path, b"HTTP/1.1 202 Accepted\r\n" + REPEATED_HEADERS + b"\r\n", times=1)

    cpu = time.thread_time()  # the event loop's thread: not the servers'
    with caplog.at_level(logging.WARNING, logger="airflow_provider_flexinsights"):
        event = run_trigger(export_uri)
    cpu = time.thread_time() - cpu

    assert event["status"] == "ready"  # the poll was retried, and the retry answered
    assert "sent an answer that is not valid HTTP/1.1 (Too many headers received)" in caplog.text
    assert cpu < 1.0


def test_32_mib_of_repeated_headers_are_refused_after_a_few_lines_in_workers(wire: HostileServer) -> None:
    _, export_path = start_export()
    wire.answer(export_path, b"HTTP/1.1 202 Accepted\r\n" + REPEATED_HEADERS + b"\r\n", times=1)

    cpu = time.thread_time()
    with (
        pytest.raises(FlexInsightsTransientError, match=r"not valid HTTP/1\.1 \(got more than 100 headers\)"),
        FlexInsightsHook(retry_policy=ONE_TRY).session() as client,
    ):
        client.check_export(export_path)
    assert time.thread_time() - cpu < 1.0


def big_answer(status: int, framing: str, size: int = 64 * MIB) -> bytes:
    body = b"x" * size
    if framing == "content-length":
        return response(status, body)
    return (
        f"HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n{size:x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_64_mib_error_body_is_refused_without_reading_it_in_the_triggerer(
    wire: HostileServer, framing: str
) -> None:
    export_uri, export_path = start_export()
    wire.answer(export_path, big_answer(500, framing), times=1)

    event = run_trigger(export_uri)

    assert event["status"] == "error"
    assert event["message"].startswith(
        f"Flex Insights could not fetch export {export_uri}: its answer (HTTP 500) is larger than 1 MiB"
    )
    assert "xxxx" not in event["message"]
    assert wait_for_delivery(wire, export_path) is False  # the client hung up before the end


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_64_mib_error_body_is_refused_without_reading_it_in_workers(
    wire: HostileServer, framing: str
) -> None:
    _, export_path = start_export()
    wire.answer(export_path, big_answer(500, framing), times=1)

    with (
        pytest.raises(FlexInsightsApiError, match=r"\(HTTP 500\) is larger than 1 MiB") as raised,
        FlexInsightsHook(retry_policy=ONE_TRY).session() as client,
    ):
        client.check_export(export_path)

    assert "xxxx" not in str(raised.value)
    assert wait_for_delivery(wire, export_path) is False


def test_the_triggerer_never_reads_a_ready_exports_csv(wire: HostileServer) -> None:
    export_uri, export_path = start_export()
    wire.answer(export_path, response(200, b"x" * 64 * MIB, headers={"Content-Type": "text/csv"}), times=1)

    event = run_trigger(export_uri)

    assert (event["status"], event["polls"]) == ("ready", 1)
    assert wait_for_delivery(wire, export_path) is False


def test_an_interim_answer_is_never_taken_as_the_status_in_workers(wire: HostileServer) -> None:
    """http.client passes over a 100 only: a 103 would be the answer, the real one left unread."""
    _, export_path = start_export()
    wire.answer(export_path, pending(export_path, before=INTERIM["103-early-hints"]), times=1)

    with (
        pytest.raises(
            FlexInsightsTransientError, match=r"sent an interim answer \(HTTP 103\) where its answer"
        ),
        FlexInsightsHook(retry_policy=ONE_TRY).session() as client,
    ):
        client.check_export(export_path)


LOGIN_WITH_A_BAD_TOKEN = {
    "cr-lf": "sst\r\nX-Injected: 1",
    "beyond-latin-1": "sst\u2713",
}


@pytest.mark.parametrize("token", LOGIN_WITH_A_BAD_TOKEN.values(), ids=LOGIN_WITH_A_BAD_TOKEN.keys())
def test_a_token_that_cannot_be_a_header_is_refused_on_both_sides(wire: HostileServer, token: str) -> None:
    login = {"userLogin": {"profile": "/gdc/account/profile/abc", "state": "/x", "token": token}}
    wire.answer(protocol.LOGIN_PATH, response(200, json.dumps(login).encode()))
    expected = (
        "Flex Insights could not get a temporary token (TT): the X-GDC-AuthSST header it needs holds "
        "control or non-ASCII characters, as the server supplied them; this provider does not send it."
    )

    worker = FlexInsightsHook(retry_policy=ONE_TRY).test_connection()
    client = AsyncFlexInsightsClient(FlexInsightsHook().settings, ONE_TRY)

    async def poll() -> None:
        try:
            await client.check_export("/gdc/projects/x/execute/raw/1")
        finally:
            await client.close()

    with pytest.raises(FlexInsightsApiError) as raised:
        asyncio.run(poll())
    assert worker == (False, expected)
    assert str(raised.value) == expected
    assert wire.paths() == [protocol.LOGIN_PATH, protocol.LOGIN_PATH]  # nothing sent with it


BAD_PATHS = {
    "cr-lf": "/gdc/x\r\nX-Injected: 1",
    "beyond-latin-1": "/gdc/\u2713",
    "other-host": "@evil.test/x",
}


@pytest.mark.parametrize("path", BAD_PATHS.values(), ids=BAD_PATHS.keys())
def test_both_transports_build_every_url_with_request_url(wire: HostileServer, path: str) -> None:
    with pytest.raises(FlexInsightsApiError, match="Refusing to send a request to"):
        Request("GET", path, "fetch it", auth=Auth.NONE)  # a request checks its path when made...
    request = Request("GET", "/gdc/x", "fetch it", auth=Auth.NONE)
    object.__setattr__(request, "path", path)  # ...and the transports check it again when sending

    def flow():  # type: ignore[no-untyped-def]
        return (yield Send(request))

    sync = SyncTransport(wire.url, on_secret=lambda _: None)
    with pytest.raises(FlexInsightsApiError, match="Refusing to send a request to"):
        sync.run(flow())
    sync.close()

    with pytest.raises(FlexInsightsApiError, match="Refusing to send a request to"):
        run_on_async_transport(wire.url, flow())
    assert wire.requests == []


async def _ignore(secret: str) -> None:
    pass


def run_on_async_transport(base_url: str, flow: Any) -> Any:
    """Run ``flow`` on a fresh AsyncTransport in its own event loop, closing the transport after."""

    async def run() -> Any:
        async_transport = AsyncTransport(base_url, on_secret=_ignore)
        try:
            return await async_transport.run(flow)
        finally:
            await async_transport.close()

    return asyncio.run(run())


def test_the_triggerer_names_a_host_that_refuses_connections(
    monkeypatch: pytest.MonkeyPatch, unused_port: int
) -> None:
    monkeypatch.setenv(CONN_ENV, connection_json(f"http://127.0.0.1:{unused_port}"))

    async def poll() -> None:
        client = AsyncFlexInsightsClient(FlexInsightsHook().settings, ONE_TRY)
        try:
            await client.check_export("/gdc/projects/x/execute/raw/1")
        finally:
            await client.close()

    expected = rf"could not log in: 127\.0\.0\.1:{unused_port} refused the connection \(1 tries\)"
    with pytest.raises(FlexInsightsTransientError, match=expected):
        asyncio.run(poll())


def test_the_async_transport_refuses_to_stream_a_body() -> None:
    """Downloads run in workers; a trigger asking for the CSV body is a programming error."""

    def flow():  # type: ignore[no-untyped-def]
        return (yield Send(protocol.check_export("/gdc/x", "stream")))

    with pytest.raises(ValueError, match="never streams"):
        run_on_async_transport("http://127.0.0.1:9", flow())


@pytest.fixture
def unused_port() -> int:
    return closed_port()


# --- The worker's download: a CSV whose end cannot be verified is never complete ---------------


def collect(chunks: Iterator[bytes]) -> bytes:
    return b"".join(chunks)


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(pending_polls=0)])
def test_a_csv_with_neither_length_nor_chunking_is_refused_before_the_sink_sees_a_byte(
    wire: HostileServer,
) -> None:
    export_uri, export_path = start_export()
    wire.answer(export_path, b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n\r\na,b\r\n1,2\r\n", close=True)
    sunk: list[bytes] = []

    with FlexInsightsHook().session() as client, pytest.raises(FlexInsightsApiError) as raised:
        download(client, client.check_export(export_uri), sunk.extend)

    assert sunk == []
    assert str(raised.value) == (
        f"Flex Insights sent {wire.url}{export_uri} with neither Content-Length nor chunked framing, so "
        "its end cannot be verified and it was not stored; check for a proxy between this machine and "
        f"{wire.url.removeprefix('http://')} that rewrites answers."
    )
    assert not raised.value.retryable


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(pending_polls=0)])
def test_a_csv_cut_short_of_its_content_length_is_a_broken_download(wire: HostileServer) -> None:
    export_uri, export_path = start_export()
    cut = b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\n" + b"a,b\r\n" * 100
    wire.answer(export_path, cut, close=True)

    with (
        FlexInsightsHook().session() as client,
        pytest.raises(FlexInsightsDownloadError, match=r"broke before its end \(.*IncompleteRead"),
        client.open_csv(client.check_export(export_uri)) as chunks,
    ):
        collect(chunks)


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(pending_polls=0, chunk_bytes=8 << 10)])
def test_a_plain_chunked_download_is_decoded_in_c_under_the_installed_libraries(
    flex_connection: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Pins the fast path, which finds the socket file through private attributes of urllib3 and
    http.client: a release that moves them fails here instead of slowing downloads 5x unnoticed."""
    with FlexInsightsHook().session() as client:
        uri = client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-02")
        with caplog.at_level(logging.WARNING), client.open_csv(client.check_export(uri)) as body:
            assert isinstance(body, DownloadBody)
            assert body.decoded_in_c
            assert collect(body).startswith(b'"')
    assert "decoded by urllib3" not in caplog.text


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(pending_polls=0)])
def test_falling_back_to_urllib3_for_a_chunked_body_says_so_once(
    flex_connection: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The library layout the fast path relies on, changed by hand: the body still arrives whole."""

    class MovedSocketFile:  # what a urllib3 or http.client release might hold instead
        def __init__(self, file: Any) -> None:
            self._file = file

        def __getattr__(self, name: str) -> Any:
            return getattr(self._file, name)

    transport._warn_slow_chunked.cache_clear()
    bodies = []
    with FlexInsightsHook().session() as client, caplog.at_level(logging.WARNING):
        uri = client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-02")
        for _ in range(2):
            status = client.check_export(uri)
            assert status.reply is not None
            raw = status.reply.stream.response.raw
            raw._fp.fp = MovedSocketFile(raw._fp.fp)
            with client.open_csv(status) as body:
                assert isinstance(body, DownloadBody) and not body.decoded_in_c
                bodies.append(collect(body))

    assert bodies[0] == bodies[1] and bodies[0].endswith(b"\r\n")
    assert caplog.text.count("Chunked downloads are decoded by urllib3 in Python") == 1


# --- One TLS trust for both sides -------------------------------------------------------------


def _pem_files(tmp_path: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """A throwaway CA, and a server certificate it signed for ``names`` (IP addresses or DNS names):
    the CA's PEM, the server's chain and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def certificate(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        else:
            alternatives: list[x509.GeneralName] = []
            for name in names:
                try:
                    alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
                except ValueError:
                    alternatives.append(x509.DNSName(name))
            builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Throwaway test CA", ca_key, "Throwaway test CA", ca_key, ca=True)
    server = certificate(names[0], server_key, "Throwaway test CA", ca_key, ca=False)
    ca_file, chain_file, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_file, chain_file, key_file


TLS_CASES = {
    # variable naming the CA (None: no variable, certifi's bundle), names the server is certified for
    "requests-ca-bundle": ("REQUESTS_CA_BUNDLE", ["127.0.0.1", "localhost"]),
    "ssl-cert-file": ("SSL_CERT_FILE", ["127.0.0.1", "localhost"]),
    "no-variable": (None, ["127.0.0.1", "localhost"]),
    "another-host": ("REQUESTS_CA_BUNDLE", ["flex.example"]),
}


@pytest.mark.parametrize(("variable", "names"), TLS_CASES.values(), ids=TLS_CASES.keys())
def test_one_environment_gives_workers_and_the_triggerer_one_tls_verdict(
    flex_connection: str,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    variable: str | None,
    names: list[str],
) -> None:
    export_uri, _ = start_export()  # over plain http, straight to the emulator
    ca_file, chain_file, key_file = _pem_files(tmp_path, names)
    for name in transport.TRUST_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if variable:
        monkeypatch.setenv(variable, str(ca_file))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(chain_file, key_file)
    with HostileServer(upstream=emulator.url, tls=tls) as front:
        monkeypatch.setenv(CONN_ENV, connection_json(front.url))
        worker = FlexInsightsHook(retry_policy=ONE_TRY).test_connection()
        triggerer = _async_verdict(export_uri)

    address = front.url.removeprefix("https://")
    if variable and "127.0.0.1" in names:
        assert worker == (
            True,
            f"Logged in to Flex Insights at {front.url} as {DEMO_EMAIL}, and out again.",
        )
        assert triggerer == "pending"
    else:
        refusal = f"the TLS handshake with {address} failed (CERTIFICATE_VERIFY_FAILED) (1 tries)"
        assert not worker[0] and f"Flex Insights could not log in: {refusal}" in worker[1]
        assert f"Flex Insights could not log in: {refusal}" in triggerer
        assert all(r.path != protocol.LOGIN_PATH for r in front.requests)  # no password sent


def _async_verdict(export_uri: str) -> str:
    """The triggerer's side: one poll of the export with the async client; its state or its error."""

    async def poll() -> str:
        client = AsyncFlexInsightsClient(FlexInsightsHook().settings, ONE_TRY)
        try:
            status = await client.check_export(export_uri)
        except FlexInsightsTransientError as err:
            return str(err)
        finally:
            await client.close()
        return status.state.value

    return asyncio.run(poll())


def test_a_ca_variable_naming_nothing_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")

    with pytest.raises(
        FlexInsightsInputError, match=r"REQUESTS_CA_BUNDLE names /nonexistent/ca\.pem, which does not exist"
    ):
        transport.tls_trust()


# --- Proxies from the environment, on both sides ----------------------------------------------


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(pending_polls=1)])
@pytest.mark.parametrize("variable", ["HTTP_PROXY", "ALL_PROXY"])
def test_both_sides_go_through_the_proxy_the_environment_names(
    flex_connection: str,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy_variables: None,
    variable: str,
) -> None:
    """The hostile server forwards whatever it receives to the emulator: a forwarding proxy."""
    with HostileServer(upstream=emulator.url) as proxy:
        monkeypatch.setenv(variable, proxy.url)
        export_uri, _ = start_export()
        worker_requests = len(proxy.requests)
        event = run_trigger(export_uri)

    assert event["status"] == "ready"
    assert worker_requests >= 4  # log in, token, start, log out
    targets = [r.target for r in proxy.requests]
    assert all(target.startswith(f"{emulator.url}/gdc/") for target in targets)  # absolute form: proxied
    assert f"{emulator.url}{export_uri}" in targets[worker_requests:]  # the trigger's polls too
    assert len(emulator.requests) == len(proxy.requests)


UNSUPPORTED_PROXIES = {
    "all-proxy-socks5": ("ALL_PROXY", "socks5://user:secret@127.0.0.1:1080", None),
    "https-proxy-socks5h": ("HTTPS_PROXY", "socks5h://user:secret@proxy.example:1080", "https://127.0.0.1:1"),
    "https-proxy-https": ("HTTPS_PROXY", "https://user:secret@proxy.example:3128", "https://127.0.0.1:1"),
}


@pytest.mark.parametrize(
    ("variable", "proxy", "base_url"), UNSUPPORTED_PROXIES.values(), ids=list(UNSUPPORTED_PROXIES)
)
def test_an_unsupported_proxy_is_one_sentence_on_both_sides_before_any_request(
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy_variables: None,
    variable: str,
    proxy: str,
    base_url: str | None,
) -> None:
    base_url = base_url or emulator.url
    monkeypatch.setenv(CONN_ENV, connection_json(base_url))
    monkeypatch.setenv(variable, proxy)
    scheme, _, rest = proxy.partition("://")
    host = base_url.split("://")[1].split(":")[0]
    expected = (
        f"The environment ({variable}) routes {base_url} through {scheme}://{rest.split('@')[1]}, which "
        f"this provider does not support; use an http:// proxy, or add {host} to NO_PROXY."
    )

    worker = FlexInsightsHook().test_connection()
    event = run_trigger(f"/gdc/projects/{DEMO_WORKSPACE}/execute/raw/1")

    assert worker == (False, expected)
    assert (event["status"], event["message"]) == ("error", expected)
    assert emulator.requests == []


def test_whatever_escapes_a_transport_the_flow_cleans_up_at_once(wire: HostileServer) -> None:
    """A session's renewal flag is reset in a ``finally``: were it left set by an error escaping
    mid-renewal, every later flow of the session (every trigger of the connection) would wait forever."""
    cleaned: list[str] = []
    unsendable = Request("POST", "/gdc/x", "post it", auth=Auth.NONE, json={"not JSON": object()})

    def flow(side: str):  # type: ignore[no-untyped-def]
        try:
            yield Send(unsendable)
        finally:
            cleaned.append(side)

    sync = SyncTransport(wire.url, on_secret=lambda _: None)
    with pytest.raises(TypeError):
        sync.run(flow("worker"))
    sync.close()

    with pytest.raises(TypeError):
        run_on_async_transport(wire.url, flow("triggerer"))
    assert cleaned == ["worker", "triggerer"]
    assert wire.requests == []
