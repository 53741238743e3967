"""The compute API on the controller: create, list, show and delete servers.

State lives in the controller's database (instances, services). Boot follows Essex's path in
small: the instance row (status BUILD) → the scheduler picks a compute (round-robin, or the
``nova:<host>`` availability zone) → nova-network allocates the fixed IP and MAC (dnsmasq is
HUPed) → the compute plugs, defines and starts the domain → ACTIVE, or ERROR with the fault.

In this walking-skeleton form the boot runs in the caller's process and returns once the
domain runs; nova-api takes the same steps over asynchronously later.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nova import rpc
from nova.compute.security_groups import SecurityGroups
from nova.db import Database, utcnow
from nova.flags import Flags

# Essex's flavors (nova/db/sqlalchemy/migrate_repo/.../002_bexar.py): id, name, MB, vcpus, GB.
FLAVORS = {
    "1": ("m1.tiny", 512, 1, 0),
    "2": ("m1.small", 2048, 1, 20),
    "3": ("m1.medium", 4096, 2, 40),
    "4": ("m1.large", 8192, 4, 80),
    "5": ("m1.xlarge", 16384, 8, 160),
}


class ApiError(Exception):
    """A request the API refuses; the message is what the nova CLI prints."""


def sanitize_hostname(name: str) -> str:
    """Essex's utils.sanitize_hostname: spaces/_ to -, drop other non [\\w.-], lower, strip .-."""
    name = re.sub(r"[ _]", "-", name)
    name = re.sub(r"[^\w.-]+", "", name)
    return name.lower().strip(".-")


@dataclass(frozen=True)
class Instance:
    id: int
    uuid: str
    display_name: str
    hostname: str
    host: str | None
    status: str
    flavor: str
    image: str
    memory_mb: int
    vcpus: int
    address: str | None
    label: str | None
    fault: str | None
    created_at: str

    @property
    def name(self) -> str:
        return f"instance-{self.id:08x}"

    @property
    def ec2_id(self) -> str:
        return f"i-{self.id:08x}"


class ComputeAPI:
    def __init__(self, flags: Flags, db: Database):
        self.flags = flags
        self.db = db

    # reads
    def _rows(self, where: str = "", args: tuple = ()) -> list[Instance]:
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT i.*, f.address, n.label FROM instances i "
                "LEFT JOIN fixed_ips f ON f.instance_id = i.id AND f.allocated = 1 "
                "LEFT JOIN networks n ON n.id = f.network_id "
                f"WHERE i.deleted = 0 {where} ORDER BY i.id", args).fetchall()
        return [self._instance(r) for r in rows]

    @staticmethod
    def _instance(r: sqlite3.Row) -> Instance:
        return Instance(id=r["id"], uuid=r["uuid"], display_name=r["display_name"], hostname=r["hostname"],
                        host=r["host"], status=r["vm_state"], flavor=r["instance_type"], image=r["image_ref"],
                        memory_mb=r["memory_mb"], vcpus=r["vcpus"], address=r["address"], label=r["label"],
                        fault=r["fault"], created_at=r["created_at"])

    def list(self) -> list[Instance]:
        return self._rows()

    def get(self, ref: str) -> Instance:
        """By uuid, name or integer id, as novaclient's find_resource."""
        found = self._rows("AND (i.uuid = ? OR i.display_name = ? OR CAST(i.id AS TEXT) = ?)", (ref, ref, ref))
        if not found:
            raise ApiError(f"No server with a name or ID of '{ref}' exists.")
        if len(found) > 1:
            raise ApiError(f"Multiple server matches found for '{ref}', use an ID to be more specific.")
        return found[0]

    # scheduling
    def compute_hosts(self) -> list[dict[str, Any]]:
        return self.db.service_get_all_by_topic("compute")

    def _schedule(self, availability_zone: str | None) -> dict[str, Any]:
        hosts = self.compute_hosts()
        if not hosts:
            raise ApiError("No valid host was found. There are no compute services registered.")
        if availability_zone:
            zone, _, host = availability_zone.partition(":")
            if zone != "nova" or not host:
                raise ApiError(f"Invalid availability zone {availability_zone!r} (use nova:<host>)")
            for h in hosts:
                if h["host"] == host:
                    return h
            raise ApiError(f"No valid host was found. Compute host {host!r} is not registered.")
        # Round-robin: the host with the fewest live instances, ties by name (the chance scheduler
        # of Essex picked at random; a deterministic order keeps tests reproducible).
        with self.db.transaction() as conn:
            counts = dict(conn.execute("SELECT host, COUNT(*) FROM instances WHERE deleted = 0 "
                                       "GROUP BY host").fetchall())
        return min(hosts, key=lambda h: (counts.get(h["host"], 0), h["host"]))

    # writes
    def _set(self, instance_id: int, **values: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.db.transaction() as conn:
            conn.execute(f"UPDATE instances SET {cols}, updated_at = ? WHERE id = ?",
                         (*values.values(), utcnow(), instance_id))

    def create(self, name: str, image: str, flavor: str, availability_zone: str | None = None) -> Instance:
        if flavor not in FLAVORS:
            raise ApiError(f"No flavor with a name or ID of '{flavor}' exists.")
        image_hash = self.image_hash(image)
        flavor_name, memory_mb, vcpus, _disk = FLAVORS[flavor]
        memory_mb = self.flags.flavor_memory_mb or memory_mb
        target = self._schedule(availability_zone)
        hostname = sanitize_hostname(name)
        with self.db.transaction() as conn:
            next_id = max(self.flags.first_instance_id,
                          (conn.execute("SELECT MAX(id) FROM instances").fetchone()[0] or 0) + 1)
            conn.execute(
                "INSERT INTO instances (id, uuid, display_name, hostname, host, vm_state, instance_type, "
                "image_ref, memory_mb, vcpus, deleted, created_at) VALUES (?, ?, ?, ?, ?, 'BUILD', ?, ?, ?, ?, 0, ?)",
                (next_id, str(uuidlib.uuid4()), name, hostname, target["host"], flavor_name, image, memory_mb,
                 vcpus, utcnow()))
        instance = self.get(str(next_id))
        try:
            network = rpc.call(self.flags.network_host, self.flags.network_rpc_port, "allocate_for_instance",
                               instance_id=instance.id, hostname=hostname)
            # Security groups: the instance is in `default`; its rules go with it (no DB on computes).
            groups = SecurityGroups(self.db)
            groups.add_instance(instance.id)
            spec = {"name": instance.name, "uuid": instance.uuid, "memory_mb": memory_mb, "vcpus": vcpus,
                    "hostname": hostname, "id": instance.id, "security_groups": groups.groups_of(instance.id)}
            rpc.call(target["address"], target["port"], "run_instance", instance=spec, network=network,
                     image=image_hash, rules=groups.rules_for_instance(instance.id), timeout=300)
        except rpc.RemoteError as e:
            self._set(instance.id, vm_state="ERROR", fault=e.message)
            return self.get(str(instance.id))
        self._set(instance.id, vm_state="ACTIVE")
        return self.get(str(instance.id))

    def delete(self, ref: str) -> Instance:
        instance = self.get(ref)
        host = next((h for h in self.compute_hosts() if h["host"] == instance.host), None)
        if host:
            rpc.call(host["address"], host["port"], "terminate_instance", name=instance.name, timeout=120)
        rpc.call(self.flags.network_host, self.flags.network_rpc_port, "deallocate_for_instance",
                 instance_id=instance.id)
        self._set(instance.id, vm_state="DELETED", deleted=1)
        return instance

    def console_output(self, ref: str) -> str:
        instance = self.get(ref)
        host = next((h for h in self.compute_hosts() if h["host"] == instance.host), None)
        if host is None:
            raise ApiError(f"Compute host {instance.host} of {instance.display_name} is not registered.")
        return rpc.call(host["address"], host["port"], "get_console_output", name=instance.name)

    # images (the controller's store comes with nova-api; until then, the computes' cache)
    def image_hash(self, image: str) -> str:
        for entry in self.images():
            if image in (entry["name"], entry["hash"]):
                return entry["hash"]
        raise ApiError(f"No image with a name or ID of '{image}' exists.")

    def images(self) -> list[dict[str, Any]]:
        store = Path(self.flags.state_path) / "images"
        return [json.loads(p.read_text()) for p in sorted(store.glob("*/image.json"))]

