"""Nodes reached over SSH with paramiko (the VM provider's nodes).

Connection parameters come from ``vagrant ssh-config`` (recorded in the testbed's state file at
bring-up, so other processes need no Ruby start-up per command). When the testbed's network lives
in a namespace, the TCP connection is opened from inside it: a socket keeps the namespace it
was created in, so the rest of this process stays in the host's namespace.

Host keys are trusted on first use and pinned in the testbed's ``ssh/known_hosts``: a VM that
comes back with another key is refused. One connection per node and process is reused, and
re-opened once when it died (testinfra's paramiko backend does the same). ``open_tcp`` is a
``direct-tcpip`` channel of that connection; ``host_argv`` (terminals, ``flatbed ssh NODE``,
``flatbed console``) is OpenSSH's ``ssh`` with the same key and the pinned host key.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from flatbed import hostnet
from flatbed.errors import FlatbedError, NodeGoneError
from flatbed.node import Node, SocketLike, node_env

CONNECT_TIMEOUT = 15.0
# A VM removed under a connection (its namespace and bridge gone) sends no RST: the connection
# would wait for ever, so a command asks every LIVENESS_INTERVAL s whether the VM still runs.
LIVENESS_INTERVAL = 5.0
# Opening a channel takes well under a second; a loaded TCG VM may take many. paramiko's default
# is an hour, and a connection to a VM removed under it never answers.
CHANNEL_TIMEOUT = 60.0
# paramiko logs a refused channel open at ERROR; with no handler configured Python would print
# it on stderr beside our own one-line error (the CLI configures no logging; pytest still
# captures it, records propagate).
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to log in (the fields of ``vagrant ssh-config`` that matter)."""

    host: str
    port: int
    user: str
    identity: str
    known_hosts: str
    netns: str | None = None


# Runs the command (argv after "sh") and ends it once sshd's session process, the parent, is gone:
# sshd leaves a command without a pty running when its client disconnects (`tail -F` would stay).
# Its stdin is passed on (a background job's would be /dev/null); its exit status is the command's.
HANGUP_GUARD = """\
session=$PPID
exec 3<&0
"$@" <&3 3<&- &
child=$!
exec 3<&-
while kill -0 "$child" 2>/dev/null; do
  [ "$(cut -d' ' -f4 /proc/$$/stat)" = "$session" ] || { kill "$child"; break; }  # reparented: sshd left
  sleep 1
done
wait "$child"
"""

_CLIENTS: dict[SSHTarget, paramiko.SSHClient] = {}
_LOCK = threading.Lock()


def _connect(target: SSHTarget) -> paramiko.SSHClient:
    sock = hostnet.connect(target.netns, target.host, target.port, CONNECT_TIMEOUT)
    client = paramiko.SSHClient()
    known = Path(target.known_hosts)
    known.parent.mkdir(parents=True, exist_ok=True)
    known.touch(exist_ok=True)
    client.load_host_keys(str(known))
    # Trust on first use; load_host_keys above makes a changed key a BadHostKeyException.
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(target.host, target.port, username=target.user, key_filename=target.identity, sock=sock,
                       allow_agent=False, look_for_keys=False, timeout=CONNECT_TIMEOUT,
                       banner_timeout=CONNECT_TIMEOUT, auth_timeout=CONNECT_TIMEOUT)
    except BaseException:
        sock.close()
        raise
    return client


def drop_connections(netns: str | None = None) -> None:
    """Close cached connections (all, or those through ``netns``) before their network goes away."""
    with _LOCK:
        for target in [t for t in _CLIENTS if netns is None or t.netns == netns]:
            _CLIENTS.pop(target).close()


class SSHNode(Node):
    """A node reached over SSH; ``is_running`` tells a dead connection from a stopped machine."""

    relays_terminal = True  # OpenSSH's ssh -t

    def __init__(self, name: str, role: str, target: SSHTarget, is_running: Callable[[], bool]):
        super().__init__(name, role)
        self.target = target
        self.is_running = is_running

    def _client(self, fresh: bool = False) -> paramiko.SSHClient:
        with _LOCK:
            client = _CLIENTS.get(self.target)
            transport = client.get_transport() if client else None
            if fresh or transport is None or not transport.is_active():
                if client is not None:
                    client.close()
                _CLIENTS.pop(self.target, None)
                try:
                    client = _connect(self.target)
                except (OSError, paramiko.SSHException) as e:
                    if not self.is_running():
                        raise NodeGoneError(f"{self.name}: the VM is not running") from None
                    raise FlatbedError(f"{self.name}: cannot log in to {self.target.user}@{self.target.host}:"
                                       f"{self.target.port}: {e}") from None
                _CLIENTS[self.target] = client
            return client

    def host_argv(self, argv: list[str], *, tty: bool = False) -> list[str]:
        """OpenSSH's ``ssh`` with the run's key and the pinned host key, from the node's network.

        ``tty``: ``ssh -t`` (the node's own pty; hanging up ends the session). Without one, the
        command is wrapped by :data:`HANGUP_GUARD` so that it ends when the connection does
        (sshd leaves a pty-less command running when its client goes away).
        """
        if not self.is_running():
            raise NodeGoneError(f"{self.name}: the VM is not running")
        t = self.target
        enter = []
        if t.netns:
            if not hostnet.exists(t.netns):
                raise NodeGoneError(f"{self.name}: network namespace {t.netns} is gone")
            enter = ["nsenter", f"--net={hostnet.NETNS_DIR / t.netns}", "--"]
        remote = node_env(os.environ.get("TERM", "xterm")) + argv if tty else \
            node_env() + ["sh", "-c", HANGUP_GUARD, "sh", *argv]
        return enter + [
            "ssh", "-t" if tty else "-T", "-p", str(t.port), "-l", t.user, "-i", t.identity,
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT:g}",
            # Only the host key paramiko pinned at bring-up: a VM that comes back with another is refused.
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={t.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-F", "/dev/null",  # nothing from the user's ~/.ssh/config
            t.host, "--", shlex.join(remote),
        ]

    def _transport(self) -> paramiko.Transport:
        """The node's live SSH transport (connected, or reconnected once when it had died)."""
        transport = self._client().get_transport()
        if transport is None or not transport.is_active():
            transport = self._client(fresh=True).get_transport()
        return transport

    def open_tcp(self, address: str, port: int, timeout: float = 10) -> SocketLike:
        """A ``direct-tcpip`` channel of the node's SSH connection: the VM's sshd makes the connection."""
        transport = self._transport()
        try:
            return transport.open_channel("direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=timeout)
        except paramiko.ChannelException as e:  # the node's sshd answered: it could not connect
            raise channel_error(self.name, address, port, e) from None
        except paramiko.SSHException as e:  # paramiko's "Timeout opening channel.", or the transport died
            if not transport.is_active():
                gone = not self.is_running()
                raise (NodeGoneError if gone else FlatbedError)(
                    f"{self.name}: the SSH connection dropped while opening {address}:{port}"
                    + (" (the VM is not running)" if gone else "")) from None
            raise TimeoutError(f"{self.name}: no connection to {address}:{port} within {timeout:g} s ({e})") from None

    def _exec(self, argv: list[str], stdin: bytes | None, timeout: float) -> tuple[int, bytes, bytes]:
        command = shlex.join([*node_env(), *argv])
        # Reconnecting after a channel that did not open says whether the VM is gone.
        try:
            channel = self._client().get_transport().open_session(timeout=CHANNEL_TIMEOUT)
        except (paramiko.SSHException, EOFError, OSError):
            channel = self._client(fresh=True).get_transport().open_session(timeout=CHANNEL_TIMEOUT)  # reconnect once
        with channel:
            return self._run(channel, command, argv, stdin, timeout)

    def _run(self, channel: paramiko.Channel, command: str, argv: list[str], stdin: bytes | None,
             timeout: float) -> tuple[int, bytes, bytes]:
        channel.exec_command(command)
        # stdin goes in from a thread: a command that writes while we feed it must not deadlock.
        feeder = threading.Thread(target=_feed, args=(channel, stdin or b""), daemon=True)
        feeder.start()
        out, err = bytearray(), bytearray()

        def drain() -> None:
            while channel.recv_ready():
                out.extend(channel.recv(65536))
            while channel.recv_stderr_ready():
                err.extend(channel.recv_stderr(65536))

        deadline = time.monotonic() + timeout
        next_liveness = time.monotonic() + LIVENESS_INTERVAL
        while not channel.exit_status_ready():
            now = time.monotonic()
            if now > deadline:
                channel.close()
                raise FlatbedError(f"{self.name}: `{shlex.join(argv)}` did not finish within {timeout:g} s")
            if now > next_liveness:
                next_liveness = now + LIVENESS_INTERVAL
                if not self.is_running():
                    channel.close()
                    raise NodeGoneError(f"{self.name}: the VM stopped running during `{shlex.join(argv)}`")
            if channel.closed or not channel.get_transport().is_active():
                if channel.exit_status_ready():
                    break  # it finished between the two checks: sshd sends exit-status before close
                gone = not self.is_running()
                raise (NodeGoneError if gone else FlatbedError)(
                    f"{self.name}: the SSH connection dropped during `{shlex.join(argv)}`"
                    + (" (the VM is not running)" if gone else ""))
            drain()
            channel.status_event.wait(0.1)  # set the moment the command exits
        # The rest of the output, up to EOF (a leftover background child holding stdout is cut off).
        channel.settimeout(10)
        for receive, buf in ((channel.recv, out), (channel.recv_stderr, err)):
            try:
                while chunk := receive(65536):
                    buf.extend(chunk)
            except TimeoutError:
                pass
        feeder.join(timeout=5)
        return channel.recv_exit_status(), bytes(out), bytes(err)


def channel_error(node: str, address: str, port: int, e: paramiko.ChannelException) -> Exception:
    """What a refused ``direct-tcpip`` open means: paramiko keeps only the code, not sshd's reason."""
    where = f"{node}: connecting to {address}:{port}"
    if e.code == paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:  # not transient: sshd forbids forwarding
        return FlatbedError(f"{where}: the node's sshd refuses TCP forwarding (AllowTcpForwarding)")
    # OPEN_FAILED_CONNECT_FAILED: refused, unreachable or timed out on the node; retrying may help.
    return ConnectionError(f"{where}: the node's sshd could not connect ({e.text})")


def _feed(channel: paramiko.Channel, data: bytes) -> None:
    try:
        if data:
            channel.sendall(data)
        channel.shutdown_write()
    except (OSError, paramiko.SSHException):
        pass  # the command exited without reading all of its input
