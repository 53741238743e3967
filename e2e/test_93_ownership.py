"""Testbeds belong to the runs using them, and their teardown survives an interrupt (issue 14).

1. A pytest run brings up its testbed (an inner run, beside the session): meanwhile
   ``flatbed down`` and ``flatbed clean`` in "another shell" refuse it in one line naming the
   run, while ``flatbed list`` shows it;
2. ``flatbed down --force`` removes it from under the run anyway: each of the run's tests then
   fails with the one line ``testbed fbXXXX was removed while this run used it``, never a provider
   traceback, and nothing of it is left;
3. ``flatbed down`` interrupted once during its teardown says it finishes, and does: nothing left.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from flatbed import state
from flatbed.checks.runs import FlatbedCli, leftovers_of
from flatbed.checks.timeouts import RUN_TIMEOUT
from flatbed.waiters import wait_until

HOLDING_RUN = '''\
"""Written by e2e/test_93_ownership.py: a run that uses its testbed until told to go on."""

import os
from pathlib import Path

from flatbed.waiters import wait_until

SIGNALS = Path(os.environ["FLATBED_TEST_SIGNALS"])


def test_holds_the_testbed_until_told(testbed):
    (SIGNALS / "holding").write_text(testbed.run_id)
    wait_until(lambda: (SIGNALS / "go").exists(), timeout=600, what="the outer test's go")
    testbed.controller.check(["true"])


def test_uses_it_again(controller):
    controller.check(["true"])


def test_boots_a_guest(guest):
    assert guest.ip
'''
REMOVED = "testbed {run} was removed while this run used it"
PROVIDER_NOISE = ("Traceback", "NodeGoneError", "libvirtError", "FileNotFoundError", "CalledProcessError")


def owner_pid(run: str) -> int:
    return int(state.TestbedState.load(run).owner.split(":")[0])


def new_testbed_of(proc: subprocess.Popen, before: set[str]) -> str:
    """The run id of the testbed the process ``proc`` is bringing up (its state file names it)."""
    def found() -> str | None:
        assert proc.poll() is None, "the inner run ended before its testbed showed up"
        for st in state.list_testbeds():
            if st.run_id not in before and st.owner.split(":")[0] == str(proc.pid):
                return st.run_id
        return None

    return wait_until(found, timeout=RUN_TIMEOUT, what=f"pid {proc.pid}'s testbed in {state.state_root()}")


@pytest.fixture(scope="module")
def holding_run(flatbed_cli: FlatbedCli, tmp_path_factory: pytest.TempPathFactory):
    where = tmp_path_factory.mktemp("holding")
    (where / "test_holding.py").write_text(HOLDING_RUN)
    (where / "signals").mkdir()
    before = {st.run_id for st in state.list_testbeds()}
    log = (where / "run.log").open("w")
    env = {**flatbed_cli.env, "FLATBED_TEST_SIGNALS": str(where / "signals")}
    proc = subprocess.Popen(flatbed_cli.pytest_argv("--rootdir",
                                                    str(where), "--destroy=always", "-rA", "test_holding.py"),
                            cwd=where, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield proc, where, new_testbed_of(proc, before)
    finally:
        (where / "signals" / "go").touch()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=RUN_TIMEOUT)
        log.close()


def test_down_and_clean_refuse_a_testbed_a_run_is_bringing_up(holding_run, flatbed_cli):
    proc, _, run = holding_run
    refusal = rf"testbed {run} is in use by pytest \(pid {proc.pid}\) since \d\d:\d\d; --force to remove it anyway"
    down = flatbed_cli.run("--testbed", run, "down", check=False)
    assert down.returncode != 0 and down.stdout == "", down.stdout + down.stderr
    assert re.fullmatch(rf"flatbed: error: {refusal}\n", down.stderr), down.stderr
    cleaned = flatbed_cli.run("clean").stdout
    assert re.search(rf"^kept {run}: in use by pytest \(pid {proc.pid}\) since \d\d:\d\d; --force", cleaned, re.M), \
        cleaned
    assert re.search(rf"^{run}\s", flatbed_cli.run("list").stdout, re.M)       # read-only verbs work on it
    assert state.TestbedState.load(run).status in ("creating", "up") and owner_pid(run) == proc.pid


def test_forced_down_is_one_line_per_test_of_the_run(holding_run, flatbed_cli):
    proc, where, run = holding_run
    wait_until(lambda: (where / "signals" / "holding").exists() or proc.poll() is not None, timeout=RUN_TIMEOUT,
               what="the inner run's first test to hold its testbed")
    assert proc.poll() is None, (where / "run.log").read_text()[-3000:]
    flatbed_cli.run("--testbed", run, "down", "--force")
    (where / "signals" / "go").touch()
    rc = proc.wait(timeout=RUN_TIMEOUT)
    output = (where / "run.log").read_text()
    line = REMOVED.format(run=run)
    assert rc == 1, output[-4000:]
    for test in ("test_holds_the_testbed_until_told", "test_uses_it_again", "test_boots_a_guest"):
        # Its report is that line and nothing else: the next line starts the next section.
        assert re.search(rf"^_+ (ERROR at setup of )?{test} _+\n{line}\n(_|=|-)", output, re.M), output[-4000:]
    failures = output.split("= FAILURES =")[-1].split("short test summary")[0]
    assert not [noise for noise in PROVIDER_NOISE if noise in failures], failures[-4000:]
    assert re.search(rf"^{line}$", output, re.M), output[-2000:]                # and the summary says why
    assert leftovers_of(run) == [], output[-2000:]


def test_one_interrupt_during_teardown_does_not_cut_it(flatbed_cli: FlatbedCli):
    up = flatbed_cli.run("up", "--provider", flatbed_cli.provider)
    run = re.search(r"testbed (fb[0-9a-f]{6}) is up", up.stdout).group(1)
    down = flatbed_cli.popen("--testbed", run, "down", stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def removing() -> bool:
        try:
            return state.TestbedState.load(run).status == "removing"
        except Exception:   # gone already: too late to interrupt
            return True

    wait_until(removing, timeout=RUN_TIMEOUT, interval=0.005, what=f"`flatbed down` of {run} to start removing")
    down.send_signal(signal.SIGINT)
    out, err = down.communicate(timeout=RUN_TIMEOUT)
    assert f"finishing teardown of {run} (Ctrl-C again to abort and leave it for flatbed clean)" in err, err
    assert down.returncode == 0 and f"removed namespace {run}-" in out, out + err
    assert leftovers_of(run) == [] and not Path(state.state_root() / run / "state.json").exists()
