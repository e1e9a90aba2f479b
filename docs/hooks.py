"""mkdocs hooks: fail the build when a page still shows an include marker.

pymdownx.snippets replaces ``--8<-- "file"`` lines with the file; a marker that a formatter
mangled (``--8 < --"file"``) or that pointed nowhere survives as literal text, and the page
silently shows it instead of the example. This hook turns that into a build error.
"""

from __future__ import annotations

import html
import re
from typing import Any

from mkdocs.exceptions import PluginError

__all__ = ["find_include_markers", "on_page_content"]

_MARKER = re.compile(r"-{1,2}\s*8\s*<\s*-{1,2}")


def find_include_markers(rendered: str) -> list[str]:
    """The include markers left in a rendered page (HTML), as they read."""
    text = html.unescape(re.sub(r"<[^>]+>", "", rendered))
    return [m.group(0) for m in _MARKER.finditer(text)]


def on_page_content(content: str, page: Any, **kwargs: Any) -> str:
    left = find_include_markers(content)
    if left:
        raise PluginError(
            f"{page.file.src_path}: include marker(s) {left} were not replaced by their"
            ' file; write them as --8<-- "path" (wrap python fences in'
            " <!-- fmt: off --> / <!-- fmt: on --> so ruff format leaves them alone)"
        )
    return content
