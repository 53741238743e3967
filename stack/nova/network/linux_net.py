"""Bridges, addresses and dnsmasq on the network host, as Essex's ``nova/network/linux_net.py``.

The functions run the same commands Essex ran (``brctl``, ``ip``, ``dnsmasq``, ``dhcp_release``),
as root, in the same order. They take the flags and the network row as arguments instead of
Essex's global FLAGS and DB, so the pure parts (``dnsmasq_cmd``, ``host_dhcp``, ``host_lease``)
can be checked without a host.

Firewall: Essex added iptables rules from inside these functions (FORWARD in ``ensure_bridge``,
applied by ``plug``;
INPUT 67/53 after starting dnsmasq, NAT in ``init_host``/``metadata_forward``, nova-api's INPUT
in ``metadata_accept``) through the module-level ``iptables_manager``. A binary makes that the
real manager of ``nova.network.iptables`` for its own chains with ``setup_iptables(flags)``
before its first rule (nova-network, nova-api and nova-compute do); until then, as in unit
tests, it is a ``RecordingIptablesManager`` that only records the rules.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from nova.db import FixedIp, Network, to_epoch
from nova.flags import Flags
from nova.network.iptables import IptablesManager as RealIptablesManager
from nova.network.iptables import binary_name

LOG = logging.getLogger("nova.linux_net")

DNSMASQ = "/usr/sbin/dnsmasq"
METADATA_IP = "169.254.169.254"


class LinuxNetError(Exception):
    """A host command failed; the message names the command and its error output."""


# --- the iptables seam ------------------------------------------------------------------------

class IptablesTable(Protocol):
    def add_rule(self, chain: str, rule: str) -> None: ...


class IptablesManager(Protocol):
    ipv4: Mapping[str, IptablesTable]

    def apply(self) -> None: ...


class RecordedTable:
    """Keeps ``(chain, rule)`` pairs in the order they were first added, and the chain names."""

    def __init__(self) -> None:
        self.rules: list[tuple[str, str]] = []
        self.chains: set[str] = set()

    def add_chain(self, name: str, wrap: bool = True) -> None:
        self.chains.add(name)

    def remove_chain(self, name: str, wrap: bool = True) -> None:
        self.chains.discard(name)
        self.rules = [(c, r) for c, r in self.rules if c != name and not r.endswith(f"-j ${name}")]

    def empty_chain(self, name: str, wrap: bool = True) -> None:
        self.rules = [(c, r) for c, r in self.rules if c != name]

    def add_rule(self, chain: str, rule: str, wrap: bool = True, top: bool = False) -> None:
        if (chain, rule) not in self.rules:
            self.rules.append((chain, rule))


class RecordingIptablesManager:
    """The default ``iptables_manager``: records what nova-network asks for, changes nothing."""

    def __init__(self) -> None:
        self.ipv4: dict[str, RecordedTable] = {"filter": RecordedTable(), "nat": RecordedTable()}
        self.applied = 0

    def apply(self) -> None:
        self.applied += 1


iptables_manager: IptablesManager = RecordingIptablesManager()


def setup_iptables(flags: Flags, binary: str | None = None) -> RealIptablesManager:
    """Make ``iptables_manager`` the real one for this binary (``argv[0]``'s name) and return it.

    Essex built it when linux_net was imported; here each binary calls this in its ``main``, so
    that importing the module (tests, nova-manage) never touches the host's iptables.
    """
    global iptables_manager
    manager = RealIptablesManager(binary or binary_name(), lock_path=flags.lock_path)
    iptables_manager = manager
    return manager


def init_host(flags: Flags) -> None:
    """Essex ``init_host(fixed_range)``: SNAT of the fixed range and the no-SNAT exceptions."""
    ip_range = flags.fixed_range
    nat = iptables_manager.ipv4["nat"]
    nat.add_rule("snat", f"-s {ip_range} -j SNAT --to-source {flags.routing_source_ip}")
    nat.add_rule("POSTROUTING", f"-s {ip_range} -d {flags.metadata_host}/32 -j ACCEPT")
    if flags.dmz_cidr:
        nat.add_rule("POSTROUTING", f"-s {ip_range} -d {flags.dmz_cidr} -j ACCEPT")
    nat.add_rule("POSTROUTING", f"-s {ip_range} -d {ip_range} -m conntrack ! --ctstate DNAT -j ACCEPT")
    iptables_manager.apply()


def metadata_forward(flags: Flags) -> None:
    """Essex ``metadata_forward``: DNAT 169.254.169.254:80 to the metadata API."""
    iptables_manager.ipv4["nat"].add_rule(
        "PREROUTING", f"-s 0.0.0.0/0 -d {METADATA_IP}/32 -p tcp -m tcp --dport 80 -j DNAT"
        f" --to-destination {flags.metadata_host}:{flags.metadata_port}")
    iptables_manager.apply()


def metadata_accept(flags: Flags) -> None:
    """Essex ``metadata_accept`` (nova-api's MetadataManager.init_host): INPUT accept of the API.

    It lands in the wrapped INPUT of the calling binary: ``nova-api-INPUT`` on the controller.
    """
    iptables_manager.ipv4["filter"].add_rule(
        "INPUT", f"-s 0.0.0.0/0 -d {flags.metadata_host} -p tcp -m tcp --dport {flags.metadata_port} -j ACCEPT")
    iptables_manager.apply()


def _add_dnsmasq_accept_rules(dev: str) -> None:
    """Let DHCP and DNS reach dnsmasq: ports 67 then 53, udp then tcp (Essex order)."""
    table = iptables_manager.ipv4["filter"]
    for port in (67, 53):
        for proto in ("udp", "tcp"):
            table.add_rule("INPUT", f"-i {dev} -p {proto} -m {proto} --dport {port} -j ACCEPT")
    iptables_manager.apply()


# --- running commands -------------------------------------------------------------------------

def execute(*cmd: str, check_exit_code: bool | Sequence[int] = True) -> tuple[str, str]:
    """Run a command and return (stdout, stderr); raise LinuxNetError on an unexpected exit code.

    ``check_exit_code`` is True (only 0 is fine), False (anything is) or the accepted codes.
    """
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LinuxNetError(f"{' '.join(cmd)}: {exc}") from None
    accepted = (0,) if check_exit_code is True else check_exit_code
    if accepted is not False and result.returncode not in accepted:
        raise LinuxNetError(f"{' '.join(cmd)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout, result.stderr


def device_exists(device: str) -> bool:
    # Essex asked `ip link show dev X`; /sys/class/net can show the host's devices in a container.
    _out, err = execute("ip", "link", "show", "dev", device, check_exit_code=False)
    return not err


def _global_addresses(dev: str) -> list[list[str]]:
    """``ip addr add`` arguments of each global IPv4 address of ``dev``, in the kernel's order."""
    out, _err = execute("ip", "-j", "-4", "addr", "show", "dev", dev, "scope", "global")
    params = []
    for link in json.loads(out or "[]"):
        for info in link.get("addr_info", []):
            # Flags such as `secondary`/`dynamic` are state, not `ip addr add` arguments.
            address = [f"{info['local']}/{info['prefixlen']}"]
            if info.get("broadcast"):
                address += ["brd", info["broadcast"]]
            params.append(address + ["scope", info.get("scope", "global")])
    return params


def _default_gateways(dev: str) -> list[str]:
    out, _err = execute("ip", "-j", "-4", "route", "show", "default", "dev", dev)
    return [route["gateway"] for route in json.loads(out or "[]") if route.get("gateway")]


# --- bridge and gateway device ----------------------------------------------------------------

def plug(bridge: str, interface: str | None, gateway: bool = True) -> None:
    """The network host's bridge: ``ensure_bridge``, then apply its FORWARD rules (Essex's
    LinuxBridgeInterfaceDriver.plug; a compute's VIF plug calls ensure_bridge alone, and its rules
    reach the kernel with the instance filter's apply)."""
    ensure_bridge(bridge, interface, gateway)
    iptables_manager.apply()


def ensure_bridge(bridge: str, interface: str | None, gateway: bool = True) -> None:
    """Create ``bridge`` if needed, enslave ``interface`` and move its addresses to the bridge.

    Essex (LinuxBridgeInterfaceDriver.ensure_bridge): addbr, setfd 0, stp off, link up; addif
    tolerating "already a member"; the default route and global addresses of the interface move
    to the bridge. ``gateway`` selects ACCEPT (True) or DROP forwarding rules for the bridge; they
    are added, not applied (``plug`` applies).
    """
    if not device_exists(bridge):
        LOG.debug("Starting Bridge interface for %s", interface)
        execute("brctl", "addbr", bridge)
        execute("brctl", "setfd", bridge, "0")
        execute("brctl", "stp", bridge, "off")
        execute("ip", "link", "set", bridge, "up")
    if interface:
        _out, err = execute("brctl", "addif", bridge, interface, check_exit_code=False)
        if err and "already a member of a bridge" not in err:
            raise LinuxNetError(f"Failed to add interface: {err.strip()}")
        # An address on an enslaved interface no longer works, so it goes to the bridge.
        gateways = _default_gateways(interface)
        for gw in gateways:
            execute("ip", "route", "del", "default", "via", gw, "dev", interface)
        for params in _global_addresses(interface):
            execute("ip", "addr", "del", *params, "dev", interface, check_exit_code=(0, 2, 254))
            execute("ip", "addr", "add", *params, "dev", bridge, check_exit_code=(0, 2, 254))
        for gw in gateways:
            execute("ip", "route", "add", "default", "via", gw, "dev", bridge, check_exit_code=(0, 2))
    action = "ACCEPT" if gateway else "DROP"
    forward = iptables_manager.ipv4["filter"]
    forward.add_rule("FORWARD", f"--in-interface {bridge} -j {action}")
    forward.add_rule("FORWARD", f"--out-interface {bridge} -j {action}")


def initialize_gateway_device(dev: str, network: Network) -> None:
    """Make ``<dhcp_server>/<prefix> brd <broadcast>`` the first address of ``dev``.

    dnsmasq answers from the first address of the interface, so if it is not already first, all
    addresses are removed and re-added with the wanted one in front; a default route through
    ``dev`` is saved and restored around that. Essex does not touch ip_forward (Icehouse did).
    """
    full_ip = f"{network.dhcp_server}/{network.prefixlen}"
    wanted = [full_ip, "brd", network.broadcast]
    old = _global_addresses(dev)
    if old and old[0][0] == full_ip:
        return
    gateways = _default_gateways(dev)
    for gw in gateways:
        execute("ip", "route", "del", "default", "via", gw, "dev", dev, check_exit_code=(0, 2))
    for params in old:
        execute("ip", "addr", "del", *params, "dev", dev, check_exit_code=(0, 2, 254))
    for params in [wanted] + [p for p in old if p[0] != full_ip]:
        execute("ip", "addr", "add", *params, "dev", dev, check_exit_code=(0, 2, 254))
    for gw in gateways:
        execute("ip", "route", "add", "default", "via", gw, "dev", dev, check_exit_code=(0, 2))


def ensure_metadata_ip() -> None:
    """169.254.169.254/32 on lo, so the DNATed metadata traffic has a local address to hit."""
    execute("ip", "addr", "add", f"{METADATA_IP}/32", "scope", "link", "dev", "lo", check_exit_code=False)


# --- dnsmasq ----------------------------------------------------------------------------------

def dhcp_file(flags: Flags, dev: str, kind: str) -> str:
    """``<networks_path>/nova-<dev>.<kind>``: conf (hostsfile), pid, opts."""
    return os.path.abspath(os.path.join(flags.networks_path, f"nova-{dev}.{kind}"))


def dnsmasq_cmd(flags: Flags, network: Network) -> list[str]:
    """Essex's dnsmasq command line, in its argument order, led by the environment it sets.

    >>> from nova.flags import parse
    >>> net = Network(1, "novanetwork", "10.0.0.0/24", "br100", "eth2", "10.0.0.1", "10.0.0.255",
    ...               "255.255.255.0", "10.0.0.2", False, "controller-1")
    >>> " ".join(dnsmasq_cmd(parse("--my_ip=192.168.56.200\\n--host=c"), net)[:4])
    'FLAGFILE=/etc/nova/nova.conf NETWORK_ID=1 /usr/sbin/dnsmasq --strict-order'
    """
    dev = network.bridge
    cmd = [f"FLAGFILE={flags.dhcpbridge_flagfile}",
           f"NETWORK_ID={network.id}",
           DNSMASQ,
           "--strict-order",
           "--bind-interfaces",
           f"--conf-file={flags.dnsmasq_config_file}",
           f"--domain={flags.dhcp_domain}",
           f"--pid-file={dhcp_file(flags, dev, 'pid')}",
           f"--listen-address={network.dhcp_server}",
           "--except-interface=lo",
           f"--dhcp-range={network.dhcp_start},static,{flags.dhcp_lease_time}s",
           f"--dhcp-lease-max={ipaddress.ip_network(network.cidr).num_addresses}",
           f"--dhcp-hostsfile={dhcp_file(flags, dev, 'conf')}",
           f"--dhcp-script={flags.dhcpbridge}",
           "--leasefile-ro"]
    if flags.dns_server:
        cmd += ["-h", "-R", f"--server={flags.dns_server}"]
    return cmd


def split_env(cmd: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Separate leading ``NAME=value`` words (as sudo took them) from the argv."""
    env: dict[str, str] = {}
    for index, word in enumerate(cmd):
        name, sep, value = word.partition("=")
        if not sep or not name.isidentifier():
            return env, list(cmd[index:])
        env[name] = value
    return env, []


def host_dhcp(flags: Flags, fixed_ip: FixedIp) -> str:
    """A hostsfile line: ``<mac>,<hostname>.<dhcp_domain>,<address>``."""
    return f"{fixed_ip.mac},{fixed_ip.hostname}.{flags.dhcp_domain},{fixed_ip.address}"


def get_dhcp_hosts(flags: Flags, fixed_ips: Iterable[FixedIp]) -> str:
    """The hostsfile text: lines joined by newlines, empty without instances (as Essex)."""
    return "\n".join(host_dhcp(flags, fixed_ip) for fixed_ip in fixed_ips)


def host_lease(flags: Flags, fixed_ip: FixedIp) -> str:
    """A dnsmasq lease line ``<expiry> <mac> <ip> <hostname or *> *`` (Essex _host_lease).

    The expiry is the instance's updated_at (else created_at) plus the lease time.
    """
    stamp = fixed_ip.instance_updated_at or fixed_ip.instance_created_at
    expiry = (to_epoch(stamp) if stamp else 0) + flags.dhcp_lease_time
    return f"{expiry} {fixed_ip.mac} {fixed_ip.address} {fixed_ip.hostname or '*'} *"


def get_dhcp_leases(flags: Flags, fixed_ips: Iterable[FixedIp]) -> str:
    return "\n".join(host_lease(flags, fixed_ip) for fixed_ip in fixed_ips)


# Essex: @utils.synchronized('dnsmasq_start') — one writer of the hostsfile / starter of dnsmasq.
_dnsmasq_lock = threading.RLock()


def update_dhcp(flags: Flags, network: Network, fixed_ips: Iterable[FixedIp]) -> None:
    """Write the hostsfile for ``fixed_ips`` (the network's associated ones), then restart_dhcp."""
    with _dnsmasq_lock:
        os.makedirs(flags.networks_path, exist_ok=True)
        conffile = dhcp_file(flags, network.bridge, "conf")
        with open(conffile, "w", encoding="utf-8") as handle:
            handle.write(get_dhcp_hosts(flags, fixed_ips))
        # dnsmasq re-reads it after dropping privileges to nobody.
        os.chmod(conffile, 0o644)
        restart_dhcp(flags, network)


def dnsmasq_pid_for(flags: Flags, dev: str) -> int | None:
    """The pid in the pid file, or None; it may be stale after a reboot (callers check)."""
    try:
        with open(dhcp_file(flags, dev, "pid"), encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _launch_dnsmasq(argv: list[str], env: dict[str, str]) -> None:
    """Start dnsmasq, which daemonises: its first process exits once the daemon is up.

    stderr is inherited, not captured: dnsmasq's dhcp-script helper keeps it for the daemon's
    lifetime, so a pipe would never reach EOF. ``nova-dhcpbridge init`` writes there (the
    journal of nova-network); dnsmasq logs the stderr of ``add``/``del`` as ``dnsmasq-script``.
    """
    result = subprocess.run(argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, check=False, timeout=60)
    if result.returncode != 0:
        raise LinuxNetError(f"{argv[0]} exited {result.returncode} (its message is on stderr above)")


def restart_dhcp(flags: Flags, network: Network) -> None:
    """HUP the running dnsmasq of the network, or start one.

    A HUP only re-reads the hostsfile, so it is sent only when the pid file names a process whose
    command line carries this network's hostsfile; anything else (no file, dead or reused pid)
    launches a new dnsmasq. Either way the INPUT accept rules of DHCP/DNS are (re)applied.
    """
    dev = network.bridge
    with _dnsmasq_lock:
        conffile = dhcp_file(flags, dev, "conf")
        pid = dnsmasq_pid_for(flags, dev)
        if pid:
            if os.path.basename(conffile) in _cmdline(pid):
                try:
                    os.kill(pid, signal.SIGHUP)
                    LOG.debug("HUPed dnsmasq %d for %s", pid, dev)
                    # Essex returned here, so a nova-network restarted beside its running dnsmasq
                    # applied a ruleset without INPUT 67/53 and the rules vanished; Grizzly re-adds
                    # them on HUP, and so do we: a restart must not change the document's listing.
                    _add_dnsmasq_accept_rules(dev)
                    return
                except OSError as exc:
                    LOG.debug("Hupping dnsmasq threw %s", exc)
            else:
                LOG.debug("Pid %d is stale, relaunching dnsmasq", pid)
        env, argv = split_env(dnsmasq_cmd(flags, network))
        LOG.info("Starting dnsmasq for %s: %s", dev, " ".join(argv))
        _launch_dnsmasq(argv, env)
        _add_dnsmasq_accept_rules(dev)


def release_dhcp(dev: str, address: str, mac: str) -> None:
    """Make dnsmasq drop a lease now (it then runs the dhcp-script's ``del``)."""
    execute("dhcp_release", dev, address, mac)
