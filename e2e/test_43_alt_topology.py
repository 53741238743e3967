"""The second shipped topology (topologies/alt.toml: other subnets, bridge, addresses, first id 1)
passes the document's §2.1 and §2.3, so nothing quietly depends on 10.0.0.x, 192.168.56.x or br100.

Steps: run ``pytest e2e/test_21_controller_before_boot.py e2e/test_23_boot.py --topology
topologies/alt.toml`` as a user would, in a subprocess with its own testbed (under the session's
``--destroy``), and require every test to pass — only skips the modules declare themselves are
allowed. The run starts as soon as the session has collected (``start_in_background``, called by
e2e/conftest.py), beside the other modules; the test joins it. A session that runs alt.toml itself
covers this, and a ``--reuse`` session is about its kept testbed: this module skips then.
"""

from __future__ import annotations

import re

import pytest

from fixtures.cli import session_cli
from fixtures.plugin import FACTORY
from flatbed.checks.runs import REPO, BackgroundRun
from flatbed.topology import load as load_topology

ALT = REPO / "topologies" / "alt.toml"
MODULES = ("e2e/test_21_controller_before_boot.py", "e2e/test_23_boot.py")
RUN = pytest.StashKey[BackgroundRun]()


def why_not(config: pytest.Config) -> str | None:
    if config.getoption("reuse"):
        return "spawns a testbed of its own; not run with --reuse"
    if load_topology(ALT).digest == config.stash[FACTORY].topology.digest:
        return "the session itself runs alt.toml"
    return None


def start_in_background(config: pytest.Config) -> None:
    """Start the alt.toml run (once collection is done); stopped at the session's end if still going."""
    if why_not(config) or RUN in config.stash:
        return
    # The session's provider and options (fixtures/cli.py), alt.toml as the topology.
    run = session_cli(config).pytest_background(*MODULES, "--topology", str(ALT), "-q", "-rs")
    config.stash[RUN] = run
    config.add_cleanup(run.stop)


def test_alt_topology_passes_21_and_23(pytestconfig: pytest.Config) -> None:
    skip = why_not(pytestconfig)
    if skip:
        pytest.skip(skip)
    start_in_background(pytestconfig)  # when this module was not collected with the others
    rc, output = pytestconfig.stash[RUN].result()
    summary = output.split("short test summary info")[-1]
    assert rc == 0 and re.search(r"\d+ passed", output), (
        f"pytest {' '.join(MODULES)} --topology {ALT.name} exited {rc}:\n{output[-6000:]}")
    assert not re.search(r"\b(failed|error)", summary, re.I), output[-4000:]
    print(output[-2000:])
