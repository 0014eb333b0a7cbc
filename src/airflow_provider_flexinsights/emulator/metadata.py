"""The metadata API: identifiers to URIs, the report list and object lookups (discovery)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from airflow_provider_flexinsights.emulator import data
from airflow_provider_flexinsights.emulator.auth import require_tt
from airflow_provider_flexinsights.emulator.exchange import Exchange, Reject, invalid_structure
from airflow_provider_flexinsights.emulator.model import DATE_IDENTIFIER, Report, Workspace
from airflow_provider_flexinsights.emulator.state import EmulatorState

IDENTIFIER_PATTERN = re.compile(r"^[a-zA-Z0-9_\.]{1,255}$")  # as the recorded 400 quotes it
AUTHOR_PROFILE = "/gdc/account/profile/flexinsightsreportsauthor000001"
LABEL_TITLES = {DATE_IDENTIFIER: "Date (mm/dd/yyyy)"}


def identifiers(exchange: Exchange) -> None:
    require_tt(exchange)
    workspace_id, workspace = exchange.workspace()
    body = exchange.json_body()
    wanted = (
        body.get("identifierToUri") if isinstance(body, dict) and set(body) == {"identifierToUri"} else None
    )
    if not isinstance(wanted, list):
        raise invalid_structure("identifierToUri", "/identifierToUri: a list of identifiers expected")
    for position, identifier in enumerate(wanted, start=1):
        if not isinstance(identifier, str) or not IDENTIFIER_PATTERN.fullmatch(identifier):
            raise invalid_structure(
                "identifierToUri",
                f"/identifierToUri/<list:{position}>/Identifier: STRING|{IDENTIFIER_PATTERN.pattern}| "
                f"does not match with value '{identifier}'",
            )
    exchange.logged_body = body
    found = [
        {"identifier": i, "uri": exchange.state.identifier_uri(workspace_id, i)}
        for i in wanted
        if i in workspace.identifiers
    ]
    exchange.send_json(200, {"identifiers": found})


def query_reports(exchange: Exchange) -> None:
    require_tt(exchange)
    workspace_id, workspace = exchange.workspace()
    entries = [
        {"link": f"/gdc/md/{workspace_id}/obj/{report_id}", **_report_meta(workspace_id, report_id, report)}
        for report_id, report in sorted(workspace.reports.items())
    ]
    meta = {
        "summary": f"Metadata Query Resources for project '{workspace_id}'",
        "title": "Metadata Query Resources",
        "category": "MD::Query::Object",
    }
    exchange.send_json(200, {"query": {"entries": entries, "meta": meta}})


def metadata_object(exchange: Exchange) -> None:
    """``obj/{id}`` (reports and the labels of known identifiers) or ``obj/identifier:{identifier}``."""
    require_tt(exchange)
    workspace_id, workspace = exchange.workspace()
    labels = _label_objects(exchange.state, workspace_id, workspace)
    key = exchange.param("obj")
    if key.startswith("identifier:"):
        by_identifier = {ident: obj for obj, ident in labels.items()}
        by_identifier.update({_report_identifier(workspace_id, r): r for r in workspace.reports})
        key = by_identifier.get(key.removeprefix("identifier:"), "")
    uri = f"/gdc/md/{workspace_id}/obj/{key}"
    if key in workspace.reports:
        meta = {"uri": uri, **_report_meta(workspace_id, key, workspace.reports[key])}
        content = {"definitions": [f"{uri}{DEFINITION_SUFFIX}"], "domains": []}
        exchange.send_json(200, {"report": {"content": content, "meta": meta}})
    elif key.endswith(DEFINITION_SUFFIX) and key.removesuffix(DEFINITION_SUFFIX) in workspace.reports:
        exchange.send_json(200, _report_definition(exchange.state, workspace_id, uri))
    elif key in labels:
        label = workspace.labels.get(labels[key])
        meta = _label_meta(uri, labels[key], label.column if label else None)
        exchange.send_json(200, {"attributeDisplayForm": {"content": {"default": 1}, "meta": meta}})
    else:
        raise Reject(404, "Object %s not found", f"/gdc/md/{workspace_id}/obj/{exchange.param('obj')}")


# --- report definitions: what the loader types columns by ----------------------------------------

DEFINITION_SUFFIX = "1"  # a report's (one) definition is object ``{report id}1``
METRIC_OBJECTS = 21000  # metric n (1-based) of the queue report is object 21000 + n
INTERVAL_LABEL_OBJECT = 20041  # a label without filter support, like most of a real report's


def _report_definition(state: EmulatorState, workspace_id: str, uri: str) -> dict[str, Any]:
    """A grid definition as GoodData records it: attribute labels in ``rows``, the metric group in
    ``columns``, metrics with their aliases; the CSV's first five columns are attributes, the rest
    metrics, in this order (as the raw export writes them)."""
    label_of_column = {
        label.column: label.uri(workspace_id)
        for label in state.config.workspaces[workspace_id].labels.values()
    }
    label_of_column["Date"] = state.identifier_uri(workspace_id, DATE_IDENTIFIER)
    label_of_column.setdefault("Interval 15 Minutes", f"/gdc/md/{workspace_id}/obj/{INTERVAL_LABEL_OBJECT}")
    attributes, metrics = data.HEADER[:5], data.HEADER[5:]
    rows = [{"attribute": {"alias": "", "totals": [], "uri": label_of_column[name]}} for name in attributes]
    grid_metrics = [
        {"alias": name, "uri": f"/gdc/md/{workspace_id}/obj/{METRIC_OBJECTS + n}"}
        for n, name in enumerate(metrics, start=1)
    ]
    grid = {"sort": {"columns": [], "rows": []}, "columnWidths": [], "columns": ["metricGroup"],
            "metrics": grid_metrics, "rows": rows}  # fmt: skip
    meta = {"uri": uri, "title": "Untitled report definition", "category": "reportDefinition",
            "author": AUTHOR_PROFILE, "tags": "", "summary": "", "deprecated": "0"}  # fmt: skip
    return {"reportDefinition": {"content": {"grid": grid, "format": "grid", "filters": []}, "meta": meta}}


def _label_objects(state: EmulatorState, workspace_id: str, workspace: Workspace) -> dict[str, str]:
    """Object id -> identifier of the labels the workspace knows (the URIs ``identifiers`` gives).

    Identifiers without a label of their own share the date label's URI; the date one names it.
    """
    uris = {i: state.identifier_uri(workspace_id, i) for i in workspace.identifiers}
    by_date_last = sorted(uris.items(), key=lambda item: (item[0] == DATE_IDENTIFIER, item[0]))
    return {uri.rsplit("/", 1)[-1]: identifier for identifier, uri in by_date_last}


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
