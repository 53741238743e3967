"""A guest's life (reference §5, §9): the next guest takes the next id and address; delete gives all back.

Steps:
- boot guest A, then B on the same compute: B's id is A's + 1 (ids follow the boot order the
  guest client recorded), its names hex (``instance-%08x``, the EC2 id ``i-%08x`` the metadata
  answers) and its chain decimal (``nova-compute-inst-<id>``), and it takes the lowest free
  address (flatbed/checks/identity.py);
- B leases (its console shows it, ``nova-manage fixed list`` says leased) — Essex keeps an address
  that was never leased for ``fixed_ip_disassociate_timeout`` (600 s); ``force_dhcp_release``
  returns a leased one at once, which is what this tests;
- delete B: its hostsfile line, instance chain and dispatch rule, nwfilter, tap, domain and
  instance directory go, the dnsmasq daemon logs ``DHCPRELEASE(<bridge>) <ip> <mac>`` (nova's
  dhcp_release of the lease it had given) and the fixed IP is back in the pool — and
  A's chain, filter and tap stay;
- boot C: it gets B's address again (the lowest free one) and the next id.
"""

from __future__ import annotations

import pytest

from flatbed import domains
from flatbed.checks import expect, identity, listings
from flatbed.checks.console import wait_for_facts, wait_for_lease
from flatbed.checks.identity import identity_of
from flatbed.checks.timeouts import LEASE_TIMEOUT
from flatbed.cloud import Cloud, FixedIp, Guest
from flatbed.node import Node
from flatbed.testbed import Testbed
from flatbed.topology import Topology
from flatbed.waiters import wait_until
from flatbed_fixtures.guests import BootedGuests


def fixed_ip(testbed: Testbed, address: str) -> FixedIp | None:
    return Cloud(testbed).fixed_ip(address)


def domain_nic(guest: Guest) -> domains.DomainNic:
    """The guest's one NIC in its running domain (libvirt names its tap vnetN)."""
    [nic] = domains.nics(guest.node, guest.instance_name)
    return nic


@pytest.fixture(scope="module")
def a(guests: BootedGuests, testbed: Testbed) -> Guest:
    return guests.boot("life-a", compute=testbed.topology.computes[0].name)


@pytest.fixture(scope="module")
def b(a: Guest, guests: BootedGuests) -> Guest:
    guest = guests.boot("life-b", compute=a.compute)
    wait_for_lease(guest)
    return guest


@pytest.fixture(scope="module")
def b_taps(a: Guest, b: Guest) -> dict[str, str]:
    return {a.name: domain_nic(a).tap, b.name: domain_nic(b).tap}


def test_next_guest_takes_the_next_id_and_address(a: Guest, b: Guest, topology: Topology) -> None:
    assert b.derived.id == a.derived.id + 1
    identity.assert_follows_rules(a)
    identity.assert_follows_rules(b)  # instance-%08x of the next id, the lowest free address
    names, address = identity_of(b), identity.rule_address(b)
    rules = listings.iptables(b.node, "filter")
    assert f"-N {names.chain}" in rules
    assert f"-A {expect.NOVA_COMPUTE}-local -d {address}/32 -j {names.chain}" in rules
    print(wait_for_facts(b))  # i-%08x of the next id at the metadata's first try


def test_leased_guest_is_leased_in_the_database(b: Guest, testbed: Testbed) -> None:
    def leased() -> FixedIp | None:
        row = fixed_ip(testbed, b.ip)
        return row if row and row.leased else None

    row = wait_until(leased, timeout=LEASE_TIMEOUT, what=f"{b.ip} leased in nova-manage fixed list",
                     describe=lambda: str(fixed_ip(testbed, b.ip)))
    # The database's MAC is the one the compute gave the guest's NIC.
    assert (row.mac, row.allocated) == (domain_nic(b).mac, True)


def test_delete_removes_everything_of_the_guest(a: Guest, b: Guest, b_taps: dict[str, str], guests: BootedGuests,
                                               controller: Node, testbed: Testbed, topology: Topology) -> None:
    chain, a_chain = identity_of(b).chain, identity_of(a).chain
    guests.delete(b)  # nova delete; waits for the domain to go and the address to be back in the pool
    hosts = controller.read_file(expect.hostsfile_path(topology))
    assert b.mac not in hosts and b.ip not in hosts.split(",")[-1:], f"hostsfile still has {b.name}:\n{hosts}"
    assert expect.hostsfile_line(topology, a.mac, a.name, a.ip) in hosts.splitlines()
    rules = listings.iptables(b.node, "filter")
    assert not [r for r in rules if chain in r.split()], f"{chain} remains on {b.compute}:\n" + "\n".join(rules)
    assert f"-N {a_chain}" in rules
    filters = b.node.check(["virsh", "nwfilter-list"])
    assert expect.instance_filter_name(identity_of(b).instance_name, b.mac) not in filters
    assert expect.instance_filter_name(identity_of(a).instance_name, a.mac) in filters
    links = listings.links(b.node)
    assert b_taps[b.name] not in links and b_taps[a.name] in links
    assert not b.node.exists(b.instance_dir)
    row = fixed_ip(testbed, b.ip)
    assert row and row.in_pool and not row.leased, row
    # force_dhcp_release: nova's dhcp_release made dnsmasq release the lease it had given (§2.4's syslog).
    daemon = listings.dnsmasq_daemon(controller, topology)
    logged = listings.dnsmasq_syslog(controller, daemon)
    release = expect.dhcp_release_line(topology, identity.rule_address(b), b.mac)
    assert release in logged, f"dnsmasq-dhcp[{daemon}] logged no {release!r}:\n" + "\n".join(logged[-10:])


def test_the_address_is_handed_out_again(a: Guest, b: Guest, guests: BootedGuests) -> None:
    c = guests.boot("life-c", compute=a.compute)
    identity.assert_follows_rules(c)  # the next id; the lowest free address: b's, released
    assert c.derived.id == b.derived.id + 1
    assert c.ip == b.ip, f"{c.name} got {c.ip}, not the freed {b.ip}"
    wait_for_lease(c)
