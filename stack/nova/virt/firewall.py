"""Essex's IptablesFirewallDriver (``nova/virt/firewall.py``): security groups in iptables.

Through the binary's IptablesManager (``linux_net.iptables_manager``; chains of nova-compute):

* ``sg-fallback`` holds a single ``-j DROP``; ``provider`` holds the provider firewall's DROP
  rules (none here, as in a default Essex install) and is created on the first basic filtering.
* Per instance a chain ``inst-<decimal DB id>`` (``nova-compute-inst-9``; the instance *name* is
  ``instance-%08x``, hex), in Essex's order: INVALID DROP, ESTABLISHED/RELATED ACCEPT, ``-j
  $provider``, DHCP from the network's DHCP server, ``-s <cidr>`` when allow_same_net_traffic,
  the security-group rules, ``-j $sg-fallback``.
* Dispatch in ``local`` (jumped to from the shared nova-filter-top at the top of FORWARD and
  OUTPUT): ``-d <fixed ip> -j $inst-<id>``.

Essex read instances, networks and rules from the database; nova-compute here has none, so the
caller hands them in: ``network_info`` is a list of the network dicts nova-network returns
(``cidr``, ``dhcp_server``, ``address``, ...), ``rules`` the instance's security-group rules as
dicts (``protocol``, ``from_port``, ``to_port``, ``cidr``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nova.network import linux_net

LOG = logging.getLogger("nova.virt.firewall")

Rule = Mapping[str, Any]
NetworkInfo = Sequence[Mapping[str, Any]]


def instance_chain_name(instance_id: int) -> str:
    """``inst-<id>`` with the decimal DB id (instance-0000000a has chain inst-10)."""
    return f"inst-{int(instance_id)}"


def _icmp_args(rule: Rule) -> list[str]:
    icmp_type, icmp_code = int(rule["from_port"]), int(rule["to_port"])
    if icmp_type == -1:
        return []
    arg = str(icmp_type) if icmp_code == -1 else f"{icmp_type}/{icmp_code}"
    return ["-m", "icmp", "--icmp-type", arg]


def _tcp_udp_args(rule: Rule) -> list[str]:
    if int(rule["from_port"]) == int(rule["to_port"]):
        return ["--dport", str(rule["from_port"])]
    return ["-m", "multiport", "--dports", f"{rule['from_port']}:{rule['to_port']}"]


def security_group_rule(rule: Rule) -> str:
    """One security-group rule in nova's text: ``-j ACCEPT -p tcp --dport 22 -s 0.0.0.0/0``."""
    args = ["-j ACCEPT"]
    protocol = rule.get("protocol")
    if protocol:
        args += ["-p", protocol]
    if protocol in ("tcp", "udp"):
        args += _tcp_udp_args(rule)
    elif protocol == "icmp":
        args += _icmp_args(rule)
    args += ["-s", rule["cidr"]]
    return " ".join(args)


def instance_rules(network_info: NetworkInfo, rules: Iterable[Rule], allow_same_net_traffic: bool) -> list[str]:
    """The rules of an instance's chain, in Essex's order (IPv4; use_ipv6 is off)."""
    chain = ["-m state --state INVALID -j DROP",
             "-m state --state ESTABLISHED,RELATED -j ACCEPT",
             "-j $provider"]
    chain += [f"-s {net['dhcp_server']} -p udp --sport 67 --dport 68 -j ACCEPT" for net in network_info]
    if allow_same_net_traffic:
        chain += [f"-s {net['cidr']} -j ACCEPT" for net in network_info]
    for rule in rules:
        if rule.get("cidr"):
            chain.append(security_group_rule(rule))
        # Essex also granted other groups' members (rule.grantee_group); the nova CLI here only
        # makes CIDR rules.
    chain.append("-j $sg-fallback")
    return chain


def in_group(instance: Mapping[str, Any], group: str) -> bool:
    """Whether ``instance`` (a dict with ``security_groups``, default ``["default"]``) is in ``group``."""
    return group in instance.get("security_groups", ["default"])


class IptablesFirewallDriver:
    """Instance firewalls as nova-compute's iptables chains."""

    def __init__(self, allow_same_net_traffic: bool = True, iptables: Any = None) -> None:
        self.iptables = iptables if iptables is not None else linux_net.iptables_manager
        self.allow_same_net_traffic = allow_same_net_traffic
        self.instances: dict[int, Mapping[str, Any]] = {}
        self.network_infos: dict[int, NetworkInfo] = {}
        self.rules: dict[int, list[Rule]] = {}
        self.basicly_filtered = False
        self.iptables.ipv4["filter"].add_chain("sg-fallback")
        self.iptables.ipv4["filter"].add_rule("sg-fallback", "-j DROP")

    # --- the driver interface ------------------------------------------------------------------

    def setup_basic_filtering(self, instance: Mapping[str, Any], network_info: NetworkInfo) -> None:
        """Before the first instance: the provider chain (Essex's libvirt driver did it here)."""
        if not self.basicly_filtered:
            self.refresh_provider_fw_rules()
            self.basicly_filtered = True

    def prepare_instance_filter(self, instance: Mapping[str, Any], network_info: NetworkInfo,
                                rules: Iterable[Rule] = ()) -> None:
        """Create the instance's chain and dispatch, refresh the provider chain, then apply (Essex)."""
        instance_id = int(instance["id"])
        self.instances[instance_id] = instance
        self.network_infos[instance_id] = list(network_info)
        self.rules[instance_id] = list(rules)
        self.add_filters_for_instance(instance_id)
        self.refresh_provider_fw_rules()
        self.iptables.apply()

    def apply_instance_filter(self, instance: Mapping[str, Any], network_info: NetworkInfo) -> None:
        """No-op: everything happened in prepare_instance_filter (as Essex)."""

    def unfilter_instance(self, instance: Mapping[str, Any], network_info: NetworkInfo | None = None) -> None:
        instance_id = int(instance["id"])
        if self.instances.pop(instance_id, None) is None:
            LOG.info("Attempted to unfilter instance %s which is not filtered", instance_id)
            return
        self.network_infos.pop(instance_id, None)
        self.rules.pop(instance_id, None)
        self.remove_filters_for_instance(instance_id)
        self.iptables.apply()

    def instance_filtered(self, instance_id: int) -> bool:
        return int(instance_id) in self.instances

    def refresh_security_group_rules(self, group: str, rules: Iterable[Rule]) -> list[int]:
        """New rules of ``group``: rebuild the chain of every instance here; their ids.

        Essex rebuilt every instance's chain, in the group or not (each from its own rules); the
        members of ``group`` take ``rules``.
        """
        rules = list(rules)
        for instance_id, instance in self.instances.items():
            if in_group(instance, group):
                self.rules[instance_id] = rules
            self.remove_filters_for_instance(instance_id)
            self.add_filters_for_instance(instance_id)
        self.iptables.apply()
        return list(self.instances)

    def refresh_provider_fw_rules(self) -> None:
        """Empty and rebuild the provider chain, and apply; Essex's provider_fw_rules table is empty
        by default, and so is the chain here."""
        table = self.iptables.ipv4["filter"]
        table.empty_chain("provider")
        table.add_chain("provider")
        self.iptables.apply()

    # --- chains --------------------------------------------------------------------------------

    def add_filters_for_instance(self, instance_id: int) -> None:
        chain = instance_chain_name(instance_id)
        table = self.iptables.ipv4["filter"]
        table.add_chain(chain)
        network_info = self.network_infos[instance_id]
        for net in network_info:
            table.add_rule("local", f"-d {net['address']} -j ${chain}")
        for rule in instance_rules(network_info, self.rules[instance_id], self.allow_same_net_traffic):
            table.add_rule(chain, rule)

    def remove_filters_for_instance(self, instance_id: int) -> None:
        """Drop the chain; the removal cascades to its dispatch rule in ``local``."""
        self.iptables.ipv4["filter"].remove_chain(instance_chain_name(instance_id))
