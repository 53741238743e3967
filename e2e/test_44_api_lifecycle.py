"""The compute API through the ``nova`` CLI on the controller: a server's life and the API's answers.

Steps:
- ``nova image-list`` shows the store's cirros image; ``nova flavor-list`` Essex's five flavors;
- wrong input (image, flavor, server, key, zone) is one ``ERROR:`` line and creates nothing;
- two guests without a zone land on different computes (round-robin); ``nova show`` and
  ``nova console-log`` describe them; each compute fetched the image into its ``_base`` on first
  use, the controller keeps the only store;
- ``nova delete`` removes the domain, its directory and its DHCP host entry;
- an image whose file does not match its checksum ends in ERROR with the fault; its address, never
  leased, is released with force_dhcp_release and dnsmasq logs ``DHCPRELEASE(<bridge>) <ip> <mac>
  unknown lease`` (document §2.4's syslog) for the address the lowest-free rule gave it;
- a build cut short by a nova-api restart is resumed by the new one and ends ACTIVE.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest

from flatbed.checks import expect, identity, listings
from flatbed.checks.cirros import leases
from flatbed.checks.console import wait_for_lease
from flatbed.checks.identity import identity_of
from flatbed.checks.services import nova_network_applies_last, systemctl
from flatbed.checks.timeouts import LEASE_TIMEOUT
from flatbed.cloud import BootFailed, Cloud, NovaError, ledger_of
from flatbed.node import Node, Result
from flatbed.testbed import Testbed
from flatbed.topology import Topology
from flatbed.waiters import wait_until
from flatbed_fixtures.guests import BootedGuests

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ESSEX_FLAVORS = [("1", "m1.tiny", 512, 0, 1), ("2", "m1.small", 2048, 20, 1), ("3", "m1.medium", 4096, 40, 2),
                 ("4", "m1.large", 8192, 80, 4), ("5", "m1.xlarge", 16384, 160, 8)]
IMAGE_STORE = "/var/lib/nova/images"


def nova(controller: Node, *args: str) -> Result:
    return controller.run(["nova", *args], timeout=60)


def rows(table: str) -> list[list[str]]:
    """The body rows of a novaclient table."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def servers(controller: Node) -> dict[str, list[str]]:
    return {row[1]: row for row in rows(nova(controller, "list").stdout)}


def one_line_error(result: Result, message: str) -> None:
    assert (result.rc, result.stdout, result.stderr) == (1, "", f"ERROR: {message}\n")


def test_image_list(controller: Node) -> None:
    [image] = rows(nova(controller, "image-list").check().stdout)
    image_id, name, status, _server = image
    assert (name, status) == ("cirros", "ACTIVE") and UUID.match(image_id)
    meta = [json.loads(controller.read_file(p)) for p in controller.check(
        f"ls {IMAGE_STORE}/*/image.json").split()]
    assert [m["name"] for m in meta] == ["cirros"]
    assert set(meta[0]["checksums"]) == set(meta[0]["files"])


def test_flavor_list(controller: Node, topology: Topology) -> None:
    memory = topology.nova_flags(topology.controller).get("flavor_memory_mb") or 0
    expected = [[fid, name, str(memory or mb), "", str(gb), str(cpus), "1.0"]
                for fid, name, mb, gb, cpus in ESSEX_FLAVORS]
    assert rows(nova(controller, "flavor-list").check().stdout) == expected


@pytest.mark.parametrize(("options", "message"), [
    ({"image": "no-such-image"}, "No image with a name or ID of 'no-such-image' exists."),
    ({"flavor": "42"}, "No flavor with a name or ID of '42' exists."),
    ({"key_name": "no-such-key"}, "Invalid key_name provided: no key pair named 'no-such-key' (see nova keypair-add)."),
])
def test_boot_errors_are_one_line_and_create_nothing(testbed: Testbed, controller: Node, options: dict[str, str],
                                                     message: str) -> None:
    with pytest.raises(NovaError) as refused:
        Cloud(testbed).create("x", **options)
    one_line_error(refused.value.result, message)
    assert "x" not in servers(controller)


@pytest.mark.parametrize("verb", ["show", "delete", "console-log"])
def test_unknown_server_is_one_line(controller: Node, verb: str) -> None:
    one_line_error(nova(controller, verb, "no-such-server"), "No server with a name or ID of 'no-such-server' exists.")


def test_unknown_compute_in_zone(testbed: Testbed, topology: Topology) -> None:
    registered = ", ".join(sorted(n.name for n in topology.computes))
    with pytest.raises(NovaError) as refused:
        Cloud(testbed).create("x", compute="nohost")
    result = refused.value.result
    assert (result.rc, result.stderr) == (
        1, f"ERROR: No valid host was found. Compute host 'nohost' is not registered (registered: {registered}).\n")


def test_round_robin_show_console_and_delete(guests: BootedGuests, controller: Node, topology: Topology) -> None:
    cloud = guests.cloud
    first, second = guests.boot("rr-a"), guests.boot("rr-b")
    if len(topology.computes) > 1:
        assert first.compute != second.compute
    server = cloud.show(first.uuid)
    assert server["status"] == "ACTIVE" and server["id"] == first.uuid
    assert server["OS-EXT-SRV-ATTR:host"] == first.compute
    assert server["OS-EXT-SRV-ATTR:instance_name"] == identity_of(first).instance_name
    assert (server["image"], server["flavor"], server["key_name"]) == ("cirros", "m1.tiny", "None")
    assert server[f"{topology.flat.label} network"] == first.ip
    assert servers(controller)["rr-b"][2:] == ["ACTIVE", f"{topology.flat.label}={second.ip}"]

    lease = wait_for_lease(first)
    assert lease in leases(nova(controller, "console-log", first.uuid).stdout)

    # Each compute fetched the image from the controller's store on first use and keeps it.
    image_hash = json.loads(controller.check(f"cat {IMAGE_STORE}/*/image.json"))["hash"]
    for guest in (first, second):
        base = f"{cloud.instance_dir(guest.compute, '_base')}/{image_hash}"
        assert guest.node.exists(f"{base}/image.json"), f"{guest.compute} has no {base}"
    assert not controller.exists(cloud.instance_dir(topology.controller.name, "_base"))

    hostsfile = expect.hostsfile_path(topology)
    assert second.mac in controller.read_file(hostsfile)
    guests.delete(second)  # nova delete, then waits until nova no longer has it
    assert "rr-b" not in servers(controller)
    assert not second.node.exists(second.instance_dir)
    assert second.mac not in controller.read_file(hostsfile)


def test_checksum_mismatch_is_error_with_fault(guests: BootedGuests, controller: Node, testbed: Testbed) -> None:
    """A store image whose ramdisk does not match image.json: the compute refuses it, ERROR with the fault."""
    [source] = controller.check(f"ls -d {IMAGE_STORE}/*/").split()
    broken = f"{IMAGE_STORE}/flatbed-broken"
    edit = ("import json,sys; p=sys.argv[1]+'/image.json'; m=json.load(open(p)); m.update(name='broken-cirros', "
            "hash='flatbed-broken'); m['checksums']={k: '0'*64 for k in m['files']}; json.dump(m, open(p, 'w'))")
    controller.check(f"cp -r {shlex.quote(source)} {broken} && python3 -c {shlex.quote(edit)} {broken}")
    try:
        with pytest.raises(BootFailed, match="went to ERROR") as failed:
            guests.boot("broken", image="broken-cirros")
        assert failed.value.booted_as["status"] == "BUILD"
        server = guests.cloud.show(failed.value.uuid)
        assert "cannot fetch image flatbed-broken" in server["fault"]
        assert "does not match the store's" in server["fault"]
        assert servers(controller)["broken"][2:] == ["ERROR", ""]  # the fixed IP went back to the pool
        # force_dhcp_release on a lease never taken: dnsmasq's "unknown lease" (document §2.4's syslog).
        release = wait_until(lambda: unknown_lease_release(controller, testbed, failed.value.uuid),
                             timeout=LEASE_TIMEOUT, what="dnsmasq's DHCPRELEASE of the broken guest's address")
        assert identity.mac_problem(release[1]) is None, identity.mac_problem(release[1])
        host = server["OS-EXT-SRV-ATTR:host"]
        cached = testbed.node(host).run(["ls", guests.cloud.instance_dir(host, "_base")]).stdout
        assert "flatbed-broken" not in cached  # nothing half-downloaded is kept
        guests.delete(failed.value.uuid)
    finally:
        controller.run(["rm", "-rf", broken])


def unknown_lease_release(controller: Node, testbed: Testbed, uuid: str) -> tuple[str, str] | None:
    """(address, MAC) of dnsmasq's ``DHCPRELEASE(<bridge>) <ip> <mac> unknown lease`` for the address
    the rules gave server ``uuid``, or None while it has not logged one."""
    topo = testbed.topology
    addresses = ledger_of(Cloud(testbed)).derived[uuid].addresses
    daemon = listings.dnsmasq_daemon(controller, topo)
    for line in listings.dnsmasq_syslog(controller, daemon):
        words = line.split()
        if len(words) == 5 and words[1] in addresses and line == expect.dhcp_release_line(
                topo, words[1], words[2], unknown=True):
            return words[1], words[2]
    return None


def test_a_build_survives_a_nova_api_restart(guests: BootedGuests, controller: Node, testbed: Testbed,
                                            topology: Topology) -> None:
    """A build cut short by a nova-api restart is resumed by the new nova-api and ends ACTIVE.

    The target compute's nova-compute is stopped first, so the build is still waiting for it
    when nova-api restarts (stopping waits a few seconds for tasks, then leaves them to the next start).
    """
    host = topology.computes[-1].name
    compute = testbed.node(host)
    before = controller.check(["systemctl", "show", "-p", "MainPID", "--value", "nova-api"]).strip()
    systemctl(compute, "stop", "nova-compute")
    try:
        booted = guests.create("restarted", compute=host)
        assert booted["status"] == "BUILD"
        systemctl(controller, "restart", "nova-api")
        assert controller.check(["systemctl", "show", "-p", "MainPID", "--value", "nova-api"]).strip() != before
        assert guests.cloud.show(booted["id"])["status"] == "BUILD"
    finally:
        systemctl(compute, "start", "nova-compute")
    guest = guests.cloud.wait_built(booted)
    assert guests.cloud.show(guest.uuid)["OS-EXT-STS:task_state"] == "None"
    journal = controller.check(["journalctl", "-u", "nova-api", "--no-pager", "-o", "cat"])
    assert f"Resuming spawning of {booted['OS-EXT-SRV-ATTR:instance_name']}" in journal
    # State kept across the restart: the module's earlier guest is still listed.
    assert servers(controller)["rr-a"][2] == "ACTIVE"
    guests.delete(guest)
    # nova-api applied last, so its iptables jumps now lead: leave the document's order behind.
    nova_network_applies_last(controller)
