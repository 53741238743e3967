"""Nodes whose commands are processes of this host: this host itself, a plain network namespace
(the outside host), or a container entered with nsenter (:mod:`flatbed.providers.nspawn.node`).

Every provider that has such a node uses this class; only how a command enters the node differs.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from flatbed import hostnet
from flatbed.errors import FlatbedError, NodeGoneError
from flatbed.node import Node, SocketLike, node_env


class LocalNode(Node):
    """A node reached by running host commands, in network namespace ``netns`` (None: the host's)."""

    def __init__(self, name: str, role: str, netns: str | None = None):
        super().__init__(name, role)
        self.netns = netns

    def ensure_running(self) -> None:
        """Raise NodeGoneError when the node is gone (here: its namespace is)."""
        if self.netns is not None and not hostnet.exists(self.netns):
            raise NodeGoneError(f"{self.name}: network namespace {self.netns} is gone")

    def _enter(self) -> list[str]:
        """The host command prefix that puts a command inside the node (before its environment)."""
        self.ensure_running()
        return ["ip", "netns", "exec", self.netns] if self.netns is not None else []

    def host_argv(self, argv: list[str], *, tty: bool = False) -> list[str]:
        # A namespace host shares this host's /dev: the caller's pty serves as the terminal.
        return self._enter() + node_env(os.environ.get("TERM", "xterm") if tty else "dumb") + argv

    def _exec(self, argv: list[str], stdin: bytes | None, timeout: float) -> tuple[int, bytes, bytes]:
        command = self._enter() + node_env() + argv
        try:
            proc = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FlatbedError(f"{self.name}: `{shlex.join(argv)}` did not finish within {timeout:g} s") from None
        return proc.returncode, proc.stdout, proc.stderr

    def open_tcp(self, address: str, port: int, timeout: float = 10) -> SocketLike:
        self.ensure_running()
        try:
            return hostnet.connect(self.netns, address, port, timeout)
        except FileNotFoundError:  # the namespace went away in between
            raise NodeGoneError(f"{self.name}: network namespace {self.netns} is gone") from None
