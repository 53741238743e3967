"""The CLI for scripts and CI: --json, --version, exit codes 0/1/2, leaks of one session, removed
testbeds that left bundles (no nodes: state files and session directories in temp roots)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flatbed import artifacts, cli, state
from flatbed.errors import FlatbedError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _roots(tmp_path, monkeypatch):
    monkeypatch.setenv("FLATBED_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("FLATBED_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.delenv("FLATBED_SESSION", raising=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def recorded(run_id: str, status: str = "up") -> state.TestbedState:
    st = state.TestbedState(run_id=run_id, provider="nspawn", topology_path="topologies/default.toml",
                            topology_digest="d", status=status)
    st.save()
    return st


def test_version():
    proc = subprocess.run([sys.executable, "-m", "flatbed.cli", "--version"], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.startswith("flatbed ") and proc.stdout.split()[1][0].isdigit()


def test_list_json_names_each_testbed_and_its_owner(capsys):
    recorded("fb0000c1")
    rc, out, _ = run(capsys, "list", "--json")
    data = json.loads(out)
    assert rc == 0 and [t["run_id"] for t in data["testbeds"]] == ["fb0000c1"]
    assert data["testbeds"][0]["owner_pid"] == os.getpid() and data["testbeds"][0]["status"] == "up"
    assert data["removed_with_artifacts"] == [] and data["unreadable"] == []


def test_list_shows_removed_testbeds_that_left_bundles_with_their_failing_tests(capsys):
    session = artifacts.Session.create(session_id="20261129-020000-0001")
    session.add_testbed("fb0000c2", "default")
    session.add_bundle("e2e/test_23_boot.py::test_ping", "fb0000c2", session.bundle_dir("b1"))
    session.set_outcome("fb0000c2", "removed")
    session.add_testbed("fb0000c3", "alt")               # removed too, but nothing failed on it
    session.add_testbed("fb0000c4", "default")           # still recorded in the state root: listed above
    session.add_bundle("e2e/test_25.py::test_x", "fb0000c4", session.bundle_dir("b2"))
    recorded("fb0000c4")
    rc, out, _ = run(capsys, "list")
    assert rc == 0
    assert out.splitlines()[2:] == ["removed testbeds with failure artifacts:",
                                    f"fb0000c2  removed  default      {session.path}",
                                    "  failed: e2e/test_23_boot.py::test_ping"]
    data = json.loads(run(capsys, "list", "--json")[1])
    assert [(r["run_id"], r["bundles"]) for r in data["removed_with_artifacts"]] == [
        ("fb0000c2", [str(session.path / "b1")])]


def test_leaks_of_one_session(capsys):
    pytest.importorskip("pyroute2", reason="reads the host's network namespaces (pyroute2)")
    session = artifacts.Session.create(session_id="s1")
    session.add_testbed("fb0000d1", "default")
    session.set_outcome("fb0000d1", "removed")
    session.add_testbed("fb0000d2", "default")
    session.set_outcome("fb0000d2", "kept")
    recorded("fb0000d2")                                 # kept for the morning: not a leak
    recorded("fb0000d9")                                 # someone else's testbed: not this session's
    rc, out, _ = run(capsys, "leaks", "--session", "s1")
    assert rc == 0, out
    assert out.splitlines() == ["testbed fb0000d2 (default) kept: up", "no leaks of session s1 (2 testbeds)"]
    recorded("fb0000d1")                                 # a removed testbed whose state file is still there
    rc, out, _ = run(capsys, "leaks", "--session", str(session.path))
    assert rc == 1 and out.splitlines()[0] == "state file of fb0000d1 (up)"


def test_usage_errors_exit_2(capsys):
    assert run(capsys, "--testbed", "fb0000ff", "status")[0] == 2      # no such testbed
    assert run(capsys, "leaks", "--session", "nope")[0] == 2          # no such session
    assert run(capsys, "check", "--workers", "0")[0] == 2
    with pytest.raises(SystemExit) as exc:                             # argparse: not an age
        cli.main(["clean", "--artifacts-older-than", "soon"])
    assert exc.value.code == 2


def test_failures_exit_1(capsys, monkeypatch):
    def fails(args):
        raise FlatbedError("testbed fb0000aa: nova boot failed")

    monkeypatch.setitem(cli.VERBS, "list", fails)
    rc, _, err = run(capsys, "list")
    assert rc == 1 and err == "flatbed: error: testbed fb0000aa: nova boot failed\n"

    def breaks(args):
        raise OSError("disk on fire")

    monkeypatch.setitem(cli.VERBS, "list", breaks)
    rc, _, err = run(capsys, "list")
    assert rc == 1 and err.startswith("flatbed: error: OSError: disk on fire")
