"""A private nginx on 127.0.0.1 speaking HTTP/2 over TLS, for the interop tests.

Everything (config, pid file, logs, temp paths, served files) lives in a fresh
temporary directory removed on ``stop()``.  One worker, so ``$connection`` (the
connection serial number in the access log) counts the TCP connections the
client opened: that is how reuse is checked, on the server's side.

If no nginx binary is found, ``apt-get install -y nginx`` is tried once (as root
only, within ``INSTALL_BUDGET`` seconds); when that fails too, or the binary
lacks ``ngx_http_v2_module``, the tests that use it are skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

__all__ = ["LogLine", "Nginx", "nginx_binary"]

HOST = "127.0.0.1"
INSTALL_BUDGET = 45.0  # seconds for apt-get update + install, inside pytest-timeout's 60 s

_CONFIG = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    log_format conn '$connection $connection_requests $server_protocol $status $body_bytes_sent $request_uri';
    access_log {tmp}/access.log conn;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 60s;
    server_tokens off;

    server {{
        {listen}
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {www};
    }}
}}
"""

_searched: list[str | None] = []  # memo: look (and maybe install) once per session


def _find() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def nginx_binary() -> str:
    """The nginx binary, installed with apt-get if missing; ``pytest.skip`` if impossible."""
    if not _searched:
        found = _find()
        reason = ""
        if found is None:
            found, reason = _install()
        _searched.append(found)
        if found is None:
            _searched.append(reason)
    found = _searched[0]
    if found is None:
        pytest.skip(f"nginx is not installed and could not be installed: {_searched[1]}")
    return found


def _install() -> tuple[str | None, str]:
    if shutil.which("apt-get") is None:
        return None, "no nginx binary and no apt-get to install one"
    if os.geteuid() != 0:
        return None, "no nginx binary, and installing it needs root (apt-get install -y nginx)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Within the test's own time limit (pytest-timeout, 60 s): give up, and skip, before it.
    deadline = time.monotonic() + INSTALL_BUDGET
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "nginx"]):
        left = deadline - time.monotonic()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(left, 1), check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(cmd)} failed: {exc} (install nginx before running the tests)"
        if proc.returncode != 0:
            tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            return None, f"{' '.join(cmd)} exited with {proc.returncode}: {tail}"
    found = _find()
    return found, "" if found else "apt-get install -y nginx succeeded but no nginx binary was found"


def _version(binary: str) -> tuple[tuple[int, ...], str]:
    proc = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10, check=False)
    text = proc.stderr + proc.stdout
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", text)
    version = tuple(int(x) for x in match.groups()) if match else (0, 0, 0)
    return version, text


class LogLine:
    """One access-log line: ``$connection $connection_requests $server_protocol $status $body_bytes_sent $request_uri``."""

    def __init__(self, line: str) -> None:
        connection, requests, protocol, status, sent, uri = line.split(" ", 5)
        self.connection = int(connection)
        self.connection_requests = int(requests)
        self.protocol = protocol
        self.status = int(status)
        self.body_bytes_sent = int(sent)
        self.uri = uri

    def __repr__(self) -> str:
        return f"<{self.connection}#{self.connection_requests} {self.protocol} {self.status} {self.body_bytes_sent} {self.uri}>"


class Nginx:
    """nginx with TLS + HTTP/2 on 127.0.0.1, serving ``files`` from its own root."""

    def __init__(self, *, cert: str, key: str, files: dict[str, bytes]) -> None:
        self.cert = cert
        self.key = key
        self.files = files
        self.binary = ""
        self.version: tuple[int, ...] = ()
        self.tmp: Path | None = None
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, path: str = "/") -> str:
        return f"https://{HOST}:{self.port}{path}"

    # -- the access log ------------------------------------------------------------------
    def log(self) -> list[LogLine]:
        assert self.tmp is not None
        try:
            text = (self.tmp / "access.log").read_text()
        except FileNotFoundError:
            return []
        return [LogLine(line) for line in text.splitlines() if line.strip()]

    def wait_log(self, count: int, timeout: float = 5.0) -> list[LogLine]:
        """The log once it has at least ``count`` lines (nginx logs a request when it ends)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log()
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.01)

    def clear_log(self) -> None:
        """Start counting afresh: nginx appends to the same (truncated) file."""
        assert self.tmp is not None
        with open(self.tmp / "access.log", "r+") as f:
            f.truncate(0)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self.binary = nginx_binary()
        self.version, build = _version(self.binary)
        if "--with-http_v2_module" not in build:
            pytest.skip(f"{self.binary} was built without ngx_http_v2_module")
        self.tmp = Path(tempfile.mkdtemp(prefix="httpstream-test-nginx-"))
        # Workers drop privileges (to nobody when started as root): they must be
        # able to traverse the directory and read the files.
        self.tmp.chmod(0o755)
        www = self.tmp / "www"
        www.mkdir()
        for name, data in self.files.items():
            (www / name).write_bytes(data)
        (self.tmp / "access.log").touch()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        if self.version >= (1, 25, 1):
            listen = f"listen {HOST}:{self.port} ssl;\n        http2 on;"
        else:
            listen = f"listen {HOST}:{self.port} ssl http2;"
        conf = self.tmp / "nginx.conf"
        conf.write_text(_CONFIG.format(tmp=self.tmp, www=www, listen=listen, cert=self.cert, key=self.key))
        with open(self.tmp / "stderr.log", "wb") as err:
            self.proc = subprocess.Popen(
                [self.binary, "-p", str(self.tmp), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited at start:\n{self.logs()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not listen within 10 s:\n{self.logs()}") from None
                time.sleep(0.02)

    def logs(self) -> str:
        assert self.tmp is not None
        out = []
        for name in ("stderr.log", "error.log"):
            path = self.tmp / name
            if path.exists():
                out.append(path.read_text(errors="replace")[-2000:])
        return "\n".join(out)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # fast shutdown, master and worker
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session only
                proc.wait(timeout=5)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
