"""tools/soak.py's plan and table (no nodes): every signal meets every phase; leaks are counted."""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "tools" / "soak.py"
spec = importlib.util.spec_from_file_location("soak", SOAK)
soak = importlib.util.module_from_spec(spec)
sys.modules["soak"] = soak   # dataclasses look their module up
spec.loader.exec_module(soak)


def test_plan_takes_every_signal_in_every_phase_in_turn():
    planned = soak.plan(9, seed=1)
    assert {(sig, phase) for sig, phase, _ in planned} == {(s, p) for s in soak.SIGNALS for p in soak.PHASES}
    assert all(0 <= fraction < 1 for _, _, fraction in planned)
    assert soak.plan(20, seed=7) == soak.plan(20, seed=7)                  # a seed repeats a soak
    assert [s for s, _, _ in soak.plan(3, seed=1)] == [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]


def test_table_and_summary_count_leaks():
    rows = [soak.Row(1, "cycle", "fb00000a", outcome="up, down", seconds=9.5),
            soak.Row(2, "interrupt", "fb00000b", "SIGKILL", "test", "3.20", "pytest exited -9", 40.0,
                     "removed fb00000b", ["namespace fb00000b-sw", "cgroup x", "mount y", "process 1"])]
    table = soak.render(rows).splitlines()
    assert table[0].startswith("| # | what | run | signal | phase |") and len(table) == 4
    assert table[2].endswith("| 9.5 | - | 0 |")
    assert "| 4: namespace fb00000b-sw; cgroup x; mount y |" in table[3]
    assert soak.summary(rows) == "2 runs, 1 with leaks, 4 leaked resources"
