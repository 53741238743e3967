"""The artifact collector on a testbed of scripted nodes: it writes the bundle and never raises (no nodes)."""

from __future__ import annotations

from pathlib import Path

from flatbed.collect import collect, safe_name
from flatbed.errors import NodeGoneError
from flatbed.node import Node
from flatbed.state import TestbedState
from flatbed.topology import DEFAULT_TOPOLOGY, load


class ScriptedNode(Node):
    """Answers commands from a table (first matching substring); everything else succeeds silently."""

    def __init__(self, name: str, role: str, answers: dict[str, tuple[int, str]], gone: bool = False):
        super().__init__(name, role)
        self.answers, self.gone, self.seen = answers, gone, []

    def _exec(self, argv, stdin, timeout):
        if self.gone:
            raise NodeGoneError(f"{self.name}: the container is not running")
        line = " ".join(argv)
        self.seen.append(line)
        for key, (rc, out) in self.answers.items():
            if key in line:
                return rc, out.encode(), b""
        return 0, b"", b""


class ScriptedTestbed:
    def __init__(self, nodes: dict[str, ScriptedNode]):
        self.topology = load(DEFAULT_TOPOLOGY)
        self.state = TestbedState(run_id="fb0000aa", provider="scripted", topology_path=str(DEFAULT_TOPOLOGY),
                                  topology_digest=self.topology.digest, status="up")
        self.run_id = self.state.run_id
        self.nodes = nodes
        self.provider = self  # the provider's facts for the status table: none here

    def facts(self):
        return []

    def node(self, name):
        return self.nodes[name]

    @property
    def controller(self):
        return self.nodes["controller-1"]


NOVA_LIST = """\
+------+--------+--------+----------------------+
|  ID  |  Name  | Status |       Networks       |
+------+--------+--------+----------------------+
| 45f2 | cirros | ACTIVE | novanetwork=10.0.0.2 |
+------+--------+--------+----------------------+
"""


def test_bundle_of_a_testbed_with_a_stopped_node(tmp_path: Path):
    bed = ScriptedTestbed({
        "controller-1": ScriptedNode("controller-1", "controller", {
            "nova list": (0, NOVA_LIST), "iptables-save": (0, "*nat\n:nova-network-snat - [0:0]\nCOMMIT\n"),
            "nova-br100.conf": (0, "fa:16:3e:07:b0:07,cirros.novalocal,10.0.0.2"),
            "syslog": (0, "controller-1 dnsmasq-dhcp[256]: DHCPACK(br100) 10.0.0.2\n")}),
        "compute-1": ScriptedNode("compute-1", "compute", {
            "ls -d": (0, "/var/lib/nova/instances/instance-00000009\n"),
            "instance-00000009/console.log": (0, "udhcpc: lease of 10.0.0.2 obtained\n"),
            "instance-00000009/libvirt.xml": (0, "<domain type='qemu'/>\n"),
            "route -n": (1, "route: boom")}),
        "compute-2": ScriptedNode("compute-2", "compute", {}, gone=True),
        "outside": ScriptedNode("outside", "outside", {}),
    })
    written = collect(bed, tmp_path / "bundle")
    root = tmp_path / "bundle"
    names = {str(p.relative_to(root)) for p in written}
    for node in ("controller-1", "compute-1", "compute-2"):
        for item in ("iptables-save", "ebtables", "ip-a", "route-n", "brctl-show"):
            assert f"{node}/{item}.txt" in names
    assert {"controller-1/hostsfile.txt", "controller-1/syslog-dnsmasq.txt", "nova-list.txt", "status.txt",
            "guests/compute-1/instance-00000009/console.log", "guests/compute-1/instance-00000009/libvirt.xml",
            "guests/cirros.show.txt", "outside/ip-a.txt", "MANIFEST.txt"} <= names
    assert "iptables-save.txt" not in {n.split("/")[-1] for n in names if n.startswith("outside/")}
    # Raw files hold the output only; others say which command made them.
    assert (root / "guests/compute-1/instance-00000009/libvirt.xml").read_text() == "<domain type='qemu'/>\n"
    assert (root / "controller-1/iptables-save.txt").read_text().startswith("# iptables-save")
    assert "DHCPACK" in (root / "controller-1/syslog-dnsmasq.txt").read_text()
    # Failures are recorded, not raised.
    manifest = (root / "MANIFEST.txt").read_text()
    assert "compute-2: the container is not running" in manifest
    assert "compute-1/route-n.txt: `route -n` exited 1" in manifest
    assert "compute-2 " in (root / "status.txt").read_text() and "DOWN" in (root / "status.txt").read_text()


def test_safe_names():
    assert safe_name("e2e/test_23_boot.py::test_guest[10.0.0.2]") == "e2e_test_23_boot.py_test_guest_10.0.0.2"
    assert safe_name("../..") == "unnamed"
