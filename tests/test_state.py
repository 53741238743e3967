"""The state file: typed provider records, files of kept testbeds from before them, and refusals."""

from __future__ import annotations

import json

import pytest

from flatbed import state
from flatbed.providers.nspawn.record import NspawnNodeRecord, NspawnRecord
from flatbed.providers.vagrant.record import SSHRecord, VagrantNodeRecord, VagrantRecord

# Written by flatbed before typed records (schema 1, no "schema" key): a kept container testbed.
V1_NSPAWN = {
    "created": 1795957488.6, "images": {"base": "b" * 64, "guest": "g" * 64},
    "nodes": {
        "controller-1": {"cgroup": "flatbed/fb341043-controller-1", "launcher": 10538, "leader": 10549,
                         "netns": "fb341043-controller-1", "role": "controller",
                         "upper": "/var/lib/flatbed/testbeds/fb341043/nodes/controller-1"},
        "outside": {"netns": "fb341043-outside", "role": "outside"},
    },
    "owner": "10244:120741", "provider": "nspawn", "resources": {"options": {}, "switch": "fb341043-sw"},
    "run_id": "fb341043", "status": "up", "topology_digest": "d", "topology_path": "/x/default.toml",
}
# ... and a kept VM testbed (the vagrant provider's dict under resources["vagrant"]).
V1_VAGRANT = {
    "created": 1.0, "images": {}, "provider": "vagrant", "run_id": "fb0000ab", "status": "up",
    "topology_digest": "d", "topology_path": "/x/default.toml",  # no owner: written before owners
    "nodes": {
        "controller-1": {"role": "controller", "domain": "fb0000ab-controller-1",
                         "ssh": {"host": "192.168.56.200", "port": 22, "user": "root", "identity": "/k"}},
        "outside": {"role": "outside"},
    },
    "resources": {
        "options": {"libvirt_uri": "qemu:///system"},
        "vagrant": {"private": False, "uri": "qemu:///system", "box": "flatbed-node-0123", "driver": "qemu",
                    "netns": None, "networks": {"management": "fb0000ab-mgmt", "flat": "fb0000ab-flat"},
                    "bridges": {"management": "fb0000ab-m", "flat": "fb0000ab-f"},
                    "domains": ["fb0000ab-controller-1"], "volumes": ["fb0000ab-controller-1.img"],
                    "vagrant_dir": "/x/vagrant", "ssh_key": "/x/ssh/id_ed25519", "libvirtd_pid": None},
    },
}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("FLATBED_STATE", str(tmp_path))
    return tmp_path


def write(root, data) -> str:
    run = data["run_id"]
    (root / run).mkdir(parents=True, exist_ok=True)
    (root / run / "state.json").write_text(json.dumps(data))
    return run


def test_a_kept_container_testbed_from_before_typed_records_loads(root):
    st = state.TestbedState.load(write(root, V1_NSPAWN))
    assert isinstance(st.record, NspawnRecord) and st.record.switch == "fb341043-sw"
    assert st.record.nodes["controller-1"] == NspawnNodeRecord(
        role="controller", netns="fb341043-controller-1", cgroup="flatbed/fb341043-controller-1",
        upper="/var/lib/flatbed/testbeds/fb341043/nodes/controller-1", launcher=10538, leader=10549)
    assert st.record.nodes["outside"] == NspawnNodeRecord(role="outside", netns="fb341043-outside")
    assert st.options == {} and st.owner == "10244:120741" and st.status == "up"


def test_a_kept_vm_testbed_from_before_typed_records_loads(root):
    st = state.TestbedState.load(write(root, V1_VAGRANT))
    assert isinstance(st.record, VagrantRecord)
    assert st.options == {"libvirt_uri": "qemu:///system"} and st.owner == ""
    assert st.record.nodes["controller-1"] == VagrantNodeRecord(
        role="controller", domain="fb0000ab-controller-1",
        ssh=SSHRecord(host="192.168.56.200", port=22, user="root", identity="/k"))
    assert st.record.domains == ["fb0000ab-controller-1"] and st.record.vagrant_pid is None


def test_typed_records_survive_a_save_and_load(root):
    st = state.TestbedState.load(write(root, V1_VAGRANT))
    st.save()
    saved = json.loads((root / "fb0000ab" / "state.json").read_text())
    assert saved["schema"] == state.SCHEMA and "resources" not in saved and "nodes" not in saved
    assert state.TestbedState.load("fb0000ab") == st


@pytest.mark.parametrize(("change", "says"), [
    ({"schema": 99}, "newer flatbed"),
    ({"schema": 2, "record": {"nodes": {}, "colour": "red"}}, "unknown field(s) colour"),
    ({"schema": 2, "record": {"nodes": {"x": {"role": "compute", "netns": 7}}}}, "expected str"),
    ({"provider": "docker"}, "provider"),
])
def test_a_state_file_it_cannot_read_is_refused_in_one_line_naming_clean(root, change, says):
    data = {k: v for k, v in V1_NSPAWN.items() if not (change.get("schema") and k in ("nodes", "resources"))}
    run = write(root, {**data, **change})
    with pytest.raises(state.StateUnreadable) as refused:
        state.TestbedState.load(run)
    message = str(refused.value)
    assert "\n" not in message and "`flatbed clean`" in message and says in message, message
    assert refused.value.newer == (change.get("schema") == 99)


def test_a_corrupt_state_file_is_refused_and_listed_apart(root):
    (root / "fb0000cd").mkdir()
    (root / "fb0000cd" / "state.json").write_text("{not json")
    write(root, V1_NSPAWN)
    beds, unreadable = state.scan_testbeds()
    assert [b.run_id for b in beds] == ["fb341043"]
    assert [u.run_id for u in unreadable] == ["fb0000cd"] and "`flatbed clean`" in str(unreadable[0])
