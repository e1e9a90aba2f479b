"""``MODULE:APP``: find the `App` a command runs, or say in one line why not."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from types import ModuleType, TracebackType
from typing import Any

from conveyor.app import App
from conveyor.errors import AppLoadError, ConveyorError

__all__ = ["load_app", "load_runnable_app"]

log = logging.getLogger("conveyor.cli")


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _where(module_name: str, tb: TracebackType | None) -> str:
    """``file:line`` of the innermost frame running the module being imported (or one of
    its parent packages), else of the innermost frame; relative to the working directory
    when under it."""
    parts = module_name.split(".")
    own = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
    found: tuple[str, int] | None = None
    last: tuple[str, int] | None = None
    while tb is not None:
        frame = tb.tb_frame
        last = (frame.f_code.co_filename, tb.tb_lineno)
        if frame.f_globals.get("__name__") in own:
            found = last
        tb = tb.tb_next
    file, line = found or last or ("?", 0)
    relative = os.path.relpath(file) if os.path.isabs(file) else file
    return f"{file if relative.startswith('..') else relative}:{line}"


def _import(module_name: str) -> ModuleType:
    """Import the user's module; any exception its code raises becomes an `AppLoadError`
    of one line (its traceback logged at debug level)."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        log.debug("importing %s failed", module_name, exc_info=True)
        missing = exc.name or ""
        if missing and missing != module_name and not module_name.startswith(f"{missing}."):
            raise AppLoadError(  # the module imports something that is not there
                f"importing {module_name} raised {type(exc).__name__}: {_one_line(str(exc))}"
                f" (at {_where(module_name, exc.__traceback__)})"
            ) from None
        raise AppLoadError(f"cannot import module {module_name!r}: {exc}") from None
    except SyntaxError as exc:
        where = f" ({exc.filename}, line {exc.lineno})" if exc.filename else ""
        raise AppLoadError(
            f"cannot import module {module_name!r}: SyntaxError: {exc.msg}{where}"
        ) from None
    except ConveyorError as exc:  # conveyor refused something the module declared
        log.debug("importing %s failed", module_name, exc_info=True)
        where = _where(module_name, exc.__traceback__)
        raise AppLoadError(f"{module_name}: {_one_line(str(exc))} (at {where})") from None
    except Exception as exc:
        log.debug("importing %s failed", module_name, exc_info=True)
        what = type(exc).__name__
        message = _one_line(str(exc))
        raise AppLoadError(
            f"importing {module_name} raised {what}{': ' + message if message else ''}"
            f" (at {_where(module_name, exc.__traceback__)})"
        ) from None


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


def _file_instead_of_module(file: str, attr: str) -> str:
    """What to write instead of a file path (``billing.py:app``, ``src/billing.py:app``)."""
    path = os.path.normpath(file[:-3] if file.endswith(".py") else file)
    if os.path.basename(path) == "__init__":  # pkg/__init__.py is the package pkg
        path = os.path.dirname(path)
    if not os.path.basename(path).isidentifier():  # nothing to suggest: ".py", "/__init__.py"
        return f"expected module:app, got the file path {file!r}: give the module's dotted name"
    if os.path.isabs(path) or path.split(os.sep)[0] == "..":
        directory, name = os.path.split(path)
        how = f"{name}:{attr}, run from {directory} or with PYTHONPATH={directory}"
    else:
        how = f"{path.replace(os.sep, '.')}:{attr}"
    return f"expected module:app, got the file path {file!r}: give its module, {how}"


def load_app(path: str) -> App:
    """Import ``module:attribute`` and return the `App` it names (or a factory's result).

    Raises:
        AppLoadError: with one line saying what is wrong.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f"expected module:app, got {path!r}")
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        raise AppLoadError(_file_instead_of_module(module_name, attr))
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = _import(module_name)
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
