#!/usr/bin/python3
"""Provision one node for its role; the same script runs on container and VM nodes.

Usage (on the node, as root):  python3 /opt/flatbed/provision/provision.py /opt/flatbed/node.json

The host pushes this directory, the stack (``/opt/flatbed/stack``) and ``node.json`` (rendered
from the topology by ``flatbed.provisioning``), then runs this. Only Debian's python3 and the
base image's tools are used. Every step is idempotent: running it twice changes nothing.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

STACK = Path("/opt/flatbed/stack")
PYTHON_PACKAGES = Path("/usr/lib/python3/dist-packages")
UNITS = Path("/etc/systemd/system")
NOVA_CONF = Path("/etc/nova/nova.conf")


def step(message: str) -> None:
    print(f"[provision] {message}", flush=True)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"[provision] `{' '.join(argv)}` failed ({proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def write(path: Path, content: str, mode: int = 0o644) -> bool:
    """Write only when different, so that re-provisioning does not restart anything needlessly."""
    if path.exists() and path.read_text() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(mode)
    return True


def hostname(cfg: dict) -> bool:
    name = cfg["node"]["name"]
    changed = write(Path("/etc/hostname"), name + "\n")
    sh("hostname", name)
    lines = ["127.0.0.1\tlocalhost"] + [f"{n['address']}\t{n['name']}" for n in cfg["nodes"]]
    write(Path("/etc/hosts"), "\n".join(lines) + "\n")
    return changed


def resolver() -> None:
    """No upstream DNS: the testbed is closed (dnsmasq then answers only what it knows)."""
    path = Path("/etc/resolv.conf")
    if path.is_symlink():
        path.unlink()
    write(path, "# flatbed: the testbed has no upstream DNS server.\n")


def interfaces(cfg: dict) -> None:
    """eth1 on the management network; eth2 up, promiscuous and without an IP, as the document."""
    node, mgmt, flat = cfg["node"], cfg["management"], cfg["flat"]
    mgmt_if, flat_if = mgmt["interface"], flat["interface"]
    text = f"""\
# Written by flatbed provisioning from the topology.
auto lo
iface lo inet loopback

auto {mgmt_if}
iface {mgmt_if} inet static
  address {node['address']}/{mgmt['prefixlen']}
  # The document's nodes reach the outside through the management gateway, metric 100.
  up ip route replace default via {mgmt['gateway']} dev $IFACE metric 100
  # Ubuntu's link-local route, present on every node of the document.
  up ip route replace 169.254.0.0/16 dev $IFACE scope link metric 1000

# The flat (guest) network: no IP; promiscuous so frames for guests' MACs pass (the admin's job).
auto {flat_if}
iface {flat_if} inet manual
  up ifconfig $IFACE 0.0.0.0 up
  up ifconfig $IFACE promisc
"""
    changed = write(Path("/etc/network/interfaces"), text)
    for iface in (mgmt_if, flat_if):
        up = sh("ifquery", "--state", iface, check=False).stdout.strip()
        if changed and up:
            sh("ifdown", "--force", iface, check=False)
            up = ""
        if not up:
            sh("ifup", iface)


def syslog(cfg: dict, hostname_changed: bool) -> None:
    """/var/log/syslog in the document's format (``Jul 30 23:12:06 controller-1 dnsmasq-dhcp[2729]:``)."""
    changed = write(Path("/etc/rsyslog.d/00-flatbed-traditional.conf"),
                    "# The document greps /var/log/syslog lines in the traditional format.\n"
                    "$ActionFileDefaultTemplate RSYSLOG_TraditionalFileFormat\n")
    sh("systemctl", "enable", "--quiet", "rsyslog.service")
    # rsyslog stamps lines with the hostname it read at start.
    restart("rsyslog.service", changed or hostname_changed)


def nova_conf(cfg: dict) -> bool:
    def render(value: object) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    lines = [f"--{key}={render(value)}" for key, value in cfg["nova_flags"].items()]
    return write(NOVA_CONF, "\n".join(lines) + "\n", mode=0o640)


def install_stack() -> bool:
    """Link the pushed stack into place: the nova package, its binaries and units."""
    changed = False
    link = PYTHON_PACKAGES / "nova"
    if not link.is_symlink() or os.readlink(link) != str(STACK / "nova"):
        if link.exists() or link.is_symlink():
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        link.symlink_to(STACK / "nova")
        changed = True
    for script in sorted((STACK / "bin").iterdir()):
        target = Path("/usr/bin") / script.name
        changed |= write(target, script.read_text(), mode=0o755)
    for unit in sorted((STACK / "systemd").glob("*.service")):
        changed |= write(UNITS / unit.name, unit.read_text())
    if changed:
        sh("systemctl", "daemon-reload")
    return changed


def restart(unit: str, changed: bool) -> bool:
    """Enable ``unit``; (re)start it when its inputs changed or it is not running. True if it was."""
    sh("systemctl", "enable", "--quiet", unit)
    if changed or sh("systemctl", "is-active", "--quiet", unit, check=False).returncode != 0:
        sh("systemctl", "restart", unit)
        return True
    return False


def wait_for_chain(chain: str, timeout: float = 60.0) -> None:
    """Wait until a nova binary has applied its iptables rules (its wrapped INPUT chain exists)."""
    deadline = time.monotonic() + timeout
    while sh("iptables", "-t", "filter", "-S", chain, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"[provision] iptables chain {chain} did not appear within {timeout:.0f} s")
        time.sleep(0.2)


def controller(cfg: dict, changed: bool) -> None:
    flat = cfg["flat"]
    existing = sh("nova-manage", "network", "list").stdout
    if flat["cidr"] not in existing.split():
        # Bound to the controller at creation (Essex bound a network at its first allocation);
        # the document's controller shows br100 and dnsmasq before any guest.
        # --network_size: the whole flat range is one network (nova-manage would cut a larger
        # range down to the first --network_size=256 addresses, as Essex's did).
        sh("nova-manage", "network", "create", f"--label={flat['label']}", f"--fixed_range_v4={flat['cidr']}",
           f"--bridge={flat['bridge']}", f"--bridge_interface={flat['interface']}",
           f"--host={cfg['node']['name']}",
           f"--network_size={ipaddress.ip_network(flat['cidr']).num_addresses}")
        changed = True
    # Only computes run libvirt; the controller's would add virbr0-free but needless daemons.
    sh("systemctl", "disable", "--now", "--quiet", "libvirtd.service", "libvirtd.socket",
       "libvirtd-ro.socket", "libvirtd-admin.socket", check=False)
    # Essex's iptables manager puts the jumps of the binary that applied last *first* in the
    # shared chains; the document lists nova-network's before nova-api's, so nova-api (when
    # installed) applies first and nova-network is (re)started after it.
    api_restarted = False
    if (UNITS / "nova-api.service").exists():
        api_restarted = restart("nova-api.service", changed)
        wait_for_chain("nova-api-INPUT")
    # Type=notify: this returns once br100, iptables and dnsmasq are set up.
    restart("nova-network.service", changed or api_restarted or not nova_network_applied_last())
    if not nova_network_applied_last():
        # nova-api applied once more after nova-network (a late start-up): apply again, once.
        restart("nova-network.service", True)
        if not nova_network_applied_last():
            raise SystemExit("[provision] nova-api keeps re-applying its iptables rules after nova-network")


def nova_network_applied_last() -> bool:
    """True when INPUT jumps to nova-network's chain before any other nova binary's."""
    rules = sh("iptables", "-t", "filter", "-S", "INPUT", check=False).stdout.splitlines()
    jumps = [rule for rule in rules if rule.startswith("-A INPUT -j nova-")]
    return bool(jumps) and jumps[0] == "-A INPUT -j nova-network-INPUT"


def bridge_netfilter() -> None:
    """Bridged guest traffic must traverse FORWARD (nova-compute's instance chains): br_netfilter.

    Built into the container host's kernel (and on in every new namespace); a module in VMs.
    """
    knob = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not knob.exists():
        sh("modprobe", "br_netfilter")
    if knob.read_text().strip() != "1":
        knob.write_text("1\n")


def wait_registered(timeout: float = 120.0) -> None:
    """Wait until the running nova-compute has registered with the controller (its journal says so):
    nova-compute is Type=simple, so systemctl returns before that, and a testbed that is up must
    be able to schedule onto every compute."""
    invocation = sh("systemctl", "show", "-p", "InvocationID", "--value", "nova-compute").stdout.strip()
    deadline = time.monotonic() + timeout
    while "Registered with" not in sh("journalctl", f"_SYSTEMD_INVOCATION_ID={invocation}", "-o", "cat",
                                      "--no-pager", check=False).stdout:
        if time.monotonic() > deadline:
            raise SystemExit(f"[provision] nova-compute did not register with the controller within {timeout:.0f} s")
        time.sleep(0.2)


def compute(cfg: dict, changed: bool) -> None:
    bridge_netfilter()
    restart("libvirtd.service", False)
    restart("nova-compute.service", changed)
    wait_registered()


def main(path: str) -> None:
    cfg = json.loads(Path(path).read_text())
    role = cfg["node"]["role"]
    step(f"{cfg['node']['name']}: role {role}")
    syslog(cfg, hostname(cfg))
    resolver()
    interfaces(cfg)
    changed = nova_conf(cfg) | install_stack()
    {"controller": controller, "compute": compute}[role](cfg, changed)
    step(f"{cfg['node']['name']}: done")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: provision.py NODE_JSON")
    main(sys.argv[1])
