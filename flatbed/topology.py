"""The topology file: nodes, NICs, addresses and nova flags of one testbed.

One TOML file drives everything: both providers, the Vagrantfile, provisioning and the
expectations of the tests. It is loaded into frozen dataclasses and validated up front;
every problem is one line naming the file and the field, and a ``TopologyError`` carries every
problem of the file (one per line), not only the first.

>>> topo = load(DEFAULT_TOPOLOGY)
>>> topo.controller.address, topo.flat.bridge
(IPv4Address('192.168.56.200'), 'br100')
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from flatbed.errors import UsageError

DEFAULT_TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "default.toml"

ROLES = ("controller", "compute", "outside")
NICS = ("eth1", "eth2")

_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_FLAG = re.compile(r"^[a-z][a-z0-9_]*$")
# Flags whose value comes from [networks] or from the node itself; setting them in [nova] would
# create a second source of truth, so they are refused there.
DERIVED_FLAGS = ("public_interface", "fixed_range", "flat_interface", "flat_network_bridge", "my_ip",
                 "metadata_host", "network_host", "host", "first_instance_id")


class TopologyError(UsageError):
    """A topology file that cannot be used; one line per problem, each naming the file and field."""


@dataclass(frozen=True)
class ManagementNetwork:
    cidr: IPv4Network
    interface: str
    gateway: IPv4Address


@dataclass(frozen=True)
class FlatNetwork:
    cidr: IPv4Network
    interface: str
    bridge: str
    label: str

    @property
    def gateway(self) -> IPv4Address:
        """nova-manage's default gateway and, single-host, the DHCP server: the first host."""
        return self.cidr[1]

    @property
    def dhcp_start(self) -> IPv4Address:
        return self.cidr[2]


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    address: IPv4Address
    macs: dict[str, str] = field(hash=False)


@dataclass(frozen=True)
class Topology:
    name: str
    path: Path
    first_instance_id: int
    management: ManagementNetwork
    flat: FlatNetwork
    nodes: tuple[Node, ...]
    nova: dict[str, Any] = field(hash=False)
    digest: str = ""

    @property
    def controller(self) -> Node:
        return next(n for n in self.nodes if n.role == "controller")

    @property
    def computes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == "compute")

    @property
    def outside(self) -> Node:
        return next(n for n in self.nodes if n.role == "outside")

    @property
    def stack_nodes(self) -> tuple[Node, ...]:
        """The nodes that run the stack, controller first (computes register with it)."""
        return (self.controller, *self.computes)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise TopologyError(f"{self.path}: no node named {name!r} (nodes: {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def nova_flags(self, node: Node) -> dict[str, Any]:
        """The flags of ``node``'s /etc/nova/nova.conf, in the document's order first."""
        flags: dict[str, Any] = {
            "public_interface": self.management.interface,
            "fixed_range": str(self.flat.cidr),
            "flat_interface": self.flat.interface,
            "flat_network_bridge": self.flat.bridge,
        }
        flags.update(self.nova)
        flags["host"] = node.name
        flags["my_ip"] = str(node.address)
        flags["metadata_host"] = str(self.controller.address)
        flags["network_host"] = self.controller.name
        flags["first_instance_id"] = self.first_instance_id
        return flags


def load(path: str | Path) -> Topology:
    """Load and validate a topology file; raises TopologyError with one clear line."""
    path = Path(path)
    return _Parser(path).topology(_read(path, seen=()))


def _read(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """The raw TOML of ``path`` with its ``base`` file merged underneath (variants stay small).

    Tables merge key by key; any other value, arrays such as ``nodes`` included, replaces the
    base's value whole.
    """
    try:
        text = path.read_text()
    except OSError as e:
        raise TopologyError(f"{path}: cannot read topology file: {e.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TopologyError(f"{path}: not valid TOML: {e}") from None
    if "base" not in raw:
        return raw
    base = raw.pop("base")
    if not isinstance(base, str):
        raise TopologyError(f"{path}: base: must be a file name, not {type(base).__name__}")
    base_path = (path.parent / base).resolve()
    if base_path in seen or len(seen) > 8:
        raise TopologyError(f"{path}: base: {base} includes itself")
    return _merge(_read(base_path, (*seen, path.resolve())), raw)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _Bad(Exception):
    """One problem of the file (a line); the parser collects them all before failing."""


class _Parser:
    """Turns the raw TOML dict into a Topology. Every problem is collected, one line each, so a
    file with several is reported whole: a bad field is skipped, and so is what depends on it."""

    def __init__(self, path: Path):
        self.path = path
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> _Bad:
        return _Bad(f"{self.path}: {where}: {message}")

    @contextmanager
    def part(self) -> Iterator[None]:
        """A part of the file checked on its own: its problem is recorded and parsing goes on."""
        try:
            yield
        except _Bad as e:
            self.problems.append(str(e))

    def table(self, raw: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.fail(where, "must be a table")
        for key in raw:
            if key not in allowed:
                with self.part():   # an unknown key is reported; the known ones are still checked
                    raise self.fail(f"{where}.{key}" if where else key,
                                    f"unknown key (allowed: {', '.join(sorted(allowed))})")
        missing = [key for key in sorted(required) if key not in raw]
        for key in missing[1:]:
            self.problems.append(str(self.fail(f"{where}.{key}" if where else key, "missing")))
        if missing:
            raise self.fail(f"{where}.{missing[0]}" if where else missing[0], "missing")
        return raw

    def string(self, raw: Any, where: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        if not isinstance(raw, str):
            raise self.fail(where, f"must be a string, not {type(raw).__name__}")
        if pattern and not pattern.match(raw):
            raise self.fail(where, f"{raw!r} is not a valid {what}")
        return raw

    def cidr(self, raw: Any, where: str) -> IPv4Network:
        text = self.string(raw, where)
        try:
            net = ipaddress.IPv4Network(text, strict=True)
        except ValueError as e:
            raise self.fail(where, f"{text!r} is not a valid IPv4 CIDR ({e})") from None
        if net.num_addresses < 8:
            raise self.fail(where, f"{text} is too small (at least a /29)")
        return net

    def address(self, raw: Any, where: str, net: IPv4Network | None, net_where: str) -> IPv4Address:
        """An address in ``net`` (only its syntax when ``net`` itself was bad)."""
        text = self.string(raw, where)
        try:
            addr = ipaddress.IPv4Address(text)
        except ValueError:
            raise self.fail(where, f"{text!r} is not a valid IPv4 address") from None
        if net is not None and addr not in net:
            raise self.fail(where, f"{addr} is outside {net_where} {net}")
        if net is not None and addr in (net.network_address, net.broadcast_address):
            raise self.fail(where, f"{addr} is the network or broadcast address of {net}")
        return addr

    def topology(self, raw: dict[str, Any]) -> Topology:
        with self.part():
            self.table(raw, "", {"name", "first_instance_id", "networks", "nova", "nodes"},
                       {"name", "networks", "nodes"})
        name = mgmt = flat = None
        first_id = raw.get("first_instance_id", 9)
        with self.part():
            if "name" in raw:
                name = self.string(raw["name"], "name", _HOSTNAME, "topology name (lower-case letters, digits, -)")
        with self.part():
            if isinstance(first_id, bool) or not isinstance(first_id, int) or not 1 <= first_id < 2**31:
                raise self.fail("first_instance_id", f"{first_id!r} must be a positive integer")
        nets: dict[str, Any] = {}
        with self.part():
            if "networks" in raw:
                nets = self.table(raw["networks"], "networks", {"management", "flat"}, {"management", "flat"})
        with self.part():
            if "management" in nets:
                mgmt = self.management(nets["management"])
        with self.part():
            if "flat" in nets:
                flat = self.flat(nets["flat"])
        with self.part():
            if mgmt and flat and mgmt.cidr.overlaps(flat.cidr):
                raise self.fail("networks.flat.cidr", f"{flat.cidr} overlaps networks.management.cidr {mgmt.cidr}")
        with self.part():
            if mgmt and flat and mgmt.interface == flat.interface:
                raise self.fail("networks.flat.interface", f"{flat.interface} is also the management interface")
        nova = self.nova(raw.get("nova", {}), flat)
        nodes: tuple[Node, ...] = ()
        with self.part():
            if "nodes" in raw:
                nodes = self.nodes(raw["nodes"], mgmt)
        if self.problems:
            raise TopologyError("\n".join(self.problems))
        assert name and mgmt and flat
        digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
        return Topology(name=name, path=self.path, first_instance_id=first_id, management=mgmt, flat=flat,
                        nodes=nodes, nova=nova, digest=digest)

    def management(self, raw: Any) -> ManagementNetwork | None:
        where = "networks.management"
        self.table(raw, where, {"cidr", "interface", "gateway"}, {"cidr", "interface", "gateway"})
        cidr = iface = gateway = None
        with self.part():
            cidr = self.cidr(raw["cidr"], f"{where}.cidr")
        with self.part():
            iface = self.string(raw["interface"], f"{where}.interface", _IFNAME, "interface name")
        with self.part():
            if cidr is not None:
                gateway = self.address(raw["gateway"], f"{where}.gateway", cidr, f"{where}.cidr")
        if cidr is None or iface is None or gateway is None:
            return None
        return ManagementNetwork(cidr=cidr, interface=iface, gateway=gateway)

    def flat(self, raw: Any) -> FlatNetwork | None:
        where = "networks.flat"
        self.table(raw, where, {"cidr", "interface", "bridge", "label"}, {"cidr", "interface", "bridge"})
        cidr = iface = bridge = label = None
        with self.part():
            cidr = self.cidr(raw["cidr"], f"{where}.cidr")
        with self.part():
            iface = self.string(raw["interface"], f"{where}.interface", _IFNAME, "interface name")
        with self.part():
            bridge = self.string(raw["bridge"], f"{where}.bridge", _IFNAME, "bridge name (at most 15 characters)")
            if bridge == iface:
                raise self.fail(f"{where}.bridge", f"{bridge} is also the flat interface")
        with self.part():
            label = self.string(raw.get("label", "novanetwork"), f"{where}.label")
        if cidr is None or iface is None or bridge is None or label is None:
            return None
        return FlatNetwork(cidr=cidr, interface=iface, bridge=bridge, label=label)

    def nova(self, raw: Any, flat: FlatNetwork | None) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.problems.append(str(self.fail("nova", "must be a table")))
            return {}
        for key, value in raw.items():
            with self.part():
                self.flag(key, value, flat)
        return dict(raw)

    def flag(self, key: str, value: Any, flat: FlatNetwork | None) -> None:
        where = f"nova.{key}"
        if not _FLAG.match(key):
            raise self.fail(where, "not a valid flag name")
        if key in DERIVED_FLAGS:
            raise self.fail(where, "is derived from [networks] and the nodes; remove it here")
        if isinstance(value, (dict, list)):
            raise self.fail(where, f"must be a string, number or boolean, not {type(value).__name__}")
        if key == "dmz_cidr":
            dmz = self.cidr(value, where)
            if flat is not None and dmz.overlaps(flat.cidr):
                raise self.fail(where, f"{dmz} overlaps networks.flat.cidr {flat.cidr}")
        if key == "libvirt_type" and value not in ("kvm", "qemu"):
            raise self.fail(where, f"{value!r} must be kvm or qemu (leave it out: each compute decides)")
        if key == "dhcp_lease_time" and (isinstance(value, bool) or not isinstance(value, int) or value < 60):
            raise self.fail(where, f"{value!r} must be an integer number of seconds >= 60")

    def nodes(self, raw: Any, mgmt: ManagementNetwork | None) -> tuple[Node, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.fail("nodes", "must be a non-empty array of [[nodes]] tables")
        nodes: list[Node] = []
        seen_names: dict[str, str] = {}
        seen_addrs: dict[IPv4Address, str] = {}
        seen_macs: dict[str, str] = {}
        for i, item in enumerate(raw):
            with self.part():
                node = self.node(item, f"nodes[{i}]", mgmt, seen_names, seen_addrs, seen_macs)
                if node is not None:
                    nodes.append(node)
        roles = [item.get("role") for item in raw if isinstance(item, dict)]
        if not set(roles) <= set(ROLES):
            return tuple(nodes)   # a bad role is reported already; counting roles would only echo it
        for role in ("controller", "outside"):
            with self.part():
                if roles.count(role) != 1:
                    raise self.fail("nodes", f"needs exactly one node with role {role!r}, found {roles.count(role)}")
        with self.part():
            if "compute" not in roles:
                raise self.fail("nodes", "needs at least one node with role 'compute'")
        return tuple(nodes)

    def node(self, item: Any, where: str, mgmt: ManagementNetwork | None, seen_names: dict[str, str],
             seen_addrs: dict[IPv4Address, str], seen_macs: dict[str, str]) -> Node | None:
        """One [[nodes]] table; each of its fields checked on its own."""
        self.table(item, where, {"name", "role", "address", "mac"}, {"name", "role"})
        name = role = addr = macs = None
        with self.part():
            taken = self.string(item["name"], f"{where}.name", _HOSTNAME, "host name (lower-case letters, digits, -)")
            if taken in seen_names:
                raise self.fail(f"{where}.name", f"{taken!r} is already used by {seen_names[taken]}")
            seen_names[name := taken] = where
        with self.part():
            role = self.string(item["role"], f"{where}.role")
            if role not in ROLES:
                raise self.fail(f"{where}.role", f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        with self.part():
            addr = self.node_address(item, where, role, mgmt)
            if addr in seen_addrs:
                raise self.fail(f"{where}.address", f"{addr} is already used by {seen_addrs[addr]}")
            seen_addrs[addr] = name or where
        with self.part():
            macs = self.macs(item.get("mac", {}), f"{where}.mac", name or where)
            for nic, mac in macs.items():
                if name is None and nic not in item.get("mac", {}):
                    continue  # derived from a bad name: that name's problem, reported already
                if mac in seen_macs:
                    raise self.fail(f"{where}.mac.{nic}", f"{mac} is already used by {seen_macs[mac]}")
                seen_macs[mac] = f"{name} {nic}"
        if name is None or role is None or addr is None or macs is None:
            return None
        return Node(name=name, role=role, address=addr, macs=macs)

    def node_address(self, item: dict[str, Any], where: str, role: str | None,
                     mgmt: ManagementNetwork | None) -> IPv4Address | None:
        if "address" in item:
            addr = self.address(item["address"], f"{where}.address", mgmt.cidr if mgmt else None,
                                "networks.management.cidr")
        elif role == "outside" and mgmt is not None:
            addr = mgmt.gateway
        elif role == "outside":
            return None   # the management network's problem is reported already
        else:
            raise self.fail(f"{where}.address", "missing")
        if mgmt is not None and role == "outside" and addr != mgmt.gateway:
            raise self.fail(f"{where}.address",
                            f"the outside host must be the management gateway {mgmt.gateway}, not {addr}")
        if mgmt is not None and role != "outside" and addr == mgmt.gateway:
            raise self.fail(f"{where}.address", f"{addr} is the management gateway (the outside host's)")
        return addr

    def macs(self, raw: Any, where: str, node: str) -> dict[str, str]:
        self.table(raw, where, set(NICS), set())
        macs = {}
        for nic in NICS:
            if nic in raw:
                mac = self.string(raw[nic], f"{where}.{nic}", _MAC, "MAC address (lower-case, colon-separated)")
                if int(mac[:2], 16) & 1:
                    raise self.fail(f"{where}.{nic}", f"{mac} is a multicast MAC")
            else:
                mac = stable_mac(node, nic)
            macs[nic] = mac
        return macs


def stable_mac(node: str, nic: str) -> str:
    """A MAC that stays the same for a node's NIC across runs (VirtualBox's OUI, as the document)."""
    h = hashlib.sha256(f"{node}/{nic}".encode()).digest()
    return "08:00:27:" + ":".join(f"{b:02x}" for b in h[:3])
