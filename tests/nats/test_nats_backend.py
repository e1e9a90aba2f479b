"""NATS-specific behaviour: config conflicts, sessions, heartbeats, nak delays, headers,
dead letters, names, inspection."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from nats.js import api
from nats.js.client import JetStreamContext

import conveyor
import nats
from conveyor.errors import (
    BackendClosedError,
    BrokerUnavailableError,
    ConfigConflictError,
    ConfigurationError,
    GroupNotFoundError,
    InvalidHeaderError,
)
from conveyor.message import Message
from conveyor.processor import StreamProcessor
from conveyor.protocol import Capabilities
from conveyor.testing.conformance import read_until
from conveyor.testing.processes import SilentServer, free_port
from conveyor.testing.servers import port_open
from conveyor_nats import CAPABILITIES, NatsBackend, NatsSession, open_backend

OpenNats = Callable[..., Awaitable[NatsBackend]]
StartNats = Callable[..., Any]  # the start_nats fixture of conftest.py


@pytest_asyncio.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """A raw nats-py JetStream context on the test server."""
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
def stream() -> str:
    return f"events:{uuid.uuid4().hex[:8]}"


async def _session(
    backend: NatsBackend, stream: str, group: str = "g", consumer: str = "c", **options: Any
) -> NatsSession:
    """Open a session (closed with its backend)."""
    session = await backend.open_consumer(stream, group, consumer, **options)
    assert isinstance(session, NatsSession)
    return session


async def _ensure(backend: NatsBackend, stream: str, group: str = "g", **options: Any) -> None:
    """Create (or check) the group, as opening a consumer does, and close the session."""
    async with backend.open_consumer(stream, group, "setup", **options):
        pass


# -- capabilities and sessions ---------------------------------------------------------


@pytest.mark.parametrize("steps", range(4))
async def test_a_read_cancelled_as_its_wake_up_comes_is_cancelled(
    open_nats: OpenNats, stream: str, steps: int
) -> None:
    """A read waiting for messages is cancelled (a processor stopping) in the same moment
    something wakes it. It must raise CancelledError: Python 3.11's ``asyncio.wait_for``,
    which the wait used, returned the wake-up instead when its inner wait had finished
    first, and the reader went on for up to a second more (a 1 s stall of every stop that
    hit the window)."""
    backend = await open_nats()
    session = await _session(backend, stream)
    reading = asyncio.ensure_future(session.read(count=10, block=5.0))
    await asyncio.sleep(0.3)  # waiting on the empty stream, its pull request open
    session._puller.interrupt()  # the wake-up a lost connection gives
    for _ in range(steps):
        await asyncio.sleep(0)
    if not reading.cancel():  # it had returned already: nothing to cancel
        assert steps > 0
        assert await reading == []
        return
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(reading, 5)


async def test_capabilities_declare_broker_redelivery(open_nats: OpenNats, stream: str) -> None:
    backend = await open_nats()
    assert backend.capabilities is CAPABILITIES
    assert Capabilities(name="nats", redelivery="broker", claim="broker") == CAPABILITIES
    session = await _session(backend, stream)
    assert await session.claim_stale(min_idle=0, count=5) == []
    with pytest.raises(NotImplementedError):
        await session.redeliver([])


async def test_acks_only_count_on_the_connection_that_read(
    open_nats: OpenNats, stream: str
) -> None:
    """A message read on one backend cannot be acked through another (JetStream acks go to
    the reading connection); messages without a handle are a no-op."""
    reader, other = await open_nats(), await open_nats()
    session = await _session(reader, stream)
    elsewhere = await _session(other, stream, consumer="other")
    await reader.publish(stream, {"n": 1})
    got = await read_until(session, 1, timeout=5)
    await elsewhere.ack(got)
    await session.ack([Message(got[0].id, stream, got[0].data)])
    assert (await reader.group_info(stream, "g")).pending == 1
    await session.ack(got)
    assert (await reader.group_info(stream, "g")).pending == 0


async def test_closing_a_session_does_not_nak_what_it_read(
    open_nats: OpenNats, stream: str
) -> None:
    """Closing stops the puller; its unacked messages come back after ack_wait, not at once."""
    backend = await open_nats()
    first = await _session(backend, stream, consumer="first", claim_idle=2.0)
    msg_id = await backend.publish(stream, {"n": 1}, headers={"trace": "t-9"})
    assert [m.id for m in await read_until(first, 1, timeout=5)] == [msg_id]
    await first.aclose()
    closed_at = time.monotonic()
    with pytest.raises(BackendClosedError):
        await first.read(count=1, block=None)
    second = await _session(backend, stream, consumer="second", claim_idle=2.0)
    assert await second.read(count=1, block=1.0) == []
    again = await read_until(second, 1, timeout=10)
    assert time.monotonic() - closed_at >= 1.5
    assert [(m.id, m.delivery_count, m.headers) for m in again] == [(msg_id, 2, {"trace": "t-9"})]
    await second.ack(again)


async def test_a_read_on_a_lost_connection_returns_at_once(start_nats: StartNats) -> None:
    server = start_nats()
    backend = await server.open_backend()
    try:
        session = await _session(backend, "outage", claim_idle=2.0)
        await session.read(count=1, block=0.1)
        reading = asyncio.ensure_future(session.read(count=1, block=30.0))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await asyncio.to_thread(server.stop, kill=True)
        with pytest.raises(BrokerUnavailableError, match="not connected"):
            await asyncio.wait_for(reading, 10)
        assert time.monotonic() - started < 5
        with pytest.raises(BrokerUnavailableError):  # still down: at once, not after `block`
            await asyncio.wait_for(session.read(count=1, block=30.0), 5)
        await asyncio.to_thread(server.start)
        msg_id = await _publish_when_back(backend, "outage", {"back": True})
        got = await read_until(session, 1, timeout=10)
        assert [m.id for m in got] == [msg_id]
        await session.ack(got)
    finally:
        await backend.aclose()


async def _publish_when_back(backend: NatsBackend, stream: str, data: dict[str, Any]) -> str:
    """Publish, retrying while the client is still reconnecting."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await backend.publish(stream, data)
        except BrokerUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


# -- groups: mapping and conflicts -----------------------------------------------------


async def test_stream_and_group_names_map_onto_jetstream(
    open_nats: OpenNats, js: JetStreamContext, stream: str, prefix_options: dict[str, str]
) -> None:
    backend = await open_nats()
    await backend.create_group(stream, "billing:eu.1")
    name = backend.stream_name(stream)
    assert name == prefix_options["stream_prefix"] + stream.replace(":", "~3A")
    info = await js.stream_info(name)
    assert info.config.subjects == [
        f"{prefix_options['subject_prefix']}.{stream.replace(':', '~3A')}"
    ]
    assert info.config.retention == api.RetentionPolicy.LIMITS
    consumer = await js.consumer_info(name, "billing~3Aeu~2E1")
    assert consumer.config.ack_policy == api.AckPolicy.EXPLICIT
    assert consumer.config.durable_name == "billing~3Aeu~2E1"
    assert consumer.config.max_deliver == -1
    assert consumer.config.ack_wait == 30.0


async def test_open_consumer_maps_claim_idle_and_max_deliveries(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    backend = await open_nats(max_deliver_margin="2")
    await _ensure(backend, stream, claim_idle=4.5, max_deliveries=5, start="latest")
    info = await js.consumer_info(backend.stream_name(stream), "g")
    assert info.config.ack_wait == 4.5
    assert info.config.max_deliver == 7
    assert info.config.deliver_policy == api.DeliverPolicy.NEW


async def test_existing_stream_with_other_retention_is_a_conflict(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    backend = await open_nats()
    await js.add_stream(
        name=backend.stream_name(stream),
        subjects=[backend.subject(stream)],
        retention=api.RetentionPolicy.WORK_QUEUE,
    )
    with pytest.raises(ConfigConflictError) as info:
        await _ensure(backend, stream)
    message = str(info.value)
    assert "retention is workqueue" in message
    assert "every group" in message
    assert f"nats stream edit/rm {backend.stream_name(stream)}" in message
    with pytest.raises(ConfigConflictError):
        await backend.publish(stream, {"n": 1})


async def test_existing_stream_with_other_subject_or_options_is_a_conflict(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    backend = await open_nats()
    await js.add_stream(
        name=backend.stream_name(stream), subjects=[f"elsewhere.{uuid.uuid4().hex}"]
    )
    with pytest.raises(ConfigConflictError, match="subjects are"):
        await _ensure(backend, stream)
    other = f"{stream}-2"
    await _ensure(backend, other)
    in_memory = await open_nats(storage="memory", max_age="60")
    with pytest.raises(ConfigConflictError) as info:
        await _ensure(in_memory, other)
    assert "storage is" in str(info.value)
    assert "max_age is 0s, the URL asks for 60.0s" in str(info.value)


async def test_existing_consumer_with_other_settings_is_a_conflict(
    open_nats: OpenNats, stream: str
) -> None:
    backend = await open_nats()
    await _ensure(backend, stream, claim_idle=5.0, max_deliveries=3)
    await _ensure(backend, stream, claim_idle=5.0, max_deliveries=3)
    await backend.create_group(stream, "g")  # nothing asked: compatible
    with pytest.raises(ConfigConflictError) as info:
        await _ensure(backend, stream, claim_idle=7.0)
    assert "ack_wait is 5.0s but claim_idle=7.0s" in str(info.value)
    assert "nats consumer rm" in str(info.value)
    with pytest.raises(ConfigConflictError, match="max_deliver is 6"):
        await _ensure(backend, stream, max_deliveries=6)


async def test_concurrent_opens_of_a_new_group_all_succeed(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    backends = [await open_nats() for _ in range(3)]
    sessions = await asyncio.gather(
        *(_session(b, stream, consumer=f"c{i}", claim_idle=3.0) for i, b in enumerate(backends))
    )
    assert len(sessions) == 3
    info = await js.consumer_info(backends[0].stream_name(stream), "g")
    assert info.config.ack_wait == 3.0


# -- heartbeats, nacks, dead letters ---------------------------------------------------


async def test_long_handler_is_kept_alive_by_heartbeats(open_nats: OpenNats, stream: str) -> None:
    worker, rival = await open_nats(), await open_nats()
    calls: list[int] = []
    finished = asyncio.Event()

    async def slow(message: Message) -> None:
        calls.append(message.delivery_count)
        await asyncio.sleep(3.0)
        finished.set()

    processor = StreamProcessor(worker, stream, "g", "worker", claim_idle=1.0)
    processor.set_callback(slow)
    await worker.publish(stream, {"slow": True})
    stolen: list[Message] = []
    async with processor:
        session = await _session(rival, stream, consumer="rival", claim_idle=1.0)
        while not finished.is_set():  # ack_wait passes three times meanwhile
            stolen += await session.read(count=10, block=0.25)
    assert calls == [1]
    assert stolen == []
    assert processor.stats.handled == 1
    assert (await rival.group_info(stream, "g")).pending == 0


async def test_nack_delay_is_honoured(open_nats: OpenNats, stream: str) -> None:
    backend = await open_nats()
    session = await _session(backend, stream, claim_idle=30.0)
    msg_id = await backend.publish(stream, {"n": 1}, headers={"k": "v"})
    [first] = await read_until(session, 1, timeout=5)
    nacked_at = time.monotonic()
    await session.nack(first, delay=1.5)
    again = await read_until(session, 1, timeout=10, block=0.1)
    waited = time.monotonic() - nacked_at
    assert [m.id for m in again] == [msg_id]
    assert again[0].delivery_count == 2
    assert again[0].headers == {"k": "v"}
    assert waited >= 1.45, f"redelivered after {waited:.2f}s, before the 1.5 s delay"
    await session.ack(again)
    await session.nack(again[0], delay=1.0)  # already acked: no-op
    assert (await backend.group_info(stream, "g")).pending == 0


async def test_undecodable_message_is_returned_with_decode_error(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    backend = await open_nats()
    session = await _session(backend, stream)
    await js.publish(backend.subject(stream), b"\xffnot json")
    await js.publish(backend.subject(stream), b"[1, 2]")
    got = await read_until(session, 2, timeout=5)
    assert [m.data for m in got] == [{}, {}]
    assert got[0].raw == b"\xffnot json"
    assert got[0].decode_error is not None
    assert got[1].decode_error is not None
    assert "list" in got[1].decode_error
    dead = f"{stream}:dead"
    for message in got:
        await session.dead_letter(
            message,
            dead_letter_stream=dead,
            record={"id": message.id, "error": message.decode_error},
        )
    assert (await backend.group_info(stream, "g")).pending == 0
    assert [m.data["id"] for m in await backend.peek(dead, count=10)] == [m.id for m in got]


async def test_dead_letter_retry_does_not_write_twice(open_nats: OpenNats, stream: str) -> None:
    backend = await open_nats()
    session = await _session(backend, stream)
    await backend.publish(stream, {"poison": 1})
    [message] = await read_until(session, 1, timeout=5)
    dead = f"{stream}:dead"
    unacked = Message(message.id, stream, message.data)  # no handle: a retry elsewhere
    first = await session.dead_letter(unacked, dead_letter_stream=dead, record={"n": 1})
    assert (await backend.group_info(stream, "g")).pending == 1  # no handle: not terminated
    second = await session.dead_letter(message, dead_letter_stream=dead, record={"n": 1})
    assert first == second
    assert len(await backend.peek(dead, count=10)) == 1
    assert (await backend.group_info(stream, "g")).pending == 0


async def test_dead_letter_carries_the_headers_and_an_internal_msg_id(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    backend = await open_nats()
    session = await _session(backend, stream)
    headers = {"traceparent": "00-abc-01", "x-note": "héllo 🚀", "empty": ""}
    await backend.publish(stream, {"poison": 1}, headers=headers)
    [message] = await read_until(session, 1, timeout=5)
    assert message.headers == headers
    dead = f"{stream}:dead"
    entry = await session.dead_letter(message, dead_letter_stream=dead, record={"n": 1})
    [peeked] = await backend.peek(dead, count=1)
    assert (peeked.id, peeked.headers) == (entry, headers)  # Nats-Msg-Id is not shown
    raw = await js.get_msg(backend.stream_name(dead), int(entry))
    assert raw.headers is not None
    assert raw.headers["Nats-Msg-Id"].startswith("conveyor-dlq.")


# -- headers -------------------------------------------------------------------------------


async def test_nats_headers_are_stripped_and_others_kept(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    """Names starting with Nats- (any case) are JetStream's; everything else is the
    user's, including a header named like a status line."""
    backend = await open_nats()
    session = await _session(backend, stream)
    sent = {"Nats-Msg-Id": "m-1", "nats-custom": "x", "NATS-Other": "y", "X-Keep": "z"}
    await js.publish(backend.subject(stream), b'{"a": 1}', headers=sent)
    await js.publish(backend.subject(stream), b'{"a": 2}', headers={"Status": "404"})
    await js.publish(backend.subject(stream), b'{"a": 3}', headers={"Nats-Msg-Id": "m-3"})
    got = await read_until(session, 3, timeout=5)
    expected = [({"a": 1}, {"X-Keep": "z"}), ({"a": 2}, {"Status": "404"}), ({"a": 3}, {})]
    assert [(m.data, m.headers) for m in got] == expected
    peeked = await backend.peek(stream, count=3)
    assert [(m.data, m.headers) for m in peeked] == expected


async def test_headers_survive_an_ack_wait_redelivery(open_nats: OpenNats, stream: str) -> None:
    backend = await open_nats()
    session = await _session(backend, stream, claim_idle=1.0)
    await backend.publish(stream, {"n": 1}, headers={"trace": "abc", "lang": "日本語"})
    [first] = await read_until(session, 1, timeout=5)
    [again] = await read_until(session, 1, timeout=10)  # not acked: back after ack_wait
    assert (again.id, again.delivery_count) == (first.id, 2)
    assert again.headers == first.headers == {"trace": "abc", "lang": "日本語"}
    await session.ack([again])


# -- publishing ------------------------------------------------------------------------


async def test_publish_deduplicates_by_msg_id(open_nats: OpenNats, stream: str) -> None:
    backend = await open_nats()
    first = await backend.publish(stream, {"n": 1}, msg_id="order-7")
    assert await backend.publish(stream, {"n": 1}, msg_id="order-7") == first
    ids = await backend.publish_many(stream, [{"n": i} for i in range(3)], msg_ids=["a", "b", "a"])
    assert ids[0] == ids[2] != ids[1]
    await backend.create_group(stream, "g")
    assert (await backend.group_info(stream, "g")).length == 3


async def test_msg_id_goes_with_headers_and_is_validated(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    backend = await open_nats()
    entry = await backend.publish(stream, {"n": 1}, headers={"k": "v"}, msg_id="m-1")
    [more] = await backend.publish_many(stream, [{"n": 2}], headers=[{"k": "w"}], msg_ids=["m-2"])
    raw = await js.get_msg(backend.stream_name(stream), int(entry))
    assert raw.headers == {"k": "v", "Nats-Msg-Id": "m-1"}
    assert [m.headers for m in await backend.peek(stream, count=2)] == [{"k": "v"}, {"k": "w"}]
    assert more == str(int(entry) + 1)
    for bad in ("", 7):
        with pytest.raises(ConfigurationError, match="msg_id"):
            await backend.publish(stream, {"n": 1}, msg_id=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidHeaderError):
        await backend.publish(stream, {"n": 1}, msg_id="line\nbreak")
    with pytest.raises(ConfigurationError, match="msg_ids"):
        await backend.publish_many(stream, [{"n": 1}, {"n": 2}], msg_ids=["only-one"])
    with pytest.raises(InvalidHeaderError):
        await backend.publish_many(
            stream, [{"n": 1}], headers=[{"Nats-Msg-Id": "x"}], msg_ids=["m-3"]
        )
    assert await backend.publish_many(stream, [], msg_ids=[]) == []
    assert len(await backend.peek(stream, count=10)) == 2


async def test_publish_many_returns_sequences_in_order(open_nats: OpenNats, stream: str) -> None:
    backend = await open_nats()
    ids = await backend.publish_many(stream, [{"n": i, "pad": "x" * 200} for i in range(5000)])
    assert [int(i) for i in ids] == list(range(1, 5001))
    assert await backend.publish_many(stream, []) == []
    peeked = await backend.peek(stream, count=3)
    assert [m.data["n"] for m in peeked] == [4997, 4998, 4999]
    assert [m.id for m in peeked] == ids[-3:]
    assert all(m.delivery_count == 0 and m.published_at for m in peeked)
    assert await backend.peek(f"{stream}-missing", count=3) == []


async def test_publish_recreates_a_deleted_stream(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    backend = await open_nats()
    await backend.publish(stream, {"n": 1})
    await js.delete_stream(backend.stream_name(stream))
    assert await backend.publish(stream, {"n": 2}) == "1"
    assert await backend.publish_many(stream, [{"n": 3}]) == ["2"]


async def test_a_burst_of_publishes_to_a_new_stream_creates_it_once(
    open_nats: OpenNats, js: JetStreamContext, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = await open_nats()
    caplog.set_level("INFO", logger="conveyor.nats")
    ids = await asyncio.gather(*(backend.publish(stream, {"n": i}) for i in range(500)))
    assert sorted(int(i) for i in ids) == list(range(1, 501))
    created = [r for r in caplog.records if r.getMessage().startswith("created JetStream stream")]
    assert len(created) == 1


# -- inspection, reading, deleted groups -----------------------------------------------


async def test_group_info_reports_pending_lag_and_length(open_nats: OpenNats, stream: str) -> None:
    backend = await open_nats()
    session = await _session(backend, stream)
    await backend.publish_many(stream, [{"n": i} for i in range(10)])
    got = await session.read(count=4, block=2.0)
    assert len(got) == 4
    info = await backend.group_info(stream, "g")
    assert (info.pending, info.lag, info.length, info.consumers) == (4, 6, 10, ())
    with pytest.raises(GroupNotFoundError):
        await backend.group_info(stream, "nope")


async def test_read_of_a_deleted_group_raises(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    """An idle read checks the group at most every group_check_interval (a pull request
    to a deleted consumer gets no answer on nats-server 2.9); once it is found missing,
    every read says so until a new session recreates it."""
    backend = await open_nats(group_check_interval="1")
    session = await _session(backend, stream)
    await js.delete_consumer(backend.stream_name(stream), "g")
    await asyncio.sleep(1.0)
    with pytest.raises(GroupNotFoundError):
        await session.read(count=1, block=None)
    with pytest.raises(GroupNotFoundError):  # at once: well within the interval
        await session.read(count=1, block=None)


async def test_deleted_group_is_reported_then_recreated(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    backend = await open_nats(group_check_interval="0.2")
    session = await _session(backend, stream)
    assert await session.read(count=1, block=0.1) == []
    await js.delete_stream(backend.stream_name(stream))

    async def read_until_it_fails() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            await session.read(count=1, block=0.1)

    with pytest.raises(GroupNotFoundError):
        await read_until_it_fails()
    await session.aclose()
    session = await _session(backend, stream)  # what the engine does: a new session
    msg_id = await backend.publish(stream, {"back": True})
    got = await read_until(session, 1, timeout=5)
    assert [m.id for m in got] == [msg_id]


async def test_acks_are_flushed_on_close(open_nats: OpenNats, stream: str) -> None:
    first = await open_nats()
    session = await _session(first, stream, claim_idle=30.0)
    await first.publish_many(stream, [{"n": i} for i in range(200)])
    got = await read_until(session, 200, timeout=10)
    await session.ack(got)
    await first.aclose()  # right after the acks: they must still reach the server
    second = await open_nats()
    info = await second.group_info(stream, "g")
    assert (info.pending, info.lag) == (0, 0)
    with pytest.raises(BackendClosedError):
        await session.read(count=1, block=None)


async def test_unreachable_server_raises_broker_unavailable() -> None:
    port = 4
    assert not port_open("127.0.0.1", port)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as info:
        await open_backend(
            f"nats://bob:hunter2@127.0.0.1:{port}",
            {"connect_timeout": "0.5", "reconnect_wait": "0.1"},
        )
    assert time.monotonic() - started < 5
    assert "hunter2" not in str(info.value)


async def test_repr_hides_credentials(
    nats_url: str, prefix_options: dict[str, str], stream_cleanup: None
) -> None:
    host = nats_url.split("://", 1)[1]
    backend = await open_backend(f"nats://someone:pw-secret@{host}", prefix_options)
    try:
        assert "pw-secret" not in repr(backend)
        assert "pw-secret" not in repr(backend.settings)
        session = await _session(backend, "repr")
        assert "pw-secret" not in repr(session)
    finally:
        await backend.aclose()


def _payloads(n: int) -> list[dict[str, Any]]:
    return [{"n": i} for i in range(n)]


async def test_seed_read_events_skips_undecodable(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    backend: NatsBackend = await open_nats()
    await backend.create_group(stream, "g")
    await js.publish(backend.subject(stream), b"garbage")
    ids = await backend.publish_many(stream, _payloads(2))
    rows: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + 5
    while len(rows) < 2 and time.monotonic() < deadline:
        rows += await backend.read_events(stream, "g", "c", 10)
    assert rows == [(ids[0], {"n": 0}), (ids[1], {"n": 1})]
    for msg_id, _ in rows:
        await backend.ack_event(stream, "g", msg_id)
    assert (await backend.group_info(stream, "g")).pending == 1  # the garbage one


async def test_peek_skips_deleted_sequences(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    backend = await open_nats()
    ids = await backend.publish_many(stream, _payloads(5))
    await js.delete_msg(backend.stream_name(stream), int(ids[3]))
    peeked = await backend.peek(stream, count=3)
    assert [m.id for m in peeked] == [ids[2], ids[4]]
    assert [m.data for m in peeked] == [{"n": 2}, {"n": 4}]


async def test_processor_recreates_a_deleted_stream_and_goes_on(
    open_nats: OpenNats, js: JetStreamContext, stream: str
) -> None:
    backend = await open_nats(group_check_interval="0.2")
    seen: list[int] = []
    arrived = asyncio.Event()

    async def handler(payload: dict[str, Any]) -> None:
        seen.append(payload["n"])
        arrived.set()

    processor = StreamProcessor(backend, stream, "g", "w", claim_idle=5.0)
    processor.set_callback(handler)
    async with processor:
        await backend.publish(stream, {"n": 1})
        await asyncio.wait_for(arrived.wait(), 10)
        arrived.clear()
        await js.delete_stream(backend.stream_name(stream))
        await asyncio.sleep(1.0)  # the reader notices, the engine recreates the group
        await backend.publish(stream, {"n": 2})
        await asyncio.wait_for(arrived.wait(), 15)
    assert seen == [1, 2]


async def test_a_failed_first_connect_says_why() -> None:
    """No server at the port, or one that never greets (another service): the error
    says that no server answered within the budget, and what the attempts met."""
    quick = "connect_timeout=0.5&reconnect_wait=0.2"
    refused = free_port()
    with pytest.raises(BrokerUnavailableError) as info:
        await conveyor.connect(f"nats://127.0.0.1:{refused}?{quick}")
    assert f"cannot connect to NATS at nats://127.0.0.1:{refused}: no server answered" in str(
        info.value
    )
    assert "ConnectionRefusedError" in str(info.value)
    with SilentServer() as silent, pytest.raises(BrokerUnavailableError) as info:
        await conveyor.connect(f"nats://127.0.0.1:{silent.port}?{quick}")
    assert "no NATS greeting within connect_timeout=0.5 s" in str(info.value)
