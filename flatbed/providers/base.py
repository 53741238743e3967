"""The provider interface: the few things that differ between containers and VMs.

Like Molecule's driver base, a provider only creates machines, hands out nodes and destroys
what it created. Everything else (images, provisioning, tests) is shared and sees nodes only
through ``flatbed.node.Node``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from flatbed.images.base import BaseImage
from flatbed.node import Node
from flatbed.state import TestbedState
from flatbed.topology import Topology

Progress = Callable[[str], None]


class Provider(ABC):
    """Brings the nodes of one topology up and down; all it creates is recorded in ``state``."""

    name: ClassVar[str]

    def __init__(self, topology: Topology, state: TestbedState, progress: Progress):
        self.topology = topology
        self.state = state
        self.progress = progress

    @classmethod
    @abstractmethod
    def unusable(cls) -> str | None:
        """Why this provider cannot run on this host, or None when it can."""

    @classmethod
    def auto_unsuitable(cls) -> str | None:
        """Why ``auto`` should not pick this provider (by default: why it cannot run at all)."""
        return cls.unusable()

    @property
    def options(self) -> dict:
        """Provider options given at creation (``--libvirt-uri``...), kept in the state file."""
        return self.state.resources.get("options", {})

    @abstractmethod
    def create(self, base: BaseImage) -> None:
        """Boot every node of the topology from ``base``, wired as the topology says."""

    @abstractmethod
    def destroy(self) -> list[str]:
        """Remove everything ``state`` records (idempotent); return what was removed."""

    @abstractmethod
    def node(self, name: str) -> Node:
        """A handle on a running node; raises NodeGoneError when it is not running."""

    @abstractmethod
    def leftovers(self) -> list[str]:
        """Resources of this run still present on the host (empty after destroy)."""
