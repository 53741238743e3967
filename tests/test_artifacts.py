"""Session artifact directories (#17): bundles recorded by concurrent workers, removed by age only,
never while their session runs."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from flatbed import artifacts
from flatbed.errors import FlatbedError
from flatbed.state import process_identity


@pytest.fixture(autouse=True)
def _root(tmp_path, monkeypatch):
    monkeypatch.setenv("FLATBED_ARTIFACTS", str(tmp_path / "artifacts"))


@pytest.mark.parametrize(("text", "seconds"), [("7d", 7 * 86400), ("12h", 43200), ("30m", 1800), ("90s", 90),
                                                ("2w", 14 * 86400), ("45", 45), ("1.5h", 5400)])
def test_ages(text, seconds):
    assert artifacts.parse_age(text) == seconds


@pytest.mark.parametrize("text", ["", "7 days", "d", "-1d", "1y"])
def test_bad_ages_are_one_clear_error(text):
    with pytest.raises(FlatbedError, match="is not an age"):
        artifacts.parse_age(text)


def test_a_session_records_testbeds_outcomes_and_bundles():
    session = artifacts.Session.create(session_id="20261129-020000-abcd")
    assert session.path == artifacts.artifacts_root() / "20261129-020000-abcd"
    session.add_testbed("fb000001", "default", worker="gw0")
    session.add_bundle("e2e/test_23_boot.py::test_ping", "fb000001", session.bundle_dir("x"))
    session.set_outcome("fb000001", "kept")
    record = artifacts.Session.find("20261129-020000-abcd").load()
    assert record.owner == process_identity(os.getpid())
    bed = record.testbed("fb000001")
    assert (bed.worker, bed.outcome, bed.failed) == ("gw0", "kept", ["e2e/test_23_boot.py::test_ping"])
    assert [b.path for b in record.bundles] == [str(session.path / "x")]


def _add_bundles(path: str, worker: int) -> None:
    session = artifacts.Session(Path(path))
    for n in range(20):
        session.add_bundle(f"test_{worker}_{n}", f"fb00000{worker}", Path(path) / f"b{worker}-{n}")


def test_concurrent_workers_lose_no_bundle():
    session = artifacts.Session.create()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_bundles, args=(str(session.path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert sorted(b.test for b in session.load().bundles) == sorted(f"test_{w}_{n}" for w in range(4)
                                                                    for n in range(20))


def _age(session: artifacts.Session, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(session.path / artifacts.MANIFEST, (then, then))


def test_prune_by_age_only_and_never_a_running_session():
    old, new, running = (artifacts.Session.create(session_id=f"s{i}") for i in range(3))
    for s in (old, running):
        record = json.loads((s.path / artifacts.MANIFEST).read_text())
        record["owner"] = "4194305:1" if s is old else process_identity(os.getpid())  # above pid_max: never alive
        (s.path / artifacts.MANIFEST).write_text(json.dumps(record))
        _age(s, 8 * 86400)
    _age(new, 86400)
    removed, refused = artifacts.prune(artifacts.parse_age("7d"))
    assert removed == [old.path] and not old.path.exists()
    assert new.path.exists() and running.path.exists()
    assert len(refused) == 1 and "still runs" in refused[0] and str(running.path) in refused[0]


def test_dry_run_removes_nothing():
    s = artifacts.Session.create()
    json_path = s.path / artifacts.MANIFEST
    record = json.loads(json_path.read_text())
    record["owner"] = "4194305:1"
    json_path.write_text(json.dumps(record))
    _age(s, 3600)
    assert artifacts.prune(60, dry_run=True) == ([s.path], []) and s.path.exists()


def test_unknown_session_is_one_clear_error(tmp_path):
    with pytest.raises(FlatbedError, match="no session 'nope'"):
        artifacts.Session.find("nope")


def test_session_leaks_count_only_the_sessions_own_testbeds():
    record = artifacts.SessionRecord("s", 0.0, "", testbeds=[
        artifacts.TestbedEntry("fb000001", "default", outcome="removed"),
        artifacts.TestbedEntry("fb000002", "default", outcome="kept", failed=["t1"]),
        artifacts.TestbedEntry("fb000003", "no-same-net", outcome="up"),
        artifacts.TestbedEntry("fb000004", "alt", outcome="removed")])
    tagged = {"fb000001": ["namespace fb000001-sw"], "fb000002": ["namespace fb000002-sw"],
              "fb000003": ["cgroup flatbed/fb000003-controller-1"], "fb0000ff": ["namespace fb0000ff-sw"]}
    leaks, notes = artifacts.session_leaks(record, tagged, {"fb000002": "up", "fb000003": "creating"})
    assert leaks == ["namespace fb000001-sw", "cgroup flatbed/fb000003-controller-1 (its run never finished)",
                     "state file of fb000003 (creating) (its run never finished)"]
    assert notes == ["testbed fb000002 (default) kept, 1 failed: up"]
    assert artifacts.session_leaks(record, {}, {"fb000002": "up"})[0] == []
