"""``flatbed clean``: remove what flatbed runs left on this host, and nothing else.

Left behind means: a testbed whose state file says it is being created but whose creating
process is gone (a killed ``up`` or pytest), one that failed, one whose nodes stopped running,
and resources tagged with a run id (``fb`` + 6 hex digits: namespaces ``fbXXXXXX-*``, cgroups
``flatbed/fbXXXXXX-*`` and the processes in them, mounts and overlay directories under the
state root) that no state file accounts for. Kept testbeds that are up stay up (``flatbed
down`` removes those), and so do testbeds recorded in another state root beside ours (other
``FLATBED_STATE`` directories of the same host): their owner cleans them.

The decisions are pure functions (:func:`judge_testbed`, :func:`judge_orphan`), unit-tested;
removal reuses the provider's ``destroy`` where a state file exists.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flatbed import hostnet, providers, state
from flatbed.errors import FlatbedError
from flatbed.leftovers import RUN_TAG
from flatbed.mounts import mounts_under
from flatbed.providers.nspawn import CGROUP_PARENT, CGROUP_ROOTS, _kill_cgroup
from flatbed.topology import DEFAULT_TOPOLOGY
from flatbed.topology import load as load_topology

OVERLAY_IN_CMDLINE = re.compile(r"--overlay=[^:]*:(/\S+)/(fb[0-9a-f]{6})/nodes/")


@dataclass(frozen=True)
class Decision:
    run_id: str
    action: str        # remove | keep | skip
    reason: str


@dataclass
class Report:
    removed: list[tuple[Decision, list[str]]] = field(default_factory=list)  # per run: why, and what
    kept: list[Decision] = field(default_factory=list)

    def lines(self, dry_run: bool = False) -> list[str]:
        """What ``flatbed clean`` prints."""
        out = []
        for decision, items in self.removed:
            out.append(f"{'would remove' if dry_run else 'removed'} {decision.run_id} ({decision.reason}):")
            out += [f"  {item}" for item in items]
        if not self.removed:
            out.append("nothing to clean")
        for decision in self.kept:
            out.append(f"{'kept' if decision.action == 'keep' else 'skipped'} {decision.run_id}: {decision.reason}")
        return out


def judge_testbed(st: state.TestbedState, nodes_running: bool, owner_alive: bool) -> Decision:
    """What to do with a testbed recorded in our state root."""
    if st.status == "up":
        if nodes_running:
            return Decision(st.run_id, "keep", "up with every node running; `flatbed down` removes it")
        return Decision(st.run_id, "remove", "recorded up but its nodes are not running")
    if st.status == "creating" and owner_alive:
        return Decision(st.run_id, "keep", f"being created by pid {st.owner.split(':')[0]}")
    if st.status == "creating":
        return Decision(st.run_id, "remove", "bring-up interrupted (its process is gone)")
    return Decision(st.run_id, "remove", f"status {st.status}")


def judge_orphan(run_id: str, recorded_elsewhere: Path | None) -> Decision:
    """What to do with tagged resources that no state file in our root accounts for."""
    if recorded_elsewhere is not None:
        return Decision(run_id, "skip", f"recorded in another state root ({recorded_elsewhere})")
    return Decision(run_id, "remove", "tagged resources without a state file")


# --- finding ----------------------------------------------------------------------------------

def tagged_resources() -> dict[str, list[str]]:
    """Run id -> its host resources (namespaces, cgroups, mounts under the state root)."""
    found: dict[str, list[str]] = {}

    def add(name: str, what: str) -> None:
        found.setdefault(name.split("-")[0], []).append(what)

    for ns in hostnet.list_namespaces(state.RUN_PREFIX):
        if RUN_TAG.match(ns):
            add(ns, f"namespace {ns}")
    for root in CGROUP_ROOTS:
        parent = root / CGROUP_PARENT
        if parent.is_dir():
            for cg in sorted(p for p in parent.iterdir() if p.is_dir() and RUN_TAG.match(p.name)):
                add(cg.name, f"cgroup {cg}")
    for mountpoint in mounts_under(state.state_root()):
        run = mountpoint.relative_to(state.state_root()).parts[0]
        if re.fullmatch(rf"{state.RUN_PREFIX}[0-9a-f]{{6}}", run):
            add(run + "-", f"mount {mountpoint}")
    root = state.state_root()
    if root.is_dir():
        for entry in root.iterdir():
            if (entry / "nodes").is_dir() and any((entry / "nodes").iterdir()) and not (entry / "state.json").exists():
                add(entry.name + "-", f"overlay {entry / 'nodes'}")
    return found


def recorded_elsewhere(run_id: str) -> Path | None:
    """The state file of ``run_id`` in another state root beside ours, found by location or by
    the overlay path on its processes' command lines; None when there is none."""
    own = state.state_root()
    for candidate in sorted(own.parent.glob(f"*/{run_id}/state.json")):
        if candidate.parent.parent != own:
            return candidate.parent.parent
    for pid in _run_pids(run_id):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for root, run in OVERLAY_IN_CMDLINE.findall(cmdline):
            if run == run_id and Path(root) != own and (Path(root) / run / "state.json").exists():
                return Path(root)
    return None


def _run_pids(run_id: str) -> list[int]:
    pids: set[int] = set()
    for ns in hostnet.list_namespaces(f"{run_id}-"):
        pids.update(hostnet.pids_in(ns))
    for root in CGROUP_ROOTS:
        for members in (root / CGROUP_PARENT).glob(f"{run_id}-*/**/cgroup.procs"):
            try:
                pids.update(int(p) for p in members.read_text().split())
            except OSError:
                continue
    return sorted(pids)


def _nodes_running(st: state.TestbedState, progress: Callable[[str], None]) -> bool:
    """Every node the state file records is running (the provider hands out a handle)."""
    if not st.nodes:
        return False
    try:
        provider = _provider(st, progress)
        for name in st.nodes:
            provider.node(name)
    except FlatbedError:
        return False
    return True


def _provider(st: state.TestbedState, progress: Callable[[str], None]) -> providers.Provider:
    try:
        topo = load_topology(st.topology_path)
    except FlatbedError:
        topo = load_topology(DEFAULT_TOPOLOGY)  # destroy works from the state file; the topology is a formality
    return providers.get(st.provider)(topo, st, progress)


# --- removing ---------------------------------------------------------------------------------

def remove_tagged(run_id: str) -> list[str]:
    """Remove a run's host resources directly: processes, cgroups, mounts, namespaces, overlays."""
    removed: list[str] = []
    for root in CGROUP_ROOTS:
        parent = root / CGROUP_PARENT
        for cg in sorted(parent.glob(f"{run_id}-*")) if parent.is_dir() else []:
            _kill_cgroup(cg)
            removed.append(f"cgroup {cg} (and its processes)")
    for mountpoint in mounts_under(state.state_root() / run_id):
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)
        removed.append(f"mount {mountpoint}")
    for ns in hostnet.list_namespaces(f"{run_id}-"):
        killed = hostnet.remove_namespace(ns)
        removed.append(f"namespace {ns}" + (f" ({killed} processes killed)" if killed else ""))
    nodes = state.state_root() / run_id / "nodes"
    if nodes.is_dir() and not (nodes.parent / "state.json").exists():
        if any(nodes.iterdir()):
            removed.append(f"overlay {nodes}")
        shutil.rmtree(nodes)
    return removed


def clean(*, dry_run: bool = False, progress: Callable[[str], None] = lambda m: None) -> Report:
    """Remove every leftover; returns what was removed (or would be, with ``dry_run``) and what was kept."""
    report = Report()
    for st in state.list_testbeds():
        decision = judge_testbed(st, _nodes_running(st, progress), state.process_alive(st.owner))
        if decision.action != "remove":
            report.kept.append(decision)
            continue
        if dry_run:
            report.removed.append((decision, [f"testbed {st.run_id} and everything its state file records"]))
            continue
        provider = _provider(st, progress)
        removed = provider.destroy()
        removed += remove_tagged(st.run_id)  # anything the state file did not know about
        left = provider.leftovers()
        if left:
            raise FlatbedError(f"testbed {st.run_id}: still present after clean: {', '.join(left)}")
        st.forget()
        report.removed.append((decision, removed + [f"state file {st.dir / 'state.json'}"]))
    live = {st.run_id for st in state.list_testbeds()}
    for run_id, resources in sorted(tagged_resources().items()):
        if run_id in live:
            continue
        decision = judge_orphan(run_id, recorded_elsewhere(run_id))
        if decision.action != "remove":
            report.kept.append(decision)
        else:
            report.removed.append((decision, resources if dry_run else remove_tagged(run_id)))
    if not dry_run:
        for root in CGROUP_ROOTS:
            try:
                (root / CGROUP_PARENT).rmdir()  # only when no testbed is left in it
            except OSError:
                pass
        state.prune_artifacts()
    return report
