"""What the pages show, gathered through the backend API (never a broker client).

The `Catalog` holds the streams and groups the user named, those `BaseBackend.streams()`
discovered (refreshed on every `discover`), and the groups found in each stream's dead
letters. Dead-letter streams (``<stream>.dead``) are folded under their source stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from conveyor.base import BaseBackend
from conveyor.discovery import StreamInfo, dead_letter_source
from conveyor.dlq import DeadLetters
from conveyor.errors import ConveyorError, GroupNotFoundError
from conveyor.protocol import GroupInfo
from conveyor.ui.redaction import Scrubber
from conveyor.ui.sampler import Sampler

__all__ = ["DEAD_CAP", "Catalog", "GroupView", "StreamView", "discover", "gather_stream"]

#: Dead letters counted per stream on the overview; past it the page says "N+".
DEAD_CAP = 1000


class Catalog:
    """Streams and their groups: those named (in the order they became known), then
    those last discovered, by name."""

    def __init__(self, streams: tuple[str, ...], groups: tuple[tuple[str, str], ...]) -> None:
        self._groups: dict[str, dict[str, None]] = {}
        self._found: dict[str, StreamInfo] = {}
        #: Why the last discovery failed (None: it worked, or none ran yet).
        self.discovery_error: str | None = None
        for stream in streams:
            self.add(stream)
        for stream, group in groups:
            self.add(stream, group)

    def add(self, stream: str, group: str | None = None) -> None:
        groups = self._groups.setdefault(stream, {})
        if group:
            groups[group] = None

    def found(self, infos: list[StreamInfo]) -> None:
        """Replace the discovered streams with `infos`."""
        self._found = {info.name: info for info in infos}

    def info(self, stream: str) -> StreamInfo | None:
        """What the last discovery said about `stream`."""
        return self._found.get(stream)

    def streams(self) -> list[str]:
        """Named streams, then discovered ones; a dead-letter stream is left out when its
        source stream is shown (its count is on the source's card)."""
        names = dict.fromkeys([*self._groups, *sorted(self._found)])
        return [n for n in names if dead_letter_source(n) not in names]

    def groups(self, stream: str) -> list[str]:
        found = self._found.get(stream)
        named = self._groups.get(stream, {})
        return list(dict.fromkeys([*named, *(found.groups if found else ())]))

    def named(self, stream: str) -> bool:
        """True for a stream the user named (or one whose dead letters named a group)."""
        return stream in self._groups

    def __contains__(self, stream: object) -> bool:
        return stream in self._groups or stream in self._found


async def discover(backend: BaseBackend, catalog: Catalog, scrub: Scrubber) -> None:
    """Refresh `catalog`'s discovered streams; a backend that cannot list them leaves
    the catalog to the named streams, a broker error is kept in `discovery_error`."""
    try:
        catalog.found(await backend.streams())
    except NotImplementedError:
        catalog.discovery_error = None
    except ConveyorError as exc:
        catalog.discovery_error = scrub(f"{type(exc).__name__}: {exc}")
    else:
        catalog.discovery_error = None


@dataclass(frozen=True)
class GroupView:
    """One group as the pages show it."""

    stream: str
    group: str
    info: GroupInfo | None
    error: str | None = None
    rate: float | None = None


@dataclass(frozen=True)
class StreamView:
    """One stream as the pages show it."""

    name: str
    length: int | None
    oldest_age: float | None
    dead: int | None
    dead_capped: bool
    groups: list[GroupView] = field(default_factory=list)
    error: str | None = None


async def _group(
    backend: BaseBackend, stream: str, group: str, sampler: Sampler, scrub: Scrubber
) -> GroupView:
    try:
        info = await backend.group_info(stream, group)
    except GroupNotFoundError:
        return GroupView(stream, group, None, "no such group (yet)")
    except ConveyorError as exc:
        return GroupView(stream, group, None, scrub(f"{type(exc).__name__}: {exc}"))
    sampler.record(info)
    return GroupView(stream, group, info, rate=sampler.rate(stream, group))


async def _listed_groups(backend: BaseBackend, stream: str) -> list[str]:
    try:
        return await backend.groups(stream)
    except NotImplementedError:
        return []


async def _oldest_age(backend: BaseBackend, stream: str, now: float) -> float | None:
    try:
        first = await backend.range(stream, count=1)
    except NotImplementedError:
        return None
    if not first or first[0].published_at is None:
        return None
    return max(0.0, now - first[0].published_at)


async def gather_stream(
    backend: BaseBackend,
    stream: str,
    catalog: Catalog,
    sampler: Sampler,
    scrub: Scrubber,
) -> StreamView:
    """Length, oldest entry's age, dead-letter count and groups of `stream`; adds the
    groups named in its dead letters to `catalog`. Broker errors become the view's
    `error` (scrubbed of secrets), never an exception."""
    now = time.time()
    info = catalog.info(stream)
    try:
        letters = await DeadLetters(backend, stream).list(limit=DEAD_CAP + 1)
        named = dict.fromkeys(catalog.groups(stream))
        if stream not in catalog:  # opened from the box: ask for its groups alone
            named.update(dict.fromkeys(await _listed_groups(backend, stream)))
        for letter in letters:
            if letter.group and (letter.stream or stream) == stream:
                named[letter.group] = None
                if catalog.named(stream):  # a page asked about another stream: show, not keep
                    catalog.add(stream, letter.group)
        if info is not None and info.oldest_at is not None:
            oldest = info.oldest_age(now)
        else:
            oldest = await _oldest_age(backend, stream, now)
    except ConveyorError as exc:
        return StreamView(
            stream, None, None, None, False, [], scrub(f"{type(exc).__name__}: {exc}")
        )
    groups = [await _group(backend, stream, group, sampler, scrub) for group in named]
    length = info.length if info is not None else None
    if length is None:
        length = next((g.info.length for g in groups if g.info and g.info.length is not None), None)
    return StreamView(
        stream,
        length,
        oldest,
        min(len(letters), DEAD_CAP),
        len(letters) > DEAD_CAP,
        groups,
    )
