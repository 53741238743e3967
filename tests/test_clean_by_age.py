"""`flatbed clean --kept-older-than AGE`: kept testbeds of earlier nights go, one in use stays
(pure decisions; no nodes)."""

from __future__ import annotations

import pytest

from flatbed import clean, ownership, state

DAY = 86400.0


def bed(created: float, status: str = "up") -> state.TestbedState:
    return state.TestbedState(run_id="fb0000bb", provider="nspawn", topology_path="t.toml", topology_digest="d",
                              status=status, created=created, kept=True)


USER = ownership.User(pid=4194305, command="pytest", since=0.0)


@pytest.mark.parametrize(("age", "running", "in_use", "limit", "action", "reason"), [
    (2 * DAY, True, False, DAY / 2, "remove", "kept for 2 d, older than 12 h"),
    (2 * DAY, True, True, DAY / 2, "keep", f"in use by {USER}; {ownership.FORCE_REMOVE}"),
    (3600.0, True, False, DAY / 2, "keep", "up with every node running; `flatbed down` removes it"),
    (2 * DAY, True, False, None, "keep", "up with every node running; `flatbed down` removes it"),
    (3600.0, False, False, DAY / 2, "remove", "recorded up but its nodes are not running"),
])
def test_kept_testbeds_by_age(age, running, in_use, limit, action, reason):
    now = 1_000_000_000.0
    decision = clean.judge_testbed(bed(now - age), running, USER if in_use else None, kept_older_than=limit, now=now)
    assert (decision.action, decision.reason) == (action, reason)


def test_a_bring_up_in_progress_is_never_old_enough():
    decision = clean.judge_testbed(bed(0.0, status="creating"), False, USER, kept_older_than=1.0, now=DAY)
    assert decision.action == "keep"


def test_report_lists_artifact_directories():
    report = clean.Report(artifacts_removed=["/a/s1"], artifacts_refused=["/a/s2: its session still runs (4)"])
    assert report.lines(dry_run=True) == ["would remove artifacts /a/s1",
                                          "kept artifacts /a/s2: its session still runs (4)"]
