"""Where a run's time goes: spans of a few kinds (bring-up, guest boot, wait, teardown, ...).

The library marks its slow steps with :func:`span`; the pytest plugin (fixtures/timings.py)
prints the per-kind totals after the session and writes the spans to ``--timings PATH``, and
``tools/benchmark.py`` reads them. Recording is an append to a list: always on, never a cost.

A span opened while another is open in the same thread (the wait for ACTIVE inside a boot) is
*nested*: it is kept in the record but counted only under its outermost span, so the kinds add
up. Spans of different threads overlap (guests booted at once): a kind's ``wall`` is the union
of its intervals, its ``sum`` what they would take one after another.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

KINDS = ("bring-up", "guest boot", "wait", "guest delete", "teardown", "inner run")


@dataclass(frozen=True)
class Span:
    kind: str
    label: str
    start: float      # time.time() at the start (comparable across processes)
    seconds: float
    nested: bool      # inside another span of the same thread
    context: str      # the test (pytest node id) it ran in, or ""

    @property
    def end(self) -> float:
        return self.start + self.seconds


class Recorder:
    """The spans of this process, thread-safe; ``context`` names the current test."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.context = ""
        self._lock = threading.Lock()
        self._depth = threading.local()

    @contextmanager
    def span(self, kind: str, label: str) -> Iterator[None]:
        depth = getattr(self._depth, "value", 0)
        self._depth.value = depth + 1
        wall, started = time.time(), time.monotonic()
        try:
            yield
        finally:
            self._depth.value = depth
            record = Span(kind, label, wall, time.monotonic() - started, depth > 0, self.context)
            with self._lock:
                self.spans.append(record)

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()


RECORDER = Recorder()


def span(kind: str, label: str):
    """``with span("guest boot", "cirros"):`` records how long the block took (see the module doc)."""
    return RECORDER.span(kind, label)


def timed(kind: str, label: Callable[..., str]):
    """Decorator: every call is a span of ``kind``, labelled ``label(*args, **kwargs)``."""
    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with span(kind, label(*args, **kwargs)):
                return function(*args, **kwargs)
        return wrapper
    return decorate


def union(intervals: Iterable[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the (start, end) intervals."""
    total, reach = 0.0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


@dataclass(frozen=True)
class KindTotal:
    kind: str
    count: int
    sum: float    # one after another
    wall: float   # the union: what the run really spent in this kind


def totals(spans: list[Span]) -> list[KindTotal]:
    """Per kind (KINDS' order, then any other), over the outermost spans only."""
    outer = [s for s in spans if not s.nested]
    kinds = [k for k in KINDS if any(s.kind == k for s in outer)]
    kinds += sorted({s.kind for s in outer} - set(KINDS))
    result = []
    for kind in kinds:
        mine = [s for s in outer if s.kind == kind]
        result.append(KindTotal(kind, len(mine), sum(s.seconds for s in mine), union((s.start, s.end) for s in mine)))
    return result


def report(spans: list[Span], wall: float, top: int = 5) -> list[str]:
    """The per-phase breakdown as lines: each kind's wall, sum and count, the time in none of
    them (test code, listings, pings), and the longest outermost spans."""
    lines = [f"{'phase':14} {'wall s':>8} {'sum s':>8} {'count':>6}"]
    for t in totals(spans):
        lines.append(f"{t.kind:14} {t.wall:8.1f} {t.sum:8.1f} {t.count:6d}")
    outer = [s for s in spans if not s.nested]
    covered = union((s.start, s.end) for s in outer)
    lines.append(f"{'in none':14} {max(wall - covered, 0.0):8.1f} {'':>8} {'':>6}   (of {wall:.1f} s: test code, "
                 f"listings, pings, inner work not marked)")
    longest = sorted(outer, key=lambda s: s.seconds, reverse=True)[:top]
    if longest:
        lines.append("longest:")
        lines += [f"  {s.seconds:7.1f} s  {s.kind}: {s.label}" + (f"  [{s.context}]" if s.context else "")
                  for s in longest]
    return lines


def write(path: Path, spans: list[Span], wall: float) -> None:
    """The record as JSON: the session's wall time, every span, and the per-kind totals."""
    path.write_text(json.dumps({"wall": wall, "totals": [asdict(t) for t in totals(spans)],
                                "spans": [asdict(s) for s in spans]}, indent=1) + "\n")


def read(path: Path) -> tuple[float, list[Span]]:
    data = json.loads(path.read_text())
    return data["wall"], [Span(**s) for s in data["spans"]]
