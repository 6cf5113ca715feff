"""An ASGI app that checks credentials and plays with cookies, for the auth and cookie tests.

The Digest side is written from RFC 7616 independently of ``httpstream._auth``
(its own header parser, its own hashing), so a client bug cannot be mirrored by
the server and pass unnoticed.

Endpoints:
  /basic, /bearer          200 with the right credentials, else 401 + challenge
  /digest/...?algorithm=SHA-256&qop=auth|auth-int|none&userhash=1&multi=1&nostale=1
                           Digest; the answer is JSON with what the client sent
  /set?a=1&b=2&_path=/p&_domain=d&_max_age=0&_expires=past&_secure=1
                           one Set-Cookie per plain pair, with the _attributes
  /cookies/...             JSON echo of the Cookie header received
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from urllib.parse import parse_qsl, unquote_to_bytes

from .servers import App, Receive, Scope, Send

BASIC_USER = "jürgen"
BASIC_PASSWORD = "pässwörd:with colon"
TOKEN = "eyJhbGciOi.J9-_x/y+z=="
# RFC 7616 section 3.9: the examples' users.
DIGEST_USERS = {"Mufasa": "Circle of Life", "Jäsøn Doe": "Secret, or not?"}
REALM = 'http-auth@example.org \\ "quoted"'

_HASH = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256", "SHA-512": "sha512"}
_PARAM = re.compile(r'\s*([\w*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)')


def parse_authorization(value: str) -> dict[str, str]:
    """The fields of an ``Authorization: Digest ...`` value (the server's own parser)."""
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "digest":
        return {}
    fields: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if not match:
            return {}
        quoted, bare = match.group(2), match.group(3)
        fields[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        pos = match.end()
    return fields


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AuthApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.nonces: dict[str, int] = {}  # nonce -> the highest nc seen
        self.expired: set[str] = set()
        self._nonce_lock = threading.Lock()

    def expire_nonces(self) -> None:
        """Make every nonce issued so far stale (the next use gets stale=true)."""
        with self._nonce_lock:
            self.expired.update(self.nonces)

    # -- Basic and Bearer ----------------------------------------------------------------
    async def h_basic(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        expected = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
        if _header(scope, b"authorization") == f"Basic {expected}":
            await self._send(send, 200, json.dumps({"user": BASIC_USER}).encode())
        else:
            await self._send(send, 401, b"", [(b"www-authenticate", b'Basic realm="test", charset="UTF-8"')])

    async def h_bearer(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        if _header(scope, b"authorization") == f"Bearer {TOKEN}":
            await self._send(send, 200, b"ok")
        else:
            await self._send(send, 401, b"", [(b"www-authenticate", b'Bearer realm="test", error="invalid_token"')])

    # -- Digest --------------------------------------------------------------------------
    def _challenge(self, q: dict[str, str], *, stale: bool) -> list[tuple[bytes, bytes]]:
        nonce = base64.b64encode(os.urandom(18)).decode()
        with self._nonce_lock:
            self.nonces[nonce] = 0
        algorithm = q.get("algorithm", "MD5")
        params = [f"realm={_quote(REALM)}"]
        qop = q.get("qop", "auth, auth-int")
        if qop != "none":
            params.append(f'qop="{qop}"')
        params += [f'nonce="{nonce}"', 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"']
        if "algorithm" in q:
            params.append(f"algorithm={algorithm}")
        if stale:
            params.append("stale=TRUE")
        if q.get("userhash"):
            params += ['charset="UTF-8"', "userhash=true"]
        digest = ("Digest " + ", ".join(params)).encode()
        if not q.get("multi"):
            return [(b"www-authenticate", digest)]
        # Several schemes, several fields, one field with two challenges, an
        # MD5 offer the client should pass over for the stronger one.
        md5 = digest.replace(f"algorithm={algorithm}".encode(), b"algorithm=MD5")
        return [
            (b"www-authenticate", b'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"'),
            (b"www-authenticate", md5 + b", Bearer realm=x"),
            (b"www-authenticate", b"Negotiate abc+/def==, " + digest),
        ]

    async def h_digest(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        body = await self._read_body(receive)
        fields = parse_authorization(_header(scope, b"authorization") or "")
        if not fields:
            await self._send(send, 401, b"no credentials\n", self._challenge(q, stale=False))
            return
        verdict = self._verify(scope, q, fields, body)
        if verdict is None:
            info = {k: fields.get(k) for k in ("algorithm", "qop", "nc", "cnonce", "username", "userhash", "uri")}
            info["user"] = self._user(fields)
            await self._send(send, 200, json.dumps(info).encode(), [(b"content-type", b"application/json")])
        else:
            reason, stale = verdict
            await self._send(send, 401, reason.encode() + b"\n", self._challenge(q, stale=stale))

    def _user(self, fields: dict[str, str]) -> str | None:
        """Which known user the credentials name (plain, username* or userhash)."""
        algorithm = fields.get("algorithm", "MD5").upper().removesuffix("-SESS")
        for user in DIGEST_USERS:
            if fields.get("userhash") == "true":
                name = hashlib.new(_HASH[algorithm], f"{user}:{REALM}".encode()).hexdigest()
                if fields.get("username") == name:
                    return user
            elif "username*" in fields:
                charset, _, encoded = fields["username*"].partition("''")
                if charset.upper() == "UTF-8" and unquote_to_bytes(encoded) == user.encode():
                    return user
            elif fields.get("username") == user:
                return user
        return None

    def _verify(
        self, scope: Scope, q: dict[str, str], fields: dict[str, str], body: bytes
    ) -> tuple[str, bool] | None:
        """None when the credentials are right, else (why not, stale)."""
        nonce = fields.get("nonce", "")
        with self._nonce_lock:
            known = nonce in self.nonces
        if not known:
            return "unknown nonce", not q.get("nostale")
        if fields.get("realm") != REALM or fields.get("opaque") != "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS":
            return "realm or opaque not echoed", False
        target = scope["raw_path"].decode() + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        if fields.get("uri") != target:
            return f"uri {fields.get('uri')!r} is not the request target {target!r}", False
        user = self._user(fields)
        if user is None:
            return "unknown user", False
        spelled = fields.get("algorithm", "MD5").upper()
        if spelled != q.get("algorithm", "MD5").upper():
            return f"algorithm {spelled} was not offered", False
        algo = _HASH[spelled.removesuffix("-SESS")]

        def h(text: bytes) -> str:
            return hashlib.new(algo, text).hexdigest()

        qop = fields.get("qop")
        cnonce = fields.get("cnonce", "")
        nc = fields.get("nc", "")
        ha1 = h(f"{user}:{REALM}:{DIGEST_USERS[user]}".encode())
        if spelled.endswith("-SESS"):
            ha1 = h(f"{ha1}:{nonce}:{cnonce}".encode())
        a2 = f"{scope['method']}:{fields['uri']}"
        if qop == "auth-int":
            a2 += ":" + h(body)
        elif qop not in ("auth", None):
            return f"qop {qop!r}", False
        if qop is None:
            if q.get("qop") != "none":
                return "qop missing", False
            expected = h(f"{ha1}:{nonce}:{h(a2.encode())}".encode())
        else:
            expected = h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{h(a2.encode())}".encode())
        if fields.get("response") != expected:
            return "wrong response", False
        with self._nonce_lock:
            if nonce in self.expired:
                return "stale nonce", not q.get("nostale")
            if qop is not None:
                count = int(nc, 16)
                if count <= self.nonces[nonce]:
                    return f"nc {nc} replayed", False
                self.nonces[nonce] = count
        return None

    # -- cookies -------------------------------------------------------------------------
    async def h_set(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        pairs = parse_qsl(scope["query_string"].decode(), keep_blank_values=True)
        attributes = ""
        for name, value in pairs:
            if name == "_path":
                attributes += f"; Path={value}"
            elif name == "_domain":
                attributes += f"; Domain={value}"
            elif name == "_max_age":
                attributes += f"; Max-Age={value}"
            elif name == "_expires":
                attributes += "; Expires=" + ("Wed, 21 Oct 2015 07:28:00 GMT" if value == "past" else value)
            elif name == "_secure":
                attributes += "; Secure"
        headers = [
            (b"set-cookie", f"{name}={value}{attributes}; HttpOnly".encode())
            for name, value in pairs
            if not name.startswith("_")
        ]
        await self._send(send, 200, b"set\n", headers)

    async def h_cookies(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        info = {"cookie": _header(scope, b"cookie"), "path": scope["path"]}
        await self._send(send, 200, json.dumps(info).encode(), [(b"content-type", b"application/json")])


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v.decode("latin-1") for k, v in scope["headers"] if k == name]
    return "; ".join(values) if values else None
