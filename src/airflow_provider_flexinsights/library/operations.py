"""The export operations, as flows over a :class:`~.session.Session` (run by either transport)."""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_flexinsights.library import protocol
from airflow_provider_flexinsights.library.backoff import PollSchedule
from airflow_provider_flexinsights.library.exceptions import (
    FlexInsightsExportGoneError,
    FlexInsightsExportTimeoutError,
    FlexInsightsNotFoundError,
)
from airflow_provider_flexinsights.library.filters import AttributeFilter, DateInterval, ExportFilter
from airflow_provider_flexinsights.library.protocol import Element, ExportState, SuccessBody
from airflow_provider_flexinsights.library.session import Flow, Session, Sleep

log = logging.getLogger(__name__)

IDENTIFIER_URI = "identifier uri"  # identifier -> object URI
ELEMENT_URI = "element uri"  # (label, value title) -> element URI
LABEL_VALUES = "label values"  # label -> every value it has


class LookupCache:
    """Workspace lookups that rarely change, each kept for ``max_age`` seconds.

    What is kept: identifier URIs, element URIs by value title, a label's whole value list, and
    which way of looking values up the workspace accepts. Keys start with the connection (base
    URL and login, since data permissions may hide values from some users) and the workspace;
    nothing here is a credential. Owned by a client, so it ends with it.
    """

    def __init__(self, max_age: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._entries: dict[tuple[str, ...], tuple[float, Any]] = {}

    def get(self, key: tuple[str, ...]) -> Any | None:
        """The value stored under ``key``, or None when absent or older than ``max_age``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, value = entry
        if self._clock() - stored_at > self.max_age:
            del self._entries[key]
            return None
        return value

    def put(self, key: tuple[str, ...], value: Any) -> None:
        self._entries[key] = (self._clock(), value)


@dataclass
class ExportStatus:
    """Where an export stands; ``reply`` holds the open CSV stream when READY was fetched to stream."""

    state: ExportState
    export_uri: str
    polls: int
    reply: protocol.Reply | None = field(default=None, repr=False)


class FlexInsightsApi:
    """Report exports: identifier resolution, starting an export, polling it until it is ready."""

    def __init__(self, session: Session, base_url: str, cache: LookupCache | None = None) -> None:
        self.session = session
        self.base_url = base_url
        self.cache = cache if cache is not None else LookupCache()

    def verify_access(self) -> Flow[str]:
        """Log in, mint a TT and make one authorized call; return the login the server knows.

        Proves the base URL, the email and the password without touching any workspace.
        """
        reply = yield from self.session.send(protocol.current_profile())
        return protocol.read_profile_login(reply)

    def resolve_identifier(self, workspace_id: str, identifier: str) -> Flow[str]:
        uris = yield from self.resolve_identifiers(workspace_id, [identifier])
        return uris[identifier]

    def start_export(self, workspace_id: str, report_id: str, date_from: str, date_to: str) -> Flow[str]:
        """Start a raw export of the report for the days ``date_from``..``date_to``; return its URI."""
        return (
            yield from self.start_filtered_export(workspace_id, report_id, [DateInterval(date_from, date_to)])
        )

    def check_export(self, export_uri: str, success_body: SuccessBody, polls: int = 0) -> Flow[ExportStatus]:
        """One poll. When the export is ready this GET is also the download (``success_body``)."""
        request = protocol.check_export(export_uri, success_body)
        reply = yield from self.session.send(request, passthrough=frozenset({404, 410}))
        if reply.status in (404, 410):
            raise protocol.error_for(
                request,
                reply,
                hint="The export expired; a new export with the same parameters can replace it.",
                error_type=FlexInsightsExportGoneError,
            )
        state = protocol.read_export_state(request, reply)
        return ExportStatus(state, export_uri, polls + 1, reply if state is ExportState.READY else None)

    def wait_for_export(
        self,
        export_uri: str,
        *,
        schedule: PollSchedule,
        deadline: float,
        success_body: SuccessBody,
        polls: int = 0,
    ) -> Flow[ExportStatus]:
        """Poll on ``schedule`` until the export is ready or empty; fail once ``deadline`` (epoch s) passes.

        The first poll comes after the schedule's first delay: callers reach here right after a
        poll of their own that found the export pending.
        """
        for delay in schedule.delays():
            remaining = deadline - time.time()
            if remaining <= 0:
                raise FlexInsightsExportTimeoutError(
                    f"Flex Insights export {export_uri} was still computing after {polls} polls when the "
                    "timeout ran out; allow more time (the operator's timeout, flex-insights --timeout) or "
                    "narrow the date range."
                )
            yield Sleep(min(delay, remaining))
            status = yield from self.check_export(export_uri, success_body, polls)
            polls = status.polls
            if status.state is not ExportState.PENDING:
                return status
        raise AssertionError("unreachable")  # pragma: no cover

    # --- Discovery: reports, identifiers and objects of a workspace ----------------------------

    def list_reports(self, workspace_id: str) -> Flow[list[protocol.ReportSummary]]:
        """Every report of the workspace with its title and last change, in the server's order."""
        request = protocol.list_reports(workspace_id)
        reply = yield from self._send_in_workspace(request, protocol.WORKSPACE_HINT)
        return protocol.read_report_list(reply)

    def lookup_identifiers(self, workspace_id: str, identifiers: list[str]) -> Flow[dict[str, str]]:
        """Identifier -> object URI for those the workspace knows (unknown ones are absent).

        One request for all of them, and uncached: discovery wants what the server says now.
        """
        request = protocol.resolve_identifiers(workspace_id, identifiers)
        reply = yield from self._send_in_workspace(request, protocol.WORKSPACE_HINT)
        return protocol.read_identifiers(reply)

    def describe_object(self, workspace_id: str, object_id: str) -> Flow[protocol.MetadataObject]:
        """The title, identifier and category of one object (a report, a label...)."""
        request = protocol.read_object(workspace_id, object_id)
        reply = yield from self._send_in_workspace(request, protocol.OBJECT_HINT)
        return protocol.read_metadata_object(reply)

    def report_layout(self, workspace_id: str, report_id: str) -> Flow[tuple[protocol.LayoutColumn, ...]]:
        """The report's columns as its current definition describes them (names, kinds, label types),
        or nothing when it has no definition. Each object is read once: the report, its definition,
        each label and its attribute, and each metric without an alias (an alias is its name)."""
        report = protocol.read_object(workspace_id, report_id)
        reply = yield from self._send_in_workspace(report, protocol.OBJECT_HINT)
        definition_uri = protocol.read_report_definition_uri(report, reply, self.base_url)
        if definition_uri is None:
            return ()
        request = protocol.read_object_at(definition_uri, "report definition")
        reply = yield from self._send_in_workspace(request, protocol.OBJECT_HINT)
        grid = protocol.read_report_grid(reply)
        objects: dict[str, protocol.GridObject] = {}
        for location in dict.fromkeys(i.uri for i in grid if i.kind == "attribute" or not i.alias):
            label_request, label_reply = yield from self._read_linked(location, objects, request, reply)
            attribute = objects[location].form_of  # a label's attribute: its title, its labels' types
            if attribute and attribute not in objects:
                yield from self._read_linked(attribute, objects, label_request, label_reply)
        return tuple(protocol.layout_column(item, objects) for item in grid)

    def _read_linked(
        self,
        location: str,
        objects: dict[str, protocol.GridObject],
        source: protocol.Request,
        source_reply: protocol.Reply,
    ) -> Flow[tuple[protocol.Request, protocol.Reply]]:
        """Read the object ``location`` (linked from ``source``'s answer) into ``objects``."""
        request = protocol.read_linked_object(
            location, "object", request=source, reply=source_reply, base_url=self.base_url
        )
        reply = yield from self._send_in_workspace(request, protocol.OBJECT_HINT)
        objects[location] = protocol.read_grid_object(reply)
        return request, reply

    def _send_in_workspace(self, request: protocol.Request, not_found_hint: str) -> Flow[protocol.Reply]:
        """Send with the session's renewal and retries; a 404 says what to check, not the default."""
        reply = yield from self.session.send(request, passthrough=frozenset({404}))
        if reply.status == 404:
            raise protocol.error_for(request, reply, hint=not_found_hint)
        return reply

    # --- Filters: identifiers and value titles to workspace URIs, cached --------------------------

    def start_filtered_export(
        self, workspace_id: str, report_id: str, filters: Sequence[ExportFilter]
    ) -> Flow[str]:
        """Start a raw export with these filters (one date filter, any attribute filters); return its URI."""
        wire = yield from self.filter_constraints(workspace_id, filters)
        request = protocol.start_raw_export(workspace_id, report_id, wire)
        reply = yield from self.session.send(request)
        return protocol.read_export_uri(request, reply, self.base_url)

    def filter_constraints(
        self, workspace_id: str, filters: Sequence[ExportFilter]
    ) -> Flow[list[dict[str, Any]]]:
        """The ``context.filters`` entries: identifiers resolved in one request, values to element URIs."""
        identifiers = [
            f.identifier if isinstance(f, AttributeFilter) else protocol.DATE_IDENTIFIER for f in filters
        ]
        uris = yield from self.resolve_identifiers(workspace_id, list(dict.fromkeys(identifiers)))
        wire: list[dict[str, Any]] = []
        for item, identifier in zip(filters, identifiers, strict=True):
            if isinstance(item, AttributeFilter):
                elements = yield from self.element_uris(workspace_id, uris[identifier], item)
                wire.append(protocol.element_list_filter(uris[identifier], elements))
            elif isinstance(item, DateInterval):
                wire.append(protocol.date_interval_filter(uris[identifier], item.date_from, item.date_to))
            else:
                wire.append(protocol.floating_date_filter(uris[identifier], item.start, item.end))
        return wire

    def resolve_identifiers(self, workspace_id: str, identifiers: list[str]) -> Flow[dict[str, str]]:
        """Identifier -> URI, asking the server once for all those not cached; a missing one is an error."""
        cached = {i: self.cache.get(self._key(workspace_id, IDENTIFIER_URI, i)) for i in identifiers}
        missing = [i for i, uri in cached.items() if uri is None]
        if missing:
            reply = yield from self.session.send(protocol.resolve_identifiers(workspace_id, missing))
            found = protocol.read_identifiers(reply)
            for identifier in missing:
                if identifier not in found:
                    raise FlexInsightsNotFoundError.from_reply(
                        f"Flex Insights could not find identifier {identifier} in workspace {workspace_id}",
                        reply,
                        then=". Check the workspace id (the 32 characters after /projects/ in the Analytics "
                        "Portal URL) and that the workspace has this attribute.",
                    )
                self.cache.put(self._key(workspace_id, IDENTIFIER_URI, identifier), found[identifier])
                cached[identifier] = found[identifier]
        return {i: str(cached[i]) for i in identifiers}

    def element_uris(self, workspace_id: str, label_uri: str, attribute: AttributeFilter) -> Flow[list[str]]:
        """The element URIs an attribute filter keeps, in the order of its values.

        ``in`` looks up just its titles. ``not_in`` has no negative constraint in the documented
        API, so it is sent as the complement: every value of the label but these (the label's whole
        value list is fetched, in pages, once per client and cache age).
        """
        if attribute.exclude:
            everything = yield from self.label_values(workspace_id, label_uri, attribute.identifier)
            self._check_known(workspace_id, attribute, {e.title for e in everything}, everything)
            kept = [e.uri for e in everything if e.title not in attribute.values]
            if not kept:
                raise FlexInsightsNotFoundError(
                    f"The filter on {attribute.identifier} in workspace {workspace_id} leaves out every "
                    f"one of its {len(everything)} values, so the export would be empty; shorten not_in."
                )
            return kept
        found = yield from self.find_values(workspace_id, label_uri, attribute.identifier, attribute.values)
        if len(found) < len(attribute.values):
            everything = yield from self.label_values(workspace_id, label_uri, attribute.identifier)
            self._check_known(workspace_id, attribute, set(found), everything)
        return [found[title] for title in attribute.values]

    def find_values(
        self, workspace_id: str, label_uri: str, label_name: str, titles: Sequence[str]
    ) -> Flow[dict[str, str]]:
        """Title -> element URI for those of ``titles`` the label has; one lookup for the uncached ones."""
        found = {t: self.cache.get(self._key(workspace_id, ELEMENT_URI, label_uri, t)) for t in titles}
        uncached = [t for t, uri in found.items() if uri is None]
        if uncached:
            elements = yield from self._fetch_titled_values(workspace_id, label_uri, label_name, uncached)
            self._remember_values(workspace_id, label_uri, elements)
            found.update({e.title: e.uri for e in elements if e.title in found})
        return {t: str(uri) for t, uri in found.items() if uri is not None}

    def label_values(self, workspace_id: str, label_uri: str, label_name: str) -> Flow[tuple[Element, ...]]:
        """Every value of the label (all pages), cached: for not_in, and for close matches in errors."""
        key = self._key(workspace_id, LABEL_VALUES, label_uri)
        everything: tuple[Element, ...] | None = self.cache.get(key)
        if everything is None:
            everything = yield from self._fetch_values(workspace_id, label_uri, label_name)
            self._remember_values(workspace_id, label_uri, everything)
            self.cache.put(key, everything)
        return everything

    def _fetch_titled_values(
        self, workspace_id: str, label_uri: str, label_name: str, titles: list[str]
    ) -> Flow[tuple[Element, ...]]:
        """The values with these exact titles: the ``filter`` substring search, one per title,
        keeping exact matches (the way recorded traffic shows: docs/wire.md, "validElements")."""
        elements: list[Element] = []
        for title in titles:
            matches = yield from self._fetch_values(workspace_id, label_uri, label_name, text=title)
            elements += [e for e in matches if e.title == title]
        return tuple(elements)

    def _fetch_values(
        self,
        workspace_id: str,
        label_uri: str,
        label_name: str,
        *,
        text: str | None = None,
    ) -> Flow[tuple[Element, ...]]:
        """validElements, page after page; each may answer 303 and 202 first (Session.send_following)."""
        elements: list[Element] = []
        offset: int | None = 0
        while offset is not None:
            request = protocol.valid_elements(workspace_id, label_uri, label_name, offset=offset, text=text)
            reply = yield from self.session.send_following(request)
            page = protocol.read_valid_elements(reply, offset)
            elements += page.elements
            offset = page.next_offset
        return tuple(elements)

    def _remember_values(self, workspace_id: str, label_uri: str, elements: Sequence[Element]) -> None:
        for element in elements:
            self.cache.put(self._key(workspace_id, ELEMENT_URI, label_uri, element.title), element.uri)

    def _key(self, workspace_id: str, kind: str, *key: str) -> tuple[str, ...]:
        return (self.base_url, self.session.email, workspace_id, kind, *key)

    @staticmethod
    def _check_known(
        workspace_id: str, attribute: AttributeFilter, known: set[str], everything: Sequence[Element]
    ) -> None:
        """Fail on values the label does not have, suggesting close matches among its titles."""
        unknown = [value for value in attribute.values if value not in known]
        if not unknown:
            return
        titles = [e.title for e in everything]
        described = ", ".join(_describe_unknown(value, titles) for value in unknown)
        raise FlexInsightsNotFoundError(
            f"Flex Insights has no value {described} for {attribute.identifier} in workspace {workspace_id} "
            f"(it has {len(titles)} values); write values exactly as reports show them."
        )


def _describe_unknown(value: str, titles: list[str]) -> str:
    close = difflib.get_close_matches(value, titles, n=3, cutoff=0.6)
    if close:
        return f"{value!r} (close matches: {', '.join(repr(c) for c in close)})"
    return f"{value!r} (no close match)"
