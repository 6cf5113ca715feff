"""``httpstream demo``: the streaming client against a local HTTPS server, in one process.

Theory of operation
-------------------
``run()`` makes a throw-away CA with trustme and starts hypercorn as a task in
the demo's own event loop, on sockets it has already bound to 127.0.0.1: a TCP
one (TLS, ALPN ``h2`` and ``http/1.1``) and a UDP one on the same port number
(QUIC, HTTP/3).  The port is known up front and the first connections queue
until hypercorn accepts them: no readiness polling.  Nothing leaves loopback.

The client then runs four steps for every protocol in ``FLAVOURS``
(``AsyncClient()`` for HTTP/1.1, ``http2=True`` and ``http3="only"``):

1. a large download read with ``aiter_bytes()``, its progress bar fed by
   ``on_download_progress`` (a rich bar on a terminal when rich is installed,
   plain lines otherwise), and its throughput;
2. a Server-Sent Events feed read with ``aiter_sse()``, event by event;
3. an NDJSON stream read with ``aiter_json()``, object by object;
4. early closes, with ``client.transport.stats()`` before and after: a small
   remainder (HTTP/1.1 drains it and reuses the connection) and a large one
   (HTTP/1.1 closes the connection); HTTP/2 and HTTP/3 reset the stream in both
   cases and keep the connection.

Every claim the demo prints is checked, against the peer where it can be: the
server counts the connections it accepted (distinct client addresses in the
ASGI scope, for TCP and QUIC alike), records which HTTP version it spoke and
whether each tagged response went out complete or was cut short.  A failed
check makes the demo exit 1, which is what tests/test_demo.py relies on.

HTTP/3 and early close: hypercorn (0.18, with aioquic 1.7) survives a client's
STOP_SENDING + RESET_STREAM (the connection carries on: 30 resets in a row
on one connection in a trial, and step 4 of every run), but it does not tell the ASGI app:
no ``http.disconnect`` arrives, and the app's next ``send`` raises aioquic's
``FrameUnexpected``.  The demo's app therefore treats any failing ``send`` as
"the client went away" and returns normally, so hypercorn closes the stream
cleanly instead of logging an application error.  Should a later hypercorn
drop the connection instead, the demo's own check (no new connection accepted)
fails loudly.  hypercorn's HTTP/3 also has no send backpressure: it queues a
body as fast as the app makes it, which is why the process's peak RSS rises
during the HTTP/3 download (the server's queue, not the client's buffer), and
why that download is smaller by default: aioquic is pure Python and paces its
sends, and with client and server in one process it moves 10-20 MB/s here.

The package: ``_server`` (the ASGI app and hypercorn on loopback), ``_checks``
(the protocols, the four steps and every check), ``_progress`` (the download
bars) and ``_run`` (the command line and the run).  Nothing in the library
imports it: ``python -m httpstream demo`` imports it lazily, so hypercorn and
trustme (the ``demo`` or ``test`` extra) are needed only to run it.
"""

from __future__ import annotations

from ._run import build_parser, run

__all__ = ["build_parser", "run"]
