"""The VM nodes are what the document's machines were (vagrant provider only).

- each VM has exactly the document's NICs, named eth1/eth2 by the topology's MACs, and after
  provisioning its only default route is via the management gateway (no Vagrant NIC, no NAT);
- the outside host (the testbed's namespace) holds the gateway address and reaches every node;
- the libvirt networks have no DHCP, no DNS, no forwarding, and the flat one no IP;
- only the run's own SSH key is authorised (never Vagrant's insecure key);
- every VM's serial console is logged in the run's artifacts;
- br_netfilter is loaded everywhere, and computes have /dev/kvm where the VM's CPU offers svm/vmx.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from ipaddress import ip_interface
from pathlib import Path

import pytest

from flatbed.providers.vagrant import physical_nics
from flatbed.topology import Topology

pytestmark = [pytest.mark.vms, pytest.mark.usefixtures("vms_only")]

INSECURE_KEY = Path("/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub")


@pytest.fixture(scope="module")
def stack_names(topology: Topology) -> list[str]:
    return [n.name for n in topology.stack_nodes]


def test_each_vm_has_exactly_the_documents_nics(testbed, topology):
    for spec in topology.stack_nodes:
        mgmt, flat = topology.management.interface, topology.flat.interface
        assert physical_nics(testbed.node(spec.name)) == {mgmt: spec.macs[mgmt], flat: spec.macs[flat]}, spec.name


def test_management_address_and_the_only_default_route(testbed, topology):
    for spec in topology.stack_nodes:
        node = testbed.node(spec.name)
        mgmt = topology.management.interface
        addrs = node.check(["ip", "-4", "-o", "addr", "show", "dev", mgmt])
        assert f"{spec.address}/{topology.management.cidr.prefixlen}" in addrs
        defaults = node.check(["ip", "-4", "route", "show", "default"]).strip().splitlines()
        assert defaults == [f"default via {topology.management.gateway} dev {mgmt} metric 100"], spec.name


def test_outside_host_is_the_gateway_and_reaches_every_node(testbed, topology):
    outside = testbed.node(topology.outside.name)
    addrs = outside.check(["ip", "-4", "-o", "addr", "show"])
    assert f"{topology.management.gateway}/{topology.management.cidr.prefixlen}" in addrs
    ours = [ip_interface(word) for line in addrs.splitlines() for word in line.split() if "/" in word]
    assert not [a for a in ours if a.ip in topology.flat.cidr], "the host has an address in the flat subnet"
    for spec in topology.stack_nodes:  # the host may have no ping; sshd's port answers as well
        probe = f"import socket; socket.create_connection(('{spec.address}', 22), 5).close()"
        assert outside.run(["python3", "-c", probe]).ok, spec.name


def test_libvirt_networks_have_no_dhcp_dns_or_forwarding(testbed):
    import libvirt

    rec = testbed.state.record
    conn = libvirt.open(rec.uri)
    try:
        for key, name in rec.networks.items():
            xml = ET.fromstring(conn.networkLookupByName(name).XMLDesc())
            assert xml.find("forward") is None, name
            assert xml.find("ip/dhcp") is None, name
            if key == "flat":
                assert xml.find("ip") is None, name
            else:
                assert xml.find("dns").get("enable") == "no", name
    finally:
        conn.close()


def test_only_the_runs_key_is_authorised(testbed, stack_names):
    run_key = (testbed.dir / "ssh" / "id_ed25519.pub").read_text().split()[1]
    insecure = INSECURE_KEY.read_text().split()[1] if INSECURE_KEY.exists() else "AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8"
    for name in stack_names:
        keys = testbed.node(name).check("cat /root/.ssh/authorized_keys; cat /home/*/.ssh/authorized_keys "
                                        "2>/dev/null || true")
        assert [line.split()[1] for line in keys.splitlines() if line.strip()] == [run_key], name
        assert insecure not in keys, name


def test_serial_consoles_are_in_the_runs_logs(testbed, topology):
    for spec in topology.stack_nodes:
        log = (testbed.dir / "logs" / f"{spec.name}.console.log").read_text(errors="replace")
        mgmt = topology.management.interface
        assert f"flatbed-initramfs: {mgmt} is {spec.macs[mgmt]}" in log, spec.name
        assert f"{spec.name} login:" in log, spec.name


def test_bridge_netfilter_and_kvm_modules(testbed, topology):
    for spec in topology.stack_nodes:
        node = testbed.node(spec.name)
        assert node.run("test -d /sys/module/br_netfilter").ok, spec.name
        if spec.role == "compute" and node.run("grep -qwE 'svm|vmx' /proc/cpuinfo").ok:
            assert node.exists("/dev/kvm"), f"{spec.name}: the CPU offers svm/vmx but /dev/kvm is missing"
