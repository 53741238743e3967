"""Running flatbed the way a user does, for tests of the CLI and of kept testbeds: commands in
subprocesses (``flatbed ...``, ``pytest ...``) with this checkout's code and the session's state root.

Tests that spawn their own testbeds get a :class:`FlatbedCli` from the ``flatbed_cli`` fixture
(fixtures/cli.py), which skips them under ``--reuse`` (a reusing run is about the kept testbed,
and the kept-testbed test itself runs ``pytest e2e/ --reuse``).
"""

from __future__ import annotations

import codecs
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from flatbed import timings
from flatbed.checks.timeouts import RUN_TIMEOUT
from flatbed.waiters import wait_until

REPO = Path(__file__).resolve().parents[2]  # this checkout: what the subprocesses run


@dataclass(frozen=True)
class FlatbedCli:
    """``flatbed`` and ``pytest`` of this checkout, with the session's options and state root.

    Every command gets the session's topology (``flatbed --topology``, ``pytest --topology``) and
    provider; ``flatbed up`` and every inner pytest also get ``testbed_args``, the other options
    that shape a testbed (``--mirror``, ``--cirros-image``, ``--libvirt-uri``: spelled alike by
    both), and an inner pytest ``session_args`` (``--destroy``, ``--artifacts``). Arguments a test
    gives come after them and win (``--topology OTHER``, ``--destroy=passing``).
    fixtures/cli.py builds one from the session's options.
    """

    provider: str
    topology: Path | None = None
    testbed_args: tuple[str, ...] = ()
    session_args: tuple[str, ...] = ()

    @property
    def env(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}

    def argv(self, *args: str) -> list[str]:
        """``flatbed ARGS``: the topology before the verb; ``up`` gets the provider and testbed options."""
        topology = ["--topology", str(self.topology)] if self.topology else []
        if args[:1] == ("up",):
            args = ("up", "--provider", self.provider, *self.testbed_args, *args[1:])
        return [sys.executable, "-m", "flatbed.cli", *topology, *args]

    def run(self, *args: str, input: str | None = None, timeout: float = RUN_TIMEOUT,
            check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(*args), input=input if input is not None else "", capture_output=True,
                              text=True, timeout=timeout, env=self.env, cwd=REPO)
        if check and proc.returncode != 0:
            raise AssertionError(f"`flatbed {' '.join(args)}` exited {proc.returncode}:\n{proc.stdout[-2000:]}"
                                 f"\n{proc.stderr[-2000:]}")
        return proc

    def testbed_of(self, pid: int, env: dict[str, str] | None = None) -> str:
        """The run id of the testbed process ``pid`` created (``flatbed list --json``: no prose read)."""
        import json

        listing = subprocess.run(self.argv("list", "--json"), capture_output=True, text=True, check=True,
                                 env=env or self.env, cwd=REPO, timeout=RUN_TIMEOUT)
        found = [t["run_id"] for t in json.loads(listing.stdout)["testbeds"] if t["owner_pid"] == pid]
        assert len(found) == 1, f"testbeds created by pid {pid}: {found}"
        return found[0]

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), env=self.env, cwd=REPO, stdin=subprocess.DEVNULL, text=True,
                                **kwargs)

    def pytest_argv(self, *args: str) -> list[str]:
        topology = ["--topology", str(self.topology)] if self.topology else []
        return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--provider", self.provider, *topology,
                *self.testbed_args, *self.session_args, *args]

    @timings.timed("inner run", lambda self, *args, **_: "pytest " + " ".join(args))
    def pytest(self, *args: str, cwd: Path = REPO, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run(self.pytest_argv(*args), capture_output=True, text=True, timeout=timeout, env=self.env,
                              cwd=cwd, stdin=subprocess.DEVNULL)

    def pytest_background(self, *args: str) -> BackgroundRun:
        """``pytest ARGS`` started now, its output in a file; ``BackgroundRun.result`` joins it."""
        log = tempfile.NamedTemporaryFile(prefix="flatbed-pytest-", suffix=".log", delete=False)
        proc = subprocess.Popen(self.pytest_argv(*args), stdout=log, stderr=subprocess.STDOUT, text=True,
                                env=self.env, cwd=REPO, stdin=subprocess.DEVNULL)
        log.close()
        return BackgroundRun(proc, Path(log.name))


@dataclass
class BackgroundRun:
    """An inner pytest run going on beside the session (its own testbed), joined by one test."""

    proc: subprocess.Popen
    log: Path

    @timings.timed("inner run", lambda self, **_: "joining " + " ".join(map(str, self.proc.args[2:])))
    def result(self, timeout: float = RUN_TIMEOUT) -> tuple[int, str]:
        """Wait for it (named timeout RUN_TIMEOUT): exit status and output."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"`{' '.join(self.proc.args)}` did not finish within {timeout:g} s "
                                 f"(RUN_TIMEOUT):\n{self.log.read_text()[-4000:]}") from None
        return rc, self.log.read_text()

    def stop(self) -> None:
        """End it as Ctrl-C would (its fixtures tear its testbed down), then remove the log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.unlink(missing_ok=True)


def leftovers_of(run_id: str) -> list[str]:
    """Every resource of ``run_id`` still on the host (flatbed leaks, for one run), and its processes."""
    from flatbed.leftovers import scan

    found = [item for item in scan() if f"{run_id}-" in item or f"/{run_id}/" in item]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"/{run_id}/" in cmdline or f"{run_id}-" in cmdline:
                found.append(f"process {entry.name}: {cmdline[:120]}")
    return found



def read_until(proc: subprocess.Popen, pattern: re.Pattern, timeout: float) -> str:
    """A process's stdout (``flatbed console``) until ``pattern`` matches or it exits; the timeout
    names what was awaited and what it showed."""
    seen: list[str] = []
    fd = proc.stdout.fileno()
    # Chunks straight from the pipe, never readline(): a buffered reader keeps the lines after the
    # first of a chunk to itself, and the selector, seeing an empty pipe, never wakes for them.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    started = time.monotonic()

    def matched() -> bool:
        for _ in selector.select(timeout=0.5):
            chunk = os.read(fd, 65536)
            if chunk:
                seen.append(decoder.decode(chunk).replace("\r\n", "\n"))
        return bool(pattern.search("".join(seen))) or proc.poll() is not None

    wait_until(matched, timeout=timeout, interval=0, what=f"`flatbed console` to show {pattern.pattern}",
               describe=lambda: f"after {time.monotonic() - started:.0f} s it showed: {''.join(seen)[-500:]!r}")
    return "".join(seen)


# --- an inner pytest run's outcome, from its JUnit XML (never from its summary line) ----------------

@dataclass(frozen=True)
class CaseOutcome:
    """One test of an inner run: ``passed``, ``failed``, ``error`` or ``skipped`` (with its reason)."""

    name: str          # the test function's name, with its parameters
    outcome: str
    message: str = ""


def junit_outcomes(path: Path) -> list[CaseOutcome]:
    """Every test case of a JUnit XML report (pytest's ``--junitxml``), in order."""

    cases = []
    for case in ET.parse(path).iter("testcase"):
        marks = [child for child in case if child.tag in ("failure", "error", "skipped")]
        outcome = {"failure": "failed"}.get(marks[0].tag, marks[0].tag) if marks else "passed"
        cases.append(CaseOutcome(case.get("name", ""), outcome, marks[0].get("message", "") if marks else ""))
    return cases


def outcome_problems(cases: list[CaseOutcome], declared_skips: dict[str, str]) -> list[str]:
    """Why an inner run does not count as passed: a test that did not pass, a skip not declared
    (``declared_skips``: test name -> words its reason must contain) or with another reason, a
    declared skip that ran instead, or no test at all."""
    if not cases:
        return ["the run has no test case"]
    problems = []
    for case in cases:
        declared = declared_skips.get(case.name)
        if case.outcome == "skipped" and declared is None:
            problems.append(f"{case.name}: skipped without being declared: {case.message}")
        elif case.outcome == "skipped" and declared not in case.message:
            problems.append(f"{case.name}: skipped for another reason than declared ({declared!r}): {case.message}")
        elif case.outcome in ("failed", "error"):
            problems.append(f"{case.name}: {case.outcome}: {case.message}")
        elif case.outcome == "passed" and declared is not None:
            problems.append(f"{case.name}: passed, but declared to skip ({declared!r})")
    return problems
