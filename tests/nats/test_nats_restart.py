"""A NATS server killed and restarted under load: every published message is handled.

Runs its own ``nats-server -js`` on a free port with a temporary store, kills it by PID
(SIGKILL) while a producer and a consumer are busy, and starts it again on the same store
and port. The client reconnects by itself; the test counts every message.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

import pytest

from conveyor.errors import BrokerUnavailableError, GroupNotFoundError

StartNats = Callable[..., Any]  # the start_nats fixture of conftest.py

pytestmark = pytest.mark.slow


async def test_server_restart_under_load_loses_nothing(
    start_nats: StartNats, caplog: pytest.LogCaptureFixture
) -> None:
    local_nats = start_nats()
    caplog.set_level(logging.WARNING, logger="conveyor.nats")
    total = 3000
    stream, group = "load:restart", "workers"
    producer = await local_nats.open_backend()
    consumer = await local_nats.open_backend()
    session = await consumer.open_consumer(stream, group, "c", claim_idle=2.0)
    published: set[int] = set()
    handled: collections.Counter[int] = collections.Counter()
    outages = {"publish": 0, "read": 0}
    a_third_sent = asyncio.Event()

    async def produce() -> None:
        for n in range(total):
            while True:
                try:
                    await producer.publish(stream, {"n": n}, msg_id=f"m-{n}")
                    break
                except BrokerUnavailableError:
                    outages["publish"] += 1
                    await asyncio.sleep(0.1)
            published.add(n)
            if len(published) == total // 3:
                a_third_sent.set()
            await asyncio.sleep(0.0005)

    async def consume() -> None:
        nonlocal session
        while len(handled) < total:
            try:
                messages = await session.read(count=100, block=0.5)
                for message in messages:
                    handled[message.data["n"]] += 1
                await session.ack(messages)
            except BrokerUnavailableError:
                outages["read"] += 1
                await asyncio.sleep(0.2)
            except GroupNotFoundError:  # what the engine does: a new session recreates it
                await session.aclose()
                session = await consumer.open_consumer(stream, group, "c", claim_idle=2.0)

    tasks = [asyncio.ensure_future(produce()), asyncio.ensure_future(consume())]
    try:
        await asyncio.wait_for(a_third_sent.wait(), timeout=20)
        local_nats.stop(kill=True)
        killed_at = len(published)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(local_nats.start)  # the loop keeps running meanwhile
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=40)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    try:
        assert killed_at < total, "the server must die while messages are still being sent"
        assert outages["publish"] > 0, "publishing never noticed the outage"
        assert outages["read"] > 0, "reading never noticed the outage"
        logged = [r.getMessage() for r in caplog.records if r.name == "conveyor.nats"]
        assert any(m.startswith("disconnected from NATS") for m in logged)
        assert any(m.startswith("reconnected to NATS") for m in logged)
        assert published == set(range(total))
        assert set(handled) == set(range(total)), (
            f"lost: {sorted(set(range(total)) - set(handled))[:20]}"
        )
        info = await consumer.group_info(stream, group)
        assert info.length == total  # Nats-Msg-Id: retried publishes are stored once
    finally:
        await producer.aclose()
        await consumer.aclose()
