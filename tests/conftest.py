"""Fixtures shared by unit test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from flatbed import hostnet, providers


@pytest.fixture
def toy(tmp_path, monkeypatch) -> Path:
    """Only the toy provider registered (tests/toyprovider), a state root and a toy host of the
    test's own; the host's namespaces are not looked at (other testbeds on this host are none of
    this test's business)."""
    monkeypatch.setattr(providers, "REGISTRY", {"toy": "toyprovider:ToyProvider"})
    monkeypatch.setattr(hostnet, "list_namespaces", lambda prefix: [])
    monkeypatch.setenv("FLATBED_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("FLATBED_TOY_ROOT", str(tmp_path / "toyhost"))
    (tmp_path / "toyhost").mkdir()
    return tmp_path / "toyhost"
