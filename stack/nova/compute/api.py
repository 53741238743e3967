"""The compute API of nova-api: create, list, show and delete servers, key pairs, images, flavors.

State lives in the controller's database (instances, services, key_pairs, ...), so it survives
restarts. Boot follows Essex's path, asynchronously:

``create`` validates the request (flavor, image, key pair, zone), schedules a compute
(round-robin over the registered computes, or the ``nova:<host>`` zone), records the instance
(vm_state ``building``, task_state ``scheduling``) and returns at once — the CLI prints BUILD.
A task thread then takes the instance through ``networking`` (nova-network allocates the fixed
IP and MAC and HUPs dnsmasq; the result is kept in ``instance_info_caches``) and ``spawning``
(the compute's ``run_instance`` fetches the image from the store if it has not yet, plugs,
defines and starts the domain and answers whether it runs) to ``active``, or to ``error`` with
the fault. ``delete`` marks task_state ``deleting`` and a task terminates the domain, deallocates
the network and marks the row deleted.

A restarted nova-api resumes every instance whose task_state is set: each step is idempotent
(the network info is cached, ``run_instance`` of a running domain only reports it).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import re
import sqlite3
import string
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nova import crypto, rpc
from nova.api import ec2utils, metadata
from nova.compute import instance_types
from nova.compute.security_groups import SecurityGroups
from nova.db import Database, utcnow
from nova.flags import Flags
from nova.image.store import Image, ImageStore

LOG = logging.getLogger("nova.compute.api")

# Essex nova/compute/vm_states.py and task_states.py (the part this stack reaches).
BUILDING, ACTIVE, ERROR, DELETED = "building", "active", "error", "deleted"
SCHEDULING, NETWORKING, SPAWNING, DELETING = "scheduling", "networking", "spawning", "deleting"
# Essex nova/api/openstack/common.py: the API status of a vm_state.
STATUS = {BUILDING: "BUILD", ACTIVE: "ACTIVE", ERROR: "ERROR", DELETED: "DELETED"}

RUN_INSTANCE_TIMEOUT = 300  # image download, the first libvirt call (QEMU probe) and qemu's start
TERMINATE_TIMEOUT = 120
CONSOLE_TIMEOUT = 30
UNREACHABLE_GRACE = 60  # how long an unreachable nova-compute or nova-network is retried
RETRY_INTERVAL = 2.0

KEYPAIR_NAME_CHARS = set(string.digits + string.ascii_letters + "-_ ")


class ApiError(Exception):
    """A request the API refuses; the message is what the nova CLI prints after ``ERROR:``."""


class BuildError(Exception):
    """A build step failed; the message becomes the instance's fault."""


def sanitize_hostname(name: str) -> str:
    """Essex's utils.sanitize_hostname: latin-1 only, spaces/_ to -, drop other non [\\w.-], lower, strip .-.

    Essex ran on Python 2 byte strings, where ``\\w`` is ASCII: non-ASCII letters are dropped.
    """
    name = name.encode("latin-1", "ignore").decode("latin-1")
    name = re.sub(r"[ _]", "-", name)
    name = re.sub(r"[^\w.-]+", "", name, flags=re.ASCII)
    return name.lower().strip(".-")


@dataclass(frozen=True)
class Instance:
    id: int
    uuid: str
    display_name: str
    hostname: str
    host: str | None
    vm_state: str
    task_state: str | None
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
        return STATUS.get(self.vm_state, self.vm_state.upper())


_INSTANCE_SELECT = """
    SELECT i.*, f.address, n.label FROM instances i
    LEFT JOIN fixed_ips f ON f.instance_id = i.id AND f.allocated = 1
    LEFT JOIN networks n ON n.id = f.network_id
    WHERE i.uuid IS NOT NULL
"""


def _instance(r: sqlite3.Row) -> Instance:
    return Instance(id=r["id"], uuid=r["uuid"], display_name=r["display_name"], hostname=r["hostname"],
                    host=r["host"], vm_state=r["vm_state"], task_state=r["task_state"], flavor=r["instance_type"],
                    image_ref=r["image_ref"], memory_mb=r["memory_mb"], vcpus=r["vcpus"], address=r["address"],
                    label=r["label"], fault=r["fault"], key_name=r["key_name"], key_data=r["key_data"],
                    user_data=r["user_data"], reservation_id=r["reservation_id"],
                    availability_zone=r["availability_zone"], created_at=r["created_at"],
                    updated_at=r["updated_at"], launched_at=r["launched_at"])


class ComputeAPI:
    def __init__(self, flags: Flags, db: Database, images: ImageStore | None = None):
        self.flags = flags
        self.db = db
        self.images = images or ImageStore(flags.image_store_path, db)
        self.unreachable_grace = UNREACHABLE_GRACE
        self.retry_interval = RETRY_INTERVAL
        self._guard = threading.Lock()
        self._locks: dict[int, threading.Lock] = {}
        self._tasks: set[threading.Thread] = set()

    # --- reads ----------------------------------------------------------------------------------

    def _rows(self, where: str = "", args: tuple = (), deleted: bool = False) -> list[Instance]:
        live = "" if deleted else "AND i.deleted = 0"
        with self.db.transaction() as conn:
            rows = conn.execute(f"{_INSTANCE_SELECT} {live} {where} ORDER BY i.created_at DESC, i.id DESC",
                                args).fetchall()
        return [_instance(r) for r in rows]

    def list(self) -> list[Instance]:
        """Live servers, newest first (Essex ordered by created_at descending)."""
        return self._rows()

    def get(self, ref: str) -> Instance:
        """By uuid, name or integer id, as novaclient's find_resource."""
        found = self._rows("AND (i.uuid = ? OR i.display_name = ? OR CAST(i.id AS TEXT) = ?)", (ref, ref, ref))
        if not found:
            raise ApiError(f"No server with a name or ID of '{ref}' exists.")
        if len(found) > 1:
            raise ApiError(f"Multiple server matches found for '{ref}', use an ID to be more specific.")
        return found[0]

    def _by_id(self, instance_id: int) -> Instance | None:
        found = self._rows("AND i.id = ?", (instance_id,))
        return found[0] if found else None

    def view(self, instance: Instance) -> dict[str, Any]:
        """An instance as the RPC returns it: its columns plus name, EC2 id, status and image name."""
        image = self.images.get(instance.image_ref)
        return {**dataclasses.asdict(instance), "name": instance.name, "ec2_id": instance.ec2_id,
                "status": instance.status, "image_name": image.name if image else instance.image_ref}

    # --- scheduling -----------------------------------------------------------------------------

    def compute_hosts(self) -> list[dict[str, Any]]:
        return self.db.service_get_all_by_topic("compute")

    def _service(self, host: str) -> dict[str, Any] | None:
        return next((h for h in self.compute_hosts() if h["host"] == host), None)

    def _schedule(self, availability_zone: str | None) -> dict[str, Any]:
        hosts = self.compute_hosts()
        if not hosts:
            raise ApiError("No valid host was found. No nova-compute has registered with the controller.")
        zone = self.flags.node_availability_zone
        if availability_zone:
            name, _, host = availability_zone.partition(":")
            if name != zone:
                raise ApiError(f"Invalid availability zone '{availability_zone}': the only zone is '{zone}' "
                               f"(use {zone}:<host> to pick a compute)")
            if host:
                target = self._service(host)
                if target is None:
                    raise ApiError(f"No valid host was found. Compute host '{host}' is not registered "
                                   f"(registered: {', '.join(h['host'] for h in hosts)}).")
                return target
        # Round-robin: the compute after the one that got the last instance, in name order (Essex's
        # chance scheduler picked at random; a fixed order keeps runs reproducible).
        with self.db.transaction() as conn:
            row = conn.execute("SELECT host FROM instances WHERE uuid IS NOT NULL AND host IS NOT NULL "
                               "ORDER BY id DESC LIMIT 1").fetchone()
        last = row[0] if row else None
        if last is None:
            return hosts[0]
        return next((h for h in hosts if h["host"] > last), hosts[0])

    # --- create -----------------------------------------------------------------------------------

    def _image(self, ref: str) -> Image:
        found = self.images.find(ref)
        if not found:
            raise ApiError(f"No image with a name or ID of '{ref}' exists.")
        if len(found) > 1:
            raise ApiError(f"Multiple image matches found for '{ref}', use an ID to be more specific.")
        return found[0]

    def create(self, name: str, image: str, flavor: str, availability_zone: str | None = None,
               key_name: str | None = None, user_data: str | None = None) -> Instance:
        """Record the instance in BUILD on a scheduled compute and start building it; returns at once."""
        if not name or not name.strip():
            raise ApiError("Server name is not defined.")
        itype = instance_types.find(str(flavor), self.flags.flavor_memory_mb)
        if itype is None:
            raise ApiError(f"No flavor with a name or ID of '{flavor}' exists.")
        img = self._image(image)
        key = self.get_keypair(key_name) if key_name else None
        if user_data:
            try:
                base64.b64decode(user_data, validate=True)
            except binascii.Error:
                raise ApiError("Userdata content cannot be decoded.") from None
        target = self._schedule(availability_zone)
        now = utcnow()
        with self.db.transaction() as conn:
            instance_id = max(self.flags.first_instance_id,
                              (conn.execute("SELECT MAX(id) FROM instances").fetchone()[0] or 0) + 1)
            conn.execute(
                "INSERT INTO instances (id, uuid, display_name, hostname, host, vm_state, task_state, "
                "instance_type, image_ref, memory_mb, vcpus, key_name, key_data, user_data, reservation_id, "
                "availability_zone, deleted, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (instance_id, str(uuidlib.uuid4()), name, sanitize_hostname(name), target["host"], BUILDING,
                 SCHEDULING, itype.name, img.id, itype.memory_mb, itype.vcpus, key["name"] if key else None,
                 key["public_key"] if key else None, user_data or "", ec2utils.generate_uid("r"),
                 self.flags.node_availability_zone, now, now))
        # Every instance is in the `default` security group (Essex); its rules travel with run_instance.
        SecurityGroups(self.db).add_instance(instance_id)
        LOG.info("Instance %s (%s) scheduled to %s", ec2utils.instance_name(instance_id), name, target["host"])
        instance = self._by_id(instance_id)  # as recorded: read before the build task can move it on
        assert instance is not None
        self._submit(self._build, instance_id)
        return instance

    # --- tasks ------------------------------------------------------------------------------------

    def _lock(self, instance_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(instance_id, threading.Lock())

    def _submit(self, task: Callable[[int], None], instance_id: int) -> None:
        thread = threading.Thread(target=self._run_task, args=(task, instance_id), daemon=True,
                                  name=f"{task.__name__.strip('_')}-{instance_id}")
        with self._guard:
            self._tasks.add(thread)
        thread.start()

    def _run_task(self, task: Callable[[int], None], instance_id: int) -> None:
        try:
            task(instance_id)
        except Exception:  # the row keeps its task_state; a restart resumes it
            LOG.exception("%s of instance %s failed unexpectedly", task.__name__, instance_id)
        finally:
            with self._guard:
                self._tasks.discard(threading.current_thread())

    def wait_for_tasks(self, timeout: float) -> bool:
        """True once no task runs (tests, and a clean stop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._guard:
                if not self._tasks:
                    return True
            time.sleep(0.05)
        return False

    def resume(self) -> int:
        """Restart the tasks a previous nova-api left unfinished; returns how many."""
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT id, task_state FROM instances WHERE uuid IS NOT NULL AND deleted = 0 "
                                "AND task_state IS NOT NULL ORDER BY id").fetchall()
        for row in rows:
            LOG.info("Resuming %s of %s", row["task_state"], ec2utils.instance_name(row["id"]))
            self._submit(self._delete if row["task_state"] == DELETING else self._build, row["id"])
        return len(rows)

    def _set(self, instance_id: int, **values: Any) -> None:
        cols = "".join(f"{k} = ?, " for k in values)
        with self.db.transaction() as conn:
            conn.execute(f"UPDATE instances SET {cols}updated_at = ? WHERE id = ?",
                         (*values.values(), utcnow(), instance_id))

    def _finish(self, instance_id: int, **values: Any) -> None:
        """End a build: set ``values`` and clear task_state, unless a delete came in meanwhile."""
        cols = "".join(f"{k} = ?, " for k in values)
        with self.db.transaction() as conn:
            conn.execute(f"UPDATE instances SET {cols}task_state = CASE WHEN task_state = '{DELETING}' "
                         f"THEN task_state ELSE NULL END, updated_at = ? WHERE id = ?",
                         (*values.values(), utcnow(), instance_id))

    def _advance(self, instance_id: int, task_state: str) -> bool:
        """Move a build to its next step, atomically unless a delete came in; False then."""
        with self.db.transaction() as conn:
            cursor = conn.execute(f"UPDATE instances SET task_state = ?, updated_at = ? WHERE id = ? "
                                  f"AND deleted = 0 AND task_state IS NOT '{DELETING}'",
                                  (task_state, utcnow(), instance_id))
        return cursor.rowcount == 1

    def _retrying(self, call: Callable[[], Any]) -> Any:
        """Retry ``call`` while its server is unreachable, for ``unreachable_grace`` seconds.

        Essex queued a cast for a stopped service in AMQP; here the message is re-sent instead.
        """
        deadline = time.monotonic() + self.unreachable_grace
        while True:
            try:
                return call()
            except rpc.RemoteError as exc:
                if exc.delivered or time.monotonic() >= deadline:
                    raise
                LOG.warning("%s; retrying", exc)
                time.sleep(self.retry_interval)

    def _network_call(self, method: str, **kwargs: Any) -> Any:
        return self._retrying(lambda: rpc.call(self.flags.network_host, self.flags.network_rpc_port, method,
                                               **kwargs))

    def _compute_call(self, host: str, method: str, timeout: float, **kwargs: Any) -> Any:
        def call() -> Any:
            service = self._service(host)  # re-read: a restarted compute may have re-registered
            if service is None:
                raise BuildError(f"compute host {host} is not registered")
            return rpc.call(service["address"], service["port"], method, timeout=timeout, **kwargs)
        return self._retrying(call)

    def _network_info(self, instance: Instance) -> dict[str, Any]:
        """nova-network's allocation for the instance, made once and cached (Essex: info cache)."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT network_info FROM instance_info_caches WHERE instance_id = ?",
                               (instance.id,)).fetchone()
        if row:
            return dict(json.loads(row[0]))
        try:
            network = self._network_call("allocate_for_instance", instance_id=instance.id,
                                         hostname=instance.hostname)
        except rpc.RemoteError as exc:
            if not (exc.delivered and "already has a fixed IP" in exc.message):
                raise
            # A previous nova-api stopped between the allocation and recording it: start over.
            LOG.warning("%s: %s; deallocating and allocating again", instance.name, exc.message)
            self._network_call("deallocate_for_instance", instance_id=instance.id)
            network = self._network_call("allocate_for_instance", instance_id=instance.id,
                                         hostname=instance.hostname)
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO instance_info_caches (instance_id, network_info, created_at) VALUES (?, ?, ?)",
                         (instance.id, json.dumps(network), utcnow()))
        return dict(network)

    def image_url(self, image: Image) -> str:
        """Where a compute downloads ``image`` from: the store nova-api serves on this host."""
        return f"http://{self.flags.my_ip}:{self.flags.glance_port}/v1/images/{image.id}"

    def _build(self, instance_id: int) -> None:
        with self._lock(instance_id):
            instance = self._by_id(instance_id)
            if instance is None or instance.vm_state != BUILDING or instance.task_state == DELETING:
                return
            try:
                if not self._advance(instance_id, NETWORKING):
                    return
                network = self._network_info(instance)
                if not self._advance(instance_id, SPAWNING):
                    return  # deleted meanwhile: the delete task deallocates
                image = self.images.get(instance.image_ref)
                if image is None:
                    raise BuildError(f"image {instance.image_ref} is no longer in the image store")
                groups = SecurityGroups(self.db)
                spec = {"id": instance.id, "name": instance.name, "uuid": instance.uuid,
                        "memory_mb": instance.memory_mb, "vcpus": instance.vcpus, "hostname": instance.hostname,
                        "security_groups": groups.groups_of(instance.id)}
                result = self._compute_call(instance.host or "", "run_instance", RUN_INSTANCE_TIMEOUT,
                                            instance=spec, network=network, image=image.hash,
                                            image_url=self.image_url(image),
                                            rules=groups.rules_for_instance(instance.id))
                if not (isinstance(result, dict) and result.get("running")):
                    raise BuildError(f"domain {instance.name} is not running on {instance.host} after spawn")
            except rpc.RemoteError as exc:
                self._fail_build(instance, exc.message if exc.delivered else str(exc))
                return
            except BuildError as exc:
                self._fail_build(instance, str(exc))
                return
            self._finish(instance_id, vm_state=ACTIVE, launched_at=utcnow(), fault=None)
            LOG.info("Instance %s is ACTIVE on %s with %s", instance.name, instance.host, network.get("address"))

    def _fail_build(self, instance: Instance, fault: str) -> None:
        """ERROR with the fault; the fixed IP goes back to the pool (Essex deallocated on failure)."""
        LOG.error("Instance %s failed to build: %s", instance.name, fault)
        try:
            self._network_call("deallocate_for_instance", instance_id=instance.id)
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM instance_info_caches WHERE instance_id = ?", (instance.id,))
        except rpc.RemoteError as exc:
            LOG.error("Instance %s: could not deallocate its network: %s", instance.name, exc)
        self._finish(instance.id, vm_state=ERROR, fault=fault)

    # --- delete -----------------------------------------------------------------------------------

    def delete(self, ref: str) -> Instance:
        """Mark the instance ``deleting`` and terminate it in a task; returns at once."""
        instance = self.get(ref)
        if instance.task_state == DELETING:
            return instance
        self._set(instance.id, task_state=DELETING)
        marked = self._by_id(instance.id) or instance  # read before the task can remove the row
        self._submit(self._delete, instance.id)
        return marked

    def _delete(self, instance_id: int) -> None:
        with self._lock(instance_id):
            instance = self._by_id(instance_id)
            if instance is None:
                return
            try:
                if instance.host and self._service(instance.host):
                    try:
                        self._compute_call(instance.host, "terminate_instance", TERMINATE_TIMEOUT,
                                           name=instance.name)
                    except rpc.RemoteError as exc:
                        if exc.delivered:
                            raise
                        # Essex deleted locally when the compute service was down.
                        LOG.warning("%s: compute %s unreachable (%s); deleting locally", instance.name,
                                    instance.host, exc.message)
                self._network_call("deallocate_for_instance", instance_id=instance.id)
            except (rpc.RemoteError, BuildError) as exc:
                fault = exc.message if isinstance(exc, rpc.RemoteError) else str(exc)
                LOG.error("Instance %s failed to delete: %s", instance.name, fault)
                self._set(instance_id, vm_state=ERROR, task_state=None, fault=fault)
                return
            now = utcnow()
            with self.db.transaction() as conn:
                conn.execute("UPDATE instances SET vm_state = ?, task_state = NULL, deleted = 1, terminated_at = ?, "
                             "updated_at = ? WHERE id = ?", (DELETED, now, now, instance_id))
                conn.execute("DELETE FROM instance_info_caches WHERE instance_id = ?", (instance_id,))
            LOG.info("Instance %s deleted", instance.name)

    # --- console ----------------------------------------------------------------------------------

    def console_output(self, ref: str) -> str:
        instance = self.get(ref)
        service = self._service(instance.host or "")
        if service is None:
            raise ApiError(f"Compute host {instance.host} of {instance.display_name} is not registered.")
        try:
            return str(rpc.call(service["address"], service["port"], "get_console_output", name=instance.name,
                                timeout=CONSOLE_TIMEOUT))
        except rpc.RemoteError as exc:
            raise ApiError(f"Cannot read the console of {instance.display_name}: {exc}") from None

    # --- key pairs --------------------------------------------------------------------------------

    def create_keypair(self, name: str, public_key: str | None = None) -> dict[str, Any]:
        """Import ``public_key``, or generate a pair and return its private key once (Essex)."""
        if not name or len(name) > 255:
            raise ApiError("Keypair name must be between 1 and 255 characters long.")
        if not set(name) <= KEYPAIR_NAME_CHARS:
            raise ApiError("Keypair name contains unsafe characters (use letters, digits, '-', '_' and spaces).")
        private_key = None
        try:
            if public_key:
                public_key = public_key.strip()
                fingerprint = crypto.fingerprint(public_key)
            else:
                private_key, public_key, fingerprint = crypto.generate_key_pair()
                public_key = public_key.strip()
        except crypto.InvalidKeypair as exc:
            raise ApiError(str(exc)) from None
        try:
            with self.db.transaction() as conn:
                conn.execute("INSERT INTO key_pairs (name, fingerprint, public_key, created_at) VALUES (?, ?, ?, ?)",
                             (name, fingerprint, public_key, utcnow()))
        except sqlite3.IntegrityError:
            raise ApiError(f"Key pair '{name}' already exists.") from None
        return {"name": name, "fingerprint": fingerprint, "public_key": public_key, "private_key": private_key}

    def list_keypairs(self) -> list[dict[str, Any]]:
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT name, fingerprint, public_key FROM key_pairs ORDER BY name").fetchall()
        return [dict(r) for r in rows]

    def get_keypair(self, name: str) -> dict[str, Any]:
        found = [k for k in self.list_keypairs() if k["name"] == name]
        if not found:
            raise ApiError(f"Invalid key_name provided: no key pair named '{name}' (see nova keypair-add).")
        return found[0]

    def delete_keypair(self, name: str) -> None:
        self.get_keypair(name)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM key_pairs WHERE name = ?", (name,))

    # --- images and flavors -----------------------------------------------------------------------

    def list_images(self) -> list[dict[str, Any]]:
        return [{"id": i.id, "name": i.name, "status": "ACTIVE", "kind": i.kind, "hash": i.hash}
                for i in self.images.list()]

    def list_flavors(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(t) for t in instance_types.all_types(self.flags.flavor_memory_mb)]

    # --- metadata ---------------------------------------------------------------------------------

    def metadata_for_address(self, address: str) -> dict[str, Any] | None:
        """The metadata tree of the live instance that holds fixed IP ``address``; None if none does."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT i.id FROM fixed_ips f JOIN instances i ON i.id = f.instance_id "
                               "WHERE f.address = ? AND i.deleted = 0 AND i.uuid IS NOT NULL", (address,)).fetchone()
        instance = self._by_id(row[0]) if row else None
        if instance is None:
            return None
        mpi: dict[str, list[str]] = {}
        for other in reversed(self.list()):
            if other.address:
                mpi.setdefault(str(other.key_name), []).append(f"{other.address} slots={other.vcpus}")
        return metadata.build_tree(
            instance_id=instance.id, hostname=instance.hostname, dhcp_domain=self.flags.dhcp_domain,
            instance_type=instance.flavor, address=address,
            availability_zone=instance.availability_zone or self.flags.node_availability_zone,
            image_ec2_id=self.images.ec2_id(instance.image_ref), reservation_id=instance.reservation_id or "",
            key_name=instance.key_name, key_data=instance.key_data, user_data=instance.user_data, mpi=mpi)

    # --- the RPC nova-api serves --------------------------------------------------------------------

    def rpc_methods(self) -> dict[str, Callable[..., Any]]:
        """What the nova CLI calls on nova-api (JSON over HTTP, as the other services)."""
        return {
            "create_server": lambda **kw: self.view(self.create(**kw)),
            "list_servers": lambda: [self.view(i) for i in self.list()],
            "get_server": lambda ref: self.view(self.get(ref)),
            "delete_server": lambda ref: self.view(self.delete(ref)),
            "get_console_output": self.console_output,
            "list_images": self.list_images,
            "list_flavors": self.list_flavors,
            "create_keypair": self.create_keypair,
            "list_keypairs": self.list_keypairs,
            "delete_keypair": self.delete_keypair,
        }
