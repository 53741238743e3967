"""§2.4 of the document: booting a guest changes only the controller's dnsmasq hostsfile.

The controller's iptables (filter and nat), addresses, routes, bridges and dnsmasq processes are
read before ``nova boot`` and again once the guest holds its lease: all equal, the dnsmasq daemon
the same process (HUPed, not restarted). The hostsfile went from empty to the guest's
``<mac>,<hostname>.novalocal,<ip>``, and syslog shows dnsmasq's DHCPOFFER/REQUEST/ACK for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from flatbed.checks import expect, identity, listings
from flatbed.checks.compare import assert_listing
from flatbed.checks.console import wait_for_lease
from flatbed.checks.timeouts import LEASE_TIMEOUT
from flatbed.cloud import Guest
from flatbed.node import Node
from flatbed.topology import Topology
from flatbed.waiters import wait_until

pytestmark = pytest.mark.usefixtures("document_start")


@dataclass(frozen=True)
class ControllerState:
    """What §2.1 lists on the controller."""

    filter: list[str]
    nat: list[str]
    links: dict[str, listings.Link]
    routes: list[str]
    bridges: list[str]
    dnsmasq: list[listings.Process]
    hostsfile: str


def read_state(controller: Node, topo: Topology) -> ControllerState:
    return ControllerState(
        filter=listings.iptables(controller, "filter"), nat=listings.iptables(controller, "nat"),
        links=listings.links(controller), routes=listings.route_n(controller),
        bridges=listings.brctl_show(controller),
        dnsmasq=listings.dnsmasq_processes(controller, expect.hostsfile_path(topo)),
        hostsfile=controller.read_file(expect.hostsfile_path(topo)))


@pytest.fixture(scope="module")
def before(controller: Node, topology: Topology) -> ControllerState:
    state = read_state(controller, topology)
    assert state.hostsfile == "", "a guest exists already; this module needs the controller without any"
    return state


@pytest.fixture(scope="module")
def after(before: ControllerState, guest: Guest, controller: Node, topology: Topology) -> ControllerState:
    wait_for_lease(guest)
    return read_state(controller, topology)


def test_iptables_unchanged(before: ControllerState, after: ControllerState) -> None:
    assert_listing(before.filter, after.filter, "iptables -t filter -S after the boot")
    assert_listing(before.nat, after.nat, "iptables -t nat -S after the boot")


def test_addresses_routes_bridges_unchanged(before: ControllerState, after: ControllerState) -> None:
    assert after.links == before.links
    assert_listing(before.routes, after.routes, "route -n after the boot")
    assert_listing(before.bridges, after.bridges, "brctl show after the boot")


def test_dnsmasq_hupped_not_restarted(before: ControllerState, after: ControllerState) -> None:
    assert after.dnsmasq == before.dnsmasq


def test_hostsfile_has_the_guest(after: ControllerState, guest: Guest, topology: Topology) -> None:
    """``<mac>,<name>.novalocal,<ip>``: nova's MAC (checked against Essex's rule) and the address the
    lowest-free rule gives, not the one nova reports."""
    assert identity.mac_problem(guest.mac) is None, identity.mac_problem(guest.mac)
    assert after.hostsfile == expect.hostsfile_line(topology, guest.mac, guest.name, identity.rule_address(guest))


def test_syslog_shows_the_dhcp_exchange(after: ControllerState, guest: Guest, controller: Node,
                                        topology: Topology) -> None:
    wanted = expect.dhcp_exchange(topology, identity.rule_address(guest), guest.mac, guest.name)
    pid = next(p.pid for p in after.dnsmasq if p.user == "nobody")

    def guest_lines() -> list[str]:
        return [line for line in listings.dnsmasq_syslog(controller, pid) if guest.mac in line]

    def all_wanted() -> list[str] | None:
        got = guest_lines()
        return got if all(w in got for w in wanted) else None

    lines = wait_until(all_wanted, timeout=LEASE_TIMEOUT, what="dnsmasq's DHCP lines for the guest in syslog",
                       describe=lambda: "dnsmasq-dhcp lines with its MAC:\n" + "\n".join(guest_lines()))
    # In order: the first OFFER, then its REQUEST and ACK (renewals repeat REQUEST/ACK later).
    first = lines.index(wanted[0])
    assert lines[first:first + 3] == wanted
