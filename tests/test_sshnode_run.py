"""SSHNode's command loop on a scripted channel: a command that ends between two of its checks
is a command that finished, not a dropped connection (no VM, no network)."""

from __future__ import annotations

import threading

import pytest

from flatbed.errors import FlatbedError
from flatbed.sshnode import SSHNode, SSHTarget


class Transport:
    def __init__(self, active: bool = True):
        self.active = active

    def is_active(self) -> bool:
        return self.active


class Channel:
    """Says "not finished" once, then shows the exit-status and close that arrived meanwhile."""

    def __init__(self, exit_status: int | None, transport: Transport):
        self.exit_status, self.transport = exit_status, transport
        self.checks, self.closed = 0, False
        self.status_event = threading.Event()
        self.out = [b"done\n"]

    def exec_command(self, command: str) -> None:
        pass

    def exit_status_ready(self) -> bool:
        self.checks += 1
        if self.checks == 1:
            self.closed = True  # exit-status and close arrive right after the first check
            return False
        return self.exit_status is not None

    def get_transport(self) -> Transport:
        return self.transport

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv_stderr_ready(self) -> bool:
        return False

    def recv(self, n: int) -> bytes:
        return self.out.pop(0) if self.out else b""

    def recv_stderr(self, n: int) -> bytes:
        return b""

    def settimeout(self, t: float) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        pass

    def shutdown_write(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def recv_exit_status(self) -> int:
        return self.exit_status


def node() -> SSHNode:
    return SSHNode("controller-1", "controller", SSHTarget("192.168.56.200", 22, "root", "key", "known"),
                   is_running=lambda: True)


def test_a_command_that_ends_between_the_checks_finished():
    rc, out, _ = node()._run(Channel(0, Transport()), "nova list", ["nova", "list"], None, timeout=10)
    assert (rc, out) == (0, b"done\n")


def test_a_channel_closed_without_an_exit_status_is_a_dropped_connection():
    with pytest.raises(FlatbedError, match="the SSH connection dropped during `nova list`"):
        node()._run(Channel(None, Transport(active=False)), "nova list", ["nova", "list"], None, timeout=10)
