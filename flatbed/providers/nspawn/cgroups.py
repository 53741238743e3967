"""The containers' cgroups, ``flatbed/<run>-<node>`` in each hierarchy the host has."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from flatbed import procs
from flatbed.providers.nspawn.naming import CGROUP_PARENT

CGROUP_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"))
_TAGGED = re.compile(r"^(fb[0-9a-f]{6})-")


def roots() -> tuple[Path, ...]:
    """The hierarchies a container's processes are put in (hybrid hosts have two)."""
    return tuple(r for r in CGROUP_ROOTS if r.is_dir()) or (Path("/sys/fs/cgroup"),)


def tagged() -> dict[str, list[Path]]:
    """Run id -> its cgroups below ``flatbed/`` in every hierarchy."""
    found: dict[str, list[Path]] = {}
    for root in roots():
        parent = root / CGROUP_PARENT
        if parent.is_dir():
            for cg in sorted(p for p in parent.iterdir() if p.is_dir()):
                match = _TAGGED.match(cg.name)
                if match:
                    found.setdefault(match.group(1), []).append(cg)
    return found


def pids(cg: Path) -> list[int]:
    """Processes in ``cg`` and below."""
    found = []
    for sub in [cg, *cg.rglob("*")]:
        try:
            found += [int(p) for p in (sub / "cgroup.procs").read_text().split()]
        except OSError:
            continue
    return found


def kill(cg: Path) -> None:
    """Kill every process below ``cg`` and remove the cgroups bottom-up."""
    for _ in range(50):
        members = pids(cg)
        if not members:
            break
        for pid in members:
            procs.send(pid, signal.SIGKILL)
        time.sleep(0.1)  # SIGKILL delivery is asynchronous; poll briefly until the cgroup empties
    for sub in sorted([cg, *[p for p in cg.rglob("*") if p.is_dir()]], key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass


def remove_parent() -> None:
    """``flatbed/`` itself, once no testbed has a cgroup in it."""
    for root in roots():
        try:
            (root / CGROUP_PARENT).rmdir()
        except OSError:
            pass
