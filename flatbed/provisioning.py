"""Host side of provisioning: render a node's config from the topology and run ``provision/`` on it.

The node side (``provision/provision.py``) does the work with the base image's tools only, so
the same path serves containers and VMs (where the Vagrantfile can run it too).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flatbed.images.guest import GuestImage
from flatbed.node import Node
from flatbed.topology import Node as TopologyNode
from flatbed.topology import Topology

REPO = Path(__file__).resolve().parent.parent
REMOTE_ROOT = "/opt/flatbed"


def node_config(topo: Topology, node: TopologyNode) -> dict[str, Any]:
    """Everything provisioning needs to know about ``node``, as plain JSON."""
    return {
        "topology": topo.name,
        "node": {"name": node.name, "role": node.role, "address": str(node.address)},
        "nodes": [{"name": n.name, "role": n.role, "address": str(n.address)} for n in topo.nodes],
        "management": {"cidr": str(topo.management.cidr), "prefixlen": topo.management.cidr.prefixlen,
                       "interface": topo.management.interface, "gateway": str(topo.management.gateway)},
        "flat": {"cidr": str(topo.flat.cidr), "interface": topo.flat.interface, "bridge": topo.flat.bridge,
                 "label": topo.flat.label},
        "nova_flags": topo.nova_flags(node),
        "first_instance_id": topo.first_instance_id,
    }


def provision(node: Node, topo: Topology, progress: Callable[[str], None]) -> None:
    """Push the provisioning scripts and the stack to ``node`` and run them for its role."""
    started = time.monotonic()
    node.put_tree(REPO / "provision", f"{REMOTE_ROOT}/provision")
    node.put_tree(REPO / "stack", f"{REMOTE_ROOT}/stack")
    config = node_config(topo, topo.node(node.name))
    node.write_file(f"{REMOTE_ROOT}/node.json", json.dumps(config, indent=2) + "\n")
    result = node.run(["python3", f"{REMOTE_ROOT}/provision/provision.py", f"{REMOTE_ROOT}/node.json"],
                      timeout=300)
    result.check()
    progress(f"{node.name}: provisioned as {node.role} in {time.monotonic() - started:.1f} s")


IMAGE_CACHE = "/var/lib/nova/instances/_base"
IMAGE_STORE = "/var/lib/nova/images"


def image_meta(guest: GuestImage, name: str = "cirros") -> dict[str, Any]:
    """How to boot the image, stored beside it as ``image.json``."""
    files = {"kernel": guest.kernel, "ramdisk": guest.initrd, "disk": guest.disk}
    return {"name": name, "kind": guest.kind, "hash": guest.hash, "cmdline": guest.cmdline,
            "login_user": guest.login_user, "login_password": guest.login_password,
            "files": sorted(k for k, v in files.items() if v is not None)}


def push_guest_image(node: Node, guest: GuestImage, *, with_files: bool, name: str = "cirros") -> str:
    """Register the guest image on a node unless it is there already; returns the remote directory.

    The controller's store (``/var/lib/nova/images/<hash>/``) gets the description the compute
    API resolves ``--image cirros`` with; a compute's cache (``_base/<hash>/``) gets the files too
    (``kernel`` + ``ramdisk``, or ``disk``), as nova's ``_base`` after a first fetch.
    """
    remote = f"{IMAGE_CACHE if with_files else IMAGE_STORE}/{guest.hash}"
    if node.exists(f"{remote}/image.json"):
        return remote
    if with_files:
        for remote_name, local in {"kernel": guest.kernel, "ramdisk": guest.initrd, "disk": guest.disk}.items():
            if local is not None:
                node.write_file(f"{remote}/{remote_name}", Path(local).read_bytes())
    node.write_file(f"{remote}/image.json", json.dumps(image_meta(guest, name), indent=2) + "\n")
    return remote
