"""Weeks in minutes: one triggerer-like process through thousands of TT renewals and exports stays flat.

A production triggerer never restarts, and the shared session renews its 10-minute TT whenever an
export is waiting: about 1,000 renewals a week. Here the emulator's TTs stop working after a few
requests (``--tt-max-uses``), so renewals come as fast as polls do. A child process, set up like a
triggerer (Airflow's secret masker in it, every trigger on one event loop sharing the session),
keeps ``--concurrency`` exports waiting at all times until ``--renewals`` TTs were minted for it,
then lets them finish. At the start (after 500 renewals), the middle and the end it prints its RSS,
CPU per renewal over the last stretch, open sockets and file descriptors, the values Airflow's
masker holds, the shared sessions it keeps and the SSTs alive on the server; then a verdict on
each figure's slope.

    python benchmarks/soak.py                         # 5,000 renewals, judged
    python benchmarks/soak.py --baseline-src OLD/src  # and 1,500 renewals of another checkout first
    python benchmarks/soak.py --smoke                 # 120 renewals, not judged

Each side runs in its own child process against one emulator of this checkout (its own process),
so neither the emulator nor the other side counts in the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from _harness import Checks, cpu_seconds, demo_settings, emulator, machine_line, verdict

WARM_UP = 500  # renewals before the first checkpoint: imports, pools and caches settle
RSS_GROWTH_MB = 20.0
CPU_SLOPE = 1.5  # CPU per renewal at the end may be at most this many times that at the start
TT_MAX_USES = 8  # twice the concurrency: a renewal's repeated requests never exhaust the new TT


# --- the child: a triggerer-like process -------------------------------------------------------------


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def descriptors() -> tuple[int, int]:
    """Open file descriptors of this process, and how many of them are sockets."""
    links = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor, closed by now
            links.append(str(fd.readlink()))
    return len(links), sum(link.startswith("socket:") for link in links)


def masked_values() -> int:
    from airflow.sdk._shared.secrets_masker.secrets_masker import _secrets_masker

    return len(_secrets_masker().patterns)


def shared_sessions() -> int:
    """Sessions the event loop's SharedSessions holds (the same attribute before and after the change)."""
    from airflow_provider_flexinsights.client import SharedSessions  # 0.2.0's path: --baseline-src

    return len(SharedSessions.of_running_loop()._sessions)


def _loop_tts(state: dict[str, Any]) -> int:
    """TTs the emulator minted for clients other than requests (the event loop's)."""
    return sum(count for agent, count in state["tts_by_client"].items() if "(requests)" not in agent)


class Probe:
    """The emulator's counts, and this process's figures at each checkpoint."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        state = self.server()  # the emulator may have served another side already
        self._before, self._logins_before = _loop_tts(state), state["logins"]

    def server(self) -> dict[str, Any]:
        state: dict[str, Any] = self.http.get(f"{self.url}/_emulator/state", timeout=30).json()
        return state

    def renewals(self) -> int:
        """TTs minted for the event loop (not for the thread that starts exports with requests)."""
        return _loop_tts(self.server()) - self._before

    def checkpoint(self, name: str, renewals: int, exports: int) -> dict[str, Any]:
        fds, sockets = descriptors()
        server = self.server()
        point = {
            "name": name,
            "renewals": renewals,
            "exports": exports,
            "rss_mb": round(rss_mb(), 1),
            "cpu_s": round(cpu_seconds(), 3),
            "fds": fds,
            "sockets": sockets,
            "masked": masked_values(),
            "sessions": shared_sessions(),
            "ssts_alive": server["live_sessions"],
            "logins": server["logins"] - self._logins_before,
        }
        print(json.dumps(point), flush=True)
        return point


async def soak(url: str, renewals: int, concurrency: int, warm_up: int) -> None:
    """Keep ``concurrency`` exports waiting in triggers until ``renewals`` TTs were minted, then drain."""
    from airflow_provider_flexinsights.client import FlexInsightsClient  # 0.2.0's path: --baseline-src
    from airflow_provider_flexinsights.emulator import DEMO_WORKSPACE, QUEUE_REPORT, airflow_connection
    from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsAsyncHook
    from airflow_provider_flexinsights.triggers.flex_insights import FlexInsightsExportTrigger

    os.environ["AIRFLOW_CONN_FLEX_INSIGHTS_DEFAULT"] = airflow_connection(url)
    probe, starter = Probe(url), FlexInsightsClient(demo_settings(url))  # the workers' part
    done, failed, minted = 0, 0, 0
    days = (dt.date(2024, 1, 1) + dt.timedelta(days=n % 3650) for n in range(10**9))

    async def one_export() -> None:
        nonlocal done, failed
        day = next(days).isoformat()
        uri = await asyncio.to_thread(starter.start_export, DEMO_WORKSPACE, QUEUE_REPORT, day, day)
        trigger = FlexInsightsExportTrigger(
            conn_id="flex_insights_default",
            export_uri=uri,
            workspace_id=DEMO_WORKSPACE,
            report_id=QUEUE_REPORT,
            end_time=time.time() + 600,
            poll_interval=0.01,
            max_poll_interval=0.02,
        )
        async for event in trigger.run():
            done += 1
            failed += event.payload["status"] != "ready"

    checkpoints = [warm_up, max(warm_up, renewals // 2), renewals]
    names = iter(["start", "middle", "end"])
    running: set[asyncio.Task[None]] = set()
    # In a busy triggerer some export of the connection is always waiting, so its shared session
    # lives on; this stands for that one (exports of one batch may all finish at the same poll).
    async with FlexInsightsAsyncHook("flex_insights_default").session():
        while checkpoints:
            while len(running) < concurrency:
                running.add(asyncio.create_task(one_export()))
            finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                task.result()
            minted = await asyncio.to_thread(probe.renewals)
            while checkpoints and minted >= checkpoints[0]:
                checkpoints.pop(0)
                probe.checkpoint(next(names), minted, done)
        await asyncio.gather(*running)
    starter.close()
    await asyncio.sleep(0.1)  # the last trigger's logout and connection close settle
    probe.checkpoint("drained", await asyncio.to_thread(probe.renewals), done)
    print(json.dumps({"failed_exports": failed}), flush=True)


def child(args: argparse.Namespace) -> int:
    logging.getLogger("airflow_provider_flexinsights").setLevel(logging.WARNING)
    asyncio.run(soak(args.url, args.renewals, args.concurrency, min(WARM_UP, args.renewals // 10)))
    return 0


# --- the parent: runs each side, prints and judges ------------------------------------------------------


def run_side(url: str, renewals: int, concurrency: int, src: str | None) -> list[dict[str, Any]]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()), env.get("PYTHONPATH", "")])
    command = [sys.executable, __file__, "--child", "--url", url, "--renewals", str(renewals)]
    command += ["--concurrency", str(concurrency)]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if output.returncode != 0:
        raise SystemExit(f"the soak child failed:\n{output.stderr[-3000:]}")
    return [json.loads(line) for line in output.stdout.splitlines() if line.startswith("{")]


COLUMNS = [  # (heading, key, format)
    ("renewals", "renewals", "8,"),
    ("exports", "exports", "7,"),
    ("RSS MB", "rss_mb", "7.1f"),
    ("CPU ms/renewal", "cpu_ms", "14.2f"),
    ("fds", "fds", "4"),
    ("sockets", "sockets", "7"),
    ("masked", "masked", "6"),
    ("sessions", "sessions", "8"),
    ("SSTs", "ssts_alive", "4"),
    ("logins", "logins", "6"),
]


def table(title: str, points: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'':8} " + " ".join(f"{heading:>{fmt.rstrip(',.1f2')}}" for heading, _, fmt in COLUMNS))
    previous: dict[str, Any] | None = None
    for point in (p for p in points if "name" in p):
        per = cpu_per_renewal(previous, point)
        row = {**point, "cpu_ms": per * 1000 if per is not None else None}
        cells = [
            format(row[key], fmt) if row[key] is not None else " " * int(fmt.rstrip(",.1f2"))
            for _, key, fmt in COLUMNS
        ]
        print(f"{point['name']:8} " + " ".join(cells))
        previous = point


def cpu_per_renewal(before: dict[str, Any] | None, after: dict[str, Any]) -> float | None:
    if before is None or after["renewals"] <= before["renewals"]:
        return None
    return float(after["cpu_s"] - before["cpu_s"]) / (after["renewals"] - before["renewals"])


def judge(points: list[dict[str, Any]], checks: Checks) -> None:
    by_name = {p["name"]: p for p in points if "name" in p}
    start, middle, end, drained = (by_name[n] for n in ("start", "middle", "end", "drained"))
    growth = end["rss_mb"] - start["rss_mb"]
    first, last = cpu_per_renewal(start, middle), cpu_per_renewal(middle, end)
    failed = next(p["failed_exports"] for p in points if "failed_exports" in p)
    checks.judge(
        "RSS", growth <= RSS_GROWTH_MB, f"{start['rss_mb']:.1f} MB after {start['renewals']:,} renewals, "
        f"{end['rss_mb']:.1f} MB after {end['renewals']:,} ({growth:+.1f} MB; target <= {RSS_GROWTH_MB:.0f})",
    )  # fmt: skip
    if first is not None and last is not None:
        checks.judge(
            "CPU per renewal", last <= CPU_SLOPE * first,
            f"{first * 1000:.2f} ms in the first half, {last * 1000:.2f} ms in the second "
            f"(target: at most {CPU_SLOPE}x)",
        )  # fmt: skip
    checks.judge(
        "sockets and fds", drained["sockets"] <= start["sockets"] and drained["fds"] <= start["fds"],
        f"{drained['sockets']} sockets and {drained['fds']} fds at the end, {start['sockets']} and "
        f"{start['fds']} at the start",
    )  # fmt: skip
    checks.judge(
        "sessions and SSTs", drained["sessions"] == 0 and drained["ssts_alive"] == 0,
        f"{drained['sessions']} shared sessions, {drained['ssts_alive']} SSTs alive at the end",
    )  # fmt: skip
    checks.judge("exports", failed == 0, f"{end['exports']:,} done, {failed} not ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renewals", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4, help="exports waiting at once")
    parser.add_argument("--baseline-src", help="another checkout's src/, run first for --baseline-renewals")
    parser.add_argument("--baseline-renewals", type=int, default=1500)
    parser.add_argument("--smoke", action="store_true", help="120 renewals, not judged")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    renewals = 120 if args.smoke else args.renewals
    uses = str(max(TT_MAX_USES, 2 * args.concurrency))
    print(f"soak: {renewals:,} TT renewals, {args.concurrency} exports waiting, TTs of {uses} requests")
    print(machine_line())
    with emulator("--pending-polls", "3", "--tt-max-uses", uses) as running:
        if args.baseline_src:
            base = min(args.baseline_renewals, renewals)
            before = run_side(running.url, base, args.concurrency, args.baseline_src)
            table(f"before: {args.baseline_src}", before)
        points = run_side(running.url, renewals, args.concurrency, None)
    table("this checkout", points)
    print()
    checks = Checks()
    judge(points, checks)
    return verdict(checks, smoke=args.smoke)


if __name__ == "__main__":
    sys.exit(main())
