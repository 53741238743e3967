"""nova-compute: serve the compute RPC (run/terminate instances) of this node.

    nova-compute [--flagfile=/etc/nova/nova.conf]

The virt type is probed at start when ``--libvirt_type`` is not set (qemu unless KVM can be used).
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from nova import flags, log
from nova.compute.manager import ComputeManager
from nova.rpc import RpcServer
from nova.virt.libvirt.connection import probe_virt_type

LOG = logging.getLogger("nova.service")
USAGE = "usage: nova-compute [--flagfile=PATH]"


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(f"caught {signal.Signals(signum).name}")


def main(argv: list[str]) -> int:
    flagfile, rest = flags.flagfile_from_argv(argv)
    if rest:
        print(USAGE if rest != ["--help"] else f"{USAGE}\n\nflags:\n{flags.help_text()}", file=sys.stderr)
        return 0 if rest == ["--help"] else 2
    try:
        conf = flags.load(flagfile)
    except flags.FlagError as exc:
        print(exc, file=sys.stderr)
        return 1
    log.setup("nova-compute", conf)
    if not conf.libvirt_type:
        conf = flags.replace(conf, libvirt_type=probe_virt_type())
    LOG.info("Starting compute node (version 2012.1, flatbed) on host %s, libvirt_type=%s",
             conf.host, conf.libvirt_type)
    manager = ComputeManager(conf)
    try:
        server = RpcServer(conf.my_ip, conf.compute_rpc_port, manager.rpc_methods())
    except OSError as exc:
        LOG.error("cannot start: %s", exc)
        return 1
    signal.signal(signal.SIGTERM, _stop)
    try:
        LOG.info("Serving compute RPC on %s:%d", conf.my_ip, server.port)
        server.serve_forever()
    except (SystemExit, KeyboardInterrupt) as exc:
        LOG.info("Stopping: %s", exc or "interrupted")
    finally:
        server.server_close()
    return 0
