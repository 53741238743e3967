"""``vagrant up``, streamed: its output to a log file, its phases as progress lines.

Not python-vagrant's streaming ``up()``: its generator waits for vagrant when closed, so an
interrupted bring-up would block. Here vagrant runs in its own session and is killed (by the
provider's ``destroy``) when this process is interrupted; the command line is python-vagrant's.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from flatbed.errors import FlatbedError
from flatbed.providers.vagrant.vagrantcmd import NetnsVagrant

UP_TIMEOUT = 1200
# Lines of `vagrant up` worth a progress line: (pattern, phase).
VAGRANT_PHASES = (
    (re.compile(r"Uploading base box image as volume"), "uploading the box volume"),
    (re.compile(r"Creating image \(snapshot of base box volume\)"), "disk created"),
    (re.compile(r"Starting domain\."), "domain started"),
    (re.compile(r"Machine booted and ready!"), "SSH ready"),
)
_VAGRANT_LINE = re.compile(r"^(?:==> )?\s*([a-z0-9][a-z0-9-]*): (.*)$")


def vagrant_phase(line: str) -> tuple[str, str] | None:
    """(node, phase) when a ``vagrant up`` output line marks a bring-up phase (pure)."""
    match = _VAGRANT_LINE.match(line.rstrip())
    if not match:
        return None
    for pattern, phase in VAGRANT_PHASES:
        if pattern.search(match.group(2)):
            return match.group(1), phase
    return None


def vagrant_up(v: NetnsVagrant, log_path: Path, started: Callable[[int], None], progress: Callable[[str], None],
               timeout: float = UP_TIMEOUT) -> None:
    """Run ``vagrant up`` of every machine in parallel; ``started(pid)`` records its process group."""
    command = v.command(["up", "--provider=libvirt", "--parallel"])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    watch = time.monotonic()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, cwd=v.root, env=v.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        started(proc.pid)
        progress(f"vagrant: vagrant up (output in {log_path})")
        tail: list[str] = []
        assert proc.stdout is not None
        for raw in proc.stdout:
            log.write(raw)
            log.flush()
            line = raw.decode(errors="replace").rstrip()
            tail = (tail + [line])[-20:]
            phase = vagrant_phase(line)
            if phase:
                progress(f"vagrant: {phase[0]}: {phase[1]} ({time.monotonic() - watch:.0f} s)")
            if time.monotonic() - watch > timeout:
                break
        try:
            rc = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - watch)))
        except subprocess.TimeoutExpired:
            raise FlatbedError(f"vagrant up did not finish within {timeout:g} s; see {log_path}") from None
    if rc != 0:
        detail = next((ln for ln in reversed(tail) if ln.strip() and not ln.lstrip().startswith("from ")), "")
        raise FlatbedError(f"vagrant up failed (rc {rc}): {detail.strip()[:300]}; see {log_path}")
    progress(f"vagrant: vagrant up done in {time.monotonic() - watch:.1f} s")
