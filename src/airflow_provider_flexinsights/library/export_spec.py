"""What one export is (report, workspace, days, filters, destination) and what it produced.

Shared by the operator and the ``flex-insights`` command line, so both identify an export, and
report its result, in exactly the same terms (the operator's XCom, the CLI's ``--json``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_flexinsights.library import validation
from airflow_provider_flexinsights.library.filters import (
    AttributeFilter,
    DateFilter,
    DateInterval,
    ExportFilter,
    choose_date_filter,
    parse_filters,
)


@dataclass(frozen=True)
class ExportSpec:
    """What to export and where, rendered and validated.

    ``date_from``/``date_to`` hold an absolute interval; they are None when a floating range in
    ``filters`` picks the days. ``filters`` holds everything beyond them (a floating range,
    attribute filters), so the retry-reuse of an export and the XCom result both see them.
    """

    workspace_id: str
    report_id: str
    date_from: str | None
    date_to: str | None
    destination: str
    filters: tuple[ExportFilter, ...] = ()

    @classmethod
    def of(
        cls,
        workspace_id: str,
        report_id: str,
        date: DateFilter,
        attributes: tuple[AttributeFilter, ...],
        destination: str,
    ) -> ExportSpec:
        if isinstance(date, DateInterval):
            return cls(workspace_id, report_id, date.date_from, date.date_to, destination, attributes)
        return cls(workspace_id, report_id, None, None, destination, (date, *attributes))

    def export_filters(self) -> list[ExportFilter]:
        """Every filter the export request carries: the date one first."""
        if self.date_from is not None and self.date_to is not None:
            return [DateInterval(self.date_from, self.date_to), *self.filters]
        return list(self.filters)

    def identity(self) -> dict[str, Any]:
        """What makes two exports the same: everything but where the CSV goes (JSON-able)."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("destination", "filters")}
        return {**fields, "filters": [f.to_dict() for f in self.filters]}

    def describe(self) -> str:
        dates = [f.describe() for f in self.export_filters() if not isinstance(f, AttributeFilter)]
        text = f"report {self.report_id} in workspace {self.workspace_id} for {dates[0]}"
        attributes = [f.describe() for f in self.filters if isinstance(f, AttributeFilter)]
        return f"{text} where {' and '.join(attributes)}" if attributes else text


@dataclass(frozen=True)
class ExportInputs:
    """The validated inputs of one export but its workspace: the operator's and the CLI's alike.

    Built by :meth:`parse` from what the caller was given (rendered templates, command-line
    arguments), before any credential is read or request sent.
    """

    report_id: str
    date: DateFilter
    attributes: tuple[AttributeFilter, ...]
    destination: str

    @classmethod
    def parse(
        cls,
        *,
        report_id: Any,
        destination: str,
        date_from: Any,
        date_to: Any,
        filters: Any,
        default_days: Callable[[], tuple[str, str]],
        names: validation.DayNames = validation.OPERATOR_DAYS,
    ) -> ExportInputs:
        """Check every input (raising FlexInsightsInputError in the caller's ``names``); pick the days.

        ``destination`` comes checked by the caller (a file path, a table...): only it knows what
        a valid one is. ``default_days`` gives the days when neither dates nor a date filter do.
        """
        checked_report = validation.report_id(report_id)
        parsed = parse_filters(filters)
        date = choose_date_filter(parsed.date, date_from, date_to, default_days, names)
        return cls(checked_report, date, parsed.attributes, destination)

    def spec(self, workspace_id: str) -> ExportSpec:
        return ExportSpec.of(workspace_id, self.report_id, self.date, self.attributes, self.destination)


def export_result(
    spec: ExportSpec, export_uri: str, written: Mapping[str, Any], *, empty: bool
) -> dict[str, Any]:
    """The small JSON-able account of a finished export (never the CSV itself): what the writer
    reports (a file's ``path``, ``bytes``, ``sha256``), the export, and its parameters."""
    return {
        **written,
        "export_uri": export_uri,
        "empty": empty,
        **spec.identity(),
    }
