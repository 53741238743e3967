"""flatbed/checks/expect.py and flatbed/checks/compare.py: the e2e expectations against the document's text."""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path

import pytest
from test_stack_linux_net import DOCUMENT_DNSMASQ

from flatbed.checks import expect
from flatbed.checks.compare import assert_lines_in_order, assert_listing, lines_in_order, listing_diff, normalise
from flatbed.topology import DEFAULT_TOPOLOGY, Topology
from flatbed.topology import load as load_topology

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "stack"))

from nova import systemd  # noqa: E402

# The document, §2.1, verbatim.
DOCUMENT_ROUTE_N = """
Kernel IP routing table

Destination     Gateway         Genmask         Flags Metric Ref    Use Iface

0.0.0.0         192.168.56.101  0.0.0.0         UG    100    0        0 eth1

10.0.0.0        0.0.0.0         255.255.255.0   U     0      0        0 br100

169.254.0.0     0.0.0.0         255.255.0.0     U     1000   0        0 eth1

192.168.56.0    0.0.0.0         255.255.255.0   U     0      0        0 eth1
"""
DOCUMENT_BRCTL = """
bridge name bridge id   STP enabled interfaces

br100   8000.0800278f87fa no    eth2
"""
DOCUMENT_NOVA_CONF = """
--public_interface=eth1

--fixed_range=10.0.0.0/24

--flat_interface=eth2

--flat_network_bridge=br100

--network_manager=nova.network.manager.FlatDHCPManager
"""
DOCUMENT_SYSLOG = """
Jul 30 23:12:06 controller-1 dnsmasq-dhcp[2729]: DHCP, static leases only on 10.0.0.2, lease time 2m
Jul 31 01:00:45 controller-1 dnsmasq-dhcp[2729]: DHCPOFFER(br100) 10.0.0.2 fa:16:3e:2c:e8:ec
Jul 31 01:00:45 controller-1 dnsmasq-dhcp[2729]: DHCPREQUEST(br100) 10.0.0.2 fa:16:3e:2c:e8:ec
Jul 31 01:00:45 controller-1 dnsmasq-dhcp[2729]: DHCPACK(br100) 10.0.0.2 fa:16:3e:2c:e8:ec cirros
"""


@pytest.fixture
def topo() -> Topology:
    return load_topology(DEFAULT_TOPOLOGY)


def test_controller_expectations_are_the_documents(topo: Topology) -> None:
    assert_listing(DOCUMENT_ROUTE_N, expect.controller_routes(topo), "route -n")
    assert_listing(DOCUMENT_BRCTL, expect.controller_brctl(topo, "08:00:27:8f:87:fa"), "brctl show")
    assert expect.nova_conf_head(topo) == normalise(DOCUMENT_NOVA_CONF)
    assert expect.dnsmasq_args(topo) == DOCUMENT_DNSMASQ
    assert expect.hostsfile_line(topo, "fa:16:3e:2c:e8:ec", "cirros", "10.0.0.2") == (
        "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2")
    syslog = [line.split(": ", 1)[1] for line in normalise(DOCUMENT_SYSLOG)]
    assert syslog == [expect.dnsmasq_started_line(topo),
                      *expect.dhcp_exchange(topo, "10.0.0.2", "fa:16:3e:2c:e8:ec", "cirros")]


def test_alt_topology_routes_sorted_by_destination() -> None:
    alt = load_topology(REPO / "topologies" / "alt.toml")
    assert expect.controller_routes(alt)[2:] == [
        "0.0.0.0 192.168.77.1 0.0.0.0 UG 100 0 0 eth1",
        "10.42.8.0 0.0.0.0 255.255.252.0 U 0 0 0 brflat",
        "169.254.0.0 0.0.0.0 255.255.0.0 U 1000 0 0 eth1",
        "192.168.77.0 0.0.0.0 255.255.255.0 U 0 0 0 eth1"]
    assert "--dhcp-range=10.42.8.2,static,300s" in expect.dnsmasq_args(alt)
    assert expect.dnsmasq_started_line(alt).endswith("lease time 5m")


def test_dnsmasq_time() -> None:
    assert [expect.dnsmasq_time(s) for s in (120, 300, 3600, 86400, 90)] == ["2m", "5m", "1h", "1d", "90s"]


def test_listing_diff_names_each_kind_of_difference() -> None:
    want = ["-A INPUT -j a", "-A INPUT -j b", "-A X -j c", "-A X -j d"]
    assert listing_diff(want, "\n  -A INPUT -j a\n\n-A  INPUT -j b\n-A X -j c\n-A X -j d\n") is None
    diff = listing_diff(want, ["-A INPUT -j b", "-A INPUT -j a", "-A X -j c", "-A X -j e", "-A X -j c"])
    assert diff is not None
    report = diff.split("--- expected")[0].splitlines()
    # a and b swapped: one of them is reported as out of place.
    assert report[:2] + report[3:] == ["missing:    -A X -j d", "extra:      -A X -j e", "duplicated: -A X -j c"]
    assert report[2] in ("misordered: -A INPUT -j a", "misordered: -A INPUT -j b")
    with pytest.raises(AssertionError, match="filter differs from the expected listing:\nmissing:    -A X -j d"):
        assert_listing(want, want[:3], "filter")


def test_sd_notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify() is False
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert systemd.notify() is True
        assert server.recv(64) == b"READY=1"


# --- the comparator, one fault at a time, on the document's own listing ---------------------------

@pytest.fixture
def filter_listing(topo: Topology) -> list[str]:
    return expect.controller_filter(topo)


def report_lines(diff: str | None) -> list[str]:
    assert diff is not None, "the comparator saw no difference"
    return diff.split("\n--- expected")[0].splitlines()


def test_comparator_names_a_missing_line(filter_listing: list[str]) -> None:
    gone = "-A nova-network-INPUT -i br100 -p udp -m udp --dport 53 -j ACCEPT"
    assert report_lines(listing_diff(filter_listing, [x for x in filter_listing if x != gone])) == [
        f"missing:    {gone}"]


def test_comparator_names_an_extra_line(filter_listing: list[str]) -> None:
    added = "-A nova-network-FORWARD -i eth1 -j ACCEPT"
    at = filter_listing.index("-A nova-network-FORWARD -o br100 -j ACCEPT") + 1
    assert report_lines(listing_diff(filter_listing, filter_listing[:at] + [added] + filter_listing[at:])) == [
        f"extra:      {added}"]


def test_comparator_names_a_misordered_line(filter_listing: list[str]) -> None:
    # nova-api applied after nova-network: its INPUT jump first (the document has it second).
    first, second = "-A INPUT -j nova-network-INPUT", "-A INPUT -j nova-api-INPUT"
    swapped = list(filter_listing)
    i, j = swapped.index(first), swapped.index(second)
    swapped[i], swapped[j] = second, first
    report = report_lines(listing_diff(filter_listing, swapped))
    assert report in ([f"misordered: {first}"], [f"misordered: {second}"])


def test_comparator_shows_both_listings(filter_listing: list[str]) -> None:
    diff = listing_diff(filter_listing, filter_listing[:-1])
    assert diff is not None
    expected, actual = diff.split("\n--- expected\n")[1].split("\n--- actual\n")
    assert expected.splitlines() == filter_listing and actual.splitlines() == filter_listing[:-1]


def test_lines_in_order_names_missing_and_misordered() -> None:
    text = "a 1\nb 2\nc 3\n"
    assert lines_in_order([("a", r"^a \d$"), ("c", r"^c")], text) is None
    missing = lines_in_order([("a", r"^a"), ("z", r"^z$")], text)
    assert missing is not None and missing.splitlines()[0] == "missing:    'z' /^z$/"
    assert "found:      'a' on line 1" in missing
    misordered = lines_in_order([("c", r"^c"), ("a", r"^a")], text)
    assert misordered is not None and misordered.splitlines()[0] == (
        "misordered: 'a' is on line 1, before the previous match")
    with pytest.raises(AssertionError, match="console lacks a line the document shows:\nmissing:    'z'"):
        assert_lines_in_order([("z", "^z$")], text, "console")


# --- the named omissions ------------------------------------------------------------------------

VAGRANT = ("vagrant-management-nic",)


def test_document_view_drops_virbr0_and_vagrants_nic_by_name(topo: Topology) -> None:
    routes = ["Kernel IP routing table", "Destination Gateway Genmask Flags Metric Ref Use Iface",
              "0.0.0.0 192.168.121.1 0.0.0.0 UG 0 0 0 eth0",
              "0.0.0.0 192.168.56.101 0.0.0.0 UG 100 0 0 eth1",
              "192.168.121.0 0.0.0.0 255.255.255.0 U 0 0 0 eth0",
              "192.168.122.0 0.0.0.0 255.255.255.0 U 0 0 0 virbr0"]
    on_a_vm_with_eth0 = expect.omissions(topo, VAGRANT, {"lo", "eth0", "eth1", "eth2"})
    kept, dropped = expect.document_view(routes, "route", topo, on_a_vm_with_eth0)
    assert kept == routes[:2] + [routes[3]]
    assert dropped == [f"[vagrant-management-nic] {routes[2]}", f"[vagrant-management-nic] {routes[4]}",
                       f"[virbr0] {routes[5]}"]
    rules = ["-N LIBVIRT_INP", "-A INPUT -j LIBVIRT_INP", "-A FORWARD -j nova-filter-top",
             "-A LIBVIRT_INP -i virbr0 -p udp -m udp --dport 53 -j ACCEPT", "-A FORWARD -i virbr0 -o virbr0 -j ACCEPT",
             "-A POSTROUTING -s 192.168.122.0/24 -d 224.0.0.0/24 -j RETURN",
             "-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-9"]
    kept, dropped = expect.document_view(rules, "iptables", topo, on_a_vm_with_eth0)
    assert kept == [rules[2], rules[6]] and len(dropped) == 5
    bridges = ["bridge name\tbridge id\t\tSTP enabled\tinterfaces", "br100\t\t8000.0800278f87fa\tno\t\teth2",
               "\t\t\t\t\t\t\tvnet0", "virbr0\t\t8000.525400000001\tyes\t\tvirbr0-nic", "\t\t\t\t\t\t\tvnet9"]
    kept, dropped = expect.document_view(bridges, "brctl", topo, on_a_vm_with_eth0)
    assert kept == bridges[:3] and [d.split()[0] for d in dropped] == ["[virbr0]", "[virbr0]"]


@pytest.mark.parametrize(("declared", "links"), [
    ((), {"lo", "eth1", "eth2"}),                 # containers: no provider declares it
    (VAGRANT, {"lo", "eth1", "eth2"}),            # a VM without Vagrant's NIC (flatbed's Vagrantfile)
])
def test_a_stray_eth0_rule_or_route_is_kept_where_no_such_nic_exists(topo: Topology, declared: tuple[str, ...],
                                                                    links: set[str]) -> None:
    """Essex's default public_interface is eth0: a rule or route naming it is a stray one unless the
    node has Vagrant's NIC, so the comparison with the document's listing sees (and fails on) it."""
    applied = expect.omissions(topo, declared, links)
    assert [o.name for o in applied] == ["virbr0"]
    stray_rule = "-A nova-network-snat -s 10.0.0.0/24 -o eth0 -j SNAT --to-source 192.168.56.200"
    stray_route = "0.0.0.0 192.168.121.1 0.0.0.0 UG 0 0 0 eth0"
    assert expect.document_view([stray_rule], "iptables", topo, applied) == ([stray_rule], [])
    assert expect.document_view([stray_route], "route", topo, applied) == ([stray_route], [])
    listing = expect.controller_nat(topo) + [stray_rule]
    with pytest.raises(AssertionError, match="extra: +-A nova-network-snat -s 10.0.0.0/24 -o eth0"):
        assert_listing(expect.controller_nat(topo), expect.document_view(listing, "iptables", topo, applied)[0], "nat")


def test_an_unknown_declared_omission_is_refused(topo: Topology) -> None:
    with pytest.raises(ValueError, match="unknown omission vagrant-nic"):
        expect.omissions(topo, ("vagrant-nic",), {"eth0"})


def test_no_omission_hides_a_topology_interface(tmp_path: Path) -> None:
    # A topology whose management NIC is eth0: Vagrant's omission must not drop its lines.
    text = (REPO / "topologies" / "default.toml").read_text().replace('interface = "eth1"', 'interface = "eth0"')
    path = tmp_path / "eth0.toml"
    path.write_text(text)
    topo = load_topology(path)
    applied = expect.omissions(topo, VAGRANT, {"lo", "eth0", "eth2"})
    assert [o.name for o in applied] == ["virbr0"]
    line = "0.0.0.0 192.168.56.101 0.0.0.0 UG 100 0 0 eth0"
    assert expect.document_view([line], "route", topo, applied) == ([line], [])
    with pytest.raises(ValueError, match="unknown listing kind 'ip'"):
        expect.document_view([], "ip", topo)


# --- who reaches a guest ------------------------------------------------------------------------

def test_ping_reasons_follow_allow_same_net_traffic(topo: Topology) -> None:
    nine = expect.Identity(9)
    ctl = expect.ping_guest_from(topo, "controller", nine)
    assert ctl.answered and ctl.decided_by == "-A nova-compute-inst-9 -s 10.0.0.0/24 -j ACCEPT"
    own = expect.ping_guest_from(topo, "own-compute", nine)
    assert not own.answered and own.decided_by == "-A nova-compute-inst-9 -j nova-compute-sg-fallback"
    assert "EPERM" in own.reason
    outside = expect.ping_guest_from(topo, "outside", nine)
    assert not outside.answered and outside.decided_by is None and "ip_forward=0" in outside.reason
    strict = load_topology(REPO / "topologies" / "no-same-net.toml")
    for source in ("controller", "guest"):
        reach = expect.ping_guest_from(strict, source, nine)
        assert not reach.answered and reach.decided_by == "-A nova-compute-inst-9 -j nova-compute-sg-fallback"
    with pytest.raises(ValueError, match="unknown ping source"):
        expect.ping_guest_from(topo, "moon", nine)


def test_cloud_setup_failures() -> None:
    console = ("cloud-setup: checking http://169.254.169.254/2009-04-04/meta-data/instance-id\n"
               "wget: can't connect to remote host (169.254.169.254): Connection refused\n"
               "cloud-setup: failed 1/30: up 5.77. request failed\n"
               "cloud-setup: failed 2/30: up 6.84. request failed\n"
               "cloud-setup: failed 3/30: up 7.10. iid had x-1\n")
    assert expect.cloud_setup_failures(console) == [1, 2]


def test_outside_routes_send_the_flat_range_to_the_controller(topo: Topology) -> None:
    assert expect.outside_routes(topo)[2:] == ["10.0.0.0 192.168.56.200 255.255.255.0 UG 0 0 0 eth1",
                                              "192.168.56.0 0.0.0.0 255.255.255.0 U 0 0 0 eth1"]


# --- the metadata DNAT the metadata_dnat fixture requires -------------------------------------------

def test_the_documents_nat_table_has_the_metadata_dnat(topo: Topology) -> None:
    assert expect.metadata_dnat_problem(expect.controller_nat(topo), topo) is None


@pytest.mark.parametrize("dropped", [
    "-A nova-network-PREROUTING -d 169.254.169.254/32",   # the DNAT rule itself
    "-A PREROUTING -j nova-network-PREROUTING",          # the jump to its chain
])
def test_a_nat_table_without_the_metadata_dnat_fails(topo: Topology, dropped: str) -> None:
    nat = [line for line in expect.controller_nat(topo) if not line.startswith(dropped)]
    problem = expect.metadata_dnat_problem(nat, topo)
    assert problem and problem.startswith("no path from guests to the metadata service")


def test_a_dnat_to_another_port_fails(topo: Topology) -> None:
    nat = [line.replace(":8775", ":8774") for line in expect.controller_nat(topo)]
    assert "192.168.56.200:8775" in expect.metadata_dnat_problem(nat, topo)


# --- the document's console wording ---------------------------------------------------------------

def document_lines(topo: Topology) -> list[tuple[str, str]]:
    return [(line.name, line.pattern) for line in
            expect.console_network(topo, "10.0.0.2") + expect.console_metadata(topo, "10.0.0.2", "i-00000009")]


GUEST_BOOT = """Starting network...
udhcpc: started, v1.35.0
udhcpc: broadcasting discover
udhcpc: broadcasting select for 10.0.0.2, server 10.0.0.1
udhcpc: lease of 10.0.0.2 obtained from 10.0.0.1, lease time 120
deleting routers
route: SIOCDELRT: No such process
adding dns 10.0.0.1
cloud-setup: checking http://169.254.169.254/2009-04-04/meta-data/instance-id
cloud-setup: successful after 1/30 tries: up 8.29. iid=i-00000009
wget: server returned error: HTTP/1.1 404 Not Found
failed to get http://169.254.169.254/latest/meta-data/public-keys
Starting dropbear sshd: generating rsa key... generating ecdsa key... OK
===== cloud-final: system completely up in 10.2 seconds ====
  instance-id: i-00000009
  public-ipv4:{space}
  local-ipv4 : 10.0.0.2
""".replace("{space}", " ")


def test_our_guests_boot_reads_as_the_documents(topo: Topology) -> None:
    assert lines_in_order(document_lines(topo), GUEST_BOOT) is None


@pytest.mark.parametrize(("line", "replacement", "name"), [
    ("Starting dropbear sshd: generating rsa key... generating ecdsa key... OK", "Starting dropbear sshd: OK",
     "dropbear"),   # no key generated: not a first boot
    ("route: SIOCDELRT: No such process\n", "", "route SIOCDELRT"),
    ("iid=i-00000009", "iid=i-0000000a", "cloud-setup success"),
    ("local-ipv4 : 10.0.0.2", "local-ipv4 : 10.0.0.3", "local-ipv4"),
])
def test_a_console_off_the_documents_wording_fails(topo: Topology, line: str, replacement: str, name: str) -> None:
    diff = lines_in_order(document_lines(topo), GUEST_BOOT.replace(line, replacement))
    assert diff is not None and diff.splitlines()[0] == f"missing:    {name!r} " + next(
        f"/{p}/" for n, p in document_lines(topo) if n == name)


# --- ip a -------------------------------------------------------------------------------------------

def controller_links(topo: Topology, **eth2_changes) -> list[expect.Link]:
    """The controller's links as a healthy testbed shows them (what listings.links reads)."""
    from dataclasses import replace

    mac = topo.controller.macs["eth2"]
    links = [expect.Link("lo", "00:00:00:00:00:00", ("LOOPBACK", "UP", "LOWER_UP"), None,
                         ("127.0.0.1/8 scope host", "169.254.169.254/32 scope link"), 65536, ("::1/128 scope host",)),
             expect.Link("eth1", topo.controller.macs["eth1"], ("BROADCAST", "MULTICAST", "UP", "LOWER_UP"), None,
                         ("192.168.56.200/24 brd 192.168.56.255 scope global",), 1500,
                         (expect.link_local(topo.controller.macs["eth1"]),)),
             expect.Link("eth2", mac, ("BROADCAST", "MULTICAST", "PROMISC", "UP", "LOWER_UP"), "br100", (), 1500,
                         (expect.link_local(mac),)),
             expect.Link("br100", mac, ("BROADCAST", "MULTICAST", "UP", "LOWER_UP"), None,
                         ("10.0.0.1/24 brd 10.0.0.255 scope global",), 1500,
                         ("fe80::7c37:c6ff:fee2:f2a6/64 scope link",))]
    links[2] = replace(links[2], **eth2_changes)
    return links


def test_a_healthy_controllers_ip_a_is_the_expected_one(topo: Topology) -> None:
    assert_listing(expect.controller_ip_a(topo), expect.ip_a_lines(controller_links(topo)), "ip a")


@pytest.mark.parametrize(("changes", "line"), [
    ({"flags": ("BROADCAST", "MULTICAST", "UP", "LOWER_UP")}, "eth2: <BROADCAST,MULTICAST,UP,LOWER_UP>"),  # not promisc
    ({"inet": ("10.0.0.9/24 brd 10.0.0.255 scope global",)}, "inet 10.0.0.9/24"),                       # an address
    ({"master": None}, "eth2: <BROADCAST,MULTICAST,PROMISC,UP,LOWER_UP> mtu 1500"),                     # not bridged
    ({"mtu": 1450}, "mtu 1450"),
])
def test_an_eth2_off_the_documents_fails(topo: Topology, changes: dict, line: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(line)):
        assert_listing(expect.controller_ip_a(topo), expect.ip_a_lines(controller_links(topo, **changes)), "ip a")


def test_link_locals_are_eui64_of_the_mac() -> None:
    assert expect.link_local("08:00:27:9d:c4:b0") == "fe80::a00:27ff:fe9d:c4b0/64 scope link"   # the document's eth1
    assert expect.link_local("fe:16:3e:2c:e8:ec") == "fe80::fc16:3eff:fe2c:e8ec/64 scope link"  # the document's vnet0


# --- §3.1-3.3: the controller's ping of a guest, seen by tcpdump -----------------------------------------

TCPDUMP = """15:02:11.000001 ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28
15:02:11.000420 ARP, Reply 10.0.0.2 is-at fa:16:3e:2c:e8:ec, length 28
15:02:11.000500 IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 7, seq 1, length 64
15:02:11.000900 IP 10.0.0.2 > 10.0.0.1: ICMP echo reply, id 7, seq 1, length 64"""


def test_the_ping_path_reads_the_documents_exchange(topo: Topology) -> None:
    assert lines_in_order(expect.ping_path(topo, "10.0.0.2", "fa:16:3e:2c:e8:ec"), TCPDUMP) is None
    assert expect.route_to_guest(topo, "10.0.0.2") == "10.0.0.2 dev br100 src 10.0.0.1"


@pytest.mark.parametrize(("old", "new", "name"), [
    ("tell 10.0.0.1", "tell 192.168.56.200", "ARP request"),        # another source address chosen
    ("is-at fa:16:3e:2c:e8:ec", "is-at fe:16:3e:2c:e8:ec", "ARP reply"),  # the tap's MAC answering
    ("IP 10.0.0.1 > 10.0.0.2: ICMP echo request", "IP 192.168.56.200 > 10.0.0.2: ICMP echo request", "echo request"),
])
def test_a_path_off_the_documents_fails(topo: Topology, old: str, new: str, name: str) -> None:
    diff = lines_in_order(expect.ping_path(topo, "10.0.0.2", "fa:16:3e:2c:e8:ec"), TCPDUMP.replace(old, new))
    assert diff is not None and diff.splitlines()[0].startswith(f"missing:    {name!r}")
