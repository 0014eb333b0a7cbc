"""The Flex Insights (GoodData "gdc") export API as data: requests to build, answers to read.

This module is the only one that knows paths, JSON shapes, headers and status codes. It performs no
I/O: :mod:`.session` drives these messages through a transport, so the sync hook and the async
trigger share every decision made here. ``docs/wire.md`` describes the API as this module speaks it,
each fact with its source in recorded live traffic.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import SplitResult, quote, urljoin, urlsplit

from airflow_provider_flexinsights.library.exceptions import (
    FlexInsightsApiError,
    FlexInsightsAuthError,
    FlexInsightsNotFoundError,
    FlexInsightsTransientError,
)

DEFAULT_BASE_URL = "https://analytics.ytica.com"
DATE_IDENTIFIER = "date.date.mmddyyyy"

SST_HEADER = "X-GDC-AuthSST"
TT_HEADER = "X-GDC-AuthTT"
REQUEST_ID_HEADER = "X-GDC-Request"

LOGIN_PATH = "/gdc/account/login"
TOKEN_PATH = "/gdc/account/token"

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class Auth(enum.Enum):
    """Which token a request carries."""

    NONE = "none"
    SST = "sst"
    TT = "tt"


SuccessBody = Literal["read", "stream", "discard"]
"""What a transport does with the body of a 200 answer: read it, hand it over open, or drop it.

Other answers are always read whole: they are small (errors, 202 "still computing").
"""


@dataclass(frozen=True)
class Request:
    """One HTTP request, relative to the connection's base URL.

    ``action`` completes "Flex Insights could not ..." in error messages, so every failure says
    what the provider was doing, for which workspace and report.
    """

    method: str
    path: str
    action: str
    auth: Auth = Auth.TT
    json: Mapping[str, Any] | None = field(default=None, repr=False)  # the login's holds the password
    success_body: SuccessBody = "read"

    def __post_init__(self) -> None:
        check_path(self.path)  # whatever made it, a request never names another host


class OpenBody(Protocol):
    """A body the transport still holds open (``success_body="stream"``): the protocol and the
    export job only carry it and may close it; only the transport that made it reads it
    (``transport.SyncTransport.open_body``), so no I/O type leaks into this module."""

    def close(self) -> None: ...


@dataclass
class Reply:
    """An HTTP answer. ``stream`` is the transport's open body when ``success_body`` was "stream".

    ``url`` is the absolute URL the answer came from (the transport's), so a redirect's
    ``Location`` can be checked against its host.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    stream: OpenBody | None = field(default=None, repr=False)
    url: str = ""

    @property
    def request_id(self) -> str | None:
        return _header(self.headers, REQUEST_ID_HEADER)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as err:
            raise FlexInsightsApiError.from_reply(
                f"Flex Insights answered HTTP {self.status} with a body that is not JSON", self
            ) from err


# --- Requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """An Analytics Portal user's login: built by validation from a connection, used by the session."""

    email: str
    password: str = field(repr=False)


def login(email: str, password: str) -> Request:
    body = {"postUserLogin": {"login": email, "password": password, "remember": 0, "verify_level": 2}}
    return Request("POST", LOGIN_PATH, "log in", auth=Auth.NONE, json=body)


def mint_temporary_token() -> Request:
    return Request("GET", TOKEN_PATH, "get a temporary token (TT)", auth=Auth.SST)


def current_profile() -> Request:
    """The cheapest authorized call: the logged-in user's own account profile (answered by a 307
    to ``/gdc/account/profile/{id}``, which :func:`redirect_target` follows)."""
    return Request("GET", "/gdc/account/profile/current", "read the current user's profile")


def read_profile_login(reply: Reply) -> str:
    login: str = reply.json()["accountSetting"]["login"]
    return login


def logout(profile_id: str) -> Request:
    """Delete the SST. The service wants a valid TT beside it: a stale one gets the TT challenge."""
    return Request("DELETE", f"{LOGIN_PATH}/{profile_id}", "log out")


def resolve_identifiers(workspace_id: str, identifiers: list[str]) -> Request:
    return Request(
        "POST",
        f"/gdc/md/{workspace_id}/identifiers",
        f"resolve identifiers {', '.join(identifiers)} in workspace {workspace_id}",
        json={"identifierToUri": identifiers},
    )


def report_uri(workspace_id: str, report_id: str) -> str:
    return f"/gdc/md/{workspace_id}/obj/{report_id}"


def report_page_url(base_url: str, workspace_id: str, report_id: str) -> str:
    """The report in the Analytics Portal (the legacy GoodData UI addresses it in the URL fragment)."""
    project = f"/gdc/projects/{workspace_id}"
    return f"{base_url.rstrip('/')}/#s={project}|analysisPage|head|{report_uri(workspace_id, report_id)}"


def date_interval_filter(date_label_uri: str, date_from: str, date_to: str) -> dict[str, Any]:
    """A ``context.filters`` entry keeping the days from ``date_from`` to ``date_to``, both inclusive."""
    return {"uri": date_label_uri, "constraint": {"type": "interval", "from": date_from, "to": date_to}}


def start_raw_export(workspace_id: str, report_id: str, filters: list[dict[str, Any]]) -> Request:
    body = {"report_req": {"report": report_uri(workspace_id, report_id), "context": {"filters": filters}}}
    return Request(
        "POST",
        f"/gdc/app/projects/{workspace_id}/execute/raw",
        f"start the export of report {report_id} in workspace {workspace_id}",
        json=body,
    )


def check_export(export_uri: str, success_body: SuccessBody) -> Request:
    """Poll an export; the answer to the poll that finds it ready *is* the CSV download."""
    return Request("GET", export_uri, f"fetch export {export_uri}", success_body=success_body)


# --- Answers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    sst: str = field(repr=False)
    profile_id: str


_PROFILE_ID = re.compile(r"[A-Za-z0-9_-]+")


def read_login(reply: Reply) -> Login:
    """The SST, and the profile id the logout's path ends with (one plain path segment, checked)."""
    try:
        user_login = reply.json()["userLogin"]
        sst, profile = user_login["token"], user_login["profile"]
        profile_id = profile.rstrip("/").rsplit("/", 1)[-1]
    except (KeyError, TypeError, AttributeError) as err:
        raise _unexpected_shape(reply, "the login") from err
    if not isinstance(sst, str) or not _PROFILE_ID.fullmatch(profile_id):
        raise _unexpected_shape(reply, "the login")
    return Login(sst=sst, profile_id=profile_id)


def read_temporary_token(reply: Reply) -> str:
    token: str = reply.json()["userToken"]["token"]
    return token


def read_identifiers(reply: Reply) -> dict[str, str]:
    """Map identifier to URI; unknown identifiers are simply absent, as the server omits them."""
    return {item["identifier"]: item["uri"] for item in reply.json()["identifiers"]}


def read_export_uri(request: Request, reply: Reply, base_url: str) -> str:
    """The export's path on the base URL, query string included (the server needs it back as it
    gave it); checked by :func:`follow` like any location the server supplies."""
    uri = _uri_in_body(reply) if reply.body else None
    location = uri or _header(reply.headers, "Location")
    if not location:
        raise FlexInsightsApiError.from_reply(
            "Flex Insights accepted the export but sent no export URI", reply
        )
    return follow(location, request, reply, base_url)


class ExportState(enum.Enum):
    PENDING = "pending"
    READY = "ready"
    EMPTY = "empty"


_EXPORT_STATES = {200: ExportState.READY, 202: ExportState.PENDING, 204: ExportState.EMPTY}


def read_export_state(request: Request, reply: Reply) -> ExportState:
    """Only a 200 is a ready export (gooddata-java's ExportService: 200 ready, 202 pending, 204 no
    data); any other answer the flow did not already handle is an error, never a CSV."""
    state = _EXPORT_STATES.get(reply.status)
    if state is None:
        raise error_for(request, reply, hint="This provider expects 200, 202 or 204 here.")
    return state


# --- Filters: floating ranges, value lists, label values (validElements) ---------------------

VALID_ELEMENTS_PAGE_SIZE = 1000
"""Values asked per validElements request; a label with more comes in several pages."""


def floating_date_filter(date_label_uri: str, start: int, end: int) -> dict[str, Any]:
    """A ``context.filters`` entry keeping days ``start``..``end`` relative to the workspace's today."""
    return {"uri": date_label_uri, "constraint": {"type": "floating", "from": start, "to": end}}


def element_list_filter(label_uri: str, element_uris: list[str]) -> dict[str, Any]:
    """A ``context.filters`` entry keeping rows whose value of the label is one of these elements.

    The API documents no negative list, so ``not_in`` is sent as this list of every other value.
    """
    return {"uri": label_uri, "constraint": {"type": "list", "elements": element_uris}}


def valid_elements(
    workspace_id: str,
    label_uri: str,
    label_name: str,
    *,
    offset: int = 0,
    limit: int = VALID_ELEMENTS_PAGE_SIZE,
    text: str | None = None,
) -> Request:
    """One page of a label's values (elements): those whose title contains ``text`` (the ``filter``
    query parameter, a substring match, as GoodData's Ruby client sends it), or all of them.

    The body is the empty ``validElementsRequest`` recorded traffic shows: the service validates
    bodies against a schema, so nothing unrecorded is sent (docs/wire.md, "validElements").
    """
    label_id = label_uri.rstrip("/").rsplit("/", 1)[-1]
    query = f"offset={offset}&limit={limit}" + (f"&filter={quote(text, safe='')}" if text is not None else "")
    return Request(
        "POST",
        f"/gdc/md/{workspace_id}/obj/{label_id}/validElements?{query}",
        f"look up the values of {label_name} in workspace {workspace_id}",
        json={"validElementsRequest": {}},
    )


@dataclass(frozen=True)
class Element:
    """One value of a label: its title as reports show it, and its element URI for filters."""

    title: str
    uri: str


@dataclass(frozen=True)
class ElementPage:
    elements: tuple[Element, ...]
    next_offset: int | None  # None: this was the last page


def read_valid_elements(reply: Reply, offset: int) -> ElementPage:
    """One page of ``validElements.items[].element``; another page follows while ``paging`` says so.

    The service writes ``paging.offset`` and ``paging.total`` as strings and gives no ``next``
    link: the next page starts where this one ends, until ``total`` is reached.
    """
    try:
        document = reply.json()["validElements"]
        elements = tuple(
            Element(item["element"]["title"], item["element"]["uri"]) for item in document["items"]
        )
        paging = document.get("paging") or {}
        total = paging.get("total")
        offset = int(paging.get("offset", offset))
        total = None if total is None else int(total)
    except (KeyError, TypeError, ValueError) as err:
        raise FlexInsightsApiError.from_reply(
            "Flex Insights answered a value lookup in a shape this provider does not know", reply
        ) from err
    reached = offset + len(elements)
    more = bool(elements) and total is not None and reached < total
    return ElementPage(elements, reached if more else None)


REDIRECT_STATUSES = frozenset({303, 307, 308})


def redirect_target(request: Request, reply: Reply, base_url: str) -> Request | None:
    """The request a redirect asks for, or None when ``reply`` is no redirect.

    303 (validElements) is fetched with GET; 307/308 (``profile/current``) repeat the method and
    body. The ``Location`` goes through :func:`follow`: same origin as the base URL, or an error.
    """
    if reply.status not in REDIRECT_STATUSES:
        return None
    location = _header(reply.headers, "Location")
    if not location:
        raise FlexInsightsApiError.from_reply(
            f"Flex Insights could not {request.action}: HTTP {reply.status} redirect without a Location",
            reply,
        )
    path = follow(location, request, reply, base_url)
    if reply.status == 303:
        return Request("GET", path, request.action, auth=request.auth, success_body=request.success_body)
    return Request(request.method, path, request.action, request.auth, request.json, request.success_body)


def poll_target(request: Request, reply: Reply, base_url: str) -> Request | None:
    """The GET that polls an answer still being computed (202), or None when ``reply`` is the answer.

    The poll goes to the ``Location`` if one is given, else to the ``uri`` the body names, else to
    the URI this 202 came from, which after a 303 is the redirected one (GoodData's JS client:
    "validElements returns 303 first with new url which may then return 202 to poll on").
    A POST is never repeated.
    """
    if reply.status != 202:
        return None
    location = _header(reply.headers, "Location") or _uri_in_body(reply)
    path = follow(location, request, reply, base_url) if location else request.path
    return Request("GET", path, request.action, auth=request.auth, success_body=request.success_body)


# --- Locations: the one rule for every URL the server supplies ---------------------------------

_PLAIN_URI = re.compile(r"[!-~]*")  # printable ASCII: no space, no control character, no CR/LF


def request_url(base_url: str, path: str) -> str:
    """The URL a request goes to: the base URL and a path of its own, nothing else.

    Transports build every URL here, and every :class:`Request` checks its path when made: only an
    absolute path of printable ASCII passes, so no text can turn the base URL into another host
    (``@other:8443/x``, ``.evil.test/x``, ``:8443/x``) or one request line into two (CR/LF).
    """
    check_path(path)
    return base_url.rstrip("/") + path


def check_path(path: str) -> None:
    """Refuse, in one sentence, a request path that is not a plain absolute path."""
    if not path.startswith("/") or path.startswith("//") or not _PLAIN_URI.fullmatch(path):
        raise FlexInsightsApiError(
            f"Refusing to send a request to {ascii(path)[:200]}: it is not a path on the connection's base "
            "URL, so tokens could leave it; please report it."
        )


def follow(location: str, request: Request, reply: Reply, base_url: str) -> str:
    """The path on ``base_url`` that ``location``, found in ``reply`` to ``request``, names, or an
    error in one sentence.

    Every location the server supplies (a ``Location`` header, a 202's ``uri``, an export URI, an
    object link) is resolved against the URL the answer came from, as RFC 3986 says, and followed
    only to the base URL's own scheme, host and port (and under its path): a token never travels
    anywhere else. Control characters and spaces are refused; the query is kept byte for byte (the
    export's ``q`` is base64 with escapes the server needs back as it gave them).
    """
    action, source = request.action, reply.url or request_url(base_url, request.path)
    if not _PLAIN_URI.fullmatch(location):
        raise FlexInsightsApiError(
            f"Flex Insights could not {action}: the server pointed to {ascii(location)[:200]}, which holds "
            "spaces, control or non-ASCII characters; this provider does not follow it."
        )
    base = urlsplit(base_url)
    try:
        target = urlsplit(urljoin(source, location))
        same_origin = _origin(target) == _origin(base)
    except ValueError:  # a port that is no number
        target, same_origin = urlsplit(""), False
    prefix = base.path.rstrip("/")
    if not same_origin or not target.path.startswith(prefix + "/"):
        where = target.netloc.rpartition("@")[2] or ascii(location)[:200]
        raise FlexInsightsApiError(
            f"Flex Insights could not {action}: the server pointed to {where}, not to the connection's "
            f"base URL {base_url}; this provider sends its tokens to no other place."
        )
    return target.path[len(prefix) :] + (f"?{target.query}" if target.query else "")


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    default_port = {"http": 80, "https": 443}.get(parts.scheme.lower(), -1)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default_port


def _uri_in_body(reply: Reply) -> str | None:
    """A 202's body may repeat where to poll: ``{"uri": ...}``."""
    try:
        document = json.loads(reply.body)
    except ValueError:
        return None
    uri = document.get("uri") if isinstance(document, dict) else None
    return uri if isinstance(uri, str) else None


# --- Verdicts: what an answer means for the client --------------------------------------------


class Verdict(enum.Enum):
    OK = "ok"
    TT_EXPIRED = "tt_expired"
    SST_EXPIRED = "sst_expired"
    RETRY = "retry"
    FAIL = "fail"


def judge(request: Request, reply: Reply) -> Verdict:
    """Decide on status code and ``WWW-Authenticate`` only, never on body text.

    Success is a 2xx, or a redirect the session follows (303, 307, 308); any other status below 400
    (a 302 to a login page, a 304, a stray 1xx) is no answer this API gives, so it fails.
    """
    if 200 <= reply.status < 300 or reply.status in REDIRECT_STATUSES:
        return Verdict.OK
    if reply.status == 401:
        return _judge_unauthorized(request, reply)
    if reply.status in RETRYABLE_STATUSES:
        return Verdict.RETRY
    return Verdict.FAIL


def _judge_unauthorized(request: Request, reply: Reply) -> Verdict:
    if request.auth is Auth.NONE:
        return Verdict.FAIL  # a 401 on login itself is a bad password: never retried
    challenge = _header(reply.headers, "WWW-Authenticate") or ""
    if request.auth is Auth.SST or "GDCAuthSST" in challenge:
        return Verdict.SST_EXPIRED
    return Verdict.TT_EXPIRED


def retry_after(reply: Reply, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` as seconds or as an HTTP date)."""
    value = _header(reply.headers, "Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for(
    request: Request,
    reply: Reply,
    *,
    hint: str = "",
    error_type: type[FlexInsightsApiError] | None = None,
) -> FlexInsightsApiError:
    """One sentence for a failed request: action, status, server message, request id, what to do."""
    server = server_message(reply.body)
    detail = f": {server}" if server else ""
    message = f"Flex Insights could not {request.action} (HTTP {reply.status}{detail})"
    if reply.status == 401 and request.auth is Auth.NONE:
        return FlexInsightsAuthError.from_reply(
            message,
            reply,
            then=". Check the email (login) and password of the Flex Insights connection; "
            "the login is not retried so the account does not get locked.",
        )
    hint = hint or _default_hint(reply.status)
    if error_type is None:
        error_type = FlexInsightsApiError
        if reply.status in (404, 410):
            error_type = FlexInsightsNotFoundError
        elif reply.status in RETRYABLE_STATUSES:
            error_type = FlexInsightsTransientError
    return error_type.from_reply(message, reply, then=f". {hint}" if hint else ".")


def _default_hint(status: int) -> str:
    if status < 200 or 300 <= status < 400:
        return (
            "This API never answers so; something between this machine and the service (a proxy, a "
            "login page) may be answering instead: check the connection's host."
        )
    if status == 403:
        return "Check that the connection's user has access to this workspace."
    if status in (404, 410):
        return "Check the workspace and report ids (they are in the report's Analytics Portal URL)."
    if status in RETRYABLE_STATUSES:
        return "The service is busy or down; retrying the task later should work."
    return ""


def server_message(body: bytes) -> str:
    """GoodData's error message, with its ``%s`` placeholders filled from ``parameters``."""
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    error = document.get("error", document)
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return ""
    message: str = error["message"]
    parameters = error.get("parameters") or []
    try:
        return message % tuple(str(p) for p in parameters) if "%s" in message else message
    except TypeError:
        return message


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


# --- Discovery: the metadata API (reports, identifiers, objects) ------------------------------

WORKSPACE_HINT = (
    "Check the workspace id (the 32 characters after /projects/ in the Analytics Portal URL) and that "
    "the connection's user has access to it."
)
OBJECT_HINT = "Check the object id (the number after /obj/ in its URI) and the workspace id."


@dataclass(frozen=True)
class ReportSummary:
    """One report of a workspace, as the metadata query lists it (no report content)."""

    id: str
    uri: str
    title: str
    updated: dt.datetime | None  # the server's wall clock; it names no time zone
    identifier: str = ""
    summary: str = ""
    author: str = ""  # the author's profile URI


@dataclass(frozen=True)
class MetadataObject:
    """The ``meta`` of any workspace object: a report, an attribute label, a metric..."""

    id: str
    uri: str
    title: str
    category: str  # "report", "attributeDisplayForm", ...
    identifier: str = ""
    updated: dt.datetime | None = None
    summary: str = ""


def list_reports(workspace_id: str) -> Request:
    return Request(
        "GET", f"/gdc/md/{workspace_id}/query/reports", f"list the reports of workspace {workspace_id}"
    )


def read_object(workspace_id: str, object_id: str) -> Request:
    return Request(
        "GET",
        f"/gdc/md/{workspace_id}/obj/{object_id}",
        f"read object {object_id} in workspace {workspace_id}",
    )


def object_id(uri: str) -> str:
    """The numeric id at the end of an object URI (``/gdc/md/{ws}/obj/3035643`` -> ``3035643``)."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def read_report_list(reply: Reply) -> list[ReportSummary]:
    """The ``query.entries`` of a ``query/reports`` answer, in the server's order."""
    try:
        entries = reply.json()["query"]["entries"]
        return [
            ReportSummary(
                id=object_id(entry["link"]),
                uri=entry["link"],
                title=entry["title"],
                updated=_metadata_time(entry.get("updated")),
                identifier=entry.get("identifier") or "",
                summary=entry.get("summary") or "",
                author=entry.get("author") or "",
            )
            for entry in entries
        ]
    except (KeyError, TypeError, AttributeError) as err:
        raise _unexpected_shape(reply, "the list of reports") from err


def read_metadata_object(reply: Reply) -> MetadataObject:
    """An object answer is ``{CATEGORY: {"meta": {...}, "content": {...}}}``; only ``meta`` is read."""
    try:
        (wrapper,) = reply.json().values()
        meta = wrapper["meta"]
        return MetadataObject(
            id=object_id(meta["uri"]),
            uri=meta["uri"],
            title=meta["title"],
            category=meta["category"],
            identifier=meta.get("identifier") or "",
            updated=_metadata_time(meta.get("updated")),
            summary=meta.get("summary") or "",
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise _unexpected_shape(reply, "the object") from err


def _metadata_time(value: Any) -> dt.datetime | None:
    """GoodData writes ``YYYY-MM-DD HH:MM:SS``; anything else is treated as unknown, not as an error."""
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def _unexpected_shape(reply: Reply, what: str) -> FlexInsightsApiError:
    return FlexInsightsApiError.from_reply(
        f"Flex Insights answered {what} in a shape this provider does not know",
        reply,
        then="; please report it with the request id.",
    )


# --- Report layout: the columns' names and kinds, for typed loads (the warehouse transfer) -------
#
# report -> its last definition -> the grid -> each label, its attribute, and each metric without an
# alias. Shapes and sources: docs/wire.md, "Report metadata"; tests/test_conformance.py pins each.


@dataclass(frozen=True)
class GridItem:
    """One column source of a report's grid: an attribute label or a metric, by object URI."""

    kind: Literal["attribute", "metric"]
    uri: str
    alias: str = ""


@dataclass(frozen=True)
class GridObject:
    """What a typed load needs of an object a grid names (a label, its attribute, a metric).

    ``form_of``: a label's attribute. ``label_type``: a label's ``content.type`` (the date
    dimension's labels say their format: ``GDC.time.day_us``...; other labels have none).
    ``label_types``: an attribute's labels (its ``displayForms``) -> their types.
    """

    uri: str
    category: str
    title: str
    form_of: str = ""
    label_type: str = ""
    label_types: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LayoutColumn:
    """One column of a report as its definition describes it: what it is, the headers the raw
    export may write for it (its alias; without one, its attribute's or metric's title, or its
    label's title: no recording shows which), and for an attribute its label's type."""

    kind: Literal["attribute", "metric"]
    uri: str
    names: tuple[str, ...]
    label_type: str = ""


def read_object_at(uri: str, what: str) -> Request:
    """Any metadata object by its path on the base URL (``/gdc/md/{ws}/obj/{id}``)."""
    return Request("GET", uri, f"read the {what} {uri}")


def read_linked_object(location: str, what: str, *, request: Request, reply: Reply, base_url: str) -> Request:
    """The object a metadata answer links to (a grid's label or metric, a label's attribute): a
    server-supplied location, so it goes through :func:`follow` like every other."""
    return read_object_at(follow(location, request, reply, base_url), what)


def read_report_definition_uri(request: Request, reply: Reply, base_url: str) -> str | None:
    """A report object's current definition: the last of ``content.definitions`` (GoodData appends
    each saved version, as gooddata-ruby's ``latest_report_definition_uri`` reads it), as a path
    on the base URL (:func:`follow`)."""
    try:
        definitions = reply.json()["report"]["content"].get("definitions") or []
    except (KeyError, TypeError, AttributeError) as err:
        raise _unexpected_shape(reply, "the report") from err
    if not definitions:
        return None
    return follow(str(definitions[-1]), request, reply, base_url)


def read_report_grid(reply: Reply) -> tuple[GridItem, ...]:
    """A ``reportDefinition``'s grid: the attribute labels of ``rows``, then those of ``columns``
    (the ``"metricGroup"`` marker skipped), then ``metrics``. This order is only the grid's: the
    raw export's column order is not recorded, so columns are matched by name, never by place."""
    try:
        grid = reply.json()["reportDefinition"]["content"]["grid"]
        attributes = [
            GridItem("attribute", item["attribute"]["uri"], item["attribute"].get("alias") or "")
            for item in [*grid.get("rows", []), *grid.get("columns", [])]
            if isinstance(item, dict) and "attribute" in item
        ]
        metrics = [GridItem("metric", m["uri"], m.get("alias") or "") for m in grid.get("metrics", [])]
    except (KeyError, TypeError, AttributeError) as err:
        raise _unexpected_shape(reply, "the report definition") from err
    return (*attributes, *metrics)


def read_grid_object(reply: Reply) -> GridObject:
    """A label (``attributeDisplayForm``), an attribute or a metric: ``{CATEGORY: {"content", "meta"}}``."""
    try:
        ((category, wrapper),) = reply.json().items()
        content, meta = wrapper.get("content") or {}, wrapper["meta"]
        label_types = {
            form["meta"]["uri"]: str(form["content"]["type"])
            for form in (content.get("displayForms") or [] if category == "attribute" else [])
            if form["content"].get("type")
        }
        return GridObject(
            uri=str(meta["uri"]),
            category=str(category),
            title=str(meta["title"]),
            form_of=str(content.get("formOf") or ""),
            label_type=str(content.get("type") or "") if category == "attributeDisplayForm" else "",
            label_types=label_types,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise _unexpected_shape(reply, "an object of the report's definition") from err


def layout_column(item: GridItem, objects: Mapping[str, GridObject]) -> LayoutColumn:
    """The column ``item`` makes, from the objects read for it (keyed by the grid's URIs and, for a
    label, its ``form_of``). Recorded executions title a column by the alias, else by the
    attribute's title (``reportView`` in the fast-attribute cassette: label "Email", column "Dev");
    the label's own title is kept as a second candidate, since the raw export's is not recorded."""
    if item.kind == "metric":
        metric = objects.get(item.uri)
        return LayoutColumn("metric", item.uri, (item.alias,) if item.alias else _titles(metric))
    label = objects[item.uri]
    attribute = objects.get(label.form_of)
    label_type = label.label_type or (attribute.label_types.get(label.uri, "") if attribute else "")
    names = (item.alias,) if item.alias else _titles(attribute, label)
    return LayoutColumn("attribute", item.uri, names, label_type)


def _titles(*objects: GridObject | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(o.title for o in objects if o is not None and o.title))
