"""Peak RSS of a conveyor consumer draining a large Redis backlog, in a subprocess.

The parent preloads the backlog, starts ``python -m benchmarks.rss_drain --child ...``
(a `StreamProcessor`, batch 100, concurrency 1, no-op handler), samples the child's RSS
with psutil while it runs, and checks the group afterwards. The child reports its own peak
(``VmHWM``) and its peak once connected, before consuming.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from benchmarks.common import BATCH, BenchResult, Tally

import conveyor
from conveyor.bench import preload
from conveyor.protocol import StreamBackend

__all__ = ["measure"]

_ROOT = Path(__file__).resolve().parent.parent


async def measure(backend: StreamBackend, url: str, stream: str, n: int) -> BenchResult:
    """Preload `n` messages on `stream` via `backend`, drain them in a child process."""
    started = time.perf_counter()
    parts = 4  # concurrent pipelines: the server works while the client encodes
    await asyncio.gather(
        *(preload(backend, stream, n // parts + (i < n % parts)) for i in range(parts))
    )
    preload_seconds = time.perf_counter() - started
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.rss_drain",
        "--child",
        url,
        stream,
        str(n),
        cwd=_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    sampled = 0
    watched = psutil.Process(child.pid)
    waiter = asyncio.ensure_future(child.communicate())
    while not waiter.done():
        try:
            sampled = max(sampled, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
        await asyncio.wait([waiter], timeout=0.05)
    out = (await waiter)[0].decode()
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    info = await backend.group_info(stream, "rss")
    handled = int(report.get("handled", 0))
    peak_mib = float(report.get("peak_rss_kib", 0)) / 1024
    return BenchResult(
        "consumer peak RSS",
        "redis",
        n,
        float(report.get("seconds", 0.0)),
        rate=n / report["seconds"] if report.get("seconds") else None,
        verified=child.returncode == 0 and handled == n and info.pending == 0 and not info.lag,
        notes={
            "peak_rss_mib": round(peak_mib, 1),
            "sampled_peak_rss_mib": round(sampled / 2**20, 1),
            "rss_before_consuming_mib": round(float(report.get("start_rss_kib", 0)) / 1024, 1),
            "preload_seconds": round(preload_seconds, 1),
            "handled": handled,
        },
    )


def _peak_kib() -> int:
    """This process's peak RSS in KiB: ``VmHWM`` where Linux has it, else ru_maxrss.

    ``ru_maxrss`` alone would mislead: Linux carries the parent's high-water mark over
    fork and exec into the child's.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _drain(url: str, stream: str, n: int) -> dict[str, Any]:
    async with conveyor.connect(url) as backend:
        await backend.create_group(stream, "rss")
        start_rss = _peak_kib()
        tally = Tally(n)

        async def handler(payload: dict[str, Any]) -> None:
            tally.hit()

        processor = conveyor.StreamProcessor(
            backend, stream, "rss", "rss-1", batch_count=BATCH, claim_idle=300.0
        )
        processor.set_callback(handler)
        async with processor:
            await asyncio.wait_for(tally.done.wait(), 1800)
        seconds = time.perf_counter() - tally.first
    return {
        "handled": tally.count,
        "seconds": seconds,
        "start_rss_kib": start_rss,
        "peak_rss_kib": _peak_kib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="child of the RSS benchmark")
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("url")
    parser.add_argument("stream")
    parser.add_argument("n", type=int)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_drain(args.url, args.stream, args.n))))


if __name__ == "__main__":
    main()
