"""Security groups on the controller: rules in the database, pushed to the computes' firewalls.

Essex kept groups and rules in its database and nova-compute read them when it built an
instance's iptables chain; a rule added with ``nova secgroup-add-rule`` made the API ask every
compute to refresh (``refresh_security_group_rules``). Here the computes have no database, so the
rules travel with ``run_instance`` (``rules_for_instance``) and with the refresh call.

Every instance belongs to the ``default`` group, empty unless rules are added — which is what
the document needs (its compute drops the host's own ping to the guest).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from nova import rpc
from nova.db import Database, utcnow

LOG = logging.getLogger("nova.compute.security_groups")

DEFAULT_GROUP = "default"
PROTOCOLS = ("tcp", "udp", "icmp")


class SecurityGroupError(Exception):
    """A rule or group the API refuses; the message is what the nova CLI prints."""


def validate_rule(protocol: str, from_port: str | int, to_port: str | int, cidr: str) -> dict[str, Any]:
    """Essex's checks of a new rule; returns it as stored (ports as integers, cidr normalised)."""
    protocol = protocol.lower()
    if protocol not in PROTOCOLS:
        raise SecurityGroupError(f"Invalid IP protocol {protocol}.")
    try:
        low, high = int(from_port), int(to_port)
    except ValueError:
        raise SecurityGroupError("Port values must be integers.") from None
    if protocol == "icmp":
        if not (-1 <= low <= 255 and -1 <= high <= 255):
            raise SecurityGroupError("ICMP type and code must be -1 or 0..255.")
    elif not (1 <= low <= high <= 65535):
        raise SecurityGroupError("Invalid port range: ports must be 1..65535 and from <= to.")
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise SecurityGroupError(f"Invalid CIDR {cidr!r}.") from None
    if network.version != 4:
        raise SecurityGroupError("Only IPv4 rules are supported (use_ipv6 is off).")
    return {"protocol": protocol, "from_port": low, "to_port": high, "cidr": str(network)}


class SecurityGroups:
    """The groups, their rules and the instances in them, in the controller's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _group_id(self, name: str) -> int:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT id FROM security_groups WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise SecurityGroupError(f"Security group {name} not found.")
        return int(row["id"])

    def list_groups(self) -> list[dict[str, Any]]:
        with self.db.transaction() as conn:
            return [dict(r) for r in conn.execute("SELECT name, description FROM security_groups ORDER BY id")]

    def rules(self, group: str = DEFAULT_GROUP) -> list[dict[str, Any]]:
        """The group's rules, oldest first (the order of the instance chain)."""
        group_id = self._group_id(group)
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT protocol, from_port, to_port, cidr FROM security_group_rules "
                                "WHERE parent_group_id = ? ORDER BY id", (group_id,)).fetchall()
        return [dict(r) for r in rows]

    def add_rule(self, group: str, protocol: str, from_port: str | int, to_port: str | int,
                 cidr: str) -> dict[str, Any]:
        rule = validate_rule(protocol, from_port, to_port, cidr)
        group_id = self._group_id(group)
        if rule in self.rules(group):
            raise SecurityGroupError("This rule already exists in group")
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO security_group_rules (parent_group_id, protocol, from_port, to_port, cidr, "
                         "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                         (group_id, rule["protocol"], rule["from_port"], rule["to_port"], rule["cidr"], utcnow()))
        return rule

    def delete_rule(self, group: str, protocol: str, from_port: str | int, to_port: str | int,
                    cidr: str) -> dict[str, Any]:
        rule = validate_rule(protocol, from_port, to_port, cidr)
        group_id = self._group_id(group)
        with self.db.transaction() as conn:
            cursor = conn.execute("DELETE FROM security_group_rules WHERE parent_group_id = ? AND protocol = ? "
                                  "AND from_port = ? AND to_port = ? AND cidr = ?",
                                  (group_id, rule["protocol"], rule["from_port"], rule["to_port"], rule["cidr"]))
        if cursor.rowcount == 0:
            raise SecurityGroupError("Rule not found")
        return rule

    def add_instance(self, instance_id: int, group: str = DEFAULT_GROUP) -> None:
        """Put an instance in a group (Essex: every instance is in ``default`` at least)."""
        group_id = self._group_id(group)
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO security_group_instance_association (security_group_id, instance_id, "
                         "created_at) VALUES (?, ?, ?)", (group_id, instance_id, utcnow()))

    def groups_of(self, instance_id: int) -> list[str]:
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT g.name FROM security_groups g JOIN security_group_instance_association a "
                                "ON a.security_group_id = g.id WHERE a.instance_id = ? ORDER BY g.id",
                                (instance_id,)).fetchall()
        return [r["name"] for r in rows] or [DEFAULT_GROUP]

    def rules_for_instance(self, instance_id: int) -> list[dict[str, Any]]:
        """The rules of every group of the instance, what ``run_instance`` gets."""
        return [rule for group in self.groups_of(instance_id) for rule in self.rules(group)]

    def refresh_computes(self, group: str) -> dict[str, list[int]]:
        """Ask every registered compute to rebuild the chains of its instances in ``group``.

        Returns host → refreshed instance ids; a compute that cannot be reached is logged and
        skipped (its instances keep their old rules until the next refresh, as with Essex's casts).
        """
        rules = self.rules(group)
        done: dict[str, list[int]] = {}
        for service in self.db.service_get_all_by_topic("compute"):
            try:
                done[str(service["host"])] = rpc.call(str(service["address"]), int(str(service["port"])),
                                                      "refresh_security_group_rules", group=group, rules=rules)
            except rpc.RemoteError as exc:
                LOG.error("%s", exc)
        return done
