#!/usr/bin/env python3
"""Measure the testbed's speed against its targets (speed lives here, never in timed tests).

    .venv/bin/python tools/benchmark.py [--provider nspawn] [--topology PATH] [--rounds N]

Each round: testbed up (images cached) → ``nova boot`` → ACTIVE → DHCP lease on the console →
the controller pings the guest → delete → testbed down. Prints one line per phase with the
median over rounds and the target, and exits 1 when a median misses its target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from flatbed.checks.console import wait_for_lease
from flatbed.checks.traffic import wait_pingable
from flatbed.cloud import Cloud
from flatbed.testbed import Testbed
from flatbed.topology import DEFAULT_TOPOLOGY, load

# Seconds, for the container provider under TCG on 2 cores (measured: see README "Timings").
TARGETS = {
    "up": 15.0,
    "boot→ACTIVE": 5.0,
    "ACTIVE→lease": 10.0,
    "lease→ping": 5.0,
    "delete": 5.0,
    "down": 5.0,
}


def one_round(topology_path: Path, provider: str) -> dict[str, float]:
    times: dict[str, float] = {}
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        times[name] = now - mark
        mark = now

    bed = Testbed.up(load(topology_path), provider, progress=lambda _m: None)
    try:
        lap("up")
        cloud = Cloud(bed)
        guest = cloud.boot("bench", compute=bed.topology.computes[0].name)
        lap("boot→ACTIVE")
        wait_for_lease(guest)
        lap("ACTIVE→lease")
        wait_pingable(bed.controller, guest.ip)
        lap("lease→ping")
        cloud.delete(guest.uuid)
        lap("delete")
    finally:
        bed.down()
    lap("down")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="nspawn")
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = [one_round(args.topology, args.provider) for _ in range(args.rounds)]
    missed = 0
    print(f"{'phase':14} {'median':>8} {'min':>8} {'max':>8} {'target':>8}")
    for phase, target in TARGETS.items():
        values = [r[phase] for r in rounds]
        median = statistics.median(values)
        flag = "" if median <= target else "  MISSED"
        missed += bool(flag)
        print(f"{phase:14} {median:8.2f} {min(values):8.2f} {max(values):8.2f} {target:8.1f}{flag}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
