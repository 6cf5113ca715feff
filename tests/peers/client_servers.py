"""The ASGI app behind the client-layer tests: redirects to anywhere, cookies, Retry-After.

Every request is logged (path, headers) so a test can check which headers
reached which server, rather than trusting what the client says it sent.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import defaultdict
from urllib.parse import quote

from .servers import App, Receive, Scope, Send


class ClientApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, dict[str, str]]] = []
        self.hits: dict[str, int] = defaultdict(int)
        self._log_lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            with self._log_lock:
                self.log.append((scope["path"], headers))
        await super().__call__(scope, receive, send)

    def seen(self, path: str) -> list[dict[str, str]]:
        """The headers of every request the server got for ``path``."""
        with self._log_lock:
            return [headers for p, headers in self.log if p == path]

    async def h_to(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/to?url=U&status=S: redirect to an absolute URL, with a body of ``size`` bytes."""
        body = b"r" * int(q.get("size", "6"))
        await self._read_body(receive)
        await self._send(send, int(q.get("status", "302")), body, [(b"location", q["url"].encode())])

    async def h_setcookie(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/setcookie?name=value[&next=URL]: Set-Cookie (and redirect when ``next`` is given)."""
        headers = [(b"set-cookie", f"{k}={v}; Path=/".encode()) for k, v in q.items() if k != "next"]
        if "next" in q:
            headers.append((b"location", q["next"].encode()))
            await self._send(send, 302, b"", headers)
        else:
            await self._send(send, 200, b"cookie set\n", headers)

    async def h_flaky(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/flaky/KEY?fail=N&after=SECONDS&status=S: the first N hits get S (503) with Retry-After."""
        key = args[0]
        with self._log_lock:
            self.hits[key] += 1
            hit = self.hits[key]
        await self._read_body(receive)
        if hit <= int(q.get("fail", "1")):
            extra = [(b"retry-after", q["after"].encode())] if "after" in q else []
            await self._send(send, int(q.get("status", "503")), b"try later\n", extra)
        else:
            await self._send(send, 200, json.dumps({"hits": hit}).encode())

    async def h_drip(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/drip/N?every=S: N bytes, one every S seconds (chunked)."""
        count, every = int(args[0]), float(q.get("every", "0.1"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(count):
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await asyncio.sleep(every)
        await send({"type": "http.response.body", "body": b""})


def to(url: str, status: int = 302) -> str:
    """The path that redirects to ``url``."""
    return f"/to?status={status}&url={quote(url, safe='')}"
