"""The triggerer's lean HTTP/1.1 client against real loopback servers: keep-alive reuse, framing,
a stale kept-alive connection, bodies not wanted, timeouts, bad answers; and the httpx fallback
taken when the environment names a proxy."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from airflow_provider_flexinsights import protocol
from airflow_provider_flexinsights.async_http import ConnectionPool, HttpError
from airflow_provider_flexinsights.emulator import DEMO_EMAIL, DEMO_PASSWORD, Emulator
from airflow_provider_flexinsights.session import Send
from airflow_provider_flexinsights.transport import AsyncTransport

pytestmark = pytest.mark.anyio

Answerer = Callable[[int, bytes], Awaitable[bytes | None]]
"""(request number on its connection, request head) -> raw answer, or None to hang up unanswered."""

Start = Callable[[Answerer], Awaitable[tuple["LoopbackServer", ConnectionPool]]]
"""Starts a server answering with the given function, and a pool of connections to it."""

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class LoopbackServer:
    """An asyncio server answering each request with what ``answer`` returns; counts connections."""

    def __init__(self, answer: Answerer) -> None:
        self.answer = answer
        self.connections = 0
        self.heads: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for number in range(1, 1000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                self.heads.append(head + await reader.readexactly(length))
                raw = await self.answer(number, head)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers: list[asyncio.Server] = []
    pools: list[ConnectionPool] = []

    async def started(answer: Answerer) -> tuple[LoopbackServer, ConnectionPool]:
        server = LoopbackServer(answer)
        listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
        servers.append(listening)
        port = listening.sockets[0].getsockname()[1]
        pool = ConnectionPool(
            f"http://127.0.0.1:{port}/prefix", user_agent="test", connect_timeout=5, read_timeout=1
        )
        pools.append(pool)
        return server, pool

    yield started
    for pool in pools:
        await pool.close()
    for listening in servers:
        listening.close()


async def always_ok(number: int, head: bytes) -> bytes:
    return OK


async def test_requests_reuse_one_kept_alive_connection(start: Start) -> None:
    server, pool = await start(always_ok)

    answers = [await pool.request("GET", "/x", {"X-Token": "t"}) for _ in range(5)]

    assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 5
    assert server.connections == 1
    assert server.heads[0].startswith(b"GET /prefix/x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nX-Token: t\r\n" in server.heads[0]


async def test_json_bodies_chunked_answers_and_repeated_headers(start: Start) -> None:
    async def chunked(number: int, head: bytes) -> bytes:
        head = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nVia: a\r\nVia: b\r\n\r\n"
        return head + b'3\r\n{"a\r\n4\r\n":1}\r\n0\r\n\r\n'

    server, pool = await start(chunked)

    answer = await pool.request("POST", "/login", {}, {"user": "é"})

    assert (answer.status, answer.body, answer.headers["Via"]) == (201, b'{"a":1}', "a, b")
    assert server.heads[0].endswith(b'Content-Length: 13\r\n\r\n{"user":"\xc3\xa9"}')


async def test_a_kept_alive_connection_closed_by_the_server_is_replaced_for_a_get_only(start: Start) -> None:
    async def once_per_connection(number: int, head: bytes) -> bytes | None:
        return OK if number == 1 else None  # the second request on a connection: hang up unanswered

    server, pool = await start(once_per_connection)
    await pool.request("GET", "/first", {})

    assert (await pool.request("GET", "/again", {})).body == b"ok"  # repeated on a new connection
    assert server.connections == 2
    with pytest.raises(HttpError, match="closed the connection before answering"):
        await pool.request("POST", "/not-repeated", {}, {})
    assert [h.split(b" ")[1] for h in server.heads].count(b"/prefix/not-repeated") == 1


async def test_a_body_not_wanted_is_not_read_and_its_connection_not_reused(start: Start) -> None:
    async def big(number: int, head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 1000  # the rest never comes

    server, pool = await start(big)

    first = await pool.request("GET", "/csv", {}, skip_success_body=True)
    await pool.request("GET", "/csv", {}, skip_success_body=True)

    assert (first.status, first.body) == (200, b"")
    assert server.connections == 2


async def test_no_answer_in_time_is_an_error(start: Start) -> None:
    async def silent(number: int, head: bytes) -> bytes:
        await asyncio.sleep(30)
        return OK

    _, pool = await start(silent)

    with pytest.raises(HttpError, match="no answer within 1 s"):
        await pool.request("GET", "/slow", {})


@pytest.mark.parametrize(
    "raw",
    [b"NOT HTTP\r\n\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
    ids=["not-http", "bad-chunk-size"],
)
async def test_an_answer_that_is_not_http_is_an_error(start: Start, raw: bytes) -> None:
    async def garbage(number: int, head: bytes) -> bytes:
        return raw

    _, pool = await start(garbage)

    with pytest.raises(HttpError, match=r"not valid HTTP/1\.1"):
        await pool.request("GET", "/x", {})


async def test_nothing_listening_is_an_error() -> None:
    pool = ConnectionPool("http://127.0.0.1:9", user_agent="test", connect_timeout=5, read_timeout=5)

    with pytest.raises(HttpError, match=r"could not connect to 127\.0\.0\.1:9"):
        await pool.request("GET", "/x", {})


async def test_with_a_proxy_in_the_environment_requests_go_through_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The emulator stands in for the proxy: it routes an absolute-form request by its path."""
    with Emulator() as emulator:
        monkeypatch.setenv("HTTP_PROXY", emulator.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        transport = AsyncTransport("http://flex-insights.invalid", on_secret=_ignore)

        def flow():  # type: ignore[no-untyped-def]
            return (yield Send(protocol.login(DEMO_EMAIL, DEMO_PASSWORD)))

        try:
            reply = await transport.run(flow())
        finally:
            await transport.close()

    assert reply.status == 200
    assert [r.path for r in emulator.requests] == ["http://flex-insights.invalid/gdc/account/login"]
    assert emulator.requests[0].user_agent.endswith("(httpx)")


async def _ignore(secret: str) -> None:
    pass


async def test_the_async_transport_refuses_to_stream_a_body() -> None:
    """Downloads run in workers; a trigger asking for the CSV body is a programming error."""
    transport = AsyncTransport("http://127.0.0.1:9", on_secret=_ignore)

    def flow():  # type: ignore[no-untyped-def]
        return (yield Send(protocol.check_export("/gdc/x", "stream")))

    try:
        with pytest.raises(ValueError, match="never streams"):
            await transport.run(flow())
    finally:
        await transport.close()


# --- TLS: the real service is https, so the client's TLS must verify as browsers do -----------------


def _self_signed(tmp_path: Path, host: str) -> tuple[Path, Path]:
    """A certificate for ``host`` (an IP address or a name) and its key, as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{host}.pem", tmp_path / f"{host}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


async def _tls_server(cert_file: Path, key_file: Path) -> tuple[LoopbackServer, asyncio.Server, int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server = LoopbackServer(always_ok)
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=context)
    return server, listening, listening.sockets[0].getsockname()[1]


async def test_https_requests_verify_the_certificate_and_reuse_one_connection(tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path, "127.0.0.1")
    server, listening, port = await _tls_server(cert_file, key_file)
    trusting = ssl.create_default_context(cafile=str(cert_file))
    pool = ConnectionPool(
        f"https://127.0.0.1:{port}",
        user_agent="test",
        connect_timeout=5,
        read_timeout=5,
        ssl_context=trusting,
    )
    try:
        answers = [await pool.request("GET", "/gdc/account/token", {"X-GDC-AuthSST": "s"}) for _ in range(3)]
    finally:
        await pool.close()
        listening.close()

    assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 3
    assert server.connections == 1
    assert server.heads[0].startswith(
        f"GET /gdc/account/token HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    )


@pytest.mark.parametrize(
    ("certified_host", "trusted", "refusal"),
    [
        ("127.0.0.1", False, "CERTIFICATE_VERIFY_FAILED"),  # a certificate no trust store vouches for
        ("localhost", True, "IP address mismatch"),  # trusted, but issued for another host
    ],
)
async def test_https_refuses_a_certificate_that_does_not_verify(
    tmp_path: Path, certified_host: str, trusted: bool, refusal: str
) -> None:
    cert_file, key_file = _self_signed(tmp_path, certified_host)
    server, listening, port = await _tls_server(cert_file, key_file)
    context = ssl.create_default_context(cafile=str(cert_file)) if trusted else None  # None: the default
    pool = ConnectionPool(
        f"https://127.0.0.1:{port}", user_agent="test", connect_timeout=5, read_timeout=5, ssl_context=context
    )
    try:
        with pytest.raises(HttpError, match=refusal):
            await pool.request("GET", "/gdc/account/token", {"X-GDC-AuthSST": "secret-sst"})
    finally:
        await pool.close()
        listening.close()
    assert server.heads == []  # nothing, not even the token, was sent over the unverified connection
