"""A shell in a guest, the document's way: SSH as cirros through the controller (§2.6).

paramiko on the test host over a TCP connection the controller opens (:mod:`flatbed.guestssh`),
logging in with the image's password (cirros / ``cubswin:)``) or a key pair's private key — the
same on containers and VMs. Commands run with busybox's applets, as on cirros (its ``ping`` is
setuid, like cirros').
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import paramiko

from flatbed import guestssh
from flatbed.checks.console import wait_for_sshd
from flatbed.checks.timeouts import SSH_TIMEOUT
from flatbed.checks.traffic import Ping, parse_ping, ping_command
from flatbed.cloud import Cloud, Guest
from flatbed.testbed import Testbed


@dataclass
class GuestShell:
    """An SSH session in one guest. Commands are an argv, or one shell line (a one-element list);
    ``run`` returns (status, stdout, stderr)."""

    guest: Guest
    client: paramiko.SSHClient

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        return guestssh.run(self.client, argv)

    def check(self, argv: list[str]) -> str:
        status, out, err = self.run(argv)
        if status != 0:
            raise AssertionError(f"{self.guest.name}: `{shlex.join(argv)}` exited {status}: {(err or out).strip()}")
        return out

    def ping(self, ip: str, count: int = 3) -> Ping:
        """busybox ping inside the guest, as the logged-in user. From a node: ``traffic.ping_node``."""
        status, out, err = self.run(ping_command(ip, count))
        return parse_ping(self.guest.name, ip, status, out + err)


@contextmanager
def guest_shell(testbed: Testbed, guest: Guest, *, pkey: paramiko.PKey | None = None) -> Iterator[GuestShell]:
    """A logged-in session in ``guest`` as the image's user (its password, or ``pkey``); closed afterwards."""
    wait_for_sshd(guest)
    user, password = Cloud(testbed).login()
    # Retries while dropbear starts; the error names the last failure.
    client = guestssh.connect(testbed.controller, guest.ip, user, password=None if pkey else password, pkey=pkey,
                              wait=SSH_TIMEOUT)
    try:
        yield GuestShell(guest, client)
    finally:
        client.close()
