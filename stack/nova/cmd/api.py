"""nova-api: the compute API, the EC2 metadata service and the image store of the controller.

    nova-api [--flagfile=/etc/nova/nova.conf]

Serves, each in its own thread:

- the compute API (JSON RPC, as the other services here) on
  ``<osapi_compute_listen>:<osapi_compute_listen_port>`` (0.0.0.0:8774) — the ``nova`` CLI;
- the metadata API on ``<metadata_listen>:<metadata_listen_port>`` (0.0.0.0:8775) — the guests,
  through the DNAT of 169.254.169.254:80 on this host;
- the image store on ``0.0.0.0:<glance_port>`` (9292) — the computes' first download of an image.

Start-up as Essex's MetadataManager.init_host: nova-api's INPUT accept of the metadata port
(``linux_net.metadata_accept``), then serve; unfinished builds and deletes of a previous run are
resumed. The unit is started before nova-network so that the iptables chains come in the
document's order (each binary inserts its rules above those already there).
"""

from __future__ import annotations

import logging
import os

from nova import service, systemd
from nova.api.metadata import MetadataServer
from nova.compute.api import ComputeAPI
from nova.db import Database, DBError
from nova.image.store import ImageServer, ImageStore
from nova.network import linux_net
from nova.rpc import RpcServer
from nova.wsgi import Server

LOG = logging.getLogger("nova.service")
STOP_GRACE = 5  # seconds a stop waits for running instance tasks


def main(argv: list[str]) -> int:
    conf = service.start("nova-api", argv)
    if isinstance(conf, int):
        return conf
    LOG.info("Starting nova-api (version 2012.1, flatbed) on host %s", conf.host)
    servers: list[Server] = []
    try:
        os.makedirs(conf.state_path, exist_ok=True)
        db = Database(conf.sqlite_path)
        api = ComputeAPI(conf, db, ImageStore(conf.image_store_path, db))
        # Essex's MetadataManager.init_host: nova-api's own wrapped chains and its INPUT accept.
        linux_net.setup_iptables(conf)
        linux_net.metadata_accept(conf)
        LOG.info("Metadata accept rule for %s:%d in place", conf.metadata_host, conf.metadata_port)
        servers.append(RpcServer(conf.osapi_compute_listen, conf.osapi_compute_listen_port, api.rpc_methods(),
                                 name="compute API"))
        servers.append(MetadataServer(conf.metadata_listen, conf.metadata_listen_port, api.metadata_for_address,
                                      use_forwarded_for=conf.use_forwarded_for))
        servers.append(ImageServer(conf.osapi_compute_listen, conf.glance_port, api.images))
    except (OSError, DBError, linux_net.LinuxNetError) as exc:
        LOG.error("cannot start: %s", exc)
        for server in servers:
            server.server_close()
        return 1

    def ready() -> None:
        systemd.notify()  # Type=notify: `systemctl restart nova-api` returns once we serve
        resumed = api.resume()
        if resumed:
            LOG.info("Resumed %d unfinished instance task(s)", resumed)

    def stopping() -> None:
        # Let running builds/deletes finish a step; whatever is cut short resumes at the next start.
        if not api.wait_for_tasks(STOP_GRACE):
            LOG.warning("Instance tasks still running after %d s; they resume at the next start", STOP_GRACE)

    return service.run(servers, ready=ready, stopping=stopping)
