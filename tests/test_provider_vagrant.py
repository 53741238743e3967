"""The vagrant provider's pure parts: names, the Vagrantfile's JSON, kernel command lines, networks.

No VM is started here; ``e2e/test_vagrant_*.py`` checks the real thing.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flatbed import providers
from flatbed.errors import FlatbedError
from flatbed.providers.vagrant.config import kernel_cmdline, vagrant_config
from flatbed.providers.vagrant.libvirt_objects import network_xml
from flatbed.providers.vagrant.naming import RunNames
from flatbed.providers.vagrant.record import SSHRecord
from flatbed.providers.vagrant.sshconfig import parse_ssh_config
from flatbed.providers.vagrant.up import vagrant_phase
from flatbed.topology import DEFAULT_TOPOLOGY, load

REPO = Path(__file__).resolve().parent.parent
ALT = REPO / "topologies" / "alt.toml"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3Fs2yPLtdKMuCyN2WJYqvMdCs1VaH/+oXmZrbBsJ7T flatbed-fb000001"


def config_for(path: Path, private: bool = True) -> tuple[dict, RunNames]:
    topo = load(path)
    names = RunNames("fb000001", topo.outside.name, topo.management.interface, private)
    cfg = vagrant_config(topo, names, box="flatbed-node-0123456789abcdef", cmdline_base="root=/dev/vda ro",
                         libvirt_uri="qemu+unix:///system?socket=/x/libvirt-sock", driver="qemu",
                         ssh_private_key=Path("/x/ssh/id_ed25519"), ssh_public_key=KEY, logs=Path("/x/logs"))
    return cfg, names


def test_names_carry_the_run_id():
    names = RunNames("fb000001", "outside")
    assert names.netns == "fb000001-outside"
    assert names.networks == {"management": "fb000001-mgmt", "flat": "fb000001-flat"}
    assert names.domain("compute-1") == "fb000001-compute-1"
    assert names.volume("compute-1") == "fb000001-compute-1.img"


def test_bridges_in_the_testbed_namespace_look_like_the_outside_hosts_nic():
    assert RunNames("fb000001", "outside", "eth1", private=True).bridges == {"management": "eth1", "flat": "flat"}


def test_bridges_in_the_host_namespace_are_tagged_and_fit_ifnamsiz():
    bridges = RunNames("fb000001", "outside", "eth1", private=False).bridges
    assert all(b.startswith("fb000001-") and len(b) <= 15 for b in bridges.values())


@pytest.mark.parametrize("path", [DEFAULT_TOPOLOGY, ALT], ids=["default", "alt"])
def test_vagrant_config_is_a_plain_rendering_of_the_topology(path):
    topo = load(path)
    cfg, names = config_for(path)
    json.dumps(cfg)  # the Vagrantfile reads it with Ruby's JSON
    assert [n["name"] for n in cfg["nodes"]] == [n.name for n in topo.stack_nodes]
    for rendered, node in zip(cfg["nodes"], topo.stack_nodes, strict=True):
        assert rendered["address"] == str(node.address)
        assert rendered["mac_management"] == node.macs[topo.management.interface]
        assert rendered["mac_flat"] == node.macs[topo.flat.interface]
        assert rendered["console_log"] == f"/x/logs/{node.name}.console.log"
    assert cfg["management"] == {"network": names.networks["management"],
                                 "netmask": str(topo.management.cidr.netmask)}
    assert cfg["domain_prefix"] == "fb000001-"


def test_outside_host_is_not_a_vm():
    cfg, _ = config_for(DEFAULT_TOPOLOGY)
    assert "outside" not in [n["name"] for n in cfg["nodes"]]


def test_cpu_mode_follows_the_accelerator():
    topo = load(DEFAULT_TOPOLOGY)
    names = RunNames("fb000001", "outside")
    common = dict(box="b", cmdline_base="", libvirt_uri="u", ssh_private_key=Path("/k"), ssh_public_key=KEY,
                  logs=Path("/l"))
    assert vagrant_config(topo, names, driver="kvm", **common)["cpu_mode"] == "host-passthrough"
    assert vagrant_config(topo, names, driver="qemu", **common)["cpu_mode"] == "host-model"


def parse_cmdline(line: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in line.split() if "=" in word)


def test_kernel_cmdline_names_nics_by_mac_and_carries_the_management_address():
    topo = load(DEFAULT_TOPOLOGY)
    node = topo.node("compute-1")
    args = parse_cmdline(kernel_cmdline("root=/dev/vda ro console=ttyS0", topo, node, KEY))
    assert args["root"] == "/dev/vda"
    assert args["systemd.hostname"] == "compute-1"
    assert args["flatbed.ifnames"] == "eth1=08:00:27:ee:49:bd,eth2=08:00:27:15:85:17"
    assert args["flatbed.mgmt"] == "eth1=192.168.56.202/24"
    assert args["flatbed.role"] == "compute"
    assert base64.b64decode(args["flatbed.ssh_key"]).decode() == KEY + "\n"


def test_kernel_cmdline_has_no_spaces_inside_values():
    topo = load(ALT)
    for node in topo.stack_nodes:
        line = kernel_cmdline("root=/dev/vda", topo, node, KEY)
        assert all(word.count("=") >= 1 for word in line.split()), line
        assert len(line) < 2048  # COMMAND_LINE_SIZE on x86


def test_management_network_has_the_gateway_and_no_dhcp_dns_or_forward():
    xml = ET.fromstring(network_xml("fb000001-mgmt", "eth1", "192.168.56.101", "255.255.255.0"))
    assert xml.find("forward") is None
    assert xml.find("ip/dhcp") is None
    assert xml.find("dns").get("enable") == "no"
    # vagrant-libvirt matches an existing network by its netmask attribute, not by prefix.
    assert xml.find("ip").attrib == {"address": "192.168.56.101", "netmask": "255.255.255.0"}
    assert xml.find("bridge").attrib == {"name": "eth1", "stp": "off", "delay": "0"}


def test_flat_network_has_no_ip_at_all():
    xml = ET.fromstring(network_xml("fb000001-flat", "flat"))
    assert xml.find("ip") is None and xml.find("forward") is None and xml.find("dns") is None


@pytest.mark.parametrize("line, expected", [
    ("==> compute-1: Starting domain.", ("compute-1", "domain started")),
    ("==> controller-1: Machine booted and ready!", ("controller-1", "SSH ready")),
    ("==> compute-2: Uploading base box image as volume into Libvirt storage...",
     ("compute-2", "uploading the box volume")),
    ("    compute-1: SSH address: 192.168.56.202:22", None),
    ("Bringing machine 'compute-1' up with 'libvirt' provider...", None),
])
def test_vagrant_phase_lines(line, expected):
    assert vagrant_phase(line) == expected


SSH_CONFIG = """\
Host controller-1
  HostName 192.168.56.200
  User root
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  IdentityFile /var/lib/flatbed/testbeds/fb000001/ssh/id_ed25519
  IdentitiesOnly yes
  LogLevel FATAL

Host compute-1
  HostName 192.168.56.202
  User root
  Port 22
  IdentityFile "/path with space/id_ed25519"
"""


def test_parse_ssh_config_reads_every_host_block():
    hosts = parse_ssh_config(SSH_CONFIG, ["controller-1", "compute-1"], "/default/id")
    assert hosts["controller-1"] == SSHRecord(host="192.168.56.200", port=22, user="root",
                                              identity="/var/lib/flatbed/testbeds/fb000001/ssh/id_ed25519")
    assert hosts["compute-1"].identity == "/path with space/id_ed25519"


def test_parse_ssh_config_without_a_node_is_one_line():
    with pytest.raises(FlatbedError, match="^vagrant ssh-config has no entry for compute-2$"):
        parse_ssh_config(SSH_CONFIG, ["controller-1", "compute-2"], "/default/id")


class _Fake:
    def __init__(self, why):
        self.why = why

    def auto_unsuitable(self, guest):
        assert guest == "built guest"  # judged with the images already built, never building one
        return self.why


def test_auto_prefers_vms_and_says_why_it_did_not():
    vagrant, nspawn = _Fake("KVM is not usable here"), _Fake(None)
    said: list[str] = []
    assert providers.pick_auto([("vagrant", vagrant), ("nspawn", nspawn)], "built guest", said.append) is nspawn
    assert said == ["provider auto: nspawn (passed over: vagrant: KVM is not usable here)"]


def test_auto_picks_vagrant_when_it_is_suitable():
    vagrant, nspawn = _Fake(None), _Fake(None)
    said: list[str] = []
    assert providers.pick_auto([("vagrant", vagrant), ("nspawn", nspawn)], "built guest", said.append) is vagrant
    assert said == ["provider auto: vagrant"]


def test_auto_with_nothing_usable_is_one_line():
    with pytest.raises(FlatbedError, match=r"^no usable provider \(vagrant: not installed; nspawn: needs root\)$"):
        providers.pick_auto([("vagrant", _Fake("not installed")), ("nspawn", _Fake("needs root"))], "built guest")


def test_vms_come_first_in_the_preference():
    assert providers.PREFERENCE == ("vagrant", "nspawn")


def test_vagrantfile_refuses_to_run_without_flatbeds_config():
    ruby = subprocess.run(["which", "ruby"], capture_output=True, text=True).stdout.strip()
    if not ruby:
        pytest.skip("ruby is not installed")
    # Evaluate the Vagrantfile's preamble only: Vagrant.configure is not defined outside vagrant.
    script = "module Vagrant; def self.configure(*); end; end; load ARGV[0]"
    proc = subprocess.run([ruby, "-e", script, str(REPO / "Vagrantfile")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert re.search(r"FLATBED_VAGRANT_CONFIG is not set", proc.stderr)


def test_a_second_vm_testbed_comes_up_beside_the_first_only_with_room_for_both():
    from flatbed.providers.vagrant import capacity

    cores, mib = capacity.testbed_needs()
    assert (cores, mib) == (3, 512 + 1024 + 1024 + 3 * capacity.OVERHEAD_MIB)
    assert not capacity.two_testbeds_fit(cores=2, free_mib=64 * 1024)       # this machine kind: one at a time
    assert not capacity.two_testbeds_fit(cores=16, free_mib=mib)            # cores, but memory for one
    assert capacity.two_testbeds_fit(cores=6, free_mib=2 * mib)
