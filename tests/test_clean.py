"""flatbed clean's decisions: what is a leftover, what is kept, what belongs to someone else (no nodes)."""

from __future__ import annotations

import os

import pytest

from flatbed import clean, state
from flatbed.clean import Decision, Report, judge_orphan, judge_testbed, recorded_elsewhere, tagged_resources
from flatbed.ownership import User


def st(status: str, owner: str = "", kept: bool = False) -> state.TestbedState:
    return state.TestbedState(run_id="fb0000aa", provider="nspawn", topology_path="t.toml", topology_digest="d",
                              status=status, owner=owner, kept=kept)


USER = User(4242, "pytest", 0.0)


@pytest.mark.parametrize(("status", "running", "user", "force", "action"), [
    ("up", True, None, False, "remove"),        # up, not kept, its run gone: killed mid-test
    ("up", False, None, False, "remove"),       # its containers died (host reboot, kill -9)
    ("up", False, USER, False, "keep"),         # a run's compute rebooting under a fault test
    ("creating", True, USER, False, "keep"),    # a bring-up in progress
    ("creating", True, None, False, "remove"),  # a bring-up whose process was killed
    ("creating", True, USER, True, "remove"),   # --force
    ("removing", False, USER, False, "keep"),   # a teardown in progress
    ("removing", False, None, False, "remove"),  # a teardown aborted (Ctrl-C twice, kill -9)
    ("failed", False, USER, False, "keep"),     # its run is removing it
    ("failed", False, None, False, "remove"),
])
def test_judge_testbed(status, running, user, force, action):
    decision = judge_testbed(st(status, "4242:1"), running, user, force)
    assert decision.action == action and decision.run_id == "fb0000aa"
    assert decision.reason and "\n" not in decision.reason
    if user and not force:
        assert decision.reason.startswith("in use by pytest (pid 4242) since ") and "--force" in decision.reason
    if status == "removing" and not user:
        assert decision.reason == "teardown interrupted (its process is gone)"


def test_a_kept_testbed_stays_even_when_the_run_that_reused_it_was_killed():
    assert judge_testbed(st("up", "", kept=True), True, None).action == "keep"           # kept, nobody uses it
    assert judge_testbed(st("up", "4242:1", kept=True), True, None).action == "keep"     # a --reuse run killed
    killed = judge_testbed(st("up", "4242:1"), True, None)
    assert killed.action == "remove" and killed.reason == "its run (pid 4242) is gone and neither kept nor removed it"


def test_judge_orphan(tmp_path):
    assert judge_orphan("fb0000aa", None).action == "remove"
    assert judge_orphan("fb0000aa", tmp_path).action == "skip"


def test_owner_identity_survives_pid_reuse():
    me = state.process_identity(os.getpid())
    assert state.process_alive(me)
    pid, start = me.split(":")
    assert not state.process_alive(f"{pid}:{int(start) + 1}")   # same pid, another process
    assert not state.process_alive("")                             # state files from before owners


def test_run_recorded_in_a_sibling_state_root_is_not_ours(tmp_path, monkeypatch):
    pytest.importorskip("pyroute2", reason="reads the host's network namespaces (pyroute2)")
    ours, theirs = tmp_path / "testbeds-a", tmp_path / "testbeds-b"
    monkeypatch.setenv("FLATBED_STATE", str(ours))
    (theirs / "fb0000bb").mkdir(parents=True)
    (theirs / "fb0000bb" / "state.json").write_text("{}")
    ours.mkdir()
    assert recorded_elsewhere("fb0000bb") == theirs
    assert recorded_elsewhere("fb0000cc") is None


def test_overlays_without_state_file_are_leftovers(tmp_path, monkeypatch):
    pytest.importorskip("pyroute2", reason="reads the host's network namespaces (pyroute2)")
    monkeypatch.setenv("FLATBED_STATE", str(tmp_path))
    (tmp_path / "fb0000dd" / "nodes" / "controller-1").mkdir(parents=True)   # dead run's overlay
    (tmp_path / "fb0000ee" / "nodes").mkdir(parents=True)                    # emptied: nothing left
    (tmp_path / "fb0000ff" / "nodes" / "compute-1").mkdir(parents=True)      # live: has a state file
    (tmp_path / "fb0000ff" / "state.json").write_text("{}")
    found = tagged_resources()
    assert found.get("fb0000dd") == [f"overlay {tmp_path / 'fb0000dd' / 'nodes'}"]
    assert "fb0000ee" not in found and "fb0000ff" not in found
    assert clean.remove_tagged("fb0000dd") == [f"overlay {tmp_path / 'fb0000dd' / 'nodes'}"]
    assert not (tmp_path / "fb0000dd" / "nodes").exists()


def test_report_lines():
    report = Report(removed=[(Decision("fb0000aa", "remove", "bring-up interrupted"), ["namespace fb0000aa-sw"])],
                    kept=[Decision("fb0000bb", "keep", "up"), Decision("fb0000cc", "skip", "elsewhere")])
    assert report.lines() == ["removed fb0000aa (bring-up interrupted):", "  namespace fb0000aa-sw",
                              "kept fb0000bb: up", "skipped fb0000cc: elsewhere"]
    assert report.lines(dry_run=True)[0].startswith("would remove fb0000aa")
    assert Report().lines() == ["nothing to clean"]


def test_judge_unreadable():
    newer = state.StateUnreadable("fb0000aa", "from a newer flatbed", newer=True)
    assert clean.judge_unreadable(newer).action == "skip"   # its own flatbed may still be using it
    corrupt = state.StateUnreadable("fb0000bb", "corrupt state file")
    expected = Decision("fb0000bb", "remove", "unreadable state file (corrupt state file)")
    assert clean.judge_unreadable(corrupt) == expected
