"""A local, strict emulator of the Flex Insights export API (docs/wire.md), served over HTTP.

It keeps real token bookkeeping (SSTs, TTs with expiry, logout), maps identifiers, runs raw exports
that answer 202 until ready and then stream chunked CSV, and answers GoodData-style errors. It is
strict about request shapes, so a client bug gets a 400 here rather than passing unnoticed. The
endpoints live by concern in :mod:`.auth`, :mod:`.exports`, :mod:`.elements`, :mod:`.metadata` and
:mod:`.control`, over the one table in :mod:`.routes`; this module dispatches and injects faults.

Tests read what it saw from :attr:`Emulator.requests` (in process) or ``GET /_emulator/requests``
(from another process), and every SST and TT it ever issued from :attr:`Emulator.issued_secrets`,
to prove none of them leaked.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_flexinsights.emulator.exchange import Exchange, Hangup, Reject
from airflow_provider_flexinsights.emulator.model import (
    DEMO_WORKSPACE,
    EmulatorConfig,
    Label,
    RequestRecord,
)
from airflow_provider_flexinsights.emulator.routes import find_route
from airflow_provider_flexinsights.emulator.state import EmulatorState

REQUEST_FAULTS = frozenset({"status", "expire_tt", "expire_sst", "delay", "gone"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FlexInsightsEmulator/1"
    state: EmulatorState  # set on the subclass made per server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # clients may hang up anytime
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read self.state.requests
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        exchange = Exchange(self, self.state, url, f"emu-{self.state.next_id()}:{secrets.token_hex(4)}")
        try:
            exchange.raw_body = self._read_body()
            found = find_route(self.command, url.path)
            if found is None:
                raise Reject(404, "Resource %s not found", url.path)
            route, exchange.match = found
            exchange.endpoint = route.endpoint
            _inject_fault(exchange)
            route.handler(exchange)
        except Reject as reject:
            exchange.send_error(reject)
        except (BrokenPipeError, ConnectionResetError, Hangup):
            self.close_connection = True

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise Reject(411, "Request bodies must have a Content-Length")
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


def _inject_fault(exchange: Exchange) -> None:
    """Misbehave as an armed request fault says (see :class:`~.model.Fault`), or do nothing."""
    fault = exchange.take_fault(REQUEST_FAULTS)
    if fault is None:
        return
    state = exchange.state
    if fault.kind == "delay":
        time.sleep(fault.seconds)
    elif fault.kind in ("expire_tt", "expire_sst"):
        state.expire_tokens(sessions=fault.kind == "expire_sst")
    elif fault.kind == "gone":
        with state.lock:
            state.exports.pop(exchange.optional_param("id") or "", None)
        raise Reject(410, "Export result %s has expired", exchange.path)
    else:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        message = (
            "Too many requests, wait one minute" if fault.status == 429 else HTTPStatus(fault.status).phrase
        )
        raise Reject(fault.status, message, headers=headers)


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # many clients connecting at once (benchmarks) must not be refused
    daemon_threads = True


class Emulator:
    """The emulator as an object: start it on a free loopback port, inspect it, stop it.

    ``with Emulator() as emulator: ...`` runs it in a background thread of this process.
    """

    def __init__(self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = EmulatorState(config or EmulatorConfig())
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = _Server((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> EmulatorConfig:
        return self.state.config

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[RequestRecord]:
        with self.state.lock:
            return list(self.state.requests)

    def calls(self) -> list[tuple[str, int]]:
        """(endpoint, status) of every request so far, e.g. ("login", 200), ("export", 202)."""
        return [(r.endpoint, r.status) for r in self.requests]

    def received_filters(self) -> list[Any]:
        """The ``context.filters`` of every export started so far, as the client sent them."""
        starts = [r for r in self.requests if r.endpoint == "execute" and r.status == 201]
        return [r.body["report_req"].get("context", {}).get("filters", []) for r in starts]

    def label(self, identifier: str, workspace_id: str = DEMO_WORKSPACE) -> Label:
        """An attribute label of a workspace, to compute the URIs a filter on it must carry."""
        return self.config.workspaces[workspace_id].labels[identifier]

    def date_label_uri(self, workspace_id: str = DEMO_WORKSPACE) -> str:
        return self.state.label_uri(workspace_id)

    @property
    def live_sessions(self) -> int:
        with self.state.lock:
            return len(self.state.logins)

    @property
    def issued_secrets(self) -> set[str]:
        with self.state.lock:
            return set(self.state.issued_secrets)

    @property
    def issued_ssts(self) -> set[str]:
        with self.state.lock:
            return set(self.state.issued_ssts)

    def clear_requests(self) -> None:
        """Forget the requests seen so far (between tests sharing one emulator)."""
        with self.state.lock:
            self.state.requests.clear()

    def expire_temporary_tokens(self) -> None:
        """Make every TT issued so far expired, as ten minutes would."""
        self.state.expire_tokens(sessions=False)

    def expire_sessions(self) -> None:
        """Make every SST (and its TTs) expired, as two weeks would."""
        self.state.expire_tokens(sessions=True)

    def start(self) -> Emulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="flex-insights-emulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
