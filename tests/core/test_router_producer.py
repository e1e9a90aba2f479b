"""Dispatch by type with filters, and the add_event producer."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import Message, StreamProcessor
from conveyor.producer import Producer
from conveyor.router import Router, UnroutableMessageError
from conveyor.testing import FakeClock, dead_letters, run_until_idle
from conveyor_memory import MemoryBackend


async def test_router_dispatches_by_type_with_filters(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    router = Router()
    paid: list[int] = []
    big: list[int] = []
    shipped: list[str] = []

    @router.route("order.paid")
    async def on_paid(payload: dict[str, Any]) -> None:
        paid.append(payload["order_id"])

    @router.route("order.paid", filter=lambda p: p["amount"] > 100)
    async def on_big(payload: dict[str, Any]) -> None:
        big.append(payload["order_id"])

    @router.route("order.shipped")
    async def on_shipped(msg: Message) -> None:
        shipped.append(msg.id)

    orders = Producer(memory, "orders")
    await orders.add_event("order.paid", {"order_id": 1, "amount": 50})
    await orders.add_event("order.paid", {"order_id": 2, "amount": 500})
    ship_ids = await orders.add_events(
        [("order.shipped", {"order_id": 1}), ("order.unknown", None)]
    )
    processor = StreamProcessor(memory, "orders", "g", "c", clock=clock)
    processor.set_callback(router)
    async with processor:
        await run_until_idle(processor, clock=clock)
    assert paid == [1, 2]
    assert big == [2]
    assert shipped == [ship_ids[0]]
    assert router.types == ["order.paid", "order.shipped"]
    assert (await memory.group_info("orders", "g")).pending == 0


async def test_strict_router_dead_letters_unknown_types(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    router = Router(strict=True)
    await memory.publish("orders", {"type": "nobody.handles.this"})
    processor = StreamProcessor(memory, "orders", "g", "c", clock=clock, max_deliveries=1)
    processor.set_callback(router)
    async with processor:
        errors = await run_until_idle(processor, clock=clock, raise_errors=False)
    assert isinstance(errors[0][1], UnroutableMessageError)
    letters = await dead_letters(memory, "orders")
    assert letters[0]["error_type"] == "UnroutableMessageError"


async def test_producer_sets_type_and_refuses_conflicts(memory: MemoryBackend) -> None:
    producer = Producer(memory, "events:bot")
    await producer.add_event("bot.started", {"v": 1})
    assert [m.data for m in await memory.peek("events:bot", count=5)] == [
        {"v": 1, "type": "bot.started"}
    ]
    with pytest.raises(ValueError, match="conflicting"):
        await producer.add_event("a", {"type": "b"})
    with pytest.raises(ValueError, match="non-empty"):
        await producer.add_event("", {})


def test_router_refuses_sync_handlers() -> None:
    router = Router()
    with pytest.raises(TypeError, match="async function"):
        router.add("x", lambda payload: None)  # type: ignore[arg-type,return-value]
