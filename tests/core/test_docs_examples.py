"""Every example in docs/examples runs (docs that no longer work fail CI)."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def test_first_app(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "first_app.py"), run_name="__main__")
    assert "charged [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]; pending 0" in capsys.readouterr().out


def test_dispatch(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "dispatch.py"), run_name="__main__")
    assert capsys.readouterr().out.splitlines() == [
        "welcome ada",
        "account manager for ada",
        "welcome bob",
        "goodbye bob (delivery 1)",
    ]


def test_user_test_example_passes() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "test_orders.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
