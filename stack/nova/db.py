"""nova's database: SQLite at ``<state_path>/nova.sqlite``, kept across restarts.

Essex used SQLAlchemy models and ``nova/db/api.py``; this module keeps the same table and column
names for the part the controller's services need (networks, fixed_ips, virtual_interfaces,
instances and their network info cache, key pairs, services) and the same function names where
one exists (``fixed_ip_associate_pool``, ``network_get_associated_fixed_ips``, ``instance_update``,
``key_pair_create``, ...). Every SQL statement of the stack but the security groups' lives here.

The schema lives only in ``MIGRATIONS``: each entry is a SQL script applied once, in order, and
``PRAGMA user_version`` records how many ran. Another component extends a table by appending a
script (``ALTER TABLE instances ADD COLUMN ...``) — never by editing an applied one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import uuid as uuidlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nova.api import ec2utils
from nova.compute import states

MIGRATIONS: tuple[str, ...] = (
    # 1 — nova-network (Essex columns, those nova-network reads or writes).
    """
    CREATE TABLE IF NOT EXISTS networks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        label TEXT NOT NULL,
        cidr TEXT NOT NULL UNIQUE,
        bridge TEXT NOT NULL UNIQUE,
        bridge_interface TEXT,
        gateway TEXT NOT NULL,
        broadcast TEXT NOT NULL,
        netmask TEXT NOT NULL,
        dhcp_start TEXT NOT NULL,
        multi_host INTEGER NOT NULL DEFAULT 0,
        host TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT
    );
    CREATE TABLE IF NOT EXISTS instances (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hostname TEXT,
        host TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT
    );
    CREATE TABLE IF NOT EXISTS virtual_interfaces (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        address TEXT NOT NULL UNIQUE,
        instance_id INTEGER NOT NULL REFERENCES instances(id),
        network_id INTEGER NOT NULL REFERENCES networks(id),
        created_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS fixed_ips (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        address TEXT NOT NULL UNIQUE,
        network_id INTEGER NOT NULL REFERENCES networks(id),
        instance_id INTEGER REFERENCES instances(id),
        virtual_interface_id INTEGER REFERENCES virtual_interfaces(id),
        allocated INTEGER NOT NULL DEFAULT 0,
        leased INTEGER NOT NULL DEFAULT 0,
        reserved INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT
    );
    """,
    # 2 — the compute API (nova-api/nova CLI): Essex's instance columns and the services table.
    """
    ALTER TABLE instances ADD COLUMN uuid TEXT;
    ALTER TABLE instances ADD COLUMN display_name TEXT;
    ALTER TABLE instances ADD COLUMN vm_state TEXT;
    ALTER TABLE instances ADD COLUMN instance_type TEXT;
    ALTER TABLE instances ADD COLUMN image_ref TEXT;
    ALTER TABLE instances ADD COLUMN memory_mb INTEGER;
    ALTER TABLE instances ADD COLUMN vcpus INTEGER;
    ALTER TABLE instances ADD COLUMN fault TEXT;
    ALTER TABLE instances ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE IF NOT EXISTS services (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        host TEXT NOT NULL,
        binary TEXT NOT NULL,
        topic TEXT NOT NULL,
        address TEXT NOT NULL,
        port INTEGER NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        report_count INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        UNIQUE (host, topic)
    );
    """,
    # 3 — nova-api: Essex's task_state, key pair and user data of an instance, its network info
    # cache (what nova-network allocated, so a restarted nova-api can finish a build), key pairs
    # and the EC2 ids of images (s3_images: ami-%08x of an image uuid). vm_state takes Essex's
    # lower-case values ('building', 'active', 'error', 'deleted'); the API maps them to statuses.
    """
    ALTER TABLE instances ADD COLUMN task_state TEXT;
    ALTER TABLE instances ADD COLUMN key_name TEXT;
    ALTER TABLE instances ADD COLUMN key_data TEXT;
    ALTER TABLE instances ADD COLUMN user_data TEXT;
    ALTER TABLE instances ADD COLUMN reservation_id TEXT;
    ALTER TABLE instances ADD COLUMN availability_zone TEXT;
    ALTER TABLE instances ADD COLUMN launched_at TEXT;
    ALTER TABLE instances ADD COLUMN terminated_at TEXT;
    UPDATE instances SET vm_state = lower(vm_state) WHERE vm_state IN ('ACTIVE', 'ERROR', 'DELETED');
    UPDATE instances SET vm_state = 'building' WHERE vm_state = 'BUILD';
    CREATE TABLE IF NOT EXISTS instance_info_caches (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        instance_id INTEGER NOT NULL UNIQUE REFERENCES instances(id),
        network_info TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS key_pairs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        fingerprint TEXT NOT NULL,
        public_key TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS s3_images (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    """,
    # 4 — security groups (nova-compute's IptablesFirewallDriver): Essex's three tables, and the
    # `default` group every instance belongs to.
    """
    CREATE TABLE IF NOT EXISTS security_groups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        description TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS security_group_rules (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        parent_group_id INTEGER NOT NULL REFERENCES security_groups(id),
        protocol TEXT,
        from_port INTEGER,
        to_port INTEGER,
        cidr TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS security_group_instance_association (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        security_group_id INTEGER NOT NULL REFERENCES security_groups(id),
        instance_id INTEGER NOT NULL REFERENCES instances(id),
        created_at TEXT NOT NULL
    );
    INSERT OR IGNORE INTO security_groups (name, description, created_at)
        VALUES ('default', 'default', strftime('%Y-%m-%d %H:%M:%S', 'now'));
    """,
    # 5 — Essex's power_state of an instance (NOSTATE until its compute reports one).
    """
    ALTER TABLE instances ADD COLUMN power_state INTEGER NOT NULL DEFAULT 0;
    """,
)


def _statements(script: str) -> Iterator[str]:
    """Split a SQL script into complete statements (a ';' inside a trigger or string is kept)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()[:60]}")


class DBError(Exception):
    """A lookup or change the database refused; the message says which row."""


class NoMoreFixedIps(DBError):
    """Every non-reserved address of the network is associated (Essex: NoMoreFixedIps)."""


class DuplicateMac(DBError):
    """A virtual interface with that MAC already exists."""


class DuplicateKeyPair(DBError):
    """A key pair with that name already exists."""


def utcnow() -> str:
    """Timestamps are naive UTC text, like Essex's DateTime columns in SQLite."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def to_epoch(timestamp: str) -> int:
    """Seconds since the epoch of a ``utcnow()`` timestamp."""
    return int(datetime.strptime(timestamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class Network:
    id: int
    label: str
    cidr: str
    bridge: str
    bridge_interface: str | None
    gateway: str
    broadcast: str
    netmask: str
    dhcp_start: str
    multi_host: bool
    host: str | None

    @property
    def dhcp_server(self) -> str:
        """Where dnsmasq listens: single-host Essex used the gateway itself (_get_dhcp_ip)."""
        return self.gateway

    @property
    def prefixlen(self) -> str:
        return self.cidr.rpartition("/")[2]


@dataclass(frozen=True)
class FixedIp:
    """A fixed_ips row joined with its MAC and instance, as the DHCP files need it."""

    address: str
    network_id: int
    instance_id: int | None
    allocated: bool
    leased: bool
    reserved: bool
    updated_at: str | None
    mac: str | None
    hostname: str | None
    instance_created_at: str | None
    instance_updated_at: str | None


_FIXED_IP_SELECT = """
    SELECT f.address, f.network_id, f.instance_id, f.allocated, f.leased, f.reserved, f.updated_at,
           v.address AS mac, i.hostname, i.created_at AS instance_created_at,
           i.updated_at AS instance_updated_at
    FROM fixed_ips f
    LEFT JOIN virtual_interfaces v ON v.id = f.virtual_interface_id
    LEFT JOIN instances i ON i.id = f.instance_id
"""


@dataclass(frozen=True)
class Instance:
    """An instances row of the compute API, with its fixed IP and network label."""

    id: int
    uuid: str
    display_name: str
    hostname: str
    host: str | None
    vm_state: str
    task_state: str | None
    power_state: int
    flavor: str
    image_ref: str
    memory_mb: int
    vcpus: int
    address: str | None
    label: str | None
    fault: str | None
    key_name: str | None
    key_data: str | None
    user_data: str | None
    reservation_id: str | None
    availability_zone: str | None
    created_at: str
    updated_at: str | None
    launched_at: str | None

    @property
    def name(self) -> str:
        return ec2utils.instance_name(self.id)

    @property
    def ec2_id(self) -> str:
        return ec2utils.id_to_ec2_id(self.id)

    @property
    def status(self) -> str:
        return states.STATUS.get(self.vm_state, self.vm_state.upper())


_INSTANCE_SELECT = """
    SELECT i.*, f.address, n.label FROM instances i
    LEFT JOIN fixed_ips f ON f.instance_id = i.id AND f.allocated = 1
    LEFT JOIN networks n ON n.id = f.network_id
    WHERE i.uuid IS NOT NULL
"""


def _instance(r: sqlite3.Row) -> Instance:
    return Instance(id=r["id"], uuid=r["uuid"], display_name=r["display_name"], hostname=r["hostname"],
                    host=r["host"], vm_state=r["vm_state"], task_state=r["task_state"], power_state=r["power_state"],
                    flavor=r["instance_type"],
                    image_ref=r["image_ref"], memory_mb=r["memory_mb"], vcpus=r["vcpus"], address=r["address"],
                    label=r["label"], fault=r["fault"], key_name=r["key_name"], key_data=r["key_data"],
                    user_data=r["user_data"], reservation_id=r["reservation_id"],
                    availability_zone=r["availability_zone"], created_at=r["created_at"],
                    updated_at=r["updated_at"], launched_at=r["launched_at"])


def _fixed_ip(row: sqlite3.Row) -> FixedIp:
    return FixedIp(address=row["address"], network_id=row["network_id"], instance_id=row["instance_id"],
                   allocated=bool(row["allocated"]), leased=bool(row["leased"]),
                   reserved=bool(row["reserved"]), updated_at=row["updated_at"], mac=row["mac"],
                   hostname=row["hostname"], instance_created_at=row["instance_created_at"],
                   instance_updated_at=row["instance_updated_at"])


def _network(row: sqlite3.Row) -> Network:
    return Network(id=row["id"], label=row["label"], cidr=row["cidr"], bridge=row["bridge"],
                   bridge_interface=row["bridge_interface"], gateway=row["gateway"],
                   broadcast=row["broadcast"], netmask=row["netmask"], dhcp_start=row["dhcp_start"],
                   multi_host=bool(row["multi_host"]), host=row["host"])


class Database:
    """One SQLite connection shared by a process's threads (calls are serialised by a lock)."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves so that writers take the lock up front.
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._lock = threading.RLock()
        self.migrate()

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT: nova-manage and the dhcp-script may write at the same time."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Iterable[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def migrate(self) -> None:
        with self.transaction() as conn:
            done = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[done:], start=done + 1):
                # Not executescript(): it would COMMIT, and each migration must apply atomically.
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    # networks
    def network_create(self, *, label: str, cidr: str, bridge: str, bridge_interface: str | None,
                       gateway: str, broadcast: str, netmask: str, dhcp_start: str, host: str | None,
                       fixed_ips: Iterable[tuple[str, bool]]) -> Network:
        """Insert a network and its fixed_ips rows ``(address, reserved)``, in one transaction."""
        now = utcnow()
        with self.transaction() as conn:
            clash = conn.execute("SELECT cidr, bridge FROM networks WHERE cidr = ? OR bridge = ?",
                                 (cidr, bridge)).fetchone()
            if clash:
                raise DBError(f"cidr {cidr} or bridge {bridge} is taken by network {clash['cidr']}"
                              f" on {clash['bridge']}")
            cursor = conn.execute(
                "INSERT INTO networks (label, cidr, bridge, bridge_interface, gateway, broadcast, netmask,"
                " dhcp_start, host, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (label, cidr, bridge, bridge_interface, gateway, broadcast, netmask, dhcp_start, host, now))
            network_id = cursor.lastrowid
            conn.executemany(
                "INSERT INTO fixed_ips (address, network_id, reserved, created_at) VALUES (?, ?, ?, ?)",
                [(address, network_id, int(reserved), now) for address, reserved in fixed_ips])
        assert network_id is not None
        return self.network_get(network_id)

    def network_get(self, network_id: int) -> Network:
        rows = self._query("SELECT * FROM networks WHERE id = ?", (network_id,))
        if not rows:
            raise DBError(f"network {network_id} not found")
        return _network(rows[0])

    def network_get_all(self) -> list[Network]:
        return [_network(row) for row in self._query("SELECT * FROM networks ORDER BY id")]

    def network_set_host(self, network_id: int, host: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE networks SET host = ?, updated_at = ? WHERE id = ?",
                         (host, utcnow(), network_id))

    def network_get_all_by_host(self, host: str) -> list[Network]:
        rows = self._query("SELECT * FROM networks WHERE host = ? ORDER BY id", (host,))
        return [_network(row) for row in rows]

    # instances of the compute API (rows with a uuid; nova-network's own have none)
    def instance_create(self, *, first_id: int, display_name: str, hostname: str, host: str, instance_type: str,
                        image_ref: str, memory_mb: int, vcpus: int, key_name: str | None, key_data: str | None,
                        user_data: str, reservation_id: str, availability_zone: str) -> int:
        """Record an instance in BUILD (task ``scheduling``); its id is the next one, at least ``first_id``."""
        now = utcnow()
        with self.transaction() as conn:
            instance_id = max(first_id, (conn.execute("SELECT MAX(id) FROM instances").fetchone()[0] or 0) + 1)
            conn.execute(
                "INSERT INTO instances (id, uuid, display_name, hostname, host, vm_state, task_state, "
                "instance_type, image_ref, memory_mb, vcpus, key_name, key_data, user_data, reservation_id, "
                "availability_zone, deleted, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (instance_id, str(uuidlib.uuid4()), display_name, hostname, host, states.BUILDING,
                 states.SCHEDULING, instance_type, image_ref, memory_mb, vcpus, key_name, key_data, user_data,
                 reservation_id, availability_zone, now, now))
        return int(instance_id)

    def _instances(self, where: str = "", args: tuple[object, ...] = ()) -> list[Instance]:
        rows = self._query(f"{_INSTANCE_SELECT} AND i.deleted = 0 {where} ORDER BY i.created_at DESC, i.id DESC",
                           args)
        return [_instance(r) for r in rows]

    def instance_get_all(self) -> list[Instance]:
        """Live instances, newest first (Essex ordered by created_at descending)."""
        return self._instances()

    def instance_get(self, instance_id: int) -> Instance | None:
        found = self._instances("AND i.id = ?", (instance_id,))
        return found[0] if found else None

    def instance_find(self, ref: str) -> list[Instance]:
        """Live instances whose uuid, display name or integer id is ``ref``."""
        return self._instances("AND (i.uuid = ? OR i.display_name = ? OR CAST(i.id AS TEXT) = ?)", (ref, ref, ref))

    def instance_get_all_by_host(self, host: str) -> list[Instance]:
        """Live instances scheduled to ``host``, by id (what Essex's nova-compute read at start and
        at every power-state sync)."""
        return sorted(self._instances("AND i.host = ?", (host,)), key=lambda i: i.id)

    def instance_set_power_state(self, instance_id: int, power_state: int, vm_state: str | None = None) -> bool:
        """Record a live instance's power state (and vm_state, when given); False for a deleted one."""
        vm_sql, args = ("vm_state = ?, ", (vm_state,)) if vm_state else ("", ())
        with self.transaction() as conn:
            cursor = conn.execute(f"UPDATE instances SET power_state = ?, {vm_sql}updated_at = ? "
                                  "WHERE id = ? AND deleted = 0", (power_state, *args, utcnow(), instance_id))
        return cursor.rowcount == 1

    def instance_get_by_fixed_ip(self, address: str) -> Instance | None:
        """The live instance that holds fixed IP ``address`` (allocated or not yet released)."""
        rows = self._query("SELECT i.id FROM fixed_ips f JOIN instances i ON i.id = f.instance_id "
                           "WHERE f.address = ? AND i.deleted = 0 AND i.uuid IS NOT NULL", (address,))
        return self.instance_get(rows[0]["id"]) if rows else None

    def instance_last_host(self) -> str | None:
        """The host of the newest instance ever scheduled (deleted ones count)."""
        rows = self._query("SELECT host FROM instances WHERE uuid IS NOT NULL AND host IS NOT NULL "
                           "ORDER BY id DESC LIMIT 1")
        return str(rows[0]["host"]) if rows else None

    def instance_get_all_unfinished(self) -> list[tuple[int, str]]:
        """``(id, task_state)`` of every live instance with a task under way, by id."""
        rows = self._query("SELECT id, task_state FROM instances WHERE uuid IS NOT NULL AND deleted = 0 "
                           "AND task_state IS NOT NULL ORDER BY id")
        return [(int(r["id"]), str(r["task_state"])) for r in rows]

    def instance_update(self, instance_id: int, **values: Any) -> None:
        """Set columns of an instance (``vm_state=``, ``task_state=``, ``fault=``, ...)."""
        cols = "".join(f"{k} = ?, " for k in values)
        with self.transaction() as conn:
            conn.execute(f"UPDATE instances SET {cols}updated_at = ? WHERE id = ?",
                         (*values.values(), utcnow(), instance_id))

    def instance_finish_task(self, instance_id: int, **values: Any) -> None:
        """Set ``values`` and clear task_state, unless a delete came in meanwhile (it stays ``deleting``)."""
        cols = "".join(f"{k} = ?, " for k in values)
        with self.transaction() as conn:
            conn.execute(f"UPDATE instances SET {cols}task_state = CASE WHEN task_state = '{states.DELETING}' "
                         f"THEN task_state ELSE NULL END, updated_at = ? WHERE id = ?",
                         (*values.values(), utcnow(), instance_id))

    def instance_advance_task(self, instance_id: int, task_state: str) -> bool:
        """Move a live instance's task to ``task_state`` unless a delete came in; False then."""
        with self.transaction() as conn:
            cursor = conn.execute(f"UPDATE instances SET task_state = ?, updated_at = ? WHERE id = ? "
                                  f"AND deleted = 0 AND task_state IS NOT '{states.DELETING}'",
                                  (task_state, utcnow(), instance_id))
        return cursor.rowcount == 1

    def instance_destroy(self, instance_id: int) -> None:
        """Mark the instance deleted and drop its network info cache (the row stays, as Essex's)."""
        now = utcnow()
        with self.transaction() as conn:
            conn.execute("UPDATE instances SET vm_state = ?, task_state = NULL, deleted = 1, terminated_at = ?, "
                         "updated_at = ? WHERE id = ?", (states.DELETED, now, now, instance_id))
            conn.execute("DELETE FROM instance_info_caches WHERE instance_id = ?", (instance_id,))

    # the network info cache: what nova-network allocated to an instance
    def instance_info_cache_get(self, instance_id: int) -> dict[str, Any] | None:
        rows = self._query("SELECT network_info FROM instance_info_caches WHERE instance_id = ?", (instance_id,))
        return dict(json.loads(rows[0]["network_info"])) if rows else None

    def instance_info_cache_create(self, instance_id: int, network_info: dict[str, Any]) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO instance_info_caches (instance_id, network_info, created_at) VALUES (?, ?, ?)",
                         (instance_id, json.dumps(network_info), utcnow()))

    def instance_info_cache_delete(self, instance_id: int) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM instance_info_caches WHERE instance_id = ?", (instance_id,))

    # key pairs
    def key_pair_create(self, name: str, fingerprint: str, public_key: str) -> None:
        try:
            with self.transaction() as conn:
                conn.execute("INSERT INTO key_pairs (name, fingerprint, public_key, created_at) VALUES (?, ?, ?, ?)",
                             (name, fingerprint, public_key, utcnow()))
        except sqlite3.IntegrityError:
            raise DuplicateKeyPair(f"Key pair '{name}' already exists.") from None

    def key_pair_get_all(self) -> list[dict[str, Any]]:
        """Every key pair (name, fingerprint, public_key), by name."""
        return [dict(r) for r in self._query("SELECT name, fingerprint, public_key FROM key_pairs ORDER BY name")]

    def key_pair_destroy(self, name: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM key_pairs WHERE name = ?", (name,))

    # instances of nova-network (a bare row when the compute API has not recorded one)
    def instance_ensure(self, instance_id: int, hostname: str) -> None:
        """Create a row for an instance the compute API has not recorded (tests, manual RPC calls).

        OR IGNORE: an existing row is left alone, as is one the compute API's NOT NULL columns
        would refuse.
        """
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO instances (id, hostname, created_at) VALUES (?, ?, ?)",
                         (instance_id, hostname, utcnow()))

    # virtual interfaces
    def virtual_interface_create(self, instance_id: int, network_id: int, address: str) -> int:
        try:
            with self.transaction() as conn:
                cursor = conn.execute(
                    "INSERT INTO virtual_interfaces (address, instance_id, network_id, created_at)"
                    " VALUES (?, ?, ?, ?)", (address, instance_id, network_id, utcnow()))
        except sqlite3.IntegrityError:
            raise DuplicateMac(f"MAC {address} is already in use") from None
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def virtual_interface_delete_by_instance(self, instance_id: int) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE fixed_ips SET virtual_interface_id = NULL WHERE virtual_interface_id IN"
                         " (SELECT id FROM virtual_interfaces WHERE instance_id = ?)", (instance_id,))
            conn.execute("DELETE FROM virtual_interfaces WHERE instance_id = ?", (instance_id,))

    # fixed ips
    def fixed_ip_associate_pool(self, network_id: int, instance_id: int) -> str:
        """Associate the first free address to the instance and return it.

        Essex took ``.first()`` without ORDER BY, i.e. insertion order, which is address order:
        the first guest gets ``cidr[2]``. ``ORDER BY id`` makes that explicit.
        """
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT address FROM fixed_ips WHERE network_id = ? AND reserved = 0"
                " AND instance_id IS NULL ORDER BY id LIMIT 1", (network_id,)).fetchone()
            if row is None:
                raise NoMoreFixedIps(f"no free fixed IP left in network {network_id}")
            conn.execute("UPDATE fixed_ips SET instance_id = ?, updated_at = ? WHERE address = ?",
                         (instance_id, utcnow(), row["address"]))
        return str(row["address"])

    def fixed_ip_update(self, address: str, **values: object) -> None:
        """Set columns of one fixed IP (``allocated=True``, ``leased=False``, ...)."""
        allowed = {"instance_id", "virtual_interface_id", "allocated", "leased"}
        unknown = set(values) - allowed
        if unknown:
            raise DBError(f"cannot update fixed_ips columns {sorted(unknown)}")
        values["updated_at"] = utcnow()
        assignments = ", ".join(f"{column} = ?" for column in values)
        with self.transaction() as conn:
            cursor = conn.execute(f"UPDATE fixed_ips SET {assignments} WHERE address = ?",
                                  [*values.values(), address])
            if cursor.rowcount != 1:
                raise DBError(f"fixed IP {address} not found")

    def fixed_ip_disassociate(self, address: str) -> None:
        """Return the address to the pool (Essex: instance_id = NULL)."""
        self.fixed_ip_update(address, instance_id=None, virtual_interface_id=None)

    def fixed_ip_disassociate_all_by_timeout(self, host: str, cutoff: str) -> int:
        """Return to the pool the deallocated, unleased addresses untouched since ``cutoff``.

        Essex's periodic ``_disassociate_stale_fixed_ips``: only networks of ``host``; returns
        how many addresses went back.
        """
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE fixed_ips SET instance_id = NULL, virtual_interface_id = NULL, updated_at = ? "
                "WHERE allocated = 0 AND leased = 0 AND instance_id IS NOT NULL AND updated_at < ? "
                "AND network_id IN (SELECT id FROM networks WHERE host = ?)", (utcnow(), cutoff, host))
            return cursor.rowcount

    def fixed_ip_get_by_address(self, address: str) -> FixedIp:
        rows = self._query(_FIXED_IP_SELECT + " WHERE f.address = ?", (address,))
        if not rows:
            raise DBError(f"fixed IP {address} not found")
        return _fixed_ip(rows[0])

    def fixed_ip_get_by_instance(self, instance_id: int) -> list[FixedIp]:
        return [_fixed_ip(row) for row in
                self._query(_FIXED_IP_SELECT + " WHERE f.instance_id = ? ORDER BY f.id", (instance_id,))]

    def fixed_ip_get_all(self) -> list[FixedIp]:
        return [_fixed_ip(row) for row in self._query(_FIXED_IP_SELECT + " ORDER BY f.network_id, f.id")]

    def network_get_associated_fixed_ips(self, network_id: int) -> list[FixedIp]:
        """Fixed IPs the DHCP server must know: allocated to an instance through a MAC.

        Essex joined fixed_ips with virtual_interfaces and instances; deallocation cleared the
        interface, so a deallocated address drops out here even while it is still associated.
        """
        return [_fixed_ip(row) for row in self._query(
            _FIXED_IP_SELECT + " WHERE f.network_id = ? AND f.allocated = 1 AND f.instance_id IS NOT NULL"
            " AND v.id IS NOT NULL ORDER BY f.id", (network_id,))]

    # services (Essex: each service's row, refreshed by report_state)
    def service_update(self, host: str, topic: str, address: str, port: int) -> None:
        """Register or refresh the service ``nova-<topic>`` of ``host`` and where it listens."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO services (host, binary, topic, address, port, disabled, report_count, created_at) "
                "VALUES (?, ?, ?, ?, ?, 0, 1, ?) ON CONFLICT(host, topic) DO UPDATE SET "
                "address = excluded.address, port = excluded.port, report_count = report_count + 1, "
                "updated_at = excluded.created_at", (host, f"nova-{topic}", topic, address, port, utcnow()))

    def service_get_all_by_topic(self, topic: str) -> list[dict[str, object]]:
        rows = self._query("SELECT host, address, port FROM services WHERE topic = ? AND disabled = 0 "
                           "ORDER BY host", (topic,))
        return [dict(r) for r in rows]
