"""flatbed/checks/runs.py: an inner pytest run judged by its JUnit XML against its declared skips."""

from __future__ import annotations

from pathlib import Path

import pytest

from flatbed.checks.runs import CaseOutcome, junit_outcomes, outcome_problems

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="0" skipped="1" tests="3">
<testcase classname="e2e.test_21_controller_before_boot" name="test_iptables_filter" time="0.3"/>
<testcase classname="e2e.test_23_boot" name="test_console_in_the_documents_words" time="0.1">
  <skipped type="pytest.skip" message="cirros-disk boots cirros generation 0.5: the document's console wording is
   cirros 0.3.0's">e2e/test_23_boot.py:80: cirros-disk boots ...</skipped></testcase>
<testcase classname="e2e.test_23_boot" name="test_guest_leases_first_flat_address" time="3.1"/>
</testsuite></testsuites>
"""


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "inner.xml"
    path.write_text(REPORT)
    return path


def test_cases_are_read_with_their_outcomes(report: Path) -> None:
    cases = junit_outcomes(report)
    assert [(c.name, c.outcome) for c in cases] == [("test_iptables_filter", "passed"),
                                                    ("test_console_in_the_documents_words", "skipped"),
                                                    ("test_guest_leases_first_flat_address", "passed")]
    assert "generation 0.5" in cases[1].message


def test_a_declared_skip_passes(report: Path) -> None:
    declared = {"test_console_in_the_documents_words": "the document's console wording"}
    assert outcome_problems(junit_outcomes(report), declared) == []


def test_an_undeclared_skip_fails_though_the_run_passed(report: Path) -> None:
    """pytest's summary would read "2 passed, 1 skipped" and exit 0: the skip still fails the judge."""
    [problem] = outcome_problems(junit_outcomes(report), {})
    assert problem.startswith("test_console_in_the_documents_words: skipped without being declared")


def test_a_skip_for_another_reason_fails(report: Path) -> None:
    [problem] = outcome_problems(junit_outcomes(report), {"test_console_in_the_documents_words": "nova-api"})
    assert "skipped for another reason than declared" in problem


@pytest.mark.parametrize(("case", "says"), [
    (CaseOutcome("test_x", "failed", "assert 1 == 2"), "test_x: failed: assert 1 == 2"),
    (CaseOutcome("test_x", "error", "fixture 'bed' not found"), "test_x: error: fixture 'bed' not found"),
])
def test_a_failure_or_error_fails(case: CaseOutcome, says: str) -> None:
    assert outcome_problems([case], {}) == [says]


def test_a_declared_skip_that_ran_is_a_stale_declaration() -> None:
    [problem] = outcome_problems([CaseOutcome("test_x", "passed")], {"test_x": "needs two computes"})
    assert "declared to skip" in problem


def test_a_run_without_tests_fails() -> None:
    assert outcome_problems([], {}) == ["the run has no test case"]
