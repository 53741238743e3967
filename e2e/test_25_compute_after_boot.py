"""§2.5 (and §3.3/§3.4) of the document: the compute nodes once they run guests.

One guest on each compute (ids n and n+1: chains ``inst-<decimal id>``, names hex):
- both ACTIVE and leased; each compute's ``iptables -S`` is the document's listing for its own
  instance (the lazy bridge's FORWARD accepts, provider, sg-fallback, the instance chain in
  Essex's order, the dispatch in nova-compute-local);
- each guest's names on its compute — domain, instance directory, nwfilter, iptables chain — are
  those of its boot order's id, its MAC is Essex's and the same in nova, the domain XML and the
  nwfilter's name, and its tap shows it with ``fe:`` (flatbed/checks/identity.py);
- libvirt: ``virsh nwfilter-dumpxml`` of nova-base, nova-vpn, nova-allow-dhcp-server (its rules and
  fixed uuid) and the instance's filter (the container of nova-base) as Essex defines them; the
  domain's ``<filterref>`` with IP, DHCPSERVER, PROJNET, PROJMASK, and the tap's nwfilter binding
  instantiated with them (and the MAC); br100 has no address;
- the instance directory holds ``libvirt.xml`` (the NIC's MAC) and ``console.log``, which shows the
  lease, the metadata at the first try with ``iid=i-<hex id>`` and that id reported, in its cirros
  generation's words; in cirros 0.3.0's, the document's boot in order: the lease, ``deleting
  routers``, ``route: SIOCDELRT``, ``adding dns <gateway>``, cloud-setup's success, the public-keys
  404, dropbear generating keys, cloud-final and ``local-ipv4``;
- the controller pings a guest; its own compute's ping is dropped in OUTPUT by the instance
  chain's sg-fallback (shown by the rule counters) — until ``nova secgroup-add-rule default icmp
  -1 -1 0.0.0.0/0`` refreshes the running guests' chains; deleting the rule restores the
  document's listing;
- a restarted nova-compute rebuilds the same chains for its running guest;
- deleting both guests leaves no instance chain, nwfilter, domain, tap or instance directory;
  br100 and nova-compute's base chains stay.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from flatbed import domains
from flatbed.checks import expect, identity, listings, nwfilters
from flatbed.checks.compare import assert_lines_in_order, assert_listing
from flatbed.checks.console import console, not_the_documents_wording, wait_for_console, wait_for_facts, wait_for_lease
from flatbed.checks.identity import identity_of, rule_address
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


def compute_listing(testbed: Testbed, node: Node) -> list[str]:
    """``iptables -S`` of a compute as the document shows it (libvirt's virbr0 rules omitted, by name)."""
    return listings.document_listing(testbed, node, "iptables")


def own_listing(topo: Topology, guest: Guest, sg_rules: tuple[str, ...] = ()) -> list[str]:
    """The document's listing for the guest: its chain from the boot order's id, the lowest-free address."""
    return expect.compute_filter(topo, [(identity_of(guest).id, rule_address(guest))], sg_rules)


def test_identifiers_follow_their_rules_and_agree(pair: list[Guest], topology: Topology) -> None:
    """Each guest's names on its compute (domain, instance directory, nwfilter, iptables chain) are its
    boot order's id's, its MAC is Essex's and the same everywhere (nova, domain XML, libvirt.xml,
    nwfilter name), its tap shows that MAC with ``fe:``."""
    for guest in pair:
        node = guest.node
        ident = identity_of(guest)
        # The one guest on this compute: every place names it once (several names fail the rule).
        domains_ = node.check(["virsh", "list", "--name"]).split()
        chains = [line.split()[1] for line in listings.iptables(node, "filter")
                  if line.startswith(f"-N {expect.NOVA_COMPUTE}-inst-")]
        instance_dirs = [d for d in node.check(["ls", str(PurePosixPath(guest.instance_dir).parent)]).split()
                         if d.startswith("instance-")]
        [nwfilter] = [n for n in node.check(["virsh", "nwfilter-list"]).split() if n.startswith("nova-instance-")]
        seen = {"virsh list": " ".join(domains_), "iptables -S chain": " ".join(chains),
                "instance directory": " ".join(instance_dirs),
                "nwfilter name": nwfilter.removeprefix("nova-instance-").rsplit("-", 1)[0]}
        identity.assert_follows_rules(guest, seen)
        [nic] = domains.nics(node, ident.instance_name)
        assert nic.mac == guest.mac and nwfilter.rsplit("-", 1)[1] == guest.mac.replace(":", ""), (nic, nwfilter)
        assert identity.tap_problem(guest.mac, listings.links(node)[nic.tap].mac) is None


def test_each_compute_lists_its_own_instance(pair: list[Guest], topology: Topology) -> None:
    for guest in pair:
        listing = compute_listing(guest.testbed, guest.node)
        print(f"--- {guest.compute} ({guest.instance_name}, {guest.ip})", *listing, sep="\n")
        assert_listing(own_listing(topology, guest), listing, f"{guest.compute}: iptables -S")


def test_nwfilters_are_essexs(pair: list[Guest], topology: Topology) -> None:
    """``virsh nwfilter-dumpxml``: nova-base, nova-vpn and nova-allow-dhcp-server (its rules and fixed
    uuid) as Essex defines them, and the guest's filter, the container of nova-base."""
    for guest in pair:
        node = guest.node
        mine = expect.instance_filter_name(identity_of(guest).instance_name, guest.mac)
        wanted = {**nwfilters.essex_static(), mine: nwfilters.essex_instance(mine)}
        problems = [p for name, want in wanted.items()
                    for p in nwfilters.filter_problems(want, nwfilters.read_filter(node, name, want.uuid is not None))]
        assert not problems, f"{node.name}: nwfilters differ from Essex's:\n" + "\n".join(problems)


def test_nwfilter_binding_has_the_guests_parameters(pair: list[Guest], topology: Topology) -> None:
    """The running guest's filter, instantiated on its tap with IP, DHCPSERVER, PROJNET, PROJMASK
    (the domain's ``<filterref>``) and the MAC libvirt adds."""
    for guest in pair:
        ident = identity_of(guest)
        [nic] = domains.nics(guest.node, ident.instance_name)
        binding = nwfilters.read_binding(guest.node, nic.tap)
        assert binding == nwfilters.Binding(
            owner=ident.instance_name, owner_uuid=guest.uuid, portdev=nic.tap, mac=guest.mac,
            filter=expect.instance_filter_name(ident.instance_name, guest.mac),
            parameters={**expect.filter_parameters(topology, rule_address(guest)), "MAC": guest.mac})


def test_domain_filterref_and_tap(pair: list[Guest], topology: Topology) -> None:
    for guest in pair:
        node = guest.node
        ident = identity_of(guest)
        [nic] = domains.nics(node, ident.instance_name)
        assert (nic.mac, nic.bridge) == (guest.mac, topology.flat.bridge)
        assert nic.filter == expect.instance_filter_name(ident.instance_name, guest.mac)
        assert nic.filter_parameters == expect.filter_parameters(topology, rule_address(guest))
        links = listings.links(node)
        assert (links[nic.tap].master, links[nic.tap].mac) == (topology.flat.bridge, identity.tap_mac(guest.mac))
        bridge = links[topology.flat.bridge]
        assert bridge.inet == ()  # the compute's br100 has no address
        assert links[topology.flat.interface].master == topology.flat.bridge


def test_ip_a_with_the_guests_tap(pair: list[Guest], topology: Topology) -> None:
    """§2.5's ``ip a``: the interfaces as before, eth2 now in the bridge, the bridge without an
    address, and the guest's tap (libvirt's vnetN) in the bridge with the guest's MAC ``fe:``-prefixed
    and its link-local (qdisc, state, qlen not compared: expect.IP_A_NOT_COMPARED)."""
    for guest in pair:
        [nic] = domains.nics(guest.node, identity_of(guest).instance_name)
        listing = listings.ip_a(guest.testbed, guest.node)
        print(f"--- {guest.compute}", *listing, sep="\n")
        assert_listing(expect.compute_ip_a(topology, topology.node(guest.compute), [(nic.tap, guest.mac)]), listing,
                       f"{guest.compute}: ip a")


def test_instance_dir_holds_libvirt_xml_and_console_log(pair: list[Guest], topology: Topology) -> None:
    """The vnet's MAC comes from ``libvirt.xml`` in the instance directory; ``console.log`` beside it."""
    for guest in pair:
        path = f"{guest.instance_dir}/libvirt.xml"
        macs = [nic.mac for nic in domains.parse_nics(guest.node.read_file(path))]
        assert macs == [guest.mac], f"{path} does not give the NIC nova's MAC {guest.mac}: {macs}"
        assert guest.node.exists(guest.console_log)


def test_console_shows_the_facts(pair: list[Guest]) -> None:
    """Each guest's console: its lease (lowest-free address, the topology's lease time), the metadata
    answer at the first try with its id's EC2 id and that id reported, a host key generated — in
    its cirros generation's words."""
    for guest in pair:
        print(wait_for_facts(guest))


def test_console_shows_the_documents_boot(pair: list[Guest], topology: Topology) -> None:
    """The document's console.log in cirros 0.3.0's words, line by line in order (regexes): udhcpc's
    lease, ``deleting routers``, ``route: SIOCDELRT``, ``adding dns <gateway>``, the metadata at the
    first try with the EC2 id, the public-keys 404, dropbear generating keys, cloud-final's banner
    and the instance's identity (cirros 0.3's and our busybox's udhcpc wording both accepted)."""
    for guest in pair:
        why = not_the_documents_wording(guest)
        if why:
            pytest.skip(why)
        address, ec2_id = rule_address(guest), identity_of(guest).ec2_id
        wait_for_console(guest, r"(?m)^  local-ipv4 : ", timeout=CLOUD_FINAL_TIMEOUT, what="cloud-final's lines")
        lines = expect.console_network(topology, address) + expect.console_metadata(topology, address, ec2_id)
        assert_lines_in_order([(line.name, line.pattern) for line in lines], console(guest),
                              f"{guest.compute}: {guest.console_log}")


def _compute_pings(guest: Guest) -> dict[str, int]:
    """Ping the guest from its own compute; how many packets each rule of its chain matched."""
    with rule_deltas(guest.node, identity_of(guest).chain) as deltas:
        ping = ping_node(guest.node, guest.ip, 2)
        assert not ping.answered, ping
        return deltas()


def test_ping_from_controller_not_from_compute(pair: list[Guest], controller: Node) -> None:
    """§3.3/§3.4: the controller (10.0.0.1, same subnet) pings; the compute's own ping is dropped in
    OUTPUT by the instance chain's fallback (its source is the eth1 address)."""
    guest = pair[0]
    wait_pingable(controller, guest.ip)
    matched = _compute_pings(guest)
    assert matched[f"-A {identity_of(guest).chain} -j {expect.NOVA_COMPUTE}-sg-fallback"] >= 2


def test_secgroup_icmp_rule_refreshes_running_guests(pair: list[Guest], controller: Node, topology: Topology) -> None:
    controller.check(["nova", "secgroup-add-rule", "default", "icmp", "-1", "-1", "0.0.0.0/0"])
    try:
        for guest in pair:
            assert_listing(own_listing(topology, guest, (ICMP_RULE,)), compute_listing(guest.testbed, guest.node),
                           f"{guest.compute}: iptables -S with the icmp rule")
        # The compute's ping now passes its OUTPUT (it still gets no answer: the compute has no
        # route into the flat network but its default gateway, which does not route there).
        chain = identity_of(pair[0]).chain
        matched = _compute_pings(pair[0])
        assert matched[f"-A {chain} {ICMP_RULE}"] >= 2
        assert matched[f"-A {chain} -j {expect.NOVA_COMPUTE}-sg-fallback"] == 0
    finally:
        controller.check(["nova", "secgroup-delete-rule", "default", "icmp", "-1", "-1", "0.0.0.0/0"])
    for guest in pair:
        assert_listing(own_listing(topology, guest), compute_listing(guest.testbed, guest.node),
                       f"{guest.compute}: iptables -S after deleting the rule")


def test_restarted_compute_rebuilds_the_chains(pair: list[Guest], topology: Topology) -> None:
    guest = pair[0]
    node = guest.node
    before = listings.iptables(node, "filter")
    node.check(["iptables", "-F", identity_of(guest).chain])  # lose the rules behind its back
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
        assert_listing(expect.compute_filter(topology, []), compute_listing(guests.cloud.testbed, node),
                       f"{node.name}: iptables -S after deleting {guest.name}")
        assert "nova-instance-" not in node.check(["virsh", "nwfilter-list"])
        assert node.check(["virsh", "list", "--all", "--name"]).strip() == ""
        links = listings.links(node)
        assert topology.flat.bridge in links and not [n for n in links if n.startswith("vnet")]
        assert not node.exists(guest.instance_dir)
