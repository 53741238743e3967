"""A small RPC in place of Essex's AMQP: JSON over HTTP POST.

A request is ``POST /v1/<method>`` with a JSON object of keyword arguments; the reply is the JSON
result (HTTP 200) or ``{"error": "..."}`` (HTTP 500, or 404 for an unknown method). nova-network
serves it on ``<my_ip>:<network_rpc_port>`` (flatbed flag, default 8780).

Essex's ``rpc.call`` waited for the result, ``rpc.cast`` did not; ``cast`` here still waits for the
HTTP reply (so the caller knows the message was delivered) but only logs a remote error.

A server that cannot be reached may be waited for: ``retry_for`` seconds of re-sending while the
message is not delivered (Essex's AMQP queued it for a stopped service; a delivered error is
never retried).

>>> server = RpcServer("127.0.0.1", 0, {"add": lambda a, b: a + b}); _ = server.start()
>>> call("127.0.0.1", server.port, "add", a=2, b=3)
5
>>> server.stop()
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from nova import wsgi

LOG = logging.getLogger("nova.rpc")

DEFAULT_TIMEOUT = 60.0
RETRY_INTERVAL = 1.0  # between two sends to an unreachable server


class RemoteError(Exception):
    """An RPC that failed: unreachable server, timeout, or an error raised by the method."""

    def __init__(self, method: str, endpoint: str, message: str, delivered: bool) -> None:
        super().__init__(f"rpc {method} to {endpoint} failed: {message}")
        self.method = method
        self.endpoint = endpoint
        self.message = message
        # True when the server answered (the method ran or was refused), False when unreachable.
        self.delivered = delivered


def call(host: str, port: int, method: str, /, *, timeout: float = DEFAULT_TIMEOUT, retry_for: float = 0.0,
         retry_interval: float = RETRY_INTERVAL, **kwargs: Any) -> Any:
    """Invoke ``method(**kwargs)`` on the server and return its result; raise RemoteError.

    While the server is unreachable the call is re-sent every ``retry_interval`` s, for at most
    ``retry_for`` s (0: once).
    """
    deadline = time.monotonic() + retry_for
    while True:
        try:
            return _call_once(host, port, method, timeout, kwargs)
        except RemoteError as exc:
            if exc.delivered or time.monotonic() >= deadline:
                raise
            LOG.warning("%s; retrying", exc)
            time.sleep(retry_interval)


def _call_once(host: str, port: int, method: str, timeout: float, kwargs: dict[str, Any]) -> Any:
    endpoint = f"{host}:{port}"
    request = urllib.request.Request(f"http://{endpoint}/v1/{method}", data=json.dumps(kwargs).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = f"HTTP {exc.code} {exc.reason}"
        raise RemoteError(method, endpoint, str(message), delivered=True) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RemoteError(method, endpoint, str(reason), delivered=False) from None


def cast(host: str, port: int, method: str, /, *, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> None:
    """Deliver ``method(**kwargs)`` without using its result; a remote error is only logged.

    An unreachable server still raises RemoteError: the message was not delivered.
    """
    try:
        call(host, port, method, timeout=timeout, **kwargs)
    except RemoteError as exc:
        if not exc.delivered:
            raise
        LOG.error("%s", exc)


class _Handler(wsgi.Handler):
    server: RpcServer
    server_version = "nova-rpc/2012.1"

    def _reply(self, status: int, body: object) -> None:
        self.reply(status, json.dumps(body).encode(), "application/json")

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        prefix, _, name = self.path.partition("/v1/")
        method = self.server.methods.get(name) if not prefix else None
        if method is None:
            self._reply(404, {"error": f"unknown method {self.path!r}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            kwargs = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(kwargs, dict):
                raise ValueError("the body must be a JSON object of keyword arguments")
        except ValueError as exc:
            self._reply(400, {"error": f"bad request: {exc}"})
            return
        try:
            result = method(**kwargs)
        except Exception as exc:  # the error goes back to the caller, the server keeps serving
            LOG.error("%s(%s) failed: %s", name, kwargs, exc)
            self._reply(500, {"error": f"{type(exc).__name__}: {exc}"})
            return
        self._reply(200, result)


class RpcServer(wsgi.Server):
    """Serves ``methods`` by name; binds in the constructor, serves from ``start()``."""

    def __init__(self, host: str, port: int, methods: Mapping[str, Callable[..., Any]], name: str = "rpc") -> None:
        self.methods = dict(methods)
        super().__init__(name, host, port, _Handler)
