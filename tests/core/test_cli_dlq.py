"""``conveyor dlq list|show|requeue|purge`` on sqlite:// (a file) and Redis (a key prefix
of this test, deleted after it), over dead letters that a real processor wrote."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import conveyor
from conveyor import Message
from conveyor.cli import main
from conveyor.cli.dlq import format_age
from conveyor.dlq import DEAD_LETTER_ID_HEADER
from conveyor.options import split_options
from conveyor.testing import run_until_idle


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dlq.db'}"
        return
    from redis import Redis

    redis_url: str = request.getfixturevalue("redis_url")
    base, query = split_options(redis_url)
    prefix = f"conveyor-dlq-cli-{uuid.uuid4().hex[:8]}:"
    query["key_prefix"] = prefix
    yield base + "?" + "&".join(f"{k}={v}" for k, v in query.items())
    with Redis.from_url(base) as client:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


async def _dead_letter(url: str) -> None:
    """Three poison orders (two ValueError, one KeyError) dead-lettered by a processor."""

    async def charge(message: Message) -> None:
        if message.data["kind"] == "key":
            raise KeyError("no such card")
        raise ValueError(f"card {message.data['n']} declined")

    async with conveyor.connect(url) as backend:
        await backend.publish("orders", {"kind": "value", "n": 0}, headers={"traceparent": "t-0"})
        await backend.publish("orders", {"kind": "key", "n": 1})
        await backend.publish("orders", {"kind": "value", "n": 2})
        processor = conveyor.StreamProcessor(
            backend, "orders", "billing", "w", max_deliveries=1, message=True
        )
        processor.set_callback(charge)
        async with processor:
            await run_until_idle(processor, raise_errors=False, timeout=30)
        assert processor.stats.dead_lettered == 3


async def _source(url: str) -> list[Message]:
    async with conveyor.connect(url) as backend:
        return await backend.peek("orders", count=100)


def cli(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def listed(url: str, *args: str) -> dict[str, Any]:
    result = cli("dlq", "list", url, "orders", "--json", *args)
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_list_pages_filters_and_shows(url: str) -> None:
    asyncio.run(_dead_letter(url))
    page = listed(url)
    letters = page["dead_letters"]
    assert page["dead_letter_stream"] == "orders.dead"
    assert page["next_after"] is None
    assert [x["record"]["original"] for x in letters] == [
        {"kind": "value", "n": 0},
        {"kind": "key", "n": 1},
        {"kind": "value", "n": 2},
    ]
    assert [x["record"]["error_type"] for x in letters] == ["ValueError", "KeyError", "ValueError"]
    assert letters[0]["headers"] == {"traceparent": "t-0"}
    assert 0 <= letters[0]["age_seconds"] < 600
    ids = [x["id"] for x in letters]

    first = listed(url, "--limit", "2")
    assert [x["id"] for x in first["dead_letters"]] == ids[:2]
    assert first["next_after"] == ids[1]
    rest = listed(url, "--limit", "2", "--after", first["next_after"])
    assert [x["id"] for x in rest["dead_letters"]] == ids[2:]
    assert rest["next_after"] is None
    assert [x["id"] for x in listed(url, "--error-type", "KeyError")["dead_letters"]] == [ids[1]]
    assert listed(url, "--older-than", "1h")["dead_letters"] == []
    assert len(listed(url, "--newer-than", "1h")["dead_letters"]) == 3

    human = cli("dlq", "list", url, "orders", "--limit", "2")
    assert human.exit_code == 0, human.output
    assert ids[0] in human.output
    assert "ValueError" in human.output  # (the text may wrap in 80 columns)
    assert "KeyError" in human.output
    assert f"more: add --after {ids[1]}" in human.output

    shown = cli("dlq", "show", url, "orders", ids[0])
    assert shown.exit_code == 0, shown.output
    for text in (
        f"id:             {ids[0]}",
        "stream / group: orders / billing",
        "error:          ValueError: card 0 declined",
        "traceparent: t-0",
        '"kind": "value"',
        "traceback:",
        'raise ValueError(f"card {message.data',  # the handler's own line
    ):
        assert text in shown.output, shown.output
    as_json = json.loads(cli("dlq", "show", url, "orders", ids[1], "--json").stdout)
    assert as_json["record"]["original"] == {"kind": "key", "n": 1}
    assert as_json["record"]["delivery_count"] == 1
    missing = cli("dlq", "show", url, "orders", "no-such-id")
    assert missing.exit_code == 2
    assert missing.output.strip() == (
        f"error: no dead letter 'no-such-id' in orders.dead on {url.split('?')[0]}"
        + ("?" + url.split("?")[1] if "?" in url else "")
    )


def test_requeue_one_several_or_all_then_purge(url: str) -> None:
    asyncio.run(_dead_letter(url))
    ids = [x["id"] for x in listed(url)["dead_letters"]]
    before = len(asyncio.run(_source(url)))

    unknown = cli("dlq", "requeue", url, "orders", ids[0], "nope")
    assert unknown.exit_code == 2
    assert unknown.output.strip() == "error: no dead letter nope in orders.dead; nothing done"
    assert len(listed(url)["dead_letters"]) == 3  # all or nothing

    one = cli("dlq", "requeue", url, "orders", ids[0], "--json")
    assert one.exit_code == 0, one.output
    new_id = json.loads(one.stdout)["requeued"][ids[0]]
    source = asyncio.run(_source(url))
    assert len(source) == before + 1
    requeued = source[-1]
    assert requeued.id == new_id
    assert requeued.data == {"kind": "value", "n": 0}
    assert requeued.headers == {"traceparent": "t-0", DEAD_LETTER_ID_HEADER: ids[0]}
    assert [x["id"] for x in listed(url)["dead_letters"]] == ids[1:]

    by_type = cli("dlq", "requeue", url, "orders", "--all", "--error-type", "KeyError")
    assert by_type.exit_code == 0, by_type.output
    assert "requeued 1 dead letter(s)" in by_type.output
    assert f"{ids[1]} -> " in by_type.output
    assert [x["id"] for x in listed(url)["dead_letters"]] == [ids[2]]

    refused = cli("dlq", "purge", url, "orders", "--all", input="n\n")
    assert refused.exit_code == 1
    assert "Remove 1 dead letter(s) from orders.dead" in refused.output
    assert "nothing removed" in refused.output
    no_terminal = cli("dlq", "purge", url, "orders", "--all")  # no input to answer with
    assert no_terminal.exit_code == 2
    assert "pass --yes" in no_terminal.output
    # the unanswered prompt and the error on lines of their own
    assert no_terminal.output.splitlines()[-1] == (
        "error: purge asks for confirmation: run it in a terminal, or pass --yes"
    )
    assert len(listed(url)["dead_letters"]) == 1

    confirmed = cli("dlq", "purge", url, "orders", "--all", input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "purged 1 dead letter(s) from orders.dead" in confirmed.output
    assert listed(url)["dead_letters"] == []
    empty = cli("dlq", "purge", url, "orders", "--all", "--yes", "--json")
    assert json.loads(empty.stdout) == {"purged": 0}
    assert len(asyncio.run(_source(url))) == before + 2  # the two requeued copies


def test_requeue_all_and_purge_by_id_with_yes(url: str) -> None:
    asyncio.run(_dead_letter(url))
    ids = [x["id"] for x in listed(url)["dead_letters"]]
    purged = cli("dlq", "purge", url, "orders", ids[1], "--yes")
    assert purged.exit_code == 0, purged.output
    assert [x["id"] for x in listed(url)["dead_letters"]] == [ids[0], ids[2]]
    every = cli("dlq", "requeue", url, "orders", "--all", "--json")
    assert every.exit_code == 0, every.output
    assert sorted(json.loads(every.stdout)["requeued"]) == sorted([ids[0], ids[2]])
    assert listed(url)["dead_letters"] == []


def test_dlq_refuses_memory_and_takes_the_url_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = cli("dlq", "list", "memory://x", "orders")
    assert refused.exit_code == 2
    assert "memory:// lives inside one process" in refused.output
    url = f"sqlite:///{tmp_path / 'env.db'}"
    asyncio.run(_dead_letter(url))
    monkeypatch.setenv("CONVEYOR_URL", url)
    result = CliRunner().invoke(main, ["dlq", "list", "orders", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["dead_letters"]) == 3


def test_ages_read_like_a_person_writes_them() -> None:
    assert [format_age(s) for s in (None, 5, 192, 7500, 356400)] == [
        "?",
        "5s",
        "3m 12s",
        "2h 5m",
        "4d 3h",
    ]
