"""The middleware interface: composition order (App, then handler/processor, then the
handler; publishing: in the order added), what a middleware sees and may change, that the
chain is composed once per start, and that a processor without middleware calls its
handler directly."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest

import conveyor
from conveyor import App, Message, Middleware, StreamProcessor
from conveyor.errors import ConfigurationError, InvalidHeaderError
from conveyor.middleware import CallNext, HandlerContext, PublishNext, PublishRequest
from conveyor.testing import dead_letters, run_until_idle
from conveyor_memory import MemoryBackend


class Recorder(Middleware):
    """Appends ``name>`` before and ``<name`` after the rest of each chain."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.bound: list[HandlerContext] = []

    def bind(self, context: HandlerContext) -> None:
        self.bound.append(context)

    async def handle(self, message: Message, call_next: CallNext, context: HandlerContext) -> None:
        self.log.append(f"{self.name}>")
        try:
            await call_next(message)
        finally:
            self.log.append(f"<{self.name}")

    async def publish(self, request: PublishRequest, call_next: PublishNext) -> list[str]:
        self.log.append(f"{self.name}>")
        headers = request.headers or [{} for _ in request.items]
        request.headers = [{**h, "x-path": h.get("x-path", "") + self.name} for h in headers]
        ids = await call_next(request)
        self.log.append(f"<{self.name}")
        return ids


async def test_app_middleware_run_outside_the_handlers_own(memory: MemoryBackend) -> None:
    log: list[str] = []
    outer, inner, own = Recorder("app1", log), Recorder("app2", log), Recorder("own", log)
    app = App("billing", middleware=[outer])
    app.add_middleware(inner)

    @app.handler("orders", middleware=[own])
    async def handle(payload: dict[str, Any]) -> None:
        log.append("handler")

    await memory.publish("orders", {"n": 1})
    (processor,) = app.processors(memory, consumer="w1")
    assert processor.options.middleware == (outer, inner, own)
    async with processor:
        await run_until_idle(processor)
    assert log == ["app1>", "app2>", "own>", "handler", "<own", "<app2", "<app1"]
    (context,) = own.bound
    assert outer.bound == inner.bound == [context]
    assert (context.stream, context.group, context.consumer) == ("orders", "billing", "w1")
    assert (context.system, context.max_deliveries) == ("memory", 5)
    assert context.dead_letter_stream == "orders.dead"
    assert context.backend is memory
    assert context.stats is processor.stats


async def test_the_chain_is_composed_at_each_start(memory: MemoryBackend) -> None:
    recorder = Recorder("m", [])
    processor = StreamProcessor(memory, "orders", "g", "c", middleware=[recorder])

    async def handle(payload: dict[str, Any]) -> None:
        pass

    processor.set_callback(handle)
    for _ in range(2):
        async with processor:
            pass
    first, second = recorder.bound
    assert first is not second  # one context per start
    assert first != second


async def test_without_middleware_the_handler_is_called_directly(memory: MemoryBackend) -> None:
    async def handle(payload: dict[str, Any]) -> None:
        pass

    class HandlesNothing(Middleware):
        async def publish(self, request: PublishRequest, call_next: PublishNext) -> list[str]:
            return await call_next(request)

    for middleware in ([], [HandlesNothing()]):
        processor = StreamProcessor(memory, "orders", "g", "c", middleware=middleware)
        processor.set_callback(handle)
        worker = processor._parts.worker(handle, False, lambda: None)
        assert worker.handler is handle  # nothing between the worker and the handler


async def test_a_middleware_sees_failures_and_can_turn_them_into_success(
    memory: MemoryBackend,
) -> None:
    seen: list[tuple[str, int, str]] = []

    class Forgiving(Middleware):
        async def handle(
            self, message: Message, call_next: CallNext, context: HandlerContext
        ) -> None:
            try:
                await call_next(message)
            except ValueError as exc:
                outcome = context.failure_outcome(message)
                seen.append((str(exc), message.delivery_count, outcome))
                if message.data["n"] == 2:
                    return  # swallowed: counts as handled, acked
                raise

    async def handle(payload: dict[str, Any]) -> None:
        raise ValueError(f"no {payload['n']}")

    await memory.publish_many("orders", [{"n": 1}, {"n": 2}])
    processor = StreamProcessor(
        memory, "orders", "g", "c", max_deliveries=2, retry_delay=0, middleware=[Forgiving()]
    )
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, raise_errors=False)
    assert sorted(seen) == [("no 1", 1, "retry"), ("no 1", 2, "dead_letter"), ("no 2", 1, "retry")]
    assert processor.stats.handled == 1
    assert [d["original"] for d in await dead_letters(memory, "orders")] == [{"n": 1}]


async def test_a_middleware_may_build_its_step_once_with_wrap(memory: MemoryBackend) -> None:
    built: list[str] = []
    seen: list[str] = []

    class Counting(Middleware):
        def wrap(self, call_next: CallNext, context: HandlerContext) -> CallNext:
            built.append(context.consumer)
            prefix = f"{context.stream}/{context.consumer}"

            async def step(message: Message) -> None:
                seen.append(f"{prefix}:{message.data['n']}")
                await call_next(message)

            return step

    await memory.publish_many("orders", [{"n": 1}, {"n": 2}])
    processor = StreamProcessor(memory, "orders", "g", "c1", middleware=[Counting()])
    processor.set_callback(_noop)
    async with processor:
        await run_until_idle(processor)
    assert built == ["c1"]
    assert seen == ["orders/c1:1", "orders/c1:2"]


async def test_message_style_handlers_get_the_message_through_the_chain(
    memory: MemoryBackend,
) -> None:
    got: list[Message] = []

    async def handle(msg: Message) -> None:
        got.append(msg)

    await memory.publish("orders", {"n": 1}, headers={"x-a": "1"})
    processor = StreamProcessor(memory, "orders", "g", "c", middleware=[Recorder("m", [])])
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor)
    assert [(m.data, m.headers) for m in got] == [({"n": 1}, {"x-a": "1"})]


async def test_publish_middleware_run_in_the_order_added(memory: MemoryBackend) -> None:
    log: list[str] = []
    first, second = Recorder("a", log), Recorder("b", log)
    memory.add_middleware(first)
    memory.add_middleware(second)
    assert list(memory.middleware) == [first, second]
    await memory.publish("orders", {"n": 1})
    await memory.publish_many("orders", [{"n": 2}, {"n": 3}], headers=[{"x-path": "z"}, None])
    assert log == ["a>", "b>", "<b", "<a"] * 2
    entries = await memory.peek("orders", count=3)
    assert [m.headers["x-path"] for m in entries] == ["ab", "zab", "ab"]
    memory.remove_middleware(first)
    memory.remove_middleware(first)  # not there: a no-op
    assert list(memory.middleware) == [second]


async def test_headers_a_publish_middleware_adds_are_checked(memory: MemoryBackend) -> None:
    class Reserved(Middleware):
        async def publish(self, request: PublishRequest, call_next: PublishNext) -> list[str]:
            request.set_header("conveyor-mine", "1")
            return await call_next(request)

    memory.add_middleware(Reserved())
    with pytest.raises(InvalidHeaderError, match="reserved"):
        await memory.publish("orders", {"n": 1})
    assert await memory.peek("orders", count=1) == []


async def test_a_running_app_wraps_the_publishes_of_its_backend(memory: MemoryBackend) -> None:
    log: list[str] = []
    recorder = Recorder("app", log)
    app = App("billing", middleware=[recorder])
    handled = asyncio.Event()

    @app.handler("orders")
    async def handle(payload: dict[str, Any]) -> None:
        await memory.publish("invoices", {"order": payload["n"]})
        handled.set()

    await memory.publish("orders", {"n": 1})  # before the app runs: not wrapped
    stop = asyncio.Event()
    running = asyncio.ensure_future(app.run(memory, stop=stop))
    await asyncio.wait_for(handled.wait(), 10)
    assert list(memory.middleware) == [recorder]
    stop.set()
    await running
    assert list(memory.middleware) == []  # removed when the app stopped
    (invoice,) = await memory.peek("invoices", count=1)
    assert invoice.headers == {"x-path": "app"}
    assert log == ["app>", "app>", "<app", "<app"]  # handling, and the publish inside it


@pytest.mark.parametrize("bad", [[object()], Middleware(), "m", None])
def test_things_that_are_not_middleware_are_refused(memory: MemoryBackend, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="Middleware"):
        StreamProcessor(memory, "orders", "g", "c", middleware=bad)
    with pytest.raises(TypeError, match="Middleware"):
        App("a", middleware=bad)
    with pytest.raises(ConfigurationError, match="Middleware"):
        App("a").add_handler("orders", _noop, middleware=bad)


async def _noop(payload: dict[str, Any]) -> None:
    pass


def test_middleware_is_public() -> None:
    assert conveyor.Middleware is Middleware
    assert conveyor.ProcessorOptions().middleware == ()


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            "conveyor.middleware",
            [
                "CallNext",
                "HandlerContext",
                "Middleware",
                "Outcome",
                "PublishNext",
                "PublishRequest",
                "check_middleware",
                "compose_handler",
                "compose_publish",
            ],
        ),
        (
            "conveyor.logs",
            [
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
            ],
        ),
        ("conveyor.otel", ["TracingMiddleware", "extract_context", "inject_context"]),
        (
            "conveyor.prometheus",
            ["DURATION_BUCKETS", "LATENCY_BUCKETS", "MetricsServer", "PrometheusMiddleware"],
        ),
    ],
)
def test_observability_modules_export_exactly_this(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(names)
    for name in names:
        assert getattr(imported, name) is not None


async def test_connect_adds_publish_middleware() -> None:
    log: list[str] = []
    recorder = Recorder("c", log)
    async with conveyor.connect("memory://connect-middleware", middleware=[recorder]) as backend:
        assert isinstance(backend, MemoryBackend)
        assert list(backend.middleware) == [recorder]
        await backend.publish("orders", {"n": 1})
    assert log == ["c>", "<c"]
    with pytest.raises(TypeError, match="Middleware"):
        conveyor.connect("memory://x", middleware=[object()])
