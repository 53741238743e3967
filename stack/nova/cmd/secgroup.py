"""The ``nova secgroup-*`` subcommands, as novaclient printed them.

    nova secgroup-list
    nova secgroup-list-rules <secgroup>
    nova secgroup-add-rule <secgroup> <ip-proto> <from-port> <to-port> <cidr>
    nova secgroup-delete-rule <secgroup> <ip-proto> <from-port> <to-port> <cidr>

Adding or deleting a rule refreshes the firewall of the running instances of that group on
every compute (Essex's refresh_security_group_rules).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from nova.compute.security_groups import SecurityGroupError, SecurityGroups
from nova.db import Database
from nova.flags import Flags

RULE_HEADERS = ["IP Protocol", "From Port", "To Port", "IP Range", "Source Group"]


def add_parsers(sub: Any) -> None:
    """Register the subcommands on the nova CLI's subparsers."""
    sub.add_parser("secgroup-list", help="List security groups for the current tenant.")
    sub.add_parser("secgroup-list-rules", help="List rules for a security group.").add_argument("secgroup")
    for verb, text in (("add", "Add a rule to a security group."), ("delete", "Delete a rule from a security group.")):
        parser = sub.add_parser(f"secgroup-{verb}-rule", help=text)
        for name in ("secgroup", "ip_proto", "from_port", "to_port", "cidr"):
            parser.add_argument(name)


def _rule_row(rule: dict[str, Any]) -> list[str]:
    return [rule["protocol"], str(rule["from_port"]), str(rule["to_port"]), rule["cidr"], ""]


def run(args: argparse.Namespace, conf: Flags, table: Callable[[list[str], list[list[str]]], str]) -> int:
    """Run a ``secgroup-*`` subcommand; ``table`` is the CLI's prettytable printer."""
    db = Database(conf.sqlite_path)
    groups = SecurityGroups(db)
    try:
        if args.cmd == "secgroup-list":
            print(table(["Name", "Description"], [[g["name"], g["description"] or ""] for g in groups.list_groups()]))
        elif args.cmd == "secgroup-list-rules":
            print(table(RULE_HEADERS, [_rule_row(r) for r in groups.rules(args.secgroup)]))
        else:
            change = groups.add_rule if args.cmd == "secgroup-add-rule" else groups.delete_rule
            rule = change(args.secgroup, args.ip_proto, args.from_port, args.to_port, args.cidr)
            groups.refresh_computes(args.secgroup)
            if args.cmd == "secgroup-add-rule":
                print(table(RULE_HEADERS, [_rule_row(rule)]))
    except SecurityGroupError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    return 0
