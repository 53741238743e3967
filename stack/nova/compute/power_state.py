"""The power states of an instance (Essex ``nova/compute/power_state.py``): libvirt's
virDomainState values, as ``virDomain.info()[0]`` gives them, stored in ``instances.power_state``.

>>> name(RUNNING), name(SHUTOFF)
('running', 'shutdown')
"""

from __future__ import annotations

NOSTATE = 0x00
RUNNING = 0x01
BLOCKED = 0x02
PAUSED = 0x03
SHUTDOWN = 0x04
SHUTOFF = 0x05
CRASHED = 0x06
SUSPENDED = 0x07
FAILED = 0x08
BUILDING = 0x09

_STATE_MAP = {NOSTATE: "pending", RUNNING: "running", BLOCKED: "blocked", PAUSED: "paused",
              SHUTDOWN: "shutdown", SHUTOFF: "shutdown", CRASHED: "crashed", SUSPENDED: "suspended",
              FAILED: "failed to spawn", BUILDING: "building"}


def name(code: int) -> str:
    return _STATE_MAP[code]
