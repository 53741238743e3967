"""The HTTP servers of the nova daemons (Essex: ``nova/wsgi.py`` served each API with eventlet's wsgi).

Every server here — nova-api's three APIs and the RPC servers of nova-network and nova-compute
(``nova.rpc.RpcServer``) — is a ``Server``: a ``ThreadingHTTPServer`` bound without a reverse DNS
query, serving in a daemon thread; its ``Handler`` replies in HTTP/1.1 with a Content-Length.
"""

from __future__ import annotations

import http.server
import logging
import socketserver
import threading
from typing import Any

LOG = logging.getLogger("nova.wsgi")


class Server(http.server.ThreadingHTTPServer):
    """Binds in the constructor; ``start()`` serves in a daemon thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, host: str, port: int, handler: type[http.server.BaseHTTPRequestHandler]):
        self.name = name
        super().__init__((host, port), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the address with socket.getfqdn: a reverse DNS query that
        # stalls start-up by the resolver timeout on a node without a reachable DNS server.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self, poll_interval: float = 0.5) -> threading.Thread:
        """Serve in a daemon thread (``poll_interval``: how soon ``stop()`` is noticed)."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": poll_interval},
                                  name=self.name, daemon=True)
        thread.start()
        LOG.info("%s listening on %s:%d", self.name, self.server_address[0], self.port)
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Handler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 (busybox wget prints the status line, e.g. ``HTTP/1.1 404 Not Found``)."""

    protocol_version = "HTTP/1.1"
    server_version = "nova-api/2012.1"

    def reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=UTF-8") -> None:
        """Send ``body`` whole, with its length (no body for HEAD)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        LOG.debug("%s %s", self.address_string(), format % args)
