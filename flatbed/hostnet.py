"""Host-side wiring for the container provider, with pyroute2.

The switch is a network namespace holding one bridge per testbed network; each node is a
namespace with veths named like the document's NICs (eth1, eth2) whose peers are ports of
those bridges. Nothing is created in the host's own namespace, so testbed frames never meet
the host's bridges or firewall.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flatbed import procs
from flatbed.waiters import wait_until

NETNS_DIR = Path("/run/netns")


class _OnFirstUse:
    """pyroute2 is imported when a namespace is first touched, not when flatbed is: the CLI's other
    verbs and the unit tests run without it."""

    def __init__(self, module: str, attribute: str | None = None):
        self._module, self._attribute = module, attribute

    def _target(self) -> Any:
        found = importlib.import_module(self._module)
        return getattr(found, self._attribute) if self._attribute else found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)


netns = _OnFirstUse("pyroute2.netns")
NetNS = _OnFirstUse("pyroute2", "NetNS")


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def create_namespace(name: str) -> None:
    netns.create(name)
    with NetNS(name) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def remove_namespace(name: str, timeout: float = 15) -> int:
    """Kill every process in namespace ``name``, then remove it; returns how many were killed.

    A process left inside would keep the namespace (and its interfaces) alive after removal.
    """
    if not exists(name):
        return 0
    pids = pids_in(name)
    for pid in pids:
        procs.send(pid, signal.SIGKILL)
    wait_until(lambda: not pids_in(name), timeout=timeout, what=f"processes in namespace {name} to exit")
    netns.remove(name)
    return len(pids)


def list_namespaces(prefix: str) -> list[str]:
    return sorted(n for n in netns.listnetns() if n.startswith(prefix))


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the block with this thread in namespace ``name`` (for /proc/sys/net writes)."""
    if not exists(name):  # pyroute2 would create a missing one
        raise FileNotFoundError(f"network namespace {name} does not exist")
    netns.pushns(name)
    try:
        yield
    finally:
        netns.popns()


def connect(namespace: str | None, address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``(address, port)`` made from inside ``namespace`` (None: this one).

    The socket is created by a short-lived thread that entered the namespace (setns(2) moves
    only the calling thread); a socket keeps the namespace it was made in, so the connection
    lives there while the rest of the process never leaves its own. The socket is blocking.
    """
    if namespace is None:
        sock = socket.create_connection((address, port), timeout=timeout)
        sock.settimeout(None)
        return sock
    outcome: dict[str, object] = {}

    def opener() -> None:
        try:
            netns.setns(str(NETNS_DIR / namespace), flags=0)  # flags=0: never create it
            outcome["sock"] = socket.create_connection((address, port), timeout=timeout)
        except BaseException as e:  # handed to the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=opener, name=f"connect in {namespace}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    sock = outcome["sock"]
    assert isinstance(sock, socket.socket)
    sock.settimeout(None)
    return sock


def sysctl(namespace: str, key: str, value: str) -> None:
    with inside(namespace):
        Path("/proc/sys", key.replace(".", "/")).write_text(value)


def add_bridge(namespace: str, bridge: str) -> None:
    """A plain learning bridge, like a physical switch: no STP delay, no bridge netfilter."""
    with NetNS(namespace) as ns:
        ns.link("add", ifname=bridge, kind="bridge", br_forward_delay=0, br_stp_state=0)
        ns.link("set", index=ns.link_lookup(ifname=bridge)[0], state="up")


def plug(switch: str, bridge: str, port: str, node_ns: str, nic: str, mac: str) -> None:
    """A veth from ``bridge`` in the switch namespace to ``nic`` (with ``mac``) in ``node_ns``."""
    with NetNS(switch) as sw:
        sw.link("add", ifname=port, kind="veth", peer={"ifname": nic, "net_ns_fd": node_ns})
        sw.link("set", index=sw.link_lookup(ifname=port)[0], master=sw.link_lookup(ifname=bridge)[0],
                state="up")
    with NetNS(node_ns) as ns:
        ns.link("set", index=ns.link_lookup(ifname=nic)[0], address=mac)


def configure_host(namespace: str, nic: str, address: str, prefixlen: int,
                   routes: tuple[tuple[str, str], ...] = ()) -> None:
    """Give a plain namespace host (the outside host) its address and ``routes`` ((cidr, via), all
    inside the testbed); no default route, no forwarding."""
    with NetNS(namespace) as ns:
        idx = ns.link_lookup(ifname=nic)[0]
        ns.addr("add", index=idx, address=address, prefixlen=prefixlen)
        ns.link("set", index=idx, state="up")
    for cidr, via in routes:
        add_route(namespace, cidr, via)


def add_route(namespace: str, cidr: str, via: str) -> None:
    """A route of ``cidr`` via ``via`` in ``namespace`` (a testbed's own; never the host's)."""
    with NetNS(namespace) as ns:
        ns.route("add", dst=cidr, gateway=via)


def pids_in(namespace: str) -> list[int]:
    """Processes whose network namespace is ``namespace`` (to refuse deleting a busy one)."""
    try:
        target = os.stat(NETNS_DIR / namespace)
    except FileNotFoundError:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            found.append(int(entry.name))
    return found
