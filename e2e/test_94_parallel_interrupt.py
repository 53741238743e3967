"""An interrupted ``pytest -n 2`` leaves nothing behind.

A CI server cancelling a job signals its process group: the controller and both workers get
SIGTERM (pytest takes it like Ctrl-C). xdist then asks the workers to stop and kills them 10 s later,
often in the middle of their testbed's teardown (removing one takes ~11 s on containers); the
controller finishes that teardown for the testbeds its workers owned (``fixtures/parallel.py``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from flatbed.checks.runs import leftovers_of
from flatbed.checks.timeouts import RUN_TIMEOUT
from flatbed.waiters import wait_until

pytestmark = pytest.mark.own_testbeds

UP = re.compile(r"testbed (fb[0-9a-f]{6}) up in")
MODULES = ("e2e/test_23_boot.py", "e2e/test_42_lifecycle.py")  # one per worker, each boots guests


def test_sigterm_to_a_two_worker_run_leaves_nothing(flatbed_cli, tmp_path):
    if flatbed_cli.provider == "vagrant":
        pytest.skip("two VM testbeds at once on one host (one worker's each)")
    log = tmp_path / "pytest.log"
    with log.open("w") as out:
        proc = subprocess.Popen(flatbed_cli.pytest_argv(*MODULES, "-n", "2", "--destroy=always"), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=flatbed_cli.env,
                                start_new_session=True)  # a job's own process group, as a CI runner makes
    try:
        # Both workers' testbeds up and their tests under way: the run ids come from the progress lines.
        runs = wait_until(lambda: len(found := set(UP.findall(log.read_text()))) == 2 and found,
                          timeout=RUN_TIMEOUT, what="both workers' testbeds to come up",
                          describe=lambda: log.read_text()[-1500:])
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log.read_text()
    assert proc.returncode != 0, output[-2000:]
    for run in runs:
        assert leftovers_of(run) == [], f"{run}:\n{output[-3000:]}"
