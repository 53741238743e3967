"""An interrupted ``vagrant up`` leaves nothing behind (vagrant provider only).

Each test starts ``flatbed up --provider vagrant`` in its own state directory, waits until the
first VM is running, then interrupts it:

- SIGTERM (like Ctrl-C): the CLI removes everything it created and exits 130;
- SIGKILL: nothing runs any cleanup; ``flatbed down`` then removes everything from the state
  file alone (names are recorded before the resources exist).

Afterwards no process, namespace, libvirt object or directory of that run may remain. Runs
before the document suite (file order) so that it never competes with the session's VMs.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flatbed import hostnet
from flatbed.waiters import wait_until

pytestmark = pytest.mark.vms

REPO = Path(__file__).resolve().parent.parent
STARTED = re.compile(r"vagrant: \S+: domain started")
BRING_UP_TIMEOUT = 600  # images are cached by then; libvirtd + first domain start take ~10-60 s


@pytest.fixture
def only_vagrant(pytestconfig: pytest.Config) -> None:
    if pytestconfig.getoption("provider") != "vagrant":
        pytest.skip("vagrant provider only (--provider vagrant)")


class Bringup:
    """``flatbed up --provider vagrant`` in the background, with its progress lines readable."""

    def __init__(self, state_root: Path):
        self.state_root = state_root
        self.env = dict(os.environ, FLATBED_STATE=str(state_root), PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-m", "flatbed.cli", "up", "--provider", "vagrant"],
                                     cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.run_id: str | None = None

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip())
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str]) -> None:
        def seen() -> bool:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                return False
            if line is None:
                raise AssertionError("flatbed up ended before " + pattern.pattern + ":\n" + "\n".join(self.seen))
            self.seen.append(line)
            if self.run_id is None and any(self.state_root.glob("*/state.json")):
                self.run_id = self.listed()
            return bool(pattern.search(line))

        wait_until(seen, timeout=BRING_UP_TIMEOUT, interval=0, what=f"`flatbed up` to print {pattern.pattern!r}")

    def listed(self) -> str:
        """The run id from `flatbed list --json` in this run's own state root (its only testbed)."""
        out = subprocess.run([sys.executable, "-m", "flatbed.cli", "list", "--json"], cwd=REPO, env=self.env,
                             capture_output=True, text=True, check=True).stdout
        found = [t["run_id"] for t in json.loads(out)["testbeds"] if t["owner_pid"] == self.proc.pid]
        assert len(found) == 1, out
        return found[0]

    def state(self) -> dict:
        return json.loads((self.state_root / self.run_id / "state.json").read_text())

    def rest(self) -> str:
        lines = []
        while (line := self.lines.get(timeout=30)) is not None:
            lines.append(line)
        return "\n".join(self.seen + lines)


@pytest.fixture
def bringup(tmp_path: Path, only_vagrant: None) -> Iterator[Bringup]:
    run = Bringup(tmp_path / "state")
    yield run
    if run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait()
    if run.run_id and (run.state_root / run.run_id / "state.json").exists():
        subprocess.run([sys.executable, "-m", "flatbed.cli", "--testbed", run.run_id, "down"], cwd=REPO,
                       env=run.env, check=False)


def alive(pid: int | None) -> bool:
    try:
        return bool(pid) and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def assert_nothing_left(run: Bringup, recorded: dict) -> None:
    rid = run.run_id
    vagrant = recorded["record"]  # the provider's record in the state file (schema 2)
    assert not (run.state_root / rid / "state.json").exists()
    assert hostnet.list_namespaces(f"{rid}-") == []
    for key in ("libvirtd_pid", "vagrant_pid"):
        assert not alive(vagrant.get(key)), f"{key} {vagrant.get(key)} is still running"
    # qemu's command line names its domain (guest=<run>-<node>); vagrant's carries the state path.
    assert processes_mentioning(f"guest={rid}-") == []
    assert processes_mentioning(str(run.state_root / rid)) == []
    for sub in ("libvirt", "vagrant", "ssh"):
        assert not (run.state_root / rid / sub).exists(), sub
    leaks = subprocess.run([sys.executable, "-m", "flatbed.cli", "leaks"], cwd=REPO, env=run.env,
                           capture_output=True, text=True).stdout
    assert rid not in leaks, leaks


def test_sigterm_during_vagrant_up_removes_everything(bringup: Bringup):
    bringup.wait_for(STARTED)
    recorded = bringup.state()
    assert recorded["record"]["domains"], "domains are recorded before vagrant creates them"
    bringup.proc.send_signal(signal.SIGTERM)
    assert bringup.proc.wait(timeout=120) == 130
    output = bringup.rest()
    assert "removing it" in output, output
    assert_nothing_left(bringup, recorded)


def test_sigkill_during_vagrant_up_then_down_removes_everything(bringup: Bringup):
    bringup.wait_for(STARTED)
    recorded = bringup.state()
    bringup.proc.kill()
    bringup.proc.wait(timeout=30)
    # vagrant runs in its own session, so it outlived the CLI: `down` must stop it first.
    down = subprocess.run([sys.executable, "-m", "flatbed.cli", "--testbed", bringup.run_id, "down"], cwd=REPO,
                          env=bringup.env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert f"removed domain {bringup.run_id}-" in down.stdout
    assert_nothing_left(bringup, recorded)
