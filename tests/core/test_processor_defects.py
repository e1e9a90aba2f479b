"""Regression tests for defects found in review of the first engine (each failed before
its fix)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import pytest

import conveyor
from conveyor import Message, StreamProcessor
from conveyor.errors import BackendError, BrokerUnavailableError, PayloadTooLargeError
from conveyor.options import redact_url
from conveyor.testing import FakeClock, dead_letters, run_until_idle, wait_until
from conveyor_memory import MemoryBackend, MemorySession


def make(
    backend: MemoryBackend, clock: FakeClock, consumer: str = "c1", **kw: Any
) -> StreamProcessor:
    return StreamProcessor(backend, "orders", "billing", consumer, clock=clock, **kw)


class _AcksFail(MemorySession):
    async def ack(self, messages: Sequence[Message]) -> None:
        raise BrokerUnavailableError("ack refused: the broker is down")


async def test_stop_returns_under_a_fake_clock_while_acks_keep_failing(
    memory: MemoryBackend, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MemorySession, "ack", _AcksFail.ack)
    handled = asyncio.Event()

    async def handle(payload: dict[str, Any]) -> None:
        handled.set()

    await memory.publish("orders", {"n": 1})
    processor = make(memory, clock, shutdown_timeout=0.5)
    processor.set_callback(handle)
    await processor.start()
    await asyncio.wait_for(handled.wait(), 5)
    started = time.monotonic()
    await asyncio.wait_for(processor.stop(), 10)  # hung forever before the fix
    assert time.monotonic() - started < 5
    assert processor.stats.acked == 0
    assert (await memory.group_info("orders", "billing")).pending == 1


async def test_a_stopping_processor_claims_nothing(memory: MemoryBackend, clock: FakeClock) -> None:
    gone = await memory.open_consumer("orders", "billing", "gone")
    await memory.publish("orders", {"n": "stale"})
    assert len(await gone.read(count=1, block=None)) == 1  # held by a consumer that died
    await gone.aclose()
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(payload: dict[str, Any]) -> None:
        started.set()
        await release.wait()

    processor = make(memory, clock, claim_idle=30.0, shutdown_timeout=30.0)
    processor.set_callback(slow)
    await processor.start()
    await memory.publish("orders", {"n": "mine"})
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.ensure_future(processor.stop())
    await asyncio.sleep(0.01)
    await clock.advance(60.0)  # the stale message is claimable now; a stopping keeper ticks
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert processor.stats.claimed == 0
    info = await memory.group_info("orders", "billing")
    assert {c.name: c.pending for c in info.consumers}["gone"] == 1


async def test_group_deleted_while_dead_lettering_does_not_stop_the_processor(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    async def poison(payload: dict[str, Any]) -> None:
        if payload.get("poison"):
            await memory.delete_stream("orders")  # the group vanishes under the worker
            raise ValueError("poison")

    await memory.publish("orders", {"poison": True})
    processor = make(memory, clock, max_deliveries=1)
    processor.set_callback(poison)
    async with processor:
        await wait_until(lambda: processor.stats.dead_lettered == 1)
        assert processor.is_running
        await memory.publish("orders", {"poison": False})
        await run_until_idle(processor, clock=clock)
    assert processor.error is None
    letters = await dead_letters(memory, "orders")
    assert [r["error"] for r in letters] == ["poison"]


async def test_an_on_error_hook_that_raises_does_not_stop_the_processor(
    memory: MemoryBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_hook(message: Message, exc: BaseException) -> None:
        raise KeyError("hook bug")

    calls: list[int] = []

    async def flaky(msg: Message) -> None:
        calls.append(msg.delivery_count)
        if msg.delivery_count == 1:
            raise RuntimeError("first time fails")

    await memory.publish("orders", {"n": 1})
    processor = make(memory, clock, on_error=broken_hook, retry_delay=0.1)
    processor.set_callback(flaky)
    with caplog.at_level(logging.ERROR, logger="conveyor.processor"):
        async with processor:
            await run_until_idle(processor, clock=clock, raise_errors=False)
            assert processor.is_running
    assert calls == [1, 2]
    assert processor.error is None
    assert "on_error hook" in caplog.text


async def test_a_backend_closed_under_a_running_processor_stops_it_and_says_why(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    async def handle(payload: dict[str, Any]) -> None:
        return None

    processor = make(memory, clock, poll_interval=0.05)
    processor.set_callback(handle)
    await processor.start()
    await memory.aclose()
    await wait_until(lambda: not processor.is_running, timeout=5)
    with pytest.raises(RuntimeError, match="BackendClosedError"):
        await processor.wait()


@pytest.mark.parametrize("url", ["memory://", "memory:///", "memory://?maxlen=5"])
async def test_memory_urls_without_a_name_open_the_default_broker(url: str) -> None:
    async with conveyor.connect(url) as backend:
        assert isinstance(backend, MemoryBackend)
        assert backend.settings.name == "default"
        if "maxlen" in url:
            assert backend.settings.maxlen == 5


@pytest.mark.parametrize(
    "url",
    [
        "kafka://h:9092?sasl_password=s3cret&partitions=2",
        "kafka://h:9092?sasl_username=alice&sasl_password=s3cret",
        "redis://user:s3cret@localhost:6379/0?key_prefix=app",
        "nats://s3cret@localhost:4222",
        "nats://localhost:4222?token=s3cret",
        "nats://localhost:4222?password=s3cret&user=bob",
    ],
)
def test_secrets_in_urls_are_redacted_wherever_a_url_is_shown(url: str) -> None:
    shown = redact_url(url)
    assert "s3cret" not in shown
    assert "***" in shown
    assert "s3cret" not in repr(conveyor.connect(url))


async def test_connect_logs_never_show_url_secrets(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        async with conveyor.connect("memory://redact?maxlen=3"):
            pass
        with pytest.raises(conveyor.ConveyorError):
            await conveyor.connect("nosuch://u:s3cret@h/?token=s3cret")
    assert "s3cret" not in caplog.text


async def test_seed_ack_event_acks_by_id_and_creates_nothing(memory: MemoryBackend) -> None:
    await memory.create_group("jobs", "workers")
    await memory.publish("jobs", {"n": 1})
    rows = await memory.read_events("jobs", "workers", "w1", 10)
    assert [data for _, data in rows] == [{"n": 1}]
    # another backend (another process, say) acks the id it never read itself
    other = await conveyor.connect(f"memory://{memory.settings.name}")
    await other.ack_event("jobs", "workers", rows[0][0])
    assert (await memory.group_info("jobs", "workers")).pending == 0
    await other.ack_event("no-such-stream", "workers", "1")
    assert "no-such-stream" not in memory.broker.streams
    await other.aclose()


_memory_ack = MemorySession.ack


class _SwallowsOneCancel(MemorySession):
    swallowed = 0

    async def ack(self, messages: Sequence[Message]) -> None:
        if _SwallowsOneCancel.swallowed == 0:
            try:
                await asyncio.sleep(3600)  # an ack stuck in a client library...
            except asyncio.CancelledError:
                _SwallowsOneCancel.swallowed += 1  # ...that swallows the cancellation
        await _memory_ack(self, messages)


async def test_stop_ends_even_when_a_client_library_swallows_a_cancellation(
    memory: MemoryBackend, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MemorySession, "ack", _SwallowsOneCancel.ack)
    _SwallowsOneCancel.swallowed = 0

    async def handle(payload: dict[str, Any]) -> None:
        return None

    processor = make(memory, clock, shutdown_timeout=0.2)
    processor.set_callback(handle)
    await processor.start()
    await memory.publish("orders", {"n": 1})
    await wait_until(lambda: processor.stats.handled == 1)
    await asyncio.sleep(0.05)  # the acker is inside the stuck ack
    await asyncio.wait_for(processor.stop(), 10)  # hung forever before the fix
    assert _SwallowsOneCancel.swallowed == 1
    assert not processor.is_running


async def _stop_during_an_ack(
    memory: MemoryBackend, clock: FakeClock, **options: Any
) -> tuple[StreamProcessor, float]:
    """Handle one message, stop while the acker is inside its ack: the processor and
    how long `stop()` took."""

    async def handle(payload: dict[str, Any]) -> None:
        return None

    processor = make(memory, clock, **options)
    processor.set_callback(handle)
    await processor.start()
    await memory.publish("orders", {"n": 1})
    await wait_until(lambda: processor.stats.handled == 1)
    await asyncio.sleep(0.05)  # the acker is inside the ack
    started = time.monotonic()
    await asyncio.wait_for(processor.stop(), 10)
    return processor, time.monotonic() - started


_ack_cancellations = 0


async def _slow_ack_that_swallows(self: MemorySession, messages: Sequence[Message]) -> None:
    """A 0.2 s ack through a client that, like nats-py's publish flush, swallows a
    cancellation and returns normally."""
    global _ack_cancellations
    try:
        await asyncio.sleep(0.2)
    except asyncio.CancelledError:
        _ack_cancellations += 1
    await _memory_ack(self, messages)


async def test_stop_lets_an_ack_in_flight_finish_instead_of_cancelling_it(
    memory: MemoryBackend,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    global _ack_cancellations
    _ack_cancellations = 0
    monkeypatch.setattr(MemorySession, "ack", _slow_ack_that_swallows)

    processor, took = await _stop_during_an_ack(memory, clock)
    # before: the ack was cancelled, swallowed it, and the acker then waited for work
    # until cancelled again a second later (a NATS processor's stop took ~1 s longer)
    assert _ack_cancellations == 0
    assert took < 0.8, took
    assert "went on after being cancelled" not in caplog.text
    assert (await memory.group_info("orders", "billing")).pending == 0
    assert processor.stats.acked == 1


_memory_dead_letter = MemorySession.dead_letter


async def _refuses_big_records(
    self: MemorySession, message: Message, *, dead_letter_stream: str, record: dict[str, Any]
) -> str:
    if record.get("original") is not None:
        raise PayloadTooLargeError("record larger than the broker accepts")
    return await _memory_dead_letter(
        self, message, dead_letter_stream=dead_letter_stream, record=record
    )


async def _refuses_everything(
    self: MemorySession, message: Message, *, dead_letter_stream: str, record: dict[str, Any]
) -> str:
    raise BackendError("the dead-letter stream is read-only")


async def test_a_refused_dead_letter_record_falls_back_to_the_minimal_record(
    memory: MemoryBackend, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MemorySession, "dead_letter", _refuses_big_records)

    async def poison(payload: dict[str, Any]) -> None:
        raise ValueError("no")

    await memory.publish("orders", {"big": "x" * 10_000})
    processor = make(memory, clock, max_deliveries=1)
    processor.set_callback(poison)
    async with processor:
        await run_until_idle(processor, clock=clock, raise_errors=False)
    (letter,) = await dead_letters(memory, "orders")
    assert letter["original"] is None
    assert letter["original_omitted"] is True
    assert letter["original_size"] == len('{"big":"' + "x" * 10_000 + '"}')
    assert letter["error"] == "no"
    assert processor.stats.dead_lettered == 1
    assert (await memory.group_info("orders", "billing")).pending == 0


async def test_a_dead_letter_stream_that_cannot_be_written_does_not_stop_the_group(
    memory: MemoryBackend, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MemorySession, "dead_letter", _refuses_everything)
    handled: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        if payload.get("poison"):
            raise ValueError("poison")
        handled.append(payload["n"])

    await memory.publish("orders", {"poison": True})
    await memory.publish_many("orders", [{"n": i} for i in range(3)])
    processor = make(memory, clock, max_deliveries=1)
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=clock, raise_errors=False)
        assert processor.is_running
    assert handled == [0, 1, 2]
    assert processor.stats.dead_letter_failures == 1
    assert processor.stats.dead_lettered == 0
    assert processor.error is None
    assert (await memory.group_info("orders", "billing")).pending == 1  # the poison stays


_memory_read = MemorySession.read


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    memory: MemoryBackend,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = {"reads": 4}

    async def flaky_read(self: MemorySession, *, count: int, block: float | None) -> list[Message]:
        if down["reads"] > 0:
            down["reads"] -= 1
            raise BrokerUnavailableError("connection refused")
        return await _memory_read(self, count=count, block=block)

    monkeypatch.setattr(MemorySession, "read", flaky_read)
    seen: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        seen.append(payload["n"])

    await memory.publish("orders", {"n": 1})
    processor = make(memory, clock, poll_interval=0.05)
    processor.set_callback(handle)
    with caplog.at_level(logging.WARNING, logger="conveyor.processor"):
        async with processor:
            while not seen:
                await clock.advance(5.0)  # the backoff sleeps on the processor's clock
                await asyncio.sleep(0.01)
    assert seen == [1]
    assert processor.stats.outages == 1
    assert processor.stats.reconnects == 4
    assert processor.stats.outage_seconds >= 0
    lines = [r.getMessage() for r in caplog.records]
    assert sum("lost the broker" in line for line in lines) == 1
    assert sum("broker back" in line for line in lines) == 1


async def test_a_sleep_due_at_the_advance_target_wakes_despite_float_rounding() -> None:
    """The retry timer slept `due - now0`; the harness advanced by `due - now1` from a later
    `now1`: the two sums differ in the last bit, and the retry never came (a flaky hang)."""
    clock = FakeClock()
    now0, due, step = 0.6825903023294777, 1.9111731525672686, 0.16641663617827315
    await clock.advance(now0)
    woke = asyncio.Event()

    async def sleeper() -> None:
        await clock.sleep(due - clock.monotonic())  # lands on now0 + (due - now0)
        woke.set()

    task = asyncio.ensure_future(sleeper())
    await asyncio.sleep(0)
    await clock.advance(step)
    await clock.advance(due - clock.monotonic())  # lands on now1 + (due - now1): a hair less
    assert woke.is_set()
    await task


async def test_a_retry_scheduled_just_before_the_clock_moves_still_comes_due(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    """The retry loop computed its wait, then its sleep started a loop turn later: when the
    harness advanced the clock in between, the sleep began from the new time, fell due one
    delay later than `next_due`, and the harness (advancing by `next_due - now` = 0) never
    reached it — a hang seen on a loaded CI machine."""
    from conveyor.processor.calls import BrokerCalls
    from conveyor.processor.ledger import Ledger
    from conveyor.processor.options import ProcessorOptions
    from conveyor.processor.retries import EngineRetries
    from conveyor.stats import ProcessorStats

    await memory.publish("orders", {"n": 1})
    calls = BrokerCalls(
        memory, "orders", "billing", "c1", ProcessorOptions(clock=clock), ProcessorStats()
    )
    await calls.open()
    (message,) = await calls.session.read(count=1, block=None)
    ledger = Ledger(prefetch=4, batch=1)
    ledger.admit([message])
    ledger.inbox.clear()  # taken by a worker, whose handler failed
    retries = EngineRetries(calls, ledger, clock)
    loop = asyncio.ensure_future(retries.run())
    try:
        await asyncio.sleep(0)  # the loop waits for work
        await retries.schedule(message, 0.1)
        await asyncio.sleep(0)  # it wakes, computes a 0.1 s wait, starts its sleep
        due = retries.next_due
        assert due is not None
        await clock.advance(due - clock.monotonic())  # before that sleep has begun
        await clock.advance(max(0.0, due - clock.monotonic()))
        assert retries.next_due is None, "the retry never came due"
        assert [m.delivery_count for m in ledger.inbox] == [2]
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await calls.session.aclose()


async def _ack_that_never_returns(self: MemorySession, messages: Sequence[Message]) -> None:
    await asyncio.sleep(3600)


async def test_an_ack_that_never_returns_holds_stop_for_one_time_budget_only(
    memory: MemoryBackend,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(MemorySession, "ack", _ack_that_never_returns)

    # shutdown_timeout=0.2: the budget for acks at stop is max(0.2, 1.0) s
    _, took = await _stop_during_an_ack(memory, clock, shutdown_timeout=0.2)
    # the ack in flight and the final flush share one second, not one each
    assert 0.9 < took < 1.6, took
    assert "1 finished message(s) could not be acked before shutdown" in caplog.text
    assert (await memory.group_info("orders", "billing")).pending == 1  # delivered again


_failed_acks = 0


async def _slow_ack_that_fails_once(self: MemorySession, messages: Sequence[Message]) -> None:
    global _failed_acks
    if _failed_acks == 0:
        _failed_acks += 1
        await asyncio.sleep(0.2)
        raise BrokerUnavailableError("the ack's connection was lost")
    await _memory_ack(self, messages)


async def test_an_ack_failing_during_stop_is_retried_by_the_final_flush_at_once(
    memory: MemoryBackend, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    global _failed_acks
    _failed_acks = 0
    monkeypatch.setattr(MemorySession, "ack", _slow_ack_that_fails_once)
    processor, took = await _stop_during_an_ack(memory, clock)
    # before: the acker backed off on the (fake) clock after the failure until the
    # budget ran out, and the final flush had no time left: the message stayed pending
    assert _failed_acks == 1
    assert took < 0.8, took
    assert (await memory.group_info("orders", "billing")).pending == 0
    assert processor.stats.acked == 1


async def test_a_cancelled_stop_cancels_the_handlers_acks_what_finished_and_closes(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    """stop() cancelled while it waits for a running handler (App.run's second Ctrl-C)
    stops at once. Before the fix the cancellation left the handler running, the finished
    message unacked and the session open."""
    cancelled: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        if payload["n"] == 1:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(1)
                raise

    processor = make(memory, clock, concurrency=2, shutdown_timeout=600)
    processor.set_callback(handle)
    await memory.publish_many("orders", [{"n": 0}, {"n": 1}])
    await processor.start()
    session = processor.session
    assert isinstance(session, MemorySession)
    await wait_until(lambda: processor.stats.handled == 1 and processor.stats.in_flight == 1)
    stopping = asyncio.ensure_future(processor.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # waiting for the handler: up to 600 s
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(stopping, 10)
    assert cancelled == [1]
    assert processor.stats.acked == 1
    assert session.closed
    assert not processor.is_running
    assert (await memory.group_info("orders", "billing")).pending == 1


async def _slow_ack(self: MemorySession, messages: Sequence[Message]) -> None:
    await asyncio.sleep(0.3)
    await _memory_ack(self, messages)


async def test_a_stop_cancelled_while_it_acks_returns_only_once_stopped(
    memory: MemoryBackend, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled after the handlers finished, while the last ack is in flight: stop()
    raises only once that ack is done and the session closed (it returned at once and
    left the wind-up running under a processor that said it had stopped)."""
    monkeypatch.setattr(MemorySession, "ack", _slow_ack)

    async def handle(payload: dict[str, Any]) -> None:
        return None

    processor = make(memory, clock)
    processor.set_callback(handle)
    await processor.start()
    session = processor.session
    assert isinstance(session, MemorySession)
    await memory.publish("orders", {"n": 1})
    await wait_until(lambda: processor.stats.handled == 1)
    await asyncio.sleep(0.05)  # the acker is inside the slow ack
    stopping = asyncio.ensure_future(processor.stop())
    await asyncio.sleep(0.05)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(stopping, 10)
    assert session.closed
    assert processor.stats.acked == 1
    assert not processor.is_running
    assert (await memory.group_info("orders", "billing")).pending == 0


async def test_cancelling_a_second_stop_caller_hurries_the_stop_under_way(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    cancelled: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(payload["n"])
            raise

    processor = make(memory, clock, shutdown_timeout=600)
    processor.set_callback(handle)
    await memory.publish("orders", {"n": 1})
    await processor.start()
    await wait_until(lambda: processor.stats.in_flight == 1)
    first = asyncio.ensure_future(processor.stop())  # e.g. its supervisor's, after a crash
    second = asyncio.ensure_future(processor.stop())  # e.g. App.run's
    await asyncio.sleep(0.1)
    assert not first.done()  # both wait for the handler
    assert not second.done()
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(second, 10)
    await asyncio.wait_for(first, 10)  # not cancelled itself: it just ends sooner
    assert cancelled == [1]
    assert not processor.is_running
