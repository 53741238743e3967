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

The rows are read and written through ``nova.db``; the task threads are ``nova.compute.tasks``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import re
import string
from collections.abc import Callable
from typing import Any, TypeVar

from nova import crypto, rpc
from nova.api import ec2utils, metadata
from nova.compute import instance_types, power_state
from nova.compute.security_groups import SecurityGroups
from nova.compute.states import ACTIVE, BUILDING, DELETING, ERROR, NETWORKING, SHUTOFF, SPAWNING
from nova.compute.tasks import Task, TaskRunner
from nova.db import Database, DuplicateKeyPair, Instance, utcnow
from nova.flags import Flags
from nova.image.store import Image, ImageStore

LOG = logging.getLogger("nova.compute.api")

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


T = TypeVar("T")


def _the_one(found: list[T], kind: str, ref: str) -> T:
    """The single match of ``ref``, or novaclient's error for none or several."""
    if not found:
        raise ApiError(f"No {kind} with a name or ID of '{ref}' exists.")
    if len(found) > 1:
        raise ApiError(f"Multiple {kind} matches found for '{ref}', use an ID to be more specific.")
    return found[0]


class ComputeAPI:
    def __init__(self, flags: Flags, db: Database, images: ImageStore | None = None):
        self.flags = flags
        self.db = db
        self.images = images or ImageStore(flags.image_store_path, db)
        self.unreachable_grace = UNREACHABLE_GRACE
        self.retry_interval = RETRY_INTERVAL
        self.tasks = TaskRunner()

    # --- reads ----------------------------------------------------------------------------------

    def list(self) -> list[Instance]:
        """Live servers, newest first (Essex ordered by created_at descending)."""
        return self.db.instance_get_all()

    def get(self, ref: str) -> Instance:
        """By uuid, name or integer id, as novaclient's find_resource."""
        return _the_one(self.db.instance_find(ref), "server", ref)

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
        last = self.db.instance_last_host()
        if last is None:
            return hosts[0]
        return next((h for h in hosts if h["host"] > last), hosts[0])

    # --- create -----------------------------------------------------------------------------------

    def _image(self, ref: str) -> Image:
        return _the_one(self.images.find(ref), "image", ref)

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
        instance_id = self.db.instance_create(
            first_id=self.flags.first_instance_id, display_name=name, hostname=sanitize_hostname(name),
            host=str(target["host"]), instance_type=itype.name, image_ref=img.id, memory_mb=itype.memory_mb,
            vcpus=itype.vcpus, key_name=key["name"] if key else None, key_data=key["public_key"] if key else None,
            user_data=user_data or "", reservation_id=ec2utils.generate_uid("r"),
            availability_zone=self.flags.node_availability_zone)
        # Every instance is in the `default` security group (Essex); its rules travel with run_instance.
        SecurityGroups(self.db).add_instance(instance_id)
        LOG.info("Instance %s (%s) scheduled to %s", ec2utils.instance_name(instance_id), name, target["host"])
        instance = self.db.instance_get(instance_id)  # as recorded: read before the build task can move it on
        assert instance is not None
        self._submit(self._build, instance_id)
        return instance

    # --- tasks ------------------------------------------------------------------------------------

    def _submit(self, task: Task, instance_id: int) -> None:
        self.tasks.submit(task, instance_id)

    def wait_for_tasks(self, timeout: float) -> bool:
        """True once no task runs (tests, and a clean stop)."""
        return self.tasks.wait(timeout)

    def resume(self) -> int:
        """Restart the tasks a previous nova-api left unfinished; returns how many."""
        unfinished = self.db.instance_get_all_unfinished()
        for instance_id, task_state in unfinished:
            LOG.info("Resuming %s of %s", task_state, ec2utils.instance_name(instance_id))
            self._submit(self._delete if task_state == DELETING else self._build, instance_id)
        return len(unfinished)

    def _network_call(self, method: str, **kwargs: Any) -> Any:
        # Essex queued a cast for a stopped service in AMQP; here the message is re-sent instead.
        return rpc.call(self.flags.network_host, self.flags.network_rpc_port, method,
                        retry_for=self.unreachable_grace, retry_interval=self.retry_interval, **kwargs)

    def _compute_call(self, host: str, method: str, timeout: float, **kwargs: Any) -> Any:
        service = self._service(host)
        if service is None:
            raise BuildError(f"compute host {host} is not registered")
        return rpc.call(str(service["address"]), int(str(service["port"])), method, timeout=timeout,
                        retry_for=self.unreachable_grace, retry_interval=self.retry_interval, **kwargs)

    def _network_info(self, instance: Instance) -> dict[str, Any]:
        """nova-network's allocation for the instance, made once and cached (Essex: info cache)."""
        cached = self.db.instance_info_cache_get(instance.id)
        if cached is not None:
            return cached
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
        self.db.instance_info_cache_create(instance.id, dict(network))
        return dict(network)

    def image_url(self, image: Image) -> str:
        """Where a compute downloads ``image`` from: the store nova-api serves on this host."""
        return f"http://{self.flags.my_ip}:{self.flags.glance_port}/v1/images/{image.id}"

    def _build(self, instance_id: int) -> None:
        instance = self.db.instance_get(instance_id)
        if instance is None or instance.vm_state != BUILDING or instance.task_state == DELETING:
            return
        try:
            if not self.db.instance_advance_task(instance_id, NETWORKING):
                return
            network = self._network_info(instance)
            if not self.db.instance_advance_task(instance_id, SPAWNING):
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
            running_state = int(result.get("power_state", power_state.RUNNING))
        except rpc.RemoteError as exc:
            self._fail_build(instance, exc.message if exc.delivered else str(exc))
            return
        except BuildError as exc:
            self._fail_build(instance, str(exc))
            return
        self.db.instance_finish_task(instance_id, vm_state=ACTIVE, power_state=running_state, launched_at=utcnow(),
                                     fault=None)
        LOG.info("Instance %s is ACTIVE on %s with %s", instance.name, instance.host, network.get("address"))

    def _fail_build(self, instance: Instance, fault: str) -> None:
        """ERROR with the fault; the fixed IP goes back to the pool (Essex deallocated on failure)."""
        LOG.error("Instance %s failed to build: %s", instance.name, fault)
        try:
            self._network_call("deallocate_for_instance", instance_id=instance.id)
            self.db.instance_info_cache_delete(instance.id)
        except rpc.RemoteError as exc:
            LOG.error("Instance %s: could not deallocate its network: %s", instance.name, exc)
        self.db.instance_finish_task(instance.id, vm_state=ERROR, fault=fault)

    # --- delete -----------------------------------------------------------------------------------

    def delete(self, ref: str) -> Instance:
        """Mark the instance ``deleting`` and terminate it in a task; returns at once."""
        instance = self.get(ref)
        if instance.task_state == DELETING:
            return instance
        self.db.instance_update(instance.id, task_state=DELETING)
        marked = self.db.instance_get(instance.id) or instance  # read before the task can remove the row
        self._submit(self._delete, instance.id)
        return marked

    def _delete(self, instance_id: int) -> None:
        instance = self.db.instance_get(instance_id)
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
            self.db.instance_update(instance_id, vm_state=ERROR, task_state=None, fault=fault)
            return
        self.db.instance_destroy(instance_id)
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
            self.db.key_pair_create(name, fingerprint, public_key)
        except DuplicateKeyPair as exc:
            raise ApiError(str(exc)) from None
        return {"name": name, "fingerprint": fingerprint, "public_key": public_key, "private_key": private_key}

    def list_keypairs(self) -> list[dict[str, Any]]:
        return self.db.key_pair_get_all()

    def get_keypair(self, name: str) -> dict[str, Any]:
        found = [k for k in self.list_keypairs() if k["name"] == name]
        if not found:
            raise ApiError(f"Invalid key_name provided: no key pair named '{name}' (see nova keypair-add).")
        return found[0]

    def delete_keypair(self, name: str) -> None:
        self.get_keypair(name)
        self.db.key_pair_destroy(name)

    # --- images and flavors -----------------------------------------------------------------------

    def list_images(self) -> list[dict[str, Any]]:
        return [{"id": i.id, "name": i.name, "status": "ACTIVE", "kind": i.kind, "hash": i.hash}
                for i in self.images.list()]

    def list_flavors(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(t) for t in instance_types.all_types(self.flags.flavor_memory_mb)]

    # --- metadata ---------------------------------------------------------------------------------

    def metadata_for_address(self, address: str) -> dict[str, Any] | None:
        """The metadata tree of the live instance that holds fixed IP ``address``; None if none does."""
        instance = self.db.instance_get_by_fixed_ip(address)
        if instance is None:
            return None
        return metadata.build_tree(
            instance_id=instance.id, hostname=instance.hostname, dhcp_domain=self.flags.dhcp_domain,
            instance_type=instance.flavor, address=address,
            availability_zone=instance.availability_zone or self.flags.node_availability_zone,
            image_ec2_id=self.images.ec2_id(instance.image_ref), reservation_id=instance.reservation_id or "",
            key_name=instance.key_name, key_data=instance.key_data, user_data=instance.user_data)

    # --- the rows nova-compute reads and writes (Essex's nova-compute opened the database) --------

    def instances_on_host(self, host: str) -> list[dict[str, Any]]:
        """Id, names, vm_state, task_state and power_state of ``host``'s live instances."""
        return [{"id": i.id, "uuid": i.uuid, "name": i.name, "vm_state": i.vm_state, "task_state": i.task_state,
                 "power_state": i.power_state} for i in self.db.instance_get_all_by_host(host)]

    def set_power_state(self, instance_id: int, power_state: int, vm_state: str | None = None) -> bool:
        """A compute's reading of an instance's power state (and the vm_state it implies)."""
        if vm_state not in (None, ACTIVE, SHUTOFF):
            raise ApiError(f"a compute may not set vm_state {vm_state!r}")
        return self.db.instance_set_power_state(int(instance_id), int(power_state), vm_state)

    # --- the RPC nova-api serves --------------------------------------------------------------------

    def rpc_methods(self) -> dict[str, Callable[..., Any]]:
        """What the nova CLI and nova-compute call on nova-api (JSON over HTTP, as the other services)."""
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
            # nova-compute's database access
            "instances_on_host": self.instances_on_host,
            "set_power_state": self.set_power_state,
        }
