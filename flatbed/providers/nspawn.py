"""Nodes as systemd-nspawn system containers in network namespaces (the fast, embedded provider).

Layout of one testbed ``<run>``:
- namespace ``<run>-sw``: the switch, one bridge per testbed network (``mgmt``, ``flat``);
- namespace ``<run>-<node>`` per node, with veths ``eth1``/``eth2`` whose peers are bridge ports;
- per stack node, a container booted from the base root through an overlay whose upper dir is
  in the testbed directory, in cgroups ``flatbed/<run>-<node>``;
- the outside host is a plain namespace holding the management gateway address, with a route
  of the flat range via the controller.

The machine notes explain each nspawn option; the short version is in ``_nspawn_argv``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from flatbed import hostnet, procs
from flatbed.errors import FlatbedError, NodeGoneError
from flatbed.images.base import BaseImage
from flatbed.localnode import LocalNode
from flatbed.mounts import mounts_under
from flatbed.providers.base import Provider
from flatbed.waiters import wait_until

CGROUP_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"))
CGROUP_PARENT = "flatbed"
BRIDGES = {"management": "mgmt", "flat": "flat"}

# Restart on exit 133 (the container rebooted); anything else ends the loop.
LAUNCHER = """\
for root in {cgroup_roots}; do
  mkdir -p "$root/{cgroup}" && echo $$ > "$root/{cgroup}/cgroup.procs"
done
while :; do
  "$@"; rc=$?
  [ "$rc" -eq 133 ] || exit "$rc"
  echo "flatbed: container rebooted, starting it again"
done
"""


class NspawnNode(LocalNode):
    """A container node, entered with nsenter through its PID 1 (the outside host: ``leader`` None)."""

    def __init__(self, name: str, role: str, netns: str, leader: int | None):
        super().__init__(name, role, netns)
        self.leader = leader

    def ensure_running(self) -> None:
        if self.leader is None:
            super().ensure_running()
        elif not Path(f"/proc/{self.leader}").exists():
            raise NodeGoneError(f"{self.name}: the container is not running (pid {self.leader} is gone)")

    def _enter(self) -> list[str]:
        if self.leader is None:
            return super()._enter()
        self.ensure_running()
        return ["nsenter", "-t", str(self.leader), "-a", "--"]

    def host_argv(self, argv: list[str], *, tty: bool = False) -> list[str]:
        if not tty or self.leader is None:
            return super().host_argv(argv, tty=tty)
        # A terminal of the container's own devpts (`tty` names it, job control works): script(1),
        # from bsdutils, in every Debian root. -e: its exit status is the command's.
        return super().host_argv(["script", "-qefc", shlex.join(argv), "/dev/null"], tty=True)


class NspawnProvider(Provider):
    name = "nspawn"

    @classmethod
    def unusable(cls) -> str | None:
        for tool in ("systemd-nspawn", "nsenter"):
            if not shutil.which(tool):
                return f"{tool} is not installed"
        if os.geteuid() != 0:
            return "needs root"
        if not CGROUP_ROOTS[0].is_dir() and not Path("/sys/fs/cgroup/cgroup.procs").exists():
            return "no cgroup v2 hierarchy"
        return None

    # Names, all derived from the run id so that cleanup can find them.
    @property
    def run(self) -> str:
        return self.state.run_id

    def _switch(self) -> str:
        return f"{self.run}-sw"

    def _netns(self, node: str) -> str:
        return f"{self.run}-{node}"

    def _cgroup(self, node: str) -> str:
        return f"{CGROUP_PARENT}/{self.run}-{node}"

    def _cgroup_roots(self) -> tuple[Path, ...]:
        return tuple(r for r in CGROUP_ROOTS if r.is_dir()) or (Path("/sys/fs/cgroup"),)

    def create(self, base: BaseImage) -> None:
        topo = self.topology
        self.state.resources["switch"] = self._switch()
        for node in topo.nodes:
            self.state.nodes[node.name] = {"role": node.role, "netns": self._netns(node.name)}
            if node.role != "outside":
                self.state.nodes[node.name].update(
                    cgroup=self._cgroup(node.name), upper=str(self.state.dir / "nodes" / node.name))
        self.state.save()  # recorded before creation: an interrupted create can still be cleaned

        started = time.monotonic()
        switch = self._switch()
        hostnet.create_namespace(switch)
        # A switch does not firewall: keep bridged frames away from netfilter in this namespace.
        for key in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-arptables"):
            hostnet.sysctl(switch, key, "0")
        for bridge in BRIDGES.values():
            hostnet.add_bridge(switch, bridge)
        for i, node in enumerate(topo.nodes):
            ns = self._netns(node.name)
            hostnet.create_namespace(ns)
            hostnet.plug(switch, BRIDGES["management"], f"n{i}m", ns, topo.management.interface,
                         node.macs[topo.management.interface])
            if node.role != "outside":
                hostnet.plug(switch, BRIDGES["flat"], f"n{i}f", ns, topo.flat.interface,
                             node.macs[topo.flat.interface])
        # The document's host machine routes the flat range via the controller (§3.6: pings from
        # outside reach the controller, which does not forward them).
        hostnet.configure_host(self._netns(topo.outside.name), topo.management.interface,
                               str(topo.outside.address), topo.management.cidr.prefixlen,
                               routes=((str(topo.flat.cidr), str(topo.controller.address)),))
        self.progress(f"switch and {len(topo.nodes)} node namespaces wired in {time.monotonic() - started:.1f} s")

        for node in topo.stack_nodes:
            self._launch(node.name, base)
        for node in topo.stack_nodes:
            self._wait_booted(node.name)
        self.progress(f"{len(topo.stack_nodes)} containers running in {time.monotonic() - started:.1f} s")

    def _nspawn_argv(self, node: str, base: BaseImage) -> list[str]:
        upper = Path(self.state.nodes[node]["upper"])
        return [
            "systemd-nspawn", "--quiet", "--boot",
            "-D", str(base.root), f"--overlay={base.root}:{upper}:/",
            f"--machine={self.run}-{node}", f"--hostname={node}",
            f"--network-namespace-path={hostnet.NETNS_DIR / self._netns(node)}",
            # No systemd on the host: do not register with machined, stay in our own cgroup.
            "--register=no", "--keep-unit",
            "--console=read-only",
            # Not the host's resolver: nodes never need the internet, and dnsmasq must not forward
            # guests' queries anywhere outside the testbed.
            "--resolv-conf=off",
            # dnsmasq, bridges, iptables inside need it; the rest of nspawn's default set stays.
            "--capability=CAP_NET_ADMIN",
        ]

    def _launch(self, node: str, base: BaseImage) -> None:
        record = self.state.nodes[node]
        upper = Path(record["upper"])
        upper.mkdir(parents=True, exist_ok=True)
        logs = self.state.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ,
                   # Writable /sys/class/net of the container's own netns (ifupdown enslaves eth2).
                   SYSTEMD_NSPAWN_API_VFS_WRITABLE="network",
                   # Host cgroups are hybrid; libvirt in the container needs a writable v2 tree.
                   SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        script = LAUNCHER.format(cgroup_roots=" ".join(str(r) for r in self._cgroup_roots()),
                                 cgroup=record["cgroup"])
        with open(logs / f"{node}.console.log", "ab") as log:
            proc = subprocess.Popen(["/bin/sh", "-c", script, "flatbed-launcher", *self._nspawn_argv(node, base)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        record["launcher"] = proc.pid
        self.state.save()

    def _leader(self, node: str) -> int | None:
        """PID 1 of the container: the process in the node's netns that is pid 1 of its own pid ns."""
        for pid in hostnet.pids_in(self._netns(node)):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    if len(ids) > 1 and ids[-1] == "1":
                        return pid
        return None

    def _wait_booted(self, node: str) -> None:
        record = self.state.nodes[node]
        launcher = record["launcher"]

        def leader() -> int | None:
            if not procs.alive(launcher):
                raise FlatbedError(f"{node}: systemd-nspawn exited during boot; see "
                                   f"{self.state.dir / 'logs' / (node + '.console.log')}")
            return self._leader(node)

        record["leader"] = wait_until(leader, timeout=30, what=f"{node}: container PID 1")
        self.state.save()
        handle = self.node(node)

        def running() -> bool:
            state = handle.run(["systemctl", "is-system-running"]).stdout.strip()
            if state in ("degraded", "maintenance"):
                failed = handle.run(["systemctl", "--failed", "--no-legend", "--plain"]).stdout.strip()
                raise FlatbedError(f"{node}: systemd is {state}: {failed.splitlines()}")
            return state == "running"

        wait_until(running, timeout=60, what=f"{node}: systemd to reach 'running'")

    def node(self, name: str) -> NspawnNode:
        record = self.state.nodes.get(name)
        if record is None:
            raise FlatbedError(f"no node {name!r} in testbed {self.run} (nodes: {', '.join(self.state.nodes)})")
        leader = record.get("leader")
        if record["role"] != "outside":
            # The leader changes when a container reboots; look it up again if it is gone.
            if leader is None or not procs.alive(leader):
                leader = self._leader(name)
                if leader is None:
                    raise NodeGoneError(f"{name}: the container of testbed {self.run} is not running")
                record["leader"] = leader
        return NspawnNode(name, record["role"], record["netns"], leader)

    def destroy(self) -> list[str]:
        removed: list[str] = []
        for name, record in self.state.nodes.items():
            if "cgroup" in record:
                removed += self._stop_container(name, record)
            upper = record.get("upper")
            if upper and Path(upper).exists():
                shutil.rmtree(upper)
                removed.append(f"overlay {upper}")
        try:
            (self.state.dir / "nodes").rmdir()  # the overlays' parent, once they are gone
        except OSError:
            pass
        for record in self.state.nodes.values():
            removed += self._remove_namespace(record["netns"])
        switch = self.state.resources.get("switch")
        if switch:
            removed += self._remove_namespace(switch)
        for root in self._cgroup_roots():
            try:
                (root / CGROUP_PARENT).rmdir()  # shared by testbeds: goes only with the last one
            except OSError:
                pass
        return removed

    def _stop_container(self, name: str, record: dict) -> list[str]:
        removed = []
        launcher = record.get("launcher")
        if launcher and procs.alive(launcher):
            # SIGTERM makes nspawn power the container off cleanly (libvirt stops its guests).
            leader = self._leader(name)
            nspawn = _children(launcher)
            for pid in nspawn:
                procs.send(pid, signal.SIGTERM)
            try:
                wait_until(lambda: not procs.alive(launcher), timeout=30, what=f"{name}: container power-off")
            except FlatbedError:
                self.progress(f"{name}: did not power off in 30 s, killing it")
            removed.append(f"container {self.run}-{name} (pid 1 was {leader})")
        for root in self._cgroup_roots():
            cg = root / record["cgroup"]
            if cg.exists():
                _kill_cgroup(cg)
                removed.append(f"cgroup {cg}")
        # Strays that left the container's cgroup but not its network namespace.
        for pid in hostnet.pids_in(record["netns"]):
            procs.send(pid, signal.SIGKILL)
        return removed

    def _remove_namespace(self, ns: str) -> list[str]:
        if not hostnet.exists(ns):
            return []
        hostnet.remove_namespace(ns)
        return [f"namespace {ns}"]

    def leftovers(self) -> list[str]:
        found = [f"namespace {ns}" for ns in hostnet.list_namespaces(f"{self.run}-")]
        for root in self._cgroup_roots():
            parent = root / CGROUP_PARENT
            if parent.is_dir():
                found += [f"cgroup {p}" for p in parent.iterdir() if p.name.startswith(f"{self.run}-")]
        for record in self.state.nodes.values():
            if record.get("launcher") and procs.alive(record["launcher"]):
                found.append(f"launcher pid {record['launcher']}")
            if record.get("upper") and Path(record["upper"]).exists():
                found.append(f"overlay {record['upper']}")
        found += [f"mount {point}" for point in mounts_under(self.state.dir)]
        return found



def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]



def _kill_cgroup(cg: Path) -> None:
    """Kill every process below ``cg`` and remove the cgroups bottom-up."""
    for _ in range(50):
        pids = [int(p) for sub in [cg, *cg.rglob("*")] if (sub / "cgroup.procs").exists()
                for p in (sub / "cgroup.procs").read_text().split()]
        if not pids:
            break
        for pid in pids:
            procs.send(pid, signal.SIGKILL)
        time.sleep(0.1)  # SIGKILL delivery is asynchronous; poll briefly until the cgroup empties
    for sub in sorted([cg, *[p for p in cg.rglob("*") if p.is_dir()]], key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
