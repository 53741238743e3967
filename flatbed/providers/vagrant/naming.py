"""Every name the VM provider creates, derived from the run id so that cleanup finds it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RUNTIME_DIR = Path("/run/flatbed")  # the private libvirtd's sockets, /run/flatbed/<run id>/
POOL = "default"                    # the libvirt storage pool of the VMs' disks


@dataclass(frozen=True)
class RunNames:
    """The names of one run's namespace, libvirt networks, bridges, domains and volumes."""

    run: str
    outside: str
    mgmt_nic: str = "eth1"  # the outside host's NIC name in the topology
    private: bool = True

    @property
    def netns(self) -> str:
        return f"{self.run}-{self.outside}"

    @property
    def networks(self) -> dict[str, str]:
        return {"management": f"{self.run}-mgmt", "flat": f"{self.run}-flat"}

    @property
    def bridges(self) -> dict[str, str]:
        """In the testbed's own namespace the management bridge is the outside host's NIC (``eth1``,
        as with containers); in the host's namespace both carry the run id (at most 15 characters)."""
        if self.private:
            return {"management": self.mgmt_nic, "flat": "flat"}
        return {"management": f"{self.run}-m", "flat": f"{self.run}-f"}

    @property
    def domain_prefix(self) -> str:
        return f"{self.run}-"

    def domain(self, node: str) -> str:
        return f"{self.run}-{node}"

    def volume(self, node: str) -> str:
        return f"{self.domain(node)}.img"

    @property
    def runtime(self) -> Path:
        return RUNTIME_DIR / self.run
