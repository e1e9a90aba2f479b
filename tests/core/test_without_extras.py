"""The core works without the ``otel``, ``prometheus``, ``pydantic`` and ``msgspec``
extras: a subprocess in which importing them fails runs a processor, logs JSON, gets
install hints from the modules (and the CLI option) that need them, and runs typed
(dataclass, TypedDict) handlers with the built-in check."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from click.testing import CliRunner

from conveyor.cli import main

BLOCKER = """
import importlib.abc
import sys

EXTRAS = ("opentelemetry", "prometheus_client", "pydantic", "pydantic_core", "msgspec")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in EXTRAS:
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, Block())
"""

SCRIPT = """
import asyncio, io, json, logging

import conveyor
import conveyor.cli
from conveyor.logs import MessageLogContext, configure_logging
from conveyor.testing import run_until_idle

stream = io.StringIO()
configure_logging("INFO", "json", stream, force=True)
seen = []

async def handle(payload):
    logging.getLogger("shop").info("handled %s", payload["n"])
    seen.append(payload["n"])

async def main():
    async with conveyor.connect("memory://no-extras") as backend:
        await backend.publish("orders", {"n": 1})
        processor = conveyor.StreamProcessor(
            backend, "orders", "g", "c", middleware=[MessageLogContext()]
        )
        processor.set_callback(handle)
        async with processor:
            await run_until_idle(processor)

asyncio.run(main())
assert seen == [1]
records = [json.loads(line) for line in stream.getvalue().splitlines()]
assert any(r["message"] == "handled 1" and r["message_id"] for r in records), records
for module, extra in (("conveyor.otel", "otel"), ("conveyor.prometheus", "prometheus")):
    try:
        __import__(module)
    except ImportError as exc:
        assert f"conveyor[{extra}]" in str(exc), exc
    else:
        raise AssertionError(f"{module} imported without its extra")
print("ok")
"""


def run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    program = BLOCKER + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_core_runs_without_the_extras() -> None:
    result = run_blocked(SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


def test_metrics_port_without_prometheus_client_says_what_to_install() -> None:
    code = """
    import sys
    from click.testing import CliRunner
    from conveyor.cli import main

    sys.modules["app_without_extras"] = type(sys)("app_without_extras")
    import conveyor
    sys.modules["app_without_extras"].app = conveyor.App("a")
    result = CliRunner().invoke(
        main, ["run", "app_without_extras:app", "--url", "memory://", "--metrics-port", "0"]
    )
    print(result.exit_code)
    print(result.output)
    """
    result = run_blocked(code)
    assert result.returncode == 0, result.stderr
    exit_code, output = result.stdout.split("\n", 1)
    assert exit_code == "2"
    assert "--metrics-port" in output
    assert "pip install 'conveyor[prometheus]'" in output
    assert len(output.strip().splitlines()) == 1


def test_importing_conveyor_imports_no_extra() -> None:
    code = """
    import sys
    import conveyor, conveyor.cli, conveyor.logs, conveyor.middleware, conveyor.typed
    import conveyor.asyncapi
    extras = ("opentelemetry", "prometheus_client", "pydantic", "msgspec")
    print(sorted(m for m in sys.modules if m.startswith(extras)))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_cli_help_lists_the_observability_options() -> None:
    result = CliRunner().invoke(main, ["run", "--help"])
    assert "--metrics-port" in result.output
    result = CliRunner().invoke(main, ["--help"])
    assert "--log-format [auto|text|json|rich]" in result.output


TYPED = """
import asyncio, dataclasses, sys
from typing import TypedDict

import conveyor
from conveyor.testing import dead_letters, run_until_idle

@dataclasses.dataclass
class Order:
    order_id: int
    note: str = ""

class Refund(TypedDict):
    order_id: int

seen = []

async def on_order(order: Order) -> None:
    seen.append(order)

async def on_refund(refund: Refund) -> None:
    seen.append(refund)

async def main():
    async with conveyor.connect("memory://typed-no-extras") as backend:
        await backend.publish("orders", Order(1, "hi"))
        await backend.publish("orders", {"note": "no id"})
        await backend.publish("refunds", {"order_id": 2})
        await backend.publish("refunds", {})
        for stream, handler in (("orders", on_order), ("refunds", on_refund)):
            processor = conveyor.StreamProcessor(backend, stream, "g", "c")
            processor.set_callback(handler)
            async with processor:
                await run_until_idle(processor, raise_errors=False)
            (record,) = await dead_letters(backend, stream)
            assert record["delivery_count"] == 1, record
            assert record["error"].endswith(": order_id: Field required"), record

asyncio.run(main())
assert seen == [Order(1, "hi"), {"order_id": 2}], seen
assert not [m for m in sys.modules if m.startswith(("pydantic", "msgspec"))]
print("ok")
"""


def test_dataclass_and_typeddict_handlers_work_without_pydantic_or_msgspec() -> None:
    result = run_blocked(TYPED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"
