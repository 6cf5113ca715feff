"""A private caddy (HTTP/3 over quic-go, a second QUIC implementation) on 127.0.0.1.

Installed from apt by scripts/test (.ci/run); tests that need it skip with the
reason when the binary is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SMALL = b"hello from caddy\n"


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            udp.close()
            tcp.close()
        return port
    raise RuntimeError("no free port")


class Caddy:
    def __init__(self, certfile: str, keyfile: str, big_size: int) -> None:
        self.binary = shutil.which("caddy")
        self.port = 0
        self._cert = certfile
        self._key = keyfile
        self._big = big_size
        self._dir = Path(tempfile.mkdtemp(prefix="httpstream-caddy-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: object = None

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        assert self.binary is not None
        self.port = free_port()
        root = self._dir / "www"
        root.mkdir()
        (root / "small").write_bytes(SMALL)
        with open(root / "big", "wb") as f:
            f.truncate(self._big)  # sparse: costs no disk
        config = self._dir / "Caddyfile"
        config.write_text(
            "{\n"
            "  admin off\n"
            "  auto_https off\n"
            "  servers {\n    protocols h1 h2 h3\n  }\n"
            "}\n"
            f"https://127.0.0.1:{self.port} {{\n"
            "  bind 127.0.0.1\n"
            f"  tls {self._cert} {self._key}\n"
            f"  root * {root}\n"
            '  respond /upload-then-413 "too large" 413\n'
            "  file_server\n"
            "}\n"
        )
        env = dict(os.environ, HOME=str(self._dir), XDG_DATA_HOME=str(self._dir), XDG_CONFIG_HOME=str(self._dir))
        log = open(self._dir / "caddy.log", "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        self._proc = subprocess.Popen(
            [self.binary, "run", "--config", str(config), "--adapter", "caddyfile"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            cwd=self._dir,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError("caddy exited: " + (self._dir / "caddy.log").read_text()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("caddy did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
        shutil.rmtree(self._dir, ignore_errors=True)
