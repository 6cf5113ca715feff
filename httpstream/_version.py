"""The package version, in one place (kept equal to ``version`` in pyproject.toml).

Stdlib only and imports nothing: layer 0, so every layer, the command line and
the User-Agent can read it without pulling the client in.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
