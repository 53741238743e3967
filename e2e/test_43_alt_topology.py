"""The second shipped topology (topologies/alt.toml: other subnets, bridge, addresses, first id 1)
passes the document's §2.1 and §2.3, so nothing quietly depends on 10.0.0.x, 192.168.56.x or br100.

Steps: run ``pytest e2e/test_21_controller_before_boot.py e2e/test_23_boot.py --topology
topologies/alt.toml`` as a user would, in a subprocess with its own testbed (under the session's
``--destroy``), and judge it by its JUnit XML, test by test: every test passed, except those
:data:`DECLARED_SKIPS` names, which must skip for the reason declared there — a skip nobody
declared fails this test, whatever the run's summary line says. The run starts as soon as the
session has collected (``start_in_background``, called by e2e/conftest.py), beside the other
modules; the test joins it. A session that runs alt.toml itself covers this, and a ``--reuse``
session is about its kept testbed: this module skips then.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from flatbed.checks.runs import REPO, BackgroundRun, junit_outcomes, outcome_problems
from flatbed.topology import load as load_topology
from flatbed_fixtures.cli import session_cli
from flatbed_fixtures.plugin import FACTORY
from flatbed_fixtures.variants import side_by_side

pytestmark = pytest.mark.own_testbeds

ALT = REPO / "topologies" / "alt.toml"
MODULES = ("e2e/test_21_controller_before_boot.py", "e2e/test_23_boot.py")
# Tests of MODULES allowed to skip on alt.toml (test name -> words of the reason): none. A fresh
# testbed of flatbed's guest runs every one of them.
DECLARED_SKIPS: dict[str, str] = {}
RUN = pytest.StashKey[BackgroundRun]()
JUNIT = pytest.StashKey[Path]()


def why_not(config: pytest.Config) -> str | None:
    if config.getoption("reuse"):
        return "spawns a testbed of its own; not run with --reuse"
    if load_topology(ALT).digest == config.stash[FACTORY].topology.digest:
        return "the session itself runs alt.toml"
    return None


def start_in_background(config: pytest.Config, now: bool = False) -> None:
    """Start the alt.toml run once collection is done, beside the session where its provider brings
    testbeds up side by side (else ``now``, from the test); stopped at the session's end if still going."""
    if why_not(config) or RUN in config.stash or not (now or side_by_side(config.stash[FACTORY].options)):
        return
    junit = Path(tempfile.mkdtemp(prefix="flatbed-test43-")) / "inner.xml"
    # The session's provider and options (fixtures/cli.py), alt.toml as the topology.
    run = session_cli(config).pytest_background(*MODULES, "--topology", str(ALT), f"--junitxml={junit}", "-q", "-rs")
    config.stash[RUN] = run
    config.stash[JUNIT] = junit
    config.add_cleanup(run.stop)
    config.add_cleanup(lambda: shutil.rmtree(junit.parent, ignore_errors=True))


def test_alt_topology_passes_21_and_23(pytestconfig: pytest.Config) -> None:
    skip = why_not(pytestconfig)
    if skip:
        pytest.skip(skip)
    start_in_background(pytestconfig, now=True)  # not started beside the session, or not collected with it
    rc, output = pytestconfig.stash[RUN].result()
    junit = pytestconfig.stash[JUNIT]
    cases = junit_outcomes(junit) if junit.exists() else []
    problems = outcome_problems(cases, DECLARED_SKIPS)
    assert rc == 0 and not problems, (
        f"pytest {' '.join(MODULES)} --topology {ALT.name} exited {rc}:\n" + "\n".join(problems)
        + f"\n{output[-6000:]}")
    print(f"{len(cases)} tests judged by the JUnit XML", output[-2000:], sep="\n")
