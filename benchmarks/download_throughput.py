"""Target 1: stream a large export at wire speed, whatever the chunk size, in constant memory.

For each chunk size the emulator is asked to frame the body in (8 KiB, 64 KiB and 1 MiB: the real
service streams chunked with no Content-Length, in a chunk size nobody documents), exports a bulk
report (default 1 GiB) through the operator's download path (`FlexInsightsClient.open_csv` into
`write_atomically`, hashing as bytes pass) and `curl -s -o FILE` on the same export URI, in
interleaved rounds that take turns going first. Since the provider fsyncs the file and its folder
before it reports the file done (docs/outputs.md), curl's time includes the same two fsyncs, done
right after it exits: like is compared with like. Each download runs in a process of its own, timed
from the first byte asked for to the file in place: the provider in a child that has already
logged in (`_provider_download.py`), curl as itself. The judged figure is the median over rounds
of curl's time divided by the provider's. CPU seconds per GiB are printed too. Memory: the
provider's peak RSS growth over a 1 MB export in the same process. Every round checks that the
provider's file has curl's bytes and the SHA-256 the provider reported.

Before each download, whoever makes it, the machine is settled: earlier files are written back
and removed, then a scratch file of the export's size is written and deleted, so the download
writes into memory the guest really holds. On this project's VM the host takes freed guest memory
back (free page reporting), and page-cache writes into memory it must fault in again cost 3-10x
(benchmarks/HISTORY.md, "The machine's memory"): without this step a round measures the host more
than either client. `--cold-memory` waits 5 s instead, so that the host has taken it back.

`--baseline-src` times a second provider, another checkout's `src` (say, a `git worktree` of an
older commit), in the same rounds: before/after figures from one run.

    python benchmarks/download_throughput.py            # 1 GiB per chunk size, judged: >= 0.9x curl
    python benchmarks/download_throughput.py --smoke    # 16 MiB, 2 rounds, not judged
    python benchmarks/download_throughput.py --baseline-src /tmp/before/src --rounds 7
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _harness import Checks, RunningEmulator, emulator, machine_line, median, verdict

from airflow_provider_flexinsights.emulator import BULK_REPORT, DEMO_WORKSPACE

CHUNK_SIZES = {"8 KiB": 8 << 10, "64 KiB": 64 << 10, "1 MiB": 1 << 20}
TARGET_RATIO = 0.9
TARGET_RSS_GROWTH_MB = 50
CHILD = Path(__file__).with_name("_provider_download.py")
COLD_PAUSE_SECONDS = 5  # --cold-memory: long enough for this VM's host to take freed memory back


@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    sha256: str = ""  # what the provider reported (curl reports none)
    rss_growth_mb: float = 0.0


@dataclass
class ChunkSizeResult:
    label: str
    mib: float = 0.0
    runs: dict[str, list[Run]] = field(default_factory=dict)
    same_bytes: bool = True

    def round_ratios(self, who: str) -> list[float]:
        """Per round: curl's seconds over ``who``'s (above 1: ``who`` was faster)."""
        return [
            theirs.seconds / ours.seconds
            for ours, theirs in zip(self.runs[who], self.runs["curl"], strict=True)
        ]


@dataclass(frozen=True)
class Plan:
    size_mb: int
    rounds: int
    curl: str
    work: Path
    providers: dict[str, str | None]  # name -> src folder put first on sys.path (None: this checkout)
    warm_memory: bool


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _settle(path: Path, plan: Plan) -> None:
    """Same start for every download: no dirty pages still being written back, no earlier file, and
    as much free memory as the file needs, just freed, so still held (``--cold-memory``: given back)."""
    os.sync()
    path.unlink(missing_ok=True)
    if not plan.warm_memory:
        time.sleep(COLD_PAUSE_SECONDS)
        return
    scratch, block = plan.work / "warm-up", bytes(1 << 20)
    with scratch.open("wb") as file:
        for _ in range(plan.size_mb + 64):  # the export, and some for the rest of the run
            file.write(block)
    scratch.unlink()  # its dirty pages are dropped, never written back


def download_with_provider(
    running: RunningEmulator, uri: str, destination: Path, plan: Plan, src: str | None
) -> Run:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    command = [sys.executable, str(CHILD), running.url, uri, str(destination)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{CHILD.name} failed before its download (see its error above)")
        _settle(destination, plan)
        child.stdin.write("go\n")
        child.stdin.flush()
        result = json.loads(child.stdout.readline())
    return Run(result["seconds"], result["cpu_seconds"], result["sha256"], result["rss_growth_mb"])


def download_with_curl(running: RunningEmulator, uri: str, token: str, destination: Path, plan: Plan) -> Run:
    _settle(destination, plan)
    command = [
        plan.curl,
        "-s",
        "-f",
        "-H",
        f"X-GDC-AuthTT: {token}",
        "-o",
        str(destination),
        running.url + uri,
    ]
    cpu, began = _children_cpu_seconds(), time.perf_counter()
    subprocess.run(command, check=True)
    _fsync(destination)
    _fsync(destination.parent)  # as the provider does: the file is durable once reported
    return Run(time.perf_counter() - began, _children_cpu_seconds() - cpu)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def measure_chunk_size(label: str, plan: Plan) -> ChunkSizeResult:
    result = ChunkSizeResult(label, runs={who: [] for who in ("curl", *plan.providers)})
    size, chunk = str(plan.size_mb), str(CHUNK_SIZES[label])
    args = ("--pending-polls", "0", "--bulk-report-mb", size, "--chunk-bytes", chunk)
    with emulator(*args) as running:
        client = running.client()
        # The same export URI for every download: it stays downloadable once ready.
        uri = client.start_export(DEMO_WORKSPACE, BULK_REPORT, "2024-01-01", "2024-01-25")
        client.check_export(uri, success_body="discard")
        client.close()
        token = running.temporary_token()
        files = {who: plan.work / f"{who}.csv" for who in result.runs}
        order = list(result.runs)
        for round_ in range(plan.rounds):  # interleaved, each taking its turn to go first
            for who in order[round_ % len(order) :] + order[: round_ % len(order)]:
                if who == "curl":
                    run = download_with_curl(running, uri, token, files[who], plan)
                else:
                    run = download_with_provider(running, uri, files[who], plan, plan.providers[who])
                result.runs[who].append(run)
            curl_sha256 = _file_sha256(files["curl"])
            for who in plan.providers:  # each file read once: curl's bytes, and the SHA-256 reported
                result.same_bytes &= _file_sha256(files[who]) == curl_sha256 == result.runs[who][-1].sha256
        result.mib = files["curl"].stat().st_size / 2**20
    return result


def report(result: ChunkSizeResult, checks: Checks) -> None:
    gib = result.mib / 1024
    for who, runs in result.runs.items():
        mib_s = result.mib / median([run.seconds for run in runs])
        cpu = median([run.cpu_seconds for run in runs]) / gib
        line = f"{result.label:>6} chunks: {who:>8} {mib_s:7.1f} MiB/s (median), CPU {cpu:5.2f} s/GiB"
        if who != "curl":
            ratios = result.round_ratios(who)
            line += f"; {median(ratios):.2f}x curl, round ratios {' '.join(f'{r:.2f}' for r in ratios)}"
        print(line)
    ratios = result.round_ratios("provider")
    ratio = median(ratios)
    rounds = f"median of {len(ratios)} interleaved rounds; target >= {TARGET_RATIO}x"
    checks.judge(f"throughput at {result.label}", ratio >= TARGET_RATIO, f"{ratio:.2f}x curl ({rounds})")
    checks.judge(f"same bytes at {result.label}", result.same_bytes, "as curl, and the reported SHA-256")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", choices=sorted(CHUNK_SIZES), action="append", help="default: all three")
    parser.add_argument("--smoke", action="store_true", help="16 MiB, 2 rounds, not judged")
    parser.add_argument("--baseline-src", metavar="SRC", help="another checkout's src, timed as 'baseline'")
    parser.add_argument(
        "--cold-memory", action="store_true", help="wait 5 s before each download instead of warming memory"
    )
    args = parser.parse_args()
    size_mb, rounds = (16, 2) if args.smoke else (args.size_mb, args.rounds)
    curl = shutil.which("curl")
    if curl is None:
        print("curl not found: it is the reference; install it (Debian: apt-get install curl)")
        return 1
    providers: dict[str, str | None] = {"provider": None}
    if args.baseline_src:
        providers["baseline"] = str(Path(args.baseline_src).resolve())

    print(machine_line())
    checks = Checks()
    growth = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        plan = Plan(size_mb, rounds, curl, Path(tmp), providers, warm_memory=not args.cold_memory)
        for label in args.chunk or CHUNK_SIZES:
            result = measure_chunk_size(label, plan)
            report(result, checks)
            growth = max([growth, *(run.rss_growth_mb for run in result.runs["provider"])])
    memory = (
        "given back to the host before each download" if args.cold_memory else "warmed before each download"
    )
    print(f"export of {size_mb:,} MiB per chunk size; memory {memory}; {machine_line()}")
    target = f"over a 1 MB export in the same process, largest of all runs (target <= {TARGET_RSS_GROWTH_MB})"
    checks.judge("peak RSS growth", growth <= TARGET_RSS_GROWTH_MB, f"{growth:.1f} MB {target}")
    return verdict(checks, smoke=args.smoke)


if __name__ == "__main__":
    sys.exit(main())
