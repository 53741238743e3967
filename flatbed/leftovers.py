"""Find what flatbed runs left on this host: everything is tagged with a run id (``fb`` + 6 hex).

Read-only; ``flatbed leaks`` prints it and CI fails when anything is found after the suite.
Only names carrying the run-id tag are considered, never a broad pattern. flatbed's own tagged
resources (network namespaces ``<run>-*``, mounts under the state root) are listed here; each
registered provider lists its own (:meth:`flatbed.providers.base.Provider.scan`).
"""

from __future__ import annotations

from flatbed import hostnet, providers, state
from flatbed.mounts import mounts_under


def tagged() -> dict[str, list[str]]:
    """Run id -> its resources on this host, whether or not a state file records them."""
    found: dict[str, list[str]] = {}

    def add(run: str | None, what: str) -> None:
        if run and what not in found.setdefault(run, []):
            found[run].append(what)

    for ns in hostnet.list_namespaces(state.RUN_PREFIX):
        if "-" in ns:
            add(state.run_of(ns), f"namespace {ns}")
    root = state.state_root()
    for mountpoint in mounts_under(root):
        if mountpoint != root:
            add(state.run_of(mountpoint.relative_to(root).parts[0]), f"mount {mountpoint}")
    for cls in providers.classes():
        for run, items in cls.scan().items():
            for item in items:
                add(run, item)
    return found


def scan() -> list[str]:
    """Every tagged resource on the host, with live testbeds' resources marked as such."""
    beds, unreadable = state.scan_testbeds()
    live = {st.run_id for st in beds}
    found = [item + (f" (testbed {run} is up)" if run in live else "")
             for run, items in sorted(tagged().items()) for item in items]
    found += [f"state file {st.dir / 'state.json'} ({st.status})" for st in beds]
    found += [f"state file {state.state_root() / e.run_id / 'state.json'} (unreadable)" for e in unreadable]
    return found
