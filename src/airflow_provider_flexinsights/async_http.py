"""A lean HTTP/1.1 client on asyncio for the triggerer's polls: keep-alive connections, C parsing.

Why not httpx here: thousands of deferred exports each poll every few seconds, and with 20 requests
in flight httpx (with httpcore and anyio under it) spent 1.0-1.2 ms of CPU per request on this
project's machine, against 0.06 ms for asyncio's own transports with llhttp (via ``httptools``)
parsing the answer: at 5,000 waiting exports that is most of a core against a few percent.

What it does: small requests (JSON bodies), answers framed by Content-Length or chunked, keep-alive
reuse, TLS with the trust store httpx would use, connect and read timeouts, and an answer whose
body is not wanted (a ready export's CSV) closes its connection instead of being read. What it
leaves out: redirects (never followed anyway), cookies (tokens travel in headers), HTTP/2 and
proxies (:class:`~.transport.AsyncTransport` keeps httpx where a proxy applies).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpResponseParser

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class HttpError(Exception):
    """No answer: the connection failed, broke, timed out, or the answer was not valid HTTP."""


class _GoneBeforeAnswer(HttpError):
    """A kept-alive connection closed before any byte of the answer: safe to repeat an idempotent request."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; ``exchange`` sends a request and awaits its whole answer."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._parser = HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._received = False
        self._skip_success_body = False
        self.reusable = False

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except HttpParserError as err:
            self._fail(HttpError(f"the answer is not valid HTTP/1.1 ({err})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if not self._received:
            self._fail(_GoneBeforeAnswer("the server closed the connection before answering"))
        self._fail(HttpError(f"the connection broke before the end of the answer ({exc or 'closed'})"))

    # --- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        if self._skip_success_body and self._parser.get_status_code() == 200:
            self._answer(b"", keep_alive=False)  # the body is not wanted: drop the connection

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._answer(b"".join(self._body), keep_alive=self._parser.should_keep_alive())

    # --- use ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def exchange(self, request: bytes, *, skip_success_body: bool) -> Answer:
        assert self._transport is not None
        self._parser = HttpResponseParser(self)
        self._headers, self._body, self._received = {}, [], False
        self._skip_success_body = skip_success_body
        self.reusable = False
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.close()

    def _answer(self, body: bytes, *, keep_alive: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        self.reusable = keep_alive
        if not keep_alive:
            self.close()
        waiter.set_result(Answer(self._parser.get_status_code(), self._headers, body))

    def _fail(self, error: HttpError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()


class ConnectionPool:
    """Keep-alive connections to one origin, one request at a time on each (the caller caps how
    many are in flight).

    :param base_url: ``http(s)://host[:port][/prefix]``; request paths are appended to it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        user_agent: str,
        connect_timeout: float,
        read_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        self._fixed_headers = f"Host: {parts.netloc}\r\nUser-Agent: {user_agent}\r\n"
        self._ssl_context = ssl_context
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._idle: list[_Connection] = []

    async def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        json_body: Mapping[str, Any] | None = None,
        *,
        skip_success_body: bool = False,
    ) -> Answer:
        """Send one request and return its whole answer (the body of a 200 dropped when asked)."""
        request = self._encode(method, path, headers, json_body)
        while True:
            connection, reused = await self._checkout()
            try:
                answer = await self._exchange(connection, request, skip_success_body)
            except _GoneBeforeAnswer:
                if reused and method in _IDEMPOTENT:
                    continue  # the server had closed this kept-alive connection: use a new one
                raise
            if connection.reusable:
                self._idle.append(connection)
            return answer

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def _exchange(self, connection: _Connection, request: bytes, skip_success_body: bool) -> Answer:
        try:
            async with asyncio.timeout(self._read_timeout):
                return await connection.exchange(request, skip_success_body=skip_success_body)
        except TimeoutError:
            connection.close()
            raise HttpError(f"no answer within {self._read_timeout:.0f} s") from None
        except asyncio.CancelledError:
            connection.close()  # an answer may still come: this connection is out of step
            raise

    async def _checkout(self) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if connection.is_open:
                return connection, True
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = (self._ssl_context or ssl.create_default_context()) if self._tls else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(_Connection, self._host, self._port, ssl=tls)
        except TimeoutError:
            raise HttpError(
                f"could not connect to {self._host} within {self._connect_timeout:.0f} s"
            ) from None
        except (OSError, ssl.SSLError) as err:
            raise HttpError(f"could not connect to {self._host}:{self._port} ({err})") from err
        return connection

    def _encode(
        self, method: str, path: str, headers: Mapping[str, str], json_body: Mapping[str, Any] | None
    ) -> bytes:
        lines = [f"{method} {self._prefix}{path} HTTP/1.1\r\n", self._fixed_headers]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        body = b""
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode()
            lines.append("Content-Type: application/json\r\n")
        if body or method not in ("GET", "HEAD", "DELETE"):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1") + body
