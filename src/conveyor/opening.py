"""`Opening`: the result of ``connect()`` and ``open_consumer()``, awaited or entered.

```python
backend = await conveyor.connect(url)           # caller closes it
async with conveyor.connect(url) as backend:    # closed on exit
    ...
```
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Closeable", "Opening"]


class Closeable(Protocol):
    async def aclose(self) -> None: ...


T = TypeVar("T", bound=Closeable)


class Opening(Generic[T]):
    """Opens a `T` with `opener` when awaited or entered; ``async with`` closes it on exit."""

    __slots__ = ("_describe", "_opened", "_opener")

    def __init__(self, opener: Callable[[], Awaitable[T]], describe: str = "") -> None:
        self._opener = opener
        self._describe = describe
        self._opened: T | None = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._open().__await__()

    async def _open(self) -> T:
        return await self._opener()

    async def __aenter__(self) -> T:
        self._opened = await self._opener()
        return self._opened

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            await opened.aclose()

    def __repr__(self) -> str:
        return f"<{self._describe}>" if self._describe else "<conveyor opening>"
