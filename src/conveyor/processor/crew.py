"""`Crew`: the tasks of one processor, by role, owned until they are cancelled and awaited."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

__all__ = ["Crew", "Switch"]

log = logging.getLogger("conveyor.processor")

#: Seconds a cancelled task may take to end before it is cancelled again.
_RECANCEL_AFTER = 1.0


class Switch:
    """Whether the processor is running, read by its parts on their hot paths."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = False


class Crew:
    """Named tasks: spawned by role, cancelled and awaited together, watched for an end."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def spawn(self, role: str, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks[role] = asyncio.get_running_loop().create_task(
            coro, name=f"{self.prefix}:{role}"
        )

    def roles(self, prefix: str) -> list[asyncio.Task[None]]:
        """The running tasks whose role starts with `prefix`."""
        return [task for role, task in self._tasks.items() if role.startswith(prefix)]

    async def cancel(self, roles: Iterable[str] | None = None) -> None:
        """Cancel the tasks of `roles` (every task when None) and wait for them to end.

        A task that goes on after its cancellation (a client library swallowed the
        `CancelledError`: nats-py's publish flush does) is cancelled again until it ends.
        """
        chosen = list(self._tasks) if roles is None else [r for r in roles if r in self._tasks]
        pending = {self._tasks.pop(role) for role in chosen}
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=_RECANCEL_AFTER)
            for task in pending:
                log.warning("%s went on after being cancelled; cancelling it again", task)

    async def wait(self, roles: Iterable[str], timeout: float) -> None:
        """Wait up to `timeout` seconds for the tasks of `roles` to end by themselves."""
        tasks = [self._tasks[role] for role in roles if role in self._tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def others(self, *keep: str) -> list[str]:
        """Every role but `keep`."""
        return [role for role in self._tasks if role not in keep]

    async def first_to_end(self) -> asyncio.Task[None]:
        """Wait until one task ends; return it."""
        tasks = list(self._tasks.values())
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done))
