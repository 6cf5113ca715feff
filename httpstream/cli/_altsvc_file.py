"""The Alt-Svc cache file of ``httpstream --http3`` (curl's ``--alt-svc FILE``), and the HTTP/3 guess.

Theory of operation
-------------------
The pool keeps what servers advertise in ``Alt-Svc`` (``ConnectionPool.alt_svc``)
for the life of one process; the command line is one process per transfer, so
without a file every run would start over TCP.  With ``--http3`` the file is
loaded into the pool's cache before the request and what is in the cache is
written back after it, so a later run goes straight to the advertised
alternative.  The format is curl's, one alternative a line, so the two tools
can share a file:

    h2 example.org 443 h3 example.org 443 "20250131 12:00:00" 0 0

(source ALPN, host, port; alternative ALPN, host, port; expiry in UTC;
"persist" and "priority", written as 0 and ignored).  Only ``h3``
alternatives of ``https`` origins are kept; a line that does not parse is
skipped, as RFC 7838 section 3 says of a header that does not.

``--http3`` is curl's: try HTTP/3 first, fall back to TCP.  For an origin
with nothing in the cache, ``seed_h3_guess`` adds "h3 on the same port"
(what nearly every server that speaks HTTP/3 does); when the QUIC handshake
fails the pool marks the origin broken and sends the request over TCP, as it
does for any failed alternative.  The guess is never written to the file:
the file holds what servers said.

The cache runs on the monotonic clock; the file holds wall-clock times, so
entries are converted on the way in and out.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

from .._altsvc import AltService, AltSvcCache
from .._urls import Origin

__all__ = ["default_path", "load", "save", "seed_h3_guess"]

_DATE = "%Y%m%d %H:%M:%S"
GUESS_MAX_AGE = 86400.0


def default_path() -> Path:
    """``$XDG_CACHE_HOME/httpstream/alt-svc``, else ``~/.cache/httpstream/alt-svc``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "httpstream" / "alt-svc"


def _host(text: str) -> str:
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text.lower()


def load(cache: AltSvcCache, path: Path) -> int:
    """Add the file's live entries to ``cache``; return how many.  A missing file is an empty one."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    now_wall, now = time.time(), time.monotonic()
    count = 0
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#") or len(words) < 8 or words[3] != "h3":
            continue
        try:
            host, port = _host(words[1]), int(words[2])
            alt_host, alt_port = _host(words[4]), int(words[5])
            expiry = datetime.strptime(f"{words[6]} {words[7]}".strip('"'), _DATE)
        except ValueError:
            continue
        left = expiry.replace(tzinfo=UTC).timestamp() - now_wall
        if left <= 0 or not (0 < port < 65536 and 0 < alt_port < 65536):
            continue
        service = AltService("h3", "" if alt_host == host else alt_host, alt_port, left)
        cache.add(Origin("https", host, port), service, now + left)
        count += 1
    return count


def seed_h3_guess(cache: AltSvcCache, origin: Origin) -> AltService | None:
    """Guess "h3 on the same port" for ``origin`` unless the cache knows better; return the guess."""
    now = time.monotonic()
    if origin.scheme != "https" or cache.lookup(origin, now) is not None or cache.is_broken(origin, now):
        return None
    guess = AltService("h3", "", origin.port, GUESS_MAX_AGE)
    cache.add(origin, guess, now + GUESS_MAX_AGE)
    return guess


def save(cache: AltSvcCache, path: Path, guesses: list[AltService]) -> None:
    """Write the cache's live entries, guesses left out, replacing the file at once (never half written)."""
    now_wall, now = time.time(), time.monotonic()
    lines = ["# Alt-Svc cache of httpstream --http3 (curl's --alt-svc format)"]
    for origin, service, expires in cache.entries(now):
        if not isinstance(origin, Origin) or origin.scheme != "https" or any(service is g for g in guesses):
            continue
        when = datetime.fromtimestamp(now_wall + (expires - now), UTC).strftime(_DATE)
        host = f"[{origin.host}]" if ":" in origin.host else origin.host
        alt = service.host or origin.host
        alt = f"[{alt}]" if ":" in alt else alt
        lines.append(f'h2 {host} {origin.port} h3 {alt} {service.port} "{when}" 0 0')
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(partial, path)
