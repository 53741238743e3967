"""``allow_same_net_traffic = false`` (reference §11): the same deployment with the flag off.

The flag lives in the topology, so this module brings up a second testbed from
``topologies/no-same-net.toml`` (fixtures/variants.py; the session's own when it runs that file),
on containers as soon as the session has collected, beside the session's own.
The document says "only 10.0.0.1 could ping the guest then"; the code (Essex's
IptablesFirewallDriver) drops even that: the instance chain simply loses its same-subnet rule.

Steps:
- boot two guests, one per compute; their identifiers follow the rules (flatbed/checks/identity.py:
  on a fresh testbed the document's instance 9 and 10, ``instance-00000009``/``i-00000009``/
  ``inst-9``, then ``instance-0000000a``/``i-0000000a``/``inst-10``, and the lowest free addresses);
- DHCP still works (each console shows its lease: the DHCP server's accept rule stays) and so does
  the metadata service (answered at the first try with the guest's id: its reply returns as
  ESTABLISHED), in the words of the guest's cirros generation;
- each compute's ``iptables -S`` is the document's listing without ``-s <cidr> -j ACCEPT``, and the
  domain's ``<filterref>`` has no PROJNET/PROJMASK;
- the controller's ping is dropped: the guest's ``sg-fallback`` jump counts every echo;
- guest ↔ guest is dropped too: logged in over SSH (opened with a ``tcp 22`` rule in the default
  group, the way a user of this flag must), A's busybox ping of B meets B's ``sg-fallback``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from flatbed import domains
from flatbed.checks import expect, identity, listings
from flatbed.checks.compare import assert_listing
from flatbed.checks.console import wait_for_facts, wait_for_lease
from flatbed.checks.guestshell import GuestShell, guest_shell
from flatbed.checks.identity import identity_of
from flatbed.checks.runs import REPO
from flatbed.checks.traffic import ping_node, rule_deltas
from flatbed.cloud import Guest
from flatbed.testbed import Testbed
from flatbed_fixtures.guests import BootedGuests
from flatbed_fixtures.variants import goes_away, own_testbed, start_testbed

pytestmark = pytest.mark.own_testbeds

VARIANT = REPO / "topologies" / "no-same-net.toml"
SSH_RULE = ("tcp", "22", "22", "0.0.0.0/0")
COUNT = 3


def start_in_background(config: pytest.Config) -> None:
    start_testbed(config, VARIANT)


@pytest.fixture(scope="module")
def bed(request: pytest.FixtureRequest) -> Iterator[Testbed]:
    yield from own_testbed(request, VARIANT)


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest, bed: Testbed) -> Iterator[list[Guest]]:
    """Guest A on the first compute, B on the second, both leased; deleted unless the testbed goes."""
    booted = BootedGuests(bed)
    try:
        guests = [booted.boot(name, compute=node.name)
                  for name, node in zip(("cirros", "cirros2"), bed.topology.computes[:2], strict=True)]
        for guest in guests:
            wait_for_lease(guest)
        yield guests
    finally:
        if not goes_away(request, bed):
            booted.delete_all()


@pytest.fixture(scope="module")
def ssh_opened(request: pytest.FixtureRequest, bed: Testbed, pair: list[Guest]) -> Iterator[None]:
    """``nova secgroup-add-rule default tcp 22 22 0.0.0.0/0``, deleted again unless the testbed goes."""
    bed.controller.check(["nova", "secgroup-add-rule", "default", *SSH_RULE])
    try:
        yield
    finally:
        if not goes_away(request, bed):
            bed.controller.check(["nova", "secgroup-delete-rule", "default", *SSH_RULE])


def test_the_flag_is_off_in_nova_conf(bed: Testbed) -> None:
    for node in bed.topology.stack_nodes:
        conf = bed.node(node.name).read_file("/etc/nova/nova.conf")
        assert re.search(r"(?m)^--allow_same_net_traffic=false$", conf), f"{node.name}: nova.conf lacks the flag"


def test_guests_follow_the_identifier_rules(pair: list[Guest], bed: Testbed) -> None:
    """The next ids of the boot order (on a fresh testbed the document's 9 and 10) and the lowest
    free addresses; each one's chain named after its id."""
    assert pair[1].derived.id == pair[0].derived.id + 1
    for guest in pair:
        identity.assert_follows_rules(guest)
        assert f"-N {identity_of(guest).chain}" in listings.iptables(guest.node, "filter")


def test_dhcp_and_metadata_still_work(pair: list[Guest], bed: Testbed) -> None:
    """The lease and the metadata answer at the first try, in the guest's cirros generation's words."""
    for guest in pair:
        print(wait_for_facts(guest))


def test_instance_chains_have_no_same_subnet_rule(pair: list[Guest], bed: Testbed) -> None:
    topo = bed.topology
    same_net = f"-s {expect.net(str(topo.flat.cidr))} -j ACCEPT"
    for guest in pair:
        listing = listings.document_listing(bed, guest.node, "iptables")
        print(f"--- {guest.compute}", *listing, sep="\n")
        assert not [line for line in listing if line.endswith(same_net)], f"a same-subnet rule remains: {same_net}"
        address = identity.rule_address(guest)
        assert_listing(expect.compute_filter(topo, [(identity_of(guest).id, address)]), listing,
                       f"{guest.compute}: iptables -S")
        [nic] = domains.nics(guest.node, identity_of(guest).instance_name)
        assert nic.filter_parameters == expect.filter_parameters(topo, address) == {"IP": address, "DHCPSERVER": str(
            topo.flat.gateway)}


def test_controller_cannot_ping_a_guest(pair: list[Guest], bed: Testbed) -> None:
    guest = pair[0]
    why = expect.ping_guest_from(bed.topology, "controller", identity_of(guest))
    assert not why.answered and why.decided_by
    with rule_deltas(guest.node, identity_of(guest).chain) as deltas:
        ping = ping_node(bed.controller, guest.ip, COUNT)
        matched = deltas()
    print(ping)
    assert not ping.answered, f"{ping}\nexpected no answer: {why.reason}"
    assert matched[why.decided_by] >= COUNT, f"{why.decided_by} did not drop the echoes: {matched}"


@pytest.fixture(scope="module")
def shell_in_a(bed: Testbed, pair: list[Guest], ssh_opened: None) -> Iterator[GuestShell]:
    with guest_shell(bed, pair[0]) as shell:
        yield shell


def test_guests_cannot_ping_each_other(pair: list[Guest], shell_in_a: GuestShell, bed: Testbed) -> None:
    a, b = pair
    why = expect.ping_guest_from(bed.topology, "guest", identity_of(b))
    assert not why.answered and why.decided_by
    with rule_deltas(b.node, identity_of(b).chain) as deltas:
        ping = shell_in_a.ping(b.ip, COUNT)
        matched = deltas()
    print(ping)
    assert not ping.answered, f"{ping}\nexpected no answer: {why.reason}"
    assert matched[why.decided_by] >= COUNT, f"{why.decided_by} did not drop the echoes: {matched}"
