"""Typed payloads: handlers that take a pydantic model, a msgspec Struct and a dataclass;
publishing typed values; an invalid payload dead-lettered at once with its errors.

Run it: `.venv/bin/python docs/examples/typed.py` (needs `conveyor[pydantic,msgspec]`)
(or as a worker: `.venv/bin/conveyor run typed:app --url memory://` from docs/examples;
its AsyncAPI document: `.venv/bin/conveyor asyncapi typed:app`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime

import msgspec
import pydantic

import conveyor
from conveyor.testing import dead_letters, run_until_idle


class Item(pydantic.BaseModel):
    sku: str
    qty: int = pydantic.Field(default=1, gt=0)


class Order(pydantic.BaseModel):
    """An order placed in the shop."""

    order_id: int
    items: list[Item]
    placed_at: datetime.datetime


class Refund(msgspec.Struct):
    order_id: int
    amount: float


@dataclasses.dataclass
class Shipment:
    order_id: int
    carrier: str


app = conveyor.App("shop")


@app.handler("orders", max_deliveries=5)
async def bill(order: Order) -> None:
    """Bill an order: `order` is an Order, validated."""
    print(f"bill order {order.order_id}: {sum(i.qty for i in order.items)} items", order.placed_at)


@app.handler("refunds")
async def refund(refund: Refund) -> None:
    print(f"refund {refund.amount:.2f} on order {refund.order_id}")


@app.handler("shipments")
async def ship(shipment: Shipment) -> None:
    print(f"ship order {shipment.order_id} with {shipment.carrier}")


async def main() -> None:
    async with conveyor.connect("memory://typed") as backend:
        placed = datetime.datetime(2026, 11, 28, 9, 30, tzinfo=datetime.timezone.utc)
        await backend.publish("orders", Order(order_id=1, items=[Item(sku="A")], placed_at=placed))
        await backend.publish("orders", {"order_id": "two", "items": [{"sku": "B", "qty": 0}]})
        await backend.publish("refunds", Refund(order_id=1, amount=9.5))
        await backend.publish("shipments", Shipment(order_id=1, carrier="ups"))
        for processor in app.processors(backend, consumer="worker-1"):
            async with processor:
                await run_until_idle(processor, raise_errors=False)
        for letter in await dead_letters(backend, "orders"):
            print(f"dead letter after {letter['delivery_count']} delivery: {letter['error']}")


if __name__ == "__main__":
    asyncio.run(main())
