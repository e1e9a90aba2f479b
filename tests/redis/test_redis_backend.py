"""RedisBackend and its sessions against a real Redis: reading, acking, recovery, dead
letters, inspection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

import conveyor.registry
from conveyor.errors import GroupNotFoundError, UnserializablePayloadError, WrongTypeError
from conveyor.options import split_options
from conveyor.protocol import Capabilities, ConsumerSession
from conveyor_redis import CAPABILITIES, RedisBackend, RedisSession, open_backend
from conveyor_redis.client import pack_args, server_version
from conveyor_redis.entries import PAYLOAD_FIELD, to_messages

PAYLOAD: dict[str, Any] = {
    "type": "order.paid",
    "n": 7,
    "price": 12.5,
    "ok": True,
    "none": None,
    "items": [1, "two", {"three": 3.0}],
    "nested": {"a": {"b": [True, False, None]}},
    "text": "grüße 🚀 json:not-a-prefix",
    "looks_like_json": "json:{}",
    "empty": "",
}


async def pending_rows(raw: Redis, key: str, group: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await raw.xpending_range(key, group, "-", "+", 100)
    return rows


async def open_again(redis_url: str, backend: RedisBackend, **options: Any) -> RedisBackend:
    base, query = split_options(redis_url)
    return await open_backend(base, {**query, "key_prefix": backend.settings.key_prefix, **options})


async def consumer(
    backend: RedisBackend, stream: str, name: str = "c", group: str = "g", **kw: Any
) -> ConsumerSession:
    """A session (closed with its backend)."""
    return await backend.open_consumer(stream, group, name, **kw)


def test_capabilities() -> None:
    assert Capabilities(name="redis", redelivery="engine", claim="engine") == CAPABILITIES
    assert CAPABILITIES.blocking_read is True


@pytest.mark.parametrize("name", ["events:bot", "a.b-c_d", "plain"])
async def test_round_trip_exact(backend: RedisBackend, name: str) -> None:
    session = await consumer(backend, name)
    assert isinstance(session, RedisSession)
    first = await backend.publish(name, PAYLOAD)
    await backend.publish(name, {})
    await backend.publish(name, {PAYLOAD_FIELD: "x"})
    messages = await session.read(count=10, block=0.5)
    assert messages[0].id == first
    assert [m.data for m in messages] == [PAYLOAD, {}, {PAYLOAD_FIELD: "x"}]
    assert all(m.stream == name and m.delivery_count == 1 for m in messages)
    assert all(m.headers == {} for m in messages)
    assert messages[0].published_at == pytest.approx(time.time(), abs=5)
    assert type(messages[0].data["n"]) is int
    assert type(messages[0].data["price"]) is float


async def test_both_payload_formats_are_read_whatever_is_written(
    redis_url: str, backend: RedisBackend, raw: Redis
) -> None:
    assert backend.settings.payload_format == "json"  # the default for writing
    base, query = split_options(redis_url)
    fields = await open_backend(
        base, {**query, "key_prefix": backend.settings.key_prefix, "payload_format": "fields"}
    )
    try:
        await fields.create_group("j", "g")
        await backend.publish("j", PAYLOAD)
        await fields.publish("j", PAYLOAD)
        written: Any = await raw.xrange(backend.settings.key("j"))
        assert [next(iter(entry)) for _, entry in written] == [PAYLOAD_FIELD, "type"]
        for reader in (backend, fields):
            session = await reader.open_consumer("j", f"g-{reader.settings.payload_format}", "c")
            assert [m.data for m in await session.read(count=10, block=0.5)] == [PAYLOAD] * 2
    finally:
        await fields.aclose()


async def test_publish_rejects_what_json_cannot_carry(backend: RedisBackend, stream: str) -> None:
    with pytest.raises(UnserializablePayloadError, match="nested"):
        await backend.publish(stream, {"nested": {"bad": (1, 2)}})
    with pytest.raises(UnserializablePayloadError):
        await backend.publish_many(stream, [{"ok": 1}, {"bad": float("nan")}])
    assert await backend.peek(stream, count=10) == []  # nothing of the batch was stored


async def test_foreign_entries_are_read(backend: RedisBackend, raw: Redis, stream: str) -> None:
    key = backend.settings.key(stream)
    session = await consumer(backend, stream)
    await raw.xadd(key, {"type": "user.created", "id": "42", "score": "1.5"})
    await raw.xadd(key, {"type": "seed", "data": 'json:{"a": [1, 2]}', "n": "json:3"})
    await raw.xadd(key, {"text": 'json:"json:literal"'})
    messages = await session.read(count=10, block=0.5)
    assert [m.data for m in messages] == [
        {"type": "user.created", "id": "42", "score": "1.5"},
        {"type": "seed", "data": {"a": [1, 2]}, "n": 3},
        {"text": "json:literal"},
    ]
    assert all(m.decode_error is None for m in messages)


async def test_undecodable_entries_come_back_with_decode_error(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    key = backend.settings.key(stream)
    session = await consumer(backend, stream)
    await raw.xadd(key, {"data": "json:{not json"})
    await raw.xadd(key, {b"blob": b"\xff\xfe"})
    await raw.xadd(key, {PAYLOAD_FIELD: "[1, 2]"})
    await raw.xadd(key, {"fine": "yes"})
    messages = await session.read(count=10, block=0.5)
    assert [m.decode_error is not None for m in messages] == [True, True, True, False]
    assert messages[0].raw == {"data": "json:{not json"}
    assert "UTF-8" in (messages[1].decode_error or "")
    assert messages[3].data == {"fine": "yes"}


async def test_read_blocks_then_returns_empty(backend: RedisBackend, stream: str) -> None:
    session = await consumer(backend, stream)
    started = time.monotonic()
    assert await session.read(count=10, block=0.3) == []
    assert 0.25 <= time.monotonic() - started < 2.0
    assert await session.read(count=10, block=None) == []


async def test_blocking_read_wakes_on_publish(
    backend: RedisBackend, until_blocked: Callable[[], Awaitable[None]], stream: str
) -> None:
    session = await consumer(backend, stream)
    assert await session.read(count=10, block=None) == []  # own pending re-read done
    reader = asyncio.create_task(session.read(count=10, block=0.9))
    await until_blocked()
    started = time.monotonic()
    await backend.publish(stream, {"x": 1})
    messages = await reader
    assert [m.data for m in messages] == [{"x": 1}]
    assert time.monotonic() - started < 0.5


async def test_open_consumer_is_idempotent_and_honours_start(
    backend: RedisBackend, stream: str
) -> None:
    await backend.publish(stream, {"before": 1})
    early = await consumer(backend, stream, group="early")
    await consumer(backend, stream, "other", group="early")
    late = await consumer(backend, stream, group="late", start="latest")
    await consumer(backend, stream, group="late", start="earliest")  # exists: no effect
    await backend.publish(stream, {"after": 1})
    assert [m.data for m in await early.read(count=10, block=None)] == [
        {"before": 1},
        {"after": 1},
    ]
    assert [m.data for m in await late.read(count=10, block=None)] == [{"after": 1}]


async def test_wrong_type_is_typed(backend: RedisBackend, raw: Redis, stream: str) -> None:
    await raw.set(backend.settings.key(stream), "not a stream")
    with pytest.raises(WrongTypeError):
        await consumer(backend, stream)
    with pytest.raises(WrongTypeError):
        await backend.create_group(stream, "g")
    with pytest.raises(WrongTypeError):
        await backend.publish(stream, {"x": 1})
    with pytest.raises(WrongTypeError):
        await backend.publish_many(stream, [{"x": 1}, {"x": 2}, {"x": 3}])
    with pytest.raises(WrongTypeError):
        await backend.group_info(stream, "g")
    # every error reply of the packed batch was read: the connections stay in step
    for _ in range(3):
        ids = await backend.publish_many(stream + "-ok", [{"n": i} for i in range(20)])
        entries: Any = await raw.xrange(backend.settings.key(stream + "-ok"), count=1000)
        assert [entry_id for entry_id, _ in entries][-20:] == ids


async def test_ack_is_one_multi_id_xack(
    redis_url: str, backend: RedisBackend, raw: Redis, stream: str
) -> None:
    key = backend.settings.key(stream)
    session = await consumer(backend, stream)
    await backend.publish_many(stream, [{"i": i} for i in range(5)])
    messages = await session.read(count=10, block=None)
    assert len(await pending_rows(raw, key, "g")) == 5
    xacks: list[str] = []  # XACK commands on this test's key (other clients may XACK too)
    base, _ = split_options(redis_url)
    monitor_client = Redis.from_url(base, decode_responses=True, protocol=2)
    async with monitor_client.monitor() as monitor:

        async def watch() -> None:
            async for event in monitor.listen():
                command = str(event["command"])
                if command.startswith("XACK") and key in command:
                    xacks.append(command)
                if command.startswith("PING") and key in command:
                    return

        watcher = asyncio.create_task(watch())  # MONITOR is on: nothing is missed
        await session.ack(messages[:4])
        await raw.execute_command("PING", key)  # type: ignore[no-untyped-call]  # end marker
        await asyncio.wait_for(watcher, 5)
    await monitor_client.aclose()
    assert len(xacks) == 1
    assert all(m.id in xacks[0] for m in messages[:4])
    assert [r["message_id"] for r in await pending_rows(raw, key, "g")] == [messages[4].id]
    await session.ack(messages)  # already acked ids: no-op
    await backend.ack_event(stream, "g", "1-1")  # unknown id: no-op
    assert await pending_rows(raw, key, "g") == []


async def test_publish_many_keeps_order_and_maxlen(
    redis_url: str, backend: RedisBackend, raw: Redis, stream: str
) -> None:
    ids = await backend.publish_many(stream, [{"i": i} for i in range(50)])
    assert len(ids) == 50
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert [m.data["i"] for m in await backend.peek(stream, count=3)] == [47, 48, 49]
    base, query = split_options(redis_url)
    capped = await open_backend(
        base,
        {**query, "key_prefix": backend.settings.key_prefix, "maxlen": 10, "exact_maxlen": True},
    )
    try:
        await capped.publish(stream, {"i": 50})
    finally:
        await capped.aclose()
    assert await raw.xlen(backend.settings.key(stream)) == 10


async def test_restarted_consumer_rereads_own_pending_first(
    redis_url: str, backend: RedisBackend, stream: str
) -> None:
    worker = await consumer(backend, stream, "worker")
    await backend.publish_many(stream, [{"i": i} for i in range(5)])
    first = await worker.read(count=3, block=None)
    other = await (await consumer(backend, stream, "other")).read(count=1, block=None)
    assert [m.data["i"] for m in first] == [0, 1, 2]
    assert [m.data["i"] for m in other] == [3]
    await worker.ack(first[1:2])
    await backend.publish(stream, {"i": 5})

    restarted = await open_again(redis_url, backend)
    try:
        again = await consumer(restarted, stream, "worker")
        page1 = await again.read(count=1, block=None)
        page2 = await again.read(count=1, block=None)
        fresh = await again.read(count=10, block=None)
    finally:
        await restarted.aclose()
    assert [(m.data["i"], m.delivery_count) for m in page1 + page2] == [(0, 2), (2, 2)]
    assert [(m.data["i"], m.delivery_count) for m in fresh] == [(4, 1), (5, 1)]


async def test_new_session_rereads_own_pending_others_do_not(
    backend: RedisBackend, stream: str
) -> None:
    first = await consumer(backend, stream)
    running = await consumer(backend, stream, "running")
    await backend.publish(stream, {"i": 0})
    [message] = await first.read(count=10, block=None)
    assert await first.read(count=10, block=None) == []  # no re-read within a session
    await first.aclose()
    second = await consumer(backend, stream)  # what the engine does on (re)start
    [again] = await second.read(count=10, block=None)
    assert (again.id, again.delivery_count) == (message.id, 2)
    assert await running.read(count=10, block=None) == []  # other consumers: untouched


async def test_deleted_stream_raises_group_not_found_then_recovers(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    session = await consumer(backend, stream)
    await backend.publish(stream, {"i": 0})
    assert len(await session.read(count=10, block=None)) == 1
    await raw.delete(backend.settings.key(stream))
    with pytest.raises(GroupNotFoundError):
        await session.read(count=10, block=0.1)
    renewed = await consumer(backend, stream)  # what the engine does: a new session
    await backend.publish(stream, {"i": 1})
    assert [m.data for m in await renewed.read(count=10, block=0.5)] == [{"i": 1}]


async def test_destroyed_group_raises_group_not_found(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    session = await consumer(backend, stream)
    await raw.xgroup_destroy(backend.settings.key(stream), "g")
    with pytest.raises(GroupNotFoundError):
        await session.read(count=10, block=None)
    with pytest.raises(GroupNotFoundError):
        await session.claim_stale(min_idle=0, count=10)
    with pytest.raises(GroupNotFoundError):
        await backend.group_info(stream, "g")


async def test_redeliver_bumps_count_and_returns_fresh_messages(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    session = await consumer(backend, stream)
    other = await consumer(backend, stream, "other")
    await backend.publish_many(stream, [{"i": 0}, {"i": 1}])
    messages = await session.read(count=10, block=None)
    messages[0].data["i"] = "mutated by a handler"
    again = await session.redeliver(messages)
    assert [(m.data["i"], m.delivery_count) for m in again] == [(0, 2), (1, 2)]
    await session.ack(again[:1])
    third = await other.redeliver(again)  # acked one left out
    assert [(m.data["i"], m.delivery_count) for m in third] == [(1, 3)]
    rows = await pending_rows(raw, backend.settings.key(stream), "g")
    assert [(r["consumer"], r["times_delivered"]) for r in rows] == [("other", 3)]


async def test_entries_trimmed_while_pending_are_acked_and_reported(
    backend: RedisBackend, raw: Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = backend.settings.key(stream)
    session = await consumer(backend, stream)
    await backend.publish_many(stream, [{"i": i} for i in range(6)])
    messages = await session.read(count=10, block=None)
    await raw.xdel(key, messages[0].id, messages[1].id, messages[2].id)
    caplog.set_level(logging.WARNING, logger="conveyor.redis")

    again = await session.redeliver(messages[:2] + messages[3:4])
    assert [m.data["i"] for m in again] == [3]
    restarted = await consumer(backend, stream)  # own pending re-read meets 2
    reread = await restarted.read(count=10, block=None)
    assert [m.data["i"] for m in reread] == [3, 4, 5]
    assert [r["message_id"] for r in await pending_rows(raw, key, "g")] == [
        m.id for m in messages[3:]
    ]
    assert "deleted or trimmed while pending" in caplog.text
    assert messages[0].id in caplog.text
    assert messages[2].id in caplog.text


async def test_claim_stale_acks_deleted_entries(
    backend: RedisBackend, raw: Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = backend.settings.key(stream)
    dead = await consumer(backend, stream, "dead")
    alive = await consumer(backend, stream, "alive")
    await backend.publish_many(stream, [{"i": i} for i in range(3)])
    messages = await dead.read(count=10, block=None)
    await raw.xdel(key, messages[1].id)
    await asyncio.sleep(0.05)  # idle time is what is being tested
    caplog.set_level(logging.WARNING, logger="conveyor.redis")
    claimed = await alive.claim_stale(min_idle=0.02, count=10)
    assert [(m.data["i"], m.delivery_count) for m in claimed] == [(0, 2), (2, 2)]
    rows = await pending_rows(raw, key, "g")
    assert [(r["message_id"], r["consumer"]) for r in rows] == [
        (messages[0].id, "alive"),
        (messages[2].id, "alive"),
    ]
    assert messages[1].id in caplog.text


async def test_claim_stale_respects_idle_and_count(backend: RedisBackend, stream: str) -> None:
    dead = await consumer(backend, stream, "dead")
    alive = await consumer(backend, stream, "alive")
    await backend.publish_many(stream, [{"i": i} for i in range(25)])
    await dead.read(count=25, block=None)
    assert await alive.claim_stale(min_idle=5.0, count=10) == []
    await asyncio.sleep(0.05)  # idle time is what is being tested
    first = await alive.claim_stale(min_idle=0.02, count=10)
    second = await alive.claim_stale(min_idle=0.02, count=100)
    assert [m.data["i"] for m in first] == list(range(10))
    assert sorted(m.data["i"] for m in second) == list(range(10, 25))


async def test_heartbeat_keeps_messages_from_claims_without_counting(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    busy = await consumer(backend, stream, "busy")
    thief = await consumer(backend, stream, "thief")
    await backend.publish_many(stream, [{"i": 0}, {"i": 1}])
    messages = await busy.read(count=10, block=None)
    await asyncio.sleep(0.6)  # idle time is what is being tested
    await busy.heartbeat(messages[:1])
    claimed = await thief.claim_stale(min_idle=0.4, count=10)
    assert [m.data["i"] for m in claimed] == [1]
    rows = await pending_rows(raw, backend.settings.key(stream), "g")
    assert [(r["consumer"], r["times_delivered"]) for r in rows] == [("busy", 1), ("thief", 2)]


async def test_dead_letter_is_one_transaction(
    redis_url: str, backend: RedisBackend, raw: Redis, stream: str
) -> None:
    key = backend.settings.key(stream)
    session = await consumer(backend, stream)
    await backend.publish(stream, {"i": 0})
    [message] = await session.read(count=1, block=None)
    record = {"payload": message.data, "error": "ValueError: boom", "deliveries": 5}

    dead_key = backend.settings.key(f"{stream}.dead")
    by_client: dict[str, list[str]] = {}
    ours: list[str] = []  # the connection that wrote the dead letter
    base, _ = split_options(redis_url)
    monitor_client = Redis.from_url(base, decode_responses=True, protocol=2)
    async with monitor_client.monitor() as monitor:

        async def watch() -> None:
            async for event in monitor.listen():
                command = str(event["command"])
                client = f"{event.get('client_address')}:{event.get('client_port')}"
                by_client.setdefault(client, []).append(command.split(" ", 1)[0])
                if command.startswith("XADD") and dead_key in command:
                    ours.append(client)
                if ours and client == ours[0] and command == "EXEC":
                    return

        watcher = asyncio.create_task(watch())  # MONITOR is on: nothing is missed
        dead_id = await session.dead_letter(
            message, dead_letter_stream=f"{stream}.dead", record=record
        )
        await asyncio.wait_for(watcher, 5)
    await monitor_client.aclose()

    # MONITOR lists commands of a transaction when EXEC runs them: nothing in between
    assert by_client[ours[0]][-4:] == ["MULTI", "XADD", "XACK", "EXEC"]
    assert await pending_rows(raw, key, "g") == []
    [dead] = await backend.peek(f"{stream}.dead", count=10)
    assert (dead.id, dead.data) == (dead_id, record)


async def test_group_info_and_peek(backend: RedisBackend, stream: str) -> None:
    session = await consumer(backend, stream, "c1")
    await backend.publish_many(stream, [{"i": i} for i in range(5)])
    await session.read(count=2, block=None)
    info = await backend.group_info(stream, "g")
    assert (info.stream, info.group, info.pending, info.lag, info.length) == (
        stream,
        "g",
        2,
        3,
        5,
    )
    assert [(c.name, c.pending) for c in info.consumers] == [("c1", 2)]  # nothing else read
    assert 0 <= info.consumers[0].idle < 5
    peeked = await backend.peek(stream, count=2)
    assert [(m.data["i"], m.delivery_count) for m in peeked] == [(3, 0), (4, 0)]
    with pytest.raises(GroupNotFoundError):
        await backend.group_info(stream, "nope")
    with pytest.raises(GroupNotFoundError):
        await backend.group_info("missing-" + stream, "g")


async def test_seed_methods(backend: RedisBackend, stream: str) -> None:
    await backend.create_group(stream, "g")
    await backend.create_group(stream, "g")
    await backend.publish(stream, {"type": "x", "n": 1})
    events = await backend.read_events(stream, "g", "c", 10)
    assert [data for _, data in events] == [{"type": "x", "n": 1}]
    await backend.ack_event(stream, "g", events[0][0])
    assert (await backend.group_info(stream, "g")).pending == 0


async def test_connect_by_url_and_close(redis_url: str, stream: str, raw: Redis) -> None:
    assert "redis" in conveyor.registry.available_backends()
    async with conveyor.registry.connect(redis_url, key_prefix="conveyor-test-connect:") as b:
        assert isinstance(b, RedisBackend)
        await b.publish(stream, {"x": 1})
    await raw.delete(f"conveyor-test-connect:{stream}")
    await b.aclose()  # idempotent
    from conveyor.errors import BackendClosedError

    with pytest.raises(BackendClosedError):
        await b.publish(stream, {"x": 1})


async def test_passwords_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    from conveyor.errors import BrokerUnavailableError

    backend = await open_backend(
        "redis://user:s3cr3t-pw@127.0.0.1:1/0", {"socket_connect_timeout": "0.2"}
    )
    try:
        assert "s3cr3t" not in repr(backend)
        assert "s3cr3t" not in repr(backend.settings)
        with pytest.raises(BrokerUnavailableError) as info:
            await backend.publish("s", {"x": 1})
        chain: BaseException | None = info.value
        while chain is not None:
            assert "s3cr3t" not in str(chain)
            chain = chain.__cause__
        assert "s3cr3t" not in caplog.text
    finally:
        await backend.aclose()


def test_server_version_parsing() -> None:
    assert server_version({"redis_version": "7.0.15"}) == (7, 0, 15)
    assert server_version({"redis_version": "8.4.0"}) >= (8, 4)
    cluster = {"a:1": {"redis_version": "8.4.1"}, "b:2": {"redis_version": "8.2.0"}}
    assert server_version(cluster) == (8, 2, 0)
    assert server_version({}) == (0,)


def test_claim_reply_entries_count_previous_deliveries() -> None:
    """XREADGROUP ... CLAIM (Redis 8.4+) entries: [id, fields, idle ms, previous count]."""
    entries: list[Any] = [["5-0", ["a", "1"], 1500, 2], ["6-0", ["b", "2"], 0, 0]]
    messages, gone = to_messages("s", entries, None)
    assert [(m.id, m.data, m.delivery_count) for m in messages] == [
        ("5-0", {"a": "1"}, 3),
        ("6-0", {"b": "2"}, 1),
    ]
    assert gone == []


async def test_claim_idle_hint_on_a_server_without_read_claim(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    """On Redis < 8.4 the claim_idle hint changes nothing: claim_stale uses XAUTOCLAIM."""
    version = server_version(await raw.info("server"))
    if version >= (8, 4):
        pytest.skip(f"server {version} claims in XREADGROUP")
    dead = await consumer(backend, stream, "dead", claim_idle=0.02)
    alive = await consumer(backend, stream, "alive", claim_idle=0.02)
    await backend.publish(stream, {"i": 0})
    await dead.read(count=10, block=None)
    await asyncio.sleep(0.05)  # idle time is what is being tested
    assert await alive.read(count=10, block=None) == []
    claimed = await alive.claim_stale(min_idle=0.02, count=10)
    assert [(m.data, m.delivery_count) for m in claimed] == [({"i": 0}, 2)]


async def test_entries_trimmed_by_maxlen_while_pending(
    redis_url: str, backend: RedisBackend, raw: Redis, stream: str
) -> None:
    base, query = split_options(redis_url)
    capped = await open_backend(
        base,
        {**query, "key_prefix": backend.settings.key_prefix, "maxlen": 2, "exact_maxlen": True},
    )
    try:
        session = await consumer(capped, stream)
        await capped.publish_many(stream, [{"i": 0}, {"i": 1}])
        held = await session.read(count=10, block=None)
        await capped.publish_many(stream, [{"i": 2}, {"i": 3}])  # trims 0 and 1
        assert await session.redeliver(held) == []
        fresh = await session.read(count=10, block=None)
    finally:
        await capped.aclose()
    assert [m.data["i"] for m in fresh] == [2, 3]
    rows = await pending_rows(raw, backend.settings.key(stream), "g")
    assert [r["message_id"] for r in rows] == [m.id for m in fresh]


def test_public_names() -> None:
    import conveyor_redis

    assert sorted(conveyor_redis.__all__) == [
        "CAPABILITIES",
        "RedisBackend",
        "RedisSession",
        "RedisSettings",
        "StreamConsumer",
        "open_backend",
    ]
    for name in conveyor_redis.__all__:
        assert getattr(conveyor_redis, name).__doc__ or name == "CAPABILITIES"


def test_packed_commands_are_what_hiredis_would_send() -> None:
    import hiredis

    head = [b"XADD", b"k", b"MAXLEN", b"~", b"10", b"*"]
    rows = [[b"f", b"v\r\n"], ["é".encode(), b"", b"b", b"x" * 70_000]]
    expected = b"".join(hiredis.pack_command((*head, *row)) for row in rows)  # type: ignore[arg-type]
    assert pack_args(head, rows) == expected


async def test_a_publish_loop_is_cancelled_when_asked(backend: RedisBackend, stream: str) -> None:
    """A task publishing batches in a loop (the demo, a handler that fans out) must end
    when cancelled (a stop, a Ctrl-C). The pipelined replies were read under
    ``asyncio.wait_for``, which on Python 3.10/3.11 returns instead of raising when the
    cancellation comes as the replies are in: most cancellations were lost."""

    async def publish_forever() -> None:
        batch = [{"n": n} for n in range(200)]
        while True:
            await backend.publish_many(stream, batch)

    for _ in range(10):
        task = asyncio.ensure_future(publish_forever())
        await asyncio.sleep(0.05)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "the publish loop went on after being cancelled"
        assert task.cancelled()
