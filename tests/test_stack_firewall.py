"""nova-compute's firewall: iptables chains (document §2.5), nwfilters, domain XML, security groups.

The compute's start of an instance — the lazy bridge's ``ensure_bridge``, the libvirt firewall
driver's basic filtering and ``prepare_instance_filter`` — runs against the stand-in kernel
(tests/fake_iptables.py); its ``iptables -S`` must be the document's compute listing.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "stack"))

from fake_iptables import FakeIptables  # noqa: E402
from test_stack_linux_net import FakeHost  # noqa: E402

from flatbed.checks import expect  # noqa: E402
from flatbed.checks.compare import assert_listing  # noqa: E402
from flatbed.topology import DEFAULT_TOPOLOGY, Topology  # noqa: E402
from flatbed.topology import load as load_topology  # noqa: E402
from nova import flags  # noqa: E402
from nova.cmd import nova as nova_cli  # noqa: E402
from nova.compute import security_groups  # noqa: E402
from nova.db import Database  # noqa: E402
from nova.network import iptables, linux_net  # noqa: E402
from nova.virt import firewall  # noqa: E402
from nova.virt.libvirt import config, connection  # noqa: E402
from nova.virt.libvirt import firewall as libvirt_firewall  # noqa: E402

# The document, §2.5: `sudo iptables -S` on compute-1 after the first guest, verbatim.
DOCUMENT_COMPUTE = """
-P INPUT ACCEPT

-P FORWARD ACCEPT

-P OUTPUT ACCEPT

-N nova-compute-FORWARD

-N nova-compute-INPUT

-N nova-compute-OUTPUT

-N nova-compute-inst-9

-N nova-compute-local

-N nova-compute-provider

-N nova-compute-sg-fallback

-N nova-filter-top

-A INPUT -j nova-compute-INPUT

-A FORWARD -j nova-filter-top

-A FORWARD -j nova-compute-FORWARD

... (virbr0 stuff omitted) ...

-A OUTPUT -j nova-filter-top

-A OUTPUT -j nova-compute-OUTPUT

-A nova-compute-FORWARD -i br100 -j ACCEPT

-A nova-compute-FORWARD -o br100 -j ACCEPT

-A nova-compute-inst-9 -m state --state INVALID -j DROP

-A nova-compute-inst-9 -m state --state RELATED,ESTABLISHED -j ACCEPT

-A nova-compute-inst-9 -j nova-compute-provider

-A nova-compute-inst-9 -s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT

-A nova-compute-inst-9 -s 10.0.0.0/24 -j ACCEPT

-A nova-compute-inst-9 -j nova-compute-sg-fallback

-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-9

-A nova-compute-sg-fallback -j DROP

-A nova-filter-top -j nova-compute-local
"""
# The document's elision: libvirt's virbr0 rules, which flatbed's computes do not have.
DOCUMENT_COMPUTE_LINES = [line for line in DOCUMENT_COMPUTE.splitlines() if "omitted" not in line]

MAC9, MAC10 = "fa:16:3e:2c:e8:ec", "fa:16:3e:11:22:33"


def network(address: str, mac: str) -> dict[str, Any]:
    """What nova-network's allocate_for_instance returns for the document's network."""
    return {"network_id": 1, "label": "novanetwork", "cidr": "10.0.0.0/24", "bridge": "br100",
            "bridge_interface": "eth2", "gateway": "10.0.0.1", "broadcast": "10.0.0.255",
            "netmask": "255.255.255.0", "dhcp_server": "10.0.0.1", "multi_host": False,
            "should_create_bridge": True, "address": address, "mac": mac}


class Compute:
    """nova-compute's iptables side on the stand-in kernel: plug + firewall driver."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, allow_same_net_traffic: bool = True):
        self.kernel = FakeIptables()
        self.manager = iptables.IptablesManager("nova-compute", execute=self.kernel.execute, lock_path=str(tmp_path))
        monkeypatch.setattr(linux_net, "iptables_manager", self.manager)
        monkeypatch.setattr(linux_net, "execute", FakeHost({"eth2"}, {}, {}))
        self.driver = firewall.IptablesFirewallDriver(allow_same_net_traffic, iptables=self.manager)

    def boot(self, instance_id: int, net: dict[str, Any], rules: list[dict[str, Any]] | None = None,
             groups: list[str] | None = None) -> None:
        instance = {"id": instance_id, "name": f"instance-{instance_id:08x}",
                    "security_groups": groups or ["default"]}
        linux_net.ensure_bridge(net["bridge"], net["bridge_interface"])  # the lazy bridge (plug)
        self.driver.setup_basic_filtering(instance, [net])
        self.driver.prepare_instance_filter(instance, [net], rules or [])

    def listing(self) -> list[str]:
        return self.kernel.listing("filter")


@pytest.fixture
def topo() -> Topology:
    return load_topology(DEFAULT_TOPOLOGY)


# --- iptables ------------------------------------------------------------------------------

def test_nothing_applied_before_the_first_instance(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    compute = Compute(monkeypatch, tmp_path)
    assert compute.kernel.commands == []
    assert compute.listing() == expect.compute_before_boot_filter() == [
        "-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT"]


def test_first_instance_gives_the_documents_listing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    topo: Topology) -> None:
    compute = Compute(monkeypatch, tmp_path)
    compute.boot(9, network("10.0.0.2", MAC9))
    assert_listing(DOCUMENT_COMPUTE_LINES, compute.listing(), "compute iptables -S")
    assert_listing(DOCUMENT_COMPUTE_LINES, expect.compute_filter(topo, [(9, "10.0.0.2")]), "expect.compute_filter")


def test_id_10_is_chain_inst_10(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, topo: Topology) -> None:
    """The chain takes the decimal DB id; the instance name is hex (instance-0000000a)."""
    compute = Compute(monkeypatch, tmp_path)
    compute.boot(10, network("10.0.0.3", MAC10))
    listing = compute.listing()
    assert "-A nova-compute-local -d 10.0.0.3/32 -j nova-compute-inst-10" in listing
    assert not [line for line in listing if "inst-a" in line or "0000000a" in line]
    assert_listing(expect.compute_filter(topo, [(10, "10.0.0.3")]), listing, "compute iptables -S")


def test_two_instances_and_unfilter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, topo: Topology) -> None:
    compute = Compute(monkeypatch, tmp_path)
    compute.boot(9, network("10.0.0.2", MAC9))
    compute.boot(10, network("10.0.0.3", MAC10))
    assert_listing(expect.compute_filter(topo, [(9, "10.0.0.2"), (10, "10.0.0.3")]), compute.listing(), "two")
    compute.driver.unfilter_instance({"id": 9})
    assert_listing(expect.compute_filter(topo, [(10, "10.0.0.3")]), compute.listing(), "after deleting 9")
    compute.driver.unfilter_instance({"id": 10})
    compute.driver.unfilter_instance({"id": 10})  # twice: only logged
    # No instance chain or dispatch left; the bridge's FORWARD rules, provider, sg-fallback stay.
    assert_listing(expect.compute_filter(topo, []), compute.listing(), "after deleting both")


def whole_word_boots(compute: Compute) -> None:
    """Instances 1 and 10..12, then instance 1 deleted: the chain names share the prefix ``inst-1``."""
    for instance_id in (1, 10, 11, 12):
        compute.boot(instance_id, network(f"10.0.0.{instance_id + 1}", f"fa:16:3e:00:00:{instance_id:02x}"))
    compute.driver.unfilter_instance({"id": 1})


WHOLE_WORD_LOCAL = [f"-A nova-compute-local -d 10.0.0.{i + 1}/32 -j nova-compute-inst-{i}" for i in (10, 11, 12)]


def test_removing_inst_1_keeps_the_jumps_to_inst_10_to_12(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Essex matched the jump as a substring and dropped these too (a declared deviation): whole words here."""
    compute = Compute(monkeypatch, tmp_path)
    whole_word_boots(compute)
    listing = compute.listing()
    assert [line for line in listing if line.startswith("-A nova-compute-local ")] == WHOLE_WORD_LOCAL
    assert not [line for line in listing if "inst-1 " in f"{line} "]


def test_without_allow_same_net_traffic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    compute = Compute(monkeypatch, tmp_path, allow_same_net_traffic=False)
    compute.boot(9, network("10.0.0.2", MAC9))
    chain = [line for line in compute.listing() if line.startswith("-A nova-compute-inst-9 ")]
    assert chain == [
        "-A nova-compute-inst-9 -m state --state INVALID -j DROP",
        "-A nova-compute-inst-9 -m state --state RELATED,ESTABLISHED -j ACCEPT",
        "-A nova-compute-inst-9 -j nova-compute-provider",
        "-A nova-compute-inst-9 -s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT",
        "-A nova-compute-inst-9 -j nova-compute-sg-fallback"]


ICMP_ANY = {"protocol": "icmp", "from_port": -1, "to_port": -1, "cidr": "0.0.0.0/0"}
SSH = {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "0.0.0.0/0"}


@pytest.mark.parametrize("instance_id", [9, 10])
def test_security_group_rules_before_the_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, topo: Topology,
                                                  instance_id: int) -> None:
    compute = Compute(monkeypatch, tmp_path)
    ip = f"10.0.0.{instance_id - 7}"
    rules = [ICMP_ANY, SSH, {"protocol": "icmp", "from_port": 8, "to_port": -1, "cidr": "10.0.0.0/24"},
             {"protocol": "icmp", "from_port": 3, "to_port": 4, "cidr": "192.168.56.0/24"},
             {"protocol": "udp", "from_port": 5000, "to_port": 5010, "cidr": "10.0.0.5/32"}]
    compute.boot(instance_id, network(ip, MAC9), rules)
    canonical = ("-p icmp -j ACCEPT", "-p tcp -m tcp --dport 22 -j ACCEPT",
                 "-s 10.0.0.0/24 -p icmp -m icmp --icmp-type 8 -j ACCEPT",
                 "-s 192.168.56.0/24 -p icmp -m icmp --icmp-type 3/4 -j ACCEPT",
                 "-s 10.0.0.5/32 -p udp -m multiport --dports 5000:5010 -j ACCEPT")
    assert_listing(expect.compute_filter(topo, [(instance_id, ip)], canonical), compute.listing(), "with rules")


def test_refresh_rebuilds_every_chain_as_essex(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               topo: Topology) -> None:
    """Essex's do_refresh_security_group_rules rebuilt every instance's chain, in the group or not."""
    compute = Compute(monkeypatch, tmp_path)
    compute.boot(9, network("10.0.0.2", MAC9))
    compute.boot(10, network("10.0.0.3", MAC10), groups=["web"])
    assert compute.driver.refresh_security_group_rules("default", [ICMP_ANY]) == [9, 10]
    listing = compute.listing()
    assert "-A nova-compute-inst-9 -p icmp -j ACCEPT" in listing
    assert not [line for line in listing if line.startswith("-A nova-compute-inst-10 -p icmp")]  # not in default
    assert [line for line in listing if line.startswith("-A nova-compute-local ")] == [
        "-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-9",
        "-A nova-compute-local -d 10.0.0.3/32 -j nova-compute-inst-10"]
    assert compute.driver.refresh_security_group_rules("web", [SSH]) == [9, 10]
    assert "-A nova-compute-inst-9 -p icmp -j ACCEPT" in compute.listing()  # 9 keeps its own rules
    compute.driver.unfilter_instance({"id": 10})
    assert compute.driver.refresh_security_group_rules("default", []) == [9]
    assert_listing(DOCUMENT_COMPUTE_LINES, compute.listing(), "rule removed again")


@pytest.mark.parametrize("trigger", ["secgroup refresh", "next boot"])
def test_flushed_iptables_come_back_at_the_next_apply(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       topo: Topology, trigger: str) -> None:
    """`iptables -F; iptables -X` on a compute: every rule nova-compute holds comes back at its
    next apply (Essex had no periodic one): a security-group refresh, or the next instance."""
    compute = Compute(monkeypatch, tmp_path)
    compute.boot(9, network("10.0.0.2", MAC9))
    compute.kernel.tables = FakeIptables().tables  # flushed behind nova-compute's back
    assert compute.listing() == expect.compute_before_boot_filter()
    if trigger == "secgroup refresh":
        compute.driver.refresh_security_group_rules("default", [])
        assert_listing(DOCUMENT_COMPUTE_LINES, compute.listing(), "after the refresh")
    else:
        compute.boot(10, network("10.0.0.3", MAC10))
        assert_listing(expect.compute_filter(topo, [(9, "10.0.0.2"), (10, "10.0.0.3")]), compute.listing(),
                       "after the next boot")


def test_provider_chain_refreshed_at_every_instance(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Essex's prepare_instance_filter emptied and rebuilt the provider chain, and applied, each time."""
    compute = Compute(monkeypatch, tmp_path)
    compute.boot(9, network("10.0.0.2", MAC9))
    compute.manager.ipv4["filter"].add_rule("provider", "-s 192.0.2.0/24 -j DROP")  # a stale rule
    restores = compute.kernel.commands.count(["iptables-restore"])
    compute.boot(10, network("10.0.0.3", MAC10))
    assert "-A nova-compute-provider -s 192.0.2.0/24 -j DROP" not in compute.listing()
    # The provider refresh applies, then prepare_instance_filter applies again (filter + nat each).
    assert compute.kernel.commands.count(["iptables-restore"]) - restores == 4


def test_instance_rules_in_novas_text() -> None:
    rules = firewall.instance_rules([network("10.0.0.2", MAC9)], [SSH], allow_same_net_traffic=True)
    assert rules == ["-m state --state INVALID -j DROP", "-m state --state ESTABLISHED,RELATED -j ACCEPT",
                     "-j $provider", "-s 10.0.0.1 -p udp --sport 67 --dport 68 -j ACCEPT", "-s 10.0.0.0/24 -j ACCEPT",
                     "-j ACCEPT -p tcp --dport 22 -s 0.0.0.0/0", "-j $sg-fallback"]
    assert firewall.instance_chain_name(10) == "inst-10"


# --- nwfilter and domain XML ----------------------------------------------------------------

class FakeNWFilterConn:
    """The libvirt calls NWFilterFirewall makes, refusing a redefinition without the uuid as libvirt does."""

    def __init__(self, builtins: tuple[str, ...] = libvirt_firewall.BASE_FILTERS) -> None:
        self.filters: dict[str, str] = {name: f"<filter name='{name}'/>" for name in builtins}
        self.uuids: dict[str, str] = {name: f"uuid-{name}" for name in builtins}
        self.defined: list[str] = []

    def listNWFilters(self) -> list[str]:  # noqa: N802 (libvirt's name)
        return list(self.filters)

    def nwfilterDefineXML(self, xml: str) -> None:  # noqa: N802
        import libvirt

        element = ET.fromstring(xml)
        name = element.get("name")
        assert name
        if name in self.filters and element.findtext("uuid") != self.uuids[name]:
            raise libvirt.libvirtError(f"operation failed: filter '{name}' already exists with uuid {self.uuids[name]}")
        self.filters[name] = xml
        self.uuids.setdefault(name, element.findtext("uuid") or f"uuid-{name}")
        self.defined.append(name)

    def nwfilterLookupByName(self, name: str) -> Any:  # noqa: N802
        import libvirt

        conn = self

        class Filter:
            def undefine(self) -> None:
                del conn.filters[name]
                del conn.uuids[name]

            def UUIDString(self) -> str:  # noqa: N802
                return conn.uuids[name]

        if name not in self.filters:
            error = libvirt.libvirtError(f"Network filter not found: no nwfilter with matching name '{name}'")
            error.err = (libvirt.VIR_ERR_NO_NWFILTER, 0, "", 0, "", None, None, 0, 0)
            raise error
        return Filter()


def test_nwfilters_defined_and_removed() -> None:
    conn = FakeNWFilterConn()
    nwfilter = libvirt_firewall.NWFilterFirewall(lambda: conn)
    instance = {"id": 9, "name": "instance-00000009"}
    nwfilter.setup_basic_filtering(instance, [network("10.0.0.2", MAC9)])
    nwfilter.setup_basic_filtering({"id": 10, "name": "instance-0000000a"}, [network("10.0.0.3", MAC10)])
    assert conn.defined == ["nova-base", "nova-vpn", "nova-allow-dhcp-server",
                            "nova-instance-instance-00000009-fa163e2ce8ec",
                            "nova-instance-instance-0000000a-fa163e112233"]
    base = ET.fromstring(conn.filters["nova-base"])
    assert (base.get("chain"), [ref.get("filter") for ref in base]) == (
        "root", ["no-mac-spoofing", "no-ip-spoofing", "no-arp-spoofing", "allow-dhcp-server"])
    mine = ET.fromstring(conn.filters["nova-instance-instance-00000009-fa163e2ce8ec"])
    assert (mine.get("chain"), [ref.get("filter") for ref in mine]) == ("root", ["nova-base"])
    dhcp = ET.fromstring(conn.filters["nova-allow-dhcp-server"])
    assert dhcp.get("chain") == "ipv4"
    assert [(r.get("direction"), r[0].get("srcipaddr")) for r in dhcp.findall("rule")] == [
        ("out", "0.0.0.0"), ("in", "$DHCPSERVER")]
    assert conn.uuids["nova-allow-dhcp-server"] == "891e4787-e5c0-d59b-cbd6-41bc3c6b36fc"  # Essex's own
    # A restarted nova-compute (a new NWFilterFirewall) redefines everything with the uuids.
    again = libvirt_firewall.NWFilterFirewall(lambda: conn)
    again.setup_basic_filtering(instance, [network("10.0.0.2", MAC9)])
    assert conn.defined[5:] == ["nova-base", "nova-vpn", "nova-allow-dhcp-server",
                                "nova-instance-instance-00000009-fa163e2ce8ec"]
    assert ET.fromstring(conn.filters["nova-base"]).findtext("uuid") == "uuid-nova-base"
    nwfilter.unfilter_instance(instance, [network("10.0.0.2", MAC9)])
    nwfilter.unfilter_instance(instance, [network("10.0.0.2", MAC9)])  # gone already: fine
    assert "nova-instance-instance-00000009-fa163e2ce8ec" not in conn.filters


def test_nova_allow_dhcp_server_takes_essex_uuid_over_an_older_definition() -> None:
    conn = FakeNWFilterConn()
    conn.filters["nova-allow-dhcp-server"] = "<filter name='nova-allow-dhcp-server'/>"
    conn.uuids["nova-allow-dhcp-server"] = "0b5d7a1c-0000-4000-8000-000000000000"  # defined before the fix
    libvirt_firewall.NWFilterFirewall(lambda: conn).setup_basic_filtering(
        {"id": 9, "name": "instance-00000009"}, [network("10.0.0.2", MAC9)])
    assert conn.uuids["nova-allow-dhcp-server"] == "891e4787-e5c0-d59b-cbd6-41bc3c6b36fc"


def test_nwfilter_needs_libvirts_builtin_filters() -> None:
    conn = FakeNWFilterConn(builtins=("no-mac-spoofing", "no-ip-spoofing"))
    with pytest.raises(RuntimeError, match="lacks the built-in nwfilters no-arp-spoofing, allow-dhcp-server"):
        libvirt_firewall.NWFilterFirewall(lambda: conn).setup_basic_filtering(
            {"id": 9, "name": "instance-00000009"}, [network("10.0.0.2", MAC9)])


def _spec(**kwargs: Any) -> config.DomainSpec:
    net = network("10.0.0.3", MAC10)
    base = {"name": "instance-0000000a", "uuid": "5357143d-66f5-446c-a82f-86648ebb3842", "memory_mb": 256,
            "vcpus": 1, "virt_type": "qemu", "console_log": "/var/lib/nova/instances/instance-0000000a/console.log",
            "mac": MAC10, "bridge": "br100",
            "filterref": libvirt_firewall.instance_filter_name("instance-0000000a", MAC10),
            "filter_params": libvirt_firewall.filter_parameters(net, True)}
    return config.DomainSpec(**(base | kwargs))


@pytest.mark.parametrize("kind", ["kernel", "disk"])
def test_domain_xml(kind: str, topo: Topology) -> None:
    if kind == "kernel":
        spec = _spec(kernel="/i/kernel", ramdisk="/i/ramdisk", cmdline="console=ttyS0")
    else:
        spec = _spec(disk="/i/disk")
    dom = ET.fromstring(config.domain_xml(spec))
    assert (dom.get("type"), dom.findtext("name"), dom.findtext("memory"), dom.findtext("vcpu")) == (
        "qemu", "instance-0000000a", "256", "1")
    if kind == "kernel":
        assert (dom.findtext("os/kernel"), dom.findtext("os/initrd")) == ("/i/kernel", "/i/ramdisk")
        assert dom.find("devices/disk") is None
    else:
        assert dom.find("os/boot").get("dev") == "hd"
        disk = dom.find("devices/disk")
        assert (disk.find("driver").get("type"), disk.find("source").get("file"), disk.find("target").get("bus")) == (
            "qcow2", "/i/disk", "virtio")
    assert dom.find("features/acpi") is not None and dom.find("features/apic") is not None
    nic = dom.find("devices/interface")
    assert (nic.get("type"), nic.find("source").get("bridge"), nic.find("mac").get("address"),
            nic.find("model").get("type")) == ("bridge", "br100", MAC10, "virtio")
    ref = nic.find("filterref")
    assert ref.get("filter") == expect.instance_filter_name("instance-0000000a", MAC10) == (
        "nova-instance-instance-0000000a-fa163e112233")
    assert {p.get("name"): p.get("value") for p in ref.findall("parameter")} == expect.filter_parameters(
        topo, "10.0.0.3") == {"IP": "10.0.0.3", "DHCPSERVER": "10.0.0.1", "PROJNET": "10.0.0.0",
                              "PROJMASK": "255.255.255.0"}
    serial = dom.findall("devices/serial")
    assert [s.get("type") for s in serial] == ["file", "pty"]


def test_filter_parameters_without_same_net() -> None:
    assert libvirt_firewall.filter_parameters(network("10.0.0.2", MAC9), False) == (
        ("IP", "10.0.0.2"), ("DHCPSERVER", "10.0.0.1"))


def test_instance_id_from_name() -> None:
    assert connection.instance_id_from_name("instance-0000000a") == 10


# --- security groups (controller) ------------------------------------------------------------

def test_security_group_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = Database(str(tmp_path / "nova.sqlite"))
    groups = security_groups.SecurityGroups(db)
    assert groups.list_groups() == [{"name": "default", "description": "default"}]
    assert groups.rules("default") == []
    assert groups.add_rule("default", "ICMP", "-1", "-1", "0.0.0.0/0") == ICMP_ANY
    groups.add_rule("default", "tcp", 22, 22, "0.0.0.0/0")
    with pytest.raises(security_groups.SecurityGroupError, match="already exists"):
        groups.add_rule("default", "tcp", 22, 22, "0.0.0.0/0")
    assert groups.rules("default") == [ICMP_ANY, SSH]
    with sqlite3.connect(tmp_path / "nova.sqlite") as conn:
        conn.execute("INSERT INTO instances (id, hostname, created_at) VALUES (9, 'cirros', 'now')")
    groups.add_instance(9)
    assert groups.groups_of(9) == ["default"] and groups.groups_of(10) == ["default"]
    assert groups.rules_for_instance(9) == [ICMP_ANY, SSH]
    groups.delete_rule("default", "tcp", "22", "22", "0.0.0.0/0")
    with pytest.raises(security_groups.SecurityGroupError, match="Rule not found"):
        groups.delete_rule("default", "tcp", "22", "22", "0.0.0.0/0")
    with pytest.raises(security_groups.SecurityGroupError, match="Security group web not found"):
        groups.rules("web")
    assert groups.refresh_computes("default") == {}  # no compute registered


@pytest.mark.parametrize(("args", "message"), [
    (("gre", 1, 1, "0.0.0.0/0"), "Invalid IP protocol gre."),
    (("tcp", "a", 1, "0.0.0.0/0"), "Port values must be integers."),
    (("tcp", 0, 22, "0.0.0.0/0"), "Invalid port range"),
    (("tcp", 23, 22, "0.0.0.0/0"), "Invalid port range"),
    (("icmp", 256, -1, "0.0.0.0/0"), "ICMP type and code"),
    (("tcp", 22, 22, "10.0.0.300/24"), "Invalid CIDR"),
    (("tcp", 22, 22, "::/0"), "Only IPv4"),
])
def test_rule_validation(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(security_groups.SecurityGroupError, match=message):
        security_groups.validate_rule(*args)


def test_nova_secgroup_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flagfile = tmp_path / "nova.conf"
    flagfile.write_text(f"--state_path={tmp_path}\n--my_ip=192.168.56.200\n--host=controller-1\n")
    base = [f"--flagfile={flagfile}"]
    assert nova_cli.main(base + ["secgroup-add-rule", "default", "icmp", "-1", "-1", "0.0.0.0/0"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "+-------------+-----------+---------+-----------+--------------+",
        "| IP Protocol | From Port | To Port |  IP Range | Source Group |",
        "+-------------+-----------+---------+-----------+--------------+",
        "| icmp        | -1        | -1      | 0.0.0.0/0 |              |",
        "+-------------+-----------+---------+-----------+--------------+"]
    assert nova_cli.main(base + ["secgroup-list-rules", "default"]) == 0
    assert "| icmp        | -1        | -1      | 0.0.0.0/0 |" in capsys.readouterr().out
    assert nova_cli.main(base + ["secgroup-add-rule", "default", "tcp", "22", "21", "0.0.0.0/0"]) == 1
    assert capsys.readouterr().err.startswith("ERROR: Invalid port range")
    assert nova_cli.main(base + ["secgroup-delete-rule", "default", "icmp", "-1", "-1", "0.0.0.0/0"]) == 0
    assert nova_cli.main(base + ["secgroup-list"]) == 0
    assert "| default | default     |" in capsys.readouterr().out
    assert flags.load(str(flagfile)).state_path == str(tmp_path)
    assert os.path.exists(tmp_path / "nova.sqlite")
