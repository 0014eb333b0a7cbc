"""Raw exports: ``execute/raw`` starts one (its filters checked as strictly as GoodData), its URI
answers 202 until ready, then the CSV, chunked (or 204 when the report has no data)."""

from __future__ import annotations

import datetime as dt
import random
import re
import secrets
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from typing import Any

from airflow_provider_flexinsights.emulator import data
from airflow_provider_flexinsights.emulator.auth import require_tt
from airflow_provider_flexinsights.emulator.exchange import Exchange, Hangup, Reject, invalid_structure
from airflow_provider_flexinsights.emulator.model import (
    BODY_FAULTS,
    DATE_IDENTIFIER,
    DEFAULT_DATE_RANGE,
    Fault,
    Label,
    Report,
    Workspace,
)
from airflow_provider_flexinsights.emulator.state import EmulatorState, ExportJob


def start_export(exchange: Exchange) -> None:
    require_tt(exchange)
    workspace_id, workspace = exchange.workspace()
    body = exchange.json_body()
    exchange.logged_body = body
    request = body.get("report_req") if isinstance(body, dict) and set(body) == {"report_req"} else None
    if not isinstance(request, dict) or set(request) - {"report", "context"} or "report" not in request:
        raise invalid_structure("report_req", "Expected report_req with report and optional context")
    if set(request.get("context") or {}) - {"filters"}:
        raise invalid_structure("report_req", "/report_req/context: only filters expected")
    match = re.fullmatch(rf"/gdc/md/{workspace_id}/obj/(\d+)", str(request["report"]))
    if match is None:
        raise Reject(
            400, "Report URI %s is not an object of project %s", str(request["report"]), workspace_id
        )
    report_id = match[1]
    if report_id not in workspace.reports:
        raise Reject(404, "Object %s not found", str(request["report"]))
    state = exchange.state
    date_from, date_to, where = _export_filters(state, workspace_id, workspace, request.get("context", {}))
    export_id, query = secrets.token_hex(8), f"q={secrets.token_hex(6)}&c={secrets.token_hex(10)}"
    ready_after = state.config.pending_seconds
    if state.config.pending_seconds_range is not None:
        ready_after = random.Random(export_id).uniform(*state.config.pending_seconds_range)
    with state.lock:
        state.exports[export_id] = ExportJob(
            workspace_id, report_id, date_from, date_to, query, time.time(), ready_after, where=where
        )
    uri = f"/gdc/projects/{workspace_id}/execute/raw/{export_id}?{query}"
    exchange.send_json(201, {"uri": uri}, {"Location": uri})


def export_result(exchange: Exchange) -> None:
    require_tt(exchange)
    workspace_id, workspace = exchange.workspace()
    state, url = exchange.state, exchange.url
    with state.lock:
        export = state.exports.get(exchange.param("id"))
        if export is None or export.workspace_id != workspace_id:
            raise Reject(404, "Export %s not found", exchange.param("id"))
        if url.query != export.query:
            raise Reject(400, "Export URI query string missing or altered (expected the URI as given)")
        export.polls += 1
        ready = (
            export.polls > state.config.pending_polls and time.time() - export.created >= export.ready_after
        )
    if not ready:
        exchange.send_json(202, {"uri": f"{url.path}?{url.query}"})
        return
    report = workspace.reports[export.report_id]
    if report.kind == "empty":
        exchange.send(204)
        return
    _stream_csv(exchange, export, report)


# --- filters ---------------------------------------------------------------------------------------


def _export_filters(
    state: EmulatorState, workspace_id: str, workspace: Workspace, context: Any
) -> tuple[str, str, dict[str, frozenset[str]]]:
    """The days and the row selection of ``context.filters``, checked as strictly as GoodData."""
    filters = context.get("filters", []) if isinstance(context, dict) else None
    if not isinstance(filters, list):
        raise Reject(400, "context.filters must be a list")
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
            raise Reject(400, "Each filter needs exactly uri and constraint")
        uri = str(item["uri"])
        if uri in seen:
            raise Reject(400, "Attribute display form %s is filtered twice", uri)
        seen.add(uri)
        if uri in labels:
            where[labels[uri].column] = _element_list(workspace_id, labels[uri], item["constraint"])
            continue
        known = DATE_IDENTIFIER in workspace.identifiers
        if not known or uri != state.label_uri(workspace_id):
            raise Reject(400, "Attribute display form %s not found", uri)
        date_range = _date_constraint(state.today(), item["constraint"])
    return *date_range, where


def _date_constraint(today: dt.date, constraint: Any) -> tuple[str, str]:
    if isinstance(constraint, dict) and constraint.get("type") == "floating":
        return _floating(today, constraint)
    return _interval(constraint)


def _floating(today: dt.date, constraint: dict[str, Any]) -> tuple[str, str]:
    """Days relative to the emulator's today (the workspace's time zone is UTC here)."""
    bounds = constraint.get("from"), constraint.get("to")
    if set(constraint) != {"type", "from", "to"} or not all(
        isinstance(b, int) and not isinstance(b, bool) for b in bounds
    ):
        raise Reject(400, "Expected a floating constraint with type and whole-number from and to")
    start, end = constraint["from"], constraint["to"]
    if start > end:
        raise Reject(400, "Floating range from %s is after to %s", str(start), str(end))
    return (today + dt.timedelta(days=start)).isoformat(), (today + dt.timedelta(days=end)).isoformat()


def _element_list(workspace_id: str, label: Label, constraint: Any) -> frozenset[str]:
    """The titles a list constraint keeps; every element must be a value of the label's attribute."""
    if (
        not isinstance(constraint, dict)
        or constraint.get("type") != "list"
        or set(constraint) != {"type", "elements"}
    ):
        raise Reject(400, "Expected a list constraint with type and elements on %s", label.uri(workspace_id))
    elements = constraint["elements"]
    if not isinstance(elements, list) or not elements:
        raise Reject(400, "A list constraint needs a non-empty list of element URIs")
    titles = {label.element_uri(workspace_id, title): title for title in label.titles}
    for element in elements:
        if element not in titles:
            raise Reject(400, "Element %s is not a value of %s", str(element), label.uri(workspace_id))
    return frozenset(titles[element] for element in elements)


def _interval(constraint: Any) -> tuple[str, str]:
    if (
        not isinstance(constraint, dict)
        or constraint.get("type") != "interval"
        or set(constraint) != {"type", "from", "to"}
    ):
        raise Reject(400, "Expected an interval constraint with type, from and to")
    try:
        start = dt.date.fromisoformat(constraint["from"])
        end = dt.date.fromisoformat(constraint["to"])
    except (TypeError, ValueError):
        raise Reject(400, "Interval bounds must be dates written YYYY-MM-DD") from None
    if start > end:
        raise Reject(400, "Interval from %s is after to %s", str(start), str(end))
    return start.isoformat(), end.isoformat()


# --- the CSV body ----------------------------------------------------------------------------------


def _stream_csv(exchange: Exchange, export: ExportJob, report: Report) -> None:
    exchange.start_response(200)
    exchange.send_header("Content-Type", "text/csv; charset=utf-8")
    exchange.send_header("Content-Disposition", f'attachment; filename="report-{export.report_id}.csv"')
    exchange.send_header("Transfer-Encoding", "chunked")
    exchange.end_headers()
    start, end = dt.date.fromisoformat(export.date_from), dt.date.fromisoformat(export.date_to)
    if report.kind == "bulk":
        blocks = data.iter_bulk_report(export.workspace_id, export.report_id, start, report.size_bytes)
    else:
        where, shape = export.where, report.layout.shape
        blocks = data.iter_report(export.workspace_id, export.report_id, start, end, where, shape=shape)
    _send_chunked(exchange, blocks, exchange.take_fault(BODY_FAULTS))


def _send_chunked(exchange: Exchange, blocks: Iterable[bytes], fault: Fault | None) -> None:
    """Frame the body in chunks of the configured size, sent in batches of about ``_WRITE_BYTES``
    straight from the blocks (no bytes joined: the emulator's CPU is not the client's to pay on a
    shared machine); a body fault cuts it (or stalls it) ``after_bytes`` in, mid-chunk."""
    budget = fault.after_bytes if fault else None
    batch: list[bytes | memoryview] = []
    batched = 0
    for parts in _recut(blocks, exchange.state.config.chunk_bytes):
        length = sum(map(len, parts))
        if fault is not None and budget is not None and length >= budget:
            exchange.write_pieces(batch)
            chunk = b"".join(parts)
            head = b"%x\r\n%s" % (len(chunk), chunk[:budget])
            if fault.kind != "stall":
                _cut(exchange, fault, head)
            _stall(exchange, fault, head)
            batch, batched, budget = [chunk[budget:], b"\r\n"], len(chunk) - budget, None
            continue
        if budget is not None:
            budget -= length
        batch += (b"%x\r\n" % length, *parts, b"\r\n")
        batched += length
        if batched >= _WRITE_BYTES:
            exchange.write_pieces(batch)
            batch, batched = [], 0
    exchange.write_pieces([*batch, b"0\r\n\r\n"])


_WRITE_BYTES = 1 << 20  # chunks are framed one by one but sent in writes of about this size


def _recut(blocks: Iterable[bytes], size: int) -> Iterator[list[memoryview]]:
    """The same bytes as ``blocks``, in chunks of exactly ``size`` (the last one may be shorter),
    each given as the views of the blocks it spans: nothing is copied."""
    parts: list[memoryview] = []
    filled = 0
    for block in blocks:
        view = memoryview(block)
        while view:
            part = view[: size - filled]
            parts.append(part)
            filled += len(part)
            view = view[len(part) :]
            if filled == size:
                yield parts
                parts, filled = [], 0
    if parts:
        yield parts


def _stall(exchange: Exchange, fault: Fault, first_bytes: bytes) -> None:
    """Send ``first_bytes`` now and nothing more for ``fault.seconds``: the client is mid-download."""
    exchange.write(first_bytes)
    exchange.handler.wfile.flush()
    time.sleep(fault.seconds)


def _cut(exchange: Exchange, fault: Fault | None, last_bytes: bytes) -> None:
    """Send ``last_bytes``, then cut the connection: a reset (RST) or a clean close mid-body."""
    exchange.write(last_bytes)
    exchange.handler.wfile.flush()
    connection = exchange.handler.connection
    if fault is not None and fault.kind == "reset":
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    else:
        connection.shutdown(socket.SHUT_WR)
    raise Hangup
