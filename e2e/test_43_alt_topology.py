"""The second shipped topology (topologies/alt.toml: other subnets, bridge, addresses, first id 1)
passes the document's §2.1 and §2.3, so nothing quietly depends on 10.0.0.x, 192.168.56.x or br100.

Steps: run ``pytest e2e/test_21_controller_before_boot.py e2e/test_23_boot.py --topology
topologies/alt.toml`` as a user would, in a subprocess with its own testbed (under the session's
``--destroy``), and require every test to pass — only the skips the modules themselves declare
are allowed. A session already running alt.toml covers this by itself; so this module skips then.
"""

from __future__ import annotations

import re

import pytest

from fixtures.cli import REPO, FlatbedCli
from fixtures.plugin import FACTORY
from flatbed.topology import load as load_topology

ALT = REPO / "topologies" / "alt.toml"
MODULES = ("e2e/test_21_controller_before_boot.py", "e2e/test_23_boot.py")


def test_alt_topology_passes_21_and_23(flatbed_cli: FlatbedCli, pytestconfig: pytest.Config) -> None:
    factory = pytestconfig.stash[FACTORY]
    if load_topology(ALT).digest == factory.topology.digest:
        pytest.skip("the session itself runs alt.toml")
    proc = flatbed_cli.pytest(*MODULES, "--topology", str(ALT), f"--destroy={factory.destroy}", "-q", "-rs")
    output = proc.stdout + proc.stderr
    summary = output.split("short test summary info")[-1]
    passed = re.search(r"(\d+) passed", output)
    assert proc.returncode == 0 and passed, f"pytest {' '.join(MODULES)} --topology {ALT.name} exited " \
                                            f"{proc.returncode}:\n{output[-6000:]}"
    assert "failed" not in summary and "error" not in summary.lower(), output[-4000:]
    print(output[-2000:])
