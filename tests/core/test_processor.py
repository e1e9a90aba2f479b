"""Engine semantics on memory:// with a fake clock: each test fails if the behaviour breaks."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from conveyor import Message, StreamProcessor
from conveyor.errors import BrokerUnavailableError
from conveyor.testing import FakeClock, HandlerErrors, dead_letters, run_until_idle, wait_until
from conveyor_memory import MemoryBackend


def make(
    backend: MemoryBackend, clock: FakeClock, consumer: str = "c1", **kw: Any
) -> StreamProcessor:
    return StreamProcessor(backend, "orders", "billing", consumer, clock=clock, **kw)


async def test_handles_and_acks_every_message(memory: MemoryBackend, clock: FakeClock) -> None:
    seen: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        seen.append(payload["n"])

    await memory.publish_many("orders", [{"n": i} for i in range(25)])
    processor = make(memory, clock)
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=clock)
    assert seen == list(range(25))
    assert processor.stats.handled == 25
    assert processor.stats.acked == 25
    assert (await memory.group_info("orders", "billing")).pending == 0


async def test_retry_delays_grow_with_backoff_up_to_the_cap(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    times: list[float] = []

    async def always_fails(payload: dict[str, Any]) -> None:
        times.append(clock.monotonic())
        raise RuntimeError("down")

    await memory.publish("orders", {"n": 1})
    processor = make(
        memory, clock, retry_delay=1.0, max_retry_delay=4.0, max_deliveries=6, claim_idle=1000.0
    )
    processor.set_callback(always_fails)
    async with processor:
        errors = await run_until_idle(processor, clock=clock, raise_errors=False)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(errors) == 6
    assert len(gaps) == 5
    # attempt n waits base * 2**(n-1) scaled into [0.5, 1.0] of itself, capped at 4
    for n, gap in enumerate(gaps, start=1):
        raw = min(4.0, 1.0 * 2 ** (n - 1))
        assert raw * 0.5 <= gap <= raw + 1e-9, (n, gap)
    assert gaps[2] > gaps[0]
    assert processor.stats.dead_lettered == 1


async def test_delivery_count_grows_and_success_acks(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    counts: list[int] = []

    async def flaky(msg: Message) -> None:
        counts.append(msg.delivery_count)
        if msg.delivery_count < 3:
            raise ConnectionError("flaky")

    await memory.publish("orders", {"n": 1})
    processor = make(memory, clock, retry_delay=0.5)
    processor.set_callback(flaky)
    async with processor:
        with pytest.raises(HandlerErrors) as caught:
            await run_until_idle(processor, clock=clock)
    assert counts == [1, 2, 3]
    assert len(caught.value.errors) == 2
    assert processor.stats.retried == 2
    assert (await memory.group_info("orders", "billing")).pending == 0
    assert await dead_letters(memory, "orders") == []


async def test_poison_message_is_dead_lettered_once_with_reason(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    async def handle(payload: dict[str, Any]) -> None:
        if payload["poison"]:
            raise ValueError("bad order")

    poison_id = await memory.publish("orders", {"poison": True, "order_id": 13})
    await memory.publish("orders", {"poison": False})
    processor = make(memory, clock, max_deliveries=3, retry_delay=0.1)
    processor.set_callback(handle)
    async with processor:
        errors = await run_until_idle(processor, clock=clock, raise_errors=False)
    assert len(errors) == 3
    letters = await dead_letters(memory, "orders")
    assert len(letters) == 1
    record = letters[0]
    assert record["original"] == {"poison": True, "order_id": 13}
    assert record["error_type"] == "ValueError"
    assert record["error"] == "bad order"
    assert record["delivery_count"] == 3
    assert record["original_id"] == poison_id
    assert (record["stream"], record["group"]) == ("orders", "billing")
    assert record["dead_lettered_at"] == pytest.approx(clock.time(), abs=10)
    assert (await memory.group_info("orders", "billing")).pending == 0


async def test_undecodable_payload_is_dead_lettered_at_once(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    called: list[Any] = []

    async def handle(payload: dict[str, Any]) -> None:
        called.append(payload)

    await memory.publish_raw("orders", "{not json")
    processor = make(memory, clock, dead_letter_stream="orders.broken")
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=clock)
    assert called == []
    letters = await dead_letters(memory, "orders", dead_letter_stream="orders.broken")
    assert len(letters) == 1
    assert letters[0]["error_type"] == "DecodeError"
    assert letters[0]["delivery_count"] == 1
    assert "{not json" in letters[0]["original_raw"]


async def test_stopped_consumer_messages_are_claimed_after_claim_idle(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    started = asyncio.Event()

    async def stuck(payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(3600)

    handled: list[Message] = []

    async def works(msg: Message) -> None:
        handled.append(msg)

    await memory.publish("orders", {"n": 1})
    dying = make(memory, clock, "dying", claim_idle=30.0, shutdown_timeout=0.05)
    dying.set_callback(stuck)
    await dying.start()
    await started.wait()
    await dying.stop()  # gives up on the handler: message stays pending for "dying"
    rescuer = make(memory, clock, "rescuer", claim_idle=30.0)
    rescuer.set_callback(works)
    async with rescuer:
        await clock.advance(10.0)
        assert handled == []  # not idle long enough yet
        await clock.advance(25.0)
        await run_until_idle(rescuer, clock=clock)
    assert [m.data for m in handled] == [{"n": 1}]
    assert handled[0].delivery_count == 2
    assert rescuer.stats.claimed == 1


async def test_heartbeat_keeps_a_long_handler_from_being_claimed(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    release = asyncio.Event()
    slow_calls: list[Message] = []

    async def slow(msg: Message) -> None:
        slow_calls.append(msg)
        await release.wait()

    rival_calls: list[Message] = []

    async def rival_handler(msg: Message) -> None:
        rival_calls.append(msg)

    await memory.publish("orders", {"n": 1})
    worker = make(memory, clock, "worker", claim_idle=30.0)
    worker.set_callback(slow)
    rival = make(memory, clock, "rival", claim_idle=30.0)
    rival.set_callback(rival_handler)
    async with worker:
        await wait_until(lambda: bool(slow_calls))
        async with rival:
            for _ in range(20):  # 200 s of handler time, 6x claim_idle
                await clock.advance(10.0)
            assert rival_calls == []
            release.set()
            await run_until_idle(worker, clock=clock)
    assert len(slow_calls) == 1
    assert rival_calls == []
    assert (await memory.group_info("orders", "billing")).pending == 0


async def test_graceful_stop_acks_finished_and_leaves_unfinished_pending(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    gate = asyncio.Event()
    finished: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        if payload["n"] == 1:
            await asyncio.sleep(3600)  # never finishes
        await gate.wait()
        finished.append(payload["n"])

    await memory.publish_many("orders", [{"n": 0}, {"n": 1}, {"n": 2}])
    processor = make(memory, clock, concurrency=3, shutdown_timeout=0.3)
    processor.set_callback(handle)
    await processor.start()
    await wait_until(lambda: processor.stats.in_flight == 3)
    stopping = asyncio.ensure_future(processor.stop())
    await asyncio.sleep(0.01)
    gate.set()
    await stopping
    assert sorted(finished) == [0, 2]
    info = await memory.group_info("orders", "billing")
    assert info.pending == 1  # only the unfinished one
    # a restart of the same consumer gets exactly that one back
    again: list[int] = []

    async def record(payload: dict[str, Any]) -> None:
        again.append(payload["n"])

    restarted = make(memory, clock)
    restarted.set_callback(record)
    async with restarted:
        await run_until_idle(restarted, clock=clock)
    assert again == [1]


async def test_cancellation_never_acks(memory: MemoryBackend, clock: FakeClock) -> None:
    started = asyncio.Event()

    async def handle(payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(3600)

    await memory.publish("orders", {"n": 1})
    processor = make(memory, clock, shutdown_timeout=0.05)
    processor.set_callback(handle)

    async def run() -> None:
        async with processor:
            await asyncio.sleep(3600)

    task = asyncio.ensure_future(run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not processor.is_running
    assert processor.stats.acked == 0
    assert (await memory.group_info("orders", "billing")).pending == 1


async def test_concurrency_limit_is_respected(memory: MemoryBackend, clock: FakeClock) -> None:
    running = 0
    peak = 0

    async def handle(payload: dict[str, Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.002)
        running -= 1

    await memory.publish_many("orders", [{"n": i} for i in range(60)])
    processor = make(memory, clock, concurrency=4, batch_count=10)
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=clock)
    assert peak == 4
    assert processor.stats.handled == 60


async def test_order_is_kept_with_concurrency_one(memory: MemoryBackend, clock: FakeClock) -> None:
    seen: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        seen.append(payload["n"])

    await memory.publish_many("orders", [{"n": i} for i in range(200)])
    processor = make(memory, clock, batch_count=16)
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=clock)
    assert seen == list(range(200))


async def test_group_is_recreated_when_the_stream_disappears(
    memory: MemoryBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        seen.append(payload["n"])

    await memory.publish("orders", {"n": 1})
    processor = make(memory, clock, poll_interval=0.05)
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=clock)
        await memory.delete_stream("orders")
        await asyncio.sleep(0.1)
        await memory.publish("orders", {"n": 2})
        await run_until_idle(processor, clock=clock)
    assert seen == [1, 2]
    assert "disappeared" in caplog.text


async def test_new_messages_wake_the_reader_without_polling(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    got = asyncio.Event()

    async def handle(payload: dict[str, Any]) -> None:
        got.set()

    processor = make(memory, clock, poll_interval=3600.0)  # a poll would never come back
    processor.set_callback(handle)
    async with processor:
        await asyncio.sleep(0.01)
        await memory.publish("orders", {"n": 1})
        await asyncio.wait_for(got.wait(), 2.0)


class _Unreachable:
    """A storage whose broker never answers (the three seed methods + ensure_group)."""

    calls = 0

    async def create_group(self, stream_name: str, group_name: str) -> None:
        _Unreachable.calls += 1
        raise BrokerUnavailableError("connection refused")

    async def read_events(
        self, stream_name: str, group_name: str, consumer_name: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        raise BrokerUnavailableError("connection refused")

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        raise BrokerUnavailableError("connection refused")


async def test_start_raises_a_typed_error_after_bounded_retries() -> None:
    async def handle(payload: dict[str, Any]) -> None:
        return None

    processor = StreamProcessor(_Unreachable(), "s", "g", "c", connect_attempts=3)
    processor.set_callback(handle)
    _Unreachable.calls = 0
    with pytest.raises(BrokerUnavailableError, match="after 3 attempts"):
        await processor.start()
    assert _Unreachable.calls == 3
    assert not processor.is_running


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"retry_delay": -1}, "retry_delay"),
        ({"max_deliveries": 0}, "max_deliveries"),
        ({"claim_idle": 0}, "claim_idle"),
        ({"shutdown_timeout": -0.1}, "shutdown_timeout"),
        ({"batch_count": 0}, "batch_count"),
        ({"start": "middle"}, "start"),
    ],
)
def test_invalid_options_raise_value_error(
    memory: MemoryBackend, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        StreamProcessor(memory, "s", "g", "c", **kwargs)


def test_non_coroutine_handler_is_refused(memory: MemoryBackend) -> None:
    processor = StreamProcessor(memory, "s", "g", "c")

    def sync_handler(payload: dict[str, Any]) -> None:
        return None

    with pytest.raises(TypeError, match="must be an async function"):
        processor.set_callback(sync_handler)  # type: ignore[arg-type]


async def test_start_without_callback_is_refused(memory: MemoryBackend) -> None:
    with pytest.raises(RuntimeError, match="set_callback"):
        await StreamProcessor(memory, "s", "g", "c").start()


async def test_stop_is_idempotent_and_start_after_stop_works(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    seen: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        seen.append(payload["n"])

    processor = make(memory, clock)
    processor.set_callback(handle)
    await processor.stop()
    await processor.start()
    assert processor.is_running
    await memory.publish("orders", {"n": 1})
    await run_until_idle(processor, clock=clock)
    await asyncio.gather(processor.stop(), processor.stop())
    await processor.stop()
    assert not processor.is_running
    await processor.start()
    await memory.publish("orders", {"n": 2})
    await run_until_idle(processor, clock=clock)
    await processor.stop()
    assert seen == [1, 2]


async def test_stats_report_in_flight(memory: MemoryBackend, clock: FakeClock) -> None:
    gate = asyncio.Event()

    async def handle(payload: dict[str, Any]) -> None:
        await gate.wait()

    await memory.publish_many("orders", [{"n": 1}, {"n": 2}])
    processor = make(memory, clock, concurrency=2)
    processor.set_callback(handle)
    async with processor:
        await wait_until(lambda: processor.stats.in_flight == 2)
        assert processor.stats.as_dict()["in_flight"] == 2
        gate.set()
        await run_until_idle(processor, clock=clock)
    assert processor.stats.in_flight == 0
    assert processor.stats.handled == 2
