"""nova-compute's manager: init_host after a restart or a host reboot, and the periodic power-state
sync, against a stand-in libvirt driver and a stand-in instances table (no node, no network), and the
libvirt driver's part of it on a stand-in libvirt connection."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt
import pytest

STACK = Path(__file__).resolve().parents[1] / "stack"
sys.path.insert(0, str(STACK))

from fake_iptables import FakeIptables  # noqa: E402
from test_stack_firewall import Compute, FakeNWFilterConn  # noqa: E402

from nova import flags, rpc  # noqa: E402
from nova.compute import power_state  # noqa: E402
from nova.compute.manager import ComputeManager  # noqa: E402
from nova.network import linux_net  # noqa: E402
from nova.virt.libvirt import connection  # noqa: E402
from nova.virt.libvirt import firewall as libvirt_firewall  # noqa: E402

NETWORK = {"bridge": "br100", "bridge_interface": "eth2", "should_create_bridge": True, "multi_host": False,
           "address": "10.0.0.2", "mac": "fa:16:3e:2c:e8:ec", "cidr": "10.0.0.0/24", "dhcp_server": "10.0.0.1"}


def name(instance_id: int) -> str:
    return f"instance-{instance_id:08x}"


class Driver:
    """Domains by name with their libvirt state; the firewall state an earlier spawn left on disk."""

    def __init__(self, domains: dict[int, int | None]) -> None:
        self.domains = {name(i): state for i, state in domains.items() if state is not None}
        self.spawned = {name(i) for i in domains}
        self.calls: list[str] = []

    def firewall_state(self, instance_name: str) -> dict[str, Any] | None:
        if instance_name not in self.spawned:
            return None
        return {"instance": {"name": instance_name}, "network": NETWORK, "rules": []}

    def list_instances(self) -> list[str]:
        return [n for n, state in self.domains.items() if state == power_state.RUNNING]

    def get_num_instances(self) -> int:
        return len(self.list_instances())

    def get_power_state(self, instance_name: str) -> int | None:
        return self.domains.get(instance_name)

    def ensure_filtering_rules_for_instance(self, state: dict[str, Any]) -> None:
        self.calls.append(f"filter {state['instance']['name']}")

    def resume_state_on_host_boot(self, state: dict[str, Any], plug: Any) -> None:
        plug(state["network"])
        self.calls.append(f"resume {state['instance']['name']}")
        self.domains[state["instance"]["name"]] = power_state.RUNNING


class Records:
    """The instances table as nova-api lets nova-compute see it."""

    def __init__(self, rows: list[dict[str, Any]], reachable: bool = True) -> None:
        self.rows = rows
        self.reachable = reachable
        self.updates: list[tuple[int, int, str | None]] = []
        self.reads = 0

    def get_all_by_host(self, retry_for: float = 0.0) -> list[dict[str, Any]]:
        if not self.reachable:
            raise rpc.RemoteError("instances_on_host", "192.0.2.1:8774", "Connection refused", delivered=False)
        self.reads += 1
        return [dict(row) for row in self.rows]

    def set_power_state(self, instance_id: int, state: int, vm_state: str | None = None) -> None:
        self.updates.append((instance_id, state, vm_state))
        for row in self.rows:
            if row["id"] == instance_id:
                row["power_state"] = state
                row["vm_state"] = vm_state or row["vm_state"]


def row(instance_id: int, state: int, vm_state: str = "active") -> dict[str, Any]:
    return {"id": instance_id, "name": name(instance_id), "vm_state": vm_state, "task_state": None,
            "power_state": state}


def manager(driver: Driver, records: Records, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> ComputeManager:
    monkeypatch.setattr(linux_net, "ensure_bridge",
                        lambda bridge, iface, gateway=True: driver.calls.append(f"plug {bridge} {iface}"))
    conf = flags.parse(f"--flat_interface=eth2\n--my_ip=192.0.2.2\n--host=compute-1\n--metadata_host=192.0.2.1\n"
                       f"{extra}")
    return ComputeManager(conf, driver=driver, records=records)  # type: ignore[arg-type]


RUNNING, SHUTOFF, NOSTATE = power_state.RUNNING, power_state.SHUTOFF, power_state.NOSTATE


# --- init_host ------------------------------------------------------------------------------------

def test_restart_plugs_once_then_filters_the_running_guests(monkeypatch: pytest.MonkeyPatch) -> None:
    driver = Driver({9: RUNNING, 10: RUNNING, 11: SHUTOFF})
    records = Records([row(9, RUNNING), row(10, RUNNING), row(11, SHUTOFF, "shutoff")])
    assert manager(driver, records, monkeypatch).init_host() == [name(9), name(10)]
    assert driver.calls == ["plug br100 eth2", f"filter {name(9)}", f"filter {name(10)}"]


def test_host_reboot_without_the_flag_leaves_guests_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Essex's default (resume_guests_state_on_host_boot=False): the bridge only."""
    driver = Driver({9: SHUTOFF})
    assert manager(driver, Records([row(9, RUNNING)]), monkeypatch).init_host() == []
    assert driver.calls == ["plug br100 eth2"]


def test_host_reboot_resumes_what_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    """A guest the database saw running but the rebooted host has shut off starts again; one the
    sync had already marked SHUTOFF, or a build without a domain yet, does not."""
    driver = Driver({9: SHUTOFF, 10: SHUTOFF, 11: None})
    records = Records([row(9, RUNNING), row(10, SHUTOFF, "shutoff"), row(11, NOSTATE, "building")])
    mgr = manager(driver, records, monkeypatch, "--resume_guests_state_on_host_boot\n")
    assert mgr.init_host() == [name(9)]
    assert driver.calls == ["plug br100 eth2", "plug br100 eth2", f"resume {name(9)}"]


def test_start_guests_on_host_boot_starts_every_guest(monkeypatch: pytest.MonkeyPatch) -> None:
    driver = Driver({9: SHUTOFF, 10: RUNNING})
    mgr = manager(driver, Records([row(9, SHUTOFF, "shutoff"), row(10, RUNNING)]), monkeypatch,
                  "--start_guests_on_host_boot=true\n")
    assert mgr.init_host() == [name(9), name(10)]
    assert [c for c in driver.calls if not c.startswith("plug")] == [f"resume {name(9)}", f"resume {name(10)}"]


def test_without_nova_api_the_running_guests_are_filtered(monkeypatch: pytest.MonkeyPatch) -> None:
    driver = Driver({9: RUNNING, 10: SHUTOFF})
    mgr = manager(driver, Records([], reachable=False), monkeypatch, "--resume_guests_state_on_host_boot\n")
    assert mgr.init_host() == [name(9)]
    assert driver.calls == ["plug br100 eth2", f"filter {name(9)}"]


# --- the power-state sync -------------------------------------------------------------------------

def test_sync_runs_every_eleventh_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Essex: @periodic_task(ticks_between_runs=10) on a periodic_interval tick (60 s: 660 s)."""
    records = Records([row(9, RUNNING)])
    mgr = manager(Driver({9: RUNNING}), records, monkeypatch)
    runs = []
    for tick in range(1, 34):
        before = records.reads
        mgr.periodic_tasks()
        if records.reads > before:
            runs.append(tick)
    assert runs == [11, 22, 33]


def test_ticks_are_logged_as_essex(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With --verbose a test can wait for sync rounds in the journal instead of sleeping."""
    mgr = manager(Driver({}), Records([]), monkeypatch)
    with caplog.at_level("DEBUG", logger="nova.manager"):
        for _ in range(11):
            mgr.periodic_tasks()
    assert caplog.messages[0] == "Skipping ComputeManager._sync_power_states, 10 ticks left until next run"
    assert caplog.messages[-1] == "Running periodic task ComputeManager._sync_power_states"


def sync(mgr: ComputeManager) -> None:
    for _ in range(11):
        mgr.periodic_tasks()


def test_sync_marks_a_destroyed_guest_shutoff(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """virsh destroy behind nova-compute's back: ACTIVE/RUNNING becomes SHUTOFF/5; a guest whose
    domain is gone becomes SHUTOFF/0 (NOSTATE); a build only has its power state recorded."""
    driver = Driver({9: SHUTOFF, 10: None, 11: RUNNING, 12: RUNNING})
    driver.spawned.discard(name(10))
    records = Records([row(9, RUNNING), row(10, RUNNING), row(11, NOSTATE, "building"), row(12, RUNNING)])
    sync(manager(driver, records, monkeypatch))
    assert records.updates == [(9, SHUTOFF, "shutoff"), (10, NOSTATE, "shutoff"), (11, RUNNING, None)]
    assert "Found 4 in the database and 2 on the hypervisor." in caplog.text
    assert f"Instance {name(10)} found in database but not known by hypervisor" in caplog.text


def test_sync_leaves_matching_and_stopped_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a change is written; an instance already SHUTOFF that starts again gets its power state
    back but stays vm_state shutoff (Essex set vm_state only on the way down)."""
    driver = Driver({9: RUNNING, 10: RUNNING})
    records = Records([row(9, RUNNING), row(10, SHUTOFF, "shutoff")])
    sync(manager(driver, records, monkeypatch))
    assert records.updates == [(10, RUNNING, None)]


def test_sync_round_fails_quietly_without_nova_api(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    mgr = manager(Driver({9: RUNNING}), Records([], reachable=False), monkeypatch)
    sync(mgr)
    assert "Error during ComputeManager._sync_power_states" in caplog.text


def test_the_sync_is_the_only_periodic_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """No periodic iptables apply, as Essex: flushed rules come back at the next apply only."""
    mgr = manager(Driver({}), Records([]), monkeypatch)
    assert [task[0] for task in mgr._periodic()] == ["_sync_power_states"]


# --- the libvirt driver's half, on a stand-in connection ------------------------------------------

class Domain:
    def __init__(self, conn: FakeConn, name: str, xml: str) -> None:
        self.conn, self._name, self.xml, self.state = conn, name, xml, power_state.SHUTOFF

    def name(self) -> str:
        return self._name

    def XMLDesc(self, flags: int) -> str:  # noqa: N802 (libvirt's names)
        return self.xml

    def info(self) -> list[int]:
        return [self.state, 0, 0, 1, 0]

    def isActive(self) -> bool:  # noqa: N802
        return self.state == power_state.RUNNING

    def create(self) -> None:
        self.conn.log.append(f"create {self._name}")
        self.state = power_state.RUNNING

    def destroy(self) -> None:
        self.conn.log.append(f"destroy {self._name}")
        self.state = power_state.SHUTOFF

    def undefine(self) -> None:
        self.conn.log.append(f"undefine {self._name}")
        del self.conn.domains[self._name]


class FakeConn(FakeNWFilterConn):
    """libvirt's domains and nwfilters, as far as LibvirtDriver uses them."""

    def __init__(self) -> None:
        super().__init__()
        self.domains: dict[str, Domain] = {}
        self.log: list[str] = []

    def isAlive(self) -> bool:  # noqa: N802
        return True

    def defineXML(self, xml: str) -> Domain:  # noqa: N802
        dom_name = ET.fromstring(xml).findtext("name") or ""
        self.log.append(f"define {dom_name}")
        self.domains[dom_name] = Domain(self, dom_name, xml)
        return self.domains[dom_name]

    def lookupByName(self, dom_name: str) -> Domain:  # noqa: N802
        if dom_name not in self.domains:
            error = libvirt.libvirtError(f"Domain not found: no domain with matching name '{dom_name}'")
            error.err = (libvirt.VIR_ERR_NO_DOMAIN, 0, "", 0, "", None, None, 0, 0)
            raise error
        return self.domains[dom_name]

    def numOfDomains(self) -> int:  # noqa: N802
        return sum(d.isActive() for d in self.domains.values())

    def listAllDomains(self, flags: int) -> list[Domain]:  # noqa: N802
        assert flags == libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
        return [d for d in self.domains.values() if d.isActive()]


def test_hard_reboot_after_a_host_reboot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """resume_state_on_host_boot: the shut-off domain's XML, unfiltered, plugged and filtered
    again, defined and started; the instance directory (disk, console, libvirt.xml) stays."""
    compute = Compute(monkeypatch, tmp_path)
    conn = FakeConn()
    driver = connection.LibvirtDriver(str(tmp_path / "instances"), "qemu")
    driver._conn = conn  # type: ignore[assignment]
    driver.firewall_driver = libvirt_firewall.IptablesFirewallDriver(lambda: conn, iptables=compute.manager)
    instance = {"id": 9, "name": name(9), "security_groups": ["default"]}
    driver.instance_dir(name(9)).mkdir(parents=True)
    driver.filter_instance(instance, {**NETWORK, "gateway": "10.0.0.1"}, [])
    conn.defineXML(f"<domain><name>{name(9)}</name></domain>").create()
    before = compute.listing()
    conn.domains[name(9)].state = power_state.SHUTOFF  # the host went down with it
    compute.kernel.tables = FakeIptables().tables  # and came back without any rule
    assert (driver.get_num_instances(), driver.get_power_state(name(9)), driver.get_power_state("nope")) == (
        0, power_state.SHUTOFF, None)
    conn.log.clear()
    plugged: list[str] = []
    state = driver.firewall_state(name(9))
    assert state is not None
    driver.resume_state_on_host_boot(state, lambda net: plugged.append(net["bridge"]))
    assert conn.log == [f"undefine {name(9)}", f"define {name(9)}", f"create {name(9)}"]
    assert plugged == ["br100"] and driver.is_running(name(9)) and driver.list_instances() == [name(9)]
    assert compute.listing() == before  # the instance chain is back (the bridge's accepts come with plug)
    assert driver.instance_dir(name(9)).exists()
