"""Configuration values (frozen dataclasses) and the SSLContext factory.

Stdlib only: this module sits at the bottom of the layer map.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, replace
from typing import Union

from ._exceptions import ConnectError

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "Limits",
    "TLSConfig",
    "Timeout",
    "TimeoutTypes",
    "VerifyTypes",
    "CertTypes",
    "create_ssl_context",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeout:
    """Deadlines in seconds; ``None`` disables one.

    connect: DNS + TCP + TLS handshake.  read: the wait for each chunk (or for the
    response head), re-armed on progress.  write: the wait for the peer to accept
    request bytes (flow control).  pool: the wait for a free connection.
    total: one deadline for the whole request, redirects and retries included,
    until the body is read or closed (None: no overall deadline).  expect: how
    long a request sent with ``Expect: 100-continue`` waits for the interim
    answer before sending its body anyway (RFC 9110 section 10.1.1).
    """

    connect: float | None = 10.0
    read: float | None = 30.0
    write: float | None = 30.0
    pool: float | None = 10.0
    total: float | None = None
    expect: float | None = 1.0

    @classmethod
    def all(cls, value: float | None) -> Timeout:
        """One value for every phase: ``Timeout.all(5.0)``."""
        return cls(connect=value, read=value, write=value, pool=value)


TimeoutTypes = Union[Timeout, float, None]


def to_timeout(value: TimeoutTypes) -> Timeout:
    if isinstance(value, Timeout):
        return value
    return Timeout.all(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Pool and stream limits.

    max_connections: open connections in the pool, all origins together.
    max_connections_per_host: open connections to one origin (None: no own cap).
    max_keepalive_connections: idle connections kept for reuse.
    keepalive_expiry: seconds an idle connection is kept.
    max_drain_bytes / drain_timeout: an HTTP/1.1 body closed early with at most
      this many bytes left is read off in the background (within the deadline) so
      the connection can be reused; a larger or unknown remainder closes it.
    max_header_bytes / max_header_count: limits on a response head.
    max_informational_responses: 1xx responses tolerated before the final one.
    read_high_water / read_low_water: unread body bytes above which reading from
      the socket pauses, and below which it resumes (HTTP/1.1).
    max_concurrent_streams: our own cap on streams per HTTP/2 connection (the
      server's SETTINGS_MAX_CONCURRENT_STREAMS applies too).
    h2_stream_window / h2_connection_window: HTTP/2 receive windows.  A slow
      reader holds at most one stream window; the connection window is larger so
      one stalled stream never stops the others.
    h2_max_frame_size: the largest frame the server may send us.
    h2_ping_after: an HTTP/2 (or HTTP/3) connection idle this long is checked
      with PING before it is reused (None: never).
    h3_stream_window: HTTP/3 per-stream receive window; credit is given for
      consumed bytes only, so a slow reader holds at most this much per stream.
    h3_handshake_timeout: how long a QUIC handshake may take before the pool
      falls back to TCP (and marks the origin broken for ``h3_broken_for`` s).
    """

    max_connections: int | None = 100
    max_connections_per_host: int | None = None
    max_keepalive_connections: int | None = 20
    keepalive_expiry: float | None = 5.0
    max_drain_bytes: int = 64 * 1024
    drain_timeout: float = 0.5
    max_header_bytes: int = 64 * 1024
    max_header_count: int = 256
    max_informational_responses: int = 16
    read_high_water: int = 1024 * 1024
    read_low_water: int = 256 * 1024
    max_concurrent_streams: int = 100
    h2_stream_window: int = 4 * 1024 * 1024
    h2_connection_window: int = 16 * 1024 * 1024
    h2_max_frame_size: int = 64 * 1024
    h2_ping_after: float | None = 10.0
    h3_stream_window: int = 1024 * 1024
    h3_handshake_timeout: float = 0.8
    h3_broken_for: float = 300.0

    def __post_init__(self) -> None:
        if self.h2_stream_window > 2**31 - 1 or self.h2_connection_window > 2**31 - 1:
            raise ValueError("HTTP/2 windows must be below 2**31")
        if not 16384 <= self.h2_max_frame_size <= 2**24 - 1:
            raise ValueError("h2_max_frame_size must be between 16384 and 16777215")
        if self.read_low_water > self.read_high_water:
            raise ValueError("read_low_water must not exceed read_high_water")
        for name in ("max_connections", "max_connections_per_host", "max_keepalive_connections"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None")

    def replace(self, **changes: object) -> Limits:
        return replace(self, **changes)  # type: ignore[arg-type]


DEFAULT_TIMEOUT = Timeout()
DEFAULT_LIMITS = Limits()

VerifyTypes = Union[bool, str, os.PathLike[str], ssl.SSLContext]
CertTypes = Union[str, tuple[str, str], tuple[str, str, str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    """Every TLS setting that changes what a connection may be used for.

    It is part of the pool key, so a connection made with verification off is
    never handed to a request that wants it on.
    """

    verify: bool | str | ssl.SSLContext = True
    cert: CertTypes = None
    alpn: tuple[str, ...] = ("http/1.1",)

    def key(self) -> tuple[object, ...]:
        verify: object = id(self.verify) if isinstance(self.verify, ssl.SSLContext) else self.verify
        return (verify, self.cert, self.alpn)


def create_ssl_context(config: TLSConfig) -> ssl.SSLContext:
    """Build the client SSLContext for ``config`` (verification on by default).

    A caller-provided SSLContext is used as it is, except that its ALPN list is set
    to what this pool speaks: we must know what we offered to read what was picked.

    The pool builds the context at its first https request, so a CA bundle or a
    client certificate that cannot be loaded surfaces there: as ``ConnectError``
    naming the setting and the file, never as a bare ``ssl.SSLError`` or
    ``FileNotFoundError``.
    """
    verify = config.verify
    if isinstance(verify, ssl.SSLContext):
        ctx = verify
    elif verify is False:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif verify is True:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        _load_env_ca(ctx)
    else:
        path = os.fspath(verify)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        try:
            if os.path.isdir(path):
                ctx.load_verify_locations(capath=path)
            else:
                ctx.load_verify_locations(cafile=path)
        except OSError as exc:  # ssl.SSLError is an OSError too
            raise _load_failed("verify", path, exc) from exc
    ctx.set_alpn_protocols(list(config.alpn))
    if not isinstance(verify, ssl.SSLContext):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        cert = config.cert
        if cert is not None:
            try:
                if isinstance(cert, str):
                    ctx.load_cert_chain(cert)
                elif len(cert) == 2:
                    ctx.load_cert_chain(cert[0], cert[1])
                else:
                    ctx.load_cert_chain(cert[0], cert[1], cert[2])
            except OSError as exc:
                raise _load_failed("cert", cert if isinstance(cert, str) else cert[0], exc) from exc
    return ctx


def _load_failed(setting: str, path: str, exc: OSError) -> ConnectError:
    if isinstance(exc, ssl.SSLError):
        # OpenSSL's own words are "PEM lib" when the file parses as nothing.
        reason = exc.reason or "no usable PEM certificate or key in the file"
    else:
        reason = exc.strerror or str(exc)
    return ConnectError(f"TLS set-up failed: cannot load {setting}={path!r}: {reason}")


def _load_env_ca(ctx: ssl.SSLContext) -> None:
    """Honour SSL_CERT_FILE / SSL_CERT_DIR as OpenSSL-based tools do."""
    cafile = os.environ.get("SSL_CERT_FILE")
    capath = os.environ.get("SSL_CERT_DIR")
    if cafile and os.path.isfile(cafile):
        try:
            ctx.load_verify_locations(cafile=cafile)
        except OSError as exc:
            raise _load_failed("SSL_CERT_FILE", cafile, exc) from exc
    if capath and os.path.isdir(capath):
        ctx.load_verify_locations(capath=capath)  # a directory is only indexed here, read when used
