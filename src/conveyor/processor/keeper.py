"""`Keeper`: every ``claim_idle / 3`` seconds, heartbeat the held messages and (where the
engine claims) take over messages of consumers that stopped heartbeating.

A processor that is stopping heartbeats what it still holds but claims nothing: claimed
messages would only sit pending under a consumer that is going away.
"""

from __future__ import annotations

import logging

from conveyor.stats import ProcessorStats

from .calls import FAILED_CALL, BrokerCalls
from .crew import Switch
from .ledger import Ledger

__all__ = ["Keeper"]

log = logging.getLogger("conveyor.processor")


class Keeper:
    """Heartbeats and claims (see the module docstring)."""

    def __init__(
        self,
        calls: BrokerCalls,
        ledger: Ledger,
        stats: ProcessorStats,
        *,
        claims: bool,
        running: Switch,
    ) -> None:
        self.calls = calls
        self.ledger = ledger
        self.stats = stats
        self.claims = claims
        self.running = running
        self.interval = calls.options.claim_idle / 3

    async def tick(self) -> None:
        """One heartbeat and claim round."""
        session = self.calls.session
        if self.ledger.held:
            await session.heartbeat(list(self.ledger.held.values()))
        if not (self.claims and self.running.on):
            return
        if len(self.ledger.inbox) >= self.ledger.prefetch:
            return
        options = self.calls.options
        claimed = await session.claim_stale(min_idle=options.claim_idle, count=options.batch_count)
        if claimed and self.running.on:
            self.stats.claimed += len(claimed)
            log.info("claimed %d stale message(s) on %s", len(claimed), self.calls.stream)
            self.ledger.admit(claimed)

    async def run(self) -> None:
        attempt = 0
        clock = self.calls.options.clock
        while True:
            session = self.calls.session
            try:
                await self.tick()
            except FAILED_CALL as exc:
                attempt += 1
                await self.calls.recover(exc, attempt, session)
                continue
            if attempt:
                attempt = 0
                self.calls.ok()
            await clock.sleep(self.interval)
