"""The floor nova's boots are measured against: the same guest under raw qemu on a compute.

On a compute node the benchmark makes a bridge of its own with a plain dnsmasq on it, and boots
qemu with nova's guest (the kernel and initramfs of the compute's image cache, the machine, CPU,
memory and kernel command line of the qemu process libvirt started for a nova guest) on a tap in
that bridge; a boot ends when dnsmasq logs its DHCPACK. Nothing of nova takes part: no API, no
scheduler, no libvirt, no firewall. The bridge, its taps, dnsmasq and qemu live inside the node
(its own network namespace, created by this testbed) and are removed afterwards; each process
also ends by itself (``timeout``) if this one dies.
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flatbed.follow import Stream
from flatbed.waiters import WaitTimeout

if TYPE_CHECKING:
    from flatbed.node import Node
    from flatbed.topology import Topology

PREFIX = "fbbench"        # every name this module creates on a node
LIFETIME = 900            # seconds a raw process may live at most (timeout), whatever happens here
CANDIDATE_NETS = ("172.31.250.0/24", "172.30.250.0/24", "10.250.250.0/24")

# qemu options copied from libvirt's command line (everything else of it is libvirt's own plumbing).
KEPT_OPTIONS = ("-machine", "-accel", "-cpu", "-m", "-smp", "-rtc", "-append")
KEPT_FLAGS = ("-nodefaults", "-no-user-config")


def bench_net(topology: Topology) -> ipaddress.IPv4Network:
    """A /24 for the raw bridge that overlaps none of the topology's networks."""
    taken = [topology.management.cidr, topology.flat.cidr]
    dmz = topology.nova_flags(topology.controller).get("dmz_cidr")
    if dmz:
        taken.append(ipaddress.ip_network(dmz))
    for candidate in map(ipaddress.ip_network, CANDIDATE_NETS):
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise RuntimeError(f"no free network for the raw bridge among {CANDIDATE_NETS}")


def qemu_options(cmdline: list[str]) -> list[str]:
    """The machine, accelerator, CPU, memory, clock and kernel command line of a libvirt-started
    qemu (its argv), without libvirt's plumbing (monitor, fds, secrets, memory backends)."""
    kept: list[str] = []
    args = iter(cmdline[1:])
    for arg in args:
        if arg in KEPT_FLAGS:
            kept.append(arg)
        elif arg in KEPT_OPTIONS:
            value = next(args)
            if arg == "-machine":  # libvirt's memory backend object is not copied
                value = ",".join(p for p in value.split(",") if not p.startswith("memory-backend="))
            kept += [arg, value]
    return kept


def libvirt_qemu_argv(node: Node, instance_name: str) -> list[str]:
    """The argv of the qemu process libvirt runs for ``instance_name`` on ``node``."""
    pid = node.check(["cat", f"/run/libvirt/qemu/{instance_name}.pid"]).strip()
    return [a for a in node.check(["cat", f"/proc/{pid}/cmdline"]).split("\0") if a]


@dataclass
class RawBoot:
    name: str
    mac: str
    started: float          # time.monotonic() when qemu was started
    process: Stream


class RawNet:
    """A bridge with a plain dnsmasq on ``node``, and raw qemu guests on taps in it."""

    def __init__(self, node: Node, net: ipaddress.IPv4Network, index: int = 0):
        self.node, self.net, self.index = node, net, index
        self.bridge = f"{PREFIX}{index}"
        self.dnsmasq: Stream | None = None
        self.boots: list[RawBoot] = []
        self.booted = 0          # ever: names, taps and MACs are never used twice
        self._taps: list[str] = []
        self.run_dir = f"/run/{PREFIX}{index}"

    def __enter__(self) -> RawNet:
        hosts = list(self.net.hosts())
        gateway, first, last = hosts[0], hosts[1], hosts[-1]
        node = self.node
        node.check(["mkdir", "-p", self.run_dir])
        node.check(["ip", "link", "add", self.bridge, "type", "bridge"])
        node.check(["ip", "addr", "add", f"{gateway}/{self.net.prefixlen}", "dev", self.bridge])
        node.check(["ip", "link", "set", self.bridge, "up"])
        self.dnsmasq = Stream(node.host_argv([
            "timeout", "--foreground", str(LIFETIME), "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
            "--bind-interfaces", f"--interface={self.bridge}", "--except-interface=lo", "--port=0",
            f"--dhcp-range={first},{last},120s", "--leasefile-ro", f"--pid-file={self.run_dir}/dnsmasq.pid",
            "--log-facility=-"]), stderr=True, name=f"dnsmasq on {self.bridge} ({node.name})")
        self.dnsmasq.wait_for(r"DHCP, IP range", timeout=30, what="dnsmasq's start")
        return self

    def boot(self, qemu_argv: list[str], kernel: str, initrd: str) -> RawBoot:
        """Start qemu with ``qemu_argv``'s options (:func:`qemu_options`) on a new tap; returns at once."""
        index = self.booted
        self.booted += 1
        tap, name = f"{self.bridge}t{index}", f"{self.bridge}-g{index}"
        mac = f"52:54:{self.index:02x}:fb:{index // 256:02x}:{index % 256:02x}"
        self.node.check(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
        self._taps.append(tap)
        self.node.check(["ip", "link", "set", tap, "master", self.bridge, "up"])
        argv = ["timeout", "--foreground", str(LIFETIME), "qemu-system-x86_64", *qemu_options(qemu_argv),
                "-name", name, "-display", "none", "-kernel", kernel, "-initrd", initrd,
                "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
                "-serial", f"file:{self.run_dir}/{name}.console", "-pidfile", f"{self.run_dir}/{name}.pid"]
        started = time.monotonic()
        boot = RawBoot(name, mac, started, Stream(self.node.host_argv(argv), stderr=True, name=name))
        self.boots.append(boot)
        return boot

    def acked(self, boot: RawBoot) -> float | None:
        """Seconds from qemu's start to dnsmasq's DHCPACK of ``boot``, or None before it."""
        assert self.dnsmasq is not None
        line = self.dnsmasq.first(rf"DHCPACK\({re.escape(self.bridge)}\) \S+ {re.escape(boot.mac)}", boot.started)
        return None if line is None else line.at - boot.started

    def wait_acked(self, boots: list[RawBoot], timeout: float) -> list[float]:
        """Seconds to each boot's DHCPACK, waiting for all of them."""
        assert self.dnsmasq is not None
        for boot in boots:
            try:
                self.dnsmasq.wait_for(rf"DHCPACK\({re.escape(self.bridge)}\) \S+ {re.escape(boot.mac)}",
                                      timeout=max(1.0, timeout - (time.monotonic() - boot.started)),
                                      what=f"{boot.name}'s DHCPACK")
            except WaitTimeout as e:
                console = self.node.run(["tail", "-n", "15", f"{self.run_dir}/{boot.name}.console"]).stdout
                raise WaitTimeout(f"{e}\n{boot.name}'s qemu said: {boot.process.text[-1000:]!r}\n"
                                  f"its console's last lines:\n{console}") from None
        return [self.acked(boot) for boot in boots]

    def stop_guests(self) -> None:
        for boot in self.boots:
            self.node.run(["pkill", "-F", f"{self.run_dir}/{boot.name}.pid"])
            boot.process.close()
        for tap in self._taps:
            self.node.run(["ip", "link", "del", tap])
        self.boots, self._taps = [], []

    def __exit__(self, *exc: object) -> None:
        self.stop_guests()
        if self.dnsmasq is not None:
            self.node.run(["pkill", "-F", f"{self.run_dir}/dnsmasq.pid"])
            self.dnsmasq.close()
        self.node.run(["ip", "link", "del", self.bridge])
        self.node.run(["rm", "-rf", self.run_dir])
