"""§2.2 of the document: a compute node before any guest.

"Bridges and iptables have nothing substantial": nova-compute applied no rule yet (its chains
come with the first instance), there is no br100 (the lazy bridge comes with the first
instance), eth2 is up and promiscuous with no address (the document lists it DOWN: see
``test_ip_a_no_bridge_and_eth2_bare``), /etc/network/interfaces has the document's eth2 stanza,
the routes are the document's (without
libvirt's virbr0, which flatbed does not define: no libvirt network at all), no domain and no
nova nwfilter exist, but libvirt's built-in filters that nova-base references do. nova-compute
chose its ``libvirt_type`` from facts before any guest: ``qemu`` without ``/dev/kvm`` (containers),
a probe boot's verdict with it (VMs with nested KVM), as its start-up line says.
"""

from __future__ import annotations

import json

import pytest

from flatbed.checks import expect, listings
from flatbed.checks.compare import assert_lines_in_order, assert_listing
from flatbed.node import Node
from flatbed.provisioning import KVM_CHOICE
from flatbed.testbed import Testbed
from flatbed.topology import Topology

BASE_FILTERS = ("no-mac-spoofing", "no-ip-spoofing", "no-arp-spoofing", "allow-dhcp-server")


@pytest.fixture(scope="module", params=[0, 1], ids=["compute-a", "compute-b"])
def compute(request: pytest.FixtureRequest, document_start: None, testbed: Testbed) -> Node:
    computes = testbed.computes()
    if request.param >= len(computes):
        pytest.skip("the topology has one compute")
    node = computes[request.param]
    if node.run(["ip", "link", "show", "dev", testbed.topology.flat.bridge]).ok:
        pytest.fail(f"{node.name} has run a guest already; §2.2 is the compute before any")
    return node


def test_iptables_untouched(compute: Node) -> None:
    listing = listings.iptables(compute, "filter")
    print("\n".join(listing))
    assert_listing(expect.compute_before_boot_filter(), listing, f"{compute.name}: iptables -S")
    assert_listing(["-P PREROUTING ACCEPT", "-P INPUT ACCEPT", "-P OUTPUT ACCEPT", "-P POSTROUTING ACCEPT"],
                   listings.iptables(compute, "nat"), f"{compute.name}: iptables -t nat -S")


def test_ip_a_no_bridge_and_eth2_bare(testbed: Testbed, compute: Node, topology: Topology) -> None:
    """``ip a``: eth1 with the management address, eth2 without an address and in no bridge, and no
    bridge at all. The document's §2.2 listing shows eth2 DOWN (``qdisc noop state DOWN``), yet its
    /etc/network/interfaces brings eth2 up promiscuous: it was listed before that stanza ran. flatbed
    applies the stanza at boot (``auto eth2``), so eth2 is UP,PROMISC here — a declared deviation
    (expect.IP_A_NOT_COMPARED["compute eth2 up"]), as are qdisc, state and qlen."""
    listing = listings.ip_a(testbed, compute)
    print("\n".join(listing))
    assert_listing(expect.compute_ip_a(topology, topology.node(compute.name)), listing, f"{compute.name}: ip a")


def test_network_interfaces_file(compute: Node, topology: Topology) -> None:
    """/etc/network/interfaces: the document's eth2 stanza, as on the controller."""
    assert_lines_in_order(expect.flat_interface_stanza(topology), compute.read_file("/etc/network/interfaces"),
                          f"{compute.name}: /etc/network/interfaces")


def test_route_n(testbed: Testbed, compute: Node, topology: Topology) -> None:
    assert_listing(expect.compute_routes(topology), listings.document_listing(testbed, compute, "route"),
                   f"{compute.name}: route -n")


def test_libvirt_has_no_domain_network_or_nova_filter(compute: Node) -> None:
    assert compute.check(["virsh", "list", "--all", "--name"]).strip() == ""
    assert compute.check(["virsh", "net-list", "--all", "--name"]).strip() == ""  # no virbr0
    filters = compute.check(["virsh", "nwfilter-list"])
    assert "nova-" not in filters
    for name in BASE_FILTERS:
        assert f" {name} " in f" {filters} ".replace("\n", " "), f"libvirt's built-in nwfilter {name} is missing"


def test_libvirt_type_decided_from_facts(compute: Node) -> None:
    choice = json.loads(compute.check(["cat", KVM_CHOICE]))
    if compute.run(["test", "-e", "/dev/kvm"]).ok:  # a VM whose CPU offers svm/vmx: the probe boot decides
        assert choice["source"] == "probe" and choice["libvirt_type"] in ("kvm", "qemu"), choice
    else:
        assert (choice["libvirt_type"], choice["source"]) == ("qemu", "device"), choice
    journal = compute.check(["journalctl", "-u", "nova-compute", "-o", "cat", "--no-pager"])
    started = [line for line in journal.splitlines() if "Starting compute node" in line]
    assert started and started[-1].endswith(f"libvirt_type={choice['libvirt_type']} ({choice['reason']})"), started
