"""stack/nova/rpc.py and nova-dhcpbridge: JSON-over-HTTP RPC, the init/add/old/del contract."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

STACK = Path(__file__).resolve().parents[1] / "stack"
sys.path.insert(0, str(STACK))

from nova import db as nova_db  # noqa: E402
from nova import flags, rpc  # noqa: E402
from nova.network import manager  # noqa: E402

DHCPBRIDGE = STACK / "bin" / "nova-dhcpbridge"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def methods(self) -> dict[str, Any]:
        def echo(**kwargs: Any) -> Any:
            self.calls.append(("echo", kwargs))
            return kwargs

        def fail(**kwargs: Any) -> Any:
            raise manager.NetworkError("IP 10.0.0.9 leased that is not associated")
        return {"echo": echo, "fail": fail, "one": lambda address: address}


@pytest.fixture
def server() -> Iterator[tuple[rpc.RpcServer, Recorder]]:
    recorder = Recorder()
    srv = rpc.RpcServer("127.0.0.1", 0, recorder.methods())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, recorder
    srv.shutdown()
    srv.server_close()


def test_call_returns_result(server: tuple[rpc.RpcServer, Recorder]) -> None:
    srv, _ = server
    assert rpc.call("127.0.0.1", srv.port, "echo", address="10.0.0.2", n=[1, 2]) == {"address": "10.0.0.2",
                                                                                      "n": [1, 2]}


def test_remote_errors(server: tuple[rpc.RpcServer, Recorder]) -> None:
    srv, _ = server
    with pytest.raises(rpc.RemoteError) as error:
        rpc.call("127.0.0.1", srv.port, "fail")
    assert str(error.value) == (f"rpc fail to 127.0.0.1:{srv.port} failed: "
                                "NetworkError: IP 10.0.0.9 leased that is not associated")
    assert error.value.delivered
    with pytest.raises(rpc.RemoteError, match="unknown method '/v1/nope'"):
        rpc.call("127.0.0.1", srv.port, "nope")
    with pytest.raises(rpc.RemoteError, match="TypeError: .*unexpected keyword argument 'wrong'"):
        rpc.call("127.0.0.1", srv.port, "one", wrong=1)
    assert rpc.call("127.0.0.1", srv.port, "one", address="10.0.0.2") == "10.0.0.2"


def test_unreachable_and_cast(server: tuple[rpc.RpcServer, Recorder]) -> None:
    srv, recorder = server
    closed = rpc.RpcServer("127.0.0.1", 0, {})
    port = closed.port
    closed.server_close()
    with pytest.raises(rpc.RemoteError, match=rf"rpc echo to 127.0.0.1:{port} failed: .*refused") as error:
        rpc.call("127.0.0.1", port, "echo", timeout=2)
    assert not error.value.delivered
    with pytest.raises(rpc.RemoteError):
        rpc.cast("127.0.0.1", port, "echo", timeout=2)
    rpc.cast("127.0.0.1", srv.port, "fail")  # a remote error is logged, not raised
    rpc.cast("127.0.0.1", srv.port, "echo", address="x")
    assert recorder.calls == [("echo", {"address": "x"})]


def test_retry_while_not_delivered(server: tuple[rpc.RpcServer, Recorder]) -> None:
    srv, recorder = server
    port = _closed_port()
    late: list[rpc.RpcServer] = []

    def come_up() -> None:
        late.append(rpc.RpcServer("127.0.0.1", port, recorder.methods()))
        late[0].start(poll_interval=0.05)
    timer = threading.Timer(0.3, come_up)
    timer.start()
    try:
        # Refused until the server comes up 0.3 s later: re-sent, then answered.
        assert rpc.call("127.0.0.1", port, "one", address="x", retry_for=10, retry_interval=0.05) == "x"
    finally:
        timer.join()
        late[0].stop()
    # A delivered error is never re-sent, whatever the grace.
    with pytest.raises(rpc.RemoteError, match="leased that is not associated") as error:
        rpc.call("127.0.0.1", srv.port, "fail", retry_for=10, retry_interval=0.05)
    assert error.value.delivered
    # Without a server the grace runs out, and the last refusal is raised.
    with pytest.raises(rpc.RemoteError, match="refused") as error:
        rpc.call("127.0.0.1", _closed_port(), "one", address="x", retry_for=0.2, retry_interval=0.05)
    assert not error.value.delivered


def _closed_port() -> int:
    closed = rpc.RpcServer("127.0.0.1", 0, {})
    closed.server_close()
    return closed.port


# --- nova-dhcpbridge against a real nova-network manager (fake host driver) ---------------------

class NoHost:
    """The host side of nova-network is not exercised here: every driver call is a no-op."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


Node = tuple[manager.FlatDHCPManager, Path, int]


@pytest.fixture
def network_node(tmp_path: Path) -> Iterator[Node]:
    srv = rpc.RpcServer("127.0.0.1", 0, {})
    conf_text = (f"--my_ip=127.0.0.1\n--host=controller-1\n--state_path={tmp_path}\n"
                 f"--network_rpc_port={srv.port}\n--flat_interface=eth2\n")
    flagfile = tmp_path / "nova.conf"
    flagfile.write_text(conf_text)
    conf = flags.load(str(flagfile))
    driver = NoHost()
    mgr = manager.FlatDHCPManager(conf, nova_db.Database(conf.sqlite_path), driver)  # type: ignore[arg-type]
    srv.methods.update(mgr.rpc_methods())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield mgr, flagfile, srv.port
    srv.shutdown()
    srv.server_close()


def dhcpbridge(flagfile: Path, *args: str, network_id: str | None = "1") -> subprocess.CompletedProcess[str]:
    env = {"FLAGFILE": str(flagfile), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if network_id is not None:
        env["NETWORK_ID"] = network_id
    return subprocess.run(["/usr/bin/python3", str(DHCPBRIDGE), *args], env=env, capture_output=True,
                          text=True, timeout=30)


def test_init_prints_leases(network_node: Node) -> None:
    mgr, flagfile, _ = network_node
    mgr.create_network("novanetwork", "10.0.0.0/24", "br100", "eth2", "controller-1")
    empty = dhcpbridge(flagfile, "init")
    assert (empty.returncode, empty.stdout) == (0, "\n")  # Essex's `print init_leases(...)`: one empty line
    first = mgr.allocate_for_instance(9, "cirros")
    second = mgr.allocate_for_instance(10, "")
    result = dhcpbridge(flagfile, "init")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(rf"\d{{10}} {first['mac']} 10\.0\.0\.2 cirros \*", lines[0])
    assert re.fullmatch(rf"\d{{10}} {second['mac']} 10\.0\.0\.3 \* \*", lines[1])
    created = nova_db.to_epoch(mgr.db.fixed_ip_get_by_address("10.0.0.2").instance_created_at or "")
    assert int(lines[0].split()[0]) == created + 120


def test_add_old_del(network_node: Node) -> None:
    mgr, flagfile, _ = network_node
    mgr.create_network("novanetwork", "10.0.0.0/24", "br100", "eth2", "controller-1")
    mac = mgr.allocate_for_instance(9, "cirros")["mac"]
    assert dhcpbridge(flagfile, "add", mac, "10.0.0.2", "cirros").returncode == 0
    assert mgr.db.fixed_ip_get_by_address("10.0.0.2").leased
    assert dhcpbridge(flagfile, "old", mac, "10.0.0.2", "cirros").returncode == 0
    mgr.deallocate_for_instance(9)
    assert mgr.db.fixed_ip_get_by_address("10.0.0.2").instance_id == 9
    assert dhcpbridge(flagfile, "del", mac, "10.0.0.2", "cirros").returncode == 0
    row = mgr.db.fixed_ip_get_by_address("10.0.0.2")
    assert (row.leased, row.instance_id) == (False, None)
    # Essex raised for an unassociated IP; as a cast the script only logs it and succeeds.
    stray = dhcpbridge(flagfile, "add", mac, "10.0.0.2")
    assert stray.returncode == 0 and "leased that is not associated" in stray.stderr


def test_usage_and_environment(network_node: Node, tmp_path: Path) -> None:
    mgr, flagfile, port = network_node
    mgr.create_network("novanetwork", "10.0.0.0/24", "br100", "eth2", "controller-1")
    missing = dhcpbridge(flagfile, "init", network_id=None)
    assert missing.returncode == 1 and "Environment variable 'NETWORK_ID' must be set." in missing.stderr
    assert dhcpbridge(flagfile).returncode == 2
    assert dhcpbridge(flagfile, "add", "fa:16:3e:00:00:01").returncode == 2
    # Essex took any action but add/old/del for init (dnsmasq sends only init here).
    assert (dhcpbridge(flagfile, "bogus").returncode, dhcpbridge(flagfile, "bogus").stdout) == (0, "\n")
    down = tmp_path / "down.conf"
    down.write_text(flagfile.read_text().replace(f"--network_rpc_port={port}", "--network_rpc_port=1"))
    unreachable = dhcpbridge(down, "add", "fa:16:3e:00:00:01", "10.0.0.2")
    assert unreachable.returncode == 1 and "rpc lease_fixed_ip to 127.0.0.1:1 failed" in unreachable.stderr
