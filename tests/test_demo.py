"""`httpstream demo`: HTTP/1.1, HTTP/2 and HTTP/3 against its own loopback server.

The demo checks its own claims (bytes received, progress reported, events and
objects streamed, connection reuse and stream resets as the *server* saw them)
and exits 1 when one does not hold, so exit status 0 plus the key lines is the
whole assertion; one test breaks an expectation on purpose to show the checks
bite.  The command-line dispatch itself is tested with the CLI.
"""

from __future__ import annotations

import dataclasses
import io
import re
import subprocess
import sys

import pytest

from httpstream import demo
from httpstream.__main__ import main
from httpstream.demo import _run as demo_run

KEY_LINES = (
    "received == Content-Length: True",
    "each event arrived as it was sent",
    "each object arrived as it was sent",
    "drained, connection REUSED",
    "connection CLOSED, new one opened",
    "stream RESET, connection kept",
    "negotiated protocols: HTTP/1.1, HTTP/2, HTTP/3 (response.http_version); "
    "the server's ASGI scope says HTTP/1.1, HTTP/2, HTTP/3",
    "demo finished OK",
)
STEPS = ("large download", "SSE feed", "NDJSON stream", "early close, small rest", "early close, large rest")


def check_output(out: str, records: int) -> None:
    for line in KEY_LINES:
        assert line in out, f"{line!r} missing from the demo output:\n{out}"
    assert "UNEXPECTED" not in out
    for protocol in ("HTTP/1.1", "HTTP/2", "HTTP/3"):
        assert f"=== {protocol} ===" in out
    # Every protocol streamed every record, read through aiter_sse() and aiter_json().
    assert len(re.findall(r"id=\d+ event=tick data=\{\"seq\": \d+\}", out)) == records * 3
    assert len(re.findall(r"\{'seq': \d+, 'kind': 'reading'", out)) == records * 3
    # Only HTTP/1.1 drains and closes; HTTP/2 and HTTP/3 reset both early closes.
    assert out.count("-> drained, connection REUSED") == 1
    assert out.count("-> connection CLOSED, new one opened") == 1
    assert out.count("-> stream RESET, connection kept") == 4
    table = out[out.index("Summary") :]
    for protocol in ("HTTP/1.1", "HTTP/2", "HTTP/3"):
        for step in STEPS:
            assert re.search(rf"^  {re.escape(step)} +{re.escape(protocol)} ", table, re.M), (step, protocol)
    assert re.search(r"^  total +3 protocol\(s\) .* 0 failed check\(s\) +4/4$", table, re.M), table


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_as_the_readme_runs_it() -> None:
    """The full demo (256 MiB over HTTP/1.1 and HTTP/2, 64 MiB over HTTP/3) in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "httpstream", "demo"],
        capture_output=True,
        text=True,
        timeout=110,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    check_output(proc.stdout, records=8)
    assert proc.stdout.count("268435456 bytes in") == 2
    assert proc.stdout.count("67108864 bytes in") == 1
    assert proc.stdout.count("100.0 %") == 3  # not a terminal: the plain progress lines
    assert proc.stderr == ""


class FakeTerminal(io.StringIO):
    """Captured output that says it is a terminal, so the demo draws rich's bar."""

    def isatty(self) -> bool:
        return True


@pytest.mark.timeout(120)
def test_demo_in_process_with_the_rich_bar() -> None:
    """A small run in this process (warnings are errors, coverage sees it), as on a terminal."""
    out = FakeTerminal()
    status = demo.run(["--size", "16", "--h3-size", "4", "--lines", "4", "--interval", "0.05"], out=out)
    text = out.getvalue()
    assert status == 0, text
    check_output(text, records=4)
    assert text.count("16777216 bytes in") == 2
    assert "4194304 bytes in" in text
    assert "16.8/16.8 MB" in text  # rich's DownloadColumn at the end of a bar
    assert "\x1b[" in text  # drawn with terminal control sequences


def test_a_claim_that_does_not_hold_makes_the_demo_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Expect HTTP/1.1's release rule from HTTP/2: the server sees resets, so the checks fail."""
    wrong = dataclasses.replace(demo_run.FLAVOURS[1], multiplexed=False)
    monkeypatch.setattr(demo_run, "FLAVOURS", (wrong,))  # the tuple _run reads
    out = io.StringIO()
    status = demo.run(["--size", "1", "--lines", "2", "--interval", "0.01"], out=out)
    text = out.getvalue()
    assert status == 1, text
    assert "small remainder: the server says aborted, expected complete" in text
    assert "large remainder: server accepted 0 new connections, expected 1" in text
    assert "demo FAILED: 2 check(s) did not hold" in text
    assert "demo finished OK" not in text


def test_demo_is_reached_through_main_and_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--h3-size", "0"])
    assert info.value.code == 2
    assert "--h3-size" in capsys.readouterr().err
