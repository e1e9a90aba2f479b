"""Removing the streams a tool created: what ``conveyor demo`` and ``conveyor bench`` do
when they finish, unless ``--keep``.

```python
created = await absent(backend, [stream, f"{stream}.dead"])  # before: what is new
...
removed = await remove_streams(backend, created)             # after
```
"""

from __future__ import annotations

from collections.abc import Iterable

from conveyor.protocol import StreamBackend

__all__ = ["absent", "remove_streams"]


async def absent(backend: StreamBackend, names: Iterable[str]) -> list[str]:
    """Those of `names` the broker does not hold now (by `streams()`); ``[]`` where the
    backend cannot list its streams, so that nothing that may exist is ever deleted."""
    wanted = list(names)
    listing = getattr(backend, "streams", None)
    if listing is None:
        return []
    try:
        present = {info.name for info in await listing()}
    except NotImplementedError:
        return []
    return [name for name in wanted if name not in present]


async def remove_streams(backend: StreamBackend, names: Iterable[str]) -> list[str]:
    """Delete each of `names` (with its groups) that exists; the names deleted.

    Raises:
        NotImplementedError: the backend cannot delete streams.
    """
    delete_stream = getattr(backend, "delete_stream", None)
    if delete_stream is None:
        raise NotImplementedError(f"{backend.capabilities.name} cannot delete streams")
    return [name for name in names if await delete_stream(name)]
