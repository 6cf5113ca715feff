"""HTTP/2 over one TCP (or TLS) connection, on h2 + hpack."""

from ._connection import HTTP2Connection

__all__ = ["HTTP2Connection"]
