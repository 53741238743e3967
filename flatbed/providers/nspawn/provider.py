"""The container provider: a switch namespace, a namespace per node, a container per stack node."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

from flatbed import hostnet, procs, state
from flatbed.errors import FlatbedError, NodeGoneError
from flatbed.images.base import BaseImage
from flatbed.images.cache import remove_tree
from flatbed.mounts import mounts_under
from flatbed.providers.base import Provider
from flatbed.providers.nspawn import cgroups, naming
from flatbed.providers.nspawn.launcher import find_leader, launch, nspawn_argv
from flatbed.providers.nspawn.node import NspawnNode
from flatbed.providers.nspawn.record import NspawnNodeRecord, NspawnRecord
from flatbed.waiters import wait_until

# A container's command line names its overlay: <base root>:<state root>/<run>/nodes/<node>.
OVERLAY_IN_CMDLINE = re.compile(r"--overlay=[^:]*:(/\S+)/(fb[0-9a-f]{6})/nodes/")


class NspawnProvider(Provider):
    name = "nspawn"
    Record = NspawnRecord
    side_by_side = True

    @classmethod
    def unusable(cls) -> str | None:
        for tool in ("systemd-nspawn", "nsenter"):
            if not shutil.which(tool):
                return f"{tool} is not installed"
        if os.geteuid() != 0:
            return "needs root"
        if not cgroups.CGROUP_ROOTS[0].is_dir() and not Path("/sys/fs/cgroup/cgroup.procs").exists():
            return "no cgroup v2 hierarchy"
        return None

    @property
    def rec(self) -> NspawnRecord:
        assert isinstance(self.state.record, NspawnRecord)
        return self.state.record

    def wire(self, network: str) -> tuple[str | None, str] | None:
        return naming.switch(self.run), naming.BRIDGES[network]

    def facts(self) -> list[str]:
        return [f"containers (systemd-nspawn), switch namespace {self.rec.switch}"]

    # --- bring-up -------------------------------------------------------------------------

    def create(self, base: BaseImage) -> None:
        topo, run = self.topology, self.run
        self.rec.switch = naming.switch(run)
        for node in topo.nodes:
            record = NspawnNodeRecord(role=node.role, netns=naming.netns(run, node.name))
            if node.role != "outside":
                record.cgroup = naming.cgroup(run, node.name)
                record.upper = str(naming.overlays(self.state.dir) / node.name)
            self.rec.nodes[node.name] = record
        self.state.save()  # recorded before creation: an interrupted create can still be cleaned

        started = time.monotonic()
        switch = self.rec.switch
        hostnet.create_namespace(switch)
        # A switch does not firewall: keep bridged frames away from netfilter in this namespace.
        for key in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-arptables"):
            hostnet.sysctl(switch, key, "0")
        for bridge in naming.BRIDGES.values():
            hostnet.add_bridge(switch, bridge)
        for i, node in enumerate(topo.nodes):
            ns = self.rec.nodes[node.name].netns
            hostnet.create_namespace(ns)
            hostnet.plug(switch, naming.BRIDGES["management"], f"n{i}m", ns, topo.management.interface,
                         node.macs[topo.management.interface])
            if node.role != "outside":
                hostnet.plug(switch, naming.BRIDGES["flat"], f"n{i}f", ns, topo.flat.interface,
                             node.macs[topo.flat.interface])
        # The document's host machine routes the flat range via the controller (§3.6: pings from
        # outside reach the controller, which does not forward them).
        hostnet.configure_host(self.rec.nodes[topo.outside.name].netns, topo.management.interface,
                               str(topo.outside.address), topo.management.cidr.prefixlen,
                               routes=((str(topo.flat.cidr), str(topo.controller.address)),))
        self.progress(f"switch and {len(topo.nodes)} node namespaces wired in {time.monotonic() - started:.1f} s")

        for node in topo.stack_nodes:
            self._launch(node.name, base)
        for node in topo.stack_nodes:
            self._wait_booted(node.name)
        self.progress(f"{len(topo.stack_nodes)} containers running in {time.monotonic() - started:.1f} s")

    def _launch(self, node: str, base: BaseImage) -> None:
        record = self.rec.nodes[node]
        assert record.upper and record.cgroup
        upper = Path(record.upper)
        upper.mkdir(parents=True, exist_ok=True)
        argv = nspawn_argv(naming.machine(self.run, node), node, base, upper, record.netns)
        record.launcher = launch(argv, record.cgroup, cgroups.roots(), self.state.dir / "logs" / f"{node}.console.log")
        self.state.save()

    def _wait_booted(self, node: str) -> None:
        record = self.rec.nodes[node]

        def leader() -> int | None:
            if not procs.alive(record.launcher):
                raise FlatbedError(f"{node}: systemd-nspawn exited during boot; see "
                                   f"{self.state.dir / 'logs' / (node + '.console.log')}")
            return find_leader(record.netns)

        record.leader = wait_until(leader, timeout=30, what=f"{node}: container PID 1")
        self.state.save()
        handle = self.node(node)

        def running() -> bool:
            state = handle.run(["systemctl", "is-system-running"]).stdout.strip()
            if state in ("degraded", "maintenance"):
                failed = handle.run(["systemctl", "--failed", "--no-legend", "--plain"]).stdout.strip()
                raise FlatbedError(f"{node}: systemd is {state}: {failed.splitlines()}")
            return state == "running"

        wait_until(running, timeout=60, what=f"{node}: systemd to reach 'running'")

    # --- nodes ----------------------------------------------------------------------------

    def node(self, name: str) -> NspawnNode:
        record = self.rec.nodes.get(name)
        if record is None:
            raise FlatbedError(f"no node {name!r} in testbed {self.run} (nodes: {', '.join(self.rec.nodes)})")
        leader = record.leader
        if record.role != "outside":
            # The leader changes when a container reboots; look it up again if it is gone.
            if leader is None or not procs.alive(leader):
                leader = find_leader(record.netns)
                if leader is None:
                    raise NodeGoneError(f"{name}: the container of testbed {self.run} is not running")
                record.leader = leader
        return NspawnNode(name, record.role, record.netns, leader)

    # --- teardown -------------------------------------------------------------------------

    def destroy(self) -> list[str]:
        removed: list[str] = []
        for name, record in self.rec.nodes.items():
            if record.cgroup:
                removed += self._stop_container(name, record)
        # A killed nspawn leaves its work dir: everything below the overlays' parent is this testbed's.
        removed += overlay_entries(self.state.dir)
        remove_tree(naming.overlays(self.state.dir))
        for ns in [r.netns for r in self.rec.nodes.values()] + ([self.rec.switch] if self.rec.switch else []):
            if hostnet.exists(ns):
                hostnet.remove_namespace(ns)
                removed.append(f"namespace {ns}")
        cgroups.remove_parent()
        return removed

    def _stop_container(self, name: str, record: NspawnNodeRecord) -> list[str]:
        removed = []
        if record.launcher and procs.alive(record.launcher):
            # SIGTERM makes nspawn power the container off cleanly (libvirt stops its guests).
            leader = find_leader(record.netns)
            for pid in procs.children(record.launcher):
                procs.send(pid, signal.SIGTERM)
            try:
                wait_until(lambda: not procs.alive(record.launcher), timeout=30, what=f"{name}: container power-off")
            except FlatbedError:
                self.progress(f"{name}: did not power off in 30 s, killing it")
            removed.append(f"container {naming.machine(self.run, name)} (pid 1 was {leader})")
        for root in cgroups.roots():
            cg = root / record.cgroup
            if cg.exists():
                cgroups.kill(cg)
                removed.append(f"cgroup {cg}")
        # Strays that left the container's cgroup but not its network namespace.
        for pid in hostnet.pids_in(record.netns):
            procs.send(pid, signal.SIGKILL)
        return removed

    def leftovers(self) -> list[str]:
        found = [f"namespace {ns}" for ns in hostnet.list_namespaces(f"{self.run}-")]
        found += [f"cgroup {cg}" for cg in cgroups.tagged().get(self.run, [])]
        for record in self.rec.nodes.values():
            if record.launcher and procs.alive(record.launcher):
                found.append(f"launcher pid {record.launcher}")
        found += overlay_entries(self.state.dir)
        found += [f"mount {point}" for point in mounts_under(self.state.dir)]
        return found

    # --- run-tagged resources without a state file ------------------------------------------

    @classmethod
    def scan(cls) -> dict[str, list[str]]:
        found = {run: [f"cgroup {cg}" for cg in cgs] for run, cgs in cgroups.tagged().items()}
        root = state.state_root()
        for entry in sorted(root.iterdir()) if root.is_dir() else []:
            overlays = naming.overlays(entry)
            if overlays.is_dir() and any(overlays.iterdir()) and not (entry / "state.json").exists():
                found.setdefault(entry.name, []).append(f"overlay {overlays}")
        return found

    @classmethod
    def sweep(cls, run_id: str) -> list[str]:
        removed = []
        for cg in cgroups.tagged().get(run_id, []):
            cgroups.kill(cg)
            removed.append(f"cgroup {cg} (and its processes)")
        cgroups.remove_parent()
        overlays = naming.overlays(state.state_root() / run_id)
        if overlays.is_dir() and not (overlays.parent / "state.json").exists():
            if any(overlays.iterdir()):
                removed.append(f"overlay {overlays}")
            remove_tree(overlays)
        return removed

    @classmethod
    def recorded_in(cls, run_id: str) -> Path | None:
        pids: set[int] = set()
        for ns in hostnet.list_namespaces(f"{run_id}-"):
            pids.update(hostnet.pids_in(ns))
        for cg in cgroups.tagged().get(run_id, []):
            pids.update(cgroups.pids(cg))
        for pid in sorted(pids):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            for root, run in OVERLAY_IN_CMDLINE.findall(cmdline):
                if run == run_id:
                    return Path(root)
        return None


def overlay_entries(testbed_dir: Path) -> list[str]:
    """What is below a testbed's overlays' parent: the upper dirs, and the overlayfs work dirs
    (".#<node>…") nspawn makes beside them and removes only when it exits by itself."""
    overlays = naming.overlays(testbed_dir)
    return [f"overlay {entry}" for entry in sorted(overlays.iterdir())] if overlays.is_dir() else []
