"""Attribute values: ``validElements`` maps a label's values to element URIs, in pages, optionally
by a detour (202 to poll, 303 to follow) as the service answers."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs

from airflow_provider_flexinsights.emulator.auth import require_tt
from airflow_provider_flexinsights.emulator.exchange import Exchange, Reject
from airflow_provider_flexinsights.emulator.model import Label


def valid_elements(exchange: Exchange) -> None:
    require_tt(exchange)
    workspace_id, label = _label(exchange)
    body = exchange.json_body()
    exchange.logged_body = body
    request = body.get("validElementsRequest") if isinstance(body, dict) else None
    if not isinstance(request, dict) or set(request) - {"titles"}:
        raise Reject(400, "Expected validElementsRequest with optional titles")
    titles = request.get("titles")
    if titles is not None and (not isinstance(titles, list) or not all(isinstance(t, str) for t in titles)):
        raise Reject(400, "validElementsRequest.titles must be a list of strings")
    answer = _element_page(exchange, workspace_id, label, titles)
    detour = list(exchange.state.config.valid_elements_detour)
    if not detour:
        exchange.send_json(200, answer)
        return
    task = secrets.token_hex(6)
    with exchange.state.lock:
        exchange.state.element_lookups[task] = (detour, answer)
    _element_detour(exchange, task)


def valid_elements_task(exchange: Exchange) -> None:
    """Where a detoured lookup is polled (202) or redirected (303), until its answer."""
    require_tt(exchange)
    task = exchange.param("task")
    with exchange.state.lock:
        statuses, answer = exchange.state.element_lookups.get(task, ([], None))
    if answer is None:
        raise Reject(404, "Task %s not found", task)
    if statuses and not exchange.optional_param("result"):
        _element_detour(exchange, task)
        return
    exchange.send_json(200, answer)


def _element_detour(exchange: Exchange, task: str) -> None:
    with exchange.state.lock:
        status = exchange.state.element_lookups[task][0].pop(0)
    task_uri = f"{_label_path(exchange)}/validElements/tasks/{task}"
    location = task_uri if status == 202 else f"{task_uri}/result"
    exchange.send_json(status, {"uri": location}, {"Location": location})


def _label_path(exchange: Exchange) -> str:
    return exchange.path.split("?")[0].split("/validElements")[0]


def _label(exchange: Exchange) -> tuple[str, Label]:
    workspace_id, workspace = exchange.workspace()
    for identifier, label in workspace.labels.items():
        if identifier in workspace.identifiers and str(label.object_id) == exchange.param("label"):
            return workspace_id, label
    raise Reject(
        404, "Attribute display form %s not found", f"/gdc/md/{workspace_id}/obj/{exchange.param('label')}"
    )


def _element_page(exchange: Exchange, workspace_id: str, label: Label, titles: list[str] | None) -> Any:
    """One page of values: those with these titles (exact matches), or all; GoodData's paging."""
    params = {k: v[-1] for k, v in parse_qs(exchange.url.query).items()}
    try:
        offset = int(params.get("offset", "0"))
        limit = min(int(params.get("limit", "100")), exchange.state.config.valid_elements_max_page)
    except ValueError:
        raise Reject(400, "offset and limit must be whole numbers") from None
    matching = [t for t in label.titles if titles is None or t in titles]
    page = matching[offset : offset + limit]
    items = [{"element": {"uri": label.element_uri(workspace_id, t), "title": t}} for t in page]
    paging: dict[str, Any] = {"offset": offset, "count": len(page), "total": len(matching)}
    if offset + len(page) < len(matching):
        paging["next"] = f"{_label_path(exchange)}/validElements?offset={offset + len(page)}&limit={limit}"
    return {"validElements": {"items": items, "paging": paging}}
