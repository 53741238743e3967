#!/usr/bin/env python3
"""flatbed's speed, measured side by side in one run (speed lives here, never in timed tests).

    .venv/bin/python tools/benchmark.py [--provider nspawn|vagrant] [--rounds N] [--only P1,P2,P3]
                                        [--guests 20] [--suite] [--clean-clone] [--readme README.md]

- P1: the document's sections and their variants (DOCUMENT_MODULES) as ``pytest`` runs them, on
  a fresh testbed and then again on that testbed kept (``--reuse``): wall time from start to exit,
  and the per-phase breakdown of the run's timing record (``--timings``).
- P2: ``nova boot`` of one guest until dnsmasq's DHCPACK of it in the controller's syslog, against
  raw qemu booting the same guest (same kernel, initramfs, machine, CPU, memory, command line) on a
  tap in a bridge with a plain dnsmasq, on the same compute, in the same round (tools/bench_raw.py).
- P3: ``--guests`` guests booted at once across the computes until all are ACTIVE and leased,
  against as many raw qemu boots at once (the floor of CPU-bound boots), and against one guest (P2).
- ``--suite``: the whole ``pytest e2e/`` on a fresh testbed; ``--clean-clone``: ``./run test`` from
  a fresh clone with an empty image cache and no virtualenv (host packages already installed).
- ``--provider vagrant`` also runs the VM phases of tools/bench_vm.py when it is there
  (``bench_vm.measure(rounds, progress) -> dict[name, list[seconds]]``).

Prints one table: median/min/max over the rounds of each measure, the ratios with their targets,
and how loaded the machine was (other work makes every number an upper bound). ``--readme``
rewrites the README's block for this provider (between ``<!-- benchmark:PROVIDER -->`` and
``<!-- /benchmark:PROVIDER -->``) from the same table. Exit status 1 when a target is missed or a
run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

import bench_raw

from flatbed import timings
from flatbed.checks.runs import REPO, FlatbedCli
from flatbed.cloud import Cloud, Guest
from flatbed.follow import follow
from flatbed.testbed import Testbed
from flatbed.topology import DEFAULT_TOPOLOGY, Topology, load
from flatbed.waiters import wait_until

# The document's sections and their variants (issue 16's "§2.1–§3.6, no-same-net, metadata down,
# lifecycle, alt topology"), as the suite has them.
DOCUMENT_MODULES = (
    "e2e/test_21_controller_before_boot.py", "e2e/test_22_compute_before_boot.py", "e2e/test_23_boot.py",
    "e2e/test_24_controller_after_boot.py", "e2e/test_25_compute_after_boot.py", "e2e/test_26_guest_view.py",
    "e2e/test_33_ping_matrix.py", "e2e/test_40_no_same_net.py", "e2e/test_41_metadata_down.py",
    "e2e/test_42_lifecycle.py", "e2e/test_43_alt_topology.py",
)
SYSLOG = "/var/log/syslog"
BOOT_TIMEOUT = 600        # one measured boot, or all of P3's, until leased (20 TCG boots on 2 loaded cores)
RUN_TIMEOUT = 3600        # one pytest run


@dataclass
class Measure:
    name: str
    values: list[float] = field(default_factory=list)
    target: float | None = None     # the median must not exceed it
    unit: str = "s"
    failed: str = ""                # why a run did not count

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def verdict(self) -> str:
        if self.failed:
            return f"FAILED: {self.failed}"
        if self.target is None or self.median is None:
            return ""
        return "met" if self.median <= self.target else "MISSED"


class Report:
    """The measures of one benchmark run, in the order they were first named."""

    def __init__(self) -> None:
        self.measures: dict[str, Measure] = {}
        self.notes: list[str] = []

    def add(self, name: str, value: float, target: float | None = None, unit: str = "s") -> None:
        measure = self.measures.setdefault(name, Measure(name, target=target, unit=unit))
        measure.values.append(value)

    def fail(self, name: str, why: str) -> None:
        self.measures.setdefault(name, Measure(name)).failed = why

    def rows(self) -> list[list[str]]:
        def cell(value: float | None, unit: str) -> str:
            if value is None:
                return "–"
            return f"{value:.2f}×" if unit == "×" else f"{value:.1f} s"

        rows = []
        for m in self.measures.values():
            target = "" if m.target is None else ("≤ " + cell(m.target, m.unit))
            rows.append([m.name, cell(m.median, m.unit), cell(min(m.values, default=None), m.unit),
                         cell(max(m.values, default=None), m.unit), str(len(m.values)), target, m.verdict])
        return rows

    @property
    def missed(self) -> bool:
        return any(m.verdict.startswith(("MISSED", "FAILED")) for m in self.measures.values())


HEADER = ["measure", "median", "min", "max", "n", "target", ""]


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]

    def line(row: list[str]) -> str:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    return "\n".join(line(r) for r in [HEADER, *rows])


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER[:-1]) + " | |", "|---|" + "---:|" * 5 + "---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def replace_block(text: str, provider: str, block: str) -> str:
    """``text`` with the block between ``<!-- benchmark:PROVIDER -->`` and its end marker replaced."""
    begin, end = f"<!-- benchmark:{provider} -->", f"<!-- /benchmark:{provider} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"benchmark: the README has no {begin} … {end} block to regenerate")
    return pattern.sub(lambda _: f"{begin}\n{block.strip()}\n{end}", text)


def machine() -> str:
    cores = os.cpu_count()
    with open("/proc/meminfo") as f:
        mem_kib = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    return f"{cores} cores, {mem_kib / 2**20:.0f} GiB"


def load_average() -> str:
    return open("/proc/loadavg").read().split()[0]


def progress(message: str) -> None:
    print(f"[benchmark] {message}", file=sys.stderr, flush=True)


# --- P1 and the suite: pytest as a user runs it ----------------------------------------------------

def pytest_run(cli: FlatbedCli, args: list[str], record: Path) -> tuple[float, int, str]:
    """``pytest ARGS`` of this checkout: (wall seconds, exit status, output)."""
    argv = cli.pytest_argv(*args, f"--timings={record}")
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=cli.env, timeout=RUN_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    return time.monotonic() - started, proc.returncode, proc.stdout + proc.stderr


def phase_lines(record: Path) -> list[str]:
    wall, spans = timings.read(record)
    return timings.report(spans, wall, top=3)


def testbeds_up(cli: FlatbedCli) -> set[str]:
    """The run ids of the testbeds in the state root (``flatbed list --json``)."""
    return {t["run_id"] for t in json.loads(cli.run("list", "--json").stdout)["testbeds"] if t.get("status") == "up"}


def p1(report: Report, cli: FlatbedCli, rounds: int, work: Path) -> None:
    fresh, reuse = "P1 document sections, fresh testbed", "P1 document sections, --reuse"
    for n in range(rounds):
        progress(f"P1 round {n + 1}/{rounds}: {len(DOCUMENT_MODULES)} modules on a fresh testbed")
        before = testbeds_up(cli)
        wall, rc, out = pytest_run(cli, [*DOCUMENT_MODULES, "--destroy=never", "-q"], work / f"p1-fresh-{n}.json")
        # --destroy=never keeps the second testbeds too (no-same-net, alt's inner run): ours to remove.
        for other in testbeds_up(cli) - before - set(re.findall(r"testbed (fb[0-9a-f]{6}) kept", out)):
            cli.run("--testbed", other, "down", check=False)
        kept = re.search(r"testbed (fb[0-9a-f]{6}) kept", out)
        if rc != 0:
            report.fail(fresh, f"exit {rc}")
            progress(out[-3000:])
        else:
            report.add(fresh, wall, target=120)
        if not kept:
            continue
        run = kept.group(1)
        try:
            progress(f"P1 round {n + 1}/{rounds}: the same modules on it with --reuse={run}")
            wall, rc, out = pytest_run(cli, [*DOCUMENT_MODULES, f"--reuse={run}", "-q"], work / f"p1-reuse-{n}.json")
            if rc != 0:
                report.fail(reuse, f"exit {rc}")
                progress(out[-3000:])
            else:
                report.add(reuse, wall, target=30)
        finally:
            cli.run("--testbed", run, "down", check=False)
    for name, record in ((fresh, work / f"p1-fresh-{rounds - 1}.json"), (reuse, work / f"p1-reuse-{rounds - 1}.json")):
        if record.exists():
            report.notes += [f"{name}, last round, per phase:", *("    " + line for line in phase_lines(record))]


def suite(report: Report, cli: FlatbedCli, work: Path) -> None:
    name = "whole pytest e2e/, fresh testbed"
    progress("the whole suite: pytest e2e/")
    wall, rc, out = pytest_run(cli, ["e2e/", "--destroy=always", "-q"], work / "suite.json")
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    if rc != 0:
        report.fail(name, f"exit {rc}: {summary}")
        progress(out[-3000:])
    else:
        report.add(name, wall)
    report.notes += [f"{name}: {summary}", *("    " + line for line in phase_lines(work / "suite.json"))]


def clean_clone(report: Report, provider: str, work: Path) -> None:
    """``./run test`` from a fresh clone, an empty image cache (FLATBED_CACHE) and no virtualenv."""
    name = "./run test, clean clone, empty image cache, no venv"
    clone = work / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {**os.environ, "FLATBED_CACHE": str(work / "cache")}
    env.pop("FLATBED_VENV", None)
    progress(f"{name}: {clone}")
    started = time.monotonic()
    proc = subprocess.run(["./run", "test", "--provider", provider, "-q"], cwd=clone, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        report.fail(name, f"exit {proc.returncode}")
        progress((proc.stdout + proc.stderr)[-3000:])
    else:
        report.add(name, time.monotonic() - started, target=360)


# --- P2 and P3: nova's boots against raw qemu, on one testbed ---------------------------------------

def dhcpack(topology: Topology, guest: Guest) -> str:
    return rf"DHCPACK\({re.escape(topology.flat.bridge)}\) {re.escape(guest.ip)} {re.escape(guest.mac)}"


def nova_boots(cloud: Cloud, names: list[str]) -> float:
    """Boot ``names`` at once (round-robin over the computes) until every one is ACTIVE and its
    DHCPACK is in the controller's syslog: seconds from the first ``nova boot``."""
    topo, computes = cloud.topology, cloud.topology.computes
    with follow(cloud.controller, SYSLOG, from_start=False, lasting=BOOT_TIMEOUT + 60) as syslog:
        started = time.monotonic()
        with ThreadPoolExecutor(len(names)) as pool:
            booted = list(pool.map(lambda i: cloud.create(names[i], compute=computes[i % len(computes)].name),
                                   range(len(names))))
        uuids = {b["id"] for b in booted}

        def all_active() -> float | None:
            status = {s["ID"]: s["Status"] for s in cloud.servers()}
            if any(status.get(u) == "ERROR" for u in uuids):
                raise RuntimeError(f"a benchmark guest went to ERROR: {status}")
            return time.monotonic() if all(status.get(u) == "ACTIVE" for u in uuids) else None

        active = wait_until(all_active, timeout=BOOT_TIMEOUT, interval=0.5, what=f"{len(names)} guests ACTIVE")
        guests = [cloud.guest(u) for u in uuids]
        acks = []
        for guest in guests:
            syslog.wait_for(dhcpack(topo, guest), timeout=BOOT_TIMEOUT, what=f"{guest.name}'s DHCPACK")
            acks.append(syslog.first(dhcpack(topo, guest)).at)
    with ThreadPoolExecutor(len(guests)) as pool:
        list(pool.map(lambda g: cloud.delete(g.uuid), guests))
    return max(active, *acks) - started


def raw_boots(nets: list[bench_raw.RawNet], count: int, qemu: list[str], kernel: str, initrd: str) -> float:
    """``count`` raw qemu boots at once, round-robin over ``nets``: seconds until the last DHCPACK."""
    started = time.monotonic()
    boots = [(nets[i % len(nets)], nets[i % len(nets)].boot(qemu, kernel, initrd)) for i in range(count)]
    for net in nets:
        net.wait_acked([b for n, b in boots if n is net], timeout=BOOT_TIMEOUT)
    done = max(b.started + net.acked(b) for net, b in boots)
    for net in nets:
        net.stop_guests()
    return done - started


def p2_p3(report: Report, provider: str, topology: Topology, rounds: int, guests: int, only: set[str]) -> None:
    bed = Testbed.up(topology, provider, progress=lambda m: progress(f"testbed: {m}"))
    try:
        cloud = Cloud(bed)
        computes = [bed.node(n.name) for n in topology.computes]
        # Warm-up, not measured: each compute fetches the image on its first guest.
        progress("warm-up: one guest per compute (image fetched into each compute's cache)")
        warm = [cloud.boot(f"warm-{i}", compute=n.name) for i, n in enumerate(topology.computes)]
        qemu = bench_raw.libvirt_qemu_argv(warm[0].node, warm[0].instance_name)
        for guest in warm:
            cloud.delete(guest.uuid)
        base = cloud.instance_dir(topology.computes[0].name, "_base") + "/" + bed.state.images["guest"]
        kernel, initrd = f"{base}/kernel", f"{base}/ramdisk"
        net = bench_raw.bench_net(topology)
        nets = [bench_raw.RawNet(node, net, i) for i, node in enumerate(computes)]
        for n in nets:
            n.__enter__()
        try:
            for r in range(rounds):
                progress(f"round {r + 1}/{rounds}")
                # Alternate which goes first, so neither always meets the other's leftovers.
                steps: list[tuple[str, Callable[[], float]]] = [
                    ("P2 nova boot → DHCPACK, one guest", partial(nova_boots, cloud, [f"p2-{r}"])),
                    ("P2 raw qemu → DHCPACK, one guest", partial(raw_boots, nets[:1], 1, qemu, kernel, initrd))]
                if "P3" in only:
                    steps += [(f"P3 nova, {guests} guests at once → all ACTIVE and leased",
                               partial(nova_boots, cloud, [f"p3-{r}-{i}" for i in range(guests)])),
                              (f"P3 raw qemu, {guests} at once → all DHCPACK",
                               partial(raw_boots, nets, guests, qemu, kernel, initrd))]
                if r % 2:
                    steps = [s for pair in zip(steps[1::2], steps[0::2], strict=True) for s in pair]
                for name, step in steps:
                    report.add(name, step())
                    progress(f"  {name}: {report.measures[name].values[-1]:.1f} s")
                ratio("P2 nova / raw qemu, one guest", report, "P2 nova boot", "P2 raw qemu", 1.3)
                if "P3" in only:
                    ratio(f"P3 nova / raw qemu, {guests} at once", report, "P3 nova", "P3 raw qemu", 1.5)
                    ratio(f"P3 nova, {guests} at once / one guest", report, "P3 nova", "P2 nova boot", None)
        finally:
            for n in nets:
                n.__exit__(None, None, None)
    finally:
        bed.down()


def ratio(name: str, report: Report, numerator: str, denominator: str, target: float | None) -> None:
    """This round's ratio of the last values of the measures named starting with the two prefixes."""
    top = next(m for m in report.measures.values() if m.name.startswith(numerator))
    bottom = next(m for m in report.measures.values() if m.name.startswith(denominator))
    report.add(name, top.values[-1] / bottom.values[-1], target=target, unit="×")


# --- VMs: the vm helper's phases ---------------------------------------------------------------------

def vm_phases(report: Report, rounds: int) -> None:
    try:
        import bench_vm
    except ImportError:
        report.notes.append("VM phases: tools/bench_vm.py is not there")
        return
    for name, values in bench_vm.measure(rounds, progress).items():
        for value in values:
            report.add(name, value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="nspawn", choices=("nspawn", "vagrant"))
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="P1,P2,P3", help="which of P1, P2, P3 (comma-separated)")
    parser.add_argument("--guests", type=int, default=None, help="P3's guests at once (default: 20 on containers, "
                        "2 per compute on VMs: their computes have 1.5 GiB)")
    parser.add_argument("--suite", action="store_true", help="also time the whole pytest e2e/")
    parser.add_argument("--clean-clone", action="store_true", help="also time ./run test from a clean clone")
    parser.add_argument("--readme", type=Path, help="regenerate this README's block for the provider")
    args = parser.parse_args()
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    topology = load(args.topology)
    guests = args.guests or (20 if args.provider == "nspawn" else 2 * len(topology.computes))
    cli = FlatbedCli(provider=args.provider, topology=args.topology.resolve())
    report = Report()
    started, load_before = datetime.now(), load_average()
    work = Path(tempfile.mkdtemp(prefix="flatbed-benchmark-"))
    try:
        if "P2" in only or "P3" in only:
            p2_p3(report, args.provider, topology, args.rounds, guests, only)
        if "P1" in only:
            p1(report, cli, args.rounds, work)
        if args.provider == "vagrant":
            vm_phases(report, args.rounds)
        if args.suite:
            suite(report, cli, work)
        if args.clean_clone:
            clean_clone(report, args.provider, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    context = (f"`tools/benchmark.py --provider {args.provider} --rounds {args.rounds} --only {','.join(sorted(only))}"
               f"{' --suite' if args.suite else ''}{' --clean-clone' if args.clean_clone else ''}`, commit {commit}, "
               f"{started:%Y-%m-%d %H:%M}, {machine()}, load average {load_before} before and {load_average()} after"
               + ("" if float(load_before) < 1.5 else " (other work was running: every time is an upper bound)"))
    print(context)
    print(text_table(report.rows()))
    for note in report.notes:
        print(note)
    if args.readme:
        notes = "\n".join(report.notes)
        block = f"{context}\n\n{markdown_table(report.rows())}\n" + (f"\n```\n{notes}\n```\n" if notes else "")
        args.readme.write_text(replace_block(args.readme.read_text(), args.provider, block))
    return 1 if report.missed else 0


if __name__ == "__main__":
    sys.exit(main())
