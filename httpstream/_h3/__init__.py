"""HTTP/3 over QUIC, on aioquic's sans-IO QuicConnection and H3Connection."""

from ._connection import HTTP3Connection, connect_h3

__all__ = ["HTTP3Connection", "connect_h3"]
