"""Alt-Svc (RFC 7838): parsing, and the per-origin cache of HTTP/3 alternatives.

Only what HTTP/3 discovery needs: ``h3`` alternatives (``h3=":443"`` or
``h3="host:port"``), their ``ma`` (max-age, default 24 hours) and ``clear``.
Pure code: time comes in as ``now``.  The cache also remembers origins whose
HTTP/3 attempt failed ("broken"), so they go over TCP for a while.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["AltService", "AltSvcCache", "parse_alt_svc"]

DEFAULT_MAX_AGE = 86400.0
_ENTRY = re.compile(
    r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*"([^"]*)"\s*((?:;\s*[^,;=\s]+\s*=\s*(?:"[^"]*"|[^,;\s]*)\s*)*)'
)
_PARAM = re.compile(r';\s*([^,;=\s]+)\s*=\s*("[^"]*"|[^,;\s]*)')


@dataclass(frozen=True, slots=True)
class AltService:
    protocol: str  # ALPN id, e.g. "h3"
    host: str  # empty: the origin's own host
    port: int
    max_age: float


def parse_alt_svc(value: str) -> list[AltService] | None:
    """The alternatives of one Alt-Svc field value; None for ``clear``.

    Malformed entries are skipped (RFC 7838 section 3: a client ignores what it
    cannot parse), never raised.
    """
    if value.strip().lower() == "clear":
        return None
    out: list[AltService] = []
    pos = 0
    while pos < len(value):
        match = _ENTRY.match(value, pos)
        if match is None:
            comma = value.find(",", pos)
            if comma < 0:
                break
            pos = comma + 1
            continue
        protocol, authority, params = match.group(1), match.group(2), match.group(3)
        pos = match.end()
        if pos < len(value) and value[pos] == ",":
            pos += 1
        host, _, port_text = authority.rpartition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            continue
        max_age = DEFAULT_MAX_AGE
        for name, raw in _PARAM.findall(params):
            if name.lower() == "ma":
                text = raw.strip('"')
                if text.isdigit():
                    max_age = float(text)
        out.append(AltService(protocol, host.strip("[]"), int(port_text), max_age))
    return out


class AltSvcCache:
    """Per-origin HTTP/3 alternatives with expiry, and origins marked broken."""

    def __init__(self, *, broken_for: float = 300.0, max_entries: int = 1024) -> None:
        self._entries: dict[object, tuple[AltService, float]] = {}
        self._broken: dict[object, float] = {}
        self._broken_for = broken_for
        self._max = max_entries

    def update(self, origin: object, header_values: list[str], now: float) -> None:
        """Take the Alt-Svc fields of a response from ``origin``."""
        for value in header_values:
            services = parse_alt_svc(value)
            if services is None:
                self._entries.pop(origin, None)
                continue
            for service in services:
                if service.protocol == "h3":
                    if service.max_age <= 0:
                        self._entries.pop(origin, None)
                    else:
                        if len(self._entries) >= self._max and origin not in self._entries:
                            self._entries.pop(next(iter(self._entries)))
                        self._entries[origin] = (service, now + service.max_age)
                    break

    def lookup(self, origin: object, now: float) -> AltService | None:
        """The live h3 alternative of ``origin``, unless expired or marked broken."""
        until = self._broken.get(origin)
        if until is not None:
            if now < until:
                return None
            del self._broken[origin]
        entry = self._entries.get(origin)
        if entry is None:
            return None
        service, expires = entry
        if now >= expires:
            del self._entries[origin]
            return None
        return service

    def add(self, origin: object, service: AltService, expires: float) -> None:
        """Remember ``service`` for ``origin`` until ``expires`` (on the ``now`` clock).

        For alternatives known without a response header: an entry saved by an
        earlier process (a cache file), or a guess such as "h3 on the same port"
        (curl's ``--http3``: try HTTP/3 first, fall back to TCP when it fails).
        """
        if service.protocol != "h3":
            return
        if len(self._entries) >= self._max and origin not in self._entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[origin] = (service, expires)

    def entries(self, now: float) -> list[tuple[object, AltService, float]]:
        """The live alternatives as ``(origin, service, expires)``, to save them elsewhere."""
        return [(origin, service, expires) for origin, (service, expires) in self._entries.items() if now < expires]

    def mark_broken(self, origin: object, now: float) -> None:
        self._broken[origin] = now + self._broken_for

    def is_broken(self, origin: object, now: float) -> bool:
        until = self._broken.get(origin)
        return until is not None and now < until
