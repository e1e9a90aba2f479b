"""How tests find a broker: env var, local port, launcher, container, else skip/fail."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from conveyor.testing.servers import Launcher, ServerSpec, find_server


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spec(port: int, launcher: Launcher | None = None) -> ServerSpec:
    url = f"thing://127.0.0.1:{port}"
    return ServerSpec("Thing", "CONVEYOR_TEST_THING_URL", "127.0.0.1", port, url, launcher)


def test_env_var_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_THING_URL", "thing://elsewhere:1")
    with find_server(_spec(_closed_port())) as url:
        assert url == "thing://elsewhere:1"


def test_open_local_port_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_TEST_THING_URL", raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = int(server.getsockname()[1])
        with find_server(_spec(port)) as url:
            assert url == f"thing://127.0.0.1:{port}"


def test_launcher_runs_when_nothing_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_TEST_THING_URL", raising=False)
    events: list[str] = []

    @contextlib.contextmanager
    def launch() -> Iterator[str]:
        events.append("start")
        yield "thing://launched:1"
        events.append("stop")

    with find_server(_spec(_closed_port(), launcher=launch)) as url:
        assert url == "thing://launched:1"
    assert events == ["start", "stop"]


def test_missing_server_skips_on_a_laptop_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONVEYOR_TEST_THING_URL", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "")
    spec = _spec(_closed_port())
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="no Thing server"), find_server(spec):
        pass
    monkeypatch.setenv("CI", "true")
    with (
        pytest.raises(pytest.fail.Exception, match="CI=true and no Thing server"),
        find_server(spec),
    ):
        pass
