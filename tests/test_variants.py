"""fixtures/variants.py: a second testbed per module, under --destroy and --reuse (no nodes: Testbed.up
is replaced by a stand-in in an inner pytest run, in a subprocess so that nothing patched leaks)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

REPO = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(REPO)!r})


from pathlib import Path

import flatbed.collect
from flatbed.testbed import Testbed

EVENTS = Path("events.txt")


class StandIn(Testbed):
    run_id = "fb0000aa"

    def __init__(self, topo):
        self.topology = topo

    def down(self):
        EVENTS.open("a").write("down\\n")
        return []

    def taken_away(self):
        return False

    def give_back(self):
        EVENTS.open("a").write("given back\\n")


def up(topo, provider, **kwargs):
    EVENTS.open("a").write(f"up {{topo.name}}\\n")
    return StandIn(topo)


def collect(bed, dest):
    dest.mkdir(parents=True)
    EVENTS.open("a").write(f"collected {{bed.run_id}}\\n")


Testbed.up = staticmethod(up)
flatbed.collect.collect = collect
"""

MODULE = f"""
import pytest
from flatbed_fixtures.variants import goes_away, own_testbed

VARIANT = {str(REPO / "topologies" / "no-same-net.toml")!r}


@pytest.fixture(scope="module")
def bed(request):
    yield from own_testbed(request, __import__("pathlib").Path(VARIANT))


@pytest.fixture(scope="module")
def cleanup(request, bed):
    yield
    open("events.txt", "a").write(f"guests deleted: {{not goes_away(request, bed)}}\\n")


def test_first(bed, cleanup):
    assert bed.topology.name == "flatdhcp-no-same-net"


def test_second(bed):
    assert FAIL is False
"""


def run(pytester: pytest.Pytester, *args: str, fail: bool) -> tuple[pytest.RunResult, list[str]]:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_variant=MODULE.replace("FAIL", "True" if fail else "False"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--artifacts", str(pytester.path / "art"), *args)
    events = (pytester.path / "events.txt").read_text().splitlines() if (pytester.path / "events.txt").exists() else []
    return result, events


def test_passing_module_removes_its_testbed_without_cleaning_guests(pytester: pytest.Pytester) -> None:
    result, events = run(pytester, "--destroy=passing", fail=False)
    result.assert_outcomes(passed=2)
    assert events == ["up flatdhcp-no-same-net", "guests deleted: False", "down"]


def test_failing_module_keeps_its_testbed_says_so_and_collects_from_it(pytester: pytest.Pytester) -> None:
    result, events = run(pytester, "--destroy=passing", fail=True)
    result.assert_outcomes(passed=1, failed=1)
    assert events == ["up flatdhcp-no-same-net", "collected fb0000aa", "guests deleted: True", "given back"]
    result.stdout.fnmatch_lines(["*second testbed fb0000aa (flatdhcp-no-same-net, for test_variant.py) kept "
                                 "(--destroy=passing, 1 failed); reach it with:*",
                                 "*flatbed --testbed fb0000aa down*"])


def test_always_removes_it_even_after_a_failure(pytester: pytest.Pytester) -> None:
    result, events = run(pytester, "--destroy=always", fail=True)
    result.assert_outcomes(passed=1, failed=1)
    assert events[-1] == "down" and "guests deleted: False" in events


def test_reuse_skips_the_module(pytester: pytest.Pytester) -> None:
    # A run that reuses a kept testbed is about that testbed: no second testbed comes up.
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_variant=MODULE.replace("FAIL", "False"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--reuse", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*brings up a testbed of its own (no-same-net.toml); not run with --reuse*"])
