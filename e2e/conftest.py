"""Fixtures shared by the document suite's modules (the testbed plugin itself is in fixtures/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from xdist.scheduler import LoadScopeScheduling

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


# Under pytest-xdist (--dist loadgroup, the default in pyproject.toml) modules go to workers whole,
# and these groups of modules go together to one worker. "document": the sections walked from a
# fresh testbed in file order (instance ids, addresses and the hostsfile move on with every guest),
# handed out first so that they meet their worker's testbed fresh. "guest-pair": the modules
# sharing the session's two guests. xdist's own loadgroup cannot do it: it hands an unmarked test
# out on its own (a module's ordered tests would be spread over the workers), and with pytest 9 it
# sees no xdist_group mark at all (it renames items through ``item._nodeid``, which pytest 9 no
# longer reads); so the run's scheduler is xdist's loadscope with these groups as its scopes.
XDIST_GROUPS = {
    "document": ("test_21_", "test_22_", "test_23_", "test_24_", "test_25_"),
    "guest-pair": ("test_26_", "test_33_"),
}
FIRST = "document"


def group_of(nodeid: str) -> str:
    """The work unit of a test: its module's named group, else its module (the path)."""
    module = nodeid.split("::", 1)[0]
    name = module.rsplit("/", 1)[-1]
    return next((group for group, prefixes in XDIST_GROUPS.items() if name.startswith(prefixes)), module)


class ModuleGroupScheduling(LoadScopeScheduling):
    """xdist's loadscope (whole scopes per worker, in collection order), scopes being module groups."""

    def _split_scope(self, nodeid: str) -> str:
        return group_of(nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log) -> LoadScopeScheduling | None:  # noqa: ANN001
    return ModuleGroupScheduling(config, log) if config.getvalue("dist") == "loadgroup" else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # the scheduler hands work out in collection order
        items.sort(key=lambda item: group_of(item.nodeid) != FIRST)


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
