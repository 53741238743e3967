"""The ``nova`` CLI on the controller, printing novaclient's tables.

    nova boot --image cirros --flavor 1 [--availability-zone nova:HOST] NAME
    nova list | show SERVER | delete SERVER | console-log SERVER | image-list | flavor-list
    nova secgroup-list | secgroup-list-rules | secgroup-add-rule | secgroup-delete-rule (nova/cmd/secgroup.py)
"""

from __future__ import annotations

import argparse
import sys

from nova import flags
from nova.cmd import secgroup
from nova.compute.api import FLAVORS, ApiError, ComputeAPI, Instance
from nova.db import Database
from nova.rpc import RemoteError


def table(headers: list[str], rows: list[list[str]], align_left: bool = True) -> str:
    """prettytable as novaclient printed it: centred headers, left-aligned cells."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [rule, "|" + "|".join(f" {h.center(w)} " for h, w in zip(headers, widths, strict=True)) + "|", rule]
    for r in rows:
        out.append("|" + "|".join(f" {c.ljust(w) if align_left else c.center(w)} "
                                  for c, w in zip(r, widths, strict=True)) + "|")
    out.append(rule)
    return "\n".join(out)


def networks(i: Instance) -> str:
    return f"{i.label}={i.address}" if i.address else ""


def show(i: Instance) -> str:
    props = {
        "OS-EXT-SRV-ATTR:host": i.host or "",
        "OS-EXT-SRV-ATTR:instance_name": i.name,
        "created": i.created_at,
        "flavor": i.flavor,
        "id": i.uuid,
        "image": i.image,
        "name": i.display_name,
        "status": i.status,
    }
    if i.address:
        props[f"{i.label} network"] = i.address
    if i.fault:
        props["fault"] = i.fault
    return table(["Property", "Value"], [[k, v] for k, v in sorted(props.items())])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nova", description="Command-line interface to the compute API.")
    parser.add_argument("--flagfile", default=flags.DEFAULT_FLAGFILE)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="<subcommand>")
    boot = sub.add_parser("boot", help="Boot a new server.")
    boot.add_argument("--image", required=True)
    boot.add_argument("--flavor", required=True)
    boot.add_argument("--availability-zone", dest="zone")
    boot.add_argument("name")
    sub.add_parser("list", help="List active servers.")
    for verb, text in (("show", "Show details about the given server."), ("delete", "Immediately shut down "
                       "and delete a server."), ("console-log", "Get console log output of a server.")):
        sub.add_parser(verb, help=text).add_argument("server")
    sub.add_parser("image-list", help="Print a list of available images to boot from.")
    sub.add_parser("flavor-list", help="Print a list of available 'flavors' (sizes of servers).")
    secgroup.add_parsers(sub)
    args = parser.parse_args(argv)

    try:
        conf = flags.load(args.flagfile)
    except flags.FlagError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    if args.cmd.startswith("secgroup-"):
        return secgroup.run(args, conf, table)
    api = ComputeAPI(conf, Database(conf.sqlite_path))
    try:
        if args.cmd == "boot":
            print(show(api.create(args.name, args.image, args.flavor, args.zone)))
        elif args.cmd == "list":
            print(table(["ID", "Name", "Status", "Networks"],
                        [[i.uuid, i.display_name, i.status, networks(i)] for i in api.list()]))
        elif args.cmd == "show":
            print(show(api.get(args.server)))
        elif args.cmd == "delete":
            api.delete(args.server)
        elif args.cmd == "console-log":
            sys.stdout.write(api.console_output(args.server))
        elif args.cmd == "image-list":
            print(table(["ID", "Name", "Status", "Server"],
                        [[e["hash"][:36], e["name"], "ACTIVE", ""] for e in api.images()]))
        elif args.cmd == "flavor-list":
            print(table(["ID", "Name", "Memory_MB", "Swap", "Local_GB", "VCPUs", "RXTX_Factor"],
                        [[fid, n, str(conf.flavor_memory_mb or mb), "", str(gb), str(v), "1.0"]
                         for fid, (n, mb, v, gb) in FLAVORS.items()]))
    except (ApiError, RemoteError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0
