"""stack/nova/cmd/nova.py: novaclient's tables (the document's ``nova list``), commands and one-line errors.

The command tests run the CLI against a compute API served over the real RPC in this process
(the test_stack_compute_api cloud: real nova-network manager, stand-in computes).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

STACK = Path(__file__).resolve().parents[1] / "stack"
sys.path.insert(0, str(STACK))

from test_stack_compute_api import KEY, Cloud  # noqa: E402

from nova import rpc  # noqa: E402
from nova.cmd import nova  # noqa: E402

SEED = Path("/work/shared/seed/flatdhcp-single-host.txt")

# The document's second `nova list` (§2.3), blank lines of the page removed.
DOCUMENT_LIST = """\
+--------------------------------------+--------+--------+----------------------+
|                  ID                  |  Name  | Status |       Networks       |
+--------------------------------------+--------+--------+----------------------+
| 5357143d-66f5-446c-a82f-86648ebb3842 | cirros | ACTIVE | novanetwork=10.0.0.2 |
+--------------------------------------+--------+--------+----------------------+"""


def server(**overrides: Any) -> dict[str, Any]:
    base = {"uuid": "5357143d-66f5-446c-a82f-86648ebb3842", "display_name": "cirros", "status": "ACTIVE",
            "label": "novanetwork", "address": "10.0.0.2", "host": "compute-1", "name": "instance-00000009",
            "task_state": None, "vm_state": "active", "power_state": 1, "created_at": "2012-07-30 23:12:06",
            "updated_at": "2012-07-30 23:12:16", "flavor": "m1.tiny", "image_name": "cirros", "key_name": None,
            "fault": None}
    return {**base, **overrides}


def test_list_table_is_the_documents() -> None:
    assert nova.server_list([server()]) == DOCUMENT_LIST


@pytest.mark.skipif(not SEED.exists(), reason="the seed document is not on this machine")
def test_document_literal_matches_the_seed() -> None:
    # The page was copied from a browser: its table padding is partly non-breaking spaces.
    lines = [line.replace("\xa0", " ") for line in SEED.read_text().splitlines() if line.strip()]
    start = lines.index("openstack@controller-1:~$ nova list", lines.index("openstack@controller-1:~$ nova list") + 1)
    assert "\n".join(lines[start + 1:start + 6]) == DOCUMENT_LIST


def test_list_while_building_and_empty() -> None:
    building = nova.server_list([server(status="BUILD")]).splitlines()[3]
    assert building == "| 5357143d-66f5-446c-a82f-86648ebb3842 | cirros | BUILD  | novanetwork=10.0.0.2 |"
    assert nova.server_list([]) == "+----+------+--------+----------+\n| ID | Name | Status | Networks |\n" \
                                   "+----+------+--------+----------+\n+----+------+--------+----------+"
    assert nova.networks(server(address=None)) == ""


def test_show_table() -> None:
    text = nova.show(server(fault="RuntimeError: boom"))
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in text.splitlines()
            if line.startswith("| ") and "Property" not in line}
    assert rows["status"] == "ACTIVE" and rows["id"] == "5357143d-66f5-446c-a82f-86648ebb3842"
    assert rows["OS-EXT-SRV-ATTR:instance_name"] == "instance-00000009"
    assert rows["novanetwork network"] == "10.0.0.2"
    assert rows["created"] == "2012-07-30T23:12:06Z"
    assert rows["key_name"] == "None" and rows["OS-EXT-STS:task_state"] == "None"
    assert rows["OS-EXT-STS:power_state"] == "1"  # Essex's extended_status: the integer
    assert rows["fault"] == "RuntimeError: boom"
    assert list(rows) == sorted(rows)


def test_flavor_list_table() -> None:
    flavors = [{"flavorid": "1", "name": "m1.tiny", "memory_mb": 512, "swap": 0, "local_gb": 0, "vcpus": 1,
                "rxtx_factor": 1.0},
               {"flavorid": "5", "name": "m1.xlarge", "memory_mb": 16384, "swap": 0, "local_gb": 160, "vcpus": 8,
                "rxtx_factor": 1.0}]
    assert nova.flavor_list(flavors) == """\
+----+-----------+-----------+------+----------+-------+-------------+
| ID |    Name   | Memory_MB | Swap | Local_GB | VCPUs | RXTX_Factor |
+----+-----------+-----------+------+----------+-------+-------------+
| 1  | m1.tiny   | 512       |      | 0        | 1     | 1.0         |
| 5  | m1.xlarge | 16384     |      | 160      | 8     | 1.0         |
+----+-----------+-----------+------+----------+-------+-------------+"""


# --- commands against an in-process nova-api ---------------------------------------------------------

@pytest.fixture
def cli(tmp_path: Path) -> Iterator[tuple[Cloud, Path]]:
    cloud = Cloud(tmp_path / "cloud")
    cloud.add_compute("compute-1")
    cloud.add_compute("compute-2")
    api = cloud._serve(cloud.api.rpc_methods())
    conf = tmp_path / "nova.conf"
    conf.write_text(f"--my_ip=127.0.0.1\n--host=controller-1\n--osapi_compute_listen_port={api.port}\n")
    yield cloud, conf
    cloud.close()


def run(conf: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = nova.main([f"--flagfile={conf}", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_boot_prints_build_then_list_shows_active(cli: tuple[Cloud, Path], capsys: pytest.CaptureFixture[str]) -> None:
    cloud, conf = cli
    rc, out, err = run(conf, capsys, "boot", "--image", "cirros", "--flavor", "1", "cirros")
    assert (rc, err) == (0, "")
    assert "| status                        | BUILD" in out
    assert "| OS-EXT-SRV-ATTR:instance_name | instance-00000009" in out
    cloud.settle()
    rc, out, _ = run(conf, capsys, "list")
    assert rc == 0 and "| cirros | ACTIVE | novanetwork=10.0.0.2 |" in out
    rc, out, _ = run(conf, capsys, "console-log", "cirros")
    assert (rc, out) == (0, "console of instance-00000009\n")
    rc, out, _ = run(conf, capsys, "delete", "cirros")
    assert (rc, out) == (0, "")
    cloud.settle()
    assert run(conf, capsys, "list")[1].count("\n") == 4  # the empty table


def test_image_flavor_and_keypair_commands(cli: tuple[Cloud, Path], capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    cloud, conf = cli
    rc, out, _ = run(conf, capsys, "image-list")
    image = cloud.api.images.find("cirros")[0]
    assert rc == 0 and f"| {image.id} | cirros | ACTIVE |        |" in out
    rc, out, _ = run(conf, capsys, "flavor-list")
    assert rc == 0 and "| 1  | m1.tiny   | 512       |      | 0        | 1     | 1.0         |" in out
    pub = tmp_path / "id_rsa.pub"
    pub.write_text(KEY + "\n")
    assert run(conf, capsys, "keypair-add", "--pub-key", str(pub), "mykey")[:2] == (0, "")
    rc, out, _ = run(conf, capsys, "keypair-add", "gen")
    assert rc == 0 and out.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    rc, out, _ = run(conf, capsys, "keypair-list")
    assert rc == 0 and "| mykey |" in out and "| gen   |" in out
    rc, out, _ = run(conf, capsys, "boot", "--image", "cirros", "--flavor", "m1.tiny", "--key-name", "mykey",
                     "--availability-zone", "nova:compute-2", "keyed")
    assert rc == 0 and "| key_name                      | mykey" in out and "compute-2" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["boot", "--image", "cirros", "--flavor", "7", "x"], "No flavor with a name or ID of '7' exists."),
    (["boot", "--image", "ubuntu", "--flavor", "1", "x"], "No image with a name or ID of 'ubuntu' exists."),
    (["boot", "--image", "cirros", "--flavor", "1", "--key-name", "k", "x"],
     "Invalid key_name provided: no key pair named 'k' (see nova keypair-add)."),
    (["boot", "--image", "cirros", "--flavor", "1", "--availability-zone", "nova:compute-9", "x"],
     "No valid host was found. Compute host 'compute-9' is not registered (registered: compute-1, compute-2)."),
    (["show", "ghost"], "No server with a name or ID of 'ghost' exists."),
    (["delete", "ghost"], "No server with a name or ID of 'ghost' exists."),
    (["console-log", "ghost"], "No server with a name or ID of 'ghost' exists."),
    (["boot", "--image", "cirros", "--flavor", "1", "--user-data", "/nonexistent", "x"],
     "cannot read user data /nonexistent: No such file or directory"),
])
def test_errors_are_one_line(cli: tuple[Cloud, Path], capsys: pytest.CaptureFixture[str], argv: list[str],
                             message: str) -> None:
    _, conf = cli
    assert run(conf, capsys, *argv) == (1, "", f"ERROR: {message}\n")


def test_unreachable_api(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    closed = rpc.RpcServer("127.0.0.1", 0, {})
    port = closed.port
    closed.server_close()
    conf = tmp_path / "nova.conf"
    conf.write_text(f"--my_ip=127.0.0.1\n--host=h\n--osapi_compute_listen_port={port}\n")
    rc, out, err = run(conf, capsys, "list")
    assert (rc, out) == (1, "")
    assert err.startswith(f"ERROR: cannot reach nova-api at 127.0.0.1:{port}: ") and err.count("\n") == 1


def test_the_binary_runs_on_debian_python(cli: tuple[Cloud, Path]) -> None:
    """bin/nova under the node's interpreter (/usr/bin/python3, stdlib only)."""
    _, conf = cli
    result = subprocess.run(["/usr/bin/python3", str(STACK / "bin" / "nova"), f"--flagfile={conf}", "show", "x"],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (1, "ERROR: No server with a name or ID of 'x' exists.\n")
