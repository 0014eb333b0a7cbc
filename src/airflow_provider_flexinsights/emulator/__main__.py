"""``python -m airflow_provider_flexinsights.emulator --port 8765``: serve the emulated API."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import signal
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from airflow_provider_flexinsights.emulator import (
    BULK_REPORT,
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DEMO_WORKSPACE,
    EMPTY_REPORT,
    QUEUE_REPORT,
    Emulator,
    EmulatorConfig,
    Report,
)


class _OneLineParser(argparse.ArgumentParser):
    """Bad arguments fail in one line (argparse's own error, without the usage block above it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


Number = TypeVar("Number", int, float)


def _bounded(kind: type[Number], low: Number, high: Number | None = None) -> Callable[[str], Number]:
    """An argparse type: a number of ``kind`` within the bounds, or one sentence saying why not."""

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if value < low or (high is not None and value > high):
            bounds = f"from {low:g} to {high:g}" if high is not None else f"{low:g} or more"
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {text}")
        return value

    return parse


def _listen(config: EmulatorConfig, host: str, port: int) -> Emulator:
    try:
        return Emulator(config, host=host, port=port)
    except OSError as error:  # in use, not an address of this machine, an unknown host name
        reason = error.strerror or str(error)
        sys.exit(
            f"The emulator cannot listen on {host}:{port}: {reason}; "
            "pick another --port (0 picks a free one) or --host."
        )


def main(argv: list[str] | None = None) -> None:
    parser = _OneLineParser(prog="python -m airflow_provider_flexinsights.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=_bounded(int, 0, 65535), default=8765, help="0 picks a free port")
    parser.add_argument(
        "--pending-polls", type=_bounded(int, 0), default=2, help="202 answers before an export is ready"
    )
    parser.add_argument(
        "--pending-seconds", type=_bounded(float, 0), default=0.0, help="minimum seconds before ready"
    )
    parser.add_argument(
        "--tt-ttl", type=_bounded(float, 1), default=600.0, help="temporary token lifetime in seconds"
    )
    parser.add_argument(
        "--tt-max-uses",
        type=_bounded(int, 1),
        help="a temporary token stops working after this many requests (soak runs: renewals on demand)",
    )
    parser.add_argument(
        "--pending-range",
        type=_bounded(float, 0),
        nargs=2,
        metavar=("MIN", "MAX"),
        help="per-export random wait, seconds",
    )
    parser.add_argument(
        "--bulk-report-mb",
        type=_bounded(int, 0),
        default=0,
        help=f"serve report {BULK_REPORT} with at least this many MB",
    )
    parser.add_argument(
        "--chunk-bytes",
        type=_bounded(int, 1),
        default=64 << 10,
        help="size of the chunks CSV bodies are sent in (default: 65536)",
    )
    parser.add_argument(
        "--today",
        type=dt.date.fromisoformat,
        help="the date floating filters count from, YYYY-MM-DD (default: the real date, UTC)",
    )
    args = parser.parse_args(argv)
    if args.pending_range and args.pending_range[0] > args.pending_range[1]:
        parser.error(
            f"--pending-range MIN ({args.pending_range[0]:g}) is above MAX ({args.pending_range[1]:g})"
        )

    config = EmulatorConfig(
        pending_polls=args.pending_polls,
        pending_seconds=args.pending_seconds,
        pending_seconds_range=tuple(args.pending_range) if args.pending_range else None,
        tt_ttl=args.tt_ttl,
        tt_max_uses=args.tt_max_uses,
        today=args.today,
        chunk_bytes=args.chunk_bytes,
    )
    if args.bulk_report_mb:
        bulk = Report("Bulk queue report (benchmarks)", kind="bulk", size_bytes=args.bulk_report_mb << 20)
        config.workspaces[DEMO_WORKSPACE].reports[BULK_REPORT] = bulk
    emulator = _listen(config, args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # One JSON line on stdout tells scripts where to connect (the port may have been chosen for us).
    ready = {
        "url": emulator.url,
        "login": DEMO_EMAIL,
        "password": DEMO_PASSWORD,
        "workspace_id": DEMO_WORKSPACE,
        "reports": {"queue": QUEUE_REPORT, "empty": EMPTY_REPORT, "bulk": BULK_REPORT},
    }
    print(json.dumps(ready), flush=True)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        emulator.serve_forever()


if __name__ == "__main__":
    main()
