"""nova-manage + nova-network + dnsmasq + nova-dhcpbridge for real, in network namespaces.

Two namespaces made here and removed afterwards: a controller (dummy eth1 with the document's
192.168.56.200, veth "eth2" as the flat interface) and a fake guest on the other end of the veth.
Traffic never leaves them. Needs root, iproute2, bridge-utils, dnsmasq-base, dnsmasq-utils
(dhcp_release) and busybox (udhcpc); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_stack_iptables import DOCUMENT_FILTER, DOCUMENT_NAT
from test_stack_linux_net import DOCUMENT_DNSMASQ

from flatbed.checks import expect
from flatbed.checks.compare import assert_listing

STACK = Path(__file__).resolve().parents[1] / "stack"
BIN = STACK / "bin"
PYTHON = "/usr/bin/python3"  # Debian's, as on the nodes

TOOLS = ("ip", "brctl", "dnsmasq", "dhcp_release", "busybox", "iptables")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") is None for t in TOOLS)
    or not os.path.exists(PYTHON),
    reason=f"needs root and {', '.join(TOOLS)} (apt-get install dnsmasq-base dnsmasq-utils bridge-utils)")


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: exit {result.returncode}: {result.stdout}{result.stderr}")
    return result


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Controller:
    ns: str
    guest_ns: str
    root: Path
    flagfile: Path
    log: Path
    nova_network: subprocess.Popen[bytes] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def networks(self) -> Path:
        return self.root / "state" / "networks"

    def in_ns(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns, *cmd, check=check, timeout=timeout)

    def manage(self, *args: str) -> str:
        return self.in_ns(PYTHON, str(BIN / "nova-manage"), f"--flagfile={self.flagfile}", *args).stdout

    def rpc(self, method: str, **kwargs: Any) -> Any:
        code = ("import json, sys\nfrom nova import rpc\n"
                "print(json.dumps(rpc.call('192.168.56.200', 8780, sys.argv[1], **json.loads(sys.argv[2]))))")
        out = self.in_ns("env", f"PYTHONPATH={STACK}", PYTHON, "-c", code, method, json.dumps(kwargs)).stdout
        return json.loads(out)

    def start_nova_network(self) -> float:
        """Start it and wait until it serves; returns the seconds that took."""
        ready = "Serving network RPC"
        before = self.log.read_text().count(ready) if self.log.exists() else 0
        started = time.monotonic()
        with open(self.log, "ab") as log:
            self.nova_network = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, PYTHON, str(BIN / "nova-network"),
                 f"--flagfile={self.flagfile}"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for("nova-network to serve RPC", lambda: self.log.read_text().count(ready) > before)
        return time.monotonic() - started

    def stop_nova_network(self) -> None:
        if self.nova_network and self.nova_network.poll() is None:
            self.nova_network.send_signal(signal.SIGTERM)
            self.nova_network.wait(timeout=15)

    def pidfile_pid(self) -> int:
        return int((self.networks / "nova-br100.pid").read_text())

    def fixed_ip(self, address: str) -> sqlite3.Row:
        with sqlite3.connect(self.root / "state" / "nova.sqlite") as conn:
            conn.row_factory = sqlite3.Row
            return conn.execute("SELECT * FROM fixed_ips WHERE address = ?", (address,)).fetchone()


def our_processes(marker: str) -> list[int]:
    """Pids whose command line carries our unique temp directory: only what this test started."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and int(entry) != os.getpid():
                pids.append(int(entry))
    return pids


@pytest.fixture
def controller() -> Iterator[Controller]:
    # Not tmp_path: dnsmasq re-reads the hostsfile as nobody, so every directory above it must be
    # traversable (pytest's tmp dirs are 0700).
    root = Path(tempfile.mkdtemp(prefix="fbtest-nova-"))
    root.chmod(0o755)
    tag = f"{os.getpid() % 100000}"
    ctl = Controller(ns=f"fbtest-ctl-{tag}", guest_ns=f"fbtest-gst-{tag}", root=root,
                     flagfile=root / "nova.conf", log=root / "nova-network.log")
    ctl.flagfile.write_text(
        "--public_interface=eth1\n--fixed_range=10.0.0.0/24\n--flat_interface=eth2\n--flat_network_bridge=br100\n"
        "--network_manager=nova.network.manager.FlatDHCPManager\n"
        "# provisioning's per-node lines; paths moved into the test's directory\n"
        f"--my_ip=192.168.56.200\n--host=controller-1\n--state_path={root}/state\n--lock_path={root}/lock\n"
        f"--dhcpbridge={BIN}/nova-dhcpbridge\n--dhcpbridge_flagfile={ctl.flagfile}\n--verbose\n")
    try:
        sh("ip", "netns", "add", ctl.ns)
        sh("ip", "netns", "add", ctl.guest_ns)
        sh("ip", "-n", ctl.ns, "link", "set", "lo", "up")
        sh("ip", "-n", ctl.guest_ns, "link", "set", "lo", "up")
        # eth1: the management NIC; its veth peer stays in the same namespace, so nothing leaves.
        sh("ip", "-n", ctl.ns, "link", "add", "eth1", "type", "veth", "peer", "name", "mgmt-peer")
        sh("ip", "-n", ctl.ns, "addr", "add", "192.168.56.200/24", "brd", "192.168.56.255", "dev", "eth1")
        sh("ip", "-n", ctl.ns, "link", "set", "mgmt-peer", "up")
        sh("ip", "-n", ctl.ns, "link", "set", "eth1", "up")
        sh("ip", "-n", ctl.ns, "route", "add", "default", "via", "192.168.56.101", "dev", "eth1")
        # eth2: the flat NIC, no IP, up and promiscuous as the admin's /etc/network/interfaces has it.
        sh("ip", "link", "add", "eth2", "netns", ctl.ns, "type", "veth",
           "peer", "name", "eth0", "netns", ctl.guest_ns)
        sh("ip", "-n", ctl.ns, "link", "set", "eth2", "up", "promisc", "on")
        yield ctl
    finally:
        ctl.stop_nova_network()
        for pid in our_processes(str(root)):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        wait_for("our processes to exit", lambda: not our_processes(str(root)), timeout=10)
        sh("ip", "netns", "del", ctl.guest_ns, check=False)
        sh("ip", "netns", "del", ctl.ns, check=False)
        if ctl.log.exists():
            print(f"--- {ctl.log.name}\n{ctl.log.read_text()}")
        shutil.rmtree(root, ignore_errors=True)
        for name, seconds in ctl.timings.items():
            print(f"{name}: {seconds:.3f}")


def dnsmasq_processes(marker: Path) -> list[dict[str, Any]]:
    out = sh("ps", "-eo", "user=,pid=,ppid=,args=", "-ww").stdout
    rows = []
    for line in out.splitlines():
        user, pid, ppid, args = line.split(None, 3)
        if args.startswith("/usr/sbin/dnsmasq ") and str(marker) in args:
            rows.append({"user": user, "pid": int(pid), "ppid": int(ppid), "args": args, "line": line})
    return rows


def test_flatdhcp_controller(controller: Controller) -> None:
    ctl = controller
    assert ctl.manage("network", "create", "--label=novanetwork", "--fixed_range_v4=10.0.0.0/24",
                      "--bridge=br100", "--bridge_interface=eth2", "--host=controller-1") == ""
    networks = ctl.manage("network", "list")
    assert "10.0.0.0/24" in networks and "br100" in networks and "controller-1" in networks
    ctl.timings["nova-network start → serving RPC (s)"] = ctl.start_nova_network()

    # br100 over eth2, 10.0.0.1/24 brd 10.0.0.255 first; metadata IP on lo; ip_forward untouched.
    eth2 = json.loads(ctl.in_ns("ip", "-j", "link", "show", "dev", "eth2").stdout)[0]
    assert eth2.get("master") == "br100"
    br100 = json.loads(ctl.in_ns("ip", "-j", "-4", "addr", "show", "dev", "br100").stdout)[0]
    first = br100["addr_info"][0]
    assert (first["local"], first["prefixlen"], first["broadcast"], first["scope"]) == (
        "10.0.0.1", 24, "10.0.0.255", "global")
    assert "up" in br100["flags"] or "UP" in br100["flags"]
    lo = json.loads(ctl.in_ns("ip", "-j", "-4", "addr", "show", "dev", "lo").stdout)[0]
    assert {"local": "169.254.169.254", "prefixlen": 32, "scope": "link"}.items() <= next(
        a for a in lo["addr_info"] if a["local"] == "169.254.169.254").items()
    assert ctl.in_ns("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "0"
    brctl = ctl.in_ns("brctl", "show", "br100").stdout.splitlines()[1].split()
    assert (brctl[0], brctl[2], brctl[3]) == ("br100", "no", "eth2")
    routes = ctl.in_ns("ip", "-4", "route", "show").stdout
    assert "default via 192.168.56.101 dev eth1" in routes
    assert "10.0.0.0/24 dev br100 proto kernel scope link src 10.0.0.1" in routes

    # dnsmasq: a nobody daemon (its pid in the pid file) with a root child, the document's line.
    procs = dnsmasq_processes(ctl.networks)
    for proc in procs:
        print("ps:", proc["line"])
    expected = (DOCUMENT_DNSMASQ.replace("/var/lib/nova/networks", str(ctl.networks))
                .replace("/usr/bin/nova-dhcpbridge", str(BIN / "nova-dhcpbridge")))
    assert [p["args"] for p in procs] == [expected, expected]
    nobody = next(p for p in procs if p["user"] == "nobody")
    root = next(p for p in procs if p["user"] == "root")
    assert nobody["pid"] == ctl.pidfile_pid()
    assert root["ppid"] == nobody["pid"]  # the root one is dnsmasq's dhcp-script helper
    assert pwd.getpwnam("nobody")
    hostsfile = ctl.networks / "nova-br100.conf"
    assert hostsfile.read_text() == "" and hostsfile.stat().st_mode & 0o777 == 0o644

    # iptables: the document's listings without nova-api (not run here), from the real binary.
    filter_rules, nat_rules = ctl.in_ns("iptables", "-t", "filter", "-S").stdout, ctl.in_ns(
        "iptables", "-t", "nat", "-S").stdout
    assert_listing(expect.only(DOCUMENT_FILTER.splitlines(), ("nova-network",)), filter_rules, "filter")
    assert_listing(expect.only(DOCUMENT_NAT.splitlines(), ("nova-network",)), nat_rules, "nat")
    assert (ctl.root / "lock" / "nova-iptables.lock").exists()

    # allocate over RPC: the hostsfile gets the line and dnsmasq is HUPed, not restarted.
    started = time.monotonic()
    vif = ctl.rpc("allocate_for_instance", instance_id=9, hostname="cirros")
    ctl.timings["allocate_for_instance RPC (s)"] = time.monotonic() - started
    assert (vif["address"], vif["bridge"], vif["gateway"], vif["dhcp_server"]) == (
        "10.0.0.2", "br100", "10.0.0.1", "10.0.0.1")
    assert hostsfile.read_text() == f"{vif['mac']},cirros.novalocal,10.0.0.2"
    assert ctl.pidfile_pid() == nobody["pid"]
    assert f"HUPed dnsmasq {nobody['pid']} for br100" in ctl.log.read_text()
    assert ctl.rpc("get_network") == {**{k: vif[k] for k in vif if k not in (
        "instance_id", "hostname", "address", "mac")}}

    # The fake guest with that MAC gets 10.0.0.2 from 10.0.0.1; dnsmasq's `add` marks it leased.
    sh("ip", "-n", ctl.guest_ns, "link", "set", "eth0", "address", vif["mac"], "up")
    started = time.monotonic()
    dhcp = sh("ip", "netns", "exec", ctl.guest_ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f",
              "-t", "10", "-T", "1", "-s", "/bin/true")
    ctl.timings["udhcpc discover → lease (s)"] = time.monotonic() - started
    print("udhcpc:", dhcp.stderr.strip().replace("\n", " | "))
    assert "lease of 10.0.0.2 obtained from 10.0.0.1, lease time 120" in dhcp.stdout + dhcp.stderr
    wait_for("nova-dhcpbridge add → leased", lambda: ctl.fixed_ip("10.0.0.2")["leased"] == 1)
    ctl.timings["lease → leased=1 in DB (s)"] = time.monotonic() - started
    fixed = ctl.manage("fixed", "list")
    assert any(line.split()[1:3] == ["10.0.0.2", vif["mac"]] and line.split()[-2:] == ["True", "False"]
               for line in fixed.splitlines())

    # Restarting nova-network keeps dnsmasq (HUP through the pid file); `init` gives it the lease.
    ctl.stop_nova_network()
    ctl.timings["nova-network restart → serving RPC (s)"] = ctl.start_nova_network()
    assert ctl.pidfile_pid() == nobody["pid"] and len(dnsmasq_processes(ctl.networks)) == 2
    # An allocation and a restart later, iptables is unchanged.
    assert ctl.in_ns("iptables", "-t", "filter", "-S").stdout == filter_rules
    assert ctl.in_ns("iptables", "-t", "nat", "-S").stdout == nat_rules

    # Deallocation: out of the hostsfile, still associated until dnsmasq's `del` (dhcp_release).
    assert ctl.rpc("deallocate_for_instance", instance_id=9) == ["10.0.0.2"]
    assert hostsfile.read_text() == ""
    row = ctl.fixed_ip("10.0.0.2")
    assert (row["allocated"], row["leased"], row["instance_id"]) == (0, 1, 9)
    ctl.in_ns("dhcp_release", "br100", "10.0.0.2", vif["mac"])
    wait_for("nova-dhcpbridge del → disassociated", lambda: ctl.fixed_ip("10.0.0.2")["instance_id"] is None)
    assert ctl.fixed_ip("10.0.0.2")["leased"] == 0
    assert ctl.rpc("allocate_for_instance", instance_id=10, hostname="next")["address"] == "10.0.0.2"
