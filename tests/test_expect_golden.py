"""Golden: for the default topology, flatbed/checks/expect.py gives back the document's literal listings.

The e2e suite compares nodes with ``flatbed.checks.expect``, which builds every listing from the
topology (never from the stack's own rule builders). This module pins those builders to the
document's text, character for character once both sides are in iptables' canonical form
(``-A`` rules re-printed the way ``iptables -S`` prints them, blank lines and runs of blanks
dropped): the §2.1 filter and nat blocks, §2.2 routes, the §2.1 dnsmasq command line, the §2.4
hostsfile line, the §2.5 compute listing (instance id 9, 10.0.0.2) and console, the §2.6 guest
view, and the names of instance 10. Each elision in the document (``... (virbr0 stuff
omitted) ...``) must be one of the named omissions of flatbed/checks/expect.py.
"""

from __future__ import annotations

import re

import pytest
from fake_iptables import canonical as canonical_rule
from test_checks_expect import DOCUMENT_BRCTL, DOCUMENT_ROUTE_N
from test_stack_firewall import DOCUMENT_COMPUTE
from test_stack_iptables import DOCUMENT_FILTER, DOCUMENT_NAT
from test_stack_linux_net import DOCUMENT_DNSMASQ

from flatbed.checks import expect
from flatbed.checks.compare import assert_lines_in_order, listing_diff, normalise
from flatbed.topology import DEFAULT_TOPOLOGY, Topology
from flatbed.topology import load as load_topology

# "... (virbr0 stuff omitted) ..." and the like: where the document left lines out.
ELISION = re.compile(r"^\.\.\. \((?P<what>.+)\) \.\.\.$")

# The document, §2.2: `route -n` on compute-1, verbatim (virbr0's route included).
DOCUMENT_COMPUTE_ROUTE_N = """
Kernel IP routing table

Destination     Gateway         Genmask         Flags Metric Ref    Use Iface

0.0.0.0         192.168.56.101  0.0.0.0         UG    100    0        0 eth1

169.254.0.0     0.0.0.0         255.255.0.0     U     1000   0        0 eth1

192.168.56.0    0.0.0.0         255.255.255.0   U     0      0        0 eth1

192.168.122.0   0.0.0.0         255.255.255.0   U     0      0        0 virbr0
"""

# The document, §2.4: the hostsfile after the boot, verbatim.
DOCUMENT_HOSTSFILE = "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2"

# The document, §2.5: console.log of instance-00000009, verbatim (cirros 0.3.0's wording).
DOCUMENT_CONSOLE = """
...

Starting network...

udhcpc (v1.18.5) started

Sending discover...

Sending select for 10.0.0.2...

Lease of 10.0.0.2 obtained, lease time 120

deleting routers

route: SIOCDELRT: No such process

adding dns 10.0.0.1

cloud-setup: checking http://169.254.169.254/2009-04-04/meta-data/instance-id

cloud-setup: successful after 1/30 tries: up 4.74. iid=i-00000009

wget: server returned error: HTTP/1.1 404 Not Found

failed to get http://169.254.169.254/latest/meta-data/public-keys

Starting dropbear sshd: generating rsa key... generating dsa key... OK

===== cloud-final: system completely up in 6.82 seconds ====

  instance-id: i-00000009

  public-ipv4:

  local-ipv4 : 10.0.0.2

...
"""
# Our guest's wording of the same boot (busybox 1.35's udhcpc, dropbear 2022's key types).
GUEST_CONSOLE = "\n".join([
    "Starting network...",
    "udhcpc: started, v1.35.0",
    "udhcpc: broadcasting discover",
    "udhcpc: broadcasting select for 10.0.0.2, server 10.0.0.1",
    "udhcpc: lease of 10.0.0.2 obtained from 10.0.0.1, lease time 120",
    "deleting routers",
    "route: SIOCDELRT: No such process",
    "adding dns 10.0.0.1",
    "cloud-setup: checking http://169.254.169.254/2009-04-04/meta-data/instance-id",
    "cloud-setup: successful after 1/30 tries: up 5.12. iid=i-00000009",
    "wget: server returned error: HTTP/1.1 404 Not Found",
    "failed to get http://169.254.169.254/latest/meta-data/public-keys",
    "Starting dropbear sshd: generating rsa key... generating ecdsa key... OK",
    "===== cloud-final: system completely up in 7.53 seconds ====",
    "  instance-id: i-00000009",
    "  public-ipv4: ",
    "  local-ipv4 : 10.0.0.2",
])

# The document, §2.1 and §2.5: `ip a` of the controller (eth1, eth2, br100) and compute-1's vnet0, verbatim.
DOCUMENT_CONTROLLER_IP_A = """
3: eth1:  mtu 1500 qdisc pfifo_fast state UNKNOWN qlen 1000
    link/ether 08:00:27:9d:c4:b0 brd ff:ff:ff:ff:ff:ff
    inet 192.168.56.200/24 brd 192.168.56.255 scope global eth1
    inet6 fe80::a00:27ff:fe9d:c4b0/64 scope link
       valid_lft forever preferred_lft forever
4: eth2:  mtu 1500 qdisc pfifo_fast master br100 state UNKNOWN qlen 1000
    link/ether 08:00:27:8f:87:fa brd ff:ff:ff:ff:ff:ff
    inet6 fe80::a00:27ff:fe8f:87fa/64 scope link
       valid_lft forever preferred_lft forever
5: br100:  mtu 1500 qdisc noqueue state UP
    link/ether 08:00:27:8f:87:fa brd ff:ff:ff:ff:ff:ff
    inet 10.0.0.1/24 brd 10.0.0.255 scope global br100
    inet6 fe80::7053:6bff:fe43:4dfd/64 scope link
       valid_lft forever preferred_lft forever
"""
DOCUMENT_VNET0 = """
10: vnet0:  mtu 1500 qdisc pfifo_fast master br100 state UNKNOWN qlen 500
    link/ether fe:16:3e:2c:e8:ec brd ff:ff:ff:ff:ff:ff
    inet6 fe80::fc16:3eff:fe2c:e8ec/64 scope link
       valid_lft forever preferred_lft forever
"""

# The document, §2.6: inside the guest, eth0's address line and `route -n`, verbatim.
DOCUMENT_GUEST_INET = "    inet 10.0.0.2/24 brd 10.0.0.255 scope global eth0"
DOCUMENT_GUEST_ROUTE_N = """
Kernel IP routing table

Destination     Gateway         Genmask         Flags Metric Ref    Use Iface

0.0.0.0         10.0.0.1        0.0.0.0         UG    0      0        0 eth0

10.0.0.0        0.0.0.0         255.255.255.0   U     0      0        0 eth0
"""


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load_topology(DEFAULT_TOPOLOGY)


def canonical(text: str) -> str:
    """The document's listing in iptables' canonical form: blank lines and elisions dropped,
    blanks collapsed, every ``-A CHAIN RULE`` re-printed as ``iptables -S`` prints RULE."""
    lines = []
    for line in normalise(text):
        if ELISION.match(line):
            continue
        if line.startswith("-A "):
            _, chain, rule = line.split(" ", 2)
            line = f"-A {chain} {canonical_rule(rule)}"
        lines.append(line)
    return "\n".join(lines)


def assert_golden(document: str, expected: list[str], what: str) -> None:
    """Character for character, with the comparator's diff when not."""
    got = "\n".join(expected)
    assert got == canonical(document), f"{what}:\n{listing_diff(canonical(document), expected)}"


def test_controller_filter_is_the_documents(topo: Topology) -> None:
    assert_golden(DOCUMENT_FILTER, expect.controller_filter(topo), "§2.1 iptables -t filter -S")


def test_controller_nat_is_the_documents(topo: Topology) -> None:
    assert_golden(DOCUMENT_NAT, expect.controller_nat(topo), "§2.1 iptables -t nat -S")


def test_controller_route_and_brctl_are_the_documents(topo: Topology) -> None:
    assert_golden(DOCUMENT_ROUTE_N, expect.controller_routes(topo), "§2.1 route -n")
    assert_golden(DOCUMENT_BRCTL, expect.controller_brctl(topo, "08:00:27:8f:87:fa"), "§2.1 brctl show")


def test_dnsmasq_flags_are_the_documents(topo: Topology) -> None:
    assert expect.dnsmasq_args(topo) == DOCUMENT_DNSMASQ


def test_hostsfile_line_is_the_documents(topo: Topology) -> None:
    assert expect.hostsfile_line(topo, "fa:16:3e:2c:e8:ec", "cirros", "10.0.0.2") == DOCUMENT_HOSTSFILE


def test_compute_listing_with_instance_9_is_the_documents(topo: Topology) -> None:
    assert_golden(DOCUMENT_COMPUTE, expect.compute_filter(topo, [(9, "10.0.0.2")]), "§2.5 iptables -S")


def test_compute_routes_are_the_documents_without_virbr0(topo: Topology) -> None:
    document = normalise(DOCUMENT_COMPUTE_ROUTE_N)
    kept, dropped = expect.document_view(document, "route", topo)
    assert dropped == ["[virbr0] 192.168.122.0 0.0.0.0 255.255.255.0 U 0 0 0 virbr0"]
    assert_golden("\n".join(kept), expect.compute_routes(topo), "§2.2 route -n")


def test_every_elision_of_the_document_is_a_named_omission() -> None:
    elided = [m.group("what") for text in (DOCUMENT_FILTER, DOCUMENT_NAT, DOCUMENT_COMPUTE)
              for m in map(ELISION.match, normalise(text)) if m]
    assert elided == ["virbr0 stuff omitted"]
    names = {o.name for o in expect.DOCUMENT_OMITS}
    assert all(what.split()[0] in names for what in elided)


def test_console_sequence_matches_the_documents_and_our_guests(topo: Topology) -> None:
    iid = expect.Identity(9).ec2_id
    sequence = [(line.name, line.pattern) for line in
                expect.console_network(topo, "10.0.0.2") + expect.console_metadata(topo, "10.0.0.2", iid)]
    assert_lines_in_order(sequence, "\n".join(normalise_console(DOCUMENT_CONSOLE)), "the document's console")
    assert_lines_in_order(sequence, GUEST_CONSOLE, "our guest's console")


def normalise_console(text: str) -> list[str]:
    """The document's console without the blank lines its web page put between lines."""
    return [line for line in text.splitlines() if line.strip()]


def test_guest_view_is_the_documents(topo: Topology) -> None:
    assert expect.guest_inet(topo, "10.0.0.2") == DOCUMENT_GUEST_INET.strip()
    assert_golden(DOCUMENT_GUEST_ROUTE_N, expect.guest_routes(topo), "§2.6 route -n in the guest")


def test_instance_9_and_10_names() -> None:
    nine, ten = expect.Identity(9), expect.Identity(10)
    assert (nine.instance_name, nine.ec2_id, nine.chain) == ("instance-00000009", "i-00000009", "nova-compute-inst-9")
    assert (ten.instance_name, ten.ec2_id, ten.chain) == ("instance-0000000a", "i-0000000a", "nova-compute-inst-10")


def test_first_addresses(topo: Topology) -> None:
    assert [expect.nth_address(topo, n) for n in range(2)] == ["10.0.0.2", "10.0.0.3"]


def document_ip_a(text: str) -> list[str]:
    """The document's ``ip a`` without what expect.IP_A_NOT_COMPARED names (index, qdisc, state,
    qlen, the lifetimes; its web page lost the flags), a bridge's link-local as the expectation
    writes it."""
    lines = []
    for line in normalise(text):
        if line.startswith("valid_lft"):
            continue
        line = re.sub(r"^\d+: (\S+) (.*)$", r"\1 \2", line)
        line = re.sub(r" (qdisc|state|qlen) \S+", "", line)
        line = line.replace(" brd ff:ff:ff:ff:ff:ff", "")
        lines.append(line)
    return lines


def without_flags(lines: list[str]) -> list[str]:
    return [re.sub(r" <[A-Z_,]+>", "", " ".join(line.split())) for line in lines]


def test_controller_ip_a_is_the_documents(topo: Topology) -> None:
    """eth1, eth2 and br100 line for line (lo is elided in the document, flags lost by its web page)."""
    expected = without_flags(expect.controller_ip_a(topo))
    shown = expected[expected.index("eth1: mtu 1500"):]
    document = document_ip_a(DOCUMENT_CONTROLLER_IP_A)
    bridge_ll = "inet6 fe80::7053:6bff:fe43:4dfd/64 scope link"
    assert shown == [line if line != bridge_ll else "inet6 <link-local of another MAC>/64 scope link"
                     for line in document]
    # the bridge's link-local is not its MAC's: the one the expectation cannot derive
    assert expect.link_local("08:00:27:8f:87:fa") != bridge_ll.split()[1] + " scope link"


def test_compute_tap_in_ip_a_is_the_documents(topo: Topology) -> None:
    expected = without_flags(expect.compute_ip_a(topo, topo.computes[0], [("vnet0", "fa:16:3e:2c:e8:ec")]))
    assert expected[expected.index("vnet0: mtu 1500 master br100"):] == document_ip_a(DOCUMENT_VNET0)
