"""The one route table: which handler serves which method and path, and the endpoint name the
request log and faults use for it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_flexinsights.emulator import auth, control, elements, exports, metadata
from airflow_provider_flexinsights.emulator.exchange import Exchange


@dataclass(frozen=True)
class Route:
    endpoint: str  # login, token, profile, logout, identifiers, execute, export, elements, query, object
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[Exchange], None]


def _route(endpoint: str, method: str, pattern: str, handler: Callable[[Exchange], None]) -> Route:
    return Route(endpoint, method, re.compile(pattern), handler)


WS = r"/gdc/md/(?P<ws>[^/]+)"
ROUTES = (
    _route("login", "POST", r"/gdc/account/login", auth.log_in),
    _route("logout", "DELETE", r"/gdc/account/login/(?P<profile>[^/]+)", auth.log_out),
    _route("token", "GET", r"/gdc/account/token", auth.mint_temporary_token),
    _route("profile", "GET", r"/gdc/account/profile/current", auth.current_profile),
    _route("profile", "GET", r"/gdc/account/profile/(?P<profile>[0-9a-f]+)", auth.profile),
    _route("identifiers", "POST", rf"{WS}/identifiers", metadata.identifiers),
    _route("execute", "POST", r"/gdc/app/projects/(?P<ws>[^/]+)/execute/raw", exports.start_export),
    _route("export", "GET", r"/gdc/projects/(?P<ws>[^/]+)/execute/raw/(?P<id>[^/]+)", exports.export_result),
    _route("elements", "POST", rf"{WS}/obj/(?P<label>\d+)/validElements", elements.valid_elements),
    _route("elements", "GET", rf"{WS}/obj/(?P<label>\d+)/validElements", elements.valid_elements_later),
    _route("query", "GET", rf"{WS}/query/reports", metadata.query_reports),
    _route("object", "GET", rf"{WS}/obj/(?P<obj>[^/]+)", metadata.metadata_object),
    _route("control", "GET", r"/_emulator/requests", control.requests_seen),
    _route("control", "GET", r"/_emulator/state", control.session_counts),
    _route("control", "GET", r"/_emulator/exports", control.exports_started),
)


def find_route(method: str, path: str) -> tuple[Route, re.Match[str]] | None:
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match and method == route.method:
            return route, match
    return None
