"""Run flows over real HTTP: ``requests`` in workers, ``aiohttp`` in the triggerer.

A transport knows how to send a request and how to sleep; every decision is in the flow it runs.
Neither HTTP library follows redirects: the session flows do, deliberately (same host only, tokens
attached again, bounded; docs/wire.md), so tokens sent as headers never reach another host.

Both sides read the environment once, through the same two functions, so a worker and the
triggerer reach the service the same way: :func:`tls_trust` (which CA certificates) and
:func:`proxy_for` (which proxy, if any). Neither library reads the environment on its own
(``trust_env`` is off on both): aiohttp's reading differs from requests' (no ``ALL_PROXY``, no
CIDR in ``NO_PROXY``, ``SSL_CERT_FILE`` rather than ``REQUESTS_CA_BUNDLE``), so letting each read it
gave two verdicts for one environment.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import io
import logging
import os
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from airflow_provider_flexinsights.library.exceptions import (
    FlexInsightsApiError,
    FlexInsightsError,
    FlexInsightsInputError,
)
from airflow_provider_flexinsights.library.protocol import Reply, Request, request_url
from airflow_provider_flexinsights.library.session import Effect, Flow, Secret, Send, Sleep, TransportError

if TYPE_CHECKING:
    import aiohttp
    import requests

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 300.0  # the longest silence while an answer arrives (both sides)
DOWNLOAD_CHUNK_SIZE = 256 << 10  # the pieces a DownloadBody's iteration yields
RECEIVE_BYTES = 256 << 10  # per socket read: fewer reads and parser calls; the CPU per GiB is least here
ASYNC_CONNECTIONS = 20  # per triggerer session: plenty for polls, gentle on the API
KEEPALIVE_SECONDS = 30.0  # idle connections kept by the triggerer: longer than the 15 s poll cap
MAX_BODY_BYTES = 1 << 20
"""The largest answer read whole (JSON, errors, 202s; not the CSV): the API's are a few kB."""
# An answer's head, as http.client bounds it in workers (100 header lines of at most 64 KiB), so
# one answer gets the same verdict on both sides; 100 lines bound the parsing work too.
MAX_HEADERS = 100
MAX_HEADER_LINE = 65536


def _user_agent(library: str) -> str:
    from airflow_provider_flexinsights import __version__

    return f"airflow-provider-flexinsights/{__version__} ({library})"


_HEADER_VALUE = re.compile(r"[ -~]*")  # printable ASCII: what both libraries write the same way


def _headers(send: Send) -> dict[str, str]:
    """The request's headers; a value holding control or non-ASCII characters (a token as a hostile
    server minted it) is refused on both sides alike, rather than written (CR/LF: a second header) or
    failing inside the library (http.client's UnicodeEncodeError beyond Latin-1). The value is
    never repeated: it may be a token."""
    for name, value in send.headers.items():
        if not _HEADER_VALUE.fullmatch(value):
            raise FlexInsightsApiError(
                f"Flex Insights could not {send.request.action}: the {name} header it needs holds control "
                "or non-ASCII characters, as the server supplied them; this provider does not send it."
            )
    return {"Accept": "application/json", **send.headers}


Outcome = Reply | Exception | None
"""What performing an effect produced: a reply, the error to raise in the flow, or nothing (a sleep)."""


def _resume(flow: Flow[T], outcome: Outcome) -> Effect:
    """Hand the outcome of the last effect back to the flow; get its next effect.

    Errors are raised inside the flow, so its own handling (retries of a TransportError, the
    logout that never fails) and its ``finally`` blocks run, whatever the error."""
    if isinstance(outcome, Exception):
        return flow.throw(outcome)
    return flow.send(outcome)


def _describe(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"


# --- The environment, read once for both sides -----------------------------------------------

TRUST_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


def tls_trust() -> str:
    """The CA certificates (a PEM bundle, or a directory of them) a server's certificate must chain
    to, the same for workers (requests' ``verify``) and the triggerer (:func:`_ssl_context`).

    The first of ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` (what requests reads), ``SSL_CERT_FILE``,
    ``SSL_CERT_DIR`` (what OpenSSL reads) that is set, else certifi's bundle (requests' default).
    A variable naming nothing is an error here, before any request, rather than a TLS failure later.
    """
    for variable in TRUST_VARIABLES:
        path = os.environ.get(variable)
        if not path:
            continue
        if not Path(path).exists():
            raise FlexInsightsInputError(
                f"{variable} names {path}, which does not exist; point it at a CA bundle (a PEM file) "
                "or unset it."
            )
        return path
    import certifi

    return certifi.where()


def _ssl_context(ca: str) -> ssl.SSLContext:
    """The triggerer's TLS: these CAs only, the host name checked (as requests does with ``verify``)."""
    if Path(ca).is_dir():
        return ssl.create_default_context(capath=ca)
    return ssl.create_default_context(cafile=ca)


SUPPORTED_PROXY_SCHEMES = frozenset({"http"})


def proxy_for(base_url: str) -> str | None:
    """The proxy the environment routes ``base_url`` through, or None; one verdict for both sides.

    Read as requests reads it (``HTTP_PROXY``/``HTTPS_PROXY``, then ``ALL_PROXY``; ``NO_PROXY``
    with domains and CIDR ranges) and handed explicitly to both libraries. Only http:// proxies are
    supported (aiohttp speaks no other; workers follow the same rule); any other raises
    FlexInsightsInputError before a request is sent, naming the proxy without its credentials.
    """
    from requests.utils import get_environ_proxies

    parts = urlsplit(base_url)
    host = parts.hostname or ""
    proxies = get_environ_proxies(base_url)  # {} when NO_PROXY covers the host
    key = next(
        (k for k in (f"{parts.scheme}://{host}", parts.scheme, f"all://{host}", "all") if proxies.get(k)),
        None,
    )
    if key is None:
        return None
    proxy = proxies[key] if "://" in proxies[key] else f"http://{proxies[key]}"  # requests' reading
    proxy_parts = urlsplit(proxy)
    if proxy_parts.scheme.lower() not in SUPPORTED_PROXY_SCHEMES:
        variable = f"{key.upper()}_PROXY" if "://" not in key else "a proxy variable"
        where = proxy_parts.netloc.rpartition("@")[2]  # never the user:password before it
        raise FlexInsightsInputError(
            f"The environment ({variable}) routes {base_url} through {proxy_parts.scheme}://{where}, "
            f"which this provider does not support; use an http:// proxy, or add {host} to NO_PROXY."
        )
    return proxy


# --- Errors: a few words naming the host ------------------------------------------------------


def _unreachable(err: Exception, base_url: str) -> TransportError:
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
        if isinstance(cause, ssl.SSLError) and isinstance(getattr(cause, "reason", None), str):
            return TransportError(  # OpenSSL's own error: aiohttp's wrapper of it has no reason
                f"the TLS handshake with {address} failed ({cause.reason})",
                advice="check the host name and the CA certificates trusted here ("
                + ", ".join(TRUST_VARIABLES)
                + ", else certifi's bundle)",
            )
        if isinstance(cause, TimeoutError) or "Timeout" in type(cause).__name__:
            return TransportError(
                f"{address} did not answer in time",
                advice="check the network path to it (firewall, proxy); retrying later may work",
            )
        if isinstance(cause, http.client.HTTPException) and not isinstance(
            cause, ConnectionError | http.client.IncompleteRead
        ):
            return _bad_answer(base_url, str(cause) or type(cause).__name__)
    return TransportError(
        f"the connection to {address} failed ({type(err).__name__})",
        advice=f"check the network between this machine and {address}; retrying later may work",
    )


def _bad_answer(base_url: str, what: str) -> TransportError:
    """An answer the HTTP library refused to parse (too many header lines, a line too long...)."""
    address = urlsplit(base_url).netloc
    return TransportError(
        f"{address} sent an answer that is not valid HTTP/1.1 ({what})",
        advice=f"check for a proxy or gateway between this machine and {address}; retrying later may work",
    )


def _interim(status: int, base_url: str) -> TransportError:
    """A 1xx answer where the final one belongs: http.client (workers) passes over 100 only."""
    address = urlsplit(base_url).netloc
    return TransportError(
        f"{address} sent an interim answer (HTTP {status}) where its answer belongs",
        advice=f"check for a proxy or gateway between this machine and {address}; retrying later may work",
    )


def _too_large(request: Request, reply: Reply) -> FlexInsightsApiError:
    """An answer beyond :data:`MAX_BODY_BYTES`: refused unread, in one sentence (no body text)."""
    return FlexInsightsApiError.from_reply(
        f"Flex Insights could not {request.action}: its answer (HTTP {reply.status}) is larger than "
        f"{MAX_BODY_BYTES >> 20} MiB, far beyond any answer of this API, so it was not read",
        reply,
        then="; if this repeats, check for a proxy or gateway answering in the service's place.",
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


# --- Workers: requests ---------------------------------------------------------------------------


class SyncTransport:
    """Runs flows with blocking I/O on one pooled ``requests.Session``.

    :param on_secret: registers a token with the secret masker (Airflow's ``mask_secret``).
    """

    def __init__(self, base_url: str, on_secret: Callable[[str], None]) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self._on_secret = on_secret
        proxy = proxy_for(self.base_url)
        self._http = requests.Session()
        self._http.trust_env = False  # the environment is read by tls_trust() and proxy_for()
        self._http.verify = tls_trust()
        self._http.proxies = {"http": proxy, "https": proxy} if proxy else {}
        self._http.headers["User-Agent"] = _user_agent("requests")

    def run(self, flow: Flow[T]) -> T:
        """Perform the flow's effects until it returns. However that ends, the flow is closed at
        once, so its ``finally`` blocks run: an error escaping a flow suspended in a token renewal
        would otherwise leave its session "renewing", and every later flow of it waiting forever."""
        try:
            effect = next(flow)
            while True:
                effect = _resume(flow, self._perform(effect))
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            flow.close()

    def _perform(self, effect: Effect) -> Outcome:
        if isinstance(effect, Sleep):
            time.sleep(effect.seconds)
            return None
        if isinstance(effect, Secret):
            self._on_secret(effect.value)
            return None
        try:
            return self._send(effect)
        except (TransportError, FlexInsightsError) as err:
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
            status = response.status_code
            if status < 200:
                response.close()  # the final answer is still on the connection: drop it
                raise _interim(status, self.base_url)
            if status == 200 and request.success_body == "stream":
                return Reply(status, response.headers, stream=OpenResponse(response), url=response.url)
            with response:  # closing an unread response closes its connection
                head = Reply(status, response.headers, url=response.url)
                if not (status == 200 and request.success_body == "discard"):
                    head.body = _read_bounded(response, request, head)
            return head
        except requests.RequestException as err:
            raise _unreachable(err, self.base_url) from err

    @staticmethod
    @contextmanager
    def open_body(reply: Reply) -> Iterator[DownloadBody]:
        """The body of a reply fetched with ``success_body="stream"``; the response closes on exit.

        A body whose end cannot be verified (neither Content-Length nor chunked framing: it ends
        when the connection does, cut short or not) is refused before a byte of it is handed on.
        """
        if not isinstance(reply.stream, OpenResponse):
            raise TypeError("Only a reply fetched by this transport with success_body='stream' has a body.")
        response = reply.stream.response
        with response:
            _refuse_unframed(reply)
            response.raw.enforce_content_length = True  # a Content-Length body cut short raises
            socket_file = _plain_chunked_source(response)
            yield DownloadBody(_decoded_reads(response, socket_file), decoded_in_c=socket_file is not None)

    def close(self) -> None:
        self._http.close()


@dataclass(frozen=True)
class OpenResponse:
    """A worker's download whose body is not read yet (the :class:`~.protocol.OpenBody` that
    ``SyncTransport`` hands out): typed here, where ``requests`` is known, so strict mypy follows
    the body from the poll that fetched it to :meth:`SyncTransport.open_body` with no ``Any``."""

    response: requests.Response

    def close(self) -> None:
        self.response.close()


def _read_bounded(response: requests.Response, request: Request, head: Reply) -> bytes:
    """The whole body of a small answer, or :func:`_too_large` once it passes :data:`MAX_BODY_BYTES`
    (at once when its Content-Length says so)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(request, head)
    pieces: list[bytes] = []
    size = 0
    for piece in response.iter_content(64 << 10):
        size += len(piece)
        if size > MAX_BODY_BYTES:
            raise _too_large(request, head)
        pieces.append(piece)
    return b"".join(pieces)


def _refuse_unframed(reply: Reply) -> None:
    """A CSV that ends when the connection closes could be cut short unnoticed: never stored.

    Not retried: such framing comes from the path to the server (an HTTP/1.0 proxy), so a retry
    would download the whole export again to refuse it again.
    """
    framing = reply.headers.get("Transfer-Encoding", "").lower()
    if "chunked" in framing or reply.headers.get("Content-Length") is not None:
        return
    host = urlsplit(reply.url).netloc
    raise FlexInsightsApiError.from_reply(
        f"Flex Insights sent {reply.url} with neither Content-Length nor chunked framing, so its end "
        "cannot be verified and it was not stored",
        reply,
        then=f"; check for a proxy between this machine and {host} that rewrites answers.",
    )


class DownloadBody(Iterator[bytes]):
    """A body being received: iterate it for pieces of about ``DOWNLOAD_CHUNK_SIZE``, or ``pipe`` it.

    ``pipe`` hands each piece to a sink as it is decoded (8 KiB pieces when the server sends 8 KiB
    chunks), without joining them first: a sink that copies them into buffers it reuses (the file
    writer) then allocates nothing per piece. A broken stream is a TransportError, either way.
    ``decoded_in_c`` says whether the chunked framing is decoded by llhttp (the fast path).
    """

    def __init__(self, reads: Iterator[list[bytes]], *, decoded_in_c: bool = False) -> None:
        self._reads = reads
        self.decoded_in_c = decoded_in_c

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


def _decoded_reads(
    response: requests.Response, socket_file: io.BufferedReader | None
) -> Iterator[list[bytes]]:
    """The body's pieces, a list per socket read; a broken stream (reset, truncated chunking or
    Content-Length, timeout) is a TransportError. The sink's own errors never pass through here."""
    import requests
    from httptools import HttpParserError

    received = 0
    reads = _decode_chunked(socket_file) if socket_file is not None else _pieces_of(response)
    try:
        for pieces in reads:
            received += sum(map(len, pieces))
            yield pieces
    except (requests.RequestException, OSError, HttpParserError, _BodyCutShort) as err:
        raise TransportError(f"{_describe(err)}, after {received:,} bytes") from err


def _pieces_of(response: requests.Response) -> Iterator[list[bytes]]:
    """A body ``requests`` decodes (Content-Length, gzip): its stubs say ``Any``, the pieces are bytes."""
    piece: bytes
    for piece in response.iter_content(chunk_size=DOWNLOAD_CHUNK_SIZE):
        yield [piece]


def _plain_chunked_source(response: requests.Response) -> io.BufferedReader | None:
    """The socket file positioned at the body's first byte, when the body is chunked and not encoded.

    Those bodies (what Flex Insights sends) are read in large blocks and decoded in C, since urllib3
    decodes chunked framing in Python, one chunk at a time: at 8 KiB chunks that cost 5x curl's time.
    Any other body (Content-Length, gzip) goes through ``requests`` as usual. The socket file is
    found through private attributes of urllib3 and http.client (``raw._fp.fp``), hence the upper
    bounds on both in pyproject.toml and the test that fails if this path stops being taken.
    """
    framing = response.headers.get("Transfer-Encoding", "").lower()
    encoding = response.headers.get("Content-Encoding", "identity").lower()
    if framing != "chunked" or encoding != "identity":
        return None
    socket_file = getattr(getattr(response.raw, "_fp", None), "fp", None)
    if not isinstance(socket_file, io.BufferedReader):
        _warn_slow_chunked(type(socket_file).__name__)
        return None
    return socket_file


@functools.cache
def _warn_slow_chunked(found: str) -> None:
    """Once per process: the download still works, at urllib3's pace (5x curl's time at 8 KiB)."""
    log.warning(
        "Chunked downloads are decoded by urllib3 in Python, not by httptools: the socket file was "
        "not where this provider looks for it (found %s). Please report the requests and urllib3 "
        "versions installed.",
        found,
    )


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


# --- The triggerer: aiohttp ----------------------------------------------------------------------


class AsyncTransport:
    """Runs flows on the event loop over one ``aiohttp.ClientSession`` (one pool of keep-alive
    connections), the async library Airflow's own HTTP provider uses: about 0.1 ms of CPU per poll.

    Requests in flight are capped by a semaphore at the pool's size: when thousands of triggers
    share one session, the others wait on it (cheap), and aiohttp's connect timeout measures
    connecting only, never the wait for a free connection.

    :param on_secret: registers a token with the secret masker without blocking the loop
        (Airflow's ``amask_secret``).
    """

    def __init__(self, base_url: str, on_secret: Callable[[str], Awaitable[None]]) -> None:
        self.base_url = base_url.rstrip("/")
        self._on_secret = on_secret
        self._proxy = proxy_for(self.base_url)
        self._ca = tls_trust()
        self._http: aiohttp.ClientSession | None = None
        self._in_flight = asyncio.Semaphore(ASYNC_CONNECTIONS)

    async def run(self, flow: Flow[T]) -> T:
        """As :meth:`SyncTransport.run`, on the event loop."""
        try:
            effect = next(flow)
            while True:
                effect = _resume(flow, await self._perform(effect))
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            flow.close()

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
                return await self._send(effect)
        except (TransportError, FlexInsightsError) as err:
            return err

    def _session(self) -> aiohttp.ClientSession:
        """The session, made on first use: inside the running loop, which aiohttp binds it to."""
        if self._http is None:
            import aiohttp

            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=ASYNC_CONNECTIONS,
                    keepalive_timeout=KEEPALIVE_SECONDS,
                    ssl=_ssl_context(self._ca) if self.base_url.startswith("https:") else True,
                ),
                headers={"User-Agent": _user_agent("aiohttp"), "Accept-Encoding": "identity"},
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
                ),
                proxy=self._proxy,
                trust_env=False,  # the environment is read by tls_trust() and proxy_for()
                cookie_jar=aiohttp.DummyCookieJar(),  # tokens travel in headers; cookies are ignored
                auto_decompress=False,  # nothing compressed is asked for: no inflating on the loop
                max_line_size=MAX_HEADER_LINE,
                max_field_size=MAX_HEADER_LINE,
                max_headers=MAX_HEADERS,
            )
        return self._http

    async def _send(self, send: Send) -> Reply:
        import aiohttp
        from yarl import URL

        request = send.request
        url = request_url(self.base_url, request.path)
        try:
            async with self._session().request(
                request.method,
                URL(url, encoded=True),  # byte for byte: the export's query carries escapes it needs back
                json=request.json,
                headers=_headers(send),
                allow_redirects=False,
            ) as response:
                head = Reply(response.status, response.headers, url=url)
                if response.status < 200:  # aiohttp passes over 1xx answers, but for 101
                    response.close()
                    raise _interim(response.status, self.base_url)
                if response.status == 200 and request.success_body == "discard":
                    response.close()  # a ready export's CSV: never read, its connection dropped
                else:
                    head.body = await _read_bounded_async(response, request, head)
                return head
        except aiohttp.ClientResponseError as err:  # raise_for_status is off: the parser refused it
            raise _bad_answer(self.base_url, err.message) from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise _unreachable(err, self.base_url) from err

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()


async def _read_bounded_async(response: aiohttp.ClientResponse, request: Request, head: Reply) -> bytes:
    """As :func:`_read_bounded`; a refused answer's connection is closed, not drained."""
    length = response.content_length
    if length is not None and length > MAX_BODY_BYTES:
        response.close()
        raise _too_large(request, head)
    if length is not None:
        return await response.read()
    body = bytearray()
    async for piece in response.content.iter_any():
        body += piece
        if len(body) > MAX_BODY_BYTES:
            response.close()
            raise _too_large(request, head)
    return bytes(body)
