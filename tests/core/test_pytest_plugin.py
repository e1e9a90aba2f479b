"""The pytest plugin (``pytest11`` entry point) as a user's test suite meets it: the docs
example run by pytest in a subprocess, on memory:// by default, on another broker through
``--conveyor-url`` and ``CONVEYOR_TEST_URL``."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conveyor.testing import FakeClock, HandlerErrors, run_app_until_idle

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "test_with_plugin.py"


def run_pytest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    plugins = importlib.metadata.entry_points(group="pytest11")
    assert [ep.value for ep in plugins if ep.name == "conveyor"] == [
        "conveyor.testing.pytest_plugin"
    ]


def test_the_docs_example_passes_on_memory_by_default() -> None:
    result = run_pytest(str(EXAMPLE), "-p", "no:randomly")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.parametrize("example", ["test_with_plugin.py", "test_orders.py"])
def test_the_docs_examples_pass_copied_into_a_project_in_strict_mode(
    example: str, tmp_path: Path
) -> None:
    """Copied into a project without conveyor's pytest settings: pytest-asyncio's
    default strict mode runs only marked async tests (the examples mark themselves)."""
    copy = tmp_path / example
    copy.write_text((EXAMPLE.parent / example).read_text())
    result = run_pytest(
        str(copy), "--rootdir", str(tmp_path), "-c", os.devnull, "-o", "asyncio_mode=strict"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_conveyor_url_runs_the_same_tests_on_another_broker(tmp_path: Path) -> None:
    database = tmp_path / "plugin.db"
    result = run_pytest(str(EXAMPLE), f"--conveyor-url=sqlite:///{database}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert database.exists()  # the test really ran on the file, not on memory://


def test_the_environment_variable_names_the_broker_too(tmp_path: Path) -> None:
    database = tmp_path / "env.db"
    result = run_pytest(str(EXAMPLE), env={"CONVEYOR_TEST_URL": f"sqlite:///{database}"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert database.exists()


def test_a_bad_url_fails_the_test_with_the_reason() -> None:
    result = run_pytest(str(EXAMPLE), "--conveyor-url=not-a-url")
    assert result.returncode == 1
    assert "not a backend URL: 'not-a-url'" in result.stdout


async def test_run_app_until_idle_raises_the_handler_errors_by_default(
    conveyor_backend: Any, conveyor_clock: FakeClock
) -> None:
    app = conveyor.App("plugin-test")
    seen: list[int] = []

    @app.handler("jobs", max_deliveries=2, retry_delay=60)
    async def work(payload: dict[str, int]) -> None:
        seen.append(payload["n"])
        if payload["n"] == 2:
            raise RuntimeError("job 2 fails")

    await conveyor_backend.publish("jobs", {"n": 1})
    await conveyor_backend.publish("jobs", {"n": 2})
    with pytest.raises(HandlerErrors) as failures:
        await run_app_until_idle(app, conveyor_backend, clock=conveyor_clock, timeout=10)
    assert len(failures.value.errors) == 2  # both deliveries of job 2, on fake time
    assert sorted(seen) == [1, 2, 2]
    assert conveyor_clock.monotonic() >= 30  # the jittered 60 s delay passed on fake time only
    info = await conveyor_backend.group_info("jobs", "plugin-test")
    assert (info.pending, info.lag) == (0, 0)


BLOCK_PYTEST_ASYNCIO = """
import importlib.abc
import sys

import pytest


class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pytest_asyncio":
            raise ImportError(f"{name} is blocked by this test")
        return None


sys.meta_path.insert(0, Blocked())
# --assert=plain: the assertion-rewriting import hook would find it ahead of Blocked
args = ["-q", "--assert=plain", "-p", "no:asyncio", "-p", "no:cacheprovider", sys.argv[1]]
sys.exit(pytest.main(args))
"""


def test_without_pytest_asyncio_the_fixture_says_what_to_install(tmp_path: Path) -> None:
    script = tmp_path / "run_without_pytest_asyncio.py"
    script.write_text(BLOCK_PYTEST_ASYNCIO)
    test = tmp_path / "test_user.py"
    test.write_text("def test_needs_a_backend(conveyor_backend):\n    pass\n")
    result = subprocess.run(
        [sys.executable, str(script), str(test)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "needs pytest-asyncio: pip install 'conveyor[pytest]'" in result.stdout
    assert "1 error" in result.stdout
