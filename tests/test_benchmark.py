"""The benchmark's pure parts: the raw guest's qemu options, its network, the table and the README block."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import bench_raw  # noqa: E402
import benchmark  # noqa: E402

from flatbed.topology import DEFAULT_TOPOLOGY  # noqa: E402
from flatbed.topology import load as load_topology  # noqa: E402

# What libvirt started for a nova guest on a container compute (abridged from /proc/PID/cmdline).
LIBVIRT_QEMU = ["/usr/bin/qemu-system-x86_64", "-name", "guest=instance-00000009,debug-threads=on", "-S",
                "-object", '{"qom-type":"secret","id":"masterKey0"}',
                "-machine", "pc-i440fx-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram", "-accel", "tcg",
                "-cpu", "qemu64", "-m", "512", "-object", '{"qom-type":"memory-backend-ram","id":"pc.ram"}',
                "-overcommit", "mem-lock=off", "-smp", "1,sockets=1,cores=1,threads=1", "-uuid", "400ccb8d",
                "-display", "none", "-no-user-config", "-nodefaults", "-chardev", "socket,id=charmonitor,fd=30",
                "-rtc", "base=utc", "-no-shutdown", "-kernel", "/var/lib/nova/instances/instance-00000009/kernel",
                "-initrd", "/var/lib/nova/instances/instance-00000009/ramdisk",
                "-append", "console=ttyS0 no_timer_check",
                "-netdev", '{"type":"tap","fd":"32","id":"hostnet0"}', "-device", '{"driver":"virtio-net-pci"}']


def test_the_raw_guest_gets_novas_machine_cpu_memory_and_command_line_only() -> None:
    assert bench_raw.qemu_options(LIBVIRT_QEMU) == [
        "-machine", "pc-i440fx-7.2,usb=off,dump-guest-core=off", "-accel", "tcg", "-cpu", "qemu64", "-m", "512",
        "-smp", "1,sockets=1,cores=1,threads=1", "-no-user-config", "-nodefaults", "-rtc", "base=utc",
        "-append", "console=ttyS0 no_timer_check"]


def test_the_raw_network_overlaps_none_of_the_topologys() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    net = bench_raw.bench_net(topo)
    assert not net.overlaps(topo.flat.cidr) and not net.overlaps(topo.management.cidr)
    assert not net.overlaps(ipaddress.ip_network(topo.nova_flags(topo.controller)["dmz_cidr"]))


def test_the_table_has_median_min_max_and_the_verdict() -> None:
    report = benchmark.Report()
    for value in (3.0, 1.0, 2.0):
        report.add("P2 nova boot → DHCPACK, one guest", value)
    for value in (1.2, 1.4, 1.5):
        report.add("P2 nova / raw qemu, one guest", value, target=1.3, unit="×")
    report.fail("P1 document sections, fresh testbed", "exit 1")
    rows = report.rows()
    assert rows[0] == ["P2 nova boot → DHCPACK, one guest", "2.0 s", "1.0 s", "3.0 s", "3", "", ""]
    assert rows[1] == ["P2 nova / raw qemu, one guest", "1.40×", "1.20×", "1.50×", "3", "≤ 1.30×", "MISSED"]
    assert rows[2][-1] == "FAILED: exit 1" and report.missed
    text = benchmark.text_table(rows)
    assert text.splitlines()[0].split()[:2] == ["measure", "median"]
    assert benchmark.markdown_table(rows).splitlines()[2].startswith("| P2 nova boot → DHCPACK, one guest | 2.0 s |")


def test_the_readme_block_of_the_provider_is_replaced_and_nothing_else() -> None:
    readme = ("## Timings\n\nintro\n<!-- benchmark:nspawn -->\nold table\n<!-- /benchmark:nspawn -->\n"
              "between\n<!-- benchmark:vagrant -->\nvm table\n<!-- /benchmark:vagrant -->\n")
    new = benchmark.replace_block(readme, "nspawn", "| new |\n")
    assert new == readme.replace("old table", "| new |")
    with pytest.raises(SystemExit, match="no <!-- benchmark:other -->"):
        benchmark.replace_block(readme, "other", "x")
