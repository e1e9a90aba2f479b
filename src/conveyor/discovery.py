"""`StreamInfo`: what `BaseBackend.streams()` tells about each stream on the broker.

```python
for info in await backend.streams():
    print(info.name, info.length, info.groups, info.oldest_age())
    if info.dead_letter_of is not None:   # "orders.dead" holds the dead letters of "orders"
        ...
```

Every backend lists the streams it can address under its own settings (key prefix, stream
and subject prefixes), as conveyor names; names the broker holds that conveyor could not
have written (another prefix, a foreign encoding) are left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEAD_SUFFIX", "StreamInfo", "dead_letter_source", "oldest_entry_at"]

#: What `StreamProcessor`'s default dead-letter stream adds to its source stream's name
#: (`conveyor.processor.dead_letter_stream_for`).
DEAD_SUFFIX = ".dead"


def dead_letter_source(stream: str) -> str | None:
    """The source stream whose default dead-letter stream is `stream` (``orders.dead`` →
    ``orders``), or None when `stream` is not named like one."""
    if stream.endswith(DEAD_SUFFIX) and len(stream) > len(DEAD_SUFFIX):
        return stream[: -len(DEAD_SUFFIX)]
    return None


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One stream as the broker lists it.

    Attributes:
        name: The conveyor stream name (un-escaped from the broker's name).
        length: Entries in the stream now, or None where the broker cannot say cheaply.
        groups: Names of its consumer groups, sorted (see each backend's page for which
            groups a broker lists).
        oldest_at: When the oldest entry still in the stream was published (seconds since
            the epoch), or None when the stream is empty or the broker cannot say cheaply.
    """

    name: str
    length: int | None
    groups: tuple[str, ...] = field(default_factory=tuple)
    oldest_at: float | None = None

    @property
    def dead_letter_of(self) -> str | None:
        """The source stream when this is a default dead-letter stream (``<stream>.dead``)."""
        return dead_letter_source(self.name)

    def oldest_age(self, now: float | None = None) -> float | None:
        """Seconds since the oldest entry was published (None when unknown)."""
        if self.oldest_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.oldest_at)


async def oldest_entry_at(backend: Any, stream: str) -> float | None:
    """When the oldest entry still in `stream` was published (seconds since the epoch):
    from `backend.streams()` where it says, else from the first entry
    ``backend.range(stream, count=1)`` returns; None when the stream is empty or missing,
    or the backend can do neither."""
    listing = getattr(backend, "streams", None)
    if listing is not None:
        try:
            found: StreamInfo | None = next((i for i in await listing() if i.name == stream), None)
        except NotImplementedError:
            found = None
        if found is not None and found.oldest_at is not None:
            return found.oldest_at
        if found is not None and found.length == 0:
            return None
    ranged = getattr(backend, "range", None)
    if ranged is None:
        return None
    try:
        first = await ranged(stream, count=1)
    except NotImplementedError:
        return None
    oldest: float | None = first[0].published_at if first else None
    return oldest
