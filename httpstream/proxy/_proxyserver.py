"""``ProxyServer``: the server side (``_server``) wired to one shared pool, with the proxy's policy.

Theory of operation
-------------------
Every exchange the ``Server`` hands over goes through ``_handle``: the client
checks (``block_global``, ``proxyauth``), then CONNECT to ``_tunnel`` (raw
bytes both ways), anything else to ``_forward``.  ``_forward`` builds the flow
the addons see, runs ``requestheaders``, reads (buffers) or streams the request
body as ``_relay`` decides, runs ``request``, sends the request through
``pool.handle_request`` (which returns at the response head: full duplex, so a
streamed upload may still be going up), runs ``responseheaders``, and buffers
or streams the response body back through ``exchange.respond``.

A streamed body is an async generator over the upstream's body stream: when
the upstream read fails (a truncated body, a reset), the generator raises and
``respond`` aborts the downstream side, so a truncated body is never ended
cleanly (HTTP/1.1: no last chunk or short of Content-Length; HTTP/2:
RST_STREAM).  When the client goes away mid-body, ``respond`` raises and the
``finally`` closes the upstream response (H1 drain-or-close, H2 RST_STREAM).

Errors before the response head become 502 (connect, TLS, protocol) or 504
(timeouts) with a short plain-text body naming the cause, and the ``error``
hook.

CONNECT is tunnelled as raw bytes to ``host:port`` (pass-through).  TLS
interception is the ``intercept`` hook point: a callable ``(host, port) ->
ssl.SSLContext | None`` that the CA module (``_certs``) fills; it returns the
server-side context for that host, or None for pass-through.  When it is not
set by ``start`` (regular mode), the proxy intercepts as mitmdump does: a
``CertStore`` at the ``confdir`` option, ``ensure()``d at startup (a broken
confdir fails there), mints a leaf per host; hosts matched by ``ignore_hosts``
(or not matched by ``allow_hosts``) stay raw pass-through.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import re
import ssl
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

from .._config import Timeout
from .._exceptions import HTTPStreamError, TimeoutException
from .._headers import Headers as _Headers
from .._models import Request as _Request
from .._models import Response as _Response
from .._network import NetworkStream
from .._pool import ConnectionPool
from .._server import Server, ServerExchange
from .._urls import URL
from . import _relay
from ._addons import Addons
from ._certs import CertStore
from ._options import OptionError, Options, parse_mode
from .http import Error, HTTPFlow, Request, Response

__all__ = ["ProxyServer"]

log = logging.getLogger("httpstream.proxy")

VIA = "1.1 httpstream"
_NO_BODY_STATUS = (204, 304)


class _Loader:
    """What ``load(loader)`` gets; options of addons are not supported yet (accepted, ignored)."""

    def add_option(self, name: str, typespec: object, default: object, help: str, **kwargs: object) -> None:
        log.debug("addon option %s ignored (addon options are not supported yet)", name)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ProxyServer:
    """``async with ProxyServer(listen_port=0, addons=[...]) as proxy: proxy.port``."""

    def __init__(
        self,
        options: Options | None = None,
        *,
        addons: Iterable[object] = (),
        pool: ConnectionPool | None = None,
        **option_values: Any,
    ) -> None:
        if options is None:
            options = Options(**option_values)
        elif option_values:
            options = options.replace(**option_values)
        self.options = options
        self.mode, self.mode_url = parse_mode(options.mode)
        if not is_loopback(options.listen_host) and options.proxyauth is None:
            raise OptionError(
                f"refusing to listen on non-loopback host {options.listen_host!r} without proxyauth "
                "(--set proxyauth=user:pass)"
            )
        self.addons = Addons(addons)
        # The TLS interception hook point: (host, port) -> server-side SSLContext, or None to pass through.
        self.intercept: Callable[[str, int], ssl.SSLContext | None] | None = None
        self.certs: CertStore | None = None  # the default interception's CA (set by ``start``)
        self._own_pool = pool is None
        if pool is None:
            verify: bool | str = not options.ssl_insecure
            if options.ssl_verify_upstream_trusted_ca and not options.ssl_insecure:
                verify = options.ssl_verify_upstream_trusted_ca
            pool = ConnectionPool(
                http2=options.http2,
                verify=verify,
                proxy=self.mode_url if self.mode == "upstream" else None,
                trust_env=False,
                timeout=Timeout(connect=options.connect_timeout, read=options.read_timeout, write=None, pool=None),
            )
        self.pool = pool
        self._interceptors: dict[tuple[str, int], Server] = {}
        self._interceptors_lock = asyncio.Lock()
        self._server = Server(self._handle, host=options.listen_host, port=options.listen_port, http2=options.http2)

    # -- lifecycle ----------------------------------------------------------------------
    async def __aenter__(self) -> ProxyServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self.intercept is None and self.mode == "regular":
            self._default_intercept()
        await self.addons.call("load", _Loader())
        await self._server.start()
        await self.addons.call("running")

    async def aclose(self) -> None:
        await self._server.aclose()
        for server in list(self._interceptors.values()):
            await server.aclose()
        self._interceptors.clear()
        await self.addons.call("done")
        if self._own_pool:
            await self.pool.aclose()

    def _default_intercept(self) -> None:
        """Intercept every CONNECT with a CertStore at ``confdir`` (raises CertStoreError early)."""
        certs = CertStore(self.options.confdir)
        certs.ensure()
        alpn = ("h2", "http/1.1") if self.options.http2 else ("http/1.1",)
        self.certs = certs
        self.intercept = lambda host, port: certs.leaf_context(host, alpn=alpn)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def host(self) -> str:
        return self.options.listen_host

    @property
    def url(self) -> str:
        return self._server.url

    # -- one exchange ---------------------------------------------------------------------
    async def _handle(self, exchange: ServerExchange) -> None:
        options = self.options
        request = exchange.request
        if options.block_global and options.proxyauth is None and not is_loopback(exchange.client_addr[0]):
            await _plain(exchange, 403, f"client {exchange.client_addr[0]} is not on loopback (block_global)")
            return
        if options.proxyauth is not None and not self._authorized(request.headers):
            await exchange.respond(
                407,
                [("Proxy-Authenticate", 'Basic realm="httpstream"'), ("Content-Type", "text/plain")],
                b"httpstream proxy: proxy authentication required\n",
            )
            return
        if request.method == "CONNECT" and self.mode != "reverse":
            await self._tunnel(exchange)
            return
        target = request.target
        if self.mode == "reverse":
            if not target.startswith("/"):
                target = URL(target).target if "://" in target else "/"
            url = URL(self.mode_url + target)  # type: ignore[operator]
        elif "://" in target:
            url = URL(target)
        else:
            message = f"not a proxy request: {request.method} {target[:100]} (absolute-form expected)"
            await _plain(exchange, 400, message)
            return
        await self._forward(exchange, url)

    def _authorized(self, headers: _Headers) -> bool:
        expected = self.options.proxyauth
        value = headers.get("proxy-authorization", "")
        scheme, _, credentials = value.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return given == expected

    async def _forward(self, exchange: ServerExchange, url: URL) -> None:
        options = self.options
        incoming = exchange.request
        port = url.effective_port
        headers = _relay.strip_hop_by_hop(incoming.headers)
        flow = HTTPFlow(
            Request(
                incoming.method,
                url.scheme,
                url.host,
                port,
                url.target,
                exchange.http_version,
                headers,
            ),
            exchange.client_addr,
        )
        req = flow.request
        body_source = _aiter(incoming.content)
        await self.addons.call("requestheaders", flow)
        if await self._answered(exchange, flow):
            await _drain_close(body_source)
            return
        # -- the request body: buffered unless it streams ---------------------------------
        length = _relay.content_length(req.headers)
        streams = bool(req.stream) or _relay.is_stream_type(req.headers, response=False)
        limit = options.body_size_limit
        if limit is not None and length is not None and length > limit:
            await _plain(exchange, 413, f"request body ({length} bytes) larger than body_size_limit ({limit})")
            return
        threshold = options.stream_large_bodies
        if threshold is not None and length is not None and length > threshold:
            streams = True
        prefix = b""
        if body_source is not None and not streams:
            try:
                prefix, streams = await _relay.read_body(body_source, threshold, limit)
            except _relay.BodyTooLarge as exc:
                await _plain(exchange, 413, str(exc))
                return
            if not streams:
                req.content = prefix
        elif body_source is None:
            req.content = b""
        if not streams:
            await self.addons.call("request", flow)
            if await self._answered(exchange, flow):
                return
        # -- the upstream request -----------------------------------------------------------
        up_headers = _Headers.from_triples(list(req.headers.triples()))
        content: bytes | AsyncIterator[bytes] | None
        if streams and body_source is not None:
            content = _relay.limited(body_source, limit, prefix)
            change = _relay.transform(req.stream)
            if change is not None:
                content = change(content)
                _drop(up_headers, b"content-length")
        else:
            content = req.content if (req.content or body_source is not None) else None
            _drop(up_headers, b"content-length")
        _drop(up_headers, b"transfer-encoding")
        target_url = URL(req.url)
        if self.mode == "reverse":
            original_host = incoming.headers.get("host", "")
            if not options.keep_host_header:
                _drop(up_headers, b"host")
            forwarded_for = ", ".join([*up_headers.get_list("x-forwarded-for"), exchange.client_addr[0]])
            up_headers["X-Forwarded-For"] = forwarded_for
            up_headers["X-Forwarded-Proto"] = "https" if exchange.tls else "http"
            if original_host:
                up_headers["X-Forwarded-Host"] = original_host
        else:
            _drop(up_headers, b"host")  # the absolute-form target's authority wins (RFC 9112 section 3.2.2)
        if options.via:
            up_headers.add("Via", VIA)
        upstream = _Request(req.method, target_url, headers=up_headers, content=content)
        try:
            response = await self.pool.handle_request(upstream)
        except HTTPStreamError as exc:
            await self._upstream_failed(exchange, flow, exc)
            return
        source = _chunks(response.stream)
        try:
            await self._respond(exchange, flow, response, source, request_streamed=streams)
        finally:
            await source.aclose()
            await response.aclose()

    async def _respond(
        self,
        exchange: ServerExchange,
        flow: HTTPFlow,
        response: _Response,
        source: AsyncIterator[bytes],
        *,
        request_streamed: bool,
    ) -> None:
        options = self.options
        flow.response = Response(
            response.status_code,
            response.reason_phrase,
            response.http_version,
            _relay.strip_hop_by_hop(response.headers),
        )
        await self.addons.call("responseheaders", flow)
        if flow.killed:
            exchange.abort()
            return
        resp = flow.response
        no_body = flow.request.method == "HEAD" or resp.status_code in _NO_BODY_STATUS
        length = _relay.content_length(resp.headers)
        limit = options.body_size_limit
        if not no_body and limit is not None and length is not None and length > limit:
            message = f"response body ({length} bytes) larger than body_size_limit ({limit})"
            await self._fail(exchange, flow, 502, message)
            return
        threshold = options.stream_large_bodies
        streams = (
            bool(resp.stream)
            or request_streamed
            or _relay.is_stream_type(resp.headers, response=True)
            or (threshold is not None and length is not None and length > threshold)
        )
        prefix = b""
        if no_body:
            resp.content = b""
            streams = False
        elif not streams:
            try:
                prefix, streams = await _relay.read_body(source, threshold, limit)
            except _relay.BodyTooLarge as exc:
                await self._fail(exchange, flow, 502, f"response {exc}")
                return
            except HTTPStreamError as exc:
                await self._upstream_failed(exchange, flow, exc)
                return
            if not streams:
                resp.content = prefix
        headers = _Headers.from_triples(list(resp.headers.triples()))
        if options.via:
            headers.add("Via", VIA)
        if not streams:
            await self.addons.call("response", flow)
            if flow.killed:
                exchange.abort()
                return
            headers = _Headers.from_triples(list(resp.headers.triples()))
            if options.via:
                headers.add("Via", VIA)
            if not no_body:
                _drop(headers, b"content-length")
            await exchange.respond(resp.status_code, headers, resp.content or b"")
            return
        body: AsyncIterator[bytes] = _relay.limited(source, limit, prefix)
        change = _relay.transform(resp.stream)
        if change is not None:
            body = change(body)
            _drop(headers, b"content-length")
        if options.store_streamed_bodies:

            def keep(data: bytes, truncated: bool) -> None:
                resp.content = data
                resp.truncated = truncated

            body = _relay.recorded(body, options.stored_body_limit, keep)
        try:
            await exchange.respond(resp.status_code, headers, body)
        except _relay.BodyTooLarge as exc:
            flow.error = _error(f"response {exc}")
            await self.addons.call("error", flow)
            return
        except HTTPStreamError as exc:
            flow.error = _error(f"upstream failed mid-body: {type(exc).__name__}: {exc}")
            await self.addons.call("error", flow)
            return
        await self.addons.call("response", flow)

    async def _answered(self, exchange: ServerExchange, flow: HTTPFlow) -> bool:
        """An addon set ``flow.response`` (answer it) or killed the flow (abort)."""
        if flow.killed:
            exchange.abort()
            return True
        resp = flow.response
        if resp is None:
            return False
        await self.addons.call("responseheaders", flow)
        await self.addons.call("response", flow)
        headers = _Headers.from_triples(list(resp.headers.triples()))
        _drop(headers, b"content-length")
        _drop(headers, b"transfer-encoding")
        await exchange.respond(resp.status_code, headers, resp.content or b"")
        return True

    async def _upstream_failed(self, exchange: ServerExchange, flow: HTTPFlow, exc: HTTPStreamError) -> None:
        status = 504 if isinstance(exc, TimeoutException) else 502
        what = "timed out" if status == 504 else "failed"
        await self._fail(exchange, flow, status, f"upstream {what}: {type(exc).__name__}: {exc}")

    async def _fail(self, exchange: ServerExchange, flow: HTTPFlow, status: int, message: str) -> None:
        flow.error = _error(message)
        await self.addons.call("error", flow)
        await _plain(exchange, status, message)

    # -- CONNECT pass-through ----------------------------------------------------------
    async def _tunnel(self, exchange: ServerExchange) -> None:
        target = exchange.request.target
        host, _, port_text = target.rpartition(":")
        host = host.strip("[]")
        if not host or not port_text.isdigit():
            await _plain(exchange, 400, f"invalid CONNECT target {target[:100]!r}")
            return
        port = int(port_text)
        flow = HTTPFlow(
            Request(
                "CONNECT", "", host, port, "", exchange.http_version, _relay.strip_hop_by_hop(exchange.request.headers)
            ),
            exchange.client_addr,
        )
        await self.addons.call("http_connect", flow)
        if flow.killed:
            exchange.abort()
            return
        answer = flow.response
        if answer is not None and not 200 <= answer.status_code < 300:
            headers = _Headers.from_triples(list(answer.headers.triples()))
            _drop(headers, b"content-length")
            _drop(headers, b"transfer-encoding")
            await exchange.respond(answer.status_code, headers, answer.content or b"")
            return
        if self.mode == "upstream":
            await self._tunnel_upstream(exchange, target)
            return
        connect_to = (host, port)
        context = self._intercept_context(host, port)
        if context is not None:
            inner = await self._interceptor(host, port, context)
            connect_to = ("127.0.0.1", inner.port)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*connect_to), self.options.connect_timeout)
        except OSError as exc:  # TimeoutError included
            status = 504 if isinstance(exc, TimeoutError) else 502
            await _plain(exchange, status, f"CONNECT {target}: upstream connect failed: {type(exc).__name__}: {exc}")
            return
        try:
            downstream = await exchange.upgrade(200)
        except BaseException:
            writer.transport.abort()
            raise
        try:
            await _pipe_streams(downstream, reader, writer)
        finally:
            writer.transport.abort()
            await downstream.aclose()

    def _intercept_context(self, host: str, port: int) -> ssl.SSLContext | None:
        """The server-side context to intercept ``host:port`` with, or None to pass it through."""
        intercept = self.intercept
        if intercept is None:
            return None
        name = f"{host}:{port}"
        options = self.options
        if any(re.search(pattern, name) for pattern in options.ignore_hosts):
            return None
        if options.allow_hosts and not any(re.search(pattern, name) for pattern in options.allow_hosts):
            return None
        return intercept(host, port)

    async def _interceptor(self, host: str, port: int, context: ssl.SSLContext) -> Server:
        """A loopback TLS server presenting ``context`` for one intercepted ``host:port``.

        The CONNECT tunnel is piped into it: the ``_server`` stack then does the
        TLS handshake (ALPN h2 / http/1.1) and the HTTP, and its requests come
        back to ``_forward`` as ``https://host:port`` requests.
        """
        async with self._interceptors_lock:
            server = self._interceptors.get((host, port))
            if server is None:

                async def handler(exchange: ServerExchange) -> None:
                    await self._intercepted(exchange, host, port)

                server = Server(handler, host="127.0.0.1", port=0, ssl_context=context, http2=self.options.http2)
                await server.start()
                self._interceptors[(host, port)] = server
            return server

    async def _intercepted(self, exchange: ServerExchange, host: str, port: int) -> None:
        target = exchange.request.target
        if not target.startswith("/"):
            await _plain(exchange, 400, f"origin-form expected inside an intercepted tunnel, got {target[:100]!r}")
            return
        authority = f"[{host}]" if ":" in host else host
        await self._forward(exchange, URL(f"https://{authority}:{port}{target}"))

    async def _tunnel_upstream(self, exchange: ServerExchange, target: str) -> None:
        assert self.mode_url is not None
        try:
            response = await self.pool.handle_request(_Request("CONNECT", self.mode_url, target=target))
        except HTTPStreamError as exc:
            status = 504 if isinstance(exc, TimeoutException) else 502
            await _plain(exchange, status, f"CONNECT {target} via upstream failed: {type(exc).__name__}: {exc}")
            return
        stream = response.extensions.get("network_stream")
        if not 200 <= response.status_code < 300 or not isinstance(stream, NetworkStream):
            await response.aclose()
            await _plain(exchange, 502, f"CONNECT {target}: the upstream proxy answered {response.status_code}")
            return
        try:
            downstream = await exchange.upgrade(200)
        except BaseException:
            await stream.aclose()
            raise
        try:
            await _pipe_network(downstream, stream)
        finally:
            await stream.aclose()
            await downstream.aclose()


# -- helpers ------------------------------------------------------------------------------
def _error(message: str) -> Error:
    return Error(message)


def _drop(headers: _Headers, name: bytes) -> None:
    if headers.has(name):
        del headers[name.decode("ascii")]


def _aiter(content: object) -> AsyncIterator[bytes] | None:
    if content is None:
        return None
    if isinstance(content, bytes):
        return _once(content) if content else None
    return content.__aiter__()  # type: ignore[attr-defined, no-any-return]


async def _chunks(stream: AsyncIterable[bytes]) -> AsyncGenerator[bytes, None]:
    """One iterator over a body stream, resumable by several ``async for`` loops."""
    async for chunk in stream:
        yield chunk


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _drain_close(source: AsyncIterator[bytes] | None) -> None:
    close = getattr(source, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


async def _plain(exchange: ServerExchange, status: int, message: str) -> None:
    body = f"httpstream proxy: {message}\n".encode("utf-8", "replace")
    await exchange.respond(status, [("Content-Type", "text/plain; charset=utf-8")], body)


async def _pipe_streams(downstream: NetworkStream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    async def up() -> None:
        while True:
            data = await downstream.read()
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    async def down() -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            await downstream.write(data)

    await _both(up(), down())


async def _pipe_network(a: NetworkStream, b: NetworkStream) -> None:
    async def copy(src: NetworkStream, dst: NetworkStream) -> None:
        while True:
            data = await src.read()
            if not data:
                return
            await dst.write(data)

    await _both(copy(a, b), copy(b, a))


async def _both(*coros: Any) -> None:
    """Run the two directions; when one ends or fails, wait briefly for the other, then stop it."""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if pending and all(t.exception() is None for t in done if not t.cancelled()):
            done, pending = await asyncio.wait(pending, timeout=30)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
