"""nova-compute's access to the instances table, which lives in the controller's database.

Essex's nova-compute opened the database itself: at start (``init_host``: which of this host's
instances were running) and at every power-state sync. Here only controller processes open it,
so nova-compute asks nova-api, on ``<metadata_host>:<osapi_compute_listen_port>`` as the nova CLI
does (later nova releases put a conductor service there).
"""

from __future__ import annotations

from typing import Any

from nova import rpc
from nova.flags import Flags

CALL_TIMEOUT = 30.0


class InstanceRecords:
    """The instance rows of one compute host, read and updated over nova-api's RPC."""

    def __init__(self, flags: Flags) -> None:
        self.host = flags.host
        self.endpoint = (flags.metadata_host, flags.osapi_compute_listen_port)

    def get_all_by_host(self, retry_for: float = 0.0) -> list[dict[str, Any]]:
        """``id``, ``uuid``, ``name``, ``vm_state``, ``task_state``, ``power_state`` of this host's
        live instances; raises rpc.RemoteError."""
        return list(rpc.call(*self.endpoint, "instances_on_host", timeout=CALL_TIMEOUT, retry_for=retry_for,
                             host=self.host))

    def set_power_state(self, instance_id: int, power_state: int, vm_state: str | None = None) -> None:
        rpc.call(*self.endpoint, "set_power_state", timeout=CALL_TIMEOUT, instance_id=instance_id,
                 power_state=power_state, vm_state=vm_state)
