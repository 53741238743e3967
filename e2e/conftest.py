"""Fixtures shared by the document suite's modules (the testbed plugin itself is in fixtures/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fixtures.guests import BootedGuests
from flatbed.checks.console import wait_for_lease, wait_for_sshd
from flatbed.cloud import Guest
from flatbed.testbed import Testbed


@pytest.fixture(scope="session")
def guest_pair(testbed: Testbed) -> Iterator[list[Guest]]:
    """Two guests, ``cirros-a`` on the first compute and ``cirros-b`` on the second, both leased and
    with sshd up: the guests of §2.6 (the guest's view) and §3.3-3.6 (the ping matrix). Booted once
    for the session (each boot costs seconds of TCG), deleted at its end."""
    computes = testbed.topology.computes
    if len(computes) < 2:
        pytest.skip(f"needs two computes; topology {testbed.topology.name} has {len(computes)}")
    booted = BootedGuests(testbed)
    try:
        pair = [booted.boot(name, compute=node.name) for name, node in zip(("cirros-a", "cirros-b"), computes,
                                                                             strict=False)]
        for guest in pair:
            wait_for_lease(guest)
            wait_for_sshd(guest)
        yield pair
    finally:
        booted.delete_all()


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
