"""``flex-insights``: list reports, look up identifiers and export a report, outside Airflow.

For scripts, one-off exports and debugging a DAG: it reads the same Airflow connection (or plain
``FLEX_INSIGHTS_*`` environment variables), validates inputs like the operator, polls with the same
backoff and writes through the same atomic writer. Airflow is imported only once a command needs
a connection or writes a file, so ``--help`` and input errors are instant, and no Airflow service
has to run.

Exit codes: 0 done, 1 the API or the network failed (bad password, unknown workspace...), 2 bad
input (as argparse does), 130 interrupted. Errors are one sentence on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, redirect_stdout
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from airflow_provider_flexinsights import __version__
from airflow_provider_flexinsights.library import validation
from airflow_provider_flexinsights.library.exceptions import (
    FlexInsightsConnectionNotFoundError,
    FlexInsightsError,
    FlexInsightsInputError,
    FlexInsightsNotFoundError,
)
from airflow_provider_flexinsights.library.export_spec import ExportInputs, export_result
from airflow_provider_flexinsights.library.filters import DateInterval
from airflow_provider_flexinsights.library.protocol import DEFAULT_BASE_URL
from airflow_provider_flexinsights.library.validation import ConnectionSettings

if TYPE_CHECKING:
    import datetime as dt

    from airflow_provider_flexinsights.library.client import FlexInsightsClient
    from airflow_provider_flexinsights.library.export import ExportOutcome
    from airflow_provider_flexinsights.library.export_spec import ExportSpec
    from airflow_provider_flexinsights.library.protocol import ReportSummary
    from airflow_provider_flexinsights.library.storage import WrittenFile

PROG = "flex-insights"
DEFAULT_CONN_ID = "flex_insights_default"
ENV_EMAIL = "FLEX_INSIGHTS_EMAIL"
ENV_PASSWORD = "FLEX_INSIGHTS_PASSWORD"
ENV_URL = "FLEX_INSIGHTS_URL"
ENV_WORKSPACE = "FLEX_INSIGHTS_WORKSPACE"

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_TIMEOUT = 2 * 3600.0
PROGRESS_EVERY = 0.2  # seconds between two progress redraws

CREDENTIALS_HELP = f"""\
credentials, first match wins:
  1. --conn-id ID            that Airflow connection
  2. {ENV_EMAIL} and {ENV_PASSWORD} (with {ENV_URL}, default {DEFAULT_BASE_URL})
  3. the Airflow connection {DEFAULT_CONN_ID}
Airflow connections are read like Airflow reads them: AIRFLOW_CONN_* variables, secrets backends,
then the metadata database. The workspace is --workspace, else {ENV_WORKSPACE}, else the
connection's extra workspace_id.

exit codes: 0 done, 1 API, network or file error, 2 bad input, 130 interrupted
"""


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the process exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    environ = os.environ
    _log_to_stderr()
    try:
        command: Callable[[argparse.Namespace, Mapping[str, str]], int] = args.command
        return command(args, environ)
    except FlexInsightsInputError as err:
        return _fail(str(err), EXIT_BAD_INPUT)
    except FlexInsightsError as err:
        return _fail(str(err), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("Interrupted; nothing was written.", EXIT_INTERRUPTED)
    except Exception as err:  # a bug or an unusual environment: still one line, never a traceback
        return _fail(f"Unexpected {type(err).__name__}: {err}", EXIT_FAILED)


def _add_global_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    """--conn-id, --workspace and --json: accepted before the command and after it."""
    parser.add_argument(
        "--conn-id", default=default, help=f"Airflow connection to use (default: {DEFAULT_CONN_ID})"
    )
    parser.add_argument("--workspace", default=default, help="workspace id (32 lowercase letters and digits)")
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="machine-readable output on stdout",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List Flex Insights reports, look up identifiers and export reports to CSV.",
        epilog=CREDENTIALS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, default=None)
    # The same options after the command too; SUPPRESS keeps one given before it from being reset.
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, help: str, run: Callable[..., int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            parents=[common],
            help=help,
            description=help,
            epilog=CREDENTIALS_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(command=run)
        return sub

    command("reports", "List the reports of a workspace: id, title, last change.", run_reports)
    identifiers = command("identifiers", "Map identifiers to the workspace's object URIs.", run_identifiers)
    identifiers.add_argument("identifiers", nargs="+", metavar="ID", help="e.g. date.date.mmddyyyy")
    export = command("export", "Export a report's raw data for a date range to a CSV file.", run_export)
    export.add_argument("--report", required=True, help="numeric report id (.../obj/3035643)")
    export.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first day")
    export.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="last day (inclusive)")
    export.add_argument(
        "--filter",
        dest="filters",
        action="append",
        default=[],
        metavar="JSON",
        help='repeatable: {"identifier": "label.conversations.queue", "in": ["Sales"]} (or "not_in"), '
        'or instead of --from/--to {"type": "floating", "from": -7, "to": -1} (days from today)',
    )
    export.add_argument(
        "-o", "--output", required=True, metavar="PATH", help="file path or object storage URI (s3://...)"
    )
    export.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS", help="give up waiting after this"
    )
    export.add_argument(
        "--poll-interval", type=float, default=1.0, metavar="SECONDS", help="first wait between polls"
    )
    export.add_argument(
        "--download-attempts",
        type=int,
        default=3,
        metavar="N",
        help="fetch a download that breaks midway again, up to N times in all (default: 3)",
    )
    return parser


# --- commands ---------------------------------------------------------------------------------


def run_reports(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    settings = resolve_settings(args.conn_id, environ)
    workspace = resolve_workspace(args.workspace, environ, settings)
    with closing(_client(settings)) as client:
        reports = client.list_reports(workspace)
    if args.json:
        _print_json([_report_document(report) for report in reports])
    elif reports:
        rows = [(r.id, r.title, _timestamp(r.updated)) for r in reports]
        print(format_table(("ID", "TITLE", "UPDATED"), rows))
    else:
        print(f"Workspace {workspace} has no reports.", file=sys.stderr)
    return EXIT_OK


def run_identifiers(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    identifiers: list[str] = list(dict.fromkeys(args.identifiers))  # once each, in the given order
    settings = resolve_settings(args.conn_id, environ)
    workspace = resolve_workspace(args.workspace, environ, settings)
    with closing(_client(settings)) as client:
        uris = client.lookup_identifiers(workspace, identifiers)
    if args.json:
        _print_json({identifier: uris.get(identifier) for identifier in identifiers})
    elif uris:
        print(format_table(("IDENTIFIER", "URI"), [(i, uris[i]) for i in identifiers if i in uris]))
    missing = [identifier for identifier in identifiers if identifier not in uris]
    if missing:
        raise FlexInsightsNotFoundError(
            f"Flex Insights could not find {_plural('identifier', missing)} {', '.join(missing)} in "
            f"workspace {workspace}. Check the spelling and that the workspace has this attribute."
        )
    return EXIT_OK


CLI_DAYS = validation.DayNames(
    date_from="--from",
    date_to="--to",
    filters="--filter",
    floating_example="""--filter '{"type": "floating", "from": -7, "to": -1}'""",
)


@dataclass(frozen=True)
class ExportRequest:
    """The validated inputs of ``export`` (before any credential is read or request sent)."""

    inputs: ExportInputs
    timeout: float
    poll_interval: float
    download_attempts: int

    def describe_days(self) -> str:
        date = self.inputs.date
        if isinstance(date, DateInterval):
            return f"from {date.date_from} to {date.date_to}"
        return f"for {date.describe()}"


def export_request(args: argparse.Namespace) -> ExportRequest:
    """Validate ``export``'s arguments with the operator's own checks; raise FlexInsightsInputError."""
    filters = [_filter_json(text) for text in args.filters]
    for name, value in (("--timeout", args.timeout), ("--poll-interval", args.poll_interval)):
        if not value > 0:
            raise FlexInsightsInputError(f"{name} must be a positive number of seconds, got {value}.")
    if args.download_attempts < 1:
        raise FlexInsightsInputError(f"--download-attempts must be at least 1, got {args.download_attempts}.")
    inputs = ExportInputs.parse(
        report_id=args.report,
        destination=validation.destination(args.output),
        date_from=args.date_from,
        date_to=args.date_to,
        filters=filters,
        default_days=_no_default_days,
        names=CLI_DAYS,
    )
    return ExportRequest(inputs, args.timeout, args.poll_interval, args.download_attempts)


def _no_default_days() -> tuple[str, str]:
    """A command has no data interval: the days must be given."""
    raise CLI_DAYS.missing_days()


def _filter_json(text: str) -> Any:
    """One ``--filter``: a JSON object, checked by the operator's filter parser afterwards."""
    try:
        return json.loads(text)
    except ValueError as err:
        raise FlexInsightsInputError(
            f'--filter must be a JSON object like \'{{"identifier": "label.conversations.queue", '
            f'"in": ["Sales"]}}\', got {text!r} ({err}).'
        ) from None


def run_export(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    request = export_request(args)
    settings = resolve_settings(args.conn_id, environ)
    workspace = resolve_workspace(args.workspace, environ, settings)
    spec = request.inputs.spec(workspace)
    with closing(_client(settings)) as client:
        outcome = _export(client, spec, request)
    if outcome.empty:
        print(
            f"Report {spec.report_id} has no data {request.describe_days()}; wrote an empty file.",
            file=sys.stderr,
        )
    written = outcome.written
    if args.json:
        _print_json(export_result(spec, outcome.export_uri, asdict(written), empty=outcome.empty))
    else:
        print(
            format_table(
                None, [("path", written.path), ("bytes", str(written.bytes)), ("sha256", written.sha256)]
            )
        )
    return EXIT_OK


def _export(
    client: FlexInsightsClient, spec: ExportSpec, request: ExportRequest
) -> ExportOutcome[WrittenFile]:
    """The operator's export job, waiting here: start, poll, replace an expired export once, and
    stream it to the destination atomically (fetched again if the stream breaks)."""
    from airflow_provider_flexinsights.library.backoff import PollSchedule
    from airflow_provider_flexinsights.library.export import ExportJob, ExportPolicy, JobState
    from airflow_provider_flexinsights.library.storage import check_writable, write_atomically

    policy = ExportPolicy(
        PollSchedule(first=request.poll_interval), download_attempts=request.download_attempts
    )
    progress = Progress(sys.stderr) if sys.stderr.isatty() else None

    with _airflow_logs_muted():  # files are written through Airflow's ObjectStoragePath; its first
        import airflow.sdk  # noqa: F401  # import sets up Airflow's logging, chattily on 3.1
    check_writable(spec.destination)  # before the first request: a mistake costs no export

    def write(chunks: Iterator[bytes]) -> WrittenFile:
        try:
            return write_atomically(spec.destination, progress.track(chunks) if progress else chunks)
        except OSError as err:  # a full disk, a network drive gone... (no permission: already a sentence)
            raise FlexInsightsError(
                f"Could not write {spec.destination} ({type(err).__name__}: {err})."
            ) from err

    return ExportJob(client, spec, policy).run(write, JobState.start(time.time() + request.timeout))


# --- credentials and workspace ----------------------------------------------------------------


def resolve_settings(conn_id: str | None, environ: Mapping[str, str]) -> ConnectionSettings:
    """``--conn-id``, else ``FLEX_INSIGHTS_*`` variables, else the default Airflow connection."""
    if conn_id is None and (environ.get(ENV_EMAIL) or environ.get(ENV_PASSWORD)):
        return settings_from_environment(environ)
    return settings_from_airflow(conn_id or DEFAULT_CONN_ID)


def settings_from_environment(environ: Mapping[str, str]) -> ConnectionSettings:
    for name in (ENV_EMAIL, ENV_PASSWORD):
        if not environ.get(name):
            raise FlexInsightsInputError(
                f"{name} is not set: set both {ENV_EMAIL} and {ENV_PASSWORD}, or neither to use an Airflow "
                "connection."
            )
    url = environ.get(ENV_URL) or None
    host = urlsplit(url).hostname if url and url.startswith("http://") else None
    if host and not validation.is_loopback(host):  # the Airflow connection's opt-in has no variable here
        raise FlexInsightsInputError(
            f"{ENV_URL} uses plain http:// to {host}, which would send the password unencrypted; use "
            "https:// (plain http:// is accepted for loopback hosts only, such as the emulator)."
        )
    return validation.connection_settings(
        ENV_URL,
        host=url,
        port=None,
        login=environ[ENV_EMAIL],
        password=environ[ENV_PASSWORD],
        extra={},
        where=ENV_URL,  # a variable, not a connection
    )


def settings_from_airflow(conn_id: str) -> ConnectionSettings:
    """The connection as Airflow resolves it: AIRFLOW_CONN_*, secrets backends, the metadata DB."""
    # Outside a task, the Task SDK skips the metadata DB unless told the process is a server-side
    # one; Airflow's own `airflow connections get` says so the same way.
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    with _airflow_logs_muted():
        from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsHook

    try:
        with _airflow_logs_muted():
            return FlexInsightsHook(conn_id).settings
    except FlexInsightsConnectionNotFoundError:
        raise FlexInsightsInputError(
            f"The Airflow connection {conn_id!r} is not defined: create it, set "
            f"AIRFLOW_CONN_{conn_id.upper()}, or set {ENV_EMAIL} and {ENV_PASSWORD}."
        ) from None


@contextmanager
def _airflow_logs_muted() -> Iterator[None]:
    """Keep Airflow's own chatter (e.g. the RFC 3986 warning about ``flex_insights``) out of the
    output, as Airflow's CLI does for its commands: stdout may be JSON for another program."""
    logging.disable(logging.WARNING)
    try:
        # Airflow's structlog loggers print to the stdout of the moment they are created.
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def resolve_workspace(flag: str | None, environ: Mapping[str, str], settings: ConnectionSettings) -> str:
    """``--workspace``, else ``FLEX_INSIGHTS_WORKSPACE``, else the connection's extra workspace_id."""
    if flag:
        return validation.workspace_id(flag, source="--workspace")
    if environ.get(ENV_WORKSPACE):
        return validation.workspace_id(environ[ENV_WORKSPACE], source=ENV_WORKSPACE)
    if settings.workspace_id:
        return settings.workspace_id
    raise FlexInsightsInputError(
        f"No workspace: pass --workspace, set {ENV_WORKSPACE}, or set the extra workspace_id of the "
        "connection."
    )


def _client(settings: ConnectionSettings) -> FlexInsightsClient:
    """An Airflow-free client: no log masker to tell, since nothing here goes to Airflow's logs."""
    from airflow_provider_flexinsights.library.client import FlexInsightsClient

    return FlexInsightsClient(settings)


# --- output -----------------------------------------------------------------------------------


class Progress:
    """A one-line ``12.3 MiB  45.6 MiB/s`` counter, redrawn in place on a terminal."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._width = 0

    def track(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Pass ``chunks`` through, counting them; the last line stays on screen."""
        started = last_drawn = self._clock()
        received = 0
        for chunk in chunks:
            received += len(chunk)
            yield chunk
            now = self._clock()
            if now - last_drawn >= PROGRESS_EVERY:
                self._draw(format_progress(received, now - started))
                last_drawn = now
        self._draw(format_progress(received, self._clock() - started))
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, line: str) -> None:
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)


def format_progress(received: int, seconds: float) -> str:
    """``12.3 MiB  45.6 MiB/s``: bytes so far and the mean rate since the first byte was asked for."""
    rate = received / seconds if seconds > 0 else 0.0
    return f"{format_bytes(received)}  {format_bytes(rate)}/s"


def format_bytes(count: float) -> str:
    """Binary units with one decimal (``512 B``, ``1.5 KiB``, ``12.3 MiB``, ``2.0 GiB``)."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    exponent = 0
    while count >= 1024 and exponent < len(units) - 1:
        count /= 1024
        exponent += 1
    return f"{count:.0f} B" if exponent == 0 else f"{count:.1f} {units[exponent]}"


def format_table(header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is never padded."""
    lines = [*([header] if header else []), *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(line, widths, strict=False)), line[-1]])
        for line in lines
    )


def _report_document(report: ReportSummary) -> dict[str, Any]:
    return {
        "id": report.id,
        "title": report.title,
        "updated": _timestamp(report.updated) or None,
        "uri": report.uri,
        "identifier": report.identifier,
        "summary": report.summary,
        "author": report.author,
    }


def _timestamp(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _plural(noun: str, items: list[str]) -> str:
    return noun if len(items) == 1 else f"{noun}s"


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2))


def _log_to_stderr() -> None:
    """The provider's warnings (retries, renewals) go to stderr, never into the output on stdout
    (where Airflow's logging, once imported, would send them)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    logger = logging.getLogger("airflow_provider_flexinsights")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
