"""Issue 17: a session whose failing tests used more testbeds than the state root keeps directories
of removed testbeds for (five) still has every bundle when it ends, and lists them all.

An inner pytest (a subprocess) runs seven failing tests, each on a testbed of its own made by the
toy provider (tests/toyprovider: directories, no nodes), removed right after its test; each
removal prunes the state root's old directories as usual. The bundles live in the session's
artifacts directory, which no count prunes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

TESTS = Path(__file__).resolve().parent
FAILING = 7  # more than state.KEEP_ARTIFACTS

CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})

import pytest

from flatbed import providers, state
from flatbed.testbed import Testbed
from flatbed.topology import DEFAULT_TOPOLOGY
from flatbed.topology import load as load_topology

providers.register("toy", "toyprovider:ToyProvider")


@pytest.fixture
def own_bed():
    cls = providers.get("toy")
    topo = load_topology(DEFAULT_TOPOLOGY)
    st = state.TestbedState(run_id=state.new_run_id(), provider="toy", topology_path=str(topo.path),
                            topology_digest=topo.digest, record=cls.Record())
    bed = Testbed(topo, st, cls(topo, st, lambda _m: None), lambda _m: None)
    bed.provider.create(None)
    st.status = "up"
    st.save()
    yield bed
    bed.down()   # prunes the state root's directories of removed testbeds beyond the last five
"""

FAILING_TESTS = f"""
import pytest

@pytest.mark.parametrize("n", range({FAILING}))
def test_fails_on_a_testbed_of_its_own(own_bed, n):
    assert False, f"deliberate failure {{n}} on {{own_bed.run_id}}"
"""


def test_every_bundle_of_the_session_exists_at_its_end(pytester: pytest.Pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("FLATBED_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("FLATBED_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("FLATBED_TOY_ROOT", str(tmp_path / "toyhost"))
    monkeypatch.delenv("FLATBED_SESSION", raising=False)
    (tmp_path / "toyhost").mkdir()
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_many=FAILING_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--max-bundles={FAILING}")  # default place
    result.assert_outcomes(failed=FAILING)
    [session] = (tmp_path / "artifacts").iterdir()                  # the session's own directory
    record = json.loads((session / "session.json").read_text())
    bundles = [Path(b["path"]) for b in record["bundles"]]
    assert len(bundles) == FAILING and all(b.is_dir() and (b / "MANIFEST.txt").is_file() for b in bundles)
    assert len({b["run_id"] for b in record["bundles"]}) == FAILING             # one testbed each
    assert all(t["outcome"] == "removed" and len(t["failed"]) == 1 for t in record["testbeds"])
    # the state root kept only five directories of removed testbeds, as before
    assert len([d for d in (tmp_path / "state").iterdir() if d.is_dir()]) == 5
    # the end of the session lists every bundle with its path
    out = result.stdout.str()
    assert f"artifact bundles of this session ({FAILING}," in out
    assert all(f"  {b}  (" in out for b in bundles)
