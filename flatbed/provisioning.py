"""Host side of provisioning: render a node's config from the topology and run ``provision/`` on it.

The node side (``provision/provision.py``) does the work with the base image's tools only, so
the same path serves containers and VMs (where the Vagrantfile can run it too).
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flatbed.errors import FlatbedError
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


# nova-compute's libvirt_type choice for this boot of a compute (the stack's kvmprobe.RESULT).
KVM_CHOICE = "/run/nova/libvirt_type.json"
# A compute's prepare stage may boot a KVM probe, which a loaded TCG host makes slow (kvmprobe.PROBE_LIMIT).
PROVISION_TIMEOUT = 900


def provision(node: Node, topo: Topology, progress: Callable[[str], None], stage: str = "all") -> None:
    """Push the provisioning scripts and the stack to ``node`` and run them for its role.

    ``stage`` (computes only): ``prepare`` (all but nova-compute, with the KVM choice) and then
    ``start`` (nova-compute, which registers with the controller), or ``all`` of it at once.
    """
    started = time.monotonic()
    if stage != "start":
        node.put_tree(REPO / "provision", f"{REMOTE_ROOT}/provision")
        node.put_tree(REPO / "stack", f"{REMOTE_ROOT}/stack")
        config = node_config(topo, topo.node(node.name))
        node.write_file(f"{REMOTE_ROOT}/node.json", json.dumps(config, indent=2) + "\n")
    result = node.run(["python3", f"{REMOTE_ROOT}/provision/provision.py", f"{REMOTE_ROOT}/node.json", stage],
                      timeout=PROVISION_TIMEOUT)
    result.check()
    took = time.monotonic() - started
    if stage == "prepare":
        progress(f"{node.name}: prepared in {took:.1f} s")
        return
    progress(f"{node.name}: provisioned as {node.role} in {took:.1f} s")
    if node.role == "compute":
        progress(f"{node.name}: {describe_kvm_choice(kvm_choice(node))}")


def kvm_choice(node: Node) -> dict[str, Any]:
    """What nova-compute on ``node`` chose for this boot (empty when it has not decided yet)."""
    try:
        return json.loads(node.read_file(KVM_CHOICE))
    except (FlatbedError, ValueError):
        return {}


def describe_kvm_choice(choice: dict[str, Any]) -> str:
    """One line for bring-up: a compute that falls back to TCG although /dev/kvm is there says so."""
    kind, reason = choice.get("libvirt_type"), choice.get("reason", "not recorded")
    if not kind:
        return f"libvirt_type undecided ({reason})"
    if kind == "qemu" and choice.get("source") == "probe":
        return f"WARNING: guests run under TCG (libvirt_type qemu), ten times slower: {reason}"
    return f"guests run under {'KVM' if kind == 'kvm' else 'TCG'} (libvirt_type {kind}: {reason})"


def provision_nodes(node: Callable[[str], Node], topo: Topology, progress: Callable[[str], None],
                    alongside: Callable[[], None] | None = None) -> None:
    """Every stack node: the controller, with the computes prepared meanwhile (and ``alongside``, e.g.
    the guest image's upload); then nova-compute on every compute at once, since it registers with
    the controller's nova-network."""
    first = [lambda: provision(node(topo.controller.name), topo, progress)]
    first += [lambda name=c.name: provision(node(name), topo, progress, "prepare") for c in topo.computes]
    in_parallel(first + ([alongside] if alongside else []))
    in_parallel([lambda name=c.name: provision(node(name), topo, progress, "start") for c in topo.computes])


def in_parallel(calls: list[Callable[[], None]]) -> None:
    """Run ``calls`` in threads; return when all are done, raise the first failure as soon as it
    happens. Daemon threads: an interrupted bring-up removes the nodes they work on, which ends them."""
    done: queue.Queue[BaseException | None] = queue.Queue()

    def run(call: Callable[[], None]) -> None:
        try:
            call()
            done.put(None)
        except BaseException as e:  # reported to the caller's thread
            done.put(e)

    for call in calls:
        threading.Thread(target=run, args=(call,), daemon=True).start()
    for _ in calls:
        failure = done.get()
        if failure is not None:
            raise failure


# The controller's image store (nova-api serves it; computes download into their _base on first use).
IMAGE_STORE = "/var/lib/nova/images"


def _image_files(guest: GuestImage) -> dict[str, Path]:
    """The files of the image under the names the store serves (kernel + ramdisk, or disk)."""
    files = {"kernel": guest.kernel, "ramdisk": guest.initrd, "disk": guest.disk}
    return {name: Path(path) for name, path in files.items() if path is not None}


def image_meta(guest: GuestImage, name: str = "cirros") -> dict[str, Any]:
    """How to boot the image, stored beside it as ``image.json``; computes check the checksums."""
    files = _image_files(guest)
    return {"name": name, "kind": guest.kind, "hash": guest.hash, "cmdline": guest.cmdline,
            "login_user": guest.login_user, "login_password": guest.login_password,
            "files": sorted(files),
            "checksums": {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in sorted(files.items())}}


def push_guest_image(node: Node, guest: GuestImage, *, name: str = "cirros") -> str:
    """Put the guest image into the controller's store unless it is there; returns the remote directory.

    Only the controller gets the image (``/var/lib/nova/images/<hash>/``: its files and
    ``image.json``, written last so a half-pushed image is never listed); each compute downloads
    it from nova-api when it first boots it, into ``_base/<hash>/``, as nova's image cache.
    """
    remote = f"{IMAGE_STORE}/{guest.hash}"
    if node.exists(f"{remote}/image.json"):
        return remote
    for remote_name, local in _image_files(guest).items():
        node.write_file(f"{remote}/{remote_name}", local.read_bytes())
    node.write_file(f"{remote}/image.json", json.dumps(image_meta(guest, name), indent=2) + "\n")
    return remote
