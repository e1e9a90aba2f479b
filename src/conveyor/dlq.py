"""Dead letters as a tool: list, show, requeue and purge them, on every backend.

```python
box = conveyor.DeadLetters(backend, "orders")          # reads "orders.dead"
for letter in await box.list(error_type="ValueError"):
    print(letter.id, letter.error, letter.age())
await box.requeue([letter.id])                          # back to "orders", then removed
await box.purge()                                       # every dead letter, gone
```

A requeued message goes back to its source stream with its original payload and headers
plus ``conveyor-dead-letter-id`` naming the dead letter it came from; only then is the
dead letter removed, so a crash between the two steps duplicates a message and never loses
one. Removing is deleting the entry where the broker can (Redis, NATS, SQLite, memory); on
Kafka, which cannot delete single records, the ids go to a ``<dead-letter stream>.done``
stream that `list` leaves out. A dead letter whose original could not be kept (an
undecodable entry, or a minimal record of a message too large for the dead-letter stream)
cannot be requeued: `requeue` says so and leaves it.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.base import BaseBackend, check_name
from conveyor.errors import ConfigurationError
from conveyor.headers import check_headers
from conveyor.message import Message
from conveyor.processor.options import dead_letter_stream_for

__all__ = ["DEAD_LETTER_ID_HEADER", "DeadLetter", "DeadLetters", "RequeueResult"]

#: Header a requeued message carries: the id of the dead letter it came from.
DEAD_LETTER_ID_HEADER = "conveyor-dead-letter-id"

_PAGE = 200


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter record (see docs/concepts.md for its fields)."""

    id: str
    record: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def error_type(self) -> str:
        return str(self.record.get("error_type", ""))

    @property
    def error(self) -> str:
        return str(self.record.get("error", ""))

    @property
    def traceback(self) -> str | None:
        found = self.record.get("traceback")
        return None if found is None else str(found)

    @property
    def delivery_count(self) -> int:
        return int(self.record.get("delivery_count") or 0)

    @property
    def original(self) -> dict[str, Any] | None:
        """The original payload, or None when only an excerpt was kept."""
        original = self.record.get("original")
        return original if isinstance(original, dict) else None

    @property
    def original_id(self) -> str:
        return str(self.record.get("original_id", ""))

    @property
    def stream(self) -> str:
        """The stream the message came from."""
        return str(self.record.get("stream", ""))

    @property
    def group(self) -> str:
        return str(self.record.get("group", ""))

    @property
    def dead_lettered_at(self) -> float | None:
        at = self.record.get("dead_lettered_at")
        return float(at) if isinstance(at, (int, float)) else None

    def age(self, now: float | None = None) -> float | None:
        """Seconds since it was dead-lettered (None when the record does not say)."""
        at = self.dead_lettered_at
        return None if at is None else max(0.0, (time.time() if now is None else now) - at)


@dataclass(frozen=True)
class RequeueResult:
    """What `DeadLetters.requeue` did: dead id → new id, and what it left (and why)."""

    requeued: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


class DeadLetters:
    """The dead letters of `stream` on `backend` (a `conveyor.base.BaseBackend`).

    Args:
        backend: An open backend (``conveyor.connect(...)``).
        stream: The source stream; its dead letters live in `dead_letter_stream`.
        dead_letter_stream: Default ``<stream>.dead`` (as `StreamProcessor`'s default).

    Raises:
        ConfigurationError: `backend` is not a `BaseBackend` (the tools need its
            `range` and `delete`), or `stream` is empty.
    """

    def __init__(
        self, backend: object, stream: str, *, dead_letter_stream: str | None = None
    ) -> None:
        if not isinstance(backend, BaseBackend):
            raise ConfigurationError(
                f"{backend!r} is not a conveyor backend with range() and delete()"
            )
        self.backend = backend
        self.stream = check_name("stream name", stream)
        self.dead_letter_stream = dead_letter_stream or dead_letter_stream_for(stream)
        self.done_stream = f"{self.dead_letter_stream}.done"

    def __repr__(self) -> str:
        return f"<DeadLetters {self.dead_letter_stream!r} on {self.backend!r}>"

    # -- reading -------------------------------------------------------------------------

    async def _done(self) -> set[str]:
        """Ids marked done (Kafka, where records cannot be deleted)."""
        done: set[str] = set()
        after: str | None = None
        while True:
            page = await self.backend.range(self.done_stream, after=after, count=_PAGE)
            if not page:
                return done
            done.update(str(m.data.get("id")) for m in page)
            after = page[-1].id

    async def list(
        self,
        *,
        after: str | None = None,
        limit: int = 50,
        error_type: str | None = None,
        older_than: float | None = None,
        newer_than: float | None = None,
        now: float | None = None,
    ) -> builtins.list[DeadLetter]:
        """Dead letters, oldest first: up to `limit` after id `after` (paging), with
        `error_type` and, in seconds of age, older than / newer than the bounds."""
        if limit < 1:
            raise ConfigurationError(f"limit must be >= 1, got {limit!r}")
        done = await self._done()
        out: builtins.list[DeadLetter] = []
        cursor = after
        while len(out) < limit:
            page = await self.backend.range(self.dead_letter_stream, after=cursor, count=_PAGE)
            if not page:
                break
            for message in page:
                letter = _letter(message)
                if letter.id in done or not _matches(
                    letter, error_type, older_than, newer_than, now
                ):
                    continue
                out.append(letter)
                if len(out) >= limit:
                    break
            cursor = page[-1].id
        return out

    async def all(self, **filters: Any) -> builtins.list[DeadLetter]:
        """Every dead letter that matches `filters` (those of `list`)."""
        out: builtins.list[DeadLetter] = []
        after: str | None = None
        while True:
            page = await self.list(after=after, limit=_PAGE, **filters)
            out += page
            if len(page) < _PAGE:
                return out
            after = page[-1].id

    async def get(self, dead_id: str) -> DeadLetter | None:
        """One dead letter by id, or None."""
        for letter in await self.all():
            if letter.id == dead_id:
                return letter
        return None

    async def count(self) -> int:
        return len(await self.all())

    # -- acting ----------------------------------------------------------------------------

    async def requeue(self, ids: Sequence[str] | None = None) -> RequeueResult:
        """Publish the dead letters `ids` (every one when None) back to their source
        stream, then remove them. A crash between the two steps leaves a duplicate."""
        letters = await self._select(ids)
        result = RequeueResult()
        for letter in letters:
            original = letter.original
            if original is None:
                result.skipped[letter.id] = (
                    "only an excerpt of the original was kept (undecodable or too large)"
                )
                continue
            headers = check_headers(
                {**letter.headers, DEAD_LETTER_ID_HEADER: letter.id}, reserved=True
            )
            (new_id,) = await self.backend._publish_many(
                letter.stream or self.stream, [original], [headers]
            )
            await self._remove([letter.id])
            result.requeued[letter.id] = new_id
        for missing in set(ids or ()) - {letter.id for letter in letters}:
            result.skipped[missing] = "no such dead letter"
        return result

    async def purge(self, ids: Sequence[str] | None = None) -> int:
        """Remove the dead letters `ids` (every one when None); how many were removed."""
        letters = await self._select(ids)
        await self._remove([letter.id for letter in letters])
        return len(letters)

    async def _select(self, ids: Sequence[str] | None) -> builtins.list[DeadLetter]:
        letters = await self.all()
        if ids is None:
            return letters
        wanted = set(ids)
        return [letter for letter in letters if letter.id in wanted]

    async def _remove(self, ids: builtins.list[str]) -> None:
        if not ids:
            return
        try:
            await self.backend.delete(self.dead_letter_stream, ids)
        except NotImplementedError:  # Kafka: mark them done instead
            await self.backend.publish_many(self.done_stream, [{"id": i} for i in ids])


def _letter(message: Message) -> DeadLetter:
    return DeadLetter(message.id, message.data, dict(message.headers))


def _matches(
    letter: DeadLetter,
    error_type: str | None,
    older_than: float | None,
    newer_than: float | None,
    now: float | None,
) -> bool:
    if error_type is not None and letter.error_type != error_type:
        return False
    age = letter.age(now)
    if older_than is not None and (age is None or age < older_than):
        return False
    return newer_than is None or (age is not None and age <= newer_than)
