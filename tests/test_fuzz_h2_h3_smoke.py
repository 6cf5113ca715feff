"""Short runs of the h2 and h3 fuzz targets (fuzz/h2.py, fuzz/h3.py), in-process.

The long runs are ``python -m fuzz h2 --examples 2000`` and ``python -m fuzz h3
--examples 1000``; these only check that a fixed-seed campaign of a few seconds
passes and really reaches both sides (bodies read to the end, and peers caught
misbehaving).
"""

from __future__ import annotations

import pytest

from fuzz import run_target
from fuzz._harness import Settings

# The read timeout is what examples with a silent peer cost; 0.1 s keeps the runs short.
H2_SMOKE = Settings(examples=150, seed=20260101, read_timeout=0.1, hang_after=10.0)
H3_SMOKE = Settings(examples=100, seed=20260101, read_timeout=0.1, hang_after=10.0)


@pytest.mark.timeout(90)
def test_h2_fuzz_smoke() -> None:
    result = run_target("h2", H2_SMOKE)
    assert result.ok, f"{result.summary_line()}\n{result.failure}"
    assert result.examples_run >= H2_SMOKE.examples
    assert result.outcomes["complete"] > 0
    assert result.outcomes["RemoteProtocolError"] > 0


@pytest.mark.timeout(90)
def test_h3_fuzz_smoke() -> None:
    result = run_target("h3", H3_SMOKE)
    assert result.ok, f"{result.summary_line()}\n{result.failure}"
    assert result.examples_run >= H3_SMOKE.examples
    assert result.outcomes["complete"] > 0
    assert result.outcomes["RemoteProtocolError"] > 0
