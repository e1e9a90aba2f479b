"""The conveyor pytest plugin, registered through the ``pytest11`` entry point: installed
with conveyor, active in every pytest run, inert until a test asks for its fixtures.

Fixtures:

* ``conveyor_url`` — the backend URL tests run against: ``--conveyor-url`` on the command
  line, else the ``CONVEYOR_TEST_URL`` environment variable, else a fresh
  ``memory://`` broker per test.
* ``conveyor_clock`` — a `FakeClock`; on ``memory://`` it is also the broker's clock.
* ``conveyor_backend`` — the backend opened on ``conveyor_url`` (async; closed, and a
  memory broker forgotten, after the test).

With `run_app_until_idle(app, conveyor_backend, clock=conveyor_clock)` a test runs an
`App`'s handlers until nothing is left to do. The async fixture needs pytest-asyncio
(``pip install 'conveyor[pytest]'``); without it, asking for it fails with that hint.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from conveyor.protocol import StreamBackend
from conveyor.testing.clock import FakeClock

__all__ = ["URL_ENV", "pytest_addoption"]

#: Environment variable naming the backend URL (the command-line option wins).
URL_ENV = "CONVEYOR_TEST_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conveyor")
    group.addoption(
        "--conveyor-url",
        default=None,
        help=f"backend URL for the conveyor_backend fixture (default: ${URL_ENV}, else a"
        " fresh memory:// broker per test)",
    )


@pytest.fixture
def conveyor_url(request: pytest.FixtureRequest) -> str:
    """The URL `conveyor_backend` opens (see the module docstring)."""
    chosen = request.config.getoption("conveyor_url") or os.environ.get(URL_ENV)
    return str(chosen) if chosen else f"memory://pytest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def conveyor_clock() -> FakeClock:
    """A fresh `FakeClock` (the memory broker's clock too)."""
    return FakeClock()


try:
    import pytest_asyncio
except ImportError:  # tests/core/test_pytest_plugin.py blocks the import to see this
    HAVE_PYTEST_ASYNCIO = False
else:
    HAVE_PYTEST_ASYNCIO = True

if not HAVE_PYTEST_ASYNCIO:

    @pytest.fixture(name="conveyor_backend")
    def _conveyor_backend_needs_pytest_asyncio() -> None:
        pytest.fail(
            "the conveyor_backend fixture needs pytest-asyncio: pip install 'conveyor[pytest]'",
            pytrace=False,
        )

else:

    @pytest_asyncio.fixture
    async def conveyor_backend(
        conveyor_url: str, conveyor_clock: FakeClock
    ) -> AsyncIterator[StreamBackend]:
        """The backend on `conveyor_url`, closed after the test."""
        import conveyor

        memory = conveyor_url.startswith("memory://")
        if memory:
            backend = await conveyor.connect(conveyor_url, clock=conveyor_clock)
        else:
            backend = await conveyor.connect(conveyor_url)
        try:
            yield backend
        finally:
            await backend.aclose()
            if memory:
                from conveyor_memory import reset

                reset(conveyor_url.removeprefix("memory://").split("?")[0])
