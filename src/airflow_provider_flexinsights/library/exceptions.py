"""Every failure the provider raises, one type per thing a user does differently about it.

Messages are whole sentences meant for a task log: what failed, for which workspace/report, what
the server said (with its request id) and what to do. They never contain a password or a token:
the protocol layer builds them from status codes and server messages only, never from headers.
"""

from __future__ import annotations

from typing import Protocol, Self


class _Answer(Protocol):
    """What an error needs of a reply (:class:`~.protocol.Reply`): its status and request id."""

    @property
    def status(self) -> int: ...
    @property
    def request_id(self) -> str | None: ...


class FlexInsightsError(Exception):
    """Base class of everything this provider raises on purpose.

    ``retryable`` tells the operator whether an Airflow task retry can help: a bad password or an
    unknown report will fail the same way again, a rate limit or an outage may not.
    """

    retryable: bool = False


class FlexInsightsInputError(FlexInsightsError, ValueError):
    """An operator argument or connection field is invalid; raised before any request is sent."""


class FlexInsightsConnectionNotFoundError(FlexInsightsInputError):
    """The Airflow connection is not defined: no retry can define it (Airflow's own error is retried)."""


class FlexInsightsDestinationError(FlexInsightsInputError):
    """The destination cannot be written (a file where a folder is needed, no permission, a folder
    at the destination, no such bucket): found before the export by a probe, or while writing."""


class FlexInsightsApiError(FlexInsightsError):
    """The API answered with an error; carries the HTTP status and GoodData's request id."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id

    @classmethod
    def from_reply(cls, message: str, reply: _Answer, *, then: str = ".") -> Self:
        """The error for ``reply``: ``message``, the server's request id, ``then`` (the rest of the
        sentence). The one place a request id is written into a message."""
        request_id = f" (request id {reply.request_id})" if reply.request_id else ""
        return cls(f"{message}{request_id}{then}", status=reply.status, request_id=reply.request_id)


class FlexInsightsAuthError(FlexInsightsApiError):
    """The Analytics Portal rejected the connection's email or password."""


class FlexInsightsNotFoundError(FlexInsightsApiError):
    """A workspace, report, identifier or export does not exist (for this user)."""


class FlexInsightsExportGoneError(FlexInsightsNotFoundError):
    """The export's result expired on the server (404/410); a new export with the same parameters can
    replace it."""

    retryable = True


class FlexInsightsTransientError(FlexInsightsApiError):
    """Rate limits, outages or network failures outlasted the retry budget; a later try may work."""

    retryable = True


class FlexInsightsDownloadError(FlexInsightsError):
    """The CSV stream broke before its end (reset, truncated body, timeout); nothing was written."""

    retryable = True


class FlexInsightsExportTimeoutError(FlexInsightsError):
    """The export was still computing when the operator's ``timeout`` ran out."""

    retryable = True


class FlexInsightsEmptyReportError(FlexInsightsError):
    """The report has no data for the range and the operator was told to fail on empty reports."""


class ReportedError(FlexInsightsError):
    """An error the trigger reported in its event; keeps its retryability across the deferral."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
