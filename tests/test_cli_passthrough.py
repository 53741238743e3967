"""Every inner run and CLI call of the suite carries the session's options (issue 13): a field of
``Options`` that is neither passed through nor declared kept back fails here, and so does a
flag that does not reach the inner run's own ``Options`` unchanged."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest

from flatbed_fixtures.cli import NOT_PASSED, PASSED, cli_of
from flatbed_fixtures.plugin import FACTORY, Options

pytest_plugins = ["pytester"]

SESSION = Options(topology_path=Path("/srv/topologies/other.toml"), provider="vagrant", destroy="always",
                  mirror="http://mirror.example/debian", cirros_image=Path("/srv/cirros-0.6.2.img"),
                  cirros_password="gocubsgo", reuse=None, artifacts=Path("/srv/artifacts"),
                  libvirt_uri="qemu:///system", max_bundles=9)


def test_every_option_is_passed_through_or_kept_back_with_a_reason() -> None:
    fields = {f.name for f in dataclasses.fields(Options)}
    undecided = fields - set(PASSED) - set(NOT_PASSED)
    assert not undecided, f"Options fields neither passed to inner runs nor declared in NOT_PASSED: {undecided}"
    assert not set(PASSED) & set(NOT_PASSED)
    assert all(reason.strip() for reason in NOT_PASSED.values())


def test_the_session_has_a_value_for_every_passed_option() -> None:
    # so that the round trip below sees each one (a None would pass unnoticed)
    assert all(getattr(SESSION, name) is not None for name in PASSED)


def test_an_inner_pytest_parses_back_to_the_sessions_options(pytester: pytest.Pytester) -> None:
    argv = cli_of(SESSION).pytest_argv("e2e/test_23_boot.py")
    args = argv[argv.index("pytest") + 1:]
    config = pytester.parseconfigure(*args)
    inner = config.stash[FACTORY].options
    for name in PASSED:
        assert getattr(inner, name) == getattr(SESSION, name), f"{name}: {shlex.join(argv)}"


def test_a_test_given_option_comes_after_and_wins(pytester: pytest.Pytester) -> None:
    other = "/srv/topologies/alt.toml"
    argv = cli_of(SESSION).pytest_argv("--topology", other, "--destroy=passing")
    config = pytester.parseconfigure(*argv[argv.index("pytest") + 1:])
    inner = config.stash[FACTORY].options
    assert (inner.topology_path, inner.destroy, inner.provider) == (Path(other), "passing", "vagrant")


def test_flatbed_up_gets_the_topology_provider_and_testbed_options() -> None:
    from flatbed.cli import build_parser

    argv = cli_of(SESSION).argv("up")
    args = build_parser().parse_args(argv[argv.index("flatbed.cli") + 1:])
    assert (args.topology, args.provider, args.mirror, args.cirros_image, args.cirros_password, args.libvirt_uri) == (
        SESSION.topology_path, SESSION.provider, SESSION.mirror, SESSION.cirros_image, SESSION.cirros_password,
        SESSION.libvirt_uri)


def test_every_flatbed_call_names_the_sessions_topology() -> None:
    from flatbed.cli import build_parser

    for verb in (["status"], ["down"], ["list"], ["exec", "controller-1", "--", "true"]):
        argv = cli_of(SESSION).argv("--testbed", "fb123456", *verb) if verb != ["list"] else cli_of(SESSION).argv(
            *verb)
        assert build_parser().parse_args(argv[argv.index("flatbed.cli") + 1:]).topology == SESSION.topology_path


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = dataclasses.replace(SESSION, topology_path=Path("t.toml"), cirros_image=Path("c.img"),
                                   artifacts=Path("a"))
    argv = cli_of(relative).pytest_argv()
    for flag, name in (("--cirros-image", "c.img"), ("--artifacts", "a")):
        assert f"{flag}={tmp_path / name}" in argv
    assert argv[argv.index("--topology") + 1] == str(tmp_path / "t.toml")


def test_the_suite_makes_its_clis_from_the_session_only() -> None:
    """An inner run or CLI call made with a FlatbedCli of its own would drop the session's options."""
    repo = Path(__file__).resolve().parents[1]
    makers = [path.relative_to(repo).as_posix() for folder in ("e2e", "fixtures", "flatbed")
              for path in sorted((repo / folder).rglob("*.py")) if "FlatbedCli(" in path.read_text()]
    assert makers == ["fixtures/cli.py"], makers
