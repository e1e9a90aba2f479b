"""`UiState`: what every request handler of one UI app shares."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from conveyor.base import BaseBackend
from conveyor.errors import BackendClosedError
from conveyor.ui.gather import Catalog
from conveyor.ui.redaction import Scrubber
from conveyor.ui.sampler import Sampler
from conveyor.ui.settings import UiSettings

__all__ = ["UiState", "ui_state"]


@dataclass
class UiState:
    """Settings, the open backend, the catalog of streams, the samples, the guards."""

    settings: UiSettings
    templates: Jinja2Templates
    catalog: Catalog
    sampler: Sampler
    scrub: Scrubber
    csrf: str
    shown_url: str
    backend: BaseBackend | None = None

    def require_backend(self) -> BaseBackend:
        if self.backend is None:
            raise BackendClosedError("the UI's backend is not open (the app is not running)")
        return self.backend


def ui_state(request: Request) -> UiState:
    state: UiState = request.app.state.ui
    return state
