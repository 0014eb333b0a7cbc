"""The metadata API: identifiers to URIs, the report list and object lookups (discovery)."""

from __future__ import annotations

import re

from airflow_provider_flexinsights.emulator.auth import require_tt
from airflow_provider_flexinsights.emulator.catalog import Catalog, report_meta
from airflow_provider_flexinsights.emulator.exchange import Exchange, Reject, invalid_structure
from airflow_provider_flexinsights.emulator.model import Workspace
from airflow_provider_flexinsights.emulator.state import EmulatorState

IDENTIFIER_PATTERN = re.compile(r"^[a-zA-Z0-9_\.]{1,255}$")  # as the recorded 400 quotes it


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
        {"link": f"/gdc/md/{workspace_id}/obj/{report_id}", **report_meta(workspace_id, report_id, report)}
        for report_id, report in sorted(workspace.reports.items())
    ]
    meta = {
        "summary": f"Metadata Query Resources for project '{workspace_id}'",
        "title": "Metadata Query Resources",
        "category": "MD::Query::Object",
    }
    exchange.send_json(200, {"query": {"entries": entries, "meta": meta}})


def metadata_object(exchange: Exchange) -> None:
    """``obj/{id}`` (reports, their definitions, labels, attributes, metrics: :mod:`.catalog`) or
    ``obj/identifier:{identifier}``."""
    require_tt(exchange)
    workspace_id, workspace = exchange.workspace()
    objects = Catalog(exchange.state, workspace_id, workspace)
    key = exchange.param("obj")
    if key.startswith("identifier:"):
        key = _object_of_identifier(
            exchange.state, workspace_id, workspace, objects, key.removeprefix("identifier:")
        )
    document = objects.document(key) if key else None
    if document is None:
        raise Reject(404, "Object %s not found", f"/gdc/md/{workspace_id}/obj/{exchange.param('obj')}")
    exchange.send_json(200, document)


def _object_of_identifier(
    state: EmulatorState, workspace_id: str, workspace: Workspace, objects: Catalog, identifier: str
) -> str:
    """The object id an identifier names: as ``identifiers`` resolves it when the workspace lists it
    (one without a label of its own shares the date label's), else any object's own identifier."""
    if identifier in workspace.identifiers:
        return state.identifier_uri(workspace_id, identifier).rsplit("/", 1)[-1]
    return dict(objects.identifiers()).get(identifier, "")
