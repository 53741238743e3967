"""Flavors (Essex: instance types) as Essex shipped them, with the memory overridable per topology.

Essex created five instance types in its first migration; ``nova flavor-list`` showed them by
flavorid. ``--flavor_memory_mb`` (flatbed) replaces every flavor's memory so that many guests fit
a small host; 0 keeps Essex's values (m1.tiny = 512 MB).

>>> find("1", 0).name, find("m1.tiny", 256).memory_mb, find("6", 0)
('m1.tiny', 256, None)
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class InstanceType:
    flavorid: str
    name: str
    memory_mb: int
    vcpus: int
    local_gb: int
    swap: int = 0
    rxtx_factor: float = 1.0


# flavorid, name, MB, vcpus, GB of local disk (Essex's migration 001/002 values).
ESSEX_FLAVORS: tuple[InstanceType, ...] = (
    InstanceType("1", "m1.tiny", 512, 1, 0),
    InstanceType("2", "m1.small", 2048, 1, 20),
    InstanceType("3", "m1.medium", 4096, 2, 40),
    InstanceType("4", "m1.large", 8192, 4, 80),
    InstanceType("5", "m1.xlarge", 16384, 8, 160),
)


def all_types(memory_mb_override: int = 0) -> list[InstanceType]:
    """Every flavor in flavorid order, memory replaced when ``memory_mb_override`` is set."""
    if memory_mb_override < 0:
        raise ValueError(f"--flavor_memory_mb must be >= 0, not {memory_mb_override}")
    return [replace(t, memory_mb=memory_mb_override) if memory_mb_override else t for t in ESSEX_FLAVORS]


def find(ref: str, memory_mb_override: int = 0) -> InstanceType | None:
    """By flavorid first, then by name, as novaclient's find_resource; None when unknown."""
    types = all_types(memory_mb_override)
    return next((t for t in types if t.flavorid == ref), None) or next((t for t in types if t.name == ref), None)
