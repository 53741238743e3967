"""What the container provider keeps in the state file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flatbed.state import NodeRecord, ProviderRecord


@dataclass
class NspawnNodeRecord(NodeRecord):
    netns: str
    cgroup: str | None = None      # stack nodes: their container's cgroup (below flatbed/)
    upper: str | None = None       # stack nodes: the overlay's upper dir
    launcher: int | None = None    # pid of the launcher shell that runs systemd-nspawn
    leader: int | None = None      # the container's PID 1, looked up again when it reboots


@dataclass
class NspawnRecord(ProviderRecord):
    switch: str | None = None
    nodes: dict[str, NspawnNodeRecord] = field(default_factory=dict)

    @classmethod
    def from_v1(cls, nodes: dict[str, Any], resources: dict[str, Any]) -> dict[str, Any]:
        return {"switch": resources.get("switch"), "nodes": nodes}
