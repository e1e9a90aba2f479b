"""The conformance suite every backend passes, importable by third-party backends.

Subclass `BackendConformance` in a test module and provide ONE fixture, ``open_backend``:
an async callable that opens a new backend connected to the broker under test (each call a
new connection; the suite closes what it opens)::

    import conveyor
    import pytest
    from conveyor.testing.conformance import BackendConformance

    class TestMyBrokerConformance(BackendConformance):
        @pytest.fixture
        def open_backend(self, my_broker_url):
            async def factory():
                return await conveyor.connect(my_broker_url)
            return factory

The suite reads the backend's `Capabilities` and checks each behaviour the way that
backend declares it (engine- or broker-driven redelivery and claim, ordering unit).
Class attributes tune it for slow brokers: `claim_idle` (seconds used for claim and
heartbeat tests) and `timeout` (seconds to wait for an expected delivery).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from conveyor.errors import BackendClosedError, PayloadError
from conveyor.message import Message
from conveyor.processor import StreamProcessor
from conveyor.protocol import StreamBackend
from conveyor.testing.harness import wait_until

__all__ = ["BackendConformance", "OpenBackend", "read_and_ack", "read_until"]

OpenBackend = Callable[[], Awaitable[StreamBackend]]


async def read_until(
    backend: StreamBackend,
    stream: str,
    group: str,
    consumer: str,
    n: int,
    *,
    timeout: float,
    block: float = 0.2,
) -> list[Message]:
    """Read until `n` messages arrived or `timeout` passed; return what arrived."""
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += await backend.read(stream, group, consumer, count=n - len(out), block=block)
    return out


async def read_and_ack(
    backend: StreamBackend,
    stream: str,
    group: str,
    *,
    expect: int,
    timeout: float,
    settle: float = 1.0,
) -> list[Message]:
    """Read and acknowledge until `expect` messages arrived (or `timeout` passed), then
    `settle` seconds more, so that duplicates would show up in the result."""
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    settled: float | None = None
    while time.monotonic() < (settled or deadline):
        batch = await backend.read(stream, group, "inspector", count=100, block=0.2)
        await backend.ack(stream, group, batch)
        out += batch
        if settled is None and len(out) >= expect:
            settled = time.monotonic() + settle
    return out


def _ids(messages: list[Message]) -> list[str]:
    return [m.id for m in messages]


def _in_order(backend: StreamBackend, got: list[str], expected: list[str]) -> bool:
    """Equal in order where the backend orders per stream, else equal as sets."""
    if backend.capabilities.ordering == "stream":
        return got == expected
    return sorted(got) == sorted(expected) and len(got) == len(expected)


class BackendConformance:
    """Behaviours every conveyor backend honours (DESIGN §4), adapted to its capabilities."""

    #: Seconds of idle time used by claim/heartbeat tests (JetStream: ack_wait).
    claim_idle: float = 1.0
    #: Seconds to wait for a delivery that must happen.
    timeout: float = 20.0

    # -- fixtures ------------------------------------------------------------------------

    @pytest.fixture
    def open_backend(self) -> OpenBackend:
        raise NotImplementedError("a conformance test class must define the open_backend fixture")

    @pytest_asyncio.fixture
    async def opener(self, open_backend: OpenBackend) -> AsyncIterator[OpenBackend]:
        """`open_backend`, closing every backend it opened at teardown."""
        opened: list[StreamBackend] = []

        async def open_one() -> StreamBackend:
            backend = await open_backend()
            opened.append(backend)
            return backend

        yield open_one
        for backend in opened:
            await backend.aclose()

    @pytest_asyncio.fixture
    async def backend(self, opener: OpenBackend) -> StreamBackend:
        return await opener()

    @pytest.fixture
    def names(self) -> dict[str, str]:
        tag = uuid.uuid4().hex[:10]
        return {"stream": f"conf:{tag}", "group": f"g-{tag}", "other": f"conf:{tag}:other"}

    async def _group(self, backend: StreamBackend, stream: str, group: str, **kw: Any) -> None:
        await backend.ensure_group(stream, group, claim_idle=self.claim_idle, **kw)

    # -- groups and start positions ------------------------------------------------------

    async def test_group_creation_is_idempotent(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        await self._group(backend, stream, group)
        await self._group(backend, stream, group)
        await backend.create_group(stream, group)
        await asyncio.gather(*(self._group(backend, stream, group) for _ in range(5)))
        await backend.publish(stream, {"n": 1})
        got = await read_until(backend, stream, group, "c", 1, timeout=self.timeout)
        assert [m.data for m in got] == [{"n": 1}]

    async def test_new_group_starts_at_the_beginning(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        ids = await backend.publish_many(stream, [{"n": i} for i in range(3)])
        await self._group(backend, stream, group)
        got = await read_until(backend, stream, group, "c", 3, timeout=self.timeout)
        assert _in_order(backend, _ids(got), ids)
        assert [m.delivery_count for m in got] == [1, 1, 1]

    async def test_start_latest_skips_earlier_messages(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        await backend.publish_many(stream, [{"n": 0}, {"n": 1}])
        await self._group(backend, stream, group, start="latest")
        await backend.read(stream, group, "c", count=10, block=0.5)  # joins (Kafka)
        later = await backend.publish(stream, {"n": 2})
        got = await read_until(backend, stream, group, "c", 1, timeout=self.timeout)
        assert _ids(got) == [later]
        assert await backend.read(stream, group, "c", count=10, block=0.3) == []

    async def test_empty_read_returns_an_empty_list(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        await self._group(backend, stream, group)
        assert await backend.read(stream, group, "c", count=10, block=None) == []
        started = time.monotonic()
        assert await backend.read(stream, group, "c", count=10, block=0.3) == []
        assert time.monotonic() - started < 5.0

    async def test_read_respects_count_and_order(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        await self._group(backend, stream, group)
        ids = await backend.publish_many(stream, [{"n": i} for i in range(10)])
        first = await read_until(backend, stream, group, "c", 1, timeout=self.timeout)
        batch = await backend.read(stream, group, "c", count=3, block=1.0)
        assert 1 <= len(batch) <= 3
        rest = await read_until(
            backend, stream, group, "c", 10 - 1 - len(batch), timeout=self.timeout
        )
        assert _in_order(backend, _ids(first + batch + rest), ids)

    async def test_blocking_read_wakes_on_publish(
        self, opener: OpenBackend, names: dict[str, str]
    ) -> None:
        reader, writer = await opener(), await opener()
        stream, group = names["stream"], names["group"]
        await self._group(reader, stream, group)
        await reader.read(stream, group, "c", count=1, block=0.5)  # joins (Kafka)
        pending = asyncio.ensure_future(
            read_until(reader, stream, group, "c", 1, timeout=self.timeout, block=5.0)
        )
        await asyncio.sleep(0.1)
        msg_id = await writer.publish(stream, {"wake": True})
        got = await asyncio.wait_for(pending, self.timeout + 5)
        assert _ids(got) == [msg_id]

    # -- groups, consumers, streams ------------------------------------------------------

    async def test_competing_consumers_share_the_work(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        await self._group(backend, stream, group)
        ids = await backend.publish_many(stream, [{"n": i} for i in range(20)])
        seen: dict[str, list[str]] = {"a": [], "b": []}
        deadline = time.monotonic() + self.timeout
        while len(seen["a"]) + len(seen["b"]) < 20 and time.monotonic() < deadline:
            for consumer in ("a", "b"):
                got = await backend.read(stream, group, consumer, count=3, block=0.1)
                seen[consumer] += _ids(got)
                await backend.ack(stream, group, got)
        assert not set(seen["a"]) & set(seen["b"])
        assert sorted(seen["a"] + seen["b"]) == sorted(ids)

    async def test_every_group_sees_every_message(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream = names["stream"]
        for group in ("g1", "g2"):
            await self._group(backend, stream, names["group"] + group)
        ids = await backend.publish_many(stream, [{"n": i} for i in range(5)])
        for group in ("g1", "g2"):
            got = await read_until(
                backend, stream, names["group"] + group, "c", 5, timeout=self.timeout
            )
            assert _in_order(backend, _ids(got), ids)

    async def test_streams_are_isolated(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, other, group = names["stream"], names["other"], names["group"]
        await self._group(backend, stream, group)
        await self._group(backend, other, group)
        await backend.publish(other, {"where": "other"})
        mine = await backend.publish(stream, {"where": "mine"})
        got = await read_until(backend, stream, group, "c", 1, timeout=self.timeout)
        assert _ids(got) == [mine]
        assert got[0].stream == stream
        assert await backend.read(stream, group, "c", count=10, block=0.3) == []

    # -- payloads ------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "payload",
        [
            {"type": "order.paid", "order_id": 7, "amount": 12.5, "paid": True, "note": None},
            {"text": "héllo wörld — 日本語 🚀", "emoji": "👩‍💻", "empty": ""},
            {"nested": {"a": [1, 2.25, "x", None, True, {"deep": [[], {}]}]}, "list": []},
            {"big": "x" * 200_000, "ints": list(range(1000))},
            {"neg": -5, "zero": 0, "large": 2**53, "float": 1e-7, "false": False},
            {"json:looking": 'json:{"not": "decoded"}', "num_str": "42", "null_str": "null"},
            {},
        ],
        ids=["scalars", "unicode", "nested", "large", "numbers", "tricky-strings", "empty"],
    )
    async def test_payload_round_trip(
        self, backend: StreamBackend, names: dict[str, str], payload: dict[str, Any]
    ) -> None:
        stream, group = names["stream"], names["group"]
        await self._group(backend, stream, group)
        await backend.publish(stream, payload)
        got = await read_until(backend, stream, group, "c", 1, timeout=self.timeout)
        assert len(got) == 1
        assert got[0].decode_error is None
        assert got[0].data == payload
        assert {k: type(v) for k, v in got[0].data.items()} == {
            k: type(v) for k, v in payload.items()
        }

    @pytest.mark.parametrize("stream_name", ["events:bot", "a.b-c_d", "with space/and#hash"])
    async def test_stream_names(self, backend: StreamBackend, stream_name: str) -> None:
        stream = f"{stream_name}-{uuid.uuid4().hex[:6]}"
        group = "g"
        await self._group(backend, stream, group)
        msg_id = await backend.publish(stream, {"ok": 1})
        got = await read_until(backend, stream, group, "c", 1, timeout=self.timeout)
        assert _ids(got) == [msg_id]
        assert got[0].stream == stream

    async def test_unserializable_payload_is_rejected(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream = names["stream"]
        for bad in ({"s": {1, 2}}, {"t": (1, 2)}, {"b": b"raw"}, {"nan": float("nan")}, {1: "x"}):
            with pytest.raises(PayloadError):
                await backend.publish(stream, bad)  # type: ignore[arg-type]

    # -- acks ----------------------------------------------------------------------------

    async def test_ack_is_idempotent(self, backend: StreamBackend, names: dict[str, str]) -> None:
        stream, group = names["stream"], names["group"]
        await self._group(backend, stream, group)
        await backend.publish_many(stream, [{"n": 1}, {"n": 2}])
        got = await read_until(backend, stream, group, "c", 2, timeout=self.timeout)
        await backend.ack(stream, group, got)
        await backend.ack(stream, group, got)
        await backend.ack(stream, group, [])
        info = await backend.group_info(stream, group)
        assert info.pending == 0
        assert await backend.read(stream, group, "c", count=10, block=0.3) == []

    async def test_seed_methods(self, backend: StreamBackend, names: dict[str, str]) -> None:
        stream, group = names["stream"], names["group"]
        await backend.create_group(stream, group)
        msg_id = await backend.publish(stream, {"seed": "style", "n": 3})
        rows: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + self.timeout
        while not rows and time.monotonic() < deadline:
            rows = await backend.read_events(stream, group, "c", 10)
            if not rows:
                await asyncio.sleep(0.1)
        assert rows == [(msg_id, {"seed": "style", "n": 3})]
        await backend.ack_event(stream, group, msg_id)
        await backend.ack_event(stream, group, msg_id)
        assert (await backend.group_info(stream, group)).pending == 0

    # -- redelivery, claim, heartbeat, dead letters ------------------------------------

    async def test_failed_message_is_delivered_again_with_a_higher_count(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        await self._group(backend, stream, group)
        msg_id = await backend.publish(stream, {"n": 1})
        got = await read_until(backend, stream, group, "c", 1, timeout=self.timeout)
        assert got[0].delivery_count == 1
        if backend.capabilities.redelivery == "engine":
            again = await backend.redeliver(stream, group, "c", got)
        else:
            await backend.nack(stream, group, got[0], delay=0.0)
            again = await read_until(backend, stream, group, "c", 1, timeout=self.timeout)
        assert _ids(again) == [msg_id]
        assert again[0].delivery_count == 2
        assert again[0].data == {"n": 1}
        await backend.ack(stream, group, again)
        assert (await backend.group_info(stream, group)).pending == 0

    async def test_processor_retries_with_growing_delivery_count(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        counts: list[int] = []
        done = asyncio.Event()

        async def handler(msg: Message) -> None:
            counts.append(msg.delivery_count)
            if len(counts) < 3:
                raise RuntimeError("transient")
            done.set()

        processor = StreamProcessor(
            backend,
            stream,
            group,
            "c",
            retry_delay=0.05,
            max_deliveries=5,
            claim_idle=max(self.claim_idle, 1.0),
        )
        processor.set_callback(handler)
        await backend.publish(stream, {"n": 1})
        async with processor:
            await asyncio.wait_for(done.wait(), self.timeout)
        assert counts == [1, 2, 3]
        assert processor.stats.failed == 2
        assert processor.stats.handled == 1
        info = await backend.group_info(stream, group)
        assert info.pending == 0

    async def test_stopped_consumer_messages_go_to_another(
        self, opener: OpenBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        dead, alive = await opener(), await opener()
        await self._group(dead, stream, group)
        ids = await dead.publish_many(stream, [{"n": i} for i in range(3)])
        got = await read_until(dead, stream, group, "dead", 3, timeout=self.timeout)
        assert sorted(_ids(got)) == sorted(ids)
        await dead.aclose()  # dies without acking
        await self._group(alive, stream, group)
        claimed: list[Message] = []
        deadline = time.monotonic() + self.timeout + self.claim_idle
        while len(claimed) < 3 and time.monotonic() < deadline:
            if alive.capabilities.claim == "engine":
                claimed += await alive.claim_stale(
                    stream, group, "alive", min_idle=self.claim_idle, count=10
                )
                await asyncio.sleep(0.1)
            else:
                claimed += await alive.read(stream, group, "alive", count=10, block=0.3)
        assert sorted(_ids(claimed)) == sorted(ids)
        if alive.capabilities.exact_delivery_count:
            assert all(m.delivery_count == 2 for m in claimed)
        await alive.ack(stream, group, claimed)
        assert (await alive.group_info(stream, group)).pending == 0

    async def test_claim_leaves_fresh_messages_alone(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        if backend.capabilities.claim != "engine":
            assert (
                await backend.claim_stale(
                    names["stream"], names["group"], "x", min_idle=0.0, count=10
                )
                == []
            )
            return
        stream, group = names["stream"], names["group"]
        await self._group(backend, stream, group)
        await backend.publish(stream, {"n": 1})
        await read_until(backend, stream, group, "a", 1, timeout=self.timeout)
        assert await backend.claim_stale(stream, group, "b", min_idle=60.0, count=10) == []

    async def test_heartbeat_protects_a_live_consumer(
        self, opener: OpenBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        live, rival = await opener(), await opener()
        await self._group(live, stream, group)
        msg_id = await live.publish(stream, {"slow": True})
        got = await read_until(live, stream, group, "live", 1, timeout=self.timeout)
        assert _ids(got) == [msg_id]
        if live.capabilities.claim == "broker" and live.capabilities.contiguous_ack:
            # Kafka: partitions, not messages, are held; the client heartbeats itself.
            await live.heartbeat(stream, group, "live", got)
            await live.ack(stream, group, got)
            return
        await self._group(rival, stream, group)
        stolen: list[Message] = []
        deadline = time.monotonic() + self.claim_idle * 3
        while time.monotonic() < deadline:
            await live.heartbeat(stream, group, "live", got)
            if rival.capabilities.claim == "engine":
                stolen += await rival.claim_stale(
                    stream, group, "rival", min_idle=self.claim_idle, count=10
                )
                await asyncio.sleep(self.claim_idle / 5)
            else:
                stolen += await rival.read(
                    stream, group, "rival", count=10, block=self.claim_idle / 5
                )
        assert stolen == []
        await live.ack(stream, group, got)

    async def test_dead_letter_writes_once_and_acks(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        dead_stream = f"{stream}.dead"
        await self._group(backend, stream, group)
        await backend.publish(stream, {"poison": True})
        got = await read_until(backend, stream, group, "c", 1, timeout=self.timeout)
        record = {"original": got[0].data, "error": "boom", "original_id": got[0].id}
        await backend.dead_letter(
            stream, group, got[0], dead_letter_stream=dead_stream, record=record
        )
        assert (await backend.group_info(stream, group)).pending == 0
        assert await backend.read(stream, group, "c", count=10, block=0.3) == []
        await self._group(backend, dead_stream, "inspect")
        dead = await read_and_ack(backend, dead_stream, "inspect", expect=1, timeout=self.timeout)
        assert [m.data for m in dead] == [record]

    async def test_processor_dead_letters_a_poison_message_exactly_once(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        attempts: list[int] = []
        good = asyncio.Event()

        async def handler(payload: dict[str, Any]) -> None:
            if payload.get("poison"):
                attempts.append(1)
                raise ValueError("cannot handle this")
            good.set()

        processor = StreamProcessor(
            backend,
            stream,
            group,
            "c",
            retry_delay=0.01,
            max_deliveries=2,
            claim_idle=max(self.claim_idle, 1.0),
        )
        processor.set_callback(handler)
        await backend.publish(stream, {"poison": True, "order_id": 9})
        await backend.publish(stream, {"poison": False})
        async with processor:
            await asyncio.wait_for(good.wait(), self.timeout)
            await wait_until(lambda: processor.stats.dead_lettered >= 1, timeout=self.timeout)
        assert len(attempts) == 2
        assert processor.stats.dead_lettered == 1
        await self._group(backend, processor.dead_letter_stream, "inspect")
        dead = await read_and_ack(
            backend, processor.dead_letter_stream, "inspect", expect=1, timeout=self.timeout
        )
        assert len(dead) == 1
        record = dead[0].data
        assert record["original"] == {"poison": True, "order_id": 9}
        assert record["error_type"] == "ValueError"
        assert record["error"] == "cannot handle this"
        assert record["delivery_count"] == 2
        assert record["stream"] == stream
        assert record["group"] == group
        assert (await backend.group_info(stream, group)).pending == 0

    # -- ordering, shutdown, close ------------------------------------------------------

    async def test_order_with_concurrency_one(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        seen: list[int] = []
        done = asyncio.Event()

        async def handler(payload: dict[str, Any]) -> None:
            seen.append(payload["n"])
            if len(seen) == 50:
                done.set()

        await backend.publish_many(stream, [{"n": i} for i in range(50)])
        processor = StreamProcessor(backend, stream, group, "c", batch_count=7)
        processor.set_callback(handler)
        async with processor:
            await asyncio.wait_for(done.wait(), self.timeout)
        if backend.capabilities.ordering != "none":
            assert seen == list(range(50))
        else:
            assert sorted(seen) == list(range(50))

    async def test_stop_never_acks_unfinished_work(
        self, opener: OpenBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        first = await opener()
        started = asyncio.Event()

        async def stuck(payload: dict[str, Any]) -> None:
            started.set()
            await asyncio.sleep(3600)

        await first.publish(stream, {"n": 1})
        processor = StreamProcessor(
            first, stream, group, "c", shutdown_timeout=0.2, claim_idle=max(self.claim_idle, 1.0)
        )
        processor.set_callback(stuck)
        await processor.start()
        await asyncio.wait_for(started.wait(), self.timeout)
        await processor.stop()
        await processor.stop()
        assert not processor.is_running
        assert processor.stats.handled == 0
        info = await first.group_info(stream, group)
        assert info.pending == 1
        await first.aclose()
        second = await opener()
        await self._group(second, stream, group)
        again: list[Message] = []
        deadline = time.monotonic() + self.timeout + self.claim_idle
        while not again and time.monotonic() < deadline:
            again = await second.read(stream, group, "c", count=10, block=0.3)
            if not again and second.capabilities.claim == "engine":
                again = await second.claim_stale(
                    stream, group, "c", min_idle=self.claim_idle, count=10
                )
        assert [m.data for m in again] == [{"n": 1}]

    async def test_close_while_a_read_is_blocked(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        await self._group(backend, stream, group)
        await backend.read(stream, group, "c", count=1, block=0.2)
        reading = asyncio.ensure_future(backend.read(stream, group, "c", count=1, block=30.0))
        await asyncio.sleep(0.2)
        await asyncio.wait_for(backend.aclose(), 10.0)
        try:
            result = await asyncio.wait_for(reading, 10.0)
        except BackendClosedError:
            pass
        else:
            assert result == []
        await backend.aclose()  # idempotent

    async def test_operations_after_close_raise(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        await backend.aclose()
        await backend.aclose()
        with pytest.raises(BackendClosedError):
            await backend.publish(names["stream"], {"n": 1})

    async def test_nothing_lost_across_close_and_reopen(
        self, opener: OpenBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        first = await opener()
        await self._group(first, stream, group)
        ids = await first.publish_many(stream, [{"n": i} for i in range(10)])
        got = await read_until(first, stream, group, "w", 10, timeout=self.timeout)
        assert _in_order(first, _ids(got), ids)
        acked = {m.id for m in got[:5]}
        await first.ack(stream, group, got[:5])  # 5 read but unacked
        await first.aclose()
        second = await opener()
        await self._group(second, stream, group)
        rest: list[Message] = []
        deadline = time.monotonic() + self.timeout + self.claim_idle * 2
        while len({m.id for m in rest} - acked) < 5 and time.monotonic() < deadline:
            batch = await second.read(stream, group, "w", count=10, block=0.3)
            if not batch and second.capabilities.claim == "engine":
                batch = await second.claim_stale(
                    stream, group, "w", min_idle=self.claim_idle, count=10
                )
            rest += batch
            await second.ack(stream, group, batch)
        assert sorted({m.id for m in rest} - acked) == sorted(set(ids) - acked)
        if second.capabilities.claim == "engine" or not second.capabilities.contiguous_ack:
            assert not {m.id for m in rest} & acked

    async def test_group_info_counts_pending_and_lag(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        await self._group(backend, stream, group)
        await backend.publish_many(stream, [{"n": i} for i in range(6)])
        got = await read_until(backend, stream, group, "c", 6, timeout=self.timeout)
        await backend.ack(stream, group, got[:4])
        info = await backend.group_info(stream, group)
        assert info.stream == stream
        assert info.group == group
        assert info.pending == 2
        assert info.lag in (0, None)
