"""Host processes the providers start and stop (launchers, libvirtd, vagrant)."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int | None) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent does not count)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def send(pid: int, sig: int) -> None:
    """Signal ``pid``; one that is already gone is fine."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def children(pid: int) -> list[int]:
    """The children of ``pid``, whichever of its threads started them; [] once it is gone."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found
