"""flatbed/guestssh.py: the one way to a guest's sshd, over the controller's ``open_tcp`` (no nodes)."""

from __future__ import annotations

import socket
import threading

import pytest

from flatbed import guestssh
from flatbed.errors import FlatbedError


class Controller:
    """A stand-in controller whose open_tcp connects from this host and counts the attempts."""

    name = "controller-1"

    def __init__(self, port: int | None):
        self.port, self.opened = port, 0

    def open_tcp(self, address: str, port: int, timeout: float = 10) -> socket.socket:
        self.opened += 1
        assert port == guestssh.SSH_PORT
        if self.port is None:
            raise ConnectionRefusedError(111, "Connection refused")
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)


def test_refused_connection_is_one_line_naming_the_controller() -> None:
    controller = Controller(None)
    with pytest.raises(FlatbedError, match=r"^ssh cirros@10\.0\.0\.2 through controller-1: ConnectionRefusedError"):
        guestssh.connect(controller, "10.0.0.2", "cirros", password="x")
    assert controller.opened == 1


def test_retries_while_sshd_is_not_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guestssh.time, "sleep", lambda _s: None)
    controller = Controller(None)
    with pytest.raises(FlatbedError):
        guestssh.connect(controller, "10.0.0.2", "cirros", password="x", wait=0.05)
    assert controller.opened >= 2


def test_a_peer_that_is_no_sshd_is_an_error_after_the_wait() -> None:
    """The stream is what paramiko speaks over: a peer that closes at once ends in one line."""
    server = socket.create_server(("127.0.0.1", 0))

    def close_each() -> None:
        while True:  # every connection the client makes, until the test closes the server
            try:
                conn, _addr = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=close_each, daemon=True).start()
    with pytest.raises(FlatbedError, match="through controller-1"):
        guestssh.connect(Controller(server.getsockname()[1]), "10.0.0.2", "cirros", password="x")
    server.close()
