"""The checks on a response's fields that are ours, not h2's (RFC 9113 section 8).

h2 runs with ``validate_inbound_headers=False``: a malformed response is a
*stream* error (section 8.1.1), which h2 would raise as a connection error and
so fail every stream in flight.  ``malformed`` says why a head or trailer
section is malformed, and ``H2Protocol`` resets only that stream.
"""

from __future__ import annotations

import re

import h2.errors

__all__ = ["code_name", "malformed"]


_FIELD_NAME = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
_BAD_VALUE = re.compile(rb"[\r\n\x00]|^[ \t]|[ \t]$")
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})


def malformed(fields: list[tuple[bytes, bytes]], *, trailers: bool) -> str | None:
    """Why a response head (or trailer section) is malformed, or None (RFC 9113 section 8)."""
    status_seen = False
    regular_seen = False
    for name, value in fields:
        if name.startswith(b":"):
            if trailers or name != b":status" or status_seen or regular_seen:
                return f"unexpected pseudo-header {name!r}"
            if len(value) != 3 or not value.isdigit():
                return f"invalid :status {value!r}"
            status_seen = True
            continue
        regular_seen = True
        if not _FIELD_NAME.match(name):
            return f"invalid field name {name!r} (HTTP/2 field names are lowercase tokens)"
        if name in _CONNECTION_SPECIFIC or name == b"te":
            return f"connection-specific field {name.decode()!r}"
        if _BAD_VALUE.search(value):
            return f"invalid value for {name.decode()!r}"
    if not trailers and not status_seen:
        return "no :status"
    return None


def code_name(code: object) -> str:
    try:
        return h2.errors.ErrorCodes(int(code)).name  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return f"error code {code}"
