"""fixtures/expect.py and fixtures/compare.py: the e2e expectations against the document's text."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from test_stack_linux_net import DOCUMENT_DNSMASQ

from fixtures import expect
from fixtures.compare import assert_listing, listing_diff, normalise
from flatbed.topology import DEFAULT_TOPOLOGY, Topology
from flatbed.topology import load as load_topology

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "stack"))

from nova import systemd  # noqa: E402

# The document, §2.1, verbatim.
DOCUMENT_ROUTE_N = """
Kernel IP routing table

Destination     Gateway         Genmask         Flags Metric Ref    Use Iface

0.0.0.0         192.168.56.101  0.0.0.0         UG    100    0        0 eth1

10.0.0.0        0.0.0.0         255.255.255.0   U     0      0        0 br100

169.254.0.0     0.0.0.0         255.255.0.0     U     1000   0        0 eth1

192.168.56.0    0.0.0.0         255.255.255.0   U     0      0        0 eth1
"""
DOCUMENT_BRCTL = """
bridge name bridge id   STP enabled interfaces

br100   8000.0800278f87fa no    eth2
"""
DOCUMENT_NOVA_CONF = """
--public_interface=eth1

--fixed_range=10.0.0.0/24

--flat_interface=eth2

--flat_network_bridge=br100

--network_manager=nova.network.manager.FlatDHCPManager
"""
DOCUMENT_SYSLOG = """
Jul 30 23:12:06 controller-1 dnsmasq-dhcp[2729]: DHCP, static leases only on 10.0.0.2, lease time 2m
Jul 31 01:00:45 controller-1 dnsmasq-dhcp[2729]: DHCPOFFER(br100) 10.0.0.2 fa:16:3e:2c:e8:ec
Jul 31 01:00:45 controller-1 dnsmasq-dhcp[2729]: DHCPREQUEST(br100) 10.0.0.2 fa:16:3e:2c:e8:ec
Jul 31 01:00:45 controller-1 dnsmasq-dhcp[2729]: DHCPACK(br100) 10.0.0.2 fa:16:3e:2c:e8:ec cirros
"""


@pytest.fixture
def topo() -> Topology:
    return load_topology(DEFAULT_TOPOLOGY)


def test_controller_expectations_are_the_documents(topo: Topology) -> None:
    assert_listing(DOCUMENT_ROUTE_N, expect.controller_routes(topo), "route -n")
    assert_listing(DOCUMENT_BRCTL, expect.controller_brctl(topo, "08:00:27:8f:87:fa"), "brctl show")
    assert expect.nova_conf_head(topo) == normalise(DOCUMENT_NOVA_CONF)
    assert expect.dnsmasq_args(topo) == DOCUMENT_DNSMASQ
    assert expect.hostsfile_line(topo, "fa:16:3e:2c:e8:ec", "cirros", "10.0.0.2") == (
        "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2")
    syslog = [line.split(": ", 1)[1] for line in normalise(DOCUMENT_SYSLOG)]
    assert syslog == [expect.dnsmasq_started_line(topo),
                      *expect.dhcp_exchange(topo, "10.0.0.2", "fa:16:3e:2c:e8:ec", "cirros")]


def test_alt_topology_routes_sorted_by_destination() -> None:
    alt = load_topology(REPO / "topologies" / "alt.toml")
    assert expect.controller_routes(alt)[2:] == [
        "0.0.0.0 192.168.77.1 0.0.0.0 UG 100 0 0 eth1",
        "10.42.8.0 0.0.0.0 255.255.252.0 U 0 0 0 brflat",
        "169.254.0.0 0.0.0.0 255.255.0.0 U 1000 0 0 eth1",
        "192.168.77.0 0.0.0.0 255.255.255.0 U 0 0 0 eth1"]
    assert "--dhcp-range=10.42.8.2,static,300s" in expect.dnsmasq_args(alt)
    assert expect.dnsmasq_started_line(alt).endswith("lease time 5m")


def test_dnsmasq_time() -> None:
    assert [expect.dnsmasq_time(s) for s in (120, 300, 3600, 86400, 90)] == ["2m", "5m", "1h", "1d", "90s"]


def test_listing_diff_names_each_kind_of_difference() -> None:
    want = ["-A INPUT -j a", "-A INPUT -j b", "-A X -j c", "-A X -j d"]
    assert listing_diff(want, "\n  -A INPUT -j a\n\n-A  INPUT -j b\n-A X -j c\n-A X -j d\n") is None
    diff = listing_diff(want, ["-A INPUT -j b", "-A INPUT -j a", "-A X -j c", "-A X -j e", "-A X -j c"])
    assert diff is not None
    report = diff.split("--- expected")[0].splitlines()
    # a and b swapped: one of them is reported as out of place.
    assert report[:2] + report[3:] == ["missing:    -A X -j d", "extra:      -A X -j e", "duplicated: -A X -j c"]
    assert report[2] in ("misordered: -A INPUT -j a", "misordered: -A INPUT -j b")
    with pytest.raises(AssertionError, match="filter differs from the expected listing:\nmissing:    -A X -j d"):
        assert_listing(want, want[:3], "filter")


def test_sd_notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify() is False
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert systemd.notify() is True
        assert server.recv(64) == b"READY=1"
