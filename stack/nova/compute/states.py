"""The states of an instance, as Essex named them (``nova/compute/vm_states.py`` and
``task_states.py``; power states are ``power_state.py``), and the API status of each vm_state
(``nova/api/openstack/common.py``), for the part this stack reaches.
"""

from __future__ import annotations

# vm_states: what the user sees an instance as.
BUILDING, ACTIVE, SHUTOFF, ERROR, DELETED = "building", "active", "shutoff", "error", "deleted"
# task_states: what is being done to it.
SCHEDULING, NETWORKING, SPAWNING, DELETING = "scheduling", "networking", "spawning", "deleting"

# The API status of a vm_state.
STATUS = {BUILDING: "BUILD", ACTIVE: "ACTIVE", SHUTOFF: "SHUTOFF", ERROR: "ERROR", DELETED: "DELETED"}
