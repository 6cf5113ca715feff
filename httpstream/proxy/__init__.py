"""The streaming proxy role (layer 6): ``httpstream proxy`` and its Python API.

``ProxyServer`` (``_proxyserver``) puts the server side (``httpstream._server``)
and one shared ``ConnectionPool`` together; ``_relay`` holds what happens to
messages on the way (hop-by-hop fields, the streaming decision, ``.stream``
transforms); ``_options`` the options with mitmproxy's names; ``_addons`` the
script API; ``http`` the flow an addon sees (``from httpstream.proxy import
http`` stands in for ``from mitmproxy import http``); ``_cli`` the command.

    async with ProxyServer(listen_port=0, stream_large_bodies=1024 * 1024, addons=[MyAddon()]) as proxy:
        ...  # proxy.port
"""

from . import http
from ._addons import AddonError, Addons, load_script
from ._options import OptionError, Options, parse_size
from ._proxyserver import ProxyServer

__all__ = ["AddonError", "Addons", "OptionError", "Options", "ProxyServer", "http", "load_script", "parse_size"]
