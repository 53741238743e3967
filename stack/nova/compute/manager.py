"""nova-compute's manager: run and terminate instances on this node.

Essex's ComputeManager.run_instance: plug the VIF (the lazy bridge: ``LibvirtBridgeDriver.plug``
creates br100 on the flat interface, without an IP, when the first instance arrives, with
``nova-compute-FORWARD -i/-o br100 -j ACCEPT``), then spawn through the libvirt driver, which
filters the instance first (nwfilter + iptables chains, ``nova/virt/libvirt/firewall.py``).
The caller (the compute API on the controller) passes the instance, its network info and its
security-group rules, since this node has no database of its own.

The image comes from the controller's store on first use (``image_url``) and stays cached in
``<instances_path>/_base/<hash>/``. ``run_instance`` of a domain that already runs only reports it:
a restarted nova-api re-sends the builds it had not seen finish.

What Essex's manager read from and wrote to the database — this host's instances at start
(``init_host``) and their power states (the periodic ``_sync_power_states``) — goes through
nova-api (``nova.compute.records``).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from nova import rpc
from nova.compute import power_state, states
from nova.compute.records import InstanceRecords
from nova.flags import Flags
from nova.manager import Manager, periodic_task
from nova.network import linux_net
from nova.virt import images
from nova.virt.libvirt.connection import LibvirtDriver

LOG = logging.getLogger("nova.compute.manager")
IMAGE_CACHE = "_base"
RECORDS_GRACE = 30  # how long a starting nova-compute waits for nova-api to list its instances


class ComputeError(Exception):
    """An instance could not be run; the message becomes the instance's fault."""


class ComputeManager(Manager):
    def __init__(self, flags: Flags, driver: LibvirtDriver | None = None, records: InstanceRecords | None = None):
        self.flags = flags
        self.driver = driver or LibvirtDriver(flags.instances_path, flags.libvirt_type, flags.allow_same_net_traffic)
        self.records = records or InstanceRecords(flags)
        self._lock = threading.Lock()

    def init_host(self) -> list[str]:
        """After a (re)start, for each of this host's instances (Essex 2012.1.3's init_host): plug the
        bridge once; start the guest again if it ran before and the host rebooted
        (``resume_guests_state_on_host_boot``, or always with ``start_guests_on_host_boot``);
        otherwise, when it runs, filter it again. Returns the names handled.

        The database tells which instances are this host's and whether they ran; when nova-api
        cannot say, the running guests this node filtered before are filtered again.
        """
        with self._lock:
            try:
                instances = self.records.get_all_by_host(retry_for=RECORDS_GRACE)
            except rpc.RemoteError as exc:
                LOG.warning("Cannot read this host's instances (%s); filtering the running ones again", exc)
                instances = [{"name": name, "power_state": None} for name in self.driver.list_instances()]
            done, plugged = [], False
            for instance in instances:
                state = self.driver.firewall_state(instance["name"])
                if state is None:
                    continue  # never spawned here (or its directory is gone): nothing to rebuild
                db_state, drv_state = instance["power_state"], self._power_state(instance["name"])
                expect_running = db_state == power_state.RUNNING and drv_state != db_state
                LOG.debug("%s: current state is %s, state in DB is %s", instance["name"], drv_state, db_state)
                if not plugged:
                    self._plug(state["network"])  # 2012.1.3 (bug 1027105): the bridge and its accepts
                    plugged = True
                if (expect_running and self.flags.resume_guests_state_on_host_boot) \
                        or self.flags.start_guests_on_host_boot:
                    LOG.info("Rebooting instance %s after nova-compute restart.", instance["name"])
                    self.driver.resume_state_on_host_boot(state, self._plug)
                elif drv_state == power_state.RUNNING:
                    self.driver.ensure_filtering_rules_for_instance(state)
                else:
                    continue
                done.append(instance["name"])
            if done:
                LOG.info("Set up again after the start: %s", ", ".join(done))
            return done

    def _power_state(self, name: str) -> int:
        """The domain's state; Essex's init_host took a missing domain as FAILED."""
        state = self.driver.get_power_state(name)
        return power_state.FAILED if state is None else state

    @periodic_task(ticks_between_runs=10)
    def _sync_power_states(self) -> None:
        """Align the database's power states with the hypervisor's (Essex; every 11th tick).

        A domain that is gone counts as NOSTATE; an ACTIVE instance found NOSTATE, SHUTOFF,
        SHUTDOWN or CRASHED becomes vm_state SHUTOFF (the API's status SHUTOFF).
        """
        db_instances = self.records.get_all_by_host()
        num_vm_instances = self.driver.get_num_instances()
        if num_vm_instances != len(db_instances):
            LOG.warning("Found %d in the database and %d on the hypervisor.", len(db_instances), num_vm_instances)
        for db_instance in db_instances:
            vm_power_state = self.driver.get_power_state(db_instance["name"])
            if vm_power_state is None:
                LOG.warning("Instance %s found in database but not known by hypervisor. Setting power state "
                            "to NOSTATE", db_instance["name"])
                vm_power_state = power_state.NOSTATE
            if vm_power_state == db_instance["power_state"]:
                continue
            stopped = vm_power_state in (power_state.NOSTATE, power_state.SHUTOFF, power_state.SHUTDOWN,
                                         power_state.CRASHED)
            vm_state = states.SHUTOFF if stopped and db_instance["vm_state"] == states.ACTIVE else None
            LOG.info("Instance %s: power state %s -> %s%s", db_instance["name"], db_instance["power_state"],
                     vm_power_state, f", vm_state {vm_state}" if vm_state else "")
            self.records.set_power_state(db_instance["id"], vm_power_state, vm_state)

    def _plug(self, network: dict[str, Any]) -> None:
        # FlatDHCP, single-host: the compute's bridge has no IP (no net_attrs), gateway=True.
        if network.get("should_create_bridge") and not network.get("multi_host"):
            linux_net.ensure_bridge(network["bridge"], self.flags.flat_interface or network.get("bridge_interface"))

    def image_dir(self, image_hash: str) -> Path:
        return Path(self.flags.instances_path) / IMAGE_CACHE / image_hash

    def run_instance(self, instance: dict[str, Any], network: dict[str, Any], image: str,
                     image_url: str | None = None, rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Fetch the image if needed, plug, filter, define and start the domain; returns the power state.

        ``rules`` are the security-group rules of the instance's groups (``instance``'s
        ``security_groups``, default ``["default"]``), as the compute API read them.
        """
        with self._lock:
            if self.driver.is_running(instance["name"]):
                LOG.info("Instance %s already runs; reporting it", instance["name"])
                return self.instance_state(instance["name"])
            image_dir = self.image_dir(image)
            if not images.cached(image_dir):
                if not image_url:
                    raise ComputeError(f"image {image} is not in this node's cache {image_dir}")
                try:
                    images.fetch_to_base(image_url, image_dir)
                except (images.ImageFetchError, OSError, ValueError) as e:
                    raise ComputeError(f"cannot fetch image {image}: {e}") from None
            LOG.info("Starting instance %s (%s) on %s", instance["name"], network["address"], network["bridge"])
            try:
                self._plug(network)
                self.driver.spawn(instance, network, str(image_dir), rules or [])
            except Exception as e:  # any failure is the instance's fault, reported to the API
                LOG.exception("Instance %s failed to spawn", instance["name"])
                raise ComputeError(f"{type(e).__name__}: {e}") from None
            return self.instance_state(instance["name"])

    def terminate_instance(self, name: str) -> dict[str, Any]:
        with self._lock:
            LOG.info("Terminating instance %s", name)
            self.driver.destroy(name)
            return {"running": False}

    def refresh_security_group_rules(self, group: str, rules: list[dict[str, Any]]) -> list[int]:
        """A rule of ``group`` changed: rebuild the chains of this node's instances (all of them, as Essex)."""
        with self._lock:
            return self.driver.refresh_security_group_rules(group, rules)

    def get_console_output(self, name: str) -> str:
        return self.driver.get_console_output(name)

    def instance_state(self, name: str) -> dict[str, Any]:
        """Whether the domain runs, and its power state (NOSTATE without a domain)."""
        state = self.driver.get_power_state(name)
        return {"running": self.driver.is_running(name),
                "power_state": power_state.NOSTATE if state is None else state}

    def rpc_methods(self) -> dict[str, Any]:
        return {"run_instance": self.run_instance, "terminate_instance": self.terminate_instance,
                "get_console_output": self.get_console_output, "instance_state": self.instance_state,
                "refresh_security_group_rules": self.refresh_security_group_rules}
