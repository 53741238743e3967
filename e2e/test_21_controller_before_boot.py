"""§2.1 of the document: the controller before any guest exists.

On the provisioned controller (nova-network started after nova-api, as the document's was):
- nova-api and nova-network are installed and running (a missing nova-api fails: it is part of
  the deployment);
- ``iptables -t filter -S`` and ``iptables -t nat -S`` equal the document's listings, line for
  line and in order (the order of the jumps shows nova-network applied last);
- ``ip a``: eth1 with the management address, eth2 enslaved to the bridge with no IP,
  promiscuous; the bridge with the gateway address first, eth2's MAC; 169.254.169.254 on lo
  (qdisc, state and qlen left out, by name: expect.IP_A_NOT_COMPARED);
- ``/etc/network/interfaces``: eth2 ``inet manual``, ``up ifconfig $IFACE 0.0.0.0 up``, ``up
  ifconfig $IFACE promisc``;
- ``brctl show``, ``route -n`` as the document's;
- ``ps``: two dnsmasq processes with the Essex command line — the daemon as ``nobody`` (its pid
  is the pid file's) and its ``root`` helper child;
- nova.conf starts with the document's five flags; the hostsfile is empty (mode 0644);
- dnsmasq logged its start to syslog; ``net.ipv4.ip_forward`` is 0 (Essex never set it).
"""

from __future__ import annotations

import pytest

from flatbed.checks import expect, listings
from flatbed.checks.compare import assert_lines_in_order, assert_listing
from flatbed.checks.services import is_active
from flatbed.node import Node
from flatbed.testbed import Testbed
from flatbed.topology import Topology


@pytest.fixture(scope="module", autouse=True)
def no_guests(document_start: None, controller: Node, topology: Topology) -> None:
    hosts = controller.read_file(expect.hostsfile_path(topology))
    if hosts.strip():
        pytest.fail(f"a guest exists already (hostsfile: {hosts.strip()!r}); §2.1 is the controller before any")


def test_nova_api_and_nova_network_run(controller: Node) -> None:
    """Both binaries whose chains the listings show are part of the deployment: neither may be missing."""
    for unit in (expect.NOVA_API, expect.NOVA_NETWORK):
        assert controller.run(["test", "-x", f"/usr/bin/{unit}"]).ok, f"{controller.name}: /usr/bin/{unit} missing"
        assert is_active(controller, unit) == "active", f"{controller.name}: {unit} is not running"


def test_iptables_filter(controller: Node, topology: Topology) -> None:
    """The document's listing whole: nova-network's chains and jumps first, then nova-api's, and
    nova-api's accept of the metadata port."""
    listing = listings.iptables(controller, "filter")
    print("\n".join(listing))
    assert_listing(expect.controller_filter(topology), listing, f"{controller.name}: iptables -t filter -S")


def test_iptables_nat(controller: Node, topology: Topology) -> None:
    listing = listings.iptables(controller, "nat")
    print("\n".join(listing))
    assert_listing(expect.controller_nat(topology), listing, f"{controller.name}: iptables -t nat -S")


def test_ip_a(testbed: Testbed, controller: Node, topology: Topology) -> None:
    """The document's ``ip a`` as far as a bridge and veths reproduce it: 169.254.169.254 on lo; eth1
    with its MAC and the management address; eth2 promiscuous, in the bridge, without an inet
    address; the bridge with eth2's MAC and the gateway's address (dnsmasq listens there); each
    NIC's link-local from its MAC. Not compared (expect.IP_A_NOT_COMPARED): qdisc, state, qlen."""
    listing = listings.ip_a(testbed, controller)
    print("\n".join(listing), "not compared: " + ", ".join(expect.IP_A_NOT_COMPARED), sep="\n")
    assert_listing(expect.controller_ip_a(topology), listing, f"{controller.name}: ip a")


def test_network_interfaces_file(controller: Node, topology: Topology) -> None:
    """/etc/network/interfaces: eth2 without an address, brought up promiscuous (the document's stanza)."""
    assert_lines_in_order(expect.flat_interface_stanza(topology), controller.read_file("/etc/network/interfaces"),
                          f"{controller.name}: /etc/network/interfaces")


def test_brctl_show(testbed: Testbed, controller: Node, topology: Topology) -> None:
    eth2_mac = topology.controller.macs[topology.flat.interface]
    bridges = listings.document_listing(testbed, controller, "brctl")
    assert_listing(expect.controller_brctl(topology, eth2_mac), bridges, "brctl show")


def test_route_n(testbed: Testbed, controller: Node, topology: Topology) -> None:
    assert_listing(expect.controller_routes(topology), listings.document_listing(testbed, controller, "route"),
                   "route -n")


def test_dnsmasq_processes(controller: Node, topology: Topology) -> None:
    procs = listings.dnsmasq_processes(controller, expect.hostsfile_path(topology))
    for proc in procs:
        print(f"{proc.user:8} {proc.pid:6} {proc.ppid:6} {proc.args}")
    assert [p.args for p in procs] == [expect.dnsmasq_args(topology)] * 2
    daemon = next(p for p in procs if p.user == "nobody")
    helper = next(p for p in procs if p.user == "root")
    assert daemon.pid == int(controller.read_file(expect.pidfile_path(topology)))
    assert helper.ppid == daemon.pid  # the helper that runs nova-dhcpbridge keeps root


def test_nova_conf(controller: Node, topology: Topology) -> None:
    lines = controller.read_file("/etc/nova/nova.conf").splitlines()
    assert lines[:5] == expect.nova_conf_head(topology)


def test_hostsfile_is_empty(controller: Node, topology: Topology) -> None:
    path = expect.hostsfile_path(topology)
    assert controller.read_file(path) == ""
    assert controller.check(["stat", "-c", "%a %U", path]).split() == ["644", "root"]


def test_dnsmasq_logged_its_start(controller: Node, topology: Topology) -> None:
    syslog = controller.read_file("/var/log/syslog")
    assert any("dnsmasq-dhcp[" in line and expect.dnsmasq_started_line(topology) in line
               for line in syslog.splitlines()), "no dnsmasq-dhcp start-up line in /var/log/syslog"


def test_ip_forward_stays_off(controller: Node) -> None:
    assert listings.sysctl(controller, "net.ipv4.ip_forward") == "0"
