"""pytest --destroy has Test Kitchen's semantics; --reuse keeps by default (no nodes)."""

from __future__ import annotations

import pytest

from flatbed_fixtures.plugin import destroy_policy, should_destroy


@pytest.mark.parametrize(("policy", "failed", "interrupted", "destroy"), [
    ("always", 0, False, True), ("always", 3, False, True), ("always", 0, True, True),
    ("passing", 0, False, True), ("passing", 1, False, False), ("passing", 0, True, False),
    ("never", 0, False, False), ("never", 2, False, False),
])
def test_test_kitchen_semantics(policy, failed, interrupted, destroy):
    assert should_destroy(policy, failed, interrupted) is destroy


def test_defaults():
    assert destroy_policy(None, None) == "passing"          # interactive default
    assert destroy_policy(None, "auto") == "never"          # a reused testbed serves many runs
    assert destroy_policy("always", "fb000001") == "always"  # CI / explicit choices win
    assert destroy_policy("passing", "auto") == "passing"
