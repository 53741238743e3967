"""Following an event source instead of re-reading it: a process's output (``tail -F`` of a
node's file, a foreground daemon's log) as lines that arrive, each stamped with its arrival time.

>>> with follow(guest.node, guest.console_log, lasting=130) as console:
...     console.wait_for(r"(?m)^Starting dropbear", timeout=120, what="dropbear's start")

A reader thread collects the lines; waiters block on a condition until new text comes, so a
wait ends as soon as its line is written (no polling interval) and nothing is read twice. The
process runs in a process group of its own, removed whole on ``close`` (the ``tail`` that
nsenter forks inside a container included; over SSH the remote end goes with the connection).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from flatbed import timings
from flatbed.waiters import WaitTimeout

if TYPE_CHECKING:
    from flatbed.node import Node


T = TypeVar("T")


@dataclass(frozen=True)
class Line:
    text: str
    at: float  # time.monotonic() when it arrived


class Stream:
    """What a host process prints (stdout, and stderr with ``stderr=True``), as it comes: the
    text so far (a partial last line included) and its complete lines with their arrival times."""

    def __init__(self, argv: list[str], *, stderr: bool = False, name: str = ""):
        self.name = name or argv[-1]
        self.lines: list[Line] = []
        self._text = ""
        self._changed = threading.Condition()
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT if stderr else subprocess.DEVNULL, process_group=0)
        self._reader = threading.Thread(target=self._read, name=f"follow {self.name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        fd, done, partial = self._proc.stdout.fileno(), "", ""
        while chunk := os.read(fd, 65536):
            now = time.monotonic()
            # Serial consoles end lines with CRLF: read as plain newlines (a CR may end one chunk).
            *complete, partial = (partial + chunk.decode(errors="replace")).replace("\r\n", "\n").split("\n")
            done += "".join(f"{line}\n" for line in complete)
            with self._changed:
                self.lines += [Line(f"{line}\n", now) for line in complete]
                self._text = done + partial
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return self._text

    @property
    def ended(self) -> bool:
        return not self._reader.is_alive()

    def until(self, check: Callable[[str], T | None], *, timeout: float, what: str, start: int = 0) -> T:
        """Block until ``check(text from offset start)`` returns something (not None, not False),
        calling it again each time new text arrives; the timeout names ``what`` and shows the
        last lines. Exceptions from ``check`` propagate (a check that sees a final mismatch raises)."""
        deadline = time.monotonic() + timeout
        with timings.span("wait", what), self._changed:
            while True:
                value = check(self._text[start:])
                if value is not None and value is not False:
                    return value
                # Text is added under this lock: once the reader has ended, all of it was checked.
                left = deadline - time.monotonic()
                if self.ended or left <= 0:
                    tail = self._text[start:].splitlines()[-15:]
                    why = "the stream ended" if self.ended else f"timed out after {timeout:g} s"
                    raise WaitTimeout(f"{why} waiting for {what} in {self.name}; last lines:\n" + "\n".join(tail))
                self._changed.wait(left)

    def wait_for(self, pattern: str | re.Pattern[str], *, timeout: float, what: str, start: int = 0) -> re.Match[str]:
        """Block until the text from offset ``start`` on matches ``pattern`` (a multi-line regex)."""
        regex = re.compile(pattern)
        return self.until(regex.search, timeout=timeout, what=what, start=start)

    def waker(self, pattern: str | re.Pattern[str]) -> Callable[[float], None]:
        """For :func:`flatbed.waiters.wait_until`'s ``wake``: a function that blocks for at most the
        seconds it is given, returning early when a line matching ``pattern`` arrives that it has
        not seen before."""
        regex = re.compile(pattern)
        seen = len(self.lines)

        def wake(seconds: float) -> None:
            nonlocal seen
            deadline = time.monotonic() + seconds
            with self._changed:
                while True:
                    new, seen = self.lines[seen:], len(self.lines)
                    left = deadline - time.monotonic()
                    if any(regex.search(line.text) for line in new) or left <= 0:
                        return
                    if self.ended:  # nothing more will come: an ordinary sleep
                        self._changed.wait(left)
                        return
                    self._changed.wait(left)

        return wake

    def first(self, pattern: str | re.Pattern[str], since: float = 0.0) -> Line | None:
        """The first complete line that matches (of those that arrived at ``since`` or later, a
        time.monotonic()), with its arrival time; None if none yet."""
        regex = re.compile(pattern)
        with self._changed:
            return next((line for line in self.lines if line.at >= since and regex.search(line.text)), None)

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._reader.join(timeout=5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def follow(node: Node, path: str, *, from_start: bool = True, lasting: float | None = None) -> Stream:
    """``tail -F`` of ``path`` on ``node``: the whole file first (or only what comes from now on).

    ``lasting``: the tail ends by itself after that many seconds, so even a follower whose process
    was killed (no ``close``) leaves nothing running on the node for longer.
    """
    # -s 0.1: where inotify is not available (the host ran out of instances) tail polls, 10 times a second.
    tail = ["tail", "-s", "0.1", "-n", "+1" if from_start else "0", "-F", path]
    # --foreground: timeout stays in our process group, which close() removes whole.
    bounded = ["timeout", "--foreground", f"{lasting:.0f}", *tail] if lasting else tail
    return Stream(node.host_argv(bounded), name=f"{path} on {node.name}")
