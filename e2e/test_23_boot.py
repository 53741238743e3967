"""§2.3 of the document: boot a cirros guest; it takes the first flat address; the controller pings it.

Steps:
- ``nova boot --image cirros --flavor 1 cirros`` on the controller (pinned to the first compute)
  prints the new server in BUILD, named ``instance-%08x`` of the topology's first instance id;
- ``nova list`` shows it in BUILD with ``<label>=<first address>`` (``novanetwork=10.0.0.2``):
  the compute's nova-compute is stopped for that moment, as a real host's spawn is slower than
  a ``nova list``; then ACTIVE with the same address;
- nova's record follows the identifier rules (flatbed/checks/identity.py): the first id, an Essex
  MAC, network + 2;
- the guest's console log (``console.log`` of its instance directory) shows the lease of that
  address with the topology's lease time, from the controller's dnsmasq across the flat network,
  the metadata answer at the first try with ``i-<hex first id>`` and that id reported, in the
  words of its cirros generation (flatbed/checks/cirros.py);
- in cirros 0.3.0's words, as the document's §2.5 console: ``public-keys`` is a 404 (no key was
  given), and cloud-final prints ``instance-id``, an empty ``public-ipv4`` and ``local-ipv4 : 10.0.0.2``;
- the controller pings it;
- a second guest gets the next id, ``instance-0000000a`` / ``i-0000000a``, and the next address.
"""

import re

import pytest

from flatbed.checks import expect, identity
from flatbed.checks.console import console, not_the_documents_wording, wait_for_console, wait_for_facts, wait_for_lease
from flatbed.checks.services import systemctl
from flatbed.checks.timeouts import CLOUD_FINAL_TIMEOUT, LEASE_TIMEOUT
from flatbed.checks.traffic import wait_pingable
from flatbed.cloud import Guest, parse_table
from flatbed.testbed import Testbed
from flatbed.waiters import wait_until
from flatbed_fixtures.guests import BootedGuests

pytestmark = pytest.mark.usefixtures("document_start", "metadata_dnat")


@pytest.fixture(scope="module")
def held_build(guests: BootedGuests, testbed: Testbed) -> tuple[Guest, dict[str, str]]:
    """The document's ``nova boot --image cirros --flavor 1 cirros``, on the first compute, with its
    nova-compute stopped for a moment so the server stays in BUILD: the guest once ACTIVE, and the
    ``nova list`` row read while it was in BUILD with its address allocated (Essex allocated the
    network before spawning, which takes longer than a ``nova list`` on a real host)."""
    compute = testbed.topology.computes[0].name
    cloud = guests.cloud
    systemctl(testbed.node(compute), "stop", "nova-compute")
    try:
        booted_as = guests.create("cirros", compute=compute)

        def allocated() -> dict[str, str] | None:
            row = next((r for r in cloud.servers() if r["ID"] == booted_as["id"]), None)
            return row if row and row["Networks"] else None

        row = wait_until(allocated, timeout=LEASE_TIMEOUT, interval=0.5, what="cirros's address in nova list",
                         describe=lambda: cloud.nova("list").stdout)
    finally:
        systemctl(testbed.node(compute), "start", "nova-compute")
    return cloud.wait_built(booted_as), row


@pytest.fixture(scope="module")
def guest(held_build: tuple[Guest, dict[str, str]]) -> Guest:
    return held_build[0]


def test_list_shows_build_with_the_first_address(held_build: tuple[Guest, dict[str, str]], topology):
    """``nova list`` right after the boot: BUILD, and the network column already ``<label>=<first address>``."""
    guest, row = held_build
    assert row == {"ID": guest.uuid, "Name": "cirros", "Status": "BUILD",
                   "Networks": f"{topology.flat.label}={topology.flat.dhcp_start}"}


def test_boot_prints_build(guest, topology):
    assert guest.booted_as["status"] == "BUILD"
    # The first server of a fresh testbed: the topology's first id, in hex (instance_name_template).
    assert guest.derived.id == topology.first_instance_id
    assert guest.booted_as["OS-EXT-SRV-ATTR:instance_name"] == identity.identity_of(guest).instance_name
    assert guest.booted_as["name"] == "cirros" and guest.booted_as["image"] == "cirros"
    assert guest.booted_as["flavor"] == "m1.tiny"


def test_guest_follows_the_identifier_rules(guest, topology):
    """nova's record of the guest: the first id's name, an Essex MAC, network + 2."""
    assert guest.derived.addresses == (str(topology.flat.dhcp_start),)
    identity.assert_follows_rules(guest)


def test_list_shows_active_with_first_address(guest, controller, topology):
    rows = parse_table(controller.check(["nova", "list"]))
    assert {"ID": guest.uuid, "Name": "cirros", "Status": "ACTIVE",
            "Networks": f"{topology.flat.label}={topology.flat.dhcp_start}"} in rows


def test_guest_leases_first_flat_address(guest, topology):
    address, seconds, _line = wait_for_lease(guest)
    assert address == str(topology.flat.dhcp_start)
    assert seconds == expect.flag(topology, topology.controller, "dhcp_lease_time")


def test_console_shows_metadata_at_first_try(guest):
    """The lease, the metadata answer at the first try with ``i-<hex first id>`` and the id the guest
    reports, in the words of whichever cirros generation booted."""
    facts = wait_for_facts(guest)
    print(facts)


def test_console_in_the_documents_words(guest, topology):
    """cirros 0.3.0's wording, as the document's console: the public-keys 404 (no key was given),
    cloud-final's identity lines, and cloud-userdata's verdict on the empty user data."""
    why = not_the_documents_wording(guest)
    if why:
        pytest.skip(why)
    ec2_id = identity.identity_of(guest).ec2_id  # i-00000009
    # cloud-userdata runs last (S99-cloud-final, then S99-cloud-userdata).
    wait_for_console(guest, r"(?m)^cloud-userdata: ", timeout=CLOUD_FINAL_TIMEOUT, what="cloud-userdata's line")
    text = console(guest)
    assert re.search(r"(?m)^wget: server returned error: HTTP/1\.1 404 Not Found\n"
                     rf"failed to get http://{re.escape(expect.METADATA_IP)}/latest/meta-data/public-keys$", text)
    address = re.escape(identity.rule_address(guest))
    assert re.search(rf"(?m)^  instance-id: {ec2_id}\n  public-ipv4: \n  local-ipv4 : {address}$", text)
    # user-data without any: an empty 200 (a failed request would print "failed to read user data url").
    assert "cloud-userdata: user data not a script" in text


def test_controller_pings_guest(guest, controller):
    wait_for_lease(guest)
    wait_pingable(controller, guest.ip)


def test_second_guest_takes_the_next_id_and_address(guest, guests, topology):
    second = guests.boot("cirros2")
    assert second.derived.id == guest.derived.id + 1 == topology.first_instance_id + 1
    assert second.derived.addresses == (str(topology.flat.dhcp_start + 1),)
    identity.assert_follows_rules(second)  # instance-0000000a after -00000009, the next address
    if len(topology.computes) > 1:  # round-robin: the compute after the first guest's, in name order
        assert second.compute != guest.compute
    wait_for_facts(second)
