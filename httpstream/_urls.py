"""URLs and origins.

A ``URL`` is parsed once and keeps what goes on the wire: the scheme, the host in
ASCII (IDNA 2008 with UTS46 mapping, so ``bücher.example`` becomes
``xn--bcher-kva.example`` for DNS, the Host header and SNI), the port and the
request target (path and query, percent-encoded).  Anything that could split a
request line or a header (CR, LF, NUL, space, other controls) is refused.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, Union
from urllib.parse import quote, urlencode, urljoin, urlsplit

import idna

from ._exceptions import InvalidURL

__all__ = ["URL", "Origin", "QueryParamTypes", "merge_params"]

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # spaces are percent-encoded, controls refused
_HOST_OK = re.compile(r"[a-z0-9.\-_]+")  # used with fullmatch: ``$`` would let a final "\n" by
# RFC 3986 section 3.3: pchar plus "/" and "%" (keep existing escapes as they are).
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"

PrimitiveData = Union[str, int, float, bool, None]
QueryParamTypes = Union[
    Mapping[str, Union[PrimitiveData, Sequence[PrimitiveData]]],
    Sequence[tuple[str, PrimitiveData]],
    str,
    None,
]


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def _require_utf8(text: str, what: str) -> str:
    """``text`` itself, if it has a UTF-8 form: a lone surrogate (U+D800..U+DFFF) has
    none, so it can be neither percent-encoded nor sent."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidURL(f"{what} {text!r} holds a lone surrogate ({exc.reason}); it has no UTF-8 form") from None
    return text


def _encode_host(host: str, url: str) -> str:
    if not host:
        raise InvalidURL(f"URL has no host: {url!r}")
    if host.startswith("["):
        if not host.endswith("]"):
            raise InvalidURL(f"invalid IPv6 host in URL {url!r}")
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError as exc:
            raise InvalidURL(f"invalid IPv6 host in URL {url!r}: {exc}") from None
    if host.isascii():
        lowered = host.lower()
        if not _HOST_OK.fullmatch(lowered):
            raise InvalidURL(f"invalid character in host {host!r} of URL {url!r}")
        # RFC 5890 section 2.3.2.1: a label that starts with "xn--" must be a
        # valid A-label.  A fake one (bad Punycode, or Punycode for a code point
        # IDNA disallows) is refused here rather than sent to DNS and SNI as is.
        for label in lowered.split("."):
            if label.startswith("xn--"):
                try:
                    idna.decode(label)
                except (idna.IDNAError, UnicodeError) as exc:
                    raise InvalidURL(f"invalid host {host!r} in URL {url!r}: {exc}") from None
        return lowered
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidURL(f"invalid host {host!r} in URL {url!r}: {exc}") from None


# Parsing (urlsplit, IDNA, quoting) costs more than a request's own bookkeeping;
# programs ask for the same URLs again and again, so results are remembered.
_PARSED: dict[str, tuple[str, str, str, int | None, str, str, str]] = {}
_PARSED_MAX = 1024


class URL:
    """A parsed absolute URL (or a relative reference, before joining)."""

    __slots__ = ("scheme", "userinfo", "host", "port", "path", "query", "fragment", "_str")
    _str: str | None

    def __init__(self, url: str | URL) -> None:
        if isinstance(url, URL):
            for name in URL.__slots__:
                setattr(self, name, getattr(url, name))
            return
        if not isinstance(url, str):
            raise TypeError(f"URL must be str or URL, not {type(url).__name__}")
        cached = _PARSED.get(url)
        if cached is not None:
            (self.scheme, self.userinfo, self.host, self.port, self.path, self.query, self.fragment) = cached
            self._str = None
            return
        if _CONTROL.search(url.strip(" ")):
            raise InvalidURL(f"URL contains a control character (CR, LF, NUL...): {url!r}")
        _require_utf8(url, "URL")
        try:
            parts = urlsplit(url.strip(" "))
            port = parts.port
        except ValueError as exc:
            raise InvalidURL(f"invalid URL {url!r}: {exc}") from None
        self.scheme = parts.scheme.lower()
        netloc = parts.netloc
        self.userinfo = netloc.rpartition("@")[0] if "@" in netloc else ""
        hostport = netloc.rpartition("@")[2]
        if hostport.startswith("["):
            host = hostport[: hostport.find("]") + 1]
        else:
            host = hostport.rpartition(":")[0] if ":" in hostport else hostport
        self.host = _encode_host(host, url) if netloc else ""
        self.port = port
        self.path = quote(parts.path, safe=_PATH_SAFE)
        self.query = quote(parts.query, safe=_QUERY_SAFE)
        self.fragment = parts.fragment
        self._str = None
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[url] = (self.scheme, self.userinfo, self.host, self.port, self.path, self.query, self.fragment)

    # -- what the wire needs -------------------------------------------------
    @property
    def is_absolute(self) -> bool:
        return bool(self.scheme and self.host)

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        try:
            return DEFAULT_PORTS[self.scheme]
        except KeyError:
            raise InvalidURL(f"no default port for scheme {self.scheme!r} in {self}") from None

    @property
    def origin(self) -> Origin:
        return Origin(self.scheme, self.host, self.effective_port)

    @property
    def target(self) -> str:
        """The request target in origin-form: path and query."""
        path = self.path or "/"
        return f"{path}?{self.query}" if self.query else path

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None and self.port != DEFAULT_PORTS.get(self.scheme):
            return f"{host}:{self.port}"
        return host

    # -- building new URLs -----------------------------------------------------
    def join(self, other: str | URL) -> URL:
        """Resolve a reference against this URL (RFC 3986 section 5)."""
        # Spaces around the reference are dropped first, as URL() drops them
        # (WHATWG URL parsing strips them too), so join(" //h/") is join("//h/").
        reference = other.strip(" ") if isinstance(other, str) else str(other)
        try:
            joined = urljoin(str(self), reference)
        except ValueError as exc:  # urljoin splits both, and refuses a bad bracketed host
            raise InvalidURL(f"cannot join {reference!r} to {str(self)!r}: {exc}") from None
        return URL(joined)

    def copy_with(self, *, query: str | None = None, fragment: str | None = None) -> URL:
        new = URL(self)
        if query is not None:
            new.query = quote(_require_utf8(query, "query"), safe=_QUERY_SAFE)
        if fragment is not None:
            new.fragment = fragment
        new._str = None
        return new

    def copy_merge_params(self, params: QueryParamTypes) -> URL:
        if not params:
            return self
        return self.copy_with(query=merge_params(self.query, params))

    def __str__(self) -> str:
        if self._str is None:
            # RFC 3986 section 5.3: "//" only before an authority.  Without a host,
            # "//" would turn the path ("http:foo") or its first segment ("////x")
            # into a host when the text is parsed again; an empty authority keeps
            # a path that starts with "/" a path.
            text = f"{self.scheme}:" if self.scheme else ""
            path = self.path
            if self.host:
                text += "//" + (self.userinfo + "@" if self.userinfo else "") + self.netloc
                path = path or "/"
            elif path.startswith("//") or (self.scheme and path.startswith("/")):
                text += "//"
            text += path
            if self.query:
                text += "?" + self.query
            if self.fragment:
                text += "#" + self.fragment
            self._str = text
        return self._str

    def __repr__(self) -> str:
        return f"URL({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (URL, str)):
            return str(self) == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))


def _param_pairs(params: QueryParamTypes) -> list[tuple[str, str]]:
    if params is None:
        return []
    items: Iterable[tuple[str, object]]
    if isinstance(params, str):
        from urllib.parse import parse_qsl

        return parse_qsl(params, keep_blank_values=True)
    if isinstance(params, Mapping):
        flat: list[tuple[str, object]] = []
        for key, value in params.items():
            if isinstance(value, (list, tuple)):
                flat.extend((key, v) for v in value)
            else:
                flat.append((key, value))
        items = flat
    else:
        items = params
    return [(str(k), primitive_value(v)) for k, v in items]


def primitive_value(value: object) -> str:
    """A query or form value as text, as httpx writes it: true/false, "" for None."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def merge_params(query: str, params: QueryParamTypes) -> str:
    """Append ``params`` to an existing (encoded) query string."""
    pairs = _param_pairs(params)
    for key, value in pairs:
        _require_utf8(key, "query parameter name")
        _require_utf8(value, "query parameter value")
    extra = urlencode(pairs)
    if not extra:
        return query
    return f"{query}&{extra}" if query else extra
