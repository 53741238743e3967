"""The compute API through the ``nova`` CLI on the controller: a server's life and the API's answers.

Steps:
- ``nova image-list`` shows the store's cirros image; ``nova flavor-list`` Essex's five flavors;
- wrong input (image, flavor, server, key, zone) is one ``ERROR:`` line and creates nothing;
- two guests without a zone land on different computes (round-robin); ``nova show`` and
  ``nova console-log`` describe them; each compute fetched the image into its ``_base`` on first
  use, the controller keeps the only store;
- ``nova delete`` removes the domain, its directory and its DHCP host entry;
- an image whose file does not match its checksum ends in ERROR with the fault;
- a build cut short by a nova-api restart is resumed by the new one and ends ACTIVE.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest

from fixtures.guests import LEASE_LINE, GuestManager, parse_table
from flatbed.checks.services import nova_network_applies_last
from flatbed.checks.timeouts import BUILD_TIMEOUT, DELETE_TIMEOUT
from flatbed.node import Node, Result
from flatbed.testbed import Testbed
from flatbed.topology import Topology
from flatbed.waiters import wait_until

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


def instances_path(topology: Topology, host: str) -> str:
    return topology.nova_flags(topology.node(host)).get("instances_path", "/var/lib/nova/instances")


def wait_status(controller: Node, name: str, status: str) -> dict[str, str]:
    def reached() -> dict[str, str] | None:
        server = parse_table(nova(controller, "show", name).stdout)
        return server if server.get("status") == status else None
    return wait_until(reached, timeout=BUILD_TIMEOUT, what=f"{name}: status {status}",
                      describe=lambda: f"nova show says {parse_table(nova(controller, 'show', name).stdout)}")


def delete_and_wait(controller: Node, name: str) -> None:
    nova(controller, "delete", name).check()
    wait_until(lambda: name not in servers(controller), timeout=DELETE_TIMEOUT, what=f"{name} gone from nova list")


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


@pytest.mark.parametrize(("argv", "message"), [
    (["boot", "--image", "no-such-image", "--flavor", "1", "x"],
     "No image with a name or ID of 'no-such-image' exists."),
    (["boot", "--image", "cirros", "--flavor", "42", "x"], "No flavor with a name or ID of '42' exists."),
    (["boot", "--image", "cirros", "--flavor", "1", "--key-name", "no-such-key", "x"],
     "Invalid key_name provided: no key pair named 'no-such-key' (see nova keypair-add)."),
    (["show", "no-such-server"], "No server with a name or ID of 'no-such-server' exists."),
    (["delete", "no-such-server"], "No server with a name or ID of 'no-such-server' exists."),
    (["console-log", "no-such-server"], "No server with a name or ID of 'no-such-server' exists."),
])
def test_errors_are_one_line_and_create_nothing(controller: Node, argv: list[str], message: str) -> None:
    result = nova(controller, *argv)
    assert (result.rc, result.stdout, result.stderr) == (1, "", f"ERROR: {message}\n")
    assert "x" not in servers(controller)


def test_unknown_compute_in_zone(controller: Node, topology: Topology) -> None:
    result = nova(controller, "boot", "--image", "cirros", "--flavor", "1", "--availability-zone", "nova:nohost", "x")
    registered = ", ".join(sorted(n.name for n in topology.computes))
    assert (result.rc, result.stderr) == (
        1, f"ERROR: No valid host was found. Compute host 'nohost' is not registered (registered: {registered}).\n")


def test_round_robin_show_console_and_delete(guests: GuestManager, controller: Node, testbed: Testbed,
                                             topology: Topology) -> None:
    first, second = guests.boot("rr-a"), guests.boot("rr-b")
    if len(topology.computes) > 1:
        assert first.compute.name != second.compute.name
    server = guests.show("rr-a")
    assert server["status"] == "ACTIVE" and server["id"] == first.uuid
    assert server["OS-EXT-SRV-ATTR:host"] == first.compute.name
    assert server["OS-EXT-SRV-ATTR:instance_name"] == f"instance-{first.id:08x}"
    assert (server["image"], server["flavor"], server["key_name"]) == ("cirros", "m1.tiny", "None")
    assert server[f"{topology.flat.label} network"] == first.ip
    assert servers(controller)["rr-b"][2:] == ["ACTIVE", f"{topology.flat.label}={second.ip}"]

    first.wait_for_lease()
    assert re.search(LEASE_LINE.format(ip=re.escape(first.ip)), nova(controller, "console-log", "rr-a").stdout)

    # Each compute fetched the image from the controller's store on first use and keeps it.
    image_hash = json.loads(controller.check(f"cat {IMAGE_STORE}/*/image.json"))["hash"]
    for guest in (first, second):
        base = f"{instances_path(topology, guest.compute.name)}/_base/{image_hash}"
        assert guest.compute.exists(f"{base}/image.json"), f"{guest.compute.name} has no {base}"
    assert not controller.exists(f"{instances_path(topology, topology.controller.name)}/_base")

    hostsfile = f"/var/lib/nova/networks/nova-{topology.flat.bridge}.conf"
    assert second.mac in controller.read_file(hostsfile)
    guests.delete(second)  # nova delete, then waits for the domain to go
    wait_until(lambda: "rr-b" not in servers(controller), timeout=DELETE_TIMEOUT, what="rr-b gone from nova list")
    assert not second.compute.exists(f"{second.instances_path}/{second.instance_name}")
    assert second.mac not in controller.read_file(hostsfile)


def test_checksum_mismatch_is_error_with_fault(controller: Node, testbed: Testbed, topology: Topology) -> None:
    """A store image whose ramdisk does not match image.json: the compute refuses it, ERROR with the fault."""
    [source] = controller.check(f"ls -d {IMAGE_STORE}/*/").split()
    broken = f"{IMAGE_STORE}/flatbed-broken"
    edit = ("import json,sys; p=sys.argv[1]+'/image.json'; m=json.load(open(p)); m.update(name='broken-cirros', "
            "hash='flatbed-broken'); m['checksums']={k: '0'*64 for k in m['files']}; json.dump(m, open(p, 'w'))")
    controller.check(f"cp -r {shlex.quote(source)} {broken} && python3 -c {shlex.quote(edit)} {broken}")
    try:
        booted = parse_table(nova(controller, "boot", "--image", "broken-cirros", "--flavor", "1", "broken")
                             .check().stdout)
        assert booted["status"] == "BUILD"
        server = wait_status(controller, "broken", "ERROR")
        assert "cannot fetch image flatbed-broken" in server["fault"]
        assert "does not match the store's" in server["fault"]
        assert servers(controller)["broken"][2:] == ["ERROR", ""]  # the fixed IP went back to the pool
        host = server["OS-EXT-SRV-ATTR:host"]
        cached = testbed.node(host).run(["ls", f"{instances_path(topology, host)}/_base"]).stdout
        assert "flatbed-broken" not in cached  # nothing half-downloaded is kept
        delete_and_wait(controller, "broken")
    finally:
        controller.run(["rm", "-rf", broken])


def test_a_build_survives_a_nova_api_restart(controller: Node, testbed: Testbed, topology: Topology) -> None:
    """A build cut short by a nova-api restart is resumed by the new nova-api and ends ACTIVE.

    The target compute's nova-compute is stopped first, so the build is still waiting for it
    when nova-api restarts (stopping waits a few seconds for tasks, then leaves them to the next start).
    """
    host = topology.computes[-1].name
    compute = testbed.node(host)
    before = controller.check(["systemctl", "show", "-p", "MainPID", "--value", "nova-api"]).strip()
    compute.check(["systemctl", "stop", "nova-compute"])
    try:
        booted = parse_table(nova(controller, "boot", "--image", "cirros", "--flavor", "1", "--availability-zone",
                                  f"nova:{host}", "restarted").check().stdout)
        assert booted["status"] == "BUILD"
        controller.check(["systemctl", "restart", "nova-api"], timeout=60)
        assert controller.check(["systemctl", "show", "-p", "MainPID", "--value", "nova-api"]).strip() != before
        assert parse_table(nova(controller, "show", "restarted").stdout)["status"] == "BUILD"
    finally:
        compute.check(["systemctl", "start", "nova-compute"])
    server = wait_status(controller, "restarted", "ACTIVE")
    assert server["OS-EXT-STS:task_state"] == "None"
    journal = controller.check(["journalctl", "-u", "nova-api", "--no-pager", "-o", "cat"])
    assert f"Resuming spawning of {booted['OS-EXT-SRV-ATTR:instance_name']}" in journal
    # State kept across the restart: the module's earlier guest is still listed.
    assert servers(controller)["rr-a"][2] == "ACTIVE"
    delete_and_wait(controller, "restarted")
    # nova-api applied last, so its iptables jumps now lead: leave the document's order behind.
    nova_network_applies_last(controller)
