"""Fixtures shared by the document suite's modules (the testbed plugin itself is in fixtures/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fixtures.guests import Guest, GuestManager
from fixtures.guestshell import wait_for_sshd
from flatbed.testbed import Testbed


@pytest.fixture(scope="session")
def guest_pair(testbed: Testbed) -> Iterator[list[Guest]]:
    """Two guests, ``cirros-a`` on the first compute and ``cirros-b`` on the second, both leased and
    with sshd up: the guests of §2.6 (the guest's view) and §3.3-3.6 (the ping matrix). Booted once
    for the session (each boot costs seconds of TCG), deleted at its end."""
    computes = testbed.topology.computes
    if len(computes) < 2:
        pytest.skip(f"needs two computes; topology {testbed.topology.name} has {len(computes)}")
    manager = GuestManager(testbed)
    pair = [manager.boot(name, compute=node.name) for name, node in zip(("cirros-a", "cirros-b"), computes,
                                                                          strict=False)]
    try:
        for guest in pair:
            guest.wait_for_lease()
            wait_for_sshd(testbed, guest)
        yield pair
    finally:
        manager.delete_all()


def pytest_collection_finish(session: pytest.Session) -> None:
    # Work that runs beside the session (a module's own testbed in a subprocess) starts as soon as
    # the tests are known: a selected module may define start_in_background(config).
    if session.config.option.collectonly:
        return
    started = set()
    for item in session.items:
        module = getattr(item, "module", None)
        start = getattr(module, "start_in_background", None)
        if start and module not in started:
            started.add(module)
            start(session.config)
