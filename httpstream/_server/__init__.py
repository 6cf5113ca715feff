"""The server side (layer 3): HTTP/1.1 and HTTP/2 listeners for the proxy and tunnel roles.

Theory of operation
-------------------
``Server(handler)`` listens (127.0.0.1 by default) and gives every connection
one asyncio Protocol: ``H1ServerProtocol`` (``_h1``, strict request reading in
``_h1_parse``, h11 as the head parser) or ``H2ServerProtocol`` (``_h2``, on h2),
chosen by ALPN over TLS and by the connection preface in cleartext
(``_listener``).  Each request becomes a ``ServerExchange`` (``_types``): a
``Request`` as it was received (method, target, headers in order and case), a
body that streams with backpressure, and ``informational`` / ``respond`` /
``upgrade`` / ``abort`` to answer it.  The handler runs in a task of its own,
one per request; the server cancels and awaits every one when it closes.

This package never imports the pool, the client or the client-side
protocols: a role (layer 6) puts a ``Server`` and a pool together.
"""

from ._listener import Server
from ._types import Handler, ServerExchange, ServerLimits

__all__ = ["Handler", "Server", "ServerExchange", "ServerLimits"]
