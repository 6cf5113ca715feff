"""`httpstream [METHOD] URL [ITEMS]`: the command line against real loopback peers.

Most tests call ``httpstream.cli.main`` in this process (sync tests: ``main``
runs its own ``asyncio.run``) with stdout/stderr captured; the tests where
pipes and terminals matter run ``python -m httpstream`` in a subprocess.
``CliApp`` adds what the shared ``App`` lacks: Range support, a gzip body,
Server-Sent Events, NDJSON, and a gate that holds the second event back
until the test has seen the first one (streaming proven, not assumed).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from httpstream.__main__ import main as dispatch
from httpstream.cli import main
from httpstream.cli._args import parse_item
from httpstream.cli._errors import UsageError
from httpstream.cli._progress import open_progress, progress_line

from .peers.servers import App, FaultServer, HypercornServer, Receive, Scope, Send, pattern, read_request

GZIP_PLAIN = b"compressible text " * 4000
GZIP_BODY = gzip.compress(GZIP_PLAIN)


class CliApp(App):
    """The shared test app plus Range, gzip, SSE, NDJSON and a gated event stream."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: list[str | None] = []
        self.gate = threading.Event()
        self.endless_done = threading.Event()
        self.endless_sent = 0

    def reset(self) -> None:
        super().reset()
        self.ranges = []
        self.gate = threading.Event()
        self.endless_done = threading.Event()
        self.endless_sent = 0

    async def h_file(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/file/N: N pattern bytes honouring `Range: bytes=S-` (206, or 416 past the end).

        ?ignore=1 answers 200 whatever the Range; ?shift=K answers a 206 that starts K bytes early.
        """
        size = int(args[0])
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        wanted = headers.get("range")
        self.ranges.append(wanted)
        if wanted is None or q.get("ignore"):
            await self._send(send, 200, pattern(size))
            return
        start = int(wanted.removeprefix("bytes=").rstrip("-")) - int(q.get("shift", "0"))
        if start >= size:
            await self._send(send, 416, b"", [(b"content-range", f"bytes */{size}".encode())])
            return
        rng = f"bytes {start}-{size - 1}/{size}".encode()
        await self._send(send, 206, pattern(size - start, start), [(b"content-range", rng)])

    async def h_gzip(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """A gzip body sent with Content-Encoding: gzip and its compressed Content-Length."""
        await self._send(send, 200, GZIP_BODY, [(b"content-encoding", b"gzip")])

    async def h_events(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """Two events; the second only once the test has set the gate (bounded wait)."""
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"event: tick\nid: 1\ndata: one\n\n", "more_body": True})
        for _ in range(1000):
            if self.gate.is_set() or not q.get("gated"):
                break
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"retry: 500\ndata: two\ndata: lines\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def h_endless(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/endless: pattern bytes with a 10 GB Content-Length, until the client goes away.

        ``endless_done`` is set with the byte count once the disconnect is seen,
        so a test can check the download really stopped (not merely our output).
        """
        size = 10_000_000_000
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(size).encode())]})
        sent = 0
        try:
            while not gone.is_set() and sent < size:
                await send({"type": "http.response.body", "body": pattern(65536, sent), "more_body": True})
                sent += 65536
                await asyncio.sleep(0)
        finally:
            watcher.cancel()
            self.endless_sent = sent
            self.endless_done.set()

    async def h_ndjson(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-ndjson")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": json.dumps({"n": i, "ok": True}).encode() + b"\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def cli_server() -> Iterator[HypercornServer]:
    server = HypercornServer(CliApp())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def app(cli_server: HypercornServer) -> CliApp:
    assert isinstance(cli_server.app, CliApp)
    cli_server.app.reset()
    return cli_server.app


def run_cli(capsys: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, bytes, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err.decode()


def echo(out: bytes) -> dict[str, object]:
    info = json.loads(out)
    assert isinstance(info, dict)
    return info


def header(info: dict[str, object], name: str) -> list[str]:
    headers = info["headers"]
    assert isinstance(headers, list)
    return [v for k, v in headers if k == name]


def free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


# -- requests: method, headers, items, bodies -------------------------------------------


def test_get_writes_the_body_to_stdout(server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, err = run_cli(capsysbinary, server.url("/hello"))
    assert (status, out, err) == (0, b"hello world\n", "")


def test_url_without_scheme_means_http(server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, _ = run_cli(capsysbinary, f"127.0.0.1:{server.port}/hello")
    assert (status, out) == (0, b"hello world\n")


def test_items_make_query_headers_and_a_json_body(
    server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, out, err = run_cli(
        capsysbinary, server.url("/echo"), "q==a b", "X-Item:1", "-H", "X-Opt: 2", "name=x", "n:=3", "tags:=[1, true]"
    )
    assert status == 0, err
    info = echo(out)
    assert info["method"] == "POST"
    assert info["query"] == "q=a+b"
    assert header(info, "x-item") == ["1"] and header(info, "x-opt") == ["2"]
    assert header(info, "content-type") == ["application/json"]
    assert json.loads(str(info["body"])) == {"name": "x", "n": 3, "tags": [1, True]}


def test_data_json_and_form_bodies(
    server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    status, out, _ = run_cli(capsysbinary, server.url("/echo"), "-d", "a=1", "-d", "b=2")
    info = echo(out)
    assert (status, info["method"], info["body"]) == (0, "POST", "a=1&b=2")
    assert header(info, "content-type") == ["application/x-www-form-urlencoded"]

    body = tmp_path / "body.json"
    body.write_bytes(b'{"k": [1]}')
    status, out, _ = run_cli(capsysbinary, "PUT", server.url("/echo"), "--json", f"@{body}")
    info = echo(out)
    assert (status, info["method"], info["body"]) == (0, "PUT", '{"k": [1]}')
    assert header(info, "accept") == ["application/json"]

    status, out, _ = run_cli(capsysbinary, server.url("/echo"), "-X", "patch", "--form-items", "a=1", "b=x y")
    info = echo(out)
    assert (status, info["method"], info["body"]) == (0, "PATCH", "a=1&b=x+y")


def test_file_item_uploads_multipart(
    server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"file body\n")
    status, out, _ = run_cli(capsysbinary, server.url("/echo"), "doc@" + str(upload), "title=hi")
    info = echo(out)
    assert (status, info["method"]) == (0, "POST")
    assert header(info, "content-type")[0].startswith("multipart/form-data; boundary=")
    body = str(info["body"])
    assert 'name="doc"; filename="notes.txt"' in body and "file body\n" in body
    assert 'name="title"' in body and "hi" in body


def test_empty_header_removes_a_default(server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, _ = run_cli(capsysbinary, server.url("/echo"), "User-Agent:", "X-Empty;")
    info = echo(out)
    assert status == 0
    assert header(info, "user-agent") == []
    assert header(info, "x-empty") == [""]
    assert header(info, "accept-encoding") == []  # curl's habit: only with --compressed


def test_parse_item_separators_and_escapes() -> None:
    assert (parse_item("a==b=c").separator, parse_item("a==b=c").value) == ("==", "b=c")
    assert parse_item("n:=1").separator == ":="
    assert (parse_item("X-A:b=c").separator, parse_item("X-A:b=c").name) == (":", "X-A")
    assert (parse_item("a\\=b=c").name, parse_item("a\\=b=c").value) == ("a=b", "c")
    assert parse_item("f@/tmp/x").separator == "@"
    assert parse_item("X-Empty;").separator == ";"
    for bad in ("plain", "=value"):
        with pytest.raises(UsageError):
            parse_item(bad)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "no URL"),
        (["http://h/", "junk"], "not a request item"),
        (["http://h/", "-d", "x", "a=1"], "one request body"),
        (["http://h/", "n:=nope"], "not JSON"),
        (["http://h/", "--resume"], "--resume needs -o"),
        (["http://h/", "-u", "alice"], "USER:PASSWORD"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], needle: str, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, err = run_cli(capsysbinary, *argv)
    assert (status, out) == (2, b"")
    assert needle in err and err.count("\n") == 1


@pytest.mark.parametrize("option", [["f@{}"], ["-d", "@{}"], ["--cacert", "{}"]])
def test_missing_local_file_exits_26(option: list[str], capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    status, out, err = run_cli(capsysbinary, "http://h/", *(word.format(missing) for word in option))
    assert (status, out) == (26, b"")
    assert missing in err and err.count("\n") == 1


# -- output: -I, -i, -v, --fail, line modes ------------------------------------------------


def test_head_prints_the_head_only(server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, _ = run_cli(capsysbinary, "-I", server.url("/hello"))
    assert status == 0
    text = out.decode()
    assert text.startswith("HTTP/1.1 200 OK\r\n")  # CRLF, as on the wire and as curl prints it
    assert "content-length: 12\r\n" in text and text.endswith("\r\n\r\n")
    assert "\n" not in text.replace("\r\n", "")
    assert "hello world" not in text
    assert server.app.requests == 1


def test_include_puts_the_head_before_the_body(
    server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, out, _ = run_cli(capsysbinary, "-i", server.url("/hello"))
    assert status == 0 and out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nhello world\n")


def test_verbose_shows_headers_protocol_and_connection(
    server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, out, err = run_cli(capsysbinary, "-v", server.url("/hello"), "X-Trace:on")
    assert (status, out) == (0, b"hello world\n")
    for line in (
        "> GET /hello HTTP/1.1\n",
        f"> Host: 127.0.0.1:{server.port}\n",
        "> User-Agent: httpstream/",
        "> X-Trace: on\n",
        "< HTTP/1.1 200 OK\n",
        "< content-length: 12\n",
        "* protocol: HTTP/1.1, new connection\n",
        "* body: 12 bytes received\n",
        "1 idle for reuse",
    ):
        assert line in err, f"{line!r} missing from:\n{err}"


def test_verbose_over_http2_shows_reuse_across_redirects(
    h2_server: HypercornServer, cert_files: dict[str, str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, out, err = run_cli(capsysbinary, "-v", "-L", "--http2", "--cacert", cert_files["ca"], h2_server.url("/redirect/2"))
    assert status == 0, err
    assert echo(out)["path"] == "/echo"
    assert err.count("< HTTP/2 302") == 2 and "< HTTP/2 200" in err
    assert err.count("* protocol: HTTP/2, new connection") == 1
    assert err.count("* protocol: HTTP/2, reused connection") == 2
    assert h2_server.app.connections == 1


def test_http1_1_flag_and_http3_only(
    h3_server: HypercornServer, cert_files: dict[str, str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    ca = cert_files["ca"]
    status, out, err = run_cli(capsysbinary, "-v", "--http1.1", "--cacert", ca, h3_server.url("/hello"))
    assert (status, out) == (0, b"hello world\n") and "* protocol: HTTP/1.1" in err
    status, out, err = run_cli(capsysbinary, "-v", "--http3-only", "--cacert", ca, h3_server.url("/echo"))
    assert status == 0, err
    assert echo(out)["http_version"] == "3"
    assert "< HTTP/3 200" in err and "* protocol: HTTP/3, new connection" in err


def test_fail_exits_22_without_the_body(server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    url = server.url("/status/404")
    status, out, err = run_cli(capsysbinary, "--fail", url)
    assert (status, out) == (22, b"")
    assert err == f"httpstream: HTTP error: 404 Not Found [GET {url} over HTTP/1.1]\n"
    status, out, _ = run_cli(capsysbinary, "-f", url)  # curl's -f
    assert (status, out) == (22, b"")
    status, out, _ = run_cli(capsysbinary, url)
    assert (status, out) == (0, b"status\n")


def test_lines_sse_and_json_lines(cli_server: HypercornServer, app: CliApp, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, _ = run_cli(capsysbinary, "--lines", cli_server.url("/lines/4"))
    assert (status, out) == (0, b"line 0\nline 1\nline 2\nline 3\n")
    status, out, _ = run_cli(capsysbinary, "--sse", cli_server.url("/events"))
    assert status == 0
    assert out == b"event: tick\nid: 1\ndata: one\n\nevent: message\nid: 1\nretry: 500\ndata: two\ndata: lines\n\n"
    status, out, _ = run_cli(capsysbinary, "--json-lines", cli_server.url("/ndjson"))
    assert status == 0
    assert out.decode() == "".join(json.dumps({"n": i, "ok": True}, indent=2) + "\n" for i in range(3))


def test_sse_events_are_printed_as_they_arrive(cli_server: HypercornServer, app: CliApp) -> None:
    """The second event is held back until the first one has reached our stdout pipe."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "httpstream", "--sse", cli_server.url("/events?gated=1")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        first = [proc.stdout.readline() for _ in range(4)]
        assert first == [b"event: tick\n", b"id: 1\n", b"data: one\n", b"\n"]
        assert proc.poll() is None  # still streaming: the gate is closed
        app.gate.set()
        rest, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert rest.endswith(b"data: two\ndata: lines\n\n")


# -- errors: one line, an exit status per class ------------------------------------------------


def assert_one_line(err: str, *needles: str) -> None:
    assert err.count("\n") == 1 and err.startswith("httpstream: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} missing from {err!r}"


def test_refused_port_exits_7(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    status, out, err = run_cli(capsysbinary, url)
    assert (status, out) == (7, b"")
    assert_one_line(err, "connection refused", url, "HTTP/1.1")
    assert "Connect call failed" not in err


def test_untrusted_certificate_exits_60(tls_server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, _, err = run_cli(capsysbinary, "--http1.1", tls_server.url("/hello"))
    assert status == 60
    assert_one_line(err, "TLS certificate not trusted", tls_server.url("/hello"))
    status, out, _ = run_cli(capsysbinary, "-k", tls_server.url("/hello"))
    assert (status, out) == (0, b"hello world\n")


def test_read_timeout_exits_28(server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    began = time.monotonic()
    status, _, err = run_cli(capsysbinary, "--timeout", "0.5", server.url("/slow/5"))
    assert status == 28
    assert time.monotonic() - began < 4
    assert_one_line(err, "timeout", "read timeout", server.url("/slow/5"))


def test_debug_adds_the_traceback(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, _, err = run_cli(capsysbinary, "--debug", f"http://127.0.0.1:{free_port()}/")
    assert status == 7
    assert "Traceback" in err and "ConnectError" in err
    assert err.rstrip("\n").splitlines()[-1].startswith("httpstream: connection refused")


def test_invalid_url_exits_3(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, _, err = run_cli(capsysbinary, "http://exa mple.com/")
    assert status == 3
    assert_one_line(err, "invalid URL")


async def test_protocol_error_exits_8(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: twelve\r\n\r\nhello")
        await writer.drain()
        await reader.read()

    async with FaultServer(garbage) as fault:
        status = await asyncio.to_thread(main, [fault.url("/bad")])
    err = capsysbinary.readouterr().err.decode()
    assert status == 8
    assert_one_line(err, "protocol error", fault.url("/bad"))


async def test_truncated_body_exits_18_and_keeps_what_arrived(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40)
        await writer.drain()
        writer.close()

    target = tmp_path / "partial.bin"
    async with FaultServer(short) as fault:
        status = await asyncio.to_thread(main, ["-o", str(target), fault.url("/short")])
    err = capsysbinary.readouterr().err.decode()
    assert status == 18
    assert_one_line(err, "incomplete body", fault.url("/short"))
    assert target.read_bytes() == b"x" * 40


# -- downloads: -o, --resume, compression, progress --------------------------------------------


def test_output_file_and_resume(cli_server: HypercornServer, app: CliApp, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> None:
    size = 300_000
    target = tmp_path / "file.bin"
    target.write_bytes(pattern(1000))
    status, out, err = run_cli(capsysbinary, "-o", str(target), "--resume", cli_server.url(f"/file/{size}"))
    assert (status, out, err) == (0, b"", "")  # no progress bar: stderr is not a terminal
    assert target.read_bytes() == pattern(size)
    assert app.ranges == ["bytes=1000-"]

    status, _, err = run_cli(capsysbinary, "-o", str(target), "--resume", cli_server.url(f"/file/{size}"))
    assert status == 0 and "already complete (300000 bytes)" in err
    assert target.read_bytes() == pattern(size)

    target.write_bytes(b"stale prefix")
    status, _, err = run_cli(capsysbinary, "-o", str(target), "--resume", cli_server.url(f"/file/{size}?ignore=1"))
    assert status == 0 and "ignored the Range request" in err
    assert target.read_bytes() == pattern(size)

    fresh = tmp_path / "fresh.bin"
    status, _, _ = run_cli(capsysbinary, "-o", str(fresh), "--resume", cli_server.url("/file/5000"))
    assert status == 0 and fresh.read_bytes() == pattern(5000)
    assert app.ranges[-1] is None  # nothing to resume: no Range header


def test_resume_refuses_answers_it_cannot_use(
    cli_server: HypercornServer, app: CliApp, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(pattern(1000))
    status, _, err = run_cli(capsysbinary, "-o", str(target), "--resume", cli_server.url("/file/5000?shift=10"))
    assert status == 33 and "resume failed" in err
    assert target.read_bytes() == pattern(1000)
    status, _, err = run_cli(capsysbinary, "-o", str(target), "--resume", cli_server.url("/file/500"))
    assert status == 33 and "has 1000 bytes but the server's has 500" in err
    status, _, err = run_cli(capsysbinary, "-o", str(target), "--resume", cli_server.url("/status/404"))
    assert status == 22 and "404 Not Found" in err
    assert target.read_bytes() == pattern(1000)


def test_compressed_body_saved_raw_unless_compressed(
    cli_server: HypercornServer, app: CliApp, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    raw = tmp_path / "raw.gz"
    assert run_cli(capsysbinary, "-o", str(raw), cli_server.url("/gzip"))[0] == 0
    assert raw.read_bytes() == GZIP_BODY
    status, out, _ = run_cli(capsysbinary, "--compressed", cli_server.url("/gzip"))
    assert (status, out) == (0, GZIP_PLAIN)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_counts_raw_bytes(
    cli_server: HypercornServer, app: CliApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Content-Length is the compressed size: the bar ends at 100%, never above."""
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    target = tmp_path / "plain.txt"
    assert main(["--compressed", "-o", str(target), cli_server.url("/gzip")]) == 0
    assert target.read_bytes() == GZIP_PLAIN
    shown = terminal.getvalue()
    assert "100%" in shown and "plain.txt" in shown
    done, total = re.findall(r"([\d.,]+)/([\d.,?]+) (?:bytes|kB)", shown)[-1]
    assert done == total == str(len(GZIP_BODY))  # wire bytes against the wire length

    terminal.seek(0)
    terminal.truncate()
    assert main(["-o", str(tmp_path / "chunked.bin"), cli_server.url("/chunked/100000")]) == 0
    shown = terminal.getvalue()
    assert "chunked.bin" in shown and "%" not in shown  # unknown length: no percentage

    terminal.seek(0)
    terminal.truncate()
    assert main(["-s", "-o", str(tmp_path / "quiet.bin"), cli_server.url("/file/1000")]) == 0
    assert terminal.getvalue() == ""


def test_plain_progress_line() -> None:
    assert progress_line("f", 512 * 1024, 1024 * 1024, 0, 1.0) == "f  512.0 KiB / 1.0 MiB   50%  512.0 KiB/s  ETA 0:00:01"
    unknown = progress_line("f", 2048, None, 0, 2.0)
    assert unknown == "f  2.0 KiB  1.0 KiB/s" and "%" not in unknown


def test_rich_progress_draws_indeterminate_without_a_total() -> None:
    stream = FakeTerminal()
    progress = open_progress("x.bin", None, 0, stream)
    progress.update(5000)
    progress.close()
    assert "%" not in stream.getvalue() and "x.bin" in stream.getvalue()


def test_progress_without_rich_is_one_plain_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich.progress", None)  # what a missing `cli` extra looks like
    stream = FakeTerminal()
    progress = open_progress("x.bin", 2048, 1024, stream)
    progress.update(1536)
    progress.update(2048)
    progress.close()
    first, last = stream.getvalue().split("\r")[1:]
    assert first.startswith("x.bin  1.5 KiB / 2.0 KiB   75%")
    assert last.startswith("x.bin  2.0 KiB / 2.0 KiB  100%") and last.endswith("\n")


# -- pipes and the dispatcher ------------------------------------------------------------


def test_pipe_to_head_stops_the_download_promptly(cli_server: HypercornServer, app: CliApp, tmp_path: Path) -> None:
    """`httpstream URL | head -c 100` on a 10 GB body: exits 141 at once, quietly, and the server stops."""
    out = tmp_path / "head.out"
    script = '"$PY" -m httpstream "$URL" 2>"$ERR" | head -c 100 > "$OUT"; echo "${PIPESTATUS[0]}"'
    env = {**os.environ, "PY": sys.executable, "URL": cli_server.url("/endless"), "OUT": str(out), "ERR": str(tmp_path / "err")}
    began = time.monotonic()
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, env=env, check=False)
    elapsed = time.monotonic() - began
    assert proc.stdout.strip() == "141", proc.stderr
    assert elapsed < 10
    assert out.read_bytes() == pattern(100)
    assert (tmp_path / "err").read_text() == ""
    assert app.endless_done.wait(10)  # the connection was closed: the server saw the client go
    assert app.endless_sent < 1_000_000_000


def test_dispatch_keeps_commands_and_sends_urls_to_the_cli(
    server: HypercornServer, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert dispatch(["proxy", "--set", "nope=1"]) == 2  # the proxy command's own usage error
    assert "httpstream proxy: unknown option 'nope'" in capsysbinary.readouterr().err.decode()
    assert dispatch(["tunnel", "edge"]) == 2
    assert dispatch(["GET", server.url("/hello")]) == 0
    assert capsysbinary.readouterr().out.endswith(b"hello world\n")
    assert dispatch([]) == 2
    assert "demo" in capsysbinary.readouterr().err.decode()


def test_help_documents_options_and_exit_codes(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["--help"]) == 0
    text = capsysbinary.readouterr().out.decode()
    for needle in ("--resume", "--http3-only", "name:=json", "field@path", "141", " 60 ", "--compressed", "proxy"):
        assert needle in text
