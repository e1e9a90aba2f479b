"""The README's first app: a worker that prints every order it charges.

In one terminal, from this directory, start a worker (on ``sqlite:///conveyor.db``, a file
here, when no URL is given)::

    conveyor run billing:app

In another terminal, from the same directory, publish an order; the worker prints it::

    conveyor publish orders '{"type": "order.paid", "order_id": 7}'

tests/sqlite/test_sqlite_processes.py runs exactly this, in two processes.
"""

from typing import Any

import conveyor

app = conveyor.App("billing")


@app.handler("orders", concurrency=16, max_deliveries=5)
async def charge(payload: dict[str, Any]) -> None:
    print("charging order", payload["order_id"])
