"""The cookie jar: ``http.cookiejar`` rules over httpstream requests and responses.

``http.cookiejar`` already implements what a client must honour (domain and
path matching, ``Secure`` only over https, ``Expires``/``Max-Age`` with
``Max-Age=0`` or a past date deleting, the public-suffix-ish "no dots" checks),
so ``Cookies`` keeps a ``CookieJar`` and only translates: an httpstream
``Request`` is shown to the jar as a ``urllib.request.Request`` whose
``add_unredirected_header`` writes into the real request, a ``Response``'s
``Set-Cookie`` fields (every one, unjoined) as the ``info().get_all`` the jar
reads.

One correction to the stdlib: a host without dots (``localhost``) is matched by
the jar as ``localhost.local``, so a cookie it set with ``Domain=localhost`` was
stored and never sent back; ``_Policy`` sends it back to that host.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Union
from urllib.parse import urlsplit

from ._exceptions import CookieConflict, LocalProtocolError
from ._headers import Headers
from ._models import Request, Response

if TYPE_CHECKING:
    from http.client import HTTPResponse

__all__ = ["CookieConflict", "Cookies", "CookieTypes", "to_cookies"]

CookieTypes = Union["Cookies", CookieJar, Mapping[str, str], Sequence[tuple[str, str]], None]

# RFC 6265 section 4.1.1: cookie-name is a token; a value must not hold what
# would end it in the Cookie header (";") or break the field (controls).
_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[;\x00-\x1f\x7f]")


class _Policy(DefaultCookiePolicy):
    """The stdlib rules, plus: ``Domain=<dotless host>`` cookies go back to that host."""

    def return_ok_domain(self, cookie: Cookie, request: urllib.request.Request) -> bool:
        host = urlsplit(request.get_full_url()).hostname or ""
        if "." not in host and cookie.domain_specified and cookie.domain.lstrip(".") == host:
            return True
        return super().return_ok_domain(cookie, request)


class _JarRequest(urllib.request.Request):
    """An httpstream Request as the jar sees it; the Cookie header lands in the real one."""

    def __init__(self, request: Request) -> None:
        url = request.url
        # No userinfo or fragment: the jar reads the host from the netloc as is.
        super().__init__(f"{url.scheme}://{url.netloc}{url.target}", method=request.method)
        self._target = request

    def add_unredirected_header(self, key: str, val: str) -> None:
        self._target.headers[key] = val


class _JarResponse:
    """The part of ``http.client.HTTPResponse`` the jar reads: ``info().get_all``."""

    __slots__ = ("_headers",)

    def __init__(self, headers: Headers) -> None:
        self._headers = headers

    def info(self) -> _JarResponse:
        return self

    def get_all(self, name: str, default: list[str] | None = None) -> list[str] | None:
        return self._headers.get_list(name) or default


class Cookies(MutableMapping[str, str]):
    """Cookies by name over a ``http.cookiejar.CookieJar``.

    The mapping view works by name; a name stored for several domains or paths
    is ambiguous there (``CookieConflict``): use ``get(name, domain=...,
    path=...)``, or iterate over ``jar`` for the full ``Cookie`` objects.
    ``Cookies(a_cookiejar)`` works on that jar itself; ``Cookies(other_cookies)``
    copies.
    """

    __slots__ = ("_jar",)

    def __init__(self, cookies: CookieTypes = None) -> None:
        if isinstance(cookies, CookieJar):
            self._jar = cookies
            return
        self._jar = CookieJar(policy=_Policy())
        self.update(cookies)

    @property
    def jar(self) -> CookieJar:
        return self._jar

    # -- the client's two calls ----------------------------------------------------------
    def extract_cookies(self, response: Response) -> None:
        """Store what every ``Set-Cookie`` of ``response`` allows (its ``request`` must be set)."""
        if not response.headers.has(b"set-cookie"):
            return
        jar_response: HTTPResponse = _JarResponse(response.headers)  # type: ignore[assignment]
        self._jar.extract_cookies(jar_response, _JarRequest(response.request))

    def set_cookie_header(self, request: Request) -> None:
        """Add a ``Cookie`` header with the cookies that match the request's URL.

        A request that already has one (set by its caller) is left as it is.
        """
        if self.maybe_filled and not request.headers.has(b"cookie"):
            self._jar.add_cookie_header(_JarRequest(request))

    @property
    def maybe_filled(self) -> bool:
        """False only when the jar certainly holds no cookie.

        An empty jar (most clients, most of the time) then costs nothing per
        request: the stdlib jar would build a request adapter and take its lock.
        """
        return bool(getattr(self._jar, "_cookies", True))

    # -- by name -------------------------------------------------------------------------
    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        """Store a cookie; with no domain it is sent to every host."""
        if not _NAME.fullmatch(name):
            raise LocalProtocolError(f"invalid cookie name {name!r}")
        if _BAD_VALUE.search(value):
            raise LocalProtocolError(f"cookie value contains ';' or a control character: {value!r}")
        cookie = Cookie(
            version=0,
            name=name,
            value=value,
            port=None,
            port_specified=False,
            domain=domain,
            domain_specified=bool(domain),
            domain_initial_dot=domain.startswith("."),
            path=path,
            path_specified=bool(path),
            secure=False,
            expires=None,
            discard=True,
            comment=None,
            comment_url=None,
            rest={},
            rfc2109=False,
        )
        self._jar.set_cookie(cookie)

    def _matching(self, name: str | None, domain: str | None, path: str | None) -> list[Cookie]:
        return [
            cookie
            for cookie in self._jar
            if (name is None or cookie.name == name)
            and (domain is None or cookie.domain == domain)
            and (path is None or cookie.path == path)
        ]

    def get(  # type: ignore[override]
        self, name: str, default: str | None = None, domain: str | None = None, path: str | None = None
    ) -> str | None:
        matches = self._matching(name, domain, path)
        if not matches:
            return default
        if len(matches) > 1:
            places = ", ".join(f"domain={c.domain!r} path={c.path!r}" for c in matches)
            raise CookieConflict(f"several cookies are named {name!r} ({places}); pass domain= and/or path=")
        return matches[0].value or ""

    def delete(self, name: str, domain: str | None = None, path: str | None = None) -> None:
        """Remove every cookie with this name (and domain / path, when given)."""
        for cookie in self._matching(name, domain, path):
            self._jar.clear(cookie.domain, cookie.path, cookie.name)

    def clear(self, domain: str | None = None, path: str | None = None) -> None:
        """Remove all cookies, or those of one domain and/or path."""
        for cookie in self._matching(None, domain, path):
            self._jar.clear(cookie.domain, cookie.path, cookie.name)

    def update(self, cookies: CookieTypes = None) -> None:  # type: ignore[override]
        """Add cookies: from another jar with their domain, path and flags kept."""
        if cookies is None:
            return
        if isinstance(cookies, (Cookies, CookieJar)):
            for cookie in cookies.jar if isinstance(cookies, Cookies) else cookies:
                self._jar.set_cookie(cookie)
            return
        pairs = cookies.items() if isinstance(cookies, Mapping) else cookies
        for name, value in pairs:
            self.set(name, value)

    # -- the mapping -----------------------------------------------------------------------
    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        if not self._matching(name, None, None):
            raise KeyError(name)
        self.delete(name)

    def __contains__(self, name: object) -> bool:
        return any(cookie.name == name for cookie in self._jar)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(cookie.name for cookie in self._jar))

    def __len__(self) -> int:
        return len({cookie.name for cookie in self._jar})

    def __bool__(self) -> bool:
        return any(True for _ in self._jar)

    def __repr__(self) -> str:
        # Values are left out: they are often session secrets.
        items = ", ".join(f"{c.name} for {c.domain or '*'}{c.path}" for c in self._jar)
        return f"<Cookies [{items}]>"


def to_cookies(value: CookieTypes) -> Cookies:
    """What the client accepts as ``cookies=``.

    A ``Cookies`` or ``CookieJar`` is used as it is (so the caller sees what the
    client stores, and can persist a ``FileCookieJar``); a mapping or a list of
    pairs fills a new jar.
    """
    if isinstance(value, Cookies):
        return value
    return Cookies(value)
