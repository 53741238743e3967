"""A guest's libvirt domain as its compute describes it: the NICs of its domain XML.

The one reader of a domain's interfaces (``virsh dumpxml`` of a running domain, or the
``libvirt.xml`` nova-compute wrote into the instance directory): the MAC, the bridge, the tap
libvirt made, and the nwfilter reference with its parameters. The parser is pure and unit-tested.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flatbed.node import Node


@dataclass(frozen=True)
class DomainNic:
    """One ``<interface>`` of a domain."""

    mac: str | None
    bridge: str | None
    tap: str | None                # <target dev=…>: libvirt's vnetN, only while the domain runs
    filter: str | None = None      # <filterref filter=…>
    filter_parameters: dict[str, str] = field(default_factory=dict)


def parse_nics(xml: str) -> list[DomainNic]:
    """The ``<interface>`` elements of a domain XML, in order."""
    nics = []
    for nic in ET.fromstring(xml).findall("devices/interface"):
        mac, source, target, ref = (nic.find(tag) for tag in ("mac", "source", "target", "filterref"))
        nics.append(DomainNic(
            mac=mac.get("address") if mac is not None else None,
            bridge=source.get("bridge") if source is not None else None,
            tap=target.get("dev") if target is not None else None,
            filter=ref.get("filter") if ref is not None else None,
            filter_parameters={p.get("name"): p.get("value") for p in ref.findall("parameter")}
            if ref is not None else {}))
    return nics


def nics(node: Node, instance_name: str) -> list[DomainNic]:
    """The NICs of the running domain ``instance_name`` on ``node`` (``virsh dumpxml``)."""
    return parse_nics(node.check(["virsh", "dumpxml", instance_name]))
