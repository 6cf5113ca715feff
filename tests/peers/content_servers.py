"""An ASGI app that parses request bodies, for the tests of httpstream._content.

Each handler answers with JSON describing what arrived, parsed by the standard
library (``urllib.parse``, ``email``, ``json``) rather than by anything in
httpstream, so the tests compare the client's encoding against an independent
reader.  ``/count`` never holds the body: it hashes and counts it as it comes,
keeping only the first and last bytes, for uploads far larger than memory.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl

from .servers import App, Receive, Scope, Send

_KEPT = 1024  # bytes of the start and the end of a counted body kept for the test


def _framing(scope: Scope) -> dict[str, str | None]:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    return {
        "content_type": headers.get("content-type"),
        "content_length": headers.get("content-length"),
        "transfer_encoding": headers.get("transfer-encoding"),
        "http_version": scope["http_version"],
    }


class ContentApp(App):
    """Handlers: /form, /multipart, /json, /raw and /count (see the module docstring)."""

    async def _reply(self, send: Send, info: dict[str, Any]) -> None:
        await self._send(send, 200, json.dumps(info).encode(), [(b"content-type", b"application/json")])

    async def h_form(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        body = await self._read_body(receive)
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body))
        await self._reply(send, {**_framing(scope), "fields": pairs, "body_length": len(body)})

    async def h_multipart(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        body = await self._read_body(receive)
        info = _framing(scope)
        content_type = (info["content_type"] or "").encode("latin-1")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type + b"\r\n\r\n" + body
        )
        parts = []
        for part in message.iter_parts():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            parts.append(
                {
                    "disposition": str(part.get("Content-Disposition")),
                    "name": part.get_param("name", header="content-disposition"),
                    "filename": part.get_filename(),
                    "content_type": part.get("Content-Type"),
                    "headers": [[k, str(v)] for k, v in part.items()],
                    "payload": base64.b64encode(payload).decode("ascii"),
                }
            )
        defects = [str(d) for d in message.defects]
        await self._reply(send, {**info, "parts": parts, "defects": defects, "body_length": len(body)})

    async def h_json(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        body = await self._read_body(receive)
        await self._reply(send, {**_framing(scope), "raw": body.decode("utf-8"), "value": json.loads(body)})

    async def h_raw(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        body = await self._read_body(receive)
        await self._reply(send, {**_framing(scope), "body": base64.b64encode(body).decode("ascii")})

    async def h_count(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        digest = hashlib.sha256()
        total = 0
        head = bytearray()
        tail = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk: bytes = message.get("body", b"")
            digest.update(chunk)
            total += len(chunk)
            if len(head) < _KEPT:
                head += chunk[: _KEPT - len(head)]
            tail = (tail + chunk)[-_KEPT:]
            if not message.get("more_body"):
                break
        info = {
            **_framing(scope),
            "received": total,
            "sha256": digest.hexdigest(),
            "head": head.decode("latin-1"),
            "tail": tail.decode("latin-1"),
        }
        await self._reply(send, info)
