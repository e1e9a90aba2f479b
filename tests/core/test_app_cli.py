"""App, CLI commands and the demo."""

from __future__ import annotations

import asyncio
import functools
import importlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import conveyor
from conveyor.app import App
from conveyor.cli import main
from conveyor.demo import run_demo
from conveyor.errors import ConfigurationError
from conveyor.naming import default_consumer_name
from conveyor.testing import run_until_idle, wait_until
from conveyor_memory import MemoryBackend

ROOT = Path(__file__).resolve().parents[2]


async def test_app_runs_every_handler_until_stopped(memory: MemoryBackend) -> None:
    app = App("shop")
    seen: dict[str, list[int]] = {"orders": [], "refunds": []}

    @app.handler("orders", concurrency=2)
    async def orders(payload: dict[str, Any]) -> None:
        seen["orders"].append(payload["n"])

    @app.handler("refunds", group="accounting")
    async def refunds(payload: dict[str, Any]) -> None:
        seen["refunds"].append(payload["n"])

    await memory.publish_many("orders", [{"n": 1}, {"n": 2}])
    await memory.publish("refunds", {"n": 3})
    stop = asyncio.Event()
    running = asyncio.ensure_future(app.run(memory, consumer="w1", stop=stop))
    await wait_until(lambda: len(seen["orders"]) == 2 and len(seen["refunds"]) == 1)
    await asyncio.sleep(0.05)
    assert not running.done()  # runs until asked to stop
    await memory.publish("orders", {"n": 4})
    await wait_until(lambda: len(seen["orders"]) == 3)
    stop.set()
    await asyncio.wait_for(running, 5)
    assert sorted(seen["orders"]) == [1, 2, 4]
    assert seen["refunds"] == [3]
    assert (await memory.group_info("orders", "shop")).pending == 0
    assert (await memory.group_info("refunds", "accounting")).consumers[0].name == "w1"


def test_app_rejects_bad_registrations() -> None:
    app = App("x")

    async def handler(payload: dict[str, Any]) -> None:
        return None

    with pytest.raises(ConfigurationError, match="unknown processor option"):
        app.add_handler("s", handler, concurency=3)
    app.add_handler("s", handler)
    with pytest.raises(ValueError, match="Router"):
        app.add_handler("s", handler)
    with pytest.raises(TypeError, match="async function"):
        app.add_handler("t", print)  # type: ignore[arg-type]


async def _two(a: Any, b: Any) -> None: ...


async def _none() -> None: ...


async def _keyword_only(payload: Any, *, key: str) -> None: ...


async def _defaults(payload: Any, retries: int = 3, *, key: str = "k") -> None: ...


async def _star(*args: Any) -> None: ...


async def _star_kwargs(payload: Any, **extra: Any) -> None: ...


class _TwoCall:
    async def __call__(self, a: Any, b: Any) -> None: ...


def _with_session(func: Callable[..., Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """A decorator that supplies a handler's second argument itself."""

    @functools.wraps(func)
    async def wrapper(payload: Any) -> None:
        await func(payload, "session")

    return wrapper


@_with_session
async def _decorated(payload: Any, session: str) -> None: ...


async def test_a_handler_that_cannot_take_one_argument_is_refused_when_set(
    memory: MemoryBackend,
) -> None:
    """``async def h(a, b)`` used to be accepted; each message then failed with a
    TypeError and was dead-lettered. It is refused by every way of setting a handler."""
    processor = conveyor.StreamProcessor(memory, "s", "g", "c")
    router = conveyor.Router()
    refused: list[tuple[Callable[..., Awaitable[Any]], str]] = [
        (_two, "_two(a: 'Any', b: 'Any') -> 'None'"),
        (_none, "_none() -> 'None'"),
        (_keyword_only, "_keyword_only(payload: 'Any', *, key: 'str') -> 'None'"),
        (_TwoCall(), "_TwoCall(a: 'Any', b: 'Any') -> 'None'"),
    ]
    for bad, shown in refused:
        said = f"handler {shown} cannot be called with one argument"
        with pytest.raises(ConfigurationError) as info:
            App("x").add_handler("s", bad)
        assert str(info.value).startswith(said), info.value
        with pytest.raises(ConfigurationError, match="cannot be called with one argument"):
            App("x").handler("s")(bad)
        with pytest.raises(ConfigurationError, match="cannot be called with one argument"):
            router.add("t", bad)
        with pytest.raises(ConfigurationError, match="cannot be called with one argument"):
            processor.set_callback(bad)
    for good in (_defaults, _star, _star_kwargs, _decorated):  # the wrapper takes one
        App("x").add_handler("s", good)
        router.add("t", good)
        processor.set_callback(good)


def test_default_consumer_names_are_stable_and_distinct() -> None:
    assert default_consumer_name("billing", host="web-1") == "web-1-billing"
    assert default_consumer_name("billing", host="web-1") == default_consumer_name(
        "billing", host="web-1"
    )
    assert default_consumer_name("billing", 0, host="web 1") == "web_1-billing-0"
    assert default_consumer_name("billing", 1) != default_consumer_name("billing", 2)


def test_cli_backends_lists_memory() -> None:
    result = CliRunner().invoke(main, ["backends"])
    assert result.exit_code == 0
    assert "memory://" in result.output


@pytest.mark.parametrize("command", ["publish", "inspect"])
def test_cli_publish_and_inspect_refuse_process_local_memory(command: str) -> None:
    """memory:// lives in one process: a publish or inspect run on its own would use a
    broker nobody else sees (sqlite:// is the embedded broker that processes share)."""
    result = CliRunner().invoke(main, [command, "memory://cli", "orders", '{"n": 1}'])
    assert result.exit_code == 2
    assert "memory:// lives inside one process" in result.output
    assert "sqlite:///conveyor.db" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_run_with_a_wrong_app_path_prints_one_line() -> None:
    for path, expected in [
        ("nonexistent_mod_xyz:app", "cannot import module"),
        ("conveyor:nothing_here", "has no attribute"),
        ("conveyor:Message", "not a conveyor.App"),
        ("no-colon", "expected module:app"),
        ("billing.py:app", "got the file path 'billing.py': give its module, billing:app"),
        ("./jobs/billing.py:app", "give its module, jobs.billing:app"),
        ("/srv/billing.py:app", "billing:app, run from /srv or with PYTHONPATH=/srv"),
        ("shop/__init__.py:app", "give its module, shop:app"),
        ("my-jobs.py:app", "got the file path 'my-jobs.py': give the module's dotted name"),
    ]:
        result = CliRunner().invoke(main, ["run", path, "--url", "memory://"])
        assert result.exit_code == 2, path
        assert expected in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_cli_run_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "sigapp.py").write_text(
        textwrap.dedent("""
        import conveyor
        from conveyor.app import App

        app = App("sig")

        @app.handler("jobs")
        async def job(payload):
            print("handled", payload["n"], flush=True)
    """)
    )
    env = {**os.environ, "CONVEYOR_URL": "memory://sig", "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "run", "sigapp:app"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        assert proc.stdout is not None
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "started jobs/sig" in line:
                break
        else:
            pytest.fail("worker did not start: " + "".join(lines))
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopped jobs/sig" in out


async def test_demo_accounts_for_every_order() -> None:
    from rich.console import Console

    console = Console(file=io.StringIO())
    assert await run_demo(
        "memory://demo-test", count=400, workers=2, concurrency=4, console=console
    )
    out = " ".join(console.file.getvalue().split())  # type: ignore[attr-defined]
    assert "dead letter: order 13" in out
    # the poison order is announced before its error is logged: a newcomer knows it is meant
    assert out.startswith("publishing 400 orders to ")
    assert "order 13 always fails: it is dead-lettered after 3 deliveries" in out


def test_public_api_is_exactly_this() -> None:
    assert sorted(conveyor.__all__) == sorted(
        [
            "App",
            "Capabilities",
            "ConsumerInfo",
            "ConsumerSession",
            "ConveyorError",
            "DeadLetters",
            "GroupInfo",
            "Message",
            "Middleware",
            "ProcessorOptions",
            "ProcessorStats",
            "Producer",
            "Router",
            "StreamBackend",
            "StreamInfo",
            "StreamProcessor",
            "StreamStorageProtocol",
            "available_backends",
            "connect",
        ]
    )
    for name in conveyor.__all__:
        assert getattr(conveyor, name) is not None


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            "conveyor.base",
            [
                "SEED_CONSUMER",
                "SEED_MEMORY",
                "BaseBackend",
                "BaseSession",
                "ConsumerOptions",
                "check_name",
                "check_sizes",
            ],
        ),
        (
            "conveyor.discovery",
            ["DEAD_SUFFIX", "StreamInfo", "dead_letter_source", "oldest_entry_at"],
        ),
        ("conveyor.cleanup", ["absent", "remove_streams"]),
        ("conveyor.errormap", ["ErrorMap", "Rule"]),
        ("conveyor.dlq", ["DEAD_LETTER_ID_HEADER", "DeadLetter", "DeadLetters", "RequeueResult"]),
        (
            "conveyor.headers",
            ["RESERVED_PREFIXES", "Headers", "check_headers", "check_headers_list"],
        ),
        (
            "conveyor.processor",
            ["ErrorHook", "ProcessorOptions", "StreamProcessor", "dead_letter_stream_for"],
        ),
        (
            "conveyor.testing",
            [
                "FakeClock",
                "Features",
                "HandlerErrors",
                "dead_letters",
                "run_app_until_idle",
                "run_until_idle",
                "wait_until",
            ],
        ),
    ],
)
def test_extension_modules_export_exactly_this(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(names)


async def test_run_until_idle_requires_a_started_processor(memory: MemoryBackend) -> None:
    processor = conveyor.StreamProcessor(memory, "s", "g", "c")
    with pytest.raises(RuntimeError, match="not running"):
        await run_until_idle(processor)


def test_cli_bench_verifies_its_own_results(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "--url",
            "memory://bench-test",
            "-n",
            "300",
            "--latency-seconds",
            "0.5",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(out.read_text())
    assert [r["name"] for r in rows] == [
        "conveyor c=1",
        "conveyor c=64 io=1ms",
        "publish one by one",
        "publish_many x500",
        "latency",
    ]
    assert all(r["verified"] for r in rows)
    assert rows[-1]["messages"] == 100
