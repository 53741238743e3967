#!/usr/bin/env python3
"""Soak: testbeds come and go many times, interrupted at random moments, and leave nothing.

    .venv/bin/python tools/soak.py [--cycles N] [--interrupts N] [--provider nspawn|vagrant|auto]
                                   [--module e2e/test_23_boot.py] [--seed S]

1. ``--cycles`` times: ``flatbed up`` then ``flatbed down`` (as a user runs them);
2. one uninterrupted ``pytest MODULE --destroy=always`` run, which measures how long its phases
   take (bring-up, tests, teardown: read from its state file's status);
3. ``--interrupts`` runs of the same, each hit by SIGINT (Ctrl-C: to its process group), SIGTERM
   or SIGKILL (to pytest) at a random moment of a phase — signals and phases taken in turn, the
   moment random within the phase's measured length; after SIGKILL only, ``flatbed clean``.

After each, a leak audit of that run: namespaces, links and rules of the host's own namespace
(veths, bridges, taps), cgroups, mounts and overlays under the state root, processes, libvirt
objects (a private libvirtd, or the run's domains/networks/volumes in ``--libvirt-uri``), its
state file. Prints a table (markdown) and exits 1 on any leak. Nightly, not in CI: it takes
minutes on containers, hours on VMs. Uses ``$FLATBED_STATE`` like every flatbed command.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from flatbed import hostaudit, state
from flatbed.checks.runs import leftovers_of

REPO = Path(__file__).resolve().parents[1]
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
PHASES = ("bring-up", "test", "teardown")
RUN_TIMEOUT = 3600   # one up, down or pytest run (a TCG VM bring-up takes minutes)
POLL = 0.01          # how often a run's state file is read to find its phase


@dataclass
class Row:
    """One line of the table: what was done, how it ended, what it left."""

    n: int
    kind: str                  # cycle | calibration | interrupt
    run: str = "-"
    signal: str = "-"
    phase: str = "-"
    moment: str = "-"          # seconds into the phase when the signal went
    outcome: str = ""
    seconds: float = 0.0
    clean: str = "-"
    leaks: list[str] = field(default_factory=list)


def plan(count: int, seed: int) -> list[tuple[signal.Signals, str, float]]:
    """``count`` interrupts: every signal in every phase in turn, each at a random fraction of it."""
    rnd = random.Random(seed)
    combos = [(sig, phase) for phase in PHASES for sig in SIGNALS]
    return [(*combos[i % len(combos)], rnd.random()) for i in range(count)]


def render(rows: list[Row]) -> str:
    head = ["#", "what", "run", "signal", "phase", "at (s)", "outcome", "time (s)", "clean", "leaks"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        leaks = "0" if not r.leaks else f"{len(r.leaks)}: " + "; ".join(r.leaks[:3])
        lines.append("| " + " | ".join([str(r.n), r.kind, r.run, r.signal, r.phase, r.moment, r.outcome,
                                        f"{r.seconds:.1f}", r.clean, leaks]) + " |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    total = sum(len(r.leaks) for r in rows)
    return f"{len(rows)} runs, {sum(1 for r in rows if r.leaks)} with leaks, {total} leaked resources"


# --- running flatbed and pytest as a user does ---------------------------------------------------

def env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def flatbed(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flatbed.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=env(), timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)


def runs_now() -> set[str]:
    root = state.state_root()
    return {d.name for d in root.iterdir() if state.is_run_id(d.name)} if root.is_dir() else set()


def status_of(run: str | None) -> str:
    """creating | up | removing | failed | gone | - (not there yet)."""
    if run is None:
        return "-"
    try:
        return state.TestbedState.load(run).status
    except Exception:
        return "gone"


def _as_in_a_terminal() -> None:
    """Ctrl-C interrupts the run even when the soak itself was started in the background (a
    shell's ``&`` ignores SIGINT, and an ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """A ``pytest MODULE`` run in its own session (so Ctrl-C can go to its whole group)."""

    def __init__(self, module: str, provider: str, log: Path):
        self.before = runs_now()
        self.log = log.open("w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", module, "--provider",
                                      provider, "--destroy=always", "-q"], cwd=REPO, env=env(), stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_as_in_a_terminal)
        self.run_id: str | None = None
        self.seen = False   # whether its state file was read once

    def find_run(self) -> str | None:
        if self.run_id is None:
            new = sorted(runs_now() - self.before)
            self.run_id = new[0] if new else None
        return self.run_id

    def phase(self) -> str:
        """Where the run is: bring-up, test, teardown, or ended."""
        if self.proc.poll() is not None:
            return "ended"
        status = status_of(self.find_run())
        if status == "gone" and not self.seen:
            status = "-"   # its directory exists, its state file not yet
        self.seen = self.seen or status not in ("-", "gone")
        return {"-": "bring-up", "creating": "bring-up", "up": "test", "failed": "teardown",
                "removing": "teardown", "gone": "teardown"}.get(status, "bring-up")

    def wait_for(self, phase: str) -> float | None:
        """Until the run is in ``phase``: when it got there (monotonic), or None if it ended first."""
        while True:
            now = self.phase()
            if now == phase:
                return time.monotonic()
            if now == "ended" or PHASES.index(now) > PHASES.index(phase):
                return None
            time.sleep(POLL)

    def send(self, sig: signal.Signals) -> None:
        try:
            if sig == signal.SIGINT:
                os.killpg(self.proc.pid, sig)   # Ctrl-C in a terminal reaches the whole group
            else:
                os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def finish(self) -> int:
        try:
            rc = self.proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait()
        self.log.close()
        return rc


# --- the audit ---------------------------------------------------------------------------------

def libvirt_objects(run: str, uri: str | None) -> list[str]:
    """The run's domains, networks and volumes in an existing libvirt (a private one is a process)."""
    if not uri:
        return []
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as e:
        return [f"libvirt at {uri} unreachable: {e}"]
    try:
        found = [f"domain {d.name()}" for d in conn.listAllDomains() if d.name().startswith(run)]
        found += [f"network {n.name()}" for n in conn.listAllNetworks() if n.name().startswith(run)]
        for pool in conn.listAllStoragePools():
            found += [f"volume {v}" for v in (pool.listVolumes() if pool.isActive() else []) if v.startswith(run)]
        return found
    finally:
        conn.close()


def audit(run: str | None, baseline: hostaudit.HostView, uri: str | None) -> list[str]:
    """Everything of ``run`` still on the host, and what changed in the host's own namespace."""
    leaks = leftovers_of(run) + libvirt_objects(run, uri) if run else []
    if run and (state.state_root() / run / "state.json").exists():
        leaks.append(f"state file of {run} ({status_of(run)})")
    for change in hostaudit.changes(baseline, hostaudit.look()):
        owner = hostaudit.owner(change)
        if owner is None or owner == run:   # other runs on this host are their owners' business
            leaks.append(f"host namespace: {change}")
    return sorted(set(leaks))


# --- the soak ----------------------------------------------------------------------------------

def cycle(n: int, provider: str, baseline: hostaudit.HostView, uri: str | None) -> Row:
    row = Row(n, "cycle")
    started = time.monotonic()
    up = flatbed("up", "--provider", provider, *(["--libvirt-uri", uri] if uri else []))
    found = re.search(r"testbed (fb[0-9a-f]{6}) is up", up.stdout)
    row.run = found.group(1) if found else "-"
    if up.returncode != 0 or not found:
        row.outcome = f"up exited {up.returncode}: {(up.stderr.strip().splitlines() or ['?'])[-1][:80]}"
    else:
        down = flatbed("--testbed", row.run, "down")
        row.outcome = "up, down" if down.returncode == 0 else f"down exited {down.returncode}"
    row.seconds = time.monotonic() - started
    row.leaks = audit(found.group(1) if found else None, baseline, uri)
    return row


def calibrate(n: int, module: str, provider: str, logs: Path, baseline: hostaudit.HostView,
              uri: str | None) -> tuple[Row, dict[str, float]]:
    """One uninterrupted run: how long each phase takes."""
    run = Run(module, provider, logs / "calibration.log")
    marks = {phase: run.wait_for(phase) for phase in PHASES}
    rc = run.finish()
    ended = time.monotonic()
    times = [marks["bring-up"], marks["test"], marks["teardown"], ended]
    lengths = {phase: (b - a) if a and b else 0.0 for phase, a, b in zip(PHASES, times, times[1:], strict=False)}
    phases = " / ".join(f"{lengths[p]:.1f}" for p in PHASES)
    row = Row(n, "calibration", run.run_id or "-", outcome=f"pytest exited {rc}; phases {phases} s",
              seconds=ended - run.started)
    row.leaks = audit(run.run_id, baseline, uri)
    return row, lengths


def interrupt(n: int, module: str, provider: str, logs: Path, sig: signal.Signals, phase: str, fraction: float,
              lengths: dict[str, float], baseline: hostaudit.HostView, uri: str | None) -> Row:
    row = Row(n, "interrupt", signal=sig.name, phase=phase)
    run = Run(module, provider, logs / f"interrupt-{n}.log")
    entered = run.wait_for(phase)
    if entered is not None:
        delay = fraction * lengths.get(phase, 0.0)
        while time.monotonic() < entered + delay and run.phase() == phase:
            time.sleep(POLL)
        row.moment = f"{time.monotonic() - entered:.2f}"
        now = run.phase()
        run.send(sig)
        if now != phase:
            row.outcome = f"(in its {now}) "
    else:
        row.outcome = f"ended before its {phase}; "
    rc = run.finish()
    row.outcome += f"pytest exited {rc}"
    row.run = run.find_run() or "-"
    if sig == signal.SIGKILL:
        cleaned = flatbed("clean")
        removed = [line for line in cleaned.stdout.splitlines() if line.startswith("removed ")]
        mine = [line for line in removed if row.run in line]
        row.clean = (f"removed {row.run}" if mine else "nothing of it") + ("" if cleaned.returncode == 0 else
                                                                             f" (exit {cleaned.returncode})")
    row.seconds = time.monotonic() - run.started
    row.leaks = audit(run.find_run(), baseline, uri)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--interrupts", type=int, default=20)
    parser.add_argument("--provider", default="auto", choices=("auto", "nspawn", "vagrant"))
    parser.add_argument("--module", default="e2e/test_23_boot.py", help="the pytest run that gets interrupted")
    parser.add_argument("--seed", type=int, default=None, help="for the random moments (default: printed)")
    parser.add_argument("--libvirt-uri", default=os.environ.get("FLATBED_LIBVIRT_URI"),
                        help="vagrant provider: an existing libvirt (its objects are audited)")
    parser.add_argument("--logs", type=Path, default=None, help="where the pytest runs' logs go")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    # Not in the state root: flatbed prunes directories there that are not testbeds'.
    logs = args.logs or Path(tempfile.gettempdir()) / f"flatbed-soak-{time.strftime('%Y%m%d-%H%M%S')}"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.cycles} cycles, {args.interrupts} interrupts, provider {args.provider}, seed {seed}, "
          f"state root {state.state_root()}, logs {logs}", flush=True)
    baseline = hostaudit.look()
    rows: list[Row] = []

    def report(row: Row) -> None:
        rows.append(row)
        print(f"  {row.n:3} {row.kind:11} {row.run:9} {row.signal:7} {row.phase:8} {row.moment:>7} {row.outcome} "
              f"({row.seconds:.1f} s){' LEAKS: ' + '; '.join(row.leaks) if row.leaks else ''}", flush=True)

    for _ in range(args.cycles):
        report(cycle(len(rows) + 1, args.provider, baseline, args.libvirt_uri))
    if args.interrupts:
        row, lengths = calibrate(len(rows) + 1, args.module, args.provider, logs, baseline, args.libvirt_uri)
        report(row)
        for sig, phase, fraction in plan(args.interrupts, seed):
            report(interrupt(len(rows) + 1, args.module, args.provider, logs, sig, phase, fraction, lengths, baseline,
                             args.libvirt_uri))
    cycles = [r.seconds for r in rows if r.kind == "cycle"]
    print()
    print(render(rows))
    print()
    if cycles:
        print(f"up+down cycle: median {statistics.median(cycles):.1f} s, max {max(cycles):.1f} s")
    print(summary(rows))
    return 1 if any(r.leaks for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
