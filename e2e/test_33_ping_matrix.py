"""§3.3-3.6 of the document: who can ping a guest, and why.

Two guests, A on the first compute and B on the second (the session's ``guest_pair``). Each case
checks its outcome *and* the document's reason for it, with a witness that does not depend on
timing (``flatbed/checks/expect.py`` derives outcome and reason from the topology). An accepted ping's
first echo is NEW to conntrack and meets the deciding rule; the rest of it is ESTABLISHED. A
dropped echo never becomes a connection, so each one meets the DROP.

- §3.3 the controller pings A ✓: its source, the flat gateway, is in the flat subnet — the
  ``-s <cidr> -j ACCEPT`` rule of A's instance chain on A's compute counts the echoes;
- §3.1-3.3 the way of that ping: the controller routes A's address out of its bridge from the
  gateway address (§3.2's source address selection); with its ARP entry deleted (``arp -d``),
  tcpdump shows the ARP request and A's reply (its MAC), then the echo request and reply, on the
  controller's bridge and on A's compute's eth2, bridge and A's tap;
- §3.4 A's own compute pings A ✗: the compute sends from its management address, so its OUTPUT
  goes through A's chain to ``sg-fallback``'s DROP: that jump's counter rises, a raw send fails
  with EPERM, and ping never says ``Network is unreachable`` (the compute does route there);
- §3.5 A pings B and B pings A ✓ (busybox ping inside the guests, across the two computes): B's
  (A's) same-subnet rule counts them;
- §3.6 the outside host (routing the flat range via the controller) pings A ✗: tcpdump sees the
  echoes arrive on the controller's management NIC, the controller's ``Ip InAddrErrors`` counts
  each one it would have had to forward, and none appears on the flat bridge;
- A pings the outside host ✗: the echoes arrive on the controller's flat bridge and never leave
  its management NIC, for the same reason;
- that reason: ``net.ipv4.ip_forward`` is still 0 on the controller (Essex never set it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flatbed import domains
from flatbed.checks import expect, identity, listings
from flatbed.checks.compare import assert_lines_in_order, assert_listing
from flatbed.checks.guestshell import GuestShell, guest_shell
from flatbed.checks.identity import identity_of
from flatbed.checks.traffic import capturing, icmp_send_errno, ip_mib, ping_node, rule_deltas, wait_pingable
from flatbed.cloud import Guest
from flatbed.node import Node
from flatbed.testbed import Testbed
from flatbed.topology import Topology

ARP_ATTEMPTS = 3  # see test_controller_ping_path

pytestmark = pytest.mark.flat_pcap  # a failing ping's bundle gets the flat network's traffic

COUNT = 3  # echoes per ping


@pytest.fixture(scope="module")
def a(guest_pair: list[Guest]) -> Guest:
    return guest_pair[0]


@pytest.fixture(scope="module")
def b(guest_pair: list[Guest]) -> Guest:
    return guest_pair[1]


@pytest.fixture(scope="module")
def shells(testbed: Testbed, a: Guest, b: Guest) -> Iterator[dict[str, GuestShell]]:
    with guest_shell(testbed, a) as in_a, guest_shell(testbed, b) as in_b:
        yield {a.name: in_a, b.name: in_b}


def reach(topology: Topology, source: str, target: Guest) -> expect.Reach:
    return expect.ping_guest_from(topology, source, identity_of(target))


def test_controller_pings_a_guest(controller: Node, a: Guest, topology: Topology) -> None:
    """§3.3: ✓, accepted by the same-subnet rule of the guest's chain on its compute."""
    why = reach(topology, "controller", a)
    assert why.answered and why.decided_by
    wait_pingable(controller, a.ip)  # the ARP entry and the bridge's forwarding table are warm
    with rule_deltas(a.node, identity_of(a).chain) as deltas:
        ping = ping_node(controller, a.ip, COUNT)
        assert ping.answered, f"{ping}\nexpected answered: {why.reason}"
        assert deltas()[why.decided_by] >= 1, f"{why.decided_by} did not count the first echo: {deltas()}"


def test_controller_ping_path(controller: Node, a: Guest, topology: Topology) -> None:
    """§3.1-3.3: the controller routes the guest's address out of its bridge from the gateway address
    (the source the kernel chooses, §3.2); with its ARP entry deleted (the document's ``arp -d``), the
    ARP request is broadcast, and tcpdump sees the request, the guest's reply with its MAC, the echo
    request and the reply on the controller's bridge and on the compute's eth2, bridge and the
    guest's tap — the one broadcast domain of the flat network."""
    address = identity.rule_address(a)
    route = " ".join(controller.check(["ip", "route", "get", address]).split())
    assert route.startswith(expect.route_to_guest(topology, address) + " "), route
    wait_pingable(controller, address)  # the guest is up; the entry this creates is deleted next
    flat, tap = topology.flat, domains.nics(a.node, identity_of(a).instance_name)[0].tap
    flow = f"(arp or icmp) and host {address}"
    gateway = str(topology.flat.gateway)
    # The guest's own ARP for the gateway (its cache entry expiring) may cross the deleted entry:
    # the controller then learns the MAC from it and sends no request. The document's exchange is
    # the controller's, so such an attempt is measured again (at most ARP_ATTEMPTS), never accepted.
    for attempt in range(1, ARP_ATTEMPTS + 1):
        controller.check(["ip", "neigh", "del", address, "dev", flat.bridge])
        with capturing(controller, {flat.bridge: (flow, False)}) as on_controller, \
                capturing(a.node, {name: (flow, False) for name in (flat.interface, flat.bridge, tap)}) as on_compute:
            ping = ping_node(controller, address, 1)
        print(f"attempt {attempt}:", ping, *on_controller.values(), *on_compute.values(), sep="\n")
        crossed = any(f"ARP, Request who-has {gateway} tell {address}," in line
                      for line in on_controller[flat.bridge].packets or [])
        if not crossed:
            break
    assert ping.answered, ping
    path = expect.ping_path(topology, address, a.mac)
    for where, capture in [(controller.name, on_controller[flat.bridge]),
                           *((a.compute, c) for c in on_compute.values())]:
        assert_lines_in_order(path, "\n".join(capture.packets or []), f"tcpdump -i {capture.interface} on {where}")


def test_own_compute_cannot_ping_its_guest(a: Guest, topology: Topology) -> None:
    """§3.4: ✗ in the compute's own OUTPUT: sg-fallback's DROP, the send fails with EPERM."""
    why = reach(topology, "own-compute", a)
    assert not why.answered and why.decided_by
    with rule_deltas(a.node, identity_of(a).chain) as deltas:
        ping = ping_node(a.node, a.ip, COUNT)
        errno = icmp_send_errno(a.node, a.ip)
        matched = deltas()
    print(ping, f"raw send: {errno}", sep="\n")
    assert not ping.answered, f"{ping}\nexpected no answer: {why.reason}"
    # iputils prints "sendmsg: Operation not permitted" or nothing; never a missing route.
    assert "Network is unreachable" not in ping.output, f"{a.compute} has no route to {a.ip}:\n{ping}"
    assert errno == "EPERM", f"a raw ICMP send to {a.ip} on {a.compute} gave {errno}, not EPERM: {why.reason}"
    assert matched[why.decided_by] >= COUNT + 1, f"{why.decided_by} did not count the sends: {matched}"


@pytest.mark.parametrize("direction", ["a-to-b", "b-to-a"])
def test_guests_ping_each_other_across_computes(direction: str, a: Guest, b: Guest,
                                                shells: dict[str, GuestShell], topology: Topology) -> None:
    """§3.5: ✓ between guests on two computes (one broadcast domain), accepted by the same-subnet rule."""
    source, target = (a, b) if direction == "a-to-b" else (b, a)
    assert source.compute != target.compute
    why = reach(topology, "guest", target)
    assert why.answered and why.decided_by
    with rule_deltas(target.node, identity_of(target).chain) as deltas:
        ping = shells[source.name].ping(target.ip, COUNT)
        assert ping.answered, f"{ping}\nexpected answered: {why.reason}"
        assert deltas()[why.decided_by] >= 1, f"{why.decided_by} did not count the first echo: {deltas()}"


def test_outside_host_cannot_ping_a_guest(outside: Node, controller: Node, a: Guest, topology: Topology) -> None:
    """§3.6: ✗ — the echoes reach the controller's management NIC and go no further."""
    why = reach(topology, "outside", a)
    assert not why.answered
    src = str(topology.outside.address)
    # The document's host machine routes the flat range via the controller (else its pings go nowhere).
    assert_listing(expect.outside_routes(topology), listings.route_n(outside), f"{outside.name}: route -n")
    flow = f"icmp and src host {src} and dst host {a.ip}"
    mgmt, bridge = topology.management.interface, topology.flat.bridge
    before = ip_mib(controller)
    with capturing(controller, {mgmt: (flow, True), bridge: (flow, False)}) as seen:
        ping = ping_node(outside, a.ip, COUNT, busybox=True)
        dropped = ip_mib(controller)["InAddrErrors"] - before["InAddrErrors"]
    print(ping, *seen.values(), f"InAddrErrors +{dropped}", sep="\n")
    assert not ping.answered, f"{ping}\nexpected no answer: {why.reason}"
    assert len(seen[mgmt].packets or []) == COUNT, f"the echoes did not all arrive on {mgmt}:\n{seen[mgmt]}"
    assert dropped >= COUNT, f"not dropped as unforwardable (InAddrErrors +{dropped}): {why.reason}"
    assert seen[bridge].packets == [], f"an echo reached {bridge}: {why.reason}\n{seen[bridge]}"


def test_guest_cannot_ping_the_outside_host(shells: dict[str, GuestShell], a: Guest, controller: Node,
                                           topology: Topology) -> None:
    """The way back: ✗ — the guest's echoes reach the controller's bridge and never leave eth1."""
    why = expect.ping_outside_from_guest(topology)
    dst = str(topology.outside.address)
    flow = f"icmp and src host {a.ip} and dst host {dst}"
    mgmt, bridge = topology.management.interface, topology.flat.bridge
    before = ip_mib(controller)
    with capturing(controller, {bridge: (flow, True), mgmt: (f"icmp and host {dst} and host {a.ip}", False)}) as seen:
        ping = shells[a.name].ping(dst, COUNT)
        dropped = ip_mib(controller)["InAddrErrors"] - before["InAddrErrors"]
    print(ping, *seen.values(), f"InAddrErrors +{dropped}", sep="\n")
    assert not ping.answered, f"{ping}\nexpected no answer: {why.reason}"
    assert len(seen[bridge].packets or []) == COUNT, f"the echoes did not all arrive on {bridge}:\n{seen[bridge]}"
    assert dropped >= COUNT, f"not dropped as unforwardable (InAddrErrors +{dropped}): {why.reason}"
    assert seen[mgmt].packets == [], f"an echo left {mgmt}: {why.reason}\n{seen[mgmt]}"


def test_the_controller_does_not_forward(controller: Node) -> None:
    """The reason of the last two cases, as the document's Essex left it."""
    value = listings.sysctl(controller, "net.ipv4.ip_forward")
    assert value == "0", f"{controller.name} forwards (net.ipv4.ip_forward={value}); Essex never enabled it"

