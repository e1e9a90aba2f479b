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


def test_a_second_sigint_stops_run_at_once_leaving_the_message_pending(workdir: Path) -> None:
    """The first SIGINT waits for the running handler (up to its shutdown_timeout, 600 s
    here); the second stops at once, and the unfinished message stays pending."""
    (workdir / "slowapp.py").write_text(
        textwrap.dedent("""
        import asyncio
        from conveyor import App

        app = App("slow")

        @app.handler("jobs", shutdown_timeout=600)
        async def job(payload):
            print("handling", payload["n"], flush=True)
            await asyncio.sleep(3600)
    """)
    )
    url = f"sqlite:///{workdir / 'slow.db'}"
    assert CliRunner().invoke(main, ["publish", url, "jobs", '{"n": 1}']).exit_code == 0
    env = {**os.environ, "CONVEYOR_URL": url, "PYTHONPATH": str(workdir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "run", "slowapp:app"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline()]
        while "handling 1" not in lines[-1]:
            assert lines[-1], "run ended before handling: " + "".join(lines)
            lines.append(proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)  # graceful: waiting for the handler
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, out
    assert "SIGINT again: stopping now" in out
    assert "Traceback" not in out

    async def pending() -> int:
        async with conveyor.connect(url) as backend:
            return (await backend.group_info("jobs", "slow")).pending

    assert asyncio.run(pending()) == 1
