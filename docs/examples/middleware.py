"""Writing middleware: one around handling (timing, and a header check), one around
publishing (stamping a header), registered on the app, on a handler and on the backend.

Run it: `.venv/bin/python docs/examples/middleware.py`
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import conveyor
from conveyor.middleware import CallNext, HandlerContext, PublishNext, PublishRequest


class Timing(conveyor.Middleware):
    """Prints how long each handler call took, and whether it raised."""

    async def handle(
        self, message: conveyor.Message, call_next: CallNext, context: HandlerContext
    ) -> None:
        started = time.perf_counter()
        outcome = "success"
        try:
            await call_next(message)  # the next middleware, at the end the handler
        except Exception as exc:
            outcome = context.failure_outcome(message, exc)  # "retry" or "dead_letter"
            raise
        finally:
            took = (time.perf_counter() - started) * 1000
            print(f"{context.stream}/{context.group} {message.data} {outcome} ({took:.0f} ms)")


class RequireTenant(conveyor.Middleware):
    """Refuses messages without an ``x-tenant`` header (they go to the dead letters)."""

    async def handle(
        self, message: conveyor.Message, call_next: CallNext, context: HandlerContext
    ) -> None:
        if "x-tenant" not in message.headers:
            raise PermissionError("no x-tenant header")
        await call_next(message)


class StampTenant(conveyor.Middleware):
    """Adds ``x-tenant`` to every message published through the backend."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    async def publish(self, request: PublishRequest, call_next: PublishNext) -> list[str]:
        request.set_header("x-tenant", self.tenant)
        return await call_next(request)  # the next middleware, at the end the broker


app = conveyor.App("billing", middleware=[Timing()])  # around every handler of the app
done = asyncio.Event()


@app.handler("orders", middleware=[RequireTenant()], max_deliveries=1)  # this handler only
async def charge(payload: dict[str, Any]) -> None:
    await asyncio.sleep(0.01)
    if payload["order_id"] == 2:
        done.set()


async def main() -> None:
    async with conveyor.connect("memory://middleware") as backend:
        await backend.publish("orders", {"order_id": 0})  # no tenant: refused, dead-lettered
        # a connection whose publishes all go through StampTenant
        async with conveyor.connect(
            "memory://middleware", middleware=[StampTenant("acme")]
        ) as shop:
            for order_id in (1, 2):
                await shop.publish("orders", {"order_id": order_id})
        stop = asyncio.Event()
        worker = asyncio.ensure_future(app.run(backend, consumer="worker-1", stop=stop))
        await asyncio.wait_for(done.wait(), 10)
        stop.set()
        await worker
        (letter,) = await backend.peek("orders.dead", count=10)
    print(f"dead letter: {letter.data['original']} {letter.data['error_type']}")


if __name__ == "__main__":
    asyncio.run(main())
