"""stack/nova/network/manager.py + db.py: networks, allocation order, MACs, Essex lease rules."""

from __future__ import annotations

import re
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

STACK = Path(__file__).resolve().parents[1] / "stack"
sys.path.insert(0, str(STACK))

from nova import db as nova_db  # noqa: E402
from nova import flags  # noqa: E402
from nova.network import linux_net, manager  # noqa: E402

MAC = re.compile(r"^fa:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$")


class FakeDriver(SimpleNamespace):
    """linux_net's interface, recording calls; hostsfile text comes from the real formatter."""

    def __init__(self) -> None:
        super().__init__(calls=[], hostsfile=None)

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def update_dhcp(self, conf: flags.Flags, network: nova_db.Network,
                    fixed_ips: list[nova_db.FixedIp]) -> None:
        self.hostsfile = linux_net.get_dhcp_hosts(conf, fixed_ips)
        self.calls.append(("update_dhcp", (network.bridge,), {}))

    def get_dhcp_leases(self, conf: flags.Flags, fixed_ips: list[nova_db.FixedIp]) -> str:
        return linux_net.get_dhcp_leases(conf, fixed_ips)


def make(tmp_path: Path, extra: str = "") -> tuple[manager.FlatDHCPManager, FakeDriver]:
    conf = flags.parse(f"--flat_interface=eth2\n--my_ip=192.168.56.200\n--host=controller-1\n"
                       f"--state_path={tmp_path}\n{extra}")
    driver = FakeDriver()
    return manager.FlatDHCPManager(conf, nova_db.Database(conf.sqlite_path), driver), driver  # type: ignore[arg-type]


def document_network(mgr: manager.FlatDHCPManager) -> nova_db.Network:
    return mgr.create_network("novanetwork", "10.0.0.0/24", "br100", "eth2", "controller-1")


def test_create_network_rows(tmp_path: Path) -> None:
    mgr, _ = make(tmp_path)
    net = document_network(mgr)
    assert (net.cidr, net.gateway, net.broadcast, net.netmask, net.dhcp_start, net.dhcp_server, net.host) == (
        "10.0.0.0/24", "10.0.0.1", "10.0.0.255", "255.255.255.0", "10.0.0.2", "10.0.0.1", "controller-1")
    ips = mgr.db.fixed_ip_get_all()
    assert len(ips) == 256
    assert [ip.address for ip in ips if ip.reserved] == ["10.0.0.0", "10.0.0.1", "10.0.0.255"]
    assert all(ip.instance_id is None and not ip.allocated and not ip.leased for ip in ips)


def test_create_network_size_and_conflicts(tmp_path: Path) -> None:
    mgr, _ = make(tmp_path)
    net = mgr.create_network("big", "10.0.0.0/16", "br100", "eth2", "controller-1")
    assert net.cidr == "10.0.0.0/24"  # the first subnet of network_size (256) addresses, as Essex
    with pytest.raises(manager.NetworkError, match=r"conflicts with existing network big \(10.0.0.0/24\)"):
        mgr.create_network("again", "10.0.0.0/25", "br101", "eth2", "controller-1")
    with pytest.raises(manager.NetworkError, match="invalid IPv4 range"):
        mgr.create_network("bad", "10.0.0.300/24", "br102", "eth2", "controller-1")
    with pytest.raises(manager.NetworkError, match="bridge br100"):
        mgr.create_network("samebridge", "10.1.0.0/24", "br100", "eth2", "controller-1")


def test_init_host_sets_up_networks_of_this_host(tmp_path: Path) -> None:
    mgr, driver = make(tmp_path)
    document_network(mgr)
    mgr.create_network("elsewhere", "10.9.0.0/24", "br109", "eth2", "other-host")
    mgr.init_host()
    assert [call[0] for call in driver.calls] == [
        "init_host", "ensure_metadata_ip", "metadata_forward",
        "plug", "initialize_gateway_device", "update_dhcp"]
    assert driver.calls[3][1:] == (("br100", "eth2"), {"gateway": True})
    assert driver.hostsfile == ""  # the document's empty nova-br100.conf


def test_a_killed_dnsmasq_waits_for_the_next_allocation(tmp_path: Path) -> None:
    """Essex: nothing watches dnsmasq; the next allocation (or deallocation) rewrites the hostsfile
    and restart_dhcp starts a new one. Periodic tasks and lease events never touch it."""
    mgr, driver = make(tmp_path)
    document_network(mgr)
    mgr.init_host()
    mgr.allocate_for_instance(9, "cirros")
    mgr.lease_fixed_ip("10.0.0.2")
    driver.calls.clear()
    for _ in range(3):
        mgr.periodic_tasks()
    mgr.lease_fixed_ip("10.0.0.2")
    mgr.get_network()
    mgr.get_dhcp_leases(mgr.db.network_get(1))
    assert driver.calls == []
    mgr.allocate_for_instance(10, "vm2")
    assert [call[0] for call in driver.calls] == ["plug", "initialize_gateway_device", "update_dhcp"]
    driver.calls.clear()
    mgr.deallocate_for_instance(10)
    assert [call[0] for call in driver.calls] == ["update_dhcp"]


def test_allocation_order_and_hostsfile(tmp_path: Path) -> None:
    mgr, driver = make(tmp_path)
    document_network(mgr)
    first = mgr.allocate_for_instance(9, "cirros")
    second = mgr.allocate_for_instance(10, "vm2")
    assert (first["address"], second["address"]) == ("10.0.0.2", "10.0.0.3")
    assert MAC.match(first["mac"]) and MAC.match(second["mac"]) and first["mac"] != second["mac"]
    keys = ("bridge", "gateway", "cidr", "dhcp_server", "label", "bridge_interface")
    assert {k: first[k] for k in keys} == {
        "bridge": "br100", "gateway": "10.0.0.1", "cidr": "10.0.0.0/24", "dhcp_server": "10.0.0.1",
        "label": "novanetwork", "bridge_interface": "eth2"}
    assert driver.hostsfile == (f"{first['mac']},cirros.novalocal,10.0.0.2\n"
                                f"{second['mac']},vm2.novalocal,10.0.0.3")
    row = mgr.db.fixed_ip_get_by_address("10.0.0.2")
    assert (row.instance_id, row.allocated, row.leased, row.mac) == (9, True, False, first["mac"])
    with pytest.raises(manager.NetworkError, match="instance 9 already has a fixed IP"):
        mgr.allocate_for_instance(9, "cirros")


def test_pool_exhaustion_skips_reserved(tmp_path: Path) -> None:
    mgr, _ = make(tmp_path)
    mgr.create_network("tiny", "10.0.0.0/29", "br100", "eth2", "controller-1")
    got = [mgr.allocate_for_instance(9 + n, f"vm{n}")["address"] for n in range(5)]
    assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(manager.NetworkError, match="no free fixed IP"):
        mgr.allocate_for_instance(20, "vm-extra")
    assert mgr.db.fixed_ip_get_by_instance(20) == []


def test_never_leased_ip_waits_for_the_periodic_task(tmp_path: Path) -> None:
    """No lease, so no dnsmasq `del`: Essex freed the address only after fixed_ip_disassociate_timeout."""
    mgr, driver = make(tmp_path)
    document_network(mgr)
    mgr.allocate_for_instance(9, "cirros")
    assert mgr.deallocate_for_instance(9) == ["10.0.0.2"]
    assert driver.hostsfile == ""
    assert "release_dhcp" not in [c[0] for c in driver.calls]  # force_dhcp_release is off
    row = mgr.db.fixed_ip_get_by_address("10.0.0.2")
    assert (row.allocated, row.leased, row.instance_id) == (False, False, 9)
    assert mgr.allocate_for_instance(10, "next")["address"] == "10.0.0.3"
    now = datetime.now(UTC)
    assert mgr.disassociate_stale_fixed_ips(now + timedelta(seconds=599)) == 0
    assert mgr.disassociate_stale_fixed_ips(now + timedelta(seconds=601)) == 1
    assert mgr.db.fixed_ip_get_by_address("10.0.0.2").instance_id is None
    assert mgr.db.fixed_ip_get_by_address("10.0.0.3").instance_id == 10  # allocated: untouched
    assert mgr.allocate_for_instance(11, "third")["address"] == "10.0.0.2"


def test_periodic_task_spares_leased_and_other_hosts(tmp_path: Path) -> None:
    mgr, _ = make(tmp_path, "--fixed_ip_disassociate_timeout=0\n")
    document_network(mgr)
    mgr.create_network("other", "10.9.0.0/24", "br9", "eth9", "network-2")
    mgr.allocate_for_instance(9, "cirros")
    mgr.lease_fixed_ip("10.0.0.2")
    mgr.deallocate_for_instance(9)  # leased: waits for dnsmasq's `del` (lease expiry without force)
    with mgr.db.transaction() as conn:  # an address of another host's network, stale as can be
        conn.execute("UPDATE fixed_ips SET instance_id = 9, updated_at = '2000-01-01 00:00:00' "
                     "WHERE address = '10.9.0.2'")
    assert mgr.disassociate_stale_fixed_ips(datetime.now(UTC) + timedelta(days=1)) == 0
    assert mgr.db.fixed_ip_get_by_address("10.0.0.2").instance_id == 9
    assert mgr.db.fixed_ip_get_by_address("10.9.0.2").instance_id == 9


def test_leased_ip_waits_for_dnsmasq_del(tmp_path: Path) -> None:
    mgr, driver = make(tmp_path)
    document_network(mgr)
    mgr.allocate_for_instance(9, "cirros")
    mgr.lease_fixed_ip("10.0.0.2")
    assert mgr.db.fixed_ip_get_by_address("10.0.0.2").leased
    mgr.deallocate_for_instance(9)
    row = mgr.db.fixed_ip_get_by_address("10.0.0.2")
    assert (row.allocated, row.leased, row.instance_id) == (False, True, 9)  # still associated
    assert driver.hostsfile == ""
    assert mgr.allocate_for_instance(10, "other")["address"] == "10.0.0.3"
    mgr.release_fixed_ip("10.0.0.2")  # dnsmasq's `del`
    assert mgr.db.fixed_ip_get_by_address("10.0.0.2").instance_id is None
    assert mgr.allocate_for_instance(11, "third")["address"] == "10.0.0.2"


def test_release_of_allocated_ip_keeps_it(tmp_path: Path) -> None:
    """A lease expiring while the instance still exists (guest stopped DHCP) keeps the IP."""
    mgr, _ = make(tmp_path)
    document_network(mgr)
    mgr.allocate_for_instance(9, "cirros")
    mgr.lease_fixed_ip("10.0.0.2")
    mgr.release_fixed_ip("10.0.0.2")
    row = mgr.db.fixed_ip_get_by_address("10.0.0.2")
    assert (row.allocated, row.leased, row.instance_id) == (True, False, 9)


def test_lease_of_unassociated_ip_is_an_error(tmp_path: Path) -> None:
    mgr, _ = make(tmp_path)
    document_network(mgr)
    with pytest.raises(manager.NetworkError, match=r"IP 10.0.0.7 leased that is not associated"):
        mgr.lease_fixed_ip("10.0.0.7")
    with pytest.raises(manager.NetworkError, match=r"IP 10.0.0.7 released that is not associated"):
        mgr.release_fixed_ip("10.0.0.7")
    with pytest.raises(manager.NetworkError, match="fixed IP 10.9.9.9 not found"):
        mgr.lease_fixed_ip("10.9.9.9")


def test_force_dhcp_release(tmp_path: Path) -> None:
    mgr, driver = make(tmp_path, "--force_dhcp_release=true\n")
    document_network(mgr)
    mac = mgr.allocate_for_instance(9, "cirros")["mac"]
    mgr.lease_fixed_ip("10.0.0.2")
    mgr.deallocate_for_instance(9)
    assert ("release_dhcp", ("br100", "10.0.0.2", mac), {}) in driver.calls


def test_mac_format_and_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert all(MAC.match(manager.generate_mac_address()) for _ in range(500))
    mgr, _ = make(tmp_path)
    document_network(mgr)
    macs = iter(["fa:16:3e:00:00:01", "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"])
    monkeypatch.setattr(manager, "generate_mac_address", lambda: next(macs))
    assert mgr.allocate_for_instance(9, "a")["mac"] == "fa:16:3e:00:00:01"
    assert mgr.allocate_for_instance(10, "b")["mac"] == "fa:16:3e:00:00:02"  # one retry
    monkeypatch.setattr(manager, "generate_mac_address", lambda: "fa:16:3e:00:00:01")
    with pytest.raises(manager.NetworkError, match="unique MAC address in 5 attempts"):
        mgr.allocate_for_instance(11, "c")


def test_get_network_and_leases(tmp_path: Path) -> None:
    mgr, _ = make(tmp_path)
    net = document_network(mgr)
    assert mgr.get_network()["dhcp_server"] == "10.0.0.1"
    assert mgr.get_network(label="novanetwork")["bridge"] == "br100"
    with pytest.raises(manager.NetworkError):
        mgr.get_network(label="nope")
    mac = mgr.allocate_for_instance(9, "cirros")["mac"]
    assert re.fullmatch(rf"\d+ {mac} 10\.0\.0\.2 cirros \*", mgr.get_dhcp_leases(net))


def test_db_survives_reopen(tmp_path: Path) -> None:
    mgr, _ = make(tmp_path)
    document_network(mgr)
    mgr.allocate_for_instance(9, "cirros")
    mgr.db.close()
    again = nova_db.Database(str(tmp_path / "nova.sqlite"))
    assert again.fixed_ip_get_by_address("10.0.0.2").hostname == "cirros"
    with sqlite3.connect(tmp_path / "nova.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(nova_db.MIGRATIONS)

