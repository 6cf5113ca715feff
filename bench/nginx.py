"""A private, throw-away nginx instance bound to 127.0.0.1 for the benchmarks.

Everything (config, pid file, logs, temp dirs, served files) lives in a fresh
temporary directory that is removed when the server is stopped.

Endpoints:

    /small              ``return 200 "hello world\\n"`` (no disk access)
    /big                1 GiB static sparse file (served with sendfile)
    /ec/<tag>/<file>    static files (``small``, ``mid40k``, ``big``) with a
                        dedicated access log recording ``$connection`` so the
                        harness can count the TCP connections a client opened.

A second server block listens with TLS and HTTP/2 (ALPN ``h2``, falling back to
HTTP/1.1 for clients that do not offer it) on another port, with a certificate
for 127.0.0.1 issued per run by a throw-away trustme CA (``ca.pem`` in the temp
dir).  It serves:

    /small, /big        as above
    /h2/<tag>/small     ``return 200 "hello world\\n"`` (no disk access)
    /h2/<tag>/<file>    the static files above
    Every /h2/ request is logged to ``h2.log`` with ``$connection``
    and ``$server_protocol``, so the harness can count the connections and check
    the protocol each client used.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self

HOST = "127.0.0.1"
BIG_SIZE = 1 << 30  # 1 GiB
MID_SIZE = 40 * 1024  # 40 KiB
SMALL_BODY = b"hello world\n"

_CONFIG = """\
worker_processes 1;
{affinity}daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    keepalive_timeout 300s;
    send_timeout 30s;
    server_tokens off;

    log_format bench_conn '$connection $connection_requests $request_uri '
                          '$status $body_bytes_sent';

    server {{
        listen {host}:{port} backlog=4096;
        root {www};

        location = /small {{
            default_type text/plain;
            return 200 "hello world\\n";
        }}

        location = /big {{
        }}

        location /ec/ {{
            access_log {tmp}/early_close.log bench_conn;
            rewrite ^/ec/[^/]+/(.+)$ /$1 break;
        }}
    }}

{h2_server}}}
"""


_H2_SERVER = """\
    log_format bench_h2 '$connection $connection_requests $request_uri '
                        '$status $body_bytes_sent $server_protocol';

    server {{
        {listen}
        ssl_certificate {tmp}/server.pem;
        ssl_certificate_key {tmp}/server.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:bench_ssl:1m;
        root {www};

        location = /small {{
            default_type text/plain;
            return 200 "hello world\\n";
        }}

        location = /big {{
        }}

        location ~ ^/h2/[^/]+/small$ {{
            access_log {tmp}/h2.log bench_h2;
            default_type text/plain;
            return 200 "hello world\\n";
        }}

        location /h2/ {{
            access_log {tmp}/h2.log bench_h2;
            rewrite ^/h2/[^/]+/(.+)$ /$1 break;
        }}
    }}
"""


class NginxError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def nginx_binary() -> str:
    """Return the path of the nginx binary, installing it with apt-get if missing."""
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    print("[bench] nginx not found; installing it with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "nginx"]):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NginxError(
                f"could not run {' '.join(cmd)!r} ({exc}); install nginx manually "
                "(e.g. `apt-get install -y nginx`) and retry"
            ) from exc
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
            raise NginxError(
                f"{' '.join(cmd)!r} failed with exit code {proc.returncode}:\n{tail}\n"
                "Install nginx manually (e.g. `apt-get install -y nginx` as root) and retry."
            )
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise NginxError("apt-get reported success but no nginx binary was found")


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(" ", 1)[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def h2_listen_directive(version: str, host: str, port: int) -> str:
    """The TLS + HTTP/2 listen line: ``http2 on;`` exists since nginx 1.25.1,
    older versions (e.g. Debian's 1.22) take ``listen ... ssl http2;``."""
    if _version_tuple(version) >= (1, 25, 1):
        return f"listen {host}:{port} ssl backlog=4096;\n        http2 on;"
    return f"listen {host}:{port} ssl http2 backlog=4096;"


def write_certificates(tmp: Path) -> Path:
    """Issue a certificate for 127.0.0.1/localhost from a fresh trustme CA.

    Writes ``server.pem`` (key + chain, for nginx) and ``ca.pem`` (for the
    clients) into ``tmp``; returns the CA path."""
    try:
        import trustme
    except ImportError as exc:
        raise NginxError(
            "the HTTP/2 scenarios need trustme for a throw-away certificate: "
            "`.venv/bin/pip install trustme` (or run only the HTTP/1.1 scenarios)"
        ) from exc
    ca = trustme.CA()
    leaf = ca.issue_cert(HOST, "localhost")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    ca_path = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return ca_path


def nginx_version(binary: str) -> str:
    try:
        proc = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    out = (proc.stderr or proc.stdout).strip()
    return out.split("/", 1)[-1] if "/" in out else out


class Nginx:
    """Context manager running a private nginx; always stopped on exit."""

    def __init__(self, cpu: int | None = None, h2: bool = True) -> None:
        self.cpu = cpu
        self.h2 = h2  # also start the TLS + HTTP/2 server block
        self.binary = ""
        self.version = ""
        self.tmp: Path | None = None
        self.port = 0
        self.port_h2 = 0
        self.ca_path: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    # -- public helpers -------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def h2_base_url(self) -> str:
        return f"https://{HOST}:{self.port_h2}"

    @property
    def h2_log(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "h2.log"

    def h2_log_offset(self) -> int:
        """Current size of h2.log: pass it to ``h2_log_for_tag`` to scan only
        what was logged after this point."""
        try:
            return self.h2_log.stat().st_size
        except FileNotFoundError:
            return 0

    def h2_log_for_tag(self, tag: str, offset: int, expected: int, settle: float = 2.0) -> dict[str, object]:
        """Connections and protocols that served /h2/<tag>/... (from h2.log).

        Waits up to ``settle`` s for ``expected`` lines: an aborted stream is
        logged only once nginx sees the RST_STREAM or the connection close."""
        prefix = f"/h2/{tag}/"
        deadline = time.monotonic() + settle
        while True:
            lines: list[list[str]] = []
            try:
                with open(self.h2_log, "rb") as f:
                    f.seek(offset)
                    text = f.read().decode("ascii", "replace")
            except FileNotFoundError:
                text = ""
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 6 and parts[2].startswith(prefix):
                    lines.append(parts)
            if len(lines) >= expected or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        conns: dict[str, int] = {}
        protocols: dict[str, int] = {}
        by_file: dict[str, set[str]] = {}
        for conn, _reqs, uri, _status, _sent, proto in (p[:6] for p in lines):
            conns[conn] = conns.get(conn, 0) + 1
            protocols[proto] = protocols.get(proto, 0) + 1
            by_file.setdefault(uri[len(prefix) :], set()).add(conn)
        return {
            "connections": len(conns),
            "logged_requests": len(lines),
            "server_protocols": protocols,
            "connections_by_file": {k: sorted(v) for k, v in by_file.items()},
        }

    @property
    def early_close_log(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "early_close.log"

    def connections_for_tag(self, tag: str, settle: float = 2.0) -> dict[str, int]:
        """Count distinct server-side connections that served /ec/<tag>/... ."""
        prefix = f"/ec/{tag}/"
        deadline = time.monotonic() + settle
        while True:
            conns: set[str] = set()
            requests = 0
            try:
                text = self.early_close_log.read_text()
            except FileNotFoundError:
                text = ""
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[2].startswith(prefix):
                    conns.add(parts[0])
                    requests += 1
            # The aborted stream is logged only when nginx notices the close;
            # give it a moment so the count is complete.
            if requests >= 101 or time.monotonic() >= deadline:
                return {"connections": len(conns), "logged_requests": requests}
            time.sleep(0.05)

    def warm_up(self, timeout: float = 120.0) -> None:
        """Fetch /big once over a plain socket so the 1 GiB file is in the page
        cache before any client is measured (the first read of the sparse file
        is much slower than later ones)."""
        deadline = time.monotonic() + timeout
        req = f"GET /big HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nConnection: close\r\n\r\n"
        with socket.create_connection((HOST, self.port), timeout=30) as s:
            s.sendall(req.encode("ascii"))
            buf = bytearray(1 << 20)
            total = 0
            while time.monotonic() < deadline:
                n = s.recv_into(buf)
                if not n:
                    break
                total += n
        if total < BIG_SIZE:
            raise NginxError(f"warm-up download of /big got only {total} bytes")

    # -- lifecycle --------------------------------------------------------
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
        self.binary = nginx_binary()
        self.version = nginx_version(self.binary)
        self.tmp = Path(tempfile.mkdtemp(prefix="httpstream-bench-nginx-"))
        # nginx workers drop privileges (user nobody when started as root):
        # let them traverse the directory and read the served files.
        self.tmp.chmod(0o755)
        www = self.tmp / "www"
        www.mkdir()
        (www / "small").write_bytes(SMALL_BODY)
        (www / "mid40k").write_bytes(b"m" * MID_SIZE)
        with open(www / "big", "wb") as f:
            f.truncate(BIG_SIZE)  # sparse: costs no disk space
        self.port = free_port()
        if self.h2:
            self.ca_path = write_certificates(self.tmp)
            self.port_h2 = free_port()
            h2_server = _H2_SERVER.format(
                tmp=self.tmp, www=www, listen=h2_listen_directive(self.version, HOST, self.port_h2)
            )
        else:
            h2_server = ""
        conf = self.tmp / "nginx.conf"
        conf.write_text(
            _CONFIG.format(
                tmp=self.tmp,
                www=www,
                host=HOST,
                port=self.port,
                h2_server=h2_server,
                # bitmask with only bit `cpu` set, e.g. cpu 0 -> "1", cpu 1 -> "10"
                affinity="" if self.cpu is None else f"worker_cpu_affinity {1 << self.cpu:b};\n",
            )
        )
        with open(self.tmp / "stderr.log", "wb") as err:
            self.proc = subprocess.Popen(
                [self.binary, "-p", str(self.tmp), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        self._wait_ready(timeout=15.0)

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        assert self.tmp is not None
        deadline = time.monotonic() + timeout
        ports = [self.port] + ([self.port_h2] if self.h2 else [])
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NginxError(f"nginx exited early:\n{self._logs()}")
            try:
                for port in ports:
                    with socket.create_connection((HOST, port), timeout=0.5):
                        pass
                return
            except OSError:
                time.sleep(0.05)
        raise NginxError(f"nginx did not accept connections within {timeout}s:\n{self._logs()}")

    def _logs(self) -> str:
        assert self.tmp is not None
        out = []
        for name in ("stderr.log", "error.log"):
            p = self.tmp / name
            if p.exists():
                out.append(p.read_text(errors="replace")[-2000:])
        return "\n".join(out)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)  # fast shutdown of master + worker
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # our own session only
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
