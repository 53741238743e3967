"""A VM's NICs as the guest kernel sees them (to check them against the topology)."""

from __future__ import annotations

from flatbed.node import Node

# Devices backed by hardware (virtio here), as opposed to bridges, taps, lo: name and MAC.
PHYSICAL_NICS = "for d in /sys/class/net/*; do [ -e $d/device ] && echo ${d##*/} $(cat $d/address); done; true"


def physical_nics(node: Node) -> dict[str, str]:
    """The node's NICs (name -> MAC), bridges and other virtual devices left out."""
    out = node.check(PHYSICAL_NICS)
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
