#!/usr/bin/env python3
"""Where a VM testbed's bring-up time goes (the vagrant provider), phase by phase.

    .venv/bin/python tools/bench_vm.py [--rounds N] [--topology PATH]

Each round brings a testbed up on VMs (images and box cached), reads the phases from its progress
lines (each line is timed as it arrives) and from the nodes themselves (``systemd-analyze``: how
long each VM took from its kernel to ``multi-user.target``; the KVM probe nova-compute ran), then
takes it down. Prints the median/min/max of each phase and the target of the whole bring-up.

``tools/benchmark.py --provider vagrant`` calls :func:`measure` and puts these phases in its table.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from flatbed import provisioning
from flatbed.testbed import Testbed
from flatbed.topology import DEFAULT_TOPOLOGY, load

# Issue 12's target on this machine kind (2 cores, TCG, nested KVM guests), images and box cached.
TARGETS = {"VM: testbed up": 150.0}

# Progress lines that close a phase: (pattern, phase name); times are from the start of `flatbed up`.
MARKS = (
    (re.compile(r"private libvirtd .* answering"), "VM: private libvirtd answering"),
    (re.compile(r"vagrant: vagrant up \(output"), "VM: vagrant up started"),
    (re.compile(r"vagrant: vagrant up done"), "VM: vagrant up done (every VM's SSH ready)"),
    (re.compile(r"vagrant: \d+ VMs up in"), "VM: VMs up (ssh-config, NIC checks)"),
    (re.compile(r"provisioned as controller"), "VM: controller provisioned"),
    (re.compile(r"testbed \S+ up in"), "VM: testbed up"),
)
SSH_READY = re.compile(r"vagrant: (\S+): SSH ready")
PREPARED = re.compile(r"^(\S+): prepared in")
STARTED = re.compile(r"^(\S+): provisioned as compute in")


class Clock:
    """A progress callback that remembers when each line arrived (seconds since it was made)."""

    def __init__(self, forward: Callable[[str], None]):
        self.started = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        self.forward = forward

    def __call__(self, message: str) -> None:
        self.lines.append((time.monotonic() - self.started, message))
        self.forward(message)


def phases(lines: list[tuple[float, str]]) -> dict[str, float]:
    """Phase name -> seconds since the start of the bring-up, from its timed progress lines (pure)."""
    found: dict[str, float] = {}
    ready, prepared, started = [], [], []
    for at, line in lines:
        for pattern, name in MARKS:
            if pattern.search(line) and name not in found:
                found[name] = at
        if SSH_READY.search(line):
            ready.append(at)
        if PREPARED.search(line):
            prepared.append(at)
        if STARTED.search(line):
            started.append(at)
    if ready:
        found["VM: first VM's SSH ready"], found["VM: last VM's SSH ready"] = min(ready), max(ready)
    if prepared:
        found["VM: computes prepared (the last)"] = max(prepared)
    if started:
        found["VM: computes started (the last)"] = max(started)
    return found


def seconds(text: str) -> float:
    """systemd's durations: ``1min 54.116s``, ``12.816s``, ``898ms`` (pure)."""
    total = 0.0
    for value, unit in re.findall(r"([\d.]+)(min|ms|s)", text):
        total += float(value) * {"min": 60, "s": 1, "ms": 0.001}[unit]
    return total


def boot_profile(bed: Testbed) -> dict[str, float]:
    """Each VM's boot (kernel + userspace to its default target) and each compute's KVM probe."""
    found: dict[str, float] = {}
    boots, probes = [], []
    for spec in bed.topology.stack_nodes:
        node = bed.node(spec.name)
        text = node.run(["systemd-analyze", "time"]).stdout
        match = re.search(r"Startup finished in (.*?) \(kernel\) \+ (.*?) \(userspace\)", text)
        if match:
            boots.append((seconds(match.group(1)), seconds(match.group(2))))
        if spec.role == "compute":
            probes.append(provisioning.kvm_choice(node).get("seconds") or 0.0)
    if probes:
        found["VM: KVM probe (the slowest compute)"] = max(probes)
    if boots:
        found["VM: kernel boot (the slowest VM)"] = max(k for k, _ in boots)
        found["VM: userspace to multi-user (the slowest VM)"] = max(u for _, u in boots)
    return found


def measure(rounds: int, progress: Callable[[str], None], topology: Path = DEFAULT_TOPOLOGY) -> dict[str, list[float]]:
    """``rounds`` VM bring-ups: phase name -> its seconds in each round."""
    out: dict[str, list[float]] = {}
    for _ in range(rounds):
        clock = Clock(progress)
        bed = Testbed.up(load(topology), "vagrant", progress=clock)
        try:
            found = {**phases(clock.lines), **boot_profile(bed)}
        finally:
            watch = time.monotonic()
            bed.down()
        found["VM: teardown"] = time.monotonic() - watch
        for name, value in found.items():
            out.setdefault(name, []).append(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--quiet", action="store_true", help="no bring-up progress lines")
    args = parser.parse_args()
    results = measure(args.rounds, (lambda _m: None) if args.quiet else
                      (lambda m: print(f"[flatbed] {m}", file=sys.stderr, flush=True)), args.topology)
    missed = 0
    print(f"{'phase':52} {'median':>8} {'min':>8} {'max':>8} {'target':>8}")
    for name, values in sorted(results.items(), key=lambda item: statistics.median(item[1])):
        target = TARGETS.get(name)
        median = statistics.median(values)
        flag = "  MISSED" if target is not None and median > target else ""
        missed += bool(flag)
        print(f"{name:52} {median:8.1f} {min(values):8.1f} {max(values):8.1f} "
              f"{'' if target is None else f'{target:8.0f}':>8}{flag}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
