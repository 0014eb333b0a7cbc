"""A workspace's metadata objects, shaped as GoodData's recordings show them.

What a typed load reads: a ``report`` (its ``content.definitions``, oldest first), each
``reportDefinition`` (its ``grid``: attribute labels in ``rows``/``columns``, the ``"metricGroup"``
marker, ``metrics`` with their aliases), each label (``attributeDisplayForm``: ``formOf`` its
attribute, ``content.type`` for the date dimension's labels), each ``attribute`` (its title, its
labels as ``displayForms``) and each ``metric`` (its ``format``). docs/wire.md ("Report metadata")
names the cassette of each shape, and tests/test_conformance.py pins them.

Object ids: attributes 20010, 20020... with their label at +1 (as :func:`.model.default_labels`
numbers them), the date attribute 20050 with one label per day format (the US one is the label
``date.date.mmddyyyy`` resolves to), metrics 21001..., a report's definitions ``{report id}1``,
``{report id}2``... (the last is current).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from airflow_provider_flexinsights.emulator.model import (
    CHANNEL_LABEL,
    DATE_IDENTIFIER,
    DAY_EU,
    DAY_ISO,
    DAY_ISO_8601,
    DAY_US,
    DIRECTION_LABEL,
    QUEUE_LABEL,
    QUEUE_METRICS,
    Layout,
    Report,
    Workspace,
)
from airflow_provider_flexinsights.emulator.state import EmulatorState

AUTHOR_PROFILE = "/gdc/account/profile/flexinsightsreportsauthor000001"
CREATED = "2023-06-01 00:00:00"

# attribute title -> (attribute object id, its identifier, its label's identifier)
ATTRIBUTES = {
    "Queue": (20010, "attr.conversations.queue", QUEUE_LABEL),
    "Channel": (20020, "attr.conversations.channel", CHANNEL_LABEL),
    "Direction": (20030, "attr.conversations.direction", DIRECTION_LABEL),
    "Interval 15 Minutes": (20040, "attr.time.interval_15_minutes", "label.time.interval_15_minutes"),
}
DATE_ATTRIBUTE = 20050
# day label type -> (object id, identifier, title); the US label's object is the date filter's
DAY_LABELS = {
    DAY_US: (0, DATE_IDENTIFIER, "Date (mm/dd/yyyy)"),
    DAY_ISO_8601: (20052, "date.date.yyyymmdd", "Date (yyyy-mm-dd)"),
    DAY_EU: (20053, "date.date.ddmmyyyy", "Date (dd/mm/yyyy)"),
    DAY_ISO: (20054, "date.date.eddmmyyyy", "Date (dd-mm-yyyy)"),
}
METRIC_OBJECTS = 21000  # metric n (1-based, in QUEUE_METRICS' order) is object 21000 + n
METRIC_FORMATS = {
    "Offered Contacts": "#,##0",
    "Average Handle Time": "#,##0.0",
    "Abandons": "#,##0",
    "Service Level": "#,##0.00%",
    "Average Speed of Answer": "#,##0.0",
    "Volume Handled": "#,##0",
}


@dataclass(frozen=True)
class LabelObject:
    """One attribute label: where it is, what it is called, whose it is."""

    object_id: str
    identifier: str
    title: str
    attribute: str  # the attribute's title (a name of data.HEADER)
    day_type: str = ""  # the date dimension's labels: GDC.time.day_us...


class Catalog:
    """The objects of one workspace, built per request (a test may change the workspace any time)."""

    def __init__(self, state: EmulatorState, workspace_id: str, workspace: Workspace) -> None:
        self.state, self.workspace_id, self.workspace = state, workspace_id, workspace

    def uri(self, object_id: str | int) -> str:
        return f"/gdc/md/{self.workspace_id}/obj/{object_id}"

    # --- lookups ----------------------------------------------------------------------------------

    def document(self, object_id: str) -> dict[str, Any] | None:
        """The answer to ``GET obj/{object_id}``, or None (a 404)."""
        if object_id in self.workspace.reports:
            return self._report(object_id, self.workspace.reports[object_id])
        layout = self._definition_of(object_id)
        if layout is not None:
            return self._definition(object_id, layout)
        label = next((label for label in self.labels() if label.object_id == object_id), None)
        if label is not None:
            return {"attributeDisplayForm": self._label(label)}
        if object_id in self._attribute_ids():
            return self._attribute(self._attribute_ids()[object_id])
        metric = self._metric_of(object_id)
        return self._metric(metric) if metric else None

    def identifiers(self) -> Iterator[tuple[str, str]]:
        """(identifier, object id) of every object, for ``obj/identifier:{identifier}``."""
        for label in self.labels():
            yield label.identifier, label.object_id
        for title, (object_id, identifier, _) in ATTRIBUTES.items():
            yield identifier, self._attribute_object_id(title, object_id)
        yield "date.date", str(DATE_ATTRIBUTE)
        for n, title in enumerate(QUEUE_METRICS, start=1):
            yield _metric_identifier(title), str(METRIC_OBJECTS + n)
        for report_id in self.workspace.reports:
            yield report_identifier(self.workspace_id, report_id), report_id

    def labels(self) -> list[LabelObject]:
        """Every attribute label: one per attribute, four for the date (one per day format)."""
        labels = []
        for title, (object_id, _, identifier) in ATTRIBUTES.items():
            configured = next((lb for lb in self.workspace.labels.values() if lb.column == title), None)
            if configured is not None:
                labels.append(LabelObject(str(configured.object_id), configured.identifier, title, title))
            else:
                labels.append(LabelObject(str(object_id + 1), identifier, title, title))
        for day_type, (object_id, identifier, title) in DAY_LABELS.items():
            own = self.state.label_uri(self.workspace_id).rsplit("/", 1)[-1] if day_type == DAY_US else ""
            labels.append(LabelObject(own or str(object_id), identifier, title, "Date", day_type))
        return labels

    def label_uri(self, attribute: str, day_type: str = DAY_US) -> str:
        """The label a grid names for the column ``attribute`` (for the date: the ``day_type`` one)."""
        for label in self.labels():
            if label.attribute == attribute and (attribute != "Date" or label.day_type == day_type):
                return self.uri(label.object_id)
        raise KeyError(attribute)

    # --- documents --------------------------------------------------------------------------------

    def _report(self, report_id: str, report: Report) -> dict[str, Any]:
        count = len(report.earlier_layouts) + 1
        definitions = [self.uri(f"{report_id}{n}") for n in range(1, count + 1)]
        meta = {"uri": self.uri(report_id), **report_meta(self.workspace_id, report_id, report)}
        return {"report": {"content": {"definitions": definitions, "domains": []}, "meta": meta}}

    def _definition_of(self, object_id: str) -> Layout | None:
        """The layout a definition object holds (``{report id}{version}``, version 1 the oldest)."""
        for report_id, report in self.workspace.reports.items():
            versions = (*report.earlier_layouts, report.layout)
            suffix = object_id.removeprefix(report_id)
            if suffix != object_id and suffix.isdigit() and 1 <= int(suffix) <= len(versions):
                return versions[int(suffix) - 1]
        return None

    def _definition(self, object_id: str, layout: Layout) -> dict[str, Any]:
        """A grid as GoodData records it: attribute labels with ``alias`` and ``totals``, the metric
        group marker in ``rows`` or ``columns``, metrics with their ``alias``."""

        def attributes(columns: tuple[Any, ...]) -> list[Any]:
            return [
                {
                    "attribute": {
                        "alias": c.alias,
                        "totals": [],
                        "uri": self.label_uri(c.source, layout.day_label),
                    }
                }
                for c in columns
            ]

        rows, columns = attributes(layout.rows), attributes(layout.columns)
        (rows if layout.metric_group == "rows" else columns).append("metricGroup")
        metrics = [{"alias": m.alias, "uri": self.uri(_metric_object(m.source))} for m in layout.metrics]
        grid = {"sort": {"columns": [], "rows": []}, "columnWidths": [], "columns": columns,
                "metrics": metrics, "rows": rows}  # fmt: skip
        meta = self._meta(
            object_id, "Untitled report definition", "reportDefinition", _definition_id(object_id)
        )
        return {
            "reportDefinition": {"content": {"grid": grid, "format": "grid", "filters": []}, "meta": meta}
        }

    def _label(self, label: LabelObject) -> dict[str, Any]:
        """A label's ``{content, links, meta}`` (also what its attribute's ``displayForms`` hold)."""
        attribute = self._attribute_uri(label.attribute)
        content: dict[str, Any] = {
            "formOf": attribute,
            "expression": f"[{self.uri(int(label.object_id) + 7000)}]",
        }
        content["default"] = 1
        if label.day_type:
            content["type"] = label.day_type
        links = {"elements": f"{self.uri(label.object_id)}/elements"}
        return {"content": content, "links": links, "meta": self._meta(label.object_id, label.title,
                "attributeDisplayForm", label.identifier)}  # fmt: skip

    def _attribute(self, title: str) -> dict[str, Any]:
        forms = [self._label(label) for label in self.labels() if label.attribute == title]
        content: dict[str, Any] = {"pk": [], "displayForms": forms}
        identifier = "date.date" if title == "Date" else ATTRIBUTES[title][1]
        if title == "Date":
            content["type"] = "GDC.time.date"
            content["dimension"] = self.uri(DATE_ATTRIBUTE - 10)
        object_id = self._attribute_uri(title).rsplit("/", 1)[-1]
        return {
            "attribute": {"content": content, "meta": self._meta(object_id, title, "attribute", identifier)}
        }

    def _metric(self, title: str) -> dict[str, Any]:
        object_id = str(_metric_object(title))
        content = {
            "format": METRIC_FORMATS[title],
            "expression": f"SELECT SUM([{self.uri(int(object_id) + 1000)}])",
        }
        meta = self._meta(object_id, title, "metric", _metric_identifier(title))
        return {"metric": {"content": content, "meta": meta}}

    def _meta(self, object_id: str, title: str, category: str, identifier: str) -> dict[str, Any]:
        return {"author": AUTHOR_PROFILE, "uri": self.uri(object_id), "tags": "", "created": CREATED,
                "identifier": identifier, "deprecated": "0", "summary": "", "isProduction": 1,
                "title": title, "category": category, "updated": CREATED}  # fmt: skip

    # --- ids --------------------------------------------------------------------------------------

    def _attribute_ids(self) -> dict[str, str]:
        """Attribute object id -> its title."""
        ids = {self._attribute_uri(title).rsplit("/", 1)[-1]: title for title in ATTRIBUTES}
        return {**ids, str(DATE_ATTRIBUTE): "Date"}

    def _attribute_uri(self, title: str) -> str:
        if title == "Date":
            return self.uri(DATE_ATTRIBUTE)
        return self.uri(self._attribute_object_id(title, ATTRIBUTES[title][0]))

    def _attribute_object_id(self, title: str, default: int) -> str:
        configured = next((lb for lb in self.workspace.labels.values() if lb.column == title), None)
        return str(configured.attribute_id if configured is not None else default)

    @staticmethod
    def _metric_of(object_id: str) -> str | None:
        number = int(object_id) - METRIC_OBJECTS if object_id.isdigit() else 0
        return QUEUE_METRICS[number - 1] if 1 <= number <= len(QUEUE_METRICS) else None


def _metric_object(title: str) -> int:
    return METRIC_OBJECTS + QUEUE_METRICS.index(title) + 1


def _metric_identifier(title: str) -> str:
    return "metric." + title.lower().replace(" ", "_")


def _definition_id(object_id: str) -> str:
    return "a" + hashlib.sha256(f"definition/{object_id}".encode()).hexdigest()[:11]


def report_identifier(workspace_id: str, report_id: str) -> str:
    """A stable, GoodData-like 12-character identifier for a report (the real ones are random)."""
    return "a" + hashlib.sha256(f"{workspace_id}/{report_id}".encode()).hexdigest()[:11]


def report_meta(workspace_id: str, report_id: str, report: Report) -> dict[str, Any]:
    """The ``meta`` fields GoodData gives a report, both in ``query/reports`` and in ``obj/{id}``."""
    return {
        "author": AUTHOR_PROFILE,
        "contributor": AUTHOR_PROFILE,
        "created": report.updated,
        "updated": report.updated,
        "title": report.title,
        "summary": report.summary,
        "identifier": report_identifier(workspace_id, report_id),
        "category": "report",
        "tags": "",
        "deprecated": "0",
        "isProduction": 1,
        "locked": 0,
        "unlisted": 0,
    }
