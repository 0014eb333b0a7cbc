"""A local, strict emulator of the Flex Insights export API (see shared/flex-insights-api.md).

It keeps real token bookkeeping (SSTs, TTs with expiry, logout), maps identifiers, runs raw exports
that answer 202 until ready and then stream chunked CSV, and answers GoodData-style errors. It is
strict about request shapes, so a client bug gets a 400 here rather than passing unnoticed.

Tests read what it saw from :attr:`Emulator.requests` (in process) or ``GET /_emulator/requests``
(from another process), and every SST and TT it ever issued from :attr:`Emulator.issued_secrets`,
to prove none of them leaked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import json
import random
import re
import secrets
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from airflow_provider_flexinsights.emulator import data

DEMO_EMAIL = "analyst@example.com"
DEMO_PASSWORD = "flex-emulator-password"
DEMO_WORKSPACE = "flexinsightsdemoworkspace0000001"
QUEUE_REPORT = "3035643"
EMPTY_REPORT = "3035644"
AGENT_REPORT = "3035645"
CHANNEL_REPORT = "3035646"
BULK_REPORT = "9000001"  # served only when the emulator is given a bulk size (benchmarks)
DATE_IDENTIFIER = "date.date.mmddyyyy"
DEFAULT_DATE_RANGE = ("2024-01-01", "2024-01-07")  # what an export without a date filter covers

SST_CHALLENGE = 'GoodData realm="GoodData API", cookie=GDCAuthSST location=/gdc/account/login'
TT_CHALLENGE = 'GoodData realm="GoodData API", cookie=GDCAuthTT'


@dataclass
class Report:
    title: str
    kind: Literal["queue", "empty", "bulk"] = "queue"
    size_bytes: int = 0  # bulk reports: at least this many bytes, whatever the dates
    updated: str = "2024-01-02 09:00:00"  # last change, as the metadata API writes it
    summary: str = ""


def default_reports() -> dict[str, Report]:
    return {
        QUEUE_REPORT: Report(
            "Queue performance, 15 minute intervals",
            updated="2024-03-14 16:42:07",
            summary="Offered, handled and abandoned contacts per queue and channel",
        ),
        EMPTY_REPORT: Report(
            "Queue performance, retired queues (no data)", kind="empty", updated="2023-11-30 08:15:00"
        ),
        AGENT_REPORT: Report("Queue performance by agent team", updated="2024-02-20 11:05:33"),
        CHANNEL_REPORT: Report("Queue performance by channel", updated="2024-02-21 10:00:00"),
    }


# --- attribute labels: the values filters select (list constraints, validElements) ---------------

QUEUE_LABEL = "label.conversations.queue"
CHANNEL_LABEL = "label.conversations.channel"
DIRECTION_LABEL = "label.conversations.direction"


@dataclass(frozen=True)
class Label:
    """An attribute label (display form) filters can use: one CSV column and the values it holds."""

    identifier: str
    column: str  # the column of data.HEADER it selects rows by
    object_id: int
    attribute_id: int  # element URIs belong to the attribute, as in GoodData
    titles: tuple[str, ...]

    def uri(self, workspace_id: str) -> str:
        return f"/gdc/md/{workspace_id}/obj/{self.object_id}"

    def element_uri(self, workspace_id: str, title: str) -> str:
        return f"/gdc/md/{workspace_id}/obj/{self.attribute_id}/elements?id={self.titles.index(title) + 1}"


def default_labels() -> dict[str, Label]:
    labels = (
        Label(QUEUE_LABEL, "Queue", 20011, 20010, data.QUEUES),
        Label(CHANNEL_LABEL, "Channel", 20021, 20020, data.CHANNELS),
        Label(DIRECTION_LABEL, "Direction", 20031, 20030, data.DIRECTIONS),
    )
    return {label.identifier: label for label in labels}


@dataclass
class Workspace:
    reports: dict[str, Report] = field(default_factory=default_reports)
    identifiers: set[str] = field(default_factory=lambda: {DATE_IDENTIFIER, *default_labels()})
    labels: dict[str, Label] = field(default_factory=default_labels)  # usable when in ``identifiers``


FaultKind = Literal["status", "expire_tt", "expire_sst", "delay", "gone", "reset", "truncate"]
BODY_FAULTS = frozenset({"reset", "truncate"})


@dataclass
class Fault:
    """Misbehave on requests to ``endpoint``: let ``skip`` of them through, then misbehave ``count`` times.

    ``endpoint`` is login, token, logout, identifiers, execute, export, query (the report list),
    object (object lookups), or "*" for any; ``workspace``
    limits the fault to one workspace. Kinds:

    - ``status``: answer ``status`` (with ``retry_after`` as Retry-After, if set) instead of serving.
    - ``expire_tt``: expire every TT first, as ten minutes would (the request gets the TT challenge).
    - ``expire_sst``: expire every SST and TT first, as two weeks would.
    - ``delay``: hold the first byte back for ``seconds``, then serve.
    - ``gone``: the export expired: 410 now, 404 from then on (export endpoint).
    - ``reset``: send ``after_bytes`` of a CSV body, then reset the connection (counts downloads only).
    - ``truncate``: send ``after_bytes`` of a CSV body, then close cleanly without the final chunk.
    """

    endpoint: str = "*"
    kind: FaultKind = "status"
    status: int = 503
    count: int = 1
    skip: int = 0
    retry_after: str | None = None
    seconds: float = 0.0
    after_bytes: int = 0
    workspace: str | None = None

    def matches(self, endpoint: str, workspace: str | None, kinds: frozenset[str]) -> bool:
        return (
            self.count > 0
            and self.kind in kinds
            and self.endpoint in ("*", endpoint)
            and self.workspace in (None, workspace)
        )


@dataclass
class EmulatorConfig:
    users: dict[str, str] = field(default_factory=lambda: {DEMO_EMAIL: DEMO_PASSWORD})
    workspaces: dict[str, Workspace] = field(default_factory=lambda: {DEMO_WORKSPACE: Workspace()})
    pending_polls: int = 2  # answers 202 this many times before the CSV is ready...
    pending_seconds: float = 0.0  # ...and for at least this long after the export started
    # when set, each export's wait is drawn from this range instead (seeded by the export id)
    pending_seconds_range: tuple[float, float] | None = None
    tt_ttl: float = 600.0
    tt_max_uses: int | None = None  # a TT stops working after this many requests (None: no limit)
    sst_ttl: float = 14 * 24 * 3600.0
    faults: list[Fault] = field(default_factory=list)
    # filters: "today" for floating date ranges (None: the real date, in UTC, the workspace's zone)
    today: dt.date | None = None
    # statuses each validElements lookup answers before its result: (202,) a poll, (303,) a
    # redirect, (202, 303) both; the client must follow them
    valid_elements_detour: tuple[int, ...] = ()
    valid_elements_max_page: int = 1000  # the most values one validElements page holds


def airflow_connection(url: str, *, password: str = DEMO_PASSWORD, **extra: Any) -> str:
    """The ``flex_insights`` connection for an emulator at ``url``, as ``AIRFLOW_CONN_...`` JSON."""
    document = {
        "conn_type": "flex_insights",
        "host": url,
        "login": DEMO_EMAIL,
        "password": password,
        "extra": {"workspace_id": DEMO_WORKSPACE, **extra},
    }
    return json.dumps(document)


@dataclass
class RequestRecord:
    """One request as the emulator saw it (never with a password or a token)."""

    endpoint: (
        str  # login, token, profile, logout, identifiers, execute (start an export), export (poll/download),
        # query (the report list), object (object lookups)
    )
    method: str
    path: str
    status: int
    user_agent: str
    at: float
    body: Any = None


@dataclass
class _Export:
    workspace_id: str
    report_id: str
    date_from: str
    date_to: str
    query: str
    created: float
    ready_after: float  # seconds after creation before the result is ready
    polls: int = 0
    where: dict[str, frozenset[str]] = field(default_factory=dict)  # list filters: column -> values


@dataclass
class _Login:
    email: str
    profile_id: str
    expires: float


class _Hangup(Exception):
    """Control flow: the connection was cut on purpose (a fault)."""


class _Reject(Exception):
    """Control flow: answer with a GoodData error instead of serving the request."""

    def __init__(self, status: int, message: str, *params: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.params, self.headers = status, message, params, headers or {}


class EmulatorState:
    """Everything the server knows, behind one lock (the server is threaded)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.logins: dict[str, _Login] = {}  # SST -> login
        self.tts: dict[str, tuple[str, float]] = {}  # TT -> (SST, expiry)
        self.tt_uses: dict[str, int] = {}
        self.exports: dict[str, _Export] = {}
        self.element_lookups: dict[str, tuple[list[int], Any]] = {}  # task -> (statuses left, answer)
        self.requests: list[RequestRecord] = []
        self.issued_secrets: set[str] = set()
        self.logouts = 0
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def expire_tokens(self, *, sessions: bool) -> None:
        """Expire every TT (as ten minutes would), and every SST too if ``sessions``."""
        with self.lock:
            self.tts.clear()
            if sessions:
                self.logins.clear()

    def label_uri(self, workspace_id: str) -> str:
        return f"/gdc/md/{workspace_id}/obj/{1000 + sum(workspace_id.encode()) % 9000}"

    def identifier_uri(self, workspace_id: str, identifier: str) -> str:
        """The URI ``identifiers`` gives: an attribute label's own, else the date label's."""
        label = self.config.workspaces[workspace_id].labels.get(identifier)
        return label.uri(workspace_id) if label is not None else self.label_uri(workspace_id)

    def today(self) -> dt.date:
        return self.config.today or dt.datetime.now(dt.UTC).date()


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

    # --- plumbing -----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self.request_id = f"emu-{self.state.next_id()}:{secrets.token_hex(4)}"
        self._logged_body: Any = None
        self.endpoint = "unknown"
        url = urlsplit(self.path)
        try:
            raw = self._read_body()
            route = self._route(url.path)
            self._inject_fault()
            route(url, raw)
        except _Reject as reject:
            self._send_error(reject)
        except (BrokenPipeError, ConnectionResetError, _Hangup):
            self.close_connection = True

    def _take_fault(self, kinds: frozenset[str]) -> Fault | None:
        """The first armed fault of these kinds for this request, consumed (after its skips)."""
        workspace = self.match.groupdict().get("ws")
        with self.state.lock:
            for fault in self.state.config.faults:
                if fault.matches(self.endpoint, workspace, kinds):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.count -= 1
                    return fault
        return None

    def _inject_fault(self) -> None:
        fault = self._take_fault(frozenset({"status", "expire_tt", "expire_sst", "delay", "gone"}))
        if fault is None:
            return
        if fault.kind == "delay":
            time.sleep(fault.seconds)
        elif fault.kind in ("expire_tt", "expire_sst"):
            self.state.expire_tokens(sessions=fault.kind == "expire_sst")
        elif fault.kind == "gone":
            with self.state.lock:
                self.state.exports.pop(self.match.groupdict().get("id") or "", None)
            raise _Reject(410, "Export result %s has expired", self.path)
        else:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            message = (
                "Too many requests, wait one minute"
                if fault.status == 429
                else HTTPStatus(fault.status).phrase
            )
            raise _Reject(fault.status, message, headers=headers)

    def _start_response(self, status: int) -> None:
        """Log the request, then send the status line: a client never sees an answer not yet logged."""
        if self.endpoint != "control":
            user_agent = self.headers.get("User-Agent", "")
            record = RequestRecord(self.endpoint, self.command, self.path, status, user_agent, time.time())
            record.body = self._logged_body
            with self.state.lock:
                self.state.requests.append(record)
        self.send_response(status)
        self.send_header("X-GDC-Request", self.request_id)

    def _route(self, path: str) -> Any:
        routes: list[tuple[str, str, str, Any]] = [
            ("login", "POST", r"/gdc/account/login", self._login),
            ("logout", "DELETE", r"/gdc/account/login/(?P<profile>[^/]+)", self._logout),
            ("token", "GET", r"/gdc/account/token", self._token),
            ("profile", "GET", r"/gdc/account/profile/current", self._profile),
            ("identifiers", "POST", r"/gdc/md/(?P<ws>[^/]+)/identifiers", self._identifiers),
            ("execute", "POST", r"/gdc/app/projects/(?P<ws>[^/]+)/execute/raw", self._start_export),
            ("export", "GET", r"/gdc/projects/(?P<ws>[^/]+)/execute/raw/(?P<id>[^/]+)", self._export_result),
            (
                "elements",
                "POST",
                r"/gdc/md/(?P<ws>[^/]+)/obj/(?P<label>\d+)/validElements",
                self._valid_elements,
            ),
            (
                "elements",
                "GET",
                r"/gdc/md/(?P<ws>[^/]+)/obj/(?P<label>\d+)/validElements/tasks/(?P<task>\w+)(?P<result>/result)?",
                self._valid_elements_task,
            ),
            ("query", "GET", r"/gdc/md/(?P<ws>[^/]+)/query/reports", self._query_reports),
            ("object", "GET", r"/gdc/md/(?P<ws>[^/]+)/obj/(?P<obj>[^/]+)", self._object),
            ("control", "GET", r"/_emulator/requests", self._control_requests),
            ("control", "GET", r"/_emulator/state", self._control_state),
            ("control", "GET", r"/_emulator/exports", self._control_exports),
        ]
        for endpoint, method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and method == self.command:
                self.match, self.endpoint = match, endpoint
                return handler
        raise _Reject(404, "Resource %s not found", path)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise _Reject(411, "Request bodies must have a Content-Length")
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self, raw: bytes) -> Any:
        if "application/json" not in (self.headers.get("Content-Type") or ""):
            raise _Reject(400, "Content-Type must be application/json")
        try:
            return json.loads(raw)
        except ValueError:
            raise _Reject(400, "Malformed JSON request body") from None

    def _send(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self._start_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status != 204:
            self.wfile.write(body)

    def _send_json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(document).encode(), headers=headers)

    def _send_error(self, reject: _Reject) -> None:
        error = {
            "errorClass": "com.gooddata.webapp.exception",
            "component": "Webapp",
            "message": reject.message,
            "parameters": list(reject.params),
            "requestId": self.request_id,
        }
        # GoodData uses both shapes; the login failure is the bare one.
        document = error if reject.status == 401 else {"error": error}
        self._send_json(reject.status, document, reject.headers)

    # --- authentication -----------------------------------------------------------------------

    def _token_from(self, header: str, cookie: str) -> str | None:
        if value := self.headers.get(header):
            return value
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == cookie:
                return value
        return None

    def _require_sst(self) -> tuple[str, _Login]:
        sst = self._token_from("X-GDC-AuthSST", "GDCAuthSST")
        with self.state.lock:
            login = self.state.logins.get(sst or "")
            if sst is None or login is None or login.expires < time.time():
                raise _Reject(
                    401,
                    "Unauthorized: SST missing, expired or deleted",
                    headers={"WWW-Authenticate": SST_CHALLENGE},
                )
            return sst, login

    def _require_tt(self) -> _Login:
        tt = self._token_from("X-GDC-AuthTT", "GDCAuthTT")
        with self.state.lock:
            sst, expires = self.state.tts.get(tt or "", ("", 0.0))
            login = self.state.logins.get(sst)
            uses = self.state.tt_uses[tt or ""] = self.state.tt_uses.get(tt or "", 0) + 1
            limit = self.state.config.tt_max_uses
            if login is None or expires < time.time() or (limit is not None and uses > limit):
                raise _Reject(
                    401, "Unauthorized: TT missing or expired", headers={"WWW-Authenticate": TT_CHALLENGE}
                )
            return login

    def _login(self, url: Any, raw: bytes) -> None:
        body = self._json_body(raw)
        request = body.get("postUserLogin") if isinstance(body, dict) else None
        expected = {"login", "password", "remember", "verify_level"}
        if not isinstance(request, dict) or set(request) != expected or request["verify_level"] != 2:
            raise _Reject(400, "Expected postUserLogin with login, password, remember and verify_level 2")
        self._logged_body = {"postUserLogin": {**request, "password": "***"}}
        users = self.state.config.users
        if users.get(request["login"]) != request["password"]:
            raise _Reject(
                401, "Bad Login or Password!", headers={"WWW-Authenticate": 'GoodData realm="GoodData API"'}
            )
        sst = secrets.token_urlsafe(24)
        profile_id = secrets.token_hex(16)
        with self.state.lock:
            self.state.logins[sst] = _Login(
                request["login"], profile_id, time.time() + self.state.config.sst_ttl
            )
            self.state.issued_secrets.add(sst)
        profile = f"/gdc/account/profile/{profile_id}"
        self._send_json(
            200,
            {"userLogin": {"profile": profile, "state": f"/gdc/account/login/{profile_id}", "token": sst}},
        )

    def _token(self, url: Any, raw: bytes) -> None:
        sst, _ = self._require_sst()
        tt = secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.tts[tt] = (sst, time.time() + self.state.config.tt_ttl)
            self.state.issued_secrets.add(tt)
        self._send_json(200, {"userToken": {"token": tt}})

    def _profile(self, url: Any, raw: bytes) -> None:
        login = self._require_tt()
        profile = f"/gdc/account/profile/{login.profile_id}"
        self._send_json(200, {"accountSetting": {"login": login.email, "links": {"self": profile}}})

    def _logout(self, url: Any, raw: bytes) -> None:
        sst, login = self._require_sst()
        if login.profile_id != self.match["profile"]:
            raise _Reject(403, "Cannot log out another user's session")
        with self.state.lock:
            del self.state.logins[sst]
            for tt in [tt for tt, (owner, _) in self.state.tts.items() if owner == sst]:
                del self.state.tts[tt]
            self.state.logouts += 1
        self._send(204)

    # --- workspace API ------------------------------------------------------------------------

    def _workspace(self) -> tuple[str, Workspace]:
        workspace_id: str = self.match["ws"]
        workspace = self.state.config.workspaces.get(workspace_id)
        if workspace is None:
            raise _Reject(404, "Project '%s' does not exist or you have no access to it", workspace_id)
        return workspace_id, workspace

    def _identifiers(self, url: Any, raw: bytes) -> None:
        self._require_tt()
        workspace_id, workspace = self._workspace()
        body = self._json_body(raw)
        identifiers = body.get("identifierToUri") if isinstance(body, dict) else None
        if not isinstance(identifiers, list) or not all(isinstance(i, str) for i in identifiers):
            raise _Reject(400, "Expected identifierToUri: a list of identifiers")
        self._logged_body = body
        found = [
            {"identifier": i, "uri": self.state.identifier_uri(workspace_id, i)}
            for i in identifiers
            if i in workspace.identifiers
        ]
        self._send_json(200, {"identifiers": found})

    def _start_export(self, url: Any, raw: bytes) -> None:
        self._require_tt()
        workspace_id, workspace = self._workspace()
        reports = workspace.reports
        body = self._json_body(raw)
        self._logged_body = body
        request = body.get("report_req") if isinstance(body, dict) else None
        if not isinstance(request, dict) or set(request) - {"report", "context"} or "report" not in request:
            raise _Reject(400, "Expected report_req with report and optional context")
        match = re.fullmatch(rf"/gdc/md/{workspace_id}/obj/(\d+)", str(request["report"]))
        if match is None:
            raise _Reject(
                400, "Report URI %s is not an object of project %s", str(request["report"]), workspace_id
            )
        report_id = match[1]
        if report_id not in reports:
            raise _Reject(404, "Object %s not found", str(request["report"]))
        date_from, date_to, where = self._export_filters(workspace_id, workspace, request.get("context", {}))
        export_id, query = secrets.token_hex(8), f"q={secrets.token_hex(6)}&c={secrets.token_hex(10)}"
        config = self.state.config
        ready_after = config.pending_seconds
        if config.pending_seconds_range is not None:
            ready_after = random.Random(export_id).uniform(*config.pending_seconds_range)
        with self.state.lock:
            self.state.exports[export_id] = _Export(
                workspace_id, report_id, date_from, date_to, query, time.time(), ready_after, where=where
            )
        uri = f"/gdc/projects/{workspace_id}/execute/raw/{export_id}?{query}"
        self._send_json(201, {"uri": uri}, {"Location": uri})

    def _export_filters(
        self, workspace_id: str, workspace: Workspace, context: Any
    ) -> tuple[str, str, dict[str, frozenset[str]]]:
        """The days and the row selection of ``context.filters``, checked as strictly as GoodData."""
        filters = context.get("filters", []) if isinstance(context, dict) else None
        if not isinstance(filters, list):
            raise _Reject(400, "context.filters must be a list")
        date_range = DEFAULT_DATE_RANGE
        where: dict[str, frozenset[str]] = {}
        labels = {
            label.uri(workspace_id): label
            for identifier, label in workspace.labels.items()
            if identifier in workspace.identifiers
        }
        seen: set[str] = set()
        for item in filters:
            if not isinstance(item, dict) or set(item) != {"uri", "constraint"}:
                raise _Reject(400, "Each filter needs exactly uri and constraint")
            uri = str(item["uri"])
            if uri in seen:
                raise _Reject(400, "Attribute display form %s is filtered twice", uri)
            seen.add(uri)
            if uri in labels:
                where[labels[uri].column] = self._element_list(workspace_id, labels[uri], item["constraint"])
                continue
            known = DATE_IDENTIFIER in workspace.identifiers
            if not known or uri != self.state.label_uri(workspace_id):
                raise _Reject(400, "Attribute display form %s not found", uri)
            date_range = self._date_constraint(item["constraint"])
        return *date_range, where

    def _date_constraint(self, constraint: Any) -> tuple[str, str]:
        if isinstance(constraint, dict) and constraint.get("type") == "floating":
            return self._floating(constraint)
        return self._interval(constraint)

    def _floating(self, constraint: dict[str, Any]) -> tuple[str, str]:
        """Days relative to the emulator's today (the workspace's time zone is UTC here)."""
        bounds = constraint.get("from"), constraint.get("to")
        if set(constraint) != {"type", "from", "to"} or not all(
            isinstance(b, int) and not isinstance(b, bool) for b in bounds
        ):
            raise _Reject(400, "Expected a floating constraint with type and whole-number from and to")
        start, end = constraint["from"], constraint["to"]
        if start > end:
            raise _Reject(400, "Floating range from %s is after to %s", str(start), str(end))
        today = self.state.today()
        return (today + dt.timedelta(days=start)).isoformat(), (today + dt.timedelta(days=end)).isoformat()

    @staticmethod
    def _element_list(workspace_id: str, label: Label, constraint: Any) -> frozenset[str]:
        """The titles a list constraint keeps; every element must be a value of the label's attribute."""
        if (
            not isinstance(constraint, dict)
            or constraint.get("type") != "list"
            or set(constraint)
            != {
                "type",
                "elements",
            }
        ):
            raise _Reject(
                400, "Expected a list constraint with type and elements on %s", label.uri(workspace_id)
            )
        elements = constraint["elements"]
        if not isinstance(elements, list) or not elements:
            raise _Reject(400, "A list constraint needs a non-empty list of element URIs")
        titles = {label.element_uri(workspace_id, title): title for title in label.titles}
        for element in elements:
            if element not in titles:
                raise _Reject(400, "Element %s is not a value of %s", str(element), label.uri(workspace_id))
        return frozenset(titles[element] for element in elements)

    @staticmethod
    def _interval(constraint: Any) -> tuple[str, str]:
        if (
            not isinstance(constraint, dict)
            or constraint.get("type") != "interval"
            or set(constraint)
            != {
                "type",
                "from",
                "to",
            }
        ):
            raise _Reject(400, "Expected an interval constraint with type, from and to")
        try:
            start = dt.date.fromisoformat(constraint["from"])
            end = dt.date.fromisoformat(constraint["to"])
        except (TypeError, ValueError):
            raise _Reject(400, "Interval bounds must be dates written YYYY-MM-DD") from None
        if start > end:
            raise _Reject(400, "Interval from %s is after to %s", str(start), str(end))
        return start.isoformat(), end.isoformat()

    # --- label values: validElements (by title, or all of them, in pages) ----------------------

    def _valid_elements(self, url: Any, raw: bytes) -> None:
        self._require_tt()
        workspace_id, label = self._label()
        body = self._json_body(raw)
        self._logged_body = body
        request = body.get("validElementsRequest") if isinstance(body, dict) else None
        if not isinstance(request, dict) or set(request) - {"titles"}:
            raise _Reject(400, "Expected validElementsRequest with optional titles")
        titles = request.get("titles")
        if titles is not None and (
            not isinstance(titles, list) or not all(isinstance(t, str) for t in titles)
        ):
            raise _Reject(400, "validElementsRequest.titles must be a list of strings")
        answer = self._element_page(workspace_id, label, titles, url.query)
        detour = list(self.state.config.valid_elements_detour)
        if not detour:
            self._send_json(200, answer)
            return
        task = secrets.token_hex(6)
        with self.state.lock:
            self.state.element_lookups[task] = (detour, answer)
        self._element_detour(task)

    def _valid_elements_task(self, url: Any, raw: bytes) -> None:
        """Where a detoured lookup is polled (202) or redirected (303), until its answer."""
        self._require_tt()
        with self.state.lock:
            statuses, answer = self.state.element_lookups.get(self.match["task"], ([], None))
        if answer is None:
            raise _Reject(404, "Task %s not found", self.match["task"])
        if statuses and not self.match["result"]:
            self._element_detour(self.match["task"])
            return
        self._send_json(200, answer)

    def _element_detour(self, task: str) -> None:
        with self.state.lock:
            status = self.state.element_lookups[task][0].pop(0)
        task_uri = f"{self.path.split('?')[0].split('/validElements')[0]}/validElements/tasks/{task}"
        location = task_uri if status == 202 else f"{task_uri}/result"
        self._send_json(status, {"uri": location}, {"Location": location})

    def _label(self) -> tuple[str, Label]:
        workspace_id, workspace = self._workspace()
        for identifier, label in workspace.labels.items():
            if identifier in workspace.identifiers and str(label.object_id) == self.match["label"]:
                return workspace_id, label
        raise _Reject(
            404, "Attribute display form %s not found", f"/gdc/md/{workspace_id}/obj/{self.match['label']}"
        )

    def _element_page(self, workspace_id: str, label: Label, titles: list[str] | None, query: str) -> Any:
        """One page of values: those with these titles (exact matches), or all; GoodData's paging."""
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            offset = int(params.get("offset", "0"))
            limit = min(int(params.get("limit", "100")), self.state.config.valid_elements_max_page)
        except ValueError:
            raise _Reject(400, "offset and limit must be whole numbers") from None
        matching = [t for t in label.titles if titles is None or t in titles]
        page = matching[offset : offset + limit]
        items = [{"element": {"uri": label.element_uri(workspace_id, t), "title": t}} for t in page]
        paging: dict[str, Any] = {"offset": offset, "count": len(page), "total": len(matching)}
        if offset + len(page) < len(matching):
            path = self.path.split("?")[0].split("/validElements")[0]
            paging["next"] = f"{path}/validElements?offset={offset + len(page)}&limit={limit}"
        return {"validElements": {"items": items, "paging": paging}}

    def _export_result(self, url: Any, raw: bytes) -> None:
        self._require_tt()
        workspace_id, workspace = self._workspace()
        with self.state.lock:
            export = self.state.exports.get(self.match["id"])
            if export is None or export.workspace_id != workspace_id:
                raise _Reject(404, "Export %s not found", self.match["id"])
            if url.query != export.query:
                raise _Reject(400, "Export URI query string missing or altered (expected the URI as given)")
            export.polls += 1
            config = self.state.config
            ready = export.polls > config.pending_polls and time.time() - export.created >= export.ready_after
        uri = f"{url.path}?{url.query}"
        if not ready:
            self._send_json(202, {"uri": uri})
            return
        report = workspace.reports[export.report_id]
        if report.kind == "empty":
            self._send(204)
            return
        self._stream_csv(export, report)

    def _stream_csv(self, export: _Export, report: Report) -> None:
        self._start_response(200)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Content-Disposition", f'attachment; filename="report-{export.report_id}.csv"')
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        start, end = dt.date.fromisoformat(export.date_from), dt.date.fromisoformat(export.date_to)
        if report.kind == "bulk":
            blocks = data.iter_bulk_report(export.workspace_id, export.report_id, start, report.size_bytes)
        else:
            blocks = data.iter_report(export.workspace_id, export.report_id, start, end, export.where)
        fault = self._take_fault(BODY_FAULTS)
        budget = fault.after_bytes if fault else None
        for block in blocks:
            if budget is not None and len(block) >= budget:
                self._cut(fault, b"%x\r\n%s" % (len(block), block[:budget]))
            if budget is not None:
                budget -= len(block)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
        self.wfile.write(b"0\r\n\r\n")

    def _cut(self, fault: Fault | None, last_bytes: bytes) -> None:
        """Send ``last_bytes``, then cut the connection: a reset (RST) or a clean close mid-body."""
        self.wfile.write(last_bytes)
        self.wfile.flush()
        if fault is not None and fault.kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            self.connection.shutdown(socket.SHUT_WR)
        raise _Hangup

    # --- metadata API: report listing and object lookups (discovery) --------------------------

    def _query_reports(self, url: Any, raw: bytes) -> None:
        self._require_tt()
        workspace_id, workspace = self._workspace()
        entries = [
            {
                "link": f"/gdc/md/{workspace_id}/obj/{report_id}",
                **_report_meta(workspace_id, report_id, report),
            }
            for report_id, report in sorted(workspace.reports.items())
        ]
        meta = {
            "summary": f"Metadata Query Resources for project '{workspace_id}'",
            "title": "Metadata Query Resources",
            "category": "MD::Query::Object",
        }
        self._send_json(200, {"query": {"entries": entries, "meta": meta}})

    def _object(self, url: Any, raw: bytes) -> None:
        """``obj/{id}`` (reports and the labels of known identifiers) or ``obj/identifier:{identifier}``."""
        self._require_tt()
        workspace_id, workspace = self._workspace()
        labels = self._label_objects(workspace_id, workspace)
        key: str = self.match["obj"]
        if key.startswith("identifier:"):
            by_identifier = {ident: obj for obj, ident in labels.items()}
            by_identifier.update({_report_identifier(workspace_id, r): r for r in workspace.reports})
            key = by_identifier.get(key.removeprefix("identifier:"), "")
        uri = f"/gdc/md/{workspace_id}/obj/{key}"
        if key in workspace.reports:
            meta = {"uri": uri, **_report_meta(workspace_id, key, workspace.reports[key])}
            self._send_json(200, {"report": {"content": {"definitions": [], "domains": []}, "meta": meta}})
        elif key in labels:
            label = workspace.labels.get(labels[key])
            meta = _label_meta(uri, labels[key], label.column if label else None)
            self._send_json(200, {"attributeDisplayForm": {"content": {"default": 1}, "meta": meta}})
        else:
            raise _Reject(404, "Object %s not found", f"/gdc/md/{workspace_id}/obj/{self.match['obj']}")

    def _label_objects(self, workspace_id: str, workspace: Workspace) -> dict[str, str]:
        """Object id -> identifier of the labels the workspace knows (the URIs ``identifiers`` gives).

        Identifiers without a label of their own share the date label's URI; the date one names it.
        """
        uris = {i: self.state.identifier_uri(workspace_id, i) for i in workspace.identifiers}
        by_date_last = sorted(uris.items(), key=lambda item: (item[0] == DATE_IDENTIFIER, item[0]))
        return {uri.rsplit("/", 1)[-1]: identifier for identifier, uri in by_date_last}

    # --- control API (for tests running the emulator in another process) ----------------------

    def _control_requests(self, url: Any, raw: bytes) -> None:
        with self.state.lock:
            records = [asdict(r) for r in self.state.requests]
        self._send_json(200, records)

    def _control_exports(self, url: Any, raw: bytes) -> None:
        with self.state.lock:
            document = {
                f"/gdc/projects/{e.workspace_id}/execute/raw/{export_id}?{e.query}": {
                    "ready_at": e.created + e.ready_after,
                    "polls": e.polls,
                }
                for export_id, e in self.state.exports.items()
            }
        self._send_json(200, document)

    def _control_state(self, url: Any, raw: bytes) -> None:
        with self.state.lock:
            document = {"live_sessions": len(self.state.logins), "logouts": self.state.logouts}
        self._send_json(200, document)


# --- metadata API documents (discovery) -------------------------------------------------------------

AUTHOR_PROFILE = "/gdc/account/profile/flexinsightsreportsauthor000001"
LABEL_TITLES = {DATE_IDENTIFIER: "Date (mm/dd/yyyy)"}


def _report_identifier(workspace_id: str, report_id: str) -> str:
    """A stable, GoodData-like 12-character identifier for a report (the real ones are random)."""
    return "a" + hashlib.sha256(f"{workspace_id}/{report_id}".encode()).hexdigest()[:11]


def _report_meta(workspace_id: str, report_id: str, report: Report) -> dict[str, Any]:
    """The ``meta`` fields GoodData gives a report, both in ``query/reports`` and in ``obj/{id}``."""
    return {
        "author": AUTHOR_PROFILE,
        "contributor": AUTHOR_PROFILE,
        "created": report.updated,
        "updated": report.updated,
        "title": report.title,
        "summary": report.summary,
        "identifier": _report_identifier(workspace_id, report_id),
        "category": "report",
        "tags": "",
        "deprecated": "0",
        "isProduction": 1,
        "locked": 0,
        "unlisted": 0,
    }


def _label_meta(uri: str, identifier: str, column: str | None) -> dict[str, Any]:
    """A label's ``meta``: titled like the report column it selects by (the date: its format)."""
    return {
        "uri": uri,
        "author": AUTHOR_PROFILE,
        "created": "2023-06-01 00:00:00",
        "updated": "2023-06-01 00:00:00",
        "title": LABEL_TITLES.get(identifier) or column or identifier,
        "summary": "",
        "identifier": identifier,
        "category": "attributeDisplayForm",
        "deprecated": "0",
        "isProduction": 1,
    }


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
