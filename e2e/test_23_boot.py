"""§2.3 of the document: boot a cirros guest; it takes the first flat address; the controller pings it.

Steps:
- ``nova boot --image cirros --flavor 1 cirros`` on the controller (pinned to the first compute)
  prints the new server in BUILD, named ``instance-%08x`` of the topology's first instance id;
- ``nova list`` then shows it ACTIVE with ``<label>=<first address>`` (``novanetwork=10.0.0.2``);
- the guest's console log (``console.log`` of its instance directory) shows udhcpc's lease of
  that address with the topology's lease time, from the controller's dnsmasq across the flat network;
- then, as the document's §2.5 console: the metadata service answered at the first try
  (``cloud-setup: successful after 1/30 tries ... iid=i-00000009``), ``public-keys`` is a 404
  (no key was given), and cloud-final prints ``instance-id``, an empty ``public-ipv4`` and
  ``local-ipv4 : 10.0.0.2``;
- the controller pings it;
- a second guest gets the next id, ``instance-0000000a`` / ``i-0000000a``, and the next address.
"""

import ipaddress
import re

import pytest

from flatbed.checks.console import console, wait_for_console, wait_for_lease
from flatbed.checks.expect import METADATA_IP, Identity
from flatbed.checks.timeouts import CLOUD_FINAL_TIMEOUT
from flatbed.checks.traffic import wait_pingable

pytestmark = pytest.mark.usefixtures("document_start", "metadata_dnat")


def test_boot_prints_build(guest, topology):
    assert guest.booted_as["status"] == "BUILD"
    assert guest.booted_as["OS-EXT-SRV-ATTR:instance_name"] == f"instance-{topology.first_instance_id:08x}"
    assert guest.booted_as["name"] == "cirros" and guest.booted_as["image"] == "cirros"
    assert guest.booted_as["flavor"] == "m1.tiny"


def test_list_shows_active_with_first_address(guest, controller, topology):
    row = f"| {guest.uuid} | cirros | ACTIVE | {topology.flat.label}={topology.flat.dhcp_start} |"
    assert row in controller.check(["nova", "list"]).splitlines()


def test_guest_leases_first_flat_address(guest, topology):
    assert guest.ip == str(topology.flat.dhcp_start)
    lease = wait_for_lease(guest)
    assert int(lease.group(1)) == topology.nova_flags(topology.controller)["dhcp_lease_time"]


def test_console_shows_metadata_at_first_try(guest, topology):
    assert guest.id == topology.first_instance_id
    ec2_id = Identity(guest.id).ec2_id  # i-00000009
    # cloud-userdata runs last (S99-cloud-final, then S99-cloud-userdata).
    wait_for_console(guest, r"(?m)^cloud-userdata: ", timeout=CLOUD_FINAL_TIMEOUT, what="cloud-userdata's line")
    text = console(guest)
    assert re.search(rf"(?m)^cloud-setup: successful after 1/30 tries: up [\d.]+\. iid={ec2_id}$", text)
    # No key was given: ec2metadata's request of public-keys is a 404, as the document shows.
    assert re.search(r"(?m)^wget: server returned error: HTTP/1\.1 404 Not Found\n"
                     rf"failed to get http://{re.escape(METADATA_IP)}/latest/meta-data/public-keys$", text)
    assert re.search(rf"(?m)^  instance-id: {ec2_id}\n  public-ipv4: \n  local-ipv4 : {re.escape(guest.ip)}$",
                     text)
    # user-data without any: an empty 200 (a failed request would print "failed to read user data url").
    assert "cloud-userdata: user data not a script" in text


def test_controller_pings_guest(guest, controller):
    wait_for_lease(guest)
    wait_pingable(controller, guest.ip)


def test_second_guest_takes_the_next_id_and_address(guest, guests, topology):
    second = guests.boot("cirros2")
    assert second.id == guest.id + 1 == topology.first_instance_id + 1
    names = Identity(topology.first_instance_id + 1)
    assert second.instance_name == names.instance_name  # instance-0000000a after -00000009
    assert second.ip == str(ipaddress.ip_address(guest.ip) + 1)
    if len(topology.computes) > 1:  # round-robin: the compute after the first guest's, in name order
        assert second.compute != guest.compute
    wait_for_console(second, rf"(?m)^cloud-setup: successful after 1/30 tries: up [\d.]+\. iid={names.ec2_id}$",
                     timeout=CLOUD_FINAL_TIMEOUT, what="the metadata answer for the second guest")
