"""Testing an App with conveyor's pytest plugin (installed with conveyor; its async fixture
needs pytest-asyncio: ``pip install 'conveyor[pytest]'``).

`conveyor_backend` is a fresh memory:// broker per test, or the broker given by
``pytest --conveyor-url URL`` / ``CONVEYOR_TEST_URL``; `conveyor_clock` is its FakeClock.
"""

from __future__ import annotations

from typing import Any

import pytest

import conveyor
from conveyor.protocol import StreamBackend
from conveyor.testing import FakeClock, dead_letters, run_app_until_idle

# async tests, run by pytest-asyncio in its strict mode too (or set asyncio_mode = "auto")
pytestmark = pytest.mark.asyncio


def make_app(backend: StreamBackend, shipped: list[int]) -> conveyor.App:
    app = conveyor.App("shop")

    @app.handler("orders", group="billing", retry_delay=30, max_deliveries=3)
    async def charge(payload: dict[str, Any]) -> None:
        if payload["amount"] < 0:
            raise ValueError("negative amount")
        await backend.publish("shipments", {"order_id": payload["order_id"]})

    @app.handler("shipments", group="shipping")
    async def ship(payload: dict[str, Any]) -> None:
        shipped.append(payload["order_id"])

    return app


async def test_orders_are_charged_then_shipped(
    conveyor_backend: StreamBackend, conveyor_clock: FakeClock
) -> None:
    shipped: list[int] = []
    app = make_app(conveyor_backend, shipped)
    await conveyor_backend.publish("orders", {"order_id": 1, "amount": 10})
    await conveyor_backend.publish("orders", {"order_id": 2, "amount": -5})

    errors = await run_app_until_idle(
        app, conveyor_backend, clock=conveyor_clock, raise_errors=False
    )

    assert shipped == [1]  # the second handler ran on what the first one published
    assert [str(exc) for _, exc in errors] == ["negative amount"] * 3  # retried on fake time
    [letter] = await dead_letters(conveyor_backend, "orders")
    assert letter["original"] == {"order_id": 2, "amount": -5}
