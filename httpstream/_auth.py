"""Authentication flows: Basic, Bearer, Digest and caller-supplied functions.

Theory of operation
-------------------
An ``Auth`` is a generator that the client drives:

    flow = auth.auth_flow(request)
    request = next(flow)                 # the request to send (headers set)
    while True:
        response = <send request>
        try:
            request = flow.send(response)   # the flow wants one more attempt
        except StopIteration:
            break                           # ``response`` is the answer

Basic and Bearer set ``Authorization`` and stop.  Digest (RFC 7616) answers a
``401`` that carries a Digest challenge by yielding the same request once more
with the computed credentials; a second ``401`` is the caller's answer.  Once a
challenge has led to a success, the nonce is reused for later requests to the
same origin (preemptively, ``nc`` counting up per nonce), so a client does not
pay a 401 round trip per request; a server that finds the nonce stale answers
``401`` with ``stale=true`` and a fresh nonce, which the flow answers once.

Errors: a challenge the server got wrong (bad syntax, no nonce) is a
``RemoteProtocolError``; a well-formed challenge this client cannot answer
(unknown algorithm or qop), or a retry of a request whose streamed body is
already gone, is a ``LocalProtocolError``.
"""

from __future__ import annotations

import hashlib
import os
import re
from base64 import b64encode
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Union
from urllib.parse import quote

from ._exceptions import LocalProtocolError, RemoteProtocolError
from ._models import Request, Response
from ._urls import Origin

__all__ = [
    "Auth",
    "AuthTypes",
    "BasicAuth",
    "BearerAuth",
    "Challenge",
    "DigestAuth",
    "FunctionAuth",
    "parse_challenges",
    "to_auth",
]

AuthTypes = Union[
    tuple[Union[str, bytes], Union[str, bytes]],
    Callable[[Request], Request],
    "Auth",
    None,
]


class Auth:
    """The base of every auth scheme: a flow that may rewrite and resend a request.

    Subclasses override ``auth_flow``.  Set ``requires_response_body`` when the
    flow looks at a response's body (the client reads it before ``send``).
    """

    requires_response_body: bool = False

    def auth_flow(self, request: Request) -> Generator[Request, Response, None]:
        """Send the request unchanged: the flow of no authentication at all."""
        yield request


def _to_bytes(value: str | bytes) -> bytes:
    # RFC 7617 section 2.1 and RFC 7616 section 4: UTF-8 is the only charset a
    # server may announce, and what every current server expects.  Callers of a
    # legacy server that wants Latin-1 pass bytes, which are used as they are.
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


class BasicAuth(Auth):
    """``Authorization: Basic`` (RFC 7617), credentials encoded as UTF-8."""

    def __init__(self, username: str | bytes, password: str | bytes) -> None:
        user = _to_bytes(username)
        secret = _to_bytes(password)
        # RFC 7617 section 2: "a user-id containing a colon character is invalid"
        # (the server splits at the first one) and neither part may hold controls.
        if b":" in user:
            raise LocalProtocolError("Basic auth: the username must not contain ':' (RFC 7617 section 2)")
        if _CONTROL.search(user) or _CONTROL.search(secret):
            raise LocalProtocolError("Basic auth: username and password must not contain control characters")
        self._username = user
        self._header = "Basic " + b64encode(user + b":" + secret).decode("ascii")

    def auth_flow(self, request: Request) -> Generator[Request, Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return f"BasicAuth(username={self._username.decode('utf-8', 'replace')!r}, password=***)"


class BearerAuth(Auth):
    """``Authorization: Bearer <token>`` (RFC 6750).

    RFC 6750 defines the token as b64token, but services issue tokens outside
    that alphabet; only what would break the header (empty, spaces, controls) is
    refused.
    """

    def __init__(self, token: str) -> None:
        if not token or re.search(r"[\s\x00-\x1f\x7f]", token):
            raise LocalProtocolError("Bearer auth: the token must be non-empty, without spaces or control characters")
        self._header = "Bearer " + token

    def auth_flow(self, request: Request) -> Generator[Request, Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"


class FunctionAuth(Auth):
    """A plain function ``Request -> Request`` used as a one-step flow."""

    def __init__(self, func: Callable[[Request], Request]) -> None:
        self._func = func

    def auth_flow(self, request: Request) -> Generator[Request, Response, None]:
        result = self._func(request)
        if not isinstance(result, Request):
            raise TypeError(f"auth function {self._func!r} must return a Request, not {type(result).__name__}")
        yield result


def to_auth(value: AuthTypes) -> Auth | None:
    """What the client accepts as ``auth=``: None, (user, password), a function, an Auth."""
    if value is None or isinstance(value, Auth):
        return value
    if isinstance(value, tuple):
        if len(value) != 2:
            raise TypeError(f"auth tuple must be (username, password), got {len(value)} items")
        return BasicAuth(value[0], value[1])
    if callable(value):
        return FunctionAuth(value)
    raise TypeError(
        f"auth must be None, a (username, password) tuple, a callable or an Auth, not {type(value).__name__}"
    )


# -- the challenge parser (RFC 9110 section 11.6.1) -----------------------------------------
#
#   WWW-Authenticate = #challenge
#   challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
#   auth-param = token BWS "=" BWS ( token / quoted-string )
#
# Challenges and their parameters are both comma-separated, so a new challenge
# is recognised by a token that is not followed by "=".

_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# Parameter values should be tokens or quoted strings; servers send unquoted
# base64 nonces too ('/' and '=' are not tchars), so anything up to a delimiter
# is taken.
_BARE_VALUE = re.compile(r'[^\s,"]+')


@dataclass(slots=True)
class Challenge:
    """One challenge: the scheme (lower-cased), its parameters (names lower-cased,
    values unquoted) or its token68."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Every challenge of every ``WWW-Authenticate`` value, in order.

    Raises ``RemoteProtocolError`` saying where a value is malformed.
    """
    challenges: list[Challenge] = []
    for value in values:
        challenges.extend(_parse_value(value))
    return challenges


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _malformed(text: str, pos: int, why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed WWW-Authenticate {text!r}: {why} at offset {pos}")


def _parse_value(text: str) -> list[Challenge]:
    out: list[Challenge] = []
    end = len(text)
    pos = 0
    separated = True  # a comma (or the start) came before the next element
    after_scheme = False  # the first auth-param follows its scheme without a comma
    while True:
        pos = _skip(text, pos, " \t")
        if pos < end and text[pos] == ",":
            pos = _skip(text, pos, " \t,")
            separated = True
        if pos >= end:
            return out
        if not (separated or after_scheme):
            raise _malformed(text, pos, "expected ','")
        start = pos
        while pos < end and text[pos] in _TCHARS:
            pos += 1
        if pos == start:
            raise _malformed(text, pos, f"unexpected {text[pos]!r}")
        name = text[start:pos]
        eq = _skip(text, pos, " \t")
        if eq < end and text[eq] == "=":
            current = out[-1] if out else None
            if current is None or current.token68 is not None:
                raise _malformed(text, start, f"parameter {name!r} outside a challenge")
            value, pos = _param_value(text, _skip(text, eq + 1, " \t"))
            key = name.lower()
            # RFC 9110 section 11.2: each parameter name occurs only once per
            # challenge; two differing values would be answered ambiguously.
            if key in current.params:
                raise _malformed(text, start, f"parameter {name!r} repeated")
            current.params[key] = value
            after_scheme = False
        else:
            challenge = Challenge(name.lower())
            out.append(challenge)
            pos = eq
            after_scheme = True
            if pos < end and text[pos] != ",":
                match = _TOKEN68.match(text, pos)
                if match:
                    after = _skip(text, match.end(), " \t")
                    if after >= end or text[after] == ",":
                        challenge.token68 = match.group()
                        pos = after
                        after_scheme = False
        separated = False


def _param_value(text: str, pos: int) -> tuple[str, int]:
    if pos < len(text) and text[pos] == '"':
        chars: list[str] = []
        pos += 1
        while pos < len(text):
            char = text[pos]
            if char == '"':
                return "".join(chars), pos + 1
            if char == "\\":  # quoted-pair: the next character stands for itself
                pos += 1
                if pos >= len(text):
                    break
                char = text[pos]
            chars.append(char)
            pos += 1
        raise _malformed(text, pos, "unterminated quoted string")
    match = _BARE_VALUE.match(text, pos)
    if not match:
        raise _malformed(text, pos, "parameter without a value")
    return match.group(), match.end()


# -- Digest (RFC 7616) ------------------------------------------------------------------

# Strongest first: when a server offers several Digest challenges (RFC 7616
# section 3.7 has it list one per algorithm, preferred first), the strongest
# hash this Python has wins.
# Strongest first (the order a multi-challenge answer prefers).  "SHA-512" is not
# in RFC 7616's registry, but httpbin offers it and httpx, requests and aiohttp
# answer it as full SHA-512 (it is no alias of SHA-512-256, a different hash).
_HASHES = {"SHA-512-256": "sha512_256", "SHA-512": "sha512", "SHA-256": "sha256", "MD5": "md5"}
_AVAILABLE = {name: algo for name, algo in _HASHES.items() if algo in hashlib.algorithms_available}


def _new_cnonce() -> str:
    return os.urandom(16).hex()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(slots=True)
class _Nonce:
    """A usable Digest challenge and how often its nonce has been used."""

    realm: str
    nonce: str
    algorithm: str  # the base hash name, a key of _HASHES
    sess: bool
    qop: str | None  # "auth", "auth-int", or None for RFC 2069 servers
    opaque: str | None
    echo_algorithm: str | None  # the algorithm token as the server spelled it
    userhash: bool
    stale: bool
    nc: int = 0


def _digest_nonce(challenge: Challenge, text: str) -> _Nonce | str:
    """The challenge as a _Nonce, or why this client cannot answer it."""
    params = challenge.params
    for required in ("realm", "nonce"):
        if required not in params:
            raise RemoteProtocolError(f"Digest challenge without {required!r}: {text!r}")
    spelled = params.get("algorithm")
    name = (spelled or "MD5").upper()
    sess = name.endswith("-SESS")
    base = name.removesuffix("-SESS")
    if base not in _AVAILABLE:
        why = (
            f"this Python's hashlib has no {_HASHES[base]}"
            if base in _HASHES
            else "httpstream answers MD5, SHA-256 and SHA-512-256 (RFC 7616) and SHA-512, each also as -sess"
        )
        return f"algorithm {spelled!r} is not supported: {why}"
    qop: str | None = None
    if "qop" in params:
        offered = {item.strip().lower() for item in params["qop"].split(",")}
        # "auth" when offered: it does not tie the credentials to one body.
        qop = "auth" if "auth" in offered else "auth-int" if "auth-int" in offered else None
        if qop is None:
            return f"qop {params['qop']!r} is not supported"
    elif sess:
        # RFC 2617 section 3.2.2.2: a -sess A1 needs the cnonce, sent only with qop.
        raise RemoteProtocolError(f"Digest challenge with {spelled} but no qop: {text!r}")
    return _Nonce(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=base,
        sess=sess,
        qop=qop,
        opaque=params.get("opaque"),
        echo_algorithm=spelled,
        userhash=params.get("userhash", "").lower() == "true",
        stale=params.get("stale", "").lower() == "true",
    )


class DigestAuth(Auth):
    """HTTP Digest access authentication (RFC 7616; RFC 2617/2069 servers too).

    Algorithms MD5, SHA-256 and SHA-512-256 (when hashlib has it), and the
    unregistered but common "SHA-512" (full SHA-512, as httpbin, httpx,
    requests and aiohttp mean it), each also as ``-sess``; qop ``auth`` (preferred) or ``auth-int``; ``userhash``; the
    ``username*`` form for names outside ASCII; ``opaque`` echoed.  Credentials
    are hashed as UTF-8 (str) or as given (bytes).  A challenge that names any
    other algorithm is refused with ``LocalProtocolError`` naming it.
    """

    def __init__(self, username: str | bytes, password: str | bytes) -> None:
        self._username = _to_bytes(username)
        self._password = _to_bytes(password)
        # Per origin (the protection space of RFC 9110 section 11.5): the nonce
        # that last worked, reused preemptively with nc counting up.
        self._nonces: dict[Origin, _Nonce] = {}

    def __repr__(self) -> str:
        return f"DigestAuth(username={self._username.decode('utf-8', 'replace')!r}, password=***)"

    def auth_flow(self, request: Request) -> Generator[Request, Response, None]:
        origin = request.url.origin
        known = self._nonces.get(origin)
        preemptive = known is not None and (known.qop != "auth-int" or request.is_replayable)
        if known is not None and preemptive:
            request.headers["Authorization"] = self._authorization(request, known)
        response = yield request
        if response.status_code != 401:
            return
        fresh = self._choose(response)
        if fresh is None:
            return  # no Digest challenge: the 401 is the caller's answer
        if preemptive and not fresh.stale:
            # RFC 7616 section 3.3: without stale=true the rejected credentials
            # themselves are wrong; only a stale nonce is worth answering again.
            self._nonces.pop(origin, None)
            return
        if not request.is_replayable:
            raise LocalProtocolError(
                f"{request.method} {request.url}: the server asked for Digest authentication, but the "
                "request body was a stream and has been sent already; pass the body as bytes so the "
                "request can be sent again with credentials"
            )
        request.headers["Authorization"] = self._authorization(request, fresh)
        response = yield request
        if response.status_code == 401:
            self._nonces.pop(origin, None)
        else:
            self._nonces[origin] = fresh

    def _choose(self, response: Response) -> _Nonce | None:
        """The best Digest challenge of a 401, None if it has none.

        A malformed header is forgiven when another one carries a usable Digest
        challenge (servers add their own, sometimes broken, schemes).
        """
        usable: list[_Nonce] = []
        refused: list[str] = []
        error: RemoteProtocolError | None = None
        for value in response.headers.get_list("www-authenticate"):
            try:
                for challenge in parse_challenges([value]):
                    if challenge.scheme == "digest":
                        result = _digest_nonce(challenge, value)
                        if isinstance(result, str):
                            refused.append(result)
                        else:
                            usable.append(result)
            except RemoteProtocolError as exc:
                error = error or exc
        if usable:
            rank = list(_HASHES)
            return min(usable, key=lambda n: rank.index(n.algorithm))
        if error is not None:
            raise error
        if refused:
            raise LocalProtocolError("cannot answer the server's Digest challenge: " + "; ".join(refused))
        return None

    def _authorization(self, request: Request, state: _Nonce) -> str:
        algo = _HASHES[state.algorithm]

        def digest(*parts: bytes) -> str:
            return hashlib.new(algo, b":".join(parts)).hexdigest()

        # Challenge strings came off the wire decoded as Latin-1: encoding them
        # back gives the exact bytes the server hashes with (UTF-8 realms too).
        realm = state.realm.encode("latin-1")
        nonce = state.nonce.encode("latin-1")
        state.nc += 1
        nc = f"{state.nc:08x}"
        cnonce = _new_cnonce()
        target = request.extensions.get("target")
        uri = target if isinstance(target, str) else request.url.target
        ha1 = digest(self._username, realm, self._password)
        if state.sess:
            ha1 = digest(ha1.encode(), nonce, cnonce.encode())
        a2 = [request.method.encode("ascii"), uri.encode("ascii")]
        if state.qop == "auth-int":
            body = request.content if isinstance(request.content, bytes) else b""
            a2.append(digest(body).encode())
        ha2 = digest(*a2)
        if state.qop is None:  # RFC 2069 compatibility
            response = digest(ha1.encode(), nonce, ha2.encode())
        else:
            response = digest(ha1.encode(), nonce, nc.encode(), cnonce.encode(), state.qop.encode(), ha2.encode())

        if state.userhash:
            user = "username=" + _quote(digest(self._username, realm))
        elif re.fullmatch(rb"[\x20-\x7e]*", self._username):
            user = "username=" + _quote(self._username.decode("ascii"))
        else:
            # RFC 7616 section 3.4.4: a name that cannot be a quoted-string goes
            # in username* with the RFC 8187 encoding.
            user = "username*=UTF-8''" + quote(self._username, safe="!#$&+-.^_`|~")
        fields = [
            user,
            "realm=" + _quote(state.realm),
            "nonce=" + _quote(state.nonce),
            "uri=" + _quote(uri),
            "response=" + _quote(response),
        ]
        if state.echo_algorithm is not None:
            fields.append("algorithm=" + state.echo_algorithm)
        if state.opaque is not None:
            fields.append("opaque=" + _quote(state.opaque))
        if state.qop is not None:
            fields += ["qop=" + state.qop, "nc=" + nc, "cnonce=" + _quote(cnonce)]
        if state.userhash:
            fields.append("userhash=true")
        return "Digest " + ", ".join(fields)
