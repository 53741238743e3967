"""The flatbed CLI's surface: every verb has --help with examples; errors are one line (no nodes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flatbed.cli import VERBS, build_parser, main, parse_args

REPO = Path(__file__).resolve().parent.parent


def subparsers():
    action = next(a for a in build_parser()._actions if a.dest == "verb")
    return action.choices


def test_every_verb_is_wired_and_documented_with_examples():
    verbs = subparsers()
    assert set(verbs) == set(VERBS)
    assert {"up", "status", "exec", "ssh", "console", "boot", "delete", "collect", "down", "clean"} <= set(verbs)
    for name, parser in verbs.items():
        text = parser.format_help()
        assert "examples:" in text and f"flatbed {name}" in text.split("examples:")[1], name
    assert "examples:" in build_parser().format_help()


def test_help_exits_zero():
    proc = subprocess.run([sys.executable, "-m", "flatbed.cli", "ssh", "--help"], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and "cubswin:)" in proc.stdout


def test_testbed_option_before_or_after_the_verb():
    parser = build_parser()
    assert parser.parse_args(["--testbed", "fb000001", "status"]).testbed == "fb000001"
    assert parser.parse_args(["status", "--testbed", "fb000002"]).testbed == "fb000002"
    assert parser.parse_args(["status"]).testbed is None


def test_everything_after_double_dash_is_the_command():
    args = parse_args(["ssh", "cirros", "--wait", "5", "--", "uname", "-a", "--", "x"])
    assert (args.target, args.wait, args.command) == ("cirros", 5.0, ["uname", "-a", "--", "x"])
    assert parse_args(["exec", "compute-1", "--", "ls", "-l"]).command == ["ls", "-l"]
    assert parse_args(["exec", "compute-1", "hostname"]).command == ["hostname"]
    assert parse_args(["ssh", "controller-1"]).command == []


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["exec"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("flatbed exec: error: ") and "--help" in err


@pytest.mark.parametrize("argv", [["status"], ["ssh", "controller-1"], ["console", "cirros"], ["down"],
                                  ["boot", "x"], ["collect", "/tmp/x"]])
def test_no_testbed_is_one_line(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLATBED_STATE", str(tmp_path))
    assert main(argv) == 2
    assert capsys.readouterr().err == "flatbed: error: no testbed is up (start one with `flatbed up`)\n"


def test_unknown_testbed_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLATBED_STATE", str(tmp_path))
    assert main(["--testbed", "fb123456", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flatbed: error: no testbed 'fb123456'") and err.count("\n") == 1
