"""Nodes as systemd-nspawn system containers in network namespaces (the fast, embedded provider).

Layout of one testbed ``<run>`` (names in :mod:`.naming`):
- namespace ``<run>-sw``: the switch, one bridge per testbed network (``mgmt``, ``flat``);
- namespace ``<run>-<node>`` per node, with veths ``eth1``/``eth2`` whose peers are bridge ports;
- per stack node, a container booted from the base root through an overlay whose upper dir is
  in the testbed directory, in cgroups ``flatbed/<run>-<node>`` (:mod:`.cgroups`), started by a
  small launcher (:mod:`.launcher`);
- the outside host is a plain namespace holding the management gateway address, with a route
  of the flat range via the controller.

Modules: :mod:`.provider` (the Provider), :mod:`.node` (the container node), :mod:`.record`
(its state-file record).
"""

from flatbed.providers.nspawn.node import NspawnNode
from flatbed.providers.nspawn.provider import NspawnProvider

__all__ = ["NspawnNode", "NspawnProvider"]
