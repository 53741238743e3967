"""Topology loading and validation: both shipped files load; every bad input is one clear line."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from flatbed import hostnet
from flatbed.topology import DEFAULT_TOPOLOGY, TopologyError, load

REPO = Path(__file__).resolve().parent.parent
ALT_TOPOLOGY = REPO / "topologies" / "alt.toml"


def test_default_topology_is_the_documents():
    topo = load(DEFAULT_TOPOLOGY)
    assert [(n.name, n.role, str(n.address)) for n in topo.nodes] == [
        ("controller-1", "controller", "192.168.56.200"),
        ("compute-1", "compute", "192.168.56.202"),
        ("compute-2", "compute", "192.168.56.203"),
        ("outside", "outside", "192.168.56.101"),
    ]
    assert topo.management.gateway == IPv4Address("192.168.56.101")
    assert topo.flat.cidr == IPv4Network("10.0.0.0/24")
    assert (topo.flat.bridge, topo.flat.interface, topo.flat.label) == ("br100", "eth2", "novanetwork")
    assert (topo.flat.gateway, topo.flat.dhcp_start) == (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"))
    assert topo.first_instance_id == 9
    # The document's MACs where it shows them.
    assert topo.controller.macs == {"eth1": "08:00:27:9d:c4:b0", "eth2": "08:00:27:8f:87:fa"}


def test_nova_flags_start_with_the_documents_nova_conf():
    topo = load(DEFAULT_TOPOLOGY)
    flags = topo.nova_flags(topo.controller)
    assert list(flags.items())[:5] == [
        ("public_interface", "eth1"),
        ("fixed_range", "10.0.0.0/24"),
        ("flat_interface", "eth2"),
        ("flat_network_bridge", "br100"),
        ("network_manager", "nova.network.manager.FlatDHCPManager"),
    ]
    assert flags["my_ip"] == "192.168.56.200"
    assert topo.nova_flags(topo.node("compute-1"))["my_ip"] == "192.168.56.202"
    assert topo.nova_flags(topo.node("compute-1"))["metadata_host"] == "192.168.56.200"


def test_alt_topology_differs_everywhere_that_matters():
    default, alt = load(DEFAULT_TOPOLOGY), load(ALT_TOPOLOGY)
    assert alt.flat.cidr != default.flat.cidr and alt.management.cidr != default.management.cidr
    assert alt.flat.bridge != default.flat.bridge
    assert {n.address for n in alt.nodes}.isdisjoint({n.address for n in default.nodes})
    assert alt.nova_flags(alt.controller)["fixed_range"] == "10.42.8.0/22"
    assert alt.flat.dhcp_start == IPv4Address("10.42.8.2")
    assert alt.digest != default.digest


def test_unlisted_macs_are_stable_and_distinct():
    a, b = load(ALT_TOPOLOGY), load(ALT_TOPOLOGY)
    assert a.controller.macs == b.controller.macs
    macs = [mac for n in a.nodes for mac in n.macs.values()]
    assert len(set(macs)) == len(macs)


GOOD = """\
name = "t"
[networks.management]
cidr = "192.168.56.0/24"
interface = "eth1"
gateway = "192.168.56.101"
[networks.flat]
cidr = "10.0.0.0/24"
interface = "eth2"
bridge = "br100"
[nova]
dhcp_lease_time = 120
[[nodes]]
name = "controller-1"
role = "controller"
address = "192.168.56.200"
[[nodes]]
name = "compute-1"
role = "compute"
address = "192.168.56.202"
[[nodes]]
name = "outside"
role = "outside"
"""

# (what to replace in GOOD, with what) -> the field the error must name and a phrase it must say.
BAD = [
    (('cidr = "10.0.0.0/24"', 'cidr = "10.0.0.0/33"'), "networks.flat.cidr", "not a valid IPv4 CIDR"),
    (('cidr = "10.0.0.0/24"', 'cidr = "10.0.0.1/24"'), "networks.flat.cidr", "not a valid IPv4 CIDR"),
    (('cidr = "10.0.0.0/24"', 'cidr = "192.168.0.0/16"'), "networks.flat.cidr", "overlaps"),
    (('gateway = "192.168.56.101"', 'gateway = "192.168.57.1"'), "networks.management.gateway", "outside"),
    (('address = "192.168.56.202"', 'address = "192.168.56.200"'), "nodes[1].address", "already used by"),
    (('name = "compute-1"', 'name = "controller-1"'), "nodes[1].name", "already used by"),
    (('role = "compute"', 'role = "network"'), "nodes[1].role", "unknown role"),
    (('address = "192.168.56.202"', 'address = "10.0.0.5"'), "nodes[1].address", "outside"),
    (('address = "192.168.56.202"', 'address = "192.168.56.255"'), "nodes[1].address", "broadcast"),
    (('address = "192.168.56.202"', 'address = "192.168.56.101"'), "nodes[1].address", "gateway"),
    (('bridge = "br100"', 'bridge = "a-bridge-name-too-long"'), "networks.flat.bridge", "bridge name"),
    (('bridge = "br100"', 'bridge = "br100"\ncolour = "blue"'), "networks.flat.colour", "unknown key"),
    (('dhcp_lease_time = 120', 'dhcp_lease_time = "soon"'), "nova.dhcp_lease_time", "seconds"),
    (('dhcp_lease_time = 120', 'fixed_range = "10.0.0.0/24"'), "nova.fixed_range", "derived"),
    (("dhcp_lease_time = 120", "dhcp_lease_time = 120\nlibvirt_type = \"xen\""), "nova.libvirt_type", "kvm or qemu"),
    (('role = "controller"', 'role = "compute"'), "nodes", "exactly one node with role 'controller'"),
    (('name = "t"', 'name = "t"\nfirst_instance_id = 0'), "first_instance_id", "positive integer"),
    (('[[nodes]]\nname = "outside"', '[[nodes]]\naddress = "192.168.56.9"\nname = "outside"'),
     "nodes[2].address", "management gateway"),
    (('name = "t"', 'name = "t"\n[networks'), "not valid TOML", ""),
]


@pytest.mark.parametrize(("edit", "field", "phrase"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_topology_is_one_line_naming_the_field(tmp_path, edit, field, phrase):
    old, new = edit
    assert old in GOOD
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(TopologyError) as err:
        load(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {field}")
    assert phrase in message


def test_good_base_loads(tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    assert load(path).controller.name == "controller-1"


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(TopologyError, match=r"cannot read topology file"):
        load(tmp_path / "nope.toml")


def test_cli_with_bad_topology_says_one_line_and_creates_nothing(tmp_path):
    pytest.importorskip("pyroute2", reason="reads the host's network namespaces (pyroute2)")
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('role = "compute"', 'role = "network"'))
    state_dir = tmp_path / "state"
    before = hostnet.list_namespaces("fb")
    proc = subprocess.run([sys.executable, "-m", "flatbed.cli", "--topology", str(bad), "up"],
                          capture_output=True, text=True, cwd=REPO,
                          env={"FLATBED_STATE": str(state_dir), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"flatbed: error: {bad}: nodes[1].role: unknown role 'network' "
                                        f"(roles: controller, compute, outside)"]
    assert not state_dir.exists()
    assert hostnet.list_namespaces("fb") == before


def test_variant_merges_over_its_base():
    variant = load(REPO / "topologies" / "no-same-net.toml")
    default = load(DEFAULT_TOPOLOGY)
    assert variant.name == "flatdhcp-no-same-net"
    assert variant.nova["allow_same_net_traffic"] is False
    assert variant.nova["dhcp_lease_time"] == default.nova["dhcp_lease_time"]
    assert variant.nodes == default.nodes and variant.flat == default.flat
    assert variant.digest != default.digest


def test_variant_errors_name_the_merged_field(tmp_path):
    (tmp_path / "base.toml").write_text(GOOD)
    variant = tmp_path / "variant.toml"
    variant.write_text('base = "base.toml"\n[networks.flat]\nbridge = "a-bridge-name-too-long"\n')
    with pytest.raises(TopologyError, match=r"networks.flat.bridge: 'a-bridge-name-too-long' is not a valid"):
        load(variant)


def test_variant_including_itself_is_refused(tmp_path):
    loop = tmp_path / "loop.toml"
    loop.write_text('base = "loop.toml"\n')
    with pytest.raises(TopologyError, match=r"base: loop.toml includes itself"):
        load(loop)
