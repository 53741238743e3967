"""SSH to a guest through the controller, the way the document's admin reaches one.

Guests live on the flat network, which only the controller (its bridge holds the gateway) and
the computes reach. paramiko on the host speaks SSH to the guest's dropbear over a byte relay
that runs on the controller (``python3`` from the node's base image, started through the
provider's :meth:`~flatbed.node.Node.host_argv`): the same on containers and VMs.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from typing import TYPE_CHECKING

import paramiko

from flatbed.errors import FlatbedError
from flatbed.terminal import relay_channel, window_size

if TYPE_CHECKING:
    from flatbed.node import Node

# Runs on the controller: connect to argv[1]:argv[2] and copy bytes both ways until either side ends.
RELAY = """\
import os, selectors, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.settimeout(None)
sel = selectors.DefaultSelector()
sel.register(0, selectors.EVENT_READ)
sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj == 0:
            data = os.read(0, 65536)
            if not data:
                sel.unregister(0)
                s.shutdown(socket.SHUT_WR)
                continue
            s.sendall(data)
        else:
            data = s.recv(65536)
            if not data:
                sys.exit(0)
            os.write(1, data)
"""
CONNECT_TIMEOUT = 20


class _AcceptNewGuestKeys(paramiko.MissingHostKeyPolicy):
    """Guests are new machines at every boot; their keys are accepted and not stored anywhere."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        return None


def connect(controller: Node, address: str, user: str, *, password: str | None = None,
            key_file: str | None = None, wait: float = 0) -> paramiko.SSHClient:
    """An SSH session to ``address`` through ``controller``; retries for ``wait`` seconds (sshd starting)."""
    deadline = time.monotonic() + wait
    while True:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_AcceptNewGuestKeys())
        try:
            sock = paramiko.ProxyCommand(shlex.join(controller.host_argv(["python3", "-c", RELAY, address, "22"])))
            client.connect(address, username=user, password=password, key_filename=key_file, sock=sock,
                           look_for_keys=False, allow_agent=False, timeout=CONNECT_TIMEOUT,
                           banner_timeout=CONNECT_TIMEOUT, auth_timeout=CONNECT_TIMEOUT)
            return client
        except paramiko.AuthenticationException as e:
            client.close()
            raise FlatbedError(f"ssh {user}@{address}: authentication failed ({e})") from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            client.close()
            if time.monotonic() >= deadline:
                raise FlatbedError(f"ssh {user}@{address} through {controller.name}: "
                                   f"{type(e).__name__}: {e or 'connection closed'}") from None
            time.sleep(1)  # sshd of a booting guest: retry until `wait` runs out


def run(client: paramiko.SSHClient, command: list[str]) -> tuple[int, str, str]:
    """Run a command on the guest; (exit status, stdout, stderr)."""
    _, stdout, stderr = client.exec_command(shlex.join(command) if len(command) > 1 else command[0], timeout=300)
    out, err = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
    return stdout.channel.recv_exit_status(), out, err


def shell(client: paramiko.SSHClient) -> int:
    """An interactive login shell on the guest, on the caller's terminal."""
    rows, cols = window_size(sys.stdin.fileno())
    channel = client.invoke_shell(term=os.environ.get("TERM", "xterm"), width=cols, height=rows)
    try:
        return relay_channel(channel)
    except (OSError, paramiko.SSHException) as e:
        raise FlatbedError(f"ssh session ended: {e}") from None
