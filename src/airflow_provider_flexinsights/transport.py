"""Run flows over real HTTP: ``requests`` in workers, ``httpx.AsyncClient`` in the triggerer.

A transport knows how to send a request and how to sleep; every decision is in the flow it runs.
Neither HTTP library follows redirects: the session flows do, deliberately (same host only, tokens
attached again, bounded; docs/wire.md), so tokens sent as headers never reach another host.
"""

from __future__ import annotations

import asyncio
import io
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from airflow_provider_flexinsights.protocol import Reply, request_url
from airflow_provider_flexinsights.session import Effect, Flow, Secret, Send, Sleep, TransportError

if TYPE_CHECKING:
    import requests

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 300.0
DOWNLOAD_CHUNK_SIZE = 256 << 10  # the pieces a DownloadBody's iteration yields
RECEIVE_BYTES = 256 << 10  # per socket read: fewer reads and parser calls; the CPU per GiB is least here
ASYNC_CONNECTIONS = 20  # per triggerer session: plenty for polls, gentle on the API


def _user_agent(library: str) -> str:
    from airflow_provider_flexinsights import __version__

    return f"airflow-provider-flexinsights/{__version__} ({library})"


def _headers(send: Send) -> dict[str, str]:
    return {"Accept": "application/json", **send.headers}


Outcome = Reply | TransportError | None
"""What performing an effect produced: a reply, a failure to reach the server, or nothing (a sleep)."""


def _resume(flow: Flow[T], outcome: Outcome) -> Effect:
    """Hand the outcome of the last effect back to the flow; get its next effect."""
    if isinstance(outcome, TransportError):
        return flow.throw(outcome)
    return flow.send(outcome)


def _describe(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"


def _unreachable(err: Exception, base_url: str, *, detail: str | None = None) -> TransportError:
    """A request that got no answer, in a few words naming the host and what to check: the HTTP
    library's own text (urllib3's pool and retry internals) says neither and is repeated per try."""
    parts = urlsplit(base_url)
    address, host = parts.netloc, parts.hostname or parts.netloc
    for cause in _causes(err):
        if isinstance(cause, socket.gaierror):
            return TransportError(
                f"the host name {host} was not found", advice="check its spelling and this machine's DNS"
            )
        if isinstance(cause, ConnectionRefusedError):
            return TransportError(
                f"{address} refused the connection",
                advice="check that the host and port are right and that the service is up",
            )
        if isinstance(cause, ssl.SSLError):
            return TransportError(
                f"the TLS handshake with {address} failed ({cause.reason or type(cause).__name__})",
                advice="check the host name and this machine's CA certificates",
            )
        if isinstance(cause, TimeoutError) or "Timeout" in type(cause).__name__:
            return TransportError(
                f"{address} did not answer in time",
                advice="check the network path to it (firewall, proxy); retrying later may work",
            )
    return TransportError(
        f"the connection to {address} failed ({detail or type(err).__name__})",
        advice=f"check the network between this machine and {address}; retrying later may work",
    )


def _causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and what it wraps: chained exceptions, urllib3's ``reason``, exceptions in ``args``."""
    pending, seen = [err], set()
    while pending:
        cause = pending.pop(0)
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        wrapped = [cause.__cause__, cause.__context__, getattr(cause, "reason", None), *cause.args]
        pending += [inner for inner in wrapped if isinstance(inner, BaseException)]


class SyncTransport:
    """Runs flows with blocking I/O on one pooled ``requests.Session``.

    :param on_secret: registers a token with the secret masker (Airflow's ``mask_secret``).
    """

    def __init__(self, base_url: str, on_secret: Callable[[str], None]) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self._on_secret = on_secret
        self._http = requests.Session()
        self._http.headers["User-Agent"] = _user_agent("requests")

    def run(self, flow: Flow[T]) -> T:
        try:
            effect = next(flow)
            while True:
                effect = _resume(flow, self._perform(effect))
        except StopIteration as done:
            result: T = done.value
            return result

    def _perform(self, effect: Effect) -> Outcome:
        if isinstance(effect, Sleep):
            time.sleep(effect.seconds)
            return None
        if isinstance(effect, Secret):
            self._on_secret(effect.value)
            return None
        try:
            return self._send(effect)
        except TransportError as err:
            return err

    def _send(self, send: Send) -> Reply:
        import requests

        request = send.request
        try:
            response = self._http.request(
                request.method,
                request_url(self.base_url, request.path),
                json=request.json,
                headers=_headers(send),
                stream=True,
                allow_redirects=False,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
            if response.status_code == 200 and request.success_body == "stream":
                return Reply(response.status_code, response.headers, stream=response, url=response.url)
            with response:
                skip = response.status_code == 200 and request.success_body == "discard"
                body = b"" if skip else response.content
            return Reply(response.status_code, response.headers, body, url=response.url)
        except requests.RequestException as err:
            raise _unreachable(err, self.base_url) from err

    @staticmethod
    @contextmanager
    def open_body(reply: Reply) -> Iterator[DownloadBody]:
        """The body of a reply fetched with ``success_body="stream"``; the response closes on exit."""
        response: requests.Response = reply.stream
        with response:
            yield DownloadBody(_decoded_reads(response))

    def close(self) -> None:
        self._http.close()


class DownloadBody(Iterator[bytes]):
    """A body being received: iterate it for pieces of about ``DOWNLOAD_CHUNK_SIZE``, or ``pipe`` it.

    ``pipe`` hands each piece to a sink as it is decoded (8 KiB pieces when the server sends 8 KiB
    chunks), without joining them first: a sink that copies them into buffers it reuses (the file
    writer) then allocates nothing per piece. A broken stream is a TransportError, either way.
    """

    def __init__(self, reads: Iterator[list[bytes]]) -> None:
        self._reads = reads

    def __next__(self) -> bytes:
        pieces: list[bytes] = []
        size = 0
        for read in self._reads:
            pieces += read
            size += sum(map(len, read))
            if size >= DOWNLOAD_CHUNK_SIZE:
                break
        if not pieces:
            raise StopIteration
        return b"".join(pieces)

    def pipe(self, sink: Callable[[bytes], object]) -> None:
        """Hand every piece of the rest of the body to ``sink``, in order."""
        for read in self._reads:
            for piece in read:
                sink(piece)


def _decoded_reads(response: requests.Response) -> Iterator[list[bytes]]:
    """The body's pieces, a list per socket read; a broken stream (reset, truncated chunking,
    timeout) is a TransportError. The sink's own errors never pass through here."""
    import requests
    from httptools import HttpParserError

    received = 0
    socket_file = _plain_chunked_source(response)
    reads = (
        _decode_chunked(socket_file)
        if socket_file is not None
        else ([piece] for piece in response.iter_content(chunk_size=DOWNLOAD_CHUNK_SIZE))
    )
    try:
        for pieces in reads:
            received += sum(map(len, pieces))
            yield pieces
    except (requests.RequestException, OSError, HttpParserError, _BodyCutShort) as err:
        raise TransportError(f"{_describe(err)}, after {received:,} bytes") from err


def _plain_chunked_source(response: requests.Response) -> io.BufferedReader | None:
    """The socket file positioned at the body's first byte, when the body is chunked and not encoded.

    Those bodies (what Flex Insights sends) are read in large blocks and decoded in C, since urllib3
    decodes chunked framing in Python, one chunk at a time: at 8 KiB chunks that cost 5x curl's time.
    Any other body (Content-Length, gzip) goes through ``requests`` as usual.
    """
    framing = response.headers.get("Transfer-Encoding", "").lower()
    encoding = response.headers.get("Content-Encoding", "identity").lower()
    http_client_response = getattr(response.raw, "_fp", None)
    socket_file = getattr(http_client_response, "fp", None)
    if framing != "chunked" or encoding != "identity" or not isinstance(socket_file, io.BufferedReader):
        return None
    return socket_file


class _BodyCutShort(Exception):
    """The connection closed before the chunked body's last chunk."""


class _DecodedBody:
    """httptools callbacks: keeps the body bytes of the chunks parsed so far, and whether it ended."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    def take(self) -> list[bytes]:
        pieces, self.pieces = self.pieces, []
        return pieces


# The parser needs a response head to frame what follows; the real one was read by http.client.
_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def _decode_chunked(socket_file: io.BufferedReader) -> Iterator[list[bytes]]:
    """The payload of a chunked response, as the pieces llhttp (via httptools) finds in each read.

    The socket is read ``RECEIVE_BYTES`` at a time into one reused buffer, so Python runs per read
    rather than per chunk and no read allocates. A body that ends before its last chunk raises
    ``_BodyCutShort``.
    """
    from httptools import HttpParserError, HttpResponseParser

    body = _DecodedBody()
    parser = HttpResponseParser(body)
    parser.feed_data(_CHUNKED_HEAD)
    buffer = memoryview(bytearray(RECEIVE_BYTES))
    # What http.client already buffered with the headers first: read1 returns it without waiting on
    # the socket (readinto1 into a buffer larger than the file's would wait for more). The file's
    # buffer is then empty for good, and readinto1 reads the socket straight into ours.
    block: bytes | memoryview = socket_file.read1(RECEIVE_BYTES)
    while True:
        if not block:
            raise _BodyCutShort("the connection closed before the last chunk of the body")
        try:
            parser.feed_data(block)
        except HttpParserError:
            if not body.complete:
                raise  # bytes after the body's end are not ours to judge
        if body.pieces:
            yield body.take()
        if body.complete:
            return
        block = buffer[: socket_file.readinto1(buffer)]


class AsyncTransport:
    """Runs flows on the event loop over one pool of keep-alive connections.

    Requests go through the lean HTTP/1.1 client of :mod:`.async_http` (one poll costs a
    twentieth of the CPU it took through httpx), or through ``httpx.AsyncClient`` when the
    environment names a proxy for the base URL (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY; NO_PROXY
    honoured), which httpx knows how to use. Requests in flight are capped by a semaphore: when
    thousands of triggers share one session, the others wait on it (cheap) rather than in a queue.

    :param on_secret: registers a token with the secret masker without blocking the loop
        (Airflow's ``amask_secret``).
    """

    def __init__(self, base_url: str, on_secret: Callable[[str], Awaitable[None]]) -> None:
        self.base_url = base_url.rstrip("/")
        self._on_secret = on_secret
        self._http: _AsyncSender = (
            _HttpxSender(self.base_url) if _proxy_applies(self.base_url) else _PoolSender(self.base_url)
        )
        self._in_flight = asyncio.Semaphore(ASYNC_CONNECTIONS)

    async def run(self, flow: Flow[T]) -> T:
        try:
            effect = next(flow)
            while True:
                effect = _resume(flow, await self._perform(effect))
        except StopIteration as done:
            result: T = done.value
            return result

    async def _perform(self, effect: Effect) -> Outcome:
        if isinstance(effect, Sleep):
            await asyncio.sleep(effect.seconds)
            return None
        if isinstance(effect, Secret):
            await self._on_secret(effect.value)
            return None
        if effect.request.success_body == "stream":
            raise ValueError("The async transport never streams a body: downloads run in workers.")
        try:
            async with self._in_flight:
                return await self._http.send(effect)
        except TransportError as err:
            return err

    async def close(self) -> None:
        await self._http.close()


class _AsyncSender(Protocol):
    async def send(self, send: Send) -> Reply: ...
    async def close(self) -> None: ...


def _proxy_applies(base_url: str) -> bool:
    """Whether the environment routes ``base_url`` through a proxy (the variables httpx reads)."""
    from urllib.request import getproxies_environment, proxy_bypass

    parts = urlsplit(base_url)
    proxies = getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not proxy_bypass(parts.hostname or "")


class _PoolSender:
    """Requests over :class:`.async_http.ConnectionPool`; a body that is not wanted is never read."""

    def __init__(self, base_url: str) -> None:
        import httpx

        from airflow_provider_flexinsights.async_http import ConnectionPool

        tls = httpx.create_ssl_context() if base_url.startswith("https:") else None  # httpx's trust store
        self._base_url = base_url.rstrip("/")
        self._pool = ConnectionPool(
            base_url,
            user_agent=_user_agent("asyncio"),
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            ssl_context=tls,
        )

    async def send(self, send: Send) -> Reply:
        from airflow_provider_flexinsights.async_http import HttpError

        request = send.request
        try:
            answer = await self._pool.request(
                request.method,
                request.path,
                _headers(send),
                request.json,
                skip_success_body=request.success_body == "discard",
            )
        except HttpError as err:
            raise _unreachable(err, self._base_url, detail=str(err)) from err
        return Reply(answer.status, answer.headers, answer.body, url=self._base_url + request.path)

    async def close(self) -> None:
        await self._pool.close()


class _HttpxSender:
    """Requests through ``httpx.AsyncClient``, for a base URL reached through a proxy."""

    def __init__(self, base_url: str) -> None:
        import httpx

        self.base_url = base_url
        self._http = httpx.AsyncClient(
            headers={"User-Agent": _user_agent("httpx")},
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(
                max_connections=ASYNC_CONNECTIONS, max_keepalive_connections=ASYNC_CONNECTIONS
            ),
            follow_redirects=False,
        )

    async def send(self, send: Send) -> Reply:
        import httpx

        request = send.request
        try:
            built = self._http.build_request(
                request.method,
                request_url(self.base_url, request.path),
                json=request.json,
                headers=_headers(send),
            )
            response: Any = await self._http.send(built, stream=True)
            url = str(response.url)
            try:
                skip = response.status_code == 200 and request.success_body == "discard"
                body = b"" if skip else await response.aread()
            finally:
                await response.aclose()
            return Reply(response.status_code, response.headers, body, url=url)
        except httpx.HTTPError as err:
            raise _unreachable(err, self.base_url) from err

    async def close(self) -> None:
        await self._http.aclose()
