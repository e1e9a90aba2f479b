"""Logs: a handler failure's traceback (at the last delivery, and at DEBUG on every one),
the dead letter's traceback, and the json/text/rich formats with the message fields."""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

import pytest

from conveyor import StreamProcessor
from conveyor.logs import (
    JsonFormatter,
    MessageLogContext,
    TextFormatter,
    configure_logging,
    format_traceback,
    message_fields,
    trace_id_of,
)
from conveyor.message import Message
from conveyor.testing import dead_letters, run_until_idle
from conveyor_memory import MemoryBackend

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


async def fail_on_two(payload: dict[str, Any]) -> None:
    if payload["n"] == 2:
        raise ValueError("bad order")


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("handler failed")]


async def run_failing(memory: MemoryBackend, **options: Any) -> StreamProcessor:
    await memory.publish("orders", {"n": 2}, headers={"traceparent": TRACEPARENT})
    processor = StreamProcessor(memory, "orders", "g", "c1", retry_delay=0.0, **options)
    processor.set_callback(fail_on_two)
    async with processor:
        await run_until_idle(processor, raise_errors=False)
    return processor


async def test_the_last_failure_is_logged_with_its_traceback(
    memory: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "conveyor")
    await run_failing(memory, max_deliveries=3)
    first, second, last = failures(caplog)
    assert [r.levelno for r in (first, second, last)] == [logging.WARNING] * 2 + [logging.ERROR]
    assert first.exc_info is None  # one line each, unless DEBUG is on
    assert second.exc_info is None
    assert last.exc_info is not None
    assert "the last" in last.getMessage()
    assert "ValueError: bad order" in logging.Formatter().formatException(last.exc_info)
    fields = {name: getattr(last, name) for name in ("stream", "group", "consumer")}
    assert fields == {"stream": "orders", "group": "g", "consumer": "c1"}
    assert (last.delivery_count, last.trace_id) == (3, TRACE_ID)  # type: ignore[attr-defined]


async def test_at_debug_every_failure_has_its_traceback(
    memory: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "conveyor")
    await run_failing(memory, max_deliveries=2)
    assert all(r.exc_info is not None for r in failures(caplog))
    assert len(failures(caplog)) == 2


async def test_the_dead_letter_keeps_the_traceback(memory: MemoryBackend) -> None:
    await run_failing(memory, max_deliveries=1)
    (letter,) = await dead_letters(memory, "orders")
    assert letter["error_type"] == "ValueError"
    assert letter["traceback"].startswith("Traceback (most recent call last):")
    assert "in fail_on_two" in letter["traceback"]
    assert letter["traceback"].rstrip().endswith("ValueError: bad order")


def test_a_long_traceback_keeps_its_end() -> None:
    try:
        raise RuntimeError("x" * 20_000 + " the end")
    except RuntimeError as exc:
        text = format_traceback(exc, limit=1000)
    assert text.startswith("...\n")
    assert text.endswith(" the end\n")
    assert len(text) == 1004


def record(message: str = "hello", **extra: Any) -> logging.LogRecord:
    out = logging.LogRecord("conveyor.processor", logging.WARNING, __file__, 1, message, (), None)
    out.__dict__.update(extra)
    return out


def test_json_lines_carry_the_message_fields_and_the_traceback() -> None:
    message = Message("1-0", "orders", {}, 2, headers={"traceparent": TRACEPARENT})
    line = JsonFormatter().format(record("failed\nhere", **message_fields(message, "g", "c1")))
    assert "\n" not in line
    out = json.loads(line)
    assert out.pop("time").endswith("Z")
    assert out == {
        "level": "WARNING",
        "logger": "conveyor.processor",
        "message": "failed\nhere",
        "stream": "orders",
        "group": "g",
        "consumer": "c1",
        "message_id": "1-0",
        "delivery_count": 2,
        "trace_id": TRACE_ID,
    }
    try:
        raise KeyError("k")
    except KeyError:
        failed = record(exc_info=sys.exc_info())
    out = json.loads(JsonFormatter().format(failed))
    assert out["exc_type"] == "KeyError"
    assert out["exception"].startswith("Traceback")
    assert "message_id" not in out


def test_text_is_one_line_per_record_with_the_fields() -> None:
    message = Message("7", "orders", {}, 1)
    line = TextFormatter().format(record("a\nb", **message_fields(message, "g", "c1")))
    assert "\n" not in line
    assert line.endswith(
        "WARNING conveyor.processor: a\\nb [stream=orders group=g consumer=c1"
        " message_id=7 delivery_count=1]"
    )
    try:
        raise KeyError("k")
    except KeyError:
        failed = record("x", exc_info=sys.exc_info())
    head, *rest = TextFormatter().format(failed).splitlines()
    assert head.endswith("WARNING conveyor.processor: x")
    assert rest[0] == "Traceback (most recent call last):"


async def test_records_a_handler_logs_carry_its_message(memory: MemoryBackend) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    shop = logging.getLogger("shop")
    handler = Collect()
    shop.addHandler(handler)
    shop.setLevel(logging.INFO)

    async def handle(payload: dict[str, Any]) -> None:
        shop.info("charging %s", payload["n"])

    try:
        msg_id = await memory.publish("orders", {"n": 5}, headers={"traceparent": TRACEPARENT})
        processor = StreamProcessor(memory, "orders", "g", "c1", middleware=[MessageLogContext()])
        processor.set_callback(handle)
        async with processor:
            await run_until_idle(processor)
        shop.info("outside")
    finally:
        shop.removeHandler(handler)
    inside, outside = (json.loads(line) for line in lines)
    assert inside["message"] == "charging 5"
    assert (inside["message_id"], inside["stream"], inside["group"]) == (msg_id, "orders", "g")
    assert (inside["consumer"], inside["delivery_count"]) == ("c1", 1)
    assert inside["trace_id"] == TRACE_ID
    assert "message_id" not in outside


def test_the_current_span_gives_trace_and_span_ids() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        out = json.loads(JsonFormatter().format(record()))
    context = span.get_span_context()
    assert out["trace_id"] == f"{context.trace_id:032x}"
    assert out["span_id"] == f"{context.span_id:016x}"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (TRACEPARENT, TRACE_ID),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", None),
        ("00-xyz", None),
        ("", None),
    ],
)
def test_trace_id_of(header: str, expected: str | None) -> None:
    assert trace_id_of({"traceparent": header}) == expected
    assert trace_id_of({}) is None


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("fmt", "stream", "chosen"),
    [
        ("auto", io.StringIO(), "text"),
        ("auto", FakeTerminal(), "rich"),
        ("json", FakeTerminal(), "json"),
        ("text", FakeTerminal(), "text"),
        ("rich", io.StringIO(), "rich"),
    ],
)
def test_auto_is_rich_on_a_terminal_only(fmt: Any, stream: io.StringIO, chosen: str) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert configure_logging("INFO", fmt, stream, force=True) == chosen
        logging.getLogger("conveyor.test").warning("one\ntwo")
        written = stream.getvalue()
        if chosen == "json":
            assert json.loads(written)["message"] == "one\ntwo"
        elif chosen == "text":
            assert written.endswith("WARNING conveyor.test: one\\ntwo\n")
        else:
            assert "one" in written
        assert root.level == logging.INFO
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_configure_logging_leaves_a_configured_root_alone() -> None:
    root = logging.getLogger()
    assert root.handlers  # pytest's own
    before = root.handlers[:]
    assert configure_logging("DEBUG", "json", io.StringIO()) == "json"
    assert root.handlers == before
    with pytest.raises(ValueError, match="log format"):
        configure_logging("INFO", "xml")  # type: ignore[arg-type]
