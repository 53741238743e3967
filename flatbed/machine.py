"""What ``flatbed up/list/status --json`` print: plain dicts of what the tables show, for scripts
and CI (the run id, nodes, guests, health) — so nobody scrapes prose for a run id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flatbed import health

if TYPE_CHECKING:
    from flatbed.artifacts import SessionRecord
    from flatbed.state import StateUnreadable, TestbedState
    from flatbed.status import Snapshot
    from flatbed.testbed import Testbed


def testbed(st: TestbedState) -> dict:
    owner = st.owner.split(":")[0]
    return {"run_id": st.run_id, "provider": st.provider, "status": st.status, "topology": st.topology_path,
            "created": st.created, "dir": str(st.dir), "owner_pid": int(owner) if owner.isdigit() else None}


def up(bed: Testbed) -> dict:
    topo = bed.topology
    return {**testbed(bed.state), "topology_name": topo.name,
            "nodes": [{"name": n.name, "role": n.role, "address": str(n.address)} for n in topo.nodes]}


def removed_with_artifacts(records: list[tuple[str, SessionRecord]], present: set[str]) -> list[dict]:
    """Testbeds gone from the state root whose failing tests left bundles: one entry each, newest
    session last."""
    out = []
    for path, record in records:
        for bed in record.testbeds:
            bundles = [b for b in record.bundles if b.run_id == bed.run_id]
            if bundles and bed.run_id not in present:
                out.append({"run_id": bed.run_id, "topology": bed.topology, "outcome": bed.outcome,
                            "session": path, "failed": list(bed.failed), "bundles": [b.path for b in bundles]})
    return out


def listing(beds: list[TestbedState], unreadable: list[StateUnreadable], removed: list[dict]) -> dict:
    return {"testbeds": [testbed(st) for st in beds],
            "unreadable": [{"run_id": u.run_id, "error": str(u)} for u in unreadable],
            "removed_with_artifacts": removed}


def status(snap: Snapshot) -> dict:
    problem = health.verdict(snap.checks)
    return {
        "run_id": snap.run_id, "topology": snap.topology, "provider": snap.provider, "status": snap.status,
        "provider_facts": list(snap.provider_facts),
        "nodes": [{"name": n.name, "role": n.role, "address": n.address, "reachable": n.facts.reachable,
                   "system": n.facts.system, "units": dict(n.facts.units),
                   "failed_units": list(n.facts.failed_units)} for n in snap.nodes],
        "guests": None if snap.guests_error else [
            {"name": g.info.name, "uuid": g.info.uuid, "status": g.info.status, "ip": g.info.ip, "mac": g.info.mac,
             "lease": g.info.lease, "in_hostsfile": g.info.in_hostsfile, "compute": g.info.compute,
             "instance": g.info.instance_name} for g in snap.guests],
        "guests_error": snap.guests_error or None,
        "health": {"ok": problem is None, "problem": problem,
                   "checks": [{"node": c.node, "what": c.what, "ok": c.ok, "detail": c.detail} for c in snap.checks]},
    }
