"""`ErrorMap`: one table per backend that turns its client's exceptions into conveyor's.

httpx's ``map_httpcore_exceptions`` is the model: a table, one context manager, the same
name in every backend. Each backend's ``errors`` module defines ``ERRORS = ErrorMap(...)``
and wraps every broker call in ``with ERRORS.mapping("XADD on 'orders'"):``. Rules match
by exception class and/or by a code the table extracts (a Redis reply token, a JetStream
``err_code``), never by searching message text. Every rule carries an example exception,
so one shared test checks every table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from conveyor.errors import BackendClosedError, BackendError, ConveyorError

__all__ = ["ErrorMap", "Rule"]


def _no_code(exc: BaseException) -> object:
    return None


@dataclass(frozen=True)
class Rule:
    """One row: exceptions it matches and the conveyor error they become.

    Attributes:
        error: The `ConveyorError` subclass raised.
        types: Client exception classes matched (empty: any).
        codes: Codes matched, as the table's ``code_of`` reads them (empty: any).
        message: Replaces the client's text in the message (for errors whose text
            could hold credentials, or that need a hint); may use ``{code}``.
        example: Builds a client exception this rule matches (for the shared test).
    """

    error: type[ConveyorError]
    types: tuple[type[BaseException], ...] = ()
    codes: frozenset[object] = frozenset()
    message: str = ""
    example: Callable[[], BaseException] | None = None

    def matches(self, exc: BaseException, code: object) -> bool:
        if self.types and not isinstance(exc, self.types):
            return False
        return not self.codes or code in self.codes


class ErrorMap:
    """A backend's exception table.

    Args:
        backend: Backend name, for messages.
        catch: The client exception classes `mapping` intercepts.
        rules: Rows, first match wins; no match gives a `BackendError`.
        code_of: Reads a matching code off an exception (default: none).
    """

    def __init__(
        self,
        backend: str,
        catch: tuple[type[BaseException], ...],
        rules: Sequence[Rule],
        *,
        code_of: Callable[[BaseException], object] = _no_code,
    ) -> None:
        self.backend = backend
        self.catch = catch
        self.rules = tuple(rules)
        self.code_of = code_of

    def __repr__(self) -> str:
        return f"<ErrorMap {self.backend} ({len(self.rules)} rules)>"

    def translate(self, exc: BaseException, action: str) -> ConveyorError:
        """The conveyor error for `exc`, raised while doing `action` (which must not hold
        credentials); a `ConveyorError` is returned as it is."""
        if isinstance(exc, ConveyorError):
            return exc
        code = self.code_of(exc)
        for rule in self.rules:
            if rule.matches(exc, code):
                detail = rule.message.format(code=code) if rule.message else _text(exc)
                return rule.error(f"{action}: {detail}")
        return BackendError(f"{action}: {_text(exc)}")

    @contextmanager
    def mapping(self, action: str, *, closed: Callable[[], bool] | None = None) -> Iterator[None]:
        """Re-raise client exceptions inside the block as conveyor errors.

        `closed` tells whether the caller was closed meanwhile: then any client error is
        a `BackendClosedError` (closing cut the call).
        """
        try:
            yield
        except ConveyorError:
            raise
        except asyncio.CancelledError:
            raise
        except self.catch as exc:
            if closed is not None and closed():
                raise BackendClosedError(f"{action}: closed during the call") from exc
            raise self.translate(exc, action) from exc


def _text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
