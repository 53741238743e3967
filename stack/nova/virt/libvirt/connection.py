"""The libvirt driver of nova-compute: spawn and destroy instances, read their console.

As Essex: an instance directory ``<instances_path>/instance-%08x/`` holds ``libvirt.xml`` (the
domain actually defined) and ``console.log`` (the serial port, written by qemu); kernel and
ramdisk are copied next to them from the image cache ``_base/``.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

import libvirt

from nova.virt.firewall import in_group
from nova.virt.libvirt import kvmprobe
from nova.virt.libvirt.config import DomainSpec, domain_xml
from nova.virt.libvirt.firewall import IptablesFirewallDriver, filter_parameters, instance_filter_name

URI = "qemu:///system"
LOG = logging.getLogger("nova.virt.libvirt.connection")


def _quiet(_ctx, _err) -> None:
    """libvirt prints every error to stderr by default; we raise them as exceptions instead."""


libvirt.registerErrorHandler(_quiet, None)


FIREWALL_STATE = "firewall.json"


def instance_id_from_name(name: str) -> int:
    """``instance-0000000a`` → 10 (the name is hex, the DB id and the chain decimal)."""
    return int(name.rsplit("-", 1)[1], 16)


class LibvirtDriver:
    def __init__(self, instances_path: str, virt_type: str = "qemu", allow_same_net_traffic: bool = True):
        self.instances_path = Path(instances_path)
        self.virt_type = virt_type
        self._conn: libvirt.virConnect | None = None
        self.allow_same_net_traffic = allow_same_net_traffic
        # Essex: the libvirt connection forces its IptablesFirewallDriver (iptables + nwfilter).
        self.firewall_driver = IptablesFirewallDriver(lambda: self.conn, allow_same_net_traffic)

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None or not self._conn.isAlive():
            self._conn = libvirt.open(URI)
        return self._conn

    def instance_dir(self, name: str) -> Path:
        return self.instances_path / name

    def spawn(self, instance: dict, network: dict, image_dir: str, rules: list | None = None) -> str:
        """Filter, define and start the domain of ``instance``; returns its XML.

        Essex's order: nwfilters (setup_basic_filtering), the iptables chains
        (prepare_instance_filter), the domain, then apply_instance_filter (a no-op).
        """
        name = instance["name"]
        if not self.virt_type:
            # Undecided at start-up (nothing to probe with): the image fetched for this first
            # instance is now in _base.
            self.virt_type = kvmprobe.decide("", str(self.instances_path)).libvirt_type or "qemu"
        idir = self.instance_dir(name)
        idir.mkdir(parents=True, exist_ok=True)
        self.filter_instance(instance, network, rules or [])
        image = json.loads((Path(image_dir) / "image.json").read_text())
        console = idir / "console.log"
        console.touch()
        kernel = ramdisk = disk = None
        if image["kind"] == "initramfs":
            kernel, ramdisk = idir / "kernel", idir / "ramdisk"
            shutil.copyfile(Path(image_dir) / "kernel", kernel)
            shutil.copyfile(Path(image_dir) / "ramdisk", ramdisk)
        else:
            # A copy-on-write overlay on the cached base, as nova's qcow2 images.
            disk = idir / "disk"
            if not disk.exists():
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                                "-b", str(Path(image_dir) / "disk"), str(disk)], check=True)
        spec = DomainSpec(name=name, uuid=instance.get("uuid") or str(uuidlib.uuid4()),
                          memory_mb=int(instance["memory_mb"]), vcpus=int(instance.get("vcpus", 1)),
                          virt_type=self.virt_type, console_log=str(console), mac=network["mac"],
                          bridge=network["bridge"], kernel=str(kernel) if kernel else None,
                          ramdisk=str(ramdisk) if ramdisk else None, cmdline=image.get("cmdline", ""),
                          disk=str(disk) if disk else None,
                          filterref=instance_filter_name(name, network["mac"]),
                          filter_params=filter_parameters(network, self.allow_same_net_traffic))
        xml = domain_xml(spec)
        (idir / "libvirt.xml").write_text(xml)
        self._undefine(name)  # a redefinition without the old uuid fails; start from a clean slate
        dom = self.conn.defineXML(xml)
        dom.create()
        self.firewall_driver.apply_instance_filter(instance, [network])
        return xml

    def filter_instance(self, instance: dict, network: dict, rules: list) -> None:
        """nwfilters and iptables chains of an instance; what they were built from is kept in its
        directory, so a restarted nova-compute can rebuild them (Essex read its database)."""
        instance = {**instance, "id": instance.get("id", instance_id_from_name(instance["name"]))}
        self.firewall_driver.setup_basic_filtering(instance, [network])
        self.firewall_driver.prepare_instance_filter(instance, [network], rules)
        self._write_firewall_state({"instance": instance, "network": network, "rules": rules})

    def _write_firewall_state(self, state: dict) -> None:
        path = self.instance_dir(state["instance"]["name"]) / FIREWALL_STATE
        path.write_text(json.dumps(state, indent=2) + "\n")

    def refresh_security_group_rules(self, group: str, rules: list) -> list[int]:
        """New rules for ``group``: rebuild the chains here, and keep its members' rules on disk."""
        refreshed = self.firewall_driver.refresh_security_group_rules(group, rules)
        for instance_id in refreshed:
            instance = self.firewall_driver.instances[instance_id]
            if not in_group(instance, group):
                continue
            state = self.firewall_state(instance["name"])
            if state is not None:
                self._write_firewall_state({**state, "rules": rules})
        return refreshed

    def firewall_state(self, name: str) -> dict | None:
        """What ``filter_instance`` recorded for ``name`` (instance, network, rules), or None."""
        path = self.instance_dir(name) / FIREWALL_STATE
        return json.loads(path.read_text()) if path.exists() else None

    def ensure_filtering_rules_for_instance(self, state: dict) -> None:
        """nwfilters and chains of an instance that runs already (Essex: nova-compute's init_host)."""
        self.firewall_driver.setup_basic_filtering(state["instance"], [state["network"]])
        self.firewall_driver.prepare_instance_filter(state["instance"], [state["network"]], state["rules"])

    def resume_state_on_host_boot(self, state: dict, plug: Callable[[dict], None]) -> None:
        """Start an instance again after its host rebooted: Essex 2012.1.1's hard reboot.

        The domain's own XML (the inactive definition; libvirt.xml when it is gone), destroyed and
        unfiltered, then plugged, filtered, defined and started again; the disk and console stay.
        """
        name = state["instance"]["name"]
        dom = self._lookup(name)
        xml = dom.XMLDesc(0) if dom is not None else (self.instance_dir(name) / "libvirt.xml").read_text()
        self.destroy(name, cleanup=False)
        plug(state["network"])
        self.filter_instance(state["instance"], state["network"], state["rules"])
        self.conn.defineXML(xml).create()
        self.firewall_driver.apply_instance_filter(state["instance"], [state["network"]])

    def list_instances(self) -> list[str]:
        """The names of the running domains."""
        return [dom.name() for dom in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]

    def get_num_instances(self) -> int:
        """How many domains run (Essex: numOfDomains, the cheap count its power-state sync compares)."""
        return int(self.conn.numOfDomains())

    def get_power_state(self, name: str) -> int | None:
        """libvirt's state of the domain (Essex's power_state values), None when there is no domain."""
        dom = self._lookup(name)
        return int(dom.info()[0]) if dom is not None else None

    def _lookup(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _undefine(self, name: str) -> bool:
        dom = self._lookup(name)
        if dom is None:
            return False
        if dom.isActive():
            dom.destroy()
        dom.undefine()
        return True

    def destroy(self, name: str, cleanup: bool = True) -> None:
        """Destroy and undefine the domain, unfilter it (chains, nwfilter), remove its directory."""
        self._undefine(name)
        instance_id = instance_id_from_name(name)
        network_infos = self.firewall_driver.network_infos.get(instance_id)
        if network_infos is None:
            # Not filtered by this process (e.g. it restarted and the guest was not running):
            # take what the instance directory recorded, to remove its nwfilter all the same.
            state = self.firewall_state(name)
            network_infos = [state["network"]] if state else []
        self.firewall_driver.unfilter_instance({"id": instance_id, "name": name}, network_infos)
        if cleanup:
            shutil.rmtree(self.instance_dir(name), ignore_errors=True)

    def is_running(self, name: str) -> bool:
        dom = self._lookup(name)
        return dom is not None and bool(dom.isActive())

    def get_console_output(self, name: str) -> str:
        path = self.instance_dir(name) / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""
