"""One request and its answer, as every route handler sees it: the parsed request, the shared
state, and GoodData-shaped answers (JSON, errors with a request id, 204s, streamed bodies)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import SplitResult

from airflow_provider_flexinsights.emulator.model import Fault, RequestRecord, Workspace
from airflow_provider_flexinsights.emulator.state import EmulatorState

_IOV_MAX = os.sysconf("SC_IOV_MAX")  # buffers one sendmsg takes


class Hangup(Exception):
    """Control flow: the connection was cut on purpose (a fault)."""


class Reject(Exception):
    """Control flow: answer with a GoodData error instead of serving the request.

    The body is GoodData's ``{"error": {...}}`` shape unless ``document`` gives another one, or
    ``empty`` asks for none at all (no Content-Type either), as the SST challenge answers.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *params: str,
        headers: dict[str, str] | None = None,
        document: Any = None,
        empty: bool = False,
    ):
        super().__init__(message)
        self.status, self.message, self.params, self.headers = status, message, params, headers or {}
        self.document, self.empty = document, empty


def invalid_structure(tag: str, detail: str) -> Reject:
    """GoodData's answer to a body outside its schema (recorded: identifiers, docs/wire.md)."""
    return Reject(
        400, "Checking '%s', result %s", tag, f"STRUCTURE INVALID - name of structure:'{tag}', {detail}"
    )


@dataclass
class Exchange:
    """The request being served (``match`` holds the route's named groups) and how to answer it."""

    handler: BaseHTTPRequestHandler
    state: EmulatorState
    url: SplitResult
    request_id: str
    raw_body: bytes = b""
    endpoint: str = "unknown"
    match: re.Match[str] | None = None
    logged_body: Any = None  # what the request log keeps of the body (never a password)

    @property
    def method(self) -> str:
        return self.handler.command

    @property
    def path(self) -> str:
        return self.handler.path

    def header(self, name: str) -> str | None:
        return self.handler.headers.get(name)

    def param(self, name: str) -> str:
        """A named group of the route's pattern."""
        assert self.match is not None
        return self.match[name]

    def optional_param(self, name: str) -> str | None:
        return self.match.groupdict().get(name) if self.match is not None else None

    # --- reading the request ------------------------------------------------------------------

    def json_body(self) -> Any:
        if "application/json" not in (self.header("Content-Type") or ""):
            raise Reject(400, "Content-Type must be application/json")
        try:
            return json.loads(self.raw_body)
        except ValueError:
            raise Reject(400, "Malformed JSON request body") from None

    def workspace(self) -> tuple[str, Workspace]:
        workspace_id = self.param("ws")
        workspace = self.state.config.workspaces.get(workspace_id)
        if workspace is None:
            raise Reject(404, "Project '%s' does not exist or you have no access to it", workspace_id)
        return workspace_id, workspace

    def take_fault(self, kinds: frozenset[str]) -> Fault | None:
        """The first armed fault of these kinds for this request, consumed (after its skips)."""
        workspace = self.optional_param("ws")
        with self.state.lock:
            for fault in self.state.config.faults:
                if fault.matches(self.endpoint, workspace, kinds):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.count -= 1
                    return fault
        return None

    # --- answering ----------------------------------------------------------------------------

    def start_response(self, status: int) -> None:
        """Log the request, then send the status line: a client never sees an answer not yet logged."""
        if self.endpoint != "control":
            user_agent = self.header("User-Agent") or ""
            record = RequestRecord(self.endpoint, self.method, self.path, status, user_agent, time.time())
            record.body, record.client_port = self.logged_body, int(self.handler.client_address[1])
            with self.state.lock:
                self.state.requests.append(record)
        self.handler.send_response(status)
        self.handler.send_header("X-GDC-Request", self.request_id)

    def send_header(self, name: str, value: str) -> None:
        self.handler.send_header(name, value)

    def end_headers(self) -> None:
        self.handler.end_headers()

    def write(self, chunk: bytes) -> None:
        self.handler.wfile.write(chunk)

    def write_pieces(self, pieces: Sequence[bytes | memoryview]) -> None:
        """Send ``pieces`` in order, as few system calls as the kernel takes, without joining them."""
        connection = self.handler.connection
        pending = [memoryview(piece) for piece in pieces if piece]
        first = 0
        while first < len(pending):
            sent = connection.sendmsg(pending[first : first + _IOV_MAX])
            while first < len(pending) and sent >= len(pending[first]):
                sent -= len(pending[first])
                first += 1
            if sent:
                pending[first] = pending[first][sent:]

    def send(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.start_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 204:
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status != 204:
            self.write(body)

    def send_json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(document).encode(), headers=headers)

    def send_error(self, reject: Reject) -> None:
        if reject.empty:
            self.send(reject.status, content_type=None, headers=reject.headers)
            return
        document = reject.document
        if document is None:
            error = {
                "errorClass": "GDC::Exception::User",
                "component": "Apache::REST",
                "message": reject.message,
                "parameters": list(reject.params),
                "requestId": self.request_id,
            }
            document = {"error": error}
        self.send_json(reject.status, document, reject.headers)
