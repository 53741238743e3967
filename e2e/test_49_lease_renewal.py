"""§2.4 of the document, later on: a guest up longer than half its lease renews it.

The document's syslog shows, a minute after the first DHCPOFFER/REQUEST/ACK of a 120 s lease, a
second ``DHCPREQUEST``/``DHCPACK`` pair for the same address and MAC: the guest's DHCP client
renews at half the lease (T1). dnsmasq's shortest lease is 120 s, so this module runs late in the
session (its number) on the session's earliest guests still up (``guest_pair``, booted for §2.6),
which by then are past T1; it never sleeps. Run alone, it waits (named timeout: half the lease plus
RENEWAL_GRACE) for the renewal to come.

Steps, for each guest of the pair:
- the dnsmasq daemon's first lines for the guest's MAC are the document's OFFER, REQUEST, ACK of the
  address the rules gave it;
- then a REQUEST/ACK pair of the same address and MAC (no new OFFER), logged no earlier than half the
  lease after the first ACK (a renewal, not a retry) and before the lease ran out.
"""

from __future__ import annotations

from datetime import timedelta

from flatbed.checks import expect, identity, listings
from flatbed.checks.timeouts import RENEWAL_GRACE
from flatbed.cloud import Guest
from flatbed.node import Node
from flatbed.topology import Topology
from flatbed.waiters import wait_until

SYSLOG_RESOLUTION = timedelta(seconds=1)  # syslog stamps whole seconds


def guest_log(controller: Node, topology: Topology, guest: Guest) -> list[listings.Logged]:
    """The dnsmasq daemon's syslog lines with the guest's address and MAC (the document greps the
    address: DHCPDISCOVER, which has none, is not among them)."""
    address = identity.rule_address(guest)
    return [entry for entry in listings.dnsmasq_log(controller, listings.dnsmasq_daemon(controller, topology))
            if {address, guest.mac} <= set(entry.message.split())]


def renewal(log: list[listings.Logged], exchange: list[str]) -> list[listings.Logged] | None:
    """The REQUEST/ACK pair after the first exchange (``exchange``: OFFER, REQUEST, ACK), or None."""
    messages = [entry.message for entry in log]
    if messages[:3] != exchange:
        raise AssertionError("the first lines for the guest are not the document's exchange:\n"
                             + "\n".join(messages[:6]) + "\nexpected:\n" + "\n".join(exchange))
    later = log[3:]
    for first, second in zip(later, later[1:], strict=False):
        if [first.message, second.message] == exchange[1:]:
            return [first, second]
    return None


def test_guests_up_past_half_their_lease_renew_it(guest_pair: list[Guest], controller: Node,
                                                  topology: Topology) -> None:
    lease = timedelta(seconds=int(expect.flag(topology, topology.controller, "dhcp_lease_time")))
    for guest in guest_pair:
        exchange = expect.dhcp_exchange(topology, identity.rule_address(guest), guest.mac, guest.name)
        found = wait_until(lambda g=guest, x=exchange: renewal(guest_log(controller, topology, g), x),
                           timeout=lease.total_seconds() / 2 + RENEWAL_GRACE, interval=2,
                           what=f"{guest.name}: its DHCP renewal in the controller's syslog",
                           describe=lambda g=guest: "\n".join(e.message for e in guest_log(controller, topology, g)))
        first_ack = guest_log(controller, topology, guest)[2].time
        request, ack = found
        print(f"{guest.name}: first ACK {first_ack:%H:%M:%S}, renewal {request.time:%H:%M:%S} / {ack.time:%H:%M:%S}")
        assert request.time >= first_ack + lease / 2 - SYSLOG_RESOLUTION, (
            f"{guest.name} renewed {request.time - first_ack} after its ACK: before T1 (half of {lease})")
        assert ack.time < first_ack + lease, f"{guest.name} renewed only after its lease of {lease} ran out"
