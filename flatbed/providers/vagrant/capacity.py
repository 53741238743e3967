"""Whether this host has the cores and memory for two VM testbeds at once.

Under TCG every busy vCPU is a host core's worth of work, and a testbed's VMs are all busy while
they boot: six TCG VMs on two cores made one compute's nested-KVM guest so slow that its KVM
probe gave up (issue 12). So a second VM testbed (a test module's variant, an inner run) comes up
beside the session's only where there is a core per VM of both and the memory of both.
"""

from __future__ import annotations

import os

from flatbed.providers.vagrant.config import CPUS, MEMORY_MIB

# QEMU's own memory beside each VM's (host RSS under TCG ≈ the VM's memory + 0.2-0.4 GiB).
OVERHEAD_MIB = 400
ROLES = ("controller", "compute", "compute")  # the default topology's VMs


def testbed_needs(roles: tuple[str, ...] = ROLES) -> tuple[int, int]:
    """(cores, MiB) one testbed of VMs with these roles keeps busy while it boots (pure)."""
    return CPUS * len(roles), sum(MEMORY_MIB[role] + OVERHEAD_MIB for role in roles)


def available_mib() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def two_testbeds_fit(cores: int | None = None, free_mib: int | None = None) -> bool:
    """Room for a second VM testbed beside the first: cores and memory for both."""
    need_cores, need_mib = testbed_needs()
    cores = (os.cpu_count() or 1) if cores is None else cores
    free_mib = available_mib() if free_mib is None else free_mib
    return cores >= 2 * need_cores and free_mib >= 2 * need_mib
