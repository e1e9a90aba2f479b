"""Dispatch by the payload's `type`, with a filter, through one processor."""

from __future__ import annotations

import asyncio
from typing import Any

import conveyor
from conveyor.testing import run_until_idle

router = conveyor.Router()
log: list[str] = []


@router.route("user.created")
async def welcome(payload: dict[str, Any]) -> None:
    log.append(f"welcome {payload['name']}")


@router.route("user.created", filter=lambda p: p.get("plan") == "pro")
async def assign_manager(payload: dict[str, Any]) -> None:
    log.append(f"account manager for {payload['name']}")


@router.route("user.deleted")
async def goodbye(msg: conveyor.Message) -> None:  # asks for the whole Message
    log.append(f"goodbye {msg.data['name']} (delivery {msg.delivery_count})")


async def main() -> None:
    async with conveyor.connect("memory://dispatch") as backend:
        users = conveyor.Producer(backend, "events:users")
        await users.add_event("user.created", {"name": "ada", "plan": "pro"})
        await users.add_event("user.created", {"name": "bob", "plan": "free"})
        await users.add_event("user.deleted", {"name": "bob"})
        processor = conveyor.StreamProcessor(backend, "events:users", "mailer", "mailer-1")
        processor.set_callback(router)
        async with processor:
            await run_until_idle(processor)
    print("\n".join(log))


if __name__ == "__main__":
    asyncio.run(main())
