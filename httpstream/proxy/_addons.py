"""Addons: mitmproxy's script API (the hooks streaming uses), sync or async.

``load_script(path)`` runs a Python file as a module; the addons it gives are
the module itself (its module-level hook functions) followed by the objects in
its module-level ``addons`` list, as mitmproxy does.  ``Addons.call(name, *args)``
calls that hook on every addon in order, awaiting the ones that return an
awaitable.  A hook that raises is logged with its traceback and the next one
runs: the flow goes on as if that hook had not run, and the proxy never dies of
an addon.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["HOOKS", "AddonError", "Addons", "load_script"]

log = logging.getLogger("httpstream.proxy")

HOOKS = frozenset(
    {
        "load",
        "running",
        "done",
        "requestheaders",
        "request",
        "responseheaders",
        "response",
        "error",
        "http_connect",
    }
)


class AddonError(Exception):
    """A script could not be loaded (missing file, syntax error, error at import)."""


def load_script(path: str | Path) -> list[object]:
    """The addons of one script file: the module, then its ``addons`` list."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise AddonError(f"script not found: {path}")
    name = f"__httpstream_script_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise AddonError(f"cannot load script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise AddonError(f"script {path} failed to load: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(file.parent))
    found: list[object] = [module]
    extra = getattr(module, "addons", None)
    if isinstance(extra, (list, tuple)):
        found.extend(extra)
    return found


class Addons:
    """The addon chain, called in order."""

    def __init__(self, addons: Iterable[object] = ()) -> None:
        self.addons: list[object] = list(addons)

    def has(self, hook: str) -> bool:
        return any(callable(getattr(addon, hook, None)) for addon in self.addons)

    async def call(self, hook: str, *args: object) -> None:
        for addon in self.addons:
            fn = getattr(addon, hook, None)
            if not callable(fn):
                continue
            try:
                result = fn(*_fit(fn, args))
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("addon %s: hook %s raised; the flow goes on", _name(addon), hook)


def _fit(fn: object, args: Sequence[object]) -> Sequence[object]:
    """``load(loader)`` and ``running()`` are called with what they take."""
    try:
        params = inspect.signature(fn).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return args
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return args
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return args[: len(positional)]


def _name(addon: object) -> str:
    name = getattr(addon, "__name__", None)
    if isinstance(name, str):
        return getattr(addon, "__file__", None) or name
    return type(addon).__name__
