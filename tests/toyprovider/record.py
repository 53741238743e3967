"""What the toy provider keeps in the state file."""

from __future__ import annotations

from dataclasses import dataclass, field

from flatbed.state import NodeRecord, ProviderRecord


@dataclass
class ToyNodeRecord(NodeRecord):
    machine: str  # its directory


@dataclass
class ToyRecord(ProviderRecord):
    nodes: dict[str, ToyNodeRecord] = field(default_factory=dict)
