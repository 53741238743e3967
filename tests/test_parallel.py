"""pytest-xdist support (fixtures/parallel.py): --reuse per worker, the controller gathering the
workers' summaries and failing on a worker's as-found verdict; and the document's groups (no nodes)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from flatbed_fixtures import parallel


@pytest.mark.parametrize(("reuse", "worker", "workers", "expected"), [
    (None, "gw0", 2, None),
    ("auto", None, 0, "auto"),
    ("fb000001", None, 0, "fb000001"),
    ("fb000001,fb000002", "gw0", 2, "fb000001"),
    ("fb000001,fb000002", "gw1", 2, "fb000002"),
    ("fb000001,fb000002", None, 2, None),            # the controller only checks
])
def test_reuse_per_worker(reuse, worker, workers, expected):
    assert parallel.reuse_for(reuse, worker, workers) == expected


@pytest.mark.parametrize(("reuse", "workers", "message"), [
    ("auto", 2, "--reuse with 2 workers needs one kept testbed per worker: --reuse=ID1,...,ID2 (none given)"),
    ("fb000001", 3, "--reuse with 3 workers needs one kept testbed per worker: --reuse=ID1,...,ID3 (1 given)"),
    ("fb000001,fb000002", 0, "--reuse=fb000001,fb000002 names 2 testbeds: one per worker, with -n 2"),
])
def test_reuse_that_does_not_fit_the_workers_is_one_line(reuse, workers, message):
    with pytest.raises(pytest.UsageError) as error:
        parallel.reuse_for(reuse, None, workers)
    assert str(error.value) == message


def node(gateway: str, summary: list[str], failed: list[str]) -> SimpleNamespace:
    return SimpleNamespace(gateway=SimpleNamespace(id=gateway),
                           workeroutput={parallel.KEY: {"summary": summary, "verdict_failed": failed}})


def test_controller_prints_every_workers_lines_and_fails_on_a_failed_verdict():
    hooks = parallel.ControllerHooks(config=None)
    hooks.pytest_testnodedown(node("gw0", ["testbed fb000001 kept (--destroy=passing, 1 failed); reach it with:"],
                                   []), None)
    hooks.pytest_testnodedown(node("gw1", ["testbed fb000002 was not left as found: guests cirros"],
                                   ["testbed fb000002 was not left as found: guests cirros"]), None)
    hooks.pytest_testnodedown(SimpleNamespace(gateway=SimpleNamespace(id="gw2"), workeroutput={}), "crashed")
    assert hooks.lines == ["[gw0] testbed fb000001 kept (--destroy=passing, 1 failed); reach it with:",
                           "[gw1] testbed fb000002 was not left as found: guests cirros"]
    session = SimpleNamespace(exitstatus=pytest.ExitCode.OK)
    hooks.pytest_sessionfinish(session)
    assert session.exitstatus == pytest.ExitCode.TESTS_FAILED


def test_a_worker_hands_its_summary_to_the_controller():
    config = SimpleNamespace(workeroutput={})
    parallel.send_to_controller(config, ["a"], ["b"])
    assert config.workeroutput[parallel.KEY] == {"summary": ["a"], "verdict_failed": ["b"]}
    parallel.send_to_controller(SimpleNamespace(), ["a"], [])   # not a worker: nothing to send, no error


def test_document_modules_are_one_group_handed_out_first():
    """Collection order in a worker puts the ordered group first; outside xdist it is file order;
    every other module is a work unit of its own, and a module is never split."""
    spec = importlib.util.spec_from_file_location("e2e_conftest", Path(__file__).parents[1] / "e2e" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    items = [SimpleNamespace(nodeid=f"e2e/{name}.py::test_x")
             for name in ("test_01_vagrant_vms", "test_21_controller_before_boot", "test_26_guest_view",
                          "test_23_boot", "test_40_no_same_net")]
    conftest.pytest_collection_modifyitems(SimpleNamespace(workerinput={"workerid": "gw0"}), items)
    assert [i.nodeid.split("::")[0] for i in items] == [
        "e2e/test_21_controller_before_boot.py", "e2e/test_23_boot.py", "e2e/test_01_vagrant_vms.py",
        "e2e/test_26_guest_view.py", "e2e/test_40_no_same_net.py"]
    scope = conftest.ModuleGroupScheduling._split_scope
    assert scope(None, "e2e/test_21_controller_before_boot.py::test_ip_a") == \
        scope(None, "e2e/test_25_compute_after_boot.py::test_brctl_show") == "document"
    assert scope(None, "e2e/test_33_ping_matrix.py::test_controller_ping_path") == "guest-pair"
    # A module of no group is one unit: xdist's loadgroup would hand each of its tests out alone,
    # spreading its ordered tests (stop nova-api, boot, start it) over the workers.
    assert scope(None, "e2e/test_41_metadata_down.py::test_nova_api_stopped_refuses_metadata") == \
        scope(None, "e2e/test_41_metadata_down.py::test_a_new_guest_gets_metadata_at_the_first_try") == \
        "e2e/test_41_metadata_down.py"
    # Another --dist (each, for remote gateways) is xdist's own.
    assert conftest.pytest_xdist_make_scheduler(SimpleNamespace(getvalue={"dist": "each"}.get), None) is None


def test_the_controller_finishes_the_teardown_of_testbeds_its_stopped_workers_left():
    """xdist kills workers 10 s after an interrupted controller asked them to stop: what their
    testbeds become is decided as their own teardown would have (no nodes: decisions only)."""
    from flatbed import state

    dead_worker, live_worker, stranger = "999999999:1", state.process_identity(os.getpid()), "999999998:1"

    def bed(run: str, owner: str, status: str = "up") -> state.TestbedState:
        return state.TestbedState(run_id=run, provider="nspawn", topology_path="t.toml", topology_digest="d",
                                  status=status, owner=owner)

    reused = bed("fb0000a6", dead_worker)
    reused.kept = True  # a kept testbed the worker took with --reuse=ID1,ID2
    beds = [bed("fb0000a1", dead_worker), bed("fb0000a2", dead_worker, "removing"),
            bed("fb0000a3", dead_worker, "creating"), bed("fb0000a4", live_worker), bed("fb0000a5", stranger),
            reused]
    workers = {dead_worker, live_worker}
    assert [(st.run_id, action) for st, action in parallel.left_by_workers(beds, workers, destroy=True)] == [
        ("fb0000a1", "remove"), ("fb0000a2", "remove"), ("fb0000a3", "remove"), ("fb0000a6", "keep")]
    # --destroy=passing/never keeps an interrupted run's testbed that is up; a half-made one goes.
    assert [(st.run_id, action) for st, action in parallel.left_by_workers(beds, workers, destroy=False)] == [
        ("fb0000a1", "keep"), ("fb0000a2", "remove"), ("fb0000a3", "remove"), ("fb0000a6", "keep")]
