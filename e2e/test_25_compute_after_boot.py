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

from fixtures.guests import Guest, GuestManager, ping, wait_pingable
from flatbed.checks import expect, listings
from flatbed.checks.compare import assert_lines_in_order, assert_listing
from flatbed.checks.timeouts import CLOUD_FINAL_TIMEOUT
from flatbed.node import Node
from flatbed.testbed import Testbed
from flatbed.topology import Topology
from flatbed.waiters import wait_until

ICMP_RULE = "-p icmp -j ACCEPT"

pytestmark = pytest.mark.usefixtures("document_start")


@pytest.fixture(scope="module")
def pair(guests: GuestManager, testbed: Testbed) -> list[Guest]:
    """One guest per compute (the first two computes), both leased."""
    computes = testbed.topology.computes[:2]
    booted = [guests.boot(name, compute=node.name) for name, node in zip(("cirros", "cirros2"), computes,
                                                                           strict=False)]
    for guest in booted:
        guest.wait_for_lease()
    return booted


def compute_listing(node: Node, topo: Topology) -> list[str]:
    """``iptables -S`` of a compute as the document shows it (libvirt's virbr0 rules omitted, by name)."""
    return listings.as_document(listings.iptables(node, "filter"), "iptables", topo)


def own_listing(topo: Topology, guest: Guest, sg_rules: tuple[str, ...] = ()) -> list[str]:
    return expect.compute_filter(topo, [(guest.id, guest.ip)], sg_rules)


def test_each_compute_lists_its_own_instance(pair: list[Guest], topology: Topology) -> None:
    for guest in pair:
        listing = compute_listing(guest.compute, topology)
        print(f"--- {guest.compute.name} ({guest.instance_name}, {guest.ip})", *listing, sep="\n")
        assert_listing(own_listing(topology, guest), listing, f"{guest.compute.name}: iptables -S")


def test_nwfilters(pair: list[Guest], topology: Topology) -> None:
    for guest in pair:
        node = guest.compute
        names = node.check(["virsh", "nwfilter-list"])
        mine = expect.instance_filter_name(guest.instance_name, guest.mac)
        for name in ("nova-base", "nova-vpn", "nova-allow-dhcp-server", mine):
            assert f" {name} " in names.replace("\n", " ") + " ", f"{node.name}: nwfilter {name} missing"
        base = node.check(["virsh", "nwfilter-dumpxml", "nova-base"])
        for ref in ("no-mac-spoofing", "no-ip-spoofing", "no-arp-spoofing", "allow-dhcp-server"):
            assert f"<filterref filter='{ref}'/>" in base
        assert "<filterref filter='nova-base'/>" in node.check(["virsh", "nwfilter-dumpxml", mine])


def test_domain_filterref_and_tap(pair: list[Guest], topology: Topology) -> None:
    import xml.etree.ElementTree as ET

    for guest in pair:
        node = guest.compute
        dom = ET.fromstring(node.check(["virsh", "dumpxml", guest.instance_name]))
        nic = dom.find("devices/interface")
        assert nic is not None and nic.find("source").get("bridge") == topology.flat.bridge
        ref = nic.find("filterref")
        assert ref.get("filter") == expect.instance_filter_name(guest.instance_name, guest.mac)
        assert {p.get("name"): p.get("value") for p in ref.findall("parameter")} == expect.filter_parameters(
            topology, guest.ip)
        tap = nic.find("target").get("dev")
        links = listings.links(node)
        assert (links[tap].master, links[tap].mac) == (topology.flat.bridge, "fe" + guest.mac[2:])
        bridge = links[topology.flat.bridge]
        assert bridge.inet == ()  # the compute's br100 has no address
        assert links[topology.flat.interface].master == topology.flat.bridge


def test_instance_dir_holds_libvirt_xml_and_console_log(pair: list[Guest], topology: Topology) -> None:
    """The vnet's MAC comes from ``libvirt.xml`` in the instance directory; ``console.log`` beside it."""
    for guest in pair:
        directory = f"{guest.instances_path}/{guest.instance_name}"
        import xml.etree.ElementTree as ET

        mac = ET.fromstring(guest.compute.read_file(f"{directory}/libvirt.xml")).find("devices/interface/mac")
        assert mac is not None and mac.get("address") == guest.mac, (
            f"{directory}/libvirt.xml does not give the NIC nova's MAC {guest.mac}")
        assert guest.compute.exists(guest.console_log)


def test_console_shows_the_documents_boot(pair: list[Guest], topology: Topology) -> None:
    """The document's console.log, line by line in order: udhcpc's lease, ``adding dns <gateway>``,
    the metadata at the first try with the EC2 id, the public-keys 404, dropbear, cloud-final's
    banner and the instance's identity (cirros 0.3's and our busybox's wording both accepted)."""
    for guest in pair:
        identity = expect.Identity(guest.id)
        assert (guest.instance_name, guest.ec2_id) == (identity.instance_name, identity.ec2_id)
        guest.wait_for_console(r"(?m)^  local-ipv4 : ", timeout=CLOUD_FINAL_TIMEOUT, what="cloud-final's lines")
        lines = expect.console_network(topology, guest.ip) + expect.console_metadata(topology, guest.ip,
                                                                                     identity.ec2_id)
        assert_lines_in_order([(line.name, line.pattern) for line in lines], guest.console(),
                              f"{guest.compute.name}: {guest.console_log}")


def _compute_pings(guest: Guest) -> dict[str, int]:
    """Ping the guest from its own compute; how many packets each rule of its chain matched."""
    chain = f"nova-compute-inst-{guest.id}"
    before = listings.rule_packets(guest.compute, chain)
    assert not ping(guest.compute, guest.ip, count=2)
    after = listings.rule_packets(guest.compute, chain)
    return {rule: after[rule] - before.get(rule, 0) for rule in after}


def test_ping_from_controller_not_from_compute(pair: list[Guest], controller: Node) -> None:
    """§3.3/§3.4: the controller (10.0.0.1, same subnet) pings; the compute's own ping is dropped in
    OUTPUT by the instance chain's fallback (its source is the eth1 address)."""
    guest = pair[0]
    wait_pingable(controller, guest.ip)
    matched = _compute_pings(guest)
    assert matched[f"-A nova-compute-inst-{guest.id} -j nova-compute-sg-fallback"] >= 2


def test_secgroup_icmp_rule_refreshes_running_guests(pair: list[Guest], controller: Node, topology: Topology) -> None:
    controller.check(["nova", "secgroup-add-rule", "default", "icmp", "-1", "-1", "0.0.0.0/0"])
    try:
        for guest in pair:
            assert_listing(own_listing(topology, guest, (ICMP_RULE,)), compute_listing(guest.compute, topology),
                           f"{guest.compute.name}: iptables -S with the icmp rule")
        # The compute's ping now passes its OUTPUT (it still gets no answer: the compute has no
        # route into the flat network but its default gateway, which does not route there).
        matched = _compute_pings(pair[0])
        assert matched[f"-A nova-compute-inst-{pair[0].id} {ICMP_RULE}"] >= 2
        assert matched[f"-A nova-compute-inst-{pair[0].id} -j nova-compute-sg-fallback"] == 0
    finally:
        controller.check(["nova", "secgroup-delete-rule", "default", "icmp", "-1", "-1", "0.0.0.0/0"])
    for guest in pair:
        assert_listing(own_listing(topology, guest), compute_listing(guest.compute, topology),
                       f"{guest.compute.name}: iptables -S after deleting the rule")


def test_restarted_compute_rebuilds_the_chains(pair: list[Guest], topology: Topology) -> None:
    guest = pair[0]
    node = guest.compute
    before = listings.iptables(node, "filter")
    node.check(["iptables", "-F", f"nova-compute-inst-{guest.id}"])  # lose the rules behind its back
    node.check(["systemctl", "restart", "nova-compute"])

    def rebuilt() -> list[str] | None:
        listing = listings.iptables(node, "filter")
        return listing if listing == before else None

    wait_until(rebuilt, timeout=60, what=f"{node.name}: nova-compute to re-apply {guest.instance_name}'s chain",
               describe=lambda: "\n".join(listings.iptables(node, "filter")))


def test_delete_leaves_the_compute_clean(pair: list[Guest], guests: GuestManager, topology: Topology) -> None:
    for guest in list(pair):
        guests.delete(guest)
    for guest in pair:
        node = guest.compute
        assert_listing(expect.compute_filter(topology, []), compute_listing(node, topology),
                       f"{node.name}: iptables -S after deleting {guest.name}")
        assert "nova-instance-" not in node.check(["virsh", "nwfilter-list"])
        assert node.check(["virsh", "list", "--all", "--name"]).strip() == ""
        links = listings.links(node)
        assert topology.flat.bridge in links and not [n for n in links if n.startswith("vnet")]
        assert not node.exists(f"{guest.instances_path}/{guest.instance_name}")
