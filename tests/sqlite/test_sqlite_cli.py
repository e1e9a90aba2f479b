"""The CLI on ``sqlite://``: its default URL, inspection, the demo, and bad URLs."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import conveyor
from conveyor.cli import main


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    return tmp_path


def test_publish_without_a_url_uses_conveyor_db_and_says_so(workdir: Path) -> None:
    result = CliRunner().invoke(main, ["publish", "orders", '{"type": "a", "n": 1}'])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1"
    assert result.stderr.strip().splitlines() == [
        "conveyor: no --url or CONVEYOR_URL given: using sqlite:///conveyor.db"
        f" ({workdir / 'conveyor.db'})"
    ]
    assert (workdir / "conveyor.db").exists()
    again = CliRunner().invoke(main, ["publish", "sqlite:///conveyor.db", "orders", '{"n": 2}'])
    assert again.stdout.strip() == "2"
    assert again.stderr == ""  # a URL given: nothing to say
    bad = CliRunner().invoke(main, ["publish", "orders", "[1]"])
    assert bad.exit_code == 2
    assert "JSON object" in bad.output


def test_the_url_comes_from_the_environment_or_once_only(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_URL", "sqlite:///from-env.db")
    result = CliRunner().invoke(main, ["publish", "orders", '{"n": 1}'])
    assert result.exit_code == 0, result.output
    assert (workdir / "from-env.db").exists()
    assert result.stderr == ""
    twice = CliRunner().invoke(
        main, ["publish", "--url", "sqlite:///a.db", "sqlite:///b.db", "orders", "{}"]
    )
    assert twice.exit_code == 2
    assert "given twice" in twice.output
    few = CliRunner().invoke(main, ["publish", "orders"])
    assert few.exit_code == 2
    assert "expected [URL] STREAM PAYLOAD" in few.output


def test_inspect_shows_pending_lag_and_dead_letters(workdir: Path) -> None:
    async def prepare() -> None:
        async with conveyor.connect("sqlite:///conveyor.db") as backend:
            await backend.publish_many("jobs", [{"n": i} for i in range(5)])
            session = await backend.open_consumer("jobs", "workers", "w1")
            got = await session.read(count=3, block=None)
            await session.ack(got[:1])
            await session.dead_letter(
                got[1],
                dead_letter_stream="jobs.dead",
                record={
                    "original": got[1].data,
                    "error_type": "ValueError",
                    "error": "bad job",
                    "delivery_count": 5,
                    "original_id": got[1].id,
                },
            )

    asyncio.run(prepare())
    result = CliRunner().invoke(main, ["inspect", "jobs", "workers"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    # length, oldest entry's age, pending, lag
    assert re.search(r"jobs │ workers │ 5 │ \d+\.\d s │ 1 │ 2", out), out
    assert "w1 │ 1" in out
    assert "ValueError: bad job" in out
    missing = CliRunner().invoke(main, ["inspect", "jobs", "nogroup"])
    assert missing.exit_code == 2
    assert "GroupNotFoundError: no group 'nogroup' on stream 'jobs'" in missing.output


def test_the_demo_runs_on_sqlite(workdir: Path) -> None:
    engine_log = logging.getLogger("conveyor.processor")
    level = engine_log.level  # the demo quiets the engine's warnings, for the whole process
    try:
        result = CliRunner().invoke(
            main, ["demo", "--url", "sqlite:///demo.db", "--count", "300", "--workers", "2"]
        )
    finally:
        engine_log.setLevel(level)
    assert result.exit_code == 0, result.output
    assert "dead letter: order 13" in result.output
    assert (workdir / "demo.db").exists()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///missing/dir/x.db", "the directory"),
        ("sqlite:///random.db", "the file is not an SQLite database"),
        ("sqlite:///conveyor.db?maxlen=none&frobnicate=1", "unknown option 'frobnicate'"),
        ("sqlite://somehost/x.db", "has a host"),
        ("sqlite:///.", "is a directory"),
    ],
)
def test_bad_urls_print_one_line_and_exit_2(workdir: Path, url: str, expected: str) -> None:
    (workdir / "random.db").write_bytes(os.urandom(4096))
    for args in (["publish", url, "s", "{}"], ["inspect", url, "s", "g"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert expected in result.stderr
        assert "Traceback" not in result.output


_SLOW_APP = """
import asyncio
from conveyor import App

app = App("slow")

@app.handler("jobs", shutdown_timeout=600)
async def job(payload):
    print("handling", payload["n"], flush=True)
"""


def _run_app(workdir: Path, body: str) -> tuple[str, subprocess.Popen[str]]:
    """Publish one job to a fresh sqlite:// file, then ``conveyor run`` an app whose
    handler (600 s of shutdown_timeout) prints ``handling 1`` and goes on with `body`;
    its output goes to ``run.log`` (`_read_until`, `_output`)."""
    handler = textwrap.indent(textwrap.dedent(body).strip(), "    ")
    (workdir / "slowapp.py").write_text(_SLOW_APP + handler + "\n")
    url = f"sqlite:///{workdir / 'slow.db'}"
    assert CliRunner().invoke(main, ["publish", url, "jobs", '{"n": 1}']).exit_code == 0
    env = {**os.environ, "CONVEYOR_URL": url, "PYTHONPATH": str(workdir)}
    with open(workdir / "run.log", "w") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "run", "slowapp:app"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return url, proc


def _output(workdir: Path) -> str:
    return (workdir / "run.log").read_text()


def _read_until(workdir: Path, proc: subprocess.Popen[str], marker: str) -> None:
    deadline = time.monotonic() + 30
    while marker not in _output(workdir):
        assert proc.poll() is None, f"run ended before {marker!r}: {_output(workdir)}"
        assert time.monotonic() < deadline, f"no {marker!r} in 30 s: {_output(workdir)}"
        time.sleep(0.02)


def test_a_second_sigint_stops_run_at_once_leaving_the_message_pending(workdir: Path) -> None:
    """The first SIGINT waits for the running handler (up to its shutdown_timeout, 600 s
    here); the second stops at once, and the unfinished message stays pending."""
    url, proc = _run_app(workdir, "await asyncio.sleep(3600)")
    try:
        _read_until(workdir, proc, "handling 1")
        proc.send_signal(signal.SIGINT)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)  # graceful: waiting for the handler
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = _output(workdir)
    assert proc.returncode == 128 + signal.SIGINT, out
    assert "SIGINT: stopping gracefully (send it again to stop at once)" in out
    assert "SIGINT again: stopping now" in out
    assert "Traceback" not in out

    async def pending() -> int:
        async with conveyor.connect(url) as backend:
            return (await backend.group_info("jobs", "slow")).pending

    assert asyncio.run(pending()) == 1


def test_a_third_sigint_exits_when_the_forced_stop_is_stuck(workdir: Path) -> None:
    """A handler that swallows every cancellation keeps the forced stop waiting for it;
    the third SIGINT exits at once."""
    _, proc = _run_app(
        workdir,
        """
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                print("swallowed a cancellation", flush=True)
        """,
    )
    try:
        _read_until(workdir, proc, "handling 1")
        proc.send_signal(signal.SIGINT)
        _read_until(workdir, proc, "stopping gracefully")  # two signals at once may arrive as one
        proc.send_signal(signal.SIGINT)
        _read_until(workdir, proc, "swallowed a cancellation")
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)  # the forced stop waits for the handler to end
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = _output(workdir)
    assert proc.returncode == 128 + signal.SIGINT, out
    assert "SIGINT a third time: exiting without closing anything" in out


def test_dlq_list_says_why_a_list_may_be_empty(workdir: Path) -> None:
    """An empty list of a stream that holds nothing either (a typo?), or of a dead-letter
    stream given as STREAM (it reads '<stream>.dead.dead'), comes with a hint."""
    url = "sqlite:///hints.db"
    assert CliRunner().invoke(main, ["publish", url, "orders", '{"n": 1}']).exit_code == 0
    typo = CliRunner().invoke(main, ["dlq", "list", url, "ordres"])
    assert typo.exit_code == 0
    assert typo.stderr.strip() == (
        "conveyor: stream 'ordres' holds no messages either: is its name right?"
    )
    dead = CliRunner().invoke(main, ["dlq", "list", url, "orders.dead"])
    assert dead.exit_code == 0
    assert "orders.dead.dead (0)" in dead.stdout
    assert "STREAM is the stream whose dead letters to list (here 'orders')" in dead.stderr
    fine = CliRunner().invoke(main, ["dlq", "list", url, "orders"])
    assert fine.exit_code == 0
    assert fine.stderr == ""  # no dead letters yet, and nothing to hint at
