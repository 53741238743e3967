"""nova-compute: serve the compute RPC (run/terminate instances) of this node.

    nova-compute [--flagfile=/etc/nova/nova.conf]

An empty ``--libvirt_type`` is decided from facts once per boot of the node
(:mod:`nova.virt.libvirt.kvmprobe`: /dev/kvm and a probe boot judged by its progress), at start,
or at the first instance when there is nothing to probe with yet. systemd hears READY (the unit is
``Type=notify``) once the choice is made and the network host knows this compute.
"""

from __future__ import annotations

import dataclasses
import logging

from nova import flags, rpc, service, systemd
from nova.compute.manager import ComputeManager
from nova.network import linux_net
from nova.rpc import RpcServer
from nova.virt.libvirt import kvmprobe

LOG = logging.getLogger("nova.service")
REGISTER_TIMEOUT = 120  # the controller's nova-network may still be starting


class RegisterError(Exception):
    """The network host refused this compute, or could not be reached in time."""


def register(conf: flags.Flags) -> None:
    """Announce this compute to the network host (Essex: a services row via the shared DB)."""
    try:
        rpc.call(conf.network_host, conf.network_rpc_port, "service_update", retry_for=REGISTER_TIMEOUT,
                 host=conf.host, topic="compute", address=conf.my_ip, port=conf.compute_rpc_port)
    except rpc.RemoteError as exc:
        raise RegisterError(f"cannot register: {exc}") from None
    LOG.info("Registered with %s:%d", conf.network_host, conf.network_rpc_port)


def main(argv: list[str]) -> int:
    conf = service.start("nova-compute", argv)
    if isinstance(conf, int):
        return conf
    choice = kvmprobe.decide(conf.libvirt_type, conf.instances_path)
    conf = dataclasses.replace(conf, libvirt_type=choice.libvirt_type)
    LOG.info("Starting compute node (version 2012.1, flatbed) on host %s, libvirt_type=%s",
             conf.host, choice.describe())
    # Chains named after this binary (nova-compute); nothing is applied before the first instance.
    linux_net.setup_iptables(conf)
    manager = ComputeManager(conf)
    try:
        manager.init_host()
    except Exception as exc:  # libvirt down, iptables broken: say so and let systemd retry
        LOG.error("cannot set up the host: %s", exc)
        return 1
    try:
        server = RpcServer(conf.my_ip, conf.compute_rpc_port, manager.rpc_methods(), name="compute RPC")
    except OSError as exc:
        LOG.error("cannot start: %s", exc)
        return 1
    def ready() -> None:
        register(conf)  # serve first, then announce: the controller may call back as soon as it knows us
        service.start_periodic_tasks(manager.periodic_tasks, conf.periodic_interval)
        systemd.notify()

    return service.run([server], ready=ready, errors=(RegisterError,))
