"""Publish coalescing (`conveyor.coalesce`): concurrent publishes share batches, each
caller gets its own id or its own error, a lone publish goes out at once.

The `Coalescer` is driven with a hand-held ``send`` (the backend's ``_publish_many``) to
see exactly which batches go out; then every backend is run with 1,000 concurrent
publishers (the `engine` fixture)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from conveyor.base import BaseBackend
from conveyor.coalesce import Coalescer
from conveyor.errors import (
    BackendClosedError,
    BrokerUnavailableError,
    PayloadTooLargeError,
    UnserializablePayloadError,
)
from conveyor.middleware import Middleware, PublishNext, PublishRequest
from conveyor.testing.conformance import read_and_ack

if TYPE_CHECKING:
    from tests.conftest import EngineEnv

Headers = list[dict[str, str]] | None


class Broker:
    """A ``send`` whose batches wait for `release` (when `held`), recording each batch."""

    def __init__(self, *, held: bool = False) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.headers: list[Headers] = []
        self.tasks: list[asyncio.Task[Any] | None] = []
        self.gate = asyncio.Event()
        if not held:
            self.gate.set()
        self.fail_with: Exception | None = None
        self.count = 0

    async def send(self, stream: str, items: list[dict[str, Any]], headers: Headers) -> list[str]:
        self.batches.append(list(items))
        self.headers.append(headers)
        self.tasks.append(asyncio.current_task())
        if any("big" in item for item in items):  # refused before anything is sent
            raise PayloadTooLargeError("one of them is too big")
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        ids = [f"{stream}-{self.count + i}" for i in range(len(items))]
        self.count += len(items)
        return ids


async def _until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_a_lone_publish_goes_out_at_once_in_its_own_task() -> None:
    broker = Broker()
    coalescer = Coalescer(broker.send)
    assert await coalescer.publish("s", {"n": 1}, {}) == "s-0"
    # sent by the caller's own task, without waiting for a loop turn or another task
    assert broker.batches == [[{"n": 1}]]
    assert broker.tasks == [asyncio.current_task()]
    assert broker.headers == [None]
    assert await coalescer.publish("s", {"n": 2}, {"k": "v"}) == "s-1"
    assert broker.headers[-1] == [{"k": "v"}]
    assert coalescer.outstanding == 0


async def test_publishes_arriving_during_a_batch_form_the_next_one() -> None:
    broker = Broker(held=True)
    coalescer = Coalescer(broker.send)
    first = asyncio.create_task(coalescer.publish("s", {"n": 0}, {}))
    await _until(lambda: len(broker.batches) == 1)
    rest = [
        asyncio.create_task(coalescer.publish("s", {"n": i}, {"h": str(i)} if i == 3 else {}))
        for i in range(1, 6)
    ]
    await _until(lambda: coalescer.outstanding == 6)
    assert len(broker.batches) == 1  # the others wait for the batch in flight
    broker.gate.set()
    ids = [await first, *[await task for task in rest]]
    assert broker.batches == [[{"n": 0}], [{"n": i} for i in range(1, 6)]]
    assert broker.headers[1] == [{}, {}, {"h": "3"}, {}, {}]
    assert ids == [f"s-{i}" for i in range(6)]  # each caller its own id


async def test_streams_are_batched_apart() -> None:
    broker = Broker(held=True)
    coalescer = Coalescer(broker.send)
    tasks = [asyncio.create_task(coalescer.publish(s, {"s": s}, {})) for s in "abab"]
    await _until(lambda: len(broker.batches) == 2)  # a and b each go out at once
    broker.gate.set()
    await asyncio.gather(*tasks)
    assert sorted(map(str, broker.batches)) == sorted(
        map(str, [[{"s": "a"}], [{"s": "b"}], [{"s": "a"}], [{"s": "b"}]])
    )


async def test_a_payload_error_fails_only_its_caller() -> None:
    broker = Broker(held=True)
    coalescer = Coalescer(broker.send)
    first = asyncio.create_task(coalescer.publish("s", {"n": 0}, {}))
    await _until(lambda: len(broker.batches) == 1)
    items: list[dict[str, Any]] = [{"n": i} for i in range(1, 9)]
    items[2], items[6] = {"big": 1}, {"big": 2}
    rest = [asyncio.create_task(coalescer.publish("s", item, {})) for item in items]
    await _until(lambda: coalescer.outstanding == 9)
    broker.gate.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert [results.index(e) for e in errors] == [3, 7]
    assert all(isinstance(e, PayloadTooLargeError) for e in errors)
    assert errors[0] is not errors[1]
    stored = [b for b in broker.batches if not any("big" in item for item in b)]
    assert sorted(item["n"] for b in stored for item in b) == [0, 1, 2, 4, 5, 6, 8]
    assert all(isinstance(r, str) for i, r in enumerate(results) if i not in (3, 7))
    assert len({r for r in results if isinstance(r, str)}) == 7


async def test_a_broker_error_fails_the_batch_and_the_next_publish_works() -> None:
    broker = Broker(held=True)
    coalescer = Coalescer(broker.send)
    first = asyncio.create_task(coalescer.publish("s", {"n": 0}, {}))
    await _until(lambda: len(broker.batches) == 1)
    rest = [asyncio.create_task(coalescer.publish("s", {"n": i}, {})) for i in (1, 2)]
    await _until(lambda: coalescer.outstanding == 3)
    broker.fail_with = BrokerUnavailableError("gone")
    broker.gate.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert all(isinstance(r, BrokerUnavailableError) for r in results)
    broker.fail_with = None
    assert await coalescer.publish("s", {"n": 3}, {}) == "s-0"


async def test_outstanding_publishes_are_capped() -> None:
    broker = Broker(held=True)
    coalescer = Coalescer(broker.send, max_outstanding=3)
    tasks = [asyncio.create_task(coalescer.publish("s", {"n": i}, {})) for i in range(10)]
    await _until(lambda: coalescer.outstanding == 3)
    for _ in range(20):
        await asyncio.sleep(0)
    assert coalescer.outstanding == 3  # the other 7 wait for room, holding nothing
    broker.gate.set()
    assert len(set(await asyncio.gather(*tasks))) == 10
    assert max(len(batch) for batch in broker.batches) <= 3


async def test_batches_are_capped() -> None:
    broker = Broker(held=True)
    coalescer = Coalescer(broker.send, max_batch=4)
    tasks = [asyncio.create_task(coalescer.publish("s", {"n": i}, {})) for i in range(10)]
    await _until(lambda: coalescer.outstanding == 10)
    broker.gate.set()
    await asyncio.gather(*tasks)
    assert [len(batch) for batch in broker.batches] == [1, 4, 4, 1]


async def test_a_cancelled_caller_is_taken_out_of_the_queue() -> None:
    broker = Broker(held=True)
    coalescer = Coalescer(broker.send)
    first = asyncio.create_task(coalescer.publish("s", {"n": 0}, {}))
    await _until(lambda: len(broker.batches) == 1)
    doomed = asyncio.create_task(coalescer.publish("s", {"n": 1}, {}))
    kept = asyncio.create_task(coalescer.publish("s", {"n": 2}, {}))
    await _until(lambda: coalescer.outstanding == 3)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    broker.gate.set()
    assert await first == "s-0"
    assert await kept == "s-1"
    assert broker.batches == [[{"n": 0}], [{"n": 2}]]  # the cancelled one never went out


async def test_close_fails_queued_callers_and_lets_the_batch_in_flight_finish() -> None:
    broker = Broker(held=True)
    coalescer = Coalescer(broker.send, max_outstanding=2)
    first = asyncio.create_task(coalescer.publish("s", {"n": 0}, {}))
    await _until(lambda: len(broker.batches) == 1)
    queued = asyncio.create_task(coalescer.publish("s", {"n": 1}, {}))
    waiting = asyncio.create_task(coalescer.publish("s", {"n": 2}, {}))  # no room
    await _until(lambda: coalescer.outstanding == 2)
    closing = asyncio.create_task(coalescer.aclose())
    await _until(lambda: queued.done() and waiting.done())
    broker.gate.set()
    await closing
    assert await first == "s-0"  # it was on its way: it finishes
    for task in (queued, waiting):
        with pytest.raises(BackendClosedError):
            await task
    with pytest.raises(BackendClosedError):
        await coalescer.publish("s", {"n": 3}, {})
    assert broker.batches == [[{"n": 0}]]


# -- every backend ------------------------------------------------------------------------


class Numbered(Middleware):
    """Publish middleware that stamps each request with its own number."""

    def __init__(self) -> None:
        self.count = 0

    async def publish(self, request: PublishRequest, call_next: PublishNext) -> list[str]:
        self.count += 1
        request.set_header("x-request", str(self.count))
        return await call_next(request)


async def test_a_thousand_concurrent_publishers(engine: EngineEnv) -> None:
    backend = engine.backend
    assert isinstance(backend, BaseBackend)
    stamp = Numbered()
    backend.add_middleware(stamp)
    first = await backend.publish(engine.stream, {"n": -1})  # creates the stream
    ids = await asyncio.gather(*(backend.publish(engine.stream, {"n": i}) for i in range(1000)))
    backend.remove_middleware(stamp)
    assert len(set(ids)) == 1000
    got = await read_and_ack(backend, engine.stream, "check", expect=1001, timeout=60, settle=0.3)
    assert sorted(m.data["n"] for m in got) == list(range(-1, 1000))
    # the middleware ran once per message, each message carrying its own header
    assert sorted(int(m.headers["x-request"]) for m in got) == list(range(1, 1002))
    assert {m.id for m in got} == {first, *ids}


async def test_an_unserializable_payload_among_concurrent_ones_fails_alone(
    engine: EngineEnv,
) -> None:
    backend = engine.backend
    await backend.publish(engine.stream, {"n": -1})
    payloads: list[dict[str, Any]] = [{"n": i} for i in range(100)]
    payloads[40] = {"bad": {1, 2}}
    results = await asyncio.gather(
        *(backend.publish(engine.stream, p) for p in payloads), return_exceptions=True
    )
    assert isinstance(results[40], UnserializablePayloadError)
    assert all(isinstance(r, str) for i, r in enumerate(results) if i != 40)
    got = await read_and_ack(backend, engine.stream, "check", expect=100, timeout=60, settle=0.3)
    assert sorted(m.data["n"] for m in got) == [-1, *(i for i in range(100) if i != 40)]
