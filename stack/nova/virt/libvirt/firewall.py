"""libvirt's half of the instance firewall (Essex ``nova/virt/libvirt/firewall.py``).

* ``NWFilterFirewall``: the static filters, defined once — ``nova-base`` (libvirt's
  no-mac-spoofing, no-ip-spoofing, no-arp-spoofing, allow-dhcp-server), ``nova-vpn``
  (allow-dhcp-server) and ``nova-allow-dhcp-server`` — and per NIC the filter
  ``nova-instance-<instance name>-<mac without colons>`` referencing nova-base, which the domain's
  ``<filterref>`` names with the parameters IP, DHCPSERVER and (allow_same_net_traffic) PROJNET,
  PROJMASK. A guest can then only send from its own MAC and IP and only take DHCP from the
  DHCP server; incoming IPv4 is left to iptables.
* ``IptablesFirewallDriver``: Essex's iptables driver plus the nwfilters.
"""

from __future__ import annotations

import ipaddress
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from typing import Any

import libvirt

from nova.virt import firewall
from nova.virt.libvirt.config import filter_container, nova_allow_dhcp_server_xml

LOG = logging.getLogger("nova.virt.libvirt.firewall")

BASE_FILTERS = ("no-mac-spoofing", "no-ip-spoofing", "no-arp-spoofing", "allow-dhcp-server")


def instance_filter_name(instance_name: str, mac: str) -> str:
    """``nova-instance-instance-00000009-fa163e2ce8ec``."""
    return f"nova-instance-{instance_name}-{mac.replace(':', '')}"


def filter_parameters(network: Mapping[str, Any], allow_same_net_traffic: bool) -> tuple[tuple[str, str], ...]:
    """The ``<parameter>``s of the domain's filterref (Essex's libvirt.xml.template order)."""
    params = [("IP", str(network["address"])), ("DHCPSERVER", str(network["dhcp_server"]))]
    if allow_same_net_traffic:
        net = ipaddress.ip_network(network["cidr"], strict=False)
        params += [("PROJNET", str(net.network_address)), ("PROJMASK", str(net.netmask))]
    return tuple(params)


class NWFilterFirewall:
    """Defines and undefines nova's nwfilters through a libvirt connection."""

    def __init__(self, get_connection: Callable[[], Any]) -> None:
        self._get_connection = get_connection
        self.static_filters_configured = False

    def _define_filter(self, xml: str) -> None:
        """Define or update a filter; an update must carry the existing filter's uuid.

        libvirt refuses to redefine a filter name without its uuid ("already exists with uuid"),
        which a restarted nova-compute would hit; Queens read the uuid back the same way. A
        filter whose XML fixes its uuid (Essex's nova-allow-dhcp-server) replaces a definition
        with another uuid (made before the uuid was fixed; nothing references that filter).
        """
        conn = self._get_connection()
        element = ET.fromstring(xml)
        name, wanted = element.get("name", ""), element.findtext("uuid")
        try:
            existing = conn.nwfilterLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_NWFILTER:
                raise
        else:
            if wanted is None:
                ET.SubElement(element, "uuid").text = existing.UUIDString()
                xml = ET.tostring(element, encoding="unicode")
            elif wanted != existing.UUIDString():
                existing.undefine()
        conn.nwfilterDefineXML(xml)

    def _ensure_static_filters(self) -> None:
        if self.static_filters_configured:
            return
        conn = self._get_connection()
        missing = [name for name in BASE_FILTERS if name not in conn.listNWFilters()]
        if missing:
            raise RuntimeError(f"libvirt lacks the built-in nwfilters {', '.join(missing)} that nova-base needs")
        self._define_filter(filter_container("nova-base", list(BASE_FILTERS)))
        self._define_filter(filter_container("nova-vpn", ["allow-dhcp-server"]))
        self._define_filter(nova_allow_dhcp_server_xml())
        self.static_filters_configured = True

    def setup_basic_filtering(self, instance: Mapping[str, Any], network_info: firewall.NetworkInfo) -> None:
        """Static filters, then one filter per NIC referencing nova-base."""
        self._ensure_static_filters()
        for network in network_info:
            name = instance_filter_name(instance["name"], network["mac"])
            self._define_filter(filter_container(name, ["nova-base"]))

    def unfilter_instance(self, instance: Mapping[str, Any], network_info: firewall.NetworkInfo) -> None:
        """Undefine the instance's filters (after its domain is gone: libvirt refuses while in use)."""
        conn = self._get_connection()
        for network in network_info:
            name = instance_filter_name(instance["name"], network["mac"])
            try:
                conn.nwfilterLookupByName(name).undefine()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_NWFILTER:
                    raise
                LOG.debug("The nwfilter %s is already gone", name)


class IptablesFirewallDriver(firewall.IptablesFirewallDriver):
    """Essex's libvirt firewall driver: iptables per instance plus the nwfilters."""

    def __init__(self, get_connection: Callable[[], Any], allow_same_net_traffic: bool = True,
                 iptables: Any = None) -> None:
        super().__init__(allow_same_net_traffic=allow_same_net_traffic, iptables=iptables)
        self.nwfilter = NWFilterFirewall(get_connection)

    def setup_basic_filtering(self, instance: Mapping[str, Any], network_info: firewall.NetworkInfo) -> None:
        self.nwfilter.setup_basic_filtering(instance, network_info)
        super().setup_basic_filtering(instance, network_info)

    def unfilter_instance(self, instance: Mapping[str, Any], network_info: firewall.NetworkInfo | None = None) -> None:
        infos = network_info if network_info is not None else self.network_infos.get(int(instance["id"]), [])
        super().unfilter_instance(instance, infos)
        self.nwfilter.unfilter_instance(instance, infos)
