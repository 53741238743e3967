"""Health verdicts of a kept testbed, from canned probe output (no nodes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from flatbed.health import NodeFacts, judge, parse_probe, probe_script, verdict
from flatbed.topology import DEFAULT_TOPOLOGY, load

ALT = Path(__file__).resolve().parent.parent / "topologies" / "alt.toml"

CONTROLLER_OK = """\
system running
unit nova-network active inactive
unit nova-api active inactive
bridge br100 10.0.0.1/24
dnsmasq 256
"""
COMPUTE_OK = """\
system running
unit nova-compute active inactive
unit libvirtd inactive active
"""


@pytest.fixture(scope="module")
def topo():
    return load(DEFAULT_TOPOLOGY)


def healthy(topo) -> list[NodeFacts]:
    return [parse_probe("controller-1", "controller", CONTROLLER_OK),
            parse_probe("compute-1", "compute", COMPUTE_OK),
            parse_probe("compute-2", "compute", COMPUTE_OK),
            NodeFacts("outside", "outside")]


def replace(facts: list[NodeFacts], name: str, **changes) -> list[NodeFacts]:
    return [dataclasses.replace(f, **changes) if f.name == name else f for f in facts]


def test_parse_probe_reads_every_fact():
    facts = parse_probe("controller-1", "controller", CONTROLLER_OK + "failed foo.service\n")
    assert facts.system == "running"
    assert facts.units == {"nova-network": "active", "nova-api": "active"}
    assert facts.bridges == {"br100": ("10.0.0.1/24",)}
    assert facts.dnsmasq == 256
    assert facts.failed_units == ("foo.service",)


def test_parse_probe_reads_a_computes_libvirt_type():
    recorded = '{"libvirt_type": "qemu", "reason": "/dev/kvm is missing or not accessible", "source": "device"}'
    facts = parse_probe("compute-1", "compute", COMPUTE_OK + f"virt {recorded}\n")
    assert facts.libvirt_type == "qemu (/dev/kvm is missing or not accessible)"
    assert parse_probe("compute-1", "compute", COMPUTE_OK + "virt \n").libvirt_type == ""  # not recorded yet


def test_idle_libvirtd_behind_its_socket_counts_as_running(topo):
    # Debian's libvirtd exits after 120 s idle (--timeout 120); its socket starts it again.
    facts = parse_probe("compute-1", "compute", COMPUTE_OK)
    assert facts.units["libvirtd"] == "socket-activated"
    assert verdict(judge(topo, healthy(topo))) is None


def test_a_healthy_testbed_has_no_verdict_and_checks_every_node(topo):
    checks = judge(topo, healthy(topo))
    assert verdict(checks) is None
    assert {c.node for c in checks} == {"controller-1", "compute-1", "compute-2", "outside"}
    assert {c.what for c in checks if c.node == "controller-1"} >= {
        "nova-network active", "bridge br100 with 10.0.0.1/24", "dnsmasq on br100"}


@pytest.mark.parametrize(("name", "changes", "expected"), [
    ("compute-2", {"reachable": False, "error": "compute-2: the container is not running"},
     "compute-2: node running (compute-2: the container is not running)"),
    ("controller-1", {"units": {"nova-network": "failed", "nova-api": "active"}},
     "controller-1: nova-network active (failed)"),
    # nova-api is part of the deployment: a controller without it is not healthy.
    ("controller-1", {"units": {"nova-network": "active", "nova-api": "absent"}},
     "controller-1: nova-api active (absent)"),
    ("compute-1", {"units": {"nova-compute": "active", "libvirtd": "inactive"}},
     "compute-1: libvirtd active (inactive)"),
    ("compute-1", {"units": {"libvirtd": "active"}}, "compute-1: nova-compute active (absent)"),
    ("controller-1", {"bridges": {}}, "controller-1: bridge br100 (missing)"),
    ("controller-1", {"bridges": {"br100": ()}}, "controller-1: bridge br100 with 10.0.0.1/24 (has no address)"),
    ("controller-1", {"dnsmasq": None}, "controller-1: dnsmasq on br100 (not running for the hostsfile)"),
    ("compute-1", {"system": "degraded", "failed_units": ("nova-compute.service",)},
     "compute-1: systemd running (degraded; failed: nova-compute.service)"),
])
def test_each_problem_is_named_in_one_line(topo, name, changes, expected):
    line = verdict(judge(topo, replace(healthy(topo), name, **changes)))
    assert line == expected
    assert "\n" not in line


def test_nova_api_is_checked_once_it_is_installed(topo):
    facts = replace(healthy(topo), "controller-1", units={"nova-network": "active", "nova-api": "inactive"})
    assert verdict(judge(topo, facts)) == "controller-1: nova-api active (inactive)"


def test_several_problems_in_one_line(topo):
    facts = replace(replace(healthy(topo), "controller-1", dnsmasq=None), "compute-2", reachable=False)
    line = verdict(judge(topo, facts))
    assert line.count(";") == 1 and "dnsmasq" in line and "compute-2" in line


def test_probe_follows_the_topology():
    alt = load(ALT)
    script = probe_script(alt, "controller")
    assert "brflat" in script and "br100" not in script
    assert "nova-brflat.conf" in script
    assert "nova-compute" in probe_script(alt, "compute") and "libvirtd" in probe_script(alt, "compute")
    facts = parse_probe("ctl", "controller", "system running\nunit nova-network active\nunit nova-api active\n"
                                             "bridge brflat 10.42.8.1/22\ndnsmasq 9\n")
    assert verdict(judge(alt, [facts])) is None
