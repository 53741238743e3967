"""Testbeds owned by the runs using them (no nodes: the toy provider, other processes as users).

Destructive verbs refuse a testbed that another live process uses, in one line, unless forced,
and without --testbed choose among unused ones; read-only verbs work on any; a --reuse run takes
a testbed and gives it back; what the using process runs counts as that process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from toyprovider.harness import flatbed, toy_testbed

from flatbed import ownership, reuse, state
from flatbed.errors import FlatbedError
from flatbed.testbed import Testbed
from flatbed.topology import DEFAULT_TOPOLOGY
from flatbed.topology import load as load_topology

IN_USE = r"testbed {run} is in use by sleep \(pid {pid}\) since \d\d:\d\d; --force to remove it anyway"



@pytest.fixture
def other() -> Iterator[subprocess.Popen]:
    """Another live process (not this one, not above it): a run using a testbed."""
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("verb", [["down"], ["boot", "vm"], ["delete", "vm"]])
def test_a_destructive_verb_refuses_a_testbed_in_use_in_one_line(toy, capsys, other, verb):
    st = toy_testbed(owner=state.process_identity(other.pid))
    rc, out = flatbed(capsys, "--testbed", st.run_id, *verb)
    assert rc != 0 and len(out.splitlines()) == 1, out
    hint = {"down": "--force to remove it anyway", "boot": "--force to boot on it anyway",
            "delete": "--force to delete on it anyway"}[verb[0]]
    assert re.fullmatch(rf"flatbed: error: testbed {st.run_id} is in use by sleep \(pid {other.pid}\) since "
                        rf"\d\d:\d\d; {hint}\n", out), out
    assert state.TestbedState.load(st.run_id).status == "up"          # nothing touched
    assert (toy / f"{st.run_id}-controller-1").is_dir()


def test_force_removes_it_anyway(toy, capsys, other):
    st = toy_testbed(owner=state.process_identity(other.pid))
    rc, out = flatbed(capsys, "down", "--force")
    assert rc == 0 and f"removed toy machine {toy / (st.run_id + '-controller-1')}" in out
    assert not (st.dir / "state.json").exists()


def test_without_testbed_only_unused_ones_are_chosen(toy, capsys, other):
    used = toy_testbed(owner=state.process_identity(other.pid))
    free = toy_testbed(owner="")
    rc, out = flatbed(capsys, "down")
    assert rc == 0 and f"removed toy machine {toy / (free.run_id + '-controller-1')}" in out
    assert (used.dir / "state.json").exists()
    rc, out = flatbed(capsys, "down")   # now only the used one is left
    assert rc != 0 and re.fullmatch(rf"flatbed: error: {IN_USE.format(run=used.run_id, pid=other.pid)}\n", out)


def test_read_only_verbs_work_on_a_testbed_in_use(toy, capsys, other):
    st = toy_testbed(owner=state.process_identity(other.pid))
    rc, out = flatbed(capsys, "list")
    assert rc == 0 and st.run_id in out
    rc, out = flatbed(capsys, "status")
    assert f"testbed {st.run_id}" in out and "in use by" not in out
    rc, out = flatbed(capsys, "collect", str(toy.parent / "bundle"))
    assert "in use by" not in out and (toy.parent / "bundle").is_dir()


def test_a_dead_user_or_none_is_no_user(toy, other):
    assert ownership.user_of(toy_testbed(owner="")) is None                  # kept: nobody uses it
    assert ownership.user_of(toy_testbed(owner="1:12345")) is None           # pid 1 started at another time
    user = ownership.user_of(toy_testbed(owner=state.process_identity(other.pid)))
    assert user is not None and user.pid == other.pid and user.command == "sleep"


def test_what_the_user_runs_counts_as_the_user(toy):
    # This process and its ancestors (pytest running `flatbed boot` in a test) may change it.
    st = toy_testbed(owner=state.process_identity(os.getppid()))
    assert ownership.user_of(st) is None
    ownership.refuse_if_in_use(st)


def test_the_user_since_is_when_it_took_the_testbed(toy, other):
    st = toy_testbed(owner=state.process_identity(other.pid))
    st.owner_since = time.mktime((2030, 1, 2, 3, 4, 0, 0, 0, -1))
    st.save()
    assert str(ownership.user_of(state.TestbedState.load(st.run_id))) == f"sleep (pid {other.pid}) since 03:04"


@pytest.mark.parametrize(("argv", "name"), [
    (["/work/.venv/bin/python3", "-m", "pytest", "e2e/"], "pytest"),
    (["/work/.venv/bin/python3", "/work/.venv/bin/pytest", "e2e/"], "pytest"),
    (["python3.11", "-m", "flatbed.cli", "down"], "flatbed"),
    (["/usr/bin/sleep", "60"], "sleep"),
])
def test_command_names(monkeypatch, tmp_path, argv, name):
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    real = ownership.Path

    monkeypatch.setattr(ownership, "Path", lambda p: cmdline if p == "/proc/77/cmdline" else real(p))
    assert ownership.command_name(77) == name


def test_take_and_give_back(toy, other):
    st = toy_testbed(owner="")
    ownership.take(st)
    on_disk = state.TestbedState.load(st.run_id)
    assert on_disk.owner == ownership.me() and on_disk.owner_since > 0
    ownership.give_back(st)
    assert state.TestbedState.load(st.run_id).owner == ""
    busy = toy_testbed(owner=state.process_identity(other.pid))
    with pytest.raises(ownership.InUse, match=IN_USE.format(run=busy.run_id, pid=other.pid)):
        ownership.take(busy)


def test_reuse_chooses_only_among_unused_testbeds(toy, other):
    topo = load_topology(DEFAULT_TOPOLOGY)
    used = toy_testbed(owner=state.process_identity(other.pid))
    with pytest.raises(FlatbedError, match=rf"testbed {used.run_id} is in use by sleep \(pid {other.pid}\) since "
                                           r"\d\d:\d\d; wait for that run to end, or bring one up without --reuse"):
        reuse.choose(state.list_testbeds(), None, topo, {})
    free = toy_testbed(owner="")
    assert reuse.choose(state.list_testbeds(), None, topo, {}).run_id == free.run_id


def test_a_testbed_removed_by_someone_else_is_taken_away(toy):
    st = toy_testbed(owner=ownership.me())
    bed = Testbed.attach(st.run_id)
    assert not bed.taken_away()
    other_view = state.TestbedState.load(st.run_id)   # `flatbed down --force` in another shell
    other_view.status, other_view.owner = "removing", "1:1"
    other_view.save()
    assert bed.taken_away()
    other_view.forget()
    assert bed.taken_away()
    mine = Testbed.attach(toy_testbed(owner=ownership.me()).run_id)
    mine.down()
    assert not mine.taken_away()      # removed by this process itself


def test_state_files_before_owner_since_load(toy):
    st = toy_testbed(owner="")
    data = {"schema": 2, **{k: v for k, v in state.asdict(st).items() if k != "owner_since"}}
    (st.dir / "state.json").write_text(state.json.dumps(data))
    assert state.TestbedState.load(st.run_id).owner_since == 0.0


CHILD = """
import sys, time
from pathlib import Path
from flatbed import providers
from flatbed.testbed import Testbed
from toyprovider.provider import ToyProvider

providers.REGISTRY = {"toy": "toyprovider:ToyProvider"}
real = ToyProvider.destroy

def slow_destroy(self):
    while not Path(sys.argv[1]).exists():   # the test says when teardown may go on
        time.sleep(0.05)
    return real(self)

ToyProvider.destroy = slow_destroy
bed = Testbed.attach(sys.argv[2])
try:
    bed.down()
except KeyboardInterrupt:
    sys.exit(130)
print("down done")
"""


def _down_in_child(tmp_path, st: state.TestbedState) -> subprocess.Popen:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.path.join(repo, "tests")])}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "go"), st.run_id], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_removing(st: state.TestbedState, child: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while state.TestbedState.load(st.run_id).status != "removing":
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.02)


def test_one_interrupt_during_teardown_does_not_cut_it(toy, tmp_path):
    st = toy_testbed(owner="")
    child = _down_in_child(tmp_path, st)
    _wait_removing(st, child)
    child.send_signal(2)     # SIGINT
    time.sleep(0.5)          # the handler has run by now; teardown still waits for "go"
    (tmp_path / "go").touch()
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0 and "down done" in out, err
    assert (f"finishing teardown of {st.run_id} (Ctrl-C again to abort and leave it for flatbed clean)"
            in err.splitlines()[0]), err
    assert not (st.dir / "state.json").exists() and not list(toy.iterdir())


def test_a_second_interrupt_aborts_and_leaves_it_for_clean(toy, tmp_path, capsys):
    st = toy_testbed(owner="")
    child = _down_in_child(tmp_path, st)
    _wait_removing(st, child)
    child.send_signal(15)    # SIGTERM counts as an interrupt too
    time.sleep(0.5)
    child.send_signal(2)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert f"teardown of {st.run_id} aborted; `flatbed clean` removes what is left" in err
    assert state.TestbedState.load(st.run_id).status == "removing"
    rc, out = flatbed(capsys, "clean")
    assert f"removed {st.run_id} (teardown interrupted (its process is gone)):" in out, out
    assert not list(toy.iterdir())
