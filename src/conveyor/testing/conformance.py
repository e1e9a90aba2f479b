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

The suite reads the backend's `Capabilities` (engine- or broker-driven redelivery and
claim) and the class's `features` (a `conveyor.testing.Features`: ordering unit, exact
delivery counts, contiguous acks, durability) and checks each behaviour the way that
backend declares it. Class attributes tune it for slow brokers: `claim_idle` (seconds used
for claim and heartbeat tests) and `timeout` (seconds to wait for an expected delivery).
Override the ``restartable_broker`` fixture with a `RestartableBroker` to run the
broker-restart test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from conveyor.discovery import StreamInfo
from conveyor.errors import (
    BackendClosedError,
    BrokerUnavailableError,
    GroupNotFoundError,
    PayloadError,
    PayloadTooLargeError,
    UnserializablePayloadError,
)
from conveyor.message import Message
from conveyor.processor import StreamProcessor
from conveyor.protocol import ConsumerSession, StreamBackend
from conveyor.testing.features import Features
from conveyor.testing.harness import wait_until

__all__ = [
    "BackendConformance",
    "OpenBackend",
    "RestartableBroker",
    "read_and_ack",
    "read_until",
]

OpenBackend = Callable[[], Awaitable[StreamBackend]]


@dataclass(frozen=True)
class RestartableBroker:
    """A broker the suite may restart (Watermill's ``RestartServiceCommand``).

    Attributes:
        open_backend: Opens a new backend on this broker.
        restart: Stops the broker and starts it again on the same address and data,
            returning once it accepts connections.
    """

    open_backend: OpenBackend
    restart: Callable[[], Awaitable[None]]


async def read_until(
    session: ConsumerSession, n: int, *, timeout: float, block: float = 0.2
) -> list[Message]:
    """Read until `n` messages arrived or `timeout` passed; return what arrived."""
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += await session.read(count=n - len(out), block=block)
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
    """Read and acknowledge (as consumer ``inspector``) until `expect` messages arrived
    (or `timeout` passed), then `settle` seconds more, so that duplicates would show."""
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    settled: float | None = None
    async with backend.open_consumer(stream, group, "inspector") as session:
        while time.monotonic() < (settled or deadline):
            batch = await session.read(count=100, block=0.2)
            await session.ack(batch)
            out += batch
            if settled is None and len(out) >= expect:
                settled = time.monotonic() + settle
    return out


def _ids(messages: list[Message]) -> list[str]:
    return [m.id for m in messages]


class BackendConformance:
    """Behaviours every conveyor backend honours (docs/concepts.md), adapted to its
    `Capabilities` and declared `Features`."""

    #: How the backend differs in ways the tests must know (see `Features`).
    features: Features = Features()
    #: Seconds of idle time used by claim/heartbeat tests (JetStream: ack_wait).
    claim_idle: float = 1.0
    #: Seconds to wait for a delivery that must happen.
    timeout: float = 20.0
    #: A payload size (bytes) over the backend's message size limit as the test opens it.
    oversized: int = 2 * 1024 * 1024

    # -- fixtures ------------------------------------------------------------------------

    @pytest.fixture
    def open_backend(self) -> OpenBackend:
        raise NotImplementedError("a conformance test class must define the open_backend fixture")

    @pytest.fixture
    def restartable_broker(self) -> RestartableBroker | None:
        """Override to return a broker the suite may restart; None declares that the
        backend has no broker to restart (the restart test is skipped, saying so)."""
        return None

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

    async def _open(
        self, backend: StreamBackend, stream: str, group: str, consumer: str = "c", **kw: Any
    ) -> ConsumerSession:
        """A session (closed with its backend at teardown)."""
        return await backend.open_consumer(
            stream, group, consumer, claim_idle=self.claim_idle, **kw
        )

    def _in_order(self, got: list[str], expected: list[str]) -> bool:
        """Equal in order where the backend orders per stream, else equal as sets."""
        if self.features.ordering == "stream":
            return got == expected
        return sorted(got) == sorted(expected) and len(got) == len(expected)

    async def _take_over(
        self,
        backend: StreamBackend,
        session: ConsumerSession,
        n: int,
        *,
        exclude: set[str] | None = None,
    ) -> list[Message]:
        """Messages of a stopped consumer, as the backend hands them over: `claim_stale`
        (engine claims) or plain reads (the broker reassigns them)."""
        got: list[Message] = []
        deadline = time.monotonic() + self.timeout + self.claim_idle * 2
        engine_claims = backend.capabilities.claim == "engine"
        while len({m.id for m in got} - (exclude or set())) < n and time.monotonic() < deadline:
            batch = await session.read(count=10, block=0.2)
            if not batch and engine_claims:
                batch = await session.claim_stale(min_idle=self.claim_idle, count=10)
                if not batch:
                    await asyncio.sleep(self.claim_idle / 5)
            got += batch
        return got

    # -- groups and start positions ------------------------------------------------------

    async def test_group_creation_is_idempotent(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        await self._open(backend, stream, group)
        await backend.create_group(stream, group)
        await asyncio.gather(*(self._open(backend, stream, group, f"c{i}") for i in range(5)))
        session = await self._open(backend, stream, group)
        await backend.publish(stream, {"n": 1})
        got = await read_until(session, 1, timeout=self.timeout)
        assert [m.data for m in got] == [{"n": 1}]

    async def test_new_group_starts_at_the_beginning(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        ids = await backend.publish_many(stream, [{"n": i} for i in range(3)])
        session = await self._open(backend, stream, group)
        got = await read_until(session, 3, timeout=self.timeout)
        assert self._in_order(_ids(got), ids)
        assert [m.delivery_count for m in got] == [1, 1, 1]

    async def test_start_latest_skips_earlier_messages(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        await backend.publish_many(stream, [{"n": 0}, {"n": 1}])
        session = await self._open(backend, stream, group, start="latest")
        await session.read(count=10, block=0.5)  # joins (Kafka)
        later = await backend.publish(stream, {"n": 2})
        got = await read_until(session, 1, timeout=self.timeout)
        assert _ids(got) == [later]
        assert await session.read(count=10, block=0.3) == []

    async def test_empty_read_returns_an_empty_list(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        session = await self._open(backend, names["stream"], names["group"])
        assert await session.read(count=10, block=None) == []
        started = time.monotonic()
        assert await session.read(count=10, block=0.3) == []
        assert time.monotonic() - started < 5.0

    async def test_read_respects_count_and_order(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        session = await self._open(backend, names["stream"], names["group"])
        ids = await backend.publish_many(names["stream"], [{"n": i} for i in range(10)])
        first = await read_until(session, 1, timeout=self.timeout)
        batch = await session.read(count=3, block=1.0)
        assert 1 <= len(batch) <= 3
        rest = await read_until(session, 10 - 1 - len(batch), timeout=self.timeout)
        assert self._in_order(_ids(first + batch + rest), ids)

    async def test_blocking_read_wakes_on_publish(
        self, opener: OpenBackend, names: dict[str, str]
    ) -> None:
        reader, writer = await opener(), await opener()
        session = await self._open(reader, names["stream"], names["group"])
        await session.read(count=1, block=0.5)  # joins (Kafka)
        pending = asyncio.ensure_future(read_until(session, 1, timeout=self.timeout, block=5.0))
        await asyncio.sleep(0.1)
        msg_id = await writer.publish(names["stream"], {"wake": True})
        got = await asyncio.wait_for(pending, self.timeout + 5)
        assert _ids(got) == [msg_id]

    # -- groups, consumers, streams ------------------------------------------------------

    async def test_competing_consumers_share_the_work(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        sessions = {c: await self._open(backend, stream, group, c) for c in ("a", "b")}
        ids = await backend.publish_many(stream, [{"n": i} for i in range(20)])
        seen: dict[str, list[str]] = {"a": [], "b": []}
        deadline = time.monotonic() + self.timeout
        while len(seen["a"]) + len(seen["b"]) < 20 and time.monotonic() < deadline:
            for consumer, session in sessions.items():
                got = await session.read(count=3, block=0.1)
                seen[consumer] += _ids(got)
                await session.ack(got)
        assert not set(seen["a"]) & set(seen["b"])
        assert sorted(seen["a"] + seen["b"]) == sorted(ids)

    async def test_every_group_sees_every_message(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream = names["stream"]
        sessions = [await self._open(backend, stream, names["group"] + g) for g in ("1", "2")]
        ids = await backend.publish_many(stream, [{"n": i} for i in range(5)])
        for session in sessions:
            got = await read_until(session, 5, timeout=self.timeout)
            assert self._in_order(_ids(got), ids)

    async def test_streams_are_isolated(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, other, group = names["stream"], names["other"], names["group"]
        session = await self._open(backend, stream, group)
        await self._open(backend, other, group)
        await backend.publish(other, {"where": "other"})
        mine = await backend.publish(stream, {"where": "mine"})
        got = await read_until(session, 1, timeout=self.timeout)
        assert _ids(got) == [mine]
        assert got[0].stream == stream
        assert await session.read(count=10, block=0.3) == []

    async def test_one_group_name_on_two_streams_is_two_groups(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        """A group is per stream: closing the group's consumer on one stream does not
        disturb the same group name on another (Kafka maps each to its own group id)."""
        stream, other, group = names["stream"], names["other"], names["group"]
        mine = await self._open(backend, stream, group)
        theirs = await self._open(backend, other, group)
        await backend.publish(stream, {"n": 1})
        await backend.publish(other, {"n": 1})
        first = await read_until(mine, 1, timeout=self.timeout)
        assert len(await read_until(theirs, 1, timeout=self.timeout)) == 1
        await mine.ack(first)
        await theirs.aclose()  # leaves `other`'s group only
        later = await backend.publish(stream, {"n": 2})
        started = time.monotonic()
        got = await read_until(mine, 1, timeout=self.timeout)
        assert _ids(got) == [later]
        assert time.monotonic() - started < max(3.0, self.claim_idle * 2)
        await mine.ack(got)

    # -- payloads and headers ------------------------------------------------------------

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
        session = await self._open(backend, names["stream"], names["group"])
        await backend.publish(names["stream"], payload)
        got = await read_until(session, 1, timeout=self.timeout)
        assert len(got) == 1
        assert got[0].decode_error is None
        assert got[0].data == payload
        assert {k: type(v) for k, v in got[0].data.items()} == {
            k: type(v) for k, v in payload.items()
        }
        assert got[0].headers == {}

    @pytest.mark.parametrize(
        "headers",
        [
            {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            {"x-note": "héllo — 日本語 🚀", "X-Case": "Mixed", "empty": ""},
            {f"h{i}": f"value {i}" for i in range(100)},
            {},
        ],
        ids=["traceparent", "unicode-and-empty-value", "many", "none"],
    )
    async def test_headers_round_trip(
        self, backend: StreamBackend, names: dict[str, str], headers: dict[str, str]
    ) -> None:
        session = await self._open(backend, names["stream"], names["group"])
        await backend.publish(names["stream"], {"n": 1}, headers=headers)
        await backend.publish_many(names["stream"], [{"n": 2}, {"n": 3}], headers=[headers, None])
        got = await read_until(session, 3, timeout=self.timeout)
        by_n = {m.data["n"]: m.headers for m in got}
        assert by_n == {1: headers, 2: headers, 3: {}}
        peeked = await backend.peek(names["stream"], count=3)
        assert {m.data["n"]: m.headers for m in peeked} == by_n

    @pytest.mark.parametrize(
        "headers",
        [
            {"conveyor-dead-letter": "x"},
            {"Nats-Msg-Id": "x"},
            {"bad name": "x"},
            {"": "x"},
            {"ok": "line\nbreak"},
            {"ok": " padded "},
            {"ok": 1},
        ],
        ids=["reserved-conveyor", "reserved-nats", "space", "empty-name", "newline", "pad", "int"],
    )
    async def test_invalid_or_reserved_headers_are_refused(
        self, backend: StreamBackend, names: dict[str, str], headers: dict[str, Any]
    ) -> None:
        with pytest.raises(PayloadError):
            await backend.publish(names["stream"], {"n": 1}, headers=headers)
        with pytest.raises(PayloadError):
            await backend.publish_many(names["stream"], [{"n": 1}], headers=[headers])
        assert await backend.peek(names["stream"], count=10) == []

    @pytest.mark.parametrize("stream_name", ["events:bot", "a.b-c_d", "with space/and#hash"])
    async def test_stream_names(self, backend: StreamBackend, stream_name: str) -> None:
        stream = f"{stream_name}-{uuid.uuid4().hex[:6]}"
        session = await self._open(backend, stream, "g")
        msg_id = await backend.publish(stream, {"ok": 1})
        got = await read_until(session, 1, timeout=self.timeout)
        assert _ids(got) == [msg_id]
        assert got[0].stream == stream

    async def test_unserializable_payload_is_rejected(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream = names["stream"]
        for bad in ({"s": {1, 2}}, {"t": (1, 2)}, {"b": b"raw"}, {"nan": float("nan")}, {1: "x"}):
            with pytest.raises(PayloadError):
                await backend.publish(stream, bad)

    async def test_a_message_over_the_size_limit_is_refused_before_sending(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream = names["stream"]
        big = {"blob": "x" * self.oversized}
        with pytest.raises(PayloadTooLargeError):
            await backend.publish(stream, big)
        with pytest.raises(PayloadTooLargeError):
            await backend.publish_many(stream, [{"n": 1}, big])
        assert await backend.peek(stream, count=10) == []
        await backend.publish(stream, {"n": 2})  # the connection stays usable
        assert [m.data for m in await backend.peek(stream, count=10)] == [{"n": 2}]

    async def test_many_concurrent_publishes_all_succeed(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream = names["stream"]
        ids = await asyncio.gather(*(backend.publish(stream, {"n": i}) for i in range(10_000)))
        assert len(set(ids)) == 10_000
        got = await read_and_ack(
            backend, stream, names["group"], expect=10_000, timeout=self.timeout * 3, settle=0.5
        )
        assert sorted(m.data["n"] for m in got) == list(range(10_000))

    async def test_a_bad_payload_among_concurrent_publishes_fails_alone(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        """Concurrent publishes may share a batch; a payload that cannot be sent fails
        its own caller only, with its own error, and the others are stored once."""
        stream = names["stream"]
        await backend.publish(stream, {"n": -1})  # the stream exists: later ones may batch
        big = {"blob": "x" * self.oversized}
        bad: dict[str, Any] = {"t": (1, 2)}
        payloads: list[dict[str, Any]] = [{"n": i} for i in range(300)]
        payloads[7], payloads[150], payloads[299] = big, bad, big
        results = await asyncio.gather(
            *(backend.publish(stream, p) for p in payloads), return_exceptions=True
        )
        assert isinstance(results[7], PayloadTooLargeError)
        assert isinstance(results[299], PayloadTooLargeError)
        assert isinstance(results[150], UnserializablePayloadError)
        assert results[7] is not results[299]  # each caller its own exception
        ids = [r for i, r in enumerate(results) if i not in (7, 150, 299)]
        assert all(isinstance(r, str) for r in ids)
        assert len(set(ids)) == 297
        got = await read_and_ack(
            backend, stream, names["group"], expect=298, timeout=self.timeout, settle=0.5
        )
        expected = [-1, *(i for i in range(300) if i not in (7, 150, 299))]
        assert sorted(m.data["n"] for m in got) == expected

    # -- acks and the seed methods -------------------------------------------------------

    async def test_ack_is_idempotent(self, backend: StreamBackend, names: dict[str, str]) -> None:
        stream, group = names["stream"], names["group"]
        session = await self._open(backend, stream, group)
        await backend.publish_many(stream, [{"n": 1}, {"n": 2}])
        got = await read_until(session, 2, timeout=self.timeout)
        await session.ack(got)
        await session.ack(got)
        await session.ack([])
        info = await backend.group_info(stream, group)
        assert info.pending == 0
        assert await session.read(count=10, block=0.3) == []

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

    async def _again(
        self, backend: StreamBackend, session: ConsumerSession, msg: Message
    ) -> list[Message]:
        if backend.capabilities.redelivery == "engine":
            return await session.redeliver([msg])
        await session.nack(msg, delay=0.0)
        return await read_until(session, 1, timeout=self.timeout)

    async def test_failed_message_is_delivered_again_with_a_higher_count(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        session = await self._open(backend, stream, group)
        msg_id = await backend.publish(stream, {"n": 1}, headers={"trace": "t-1"})
        got = await read_until(session, 1, timeout=self.timeout)
        assert got[0].delivery_count == 1
        again = await self._again(backend, session, got[0])
        assert _ids(again) == [msg_id]
        assert again[0].delivery_count == 2
        assert again[0].data == {"n": 1}
        assert again[0].headers == {"trace": "t-1"}
        await session.ack(again)
        assert (await backend.group_info(stream, group)).pending == 0

    async def test_processor_retries_with_growing_delivery_count(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        counts: list[int] = []
        done = asyncio.Event()

        async def handler(msg: Message) -> None:
            counts.append(msg.delivery_count)
            if len(counts) < 3:
                raise RuntimeError("transient")
            done.set()

        processor = StreamProcessor(
            backend,
            names["stream"],
            names["group"],
            "c",
            retry_delay=0.05,
            max_deliveries=5,
            claim_idle=max(self.claim_idle, 1.0),
        )
        processor.set_callback(handler)
        await backend.publish(names["stream"], {"n": 1})
        async with processor:
            await asyncio.wait_for(done.wait(), self.timeout)
        assert counts == [1, 2, 3]
        assert processor.stats.failed == 2
        assert processor.stats.handled == 1
        info = await backend.group_info(names["stream"], names["group"])
        assert info.pending == 0

    async def test_stopped_consumer_messages_go_to_another(
        self, opener: OpenBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        dead, alive = await opener(), await opener()
        dying = await self._open(dead, stream, group, "dead")
        ids = await dead.publish_many(
            stream, [{"n": i} for i in range(3)], headers=[{"k": str(i)} for i in range(3)]
        )
        got = await read_until(dying, 3, timeout=self.timeout)
        assert sorted(_ids(got)) == sorted(ids)
        await dead.aclose()  # dies without acking
        session = await self._open(alive, stream, group, "alive")
        claimed = await self._take_over(alive, session, 3)
        assert sorted(_ids(claimed)) == sorted(ids)
        assert {m.data["n"]: m.headers for m in claimed} == {i: {"k": str(i)} for i in range(3)}
        if self.features.exact_delivery_count:
            assert all(m.delivery_count == 2 for m in claimed)
        await session.ack(claimed)
        assert (await alive.group_info(stream, group)).pending == 0

    async def test_closed_session_hands_its_messages_over_on_an_open_backend(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        """A processor stopped on a backend that stays open releases its membership."""
        stream, group = names["stream"], names["group"]
        first = await self._open(backend, stream, group, "first")
        ids = await backend.publish_many(stream, [{"n": i} for i in range(3)])
        got = await read_until(first, 3, timeout=self.timeout)
        assert sorted(_ids(got)) == sorted(ids)
        await first.aclose()
        with pytest.raises(BackendClosedError):
            await first.read(count=1, block=None)
        second = await self._open(backend, stream, group, "second")
        taken = await self._take_over(backend, second, 3)
        assert sorted(set(_ids(taken))) == sorted(ids)
        await second.ack(taken)
        assert (await backend.group_info(stream, group)).pending == 0

    async def test_claim_leaves_fresh_messages_alone(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        a = await self._open(backend, stream, group, "a")
        b = await self._open(backend, stream, group, "b")
        if backend.capabilities.claim != "engine":
            assert await b.claim_stale(min_idle=0.0, count=10) == []
            return
        await backend.publish(stream, {"n": 1})
        await read_until(a, 1, timeout=self.timeout)
        assert await b.claim_stale(min_idle=60.0, count=10) == []

    async def test_heartbeat_protects_a_live_consumer(
        self, opener: OpenBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        live_backend, rival_backend = await opener(), await opener()
        live = await self._open(live_backend, stream, group, "live")
        msg_id = await live_backend.publish(stream, {"slow": True})
        got = await read_until(live, 1, timeout=self.timeout)
        assert _ids(got) == [msg_id]
        if self.features.contiguous_ack:
            # Kafka: partitions, not messages, are held; the client heartbeats itself.
            await live.heartbeat(got)
            await live.ack(got)
            return
        rival = await self._open(rival_backend, stream, group, "rival")
        stolen: list[Message] = []
        deadline = time.monotonic() + self.claim_idle * 3
        while time.monotonic() < deadline:
            await live.heartbeat(got)
            if rival_backend.capabilities.claim == "engine":
                stolen += await rival.claim_stale(min_idle=self.claim_idle, count=10)
                await asyncio.sleep(self.claim_idle / 5)
            else:
                stolen += await rival.read(count=10, block=self.claim_idle / 5)
        assert stolen == []
        await live.ack(got)

    async def test_dead_letter_writes_once_and_acks(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        dead_stream = f"{stream}.dead"
        session = await self._open(backend, stream, group)
        await backend.publish(stream, {"poison": True}, headers={"traceparent": "tp-1"})
        got = await read_until(session, 1, timeout=self.timeout)
        record = {"original": got[0].data, "error": "boom", "original_id": got[0].id}
        await session.dead_letter(got[0], dead_letter_stream=dead_stream, record=record)
        assert (await backend.group_info(stream, group)).pending == 0
        assert await session.read(count=10, block=0.3) == []
        dead = await read_and_ack(backend, dead_stream, "inspect", expect=1, timeout=self.timeout)
        assert [m.data for m in dead] == [record]
        assert [m.headers for m in dead] == [{"traceparent": "tp-1"}]

    async def test_processor_dead_letters_a_poison_message_exactly_once(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        attempts: list[dict[str, str]] = []
        good = asyncio.Event()

        async def handler(msg: Message) -> None:
            if msg.data.get("poison"):
                attempts.append(msg.headers)
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
        await backend.publish(stream, {"poison": True, "order_id": 9}, headers={"k": "v"})
        await backend.publish(stream, {"poison": False})
        async with processor:
            await asyncio.wait_for(good.wait(), self.timeout)
            await wait_until(lambda: processor.stats.dead_lettered >= 1, timeout=self.timeout)
        assert attempts == [{"k": "v"}, {"k": "v"}]
        assert processor.stats.dead_lettered == 1
        dead = await read_and_ack(
            backend, processor.dead_letter_stream, "inspect", expect=1, timeout=self.timeout
        )
        assert len(dead) == 1
        assert dead[0].headers == {"k": "v"}
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
        seen: list[int] = []
        done = asyncio.Event()

        async def handler(payload: dict[str, Any]) -> None:
            seen.append(payload["n"])
            if len(seen) == 50:
                done.set()

        await backend.publish_many(names["stream"], [{"n": i} for i in range(50)])
        processor = StreamProcessor(backend, names["stream"], names["group"], "c", batch_count=7)
        processor.set_callback(handler)
        async with processor:
            await asyncio.wait_for(done.wait(), self.timeout)
        if self.features.ordering != "none":
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
        again = await self._take_over(second, await self._open(second, stream, group, "c"), 1)
        assert [m.data for m in again] == [{"n": 1}]

    async def test_close_while_a_read_is_blocked(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        session = await self._open(backend, names["stream"], names["group"])
        await session.read(count=1, block=0.2)
        reading = asyncio.ensure_future(session.read(count=1, block=30.0))
        await asyncio.sleep(0.2)
        await asyncio.wait_for(backend.aclose(), 10.0)
        try:
            result = await asyncio.wait_for(reading, 10.0)
        except BackendClosedError:
            pass
        else:
            assert result == []
        await backend.aclose()  # idempotent
        with pytest.raises(BackendClosedError):
            await session.read(count=1, block=None)

    async def test_session_close_while_a_read_is_blocked(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        session = await self._open(backend, names["stream"], names["group"])
        await session.read(count=1, block=0.2)
        reading = asyncio.ensure_future(session.read(count=1, block=30.0))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await asyncio.wait_for(session.aclose(), 10.0)
        try:
            result = await asyncio.wait_for(reading, 10.0)
        except BackendClosedError:
            pass
        else:
            assert result == []
        assert time.monotonic() - started < 10.0
        await session.aclose()  # idempotent
        await backend.publish(names["stream"], {"still": "open"})  # the backend is not closed

    async def test_operations_after_close_raise(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        session = await self._open(backend, names["stream"], names["group"])
        await backend.aclose()
        await backend.aclose()
        with pytest.raises(BackendClosedError):
            await backend.publish(names["stream"], {"n": 1})
        with pytest.raises(BackendClosedError):
            await session.ack([])
        with pytest.raises(BackendClosedError):
            await backend.open_consumer(names["stream"], names["group"], "late")

    async def test_nothing_lost_across_close_and_reopen(
        self, opener: OpenBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        first = await opener()
        session = await self._open(first, stream, group, "w")
        ids = await first.publish_many(stream, [{"n": i} for i in range(10)])
        got = await read_until(session, 10, timeout=self.timeout)
        assert self._in_order(_ids(got), ids)
        acked = {m.id for m in got[:5]}
        await session.ack(got[:5])  # 5 read but unacked
        await first.aclose()
        second = await opener()
        again = await self._open(second, stream, group, "w")
        rest = await self._take_over(second, again, 5, exclude=acked)
        await again.ack(rest)
        assert sorted({m.id for m in rest} - acked) == sorted(set(ids) - acked)
        if not self.features.contiguous_ack:
            assert not {m.id for m in rest} & acked

    async def test_group_info_counts_pending_and_lag(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        session = await self._open(backend, stream, group)
        await backend.publish_many(stream, [{"n": i} for i in range(6)])
        got = await read_until(session, 6, timeout=self.timeout)
        await session.ack(got[:4])
        info = await backend.group_info(stream, group)
        assert info.stream == stream
        assert info.group == group
        assert info.pending == 2
        assert info.lag in (0, None)

    async def test_peek_returns_the_tail_and_nothing_for_no_count(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream = names["stream"]
        ids = await backend.publish_many(stream, [{"n": i} for i in range(5)])
        tail = await backend.peek(stream, count=2)
        assert [m.data["n"] for m in tail] == [3, 4]
        assert _ids(tail) == ids[3:]
        assert await backend.peek(stream, count=0) == []
        assert await backend.peek(stream, count=-3) == []
        assert await backend.peek(names["other"], count=5) == []

    async def test_range_pages_through_a_stream(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream = names["stream"]
        ranged = getattr(backend, "range", None)
        if not self.features.range_reads or ranged is None:
            pytest.skip(f"{type(self).__name__} declares no positional reads")
        ids = await backend.publish_many(
            stream, [{"n": i} for i in range(7)], headers=[{"i": str(i)} for i in range(7)]
        )
        first = await ranged(stream, count=3)
        assert [m.data["n"] for m in first] == [0, 1, 2]
        assert _ids(first) == ids[:3]
        assert [m.headers for m in first] == [{"i": "0"}, {"i": "1"}, {"i": "2"}]
        assert {m.delivery_count for m in first} == {0}
        rest = await ranged(stream, after=first[-1].id, count=100)
        assert _ids(rest) == ids[3:]
        assert await ranged(stream, after=ids[-1], count=5) == []
        assert await ranged(names["other"], count=5) == []

    async def test_delete_removes_single_entries(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        delete = getattr(backend, "delete", None)
        if not self.features.deletes or delete is None:
            pytest.skip(f"{type(self).__name__} declares no single-entry deletes")
        session = await self._open(backend, stream, group)
        ids = await backend.publish_many(stream, [{"n": i} for i in range(4)])
        assert await delete(stream, [ids[1], ids[2]]) == 2
        assert await delete(stream, [ids[1]]) == 0  # gone already
        assert [m.data["n"] for m in await backend.peek(stream, count=10)] == [0, 3]
        got = await read_until(session, 2, timeout=self.timeout)
        assert [m.data["n"] for m in got] == [0, 3]

    async def test_delete_stream_removes_entries_and_groups(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group = names["stream"], names["group"]
        delete_stream = getattr(backend, "delete_stream", None)
        if delete_stream is None:
            pytest.skip(f"{type(self).__name__}: the backend has no delete_stream")
        if not self.features.stream_deletes:
            with pytest.raises(NotImplementedError):
                await delete_stream(stream)
            return
        assert await delete_stream(names["other"]) is False  # never existed
        session = await self._open(backend, stream, group)
        await backend.publish_many(stream, [{"n": i} for i in range(3)])
        assert len(await read_until(session, 3, timeout=self.timeout)) == 3  # left pending
        assert await delete_stream(stream) is True
        assert await delete_stream(stream) is False  # gone already
        assert await backend.peek(stream, count=10) == []
        with pytest.raises(GroupNotFoundError):
            await backend.group_info(stream, group)
        with pytest.raises(GroupNotFoundError):  # the open session learns it too
            await _read_until_gone(session, self.timeout)
        # the name starts over: a new stream, without the old entries or groups
        await backend.publish(stream, {"n": 99})
        fresh = await self._open(backend, stream, f"{group}-new")
        got = await read_until(fresh, 1, timeout=self.timeout)
        got += await fresh.read(count=10, block=0.5)  # an old entry would come now
        assert [m.data["n"] for m in got] == [99]

    # -- discovery: streams() and groups() -------------------------------------------

    def _discovery(self, backend: StreamBackend) -> tuple[Any, Any] | None:
        """`backend`'s ``streams`` and ``groups``, or None (after checking that they
        refuse) where the backend declares no stream listing."""
        streams, groups = getattr(backend, "streams", None), getattr(backend, "groups", None)
        if self.features.stream_listing and streams is not None and groups is not None:
            return streams, groups
        return None

    async def _listed(self, backend: StreamBackend, *names: str) -> dict[str, StreamInfo]:
        """`streams()` until each of `names` is listed (brokers may list lazily)."""
        deadline = time.monotonic() + self.timeout
        while True:
            found = {i.name: i for i in await backend.streams()}  # type: ignore[attr-defined]
            if all(name in found for name in names) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)

    async def test_streams_lists_streams_with_lengths_and_groups(
        self, backend: StreamBackend, names: dict[str, str]
    ) -> None:
        stream, group, other = names["stream"], names["group"], names["other"]
        dead = f"{stream}.dead"
        if self._discovery(backend) is None:
            with pytest.raises(NotImplementedError):
                await backend.streams()  # type: ignore[attr-defined]
            return
        started = time.time()
        await backend.publish_many(stream, [{"n": i} for i in range(3)])
        await backend.publish_many(other, [{"n": i} for i in range(2)])
        await backend.publish(dead, {"error": "x"})
        await read_and_ack(backend, stream, group, expect=3, timeout=self.timeout, settle=0.2)
        await backend.create_group(stream, "idle")
        found = await self._listed(backend, stream, other, dead)
        listed = [i.name for i in await backend.streams()]  # type: ignore[attr-defined]
        assert listed == sorted(listed)
        info = found[stream]
        assert isinstance(info, StreamInfo)
        assert info.length == 3
        assert group in info.groups
        if self.features.lists_idle_groups:
            assert set(info.groups) == {group, "idle"}
        assert list(info.groups) == sorted(info.groups)
        assert info.dead_letter_of is None
        if info.oldest_at is not None:
            assert started - 5 <= info.oldest_at <= time.time() + 5
        assert found[other].length == 2
        assert found[other].groups == ()
        assert found[dead].length == 1
        assert found[dead].dead_letter_of == stream
        assert await backend.groups(stream) == list(info.groups)  # type: ignore[attr-defined]
        assert await backend.groups(other) == []  # type: ignore[attr-defined]
        missing = f"{names['other']}:missing"
        assert await backend.groups(missing) == []  # type: ignore[attr-defined]
        assert missing not in found

    @pytest.mark.parametrize("stream_name", ["events:bot", "a.b-c_d", "with space/and#hash"])
    async def test_streams_round_trip_names(self, backend: StreamBackend, stream_name: str) -> None:
        if self._discovery(backend) is None:
            pytest.skip(f"{type(self).__name__} declares no stream listing")
        stream = f"{stream_name}-{uuid.uuid4().hex[:6]}"
        group = f"{stream_name} g" if self.features.exact_group_names else "plain g"
        await backend.publish(stream, {"ok": 1})
        await read_and_ack(backend, stream, group, expect=1, timeout=self.timeout, settle=0.2)
        found = await self._listed(backend, stream)
        assert found[stream].length == 1
        assert group in found[stream].groups
        assert group in await backend.groups(stream)  # type: ignore[attr-defined]

    # -- a broker restart --------------------------------------------------------------

    async def test_processor_survives_a_broker_restart(
        self, restartable_broker: RestartableBroker | None, names: dict[str, str]
    ) -> None:
        if restartable_broker is None:
            pytest.skip(f"{type(self).__name__} declares no broker it can restart")
        stream, group = names["stream"], names["group"]
        backend = await restartable_broker.open_backend()
        handled: set[int] = set()

        async def handler(payload: dict[str, Any]) -> None:
            handled.add(payload["n"])

        processor = StreamProcessor(
            backend, stream, group, "c", claim_idle=max(self.claim_idle, 1.0), retry_delay=0.05
        )
        processor.set_callback(handler)
        try:
            # a group nobody reads yet: what the broker confirmed must outlive the restart
            await backend.create_group(stream, "late")
            await backend.publish_many(stream, [{"n": i} for i in range(20)])
            async with processor:
                await wait_until(lambda: len(handled) == 20, timeout=self.timeout)
                await restartable_broker.restart()
                for n in range(20, 40):
                    await _publish_through_outage(backend, stream, {"n": n}, self.timeout)
                await wait_until(lambda: len(handled) == 40, timeout=self.timeout * 2)
                assert processor.is_running
            assert handled == set(range(40))
            assert processor.stats.reconnects >= 1
            assert processor.stats.outages >= 1  # the outage was seen, and logged
            assert processor.stats.outage_seconds > 0
            late = await read_and_ack(backend, stream, "late", expect=40, timeout=self.timeout)
            assert sorted({m.data["n"] for m in late}) == list(range(40))
        finally:
            await backend.aclose()


async def _read_until_gone(session: ConsumerSession, timeout: float) -> None:
    """Read until the session raises (`GroupNotFoundError` when its stream is gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await session.read(count=10, block=0.2)


async def _publish_through_outage(
    backend: StreamBackend, stream: str, data: dict[str, Any], timeout: float
) -> str:
    """Publish, retrying while the broker is still coming back."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await backend.publish(stream, data)
        except BrokerUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
