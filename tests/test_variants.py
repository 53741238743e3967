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
    import threading
    where = "" if threading.current_thread() is threading.main_thread() else " beside the session"
    EVENTS.open("a").write(f"up {{topo.name}}{{where}}\\n")
    if "BROKEN" in EVENTS.read_text():
        raise RuntimeError("bring-up failed")
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


STARTER = """

def pytest_collection_finish(session):
    from flatbed_fixtures.variants import start_testbed
    if session.config.getoption("start"):
        start_testbed(session.config, Path(__import__("test_variant").VARIANT))


def pytest_addoption(parser):
    parser.addoption("--start", action="store_true")
"""


def run_started(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, list[str]]:
    pytester.makeconftest(CONFTEST + STARTER)
    pytester.makepyfile(test_variant=MODULE.replace("FAIL", "False"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--artifacts", str(pytester.path / "art"),
                                           "--start", *args)
    events = (pytester.path / "events.txt").read_text().splitlines() if (pytester.path / "events.txt").exists() else []
    return result, events


def test_a_testbed_started_beside_the_session_is_the_one_the_module_takes(pytester: pytest.Pytester) -> None:
    result, events = run_started(pytester, "--provider", "nspawn", "--destroy=passing")
    result.assert_outcomes(passed=2)
    assert events == ["up flatdhcp-no-same-net beside the session", "guests deleted: False", "down"]


def test_one_no_module_took_is_removed_at_the_end(pytester: pytest.Pytester) -> None:
    result, events = run_started(pytester, "--provider", "nspawn", "--destroy=passing", "-k", "no_such_test")
    result.assert_outcomes(deselected=2)
    assert events == ["up flatdhcp-no-same-net beside the session", "down"]


def test_a_failed_bring_up_beside_the_session_fails_the_module(pytester: pytest.Pytester) -> None:
    (pytester.path / "events.txt").write_text("BROKEN\n")
    result, events = run_started(pytester, "--provider", "nspawn")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*RuntimeError: bring-up failed*"])
    assert events == ["BROKEN", "up flatdhcp-no-same-net beside the session"]


def test_vms_come_up_one_testbed_at_a_time(pytester: pytest.Pytester) -> None:
    result, events = run_started(pytester, "--provider", "vagrant", "--destroy=passing")
    result.assert_outcomes(passed=2)
    assert events == ["up flatdhcp-no-same-net", "guests deleted: False", "down"]
