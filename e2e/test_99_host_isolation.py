"""The host isolation audit, after the rest of the suite (fixtures/isolation.py runs it last).

Against a view of the host taken before the session's first testbed (flatbed/hostaudit.py):
- the host's own namespace has no new or lost iptables/ebtables rules, links, addresses or
  routes — except what names another run (other users' testbeds on this host), and what a kept
  testbed that uses the host's libvirt (``--libvirt-uri qemu:///system``: its bridges are this
  host's by design) has there;
- no testbed address is reached from the host's namespace: for every node address and the flat
  range's, the route the host would take goes neither through a run's link nor from an address
  in a testbed subnet (nothing is sent: a probe could leave the machine by the default route);
- the SSH key pair of every testbed the session removed is gone with it;
- ``/dev/kvm`` keeps its owner and mode.
"""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from flatbed import hostaudit, state
from flatbed.topology import Topology, load
from flatbed_fixtures.isolation import Baseline


def kept_with_host_libvirt() -> set[str]:
    """Testbeds kept in our state root that use an existing libvirt (its objects are the host's)."""
    return {st.run_id for st in state.list_testbeds() if st.options.get("libvirt_uri")}


def session_topologies(baseline: Baseline, topology: Topology) -> list[Topology]:
    """The topologies of the testbeds this session made that are still recorded, and its own."""
    found = {topology.path: topology}
    for st in state.list_testbeds():
        if st.run_id in baseline.runs:
            try:
                found.setdefault(st.topology_path, load(st.topology_path))
            except Exception:   # a file that changed since: its testbed's addresses are unknown here
                continue
    return list(found.values())


def test_host_namespace_has_nothing_new_and_lost_nothing(host_baseline: Baseline) -> None:
    ours, kept = host_baseline.runs, kept_with_host_libvirt()
    leaks, accounted = [], []
    for change in hostaudit.changes(host_baseline.view, hostaudit.look()):
        why = hostaudit.judge(change, ours, kept)
        (accounted if why else leaks).append(f"{change}" + (f"  ({why})" if why else ""))
    print("accounted for:", *accounted, sep="\n  ")
    assert not leaks, "the host's own namespace changed:\n  " + "\n  ".join(leaks)


def test_no_testbed_address_is_reached_from_the_host(host_baseline: Baseline, topology: Topology) -> None:
    if kept_with_host_libvirt():
        pytest.skip(f"kept testbeds use the host's libvirt ({', '.join(sorted(kept_with_host_libvirt()))}): "
                    "their management network is this host's by design")
    reached = []
    for topo in session_topologies(host_baseline, topology):
        subnets: list[IPv4Network] = [topo.management.cidr, topo.flat.cidr]
        for address in [str(n.address) for n in topo.nodes] + [str(topo.flat.gateway), str(topo.flat.dhcp_start)]:
            route = hostaudit.route_is_testbeds(address, subnets)
            if route:
                reached.append(f"{address} ({topo.name}): {route}")
    assert not reached, "the host's namespace reaches testbed addresses:\n  " + "\n  ".join(reached)


def test_removed_testbeds_took_their_ssh_keys(host_baseline: Baseline) -> None:
    left = [key for key in hostaudit.keys_left(state.state_root())
            if hostaudit.owner(key) in host_baseline.runs]
    assert not left, f"key pairs of removed testbeds are left: {left}"


def test_dev_kvm_keeps_its_owner_and_mode(host_baseline: Baseline) -> None:
    before = {item for item in host_baseline.view.items if item.startswith("/dev/kvm")}
    if not before:
        pytest.skip("this host has no /dev/kvm")
    assert hostaudit.kvm() == before
