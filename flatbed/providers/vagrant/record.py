"""What the VM provider keeps in the state file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flatbed.state import NodeRecord, ProviderRecord


@dataclass
class SSHRecord:
    """How to log in to a VM (from ``vagrant ssh-config``)."""

    host: str
    port: int
    user: str
    identity: str


@dataclass
class VagrantNodeRecord(NodeRecord):
    domain: str | None = None     # stack nodes: their libvirt domain
    ssh: SSHRecord | None = None  # once the VM answered on SSH


@dataclass
class VagrantRecord(ProviderRecord):
    private: bool = True          # a private libvirtd in the testbed's namespace (else: libvirt at ``uri``)
    uri: str = ""
    box: str = ""
    driver: str = ""              # libvirt domain type: kvm | qemu (TCG)
    netns: str | None = None      # the private daemon's namespace (the outside host)
    networks: dict[str, str] = field(default_factory=dict)
    bridges: dict[str, str] = field(default_factory=dict)
    domains: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    vagrant_dir: str = ""         # Vagrant's machine folders and home; empty until the names are recorded
    ssh_key: str = ""
    libvirtd_pid: int | None = None
    vagrant_pid: int | None = None  # a `vagrant up` in progress (its own process group)
    nodes: dict[str, VagrantNodeRecord] = field(default_factory=dict)

    @classmethod
    def from_v1(cls, nodes: dict[str, Any], resources: dict[str, Any]) -> dict[str, Any]:
        return {**resources.get("vagrant", {}), "nodes": nodes}
