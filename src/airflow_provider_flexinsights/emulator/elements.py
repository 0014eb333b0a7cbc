"""Attribute values: ``validElements`` maps a label's values to element URIs, in pages.

As recorded (docs/wire.md, "validElements"): the POST may answer 303 to a ``validElements?q=..&c=..``
URI on the same path, whose GET may answer 202 (polled on that URI) before the 200; ``paging``
writes ``offset`` and ``total`` as strings and has no ``next``; the ``filter`` query parameter
keeps titles containing it. A body field no GoodData client sends (``titles``, which one public Flex
solution sends) gets the schema's 400, as any unknown field does.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs

from airflow_provider_flexinsights.emulator.auth import require_tt
from airflow_provider_flexinsights.emulator.exchange import Exchange, Reject, invalid_structure
from airflow_provider_flexinsights.emulator.model import Label

# The fields GoodData's clients send (gooddata-js, gooddata-java, gooddata-ruby).
DOCUMENTED_FIELDS = frozenset(
    {"prompt", "uris", "complement", "includeTotalCountWithoutFilters", "restrictiveDefinition"}
    | {"restrictiveDefinitionContent"}
)


def valid_elements(exchange: Exchange) -> None:
    require_tt(exchange)
    workspace_id, label = _label(exchange)
    body = exchange.json_body()
    exchange.logged_body = body
    _element_request(exchange, body)
    answer = _element_page(exchange, workspace_id, label)
    detour = list(exchange.state.config.valid_elements_detour)
    if not detour:
        exchange.send_json(200, answer)
        return
    task = secrets.token_hex(6)
    with exchange.state.lock:
        exchange.state.element_lookups[task] = (detour, answer)
    _element_detour(exchange, task)


def valid_elements_later(exchange: Exchange) -> None:
    """The URI a detoured lookup was sent to (303) or is polled on (202), until its answer."""
    require_tt(exchange)
    params = parse_qs(exchange.url.query)
    task = (params.get("q") or [""])[-1]
    with exchange.state.lock:
        statuses, answer = exchange.state.element_lookups.get(task, ([], None))
    if answer is None or (params.get("c") or [""])[-1] != _checksum(task):
        raise Reject(400, "validElements query %s is unknown or altered", exchange.url.query)
    if statuses:
        _element_detour(exchange, task)
        return
    exchange.send_json(200, answer)


def _element_request(exchange: Exchange, body: Any) -> dict[str, Any]:
    """The ``validElementsRequest`` object, checked against the schema as the service does."""
    request = (
        body.get("validElementsRequest")
        if isinstance(body, dict) and set(body) == {"validElementsRequest"}
        else None
    )
    if not isinstance(request, dict):
        raise invalid_structure("validElementsRequest", "/validElementsRequest: an object expected")
    unknown = sorted(set(request) - DOCUMENTED_FIELDS)
    if unknown:
        raise invalid_structure("validElementsRequest", f"/validElementsRequest: unknown key '{unknown[0]}'")
    return request


def _element_detour(exchange: Exchange, task: str) -> None:
    """Answer the next detour status: 303 (and a POST's 202) say where; a later 202 does not."""
    with exchange.state.lock:
        status = exchange.state.element_lookups[task][0].pop(0)
    location = f"{_label_path(exchange)}/validElements?q={task}&c={_checksum(task)}"
    if status == 202 and exchange.method == "GET":
        exchange.send_json(202, {"taskState": {"status": "RUNNING"}})
        return
    exchange.send_json(status, {"uri": location}, {"Location": location})


def _checksum(task: str) -> str:
    return hashlib.md5(task.encode()).hexdigest()


def _label_path(exchange: Exchange) -> str:
    return exchange.url.path.split("/validElements")[0]


def _label(exchange: Exchange) -> tuple[str, Label]:
    workspace_id, workspace = exchange.workspace()
    for identifier, label in workspace.labels.items():
        if identifier in workspace.identifiers and str(label.object_id) == exchange.param("label"):
            return workspace_id, label
    raise Reject(
        404, "Attribute display form %s not found", f"/gdc/md/{workspace_id}/obj/{exchange.param('label')}"
    )


def _element_page(exchange: Exchange, workspace_id: str, label: Label) -> Any:
    """One page of values: those containing ``filter``, or all."""
    params = {k: v[-1] for k, v in parse_qs(exchange.url.query).items()}
    try:
        offset = int(params.get("offset", "0"))
        limit = min(int(params.get("limit", "100")), exchange.state.config.valid_elements_max_page)
    except ValueError:
        raise Reject(400, "offset and limit must be whole numbers") from None
    text = params.get("filter", "")
    matching = [t for t in label.titles if text.casefold() in t.casefold()]
    page = matching[offset : offset + limit]
    items = [{"element": {"uri": label.element_uri(workspace_id, t), "title": t}} for t in page]
    meta = {
        "attribute": f"/gdc/md/{workspace_id}/obj/{label.attribute_id}",
        "filter": text,
        "order": params.get("order", "asc"),
        "attributeDisplayForm": label.uri(workspace_id),
    }
    paging = {"count": len(page), "total": str(len(matching)), "offset": str(offset)}
    return {"validElements": {"elementsMeta": meta, "paging": paging, "items": items}}
