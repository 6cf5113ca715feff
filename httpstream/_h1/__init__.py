"""HTTP/1.1 over one TCP (or TLS) connection, on h11."""

from ._connection import HTTP11Connection

__all__ = ["HTTP11Connection"]
