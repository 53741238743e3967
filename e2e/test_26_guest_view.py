"""§2.6 of the document: the guest's own view of its network.

Steps:
- a guest on the first compute, leased, its sshd up (the session's ``guest_pair``);
- SSH in as cirros from the test host through the controller (the flat network is reachable from
  the controller only; the document's admin logs in from there too);
- ``ip a``: eth0 carries the MAC nova gave the guest (an Essex MAC) and ``<ip>/<prefix> brd
  <broadcast> scope global eth0``, the lowest free address, which dnsmasq leased to it;
- ``route -n``: exactly the document's two routes — default via the flat gateway (DHCP's router,
  the controller's bridge address) and the flat subnet on eth0;
- the guest reaches its gateway: the controller's bridge answers a ping (cirros' own boot checks
  that, §12.2 of the reference);
- cirros' ``sudo`` (its banner: "use 'sudo' for root"): the cirros user is not root, and
  ``sudo -n id -u`` prints 0 without a password.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from flatbed.checks import expect
from flatbed.checks.compare import assert_listing
from flatbed.checks.guestshell import GuestShell, guest_shell
from flatbed.checks.identity import mac_problem, rule_address
from flatbed.cloud import Guest
from flatbed.testbed import Testbed
from flatbed.topology import Topology


@pytest.fixture(scope="module")
def guest(guest_pair: list[Guest]) -> Guest:
    return guest_pair[0]


@pytest.fixture(scope="module")
def shell(testbed: Testbed, guest: Guest) -> Iterator[GuestShell]:
    with guest_shell(testbed, guest) as session:
        yield session


def eth0(shell: GuestShell) -> str:
    """``ip a show eth0`` inside the guest."""
    return shell.check(["ip", "a", "show", expect.GUEST_NIC])


def test_logged_in_as_cirros(shell: GuestShell) -> None:
    assert shell.check(["id", "-un"]).strip() == "cirros"


def test_eth0_has_the_leased_address_and_novas_mac(shell: GuestShell, guest: Guest, topology: Topology) -> None:
    """eth0's address is the lowest free one the rules gave the guest; its MAC is nova's, an Essex one."""
    text = eth0(shell)
    print(text)
    inet = [" ".join(line.split()) for line in text.splitlines() if line.split()[:1] == ["inet"]]
    assert inet == [expect.guest_inet(topology, rule_address(guest))], f"eth0's IPv4 addresses in the guest:\n{text}"
    mac = re.search(r"link/ether (\S+)", text)
    assert mac and mac.group(1) == guest.mac, f"eth0's MAC is not the one nova gave ({guest.mac}):\n{text}"
    assert mac_problem(guest.mac) is None, mac_problem(guest.mac)


def test_route_n_is_the_documents(shell: GuestShell, topology: Topology) -> None:
    routes = shell.check(["route", "-n"]).splitlines()
    print("\n".join(routes))
    assert_listing(expect.guest_routes(topology), routes, "route -n in the guest")


def test_guest_reaches_its_gateway(shell: GuestShell, topology: Topology) -> None:
    gateway = str(topology.flat.gateway)
    ping = shell.ping(gateway, 2)
    assert ping.answered, f"the guest's gateway does not answer:\n{ping}"


def test_sudo_gives_cirros_root_without_a_password(shell: GuestShell) -> None:
    assert shell.check(["id", "-u"]).strip() != "0"
    assert shell.check(["sudo", "-n", "id", "-u"]).strip() == "0"
