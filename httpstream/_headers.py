"""An ordered, case-insensitive multi-map of header fields.

Fields are stored as raw bytes with the sender's case kept, so a proxy can pass
them on unchanged; lookups are case-insensitive.  Repeated names are kept in
order (``Set-Cookie`` stays intact); ``headers["name"]`` joins repeats with
``", "`` and ``get_list()`` returns them one by one.

Values given as ``str`` are encoded as Latin-1 when they can be (the historical
header charset) and UTF-8 otherwise; values are decoded as Latin-1, which never
fails and round-trips every byte.  Names and values that contain CR, LF or NUL are
refused (RFC 9110 section 5.5): they would split or smuggle a header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Union

from ._exceptions import LocalProtocolError

__all__ = ["Headers", "HeaderTypes", "encode_header_value", "multiplexed_request_fields"]

HeaderKey = Union[str, bytes]
HeaderTypes = Union[
    "Headers",
    Mapping[str, str],
    Mapping[bytes, bytes],
    Sequence[tuple[str, str]],
    Sequence[tuple[bytes, bytes]],
    None,
]

# RFC 9110 section 5.1: field-name = token.
# fullmatch, never ``$``: ``$`` also matches before a final "\n", which would let
# "X-Name\n" through and split the header block.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")


def _encode_name(name: HeaderKey) -> bytes:
    try:
        raw = name.encode("latin-1") if isinstance(name, str) else bytes(name)
    except UnicodeEncodeError:
        raise LocalProtocolError(f"invalid header name {name!r}: not a token (not even Latin-1)") from None
    if not _TOKEN.fullmatch(raw):
        raise LocalProtocolError(f"invalid header name {raw!r}")
    return raw


def encode_header_value(value: str | bytes | int) -> bytes:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode("ascii")
    if isinstance(value, str):
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            try:
                raw = value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: no byte form to send
                raise LocalProtocolError(f"header value {value!r} cannot be encoded (lone surrogate)") from None
    elif isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        raise TypeError(f"header value must be str or bytes, not {type(value).__name__}")
    if _BAD_VALUE.search(raw):
        raise LocalProtocolError(f"header value contains CR, LF or NUL: {raw!r}")
    return raw.strip(b" \t")


def _key(name: HeaderKey) -> bytes:
    if isinstance(name, bytes):
        return name.lower()
    try:
        return name.encode("latin-1").lower()
    except UnicodeEncodeError:
        # Not Latin-1, so not a token: no stored name can equal it.  A NUL is in no
        # field name either, so this key matches nothing (a lookup finds no field).
        return b"\0"


class Headers(MutableMapping[str, str]):
    """Ordered, case-insensitive header fields with repeats kept."""

    __slots__ = ("_items",)

    def __init__(self, headers: HeaderTypes = None) -> None:
        self._items: list[tuple[bytes, bytes, bytes]] = []
        if headers is None:
            return
        if isinstance(headers, Headers):
            self._items = list(headers._items)
            return
        pairs: Iterable[tuple[HeaderKey, str | bytes]]
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in pairs:
            self.add(name, value)

    @classmethod
    def from_triples(cls, items: list[tuple[bytes, bytes, bytes]]) -> Headers:
        """Trusted (raw name, lower name, value) triples from a parser, taken as they are."""
        new = cls.__new__(cls)
        new._items = items
        return new

    def extend_raw(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        """Append trusted fields straight from a parser."""
        self._items.extend((name, name.lower(), value) for name, value in raw)

    # -- reading ---------------------------------------------------------------
    def get_list(self, name: HeaderKey) -> list[str]:
        key = _key(name)
        return [v.decode("latin-1") for _, k, v in self._items if k == key]

    def get_raw(self, name: HeaderKey) -> list[bytes]:
        key = _key(name)
        return [v for _, k, v in self._items if k == key]

    def __getitem__(self, name: str) -> str:
        values = self.get_list(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, (str, bytes)) and self.has(name)

    def has(self, name: HeaderKey) -> bool:
        key = _key(name)
        for _, k, _ in self._items:  # noqa: SIM110 - a plain loop: cheaper than any() here, several calls a request
            if k == key:
                return True
        return False

    def __iter__(self) -> Iterator[str]:
        seen: set[bytes] = set()
        for raw, key, _ in self._items:
            if key not in seen:
                seen.add(key)
                yield raw.decode("latin-1")

    def __len__(self) -> int:
        return len({k for _, k, _ in self._items})

    def multi_items(self) -> list[tuple[str, str]]:
        return [(r.decode("latin-1"), v.decode("latin-1")) for r, _, v in self._items]

    def triples(self) -> list[tuple[bytes, bytes, bytes]]:
        """(raw name, lower-cased name, value) for every field, in order."""
        return self._items

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        """Fields as sent or received: (name with its case, value) in order."""
        return [(r, v) for r, _, v in self._items]

    # -- writing ---------------------------------------------------------------
    def add(self, name: HeaderKey, value: str | bytes) -> None:
        """Append a field, keeping any existing ones with the same name."""
        raw = _encode_name(name)
        self._items.append((raw, raw.lower(), encode_header_value(value)))

    def __setitem__(self, name: str, value: str) -> None:
        raw = _encode_name(name)
        key = raw.lower()
        encoded = encode_header_value(value)
        for index, (_, k, _) in enumerate(self._items):
            if k == key:
                self._items[index] = (raw, key, encoded)
                self._items = [item for i, item in enumerate(self._items) if i <= index or item[1] != key]
                return
        self._items.append((raw, key, encoded))

    def setdefault_raw(self, name: bytes, value: bytes) -> None:
        """Set a trusted field unless present (for defaults the library adds)."""
        key = name.lower()
        for _, k, _ in self._items:
            if k == key:
                return
        self._items.append((name, key, value))

    def setdefault_first_raw(self, name: bytes, value: bytes) -> None:
        """``setdefault_raw`` at the front: for ``Host`` (RFC 9110 section 7.2 has it first)."""
        key = name.lower()
        items = self._items
        for _, k, _ in items:
            if k == key:
                return
        items.insert(0, (name, key, value))

    def __delitem__(self, name: str) -> None:
        key = _key(name)
        before = len(self._items)
        self._items = [item for item in self._items if item[1] != key]
        if len(self._items) == before:
            raise KeyError(name)

    def update(self, other: HeaderTypes = None, /, **kwargs: str) -> None:  # type: ignore[override]
        incoming = Headers(other)
        for name in kwargs:
            incoming[name] = kwargs[name]
        keys = {k for _, k, _ in incoming._items}
        self._items = [item for item in self._items if item[1] not in keys] + incoming._items

    def copy(self) -> Headers:
        return Headers(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return sorted((k, v) for _, k, v in self._items) == sorted((k, v) for _, k, v in other._items)
        if isinstance(other, Mapping):
            return self == Headers(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.multi_items()!r})"


# RFC 9113 section 8.2.2 / RFC 9114 section 4.2: connection-specific fields are
# not sent over HTTP/2 or HTTP/3 (Host becomes :authority).
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"}
)


def multiplexed_request_fields(
    method: str, scheme: str, authority: bytes, target: str, headers: Headers, *, protocol: str | None = None
) -> list[tuple[bytes, bytes]]:
    """An HTTP/2 or HTTP/3 request's field list: pseudo-headers first, then the
    request's fields (already lowercased and validated) minus connection-specific
    ones (``Host`` too: ``:authority`` carries it); ``TE`` only as ``trailers``.

    CONNECT (RFC 9113 section 8.5) carries only ``:method`` and ``:authority``
    (the target, ``host:port``); extended CONNECT (RFC 8441 section 4) adds
    ``:protocol`` and keeps ``:scheme`` and ``:path``.
    """
    if method == "CONNECT" and protocol is None:
        out = [(b":method", b"CONNECT"), (b":authority", target.encode("ascii"))]
    else:
        out = [
            (b":method", method.encode("ascii")),
            (b":scheme", scheme.encode("ascii")),
            (b":authority", authority),
            (b":path", target.encode("ascii")),
        ]
        if protocol is not None:
            out.insert(1, (b":protocol", protocol.encode("ascii")))
    for _, name, value in headers.triples():
        if name in _CONNECTION_SPECIFIC or (name == b"te" and value.lower() != b"trailers"):
            continue
        out.append((name, value))
    return out
