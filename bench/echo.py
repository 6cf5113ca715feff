"""A private hypercorn echo server (in its own process) for the duplex scenarios.

``python -m bench.echo --port P --tls-port Q --certfile F --keyfile K`` serves
an ASGI app that answers every HTTP request at once with its head (200,
``application/octet-stream``, no Content-Length: chunked on HTTP/1.1) and then
sends back each ``http.request`` body chunk as an ``http.response.body`` with
``more_body=True`` as soon as it arrives; the response ends when the request
body does.  It listens on 127.0.0.1 twice: plain HTTP/1.1 on P (the
``h1_duplex_echo`` scenario) and TLS on Q with ALPN ``h2`` and ``http/1.1``
(``h2_duplex_echo``), with a certificate from a throw-away trustme CA.

nginx cannot echo a request body as it arrives, hence hypercorn.  The harness
uses ``EchoServer`` (a context manager like ``bench.nginx.Nginx``): a temp dir
with the certificate, the server pinned to a CPU, always stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import Self

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent


class EchoError(RuntimeError):
    pass


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return
        body = msg.get("body", b"")
        if body:
            await send({"type": "http.response.body", "body": body, "more_body": True})
        if not msg.get("more_body", False):
            break
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def serve(port: int, tls_port: int, certfile: str, keyfile: str) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{HOST}:{tls_port}"]  # TLS (certfile set): h2 or http/1.1 by ALPN
    config.insecure_bind = [f"{HOST}:{port}"]  # plain HTTP/1.1
    config.certfile = certfile
    config.keyfile = keyfile
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.keep_alive_timeout = 300.0
    config.read_timeout = None
    asyncio.run(hypercorn_serve(app, config, mode="asgi"))  # runs until SIGTERM


def hypercorn_version() -> str:
    try:
        from importlib.metadata import version

        return version("hypercorn")
    except Exception:
        return "unknown"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def write_certificates(tmp: Path) -> Path:
    """cert.pem (leaf + chain) and key.pem for 127.0.0.1/localhost from a fresh
    trustme CA, and ca.pem for the clients; returns the CA path."""
    try:
        import trustme
    except ImportError as exc:
        raise EchoError(
            "h2_duplex_echo needs trustme for a throw-away certificate: `.venv/bin/pip install trustme`"
        ) from exc
    ca = trustme.CA()
    leaf = ca.issue_cert(HOST, "localhost")
    (tmp / "cert.pem").write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(tmp / "key.pem"))
    ca_path = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return ca_path


class EchoServer:
    """Context manager running ``python -m bench.echo``; always stopped on exit."""

    def __init__(self, cpu: int | None = None) -> None:
        self.cpu = cpu
        self.version = hypercorn_version()
        self.tmp: Path | None = None
        self.port = 0
        self.tls_port = 0
        self.ca_path: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def tls_base_url(self) -> str:
        return f"https://{HOST}:{self.tls_port}"

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        try:
            import hypercorn  # noqa: F401
        except ImportError as exc:
            raise EchoError("the duplex scenarios need hypercorn: `.venv/bin/pip install hypercorn`") from exc
        self.tmp = Path(tempfile.mkdtemp(prefix="httpstream-bench-echo-"))
        self.ca_path = write_certificates(self.tmp)
        self.port = free_port()
        self.tls_port = free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        env.pop("PYTHONASYNCIODEBUG", None)
        cpu = self.cpu
        with open(self.tmp / "stderr.log", "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.echo",
                    "--port",
                    str(self.port),
                    "--tls-port",
                    str(self.tls_port),
                    "--certfile",
                    str(self.tmp / "cert.pem"),
                    "--keyfile",
                    str(self.tmp / "key.pem"),
                ],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}),
            )
        self._wait_ready(timeout=20.0)

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EchoError(f"the echo server exited early:\n{self._logs()}")
            try:
                for port in (self.port, self.tls_port):
                    with socket.create_connection((HOST, port), timeout=0.5):
                        pass
                return
            except OSError:
                time.sleep(0.05)
        raise EchoError(f"the echo server did not accept connections within {timeout}s:\n{self._logs()}")

    def _logs(self) -> str:
        assert self.tmp is not None
        p = self.tmp / "stderr.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # our own session only
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.echo")
    p.add_argument("--port", type=int, required=True, help="plain HTTP/1.1 port")
    p.add_argument("--tls-port", type=int, required=True, help="TLS port (h2, http/1.1)")
    p.add_argument("--certfile", required=True)
    p.add_argument("--keyfile", required=True)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    serve(args.port, args.tls_port, args.certfile, args.keyfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
