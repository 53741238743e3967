"""The timing record: nested spans count once, concurrent ones as their union, kinds in order."""

from __future__ import annotations

import threading
import time

import pytest

from flatbed import timings
from flatbed.timings import Recorder, Span


def spans(*rows: tuple[str, float, float, bool]) -> list[Span]:
    return [Span(kind, f"{kind}@{start}", start, seconds, nested, "") for kind, start, seconds, nested in rows]


def test_union_merges_overlaps_and_keeps_gaps() -> None:
    assert timings.union([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == pytest.approx(4.0)
    assert timings.union([]) == 0


def test_totals_count_outermost_spans_only_and_concurrent_ones_as_their_union() -> None:
    record = spans(("guest boot", 0, 4, False), ("wait", 1, 2, True),      # the wait inside the boot
                   ("guest boot", 2, 4, False),                            # a second boot, overlapping
                   ("wait", 10, 1, False), ("bring-up", -7, 6, False))
    by_kind = {t.kind: t for t in timings.totals(record)}
    assert [t.kind for t in timings.totals(record)] == ["bring-up", "guest boot", "wait"]
    assert (by_kind["guest boot"].count, by_kind["guest boot"].sum, by_kind["guest boot"].wall) == (2, 8, 6)
    assert (by_kind["wait"].count, by_kind["wait"].wall) == (1, 1)


def test_report_names_the_time_in_no_phase() -> None:
    lines = timings.report(spans(("bring-up", 0, 6, False), ("teardown", 20, 2, False)), wall=30)
    assert any(line.split()[:2] == ["in", "none"] and line.split()[2] == "22.0" for line in lines), lines


def test_recorder_marks_nesting_per_thread() -> None:
    rec = Recorder()
    inner_done = threading.Event()

    def other_thread() -> None:
        with rec.span("wait", "elsewhere"):
            inner_done.set()

    with rec.span("guest boot", "outer"):
        with rec.span("wait", "inner"):
            pass
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    nested = {s.label: s.nested for s in rec.spans}
    assert nested == {"inner": True, "elsewhere": False, "outer": False}


def test_timed_records_the_label_and_passes_the_result_and_exceptions_through(monkeypatch) -> None:
    rec = Recorder()
    monkeypatch.setattr(timings, "RECORDER", rec)

    @timings.timed("teardown", lambda run_id, fail=False: run_id)
    def down(run_id: str, fail: bool = False) -> str:
        time.sleep(0.01)
        if fail:
            raise RuntimeError("stuck")
        return "removed"

    assert down("fb000001") == "removed"
    with pytest.raises(RuntimeError):
        down("fb000002", fail=True)
    assert [(s.kind, s.label) for s in rec.spans] == [("teardown", "fb000001"), ("teardown", "fb000002")]
    assert rec.spans[0].seconds >= 0.01


def test_write_and_read_round_trip(tmp_path) -> None:
    record = spans(("bring-up", 0, 6, False), ("wait", 1, 2, True))
    timings.write(tmp_path / "t.json", record, 9.5)
    assert timings.read(tmp_path / "t.json") == (9.5, record)
