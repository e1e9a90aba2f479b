"""Logs people can use: one record per line, with the message it is about.

* `configure_logging` sets up the root logger in one of three formats: ``json`` (one JSON
  object per line), ``text`` (plain lines, what a file or a log collector wants) or
  ``rich`` (colours and wrapping, for a terminal); ``auto`` picks ``rich`` when the stream
  is a terminal and ``text`` otherwise. ``conveyor run --log-format`` (or
  ``CONVEYOR_LOG_FORMAT``) chooses it.
* The engine's records about a message carry its fields (`FIELDS`: stream, group,
  consumer, message id, delivery count, trace id) as record attributes; with
  `MessageLogContext` installed, so do the records a handler logs while it runs.
* Both formatters add those fields; a record with an exception carries its traceback
  (in ``json``, as the ``exception`` field of the same line).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback
from collections.abc import Mapping
from typing import IO, Any, Literal

from conveyor.errors import ConfigurationError
from conveyor.message import Message
from conveyor.middleware import CallNext, HandlerContext, Middleware

__all__ = [
    "FIELDS",
    "LOG_FORMATS",
    "MAX_TRACEBACK_CHARS",
    "JsonFormatter",
    "LogFormat",
    "MessageLogContext",
    "TextFormatter",
    "configure_logging",
    "format_traceback",
    "message_fields",
    "trace_id_of",
]

LogFormat = Literal["auto", "text", "json", "rich"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "text", "json", "rich")

#: The message fields a record may carry, in the order they are shown.
FIELDS = ("stream", "group", "consumer", "message_id", "delivery_count", "trace_id")

#: Longest traceback text kept in a dead-letter record (its end: the error itself).
MAX_TRACEBACK_CHARS = 8192

_current: contextvars.ContextVar[tuple[HandlerContext, Message] | None] = contextvars.ContextVar(
    "conveyor_message", default=None
)


def trace_id_of(headers: Mapping[str, str]) -> str | None:
    """The trace id (32 hex digits) of a W3C ``traceparent`` header, if valid."""
    value = headers.get("traceparent")
    if not value:
        return None
    parts = value.split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1].lower()


def message_fields(message: Message, group: str, consumer: str) -> dict[str, Any]:
    """The `FIELDS` of a record about `message` (for ``extra=``)."""
    return {
        "stream": message.stream,
        "group": group,
        "consumer": consumer,
        "message_id": message.id,
        "delivery_count": message.delivery_count,
        "trace_id": trace_id_of(message.headers),
    }


def format_traceback(exc: BaseException, limit: int = MAX_TRACEBACK_CHARS) -> str:
    """`exc`'s traceback as text (its causes included), cut to its last `limit` chars."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(text) > limit:
        text = "...\n" + text[-limit:]
    return text


class MessageLogContext(Middleware):
    """Middleware: records logged while a handler runs carry its message's `FIELDS`."""

    async def handle(self, message: Message, call_next: CallNext, context: HandlerContext) -> None:
        token = _current.set((context, message))
        try:
            await call_next(message)
        finally:
            _current.reset(token)


def _current_span_ids() -> tuple[str | None, str | None]:
    """Trace and span id of the current OpenTelemetry span (only if it is in use)."""
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:
        return None, None
    context = otel.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out = {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}
    current = _current.get()
    if current is not None and "message_id" not in out:
        context, message = current
        out = message_fields(message, context.group, context.consumer)
    trace_id, span_id = _current_span_ids()
    if trace_id is not None and out.get("trace_id") in (None, trace_id):
        out["trace_id"] = trace_id
        out["span_id"] = span_id
    return {k: v for k, v in out.items() if v is not None}


def _timestamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time``, ``level``, ``logger``,
    ``message``, the message `FIELDS` it has, and ``exception`` (the traceback text)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(_fields(record))
        if record.exc_info and record.exc_info[1] is not None:
            out["exc_type"] = type(record.exc_info[1]).__name__
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``<UTC time> <LEVEL> <logger>: <message> [field=value ...]`` on one line (line
    breaks inside the message are escaped); a traceback follows on the next lines."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", "\\n")
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {message}"
        fields = _fields(record)
        if fields:
            line += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def resolve_format(fmt: LogFormat, stream: IO[str]) -> LogFormat:
    """``auto`` → ``rich`` on a terminal, ``text`` otherwise; others as given."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "rich" if isatty is not None and isatty() else "text"


def configure_logging(
    level: int | str = logging.INFO,
    fmt: LogFormat = "auto",
    stream: IO[str] | None = None,
    *,
    force: bool = False,
) -> LogFormat:
    """Send every record at `level` and above to `stream` (stderr) in format `fmt`;
    return the format chosen. Like `logging.basicConfig`, this does nothing to a root
    logger that already has handlers (someone else configured logging) unless `force`,
    which replaces them.

    Raises:
        ConfigurationError: an unknown format (a ValueError).
    """
    if fmt not in LOG_FORMATS:
        raise ConfigurationError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    target = stream if stream is not None else sys.stderr
    chosen = resolve_format(fmt, target)
    root = logging.getLogger()
    if root.handlers and not force:
        return chosen
    handler: logging.Handler
    if chosen == "rich":
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(file=target), show_path=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(target)
        handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return chosen
