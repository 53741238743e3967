"""What the project's ``Vagrantfile`` reads: the topology rendered as JSON, and kernel command lines.

Ruby has no TOML parser in its standard library, so the provider writes this rendering to
``<testbed dir>/vagrant/topology.json`` (plus the run's names, key and kernel command lines).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from flatbed.providers.vagrant.naming import RunNames
from flatbed.topology import Node as TopologyNode
from flatbed.topology import Topology

# Per role, the least that runs the suite (README, "The VMs"): the controller's nova-api,
# nova-network and dnsmasq, and a compute's libvirt with up to three guests at once (each touches
# well under its flavor's 512 MiB; libvirt allocates guest memory as it is touched).
MEMORY_MIB = {"controller": 512, "compute": 1024}
CPUS = 1
# Vagrant's wait for SSH; under TCG a node boots in 30-60 s, three in parallel share 2 cores.
BOOT_TIMEOUT = 600


def kernel_cmdline(base: str, topo: Topology, node: TopologyNode, ssh_public_key: str) -> str:
    """The node's kernel command line: the box's base plus what the box's boot scripts read (pure).

    Values must not contain spaces (the initramfs splits on them): the key is base64-encoded.
    """
    mgmt, flat = topo.management, topo.flat
    key = base64.b64encode(ssh_public_key.strip().encode() + b"\n").decode()
    return " ".join([
        base,
        f"systemd.hostname={node.name}",
        f"flatbed.ifnames={mgmt.interface}={node.macs[mgmt.interface]},{flat.interface}={node.macs[flat.interface]}",
        f"flatbed.mgmt={mgmt.interface}={node.address}/{mgmt.cidr.prefixlen}",
        f"flatbed.role={node.role}",
        f"flatbed.ssh_key={key}",
    ])


def vagrant_config(topo: Topology, names: RunNames, *, box: str, cmdline_base: str, libvirt_uri: str,
                   driver: str, ssh_private_key: Path, ssh_public_key: str, logs: Path) -> dict[str, Any]:
    """The JSON rendering of the topology the Vagrantfile reads (pure)."""
    nodes = []
    for node in topo.stack_nodes:
        nodes.append({
            "name": node.name,
            "role": node.role,
            "address": str(node.address),
            "mac_management": node.macs[topo.management.interface],
            "mac_flat": node.macs[topo.flat.interface],
            "memory_mib": MEMORY_MIB[node.role],
            "cpus": CPUS,
            "cmdline": kernel_cmdline(cmdline_base, topo, node, ssh_public_key),
            "console_log": str(logs / f"{node.name}.console.log"),
        })
    return {
        "run": names.run,
        "box": box,
        "libvirt_uri": libvirt_uri,
        "driver": driver,
        # Nested guests: KVM needs the host CPU passed through (host-model breaks nesting on
        # some hosts); TCG's host-model offers svm, which is what nested KVM inside needs.
        "cpu_mode": "host-passthrough" if driver == "kvm" else "host-model",
        "domain_prefix": names.domain_prefix,
        "ssh_private_key": str(ssh_private_key),
        "boot_timeout": BOOT_TIMEOUT,
        "management": {"network": names.networks["management"], "netmask": str(topo.management.cidr.netmask)},
        "flat": {"network": names.networks["flat"]},
        "nodes": nodes,
    }
