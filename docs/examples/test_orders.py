"""How to test your own handlers on memory:// — copy this into your test suite.

Retries and claim timeouts run on a FakeClock, so this test takes milliseconds.
"""

from __future__ import annotations

from typing import Any

import pytest

import conveyor
from conveyor.testing import FakeClock, HandlerErrors, dead_letters, run_until_idle
from conveyor_memory import reset

# async tests, run by pytest-asyncio in its strict mode too (or set asyncio_mode = "auto")
pytestmark = pytest.mark.asyncio

charged: dict[int, int] = {}


async def charge(payload: dict[str, Any]) -> None:
    if payload["amount"] < 0:
        raise ValueError("negative amount")
    charged[payload["order_id"]] = charged.get(payload["order_id"], 0) + 1


async def test_charges_orders_and_dead_letters_bad_ones() -> None:
    clock = FakeClock()
    charged.clear()
    async with conveyor.connect("memory://orders-test", clock=clock) as backend:
        await backend.publish("orders", {"order_id": 1, "amount": 10})
        await backend.publish("orders", {"order_id": 2, "amount": -5})
        processor = conveyor.StreamProcessor(
            backend, "orders", "billing", "test", clock=clock, retry_delay=30, max_deliveries=3
        )
        processor.set_callback(charge)
        async with processor:
            with pytest.raises(HandlerErrors) as failures:
                await run_until_idle(processor, clock=clock)  # advances the clock for retries
        assert len(failures.value.errors) == 3
        assert charged == {1: 1}
        [letter] = await dead_letters(backend, "orders")
        assert letter["original"] == {"order_id": 2, "amount": -5}
        assert letter["error"] == "negative amount"
    reset("orders-test")
