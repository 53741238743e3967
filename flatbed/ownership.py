"""Who uses a testbed now, and refusing to pull it from under them.

The state file names the process using a testbed (``owner``, "pid:start time", and
``owner_since``): the run that creates it, while it comes up and while its tests run; a
``--reuse`` run, which takes it at attach and gives it back at its end; the process removing
it. A kept testbed has no user (``owner`` empty). ``down``, ``clean``, ``boot``, ``delete`` and
``--reuse`` refuse a testbed whose user is alive, in one line naming it, unless forced; the
user's own process and what it started (a test running ``flatbed boot``) count as that user.
Read-only verbs (``status``, ``list``, ``exec``, ``ssh``, ``console``, ``collect``) never ask, so
a live run can be watched and debugged.

Taking and giving back happen under a lock on the testbed (``<state dir>/<run>/owner.lock``), so
two ``--reuse`` runs cannot both take the same testbed.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flatbed import state
from flatbed.errors import FlatbedError

FORCE_REMOVE = "--force to remove it anyway"
PYTHONS = ("python", "python3")


@dataclass(frozen=True)
class User:
    """A live process using a testbed."""

    pid: int
    command: str   # what it is to a person: pytest, flatbed, ...
    since: float   # when it took the testbed (epoch seconds)

    def __str__(self) -> str:
        return f"{self.command} (pid {self.pid}) since {time.strftime('%H:%M', time.localtime(self.since))}"


class InUse(FlatbedError):
    """A destructive verb met a testbed that a live process uses."""

    def __init__(self, run_id: str, user: User, hint: str = FORCE_REMOVE):
        super().__init__(f"testbed {run_id} is in use by {user}; {hint}")
        self.run_id = run_id
        self.user = user


def me() -> str:
    """This process as an owner (``pid:start time``)."""
    return state.process_identity(os.getpid())


def command_name(pid: int) -> str:
    """``pytest`` for ``python3 -m pytest`` and ``.venv/bin/pytest`` alike; ``flatbed`` for
    ``python -m flatbed.cli``; otherwise the program's base name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in argv if w]
    if not words:
        return "?"
    name = os.path.basename(words[0])
    if name.rstrip("0123456789.") in PYTHONS and len(words) > 1:
        rest = words[1:]
        if rest[0] == "-m" and len(rest) > 1:
            return rest[1].split(".")[0]
        return os.path.basename(rest[0])
    return name


def ancestors(pid: int) -> set[int]:
    """``pid`` and every process above it."""
    found = set()
    while pid > 0 and pid not in found:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return found


def _started_at(pid: int) -> float:
    """A process's start, in epoch seconds (for owners recorded before ``owner_since``)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return time.time()
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


def user_of(st: state.TestbedState) -> User | None:
    """The live process using ``st``, unless that is this process or one it runs under; else None."""
    if not st.owner or not state.process_alive(st.owner):
        return None
    pid = int(st.owner.split(":")[0])
    if pid in ancestors(os.getpid()):
        return None
    return User(pid, command_name(pid), st.owner_since or _started_at(pid))


def refuse_if_in_use(st: state.TestbedState, *, force: bool = False, hint: str = FORCE_REMOVE) -> None:
    """Raise InUse (one line) when someone else uses ``st`` and ``force`` is not given."""
    user = None if force else user_of(st)
    if user is not None:
        raise InUse(st.run_id, user, hint)


def choose_unused(beds: list[state.TestbedState], *, hint: str = FORCE_REMOVE) -> state.TestbedState:
    """Without ``--testbed``, a destructive verb's testbed: the only one nobody else uses."""
    free = [st for st in beds if user_of(st) is None]
    if len(free) == 1:
        return free[0]
    if free:
        raise FlatbedError(f"several testbeds are up ({', '.join(b.run_id for b in free)}); choose one with --testbed")
    if len(beds) == 1:
        raise InUse(beds[0].run_id, user_of(beds[0]), hint)  # type: ignore[arg-type]
    users = ", ".join(f"{st.run_id} by {user_of(st)}" for st in beds)
    raise FlatbedError(f"every testbed is in use ({users}); choose one with --testbed and {hint}")


@contextmanager
def locked(run_id: str) -> Iterator[None]:
    """The testbed's ownership lock, held for the block."""
    path = state.state_root() / run_id / "owner.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def take(st: state.TestbedState, *, force: bool = False, hint: str = FORCE_REMOVE) -> None:
    """Make this process ``st``'s user (refused when someone else uses it, unless ``force``)."""
    with locked(st.run_id):
        on_disk = state.TestbedState.load(st.run_id)
        refuse_if_in_use(on_disk, force=force, hint=hint)
        st.owner, st.owner_since = me(), time.time()
        on_disk.owner, on_disk.owner_since = st.owner, st.owner_since
        on_disk.save()


def give_back(st: state.TestbedState) -> None:
    """The testbed stays, kept for its users: it has no user any more (unless someone else took it
    meanwhile)."""
    with locked(st.run_id):
        try:
            on_disk = state.TestbedState.load(st.run_id)
        except FlatbedError:
            return  # removed meanwhile
        if on_disk.owner in (st.owner, me()):
            on_disk.owner, on_disk.owner_since, on_disk.kept = "", 0.0, True
            on_disk.save()
        st.owner, st.owner_since, st.kept = "", 0.0, True


def taken_away(st: state.TestbedState) -> bool:
    """Whether ``st``, which this run uses, was removed (or is being removed) by someone else."""
    try:
        on_disk = state.TestbedState.load(st.run_id)
    except state.StateUnreadable:
        return False
    except FlatbedError:
        return True  # its state file is gone: the testbed was removed
    return on_disk.status == "removing" and on_disk.owner != st.owner
