"""§2.3 of the document: boot a cirros guest; it takes the first flat address; the controller pings it.

Steps:
- ``nova boot --image cirros --flavor 1 cirros`` on the controller (pinned to the first compute);
- wait for ACTIVE with ``<label>=<first address>``;
- the guest's console log (``console.log`` of its instance directory) shows udhcpc's lease of
  that address with the topology's lease time, from the controller's dnsmasq across the flat network;
- the controller pings it.
"""

from fixtures.guests import wait_pingable


def test_guest_leases_first_flat_address(guest, topology):
    assert guest.ip == str(topology.flat.dhcp_start)
    lease = guest.wait_for_lease()
    assert int(lease.group(1)) == topology.nova_flags(topology.controller)["dhcp_lease_time"]


def test_controller_pings_guest(guest, controller):
    guest.wait_for_lease()
    wait_pingable(controller, guest.ip)
