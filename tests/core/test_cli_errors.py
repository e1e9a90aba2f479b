"""The CLI never tracebacks on bad input: each case ends in one line naming the problem
and exit status 2 (issue 13); ``--version``; ``--log-level`` after the command and from
``CONVEYOR_LOG_LEVEL``; the Python API raises `ConfigurationError` for bad arguments."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import conveyor
from conveyor.bench import run_suite
from conveyor.cli import main
from conveyor.demo import run_demo
from conveyor.dlq import DeadLetters
from conveyor.errors import ConfigurationError, ConveyorError
from conveyor.logs import configure_logging
from conveyor.naming import default_consumer_name
from conveyor.producer import Producer
from conveyor.supervisor import RestartPolicy, Supervisor
from conveyor.testing import FakeClock

APP = """
import conveyor

app = conveyor.App("billing")
empty = conveyor.App("empty")


@app.handler("orders")
async def handle(payload: dict) -> None:
    pass


def factory_with_args(x):
    return app
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding billing.py, no CONVEYOR_* variables set."""
    (tmp_path / "billing.py").write_text(textwrap.dedent(APP))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("CONVEYOR_URL", "CONVEYOR_LOG_LEVEL", "CONVEYOR_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


DB = "sqlite:///cli-errors.db"
BAD_IPV6 = "nats://[::1"

#: (arguments, what the one line must say)
CASES: list[tuple[list[str], str]] = [
    (["publish", BAD_IPV6, "orders", "{}"], "Invalid IPv6 URL"),
    (["publish", "--url", BAD_IPV6, "orders", "{}"], "Invalid IPv6 URL"),
    (["inspect", BAD_IPV6, "orders", "g"], "Invalid IPv6 URL"),
    (["dlq", "list", BAD_IPV6, "orders"], "Invalid IPv6 URL"),
    (["dlq", "show", "--url", BAD_IPV6, "orders", "1"], "Invalid IPv6 URL"),
    (["dlq", "requeue", BAD_IPV6, "orders", "--all"], "Invalid IPv6 URL"),
    (["dlq", "purge", BAD_IPV6, "orders", "--all", "--yes"], "Invalid IPv6 URL"),
    (["run", "billing:app", "--url", BAD_IPV6], "Invalid IPv6 URL"),
    (["run", "billing:app", "--workers", "2", "--url", BAD_IPV6], "Invalid IPv6 URL"),
    (["demo", "--url", BAD_IPV6], "Invalid IPv6 URL"),
    (["bench", "--url", BAD_IPV6], "Invalid IPv6 URL"),
    (["publish", "redis://[::1", "orders", "{}"], "Invalid IPv6 URL"),
    (["publish", "kafka://[::1", "orders", "{}"], "Invalid IPv6 URL"),
    (["demo", "--url", "memory://", "--count", "5"], "--count must be at least 14"),
    (["demo", "--url", "memory://", "--concurrency", "0"], "'--concurrency': 0 is not in"),
    (["demo", "--url", "memory://", "--workers", "0"], "'--workers': 0 is not in"),
    (["bench", "--url", "memory://", "-n", "0"], "'--messages': 0 is not in"),
    (["bench", "--url", "memory://", "--latency-seconds", "-1"], "--latency-seconds"),
    (["run", "billing:handle", "--url", "memory://"], "billing:handle is an async function"),
    (["run", "billing:factory_with_args", "--url", "memory://"], "a function taking x"),
    (["run", "billing:empty", "--url", "memory://"], "billing:empty has no handlers"),
    (["run", "billing:nothing", "--url", "memory://"], "did you mean billing:app"),
    (["run", "billing:app", "--workers", "0"], "'--workers': 0 is not in"),
    (["run", "billing:app", "--workers", "2", "--index", "1"], "exclude each other"),
    (["run", "billing:app", "--reload-dir", "."], "--reload-dir needs --reload"),
    (["publish", DB, "", "{}"], "stream name must be a non-empty str"),
    (["inspect", DB, "", "g"], "stream name must be a non-empty str"),
    (["inspect", DB, "orders", ""], "group name must be a non-empty str"),
    (["inspect", DB, "orders", "g", "--dead-letter-stream", ""], "must be a non-empty str"),
    (["dlq", "list", DB, ""], "stream name must be a non-empty str"),
    (["dlq", "purge", DB, "", "--all", "--yes"], "stream name must be a non-empty str"),
    (["demo", "--url", "memory://", "--stream", ""], "stream name must be a non-empty str"),
    (["publish", "nosuch://x", "orders", "{}"], "no conveyor backend handles nosuch://"),
    (["demo", "--url", "nosuch://x"], "no conveyor backend handles nosuch://"),
    (["publish", "localhost:6379", "orders", "{}", "extra"], "expected [URL] STREAM PAYLOAD"),
    (["dlq", "list", "--url", "not-a-url", "orders"], "not a backend URL"),
    (["dlq", "list"], "expected [URL] STREAM: no STREAM given"),
    (["dlq", "show", DB, "orders"], "expected [URL] STREAM ID, got 0 id(s)"),
    (["dlq", "list", DB, "orders", "extra"], "unexpected argument(s) extra"),
    (["dlq", "requeue", DB, "orders"], "name the dead letters (ID...) or pass --all"),
    (["dlq", "requeue", DB, "orders", "1", "--all"], "not both"),
    (["dlq", "list", DB, "orders", "--older-than", "soon"], "is not a duration"),
    (["no-such-command"], "No such command 'no-such-command'"),
    (["publish", "--bogus"], "No such option '--bogus'"),
    (["run"], "Missing argument 'MODULE:APP'"),
    (["--log-level", "LOUD", "backends"], "'--log-level'"),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_status_2(
    workdir: Path, args: list[str], expected: str
) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), lines
    assert expected in lines[0]
    assert "Traceback" not in result.output


def test_an_unreachable_broker_is_one_line_in_bounded_time(workdir: Path) -> None:
    """Through the installed entry point, as a user runs it (default log level)."""
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    started = time.monotonic()
    for args in (["publish", url, "orders", "{}"], ["dlq", "list", url, "orders"]):
        done = subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("error: BrokerUnavailableError: ")
    assert time.monotonic() - started < 30


def test_the_entry_point_itself_prints_one_line_for_an_ipv6_typo() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "publish", BAD_IPV6, "orders", "{}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == "error: cannot parse the URL 'nats://[::1': Invalid IPv6 URL\n"


def test_version() -> None:
    for flag in ("--version", "-V"):
        result = CliRunner().invoke(main, [flag])
        assert result.exit_code == 0
        assert result.output == f"conveyor, version {conveyor.__version__}\n"


def _conveyor(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={**environ, **env},
    )


def test_log_level_before_or_after_the_command_or_from_the_environment(tmp_path: Path) -> None:
    publish = ["publish", "sqlite:///levels.db", "orders", "{}"]
    quiet = _conveyor(publish, tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # publish is quiet by default: its output is the id
    opening = "DEBUG conveyor.registry: opening sqlite backend"
    for args, env in [
        (["--log-level", "DEBUG", *publish], {}),
        ([*publish, "--log-level", "debug"], {}),
        (publish, {"CONVEYOR_LOG_LEVEL": "DEBUG"}),
        ([*publish, "--log-level", "DEBUG"], {"CONVEYOR_LOG_LEVEL": "ERROR"}),
        (["dlq", "list", "sqlite:///levels.db", "orders", "--log-level", "DEBUG"], {}),
    ]:
        done = _conveyor(args, tmp_path, **env)
        assert done.returncode == 0, done.stderr
        assert opening in done.stderr, (args, env, done.stderr)
    after_wins = _conveyor(["--log-level", "DEBUG", *publish, "--log-level", "ERROR"], tmp_path)
    assert after_wins.stderr == ""
    json_after = _conveyor([*publish, "--log-level", "DEBUG", "--log-format", "json"], tmp_path)
    assert json_after.stderr.startswith("{"), json_after.stderr


def _raises(call: Callable[[], Any]) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        call()
    assert isinstance(info.value, ValueError)  # for code that caught ValueError before
    assert isinstance(info.value, ConveyorError)
    return info.value


async def _async_raises(coro: Any) -> None:
    with pytest.raises(ConfigurationError):
        await coro


async def test_public_constructors_raise_configuration_error() -> None:
    async def handler(payload: dict[str, Any]) -> None:
        return None

    _raises(lambda: conveyor.App(""))
    app = conveyor.App("a")
    _raises(lambda: app.add_handler("", handler))
    _raises(lambda: app.add_handler("s", handler, group=""))
    app.add_handler("s", handler)
    _raises(lambda: app.add_handler("s", handler))  # a second handler for s/a
    _raises(lambda: conveyor.App("b").processors(object()))  # type: ignore[arg-type]
    _raises(lambda: default_consumer_name("a", -1))
    _raises(lambda: configure_logging("INFO", "loud"))  # type: ignore[arg-type]
    _raises(lambda: Supervisor(lambda i: ["true"], 0))
    _raises(lambda: RestartPolicy(max_start_crashes=0))
    _raises(lambda: RestartPolicy(first_delay=-1))
    async with conveyor.connect("memory://cli-errors") as backend:
        _raises(lambda: Producer(backend, ""))
        _raises(lambda: DeadLetters(backend, ""))
        with pytest.raises(ConfigurationError):
            await Producer(backend, "s").add_event("", {})
    await _async_raises(FakeClock().advance(-1))
    await _async_raises(run_demo("memory://cli-errors", count=5))
    await _async_raises(run_demo("memory://cli-errors", workers=0))
    await _async_raises(run_demo("memory://cli-errors", concurrency=0))
    await _async_raises(run_suite("memory://cli-errors", n=0))
    for url in ("nats://[::1", "redis://[::1", "kafka://[::1]x", "sqlite://"):
        with pytest.raises(ConfigurationError):
            await asyncio.wait_for(conveyor.connect(url).__aenter__(), 10)


def test_demo_in_process_leaves_the_callers_log_levels_as_they_were() -> None:
    """demo quiets conveyor.processor for its progress bar; run in-process (CliRunner, a
    test), it left it at ERROR, and later tests in the same process lost their warnings."""
    import logging

    processor_log = logging.getLogger("conveyor.processor")
    before = processor_log.level
    result = CliRunner().invoke(main, ["demo", "--url", "nosuch://x"])
    assert result.exit_code == 2
    assert processor_log.level == before
