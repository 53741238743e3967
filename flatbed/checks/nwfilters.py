"""libvirt's network filters of a compute (document §2.5: ``virsh nwfilter-list``, ``nwfilter-dumpxml``).

Essex's NWFilterFirewall (nova/virt/libvirt/firewall.py, 2012.1) defines three static filters and
one per guest NIC; its text is the expectation here (:data:`ESSEX_STATIC`, :func:`essex_instance`),
never the stack's. A filter is compared as :class:`Filter`: its chain, its references in order,
its rules (action, direction, priority, protocol and match attributes) and, where Essex fixes one,
its uuid. libvirt adds a uuid to every filter and a chain's default priority to the filter
element; neither is Essex's choice, so both are left out unless Essex gave them.

The parameters (``$IP``, ``$DHCPSERVER``, ``$PROJNET``, ``$PROJMASK``) are not in the filters: the
domain's ``<filterref>`` carries them, and libvirt's *binding* of the tap (``virsh
nwfilter-binding-dumpxml vnetN``) shows what the running guest's filter was instantiated with,
``$MAC`` added by libvirt (:class:`Binding`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flatbed.node import Node

# libvirt gives a filter element of these chains this priority when the definition has none.
LIBVIRT_CHAIN_PRIORITY = {"root": None, "mac": "-800", "stp": "-810", "vlan": "-750", "ipv4": "-700",
                          "ipv6": "-600", "arp": "-500", "rarp": "-400"}


@dataclass(frozen=True)
class Filter:
    """One nwfilter as far as its definition matters."""

    name: str
    chain: str
    refs: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()          # "accept out 100 udp dstipaddr=… srcipaddr=…", attributes sorted
    uuid: str | None = None              # only where the definition fixes it


def parse_filter(xml: str, keep_uuid: bool = False) -> Filter:
    """A ``<filter>`` definition or ``nwfilter-dumpxml`` output; the uuid only with ``keep_uuid``."""
    root = ET.fromstring(xml)
    chain = root.get("chain", "root")
    priority = root.get("priority")
    rules = []
    for rule in root.findall("rule"):
        for match in rule:
            attrs = " ".join(f"{k}={v}" for k, v in sorted(match.attrib.items()))
            rules.append(f"{rule.get('action')} {rule.get('direction')} {rule.get('priority', '500')} "
                         f"{match.tag} {attrs}".strip())
    if priority is not None and priority != LIBVIRT_CHAIN_PRIORITY.get(chain.split("-")[0]):
        rules.insert(0, f"filter priority {priority}")
    return Filter(name=root.get("name", ""), chain=chain,
                  refs=tuple(ref.get("filter", "") for ref in root.findall("filterref")), rules=tuple(rules),
                  uuid=root.findtext("uuid") if keep_uuid else None)


# Essex 2012.1, NWFilterFirewall._ensure_static_filters and nova_dhcp_filter (the only fixed uuid).
ESSEX_STATIC = {
    "nova-base": ("<filter name='nova-base' chain='root'><filterref filter='no-mac-spoofing'/>"
                  "<filterref filter='no-ip-spoofing'/><filterref filter='no-arp-spoofing'/>"
                  "<filterref filter='allow-dhcp-server'/></filter>", False),
    "nova-vpn": ("<filter name='nova-vpn' chain='root'><filterref filter='allow-dhcp-server'/></filter>", False),
    "nova-allow-dhcp-server": (
        "<filter name='nova-allow-dhcp-server' chain='ipv4'><uuid>891e4787-e5c0-d59b-cbd6-41bc3c6b36fc</uuid>"
        "<rule action='accept' direction='out' priority='100'><udp srcipaddr='0.0.0.0' dstipaddr='255.255.255.255' "
        "srcportstart='68' dstportstart='67'/></rule>"
        "<rule action='accept' direction='in' priority='100'><udp srcipaddr='$DHCPSERVER' srcportstart='67' "
        "dstportstart='68'/></rule></filter>", True),
}


def essex_static() -> dict[str, Filter]:
    """The static filters as Essex defines them, by name (uuid kept where Essex fixes it)."""
    return {name: parse_filter(xml, keep_uuid) for name, (xml, keep_uuid) in ESSEX_STATIC.items()}


def essex_instance(filter_name: str) -> Filter:
    """A guest NIC's filter (setup_basic_filtering: the container of ``nova-base``)."""
    return Filter(name=filter_name, chain="root", refs=("nova-base",))


def read_filter(node: Node, name: str, keep_uuid: bool = False) -> Filter:
    return parse_filter(node.check(["virsh", "nwfilter-dumpxml", name]), keep_uuid)


def filter_problems(expected: Filter, actual: Filter) -> list[str]:
    """One line per field of ``actual`` that is not ``expected``'s."""
    return [f"{expected.name}: {what} {got!r}, Essex's {want!r}"
            for what, want, got in (("name", expected.name, actual.name), ("chain", expected.chain, actual.chain),
                                    ("references", expected.refs, actual.refs), ("rules", expected.rules, actual.rules),
                                    ("uuid", expected.uuid, actual.uuid))
            if want != got]


@dataclass(frozen=True)
class Binding:
    """libvirt's instantiation of a filter on a tap (``virsh nwfilter-binding-dumpxml <tap>``)."""

    owner: str                 # the domain's name
    owner_uuid: str
    portdev: str
    mac: str
    filter: str
    parameters: dict[str, str] = field(default_factory=dict)


def parse_binding(xml: str) -> Binding:
    root = ET.fromstring(xml)
    ref = root.find("filterref")
    return Binding(owner=root.findtext("owner/name", ""), owner_uuid=root.findtext("owner/uuid", ""),
                   portdev=root.find("portdev").get("name", "") if root.find("portdev") is not None else "",
                   mac=root.find("mac").get("address", "") if root.find("mac") is not None else "",
                   filter=ref.get("filter", "") if ref is not None else "",
                   parameters={p.get("name", ""): p.get("value", "") for p in ref.findall("parameter")}
                   if ref is not None else {})


def read_binding(node: Node, tap: str) -> Binding:
    return parse_binding(node.check(["virsh", "nwfilter-binding-dumpxml", tap]))
