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
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from nova.flags import Flags
from nova.network import linux_net
from nova.virt import images
from nova.virt.libvirt.connection import LibvirtDriver

LOG = logging.getLogger("nova.compute.manager")
IMAGE_CACHE = "_base"


class ComputeError(Exception):
    """An instance could not be run; the message becomes the instance's fault."""


class ComputeManager:
    def __init__(self, flags: Flags, driver: LibvirtDriver | None = None):
        self.flags = flags
        self.driver = driver or LibvirtDriver(flags.instances_path, flags.libvirt_type, flags.allow_same_net_traffic)
        self._lock = threading.Lock()

    def init_host(self) -> list[str]:
        """After a (re)start: the firewall of the instances still running here (Essex init_host)."""
        with self._lock:
            names = self.driver.refilter_running_instances(self._plug)
            if names:
                LOG.info("Re-applied the firewall of running instances %s", ", ".join(names))
            return names

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
                return {"running": True}
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
            return {"running": self.driver.is_running(instance["name"])}

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
        return {"running": self.driver.is_running(name)}

    def rpc_methods(self) -> dict[str, Any]:
        return {"run_instance": self.run_instance, "terminate_instance": self.terminate_instance,
                "get_console_output": self.get_console_output, "instance_state": self.instance_state,
                "refresh_security_group_rules": self.refresh_security_group_rules}
