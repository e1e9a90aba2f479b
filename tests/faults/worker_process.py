"""A worker process for the fault tests: ``python worker_process.py URL STREAM GROUP NAME
OUT CLAIM_IDLE``. It handles the stream's messages and appends each handled ``n`` to OUT
(one line each, flushed before the handler returns: before the message is acked)."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any, TextIO

import conveyor


async def main(
    url: str, stream: str, group: str, name: str, handled: TextIO, claim_idle: float
) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def handle(payload: dict[str, Any]) -> None:
        handled.write(f"{payload['n']}\n")
        handled.flush()

    async with conveyor.connect(url) as backend:
        processor = conveyor.StreamProcessor(
            backend, stream, group, name, batch_count=20, claim_idle=claim_idle
        )
        processor.set_callback(handle)
        async with processor:
            print("ready", flush=True)  # noqa: T201 - the test waits for this line
            await stop.wait()


if __name__ == "__main__":
    url, stream, group, name, out, claim_idle = sys.argv[1:7]
    with open(out, "a", buffering=1, encoding="utf-8") as handled:
        asyncio.run(main(url, stream, group, name, handled, float(claim_idle)))
