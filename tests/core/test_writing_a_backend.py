"""The complete minimal backend of docs/writing-a-backend.md passes the conformance suite."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conveyor.protocol import StreamBackend
from conveyor.testing import Features
from conveyor.testing.conformance import BackendConformance, OpenBackend

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "minimal_backend.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("minimal_backend", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


MINIMAL = _example()


class TestMinimalBackendConformance(BackendConformance):
    features = Features(
        durable=False, range_reads=False, deletes=False, stream_deletes=False, stream_listing=False
    )
    claim_idle = 0.3
    timeout = 5.0

    @pytest.fixture
    def open_backend(self) -> OpenBackend:
        streams: dict[str, Any] = {}  # one "broker" shared by every backend of a test

        async def factory() -> StreamBackend:
            backend: StreamBackend = MINIMAL.DictBackend(streams)
            return backend

        return factory
