"""SSH to a guest through the controller, the way the document's admin reaches one.

Guests live on the flat network, which only the controller (its bridge holds the gateway) and
the computes reach. paramiko on the host speaks SSH to the guest's dropbear over a TCP
connection the controller opens (:meth:`flatbed.node.Node.open_tcp`: a socket in the
container's network namespace, a ``direct-tcpip`` channel of a VM's SSH connection). The login
is the image's password (cirros / ``cubswin:)``) or a key, both through paramiko.
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

SSH_PORT = 22
CONNECT_TIMEOUT = 20   # the TCP connection, the SSH banner and the authentication, each
COMMAND_TIMEOUT = 300  # one command run in the guest


class _AcceptNewGuestKeys(paramiko.MissingHostKeyPolicy):
    """Guests are new machines at every boot; their keys are accepted and not stored anywhere."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        return None


def connect(controller: Node, address: str, user: str, *, password: str | None = None,
            pkey: paramiko.PKey | None = None, key_file: str | None = None, wait: float = 0) -> paramiko.SSHClient:
    """An SSH session to ``address`` through ``controller``; retries for ``wait`` seconds (sshd starting).

    The login is ``password``, or a key (``pkey`` in memory, ``key_file`` on this host).
    """
    deadline = time.monotonic() + wait
    while True:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_AcceptNewGuestKeys())
        sock = None
        try:
            sock = controller.open_tcp(address, SSH_PORT, timeout=CONNECT_TIMEOUT)
            client.connect(address, username=user, password=password, pkey=pkey, key_filename=key_file, sock=sock,
                           look_for_keys=False, allow_agent=False, timeout=CONNECT_TIMEOUT,
                           banner_timeout=CONNECT_TIMEOUT, auth_timeout=CONNECT_TIMEOUT)
            return client
        except paramiko.AuthenticationException as e:
            client.close()
            raise FlatbedError(f"ssh {user}@{address}: authentication failed ({e})") from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            client.close()
            if sock is not None:
                sock.close()
            if time.monotonic() >= deadline:
                raise FlatbedError(f"ssh {user}@{address} through {controller.name}: "
                                   f"{type(e).__name__}: {e or 'connection closed'}") from None
            time.sleep(1)  # sshd of a booting guest: retry until `wait` runs out


def run(client: paramiko.SSHClient, command: list[str]) -> tuple[int, str, str]:
    """Run a command on the guest; (exit status, stdout, stderr)."""
    _, stdout, stderr = client.exec_command(shlex.join(command) if len(command) > 1 else command[0],
                                            timeout=COMMAND_TIMEOUT)
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
