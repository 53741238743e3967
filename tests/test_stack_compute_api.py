"""stack/nova/compute/api.py: boot BUILD → ACTIVE/ERROR, delete, ids and names, scheduling, errors, restarts.

The compute API runs against the real nova-network manager (database, allocation; its host
commands recorded by test_stack_manager's FakeDriver) served over the real RPC on 127.0.0.1, and
stand-in computes that answer run_instance/terminate_instance like nova-compute does.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

STACK = Path(__file__).resolve().parents[1] / "stack"
sys.path.insert(0, str(STACK))

from test_stack_manager import FakeDriver  # noqa: E402

from flatbed.waiters import wait_until  # noqa: E402
from nova import db as nova_db  # noqa: E402
from nova import flags, rpc  # noqa: E402
from nova.compute import api as compute_api  # noqa: E402
from nova.compute import instance_types, power_state  # noqa: E402
from nova.compute.records import InstanceRecords  # noqa: E402
from nova.image.store import ImageStore  # noqa: E402
from nova.network import manager  # noqa: E402

TASKS = 20.0
KEY = ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDXm0uJ3c3jYc0kFq0Wf6r3m8Dk7v2mQ0m8xH5m1Jc4xkQ2bCq2i6Yb0Xq5F2rC"
       "9Yk1x4Y1nQ0sH3b2ZpKq2cXc8v2YpU4b3Fj7Q8lP3wK7oE9m9Xw4uL6T9mY4M1cN3J8d5Gk6pS2sR7tV0aQ1fW3eD5hU8iO9yB2z"
       "X4cV6bN7mM0lK1jH2gF3dS4aP5oI6uY7tR8eW9qQ== cirros@flatbed")


@dataclass
class FakeCompute:
    """nova-compute's RPC: records domains; ``gate`` holds run_instance, ``fail`` makes it raise."""

    name: str
    domains: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail: str | None = None
    gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    def run_instance(self, instance: dict[str, Any], network: dict[str, Any], image: str,
                     image_url: str | None = None, rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        self.calls.append(("run_instance", instance["name"]))
        assert self.gate.wait(TASKS)
        if self.fail:
            raise RuntimeError(self.fail)
        self.domains[instance["name"]] = {"instance": instance, "network": network, "image": image,
                                          "image_url": image_url}
        return {"running": True}

    def terminate_instance(self, name: str) -> dict[str, Any]:
        self.calls.append(("terminate_instance", name))
        self.domains.pop(name, None)
        return {"running": False}

    def get_console_output(self, name: str) -> str:
        return f"console of {name}\n"

    def methods(self) -> dict[str, Any]:
        return {"run_instance": self.run_instance, "terminate_instance": self.terminate_instance,
                "get_console_output": self.get_console_output}


def write_image(store: Path, name: str = "cirros", image_hash: str = "0123abcd") -> None:
    directory = store / image_hash
    directory.mkdir(parents=True)
    (directory / "kernel").write_bytes(b"kernel")
    (directory / "ramdisk").write_bytes(b"ramdisk")
    (directory / "image.json").write_text(json.dumps({"name": name, "kind": "initramfs", "hash": image_hash,
                                                      "files": ["kernel", "ramdisk"]}))


class Cloud:
    """A controller in one process: nova-network's RPC, a compute API, and stand-in computes."""

    def __init__(self, tmp_path: Path, extra: str = "") -> None:
        self.tmp_path = tmp_path
        self.servers: list[rpc.RpcServer] = []
        base = (f"--my_ip=127.0.0.1\n--host=controller-1\n--state_path={tmp_path}\n--flat_interface=eth2\n"
                "--network_host=127.0.0.1\n")
        net_conf = flags.parse(base)
        self.network = manager.FlatDHCPManager(net_conf, nova_db.Database(net_conf.sqlite_path), FakeDriver())
        self.network.create_network("novanetwork", "10.0.0.0/24", "br100", "eth2", "controller-1")
        srv = self._serve({**self.network.rpc_methods()})
        self.conf = flags.parse(base + f"--network_rpc_port={srv.port}\n{extra}")
        self.db = nova_db.Database(self.conf.sqlite_path)
        write_image(Path(self.conf.image_store_path))
        self.computes: dict[str, FakeCompute] = {}
        self.api = self.new_api()

    def _serve(self, methods: dict[str, Any]) -> rpc.RpcServer:
        srv = rpc.RpcServer("127.0.0.1", 0, methods)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.servers.append(srv)
        return srv

    def new_api(self) -> compute_api.ComputeAPI:
        """A compute API on the same database, as a restarted nova-api."""
        db = nova_db.Database(self.conf.sqlite_path)
        api = compute_api.ComputeAPI(self.conf, db, ImageStore(self.conf.image_store_path, db))
        api.unreachable_grace, api.retry_interval = 0.5, 0.1
        return api

    def add_compute(self, name: str) -> FakeCompute:
        compute = FakeCompute(name)
        srv = self._serve(compute.methods())
        self.db.service_update(name, "compute", "127.0.0.1", srv.port)
        self.computes[name] = compute
        return compute

    def settle(self, api: compute_api.ComputeAPI | None = None) -> None:
        assert (api or self.api).wait_for_tasks(TASKS), "compute API tasks did not finish"

    def close(self) -> None:
        for computes in self.computes.values():
            computes.gate.set()
        self.api.wait_for_tasks(TASKS)
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    c = Cloud(tmp_path)
    c.add_compute("compute-1")
    c.add_compute("compute-2")
    yield c
    c.close()


def boot(cloud: Cloud, name: str = "cirros", **kwargs: Any) -> compute_api.Instance:
    kwargs.setdefault("image", "cirros")
    kwargs.setdefault("flavor", "1")
    return cloud.api.create(name, **kwargs)


# --- boot -------------------------------------------------------------------------------------------

def test_boot_returns_build_at_once_then_active(cloud: Cloud) -> None:
    compute = cloud.computes["compute-1"]
    compute.gate.clear()
    instance = boot(cloud)
    assert (instance.status, instance.vm_state, instance.task_state) == ("BUILD", "building", "scheduling")
    assert (instance.id, instance.name, instance.ec2_id, instance.hostname) == (
        9, "instance-00000009", "i-00000009", "cirros")
    assert instance.host == "compute-1" and instance.flavor == "m1.tiny" and instance.memory_mb == 512
    compute.gate.set()
    cloud.settle()
    active = cloud.api.get("cirros")
    assert (active.status, active.task_state, active.fault) == ("ACTIVE", None, None)
    assert (active.label, active.address) == ("novanetwork", "10.0.0.2")
    domain = compute.domains["instance-00000009"]
    assert domain["network"]["address"] == "10.0.0.2" and domain["network"]["bridge"] == "br100"
    assert domain["instance"] == {"id": 9, "name": "instance-00000009", "uuid": active.uuid, "memory_mb": 512,
                                  "vcpus": 1, "hostname": "cirros",
                                  "security_groups": ["default"]}
    image = cloud.api.images.find("cirros")[0]
    assert domain["image"] == "0123abcd"
    assert domain["image_url"] == f"http://127.0.0.1:9292/v1/images/{image.id}"


def test_ids_names_and_hostnames_across_9_and_10(cloud: Cloud) -> None:
    first = boot(cloud, "cirros")
    second = boot(cloud, "My Server_2")
    cloud.settle()
    assert (first.id, second.id) == (9, 10)
    assert (second.name, second.ec2_id, second.hostname) == ("instance-0000000a", "i-0000000a", "my-server-2")
    assert cloud.api.get("10").display_name == "My Server_2"
    assert cloud.api.get(second.uuid).id == 10
    # ids are never reused, even after a delete (Essex's autoincrement)
    cloud.api.delete("10")
    cloud.settle()
    assert boot(cloud, "third").id == 11


@pytest.mark.parametrize(("name", "hostname"), [
    ("cirros", "cirros"), ("My Server", "my-server"), ("a_b c", "a-b-c"), ("..web-1.-", "web-1"),
    ("hé llo!", "h-llo"), ("服务器1", "1"), ("UPPER.case", "upper.case"),
])
def test_sanitize_hostname(name: str, hostname: str) -> None:
    assert compute_api.sanitize_hostname(name) == hostname


def test_first_instance_id_from_flags(tmp_path: Path) -> None:
    c = Cloud(tmp_path, "--first_instance_id=1\n")
    c.add_compute("cmp-a")
    try:
        assert boot(c).name == "instance-00000001"
    finally:
        c.close()


def test_flavor_memory_override(tmp_path: Path) -> None:
    c = Cloud(tmp_path, "--flavor_memory_mb=128\n")
    c.add_compute("compute-1")
    try:
        instance = boot(c, flavor="m1.small")
        assert (instance.flavor, instance.memory_mb, instance.vcpus) == ("m1.small", 128, 1)
        assert {f["name"]: f["memory_mb"] for f in c.api.list_flavors()}["m1.xlarge"] == 128
    finally:
        c.close()


def test_essex_flavor_table() -> None:
    assert [(t.flavorid, t.name, t.memory_mb, t.vcpus, t.local_gb) for t in instance_types.all_types()] == [
        ("1", "m1.tiny", 512, 1, 0), ("2", "m1.small", 2048, 1, 20), ("3", "m1.medium", 4096, 2, 40),
        ("4", "m1.large", 8192, 4, 80), ("5", "m1.xlarge", 16384, 8, 160)]
    assert instance_types.find("m1.large").flavorid == "4"
    assert instance_types.find("7") is None
    with pytest.raises(ValueError, match="flavor_memory_mb"):
        instance_types.all_types(-1)


# --- scheduling -------------------------------------------------------------------------------------

def test_round_robin_and_pinned_hosts(cloud: Cloud) -> None:
    hosts = [boot(cloud, f"vm{i}").host for i in range(3)]
    assert hosts == ["compute-1", "compute-2", "compute-1"]
    assert boot(cloud, "pinned", availability_zone="nova:compute-1").host == "compute-1"
    assert boot(cloud, "after-pinned").host == "compute-2"  # round-robin continues after the pinned one
    assert boot(cloud, "zone-only", availability_zone="nova").host == "compute-1"
    cloud.settle()
    assert len(cloud.computes["compute-1"].domains) == 4 and len(cloud.computes["compute-2"].domains) == 2


@pytest.mark.parametrize(("zone", "message"), [
    ("nova:compute-9", "No valid host was found. Compute host 'compute-9' is not registered "
                       "(registered: compute-1, compute-2)."),
    ("az1:compute-1", "Invalid availability zone 'az1:compute-1': the only zone is 'nova'"),
])
def test_bad_zones(cloud: Cloud, zone: str, message: str) -> None:
    with pytest.raises(compute_api.ApiError) as error:
        boot(cloud, availability_zone=zone)
    assert str(error.value).startswith(message)
    assert cloud.api.list() == []


def test_no_compute_registered(tmp_path: Path) -> None:
    c = Cloud(tmp_path)
    try:
        with pytest.raises(compute_api.ApiError, match="No valid host was found. No nova-compute has registered"):
            boot(c)
    finally:
        c.close()


# --- API errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"flavor": "7"}, "No flavor with a name or ID of '7' exists."),
    ({"image": "ubuntu"}, "No image with a name or ID of 'ubuntu' exists."),
    ({"key_name": "nokey"}, "Invalid key_name provided: no key pair named 'nokey' (see nova keypair-add)."),
    ({"user_data": "not base64!"}, "Userdata content cannot be decoded."),
])
def test_create_errors(cloud: Cloud, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(compute_api.ApiError) as error:
        boot(cloud, **kwargs)
    assert str(error.value) == message
    assert cloud.api.list() == []


def test_unknown_and_ambiguous_servers(cloud: Cloud) -> None:
    with pytest.raises(compute_api.ApiError, match=r"^No server with a name or ID of 'ghost' exists\.$"):
        cloud.api.get("ghost")
    boot(cloud, "twin")
    boot(cloud, "twin")
    with pytest.raises(compute_api.ApiError, match="Multiple server matches found for 'twin'"):
        cloud.api.get("twin")
    with pytest.raises(compute_api.ApiError, match="No server with a name or ID of 'ghost'"):
        cloud.api.delete("ghost")


def test_ambiguous_image_name(cloud: Cloud) -> None:
    write_image(Path(cloud.conf.image_store_path), "cirros", "ffff0000")
    with pytest.raises(compute_api.ApiError, match="Multiple image matches found for 'cirros'"):
        boot(cloud)
    assert boot(cloud, image="ffff0000").image_ref == cloud.api.images.find("ffff0000")[0].id


# --- failures -----------------------------------------------------------------------------------------

def test_compute_failure_is_error_with_fault_and_frees_the_ip(cloud: Cloud) -> None:
    cloud.computes["compute-1"].fail = "libvirtError: internal error: cannot start qemu"
    boot(cloud, "broken")
    cloud.settle()
    broken = cloud.api.get("broken")
    assert broken.status == "ERROR" and broken.task_state is None
    assert broken.fault == "RuntimeError: libvirtError: internal error: cannot start qemu"
    assert broken.address is None
    # Deallocated at once; as in Essex, a never-leased address stays associated until the periodic
    # disassociation (fixed_ip_disassociate_timeout), so the next guest gets the next address.
    fixed = cloud.network.db.fixed_ip_get_by_address("10.0.0.2")
    assert not fixed.allocated and fixed.instance_id == broken.id
    boot(cloud, "ok")
    cloud.settle()
    assert cloud.api.get("ok").address == "10.0.0.3"


def test_unreachable_compute_is_error_after_the_grace(cloud: Cloud) -> None:
    closed = rpc.RpcServer("127.0.0.1", 0, {})
    port = closed.port
    closed.server_close()
    cloud.db.service_update("compute-3", "compute", "127.0.0.1", port)
    boot(cloud, "lost", availability_zone="nova:compute-3")
    cloud.settle()
    lost = cloud.api.get("lost")
    assert lost.status == "ERROR"
    assert lost.fault.startswith(f"rpc run_instance to 127.0.0.1:{port} failed:")
    assert "refused" in lost.fault


# --- delete -------------------------------------------------------------------------------------------

def test_delete_terminates_and_deallocates(cloud: Cloud) -> None:
    boot(cloud)
    cloud.settle()
    deleting = cloud.api.delete("cirros")
    assert deleting.task_state == "deleting" and deleting.status == "ACTIVE"
    cloud.settle()
    assert cloud.api.list() == []
    assert cloud.computes["compute-1"].domains == {}
    fixed = cloud.network.db.fixed_ip_get_by_address("10.0.0.2")
    # Deallocated; never leased, so (Essex) it waits for the periodic disassociation to rejoin the pool.
    assert not fixed.allocated and fixed.instance_id == 9
    with pytest.raises(compute_api.ApiError):
        cloud.api.get("cirros")


def test_delete_during_spawn_waits_for_it(cloud: Cloud) -> None:
    compute = cloud.computes["compute-1"]
    compute.gate.clear()
    boot(cloud)
    wait_until(lambda: compute.calls, timeout=TASKS, what="run_instance to reach the compute")
    cloud.api.delete("cirros")
    compute.gate.set()
    cloud.settle()
    assert cloud.api.list() == []
    assert compute.calls == [("run_instance", "instance-00000009"), ("terminate_instance", "instance-00000009")]
    with cloud.db.transaction() as conn:
        row = conn.execute("SELECT vm_state, task_state, deleted FROM instances WHERE id = 9").fetchone()
    assert tuple(row) == ("deleted", None, 1)


def test_delete_before_spawn_never_spawns(cloud: Cloud) -> None:
    stopped_api(cloud).create("cirros", "cirros", "1")
    api = cloud.new_api()
    api.delete("cirros")
    api.resume()  # only the delete resumes: an instance marked deleting is never spawned
    cloud.settle(api)
    assert api.list() == []
    assert ("run_instance", "instance-00000009") not in cloud.computes["compute-1"].calls


def test_delete_between_networking_and_spawning_wins(cloud: Cloud) -> None:
    """A delete that lands while nova-network allocates: no spawn, and the intent outlives a restart."""
    allocate = cloud.api._network_info

    def allocate_then_delete_arrives(instance: compute_api.Instance) -> dict[str, Any]:
        network = allocate(instance)
        cloud.api.db.instance_update(instance.id, task_state="deleting")  # as delete() records it, before its task runs
        return network

    cloud.api._network_info = allocate_then_delete_arrives  # type: ignore[method-assign]
    boot(cloud)
    cloud.settle()
    assert cloud.computes["compute-1"].calls == []
    assert cloud.api.get("cirros").task_state == "deleting"
    api = cloud.new_api()  # the delete's own task never ran (nova-api stopped): a restart finishes it
    assert api.resume() == 1
    cloud.settle(api)
    assert api.list() == []
    assert not cloud.network.db.fixed_ip_get_by_address("10.0.0.2").allocated


def test_delete_of_an_error_instance(cloud: Cloud) -> None:
    cloud.computes["compute-1"].fail = "boom"
    boot(cloud)
    cloud.settle()
    cloud.api.delete("cirros")
    cloud.settle()
    assert cloud.api.list() == []


# --- restarts -------------------------------------------------------------------------------------

class StoppedAPI(compute_api.ComputeAPI):
    """A nova-api that records instances but dies before its tasks run."""

    def _submit(self, task: Any, instance_id: int) -> None:
        pass


def stopped_api(cloud: Cloud) -> StoppedAPI:
    api = StoppedAPI(cloud.conf, cloud.db)
    api.unreachable_grace = 0.5
    return api


def test_restart_resumes_a_build_not_started(cloud: Cloud) -> None:
    stopped_api(cloud).create("cirros", "cirros", "1")
    api = cloud.new_api()
    assert api.resume() == 1
    cloud.settle(api)
    instance = api.get("cirros")
    assert (instance.status, instance.address) == ("ACTIVE", "10.0.0.2")


def test_restart_after_allocation_keeps_the_address(cloud: Cloud) -> None:
    dead = stopped_api(cloud)
    instance = dead.create("cirros", "cirros", "1")
    dead.db.instance_update(instance.id, task_state="spawning")
    network = dead._network_info(instance)  # allocated and cached, then the process died
    api = cloud.new_api()
    api.resume()
    cloud.settle(api)
    assert api.get("cirros").address == network["address"] == "10.0.0.2"
    assert cloud.computes["compute-1"].domains["instance-00000009"]["network"]["mac"] == network["mac"]


def test_restart_after_an_unrecorded_allocation_allocates_again(cloud: Cloud) -> None:
    instance = stopped_api(cloud).create("cirros", "cirros", "1")
    rpc.call("127.0.0.1", cloud.conf.network_rpc_port, "allocate_for_instance", instance_id=instance.id,
             hostname="cirros")
    api = cloud.new_api()
    api.resume()
    cloud.settle(api)
    assert api.get("cirros").status == "ACTIVE"
    assert len([ip for ip in cloud.network.db.fixed_ip_get_by_instance(instance.id) if ip.allocated]) == 1


def test_restart_resumes_a_delete(cloud: Cloud) -> None:
    boot(cloud)
    cloud.settle()
    dead = stopped_api(cloud)
    dead.delete("cirros")
    api = cloud.new_api()
    assert api.resume() == 1
    cloud.settle(api)
    assert api.list() == [] and cloud.computes["compute-1"].domains == {}


def test_state_survives_a_new_api(cloud: Cloud) -> None:
    boot(cloud)
    cloud.settle()
    api = cloud.new_api()
    assert api.resume() == 0
    assert [(i.name, i.status, i.address) for i in api.list()] == [("instance-00000009", "ACTIVE", "10.0.0.2")]


def test_power_states_through_nova_api(cloud: Cloud) -> None:
    """What nova-compute reads and writes (InstanceRecords over nova-api's RPC): the sync's SHUTOFF."""
    boot(cloud, "one")
    boot(cloud, "two")
    cloud.settle()
    assert cloud.api.get("one").power_state == power_state.RUNNING  # recorded at the end of the build
    srv = cloud._serve(cloud.api.rpc_methods())
    records = InstanceRecords(flags.parse(f"--host=compute-1\n--my_ip=127.0.0.1\n--metadata_host=127.0.0.1\n"
                                          f"--osapi_compute_listen_port={srv.port}\n"))
    assert [(r["id"], r["name"], r["vm_state"], r["power_state"]) for r in records.get_all_by_host()] == [
        (9, "instance-00000009", "active", 1)]
    records.set_power_state(9, power_state.SHUTOFF, "shutoff")
    one = cloud.api.get("one")
    assert (one.status, one.vm_state, one.power_state) == ("SHUTOFF", "shutoff", 5)
    assert cloud.api.view(one)["power_state"] == 5
    with pytest.raises(rpc.RemoteError, match="a compute may not set vm_state 'deleted'"):
        records.set_power_state(9, power_state.NOSTATE, "deleted")
    cloud.api.delete("one")  # a SHUTOFF guest is deleted as any other
    cloud.settle()
    assert records.get_all_by_host() == []
    assert cloud.api.set_power_state(9, power_state.NOSTATE, "shutoff") is False  # deleted: left alone
    assert cloud.db.instance_find("9") == []


# --- console, images, key pairs, metadata ---------------------------------------------------------------

def test_console_output(cloud: Cloud) -> None:
    boot(cloud)
    cloud.settle()
    assert cloud.api.console_output("cirros") == "console of instance-00000009\n"


def test_list_images_and_view(cloud: Cloud) -> None:
    [image] = cloud.api.list_images()
    assert (image["name"], image["status"], image["kind"]) == ("cirros", "ACTIVE", "initramfs")
    view = cloud.api.view(boot(cloud))
    assert (view["image_name"], view["status"], view["name"], view["ec2_id"]) == (
        "cirros", "BUILD", "instance-00000009", "i-00000009")
    json.dumps(view)  # it travels over the RPC


def test_keypairs(cloud: Cloud) -> None:
    imported = cloud.api.create_keypair("mykey", KEY)
    assert imported["private_key"] is None and imported["public_key"] == KEY
    assert [k["name"] for k in cloud.api.list_keypairs()] == ["mykey"]
    with pytest.raises(compute_api.ApiError, match="Key pair 'mykey' already exists."):
        cloud.api.create_keypair("mykey", KEY)
    with pytest.raises(compute_api.ApiError, match="Keypair data is invalid"):
        cloud.api.create_keypair("bad", "ssh-rsa not-base64")
    with pytest.raises(compute_api.ApiError, match="unsafe characters"):
        cloud.api.create_keypair("a/b", KEY)
    generated = cloud.api.create_keypair("gen")
    assert generated["private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert generated["public_key"].startswith("ssh-rsa ")
    cloud.api.delete_keypair("gen")
    with pytest.raises(compute_api.ApiError, match="no key pair named 'gen'"):
        cloud.api.delete_keypair("gen")


def test_metadata_by_fixed_ip(cloud: Cloud) -> None:
    cloud.api.create_keypair("mykey", KEY)
    boot(cloud, "cirros")
    boot(cloud, "keyed", key_name="mykey", user_data=base64.b64encode(b"#!/bin/sh\necho hi\n").decode())
    cloud.settle()
    plain = cloud.api.metadata_for_address("10.0.0.2")
    keyed = cloud.api.metadata_for_address("10.0.0.3")
    assert plain is not None and keyed is not None
    assert plain["meta-data"]["instance-id"] == "i-00000009" and keyed["meta-data"]["instance-id"] == "i-0000000a"
    assert plain["meta-data"]["hostname"] == "cirros.novalocal"
    assert plain["meta-data"]["ami-id"] == keyed["meta-data"]["ami-id"] == "ami-00000001"
    assert "public-keys" not in plain["meta-data"]
    assert keyed["meta-data"]["public-keys"] == {"0": {"_name": "mykey", "openssh-key": KEY}}
    assert plain["user-data"] == "" and keyed["user-data"] == "#!/bin/sh\necho hi\n"
    assert "mpi" not in plain["meta-data"]  # Essex 2012.1 had none
    assert plain["meta-data"]["reservation-id"].startswith("r-")
    assert cloud.api.metadata_for_address("10.0.0.99") is None
    assert cloud.api.metadata_for_address("192.168.56.200") is None
    cloud.api.delete("keyed")
    cloud.settle()
    assert cloud.api.metadata_for_address("10.0.0.3") is None


def test_rpc_methods_over_http(cloud: Cloud) -> None:
    srv = cloud._serve(cloud.api.rpc_methods())
    server = rpc.call("127.0.0.1", srv.port, "create_server", name="cirros", image="cirros", flavor="1",
                      availability_zone=None, key_name=None, user_data=None)
    assert server["status"] == "BUILD"
    with pytest.raises(rpc.RemoteError) as error:
        rpc.call("127.0.0.1", srv.port, "get_server", ref="ghost")
    assert error.value.message == "ApiError: No server with a name or ID of 'ghost' exists."
