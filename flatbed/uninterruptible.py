"""Teardown that an interrupt cannot cut: once a testbed's removal starts, it completes.

Half a teardown is the worst outcome (containers stopped, namespaces left, a state file saying
``up``), so while the block runs the first SIGINT or SIGTERM only says what happens and the
removal goes on; a second one aborts it, leaving the state file at ``removing`` for
``flatbed clean``. Only the main thread can take signals; elsewhere the block runs as is.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _say(message: str) -> None:
    # Straight to the terminal: pytest may be capturing sys.stderr, and this runs in a signal handler.
    print(f"[flatbed] {message}", file=sys.__stderr__, flush=True)


@contextmanager
def finishing_teardown(run_id: str) -> Iterator[None]:
    """Run the block (a testbed's removal) through the first SIGINT/SIGTERM; abort on the second."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if os.getpid() != pid:  # a forked helper (pyroute2) inherited the handler: it just exits
            os._exit(128 + signum)
        if received:
            _say(f"teardown of {run_id} aborted; `flatbed clean` removes what is left")
            raise KeyboardInterrupt
        received.append(signum)
        _say(f"finishing teardown of {run_id} (Ctrl-C again to abort and leave it for flatbed clean)")

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
