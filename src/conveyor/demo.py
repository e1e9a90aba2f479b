"""``conveyor demo``: a realistic self-contained run on any backend URL.

Publishes `count` order events while a group of processors consumes them with
concurrency; some orders fail once (retried), one is poison (dead-lettered). Shows a
progress bar and ends with a summary table; returns True when every order was accounted
for exactly (handled once or dead-lettered, nothing left pending). Then it deletes the
streams it created (the orders and their dead letters) unless `keep`: a stream named by
the caller is deleted only when it did not exist before the demo. A stream named by the
caller must be new or empty, and so must its dead-letter stream: the demo's group would
consume (and dead-letter) messages already there.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import time
import uuid
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from conveyor.cleanup import absent, remove_streams
from conveyor.errors import ConfigurationError, ConveyorError
from conveyor.message import Message
from conveyor.processor import StreamProcessor
from conveyor.protocol import StreamBackend
from conveyor.registry import connect
from conveyor.timeouts import within

__all__ = ["POISON_ORDER", "StreamInUseError", "run_demo"]

log = logging.getLogger("conveyor.demo")

POISON_ORDER = 13
_FLAKY_EVERY = 50  # orders with id % 50 == 7 fail on their first delivery
_MAX_DELIVERIES = 3


class StreamInUseError(ConfigurationError):
    """Raised by `run_demo` when the stream it was given (or that stream's dead-letter
    stream) already holds entries: its group would consume them.

    Attributes:
        stream: The stream given to the demo.
        holder: The stream holding entries (`stream` or ``<stream>.dead``).
        entries: How many, or None where the backend cannot say.
    """

    def __init__(self, stream: str, holder: str, entries: int | None) -> None:
        self.stream, self.holder, self.entries = stream, holder, entries
        super().__init__(
            f"stream {holder!r} already has {self.held}: the demo needs a new or empty stream"
        )

    @property
    def held(self) -> str:
        """``2 entries``, ``1 entry``, or ``entries`` when the count is unknown."""
        if self.entries is None:
            return "entries"
        return f"{self.entries} {'entry' if self.entries == 1 else 'entries'}"


async def _length(backend: StreamBackend, stream: str) -> int | None:
    """Entries `stream` holds now (0 when it does not exist), by `streams()` where the
    backend lists them; else by peeking: 0, or None for "some"."""
    listing = getattr(backend, "streams", None)
    if listing is not None:
        try:
            infos = await listing()
        except NotImplementedError:
            pass
        else:
            found = [info.length for info in infos if info.name == stream]
            if not found:
                return 0
            if found[0] is not None:
                return int(found[0])
    return 0 if not await backend.peek(stream, count=1) else None


async def _refuse_used(backend: StreamBackend, stream: str) -> None:
    for holder in (stream, f"{stream}.dead"):
        length = await _length(backend, holder)
        if length != 0:
            raise StreamInUseError(stream, holder, length)


class PaymentDeclined(Exception):
    """The demo's simulated permanent failure."""


class GatewayTimeout(Exception):
    """The demo's simulated transient failure."""


def _order(order_id: int, rng: random.Random) -> dict[str, Any]:
    return {
        "type": "order.created",
        "order_id": order_id,
        "customer": f"customer-{rng.randrange(1000)}",
        "amount": round(rng.uniform(5, 500), 2),
        "currency": "EUR",
        "items": [
            {"sku": f"SKU-{rng.randrange(100)}", "qty": rng.randint(1, 3)}
            for _ in range(rng.randint(1, 3))
        ],
        "published_at": time.time(),
    }


async def _clean_up(backend: StreamBackend, streams: list[str]) -> str | None:
    """Delete the demo's streams; a line saying so (or why they stay)."""
    try:
        removed = await remove_streams(backend, streams)
    except NotImplementedError as exc:
        return f"left the demo's streams on the broker: {exc}"
    if removed:
        return f"deleted the demo's streams {', '.join(removed)} (--keep leaves them)"
    return None


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def run_demo(
    url: str = "memory://demo",
    *,
    count: int = 5000,
    workers: int = 3,
    concurrency: int = 16,
    stream: str | None = None,
    console: Console | None = None,
    keep: bool = False,
) -> bool:
    """Run the demo; return True when every order is accounted for. Unless `keep`, the
    streams it created are deleted at the end (a `stream` that existed before is kept).

    Raises:
        ConfigurationError: `count` <= `POISON_ORDER`, or `workers` or `concurrency` < 1.
    """
    if count < POISON_ORDER + 1:
        raise ConfigurationError(
            f"count must be at least {POISON_ORDER + 1} (order {POISON_ORDER} is the poison"
            f" message), got {count!r}"
        )
    for option, number in (("workers", workers), ("concurrency", concurrency)):
        if number < 1:
            raise ConfigurationError(f"{option} must be >= 1, got {number!r}")
    console = console or Console()
    named = stream is not None
    stream = stream or f"demo.orders.{uuid.uuid4().hex[:8]}"
    group = "fulfilment"
    rng = random.Random(42)
    handled: dict[int, int] = {}
    latencies: list[float] = []
    finished = asyncio.Event()

    async with connect(url) as backend:
        created = [stream, f"{stream}.dead"]
        if named:  # never consume, dead-letter or delete what the user had before
            await _refuse_used(backend, stream)
            created = await absent(backend, created)
        note: str | None = None
        failed = True
        try:
            progress = Progress(
                TextColumn("[bold]orders"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            task = progress.add_task("orders", total=count)
            processors: list[StreamProcessor] = []

            def account() -> None:
                dead = sum(p.stats.dead_lettered for p in processors)
                progress.update(task, completed=len(handled) + dead)
                if len(handled) + dead >= count:
                    finished.set()

            async def fulfil(message: Message) -> None:
                order = message.data
                await asyncio.sleep(0.0005)  # the "payment gateway" call
                if order["order_id"] == POISON_ORDER:
                    raise PaymentDeclined(f"card of order {POISON_ORDER} declined permanently")
                if order["order_id"] % _FLAKY_EVERY == 7 and message.delivery_count == 1:
                    raise GatewayTimeout("payment gateway timed out")
                handled[order["order_id"]] = handled.get(order["order_id"], 0) + 1
                latencies.append(time.time() - order["published_at"])
                account()

            for index in range(workers):
                processor = StreamProcessor(
                    backend,
                    stream,
                    group,
                    f"demo-worker-{index}",
                    batch_count=100,
                    concurrency=concurrency,
                    retry_delay=0.05,
                    max_deliveries=_MAX_DELIVERIES,
                    claim_idle=30.0,
                    poll_interval=0.5,
                )
                processor.set_callback(fulfil)
                processors.append(processor)

            started = time.perf_counter()
            progress.start()
            try:
                for processor in processors:
                    await processor.start()
                console.print(
                    f"publishing {count:,} orders to {stream!r}; {workers} worker(s) with"
                    f" concurrency {concurrency} fulfil them. One order in {_FLAKY_EVERY} fails"
                    f" once and is retried; order {POISON_ORDER} always fails: it is dead-lettered"
                    f" after {_MAX_DELIVERIES} deliveries, and the error logged for it is expected."
                )
                for first in range(0, count, 200):
                    batch = [_order(i, rng) for i in range(first, min(count, first + 200))]
                    await backend.publish_many(stream, batch)
                    await asyncio.sleep(0)
                while not finished.is_set():
                    account()
                    try:
                        await within(finished.wait(), 0.2)
                    except asyncio.TimeoutError:
                        if time.perf_counter() - started > 120:
                            break
            except BaseException:
                progress.live.transient = True  # a failure: no bar left behind at 0/N
                progress.live.stop()
                raise
            else:
                progress.stop()
            finally:
                await asyncio.gather(*(p.stop() for p in processors))
            elapsed = time.perf_counter() - started
            info = await backend.group_info(stream, group)
            dead_letters = await backend.peek(f"{stream}.dead", count=10)
            failed = False
        finally:
            if keep:
                note = f"kept the demo's streams {stream} and {stream}.dead (--keep)"
            elif not failed:
                note = await _clean_up(backend, created)
            else:  # the failure is what the caller needs to see, not the cleanup's
                try:
                    await _clean_up(backend, created)
                except ConveyorError as exc:
                    log.debug("could not delete the demo's streams after a failure: %s", exc)

    stats = [p.stats for p in processors]
    dead = sum(s.dead_lettered for s in stats)
    retried = sum(s.retried for s in stats)
    table = Table(title=f"conveyor demo on {url.split('?')[0].split('@')[-1]}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("published", f"{count:,}"),
        ("handled", f"{len(handled):,}"),
        ("retried", f"{retried:,}"),
        ("dead-lettered", f"{dead:,}"),
        ("pending after stop", f"{info.pending:,}"),
        ("throughput", f"{(len(handled) + dead) / elapsed:,.0f} msg/s"),
        ("latency p50", f"{_percentile(latencies, 50) * 1000:.1f} ms"),
        ("latency p99", f"{_percentile(latencies, 99) * 1000:.1f} ms"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if note:
        console.print(note)
    for letter in dead_letters:
        record = letter.data
        console.print(
            f"dead letter: order {record['original']['order_id']} after"
            f" {record['delivery_count']} deliveries: {record['error_type']}: {record['error']}"
        )
    ok = (
        len(handled) == count - 1
        and dead == 1
        and info.pending == 0
        and all(n == 1 for n in handled.values())
    )
    if not ok:
        console.print("[red]demo check failed: not every order was accounted for exactly once")
    return ok
