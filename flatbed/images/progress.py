"""Progress reporting for image builds.

Builds take minutes (debootstrap) so every step reports one line; callers (CLI, fixtures) pass
their own ``progress`` callable to redirect or silence these lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

Progress = Callable[[str], None]


def default_progress(line: str) -> None:
    """Print one progress line to stderr, flushed so it shows up while a long step runs."""
    print(f"[images] {line}", file=sys.stderr, flush=True)


class Stopwatch:
    """Seconds since construction, for the ``... in N.N s`` suffix of the last progress line."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the stopwatch was created."""
        return time.monotonic() - self._start
