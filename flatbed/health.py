"""Is a testbed healthy enough to reuse? Nodes up, services running, the flat network's plumbing in place.

One probe per node (a short shell script, the same on containers and VMs) reports facts; the
judgement is pure, so each verdict is unit-tested from canned facts:

- every node answers; stack nodes' systemd is ``running`` (no failed unit);
- services by role: the controller's nova-network and nova-api (part of the deployment: its
  absence is unhealthy, never overlooked), the computes' nova-compute and libvirtd;
- on the controller, the flat bridge with the gateway address, and dnsmasq serving its
  hostsfile (br100/dnsmasq exist from provisioning on: the network is bound at creation).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flatbed.errors import FlatbedError
from flatbed.provisioning import KVM_CHOICE

if TYPE_CHECKING:
    from flatbed.testbed import Testbed
    from flatbed.topology import Topology

# (unit, required): a required unit must be installed and active; an optional one (a service a
# later stage installs) must be active once its unit exists.
SERVICES: dict[str, tuple[tuple[str, bool], ...]] = {
    "controller": (("nova-network", True), ("nova-api", True)),
    "compute": (("nova-compute", True), ("libvirtd", True)),
    "outside": (),
}


@dataclass(frozen=True)
class NodeFacts:
    """What the probe saw on one node."""

    name: str
    role: str
    reachable: bool = True
    error: str = ""
    system: str = ""                                      # systemctl is-system-running
    failed_units: tuple[str, ...] = ()
    units: dict[str, str] = field(default_factory=dict)   # unit -> active|socket-activated|failed|absent|...
    bridges: dict[str, tuple[str, ...]] = field(default_factory=dict)  # bridge -> IPv4 addresses (absent: missing)
    dnsmasq: int | None = None                            # pid serving the flat bridge's hostsfile
    libvirt_type: str = ""                                # a compute's choice for this boot: "kvm (why)"


@dataclass(frozen=True)
class Check:
    node: str
    what: str
    ok: bool
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.node}: {self.what}" + (f" ({self.detail})" if self.detail else "")


def probe_script(topo: Topology, role: str) -> str:
    """The shell the probe runs on a node of ``role``; prints one ``key value...`` fact per line."""
    lines = ['echo "system $(systemctl is-system-running 2>/dev/null)"',
             "systemctl --failed --no-legend --plain 2>/dev/null | awk '{print \"failed\", $1}'"]
    for unit, _required in SERVICES.get(role, ()):
        # The socket too: Debian's libvirtd exits when idle (--timeout 120) and its socket restarts it.
        lines.append(f'if systemctl cat {unit}.service >/dev/null 2>&1; then echo "unit {unit} '
                     f'$(systemctl is-active {unit}.service) $(systemctl is-active {unit}.socket 2>/dev/null)"; '
                     f'else echo "unit {unit} absent"; fi')
    if role == "compute":  # nova-compute's libvirt_type for this boot (stack/nova/virt/libvirt/kvmprobe.py)
        lines.append(f"echo \"virt $(tr -d '\\n' < {KVM_CHOICE} 2>/dev/null)\"")
    if role == "controller":
        bridge = shlex.quote(topo.flat.bridge)
        flags = topo.nova_flags(topo.controller)
        networks = flags.get("networks_path", "/var/lib/nova/networks")
        hostsfile = shlex.quote(f"{networks}/nova-{topo.flat.bridge}.conf")
        pidfile = shlex.quote(f"{networks}/nova-{topo.flat.bridge}.pid")
        lines += [
            f"if ip link show dev {bridge} >/dev/null 2>&1; then echo \"bridge {bridge} "
            f"$(ip -o -4 addr show dev {bridge} | awk '{{printf \"%s \", $4}}')\"; "
            f"else echo \"bridge {bridge} absent\"; fi",
            f"pid=$(cat {pidfile} 2>/dev/null); "
            f"if [ -n \"$pid\" ] && tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -qF -- {hostsfile}; "
            f"then echo \"dnsmasq $pid\"; else echo 'dnsmasq absent'; fi",
        ]
    return "\n".join(lines) + "\n"


def parse_probe(name: str, role: str, text: str) -> NodeFacts:
    """Facts from the probe's output (see :func:`probe_script`)."""
    system, failed, units, bridges, dnsmasq, libvirt_type = "", [], {}, {}, None, ""
    for line in text.splitlines():
        key, _, rest = line.strip().partition(" ")
        words = rest.split()
        if key == "system":
            system = rest.strip()
        elif key == "failed" and words:
            failed.append(words[0])
        elif key == "unit" and words:
            state = words[1] if len(words) > 1 else "unknown"
            if state == "inactive" and words[2:3] == ["active"]:
                state = "socket-activated"  # idle, started again by its listening socket
            units[words[0]] = state
        elif key == "bridge" and words:
            if words[1:] != ["absent"]:
                bridges[words[0]] = tuple(words[1:])
        elif key == "dnsmasq" and words and words[0].isdigit():
            dnsmasq = int(words[0])
        elif key == "virt":
            libvirt_type = describe_libvirt_type(rest)
    return NodeFacts(name=name, role=role, system=system, failed_units=tuple(failed), units=units,
                     bridges=bridges, dnsmasq=dnsmasq, libvirt_type=libvirt_type)


def describe_libvirt_type(recorded: str) -> str:
    """``kvm (why)`` from nova-compute's recorded choice (JSON); "" when there is none."""
    try:
        choice = json.loads(recorded)
        return f"{choice['libvirt_type'] or 'undecided'} ({choice['reason']})"
    except (ValueError, KeyError, TypeError):
        return ""


def judge(topo: Topology, facts: Iterable[NodeFacts]) -> list[Check]:
    """Every check and its outcome; a testbed is healthy when all are ok."""
    checks: list[Check] = []
    for f in facts:
        if not f.reachable:
            checks.append(Check(f.name, "node running", False, f.error or "does not answer"))
            continue
        checks.append(Check(f.name, "node running", True))
        if f.role == "outside":
            continue
        checks.append(Check(f.name, "systemd running", f.system == "running",
                            "" if f.system == "running" else
                            f"{f.system or 'unknown'}" + (f"; failed: {', '.join(f.failed_units)}"
                                                          if f.failed_units else "")))
        for unit, required in SERVICES.get(f.role, ()):
            state = f.units.get(unit, "absent")
            if state == "absent" and not required:
                continue
            ok = state in ("active", "socket-activated")
            checks.append(Check(f.name, f"{unit} active", ok, "" if state == "active" else state))
        if f.role == "controller":
            bridge = topo.flat.bridge
            gateway = f"{topo.flat.gateway}/{topo.flat.cidr.prefixlen}"
            if bridge not in f.bridges:
                checks.append(Check(f.name, f"bridge {bridge}", False, "missing"))
            else:
                has = gateway in f.bridges[bridge]
                checks.append(Check(f.name, f"bridge {bridge} with {gateway}", has,
                                    "" if has else f"has {' '.join(f.bridges[bridge]) or 'no address'}"))
            checks.append(Check(f.name, f"dnsmasq on {bridge}", f.dnsmasq is not None,
                                "" if f.dnsmasq else "not running for the hostsfile"))
    return checks


def verdict(checks: Iterable[Check]) -> str | None:
    """None when healthy, else one line naming every failed check."""
    failed = [str(c) for c in checks if not c.ok]
    return "; ".join(failed) if failed else None


def probe(testbed: Testbed) -> list[NodeFacts]:
    """Probe every node of the testbed (in parallel: each is a process on its node)."""
    topo = testbed.topology

    def one(node_name: str, role: str) -> NodeFacts:
        try:
            node = testbed.node(node_name)
            if role == "outside":
                node.check(["true"], timeout=30)
                return NodeFacts(name=node_name, role=role)
            return parse_probe(node_name, role, node.check(probe_script(topo, role), timeout=60))
        except FlatbedError as e:
            return NodeFacts(name=node_name, role=role, reachable=False, error=str(e))

    with ThreadPoolExecutor(max_workers=len(topo.nodes)) as pool:
        return list(pool.map(lambda n: one(n.name, n.role), topo.nodes))


def check(testbed: Testbed) -> list[Check]:
    return judge(testbed.topology, probe(testbed))
