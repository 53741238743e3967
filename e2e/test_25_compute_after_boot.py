"""§2.5 (and §3.3/§3.4) of the document: the compute nodes once they run guests.

One guest on each compute (ids n and n+1: chains ``inst-<decimal id>``, names hex):
- both ACTIVE and leased; each compute's ``iptables -S`` is the document's listing for its own
  instance (the lazy bridge's FORWARD accepts, provider, sg-fallback, the instance chain in
  Essex's order, the dispatch in nova-compute-local);
- libvirt: the nwfilters nova-base & co. and the instance's filter referencing nova-base; the
  domain's ``<filterref>`` with IP, DHCPSERVER, PROJNET, PROJMASK; the tap on br100 shows the
  guest's MAC with ``fe:``; br100 has no address;
- the instance directory holds ``libvirt.xml`` (the NIC's MAC) and ``console.log``, which shows
  the document's boot in order: the lease, ``adding dns <gateway>``, cloud-setup's success at the
  first try with ``iid=i-<hex id>``, the public-keys 404, dropbear, cloud-final and ``local-ipv4``;
- the controller pings a guest; its own compute's ping is dropped in OUTPUT by the instance
  chain's sg-fallback (shown by the rule counters) — until ``nova secgroup-add-rule default icmp
  -1 -1 0.0.0.0/0`` refreshes the running guests' chains; deleting the rule restores the
  document's listing;
- a restarted nova-compute rebuilds the same chains for its running guest;
- deleting both guests leaves no instance chain, nwfilter, domain, tap or instance directory;
  br100 and nova-compute's base chains stay.
"""

from __future__ import annotations

import pytest

from flatbed import domains
from flatbed.checks import expect, listings
from flatbed.checks.compare import assert_lines_in_order, assert_listing
from flatbed.checks.console import console, wait_for_console, wait_for_lease
from flatbed.checks.timeouts import CLOUD_FINAL_TIMEOUT, REAPPLY_TIMEOUT
from flatbed.checks.traffic import ping_node, rule_deltas, wait_pingable
from flatbed.cloud import Guest
from flatbed.node import Node
from flatbed.testbed import Testbed
from flatbed.topology import Topology
from flatbed.waiters import wait_until
from flatbed_fixtures.guests import BootedGuests

ICMP_RULE = "-p icmp -j ACCEPT"

pytestmark = pytest.mark.usefixtures("document_start")


@pytest.fixture(scope="module")
def pair(guests: BootedGuests, testbed: Testbed) -> list[Guest]:
    """One guest per compute (the first two computes), both leased."""
    computes = testbed.topology.computes[:2]
    booted = [guests.boot(name, compute=node.name) for name, node in zip(("cirros", "cirros2"), computes,
                                                                           strict=False)]
    for guest in booted:
        wait_for_lease(guest)
    return booted


def compute_listing(node: Node, topo: Topology) -> list[str]:
    """``iptables -S`` of a compute as the document shows it (libvirt's virbr0 rules omitted, by name)."""
    return listings.as_document(listings.iptables(node, "filter"), "iptables", topo)


def own_listing(topo: Topology, guest: Guest, sg_rules: tuple[str, ...] = ()) -> list[str]:
    return expect.compute_filter(topo, [(guest.id, guest.ip)], sg_rules)


def test_each_compute_lists_its_own_instance(pair: list[Guest], topology: Topology) -> None:
    for guest in pair:
        listing = compute_listing(guest.node, topology)
        print(f"--- {guest.compute} ({guest.instance_name}, {guest.ip})", *listing, sep="\n")
        assert_listing(own_listing(topology, guest), listing, f"{guest.compute}: iptables -S")


def test_nwfilters(pair: list[Guest], topology: Topology) -> None:
    for guest in pair:
        node = guest.node
        names = node.check(["virsh", "nwfilter-list"])
        mine = expect.instance_filter_name(guest.instance_name, guest.mac)
        for name in ("nova-base", "nova-vpn", "nova-allow-dhcp-server", mine):
            assert f" {name} " in names.replace("\n", " ") + " ", f"{node.name}: nwfilter {name} missing"
        base = node.check(["virsh", "nwfilter-dumpxml", "nova-base"])
        for ref in ("no-mac-spoofing", "no-ip-spoofing", "no-arp-spoofing", "allow-dhcp-server"):
            assert f"<filterref filter='{ref}'/>" in base
        assert "<filterref filter='nova-base'/>" in node.check(["virsh", "nwfilter-dumpxml", mine])


def test_domain_filterref_and_tap(pair: list[Guest], topology: Topology) -> None:
    for guest in pair:
        node = guest.node
        [nic] = domains.nics(node, guest.instance_name)
        assert (nic.mac, nic.bridge) == (guest.mac, topology.flat.bridge)
        assert nic.filter == expect.instance_filter_name(guest.instance_name, guest.mac)
        assert nic.filter_parameters == expect.filter_parameters(topology, guest.ip)
        links = listings.links(node)
        assert (links[nic.tap].master, links[nic.tap].mac) == (topology.flat.bridge, "fe" + guest.mac[2:])
        bridge = links[topology.flat.bridge]
        assert bridge.inet == ()  # the compute's br100 has no address
        assert links[topology.flat.interface].master == topology.flat.bridge


def test_instance_dir_holds_libvirt_xml_and_console_log(pair: list[Guest], topology: Topology) -> None:
    """The vnet's MAC comes from ``libvirt.xml`` in the instance directory; ``console.log`` beside it."""
    for guest in pair:
        path = f"{guest.instance_dir}/libvirt.xml"
        macs = [nic.mac for nic in domains.parse_nics(guest.node.read_file(path))]
        assert macs == [guest.mac], f"{path} does not give the NIC nova's MAC {guest.mac}: {macs}"
        assert guest.node.exists(guest.console_log)


def test_console_shows_the_documents_boot(pair: list[Guest], topology: Topology) -> None:
    """The document's console.log, line by line in order: udhcpc's lease, ``adding dns <gateway>``,
    the metadata at the first try with the EC2 id, the public-keys 404, dropbear, cloud-final's
    banner and the instance's identity (cirros 0.3's and our busybox's wording both accepted)."""
    for guest in pair:
        identity = expect.Identity(guest.id)
        assert guest.instance_name == identity.instance_name
        wait_for_console(guest, r"(?m)^  local-ipv4 : ", timeout=CLOUD_FINAL_TIMEOUT, what="cloud-final's lines")
        lines = expect.console_network(topology, guest.ip) + expect.console_metadata(topology, guest.ip,
                                                                                     identity.ec2_id)
        assert_lines_in_order([(line.name, line.pattern) for line in lines], console(guest),
                              f"{guest.compute}: {guest.console_log}")


def _compute_pings(guest: Guest) -> dict[str, int]:
    """Ping the guest from its own compute; how many packets each rule of its chain matched."""
    with rule_deltas(guest.node, expect.Identity(guest.id).chain) as deltas:
        ping = ping_node(guest.node, guest.ip, 2)
        assert not ping.answered, ping
        return deltas()


def test_ping_from_controller_not_from_compute(pair: list[Guest], controller: Node) -> None:
    """§3.3/§3.4: the controller (10.0.0.1, same subnet) pings; the compute's own ping is dropped in
    OUTPUT by the instance chain's fallback (its source is the eth1 address)."""
    guest = pair[0]
    wait_pingable(controller, guest.ip)
    matched = _compute_pings(guest)
    assert matched[f"-A {expect.Identity(guest.id).chain} -j {expect.NOVA_COMPUTE}-sg-fallback"] >= 2


def test_secgroup_icmp_rule_refreshes_running_guests(pair: list[Guest], controller: Node, topology: Topology) -> None:
    controller.check(["nova", "secgroup-add-rule", "default", "icmp", "-1", "-1", "0.0.0.0/0"])
    try:
        for guest in pair:
            assert_listing(own_listing(topology, guest, (ICMP_RULE,)), compute_listing(guest.node, topology),
                           f"{guest.compute}: iptables -S with the icmp rule")
        # The compute's ping now passes its OUTPUT (it still gets no answer: the compute has no
        # route into the flat network but its default gateway, which does not route there).
        chain = expect.Identity(pair[0].id).chain
        matched = _compute_pings(pair[0])
        assert matched[f"-A {chain} {ICMP_RULE}"] >= 2
        assert matched[f"-A {chain} -j {expect.NOVA_COMPUTE}-sg-fallback"] == 0
    finally:
        controller.check(["nova", "secgroup-delete-rule", "default", "icmp", "-1", "-1", "0.0.0.0/0"])
    for guest in pair:
        assert_listing(own_listing(topology, guest), compute_listing(guest.node, topology),
                       f"{guest.compute}: iptables -S after deleting the rule")


def test_restarted_compute_rebuilds_the_chains(pair: list[Guest], topology: Topology) -> None:
    guest = pair[0]
    node = guest.node
    before = listings.iptables(node, "filter")
    node.check(["iptables", "-F", expect.Identity(guest.id).chain])  # lose the rules behind its back
    node.check(["systemctl", "restart", "nova-compute"])

    def rebuilt() -> list[str] | None:
        listing = listings.iptables(node, "filter")
        return listing if listing == before else None

    wait_until(rebuilt, timeout=REAPPLY_TIMEOUT,
               what=f"{node.name}: nova-compute to re-apply {guest.instance_name}'s chain",
               describe=lambda: "\n".join(listings.iptables(node, "filter")))


def test_delete_leaves_the_compute_clean(pair: list[Guest], guests: BootedGuests, topology: Topology) -> None:
    for guest in list(pair):
        guests.delete(guest)
    for guest in pair:
        node = guest.node
        assert_listing(expect.compute_filter(topology, []), compute_listing(node, topology),
                       f"{node.name}: iptables -S after deleting {guest.name}")
        assert "nova-instance-" not in node.check(["virsh", "nwfilter-list"])
        assert node.check(["virsh", "list", "--all", "--name"]).strip() == ""
        links = listings.links(node)
        assert topology.flat.bridge in links and not [n for n in links if n.startswith("vnet")]
        assert not node.exists(guest.instance_dir)
