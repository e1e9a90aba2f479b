"""Every example in docs/examples runs (docs that no longer work fail CI)."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def test_middleware(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "middleware.py"), run_name="__main__")
    lines = [re.sub(r"\(\d+ ms\)", "(N ms)", line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        "orders/billing {'order_id': 0} dead_letter (N ms)",
        "orders/billing {'order_id': 1} success (N ms)",
        "orders/billing {'order_id': 2} success (N ms)",
        "dead letter: {'order_id': 0} PermissionError",
    ]


def test_observability(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "observability.py"), run_name="__main__")
    assert capsys.readouterr().out.splitlines() == [
        "publish orders (sent) -> process orders (retry) -> process orders (dead_letter)",
        "publish orders (sent) -> process orders (success)",
        'conveyor_messages_handled_total{group="billing",stream="orders"} 1.0',
        'conveyor_messages_dead_lettered_total{group="billing",stream="orders"} 1.0',
        "charged order 2 orders 1",
    ]


def test_typed(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "typed.py"), run_name="__main__")
    assert capsys.readouterr().out.splitlines() == [
        "bill order 1: 1 items 2026-11-28 09:30:00+00:00",
        "refund 9.50 on order 1",
        "ship order 1 with ups",
        "dead letter after 1 delivery: payload is not a valid Order (3 validation errors):"
        " order_id: Input should be a valid integer, unable to parse string as an integer;"
        " items.0.qty: Input should be greater than 0; placed_at: Field required",
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


def _hooks() -> Any:
    return runpy.run_path(str(EXAMPLES.parent / "hooks.py"))


@pytest.mark.parametrize(
    ("html", "found"),
    [
        ('<pre><code>--8 &lt; --"examples/first_app.py"</code></pre>', ["--8 < --"]),
        ('<p><span>--8&lt;--</span> "x.py"</p>', ["--8<--"]),
        ("<pre><code>import conveyor\napp = conveyor.App()</code></pre>", []),
        ("<p>a -- b &lt; c</p>", []),
    ],
)
def test_docs_build_hook_finds_include_markers_left_in_pages(html: str, found: list[str]) -> None:
    assert _hooks()["find_include_markers"](html) == found


def test_built_pages_contain_every_included_example() -> None:
    """The pages that include examples show them (the strict build runs the hook)."""
    pages = ("quickstart.md", "testing.md", "writing-a-backend.md", "middleware.md")
    for page in (*pages, "observability.md"):
        text = (EXAMPLES.parent / page).read_text()
        for line in text.splitlines():
            if "8<--" in line or "8 <" in line:
                assert line.startswith('--8<-- "'), (page, line)
