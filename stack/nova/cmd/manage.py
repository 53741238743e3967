"""nova-manage: the administrator's command for networks and fixed IPs.

    nova-manage [--flagfile=PATH] network create --label=L --fixed_range_v4=CIDR [--bridge=BR]
                [--bridge_interface=IF] [--host=HOST] [--gateway=IP] [--network_size=N]
    nova-manage [--flagfile=PATH] network list
    nova-manage [--flagfile=PATH] fixed list

As Essex, ``--bridge`` defaults to ``flat_network_bridge`` and ``--bridge_interface`` to
``flat_interface``. ``--host`` is flatbed's: the network is bound to that nova-network host at
creation (default: this node's ``--host``), see ``FlatDHCPManager.create_network``.
"""

from __future__ import annotations

import argparse
import os
import sys

from nova import flags
from nova.db import Database
from nova.network.manager import FlatDHCPManager, NetworkError

FLAT_MANAGERS = ("nova.network.manager.FlatManager", "nova.network.manager.FlatDHCPManager")


class UsageError(Exception):
    """A command line nova-manage cannot act on."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nova-manage", description="manage nova networks and fixed IPs")
    categories = parser.add_subparsers(dest="category", required=True)
    network = categories.add_parser("network", help="networks").add_subparsers(dest="action", required=True)
    create = network.add_parser("create", help="create a network and its fixed IPs")
    create.add_argument("--label", required=True, help="network label, e.g. novanetwork")
    create.add_argument("--fixed_range_v4", required=True, help="IPv4 range, e.g. 10.0.0.0/24")
    create.add_argument("--bridge", help="bridge (default: --flat_network_bridge)")
    create.add_argument("--bridge_interface",
                        help="interface enslaved to the bridge (default: --flat_interface)")
    create.add_argument("--host", help="nova-network host serving it (default: this host's --host)")
    create.add_argument("--gateway", help="gateway (default: the range's first address)")
    create.add_argument("--network_size", type=int, help="addresses in the network (default: --network_size)")
    network.add_parser("list", help="list networks")
    fixed = categories.add_parser("fixed", help="fixed IPs").add_subparsers(dest="action", required=True)
    fixed.add_parser("list", help="list fixed IPs")
    return parser


def network_create(conf: flags.Flags, manager: FlatDHCPManager, args: argparse.Namespace) -> None:
    bridge = args.bridge or conf.flat_network_bridge
    if not bridge and conf.network_manager in FLAT_MANAGERS:
        raise UsageError("Network could not be created: --bridge is required")
    manager.create_network(label=args.label, cidr=args.fixed_range_v4, bridge=bridge,
                           bridge_interface=args.bridge_interface or conf.flat_interface,
                           host=args.host or conf.host, gateway=args.gateway, network_size=args.network_size)


def network_list(db: Database) -> None:
    row = "%-5s\t%-18s\t%-15s\t%-15s\t%-10s\t%-10s\t%-15s\t%s"
    print(row % ("id", "IPv4", "start address", "gateway", "bridge", "interface", "host", "label"))
    for net in db.network_get_all():
        print(row % (net.id, net.cidr, net.dhcp_start, net.gateway, net.bridge, net.bridge_interface,
                     net.host, net.label))


def fixed_list(db: Database) -> None:
    cidrs = {net.id: net.cidr for net in db.network_get_all()}
    row = "%-18s\t%-15s\t%-17s\t%-15s\t%-8s\t%-9s\t%-6s\t%s"
    print(row % ("network", "IP address", "MAC address", "hostname", "instance", "allocated", "leased",
                 "reserved"))
    for ip in db.fixed_ip_get_all():
        print(row % (cidrs.get(ip.network_id), ip.address, ip.mac, ip.hostname, ip.instance_id, ip.allocated,
                     ip.leased, ip.reserved))


def main(argv: list[str]) -> int:
    flagfile, rest = flags.flagfile_from_argv(argv)
    args = _parser().parse_args(rest)
    try:
        conf = flags.load(flagfile)
    except flags.FlagError as exc:
        print(exc, file=sys.stderr)
        return 1
    db = Database(conf.sqlite_path)
    try:
        if args.category == "network" and args.action == "create":
            network_create(conf, FlatDHCPManager(conf, db), args)
        elif args.category == "network":
            network_list(db)
        else:
            fixed_list(db)
    except (UsageError, NetworkError) as exc:
        print(f"nova-manage: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `nova-manage fixed list | head`: the reader left; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        db.close()
    return 0
