"""nova-dhcpbridge: dnsmasq's ``--dhcp-script``, feeding lease events back to nova-network.

dnsmasq runs it as root with the environment nova-network gave it (``FLAGFILE``, ``NETWORK_ID``):

    nova-dhcpbridge init                 print the lease database (because of --leasefile-ro);
                                         Essex took any other action for init too
    nova-dhcpbridge add <mac> <ip> [hostname]   -> lease_fixed_ip(address) on nova-network
    nova-dhcpbridge old <mac> <ip> [hostname]   no-op: the lease was reported when it was added
    nova-dhcpbridge del <mac> <ip> [hostname]   -> release_fixed_ip(address) on nova-network

``add``/``del`` are casts to the RPC of the network host (``my_ip``:``network_rpc_port`` of the
flagfile, i.e. this host); ``init`` reads the database directly, as Essex did.
"""

from __future__ import annotations

import logging
import os
import sys

from nova import flags, log, rpc
from nova.db import Database, DBError
from nova.network.manager import FlatDHCPManager

LOG = logging.getLogger("nova.dhcpbridge")

USAGE = "usage: nova-dhcpbridge init | add|old|del <mac> <ip> [hostname]"
CASTS = {"add": "lease_fixed_ip", "del": "release_fixed_ip"}


def init_leases(conf: flags.Flags, network_id: int) -> str:
    """The lease lines of one network, as ``get_dhcp_leases`` prints them."""
    db = Database(conf.sqlite_path)
    try:
        return FlatDHCPManager(conf, db).get_dhcp_leases(db.network_get(network_id))
    finally:
        db.close()


def main(argv: list[str]) -> int:
    # Essex: FLAGFILE from dnsmasq's environment, else dhcpbridge_flagfile's default.
    flagfile = os.environ.get("FLAGFILE", flags.DHCPBRIDGE_FLAGFILE)
    try:
        conf = flags.load(flagfile)
    except flags.FlagError as exc:
        print(exc, file=sys.stderr)
        return 1
    log.setup("nova-dhcpbridge", conf)
    action = argv[0] if argv else ""
    if action in ("add", "old", "del"):
        if len(argv) < 3:
            print(USAGE, file=sys.stderr)
            return 2
        mac, address = argv[1], argv[2]
        LOG.debug("Called '%s' for mac '%s' with ip '%s'", action, mac, address)
        if action in CASTS:
            try:
                rpc.cast(conf.my_ip, conf.network_rpc_port, CASTS[action], address=address)
            except rpc.RemoteError as exc:
                LOG.error("%s", exc)
                return 1
        return 0
    if not action:
        print(USAGE, file=sys.stderr)
        return 2
    # Essex: every other action (dnsmasq sends `init`) prints the lease database.
    try:
        network_id = int(os.environ.get("NETWORK_ID", ""))
    except ValueError:
        LOG.error("Environment variable 'NETWORK_ID' must be set.")
        return 1
    try:
        leases = init_leases(conf, network_id)
    except DBError as exc:
        LOG.error("%s", exc)
        return 1
    print(leases)  # Essex printed it even when empty: one empty line
    return 0
