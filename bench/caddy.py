"""A private, throw-away caddy (HTTP/3 over quic-go) bound to 127.0.0.1 for the
``h3_*`` scenarios.

Everything (Caddyfile, certificate, logs, served files, caddy's own HOME/XDG
dirs) lives in a fresh temporary directory that is removed when the server is
stopped.  Two sites, each with a certificate for 127.0.0.1 issued per run by a
throw-away trustme CA (``ca.pem`` in the temp dir):

    https://127.0.0.1:PORT      HTTP/1.1, HTTP/2 and HTTP/3 (UDP on the same
                                port); caddy advertises it with
                                ``Alt-Svc: h3=":PORT"``.
        /small                  static file, ``hello world\\n`` (12 bytes)
        /big                    256 MiB static sparse file
        every request is logged to ``h3.log`` (JSON: proto, remote_port, uri)

    https://127.0.0.1:FB_PORT   HTTP/1.1 only (no UDP listener), for the
                                fallback scenario; every response carries
                                ``Alt-Svc: h3=":BLACKHOLE"; ma=60``, where
                                BLACKHOLE is a UDP socket this class binds on
                                127.0.0.1 and never reads: QUIC packets sent
                                there vanish without an ICMP error.
        /small                  as above; logged to ``fallback.log``

Requests carry the run's tag as a query string (``/small?t=TAG``), which the
static file server ignores and the access log keeps, so the harness can read
each run's lines: the protocol caddy saw and the client's UDP (or TCP) source
ports, one per connection.
"""

from __future__ import annotations

import json
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
BIG_SIZE = 256 * 1024 * 1024  # 256 MiB
SMALL_BODY = b"hello world\n"

_CADDYFILE = """\
{{
    admin off
    auto_https off
    servers {host}:{port} {{
        protocols h1 h2 h3
    }}
    servers {host}:{fb_port} {{
        protocols h1
    }}
}}

https://{host}:{port} {{
    bind {host}
    tls {tmp}/cert.pem {tmp}/key.pem
    root * {www}
    file_server
    log {{
        output file {tmp}/h3.log {{
            roll_disabled
        }}
        format json
    }}
}}

https://{host}:{fb_port} {{
    bind {host}
    tls {tmp}/cert.pem {tmp}/key.pem
    root * {www}
    header Alt-Svc "h3=\\":{blackhole}\\"; ma=60"
    file_server
    log {{
        output file {tmp}/fallback.log {{
            roll_disabled
        }}
        format json
    }}
}}
"""


class CaddyError(RuntimeError):
    pass


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (caddy's HTTP/3 listens on
    UDP on the same port number as HTTPS)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
        return port
    raise CaddyError("no port free for both TCP and UDP on 127.0.0.1")


def caddy_binary() -> str:
    """Return the path of the caddy binary, installing it with apt-get if missing."""
    for candidate in (shutil.which("caddy"), "/usr/bin/caddy"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    print("[bench] caddy not found; installing it with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "caddy"]):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CaddyError(
                f"could not run {' '.join(cmd)!r} ({exc}); install caddy manually "
                "(e.g. `apt-get install -y caddy`) and retry"
            ) from exc
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
            raise CaddyError(
                f"{' '.join(cmd)!r} failed with exit code {proc.returncode}:\n{tail}\n"
                "Install caddy manually (e.g. `apt-get install -y caddy` as root) and retry."
            )
    for candidate in (shutil.which("caddy"), "/usr/bin/caddy"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise CaddyError("apt-get reported success but no caddy binary was found")


def caddy_version(binary: str) -> str:
    try:
        proc = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (proc.stdout or proc.stderr).strip().split(" ", 1)[0] or "unknown"


def write_certificates(tmp: Path) -> Path:
    """cert.pem (leaf + chain) and key.pem for 127.0.0.1/localhost from a fresh
    trustme CA, and ca.pem for the clients; returns the CA path."""
    try:
        import trustme
    except ImportError as exc:
        raise CaddyError(
            "the HTTP/3 scenarios need trustme for a throw-away certificate: `.venv/bin/pip install trustme`"
        ) from exc
    ca = trustme.CA()
    leaf = ca.issue_cert(HOST, "localhost")
    cert = tmp / "cert.pem"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(tmp / "key.pem"))
    ca_path = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return ca_path


class Caddy:
    """Context manager running a private caddy; always stopped on exit."""

    def __init__(self, cpu: int | None = None) -> None:
        self.cpu = cpu
        self.binary = ""
        self.version = ""
        self.tmp: Path | None = None
        self.port = 0
        self.fb_port = 0
        self.ca_path: Path | None = None
        self.blackhole: socket.socket | None = None
        self.blackhole_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    # -- public helpers -------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def fallback_url(self) -> str:
        return f"https://{HOST}:{self.fb_port}"

    def log_path(self, name: str) -> Path:
        assert self.tmp is not None
        return self.tmp / f"{name}.log"

    def log_offset(self, name: str) -> int:
        """Current size of ``<name>.log`` ("h3" or "fallback")."""
        try:
            return self.log_path(name).stat().st_size
        except FileNotFoundError:
            return 0

    def log_for_tag(self, name: str, tag: str, offset: int, expected: int, settle: float = 2.0) -> dict[str, object]:
        """Connections (distinct client source ports) and protocols of the
        requests tagged ``?t=<tag>`` in ``<name>.log`` after ``offset``.

        Waits up to ``settle`` s for ``expected`` lines."""
        needle = f"t={tag}"
        deadline = time.monotonic() + settle
        while True:
            entries: list[dict[str, str]] = []
            try:
                with open(self.log_path(name), "rb") as f:
                    f.seek(offset)
                    text = f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                text = ""
            for line in text.splitlines():
                if needle not in line:
                    continue
                try:
                    req = json.loads(line).get("request", {})
                except json.JSONDecodeError:
                    continue  # a line still being written
                if req.get("uri", "").endswith(needle):
                    entries.append(req)
            if len(entries) >= expected or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        ports: dict[str, int] = {}
        protocols: dict[str, int] = {}
        for req in entries:
            port = str(req.get("remote_port", "?"))
            ports[port] = ports.get(port, 0) + 1
            proto = str(req.get("proto", "?"))
            protocols[proto] = protocols.get(proto, 0) + 1
        return {
            "connections": len(ports),
            "logged_requests": len(entries),
            "server_protocols": protocols,
            "requests_per_connection": sorted(ports.values(), reverse=True),
        }

    def blackhole_counters(self) -> tuple[int, int] | None:
        """(bytes queued, datagrams dropped) at the blackhole socket, from
        /proc/net/udp (nothing is read from the socket itself); None if unknown.
        A client's QUIC attempt raises one or both."""
        local = f"{socket.htonl(0x7F000001):08X}:{self.blackhole_port:04X}"
        try:
            with open("/proc/net/udp") as f:
                for line in f:
                    fields = line.split()
                    if len(fields) >= 13 and fields[1] == local:
                        rx_queue = int(fields[4].split(":")[1], 16)
                        return rx_queue, int(fields[-1])
        except (OSError, ValueError):
            pass
        return None

    def warm_up(self) -> None:
        """Read the 256 MiB file once so it is in the page cache before any
        client is measured."""
        assert self.tmp is not None
        with open(self.tmp / "www" / "big", "rb", buffering=0) as f:
            buf = bytearray(1 << 20)
            while f.readinto(buf):
                pass

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
        self.binary = caddy_binary()
        self.version = caddy_version(self.binary)
        self.tmp = Path(tempfile.mkdtemp(prefix="httpstream-bench-caddy-"))
        www = self.tmp / "www"
        www.mkdir()
        (www / "small").write_bytes(SMALL_BODY)
        with open(www / "big", "wb") as f:
            f.truncate(BIG_SIZE)  # sparse: costs no disk space
        self.ca_path = write_certificates(self.tmp)
        # The blackhole: bound (so no ICMP "port unreachable" comes back),
        # never read.  Held until stop().
        self.blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.blackhole.bind((HOST, 0))
        self.blackhole_port = self.blackhole.getsockname()[1]
        self.port = free_port()
        self.fb_port = free_port()
        conf = self.tmp / "Caddyfile"
        conf.write_text(
            _CADDYFILE.format(
                host=HOST,
                port=self.port,
                fb_port=self.fb_port,
                blackhole=self.blackhole_port,
                tmp=self.tmp,
                www=www,
            )
        )
        tmp = str(self.tmp)
        env = dict(os.environ, HOME=tmp, XDG_DATA_HOME=tmp, XDG_CONFIG_HOME=tmp)
        cpu = self.cpu
        with open(self.tmp / "stderr.log", "wb") as err:
            self.proc = subprocess.Popen(
                [self.binary, "run", "--config", str(conf), "--adapter", "caddyfile"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                cwd=tmp,
                start_new_session=True,
                # pinned before exec, so every Go thread inherits it (and
                # GOMAXPROCS follows the affinity mask)
                preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}),
            )
        self._wait_ready(timeout=15.0)

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CaddyError(f"caddy exited early:\n{self._logs()}")
            try:
                for port in (self.port, self.fb_port):
                    with socket.create_connection((HOST, port), timeout=0.5):
                        pass
                if self._udp_listening():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise CaddyError(f"caddy did not accept connections within {timeout}s:\n{self._logs()}")

    def _udp_listening(self) -> bool:
        """caddy's UDP (QUIC) socket on PORT exists: binding the port fails."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((HOST, self.port))
            except OSError:
                return True
        return False

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
        if self.blackhole is not None:
            self.blackhole.close()
            self.blackhole = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
