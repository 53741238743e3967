"""FlatDHCPManager: fixed IP allocation and the DHCP side of nova-network (Essex 2012.1).

Single-host FlatDHCP only: every network lives on one network host (the controller), whose
br100 carries the gateway address and whose dnsmasq hands out the fixed IPs statically from the
hostsfile. The DHCP server learns leases back through ``nova-dhcpbridge`` → ``lease_fixed_ip`` /
``release_fixed_ip``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any, TypeVar

from nova.db import Database, DBError, DuplicateMac, FixedIp, Network
from nova.flags import Flags
from nova.manager import Manager, periodic_task
from nova.network import linux_net

LOG = logging.getLogger("nova.network.manager")

F = TypeVar("F", bound=Callable[..., Any])


class NetworkError(Exception):
    """A network request that cannot be honoured; the message says why."""


def generate_mac_address(rng: random.Random | None = None) -> str:
    """``fa:16:3e:`` + random ``[00-7f]:[00-ff]:[00-ff]`` (Essex utils.generate_mac_address).

    fa: is a locally administered unicast prefix; fe: clashed with libvirt's tap MACs.
    """
    pick = rng or random
    octets = [0xFA, 0x16, 0x3E, pick.randint(0x00, 0x7F), pick.randint(0x00, 0xFF), pick.randint(0x00, 0xFF)]
    return ":".join(f"{octet:02x}" for octet in octets)


def synchronized(method: F) -> F:
    """Run the method under the manager's lock (Essex: utils.synchronized on the network host)."""
    @functools.wraps(method)
    def locked(self: FlatDHCPManager, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)
    return locked  # type: ignore[return-value]


class FlatDHCPManager(Manager):
    """Flat networking with dnsmasq on the network host (nova.network.manager.FlatDHCPManager)."""

    SHOULD_CREATE_BRIDGE = True
    # network address + gateway at the bottom, broadcast at the top (Essex _create_fixed_ips).
    BOTTOM_RESERVED_IPS = 2
    TOP_RESERVED_IPS = 1

    def __init__(self, flags: Flags, db: Database, driver: ModuleType = linux_net) -> None:
        self.flags = flags
        self.db = db
        self.driver = driver
        self.host = flags.host
        self.lock = threading.RLock()

    # --- start-up -----------------------------------------------------------------------------

    @synchronized
    def init_host(self) -> None:
        """Set up this host: NAT/metadata plumbing, then every network bound to it."""
        # Essex LinuxNetL3.initialize(): linux_net.init_host, ensure_metadata_ip, metadata_forward.
        self.driver.init_host(self.flags)
        self.driver.ensure_metadata_ip()
        self.driver.metadata_forward(self.flags)
        for network in self.db.network_get_all_by_host(self.host):
            LOG.info("Setting up network %s (%s on %s)", network.label, network.cidr, network.bridge)
            self._setup_network_on_host(network)

    def _setup_network_on_host(self, network: Network) -> None:
        """Bridge, gateway address and dnsmasq for one network (Essex FlatDHCPManager)."""
        # linux_net.plug → LinuxBridgeInterfaceDriver: flat_interface wins over the row's interface.
        interface = self.flags.flat_interface or network.bridge_interface
        self.driver.plug(network.bridge, interface, gateway=True)
        self.driver.initialize_gateway_device(network.bridge, network)
        self._update_dhcp(network)

    def _update_dhcp(self, network: Network) -> None:
        self.driver.update_dhcp(self.flags, network, self.db.network_get_associated_fixed_ips(network.id))

    # --- networks (nova-manage) ---------------------------------------------------------------

    def create_network(self, label: str, cidr: str, bridge: str, bridge_interface: str | None,
                       host: str | None, gateway: str | None = None,
                       network_size: int | None = None) -> Network:
        """Essex ``create_networks`` + ``_create_fixed_ips`` for one IPv4 network.

        As Essex, the network is the first subnet of ``cidr`` holding ``network_size`` addresses,
        with gateway ``[1]`` (unless given), ``dhcp_start`` ``[2]`` and one fixed_ips row per
        address, the bottom two and the broadcast reserved.

        Unlike Essex, the network is bound to ``host`` now: Essex bound it at the first allocation,
        but the document's controller already shows br100 and dnsmasq before any guest exists.
        """
        try:
            block = ipaddress.IPv4Network(cidr, strict=False)
        except ValueError as exc:
            raise NetworkError(f"invalid IPv4 range {cidr!r}: {exc}") from None
        size = network_size or self.flags.network_size
        if size < 4:
            raise NetworkError(f"network_size {size} leaves no address for a guest")
        prefixlen = max(block.prefixlen, 32 - math.ceil(math.log2(size)))
        subnet = next(block.subnets(new_prefix=prefixlen))
        if subnet.num_addresses < 4:
            raise NetworkError(f"network {subnet} is too small for network, gateway, broadcast and a guest")
        for other in self.db.network_get_all():
            if subnet.overlaps(ipaddress.IPv4Network(other.cidr)):
                raise NetworkError(f"requested cidr ({subnet}) conflicts with existing network "
                                   f"{other.label} ({other.cidr})")
        total = subnet.num_addresses
        fixed_ips = [(str(subnet[index]),
                      index < self.BOTTOM_RESERVED_IPS or total - index <= self.TOP_RESERVED_IPS)
                     for index in range(total)]
        try:
            return self.db.network_create(
                label=label, cidr=str(subnet), bridge=bridge, bridge_interface=bridge_interface,
                gateway=gateway or str(subnet[1]), broadcast=str(subnet.broadcast_address),
                netmask=str(subnet.netmask), dhcp_start=str(subnet[2]), host=host, fixed_ips=fixed_ips)
        except DBError as exc:
            raise NetworkError(str(exc)) from None

    def _network_for_allocation(self) -> Network:
        """The first network of this host; an unbound one is bound here, as Essex's set_network_host."""
        for network in self.db.network_get_all():
            if network.host == self.host:
                return network
            if network.host is None:
                self.db.network_set_host(network.id, self.host)
                return self.db.network_get(network.id)
        raise NetworkError(f"no network is bound to host {self.host}; create one with "
                           f"`nova-manage network create ... --host={self.host}`")

    # --- allocation (RPC from compute) --------------------------------------------------------

    def _add_virtual_interface(self, instance_id: int, network_id: int) -> tuple[int, str]:
        attempts = self.flags.create_unique_mac_address_attempts
        for _ in range(attempts):
            mac = generate_mac_address()
            try:
                return self.db.virtual_interface_create(instance_id, network_id, mac), mac
            except DuplicateMac:
                continue
        self.db.virtual_interface_delete_by_instance(instance_id)
        raise NetworkError(f"could not create a unique MAC address in {attempts} attempts")

    @synchronized
    def allocate_for_instance(self, instance_id: int, hostname: str) -> dict[str, Any]:
        """Give the instance a MAC and the first free fixed IP, and tell dnsmasq (HUP)."""
        if any(fixed_ip.allocated for fixed_ip in self.db.fixed_ip_get_by_instance(instance_id)):
            raise NetworkError(f"instance {instance_id} already has a fixed IP")
        self.db.instance_ensure(instance_id, hostname)
        network = self._network_for_allocation()
        vif_id, mac = self._add_virtual_interface(instance_id, network.id)
        try:
            address = self.db.fixed_ip_associate_pool(network.id, instance_id)
        except DBError as exc:
            self.db.virtual_interface_delete_by_instance(instance_id)
            raise NetworkError(str(exc)) from None
        self.db.fixed_ip_update(address, allocated=True, virtual_interface_id=vif_id)
        LOG.info("Allocated %s (%s) to instance %s (%s)", address, mac, instance_id, hostname)
        # Essex ran the whole host setup on each allocation; it also covers networks created
        # after start-up.
        self._setup_network_on_host(network)
        return {**self._network_info(network), "instance_id": instance_id, "hostname": hostname,
                "address": address, "mac": mac}

    @staticmethod
    def _network_info(network: Network) -> dict[str, Any]:
        return {"network_id": network.id, "label": network.label, "cidr": network.cidr,
                "bridge": network.bridge, "bridge_interface": network.bridge_interface,
                "gateway": network.gateway, "broadcast": network.broadcast, "netmask": network.netmask,
                "dhcp_server": network.dhcp_server, "multi_host": network.multi_host, "dns": [],
                "should_create_bridge": FlatDHCPManager.SHOULD_CREATE_BRIDGE}

    @synchronized
    def deallocate_for_instance(self, instance_id: int) -> list[str]:
        """Take the instance's fixed IPs off the DHCP server; returns the addresses."""
        addresses = []
        for fixed_ip in self.db.fixed_ip_get_by_instance(instance_id):
            if fixed_ip.allocated:
                self._deallocate_fixed_ip(fixed_ip)
                addresses.append(fixed_ip.address)
        self.db.virtual_interface_delete_by_instance(instance_id)
        return addresses

    def _deallocate_fixed_ip(self, fixed_ip: FixedIp) -> None:
        """allocated=False, rewrite the hostsfile (HUP), dhcp_release with force_dhcp_release.

        As Essex, the address stays associated (out of the pool) until dnsmasq's ``del`` reaches
        release_fixed_ip — at once with force_dhcp_release, at lease expiry otherwise — or, for an
        address nobody leased (no ``del`` will come), until the periodic task finds it older than
        ``fixed_ip_disassociate_timeout``.
        """
        network = self.db.network_get(fixed_ip.network_id)
        self.db.fixed_ip_update(fixed_ip.address, allocated=False, virtual_interface_id=None)
        LOG.info("Deallocated %s of instance %s", fixed_ip.address, fixed_ip.instance_id)
        self._update_dhcp(network)
        if self.flags.force_dhcp_release and fixed_ip.mac:
            # Forces the DHCPRELEASE that makes dnsmasq call `nova-dhcpbridge del` now.
            self.driver.release_dhcp(network.bridge, fixed_ip.address, fixed_ip.mac)

    # --- periodic tasks (Essex: NetworkManager.periodic_tasks) ------------------------------------

    @synchronized
    def disassociate_stale_fixed_ips(self, now: datetime | None = None) -> int:
        """Return deallocated, unleased addresses older than the timeout to the pool (FlatDHCP).

        Essex ran this because FlatDHCP sets ``timeout_fixed_ips``; it is what frees an address
        whose guest never leased it. Returns how many went back.
        """
        moment = now or datetime.now(UTC)
        cutoff = (moment - timedelta(seconds=self.flags.fixed_ip_disassociate_timeout)).strftime(
            "%Y-%m-%d %H:%M:%S")
        count = self.db.fixed_ip_disassociate_all_by_timeout(self.host, cutoff)
        if count:
            LOG.debug("Disassociated %s stale fixed ip(s)", count)
        return count

    @periodic_task
    def _disassociate_stale_fixed_ips(self) -> None:
        self.disassociate_stale_fixed_ips()

    # --- leases (RPC from nova-dhcpbridge) ----------------------------------------------------

    @synchronized
    def lease_fixed_ip(self, address: str) -> None:
        """dnsmasq handed out ``address``: leased=True, updated_at=now."""
        LOG.debug("Leased IP |%s|", address)
        fixed_ip = self._fixed_ip(address)
        if fixed_ip.instance_id is None:
            raise NetworkError(f"IP {address} leased that is not associated")
        self.db.fixed_ip_update(address, leased=True)
        if not fixed_ip.allocated:
            LOG.warning("IP |%s| leased that isn't allocated", address)

    @synchronized
    def release_fixed_ip(self, address: str) -> None:
        """dnsmasq dropped the lease: leased=False; back to the pool if no longer allocated."""
        LOG.debug("Released IP |%s|", address)
        fixed_ip = self._fixed_ip(address)
        if fixed_ip.instance_id is None:
            raise NetworkError(f"IP {address} released that is not associated")
        if not fixed_ip.leased:
            LOG.warning("IP %s released that was not leased", address)
        self.db.fixed_ip_update(address, leased=False)
        if not fixed_ip.allocated:
            self.db.fixed_ip_disassociate(address)

    def _fixed_ip(self, address: str) -> FixedIp:
        try:
            return self.db.fixed_ip_get_by_address(address)
        except DBError as exc:
            raise NetworkError(str(exc)) from None

    # --- queries ------------------------------------------------------------------------------

    def get_dhcp_leases(self, network: Network) -> str:
        """The lease database dnsmasq asks ``nova-dhcpbridge init`` for."""
        return self.driver.get_dhcp_leases(self.flags, self.db.network_get_associated_fixed_ips(network.id))

    def get_network(self, label: str | None = None) -> dict[str, Any]:
        """label, cidr, bridge, gateway, dhcp_server … of the named network, or of this host's first."""
        for network in self.db.network_get_all():
            if network.label == label or (label is None and network.host == self.host):
                return self._network_info(network)
        raise NetworkError(f"no network {label!r}" if label else f"no network is bound to host {self.host}")

    def rpc_methods(self) -> dict[str, Callable[..., Any]]:
        """What nova-network serves over RPC."""
        return {"allocate_for_instance": self.allocate_for_instance,
                "deallocate_for_instance": self.deallocate_for_instance,
                "lease_fixed_ip": self.lease_fixed_ip,
                "release_fixed_ip": self.release_fixed_ip,
                "get_network": self.get_network}
