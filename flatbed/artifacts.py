"""Where a session's failure artifacts live, and for how long: until a person or an age policy
removes them, never by count.

A pytest session (every xdist worker of it) writes into one *session directory*: ``--artifacts
DIR``, by default ``<artifacts root>/<session id>/``, the root being ``$FLATBED_ARTIFACTS`` or
``/var/lib/flatbed/artifacts`` (outside the state root, whose removed-testbed directories are
pruned by count). In it::

    <test>[.<run id>]/    one artifact bundle per failing test and testbed (flatbed.collect)
    session.json          the session: its testbeds (run id, topology, worker, kept or removed)
                          and its bundles (test, run id, path); written under a lock, since
                          workers share it

``flatbed clean --artifacts-older-than 7d`` removes session directories older than that, never
one whose session still runs; ``flatbed list`` shows removed testbeds that still have bundles;
``flatbed leaks --session DIR`` looks at the session's own testbeds only.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flatbed.errors import FlatbedError, UsageError
from flatbed.state import process_alive, process_identity

MANIFEST = "session.json"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def artifacts_root() -> Path:
    return Path(os.environ.get("FLATBED_ARTIFACTS", "/var/lib/flatbed/artifacts"))


def new_session_id() -> str:
    """Sortable by start time, unique among sessions started in the same second."""
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def parse_age(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``2w``, ``90s`` (or plain seconds) -> seconds; a bad value is one clear error."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise FlatbedError(f"{text!r} is not an age (examples: 90s, 30m, 12h, 7d, 2w)")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


@dataclass
class TestbedEntry:
    run_id: str
    topology: str
    worker: str = "main"                  # xdist worker id (gw0...) or "main"
    outcome: str = "up"                   # up (in use), removed, kept
    failed: list[str] = field(default_factory=list)   # tests that failed on it

    __test__ = False


@dataclass
class BundleEntry:
    test: str
    run_id: str
    path: str


@dataclass
class SessionRecord:
    session: str
    started: float
    owner: str                            # the controlling pytest process ("pid:start time")
    testbeds: list[TestbedEntry] = field(default_factory=list)
    bundles: list[BundleEntry] = field(default_factory=list)

    def testbed(self, run_id: str) -> TestbedEntry | None:
        return next((t for t in self.testbeds if t.run_id == run_id), None)

    @classmethod
    def from_dict(cls, data: dict) -> SessionRecord:
        return cls(session=data["session"], started=data["started"], owner=data.get("owner", ""),
                   testbeds=[TestbedEntry(**t) for t in data.get("testbeds", [])],
                   bundles=[BundleEntry(**b) for b in data.get("bundles", [])])


class Session:
    """One session directory; every method re-reads and rewrites ``session.json`` under a lock."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: Path | None = None, session_id: str | None = None, owner: str | None = None) -> Session:
        """The session directory at ``path`` (default: a new one under the artifacts root), made now
        unless it exists: a second process of the session (an xdist worker, an inner pytest or
        ``flatbed up`` run by a test) joins it. ``owner`` is the session's controlling process."""
        path = Path(path) if path else artifacts_root() / (session_id or new_session_id())
        session = cls(path)
        session.path.mkdir(parents=True, exist_ok=True)
        with session._locked() as record:
            if record is None:
                session._write(SessionRecord(session=session_id or path.name, started=time.time(),
                                             owner=owner or process_identity(os.getpid())))
        return session

    @classmethod
    def find(cls, where: str) -> Session:
        """A session by directory, or by id under the artifacts root."""
        for path in (Path(where), artifacts_root() / where):
            if (path / MANIFEST).is_file():
                return cls(path)
        raise UsageError(f"no session {where!r} (no {MANIFEST} in {where} or {artifacts_root() / where})")

    def load(self) -> SessionRecord:
        try:
            return SessionRecord.from_dict(json.loads((self.path / MANIFEST).read_text()))
        except FileNotFoundError:
            raise FlatbedError(f"{self.path}: no {MANIFEST}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise FlatbedError(f"{self.path / MANIFEST}: unreadable: {e}") from None

    def bundle_dir(self, name: str) -> Path:
        return self.path / name

    def add_testbed(self, run_id: str, topology: str, worker: str = "main") -> None:
        with self._locked() as record:
            if record.testbed(run_id) is None:
                record.testbeds.append(TestbedEntry(run_id, topology, worker))
            self._write(record)

    def set_outcome(self, run_id: str, outcome: str) -> None:
        with self._locked() as record:
            entry = record.testbed(run_id)
            if entry is not None:
                entry.outcome = outcome
                self._write(record)

    def add_bundle(self, test: str, run_id: str, path: Path) -> None:
        with self._locked() as record:
            record.bundles.append(BundleEntry(test, run_id, str(path)))
            entry = record.testbed(run_id)
            if entry is not None and test not in entry.failed:
                entry.failed.append(test)
            self._write(record)

    def in_use(self) -> bool:
        try:
            return process_alive(self.load().owner)
        except FlatbedError:
            return False

    @contextmanager
    def _locked(self) -> Iterator[SessionRecord | None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self.load() if (self.path / MANIFEST).exists() else None
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, record: SessionRecord) -> None:
        tmp = self.path / f".{MANIFEST}.{os.getpid()}"
        tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
        tmp.replace(self.path / MANIFEST)


def sessions(root: Path | None = None) -> list[Session]:
    """Every session directory under the artifacts root, oldest first."""
    root = root or artifacts_root()
    if not root.is_dir():
        return []
    found = [Session(p) for p in root.iterdir() if (p / MANIFEST).is_file()]
    return sorted(found, key=lambda s: (s.path / MANIFEST).stat().st_mtime)


def prune(older_than: float, *, dry_run: bool = False, root: Path | None = None,
          now: float | None = None) -> tuple[list[Path], list[str]]:
    """Remove session directories last written more than ``older_than`` seconds ago; a session whose
    pytest still runs is refused. Returns (removed, refused with why)."""
    now = time.time() if now is None else now
    removed, refused = [], []
    for session in sessions(root):
        age = now - (session.path / MANIFEST).stat().st_mtime
        if age <= older_than:
            continue
        if session.in_use():
            refused.append(f"{session.path}: its session still runs ({session.load().owner.split(':')[0]})")
            continue
        if not dry_run:
            shutil.rmtree(session.path)
        removed.append(session.path)
    return removed, refused


def session_leaks(record: SessionRecord, tagged: dict[str, list[str]],
                  recorded: dict[str, str]) -> tuple[list[str], list[str]]:
    """``flatbed leaks --session``: (leaks, notes) for the session's own testbeds only.

    ``tagged`` is every run-tagged resource on the host by run id, ``recorded`` the status of each
    state file in the state root. A testbed the session kept (a failing night's, for the morning)
    is a note, not a leak; any other testbed of the session must have left nothing behind.
    """
    leaks, notes = [], []
    for bed in record.testbeds:
        left = list(tagged.get(bed.run_id, []))
        if bed.run_id in recorded:
            left.append(f"state file of {bed.run_id} ({recorded[bed.run_id]})")
        if bed.outcome == "kept":
            why = f", {len(bed.failed)} failed" if bed.failed else ""
            status = recorded.get(bed.run_id, "no state file")
            notes.append(f"testbed {bed.run_id} ({bed.topology}) kept{why}: {status}")
            continue
        never = " (its run never finished)" if bed.outcome == "up" else ""
        leaks += [f"{item}{never}" for item in left]
    return leaks, notes
