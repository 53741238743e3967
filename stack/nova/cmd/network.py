"""nova-network: set up this host's networks, then serve the network RPC.

    nova-network [--flagfile=/etc/nova/nova.conf]

Start-up follows Essex's service: load the flags, open the database, ``init_host()`` (bridge,
gateway address, metadata IP, dnsmasq for every network bound to ``--host``), then serve.
"""

from __future__ import annotations

import logging
import os

from nova import service, systemd
from nova.db import Database, DBError
from nova.network import linux_net
from nova.network.iptables import IptablesError
from nova.network.linux_net import LinuxNetError
from nova.network.manager import FlatDHCPManager
from nova.rpc import RpcServer

LOG = logging.getLogger("nova.service")

FLAT_DHCP_MANAGER = "nova.network.manager.FlatDHCPManager"


def main(argv: list[str]) -> int:
    conf = service.start("nova-network", argv)
    if isinstance(conf, int):
        return conf
    if conf.network_manager != FLAT_DHCP_MANAGER:
        LOG.error("--network_manager=%s is not implemented here; only %s is",
                  conf.network_manager, FLAT_DHCP_MANAGER)
        return 1
    LOG.info("Starting network node (version 2012.1, flatbed) on host %s", conf.host)
    try:
        os.makedirs(conf.state_path, exist_ok=True)
        # Chains named after this binary (nova-network), as Essex's module-level manager.
        linux_net.setup_iptables(conf)
        manager = FlatDHCPManager(conf, Database(conf.sqlite_path))
        # The network host is also where services register (Essex: the services table).
        methods = {**manager.rpc_methods(), "service_update": manager.db.service_update}
        server = RpcServer(conf.my_ip, conf.network_rpc_port, methods, name="network RPC")
    except (OSError, DBError) as exc:
        LOG.error("cannot start: %s", exc)
        return 1

    def ready() -> None:
        # Served during init_host: dnsmasq's first `nova-dhcpbridge add` may come meanwhile and
        # waits on the manager's lock instead of being refused (Essex's AMQP queued it).
        manager.init_host()
        service.start_periodic_tasks(manager.periodic_tasks, conf.periodic_interval)
        LOG.info("Serving network RPC on %s:%d", conf.my_ip, server.port)
        systemd.notify()  # Type=notify: `systemctl start` returns once the host is set up

    return service.run([server], ready=ready, errors=(LinuxNetError, IptablesError, DBError, OSError))
