"""Every benchmark runs in CI at a small size: the scripts keep working and their functional
figures hold (bytes, request counts, events, logins); timings are printed, never judged here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

EXPECTED_LINES = {
    "download_throughput": [
        *(
            f"PASS same bytes at {size}: as curl, and the reported SHA-256"
            for size in ("8 KiB", "64 KiB", "1 MiB")
        ),
        "peak RSS growth: ",
    ],
    "poll_economy": ["provider trigger", "tight loop (tutorial)"],
    "request_count": [
        "export 1: 6 requests: login:200, token:200, identifiers:200, execute:201, export:200, logout:204",
        # lookups are cached by each task's client (docs/wire.md), not for the whole process
        "export 2: 6 requests: login:200, token:200, identifiers:200, execute:201, export:200, logout:204",
    ],
    "triggerer_scale": ["PASS events delivered: 20 of 20", "PASS logins: 1 "],
    "import_cost": ["added by the operator:"],
    "soak": ["PASS sessions and SSTs: 0 shared sessions, 0 SSTs alive at the end", "PASS exports: "],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_LINES))
def test_benchmark_runs_at_smoke_size(name: str) -> None:
    done = subprocess.run(
        [sys.executable, f"{name}.py", "--smoke"],
        cwd=REPO_ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for line in EXPECTED_LINES[name]:
        assert line in done.stdout


def test_download_benchmark_times_a_baseline_checkout_in_the_same_rounds() -> None:
    """``--baseline-src``: another checkout's provider (here this one's own src) downloads in every
    round beside curl and this checkout, checked for the same bytes as them."""
    done = subprocess.run(
        [
            sys.executable,
            "download_throughput.py",
            "--smoke",
            "--chunk",
            "64 KiB",
            "--baseline-src",
            "../src",
        ],
        cwd=REPO_ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    baseline = [line for line in done.stdout.splitlines() if "chunks: baseline" in line]
    assert len(baseline) == 1 and "x curl, round ratios" in baseline[0]
    assert "PASS same bytes at 64 KiB: as curl, and the reported SHA-256" in done.stdout
