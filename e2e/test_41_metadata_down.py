"""Metadata down (reference §10, §12.1): while nova-api is stopped, cirros' cloud-setup retries.

Steps:
- boot a guest and let it get its metadata (cloud-setup at the first try);
- stop nova-api: the metadata port on ``metadata_host`` refuses connections;
- reset the guest (the hypervisor's reset button, ``virsh reset`` on its compute): as it boots
  again, its console counts ``cloud-setup: failed N/30: up X. request failed`` lines up from 1;
- start nova-api again: the retrying guest gets through (``successful after N/30`` with N > 1),
  and a new guest gets its metadata at the first try;
- restart nova-network: the controller's iptables are the document's again (each start puts a
  binary's jumps first; the document lists nova-network's above nova-api's).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from flatbed.checks import expect, listings
from flatbed.checks.compare import assert_listing
from flatbed.checks.console import console, wait_for_facts
from flatbed.checks.identity import identity_of
from flatbed.checks.services import is_active, nova_network_applies_last, systemctl
from flatbed.checks.timeouts import CLOUD_FINAL_TIMEOUT, METADATA_DOWN_TIMEOUT
from flatbed.cloud import Guest
from flatbed.node import Node
from flatbed.testbed import Testbed
from flatbed.topology import Topology
from flatbed.waiters import wait_until
from flatbed_fixtures.guests import BootedGuests

LATER_TRY = r"(?m)^cloud-setup: successful after (\d+)/30 tries: up [\d.]+\. iid={iid}$"


def metadata_url(topology: Topology) -> str:
    return f"http://{expect.metadata_target(topology)}/"


def metadata_answers(controller: Node, topology: Topology) -> bool:
    """Does the metadata port answer HTTP (any status) on the controller?"""
    return controller.run(["curl", "-s", "-o", "/dev/null", "--max-time", "5", metadata_url(topology)]).ok


@pytest.fixture(scope="module")
def probe(guests: BootedGuests) -> Guest:
    guest = guests.boot("md-probe")
    wait_for_facts(guest)  # its lease, and the metadata at the first try with its id
    return guest


@pytest.fixture(scope="module")
def api_stopped(probe: Guest, controller: Node, topology: Topology) -> Iterator[None]:
    """nova-api stopped for the module's first tests; running again afterwards whatever happens (the
    tests start it, and restart nova-network after it, themselves)."""
    systemctl(controller, "stop", "nova-api")
    try:
        yield
    finally:
        if is_active(controller, "nova-api") != "active":
            systemctl(controller, "start", "nova-api")
            nova_network_applies_last(controller)


@pytest.fixture(scope="module")
def reset_console(probe: Guest, api_stopped: None) -> int:
    """Reset the probe guest with nova-api stopped; the offset of its console where the new boot starts."""
    offset = len(console(probe))
    probe.node.check(["virsh", "reset", probe.instance_name])
    return offset


def test_nova_api_stopped_refuses_metadata(api_stopped: None, controller: Node, topology: Topology) -> None:
    assert is_active(controller, "nova-api") == "inactive"
    assert not metadata_answers(controller, topology), f"{metadata_url(topology)} still answers"


def test_booting_guest_counts_failed_tries(probe: Guest, reset_console: int) -> None:
    def since_reset() -> str:
        return console(probe)[reset_console:]

    def three_failures() -> list[int] | None:
        tries = expect.cloud_setup_failures(since_reset())
        return tries if len(tries) >= 3 else None

    seen = wait_until(three_failures, timeout=METADATA_DOWN_TIMEOUT,
                      what=f"{probe.name}: three cloud-setup failures after the reset",
                      describe=lambda: "console since the reset:\n" + since_reset()[-1500:])
    assert seen[:3] == [1, 2, 3], f"cloud-setup's tries do not count up from 1: {seen}"


def test_after_nova_api_starts_the_retrying_guest_gets_through(probe: Guest, reset_console: int,
                                                              controller: Node, topology: Topology) -> None:
    systemctl(controller, "start", "nova-api")
    assert metadata_answers(controller, topology)
    later_try = LATER_TRY.format(iid=identity_of(probe).ec2_id)
    match = wait_until(lambda: re.search(later_try, console(probe)[reset_console:]),
                       timeout=CLOUD_FINAL_TIMEOUT, what=f"{probe.name}: cloud-setup's success after the restart",
                       describe=lambda: console(probe)[reset_console:][-1500:])
    assert int(match.group(1)) > 1


def test_a_new_guest_gets_metadata_at_the_first_try(guests: BootedGuests, reset_console: int) -> None:
    guest = guests.boot("md-after")
    print(wait_for_facts(guest))  # nova-api running again: the metadata at the first try, with its id


def test_controller_iptables_are_the_documents_again(reset_console: int, controller: Node, topology: Topology,
                                                     testbed: Testbed) -> None:
    nova_network_applies_last(controller)
    assert_listing(expect.controller_filter(topology), listings.iptables(controller, "filter"), "filter")
    assert_listing(expect.controller_nat(topology), listings.iptables(controller, "nat"), "nat")
