"""``flatbed clean``: remove what flatbed runs left on this host, and nothing else.

Left behind means: a testbed whose state file says it is being created or removed but whose
process is gone (a killed ``up`` or pytest, an aborted teardown), one that is up but whose run
was killed before it kept or removed it, one that failed, one whose nodes stopped running,
one whose state file this flatbed cannot read, and resources tagged with a run id (``fb`` + 6
hex digits) that no state file accounts for: flatbed's own (namespaces ``fbXXXXXX-*``, mounts
under the state root) and each provider's (:meth:`~flatbed.providers.base.Provider.scan`, e.g.
cgroups and overlays of containers, a private libvirtd's runtime directory). Kept testbeds that
are up stay up (``flatbed down`` removes those), and so do testbeds recorded in another state
root beside ours (other ``FLATBED_STATE`` directories of the same host): their owner cleans them.
A testbed that a live process uses (:mod:`flatbed.ownership`) is never touched without ``--force``.

The decisions are pure functions (:func:`judge_testbed`, :func:`judge_unreadable`,
:func:`judge_orphan`), unit-tested; removal reuses the provider's ``destroy`` where a state file
exists and every provider's ``sweep`` where none does (Molecule's driver ``reset``).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flatbed import artifacts, hostnet, leftovers, ownership, providers, state
from flatbed.errors import FlatbedError
from flatbed.mounts import mounts_under
from flatbed.topology import DEFAULT_TOPOLOGY
from flatbed.topology import load as load_topology
from flatbed.uninterruptible import finishing_teardown


@dataclass(frozen=True)
class Decision:
    run_id: str
    action: str        # remove | keep | skip
    reason: str


@dataclass
class Report:
    removed: list[tuple[Decision, list[str]]] = field(default_factory=list)  # per run: why, and what
    kept: list[Decision] = field(default_factory=list)
    artifacts_removed: list[str] = field(default_factory=list)   # session directories (--artifacts-older-than)
    artifacts_refused: list[str] = field(default_factory=list)

    def lines(self, dry_run: bool = False) -> list[str]:
        """What ``flatbed clean`` prints."""
        out = []
        for decision, items in self.removed:
            out.append(f"{'would remove' if dry_run else 'removed'} {decision.run_id} ({decision.reason}):")
            out += [f"  {item}" for item in items]
        out += [f"{'would remove' if dry_run else 'removed'} artifacts {where}" for where in self.artifacts_removed]
        if not self.removed and not self.artifacts_removed:
            out.append("nothing to clean")
        for decision in self.kept:
            out.append(f"{'kept' if decision.action == 'keep' else 'skipped'} {decision.run_id}: {decision.reason}")
        out += [f"kept artifacts {why}" for why in self.artifacts_refused]
        return out


def judge_testbed(st: state.TestbedState, nodes_running: bool, user: ownership.User | None,
                  force: bool = False, kept_older_than: float | None = None, now: float | None = None) -> Decision:
    """What to do with a testbed recorded in our state root; ``user``: the live process using it.
    With ``kept_older_than`` (seconds), a testbed kept up is removed once it is older than that."""
    if user is not None and not force:
        # Whatever its status: coming up, under test (a compute rebooting), being removed.
        return Decision(st.run_id, "keep", f"in use by {user}; {ownership.FORCE_REMOVE}")
    if st.status == "up":
        if not nodes_running:
            return Decision(st.run_id, "remove", "recorded up but its nodes are not running")
        age = (time.time() if now is None else now) - st.created
        if kept_older_than is not None and age > kept_older_than:
            return Decision(st.run_id, "remove", f"kept for {_age(age)}, older than {_age(kept_older_than)}")
        if st.kept or not st.owner or state.process_alive(st.owner):
            return Decision(st.run_id, "keep", "up with every node running; `flatbed down` removes it")
        return Decision(st.run_id, "remove", f"its run (pid {st.owner.split(':')[0]}) is gone and neither kept "
                                             "nor removed it")
    if user is not None:
        return Decision(st.run_id, "remove", f"{st.status}, in use by {user}: --force")
    if st.status == "creating":
        return Decision(st.run_id, "remove", "bring-up interrupted (its process is gone)")
    if st.status == "removing":
        return Decision(st.run_id, "remove", "teardown interrupted (its process is gone)")
    return Decision(st.run_id, "remove", f"status {st.status}")


def judge_unreadable(problem: state.StateUnreadable) -> Decision:
    """What to do with a testbed whose state file this flatbed cannot read."""
    if problem.newer:
        return Decision(problem.run_id, "skip", "its state file is from a newer flatbed, which removes it")
    return Decision(problem.run_id, "remove", f"unreadable state file ({problem})")


def judge_orphan(run_id: str, recorded_elsewhere: Path | None) -> Decision:
    """What to do with tagged resources that no state file in our root accounts for."""
    if recorded_elsewhere is not None:
        return Decision(run_id, "skip", f"recorded in another state root ({recorded_elsewhere})")
    return Decision(run_id, "remove", "tagged resources without a state file")


# --- finding ----------------------------------------------------------------------------------

def tagged_resources() -> dict[str, list[str]]:
    """Run id -> its host resources (flatbed's own and every provider's)."""
    return leftovers.tagged()


def recorded_elsewhere(run_id: str) -> Path | None:
    """The state root of ``run_id`` beside ours, found by location or by what its live processes
    name (each provider knows where its own name one); None when there is none."""
    own = state.state_root()
    for candidate in sorted(own.parent.glob(f"*/{run_id}/state.json")):
        if candidate.parent.parent != own:
            return candidate.parent.parent
    for cls in providers.classes():
        root = cls.recorded_in(run_id)
        if root is not None and root != own and (root / run_id / "state.json").exists():
            return root
    return None


def _nodes_running(st: state.TestbedState, progress: Callable[[str], None]) -> bool:
    """Every node the state file records is running, as its provider tells."""
    if not st.record.nodes:
        return False
    provider = _provider(st, progress)
    return all(provider.running(name) for name in st.record.nodes)


def _provider(st: state.TestbedState, progress: Callable[[str], None]) -> providers.Provider:
    try:
        topo = load_topology(st.topology_path)
    except FlatbedError:
        topo = load_topology(DEFAULT_TOPOLOGY)  # destroy works from the state file; the topology is a formality
    return providers.get(st.provider)(topo, st, progress)


# --- removing ---------------------------------------------------------------------------------

def remove_tagged(run_id: str) -> list[str]:
    """Remove a run's host resources without a state file: mounts under its directory, then what
    each provider tagged (processes, cgroups, daemons, directories), then its namespaces."""
    removed: list[str] = []
    for mountpoint in mounts_under(state.state_root() / run_id):
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)
        removed.append(f"mount {mountpoint}")
    for cls in providers.classes():
        removed += cls.sweep(run_id)
    for ns in hostnet.list_namespaces(f"{run_id}-"):
        killed = hostnet.remove_namespace(ns)
        removed.append(f"namespace {ns}" + (f" ({killed} processes killed)" if killed else ""))
    return removed


def _age(seconds: float) -> str:
    """``3 d 4 h``, ``5 h 2 min``, ``40 min``, ``12 s``."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else f"{secs} s"


def remove_testbed(st: state.TestbedState, progress: Callable[[str], None]) -> list[str]:
    """Remove a recorded testbed as ``down`` does (marked ``removing`` by this process, through
    the first interrupt), and whatever tagged resources its state file did not know about."""
    with finishing_teardown(st.run_id):
        st.status, st.owner, st.owner_since = "removing", ownership.me(), time.time()
        st.save()
        provider = _provider(st, progress)
        removed = provider.destroy()
        removed += remove_tagged(st.run_id)  # anything the state file did not know about
        left = provider.leftovers()
        if left:
            raise FlatbedError(f"testbed {st.run_id}: still present after clean: {', '.join(left)}")
        st.forget()
    return removed + [f"state file {st.dir / 'state.json'}"]


def clean(*, dry_run: bool = False, force: bool = False, progress: Callable[[str], None] = lambda m: None,
          kept_older_than: float | None = None, artifacts_older_than: float | None = None) -> Report:
    """Remove every leftover; returns what was removed (or would be, with ``dry_run``) and what was
    kept. ``force``: also testbeds a live process uses (those not up and running);
    ``kept_older_than``: also testbeds kept up for longer than that (not one in use);
    ``artifacts_older_than``: also session artifact directories older than that (not a running session's)."""
    report = Report()
    if artifacts_older_than is not None:
        removed, refused = artifacts.prune(artifacts_older_than, dry_run=dry_run)
        report.artifacts_removed = [str(p) for p in removed]
        report.artifacts_refused = refused
    beds, unreadable = state.scan_testbeds()
    for st in beds:
        decision = judge_testbed(st, _nodes_running(st, progress), ownership.user_of(st), force, kept_older_than)
        if decision.action != "remove":
            report.kept.append(decision)
        elif dry_run:
            report.removed.append((decision, [f"testbed {st.run_id} and everything its state file records"]))
        else:
            report.removed.append((decision, remove_testbed(st, progress)))
    for problem in unreadable:
        decision = judge_unreadable(problem)
        path = state.state_root() / problem.run_id / "state.json"
        if decision.action != "remove":
            report.kept.append(decision)
        elif dry_run:
            report.removed.append((decision, leftovers.tagged().get(problem.run_id, []) + [f"state file {path}"]))
        else:
            removed = remove_tagged(problem.run_id)
            path.unlink(missing_ok=True)
            report.removed.append((decision, removed + [f"state file {path}"]))
    recorded = {st.run_id for st in beds} | {problem.run_id for problem in unreadable}
    for run_id, resources in sorted(tagged_resources().items()):
        if run_id in recorded:
            continue
        decision = judge_orphan(run_id, recorded_elsewhere(run_id))
        if decision.action != "remove":
            report.kept.append(decision)
        else:
            report.removed.append((decision, resources if dry_run else remove_tagged(run_id)))
    if not dry_run:
        state.prune_artifacts()
    return report
