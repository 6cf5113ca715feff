"""Short runs of the parser and pool fuzz targets (fuzz/), in-process.

The long runs are ``python -m fuzz TARGET --minutes 10`` (fuzz/README.md);
these only check, with fixed seeds and a few seconds each, that every target
still passes, that it reaches both sides (inputs accepted and inputs refused),
and that the command line lists and runs them.
"""

from __future__ import annotations

import pytest

from fuzz import TARGETS, run_target
from fuzz.__main__ import main
from fuzz._harness import Settings

SEED = 20260101


def smoke(examples: int) -> Settings:
    # No example database: a smoke run is the same every time.
    return Settings(examples=examples, seed=SEED, read_timeout=0.1, hang_after=10.0, database=None)


@pytest.mark.parametrize(
    ("target", "examples", "accepted", "refused"),
    [
        ("urls", 250, "parsed", "refused"),
        ("headers", 250, "add", "add-refused"),
        ("sse", 300, "1 events", "DecodingError"),
        ("lines", 300, "1 lines", "DecodingError"),
        ("ndjson", 250, "1 values", "DecodingError"),
        ("decoders", 300, "decoded", "DecodingError"),
    ],
)
@pytest.mark.timeout(30)
def test_parser_target_smoke(target: str, examples: int, accepted: str, refused: str) -> None:
    result = run_target(target, smoke(examples))
    assert result.ok, f"{result.summary_line()}\n{result.failure}"
    assert result.examples_run >= examples
    assert result.outcomes[accepted] > 0, result.summary_line()
    assert result.outcomes[refused] > 0, result.summary_line()


@pytest.mark.timeout(60)
def test_pool_target_smoke() -> None:
    result = run_target("pool", smoke(25))
    assert result.ok, f"{result.summary_line()}\n{result.failure}"
    assert result.examples_run >= 25
    assert result.outcomes["complete"] > 0, result.summary_line()
    assert result.outcomes["closed-early"] + result.outcomes["read-cancelled"] > 0, result.summary_line()


@pytest.mark.timeout(30)
def test_timed_campaign_runs_batches_until_the_time_is_up() -> None:
    settings = Settings(minutes=2 / 60, seed=SEED, database=None)
    result = run_target("lines", settings)
    assert result.ok, result.failure
    assert result.batches >= 2, result.summary_line()
    assert 1.5 <= result.elapsed < 10, result.summary_line()


def test_command_line_lists_every_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(TARGETS)
    assert {"urls", "headers", "sse", "lines", "ndjson", "decoders", "pool"} <= set(listed)


def test_command_line_runs_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decoders", "--examples", "20", "--seed", str(SEED), "--no-database"]) == 0
    assert "fuzz decoders: OK: 20 examples run" in capsys.readouterr().out
