"""The node API every layer above the providers uses: run a command, read and write files.

A provider implements ``_exec`` (file transfer is built on it, so that containers (nsenter) and
VMs (SSH) behave the same), ``host_argv`` (a host command line attached to the node, for
terminals) and ``open_tcp`` (a TCP stream from the node's network, for paramiko).

>>> ctl = testbed.node("controller-1")
>>> ctl.run("ip -4 -o addr show dev br100").stdout
"""

from __future__ import annotations

import io
import shlex
import tarfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flatbed.errors import FlatbedError

# Every command on a node runs with this environment only (not the caller's): the same on every provider.
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def node_env(term: str = "dumb") -> list[str]:
    """The ``env -i ...`` prefix that gives a command on a node its clean environment."""
    return ["env", "-i", f"PATH={NODE_PATH}", "HOME=/root", "LANG=C.UTF-8", f"TERM={term}"]


class CommandError(FlatbedError):
    """A command on a node exited non-zero where success was required."""


@dataclass(frozen=True)
class Result:
    """What a command on a node did: exit code and decoded output."""

    node: str
    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def check(self) -> Result:
        if self.rc != 0:
            detail = (self.stderr.strip() or self.stdout.strip()).splitlines()
            last = detail[-1] if detail else "no output"
            raise CommandError(f"{self.node}: `{self.command}` exited {self.rc}: {last}")
        return self


class SocketLike(Protocol):
    """What :meth:`Node.open_tcp` returns: a ``socket.socket`` or a ``paramiko.Channel``."""

    def send(self, data: bytes) -> int: ...
    def sendall(self, data: bytes) -> None: ...
    def recv(self, size: int) -> bytes: ...
    def settimeout(self, timeout: float | None) -> None: ...
    def shutdown(self, how: int) -> None: ...
    def close(self) -> None: ...


class Node(ABC):
    """One machine of the testbed, reachable whatever the provider."""

    def __init__(self, name: str, role: str):
        self.name = name
        self.role = role

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.role})>"

    @abstractmethod
    def _exec(self, argv: list[str], stdin: bytes | None, timeout: float) -> tuple[int, bytes, bytes]:
        """Run argv on the node; raise NodeGoneError when the node is not running."""

    # Whether ``host_argv(..., tty=True)`` relays the caller's terminal to one of its own (``ssh -t``),
    # switching the caller's to raw mode once connected (flatbed.terminal.run_in_pty waits for that).
    relays_terminal = False

    def host_argv(self, argv: list[str], *, tty: bool = False) -> list[str]:
        """The host command line that runs ``argv`` on the node with the caller's stdio attached.

        For what a captured ``run`` cannot do: interactive shells (``flatbed ssh NODE``) and
        following a file (``flatbed console``); the command ends when the caller's process does.
        ``tty`` asks for a terminal session; the caller provides the pty (containers) or the
        provider maps it to its own (``ssh -t`` on VMs). Providers without such access say so.
        """
        raise FlatbedError(f"{self.name}: provider {type(self).__name__} gives no interactive access")

    def open_tcp(self, address: str, port: int, timeout: float = 10) -> SocketLike:
        """A TCP stream to ``(address, port)`` as seen from this node, for paramiko's ``sock=``.

        Opened from the node's own network, whatever the provider: on containers and namespace
        hosts a socket created in the node's network namespace, on VMs a ``direct-tcpip``
        channel of the node's SSH connection. The caller closes it; the node runs nothing for it.
        ``timeout`` bounds the connect only; the stream then blocks (paramiko sets its own).

        Raises NodeGoneError when the node is not running, OSError when the connection cannot
        be made (worth retrying): on containers the socket's own (ConnectionRefusedError,
        TimeoutError, EHOSTUNREACH...), on VMs a ConnectionError (sshd's reason does not reach
        paramiko) or TimeoutError. FlatbedError (not OSError) when retrying cannot help: a VM
        whose sshd forbids TCP forwarding, a lost SSH connection to a VM that still runs.
        """
        raise FlatbedError(f"{self.name}: provider {type(self).__name__} gives no TCP access")

    def run(self, command: str | list[str], *, input: str | bytes | None = None, timeout: float = 120,
            check: bool = False) -> Result:
        """Run a shell command line (str) or an argv (list) as root on the node."""
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        text = command if isinstance(command, str) else shlex.join(command)
        data = input.encode() if isinstance(input, str) else input
        rc, out, err = self._exec(argv, data, timeout)
        result = Result(self.name, text, rc, out.decode(errors="replace"), err.decode(errors="replace"))
        return result.check() if check else result

    def check(self, command: str | list[str], **kwargs) -> str:
        """Run and return stdout, raising CommandError on a non-zero exit."""
        return self.run(command, check=True, **kwargs).stdout

    def read_file(self, path: str) -> str:
        return self.run(["cat", path], check=True).stdout

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path]).ok

    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        data = content.encode() if isinstance(content, str) else content
        quoted = shlex.quote(path)
        self.run(f"mkdir -p \"$(dirname {quoted})\" && cat > {quoted} && chmod {mode:o} {quoted}",
                 input=data, check=True)

    def put_tree(self, local: Path, remote: str, exclude: tuple[str, ...] = ("__pycache__",)) -> None:
        """Copy a local directory to ``remote`` (replacing it) in one tar stream."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(local, arcname=".",
                    filter=lambda ti: None if any(part in exclude for part in Path(ti.name).parts) else ti)
        quoted = shlex.quote(remote)
        self.run(f"rm -rf {quoted} && mkdir -p {quoted} && tar -x -C {quoted} --no-same-owner",
                 input=buf.getvalue(), check=True)
