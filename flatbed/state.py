"""The state file of one testbed, so that separate processes (the CLI, later pytest runs) find it.

Each testbed has a directory ``<state root>/<run id>/`` with ``state.json`` and everything the
run wrote on the host (overlay upper dirs, logs). Resources are recorded *before* they are
created, so a run killed half-way can still be cleaned up from its state file.

The file holds the generic facts (run id, provider, topology, images, status, the process using
it) and the provider's own typed record (:class:`ProviderRecord` subclasses, one per provider).
Status goes ``creating`` -> ``up`` -> ``removing`` -> gone (or ``failed``). Files of schema 1
(bare dicts, before typed records) and 2 (before ``owner_since`` and ``kept``) still load; one this flatbed
cannot read is refused in one line naming ``flatbed clean``, which removes such testbeds by
their run-tagged resources.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from flatbed.errors import FlatbedError, UsageError

# 1: nodes and resources as bare dicts; 2: the provider's typed record; 3: owner_since and kept
# (older flatbeds would refuse the new fields as unreadable, and their `flatbed clean` would
# remove a live testbed)
SCHEMA = 3
RUN_PREFIX = "fb"
RUN_ID = re.compile(rf"{RUN_PREFIX}[0-9a-f]{{6}}")
KEEP_ARTIFACTS = 5  # directories of removed testbeds (their logs) kept, like pytest's basetemp keep=3
T = TypeVar("T")


def state_root() -> Path:
    return Path(os.environ.get("FLATBED_STATE", "/var/lib/flatbed/testbeds"))


def is_run_id(name: str) -> bool:
    """``fb`` + 6 hex digits: the tag on everything a run creates (``<run id>-...``)."""
    return RUN_ID.fullmatch(name) is not None


def run_of(name: str) -> str | None:
    """The run id a tagged name (``fb1a2b3c-sw``, ``fb1a2b3c``) starts with, or None."""
    run = name.split("-", 1)[0]
    return run if is_run_id(run) else None


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


class StateUnreadable(UsageError):
    """A state file this flatbed cannot use (corrupt, another schema, an unknown provider)."""

    def __init__(self, run_id: str, message: str, *, newer: bool = False):
        super().__init__(message)
        self.run_id = run_id
        self.newer = newer  # written by a newer flatbed: its owner may still be using it


@dataclass
class NodeRecord:
    """What a provider keeps about one node; each provider subclasses it with its own fields."""

    role: str


@dataclass
class ProviderRecord:
    """What a provider keeps about one testbed (typed fields of its subclass, never a bare dict)."""

    nodes: dict[str, NodeRecord] = field(default_factory=dict)

    @classmethod
    def from_v1(cls, nodes: dict[str, Any], resources: dict[str, Any]) -> dict[str, Any]:
        """This record's JSON from a schema-1 state file's ``nodes`` and ``resources`` dicts."""
        raise ValueError("no schema-1 layout is known for this provider")


@dataclass
class TestbedState:
    run_id: str
    provider: str
    topology_path: str
    topology_digest: str
    images: dict[str, str] = field(default_factory=dict)
    status: str = "creating"  # creating | up | failed | removing
    created: float = field(default_factory=time.time)
    # Provider options given at creation (``--libvirt-uri``...), for later processes.
    options: dict[str, str] = field(default_factory=dict)
    # The provider's own record (its class is the provider's ``Record``): what it needs to reach
    # and remove the nodes (namespaces, pids, domains...).
    record: ProviderRecord = field(default_factory=ProviderRecord)
    # The process using the testbed now ("pid:start time"; flatbed/ownership.py): its creator, a
    # --reuse run while it runs, the process removing it; empty when kept. Destructive verbs
    # refuse a testbed whose user is alive, and `flatbed clean` tells a bring-up in progress from
    # one whose process was killed.
    owner: str = field(default_factory=lambda: process_identity(os.getpid()))
    owner_since: float = field(default_factory=time.time)  # when the owner took it
    # Kept for its users (by `flatbed up`, or a run under --destroy=passing/never): a testbed that
    # is up, not kept and whose user is gone was left by a killed run, and `flatbed clean` removes it.
    kept: bool = False

    __test__ = False  # not a pytest test class, despite the name

    @property
    def dir(self) -> Path:
        return state_root() / self.run_id

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps({"schema": SCHEMA, **asdict(self)}, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.dir / "state.json")

    @classmethod
    def load(cls, run_id: str) -> TestbedState:
        """The testbed's state; StateUnreadable (one line naming ``flatbed clean``) when unusable."""
        path = state_root() / run_id / "state.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"no testbed {run_id!r} (no {path})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StateUnreadable(run_id, f"{path}: corrupt state file ({e}); `flatbed clean` removes the "
                                          "testbed") from None
        try:
            return decode_state(data)
        except StateUnreadable:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            schema = data.get("schema", 1) if isinstance(data, dict) else "?"
            raise StateUnreadable(run_id, f"{path}: a state file this flatbed cannot read (schema {schema}: {e}); "
                                          "`flatbed clean` removes the testbed") from None

    def forget(self) -> None:
        """Remove the state file last, once everything it names is gone."""
        (self.dir / "state.json").unlink(missing_ok=True)


def decode_state(data: dict[str, Any]) -> TestbedState:
    """A state file's JSON as a TestbedState with its provider's typed record (schema 1 or 2)."""
    from flatbed import providers  # the registry imports this module

    data = dict(data)
    schema = data.pop("schema", 1)
    run_id = str(data.get("run_id", "?"))
    if not isinstance(schema, int) or schema > SCHEMA:
        raise StateUnreadable(run_id, f"testbed {run_id}: its state file is from a newer flatbed (schema {schema}, "
                                      f"this one reads {SCHEMA}); use that flatbed, or `flatbed clean` removes it",
                              newer=True)
    try:
        record_cls = providers.get(str(data["provider"])).Record
    except FlatbedError as e:
        raise StateUnreadable(run_id, f"testbed {run_id}: its state file names a provider this flatbed does not "
                                      f"have ({e}); `flatbed clean` removes it") from None
    if schema == 1:  # kept testbeds from before typed records: per-node and provider-wide dicts
        nodes, resources = data.pop("nodes", {}), data.pop("resources", {})
        data["options"] = resources.get("options", {})
        data["record"] = record_cls.from_v1(nodes, resources)
        data.setdefault("owner", "")  # written before owners were recorded: no live owner
    if schema < 3:
        data.setdefault("owner_since", 0.0)  # unknown: ownership reads the owner's start time
        data.setdefault("kept", data.get("status") == "up")  # older flatbeds kept every testbed that was up
    return from_json(TestbedState, data, {"record": record_cls})


# --- typed records from JSON ------------------------------------------------------------------

def from_json(cls: type[T], data: dict[str, Any], overrides: dict[str, type] | None = None) -> T:
    """A dataclass from its ``asdict`` JSON, checked against its type hints; ``overrides`` gives
    the concrete class of fields declared with a base class (the provider's record)."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected an object, found {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(sorted(unknown))}")
    values = {name: _decode((overrides or {}).get(name, hints[name]), value, f"{cls.__name__}.{name}")
              for name, value in data.items()}
    return cls(**values)


def _decode(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (tp,) = [a for a in args if a is not type(None)]
        return _decode(tp, value, where)
    if is_dataclass(tp):
        return from_json(tp, value)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected an object")
        return {str(k): _decode(args[1], v, f"{where}[{k}]") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise TypeError(f"{where}: expected a list")
        return [_decode(args[0], v, f"{where}[]") for v in value]
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (str, int, bool) and (type(value) is not tp):
        raise TypeError(f"{where}: expected {tp.__name__}, found {type(value).__name__}")
    return value


def scan_testbeds() -> tuple[list[TestbedState], list[StateUnreadable]]:
    """The testbeds recorded in our state root, and the state files this flatbed cannot read."""
    root = state_root()
    found: list[TestbedState] = []
    unreadable: list[StateUnreadable] = []
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if (entry / "state.json").exists():
                try:
                    found.append(TestbedState.load(entry.name))
                except StateUnreadable as e:
                    unreadable.append(e)
                except FlatbedError:
                    continue  # removed meanwhile
    return found, unreadable


def list_testbeds() -> list[TestbedState]:
    """The testbeds recorded in our state root (unreadable state files left out)."""
    return scan_testbeds()[0]


def find(run_id: str | None, choose: Callable[[list[TestbedState]], TestbedState] | None = None) -> TestbedState:
    """The testbed named ``run_id``, or the only one there is (``choose`` picks among several)."""
    if run_id:
        return TestbedState.load(run_id)
    beds, unreadable = scan_testbeds()
    if not beds and unreadable:
        raise unreadable[0]
    if not beds:
        raise UsageError("no testbed is up (start one with `flatbed up`)")
    if choose is not None:
        return choose(beds)
    if len(beds) > 1:
        raise UsageError(f"several testbeds are up ({', '.join(b.run_id for b in beds)}); choose one with --testbed")
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
