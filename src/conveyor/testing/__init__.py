"""Testing support: the conformance suite, broker discovery, and helpers for app tests.

* `conveyor.testing.conformance.BackendConformance` — the suite every backend passes,
  adapted by each backend's `Features`.
* `FakeClock`, `run_until_idle`, `run_app_until_idle`, `dead_letters`, `HandlerErrors`,
  `wait_until`: test handlers on ``memory://`` without sleeping on real clocks.
* `conveyor.testing.pytest_plugin` — the pytest plugin (fixtures ``conveyor_backend``,
  ``conveyor_clock``, ``conveyor_url``; option ``--conveyor-url``), loaded automatically.
* `conveyor.testing.servers` — how tests find (or start) a broker, shared by backends.
"""

from conveyor.testing.clock import FakeClock
from conveyor.testing.features import Features
from conveyor.testing.harness import (
    HandlerErrors,
    dead_letters,
    run_app_until_idle,
    run_until_idle,
    wait_until,
)

__all__ = [
    "FakeClock",
    "Features",
    "HandlerErrors",
    "dead_letters",
    "run_app_until_idle",
    "run_until_idle",
    "wait_until",
]
