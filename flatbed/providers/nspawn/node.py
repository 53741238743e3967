"""A container node: commands enter it with nsenter through the container's PID 1."""

from __future__ import annotations

import shlex
from pathlib import Path

from flatbed.errors import NodeGoneError
from flatbed.localnode import LocalNode


class NspawnNode(LocalNode):
    """A container (``leader`` its PID 1), or the outside host's plain namespace (``leader`` None).

    ``open_tcp`` connects from ``netns``, which the container shares.
    """

    def __init__(self, name: str, role: str, netns: str, leader: int | None):
        super().__init__(name, role, netns)
        self.leader = leader

    def ensure_running(self) -> None:
        if self.leader is None:
            super().ensure_running()
        elif not Path(f"/proc/{self.leader}").exists():
            raise NodeGoneError(f"{self.name}: the container is not running (pid {self.leader} is gone)")

    def _enter(self) -> list[str]:
        if self.leader is None:
            return super()._enter()
        self.ensure_running()
        return ["nsenter", "-t", str(self.leader), "-a", "--"]

    def host_argv(self, argv: list[str], *, tty: bool = False) -> list[str]:
        if not tty or self.leader is None:
            return super().host_argv(argv, tty=tty)
        # A terminal of the container's own devpts (`tty` names it, job control works): script(1),
        # from bsdutils, in every Debian root. -e: its exit status is the command's.
        return super().host_argv(["script", "-qefc", shlex.join(argv), "/dev/null"], tty=True)
