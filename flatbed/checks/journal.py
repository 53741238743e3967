"""A unit's journal on a node, read from a mark on, and a waiter on what it logs after the mark.

With ``verbose`` (a topology's ``[nova]`` flag) Essex's services log every periodic tick
("Running periodic task ComputeManager._sync_power_states"), so a test waits for the ticks it
needs instead of sleeping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flatbed.node import Node
from flatbed.waiters import wait_until


@dataclass(frozen=True)
class Mark:
    """A point in one unit's journal on one node."""

    node: Node
    unit: str
    cursor: str


def mark(node: Node, unit: str) -> Mark:
    """The journal's current end for ``unit`` on ``node``."""
    out = node.check(["journalctl", "-u", unit, "-n", "0", "--show-cursor", "--no-pager"])
    found = re.search(r"^-- cursor: (\S+)", out, re.M)
    if found is None:  # nothing logged yet: everything from now on is after it
        found = re.search(r"^-- cursor: (\S+)", node.check(["journalctl", "-n", "0", "--show-cursor", "--no-pager"]),
                          re.M)
    assert found, f"{node.name}: journalctl printed no cursor"
    return Mark(node, unit, found.group(1))


def since(at: Mark) -> list[str]:
    """The unit's messages logged after ``at``."""
    return at.node.check(["journalctl", "-u", at.unit, f"--after-cursor={at.cursor}", "-o", "cat",
                          "--no-pager"]).splitlines()


def wait_for(at: Mark, pattern: str, *, timeout: float, count: int = 1, what: str) -> list[str]:
    """Until ``count`` messages matching ``pattern`` were logged after ``at``; those messages."""
    regex = re.compile(pattern)

    def logged() -> list[str] | None:
        lines = [line for line in since(at) if regex.search(line)]
        return lines if len(lines) >= count else None

    return wait_until(logged, timeout=timeout, interval=0.5, what=f"{at.node.name}: {what} ({at.unit}'s journal)",
                      describe=lambda: "its journal since: " + " | ".join(since(at)[-8:]))
