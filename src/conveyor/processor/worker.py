"""`Worker`: takes messages from the inbox and runs the handler — the hot path, kept flat.

A handler that returns queues its message for the acker. A handler that raises is
reported (log and ``on_error``; a hook that raises is logged, never fatal), then the
message is retried after its backoff or, at ``max_deliveries``, dead-lettered with its
traceback. The last failure is logged with its traceback, earlier ones in one line (with
the traceback when DEBUG is on). An undecodable message is dead-lettered at once, and so is
one whose payload fails a typed handler's validation (`PayloadValidationError`: retrying
cannot fix it). Cancellation never acknowledges.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor.backoff import backoff_delay
from conveyor.errors import PayloadValidationError
from conveyor.logs import format_traceback
from conveyor.message import Message
from conveyor.stats import ProcessorStats

from .acker import Acker
from .crew import Switch
from .deadletters import DeadLetters
from .ledger import Ledger
from .options import ErrorHook, ProcessorOptions
from .retries import RetryStrategy

__all__ = ["Worker"]

log = logging.getLogger("conveyor.processor")


class Worker:
    """The handler loop shared by every worker task of a processor."""

    def __init__(
        self,
        handler: Callable[[Any], Awaitable[Any]],
        takes_message: bool,
        *,
        ledger: Ledger,
        acker: Acker,
        retries: RetryStrategy,
        dead_letters: DeadLetters,
        stats: ProcessorStats,
        options: ProcessorOptions,
        running: Switch,
        hook: Callable[[], ErrorHook | None],
    ) -> None:
        self.handler = handler
        self.takes_message = takes_message
        self.ledger = ledger
        self.acker = acker
        self.retries = retries
        self.dead_letters = dead_letters
        self.stats = stats
        self.options = options
        self.running = running
        self.hook = hook

    async def run(self) -> None:
        ledger = self.ledger
        inbox, ready, room = ledger.inbox, ledger.ready, ledger.room
        refill_at = ledger.refill_at
        handler, takes_message = self.handler, self.takes_message
        acker, stats, running = self.acker, self.stats, self.running
        to_ack, batch = acker.pending, acker.batch_count
        while True:
            while not inbox:
                if not running.on:
                    return
                acker.ready.set()  # idle: flush what is done
                ready.clear()
                await ready.wait()
            if not running.on:
                return
            message = inbox.popleft()
            if len(inbox) <= refill_at:
                room.set()
            if message.decode_error is not None:
                await self.dead_letters.write(message, "DecodeError", message.decode_error)
                continue
            stats.in_flight += 1
            try:
                await (handler(message) if takes_message else handler(message.data))
            except asyncio.CancelledError:
                raise  # shutdown/cancellation never acknowledges an unfinished message
            except Exception as exc:  # noqa: BLE001 - a handler failure is data, not a crash
                stats.failed += 1
                self._report(message, exc)
                await self._failed(message, exc)
            else:
                stats.handled += 1
                to_ack.append(message)
                if len(to_ack) >= batch:
                    acker.ready.set()
            finally:
                stats.in_flight -= 1

    def _report(self, message: Message, exc: BaseException) -> None:
        if isinstance(exc, PayloadValidationError):  # the dead-letter line says it all
            log.debug(
                "payload of %s %s is invalid (delivery %d): %s",
                message.stream,
                message.id,
                message.delivery_count,
                exc,
                extra=self.dead_letters.log_fields(message),
            )
        else:
            self._report_failure(message, exc)
        hook = self.hook()
        if hook is None:
            return
        try:
            hook(message, exc)
        except Exception:
            log.exception("on_error hook %r raised; the processor goes on", hook)

    def _report_failure(self, message: Message, exc: BaseException) -> None:
        last = message.delivery_count >= self.options.max_deliveries
        log.log(
            logging.ERROR if last else logging.WARNING,
            "handler failed for %s %s (delivery %d/%d%s): %s: %s",
            message.stream,
            message.id,
            message.delivery_count,
            self.options.max_deliveries,
            ", the last" if last else "",
            type(exc).__name__,
            exc,
            exc_info=exc if last or log.isEnabledFor(logging.DEBUG) else None,
            extra=self.dead_letters.log_fields(message),
        )

    async def _failed(self, message: Message, exc: BaseException) -> None:
        options = self.options
        if isinstance(exc, PayloadValidationError):  # at once, with the errors as the text
            await self.dead_letters.write(message, type(exc).__name__, str(exc))
            return
        if message.delivery_count >= options.max_deliveries:
            trace = format_traceback(exc)
            await self.dead_letters.write(message, type(exc).__name__, str(exc), trace)
            return
        self.stats.retried += 1
        delay = backoff_delay(message.delivery_count, options.retry_delay, options.max_retry_delay)
        await self.retries.schedule(message, delay)
