"""stack/nova/network/linux_net.py: dnsmasq command line, DHCP files, bridge/gateway commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STACK = Path(__file__).resolve().parents[1] / "stack"
sys.path.insert(0, str(STACK))

from nova import flags  # noqa: E402
from nova.db import FixedIp, Network  # noqa: E402
from nova.network import linux_net  # noqa: E402

# The controller's `ps aux | grep dnsmasq` in the document (its wrapped lines joined).
DOCUMENT_DNSMASQ = (
    "/usr/sbin/dnsmasq --strict-order --bind-interfaces --conf-file= --domain=novalocal "
    "--pid-file=/var/lib/nova/networks/nova-br100.pid --listen-address=10.0.0.1 --except-interface=lo "
    "--dhcp-range=10.0.0.2,static,120s --dhcp-lease-max=256 "
    "--dhcp-hostsfile=/var/lib/nova/networks/nova-br100.conf "
    "--dhcp-script=/usr/bin/nova-dhcpbridge --leasefile-ro")

DOCUMENT_CONF = ("--public_interface=eth1\n--fixed_range=10.0.0.0/24\n--flat_interface=eth2\n"
                 "--flat_network_bridge=br100\n--network_manager=nova.network.manager.FlatDHCPManager\n"
                 "--my_ip=192.168.56.200\n--host=controller-1\n"
                 "--dhcpbridge_flagfile=/etc/nova/nova.conf\n")  # topologies/default.toml's

BR100 = Network(id=1, label="novanetwork", cidr="10.0.0.0/24", bridge="br100", bridge_interface="eth2",
                gateway="10.0.0.1", broadcast="10.0.0.255", netmask="255.255.255.0", dhcp_start="10.0.0.2",
                multi_host=False, host="controller-1")


def fixed(address: str, mac: str, hostname: str | None, updated: str | None = None) -> FixedIp:
    return FixedIp(address=address, network_id=1, instance_id=9, allocated=True, leased=False, reserved=False,
                   updated_at=None, mac=mac, hostname=hostname, instance_created_at="2012-07-30 10:53:12",
                   instance_updated_at=updated)


def test_dnsmasq_cmd_is_the_documents() -> None:
    cmd = linux_net.dnsmasq_cmd(flags.parse(DOCUMENT_CONF), BR100)
    env, argv = linux_net.split_env(cmd)
    assert cmd[:2] == ["FLAGFILE=/etc/nova/nova.conf", "NETWORK_ID=1"]
    assert env == {"FLAGFILE": "/etc/nova/nova.conf", "NETWORK_ID": "1"}
    assert " ".join(argv) == DOCUMENT_DNSMASQ


def test_dnsmasq_cmd_derives_everything() -> None:
    conf = flags.parse("--state_path=/srv/nova\n--dhcp_lease_time=86400\n--dhcp_domain=example.org\n"
                       "--dhcpbridge=/opt/bin/bridge\n--dhcpbridge_flagfile=/etc/nova/bridge.conf\n"
                       "--dnsmasq_config_file=/etc/dnsmasq-nova.conf\n--my_ip=1.2.3.4\n--host=h\n")
    net = Network(id=7, label="private", cidr="172.16.8.0/22", bridge="br200", bridge_interface="eth3",
                  gateway="172.16.8.1", broadcast="172.16.11.255", netmask="255.255.252.0",
                  dhcp_start="172.16.8.2", multi_host=False, host="h")
    assert linux_net.dnsmasq_cmd(conf, net) == [
        "FLAGFILE=/etc/nova/bridge.conf", "NETWORK_ID=7", "/usr/sbin/dnsmasq", "--strict-order",
        "--bind-interfaces", "--conf-file=/etc/dnsmasq-nova.conf", "--domain=example.org",
        "--pid-file=/srv/nova/networks/nova-br200.pid", "--listen-address=172.16.8.1",
        "--except-interface=lo", "--dhcp-range=172.16.8.2,static,86400s", "--dhcp-lease-max=1024",
        "--dhcp-hostsfile=/srv/nova/networks/nova-br200.conf", "--dhcp-script=/opt/bin/bridge",
        "--leasefile-ro"]


def test_dnsmasq_cmd_dns_server() -> None:
    cmd = linux_net.dnsmasq_cmd(flags.parse(DOCUMENT_CONF + "--dns_server=8.8.4.4\n"), BR100)
    assert cmd[-4:] == ["--leasefile-ro", "-h", "-R", "--server=8.8.4.4"]


def test_hostsfile_lines() -> None:
    conf = flags.parse(DOCUMENT_CONF)
    ips = [fixed("10.0.0.2", "fa:16:3e:2c:e8:ec", "cirros"), fixed("10.0.0.3", "fa:16:3e:00:00:01", "vm2")]
    assert linux_net.host_dhcp(conf, ips[0]) == "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2"
    assert linux_net.get_dhcp_hosts(conf, ips) == (
        "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2\nfa:16:3e:00:00:01,vm2.novalocal,10.0.0.3")
    assert linux_net.get_dhcp_hosts(conf, []) == ""


def test_lease_lines() -> None:
    conf = flags.parse(DOCUMENT_CONF)
    created = 1343645592  # 2012-07-30 10:53:12 UTC
    assert linux_net.host_lease(conf, fixed("10.0.0.2", "fa:16:3e:2c:e8:ec", "cirros")) == (
        f"{created + 120} fa:16:3e:2c:e8:ec 10.0.0.2 cirros *")
    # updated_at wins over created_at; no hostname prints '*'.
    line = linux_net.host_lease(conf, fixed("10.0.0.3", "fa:16:3e:00:00:01", None, "2012-07-30 10:55:12"))
    assert line == f"{created + 120 + 120} fa:16:3e:00:00:01 10.0.0.3 * *"


def test_update_dhcp_writes_hostsfile_and_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = flags.parse(DOCUMENT_CONF + f"--state_path={tmp_path}\n")
    launched: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(linux_net, "_launch_dnsmasq", lambda argv, env: launched.append((argv, env)))
    monkeypatch.setattr(linux_net, "iptables_manager", linux_net.RecordingIptablesManager())
    os.umask(0o077)  # the chmod, not the umask, must make it readable for nobody
    try:
        linux_net.update_dhcp(conf, BR100, [fixed("10.0.0.2", "fa:16:3e:2c:e8:ec", "cirros")])
    finally:
        os.umask(0o022)
    hostsfile = tmp_path / "networks" / "nova-br100.conf"
    assert hostsfile.read_text() == "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2"
    assert hostsfile.stat().st_mode & 0o777 == 0o644
    (argv, env), = launched  # no pid file: a launch, not a HUP
    assert env == {"FLAGFILE": "/etc/nova/nova.conf", "NETWORK_ID": "1"}
    assert argv[0] == "/usr/sbin/dnsmasq" and f"--dhcp-hostsfile={hostsfile}" in argv
    assert linux_net.iptables_manager.ipv4["filter"].rules == [
        ("INPUT", "-i br100 -p udp -m udp --dport 67 -j ACCEPT"),
        ("INPUT", "-i br100 -p tcp -m tcp --dport 67 -j ACCEPT"),
        ("INPUT", "-i br100 -p udp -m udp --dport 53 -j ACCEPT"),
        ("INPUT", "-i br100 -p tcp -m tcp --dport 53 -j ACCEPT")]


def _hup_counter(*argv_tail: str) -> subprocess.Popen[str]:
    """A process standing in for dnsmasq: prints 'hup' on SIGHUP; argv_tail shows in its cmdline."""
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGHUP, lambda *a: print('hup', flush=True))\n"
            "print('ready', flush=True)\n"
            "time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, *argv_tail], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.parametrize("cmdline_has_hostsfile", [True, False])
def test_restart_dhcp_hups_only_its_own_dnsmasq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                cmdline_has_hostsfile: bool) -> None:
    conf = flags.parse(DOCUMENT_CONF + f"--state_path={tmp_path}\n")
    launched: list[list[str]] = []
    monkeypatch.setattr(linux_net, "_launch_dnsmasq", lambda argv, env: launched.append(argv))
    recorded = linux_net.RecordingIptablesManager()
    monkeypatch.setattr(linux_net, "iptables_manager", recorded)
    (tmp_path / "networks").mkdir()
    tail = "--dhcp-hostsfile=/elsewhere/nova-br100.conf" if cmdline_has_hostsfile else "--other"
    proc = _hup_counter(tail)
    try:
        (tmp_path / "networks" / "nova-br100.pid").write_text(f"{proc.pid}\n")
        linux_net.restart_dhcp(conf, BR100)
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    if cmdline_has_hostsfile:
        assert (out, launched) == ("hup\n", [])
    else:  # a stale pid (reused by another process) is not signalled; dnsmasq is started
        assert out == "" and len(launched) == 1
    # Either way the DHCP/DNS accepts are (re)added: a nova-network restarted beside its running
    # dnsmasq applies them again (Essex returned before re-adding them on the HUP path).
    assert [rule for chain, rule in recorded.ipv4["filter"].rules if chain == "INPUT"] == [
        f"-i br100 -p {proto} -m {proto} --dport {port} -j ACCEPT" for port in (67, 53) for proto in ("udp", "tcp")]


def test_restart_dhcp_starts_a_killed_dnsmasq_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pid file names a dnsmasq that was killed: restart_dhcp launches a new one."""
    conf = flags.parse(DOCUMENT_CONF + f"--state_path={tmp_path}\n")
    launched: list[list[str]] = []
    monkeypatch.setattr(linux_net, "_launch_dnsmasq", lambda argv, env: launched.append(argv))
    monkeypatch.setattr(linux_net, "iptables_manager", linux_net.RecordingIptablesManager())
    killed = _hup_counter("--dhcp-hostsfile=/elsewhere/nova-br100.conf")
    killed.kill()
    killed.communicate(timeout=10)
    (tmp_path / "networks").mkdir()
    (tmp_path / "networks" / "nova-br100.pid").write_text(f"{killed.pid}\n")
    linux_net.restart_dhcp(conf, BR100)
    assert len(launched) == 1 and launched[0][0] == "/usr/sbin/dnsmasq"


def test_dnsmasq_pid_for_garbage(tmp_path: Path) -> None:
    conf = flags.parse(DOCUMENT_CONF + f"--state_path={tmp_path}\n")
    assert linux_net.dnsmasq_pid_for(conf, "br100") is None
    (tmp_path / "networks").mkdir()
    (tmp_path / "networks" / "nova-br100.pid").write_text("junk")
    assert linux_net.dnsmasq_pid_for(conf, "br100") is None


class FakeHost:
    """Answers linux_net.execute like a host would, and records each command."""

    def __init__(self, devices: set[str], addresses: dict[str, list[dict[str, object]]],
                 routes: dict[str, list[dict[str, object]]], addif_error: str = "") -> None:
        self.devices, self.addresses, self.routes, self.addif_error = devices, addresses, routes, addif_error
        self.commands: list[str] = []

    def __call__(self, *cmd: str, check_exit_code: object = True) -> tuple[str, str]:
        line = " ".join(cmd)
        if line.startswith("ip link show dev "):
            return ("", "") if cmd[-1] in self.devices else ("", f'Device "{cmd[-1]}" does not exist.')
        if line.startswith("ip -j -4 addr show dev "):
            return json.dumps([{"ifname": cmd[6], "addr_info": self.addresses.get(cmd[6], [])}]), ""
        if line.startswith("ip -j -4 route show default dev "):
            return json.dumps(self.routes.get(cmd[-1], [])), ""
        self.commands.append(line)
        if cmd[:2] == ("brctl", "addif"):
            return "", self.addif_error
        return "", ""


def test_ensure_bridge_new_bridge_moves_address_and_route(monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHost({"eth2"}, {"eth2": [{"local": "192.0.2.5", "prefixlen": 24, "broadcast": "192.0.2.255",
                                        "scope": "global", "secondary": False}]},
                    {"eth2": [{"dst": "default", "gateway": "192.0.2.1", "dev": "eth2"}]})
    monkeypatch.setattr(linux_net, "execute", host)
    monkeypatch.setattr(linux_net, "iptables_manager", linux_net.RecordingIptablesManager())
    linux_net.ensure_bridge("br100", "eth2")
    assert host.commands == [
        "brctl addbr br100", "brctl setfd br100 0", "brctl stp br100 off", "ip link set br100 up",
        "brctl addif br100 eth2",
        "ip route del default via 192.0.2.1 dev eth2",
        "ip addr del 192.0.2.5/24 brd 192.0.2.255 scope global dev eth2",
        "ip addr add 192.0.2.5/24 brd 192.0.2.255 scope global dev br100",
        "ip route add default via 192.0.2.1 dev br100"]
    assert linux_net.iptables_manager.ipv4["filter"].rules == [
        ("FORWARD", "--in-interface br100 -j ACCEPT"), ("FORWARD", "--out-interface br100 -j ACCEPT")]


def test_ensure_bridge_existing_and_already_member(monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHost({"br100", "eth2"}, {}, {}, addif_error=(
        "device eth2 is already a member of a bridge; can't enslave it to bridge br100.\n"))
    monkeypatch.setattr(linux_net, "execute", host)
    linux_net.ensure_bridge("br100", "eth2", gateway=False)
    assert host.commands == ["brctl addif br100 eth2"]


def test_ensure_bridge_other_addif_error(monkeypatch: pytest.MonkeyPatch) -> None:
    error = "interface eth9 does not exist!"
    monkeypatch.setattr(linux_net, "execute", FakeHost({"br100"}, {}, {}, addif_error=error))
    with pytest.raises(linux_net.LinuxNetError, match=f"Failed to add interface: {error}"):
        linux_net.ensure_bridge("br100", "eth9")


def test_initialize_gateway_device_puts_dhcp_server_first(monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHost({"br100"}, {"br100": [{"local": "192.0.2.5", "prefixlen": 24, "broadcast": "192.0.2.255",
                                          "scope": "global"}]}, {})
    monkeypatch.setattr(linux_net, "execute", host)
    linux_net.initialize_gateway_device("br100", BR100)
    assert host.commands == ["ip addr del 192.0.2.5/24 brd 192.0.2.255 scope global dev br100",
                             "ip addr add 10.0.0.1/24 brd 10.0.0.255 dev br100",
                             "ip addr add 192.0.2.5/24 brd 192.0.2.255 scope global dev br100"]


def test_initialize_gateway_device_already_first(monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHost({"br100"}, {"br100": [{"local": "10.0.0.1", "prefixlen": 24, "broadcast": "10.0.0.255",
                                          "scope": "global"}]}, {})
    monkeypatch.setattr(linux_net, "execute", host)
    linux_net.initialize_gateway_device("br100", BR100)
    assert host.commands == []


def test_nat_rules_for_the_seam(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linux_net, "iptables_manager", linux_net.RecordingIptablesManager())
    conf = flags.parse(DOCUMENT_CONF)
    linux_net.init_host(conf)
    linux_net.metadata_forward(conf)
    assert linux_net.iptables_manager.ipv4["nat"].rules == [
        ("snat", "-s 10.0.0.0/24 -j SNAT --to-source 192.168.56.200"),
        ("POSTROUTING", "-s 10.0.0.0/24 -d 192.168.56.200/32 -j ACCEPT"),
        ("POSTROUTING", "-s 10.0.0.0/24 -d 10.128.0.0/24 -j ACCEPT"),
        ("POSTROUTING", "-s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT"),
        ("PREROUTING", "-s 0.0.0.0/0 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT "
                       "--to-destination 192.168.56.200:8775")]
