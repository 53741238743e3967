"""fixtures/plugin.py: the session's options reach the testbed they shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from flatbed.testbed import Testbed
from flatbed.topology import DEFAULT_TOPOLOGY
from flatbed.topology import load as load_topology
from flatbed_fixtures.plugin import Options


def test_cirros_image_and_password_reach_the_guest_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A real cirros 0.4+ needs its password (gocubsgo) for every SSH login the suite makes."""
    seen: dict = {}
    monkeypatch.setattr(Testbed, "up", classmethod(lambda cls, topo, provider, **kw: seen.update(kw) or "bed"))
    disk = tmp_path / "cirros-0.6.2-x86_64-disk.img"
    options = Options(topology_path=DEFAULT_TOPOLOGY, provider="nspawn", destroy="always", cirros_image=disk,
                      cirros_password="gocubsgo")
    assert options.up(load_topology(DEFAULT_TOPOLOGY), print) == "bed"
    assert (seen["cirros_image"], seen["cirros_password"]) == (disk, "gocubsgo")


def test_the_pytest_option_is_read(pytestconfig: pytest.Config) -> None:
    assert Options.from_config(pytestconfig).cirros_password == pytestconfig.getoption("cirros_password")
