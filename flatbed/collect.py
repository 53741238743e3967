"""The artifact bundle of a testbed: what an engineer needs to read a failure after the fact.

One collector for the CLI (``flatbed collect DIR``) and the pytest suite (on a failing test).
Layout of ``DIR``::

    status.txt                       the status table (nodes, services, guests, health)
    nova-list.txt, fixed-list.txt    the controller's view of guests and fixed IPs
    <node>/iptables-save.txt, ebtables.txt, ip-a.txt, route-n.txt, brctl-show.txt, ...
    controller-1/hostsfile.txt, syslog-dnsmasq.txt, journal-nova-network.txt
    guests/<compute>/<instance>/console.log, libvirt.xml   every instance directory on every compute
    guests/<name>.show.txt           nova show of each guest nova knows
    MANIFEST.txt                     every file written, and every command that failed

The collector never raises for what it reads: a stopped node or a failing command becomes a line
in the file (and the manifest), so a broken testbed still yields a bundle.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from flatbed.cloud import Cloud
from flatbed.errors import FlatbedError

if TYPE_CHECKING:
    from flatbed.node import Node
    from flatbed.testbed import Testbed

# Every stack node (name -> command line); the outside host gets the network ones.
NODE_COMMANDS = {
    "iptables-save": "iptables-save -c",
    "ebtables": "for t in filter nat; do echo \"== table $t\"; ebtables -t $t -L --Lc 2>&1; done",
    "ip-a": "ip a",
    "route-n": "route -n",
    "brctl-show": "brctl show",
    "ip-neigh": "ip neigh",
    "ps": "ps -eo pid,ppid,user,stat,args --forest",
    "systemctl-failed": "systemctl --failed --no-legend --plain",
}
OUTSIDE_COMMANDS = ("ip-a", "route-n", "ip-neigh")
CONTROLLER_COMMANDS = {
    "syslog-dnsmasq": "grep -E 'dnsmasq|dhcpbridge' /var/log/syslog",
    "journal-nova-network": "journalctl -u nova-network --no-pager -o short-precise",
    "journal-nova-api": "journalctl -u nova-api --no-pager -o short-precise",
    "nova-conf": "cat /etc/nova/nova.conf",
}
COMPUTE_COMMANDS = {
    "journal-nova-compute": "journalctl -u nova-compute --no-pager -o short-precise",
    "virsh-list": "virsh list --all",
    "nova-conf": "cat /etc/nova/nova.conf",
}
TIMEOUT = 60


def safe_name(text: str) -> str:
    """A file name from a test id or guest name (``e2e/test_x.py::test_y[1]`` -> ``e2e_test_x.py_test_y_1``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.")[:150] or "unnamed"


class Collector:
    def __init__(self, testbed: Testbed, dest: Path):
        self.testbed = testbed
        self.dest = dest
        self.written: list[Path] = []
        self.failures: list[str] = []

    def write(self, relpath: str, content: str) -> None:
        path = self.dest / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        self.written.append(path)

    def capture(self, node: Node | None, node_name: str, relpath: str, command: str, *,
                raw: bool = False) -> str | None:
        """Run ``command`` on the node and write its output; failures are recorded, not raised.

        ``raw`` files (console logs, domain XML) hold the output only; others start with the command.
        """
        try:
            if node is None:
                raise FlatbedError(f"{node_name}: not running")
            result = node.run(command, timeout=TIMEOUT)
        except FlatbedError as e:
            self.failures.append(f"{relpath}: {e}")
            self.write(relpath, f"# {command}\n# not collected: {e}\n")
            return None
        body = result.stdout + (f"\n# stderr:\n{result.stderr}" if result.stderr.strip() else "")
        if not result.ok:
            self.failures.append(f"{relpath}: `{command}` exited {result.rc}")
            body = f"# exit status {result.rc}\n" + body
        self.write(relpath, body if raw and result.ok else f"# {command}\n{body}")
        return result.stdout if result.ok else None

    def node(self, name: str) -> Node | None:
        try:
            return self.testbed.node(name)
        except FlatbedError as e:
            self.failures.append(f"{name}: {e}")
            return None

    def run(self) -> list[Path]:
        from flatbed import status

        started = time.monotonic()
        topo = self.testbed.topology
        cloud = Cloud(self.testbed)
        try:
            self.write("status.txt", status.render(status.gather(self.testbed)))
        except FlatbedError as e:
            self.failures.append(f"status.txt: {e}")
        for spec in topo.nodes:
            node = self.node(spec.name)
            commands = ({k: NODE_COMMANDS[k] for k in OUTSIDE_COMMANDS} if spec.role == "outside"
                        else dict(NODE_COMMANDS))
            if spec.role == "controller":
                commands |= CONTROLLER_COMMANDS
                commands["hostsfile"] = f"cat {cloud.hostsfile_path}"
                commands["nova-list"] = "nova list"
                commands["fixed-list"] = "nova-manage fixed list"
            elif spec.role == "compute":
                commands |= COMPUTE_COMMANDS
            for name, command in commands.items():
                self.capture(node, spec.name, f"{spec.name}/{name}.txt", command)
            if spec.role == "compute":
                self.instances(node, spec.name, cloud)
        # The controller's view at top level too: the first files one opens.
        ctl = topo.controller.name
        for name in ("nova-list", "fixed-list"):
            src = self.dest / ctl / f"{name}.txt"
            if src.exists():
                self.write(f"{name}.txt", src.read_text())
        try:
            for server in cloud.servers():
                self.capture(self.node(ctl), ctl, f"guests/{safe_name(server['Name'])}.show.txt",
                             f"nova show {server['ID']}")
        except FlatbedError as e:
            self.failures.append(f"guests: {e}")
        manifest = [f"flatbed artifact bundle of testbed {self.testbed.run_id} "
                    f"({time.strftime('%Y-%m-%d %H:%M:%S')}, {time.monotonic() - started:.1f} s)", ""]
        manifest += [str(p.relative_to(self.dest)) for p in self.written]
        if self.failures:
            manifest += ["", "not collected or failed:"] + [f"  {f}" for f in self.failures]
        self.write("MANIFEST.txt", "\n".join(manifest) + "\n")
        return self.written

    def instances(self, node: Node | None, compute: str, cloud: Cloud) -> None:
        """console.log and libvirt.xml of every instance directory on the compute, known to nova or not."""
        if node is None:
            return
        base = cloud.instance_dir(compute, "")
        listing = self.capture(node, compute, f"{compute}/instances.txt", f"ls -d {base}instance-* 2>/dev/null || true")
        for directory in (listing or "").split():
            instance = directory.rstrip("/").rsplit("/", 1)[-1]
            for name in ("console.log", "libvirt.xml"):
                self.capture(node, compute, f"guests/{compute}/{instance}/{name}", f"cat {directory}/{name}",
                             raw=True)


def collect(testbed: Testbed, dest: Path) -> list[Path]:
    """Write the artifact bundle of ``testbed`` into ``dest``; returns the files written."""
    dest.mkdir(parents=True, exist_ok=True)
    return Collector(testbed, dest).run()
