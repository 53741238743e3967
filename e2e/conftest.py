"""Fixtures shared by the document suite's modules (the testbed plugin itself is in fixtures/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flatbed.checks.console import wait_for_lease, wait_for_sshd
from flatbed.cloud import Guest
from flatbed.testbed import Testbed
from flatbed_fixtures.guests import BootedGuests


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


# Under pytest-xdist (--dist loadgroup) every test carries an xdist_group, so that modules go to
# workers whole (loadgroup hands out an unmarked test on its own: a module's ordered tests would be
# spread over workers). Its module is a test's group, except for these, which run together on one
# worker. "document": the sections walked from a fresh testbed in file order (instance ids,
# addresses and the hostsfile move on with every guest), handed out first so that they meet their
# worker's testbed fresh. "guest-pair": the modules sharing the session's two guests.
XDIST_GROUPS = {
    "document": ("test_21_", "test_22_", "test_23_", "test_24_", "test_25_"),
    "guest-pair": ("test_26_", "test_33_"),
}
FIRST = "document"


def xdist_group(item: pytest.Item) -> str:
    name = item.path.name
    return next((group for group, prefixes in XDIST_GROUPS.items() if name.startswith(prefixes)), item.path.stem)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))
    if hasattr(config, "workerinput"):  # the scheduler hands work out in collection order
        items.sort(key=lambda item: xdist_group(item) != FIRST)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Work that runs beside the session (a module's own testbed in a subprocess) starts as soon as
    # the tests are known: a selected module may define start_in_background(config). Not in an
    # xdist worker, which collects every module but runs only some: the module starts it itself.
    if session.config.option.collectonly or hasattr(session.config, "workerinput"):
        return
    started = set()
    for item in session.items:
        module = getattr(item, "module", None)
        start = getattr(module, "start_in_background", None)
        if start and module not in started:
            started.add(module)
            start(session.config)
