"""``MODULE:APP``: find the `App` a command runs, or say in one line why not."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from types import ModuleType
from typing import Any

from conveyor.app import App
from conveyor.errors import AppLoadError

__all__ = ["load_app", "load_runnable_app"]


def _hint(module: ModuleType, module_name: str) -> str:
    apps = sorted(name for name, value in vars(module).items() if isinstance(value, App))
    if not apps:
        return ""
    return " (did you mean " + " or ".join(f"{module_name}:{name}" for name in apps) + "?)"


def _call_factory(path: str, factory: Any, hint: str) -> object:
    if inspect.iscoroutinefunction(factory):
        raise AppLoadError(
            f"{path} is an async function (a handler?), not an App or a function returning"
            f" one{hint}"
        )
    try:
        required = [
            p.name
            for p in inspect.signature(factory).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):  # no signature to read: call it and see
        required = []
    if required:
        raise AppLoadError(
            f"{path} is a function taking {', '.join(required)} (a handler?), not an App or"
            f" a function returning one{hint}"
        )
    try:
        return factory()
    except Exception as exc:
        raise AppLoadError(f"app factory {path} failed: {type(exc).__name__}: {exc}") from exc


def load_app(path: str) -> App:
    """Import ``module:attribute`` and return the `App` it names (or a factory's result).

    Raises:
        AppLoadError: with one line saying what is wrong.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f"expected module:app, got {path!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"cannot import module {module_name!r}: {exc}") from None
    except SyntaxError as exc:
        where = f" ({exc.filename}, line {exc.lineno})" if exc.filename else ""
        raise AppLoadError(
            f"cannot import module {module_name!r}: SyntaxError: {exc.msg}{where}"
        ) from None
    try:
        obj: Any = getattr(module, attr)
    except AttributeError:
        raise AppLoadError(
            f"module {module_name!r} has no attribute {attr!r}{_hint(module, module_name)}"
        ) from None
    if inspect.isfunction(obj):  # an app factory
        obj = _call_factory(path, obj, _hint(module, module_name))
        if inspect.iscoroutine(obj):
            obj.close()
            raise AppLoadError(f"{path} returned a coroutine, not a conveyor.App")
    if not isinstance(obj, App):
        raise AppLoadError(
            f"{path} is a {type(obj).__name__}, not a conveyor.App{_hint(module, module_name)}"
        )
    return obj


def load_runnable_app(path: str) -> App:
    """`load_app`, refusing an App with no handlers (there would be nothing to run).

    Raises:
        AppLoadError: with one line saying what is wrong.
    """
    app = load_app(path)
    if not app.handlers:
        attr = path.partition(":")[2]
        raise AppLoadError(
            f"{path} has no handlers: register one with @{attr}.handler(STREAM) first"
        )
    return app
