"""Engine semantics on every backend (the `engine` fixture of tests/conftest.py runs each
test on memory, Redis, NATS and Kafka), with a fake clock driving the engine's timers.

Where a backend differs (who claims, exact delivery counts, partition-level holds), the
test reads its capabilities or declared features and checks the behaviour that backend
promises; each test fails if that behaviour breaks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from conveyor import Message, ProcessorOptions, StreamProcessor
from conveyor.errors import BrokerUnavailableError, ConfigurationError
from conveyor.testing import HandlerErrors, dead_letters, run_until_idle, wait_until
from conveyor_memory import MemoryBackend

if TYPE_CHECKING:
    from tests.conftest import EngineEnv


async def pending(env: EngineEnv) -> int:
    return (await env.backend.group_info(env.stream, "billing")).pending


async def test_handles_and_acks_every_message(engine: EngineEnv) -> None:
    seen: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        seen.append(payload["n"])

    await engine.backend.publish_many(engine.stream, [{"n": i} for i in range(25)])
    processor = engine.processor()
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=engine.clock, timeout=30)
    assert seen == list(range(25))
    assert processor.stats.handled == 25
    assert processor.stats.acked == 25
    assert await pending(engine) == 0


async def test_retry_delays_grow_with_backoff_up_to_the_cap(engine: EngineEnv) -> None:
    engine_timer = engine.capabilities.redelivery == "engine"
    # engine retries run on the fake clock; a broker's (JetStream nack) on real time
    base, cap = (1.0, 4.0) if engine_timer else (0.2, 0.8)
    now = engine.clock.monotonic if engine_timer else time.monotonic
    times: list[float] = []

    async def always_fails(payload: dict[str, Any]) -> None:
        times.append(now())
        raise RuntimeError("down")

    await engine.backend.publish(engine.stream, {"n": 1})
    processor = engine.processor(
        retry_delay=base, max_retry_delay=cap, max_deliveries=6, claim_idle=1000.0
    )
    processor.set_callback(always_fails)
    async with processor:
        errors = await run_until_idle(processor, clock=engine.clock, raise_errors=False, timeout=30)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(errors) == 6
    assert len(gaps) == 5
    slack = 0.0 if engine_timer else 0.3  # a broker's timer and the network
    # attempt n waits base * 2**(n-1) scaled into [0.5, 1.0] of itself, capped
    for n, gap in enumerate(gaps, start=1):
        raw = min(cap, base * 2 ** (n - 1))
        assert raw * 0.5 - 0.05 <= gap <= raw + 1e-9 + slack, (n, gap)
    assert processor.stats.dead_lettered == 1


async def test_delivery_count_grows_and_success_acks(engine: EngineEnv) -> None:
    counts: list[int] = []
    headers: list[dict[str, str]] = []

    async def flaky(msg: Message) -> None:
        counts.append(msg.delivery_count)
        headers.append(msg.headers)
        if msg.delivery_count < 3:
            raise ConnectionError("flaky")

    await engine.backend.publish(engine.stream, {"n": 1}, headers={"traceparent": "t-1"})
    processor = engine.processor(retry_delay=0.2)
    processor.set_callback(flaky)
    async with processor:
        with pytest.raises(HandlerErrors) as caught:
            await run_until_idle(processor, clock=engine.clock, timeout=30)
    assert counts == [1, 2, 3]
    assert headers == [{"traceparent": "t-1"}] * 3
    assert len(caught.value.errors) == 2
    assert processor.stats.retried == 2
    assert await pending(engine) == 0
    assert await dead_letters(engine.backend, engine.stream) == []


async def test_poison_message_is_dead_lettered_once_with_reason(engine: EngineEnv) -> None:
    async def handle(payload: dict[str, Any]) -> None:
        if payload["poison"]:
            raise ValueError("bad order")

    stream = engine.stream
    poison_id = await engine.backend.publish(stream, {"poison": True, "order_id": 13})
    await engine.backend.publish(stream, {"poison": False})
    processor = engine.processor(max_deliveries=3, retry_delay=0.1)
    processor.set_callback(handle)
    async with processor:
        errors = await run_until_idle(processor, clock=engine.clock, raise_errors=False, timeout=30)
    assert len(errors) == 3
    letters = await dead_letters(engine.backend, stream)
    assert len(letters) == 1
    record = letters[0]
    assert record["original"] == {"poison": True, "order_id": 13}
    assert record["error_type"] == "ValueError"
    assert record["error"] == "bad order"
    assert record["delivery_count"] == 3
    assert record["original_id"] == poison_id
    assert (record["stream"], record["group"]) == (stream, "billing")
    assert record["dead_lettered_at"] == pytest.approx(engine.clock.time(), abs=10)
    assert await pending(engine) == 0


async def test_undecodable_payload_is_dead_lettered_at_once(engine: EngineEnv) -> None:
    called: list[Any] = []

    async def handle(payload: dict[str, Any]) -> None:
        called.append(payload)

    await engine.publish_raw(engine.stream, b"{not json")
    await engine.backend.publish(engine.stream, {"fine": True})
    broken = f"{engine.stream}.broken"
    processor = engine.processor(dead_letter_stream=broken)
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=engine.clock, timeout=30)
    assert called == [{"fine": True}]
    letters = await dead_letters(engine.backend, engine.stream, dead_letter_stream=broken)
    assert len(letters) == 1
    assert letters[0]["error_type"] == "DecodeError"
    assert letters[0]["delivery_count"] == 1
    assert "{not json" in letters[0]["original_raw"]
    assert await pending(engine) == 0


async def test_a_large_binary_entry_is_dead_lettered_with_a_bounded_excerpt(
    engine: EngineEnv,
) -> None:
    """A foreign producer's 512 KiB of binary must not stop the group (its record used to
    be 1.8 MB of repr, refused by NATS and Kafka, and the processor stopped on it)."""
    handled: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        handled.append(payload["n"])

    blob = hashlib.sha256(b"seed").digest() * (512 * 1024 // 32)  # 512 KiB, not UTF-8 text
    blob = b"\xff\xfe" + blob
    await engine.publish_raw(engine.stream, blob)
    await engine.backend.publish_many(engine.stream, [{"n": i} for i in range(5)])
    processor = engine.processor()
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=engine.clock, timeout=30)
        assert processor.is_running
    assert handled == list(range(5))
    assert processor.stats.dead_letter_failures == 0
    (letter,) = await dead_letters(engine.backend, engine.stream)
    assert letter["error_type"] == "DecodeError"
    assert letter["original_size"] == len(blob)
    assert letter["original_sha256"] == hashlib.sha256(blob).hexdigest()
    assert base64.b64decode(letter["original_base64"]) == blob[:4096]
    assert len(json.dumps(letter)) < 16_384
    assert await pending(engine) == 0


async def test_stopped_consumer_messages_are_taken_over(engine: EngineEnv) -> None:
    started = asyncio.Event()

    async def stuck(payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(3600)

    handled: list[Message] = []

    async def works(msg: Message) -> None:
        handled.append(msg)

    idle = engine.claim_idle
    await engine.backend.publish(engine.stream, {"n": 1})
    dying = engine.processor("dying", shutdown_timeout=0.05)
    dying.set_callback(stuck)
    await dying.start()
    await asyncio.wait_for(started.wait(), 30)
    await dying.stop()  # gives up on the handler: the message stays pending for "dying"
    rescuer = engine.processor("rescuer")
    rescuer.set_callback(works)
    async with rescuer:
        if engine.capabilities.claim == "engine":
            await engine.elapse(idle / 3)
            assert handled == []  # not idle long enough yet
            await engine.elapse(idle)
        await wait_until(lambda: bool(handled), timeout=idle + 30)
        await run_until_idle(rescuer, clock=engine.clock, timeout=30)
    assert [m.data for m in handled] == [{"n": 1}]
    if engine.features.exact_delivery_count:
        assert handled[0].delivery_count == 2
    assert rescuer.stats.claimed == (1 if engine.capabilities.claim == "engine" else 0)


async def test_heartbeat_keeps_a_long_handler_from_being_claimed(engine: EngineEnv) -> None:
    if engine.features.contiguous_ack:
        pytest.skip(
            f"{engine.kind} declares partition-level holds: a member joining the group may"
            " take a partition with an unfinished message (at least once)"
        )
    release = asyncio.Event()
    slow_calls: list[Message] = []

    async def slow(msg: Message) -> None:
        slow_calls.append(msg)
        await release.wait()

    rival_calls: list[Message] = []

    async def rival_handler(msg: Message) -> None:
        rival_calls.append(msg)

    await engine.backend.publish(engine.stream, {"n": 1})
    worker = engine.processor("worker")
    worker.set_callback(slow)
    rival = engine.processor("rival")
    rival.set_callback(rival_handler)
    async with worker:
        await wait_until(lambda: bool(slow_calls), timeout=30)
        async with rival:
            for _ in range(12):  # 4x claim_idle of handler time
                await engine.elapse(engine.claim_idle / 3)
            assert rival_calls == []
            release.set()
            await run_until_idle(worker, clock=engine.clock, timeout=30)
    assert len(slow_calls) == 1
    assert rival_calls == []
    assert await pending(engine) == 0


async def test_graceful_stop_acks_finished_and_leaves_unfinished_pending(
    engine: EngineEnv,
) -> None:
    gate = asyncio.Event()
    finished: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        if payload["n"] == 1:
            await asyncio.sleep(3600)  # never finishes
        await gate.wait()
        finished.append(payload["n"])

    await engine.backend.publish_many(engine.stream, [{"n": 0}, {"n": 1}, {"n": 2}])
    processor = engine.processor(concurrency=3, shutdown_timeout=0.3)
    processor.set_callback(handle)
    await processor.start()
    await wait_until(lambda: processor.stats.in_flight == 3, timeout=30)
    stopping = asyncio.ensure_future(processor.stop())
    await asyncio.sleep(0.01)
    gate.set()
    await stopping
    assert sorted(finished) == [0, 2]
    assert processor.stats.acked == 2
    if not engine.features.contiguous_ack:
        assert await pending(engine) == 1  # only the unfinished one
    # a restart of the same consumer gets that one back
    again: list[int] = []

    async def record(payload: dict[str, Any]) -> None:
        again.append(payload["n"])

    restarted = engine.processor()
    restarted.set_callback(record)
    async with restarted:
        await wait_until(lambda: 1 in again, timeout=engine.claim_idle + 30)
        await run_until_idle(restarted, clock=engine.clock, timeout=30)
    if engine.features.contiguous_ack:
        assert sorted(again) == [1, 2]  # the commit point stays at the unfinished one
    else:
        assert again == [1]


async def test_cancellation_never_acks(engine: EngineEnv) -> None:
    started = asyncio.Event()

    async def handle(payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(3600)

    await engine.backend.publish(engine.stream, {"n": 1})
    processor = engine.processor(shutdown_timeout=0.05)
    processor.set_callback(handle)

    async def run() -> None:
        async with processor:
            await asyncio.sleep(3600)

    task = asyncio.ensure_future(run())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not processor.is_running
    assert processor.stats.acked == 0
    if not engine.features.contiguous_ack:
        assert await pending(engine) == 1


async def test_concurrency_limit_is_respected(engine: EngineEnv) -> None:
    running = 0
    peak = 0

    async def handle(payload: dict[str, Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.002)
        running -= 1

    await engine.backend.publish_many(engine.stream, [{"n": i} for i in range(60)])
    processor = engine.processor(concurrency=4, batch_count=10)
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=engine.clock, timeout=30)
    assert peak == 4
    assert processor.stats.handled == 60


async def test_order_is_kept_with_concurrency_one(engine: EngineEnv) -> None:
    seen: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        seen.append(payload["n"])

    await engine.backend.publish_many(engine.stream, [{"n": i} for i in range(200)])
    processor = engine.processor(batch_count=16)
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=engine.clock, timeout=30)
    if engine.features.ordering == "none":
        assert sorted(seen) == list(range(200))
    else:  # one partition per topic in these tests: publish order
        assert seen == list(range(200))


async def test_group_is_recreated_when_the_stream_disappears(
    engine: EngineEnv, caplog: pytest.LogCaptureFixture
) -> None:
    if engine.delete_stream is None:
        pytest.skip(f"{engine.kind}: the test broker mishandles a stream deleted under readers")
    seen: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        seen.append(payload["n"])

    await engine.backend.publish(engine.stream, {"n": 1})
    processor = engine.processor(poll_interval=0.05)
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=engine.clock, timeout=30)
        await engine.delete_stream(engine.stream)
        await wait_until(lambda: "disappeared" in caplog.text, timeout=30)
        await engine.backend.publish(engine.stream, {"n": 2})
        await wait_until(lambda: seen == [1, 2], timeout=30)
        assert processor.is_running
    assert seen == [1, 2]


async def test_new_messages_wake_the_reader_without_polling(engine: EngineEnv) -> None:
    got = asyncio.Event()

    async def handle(payload: dict[str, Any]) -> None:
        got.set()

    processor = engine.processor(poll_interval=3600.0)  # a poll would never come back
    processor.set_callback(handle)
    async with processor:
        await asyncio.sleep(0.05)
        if engine.kind == "kafka":
            await asyncio.sleep(8.0)  # the member joins its group first (Tansu: seconds)
        started = time.monotonic()
        await engine.backend.publish(engine.stream, {"n": 1})
        await asyncio.wait_for(got.wait(), 5.0)
        assert time.monotonic() - started < 2.0


async def test_stop_is_idempotent_and_start_after_stop_works(engine: EngineEnv) -> None:
    seen: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        seen.append(payload["n"])

    processor = engine.processor()
    processor.set_callback(handle)
    await processor.stop()
    await processor.start()
    assert processor.is_running
    await engine.backend.publish(engine.stream, {"n": 1})
    await wait_until(lambda: seen == [1], timeout=30)
    await asyncio.gather(processor.stop(), processor.stop())
    await processor.stop()
    assert not processor.is_running
    await processor.start()
    await engine.backend.publish(engine.stream, {"n": 2})
    await wait_until(lambda: seen == [1, 2], timeout=30)
    await processor.stop()
    assert seen == [1, 2]


async def test_stats_report_in_flight(engine: EngineEnv) -> None:
    gate = asyncio.Event()

    async def handle(payload: dict[str, Any]) -> None:
        await gate.wait()

    await engine.backend.publish_many(engine.stream, [{"n": 1}, {"n": 2}])
    processor = engine.processor(concurrency=2)
    processor.set_callback(handle)
    async with processor:
        await wait_until(lambda: processor.stats.in_flight == 2, timeout=30)
        assert processor.stats.as_dict()["in_flight"] == 2
        gate.set()
        await run_until_idle(processor, clock=engine.clock, timeout=30)
    assert processor.stats.in_flight == 0
    assert processor.stats.handled == 2


# -- not about a backend: options, handlers and a storage that never answers ---------------


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
        ({"concurrency": True}, "concurrency"),
        ({"poll_interval": "1"}, "poll_interval"),
        ({"dead_letter_stream": ""}, "dead_letter_stream"),
        ({"clock": object()}, "clock"),
    ],
)
def test_invalid_options_raise_configuration_errors(
    memory: MemoryBackend, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        StreamProcessor(memory, "s", "g", "c", **kwargs)
    with pytest.raises(ValueError, match=match):  # ConfigurationError is a ValueError
        ProcessorOptions(**kwargs)


@pytest.mark.parametrize("name", ["", 7, None])
def test_empty_or_non_str_names_are_refused(memory: MemoryBackend, name: Any) -> None:
    with pytest.raises(ConfigurationError, match="stream_name"):
        StreamProcessor(memory, name, "g", "c")
    with pytest.raises(ConfigurationError, match="consumer_name"):
        StreamProcessor(memory, "s", "g", name)


def test_non_coroutine_handler_is_refused(memory: MemoryBackend) -> None:
    processor = StreamProcessor(memory, "s", "g", "c")

    def sync_handler(payload: dict[str, Any]) -> None:
        return None

    with pytest.raises(TypeError, match="must be an async function"):
        processor.set_callback(sync_handler)  # type: ignore[arg-type]


async def test_start_without_callback_is_refused(memory: MemoryBackend) -> None:
    with pytest.raises(RuntimeError, match="set_callback"):
        await StreamProcessor(memory, "s", "g", "c").start()
