"""``httpstream proxy`` as a command: curl through it (plain HTTP, CONNECT pass-through), usage errors.

The proxy runs as ``python -m httpstream proxy -p PORT`` in a subprocess; each
wait is bounded and the process is terminated (then killed) at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import shutil
import socket
import sys
from collections.abc import AsyncIterator

import pytest

from httpstream.__main__ import main

from .peers.servers import HypercornServer

pytestmark = pytest.mark.usefixtures("no_leaks")

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")
WAIT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def proxy_process(*args: str) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "httpstream",
        "proxy",
        "-p",
        str(port),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), WAIT)  # the ready line
        assert line.decode().startswith(f"listening on http://127.0.0.1:{port} (mode "), line
        yield port, process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), WAIT)
            except TimeoutError:
                process.kill()
                await process.wait()
        await process.communicate()


async def curl(*args: str) -> tuple[int, bytes, bytes]:
    assert CURL is not None
    process = await asyncio.create_subprocess_exec(
        CURL, "-sS", "--max-time", "10", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return process.returncode, out, err


@needs_curl
async def test_curl_plain_http_through_the_proxy_cli(server: HypercornServer) -> None:
    async with proxy_process() as (port, process):
        code, out, err = await curl("--proxy", f"http://127.0.0.1:{port}", "-i", server.url("/hello"))
        process.send_signal(2)  # SIGINT: a clean exit
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
    assert code == 0, err
    assert out.startswith(b"HTTP/1.1 200")
    assert b"via: 1.1 httpstream" in out.lower()
    assert out.endswith(b"hello world\n")


@needs_curl
async def test_curl_connect_pass_through_to_tls(tls_server: HypercornServer, cert_files: dict[str, str]) -> None:
    async with proxy_process("--set", r"ignore_hosts=^127\.0\.0\.1:") as (port, _):
        code, out, err = await curl(
            "--proxy", f"http://127.0.0.1:{port}", "--cacert", cert_files["ca"], tls_server.url("/hello")
        )
    assert code == 0, err
    assert out == b"hello world\n"


@needs_curl
async def test_curl_with_seed_script(server: HypercornServer, tmp_path: pathlib.Path) -> None:
    script = tmp_path / "stream_modify.py"
    script.write_text(
        "def modify(chunks):\n"
        '    """\n'
        "    chunks is a generator that can be used to iterate over all chunks.\n"
        '    """\n'
        "    for chunk in chunks:\n"
        '        yield chunk.replace(b"world", b"there")\n'
        "\n"
        "def responseheaders(flow):\n"
        "    flow.response.stream = modify\n"
    )
    async with proxy_process("-s", str(script)) as (port, _):
        code, out, err = await curl("--proxy", f"http://127.0.0.1:{port}", server.url("/hello"))
    assert code == 0, err
    assert out == b"hello there\n"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--set", "nope=1"], "unknown option 'nope'"),
        (["--set", "stream_large_bodies=huge"], "stream_large_bodies"),
        (["--set", "store_streamed_bodies=perhaps"], "store_streamed_bodies"),
        (["--bogus"], "--bogus"),
        (["--mode", "sideways"], "sideways"),
        (["--listen-host", "0.0.0.0"], "non-loopback"),
        (["-s", "/nonexistent/addon.py"], "/nonexistent/addon.py"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proxy", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1
