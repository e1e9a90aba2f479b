"""A first app: one handler, run on memory:// until its work is done.

Run it: `.venv/bin/python docs/examples/first_app.py`
(or as a worker: `.venv/bin/conveyor run first_app:app --url memory://` from docs/examples).
"""

from __future__ import annotations

import asyncio
from typing import Any

import conveyor

app = conveyor.App("billing")
charged: list[int] = []
all_charged = asyncio.Event()


@app.handler("orders", concurrency=4, max_deliveries=3, retry_delay=0.1)
async def charge(payload: dict[str, Any]) -> None:
    await asyncio.sleep(0.001)  # call the payment provider here
    charged.append(payload["order_id"])
    if len(charged) == 10:
        all_charged.set()


async def main() -> None:
    async with conveyor.connect("memory://first-app") as backend:
        orders = conveyor.Producer(backend, "orders")
        for order_id in range(10):
            await orders.add_event("order.paid", {"order_id": order_id, "amount": 9.5})
        stop = asyncio.Event()
        worker = asyncio.ensure_future(app.run(backend, consumer="worker-1", stop=stop))
        await asyncio.wait_for(all_charged.wait(), 10)
        stop.set()
        await worker
        info = await backend.group_info("orders", "billing")
    print(f"charged {sorted(charged)}; pending {info.pending}")


if __name__ == "__main__":
    asyncio.run(main())
