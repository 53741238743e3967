"""The guest client: boot, read and delete guests through the controller's CLIs.

Everything goes through the commands an administrator of the document would type on the
controller (``nova boot``/``show``/``list``/``delete``, ``nova-manage fixed list``, the dnsmasq
hostsfile), so the CLI, the suite, the status view, the collector and the reuse checks see what
a user sees. Guests are addressed by their uuid once booted: names may repeat. The parsers are
pure and unit-tested.
"""

from __future__ import annotations

import ipaddress
import json
import re
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flatbed import timings
from flatbed.checks.identity import expected_id, lowest_free
from flatbed.errors import FlatbedError
from flatbed.follow import Stream, follow
from flatbed.waiters import wait_until

if TYPE_CHECKING:
    from flatbed.node import Node, Result
    from flatbed.testbed import Testbed

# The client's own waits (the suite's are in flatbed/checks/timeouts.py).
NOVA_TIMEOUT = 60     # one nova CLI call: boot and delete return at once (BUILD, deleting)
BUILD_TIMEOUT = 120   # nova boot -> ACTIVE
DELETE_TIMEOUT = 150  # nova delete -> gone from nova: the compute destroyed the domain (nova-api allows it 120 s)
# -> the fixed IP back in the pool (dhcp_release -> dnsmasq del -> nova-dhcpbridge -> RPC);
# measured over 30 s on loaded TCG VMs.
RELEASE_TIMEOUT = 90
DEFAULT_STATE_PATH = "/var/lib/nova"
# The controller's syslog: nova-api, nova-network and dnsmasq say there when a guest's state changes,
# so the waits below check again at such a line (and every EVENTLESS_POLL seconds in any case).
SYSLOG = "/var/log/syslog"
EVENTLESS_POLL = 2.0
NO_SUCH_SERVER = "No server with a name or ID of"


class NovaError(FlatbedError):
    """A nova command refused; ``result`` is what it printed."""

    def __init__(self, message: str, result: Result):
        super().__init__(message)
        self.result = result


class NoSuchGuest(FlatbedError):
    """nova knows no server by that name or id."""


class BootFailed(FlatbedError):
    """A booted guest went to ERROR or did not become ACTIVE in time; ``booted_as`` is what
    ``nova boot`` printed for it, ``uuid`` names it."""

    def __init__(self, message: str, booted_as: dict[str, str]):
        super().__init__(message)
        self.booted_as = booted_as
        self.uuid = booted_as["id"]


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
    """A ``Property | Value`` table (``nova show``, ``nova boot``) as a dict."""
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


def instance_id(instance_name: str) -> int | None:
    """The database id in ``instance-%08x`` (nova's instance_name_template), or None."""
    match = re.fullmatch(r"instance-([0-9a-f]{8})", instance_name)
    return int(match.group(1), 16) if match else None


# --- the guest record -------------------------------------------------------------------------

@dataclass(frozen=True)
class Derived:
    """A server's id and address as their rules give them (flatbed/checks/identity.py), fixed when
    ``nova boot`` created it: the id from the boot order, the addresses it may get (the lowest
    free one, preceded by lower ones that may be back in the pool)."""

    id: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Guest:
    """A guest as nova, the DHCP side and its compute describe it.

    ``mac`` is the one nova gave it (its fixed IP's row), so what the compute and the guest show
    can be compared with it. ``node`` is its compute, reached through the testbed it was read from.
    """

    uuid: str
    name: str
    status: str
    instance_name: str
    ip: str | None
    compute: str | None          # the compute's node name
    instance_dir: str | None = None  # <instances_path>/<instance_name> on the compute
    mac: str | None = None
    lease: str = "-"
    in_hostsfile: bool = False
    booted_as: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # what `nova boot` printed
    testbed: Testbed | None = field(default=None, compare=False, repr=False)
    # What the rules say it should be, fixed when this client created it (None for other guests).
    derived: Derived | None = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> int | None:
        return instance_id(self.instance_name)

    @property
    def console_log(self) -> str:
        return f"{self.instance_dir}/console.log"

    @property
    def node(self) -> Node:
        """The compute the guest runs on."""
        if self.testbed is None or not self.compute:
            raise FlatbedError(f"guest {self.name} ({self.uuid}) has no compute (status {self.status})")
        return self.testbed.node(self.compute)


# --- what this client did on a testbed --------------------------------------------------------

class BootLedger:
    """The servers this process's client created on one testbed, in order, and the addresses
    their guests hold: what the id and address rules need (flatbed/checks/identity.py), kept
    by the client instead of read back from the stack.

    A testbed this process brought up starts empty; one it attached to starts from its history
    (the instances its database ever had, the addresses in use), which only the stack can tell.
    """

    def __init__(self, created: int = 0, held: dict[str, str] | None = None, maybe_held: set[str] | None = None):
        self.created = created                    # servers created on the testbed so far
        self.held = dict(held or {})              # address -> uuid of the guest holding it
        self.maybe_held = set(maybe_held or ())   # deallocated, never leased: back after the timeout
        self.derived: dict[str, Derived] = {}     # uuid -> what the rules gave it at creation

    @classmethod
    def from_history(cls, cloud: Cloud) -> BootLedger:
        """A testbed this process did not bring up: its past, as its database records it."""
        rows = [f for f in cloud.fixed_ips() if not f.reserved]
        held = {f.address: "before" for f in rows if f.allocated or f.leased}
        maybe = {f.address for f in rows if f.instance is not None and not (f.allocated or f.leased)}
        return cls(cloud.instances_ever(), held, maybe)

    def next(self, topo) -> Derived:
        """What the next server created must be."""
        return Derived(expected_id(topo, self.created), lowest_free(topo, self.held, self.maybe_held))

    def record_created(self, uuid: str, derived: Derived) -> None:
        self.created += 1
        self.derived[uuid] = derived

    def record_address(self, uuid: str, address: str | None) -> None:
        """A built guest holds its address. A lower candidate it did not get stays out of the pool
        for the next guests (a build nova-api restarted between allocating and recording allocates
        again; a wrong allocation fails that guest's own check, not every later one's)."""
        if address:
            self.maybe_held.discard(address)
            self.held[address] = uuid
            derived = self.derived.get(uuid)
            below = [c for c in (derived.addresses if derived else ())
                     if ipaddress.ip_address(c) < ipaddress.ip_address(address)]
            skipped = [c for c in below if c not in self.held]
            self.maybe_held.update(skipped)

    def record_deleted(self, uuid: str, address: str | None, released: bool) -> None:
        """Deleted: its address is free again when it was released, else only after the timeout."""
        for where in [a for a, holder in self.held.items() if holder == uuid] + ([address] if address else []):
            self.held.pop(where, None)
            if released:
                self.maybe_held.discard(where)
            else:
                self.maybe_held.add(where)


_LEDGERS: weakref.WeakKeyDictionary[Testbed, BootLedger] = weakref.WeakKeyDictionary()


def ledger_of(cloud: Cloud) -> BootLedger:
    """The ledger of the cloud's testbed (one per testbed object in this process)."""
    bed = cloud.testbed
    if bed not in _LEDGERS:
        _LEDGERS[bed] = BootLedger() if getattr(bed, "created_here", False) else BootLedger.from_history(cloud)
    return _LEDGERS[bed]


# --- the client -------------------------------------------------------------------------------

class Cloud:
    """Boots, reads and deletes the guests of one testbed through its controller.

    ``derive``: keep the testbed's :class:`BootLedger` (what the suite's checks derive ids and
    addresses from); a one-shot CLI call has no use for it and skips reading the history."""

    def __init__(self, testbed: Testbed, *, derive: bool = True):
        self.testbed = testbed
        self.topology = testbed.topology
        self.derive = derive

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

    def nova(self, *args: str) -> Result:
        """``nova ARGS`` on the controller; NovaError (with what it printed) when it refuses."""
        result = self.controller.run(["nova", *args], timeout=NOVA_TIMEOUT)
        if not result.ok:
            said = (result.stderr or result.stdout).strip() or f"exited {result.rc}"
            if NO_SUCH_SERVER in said:
                raise NoSuchGuest(f"no guest {args[-1]!r} on testbed {self.testbed.run_id}: {said}")
            raise NovaError(f"nova {args[0]}: {said}", result)
        return result

    # reads
    def servers(self) -> list[dict[str, str]]:
        return parse_table(self.nova("list").stdout)

    def show(self, ref: str) -> dict[str, str]:
        """``nova show REF`` (a uuid, or a name while it is unique)."""
        return parse_properties(self.nova("show", ref).stdout)

    def fixed_ips(self) -> list[FixedIp]:
        return parse_fixed_list(self.controller.check(["nova-manage", "fixed", "list"]))

    def fixed_ip(self, address: str) -> FixedIp | None:
        return next((f for f in self.fixed_ips() if f.address == address), None)

    def hostsfile(self) -> dict[str, tuple[str, str]]:
        result = self.controller.run(["cat", self.hostsfile_path])
        return parse_hostsfile(result.stdout) if result.ok else {}

    def guest(self, ref: str, fixed: list[FixedIp] | None = None,
              hosts: dict[str, tuple[str, str]] | None = None, booted_as: dict[str, str] | None = None) -> Guest:
        """The guest ``ref`` (uuid or unique name) as nova, the fixed IPs and the hostsfile describe it."""
        server = self.show(ref)
        ip = server.get(f"{self.topology.flat.label} network")
        fixed = self.fixed_ips() if fixed is None else fixed
        hosts = self.hostsfile() if hosts is None else hosts
        row = next((f for f in fixed if f.address == ip), None)
        compute = server.get("OS-EXT-SRV-ATTR:host")
        compute = None if compute in (None, "", "None") else compute
        instance_name = server.get("OS-EXT-SRV-ATTR:instance_name", "")
        return Guest(uuid=server.get("id", ref), name=server.get("name", ref), status=server.get("status", "?"),
                     instance_name=instance_name, ip=ip, compute=compute,
                     instance_dir=self.instance_dir(compute, instance_name) if compute else None,
                     mac=row.mac if row else None, lease=row.lease if row else "-", in_hostsfile=ip in hosts,
                     booted_as=booted_as or {}, testbed=self.testbed, derived=self._derived(server.get("id", ref)))

    def _derived(self, uuid: str) -> Derived | None:
        ledger = _LEDGERS.get(self.testbed)
        return ledger.derived.get(uuid) if ledger else None

    def guests(self) -> list[Guest]:
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
    @timings.timed("guest boot", lambda self, name, **_: f"nova boot {name}")
    def create(self, name: str, *, image: str = "cirros", flavor: str = "1", compute: str | None = None,
               key_name: str | None = None, user_data: str | None = None) -> dict[str, str]:
        """``nova boot``: what it printed (the server in BUILD; its uuid is ``["id"]``).

        ``user_data`` is a file on the controller. NovaError when nova refuses (nothing is created
        then). The ledger fixes the server's id and address rules before the boot.
        """
        argv = ["boot", "--image", image, "--flavor", flavor]
        if compute:
            argv += ["--availability-zone", f"nova:{compute}"]
        if key_name:
            argv += ["--key-name", key_name]
        if user_data:
            argv += ["--user-data", user_data]
        if not self.derive:
            return parse_properties(self.nova(*argv, name).stdout)
        ledger = ledger_of(self)
        derived = ledger.next(self.topology)
        booted_as = parse_properties(self.nova(*argv, name).stdout)
        ledger.record_created(booted_as["id"], derived)
        return booted_as

    @timings.timed("guest boot", lambda self, booted_as, **_: f"{booted_as.get('name')}: BUILD -> ACTIVE")
    def wait_built(self, booted_as: dict[str, str], timeout: float = BUILD_TIMEOUT) -> Guest:
        """Wait until the guest ``nova boot`` printed is ACTIVE; BootFailed when it goes to ERROR or time runs out."""
        uuid, name = booted_as["id"], booted_as.get("name", booted_as["id"])

        def built() -> dict[str, str] | None:
            server = self.show(uuid)
            if server.get("status") == "ERROR":
                raise BootFailed(f"{name}: went to ERROR: {server.get('fault', 'no fault recorded')}", booted_as)
            return server if server.get("status") == "ACTIVE" else None

        instance = re.escape(booted_as.get("OS-EXT-SRV-ATTR:instance_name", uuid))
        try:
            with self.events(timeout) as log:
                wait_until(built, timeout=timeout, what=f"{name}: status ACTIVE", interval=EVENTLESS_POLL,
                           wake=log.waker(rf"Instance {instance} (is ACTIVE|failed to build)"),
                           describe=lambda: f"status {self.show(uuid).get('status')}")
        except BootFailed:
            self._failed(uuid)
            raise
        except FlatbedError as e:
            self._failed(uuid)
            raise BootFailed(str(e), booted_as) from None
        guest = self.guest(uuid, booted_as=booted_as)
        if self.testbed in _LEDGERS:
            _LEDGERS[self.testbed].record_address(uuid, guest.ip)
        return guest

    def _failed(self, uuid: str) -> None:
        """A guest that did not get to ACTIVE may hold an address: the one nova shows, or, once
        ERROR hid it, the one it was given — deallocated but never leased, it stays out of the pool
        until Essex's disassociate timeout. The ledger counts it as maybe held."""
        ledger = _LEDGERS.get(self.testbed)
        if ledger is None or uuid not in ledger.derived:
            return
        try:
            address = self.show(uuid).get(f"{self.topology.flat.label} network")
        except NoSuchGuest:
            address = None
        for maybe in [address] if address else ledger.derived[uuid].addresses:
            ledger.record_deleted(uuid, maybe, released=False)

    def boot(self, name: str, **options: str | None) -> Guest:
        """``nova boot`` and wait for ACTIVE (``create``'s options). A guest that failed is left for
        the caller to see or delete: BootFailed names it."""
        return self.wait_built(self.create(name, **options))

    @timings.timed("guest delete", lambda self, ref, **_: ref)
    def delete(self, ref: str, *, missing_ok: bool = False) -> Guest | None:
        """``nova delete``, then wait until nova no longer has the guest and its address is back in the pool.

        Only a leased address comes back at once (force_dhcp_release → dnsmasq's ``del``); one
        that was never leased stays associated until Essex's periodic disassociation. ``missing_ok``:
        a guest nova does not know is already deleted (None).
        """
        try:
            guest = self.guest(ref)
        except NoSuchGuest:
            if missing_ok:
                return None
            raise
        with self.events(DELETE_TIMEOUT + RELEASE_TIMEOUT) as log:
            self.nova("delete", guest.uuid)
            self._wait_deleted(guest, log)
        return guest

    def _wait_deleted(self, guest: Guest, log: Stream) -> None:
        def gone() -> bool:
            try:
                server = self.show(guest.uuid)
            except NoSuchGuest:
                return True
            if server.get("status") == "ERROR" and server.get("OS-EXT-STS:task_state") == "None":
                raise FlatbedError(f"{guest.name}: delete failed: {server.get('fault', 'no fault recorded')}")
            return False

        wait_until(gone, timeout=DELETE_TIMEOUT, interval=EVENTLESS_POLL,
                   what=f"{guest.name} ({guest.uuid}) gone from nova",
                   wake=log.waker(rf"Instance {re.escape(guest.instance_name)} deleted"))
        released = bool(guest.ip and self.releases_on_delete and guest.lease == "leased")
        if released:
            self.wait_released(guest.ip, log=log)
        if self.testbed in _LEDGERS:
            _LEDGERS[self.testbed].record_deleted(guest.uuid, guest.ip, released)

    def events(self, lasting: float) -> Stream:
        """The controller's syslog from now on, for a wait of at most ``lasting`` seconds."""
        return follow(self.controller, SYSLOG, from_start=False, lasting=lasting + 10)

    def wait_released(self, address: str, timeout: float = RELEASE_TIMEOUT, log: Stream | None = None) -> None:
        """Wait until ``address`` is free again: disassociated in the DB and gone from the hostsfile
        (``log``: the controller's syslog already followed since before the delete)."""
        if log is None:
            with self.events(timeout) as log:
                return self.wait_released(address, timeout, log)

        def released() -> bool:
            row = self.fixed_ip(address)
            return row is not None and row.in_pool and address not in self.hostsfile()

        def describe() -> str:
            return f"fixed IP row {self.fixed_ip(address)}; in hostsfile: {address in self.hostsfile()}"

        # Its steps in syslog: dnsmasq reads the hostsfile nova-network rewrote without the address, then
        # logs the DHCPRELEASE of dhcp_release; the disassociation that follows (nova-dhcpbridge's `del`)
        # logs nothing at INFO, hence the short interval after them.
        hostsfile, ip = re.escape(self.hostsfile_path), re.escape(address)
        wait_until(released, timeout=timeout, interval=0.5, what=f"{address} back in the pool", describe=describe,
                   wake=log.waker(rf"dnsmasq-dhcp\[\d+\]: (read {hostsfile}$|DHCPRELEASE\(\S+\) {ip} )"))
