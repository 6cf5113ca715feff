"""Every code example in README.md and docs/*.md runs, against loopback servers.

Theory of operation
-------------------
The examples are written as complete programs a reader can copy.  They talk to
two fixed-looking addresses, which stand for servers this module starts:

    http://127.0.0.1:8000    hypercorn, cleartext (HTTP/1.1, and h2c by prior knowledge)
    https://127.0.0.1:8443   hypercorn over TLS (h2 and http/1.1 by ALPN) and QUIC (h3)

Each ```python block is run as ``__main__`` with those two prefixes rewritten to
the real ports, in a fresh working directory that holds ``ca.pem`` (the test
CA), with ``SSL_CERT_FILE`` pointing at it so ``verify=True`` trusts the test
certificate (OpenSSL and ``ssl.get_default_verify_paths()`` honour it, so TCP
and QUIC both do).  ``http://127.0.0.1:1`` is left alone: nothing listens on
port 1, which is how the error examples get a refused connection.

A block runs unless the line right before its fence is
``<!-- not-run: reason -->``.  Only ```python blocks are Python: a fence with
no language, or one of the other spellings of Python (``py``, ``python3``,
``pycon``), fails the suite, so no example can dodge the run by its label.
In ```console blocks, each ``$ httpstream ...`` line is run through the command
line's ``main()`` in-process; it must exit 0 and print the lines shown under it
(a line ``...`` stands for any number of lines).

The examples make their own claims with ``assert`` (a status, a protocol
version, a count of connections), so a block that runs but no longer does what
its page says fails too.  The feature table in README.md names a test for each
httpstream "yes"; a test here checks that each named test exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import linecache
import re
import shlex
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .peers.duplex import DuplexApp
from .peers.servers import App, HypercornServer, Receive, Scope, Send

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

PLAIN = "http://127.0.0.1:8000"
SECURE = "https://127.0.0.1:8443"

# Fence languages that are not Python and are shown, not run (console: see above).
OTHER_LANGUAGES = {"sh", "bash", "console", "text", "toml", "yaml", "ini"}
PYTHON_ALIASES = {"py", "python3", "pycon", "py3", "ipython"}
MARKER = re.compile(r"^<!--\s*not-run:\s*(\S.*?)\s*-->$")
FENCE = re.compile(r"^```(.*)$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip_reason: str | None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with the not-run marker before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        language = match.group(1).strip()
        start = index
        previous = next((lines[i].strip() for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(previous)
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].rstrip() != "```":
            body.append(lines[index])
            index += 1
        if index == len(lines):
            raise AssertionError(f"{page.name}:{start + 1}: code fence never closed")
        index += 1
        blocks.append(Block(page, start + 1, language, "\n".join(body) + "\n", marker.group(1) if marker else None))
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in parse_blocks(page)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.language == "python"]
CLI_BLOCKS = [
    block
    for block in ALL_BLOCKS
    if block.language == "console" and any(line.startswith("$ httpstream") for line in block.code.splitlines())
]


# -- the server the examples talk to --------------------------------------------------
class DocsApp(App):
    """The test App plus what the pages need: SSE, NDJSON, a flaky endpoint, cookies, gzip.

    And, from ``DuplexApp``, what the transport page needs: ``/duplex`` (each
    request chunk echoed as it arrives), ``/ws`` (WebSocket echo over HTTP/1.1
    Upgrade and HTTP/2 / HTTP/3 extended CONNECT), ``/early-hints`` (a 103
    before the 200, HTTP/2 and HTTP/3) and ``/upload-then-413``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flaky: dict[str, int] = {}
        self._flaky_lock = threading.Lock()
        self.duplex = DuplexApp()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.duplex(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def h_duplex(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/duplex: a 200 head at once, then each request body chunk echoed back as it arrives."""
        await self.duplex({**scope, "path": "/echo"}, receive, send)

    async def h_early_hints(
        self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]
    ) -> None:
        """/early-hints: a 103 and then a 200 (HTTP/2 and HTTP/3; hypercorn ignores 103 on HTTP/1.1)."""
        await self.duplex(scope, receive, send)

    async def h_upload_then_413(
        self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]
    ) -> None:
        """/upload-then-413: 413 at once, the request body left unread."""
        await self.duplex(scope, receive, send)

    async def h_stall(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/stall as in App, but the handler ends when the client goes away.

        So stopping the server does not wait out hypercorn's graceful timeout
        for handlers still asleep.
        """
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100000")]})
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                while (await receive())["type"] != "http.disconnect":
                    pass

    async def h_events(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/events?count=N: N events with ids 1..N; a reconnect with Last-Event-ID gets the rest, then 204.

        Each connection carries two events at most, so an EventSource has to
        reconnect (``retry: 50`` makes that quick) to see them all.
        """
        count = int(q.get("count", "3"))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        after = int(headers.get("last-event-id") or 0)
        if after >= count:
            await self._send(send, 204, b"")
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"retry: 50\n\n", "more_body": True})
        for number in range(after + 1, min(after + 2, count) + 1):
            event = f"id: {number}\nevent: tick\ndata: {json.dumps({'n': number})}\n\n"
            await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})

    async def h_ndjson(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/ndjson/N: N JSON objects, one per line, sent line by line."""
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-ndjson")]}
        )
        for number in range(int(args[0])):
            line = json.dumps({"id": number, "square": number * number}) + "\n"
            await send({"type": "http.response.body", "body": line.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def h_flaky(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/flaky/KEY?fail=N: 503 with Retry-After: 0 for the first N requests of KEY, then 200."""
        key, fail = args[0], int(q.get("fail", "2"))
        with self._flaky_lock:
            seen = self.flaky.get(key, 0)
            self.flaky[key] = seen + 1
        if seen < fail:
            await self._send(send, 503, b"try again\n", [(b"retry-after", b"0")])
        else:
            await self._send(send, 200, f"ok after {seen} retries\n".encode())

    async def h_cookie(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/cookie/NAME/VALUE: sets that cookie."""
        await self._send(send, 200, b"set\n", [(b"set-cookie", f"{args[0]}={args[1]}; Path=/".encode())])

    async def h_gzip(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/gzip: a gzip-encoded text body."""
        import gzip

        body = gzip.compress(b"hello, compressed world\n" * 100)
        await self._send(send, 200, body, [(b"content-encoding", b"gzip"), (b"content-type", b"text/plain")])


@pytest.fixture(scope="module")
def servers(cert_files: dict[str, str]) -> Iterator[dict[str, HypercornServer]]:
    plain = HypercornServer(DocsApp())
    secure = HypercornServer(
        DocsApp(), certfile=cert_files["cert"], keyfile=cert_files["key"], alpn=("h2", "http/1.1"), quic=True
    )
    plain.start()
    try:
        secure.start()
    except BaseException:
        plain.stop()
        raise
    yield {"plain": plain, "secure": secure}
    plain.stop()
    secure.stop()


@pytest.fixture
def workdir(
    tmp_path: Path, cert_files: dict[str, str], monkeypatch: pytest.MonkeyPatch, servers: dict[str, HypercornServer]
) -> Path:
    """A working directory with ca.pem, the test CA trusted by default, no proxy from the environment."""
    shutil.copy(cert_files["ca"], tmp_path / "ca.pem")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for server in servers.values():
        server.app.reset()
        assert isinstance(server.app, DocsApp)
        server.app.flaky.clear()
    return tmp_path


def localize(text: str, servers: dict[str, HypercornServer]) -> str:
    """The example's addresses rewritten to the servers' real ports."""
    text = text.replace(PLAIN, f"http://127.0.0.1:{servers['plain'].port}")
    return text.replace(SECURE, f"https://127.0.0.1:{servers['secure'].port}")


# -- the checks --------------------------------------------------------------------------
def test_pages_have_examples() -> None:
    """The pages exist and hold examples (a glob that finds nothing must not pass quietly)."""
    names = {page.name for page in PAGES}
    assert {"README.md", "quickstart.md", "streaming.md", "pool.md", "http2-http3.md"} <= names
    assert {"timeouts-retries.md", "errors.md", "transport.md", "cli.md", "migration.md"} <= names
    assert len(PYTHON_BLOCKS) >= 20


def test_every_block_is_labelled_and_skips_say_why() -> None:
    problems = []
    for block in ALL_BLOCKS:
        if block.language in PYTHON_ALIASES:
            problems.append(f"{block.name}: label Python blocks ```python (got {block.language!r})")
        elif block.language != "python" and block.language not in OTHER_LANGUAGES:
            problems.append(f"{block.name}: fence language {block.language!r} is not one of python, {OTHER_LANGUAGES}")
        elif block.skip_reason is not None and block.language != "python":
            problems.append(f"{block.name}: only Python blocks take a not-run marker")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[block.name for block in PYTHON_BLOCKS])
def test_python_example_runs(block: Block, servers: dict[str, HypercornServer], workdir: Path) -> None:
    if block.skip_reason is not None:
        pytest.skip(f"not run: {block.skip_reason}")
    source = localize(block.code, servers)
    # Registered so tracebacks (and warnings that quote the caller) show the example's lines.
    linecache.cache[block.name] = (len(source), None, source.splitlines(True), block.name)
    code = compile(source, block.name, "exec")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"__name__": "__main__"})
    assert "127.0.0.1:8000" not in out.getvalue() and "127.0.0.1:8443" not in out.getvalue()


@pytest.mark.parametrize("block", CLI_BLOCKS, ids=[block.name for block in CLI_BLOCKS])
def test_cli_example_runs(block: Block, servers: dict[str, HypercornServer], workdir: Path) -> None:
    """Each ``$ httpstream ...`` line exits 0 and prints the lines shown under it ("..." stands for any lines)."""
    from httpstream.__main__ import main

    for argv_text, expected in cli_commands(block):
        argv = shlex.split(localize(argv_text, servers))
        raw = io.BytesIO()
        out = io.TextIOWrapper(raw, encoding="utf-8")  # the command line writes bytes to sys.stdout.buffer
        err = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
            out.flush()
        command = f"httpstream {argv_text}"
        assert status == 0, f"{block.name}: `{command}` exited {status}: {err.getvalue()}"
        if expected:
            # -i and -I print heads with CRLF, as curl; on a terminal that is a line end like LF.
            printed = localize_back(raw.getvalue().decode("utf-8"), servers).replace("\r\n", "\n")
            pattern = "".join("(?:.*\n)*?" if line == "..." else re.escape(line) + "\n" for line in expected)
            assert re.fullmatch(pattern, printed if printed.endswith("\n") else printed + "\n"), (
                f"{block.name}: `{command}` printed:\n{printed}"
            )


def cli_commands(block: Block) -> list[tuple[str, list[str]]]:
    """The commands of a console block, each with the output lines shown after it."""
    commands: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ httpstream"):
            commands.append((line[len("$ httpstream") :].strip(), []))
        elif line.startswith("$ "):
            raise AssertionError(f"{block.name}: only httpstream commands can run here: {line}")
        elif commands:
            commands[-1][1].append(line)
    return commands


def localize_back(text: str, servers: dict[str, HypercornServer]) -> str:
    """Output with the servers' real ports put back to the addresses the page shows."""
    text = text.replace(f"http://127.0.0.1:{servers['plain'].port}", PLAIN)
    return text.replace(f"https://127.0.0.1:{servers['secure'].port}", SECURE)


def test_feature_table_names_tests_that_exist() -> None:
    """Each httpstream "yes" in README's comparison table names a test, and that test exists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| feature | httpstream |") :].split("\n\n", 1)[0].splitlines()[2:]
    assert len(table) >= 6, "the feature table is missing"
    for row in table:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 6, f"a row needs six cells: {row}"
        references = re.findall(r"(tests/test_\w+\.py)::(test_\w+)", cells[5])
        if cells[1].startswith("yes"):
            assert references, f"httpstream 'yes' without a test: {row}"
        for path, name in references:
            source = (ROOT / path).read_text(encoding="utf-8")
            assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name} does not exist"


def test_links_to_pages_resolve() -> None:
    problems = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", text):
            if target.startswith("http"):
                continue
            if not (page.parent / target).is_file():
                problems.append(f"{page.name}: link to {target} does not resolve")
    assert not problems, "\n".join(problems)


def test_skipping_without_marker_is_caught(tmp_path: Path) -> None:
    """The parser sees a marker only right before its fence, and mislabelled Python is reported."""
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- not-run: needs a network -->\n\n```python\nprint(1)\n```\n\ntext\n\n```python\nprint(2)\n```\n"
        "```py\nprint(3)\n```\n"
    )
    first, second, third = parse_blocks(page)
    assert first.skip_reason == "needs a network"
    assert second.skip_reason is None
    assert third.language == "py"
