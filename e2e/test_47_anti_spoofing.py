"""Anti-spoofing, proven from inside a guest: what Essex's ``nova-base`` stops and what it does not.

Every instance's NIC is filtered by ``nova-base`` (libvirt's no-mac-spoofing, no-ip-spoofing,
no-arp-spoofing, allow-dhcp-server), which libvirt renders as ebtables chains on the guest's
tap (``I-<tap>-mac``, ``I-<tap>-ipv4-ip``, ``I-<tap>-arp-ip``). Two guests, the spoofer A on the
first compute and B on the second; A, logged in over SSH, uses its ``sudo`` to:

- ping the controller and B from **another address** it added: dropped (the ``ipv4-ip``
  chain's DROP counts the echoes; tcpdump on the controller's flat NIC and on B's tap sees none),
  while the same pings from its own address, right after, get through (and are seen there);
- ping from a **changed MAC**: dropped by the ``mac`` chain, seen nowhere; its own MAC works after;
- send **ARP claiming B's address** (gratuitous ARP from B's IP): dropped by the ``arp-ip`` chain,
  seen nowhere, and the controller's neighbour entry for B keeps B's MAC; A's own ARP works after.

What the filters do **not** stop is shown as such: a guest **answering DHCP** (busybox udhcpd on
A) reaches B — ``allow-dhcp-server`` only accepts the DHCP server's replies, it drops nobody
else's, and A's offers carry A's own MAC and address, which the anti-spoofing chains let through.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from flatbed import domains
from flatbed.checks import ebtables, expect
from flatbed.checks.console import wait_for_lease
from flatbed.checks.guestshell import GuestShell, guest_shell
from flatbed.checks.traffic import Capture, start_capture, wait_pingable
from flatbed.cloud import Guest
from flatbed.testbed import Testbed
from flatbed.waiters import wait_until
from flatbed_fixtures.guests import BootedGuests

COUNT = 3
BUSYBOX = "/bin/busybox"   # applets by absolute path: sudo's PATH has no /sbin on cirros
ROGUE_DHCPD = """\
interface eth0
start {start}
end {end}
lease_file /tmp/rogue.leases
pidfile /tmp/rogue.pid
opt router {router}
opt subnet {netmask}
"""


@pytest.fixture(scope="module")
def pair(guests: BootedGuests, testbed: Testbed) -> list[Guest]:
    """A (the spoofer) on the first compute, B on the last, both leased."""
    computes = testbed.topology.computes
    booted = [guests.boot(name, compute=node.name) for name, node in (("spoofer", computes[0]),
                                                                      ("victim", computes[-1]))]
    for guest in booted:
        wait_for_lease(guest)
    return booted


@pytest.fixture(scope="module")
def shell(testbed: Testbed, pair: list[Guest]) -> Iterator[GuestShell]:
    with guest_shell(testbed, pair[0]) as session:
        yield session


def tap_of(guest: Guest) -> str:
    [nic] = domains.nics(guest.node, guest.instance_name)
    assert nic.tap, f"{guest.name}: its domain has no tap"
    return nic.tap


def as_root(shell: GuestShell, script: str) -> str:
    """``script`` as root in the guest (cirros' passwordless sudo); its output."""
    status, out, err = shell.run([f"sudo -n sh -c {shlex.quote(script)}"])
    assert status == 0, f"{shell.guest.name}: `{script}` exited {status}: {err.strip()}"
    return out


@contextmanager
def watching(testbed: Testbed, victim: Guest, bpf: str, kind: str = " IP ") -> Iterator[list[Capture]]:
    """tcpdump with ``bpf`` on the controller's flat NIC and on the victim's tap, for the block
    (``kind``: what a packet line holds; " " for any frame)."""
    topo = testbed.topology
    captures = [start_capture(testbed.controller, topo.flat.interface, bpf, kind=kind),
                start_capture(victim.node, tap_of(victim), bpf, kind=kind)]
    try:
        yield captures
    finally:
        for capture in captures:
            capture.stop()


def seen_nowhere(captures: list[Capture]) -> None:
    for capture in captures:
        assert capture.packets == [], f"a spoofed frame got through: {capture}"


def test_another_address_is_dropped(testbed: Testbed, pair: list[Guest], shell: GuestShell) -> None:
    spoofer, victim = pair
    topo, gateway = testbed.topology, str(testbed.topology.flat.gateway)
    other = expect.nth_address(topo, 200)          # an address nova gave nobody
    prefix = topo.flat.cidr.prefixlen
    for target in (gateway, victim.ip):
        shell.ping(target, 1)                     # neighbours resolved: the spoofed echoes go out at once
    with watching(testbed, victim, f"icmp and src host {other}") as captures, \
            ebtables.drops(spoofer.node, ebtables.outgoing_chain(tap_of(spoofer), "ipv4-ip")) as dropped:
        as_root(shell, f"{BUSYBOX} ip addr add {other}/{prefix} dev eth0")
        try:
            for target in (gateway, victim.ip):
                status, out, err = shell.run(["ping", "-c", str(COUNT), "-W", "1", "-I", other, target])
                assert " 0 packets received" in out, f"ping {target} from {other} answered:\n{out}{err}"
        finally:
            as_root(shell, f"{BUSYBOX} ip addr del {other}/{prefix} dev eth0")
        assert dropped() >= 2 * COUNT
    seen_nowhere(captures)

    with watching(testbed, victim, f"icmp and src host {spoofer.ip}") as captures:
        for target in (gateway, victim.ip):
            assert shell.ping(target, COUNT).answered, f"{spoofer.name}'s own address does not reach {target}"
    assert captures[0].packets and captures[1].packets, f"the captures see its own echoes:\n{captures[0]}"


def test_a_changed_mac_is_dropped(testbed: Testbed, pair: list[Guest], shell: GuestShell) -> None:
    spoofer, victim = pair
    gateway = str(testbed.topology.flat.gateway)
    other_mac = spoofer.mac[:-2] + ("00" if not spoofer.mac.endswith("00") else "01")   # not nova's
    # One script: the SSH session's own frames are dropped too while the MAC is another.
    script = (f"{BUSYBOX} ip link set eth0 address {other_mac}; "
              f"{BUSYBOX} ping -c {COUNT} -W 1 {gateway}; {BUSYBOX} ping -c {COUNT} -W 1 {victim.ip}; "
              f"{BUSYBOX} ip link set eth0 address {spoofer.mac}")
    with watching(testbed, victim, f"ether src {other_mac}", kind=" ") as captures, \
            ebtables.drops(spoofer.node, ebtables.outgoing_chain(tap_of(spoofer), "mac")) as dropped:
        out = as_root(shell, script)
        assert out.count(" 0 packets received") == 2, out
        assert dropped() >= 2 * COUNT
    seen_nowhere(captures)
    assert spoofer.mac in shell.check([BUSYBOX, "ip", "link", "show", "eth0"])
    wait_pingable(testbed.controller, spoofer.ip)
    assert shell.ping(victim.ip, COUNT).answered


def _neighbour_mac(testbed: Testbed, ip: str) -> str | None:
    words = testbed.controller.check(["ip", "neigh", "show", ip, "dev", testbed.topology.flat.bridge]).split()
    return words[words.index("lladdr") + 1] if "lladdr" in words else None


def test_arp_claiming_another_guests_address_is_dropped(testbed: Testbed, pair: list[Guest],
                                                       shell: GuestShell) -> None:
    spoofer, victim = pair
    gateway = str(testbed.topology.flat.gateway)
    wait_pingable(testbed.controller, victim.ip)           # the controller knows B's MAC
    assert _neighbour_mac(testbed, victim.ip) == victim.mac
    with watching(testbed, victim, f"arp and ether src {spoofer.mac}", kind=" ARP, ") as captures, \
            ebtables.drops(spoofer.node, ebtables.outgoing_chain(tap_of(spoofer), "arp-ip")) as dropped:
        as_root(shell, f"{BUSYBOX} ip addr add {victim.ip}/32 dev eth0")   # arping sends from a local address
        try:
            as_root(shell, f"{BUSYBOX} arping -U -c {COUNT} -s {victim.ip} -I eth0 {gateway}")
        finally:
            as_root(shell, f"{BUSYBOX} ip addr del {victim.ip}/32 dev eth0")
        assert dropped() >= COUNT
    claims = [[p for p in c.packets or [] if victim.ip in p] for c in captures]
    assert claims == [[], []], f"a claim of {victim.ip} got through:\n{captures[0]}\n{captures[1]}"
    assert _neighbour_mac(testbed, victim.ip) == victim.mac, "the controller took the spoofer's MAC for B"

    answer = as_root(shell, f"{BUSYBOX} arping -c 1 -w 5 -I eth0 {gateway}")   # its own ARP still works
    assert "Received 1 response" in answer, answer
    assert shell.ping(gateway, 1).answered


def test_not_stopped_a_guest_answering_dhcp_reaches_other_guests(testbed: Testbed, pair: list[Guest],
                                                                 shell: GuestShell) -> None:
    spoofer, victim = pair
    topo = testbed.topology
    config = ROGUE_DHCPD.format(start=expect.nth_address(topo, 100), end=expect.nth_address(topo, 110),
                                router=spoofer.ip, netmask=topo.flat.cidr.netmask)
    shell.check([f"printf %s {shlex.quote(config)} > /tmp/rogue.conf && : > /tmp/rogue.leases"])
    as_root(shell, f"{BUSYBOX} udhcpd /tmp/rogue.conf")      # daemonises
    try:
        capture = start_capture(victim.node, tap_of(victim), f"udp src port 67 and src host {spoofer.ip}")
        try:
            with guest_shell(testbed, victim) as b:
                # A DHCP discover from B (its configuration untouched: the script does nothing).
                status, out, err = b.run([f"sudo -n {BUSYBOX} udhcpc -i eth0 -n -q -t 3 -T 2 -s /bin/true"])
                assert status == 0, out + err
            # Both offers reach B; the rogue's may come after dnsmasq's answer was taken.
            wait_until(capture.seen, timeout=30, interval=1,
                       what=f"{spoofer.name}'s DHCP reply on {victim.name}'s tap")
        finally:
            capture.stop()
        assert any(f"{spoofer.ip}.67 > " in p for p in capture.packets or []), str(capture)
    finally:
        as_root(shell, "kill $(cat /tmp/rogue.pid)")

