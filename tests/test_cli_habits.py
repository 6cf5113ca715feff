"""What curl and HTTPie users type, and what they expect back: flags, heads, errors, --sse, the progress bar.

The flag rule (docs/cli.md, "curl and HTTPie"): an option curl has means what
it means in curl; request items are HTTPie's; where HTTPie spells an option
the same way for something else, a command line that reads like HTTPie's is
refused with what to type instead.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from pathlib import Path

import pytest

from httpstream.cli import main
from httpstream.cli._args import parse_args

from .peers.servers import FaultServer, HypercornServer, read_request


def run(capsysbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, bytes, str]:
    status = main(list(argv))
    captured = capsysbinary.readouterr()
    return status, captured.out, captured.err.decode()


def echo(out: bytes) -> dict[str, object]:
    info = json.loads(out)
    assert isinstance(info, dict)
    return info


def header(info: dict[str, object], name: str) -> list[str]:
    headers = info["headers"]
    assert isinstance(headers, list)
    return [v for k, v in headers if k == name]


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("httpstream: ") and "Traceback" not in err, err
    return err


# -- flags: curl's meaning for curl's options ------------------------------------------------


def test_dash_f_is_fail_and_dash_capital_f_is_multipart(
    server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    assert run(capsysbinary, "-f", server.url("/status/404"))[:2] == (22, b"")
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"file body\n")
    value = tmp_path / "value.txt"
    value.write_bytes(b"from a file")
    status, out, err = run(
        capsysbinary, server.url("/echo"), "-F", "title=hi", "-F", f"doc=@{upload}", "-F", f"raw=<{value}",
        "-F", f"typed=@{upload};type=text/x-test;filename=renamed.txt",
    )
    assert status == 0, err
    info = echo(out)
    assert info["method"] == "POST"
    assert header(info, "content-type")[0].startswith("multipart/form-data; boundary=")
    body = str(info["body"])
    assert 'name="title"\r\n\r\nhi\r\n' in body
    assert 'name="doc"; filename="notes.txt"' in body and "file body\n" in body
    assert 'name="raw"\r\n\r\nfrom a file\r\n' in body  # name=<FILE: the contents, no filename
    assert 'name="typed"; filename="renamed.txt"\r\nContent-Type: text/x-test' in body

    status, out, _ = run(capsysbinary, server.url("/echo"), "-F", "only=text")  # multipart without a file
    assert status == 0 and header(echo(out), "content-type")[0].startswith("multipart/form-data")


def test_curl_aliases(server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, _ = run(capsysbinary, "-A", "probe/1", "--location", server.url("/redirect/1"))
    info = echo(out)
    assert status == 0 and info["path"] == "/echo" and header(info, "user-agent") == ["probe/1"]
    assert parse_args(["-x", "http://127.0.0.1:3128", "http://h/"]).proxy == "http://127.0.0.1:3128"
    status, _, err = run(capsysbinary, "--fo", "a=1", "http://h/")  # no abbreviations, as curl
    assert status == 2 and "--fo" in err


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--json", "POST", "http://h/", "a=1"], ["--json takes the JSON body", "'POST' is not JSON"]),
        (["-f", "POST", "http://h/", "a=1"], ["-f is --fail", "--form-items"]),
        (["--form", "POST", "http://h/", "a=1"], ["-F takes name=value", "--form-items"]),
        (["-F", "a=1", "http://h/", "b=2"], ["one request body"]),
    ],
)
def test_httpie_spellings_that_collide_are_refused_clearly(
    argv: list[str], needles: list[str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, out, err = run(capsysbinary, *argv)
    assert (status, out) == (2, b"")
    for needle in needles:
        assert needle in one_line(err), err


def test_fail_spelled_long_goes_with_items(server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, _ = run(capsysbinary, "--fail", server.url("/echo"), "a=1")
    assert status == 0 and json.loads(str(echo(out)["body"])) == {"a": "1"}
    status, out, _ = run(capsysbinary, "--json", '{"k": 1}', server.url("/echo"))
    assert status == 0 and echo(out)["body"] == '{"k": 1}'


# -- heads: what was on the wire ---------------------------------------------------------


def test_heads_print_no_reason_phrase_on_http2_and_http3(
    h3_server: HypercornServer, cert_files: dict[str, str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    ca = cert_files["ca"]
    status, out, err = run(capsysbinary, "-i", "-v", "--http2", "--cacert", ca, h3_server.url("/hello"))
    assert status == 0, err
    assert out.startswith(b"HTTP/2 200\r\n") and out.endswith(b"\r\n\r\nhello world\n")
    assert "> GET /hello HTTP/2\n" in err and "< HTTP/2 200\n" in err
    status, out, err = run(capsysbinary, "-I", "--http3-only", "--cacert", ca, h3_server.url("/hello"))
    assert status == 0, err
    assert out.startswith(b"HTTP/3 200\r\n") and out.endswith(b"\r\n\r\n") and b"OK" not in out


# -- --sse on something else -------------------------------------------------------------


def test_sse_on_a_plain_response_says_so_and_fails(
    server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, out, err = run(capsysbinary, "--sse", server.url("/hello"))
    assert (status, out) == (61, b"")
    line = one_line(err)
    assert "not an event stream" in line and "text/plain" in line and "drop --sse" in line


# -- error wording: one line, what happened, what to do ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "code", "needle"),
    [
        ("", 3, "empty URL"),
        ("http://", 3, "has no host"),
        ("ftp://example.org/x", 1, "protocol 'ftp' not supported"),
        ("http://exa mple.com/", 3, "invalid character in host"),
        ("http://[::1/x", 3, "invalid URL 'http://[::1/x'"),
    ],
)
def test_url_errors_are_one_plain_line(url: str, code: int, needle: str, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, err = run(capsysbinary, url)
    assert (status, out) == (code, b"")
    line = one_line(err)
    assert needle in line
    assert " over HTTP" not in line  # nothing was sent: no protocol to name
    assert "invalid URL: invalid URL" not in line and "must be absolute" not in line


async def test_redirect_to_ftp_is_protocol_not_supported(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    async def moved(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1/file\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with FaultServer(moved) as fault:
        status = await asyncio.to_thread(main, ["-L", fault.url("/")])
    err = capsysbinary.readouterr().err.decode()
    assert status == 1
    assert "protocol not supported" in one_line(err) and "http://" in err


async def test_incomplete_body_says_it_once(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40)
        await writer.drain()

    async with FaultServer(short) as fault:
        status = await asyncio.to_thread(main, [fault.url("/short")])
    err = capsysbinary.readouterr().err.decode()
    assert status == 18
    line = one_line(err)
    assert line.count("incomplete") == 1 and "40 of 100" in line and "--resume" in line


# -- the progress bar moves while the download stalls ---------------------------------------


class RecordingTerminal(io.StringIO):
    """A terminal that remembers when each write came."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[float, str]] = []

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.writes.append((time.monotonic(), text))
        return super().write(text)


@pytest.mark.parametrize("renderer", ["rich", "plain"])
async def test_progress_redraws_during_a_stall_and_at_the_end(
    renderer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stall: list[float] = []

    async def stalling(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"a" * 1000)
        await writer.drain()
        stall.append(time.monotonic())
        await asyncio.sleep(1.0)
        stall.append(time.monotonic())
        writer.write(b"b" * 1000)
        await writer.drain()

    if renderer == "plain":
        monkeypatch.setitem(sys.modules, "rich.progress", None)  # no `cli` extra
    terminal = RecordingTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    target = tmp_path / "stalled.bin"
    async with FaultServer(stalling) as fault:
        status = await asyncio.to_thread(main, ["-o", str(target), fault.url("/")])
    assert status == 0 and target.read_bytes() == b"a" * 1000 + b"b" * 1000
    begin, end = stall
    during = [text for when, text in terminal.writes if begin + 0.2 < when < end - 0.1 and "stalled.bin" in text]
    assert len(during) >= 3, terminal.writes  # redrawn by the timer with no bytes coming
    assert all("50%" in text for text in during)
    assert "100%" in terminal.writes[-1][1] or "100%" in terminal.getvalue()[-400:]
