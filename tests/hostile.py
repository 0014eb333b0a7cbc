"""A misbehaving server on loopback: forwards to the emulator, except where a rule answers instead.

Tests of the provider on a hostile wire (redirects to other hosts, 1xx answers, endless headers,
unframed bodies...) need a whole working API around the one bad answer: the login, the token and
the export all come from the real emulator, and one rule replaces the answer under test with raw
bytes, written to the socket exactly as given. Every request that arrives is recorded, with its
headers, so a test can show which tokens reached which server.

    with HostileServer(upstream=emulator.url) as wire:
        wire.answer("/gdc/account/profile/current", b"HTTP/1.1 307 ...\\r\\n\\r\\n")
        ... point the connection at wire.url ...
        assert wire.requests[...]
"""

from __future__ import annotations

import http.client
import itertools
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RawRequest:
    method: str
    target: str  # the request line's target, as sent (path and query)
    headers: dict[str, str]
    body: bytes
    connection: int = 0  # which connection it came on (1, 2, ... in order of arrival)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


Answer = bytes | Callable[[RawRequest], bytes]


@dataclass
class Rule:
    matches: Callable[[RawRequest], bool]
    answer: Answer
    times: int | None  # None: every time
    close: bool  # close the connection after answering
    used: int = 0


@dataclass
class HostileServer:
    """``upstream``: the emulator to forward to (None: every unmatched request gets a 404);
    ``tls``: a server context, to listen for https:// instead of http://."""

    upstream: str | None = None
    tls: ssl.SSLContext | None = None
    requests: list[RawRequest] = field(default_factory=list)
    # (path, whether the whole answer was written) per answer: False when the client hung up first
    delivered: list[tuple[str, bool]] = field(default_factory=list)
    _connections: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _rules: list[Rule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(
        self,
        match: str | Callable[[RawRequest], bool],
        answer: Answer,
        *,
        times: int | None = None,
        close: bool = False,
    ) -> None:
        """Answer requests whose path is ``match`` (or for which it is true) with these raw bytes."""
        matches = (lambda request: request.path == match) if isinstance(match, str) else match
        self._rules.append(Rule(matches, answer, times, close))

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    def __enter__(self) -> HostileServer:
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                number = next(outer._connections)
                try:
                    while (request := _read_request(self.rfile, number)) is not None:
                        raw, close = outer._respond(request)
                        try:
                            self.wfile.write(raw)
                            self.wfile.flush()
                        except OSError:
                            outer.delivered.append((request.path, False))
                            return
                        outer.delivered.append((request.path, True))
                        if close:
                            return
                except OSError:  # a TLS handshake the client refused, a reset
                    return

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:  # the handshake happens in the handler's thread, on its first read
            self._server.socket = self.tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _respond(self, request: RawRequest) -> tuple[bytes, bool]:
        with self._lock:
            self.requests.append(request)
            rule = next(
                (r for r in self._rules if (r.times is None or r.used < r.times) and r.matches(request)),
                None,
            )
            if rule is not None:
                rule.used += 1
        if rule is not None:
            answer = rule.answer(request) if callable(rule.answer) else rule.answer
            return answer, rule.close
        if self.upstream is None:
            return response(404, b'{"error":{"message":"Not found"}}'), False
        return _forward(self.upstream, request), False


def response(
    status: int, body: bytes = b"", *, reason: str = "X", headers: dict[str, str] | None = None
) -> bytes:
    """A well-framed answer (Content-Length), for rules that only bend the status or the headers."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _read_request(rfile: BinaryIO, connection: int) -> RawRequest | None:
    line = rfile.readline(65537)
    if not line or not line.strip():
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (header := rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip()] = value.strip()
    length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
    body = rfile.read(length) if length else b""
    return RawRequest(method, target, headers, body, connection)


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def _forward(upstream: str, request: RawRequest) -> bytes:
    """The emulator's answer to ``request``, framed again (chunked stays chunked, in one chunk)."""
    parts = urlsplit(upstream)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        connection.request(request.method, request.target, body=request.body or None, headers=headers)
        answer = connection.getresponse()
        body = answer.read()
        chunked = (answer.getheader("Transfer-Encoding") or "").lower() == "chunked"
        kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
    finally:
        connection.close()
    head = [f"HTTP/1.1 {answer.status} {answer.reason}", *(f"{k}: {v}" for k, v in kept)]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        framed = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
        framed = body
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + framed
