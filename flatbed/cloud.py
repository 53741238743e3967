"""The cloud as the host sees it: guests, fixed IPs and leases, read through the controller's CLIs.

Everything here goes through the commands an administrator of the document would type on the
controller (``nova list``/``show``/``boot``/``delete``, ``nova-manage fixed list``, the dnsmasq
hostsfile), so the CLI, the status view, the collector and the reuse checks see what a user
sees. The parsers are pure and unit-tested.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flatbed.errors import FlatbedError
from flatbed.waiters import wait_until

if TYPE_CHECKING:
    from flatbed.node import Node
    from flatbed.testbed import Testbed

BUILD_TIMEOUT = 120  # nova boot -> ACTIVE (fixtures/timeouts.py has the suite's own)
# nova delete -> the fixed IP back in the pool (dhcp_release -> dnsmasq del -> nova-dhcpbridge -> RPC);
# measured over 30 s on loaded TCG VMs.
RELEASE_TIMEOUT = 90
DEFAULT_STATE_PATH = "/var/lib/nova"


# --- parsers ----------------------------------------------------------------------------------

def parse_table(text: str) -> list[dict[str, str]]:
    """A novaclient (prettytable) listing as rows keyed by the header cells."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    if not lines:
        return []
    header = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(header):
            rows.append(dict(zip(header, cells, strict=True)))
    return rows


def parse_properties(text: str) -> dict[str, str]:
    """A ``Property | Value`` table (``nova show``) as a dict."""
    return {row["Property"]: row["Value"] for row in parse_table(text) if "Property" in row}


@dataclass(frozen=True)
class FixedIp:
    """One row of ``nova-manage fixed list``."""

    address: str
    mac: str | None
    hostname: str | None
    instance: int | None
    allocated: bool
    leased: bool
    reserved: bool

    @property
    def in_pool(self) -> bool:
        """Free for the next guest: not reserved, not associated with any instance."""
        return not self.reserved and self.instance is None and not self.allocated

    @property
    def lease(self) -> str:
        """What the DHCP side knows: leased (dnsmasq handed it out), allocated (waiting), or -."""
        return "leased" if self.leased else "allocated" if self.allocated else "-"


def parse_fixed_list(text: str) -> list[FixedIp]:
    """``nova-manage fixed list``: tab-separated, ``None``/``True``/``False`` as Python prints them."""
    def opt(value: str) -> str | None:
        return None if value == "None" else value

    rows = []
    for line in text.splitlines()[1:]:
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) < 8:
            continue
        _net, address, mac, hostname, instance, allocated, leased, reserved = cells[:8]
        rows.append(FixedIp(address=address, mac=opt(mac), hostname=opt(hostname),
                            instance=None if instance == "None" else int(instance),
                            allocated=allocated == "True", leased=leased == "True", reserved=reserved == "True"))
    return rows


def parse_hostsfile(text: str) -> dict[str, tuple[str, str]]:
    """dnsmasq's ``--dhcp-hostsfile`` as ``{address: (mac, hostname)}`` (lines ``mac,name,address``)."""
    entries = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            mac, name, address = parts
            entries[address] = (mac, name)
    return entries


def parse_ip_network(value: str) -> str | None:
    """The address in ``nova list``'s Networks cell (``novanetwork=10.0.0.2``), or None."""
    match = re.search(r"=\s*([0-9.]+)", value)
    return match.group(1) if match else None


# --- the live cloud ---------------------------------------------------------------------------

@dataclass(frozen=True)
class GuestInfo:
    """A guest as ``nova show`` and the DHCP side describe it."""

    name: str
    uuid: str
    status: str
    ip: str | None
    compute: str | None
    instance_name: str
    mac: str | None = None
    lease: str = "-"
    in_hostsfile: bool = False


class Cloud:
    """Reads and drives the stack of one testbed through its controller."""

    def __init__(self, testbed: Testbed):
        self.testbed = testbed
        self.topology = testbed.topology

    @property
    def controller(self) -> Node:
        return self.testbed.controller

    def flags(self, node_name: str | None = None) -> dict:
        return self.topology.nova_flags(self.topology.node(node_name or self.topology.controller.name))

    @property
    def releases_on_delete(self) -> bool:
        """force_dhcp_release: a deleted guest's address is back in the pool at once (else at lease expiry)."""
        return str(self.flags().get("force_dhcp_release", False)).lower() == "true"

    @property
    def hostsfile_path(self) -> str:
        networks = self.flags().get("networks_path", f"{DEFAULT_STATE_PATH}/networks")
        return f"{networks}/nova-{self.topology.flat.bridge}.conf"

    def instance_dir(self, compute: str, instance_name: str) -> str:
        instances = self.flags(compute).get("instances_path", f"{DEFAULT_STATE_PATH}/instances")
        return f"{instances}/{instance_name}"

    # reads
    def servers(self) -> list[dict[str, str]]:
        return parse_table(self.controller.check(["nova", "list"]))

    def show(self, name: str) -> dict[str, str]:
        result = self.controller.run(["nova", "show", name])
        if not result.ok:
            raise FlatbedError(f"no guest {name!r} on testbed {self.testbed.run_id}: "
                               f"{(result.stderr or result.stdout).strip() or 'nova show failed'}")
        return parse_properties(result.stdout)

    def fixed_ips(self) -> list[FixedIp]:
        return parse_fixed_list(self.controller.check(["nova-manage", "fixed", "list"]))

    def hostsfile(self) -> dict[str, tuple[str, str]]:
        result = self.controller.run(["cat", self.hostsfile_path])
        return parse_hostsfile(result.stdout) if result.ok else {}

    def guest(self, name: str, fixed: list[FixedIp] | None = None,
              hosts: dict[str, tuple[str, str]] | None = None) -> GuestInfo:
        server = self.show(name)
        ip = server.get(f"{self.topology.flat.label} network")
        fixed = self.fixed_ips() if fixed is None else fixed
        hosts = self.hostsfile() if hosts is None else hosts
        row = next((f for f in fixed if f.address == ip), None)
        return GuestInfo(name=server.get("name", name), uuid=server.get("id", ""), status=server.get("status", "?"),
                         ip=ip, compute=server.get("OS-EXT-SRV-ATTR:host") or None,
                         instance_name=server.get("OS-EXT-SRV-ATTR:instance_name", ""),
                         mac=row.mac if row else None, lease=row.lease if row else "-",
                         in_hostsfile=ip in hosts)

    def guests(self) -> list[GuestInfo]:
        servers = self.servers()
        if not servers:
            return []
        fixed, hosts = self.fixed_ips(), self.hostsfile()
        return [self.guest(s["ID"], fixed, hosts) for s in servers]

    def used_addresses(self) -> list[str]:
        """Fixed IPs in use: allocated to an instance, or leased by dnsmasq.

        A deallocated address that was never leased is not counted: it stays associated until
        Essex's periodic disassociation (fixed_ip_disassociate_timeout) returns it by itself.
        """
        return [f.address for f in self.fixed_ips() if not f.reserved and (f.allocated or f.leased)]

    def instances_ever(self) -> int:
        """How many instances this controller's database has ever created, deleted ones included."""
        code = ("import sqlite3; from nova import flags; c = flags.load('/etc/nova/nova.conf'); "
                "db = sqlite3.connect('file:' + c.sqlite_path + '?mode=ro', uri=True); "
                "print(db.execute('SELECT COUNT(*) FROM instances').fetchone()[0])")
        return int(self.controller.check(["python3", "-c", code]).strip())

    def login(self) -> tuple[str, str]:
        """(user, password) of the guest image, from its description in the controller's store."""
        from flatbed.images.guest import LOGIN_PASSWORD, LOGIN_USER
        from flatbed.provisioning import IMAGE_STORE

        digest = self.testbed.state.images.get("guest", "")
        result = self.controller.run(["cat", f"{IMAGE_STORE}/{digest}/image.json"])
        meta = json.loads(result.stdout) if result.ok else {}
        return meta.get("login_user") or LOGIN_USER, meta.get("login_password") or LOGIN_PASSWORD

    # actions
    def boot(self, name: str, *, image: str = "cirros", flavor: str = "1", compute: str | None = None) -> GuestInfo:
        argv = ["nova", "boot", "--image", image, "--flavor", flavor]
        if compute:
            argv += ["--availability-zone", f"nova:{compute}"]
        result = self.controller.run(argv + [name], timeout=300)
        if not result.ok:
            raise FlatbedError(f"nova boot {name}: {(result.stderr or result.stdout).strip()}")

        # nova boot returns in BUILD; the guest is ready to use once ACTIVE (or failed: ERROR).
        def built() -> GuestInfo | None:
            guest = self.guest(name)
            return guest if guest.status in ("ACTIVE", "ERROR") else None

        guest = wait_until(built, timeout=BUILD_TIMEOUT, what=f"{name}: status ACTIVE",
                           describe=lambda: f"status {self.guest(name).status}")
        if guest.status == "ERROR":
            raise FlatbedError(f"{name}: went to ERROR: {self.show(name).get('fault', 'no fault recorded')}")
        return guest

    def delete(self, name: str) -> GuestInfo:
        """``nova delete`` and wait until the guest's address is back in the pool.

        Only a leased address comes back at once (force_dhcp_release → dnsmasq's ``del``); one
        that was never leased stays associated until Essex's periodic disassociation.
        """
        guest = self.guest(name)
        result = self.controller.run(["nova", "delete", guest.uuid or name], timeout=180)
        if not result.ok:
            raise FlatbedError(f"nova delete {name}: {(result.stderr or result.stdout).strip()}")
        if guest.ip and self.releases_on_delete and guest.lease == "leased":
            self.wait_released(guest.ip)
        return guest

    def wait_released(self, address: str, timeout: float = RELEASE_TIMEOUT) -> None:
        """Wait until ``address`` is free again: disassociated in the DB and gone from the hostsfile."""
        def released() -> bool:
            row = next((f for f in self.fixed_ips() if f.address == address), None)
            return row is not None and row.in_pool and address not in self.hostsfile()

        def describe() -> str:
            row = next((f for f in self.fixed_ips() if f.address == address), None)
            return f"fixed IP row {row}; in hostsfile: {address in self.hostsfile()}"

        wait_until(released, timeout=timeout, interval=0.5, what=f"{address} back in the pool", describe=describe)
