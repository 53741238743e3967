"""Waiters in Tempest's style: poll a check until it holds, with a named timeout.

A timeout says what was waited for, for how long, and the last thing the check saw, so a
failure reads as a sentence rather than a bare ``TimeoutError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from flatbed import timings
from flatbed.errors import FlatbedError

T = TypeVar("T")


class WaitTimeout(FlatbedError):
    """A waiter gave up; the message names what it waited for."""


def wait_until(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.2,
               describe: Callable[[], str] | None = None, wake: Callable[[float], None] | None = None) -> T:
    """Call ``check`` until it returns something truthy and return that value.

    ``describe`` (optional) is called once on timeout to add the current state to the message.
    ``wake`` (optional) replaces the sleep between checks: it blocks for at most ``interval``
    seconds and returns early when something happened that may have changed the answer (a log
    line, :meth:`flatbed.follow.Stream.waker`), so a slow check is run rarely and still answers
    at once. Exceptions from ``check`` propagate: a check that can tell the wait is hopeless should raise.
    """
    with timings.span("wait", what):
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() >= deadline:
                detail = f"; {describe()}" if describe else ""
                raise WaitTimeout(f"timed out after {time.monotonic() - started:.0f} s waiting for {what}{detail}")
            (wake or time.sleep)(min(interval, max(deadline - time.monotonic(), 0.0)))
