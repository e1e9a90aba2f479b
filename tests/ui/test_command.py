"""``conveyor ui`` from the command line: bad input ends in one line and exit code 2; a
real server answers on a loopback port."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

import conveyor
from conveyor.cli import main
from conveyor.testing.processes import free_port


def _create(db: Path) -> None:
    """An empty database at `db` (the UI only reads: it does not create one)."""

    async def create() -> None:
        async with conveyor.connect(f"sqlite:///{db}"):
            pass

    asyncio.run(create())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "nope://x"], "UnknownSchemeError"),
        (["--url", "memory://"], "memory:// lives inside one process"),
        ([], "give the backend URL"),
        (["--url", "sqlite:///{tmp}/ui.db", "--group", "no-colon"], "expected STREAM:GROUP"),
        (["--url", "redis://u:pw-s3cret@127.0.0.1:{dead}/0"], "BrokerUnavailableError"),
        (["--url", "sqlite:///{tmp}/ui.db", "--port", "{busy}"], "port in use"),
        (["--url", "sqlite:///{tmp}/typo.db"], "no SQLite database at {tmp}/typo.db (a typo?"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    _create(tmp_path / "ui.db")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        filled = [
            a.format(tmp=tmp_path, dead=free_port(), busy=busy.getsockname()[1]) for a in args
        ]
        result = CliRunner().invoke(main, ["ui", *filled])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert message.format(tmp=tmp_path) in lines[0]
    assert "pw-s3cret" not in result.output
    assert not (tmp_path / "typo.db").exists()


def test_serves_on_loopback_until_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "ui.db"
    _create(db)
    server = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "ui", "--url", f"sqlite:///{db}", "--port", "0",
         "--stream", "orders", "--read-only"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found is not None, line
        port = int(found.group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            page = response.read().decode()
        assert 'data-stream="orders"' in page
        assert "read-only" in page
        # another Host header (a DNS-rebinding page) is refused on a loopback bind
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": "evil.test"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()
        assert refused.value.code == 400
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()
    assert server.returncode == 0
