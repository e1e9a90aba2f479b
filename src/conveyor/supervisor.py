"""Keep N worker processes running: ``conveyor run --workers N``.

A `Supervisor` starts one child process per worker index (each a ``conveyor run ...
--index I``, so consumer names are distinct and stable across restarts: a restarted
worker re-reads its own pending messages first). It

* restarts a child that exits unexpectedly, after a backoff that grows with the number of
  crashes in a row (reset once a child has lived `RestartPolicy.startup_window` seconds);
* gives up, stopping the others, when a child crashes `RestartPolicy.max_start_crashes`
  times in a row within `startup_window` of its start, or exits with status 2 (a bad
  argument or an unreachable broker: a restart would not help) the first time it starts;
* forwards SIGTERM/SIGINT (`stop`) to every child and waits for them to stop gracefully
  (finished messages acknowledged, unfinished ones left pending); children still running
  after `RestartPolicy.stop_timeout` are killed (their messages stay pending too); a
  second SIGTERM/SIGINT is forwarded too, and each child then stops at once;
* restarts every child when `reload` is called (``--reload`` calls it on code changes).

Children run in their own process group, so a terminal's Ctrl-C reaches them once, through
the supervisor; each child stops by itself when its supervisor dies
(``CONVEYOR_SUPERVISOR_PID``, see `watch_supervisor`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from conveyor.backoff import backoff_delay
from conveyor.errors import ConfigurationError
from conveyor.timeouts import within

__all__ = [
    "SUPERVISOR_PID_ENV",
    "RestartPolicy",
    "Supervisor",
    "watch_files",
    "watch_supervisor",
]

log = logging.getLogger("conveyor.supervisor")

#: Set in each child's environment: the supervisor's pid (see `watch_supervisor`).
SUPERVISOR_PID_ENV = "CONVEYOR_SUPERVISOR_PID"


@dataclass(frozen=True)
class RestartPolicy:
    """When and how fast the `Supervisor` restarts crashed children, and when it gives up.

    Attributes:
        first_delay: Seconds before the first restart after a crash (doubling, with
            jitter, for each crash in a row).
        max_delay: The longest delay between restarts.
        startup_window: A child that dies sooner than this after its start "crashed at
            start"; one that lived longer resets its crash count.
        max_start_crashes: Crashes at start in a row after which the supervisor gives up.
        stop_timeout: Seconds to wait for the children once a stop was forwarded, before
            killing those still running.
    """

    first_delay: float = 0.5
    max_delay: float = 30.0
    startup_window: float = 10.0
    max_start_crashes: int = 5
    stop_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("first_delay", "max_delay", "startup_window", "stop_timeout"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.max_start_crashes < 1:
            raise ConfigurationError(
                f"max_start_crashes must be >= 1, got {self.max_start_crashes!r}"
            )


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor:
    """Run `workers` children, the command of child I being ``argv(I)``.

    Args:
        argv: The command line of the child with a given index.
        workers: How many children (>= 1).
        policy: Restart and stop timing.
        env: Extra environment variables for the children.

    Raises:
        ConfigurationError: `workers` < 1.
    """

    def __init__(
        self,
        argv: Callable[[int], Sequence[str]],
        workers: int,
        *,
        policy: RestartPolicy | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigurationError(f"workers must be >= 1, got {workers!r}")
        self.argv = argv
        self.workers = workers
        self.policy = policy or RestartPolicy()
        self._env = {**os.environ, **(env or {}), SUPERVISOR_PID_ENV: str(os.getpid())}
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._codes: dict[int, int | None] = {}
        self._stopping = asyncio.Event()
        self._stop_signal = signal.SIGTERM
        self._forced = False  # stop() came twice: the workers stop at once
        self._generation = 0
        self.failure: str | None = None
        self._failure_status = 1
        self.restarts = 0

    @property
    def pids(self) -> dict[int, int]:
        """The running children: index → pid."""
        return {index: proc.pid for index, proc in self._children.items()}

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Forward `signum` to every child and stop restarting them. Again: forward it
        again (a worker's second signal stops it at once, exiting 128 + the signal)."""
        self._stop_signal = signal.Signals(signum)
        self._forced = self._stopping.is_set()
        self._stopping.set()
        self._signal_all(self._stop_signal)

    def reload(self) -> None:
        """Restart every child now (stopped gracefully, started again at once)."""
        if self._stopping.is_set():
            return
        self._generation += 1
        log.info("reloading: restarting %d worker(s)", len(self._children))
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum: int) -> None:
        for proc in list(self._children.values()):
            if proc.returncode is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:  # it exited in between: wait() sees it
                    pass

    async def run(self) -> int:
        """Run until `stop` (or a give-up); the exit status: 0 when every child stopped
        gracefully, 128 + the signal when a second `stop` stopped them at once, 1
        otherwise, 2 when a child failed at its first start with status 2."""
        keepers = [asyncio.ensure_future(self._keep(index)) for index in range(self.workers)]
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([stopping, *keepers], return_when=asyncio.FIRST_COMPLETED)
            if not self._stopping.is_set():  # every keeper gave up or ended: stop the rest
                self.stop()
            _, pending = await asyncio.wait(keepers, timeout=self.policy.stop_timeout)
            if pending:
                log.error(
                    "%d worker(s) still running %.0f s after the stop: killing them (their"
                    " unfinished messages stay pending)",
                    len(self._children),
                    self.policy.stop_timeout,
                )
                self._signal_all(signal.SIGKILL)
                await asyncio.wait(pending)
            for keeper in keepers:
                keeper.result()  # a bug in a keeper surfaces here
        finally:
            stopping.cancel()
            for keeper in keepers:
                keeper.cancel()
            await asyncio.wait([stopping, *keepers])
            self._signal_all(signal.SIGKILL)  # only if we are unwinding from an error
        return self._status()

    def _status(self) -> int:
        if self.failure is not None:
            log.error("%s", self.failure)
            return self._failure_status
        stopped_by_us = [0, -self._stop_signal, -signal.SIGTERM]
        forced = 128 + self._stop_signal  # a worker's status when its stop was forced
        if self._forced:
            stopped_by_us.append(forced)
        codes = [c for c in self._codes.values() if c is not None]
        bad = {i: c for i, c in self._codes.items() if c is not None and c not in stopped_by_us}
        for index, code in sorted(bad.items()):
            log.error("worker %d %s while stopping", index, _describe(code))
        if bad:
            return 1
        return forced if self._forced and forced in codes else 0

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(index),
            stdin=asyncio.subprocess.DEVNULL,
            env=self._env,
            start_new_session=True,  # Ctrl-C reaches the child once: through stop()
        )
        self._children[index] = proc
        if self._stopping.is_set():  # a stop came while it was starting
            proc.send_signal(self._stop_signal)
        log.info("worker %d started (pid %d)", index, proc.pid)
        return proc

    async def _keep(self, index: int) -> None:
        """Keep child `index` running until the stop; record how it ended."""
        loop = asyncio.get_running_loop()
        crashes = 0
        first = True
        while not self._stopping.is_set():
            generation = self._generation
            started = loop.time()
            proc = await self._spawn(index)
            try:
                code = await proc.wait()
            finally:
                self._children.pop(index, None)
            self._codes[index] = code
            if self._stopping.is_set():
                return
            if generation != self._generation:  # reload: start again at once
                crashes, first = 0, False
                continue
            lived = loop.time() - started
            crashes = crashes + 1 if lived < self.policy.startup_window else 1
            what = f"worker {index} (pid {proc.pid}) {_describe(code)} after {lived:.1f} s"
            if first and code == 2:
                self.failure = f"{what} at its first start (see its error above); giving up"
                self._failure_status = 2
                return
            if lived < self.policy.startup_window and crashes >= self.policy.max_start_crashes:
                self.failure = (
                    f"{what}: {crashes} crashes in a row, each within"
                    f" {self.policy.startup_window:g} s of starting; giving up"
                )
                return
            first = False
            delay = backoff_delay(crashes, self.policy.first_delay, self.policy.max_delay)
            log.warning("%s; restarting it in %.1f s", what, delay)
            try:
                await within(self._stopping.wait(), delay)
            except asyncio.TimeoutError:
                self.restarts += 1
                continue
            self._codes[index] = None  # stopped while waiting to restart: nothing runs
            return


async def watch_supervisor(stop: asyncio.Event, interval: float = 1.0) -> None:
    """In a child: set `stop` once the supervisor named by ``CONVEYOR_SUPERVISOR_PID`` is
    gone (this process was re-parented), so no worker outlives its supervisor."""
    expected = os.environ.get(SUPERVISOR_PID_ENV)
    if not expected or not expected.isdigit():
        return
    while not stop.is_set():
        if os.getppid() != int(expected):
            log.warning("the supervisor (pid %s) is gone: stopping", expected)
            stop.set()
            return
        await asyncio.sleep(interval)


async def watch_files(supervisor: Supervisor, paths: Sequence[str], stop: asyncio.Event) -> None:
    """Call ``supervisor.reload()`` whenever a Python file under `paths` changes, until
    `stop` is set (``conveyor run --reload``; needs ``conveyor[reload]``).

    Raises:
        ConfigurationError: watchfiles is not installed.
    """
    try:
        from watchfiles import PythonFilter, awatch
    except ImportError:
        raise ConfigurationError(
            "--reload needs watchfiles: pip install 'conveyor[reload]'"
        ) from None
    async for changes in awatch(*paths, watch_filter=PythonFilter(), stop_event=stop):
        log.info("changed: %s", _names({path for _, path in changes}))
        supervisor.reload()


def _names(paths: set[str], shown: int = 5) -> str:
    """Up to `shown` of `paths`, relative to the working directory."""
    relative = sorted(os.path.relpath(path) for path in paths)
    return ", ".join(relative[:shown]) + (" ..." if len(relative) > shown else "")
