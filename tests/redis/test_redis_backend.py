"""RedisBackend against a real Redis: reading, acking, recovery, dead letters, inspection."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from redis.asyncio import Redis

import conveyor.registry
from conveyor.errors import GroupNotFoundError, UnserializablePayloadError, WrongTypeError
from conveyor.options import split_options
from conveyor_redis import CAPABILITIES, RedisBackend, open_backend
from conveyor_redis.client import server_version
from conveyor_redis.entries import PAYLOAD_FIELD

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


async def open_again(redis_url: str, backend: RedisBackend) -> RedisBackend:
    base, query = split_options(redis_url)
    return await open_backend(base, {**query, "key_prefix": backend.settings.key_prefix})


def test_capabilities() -> None:
    assert CAPABILITIES.redelivery == "engine"
    assert CAPABILITIES.claim == "engine"
    assert CAPABILITIES.exact_delivery_count is True
    assert CAPABILITIES.ordering == "stream"


@pytest.mark.parametrize("name", ["events:bot", "a.b-c_d", "plain"])
async def test_round_trip_exact(backend: RedisBackend, name: str) -> None:
    await backend.ensure_group(name, "g")
    first = await backend.publish(name, PAYLOAD)
    await backend.publish(name, {})
    await backend.publish(name, {PAYLOAD_FIELD: "x"})
    messages = await backend.read(name, "g", "c", count=10, block=0.5)
    assert messages[0].id == first
    assert [m.data for m in messages] == [PAYLOAD, {}, {PAYLOAD_FIELD: "x"}]
    assert all(m.stream == name and m.delivery_count == 1 for m in messages)
    assert messages[0].published_at == pytest.approx(time.time(), abs=5)
    assert type(messages[0].data["n"]) is int
    assert type(messages[0].data["price"]) is float


async def test_json_payload_format_round_trips(redis_url: str, backend: RedisBackend) -> None:
    base, query = split_options(redis_url)
    other = await open_backend(
        base, {**query, "key_prefix": backend.settings.key_prefix, "payload_format": "json"}
    )
    try:
        await other.ensure_group("j", "g")
        await other.publish("j", PAYLOAD)
        [message] = await backend.read("j", "g", "c", count=10, block=0.5)
        assert message.data == PAYLOAD
    finally:
        await other.aclose()


async def test_publish_rejects_what_json_cannot_carry(backend: RedisBackend, stream: str) -> None:
    with pytest.raises(UnserializablePayloadError, match="nested"):
        await backend.publish(stream, {"nested": {"bad": (1, 2)}})
    with pytest.raises(UnserializablePayloadError):
        await backend.publish_many(stream, [{"ok": 1}, {"bad": float("nan")}])
    assert await backend.peek(stream, count=10) == []  # nothing of the batch was stored


async def test_foreign_entries_are_read(backend: RedisBackend, raw: Redis, stream: str) -> None:
    key = backend.settings.key(stream)
    await backend.ensure_group(stream, "g")
    await raw.xadd(key, {"type": "user.created", "id": "42", "score": "1.5"})
    await raw.xadd(key, {"type": "seed", "data": 'json:{"a": [1, 2]}', "n": "json:3"})
    await raw.xadd(key, {"text": 'json:"json:literal"'})
    messages = await backend.read(stream, "g", "c", count=10, block=0.5)
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
    await backend.ensure_group(stream, "g")
    await raw.xadd(key, {"data": "json:{not json"})
    await raw.xadd(key, {b"blob": b"\xff\xfe"})
    await raw.xadd(key, {PAYLOAD_FIELD: "[1, 2]"})
    await raw.xadd(key, {"fine": "yes"})
    messages = await backend.read(stream, "g", "c", count=10, block=0.5)
    assert [m.decode_error is not None for m in messages] == [True, True, True, False]
    assert messages[0].raw == {"data": "json:{not json"}
    assert "UTF-8" in (messages[1].decode_error or "")
    assert messages[3].data == {"fine": "yes"}


async def test_read_blocks_then_returns_empty(backend: RedisBackend, stream: str) -> None:
    await backend.ensure_group(stream, "g")
    started = time.monotonic()
    assert await backend.read(stream, "g", "c", count=10, block=0.3) == []
    assert 0.25 <= time.monotonic() - started < 2.0
    assert await backend.read(stream, "g", "c", count=10, block=None) == []


async def test_blocking_read_wakes_on_publish(backend: RedisBackend, stream: str) -> None:
    await backend.ensure_group(stream, "g")
    reader = asyncio.create_task(backend.read(stream, "g", "c", count=10, block=0.9))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await backend.publish(stream, {"x": 1})
    messages = await reader
    assert [m.data for m in messages] == [{"x": 1}]
    assert time.monotonic() - started < 0.5


async def test_ensure_group_is_idempotent_and_honours_start(
    backend: RedisBackend, stream: str
) -> None:
    await backend.publish(stream, {"before": 1})
    await backend.ensure_group(stream, "early")
    await backend.ensure_group(stream, "early")
    await backend.ensure_group(stream, "late", start="latest")
    await backend.publish(stream, {"after": 1})
    early = await backend.read(stream, "early", "c", count=10, block=None)
    late = await backend.read(stream, "late", "c", count=10, block=None)
    assert [m.data for m in early] == [{"before": 1}, {"after": 1}]
    assert [m.data for m in late] == [{"after": 1}]


async def test_wrong_type_is_typed(backend: RedisBackend, raw: Redis, stream: str) -> None:
    await raw.set(backend.settings.key(stream), "not a stream")
    with pytest.raises(WrongTypeError):
        await backend.ensure_group(stream, "g")
    with pytest.raises(WrongTypeError):
        await backend.publish(stream, {"x": 1})
    with pytest.raises(WrongTypeError):
        await backend.group_info(stream, "g")


async def test_ack_is_one_multi_id_xack(
    redis_url: str, backend: RedisBackend, raw: Redis, stream: str
) -> None:
    key = backend.settings.key(stream)
    await backend.ensure_group(stream, "g")
    await backend.publish_many(stream, [{"i": i} for i in range(5)])
    messages = await backend.read(stream, "g", "c", count=10, block=None)
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

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.05)
        await backend.ack(stream, "g", messages[:4])
        await raw.execute_command("PING", key)  # type: ignore[no-untyped-call]  # end marker
        await asyncio.wait_for(watcher, 5)
    await monitor_client.aclose()
    assert len(xacks) == 1
    assert all(m.id in xacks[0] for m in messages[:4])
    assert [r["message_id"] for r in await pending_rows(raw, key, "g")] == [messages[4].id]
    await backend.ack(stream, "g", messages)  # already acked ids: no-op
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
    await backend.ensure_group(stream, "g")
    await backend.publish_many(stream, [{"i": i} for i in range(5)])
    first = await backend.read(stream, "g", "worker", count=3, block=None)
    other = await backend.read(stream, "g", "other", count=1, block=None)
    assert [m.data["i"] for m in first] == [0, 1, 2]
    assert [m.data["i"] for m in other] == [3]
    await backend.ack(stream, "g", first[1:2])
    await backend.publish(stream, {"i": 5})

    restarted = await open_again(redis_url, backend)
    try:
        page1 = await restarted.read(stream, "g", "worker", count=1, block=None)
        page2 = await restarted.read(stream, "g", "worker", count=1, block=None)
        fresh = await restarted.read(stream, "g", "worker", count=10, block=None)
    finally:
        await restarted.aclose()
    assert [(m.data["i"], m.delivery_count) for m in page1 + page2] == [(0, 2), (2, 2)]
    assert [(m.data["i"], m.delivery_count) for m in fresh] == [(4, 1), (5, 1)]


async def test_group_recreated_rereads_own_pending(backend: RedisBackend, stream: str) -> None:
    await backend.ensure_group(stream, "g")
    await backend.publish(stream, {"i": 0})
    [message] = await backend.read(stream, "g", "c", count=10, block=None)
    await backend.ensure_group(stream, "g")  # what the engine does on (re)start
    [again] = await backend.read(stream, "g", "c", count=10, block=None)
    assert (again.id, again.delivery_count) == (message.id, 2)


async def test_deleted_stream_raises_group_not_found_then_recovers(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    await backend.ensure_group(stream, "g")
    await backend.publish(stream, {"i": 0})
    assert len(await backend.read(stream, "g", "c", count=10, block=None)) == 1
    await raw.delete(backend.settings.key(stream))
    with pytest.raises(GroupNotFoundError):
        await backend.read(stream, "g", "c", count=10, block=0.1)
    await backend.ensure_group(stream, "g")
    await backend.publish(stream, {"i": 1})
    assert [m.data for m in await backend.read(stream, "g", "c", count=10, block=0.5)] == [{"i": 1}]


async def test_destroyed_group_raises_group_not_found(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    await backend.ensure_group(stream, "g")
    await raw.xgroup_destroy(backend.settings.key(stream), "g")
    with pytest.raises(GroupNotFoundError):
        await backend.read(stream, "g", "c", count=10, block=None)
    with pytest.raises(GroupNotFoundError):
        await backend.claim_stale(stream, "g", "c", min_idle=0, count=10)
    with pytest.raises(GroupNotFoundError):
        await backend.group_info(stream, "g")


async def test_redeliver_bumps_count_and_returns_fresh_messages(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    await backend.ensure_group(stream, "g")
    await backend.publish_many(stream, [{"i": 0}, {"i": 1}])
    messages = await backend.read(stream, "g", "c", count=10, block=None)
    messages[0].data["i"] = "mutated by a handler"
    again = await backend.redeliver(stream, "g", "c", messages)
    assert [(m.data["i"], m.delivery_count) for m in again] == [(0, 2), (1, 2)]
    await backend.ack(stream, "g", again[:1])
    third = await backend.redeliver(stream, "g", "other", again)  # acked one left out
    assert [(m.data["i"], m.delivery_count) for m in third] == [(1, 3)]
    rows = await pending_rows(raw, backend.settings.key(stream), "g")
    assert [(r["consumer"], r["times_delivered"]) for r in rows] == [("other", 3)]


async def test_entries_trimmed_while_pending_are_acked_and_reported(
    backend: RedisBackend, raw: Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = backend.settings.key(stream)
    await backend.ensure_group(stream, "g")
    await backend.publish_many(stream, [{"i": i} for i in range(6)])
    messages = await backend.read(stream, "g", "c", count=10, block=None)
    await raw.xdel(key, messages[0].id, messages[1].id, messages[2].id)
    caplog.set_level(logging.WARNING, logger="conveyor.redis")

    again = await backend.redeliver(stream, "g", "c", messages[:2] + messages[3:4])
    assert [m.data["i"] for m in again] == [3]
    await backend.ensure_group(stream, "g")  # restart: own pending re-read meets 2
    reread = await backend.read(stream, "g", "c", count=10, block=None)
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
    await backend.ensure_group(stream, "g")
    await backend.publish_many(stream, [{"i": i} for i in range(3)])
    messages = await backend.read(stream, "g", "dead", count=10, block=None)
    await raw.xdel(key, messages[1].id)
    await asyncio.sleep(0.05)
    caplog.set_level(logging.WARNING, logger="conveyor.redis")
    claimed = await backend.claim_stale(stream, "g", "alive", min_idle=0.02, count=10)
    assert [(m.data["i"], m.delivery_count) for m in claimed] == [(0, 2), (2, 2)]
    rows = await pending_rows(raw, key, "g")
    assert [(r["message_id"], r["consumer"]) for r in rows] == [
        (messages[0].id, "alive"),
        (messages[2].id, "alive"),
    ]
    assert messages[1].id in caplog.text


async def test_claim_stale_respects_idle_and_count(backend: RedisBackend, stream: str) -> None:
    await backend.ensure_group(stream, "g")
    await backend.publish_many(stream, [{"i": i} for i in range(25)])
    await backend.read(stream, "g", "dead", count=25, block=None)
    assert await backend.claim_stale(stream, "g", "alive", min_idle=5.0, count=10) == []
    await asyncio.sleep(0.05)
    first = await backend.claim_stale(stream, "g", "alive", min_idle=0.02, count=10)
    second = await backend.claim_stale(stream, "g", "alive", min_idle=0.02, count=100)
    assert [m.data["i"] for m in first] == list(range(10))
    assert sorted(m.data["i"] for m in second) == list(range(10, 25))


async def test_heartbeat_keeps_messages_from_claims_without_counting(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    await backend.ensure_group(stream, "g")
    await backend.publish_many(stream, [{"i": 0}, {"i": 1}])
    messages = await backend.read(stream, "g", "busy", count=10, block=None)
    await asyncio.sleep(0.6)
    await backend.heartbeat(stream, "g", "busy", messages[:1])
    claimed = await backend.claim_stale(stream, "g", "thief", min_idle=0.4, count=10)
    assert [m.data["i"] for m in claimed] == [1]
    rows = await pending_rows(raw, backend.settings.key(stream), "g")
    assert [(r["consumer"], r["times_delivered"]) for r in rows] == [("busy", 1), ("thief", 2)]


async def test_dead_letter_is_one_transaction(
    redis_url: str, backend: RedisBackend, raw: Redis, stream: str
) -> None:
    key = backend.settings.key(stream)
    await backend.ensure_group(stream, "g")
    await backend.publish(stream, {"i": 0})
    [message] = await backend.read(stream, "g", "c", count=1, block=None)
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

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.05)
        dead_id = await backend.dead_letter(
            stream, "g", message, dead_letter_stream=f"{stream}.dead", record=record
        )
        await asyncio.wait_for(watcher, 5)
    await monitor_client.aclose()

    # MONITOR lists commands of a transaction when EXEC runs them: nothing in between
    assert by_client[ours[0]][-4:] == ["MULTI", "XADD", "XACK", "EXEC"]
    assert await pending_rows(raw, key, "g") == []
    [dead] = await backend.peek(f"{stream}.dead", count=10)
    assert (dead.id, dead.data) == (dead_id, record)


async def test_group_info_and_peek(backend: RedisBackend, stream: str) -> None:
    await backend.ensure_group(stream, "g")
    await backend.publish_many(stream, [{"i": i} for i in range(5)])
    await backend.read(stream, "g", "c1", count=2, block=None)
    info = await backend.group_info(stream, "g")
    assert (info.stream, info.group, info.pending, info.lag, info.length) == (
        stream,
        "g",
        2,
        3,
        5,
    )
    assert [(c.name, c.pending) for c in info.consumers] == [("c1", 2)]
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


async def test_claim_reply_entries_count_previous_deliveries(backend: RedisBackend) -> None:
    """XREADGROUP ... CLAIM (Redis 8.4+) entries: [id, fields, idle ms, previous count]."""
    entries: list[Any] = [["5-0", ["a", "1"], 1500, 2], ["6-0", ["b", "2"], 0, 0]]
    messages, gone = backend._messages("s", entries, None)
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
    await backend.ensure_group(stream, "g", claim_idle=0.02)
    await backend.publish(stream, {"i": 0})
    await backend.read(stream, "g", "dead", count=10, block=None)
    await asyncio.sleep(0.05)
    assert await backend.read(stream, "g", "alive", count=10, block=None) == []
    claimed = await backend.claim_stale(stream, "g", "alive", min_idle=0.02, count=10)
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
        await capped.ensure_group(stream, "g")
        await capped.publish_many(stream, [{"i": 0}, {"i": 1}])
        held = await capped.read(stream, "g", "c", count=10, block=None)
        await capped.publish_many(stream, [{"i": 2}, {"i": 3}])  # trims 0 and 1
        assert await capped.redeliver(stream, "g", "c", held) == []
        fresh = await capped.read(stream, "g", "c", count=10, block=None)
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
        "RedisSettings",
        "StreamConsumer",
        "open_backend",
    ]
    for name in conveyor_redis.__all__:
        assert getattr(conveyor_redis, name).__doc__ or name == "CAPABILITIES"
