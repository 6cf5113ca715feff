"""Peers the tests run against: in-process servers, fault servers and interop wrappers.

Nothing here is a test module. ``servers`` has the hypercorn wrapper and the raw
``FaultServer``; ``faults``, ``h2_servers`` and ``udp_faults`` misbehave on purpose
(HTTP/1.1, HTTP/2, QUIC datagrams); ``auth_servers``, ``client_servers``,
``content_servers``, ``decoding_servers`` and ``proxy_servers`` are ASGI apps and
proxies for one feature each; ``nginx`` and ``caddy`` run the interop peers;
``invariants`` holds the checks every fault test applies.
"""
