"""Faults injected from outside, every message counted: what the broker confirmed to a
publisher must be handled (lost must be 0); duplicates are allowed (at least once) and
reported. Each test owns its broker process or a proxy in front of one.

Covered here: a broker restarted under load, connections cut through a TCP proxy, a
worker process SIGKILLed while another takes over. "Recovery" is the time from the fault
until a message published after it was handled (the flow resumed). The large-binary
poison entry and a stream deleted under a reader are engine tests on every backend
(tests/core/test_processor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

import conveyor
from conveyor import StreamBackend, StreamProcessor
from conveyor.options import split_options
from conveyor.testing import wait_until
from conveyor.testing.processes import LocalNats, LocalRedis, TcpProxy, publish_steadily

# The suite's 60 s timeout would cut the tests' own waits (up to 90 s for a recovery,
# several in a row) and hide which one failed: theirs say what did not happen.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@dataclass
class FaultResult:
    """What one fault did to one backend's messages (reported to $CONVEYOR_FAULT_REPORT
    as a JSON line when it is set)."""

    fault: str
    backend: str
    published: int
    lost: int
    duplicates: int
    recovery_seconds: float
    notes: list[str] = field(default_factory=list)

    def report(self) -> None:
        path = os.environ.get("CONVEYOR_FAULT_REPORT")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(asdict(self)) + "\n")


WORKER = Path(__file__).with_name("worker_process.py")

#: NATS options that notice an outage (and recover) within about a second.
NATS_OUTAGE = {"reconnect_wait": "0.2", "request_timeout": "1", "group_check_interval": "1"}


class Tally:
    """Confirmed publishes against handled messages."""

    def __init__(self) -> None:
        self.confirmed: set[int] = set()
        self.handled: Counter[int] = Counter()
        self.outage_at: float | None = None
        self.back_at: float | None = None

    def handle(self, n: int) -> None:
        self.handled[n] += 1

    def fault_now(self) -> int:
        """Mark the fault; return the highest number confirmed by then."""
        self.outage_at = self.outage_at or time.monotonic()
        return max(self.confirmed, default=-1)

    async def recovered(self, mark: int, seen: Callable[[], Counter[int]]) -> None:
        """Wait until a message published after the fault was handled (the flow resumed);
        the time it took is the recovery."""
        await wait_until(lambda: any(n > mark for n in seen()), timeout=90, interval=0.02)
        self.back_at = self.back_at or time.monotonic()

    @property
    def done(self) -> bool:
        return self.confirmed <= set(self.handled)

    def result(self, fault: str, backend: str, notes: list[str] | None = None) -> FaultResult:
        recovery = (self.back_at or time.monotonic()) - (self.outage_at or time.monotonic())
        return FaultResult(
            fault,
            backend,
            published=len(self.confirmed),
            lost=len(self.confirmed - set(self.handled)),
            duplicates=sum(c - 1 for c in self.handled.values() if c > 1),
            recovery_seconds=round(recovery, 3),
            notes=notes or [],
        )


@contextlib.asynccontextmanager
async def processing(
    backend: StreamBackend, stream: str, tally: Tally, **options: Any
) -> AsyncIterator[StreamProcessor]:
    async def handle(payload: dict[str, Any]) -> None:
        tally.handle(payload["n"])

    options.setdefault("claim_idle", 2.0)
    options.setdefault("retry_delay", 0.1)
    processor = StreamProcessor(backend, stream, "workers", "w1", batch_count=20, **options)
    processor.set_callback(handle)
    async with processor:
        yield processor


async def run_with_fault(
    publisher: StreamBackend,
    consumer: StreamBackend,
    stream: str,
    fault: Callable[[Tally], Any],
    *,
    n: int = 600,
    at: tuple[int, ...] = (200,),
) -> tuple[Tally, StreamProcessor]:
    """Publish `n` while a processor consumes; call `fault` when `at` confirmed; wait
    until every confirmed message was handled."""
    tally = Tally()
    async with processing(consumer, stream, tally) as processor:
        sender = asyncio.ensure_future(publish_steadily(publisher, stream, n, tally.confirmed))
        try:
            for mark in at:
                await wait_until(lambda m=mark: len(tally.confirmed) >= m, timeout=60)  # type: ignore[misc]
                mark = tally.fault_now()
                await fault(tally)
                await tally.recovered(mark, lambda: tally.handled)
            await asyncio.wait_for(sender, 120)
            await wait_until(lambda: tally.done, timeout=90)
            assert processor.is_running
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    return tally, processor


# -- a broker restarted under load ------------------------------------------------------


@pytest.mark.parametrize("kind", ["redis", "nats"])
async def test_broker_restart_under_load_loses_nothing(
    kind: str, request: pytest.FixtureRequest
) -> None:
    server: LocalRedis | LocalNats = request.getfixturevalue(f"local_{kind}")
    options = NATS_OUTAGE if kind == "nats" else {}
    publisher = await conveyor.connect(server.url, **options)
    consumer = await conveyor.connect(server.url, **options)

    async def restart(tally: Tally) -> None:
        await server.arestart()

    try:
        tally, processor = await run_with_fault(publisher, consumer, "load", restart)
    finally:
        await publisher.aclose()
        await consumer.aclose()
    result = tally.result("broker restart", kind, [f"outages={processor.stats.outages}"])
    result.report()
    assert result.lost == 0, result
    assert processor.stats.outages >= 1


# -- connections cut through a proxy ----------------------------------------------------


@pytest.mark.parametrize("kind", ["redis", "nats"])
async def test_connections_cut_mid_read_lose_nothing(
    kind: str, request: pytest.FixtureRequest
) -> None:
    tag = uuid.uuid4().hex[:8]
    base, query = split_options(request.getfixturevalue(f"{kind}_url"))
    async with contextlib.AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(TcpProxy(_host_port(base)))
        if kind == "redis":
            extra = {"key_prefix": f"conveyor-fault-{tag}:"}
            stack.push_async_callback(_drop_redis_keys, base, f"conveyor-fault-{tag}:")
            url = f"redis://127.0.0.1:{proxy.port}/0?{urlencode({**query, **extra})}"
        else:
            extra = {"stream_prefix": f"F{tag}_", "subject_prefix": f"conveyor-fault.{tag}"}
            stack.push_async_callback(_drop_nats_streams, base, f"F{tag}_")
            url = f"nats://127.0.0.1:{proxy.port}?{urlencode({**query, **extra, **NATS_OUTAGE})}"
        await _cut_twice(kind, url, f"cut:{tag}", proxy, stack)


async def test_kafka_connections_cut_mid_read_lose_nothing(
    tansu_behind_proxy: tuple[str, TcpProxy],
) -> None:
    url, proxy = tansu_behind_proxy
    async with contextlib.AsyncExitStack() as stack:
        await _cut_twice("kafka", url, f"kt-cut-{uuid.uuid4().hex[:8]}", proxy, stack)


async def _cut_twice(
    kind: str, url: str, stream: str, proxy: TcpProxy, stack: contextlib.AsyncExitStack
) -> None:
    publisher = await conveyor.connect(url)
    consumer = await conveyor.connect(url)
    stack.push_async_callback(publisher.aclose)
    stack.push_async_callback(consumer.aclose)

    async def cut(tally: Tally) -> None:
        await proxy.refuse(1.0)
        await proxy.cut()

    tally, _ = await run_with_fault(publisher, consumer, stream, cut, at=(150, 350))
    result = tally.result("connection cut (x2)", kind, [f"cuts={proxy.cuts}"])
    result.report()
    assert result.lost == 0, result
    assert proxy.cuts >= 2


def _host_port(base: str) -> tuple[str, int]:
    netloc = base.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = netloc.partition(":")
    return host or "127.0.0.1", int(port or (6379 if base.startswith("redis") else 4222))


async def _drop_redis_keys(base: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(base)
    keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def _drop_nats_streams(base: str, prefix: str) -> None:
    import nats

    nc = await nats.connect(base)
    js = nc.jetstream()
    for info in await js.streams_info():
        if info.config.name and info.config.name.startswith(prefix):
            await js.delete_stream(info.config.name)
    await nc.close()


# -- a worker process killed while another takes over ----------------------------------


@pytest.mark.parametrize("kind", ["redis", "nats", "kafka"])
async def test_a_killed_worker_s_messages_are_taken_over(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    shared = request.getfixturevalue(f"{kind}_url")
    base, query = split_options(shared)
    cleanup: Callable[[], Any] | None = None
    if kind == "redis":
        query = {**query, "key_prefix": f"conveyor-fault-{tag}:"}
        cleanup = lambda: _drop_redis_keys(base, f"conveyor-fault-{tag}:")  # noqa: E731
        stream = f"kill:{tag}"
    elif kind == "nats":
        query = {**query, "stream_prefix": f"F{tag}_", "subject_prefix": f"conveyor-fault.{tag}"}
        cleanup = lambda: _drop_nats_streams(base, f"F{tag}_")  # noqa: E731
        stream = f"kill:{tag}"
    else:
        stream = f"kt-kill-{tag}"
    url = f"{base}?{urlencode(query)}" if query else base
    claim_idle = 1.5
    publisher = await conveyor.connect(url)
    outs = {name: tmp_path / f"{name}.txt" for name in ("a", "b")}
    workers = {name: _spawn(url, stream, name, out, claim_idle) for name, out in outs.items()}
    tally = Tally()
    sender: asyncio.Future[None] | None = None
    try:
        for process in workers.values():
            assert process.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 60)
            assert line.strip() == b"ready"

        def handled() -> Counter[int]:
            seen: Counter[int] = Counter()
            for out in outs.values():
                seen.update(_handled(out))
            return seen

        # The flow must still run at the kill, so that messages published after it are left
        # for the survivor: it starts once both workers are members and one handles (a first
        # message, n=-1). On Kafka that waits for the group to form: 1-2 s on Tansu (0.6),
        # which answers a JoinGroup when it next polls the group, half the rebalance timeout
        # later (1 s here), and so too a follower's SyncGroup that reaches it before the
        # leader's (Apache Kafka answers that one as soon as the leader's arrives). Started
        # at once, the 500 messages (~1.8 s) were at times all published before the first
        # was handled: the kill came after the last publish, and the wait for a message
        # published after it hung. (A member joining late would rebalance the group: as long
        # again without a handler, hence the wait for both members.)
        if kind == "kafka":
            await _kafka_group_formed(url, "workers", stream, members=2)
        await publisher.publish(stream, {"n": -1})
        await wait_until(lambda: -1 in handled(), timeout=60, interval=0.05)
        sender = asyncio.ensure_future(publish_steadily(publisher, stream, 500, tally.confirmed))

        # kill the worker that is handling (on Kafka one member holds the partition)
        await wait_until(lambda: sum(handled().values()) >= 100, timeout=90, interval=0.05)
        if sender.done():
            await sender  # its error, if it failed
            pytest.fail("the flow ended before the kill: nothing was left to take over")
        victim = max(outs, key=lambda name: _count(outs[name]))
        survivor = "b" if victim == "a" else "a"
        os.kill(workers[victim].pid, signal.SIGKILL)
        workers[victim].wait(timeout=10)
        mark = tally.fault_now()
        killed_with = _count(outs[victim])
        # the survivor's own output: the victim may have handled a message above `mark`
        # (published before the kill, its confirmation not yet back to the publisher)
        await tally.recovered(mark, lambda: _handled(outs[survivor]))
        await asyncio.wait_for(sender, 120)
        await wait_until(lambda: tally.confirmed <= set(handled()), timeout=90, interval=0.1)
        tally.handled = handled()
    finally:
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        for process in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
        await publisher.aclose()
        if cleanup is not None:
            await cleanup()
    result = tally.result("worker SIGKILL", kind, [f"killed after {killed_with} handled"])
    result.report()
    assert result.lost == 0, result


def _spawn(
    url: str, stream: str, name: str, out: Path, claim_idle: float
) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(WORKER), url, stream, "workers", name, str(out), str(claim_idle)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _count(out: Path) -> int:
    return len(out.read_text().split()) if out.exists() else 0


def _handled(out: Path) -> Counter[int]:
    """The numbers a worker wrote to `out`, with how often each was handled."""
    return Counter(int(x) for x in out.read_text().split()) if out.exists() else Counter()


async def _kafka_group_formed(url: str, group: str, stream: str, *, members: int) -> None:
    """Wait until the Kafka group of conveyor group `group` on `stream` is Stable with
    `members` members (DescribeGroups)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from conveyor_kafka import KafkaSettings

    base, options = split_options(url)
    settings = KafkaSettings.from_url(base, options)
    group_id = settings.group_id(group, stream)
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            response = (await admin.describe_consumer_groups([group_id]))[0]
            _, _, state, _, _, joined = response.groups[0][:6]
            if state == "Stable" and len(joined) == members:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group_id!r}: {state} with {len(joined)} members")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
