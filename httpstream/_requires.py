"""The version check each ``_hN/_internals`` module runs at import.

Each backend relies on a few private internals of its wire library (h11, h2,
aioquic); they can change in any release, so a backend refuses, at import, a
library version outside the range those internals were verified against, with
an ImportError naming the range and the installed version, instead of failing
later with an AttributeError deep in a connection.  Stdlib only: layer 0.
"""

from __future__ import annotations

import importlib.metadata
import re

__all__ = ["require_version"]


def _release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: ``"4.4.1"`` -> ``(4, 4, 1)``, ``"1.2.0rc1"`` -> ``(1, 2, 0)``."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    if match is None:
        raise ImportError(f"cannot read the version {version!r}")
    parts = [int(part) for part in match[0].split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()  # "1.2.0" and "1.2" compare equal
    return tuple(parts)


def require_version(dist: str, minimum: str, below: str, installed: str | None = None) -> str:
    """Check that ``minimum <= installed < below``; return the installed version.

    ``installed`` defaults to the version of the installed distribution ``dist``
    (tests pass a string).  Raises ImportError with the supported range and the
    installed version when it is outside, or when ``dist`` is not installed.
    """
    supported = f"{dist}>={minimum},<{below}"
    if installed is None:
        try:
            installed = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            raise ImportError(f"httpstream needs {supported}, and {dist} is not installed") from None
    if not _release(minimum) <= _release(installed) < _release(below):
        raise ImportError(
            f"httpstream supports {supported} (it relies on internals verified for that range), "
            f"but {dist} {installed} is installed; install a supported version"
        )
    return installed
