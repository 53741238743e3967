"""Faults a FlatDHCP deployment meets, each with its recovery asserted as Essex behaved.

The module runs on a testbed of ``topologies/faults.toml`` (its own second testbed, or the
session's when the session runs that file): the document's deployment with Essex's periodic tasks
ticking every second (``periodic_interval = 1``), ``resume_guests_state_on_host_boot`` and DEBUG
logs, so a test waits for the ticks it needs in the journal instead of sleeping. Each test boots
its own guests and deletes them.

- **dnsmasq killed** on the controller: Essex did nothing about it until the next allocation
  (``update_dhcp`` → ``linux_net.restart_dhcp``, which starts dnsmasq when its pid is gone):
  it stays down through nova-network's periodic ticks while the health check of ``flatbed
  status`` reports it NOT OK; the next ``nova boot`` starts a new dnsmasq, which leases the new
  guest its address, and the testbed is healthy again.
- **nova-network restarted** beside a running dnsmasq: the same dnsmasq processes, HUPed (they
  read the hostsfile again), the same fixed IPs and hostsfile, the controller's iptables listings
  the document's, in its order, and the guest still answers.
- **a guest destroyed behind nova-compute's back** (``virsh destroy``): nothing notices until
  Essex's power-state sync (``ComputeManager._sync_power_states``, every 11th tick) stores
  libvirt's state as the power state and makes the ACTIVE instance SHUTOFF.
- **iptables flushed on a compute**: nothing restores the chains by itself (Essex had no
  periodic apply; meanwhile the guest is unfiltered: its compute's own ping goes out); the next
  apply of nova-compute does — here the security-group refresh that ``nova secgroup-add-rule``
  casts to every compute (a boot or delete on that compute and a nova-compute restart apply too).
- **a compute rebooted**: the node comes back, nova-compute starts and, with
  ``resume_guests_state_on_host_boot``, starts the guest again (2012.1.1's hard reboot: plug,
  filter, define, create), which gets the same address from dnsmasq and answers the controller.
"""

from __future__ import annotations

from collections.abc import Iterator

import libvirt
import pytest

from flatbed import health
from flatbed.checks import expect, journal, listings
from flatbed.checks.compare import assert_listing
from flatbed.checks.console import wait_for_lease
from flatbed.checks.runs import REPO
from flatbed.checks.timeouts import PERIODIC_SLACK, REAPPLY_TIMEOUT, REBOOT_TIMEOUT
from flatbed.checks.traffic import icmp_send_errno, wait_pingable
from flatbed.cloud import Cloud
from flatbed.errors import FlatbedError
from flatbed.node import Node
from flatbed.testbed import Testbed
from flatbed.waiters import wait_until
from flatbed_fixtures.guests import BootedGuests
from flatbed_fixtures.variants import own_testbed

VARIANT = REPO / "topologies" / "faults.toml"
TICK = "Running periodic task"
SYNC = "ComputeManager._sync_power_states"
SYNC_EVERY = 11          # Essex: @periodic_task(ticks_between_runs=10)
QUIET_TICKS = 3          # periodic ticks a fault is watched through before its trigger comes
ICMP = ("icmp", "-1", "-1", "0.0.0.0/0")
ICMP_RULE = "-p icmp -j ACCEPT"
REBOOT_MARK = "/run/flatbed-before-reboot"   # /run is a tmpfs: a reboot empties it


@pytest.fixture(scope="module")
def bed(request: pytest.FixtureRequest) -> Iterator[Testbed]:
    yield from own_testbed(request, VARIANT)


@pytest.fixture
def booted(bed: Testbed) -> Iterator[BootedGuests]:
    """This test's guests, deleted at its end."""
    guests = BootedGuests(bed)
    yield guests
    guests.delete_all()


def tick_timeout(bed: Testbed, ticks: int) -> float:
    """How long ``ticks`` periodic ticks may take (the topology's periodic_interval, plus slack)."""
    return ticks * int(bed.topology.nova_flags(bed.topology.controller)["periodic_interval"]) + PERIODIC_SLACK


def dnsmasq_pids(bed: Testbed) -> list[int]:
    return [p.pid for p in listings.dnsmasq_processes(bed.controller, expect.hostsfile_path(bed.topology))]


def compute_listing(node: Node, bed: Testbed) -> list[str]:
    return listings.document_listing(bed, node, "iptables")


def syslog_lines(node: Node, needle: str) -> list[str]:
    return [line for line in node.read_file("/var/log/syslog").splitlines() if needle in line]


def test_dnsmasq_killed_stays_down_until_the_next_allocation(bed: Testbed, booted: BootedGuests) -> None:
    controller, topo = bed.controller, bed.topology
    killed = dnsmasq_pids(bed)
    assert killed, "no dnsmasq serves the hostsfile before the fault"
    ticks = journal.mark(controller, "nova-network")
    controller.check(f"kill $(cat {expect.pidfile_path(topo)})")
    wait_until(lambda: not dnsmasq_pids(bed), timeout=10, what="dnsmasq to exit after its kill")

    # What `flatbed status` judges its health by (it exits 1 and prints this check NOT OK).
    problem = health.verdict(health.check(bed))
    assert problem and f"{topo.controller.name}: dnsmasq on {topo.flat.bridge} (not running" in problem, problem

    journal.wait_for(ticks, TICK, count=QUIET_TICKS, timeout=tick_timeout(bed, QUIET_TICKS),
                     what=f"{QUIET_TICKS} periodic ticks of nova-network")
    assert dnsmasq_pids(bed) == [], "dnsmasq came back without an allocation (Essex did not restart it)"

    guest = booted.boot("after-kill", compute=topo.computes[0].name)   # the next allocation
    restarted = dnsmasq_pids(bed)
    assert restarted and not set(restarted) & set(killed), f"dnsmasq pids {killed} -> {restarted}"
    wait_for_lease(guest)
    assert health.verdict(health.check(bed)) is None


def test_nova_network_restarted_beside_dnsmasq(bed: Testbed, booted: BootedGuests) -> None:
    controller, topo = bed.controller, bed.topology
    guest = booted.boot("before-restart", compute=topo.computes[0].name)
    wait_for_lease(guest)
    cloud = Cloud(bed)
    pids, fixed, hosts = dnsmasq_pids(bed), cloud.fixed_ips(), cloud.hostsfile()
    hostsfile = expect.hostsfile_path(topo)
    reads_before = len(syslog_lines(controller, f"read {hostsfile}"))

    controller.check(["systemctl", "restart", "nova-network"])

    assert dnsmasq_pids(bed) == pids, "nova-network's restart replaced dnsmasq (Essex HUPs a running one)"
    wait_until(lambda: len(syslog_lines(controller, f"read {hostsfile}")) > reads_before, timeout=REAPPLY_TIMEOUT,
               what="dnsmasq to read the hostsfile again (HUP) after nova-network's restart")
    assert (cloud.fixed_ips(), cloud.hostsfile()) == (fixed, hosts)
    assert_listing(expect.controller_filter(topo), listings.iptables(controller, "filter"),
                   f"{controller.name}: iptables -t filter -S after the restart")
    assert_listing(expect.controller_nat(topo), listings.iptables(controller, "nat"),
                   f"{controller.name}: iptables -t nat -S after the restart")
    wait_pingable(controller, guest.ip)


def test_guest_destroyed_behind_nova_computes_back_is_shutoff_at_the_next_sync(bed: Testbed,
                                                                                booted: BootedGuests) -> None:
    guest = booted.boot("destroyed", compute=bed.topology.computes[-1].name)
    cloud = Cloud(bed)
    syncs = journal.mark(guest.node, "nova-compute")
    guest.node.check(["virsh", "destroy", guest.instance_name])
    # A sync that started before the destroy returned may read the domain while qemu is being
    # killed (SHUTDOWN, 4: seen on a loaded VM compute); the one to judge starts after it.
    destroyed = journal.mark(guest.node, "nova-compute")
    seen = cloud.show(guest.uuid)
    if not [line for line in journal.since(syncs) if SYNC in line and TICK in line]:
        assert seen["status"] == "ACTIVE", f"changed before any power-state sync: {seen}"  # no event in Essex

    journal.wait_for(destroyed, rf"{TICK} {SYNC}", timeout=tick_timeout(bed, SYNC_EVERY),
                     what="the power-state sync after the destroy")
    # The sync logs its start; its write follows once libvirt answered (seconds on a loaded VM).
    # Essex stored libvirt's domain state as the power state: a destroyed domain is SHUTOFF (5).
    shutoff = {"status": "SHUTOFF", "OS-EXT-STS:power_state": str(libvirt.VIR_DOMAIN_SHUTOFF)}
    shown = wait_until(lambda: (s := cloud.show(guest.uuid)).items() >= shutoff.items() and s, timeout=10,
                       what=f"nova show {guest.name} to say {shutoff} after the sync",
                       describe=lambda: f"it says {cloud.show(guest.uuid)}")
    assert shown["OS-EXT-STS:vm_state"] == "shutoff", shown
    assert [s["Status"] for s in cloud.servers() if s["ID"] == guest.uuid] == ["SHUTOFF"]


def test_iptables_flushed_on_a_compute_come_back_at_nova_computes_next_apply(bed: Testbed,
                                                                             booted: BootedGuests) -> None:
    topo, controller = bed.topology, bed.controller
    guest = booted.boot("unfiltered", compute=topo.computes[-1].name)
    node = guest.node
    own = expect.compute_filter(topo, [(guest.id, guest.ip)])
    assert_listing(own, compute_listing(node, bed), f"{node.name}: iptables -S before the flush")
    assert icmp_send_errno(node, guest.ip) == "EPERM"     # the compute's own ping meets sg-fallback

    ticks = journal.mark(node, "nova-compute")
    node.check("iptables -F && iptables -X")
    journal.wait_for(ticks, TICK, count=QUIET_TICKS, timeout=tick_timeout(bed, QUIET_TICKS),
                     what=f"{QUIET_TICKS} periodic ticks of nova-compute")
    left = listings.iptables(node, "filter")
    assert not [line for line in left if expect.NOVA_COMPUTE in line], f"came back without an apply: {left}"
    assert icmp_send_errno(node, guest.ip) == "sent", "the guest is unfiltered while the chains are gone"

    controller.check(["nova", "secgroup-add-rule", "default", *ICMP])      # the refresh applies again
    try:
        with_icmp = expect.compute_filter(topo, [(guest.id, guest.ip)], (ICMP_RULE,))
        wait_until(lambda: compute_listing(node, bed) == with_icmp, timeout=REAPPLY_TIMEOUT,
                   what=f"{node.name}: nova-compute's chains back after the security-group refresh",
                   describe=lambda: "\n".join(listings.iptables(node, "filter")))
    finally:
        controller.check(["nova", "secgroup-delete-rule", "default", *ICMP])
    wait_until(lambda: compute_listing(node, bed) == own, timeout=REAPPLY_TIMEOUT,
               what=f"{node.name}: the document's listing once the rule is deleted")
    assert icmp_send_errno(node, guest.ip) == "EPERM"


def _booted_again(bed: Testbed, name: str) -> bool:
    """The node answers after a reboot: the mark in /run is gone and systemd is up."""
    try:
        node = bed.node(name)
        if node.run(["test", "-e", REBOOT_MARK]).ok:
            return False
        return node.run(["systemctl", "is-system-running"]).stdout.strip() in ("running", "degraded")
    except FlatbedError:   # not there yet (a container restarting, a VM's SSH not up)
        return False


def test_compute_rebooted_runs_its_guest_again_with_the_same_address(bed: Testbed, booted: BootedGuests) -> None:
    topo, controller = bed.topology, bed.controller
    guest = booted.boot("survivor", compute=topo.computes[0].name)
    wait_for_lease(guest)
    ack = f"DHCPACK({topo.flat.bridge}) {guest.ip} {guest.mac}"
    acks = len(syslog_lines(controller, ack))
    node = guest.node
    node.check(["touch", REBOOT_MARK])
    before = node.check(["date", "+%s"]).strip()   # the node's clock: its journal after the reboot

    try:
        node.run(["systemctl", "reboot"], timeout=30)
    except FlatbedError:
        pass  # the connection may go down with the node
    wait_until(lambda: _booted_again(bed, node.name), timeout=REBOOT_TIMEOUT, interval=1,
               what=f"{node.name} to come back from its reboot")
    node = bed.node(node.name)
    wait_until(lambda: node.run(["systemctl", "is-active", "nova-compute"]).stdout.strip() == "active",
               timeout=REAPPLY_TIMEOUT, what=f"{node.name}: nova-compute active after the reboot")
    resumed = f"Rebooting instance {guest.instance_name} after nova-compute restart."
    wait_until(lambda: resumed in node.check(["journalctl", "-u", "nova-compute", f"--since=@{before}", "-o", "cat",
                                              "--no-pager"]),
               timeout=REAPPLY_TIMEOUT, what=f"{node.name}: nova-compute's init_host to start the guest again")
    wait_until(lambda: node.run(["virsh", "domstate", guest.instance_name]).stdout.strip() == "running",
               timeout=REAPPLY_TIMEOUT, what=f"{guest.instance_name} running again on {node.name}")
    wait_until(lambda: len(syslog_lines(controller, ack)) > acks, timeout=REAPPLY_TIMEOUT,
               what=f"dnsmasq to lease {guest.ip} to {guest.mac} again")
    wait_pingable(controller, guest.ip)
    shown = Cloud(bed).show(guest.uuid)
    assert (shown["status"], shown["OS-EXT-STS:power_state"]) == ("ACTIVE", str(libvirt.VIR_DOMAIN_RUNNING)), shown
    assert shown[f"{topo.flat.label} network"] == guest.ip
