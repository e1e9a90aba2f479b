"""``conveyor ui``: a small web dashboard of streams, groups and dead letters.

Needs the ``ui`` extra (``pip install 'conveyor[ui]'``: Starlette, Jinja2, uvicorn); this
package imports them only when an app is created, so the CLI loads without them.

```python
from conveyor.ui import UiSettings, create_app

app = create_app(UiSettings("redis://localhost:6379/0", streams=("orders",),
                            groups=(("orders", "billing"),), read_only=True))
# serve `app` with uvicorn, or run `conveyor ui --url ... --stream orders`
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.ui.settings import UiSettings, parse_group

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from conveyor.base import BaseBackend

__all__ = ["UiSettings", "create_app", "parse_group"]


def create_app(settings: UiSettings, *, backend: BaseBackend | None = None) -> Starlette:
    """The UI as a Starlette app (see `conveyor.ui.app.create_app`)."""
    from conveyor.ui.app import create_app as create

    return create(settings, backend=backend)
