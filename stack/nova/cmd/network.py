"""nova-network: set up this host's networks, then serve the network RPC.

    nova-network [--flagfile=/etc/nova/nova.conf]

Start-up follows Essex's service: load the flags, open the database, ``init_host()`` (bridge,
gateway address, metadata IP, dnsmasq for every network bound to ``--host``), then serve.
"""

from __future__ import annotations

import logging
import os
import threading

from nova import service, systemd
from nova.db import Database, DBError
from nova.network import linux_net
from nova.network.iptables import IptablesError
from nova.network.linux_net import LinuxNetError
from nova.network.manager import FlatDHCPManager
from nova.rpc import RpcServer

LOG = logging.getLogger("nova.service")

FLAT_DHCP_MANAGER = "nova.network.manager.FlatDHCPManager"



def _start_periodic_tasks(manager: FlatDHCPManager, interval: int) -> None:
    """Essex's service loop: the manager's periodic tasks every ``interval`` s, the first after one."""
    def loop() -> None:
        while not stop.wait(interval):
            try:
                manager.periodic_tasks()
            except Exception:  # a failing task is logged and retried next round, as Essex did
                LOG.exception("Error during periodic tasks")
    stop = threading.Event()
    threading.Thread(target=loop, name="periodic", daemon=True).start()


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
        # Bound before init_host: dnsmasq's first `nova-dhcpbridge add` may come during set-up and
        # then waits in the listen backlog instead of being refused.
        # The network host is also where services register (Essex: the services table).
        methods = {**manager.rpc_methods(), "service_update": manager.db.service_update}
        server = RpcServer(conf.my_ip, conf.network_rpc_port, methods)
    except (OSError, DBError) as exc:
        LOG.error("cannot start: %s", exc)
        return 1
    service.stop_on_sigterm()
    try:
        manager.init_host()
        _start_periodic_tasks(manager, conf.periodic_interval)
        LOG.info("Serving network RPC on %s:%d", conf.my_ip, server.port)
        systemd.notify()  # Type=notify: `systemctl start` returns once the host is set up
        server.serve_forever()
    except (LinuxNetError, IptablesError, DBError, OSError) as exc:
        LOG.error("%s", exc)
        return 1
    except (SystemExit, KeyboardInterrupt) as exc:
        LOG.info("Stopping: %s", exc or "interrupted")
    finally:
        server.server_close()
    return 0
