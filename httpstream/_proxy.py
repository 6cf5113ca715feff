"""Proxies: configuration, the environment, and the tunnel handshakes (sans-IO).

Theory of operation
-------------------
A ``Proxy`` says where the proxy is and how to authenticate to it.  The pool
decides per request whether one applies (an explicit ``proxy=`` always does;
otherwise ``proxies_from_env`` and ``bypass`` decide, by curl's rules), and then
how the request goes through it:

- ``http://`` target through an HTTP(S) proxy: the request is *forwarded*: sent
  to the proxy in absolute-form (RFC 9112 section 3.2.2) over a connection to
  the proxy, with ``Proxy-Authorization`` added for that hop only.
- ``https://`` target through an HTTP(S) proxy: a *tunnel*: ``CONNECT host:port``
  (RFC 9110 section 9.3.6), then TLS with the target over the tunnel, so the
  proxy never sees the exchange.
- any target through SOCKS5 (RFC 1928, username/password per RFC 1929): a
  tunnel opened by the SOCKS handshake, then plain TCP or TLS as usual.

An ``https://`` proxy URL means TLS to the proxy itself; a CONNECT tunnel then
runs TLS with the target inside that TLS session.

This module holds only pure code: values, environment parsing, and the
byte-level handshakes (``connect_request`` / ``parse_connect_reply`` and
``Socks5Handshake``).  ``_net`` moves the bytes.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypedDict, Union
from urllib.parse import unquote

from ._exceptions import InvalidURL, ProxyError
from ._headers import Headers, HeaderTypes
from ._urls import URL, Origin

__all__ = [
    "Proxy",
    "ProxyEnv",
    "ProxyTypes",
    "ConnectReply",
    "Socks5Handshake",
    "bypass",
    "connect_request",
    "parse_connect_reply",
    "proxies_from_env",
    "proxy_for",
    "to_proxy",
]

# curl's defaults: an HTTP proxy without a port is on 80 here (as in httpx and
# urllib3; curl itself assumes 1080), HTTPS on 443, SOCKS on 1080.
PROXY_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}

# A CONNECT answer is a response head only; anything larger is not a proxy.
MAX_CONNECT_HEAD = 64 * 1024


class Proxy:
    """A proxy: its URL (scheme http, https, socks5 or socks5h) and credentials.

    ``auth=(user, password)`` or the URL's userinfo (percent-decoded) gives the
    credentials: Basic ``Proxy-Authorization`` for HTTP proxies, RFC 1929
    username/password for SOCKS5.  ``headers`` are sent to the proxy only (on
    the CONNECT request, or on each forwarded request).  ``ssl_context`` is used
    for TLS to an ``https://`` proxy itself; by default the pool builds one from
    its ``verify`` setting that offers only HTTP/1.1.

    ``socks5h`` sends the target's host name to the proxy, which resolves it
    (remote DNS: the only way to reach names only the proxy can resolve, and no
    DNS query leaves this host).  ``socks5`` resolves the name here and sends
    the address, as curl does for ``socks5://``.
    """

    __slots__ = ("url", "auth", "headers", "ssl_context")

    def __init__(
        self,
        url: str | URL,
        *,
        auth: tuple[str, str] | None = None,
        headers: HeaderTypes = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if isinstance(url, str) and "://" not in url:
            url = "http://" + url  # curl: a proxy given without a scheme is HTTP
        parsed = URL(url)
        scheme = parsed.scheme
        if scheme not in PROXY_PORTS:
            raise InvalidURL(
                f"unsupported proxy scheme {scheme!r} in {_hide_password(parsed)}: use http, https, socks5 or socks5h"
            )
        if not parsed.host:
            raise InvalidURL(f"proxy URL has no host: {_hide_password(parsed)}")
        port = parsed.port if parsed.port is not None else PROXY_PORTS[scheme]
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        self.url = URL(f"{scheme}://{host}:{port}")  # no userinfo: safe to print
        if auth is None and parsed.userinfo:
            user, _, password = parsed.userinfo.partition(":")
            auth = (unquote(user), unquote(password))
        self.auth = auth
        self.headers = Headers(headers)
        self.ssl_context = ssl_context

    @property
    def scheme(self) -> str:
        return self.url.scheme

    @property
    def host(self) -> str:
        return self.url.host

    @property
    def port(self) -> int:
        port = self.url.port
        assert port is not None
        return port

    @property
    def origin(self) -> Origin:
        return Origin(self.scheme, self.host, self.port)

    @property
    def is_socks(self) -> bool:
        return self.scheme in ("socks5", "socks5h")

    @property
    def key(self) -> tuple[object, ...]:
        """What makes two proxies interchangeable for a pooled connection."""
        context = None if self.ssl_context is None else id(self.ssl_context)
        return (self.scheme, self.host, self.port, self.auth, tuple(self.headers.raw), context)

    @property
    def authorization(self) -> bytes | None:
        """The ``Proxy-Authorization`` value (Basic, RFC 7617), or None."""
        if self.auth is None:
            return None
        user, password = self.auth
        token = base64.b64encode(f"{user}:{password}".encode())
        return b"Basic " + token

    def __str__(self) -> str:
        """``scheme://host:port``, the port always shown, credentials never."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __repr__(self) -> str:
        auth = "" if self.auth is None else f", auth=({self.auth[0]!r}, '***')"
        return f"Proxy({str(self)!r}{auth})"


ProxyTypes = Union[str, URL, Proxy, None]


def to_proxy(value: ProxyTypes) -> Proxy | None:
    if value is None or isinstance(value, Proxy):
        return value
    return Proxy(value)


def _hide_password(url: URL) -> str:
    if not url.userinfo:
        return str(url)
    user = url.userinfo.partition(":")[0]
    return str(url).replace(url.userinfo + "@", f"{user}:***@", 1)


# -- the environment ---------------------------------------------------------------


class ProxyEnv(TypedDict):
    """Proxies from the environment: per scheme, the fallback, and the bypass list."""

    http: Proxy | None
    https: Proxy | None
    all: Proxy | None
    no_proxy: list[str]


def _env_value(environ: Mapping[str, str], name: str, *, upper: bool = True) -> tuple[str, str] | None:
    """(variable, value) for ``name``: lowercase first, then uppercase; empty is unset (curl)."""
    names = (name, name.upper()) if upper else (name,)
    for variable in names:
        value = environ.get(variable)
        if value:
            return variable, value.strip()
    return None


def _env_proxy(environ: Mapping[str, str], name: str, *, upper: bool = True) -> Proxy | None:
    found = _env_value(environ, name, upper=upper)
    if found is None:
        return None
    variable, value = found
    try:
        return Proxy(value)
    except InvalidURL as exc:
        raise InvalidURL(f"environment variable {variable}: {exc}") from None


def proxies_from_env(environ: Mapping[str, str] = os.environ) -> ProxyEnv:
    """The proxies the environment asks for, by curl's rules.

    ``http_proxy`` is read in lowercase only: a CGI program gets each request
    header ``Proxy: x`` as the variable ``HTTP_PROXY``, so honouring the
    uppercase name would let any caller of a CGI script redirect its outgoing
    requests (the 2016 "httpoxy" problem); curl has always ignored it.
    ``https_proxy``, ``all_proxy`` and ``no_proxy`` are read in lowercase, then
    uppercase (lowercase wins).  An empty value counts as unset.  ``no_proxy``
    entries are separated by commas or whitespace (see ``bypass``).
    """
    no_proxy = _env_value(environ, "no_proxy")
    return ProxyEnv(
        http=_env_proxy(environ, "http_proxy", upper=False),
        https=_env_proxy(environ, "https_proxy"),
        all=_env_proxy(environ, "all_proxy"),
        no_proxy=_split_no_proxy(no_proxy[1]) if no_proxy else [],
    )


def _split_no_proxy(value: str) -> list[str]:
    return [entry for entry in value.replace(",", " ").split() if entry]


def proxy_for(url: URL, env: ProxyEnv) -> Proxy | None:
    """The environment's proxy for ``url``: its scheme's, else ``all_proxy``; None when bypassed."""
    proxy = env["https"] if url.scheme == "https" else env["http"] if url.scheme == "http" else None
    if proxy is None:
        proxy = env["all"]
    if proxy is None or bypass(url, env["no_proxy"]):
        return None
    return proxy


def _split_entry(entry: str) -> tuple[str, int | None]:
    """An entry's host (IPv6 without brackets) and optional port."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def bypass(url: URL | str, no_proxy: Iterable[str] | str) -> bool:
    """Whether ``no_proxy`` says to reach ``url`` directly (curl's NO_PROXY rules).

    - ``*`` alone: every host.
    - a name: that host and every subdomain; a leading ``.`` (or ``*.``) changes
      nothing, so ``example.com`` and ``.example.com`` both match
      ``example.com`` and ``www.example.com``, never ``badexample.com``.
    - an IP address or a CIDR range (``10.0.0.0/8``, ``fe80::/10``; IPv6 with or
      without brackets): target addresses inside it.  Names never match an IP
      target and addresses never match a name (no DNS is done for this).
    - ``host:port`` (``[v6]:port``): that host on that port only.

    Matching is case-insensitive and ignores a trailing dot.  Loopback is not
    special: ``localhost`` and ``127.0.0.1`` go through the proxy unless listed.
    """
    if isinstance(url, str):
        url = URL(url)
    entries = _split_no_proxy(no_proxy) if isinstance(no_proxy, str) else list(no_proxy)
    host = url.host.rstrip(".")
    port = url.port if url.port is not None else PROXY_PORTS.get(url.scheme)
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in entries:
        entry = raw.strip().lower()
        if entry == "*":
            return True
        name, entry_port = _split_entry(entry)
        if not name or (entry_port is not None and entry_port != port):
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass  # a name: never matches an address
            continue
        name = name.removeprefix("*").lstrip(".").rstrip(".")
        if not name.isascii():
            try:
                name = URL(f"http://{name}/").host
            except InvalidURL:
                continue
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


# -- HTTP CONNECT (sans-IO) ---------------------------------------------------------


def _authority(host: str, port: int) -> bytes:
    """``host:port`` as CONNECT's request-target (RFC 9112 section 3.2.3)."""
    return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode("ascii")


def connect_request(host: str, port: int, proxy: Proxy) -> bytes:
    """The CONNECT request head that asks ``proxy`` for a tunnel to ``host:port``."""
    authority = _authority(host, port)
    lines = [b"CONNECT " + authority + b" HTTP/1.1", b"Host: " + authority]
    authorization = proxy.authorization
    if authorization is not None and not proxy.headers.has(b"proxy-authorization"):
        lines.append(b"Proxy-Authorization: " + authorization)
    lines.extend(name + b": " + value for name, value in proxy.headers.raw)
    return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ConnectReply:
    """The proxy's final answer to CONNECT and where its head ended in the input."""

    status: int
    reason: str
    headers: list[tuple[bytes, bytes]]
    end: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None


def parse_connect_reply(data: bytes, proxy: Proxy) -> ConnectReply | None:
    """The final answer to CONNECT in ``data``, or None while its head is incomplete.

    Interim (1xx) answers are skipped.  Bytes after ``end`` belong to the tunnel.
    """
    start = 0
    while True:
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            if len(data) - start > MAX_CONNECT_HEAD:
                raise ProxyError(f"proxy {proxy} sent a CONNECT answer head larger than {MAX_CONNECT_HEAD} bytes")
            return None
        lines = data[start:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise ProxyError(f"proxy {proxy} answered CONNECT with something that is not HTTP: {lines[0][:80]!r}")
        status = int(parts[1])
        reason = parts[2].decode("latin-1") if len(parts) == 3 else ""
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                headers.append((name.strip().lower(), value.strip()))
        if status >= 200:
            return ConnectReply(status, reason, headers, end + 4)
        start = end + 4


def connect_failure(reply: ConnectReply, proxy: Proxy, host: str, port: int) -> ProxyError:
    """The error for a refused CONNECT, naming the status and the proxy."""
    target = _authority(host, port).decode("ascii")
    status = f"{reply.status} {reply.reason}".strip()
    if reply.status == 407:
        asks = reply.header(b"proxy-authenticate")
        detail = "credentials were refused" if proxy.auth is not None else "no credentials were given"
        hint = f"; it asks for: {asks}" if asks else ""
        return ProxyError(f"proxy authentication required by proxy {proxy} ({status}): {detail}{hint}")
    return ProxyError(f"proxy {proxy} refused the tunnel to {target}: {status}")


# -- SOCKS5 (sans-IO) -----------------------------------------------------------------

_SOCKS_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
_NO_AUTH = 0x00
_USER_PASSWORD = 0x02
_NO_ACCEPTABLE = 0xFF


class Socks5Handshake:
    """The client side of a SOCKS5 CONNECT (RFC 1928), with RFC 1929 username/password.

    ``start()`` gives the greeting; each ``receive(data)`` gives the bytes to
    send next (possibly none) until ``done``; ``leftover`` is whatever arrived
    after the final reply (already tunnel data).  Every refusal raises
    ``ProxyError`` with the meaning of the SOCKS reply code.

    ``host`` is sent as an address when it is an IP literal and as a domain
    name otherwise (the proxy resolves it: ``socks5h``).
    """

    def __init__(self, host: str, port: int, proxy: Proxy) -> None:
        self._proxy = proxy
        self._target = _authority(host, port).decode("ascii")
        self._request = self._connect_command(host, port)
        self._state = "method"
        self._buffer = b""
        self.done = False
        self.leftover = b""

    def _connect_command(self, host: str, port: int) -> bytes:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            name = host.encode("ascii")
            if not 0 < len(name) <= 255:
                raise ProxyError(f"host name {host!r} is too long for SOCKS5 (255 bytes at most)") from None
            encoded = b"\x03" + bytes([len(name)]) + name
        else:
            encoded = (b"\x01" if address.version == 4 else b"\x04") + address.packed
        return b"\x05\x01\x00" + encoded + port.to_bytes(2, "big")

    def start(self) -> bytes:
        methods = bytes([_NO_AUTH, _USER_PASSWORD]) if self._proxy.auth is not None else bytes([_NO_AUTH])
        return b"\x05" + bytes([len(methods)]) + methods

    def receive(self, data: bytes) -> bytes:
        if self.done:
            self.leftover += data
            return b""
        self._buffer += data
        out = b""
        while not self.done:
            step = self._step()
            if step is None:
                break
            out += step
        return out

    def _fail(self, what: str) -> ProxyError:
        return ProxyError(f"SOCKS5 proxy {self._proxy}: {what}")

    def _step(self) -> bytes | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        if self._state == "method":
            if buf[0] != 5:
                raise self._fail("the server does not speak SOCKS5")
            self._buffer = buf[2:]
            method = buf[1]
            if method == _NO_AUTH:
                self._state = "reply"
                return self._request
            if method == _USER_PASSWORD and self._proxy.auth is not None:
                self._state = "auth"
                return self._auth_request()
            if method == _NO_ACCEPTABLE:
                need = "" if self._proxy.auth is not None else " (it may need a username and password)"
                raise self._fail(f"the proxy accepts none of the offered authentication methods{need}")
            raise self._fail(f"the proxy picked authentication method {method}, which was not offered")
        if self._state == "auth":
            self._buffer = buf[2:]
            if buf[1] != 0:
                raise self._fail("username/password authentication failed")
            self._state = "reply"
            return self._request
        # The reply: VER REP RSV ATYP BND.ADDR BND.PORT; a refusal is known from REP alone.
        if buf[0] != 5:
            raise self._fail("malformed reply (not SOCKS5)")
        if buf[1] != 0:
            meaning = _SOCKS_REPLIES.get(buf[1], f"unknown reply code {buf[1]}")
            raise self._fail(f"cannot reach {self._target}: {meaning}")
        if len(buf) < 5:
            return None
        atyp = buf[3]
        if atyp == 1:
            size = 4 + 4 + 2
        elif atyp == 4:
            size = 4 + 16 + 2
        elif atyp == 3:
            size = 4 + 1 + buf[4] + 2
        else:
            raise self._fail(f"malformed reply (address type {atyp})")
        if len(buf) < size:
            return None
        self.leftover = buf[size:]
        self._buffer = b""
        self.done = True
        return b""

    def _auth_request(self) -> bytes:
        assert self._proxy.auth is not None
        user, password = (part.encode("utf-8") for part in self._proxy.auth)
        if not (0 < len(user) <= 255 and len(password) <= 255):
            raise self._fail("username and password must be 1 to 255 bytes each (RFC 1929)")
        return b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password
