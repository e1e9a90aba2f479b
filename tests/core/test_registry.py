"""connect(), entry points and URL options."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import conveyor
from conveyor import registry
from conveyor.errors import BackendNotInstalledError, ConfigurationError, UnknownSchemeError
from conveyor.options import redact_url
from conveyor_memory import MemoryBackend


def test_available_backends_lists_installed_schemes() -> None:
    backends = conveyor.available_backends()
    assert "memory" in backends
    assert backends["memory"].startswith("conveyor-memory")


async def test_connect_is_awaitable_and_a_context_manager() -> None:
    backend = await conveyor.connect("memory://reg-a")
    assert isinstance(backend, MemoryBackend)
    await backend.aclose()
    async with conveyor.connect("memory://reg-b") as ctx:
        assert isinstance(ctx, MemoryBackend)
        await ctx.publish("s", {"a": 1})
    with pytest.raises(conveyor.ConveyorError):
        await ctx.publish("s", {"a": 1})  # closed on exit


async def test_unknown_scheme_names_installed_schemes() -> None:
    with pytest.raises(UnknownSchemeError, match=r"installed schemes: .*memory://"):
        await conveyor.connect("carrierpigeon://coop")


async def test_known_but_missing_backend_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    only_memory = {
        "memory": EntryPoint("memory", "conveyor_memory:open_backend", "conveyor.backends")
    }
    monkeypatch.setattr(registry, "_entry_points", lambda: only_memory)
    with pytest.raises(
        BackendNotInstalledError,
        match=r"pip install 'conveyor\[kafka\]' \(the conveyor-kafka distribution",
    ):
        await conveyor.connect("kafka://localhost:9092")


async def test_unknown_option_is_rejected_with_valid_ones() -> None:
    with pytest.raises(
        ConfigurationError, match=r"unknown option 'bogus'.*valid options: .*maxlen"
    ):
        await conveyor.connect("memory://x?bogus=1")


async def test_option_values_are_validated_and_converted() -> None:
    with pytest.raises(ConfigurationError, match="maxlen='many'"):
        await conveyor.connect("memory://x?maxlen=many")
    async with conveyor.connect("memory://trim?maxlen=3") as backend:
        assert isinstance(backend, MemoryBackend)
        await backend.publish_many("s", [{"n": i} for i in range(5)])
        assert [m.data["n"] for m in await backend.peek("s", count=10)] == [2, 3, 4]


async def test_option_in_url_and_keyword_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="both in the URL and as keywords"):
        await conveyor.connect("memory://x?maxlen=3", maxlen=4)


async def test_not_a_url() -> None:
    with pytest.raises(ConfigurationError, match="not a backend URL"):
        await conveyor.connect("localhost:6379")


def test_redact_url_hides_passwords() -> None:
    assert redact_url("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert "s3cret" not in redact_url("nats://s3cret@host:4222")
    assert redact_url("memory://x") == "memory://x"
    assert "s3cret" not in repr(conveyor.connect("redis://u:s3cret@h:1/0"))
