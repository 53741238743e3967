"""``flatbed status``: the live testbed as a table, and as a graphviz picture.

:func:`gather` reads everything from the running nodes (health probe, ``nova list``/``show``,
``nova-manage fixed list``, the hostsfile, ``ip -j addr``, the guests' domain XML) into a
:class:`Snapshot`; :func:`render` and :func:`to_dot` are pure, so their output is unit-tested.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flatbed import domains, health
from flatbed.cloud import Cloud, Guest
from flatbed.errors import FlatbedError

if TYPE_CHECKING:
    from flatbed.testbed import Testbed


@dataclass(frozen=True)
class Nic:
    """An interface on a node: ``ip -j addr`` reduced to what the picture shows."""

    name: str
    mac: str = ""
    addresses: tuple[str, ...] = ()
    master: str | None = None
    kind: str = "nic"          # nic | bridge | tap
    promisc: bool = False
    up: bool = True


@dataclass(frozen=True)
class NodeRow:
    name: str
    role: str
    address: str
    facts: health.NodeFacts
    nics: tuple[Nic, ...] = ()


@dataclass(frozen=True)
class GuestRow:
    info: Guest
    tap: str | None = None     # the compute's tap device (vnetN) of the guest


@dataclass(frozen=True)
class Snapshot:
    run_id: str
    topology: str
    provider: str
    status: str
    management: str            # "eth1 192.168.56.0/24"
    flat: str                  # "eth2 10.0.0.0/24 bridge br100"
    nodes: tuple[NodeRow, ...]
    guests: tuple[GuestRow, ...]
    checks: tuple[health.Check, ...] = field(default=())
    guests_error: str = ""     # why the guest list could not be read (controller down...)
    provider_facts: tuple[str, ...] = ()  # where and how the nodes run, as the provider says


# --- gathering --------------------------------------------------------------------------------

def parse_ip_addr(text: str) -> tuple[Nic, ...]:
    """``ip -j addr`` as Nics (loopback left out); bridges are the masters of other interfaces."""
    links = json.loads(text or "[]")
    masters = {link.get("master") for link in links if link.get("master")}
    nics = []
    for link in links:
        name = link.get("ifname", "?")
        if name == "lo" or "LOOPBACK" in link.get("flags", []):
            continue
        kind = "bridge" if name in masters or link.get("linkinfo", {}).get("info_kind") == "bridge" else \
            "tap" if name.startswith(("vnet", "tap")) else "nic"
        addresses = tuple(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                          if a.get("family") == "inet")
        nics.append(Nic(name=name, mac=link.get("address", ""), addresses=addresses, master=link.get("master"),
                        kind=kind, promisc="PROMISC" in link.get("flags", []), up="UP" in link.get("flags", [])))
    return tuple(nics)


def gather(testbed: Testbed, *, network: bool = False) -> Snapshot:
    """Read the live state; ``network`` adds interfaces and guests' taps (for the picture)."""
    topo = testbed.topology
    cloud = Cloud(testbed)

    def nics(name: str) -> tuple[Nic, ...]:
        try:
            return parse_ip_addr(testbed.node(name).check(["ip", "-j", "addr"]))
        except FlatbedError:
            return ()

    def tap(guest: Guest) -> str | None:
        if not (network and guest.compute and guest.instance_name):
            return None
        try:
            return next((nic.tap for nic in domains.nics(guest.node, guest.instance_name) if nic.tap), None)
        except FlatbedError:  # no running domain (BUILD, deleted meanwhile)
            return None

    with ThreadPoolExecutor(max_workers=len(topo.nodes) + 1) as pool:
        facts_future = pool.submit(health.probe, testbed)
        guests_error = ""
        try:
            guests = cloud.guests()
        except FlatbedError as e:
            guests, guests_error = [], str(e)
        # The NICs after the guest list, each guest's tap with them: a guest that came up in
        # between has its tap among its compute's NICs (else it would hang off the flat NIC).
        tap_futures = [pool.submit(tap, guest) for guest in guests]
        nic_futures = {n.name: pool.submit(nics, n.name) for n in topo.nodes} if network else {}
        facts = facts_future.result()
        rows = [GuestRow(guest, f.result()) for guest, f in zip(guests, tap_futures, strict=True)]
        node_nics = {name: f.result() for name, f in nic_futures.items()}
    by_name = {f.name: f for f in facts}
    return Snapshot(
        run_id=testbed.run_id, topology=topo.name, provider=testbed.state.provider, status=testbed.state.status,
        management=f"{topo.management.interface} {topo.management.cidr}",
        flat=f"{topo.flat.interface} {topo.flat.cidr} bridge {topo.flat.bridge}",
        nodes=tuple(NodeRow(n.name, n.role, str(n.address), by_name[n.name], node_nics.get(n.name, ()))
                    for n in topo.nodes),
        guests=tuple(rows), checks=tuple(health.judge(topo, facts)), guests_error=guests_error,
        provider_facts=tuple(testbed.provider.facts()))


# --- the table --------------------------------------------------------------------------------

def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def node_state(facts: health.NodeFacts) -> str:
    if not facts.reachable:
        return "DOWN"
    if facts.role == "outside":
        return "up"
    return facts.system or "?"


def node_services(facts: health.NodeFacts, bridge: str) -> str:
    if not facts.reachable:
        return facts.error
    parts = [f"{unit} {state}" for unit, state in facts.units.items() if state != "absent"]
    if facts.role == "controller":
        parts.append(f"{bridge} {' '.join(facts.bridges[bridge]) or 'no address'}" if bridge in facts.bridges
                     else f"{bridge} missing")
        parts.append(f"dnsmasq {facts.dnsmasq}" if facts.dnsmasq else "dnsmasq not running")
    if facts.role == "compute":
        parts.append(f"libvirt_type {facts.libvirt_type or 'not decided yet'}")
    if facts.failed_units:
        parts.append(f"failed: {' '.join(facts.failed_units)}")
    return ", ".join(parts)


def render(snap: Snapshot) -> str:
    """The status table: a header line, nodes, guests, and the health verdict."""
    bridge = snap.flat.split()[-1]
    out = [f"testbed {snap.run_id}  {snap.topology}  provider {snap.provider}  status {snap.status}",
           *[f"{snap.provider}: {fact}" for fact in snap.provider_facts],
           f"networks: management {snap.management}; flat {snap.flat}", ""]
    out += _table(["NODE", "ROLE", "ADDRESS", "STATE", "SERVICES"],
                  [[n.name, n.role, n.address, node_state(n.facts), node_services(n.facts, bridge)]
                   for n in snap.nodes])
    out.append("")
    if snap.guests_error:
        out.append(f"guests: unknown ({snap.guests_error})")
    elif not snap.guests:
        out.append("guests: none")
    else:
        out += _table(["GUEST", "STATUS", "IP", "MAC", "LEASE", "HOSTSFILE", "COMPUTE", "INSTANCE"],
                      [[g.info.name, g.info.status, g.info.ip or "-", g.info.mac or "-", g.info.lease,
                        "yes" if g.info.in_hostsfile else "no", g.info.compute or "-", g.info.instance_name or "-"]
                       for g in snap.guests])
    out.append("")
    problem = health.verdict(snap.checks)
    out.append(f"health: {'ok' if problem is None else 'NOT OK: ' + problem}")
    return "\n".join(out) + "\n"


# --- the picture ------------------------------------------------------------------------------

def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _id(*parts: str) -> str:
    return _q("/".join(parts))


def _label(*lines: str) -> str:
    """A multi-line graphviz label (``\\n`` between lines, each line escaped)."""
    return '"' + "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in lines) + '"'


def to_dot(snap: Snapshot, management_if: str, flat_if: str) -> str:
    """Graphviz source: networks as ellipses, nodes as clusters of NICs/bridges/taps, guests on their
    taps (a guest without one, dashed to the flat bridge; never to the flat NIC, which it is not on)."""
    mgmt, flat = _id("net", "management"), _id("net", "flat")
    bridge = snap.flat.split()[-1]
    out = ["graph testbed {",
           "  graph [rankdir=TB, fontname=Helvetica, fontsize=11, labelloc=t,",
           f"         label={_q(f'flatbed {snap.run_id} — {snap.topology} ({snap.provider}, {snap.status})')}];",
           "  node [fontname=Helvetica, fontsize=10];",
           f"  {mgmt} [shape=ellipse, style=filled, fillcolor=lightblue, label={_q('management ' + snap.management)}];",
           f"  {flat} [shape=ellipse, style=filled, fillcolor=palegreen, label={_q('flat ' + snap.flat)}];"]
    guests_on: dict[str, list[GuestRow]] = {}
    for g in snap.guests:
        guests_on.setdefault(g.info.compute or "", []).append(g)
    for row in snap.nodes:
        color = "black" if row.facts.reachable else "red"
        out.append(f"  subgraph {_q('cluster_' + row.name)} {{")
        out.append(f"    label={_q(f'{row.name} ({row.role}) {row.address} — {node_state(row.facts)}')}; "
                   f"color={color};")
        nics = row.nics or tuple(Nic(name=i) for i in ((management_if,) if row.role == "outside"
                                                       else (management_if, flat_if)))
        for nic in nics:
            label = _label(nic.name + (" (promisc)" if nic.promisc else ""), *nic.addresses,
                           *([nic.mac] if nic.mac else []))
            shape = {"bridge": "box3d", "tap": "cds"}.get(nic.kind, "box")
            out.append(f"    {_id(row.name, nic.name)} [shape={shape}, label={label}];")
        # Edge order sets the ranks (top to bottom): network, NIC, bridge, tap, guest.
        for nic in nics:
            if nic.master and nic.kind == "tap":
                out.append(f"    {_id(row.name, nic.master)} -- {_id(row.name, nic.name)};")
            elif nic.master:
                out.append(f"    {_id(row.name, nic.name)} -- {_id(row.name, nic.master)};")
        names = {n.name for n in nics}
        for g in guests_on.get(row.name, []):
            gid = _id("guest", g.info.uuid)  # names can repeat; a uuid cannot
            label = _label(g.info.name, g.info.ip or "no IP", g.info.status, g.info.instance_name or "no domain")
            out.append(f"    {gid} [shape=component, style=filled, fillcolor=lightyellow, label={label}];")
            if g.tap and g.tap in names:
                out.append(f"    {_id(row.name, g.tap)} -- {gid};")
            elif bridge in names:  # no tap (yet): dashed, to the bridge it will be plugged into
                out.append(f"    {_id(row.name, bridge)} -- {gid} [style=dashed, label=\"no tap\"];")
        out.append("  }")
        if management_if in names:
            out.append(f"  {mgmt} -- {_id(row.name, management_if)};")
        if flat_if in names:
            out.append(f"  {flat} -- {_id(row.name, flat_if)};")
    out.append("}")
    return "\n".join(out) + "\n"


def write_svg(dot_source: str, path: Path) -> None:
    """Render with graphviz's ``dot`` (host package ``graphviz``)."""
    dot = shutil.which("dot")
    if dot is None:
        raise FlatbedError("status --svg needs graphviz's `dot` (apt-get install graphviz)")
    proc = subprocess.run([dot, "-Tsvg", "-o", str(path)], input=dot_source.encode(), capture_output=True,
                          timeout=60)
    if proc.returncode != 0:
        raise FlatbedError(f"dot failed: {proc.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
