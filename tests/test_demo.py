"""`httpstream demo` and the command-line dispatch in httpstream/__main__.py.

The demo checks its own claims (bytes received, lines streamed, connection reuse
counted by the server) and exits 1 when one does not hold, so exit status 0
plus the key lines is the whole assertion.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from httpstream.__main__ import main

KEY_LINES = (
    "received == Content-Length: True",
    "each line arrived as it was sent",
    "connection REUSED",
    "connection CLOSED",
    "negotiated protocol: HTTP/1.1",
    "demo finished OK",
)


def check_output(out: str) -> None:
    for line in KEY_LINES:
        assert line in out, f"{line!r} missing from the demo output:\n{out}"
    assert "UNEXPECTED" not in out
    table = out[out.index("Summary") :]
    for step in ("large download", "line stream", "early close, small rest", "early close, large rest", "total"):
        assert step in table


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_as_the_readme_runs_it() -> None:
    """The full demo (256 MiB download) in a subprocess, as `httpstream demo` runs."""
    proc = subprocess.run(
        [sys.executable, "-m", "httpstream", "demo"],
        capture_output=True,
        text=True,
        timeout=100,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    check_output(proc.stdout)
    assert "268435456 bytes in" in proc.stdout
    assert proc.stderr == ""


@pytest.mark.timeout(120)
def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    """A smaller run in this process, so warnings are errors and coverage sees it."""
    status = main(["demo", "--size", "16", "--lines", "4", "--interval", "0.05"])
    out = capsys.readouterr().out
    assert status == 0, out
    check_output(out)
    assert "16777216 bytes in" in out
    from httpstream._demo import FLAVOURS

    assert out.count('"event": "tick"') == 4 * len(FLAVOURS)  # every protocol streams the lines


def test_console_script_points_at_main() -> None:
    (script,) = entry_points(group="console_scripts", name="httpstream")
    assert script.load() is main


@pytest.mark.parametrize("argv", [[], ["bogus"], ["https://example.org/"]])
def test_anything_but_demo_prints_usage_and_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: httpstream" in captured.err
    assert "demo" in captured.err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "usage: httpstream" in capsys.readouterr().out


def test_demo_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--size", "0"])
    assert info.value.code == 2
    assert "--size" in capsys.readouterr().err
