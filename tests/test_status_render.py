"""The status table and the graphviz picture, rendered from a canned snapshot (no nodes)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from flatbed.cloud import Guest
from flatbed.health import Check, NodeFacts
from flatbed.status import GuestRow, NodeRow, Snapshot, parse_ip_addr, render, to_dot

CONTROLLER = NodeFacts("controller-1", "controller", system="running",
                       units={"nova-network": "active", "nova-api": "absent"},
                       bridges={"br100": ("10.0.0.1/24",)}, dnsmasq=256)
COMPUTE = NodeFacts("compute-1", "compute", system="running",
                    units={"nova-compute": "active", "libvirtd": "socket-activated"},
                    libvirt_type="kvm (the node's kernel reached userspace under KVM in 4 s)")
GUEST = Guest(name="cirros", uuid="45f2", status="ACTIVE", ip="10.0.0.2", compute="compute-1",
                  instance_name="instance-00000009", mac="fa:16:3e:07:b0:07", lease="leased", in_hostsfile=True)

IP_ADDR_COMPUTE = json.dumps([
    {"ifname": "lo", "flags": ["LOOPBACK", "UP"], "address": "00:00:00:00:00:00",
     "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth1", "flags": ["BROADCAST", "UP"], "address": "08:00:27:ee:49:bd",
     "addr_info": [{"family": "inet", "local": "192.168.56.202", "prefixlen": 24},
                   {"family": "inet6", "local": "fe80::1", "prefixlen": 64}]},
    {"ifname": "eth2", "flags": ["BROADCAST", "PROMISC", "UP"], "address": "08:00:27:15:85:17", "master": "br100",
     "addr_info": []},
    {"ifname": "br100", "flags": ["BROADCAST", "UP"], "address": "08:00:27:15:85:17", "addr_info": []},
    {"ifname": "vnet0", "flags": ["BROADCAST", "UP"], "address": "fe:16:3e:07:b0:07", "master": "br100",
     "addr_info": []},
])


def snapshot(guests=(GuestRow(GUEST, "vnet0"),), compute=COMPUTE, nics=()) -> Snapshot:
    return Snapshot(
        run_id="fb1a2b3c", topology="flatdhcp-single-host", provider="nspawn", status="up",
        management="eth1 192.168.56.0/24", flat="eth2 10.0.0.0/24 bridge br100",
        nodes=(NodeRow("controller-1", "controller", "192.168.56.200", CONTROLLER),
               NodeRow("compute-1", "compute", "192.168.56.202", compute, nics),
               NodeRow("outside", "outside", "192.168.56.101", NodeFacts("outside", "outside"))),
        guests=tuple(guests), checks=(Check("controller-1", "nova-network active", True),))


def test_table_lists_nodes_services_and_guests():
    text = render(snapshot())
    lines = text.splitlines()
    assert lines[0] == "testbed fb1a2b3c  flatdhcp-single-host  provider nspawn  status up"
    header = next(line for line in lines if line.startswith("NODE"))
    assert header.split() == ["NODE", "ROLE", "ADDRESS", "STATE", "SERVICES"]
    ctl = next(line for line in lines if line.startswith("controller-1"))
    assert ctl.split()[:4] == ["controller-1", "controller", "192.168.56.200", "running"]
    assert "nova-network active, br100 10.0.0.1/24, dnsmasq 256" in ctl
    assert "nova-api" not in ctl                      # not installed: not listed
    assert "libvirtd socket-activated" in text
    assert "libvirt_type kvm (the node's kernel reached userspace under KVM in 4 s)" in text   # each compute's choice
    guest_header = next(line for line in lines if line.startswith("GUEST"))
    assert guest_header.split() == ["GUEST", "STATUS", "IP", "MAC", "LEASE", "HOSTSFILE", "COMPUTE", "INSTANCE"]
    row = next(line for line in lines if line.startswith("cirros"))
    assert row.split() == ["cirros", "ACTIVE", "10.0.0.2", "fa:16:3e:07:b0:07", "leased", "yes", "compute-1",
                           "instance-00000009"]
    # Columns line up: each cell starts where its header does.
    assert row.index("10.0.0.2") == guest_header.index("IP")
    assert row.index("compute-1") == guest_header.index("COMPUTE")
    assert lines[-1] == "health: ok"


def test_table_without_guests_and_with_a_node_down():
    down = NodeFacts("compute-1", "compute", reachable=False, error="compute-1: the container is not running")
    snap = snapshot(guests=(), compute=down)
    snap = Snapshot(**{**snap.__dict__, "checks": (Check("compute-1", "node running", False, "gone"),)})
    text = render(snap)
    row = next(line for line in text.splitlines() if line.startswith("compute-1"))
    assert row.split()[3] == "DOWN" and "the container is not running" in row
    assert "guests: none" in text
    assert text.splitlines()[-1] == "health: NOT OK: compute-1: node running (gone)"


def test_ip_addr_to_nics():
    nics = {n.name: n for n in parse_ip_addr(IP_ADDR_COMPUTE)}
    assert "lo" not in nics
    assert nics["br100"].kind == "bridge"
    assert nics["vnet0"].kind == "tap" and nics["vnet0"].master == "br100"
    assert nics["eth2"].promisc and nics["eth2"].master == "br100" and nics["eth2"].kind == "nic"
    assert nics["eth1"].addresses == ("192.168.56.202/24",)


def test_picture_wires_networks_nics_bridges_taps_and_guests():
    dot = to_dot(snapshot(nics=parse_ip_addr(IP_ADDR_COMPUTE)), "eth1", "eth2")
    assert dot.startswith("graph testbed {") and dot.rstrip().endswith("}")
    assert '"net/management" -- "compute-1/eth1";' in dot
    assert '"net/flat" -- "compute-1/eth2";' in dot
    assert '"compute-1/eth2" -- "compute-1/br100";' in dot
    assert '"compute-1/br100" -- "compute-1/vnet0";' in dot
    assert '"compute-1/vnet0" -- "guest/45f2";' in dot            # the guest (by uuid) hangs on its tap
    assert "10.0.0.2" in dot and "instance-00000009" in dot
    assert 'subgraph "cluster_compute-1"' in dot
    # Nodes without interface data (not gathered) still get their topology NICs.
    assert '"net/flat" -- "controller-1/eth2";' in dot
    assert '"net/flat" -- "outside/eth2";' not in dot             # the outside host is not on the flat network


def test_picture_never_hangs_a_guest_off_the_flat_nic():
    """A guest without a tap (BUILD, or its domain gone) is dashed to the bridge; a second guest of
    the same name is a second guest."""
    building = Guest(name="cirros", uuid="77aa", status="BUILD", ip=None, compute="compute-1", instance_name=None)
    dot = to_dot(snapshot(guests=(GuestRow(GUEST, "vnet0"), GuestRow(building, None)),
                          nics=parse_ip_addr(IP_ADDR_COMPUTE)), "eth1", "eth2")
    assert '"compute-1/vnet0" -- "guest/45f2";' in dot
    assert '"compute-1/br100" -- "guest/77aa" [style=dashed, label="no tap"];' in dot
    assert '-- "guest/' not in dot.replace('"compute-1/vnet0" -- "guest/45f2"', "").replace(
        '"compute-1/br100" -- "guest/77aa"', "")
    assert '"compute-1/eth2" -- "guest/' not in dot


def test_picture_quotes_odd_names():
    odd = Guest(name='a "b" \\c', uuid="1", status="ACTIVE", ip=None, compute="compute-1", instance_name="i-1")
    dot = to_dot(snapshot(guests=(GuestRow(odd, None),)), "eth1", "eth2")
    assert '\\"b\\"' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed (./run installs it)")
def test_picture_is_valid_graphviz(tmp_path):
    odd = Guest(name='a "b"', uuid="1", status="BUILD", ip=None, compute="compute-1", instance_name="i-1")
    dot = to_dot(snapshot(guests=(GuestRow(GUEST, "vnet0"), GuestRow(odd, None)),
                          nics=parse_ip_addr(IP_ADDR_COMPUTE)), "eth1", "eth2")
    svg = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=True).stdout.decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "cirros" in svg and "10.0.0.2" in svg
