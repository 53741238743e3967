"""Find what flatbed runs left on this host: everything is tagged with a run id (``fb`` + 6 hex).

Read-only; ``flatbed leaks`` prints it and CI fails when anything is found after the suite.
Only names carrying the run-id tag are considered, never a broad pattern.
"""

from __future__ import annotations

import re
from pathlib import Path

from flatbed import hostnet, state
from flatbed.mounts import mounts_under
from flatbed.providers.nspawn import CGROUP_PARENT, CGROUP_ROOTS

RUN_TAG = re.compile(rf"^{state.RUN_PREFIX}[0-9a-f]{{6}}-")
RUN_ID = re.compile(rf"^{state.RUN_PREFIX}[0-9a-f]{{6}}$")


def scan() -> list[str]:
    """Every tagged resource on the host, with live testbeds' resources marked as such."""
    live = {st.run_id for st in state.list_testbeds()}
    found: list[str] = []

    def note(run_id: str, what: str) -> None:
        found.append(f"{what}" + (f" (testbed {run_id} is up)" if run_id in live else ""))

    for ns in hostnet.list_namespaces(state.RUN_PREFIX):
        if RUN_TAG.match(ns):
            note(ns.split("-")[0], f"namespace {ns}")
    for root in CGROUP_ROOTS:
        parent = root / CGROUP_PARENT
        if parent.is_dir():
            for cg in sorted(p for p in parent.iterdir() if p.is_dir() and RUN_TAG.match(p.name)):
                note(cg.name.split("-")[0], f"cgroup {cg}")
    root = state.state_root()
    for mountpoint in mounts_under(root):
        if mountpoint != root:
            note(mountpoint.relative_to(root).parts[0], f"mount {mountpoint}")
    runtime = Path("/run/flatbed")  # the vagrant provider's private libvirtd sockets
    if runtime.is_dir():
        for entry in sorted(runtime.iterdir()):
            if RUN_ID.match(entry.name):
                note(entry.name, f"runtime directory {entry}")
    for st in state.list_testbeds():
        note(st.run_id, f"state file {st.dir / 'state.json'} ({st.status})")
    return found
