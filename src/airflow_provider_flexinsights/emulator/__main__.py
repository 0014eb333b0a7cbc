"""``python -m airflow_provider_flexinsights.emulator --port 8765``: serve the emulated API."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import signal
import sys

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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_flexinsights.emulator", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--pending-polls", type=int, default=2, help="202 answers before an export is ready")
    parser.add_argument("--pending-seconds", type=float, default=0.0, help="minimum seconds before ready")
    parser.add_argument("--tt-ttl", type=float, default=600.0, help="temporary token lifetime in seconds")
    parser.add_argument(
        "--pending-range", type=float, nargs=2, metavar=("MIN", "MAX"), help="per-export random wait, seconds"
    )
    parser.add_argument(
        "--bulk-report-mb", type=int, default=0, help=f"serve report {BULK_REPORT} with at least this many MB"
    )
    parser.add_argument(
        "--chunk-bytes",
        type=_positive_int,
        default=64 << 10,
        help="size of the chunks CSV bodies are sent in (default: 65536)",
    )
    parser.add_argument(
        "--today",
        type=dt.date.fromisoformat,
        help="the date floating filters count from, YYYY-MM-DD (default: the real date, UTC)",
    )
    parser.add_argument(
        "--refuse-titles",
        action="store_true",
        help="answer titles in a validElements body with the schema's 400 (unconfirmed on the live service)",
    )
    args = parser.parse_args(argv)

    config = EmulatorConfig(
        pending_polls=args.pending_polls,
        pending_seconds=args.pending_seconds,
        pending_seconds_range=tuple(args.pending_range) if args.pending_range else None,
        tt_ttl=args.tt_ttl,
        today=args.today,
        chunk_bytes=args.chunk_bytes,
        valid_elements_titles=not args.refuse_titles,
    )
    if args.bulk_report_mb:
        bulk = Report("Bulk queue report (benchmarks)", kind="bulk", size_bytes=args.bulk_report_mb << 20)
        config.workspaces[DEMO_WORKSPACE].reports[BULK_REPORT] = bulk
    emulator = Emulator(config, host=args.host, port=args.port)
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
