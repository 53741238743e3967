"""The flagfile ``/etc/nova/nova.conf`` in Essex's form, and the flags nova-network knows.

Essex read its configuration with python-gflags: one ``--flag=value`` per line, ``#`` comments and
blank lines allowed, booleans also as ``--flag`` / ``--noflag``. Values may refer to other flags as
``$name`` (``networks_path`` defaults to ``$state_path/networks``). Every flag is declared once, in
``Flags`` below, with its Essex default; a line naming anything else is an error, as gflags made it.

>>> f = parse("--fixed_range=10.0.0.0/24\\n--my_ip=192.168.56.200\\n--host=controller-1\\n")
>>> f.fixed_range, f.dhcp_lease_time, f.networks_path, f.metadata_host
('10.0.0.0/24', 120, '/var/lib/nova/networks', '192.168.56.200')
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import string
import typing
from dataclasses import dataclass, field

DEFAULT_FLAGFILE = "/etc/nova/nova.conf"
DHCPBRIDGE_FLAGFILE = "/etc/nova/nova-dhcpbridge.conf"  # Essex's default of --dhcpbridge_flagfile

_LINE = re.compile(r"^--([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$")


class FlagError(Exception):
    """A flagfile that cannot be used; the message is one line naming the file and line."""


def _flag(default: object, help: str) -> typing.Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Flags:
    """Every flag a nova binary of this package understands, with Essex 2012.1's default."""

    # nova/flags.py
    verbose: bool = _flag(False, "log DEBUG lines too")
    use_syslog: bool = _flag(False, "log to syslog (/dev/log) instead of stderr")
    host: str = _flag("", "name of this node (Essex: socket.gethostname()); networks are bound to it")
    my_ip: str = _flag("", "this node's address (Essex: the address of the default-route interface)")
    state_path: str = _flag("/var/lib/nova", "top-level directory for nova's state")
    sqlite_db: str = _flag("nova.sqlite", "SQLite file under state_path")
    network_manager: str = _flag("nova.network.manager.VlanManager", "network manager class")
    metadata_host: str = _flag("$my_ip", "address of the metadata API (the DNAT target)")
    metadata_port: int = _flag(8775, "port of the metadata API")
    instances_path: str = _flag("$state_path/instances", "where instance directories live")
    # Essex's default was the source tree; packages (and flatbed) use /var/lock/nova.
    lock_path: str = _flag("/var/lock/nova", "directory of the lock files nova binaries share (iptables)")
    first_instance_id: int = _flag(9, "flatbed: id of the first instance row (instance-00000009)")
    # nova/network/manager.py
    fixed_range: str = _flag("10.0.0.0/8", "fixed IP block the NAT rules use")
    flat_interface: str | None = _flag(None, "FlatDHCP bridges into this interface if set")
    flat_network_bridge: str | None = _flag(None, "bridge for the flat network")
    network_size: int = _flag(256, "number of addresses in each network")
    dhcp_domain: str = _flag("novalocal", "domain of the instances' DHCP hostnames")
    force_dhcp_release: bool = _flag(False, "run dhcp_release when an instance's IP is deallocated")
    create_unique_mac_address_attempts: int = _flag(5, "attempts to find an unused MAC")
    fixed_ip_disassociate_timeout: int = _flag(600, "seconds a deallocated, unleased IP waits before reuse")
    # nova/service.py: how often a service runs its periodic tasks (one tick; nova-compute's
    # power-state sync runs every 11th).
    periodic_interval: int = _flag(60, "seconds between periodic tasks")
    # nova/network/linux_net.py
    public_interface: str = _flag("eth0", "interface for public (SNAT) traffic")
    routing_source_ip: str = _flag("$my_ip", "SNAT source address of the network host")
    dhcp_lease_time: int = _flag(120, "DHCP lease time in seconds")
    dhcpbridge: str = _flag("/usr/bin/nova-dhcpbridge", "dnsmasq's --dhcp-script")
    # The topologies set /etc/nova/nova.conf: provisioning writes that single file.
    dhcpbridge_flagfile: str = _flag(DHCPBRIDGE_FLAGFILE, "flagfile the dhcp-script reads (FLAGFILE=)")
    networks_path: str = _flag("$state_path/networks", "where dnsmasq's hosts/pid files live")
    dnsmasq_config_file: str = _flag("", "dnsmasq --conf-file (empty: read none)")
    dns_server: str | None = _flag(None, "upstream DNS server for dnsmasq (-h -R --server=)")
    dmz_cidr: str = _flag("10.128.0.0/24", "destination not SNATed")
    # nova/virt/firewall.py
    allow_same_net_traffic: bool = _flag(True, "let instances on the same network talk")
    # flatbed: nova-network's RPC endpoint (JSON over HTTP on my_ip) stands in for Essex's AMQP.
    network_rpc_port: int = _flag(8780, "port nova-network serves its RPC on")
    # nova/flags.py: where single-host network RPCs go (Essex cast to network.<network_host>).
    network_host: str = _flag("$host", "host running nova-network")
    # nova/virt/libvirt/connection.py: Essex defaulted to kvm; empty here means probe the node.
    libvirt_type: str = _flag("", "libvirt domain type: kvm or qemu (empty: probe at start)")
    compute_rpc_port: int = _flag(8781, "flatbed: port nova-compute serves its RPC on")
    # nova/flags.py: what nova-compute's init_host does with the guests of a rebooted host.
    start_guests_on_host_boot: bool = _flag(False, "start every guest of this host when nova-compute starts")
    resume_guests_state_on_host_boot: bool = _flag(
        False, "start the guests that were running before the host rebooted, when nova-compute starts")
    # flatbed: the memory of every flavor, so that many guests fit a small host (0: the flavor's).
    flavor_memory_mb: int = _flag(0, "override the memory of every flavor, in MB")
    # nova/service.py: where nova-api listens (the compute API and the metadata API).
    osapi_compute_listen: str = _flag("0.0.0.0", "address the compute API (nova-api) binds")
    osapi_compute_listen_port: int = _flag(8774, "port of the compute API; the nova CLI and computes use it")
    metadata_listen: str = _flag("0.0.0.0", "address the metadata API binds")
    metadata_listen_port: int = _flag(8775, "port the metadata API binds")
    # nova/api/auth.py: trust X-Forwarded-For for the requester's address (off, as Essex).
    use_forwarded_for: bool = _flag(False, "take the metadata requester from X-Forwarded-For")
    # nova/flags.py: the one availability zone of every service.
    node_availability_zone: str = _flag("nova", "availability zone of this node")
    # Essex: glance-api's port. flatbed: nova-api serves its image store there for the computes.
    glance_port: int = _flag(9292, "port of the image store (nova-api) the computes fetch images from")
    image_store_path: str = _flag("$state_path/images", "flatbed: the controller's image store")

    @property
    def sqlite_path(self) -> str:
        """The database file (Essex: sql_connection = sqlite:///$state_path/$sqlite_db)."""
        return os.path.join(self.state_path, self.sqlite_db)


_FIELDS = {f.name: f for f in dataclasses.fields(Flags)}
_TYPES = typing.get_type_hints(Flags)


def help_text() -> str:
    """One line per flag: name, default and help, for ``--help`` of the binaries."""
    return "\n".join(f"  --{name}={f.default!s:<28} {f.metadata['help']}" for name, f in _FIELDS.items())


def _convert(name: str, raw: str, where: str) -> object:
    kind = _TYPES[name]
    if kind is bool:
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise FlagError(f"{where}: --{name} must be true or false, not {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise FlagError(f"{where}: --{name} must be an integer, not {raw!r}") from None
    return raw


def _parse_line(line: str, where: str) -> tuple[str, object]:
    match = _LINE.match(line)
    if not match:
        raise FlagError(f"{where}: malformed line {line!r} (expected --flag=value)")
    name, raw = match.group(1), match.group(2)
    if raw is None:
        # gflags' boolean forms: --force_dhcp_release and --noforce_dhcp_release.
        if _TYPES.get(name) is bool:
            return name, True
        if name.startswith("no") and _TYPES.get(name[2:]) is bool:
            return name[2:], False
        if name in _FIELDS:
            raise FlagError(f"{where}: --{name} needs a value (--{name}=...)")
    if name not in _FIELDS:
        raise FlagError(f"{where}: unknown flag --{name}")
    return name, _convert(name, raw, where)


def _probe_my_ip() -> str:
    """Essex's _get_my_ip: the source address of the default route (UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("8.8.8.8", 80))
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def _interpolate(values: dict[str, object]) -> None:
    """Expand ``$flag`` references in string values, as Essex's FlagValues did on access."""
    for _ in range(len(values)):
        changed = False
        strings = {k: str(v) for k, v in values.items() if v is not None}
        for name, value in values.items():
            if isinstance(value, str) and "$" in value:
                expanded = string.Template(value).safe_substitute(strings)
                if expanded != value:
                    values[name] = expanded
                    changed = True
        if not changed:
            return


def parse(text: str, source: str = "<flags>") -> Flags:
    """Parse flagfile text; errors are ``FlagError('<source>:<line>: ...')``.

    Pure apart from Essex's host-derived defaults: ``my_ip`` and ``host`` are probed only when
    the text does not set them.
    """
    values: dict[str, object] = {}
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        name, value = _parse_line(line, f"{source}:{number}")
        values[name] = value  # gflags: a later line wins
    if not values.get("my_ip"):
        values["my_ip"] = _probe_my_ip()
    if not values.get("host"):
        values["host"] = socket.gethostname()
    merged = {name: f.default for name, f in _FIELDS.items()} | values
    _interpolate(merged)
    return Flags(**merged)  # type: ignore[arg-type]


def load(path: str = DEFAULT_FLAGFILE) -> Flags:
    """Read and parse the flagfile at ``path``."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise FlagError(f"{path}: cannot read flagfile: {exc.strerror}") from None
    return parse(text, path)


def flagfile_from_argv(argv: list[str], default: str = DEFAULT_FLAGFILE) -> tuple[str, list[str]]:
    """Split Essex's ``--flagfile=PATH`` option off a binary's arguments."""
    flagfile, rest = default, []
    for arg in argv:
        if arg.startswith("--flagfile="):
            flagfile = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return flagfile, rest
