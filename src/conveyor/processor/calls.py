"""`BrokerCalls`: the processor's session and its one policy for failed broker calls.

Every loop that talks to the broker reports a failure here: a vanished group is recreated
by opening a new session (once, however many loops saw it), anything else counts as a
reconnect and backs off with jitter on the injected clock. An outage is logged twice: one
line when the first call fails, one (with how long it lasted) when a call succeeds again;
``stats.outages`` and ``stats.outage_seconds`` count them.
"""

from __future__ import annotations

import asyncio
import logging
import time

from conveyor.backoff import backoff_delay
from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    GroupNotFoundError,
)
from conveyor.protocol import ConsumerSession, StartPosition, StreamBackend
from conveyor.stats import ProcessorStats

from .options import ProcessorOptions

__all__ = ["FAILED_CALL", "RECONNECT_CAP", "BrokerCalls"]

log = logging.getLogger("conveyor.processor")

#: Cap of the backoff between failed broker calls (seconds).
RECONNECT_CAP = 10.0

#: What a loop hands to `BrokerCalls.recover` (which re-raises what it cannot handle).
FAILED_CALL = (BackendError, BackendClosedError)


class BrokerCalls:
    """Owns the consumer session of one processor (see the module docstring)."""

    def __init__(
        self,
        backend: StreamBackend,
        stream: str,
        group: str,
        consumer: str,
        options: ProcessorOptions,
        stats: ProcessorStats,
    ) -> None:
        self.backend = backend
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.options = options
        self.stats = stats
        self._session: ConsumerSession | None = None
        self._reopening = asyncio.Lock()
        self._down_since: float | None = None  # real time of the first failed call

    @property
    def session(self) -> ConsumerSession:
        """The current session (replaced when the group had to be recreated)."""
        if self._session is None:
            raise RuntimeError("the processor is not running")
        return self._session

    async def _open_session(self, start: StartPosition) -> ConsumerSession:
        return await self.backend.open_consumer(
            self.stream,
            self.group,
            self.consumer,
            start=start,
            claim_idle=self.options.claim_idle,
            max_deliveries=self.options.max_deliveries,
        )

    async def open(self) -> None:
        """Open the session (creating the group), retrying an unreachable broker.

        Raises:
            BrokerUnavailableError: still unreachable after `connect_attempts`.
            ConveyorError: the broker refused the group (wrong type, conflicting config).
        """
        attempts = self.options.connect_attempts
        last: BrokerUnavailableError | None = None
        for attempt in range(1, attempts + 1):
            try:
                self._session = await self._open_session(self.options.start)
                return
            except BrokerUnavailableError as exc:
                last = exc
                if attempt < attempts:
                    delay = backoff_delay(attempt, 0.2, 5.0)
                    log.warning("broker unavailable (%s); retrying in %.2fs", exc, delay)
                    await self.options.clock.sleep(delay)
        raise BrokerUnavailableError(
            f"could not create group {self.group!r} on stream {self.stream!r}"
            f" after {attempts} attempts: {last}"
        ) from last

    async def close(self) -> None:
        """Close the session: the broker may hand its unfinished messages to others."""
        session, self._session = self._session, None
        if session is not None:
            try:
                await session.aclose()
            except BackendError as exc:
                log.warning("closing the session of %s/%s: %s", self.stream, self.group, exc)

    async def recover(
        self, exc: BackendError | BackendClosedError, attempt: int, failed: ConsumerSession
    ) -> None:
        """React to a failed call made on session `failed`: recreate a vanished group,
        else count a reconnect and back off.

        Raises:
            BackendClosedError: the session was closed by anyone but this policy (the
                backend was closed under the processor): the processor cannot go on.
        """
        if isinstance(exc, BackendClosedError):
            if failed is not self._session:
                return  # the group was recreated meanwhile: retry on the new session
            raise exc
        if isinstance(exc, GroupNotFoundError):
            try:
                await self._reopen(failed, exc)
                return
            except BackendError as again:
                exc = again
        self.stats.reconnects += 1
        delay = backoff_delay(attempt, 0.1, RECONNECT_CAP)
        if self._down_since is None:  # one line when the broker goes away...
            self._down_since = time.monotonic()
            self.stats.outages += 1
            log.warning(
                "lost the broker for %s/%s (%s: %s); retrying with backoff",
                self.stream,
                self.group,
                type(exc).__name__,
                exc,
            )
        else:
            log.debug("broker call failed again (%s); retrying in %.2fs", exc, delay)
        await self.options.clock.sleep(delay)

    def ok(self) -> None:
        """A broker call succeeded: log once that the broker is back (if it was gone)."""
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            self._down_since = None
            self.stats.outage_seconds += down
            log.warning("broker back for %s/%s after %.1f s", self.stream, self.group, down)

    async def _reopen(self, failed: ConsumerSession, exc: GroupNotFoundError) -> None:
        async with self._reopening:
            if self._session is not failed:
                return  # another loop reopened it already
            log.warning(
                "group %r on stream %r disappeared (%s): recreating it; entries pending in"
                " the old group are lost to it",
                self.group,
                self.stream,
                exc,
            )
            fresh = await self._open_session("earliest")
            self._session = fresh
        try:
            await failed.aclose()
        except BackendError as close_exc:
            log.debug("closing the vanished group's session: %s", close_exc)
