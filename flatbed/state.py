"""The state file of one testbed, so that separate processes (the CLI, later pytest runs) find it.

Each testbed has a directory ``<state root>/<run id>/`` with ``state.json`` and everything the
run wrote on the host (overlay upper dirs, logs). Resources are recorded *before* they are
created, so a run killed half-way can still be cleaned up from its state file.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flatbed.errors import FlatbedError

RUN_PREFIX = "fb"
KEEP_ARTIFACTS = 5  # directories of removed testbeds (their logs) kept, like pytest's basetemp keep=3


def state_root() -> Path:
    return Path(os.environ.get("FLATBED_STATE", "/var/lib/flatbed/testbeds"))


def new_run_id() -> str:
    """Short (fits interface and namespace names), unique, and recognisably ours."""
    return RUN_PREFIX + secrets.token_hex(3)


def process_identity(pid: int) -> str:
    """``pid:start time`` (clock ticks since boot): unique even when pids are reused."""
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "0"
    return f"{pid}:{start}"


def process_alive(identity: str) -> bool:
    """Whether the process named by :func:`process_identity` still runs (and is not a zombie)."""
    pid, _, _ = identity.partition(":")
    if not pid.isdigit():
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and process_identity(int(pid)) == identity


@dataclass
class TestbedState:
    run_id: str
    provider: str
    topology_path: str
    topology_digest: str
    images: dict[str, str] = field(default_factory=dict)
    status: str = "creating"
    created: float = field(default_factory=time.time)
    # Per node, what the provider needs to reach and remove it (namespace, pids, cgroup...).
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Provider-wide resources (switch namespace...).
    resources: dict[str, Any] = field(default_factory=dict)
    # The process that creates the testbed ("pid:start time"), so `flatbed clean` can tell a
    # bring-up in progress from one whose process was killed.
    owner: str = field(default_factory=lambda: process_identity(os.getpid()))

    __test__ = False  # not a pytest test class, despite the name

    @property
    def dir(self) -> Path:
        return state_root() / self.run_id

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(self.dir / "state.json")

    @classmethod
    def load(cls, run_id: str) -> TestbedState:
        path = state_root() / run_id / "state.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FlatbedError(f"no testbed {run_id!r} (no {path})") from None
        except json.JSONDecodeError as e:
            raise FlatbedError(f"{path}: corrupt state file: {e}") from None
        data.setdefault("owner", "")  # written before owners were recorded: no live owner
        return cls(**data)

    def forget(self) -> None:
        """Remove the state file last, once everything it names is gone."""
        (self.dir / "state.json").unlink(missing_ok=True)


def list_testbeds() -> list[TestbedState]:
    root = state_root()
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir()):
        if (entry / "state.json").exists():
            found.append(TestbedState.load(entry.name))
    return found


def find(run_id: str | None) -> TestbedState:
    """The testbed named ``run_id``, or the only one there is."""
    if run_id:
        return TestbedState.load(run_id)
    beds = list_testbeds()
    if not beds:
        raise FlatbedError("no testbed is up (start one with `flatbed up`)")
    if len(beds) > 1:
        raise FlatbedError(f"several testbeds are up ({', '.join(b.run_id for b in beds)}); choose one with --testbed")
    return beds[0]


def prune_artifacts(keep: int = KEEP_ARTIFACTS) -> None:
    """Delete the oldest directories of removed testbeds beyond the last ``keep``."""
    root = state_root()
    if not root.is_dir():
        return
    gone = sorted((d for d in root.iterdir() if d.is_dir() and not (d / "state.json").exists()),
                  key=lambda d: d.stat().st_mtime)
    for old in gone[:-keep] if keep else gone:
        shutil.rmtree(old, ignore_errors=True)
