"""`Parts`: the pieces one processor is built from, wired to one another once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from conveyor.handlers import message_style
from conveyor.middleware import HandlerContext, compose_handler
from conveyor.protocol import StreamBackend
from conveyor.stats import ProcessorStats

from .acker import Acker
from .calls import BrokerCalls
from .crew import Switch
from .deadletters import DeadLetters
from .keeper import Keeper
from .ledger import Ledger
from .options import ErrorHook, ProcessorOptions
from .reader import Reader
from .retries import RetryStrategy, retry_strategy
from .worker import Worker

__all__ = ["Parts"]


@dataclass(frozen=True)
class Parts:
    """A processor's parts (see the package docstring for what each does)."""

    calls: BrokerCalls
    ledger: Ledger
    acker: Acker
    retries: RetryStrategy
    dead_letters: DeadLetters
    reader: Reader
    keeper: Keeper
    stats: ProcessorStats
    running: Switch

    @classmethod
    def assemble(
        cls,
        backend: StreamBackend,
        names: tuple[str, str, str],
        options: ProcessorOptions,
        stats: ProcessorStats,
        running: Switch,
    ) -> Parts:
        capabilities = backend.capabilities
        calls = BrokerCalls(backend, *names, options, stats)
        ledger = Ledger(max(options.batch_count, options.concurrency) * 2, options.batch_count)
        return cls(
            calls=calls,
            ledger=ledger,
            acker=Acker(calls, ledger, stats),
            retries=retry_strategy(capabilities, calls, ledger, options.clock),
            dead_letters=DeadLetters(calls, ledger, stats, running),
            reader=Reader(calls, ledger, capabilities, running),
            keeper=Keeper(
                calls, ledger, stats, claims=capabilities.claim == "engine", running=running
            ),
            stats=stats,
            running=running,
        )

    def worker(
        self,
        handler: Callable[[Any], Awaitable[Any]],
        takes_message: bool,
        hook: Callable[[], ErrorHook | None],
    ) -> Worker:
        """The handler loop for `handler`, shared by the processor's worker tasks.

        With middleware, `handler` is wrapped in their chain here, once per start (and
        each middleware is bound to this processor); without, it is called directly.
        """
        middleware = self.calls.options.middleware
        if middleware:
            core = message_style(handler, takes_message)
            chain = compose_handler(middleware, core, self.context())
            if chain is not core:  # some middleware wrap handling (not only publishing)
                handler, takes_message = chain, True
        return Worker(
            handler,
            takes_message,
            ledger=self.ledger,
            acker=self.acker,
            retries=self.retries,
            dead_letters=self.dead_letters,
            stats=self.stats,
            options=self.calls.options,
            running=self.running,
            hook=hook,
        )

    def context(self) -> HandlerContext:
        """What middleware learn of this processor."""
        calls, options = self.calls, self.calls.options
        return HandlerContext(
            stream=calls.stream,
            group=calls.group,
            consumer=calls.consumer,
            system=calls.backend.capabilities.name,
            max_deliveries=options.max_deliveries,
            dead_letter_stream=options.dead_letter_stream_of(calls.stream),
            backend=calls.backend,
            stats=self.stats,
            clock=options.clock,
        )
