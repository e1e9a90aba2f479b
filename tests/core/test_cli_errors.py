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
    (["demo", "--url", "memory://", "--count", "5"], "'--count': 5 is not in the range x>=14"),
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


# -- --metrics-port mistakes ---------------------------------------------------------------


def test_a_metrics_port_out_of_range_is_a_range_error(workdir: Path) -> None:
    result = CliRunner().invoke(
        main, ["run", "billing:app", "--url", "memory://", "--metrics-port", "70000"]
    )
    assert result.exit_code == 2, result.output
    assert "'--metrics-port': 70000 is not in the range 0<=x<=65535" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("mistake", ["port in use", "bad host"])
def test_a_metrics_port_in_use_or_a_bad_host_is_one_line(workdir: Path, mistake: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        host = "127.0.0.1" if mistake == "port in use" else "999.1.1.1"
        args = ["run", "billing:app", "--metrics-port", str(port), "--metrics-host", host]
        done = _conveyor(args, workdir, CONVEYOR_URL="sqlite:///metrics.db")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: cannot serve metrics on {host}:{port}: "), lines
    if mistake == "port in use":
        assert lines[0].endswith(": port in use")


# -- mistakes in the user's own module -----------------------------------------------------

#: (module source, what the one line says after "error: "; {m} is the module name and
#: {file} its file)
IMPORT_MISTAKES: dict[str, tuple[str, str]] = {
    "concurrency": (
        """
        import conveyor
        app = conveyor.App("s")

        @app.handler("s", concurrency=0)
        async def h(payload): ...
        """,
        "{m}: concurrency must be >= 1, got 0 (at {file}:{decorator_line})",
    ),
    "two_handlers": (
        """
        import conveyor
        app = conveyor.App("s")

        @app.handler("s")
        async def h(payload): ...

        @app.handler("s")
        async def g(payload): ...
        """,
        "{m}: stream 's' group 's' already has handler h; use a conveyor.Router to dispatch"
        " by type (at {file}:{second_decorator_line})",
    ),
    "two_parameters": (
        """
        import conveyor
        app = conveyor.App("s")

        @app.handler("s")
        async def h(a, b): ...
        """,
        "{m}: handler h(a, b) cannot be called with one argument (the payload or the"
        " Message): it must take one positional parameter, and any other a default"
        " (at {file}:{decorator_line})",
    ),
    "sync_handler": (
        """
        import conveyor
        app = conveyor.App("s")

        @app.handler("s")
        def h(payload): ...
        """,
        "importing {m} raised TypeError: handler h must be an async function (async def"
        " handler(payload): ...); got function (at {file}:{decorator_line})",
    ),
    "runtime_error": (
        """
        import conveyor
        app = conveyor.App("s")
        raise RuntimeError("boom at import")
        """,
        "importing {m} raised RuntimeError: boom at import (at {file}:4)",
    ),
    "missing_dependency": (
        """
        import json
        import nonexistent_dependency_xyz
        """,
        "importing {m} raised ModuleNotFoundError: No module named"
        " 'nonexistent_dependency_xyz' (at {file}:3)",
    ),
    "deep_in_a_library": (
        """
        import json

        def settings():
            return json.loads("{")

        SETTINGS = settings()
        """,
        "importing {m} raised JSONDecodeError: Expecting property name enclosed in double"
        " quotes: line 1 column 2 (char 1) (at {file}:5)",
    ),
}


def _mistake(workdir: Path, case: str) -> str:
    source, _ = IMPORT_MISTAKES[case]
    name = f"import_mistake_{case}"
    (workdir / f"{name}.py").write_text(textwrap.dedent(source))
    return name


@pytest.mark.parametrize("command", ["run", "asyncapi"])
@pytest.mark.parametrize("case", sorted(IMPORT_MISTAKES))
def test_a_mistake_in_the_users_module_is_one_line(workdir: Path, case: str, command: str) -> None:
    name = _mistake(workdir, case)
    extra = ["--url", "memory://"] if command == "run" else []
    result = CliRunner().invoke(main, [command, f"{name}:app", *extra])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    # a decorator's call is at its own line from Python 3.11, at the def's before
    decorator_line = 5 if sys.version_info >= (3, 11) else 6
    expected = IMPORT_MISTAKES[case][1].format(
        m=name,
        file=f"{name}.py",
        decorator_line=decorator_line,
        second_decorator_line=decorator_line + 3,
    )
    assert lines[0] == f"error: {expected}"


def test_the_traceback_of_a_mistake_at_import_shows_at_debug_level(workdir: Path) -> None:
    name = _mistake(workdir, "runtime_error")
    quiet = _conveyor(["run", f"{name}:app", "--url", "memory://"], workdir)
    assert quiet.returncode == 2
    assert "Traceback" not in quiet.stderr
    loud = _conveyor(["run", f"{name}:app", "--url", "memory://", "--log-level", "debug"], workdir)
    assert loud.returncode == 2
    assert "Traceback (most recent call last)" in loud.stderr
    assert 'raise RuntimeError("boom at import")' in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == (
        f"error: importing {name} raised RuntimeError: boom at import (at {name}.py:4)"
    )


# -- demo and bench on a broker that does not answer ---------------------------------------


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_demo_and_bench_report_the_failure_not_the_cleanups(workdir: Path, command: str) -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    args = [command, "--url", url]
    if command == "bench":
        args += ["-n", "10", "--latency-seconds", "0"]
    done = _conveyor(args, workdir)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""  # no progress bar left at 0/5000
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: BrokerUnavailableError: "), done.stderr
    if command == "demo":  # the processors' start; bench fails at its first publish
        assert "could not create group 'fulfilment'" in lines[-1], lines[-1]
    assert "DEL of stream" not in done.stderr
    assert "Traceback" not in done.stderr
    debug = _conveyor([*args, "--log-level", "debug"], workdir)
    assert "DEL of stream" in debug.stderr  # the cleanup's own failure, at debug level
    last = debug.stderr.strip().splitlines()[-1]
    assert last.startswith("error: BrokerUnavailableError: ")
    assert "DEL of stream" not in last


# -- demo --stream on a stream that holds messages -----------------------------------------


async def _entries(url: str, stream: str) -> list[dict[str, Any]]:
    async with conveyor.connect(url) as backend:
        return [m.data for m in await backend.peek(stream, count=100)]


async def _groups(url: str) -> dict[str, tuple[str, ...]]:
    async with conveyor.connect(url) as backend:
        return {info.name: info.groups for info in await backend.streams()}  # type: ignore[attr-defined]


def test_demo_refuses_a_stream_that_holds_messages(workdir: Path) -> None:
    url = f"sqlite:///{workdir / 'keep.db'}"

    async def publish(stream: str, *payloads: dict[str, Any]) -> None:
        async with conveyor.connect(url) as backend:
            for payload in payloads:
                await backend.publish(stream, payload)

    asyncio.run(publish("mine", {"mine": 1}, {"mine": 2}))
    asyncio.run(publish("mine.dead", {"mine": "dead"}))
    result = CliRunner().invoke(main, ["demo", "--url", url, "--count", "20", "--stream", "mine"])
    assert result.exit_code == 2, result.output
    assert result.output == (
        "error: --stream mine already has 2 entries: the demo needs a new or empty stream\n"
    )
    asyncio.run(publish("theirs.dead", {"theirs": "dead"}))
    result = CliRunner().invoke(main, ["demo", "--url", url, "--count", "20", "--stream", "theirs"])
    assert result.exit_code == 2, result.output
    assert result.output == (
        "error: --stream theirs: theirs.dead already has 1 entry: the demo needs a new or"
        " empty stream\n"
    )
    assert asyncio.run(_entries(url, "mine")) == [{"mine": 1}, {"mine": 2}]
    assert asyncio.run(_entries(url, "mine.dead")) == [{"mine": "dead"}]
    assert asyncio.run(_entries(url, "theirs.dead")) == [{"theirs": "dead"}]
    assert asyncio.run(_groups(url)) == {"mine": (), "mine.dead": (), "theirs.dead": ()}


# -- read-only commands on a sqlite file that does not exist -------------------------------

READ_ONLY = [
    ["inspect", "{url}", "orders", "billing"],
    ["inspect", "{url}"],
    ["dlq", "list", "{url}", "orders"],
    ["dlq", "show", "{url}", "orders", "1-0"],
    ["dlq", "requeue", "{url}", "orders", "--all"],
    ["dlq", "purge", "{url}", "orders", "--all", "--yes"],
    ["dlq", "list", "orders", "--url", "{url}"],
    ["ui", "--url", "{url}"],
]


@pytest.mark.parametrize("args", READ_ONLY, ids=[" ".join(a[:2]) for a in READ_ONLY])
def test_read_only_commands_do_not_create_a_missing_sqlite_file(
    workdir: Path, args: list[str]
) -> None:
    url = "sqlite:///typo.db"
    result = CliRunner().invoke(main, [a.format(url=url) for a in args])
    assert result.exit_code == 2, result.output
    missing = workdir / "typo.db"
    assert result.output == (
        f"error: ConfigurationError: no SQLite database at {missing} (a typo? create=false:"
        " it is not created; conveyor publish or run create it)\n"
    )
    assert not missing.exists()
    assert list(workdir.glob("typo.db*")) == []


def test_the_default_url_is_no_exception_and_publish_still_creates_the_file(
    workdir: Path,
) -> None:
    result = CliRunner().invoke(main, ["inspect", "orders", "billing"])
    assert result.exit_code == 2
    assert "no SQLite database at" in result.output
    assert not (workdir / "conveyor.db").exists()
    published = CliRunner().invoke(main, ["publish", "sqlite:///new.db", "orders", "{}"])
    assert published.exit_code == 0, published.output
    assert (workdir / "new.db").exists()
    listed = CliRunner().invoke(main, ["dlq", "list", "sqlite:///new.db", "orders", "--json"])
    assert listed.exit_code == 0, listed.output


# -- small ones ----------------------------------------------------------------------------


def test_help_shows_what_the_commands_check() -> None:
    bench = CliRunner().invoke(main, ["bench", "--help"])
    assert "[required]" in bench.output
    assert "default: sqlite" not in bench.output
    demo = CliRunner().invoke(main, ["demo", "--help"])
    assert "x>=14" in demo.output


def test_an_empty_consumer_name_is_refused(workdir: Path) -> None:
    result = CliRunner().invoke(
        main, ["run", "billing:app", "--url", "memory://", "--consumer", ""]
    )
    assert result.exit_code == 2
    assert result.output == "error: consumer name must be a non-empty str, got ''\n"


@pytest.mark.parametrize("extra", [[], ["--workers", "2"]])
def test_run_refuses_an_unknown_scheme_before_starting_anything(
    tmp_path: Path, extra: list[str]
) -> None:
    """A typo'd scheme is one error line: no "running ... on redsi://" first, and no
    workers started under --workers to fail one by one."""
    (tmp_path / "billing.py").write_text(
        'import conveyor\napp = conveyor.App("b")\n\n@app.handler("o")\nasync def h(p): ...\n'
    )
    done = _conveyor(["run", "billing:app", "--url", "redsi://x", *extra], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: UnknownSchemeError: no conveyor backend handles redsi:// URLs; installed"
        " schemes: " + done.stderr.split("installed schemes: ")[1].strip()
    ]
    assert "sqlite://" in done.stderr
