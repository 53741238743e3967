"""The provider interface: the few things that differ between containers and VMs.

Like Molecule's driver base, a provider creates machines, hands out nodes and destroys what it
created; and, like a driver's ``reset``, it finds and removes what it tagged with a run id when
no state file is left to say what exists (:meth:`Provider.scan`, :meth:`Provider.sweep`).
Everything else (images, provisioning, tests, ``flatbed clean``/``leaks``/``status``/``list``)
is shared and sees a provider only through this class and nodes only through
``flatbed.node.Node``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from flatbed.errors import FlatbedError
from flatbed.images.base import BaseImage
from flatbed.images.guest import GuestImage
from flatbed.node import Node
from flatbed.state import ProviderRecord, TestbedState
from flatbed.topology import Topology

Progress = Callable[[str], None]


class Provider(ABC):
    """Brings the nodes of one topology up and down; all it creates is recorded in ``state.record``."""

    name: ClassVar[str]
    # The typed record this provider keeps in the state file (``state.record``).
    Record: ClassVar[type[ProviderRecord]] = ProviderRecord
    # Whether a run may bring up a second testbed while its first is up or coming up (a test
    # module's variant): containers yes; VMs come up one testbed at a time (their memory).
    side_by_side: ClassVar[bool] = False

    def __init__(self, topology: Topology, state: TestbedState, progress: Progress):
        self.topology = topology
        self.state = state
        self.progress = progress

    # --- choosing -----------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def unusable(cls) -> str | None:
        """Why this provider cannot run on this host, or None when it can."""

    @classmethod
    def auto_unsuitable(cls, guest: GuestImage) -> str | None:
        """Why ``auto`` should not pick this provider (by default: why it cannot run at all).

        ``guest`` is the built guest image (its kernel is what a KVM probe boots): choosing never
        builds an image.
        """
        return cls.unusable()

    # --- one testbed --------------------------------------------------------------------------

    @property
    def run(self) -> str:
        """The run id every resource name of this testbed starts with."""
        return self.state.run_id

    @property
    def options(self) -> dict[str, str]:
        """Provider options given at creation (``--libvirt-uri``...), kept in the state file."""
        return self.state.options

    def build_images(self, base: BaseImage, guest: GuestImage) -> None:
        """Build or find this provider's own images before ``create`` (called by ``Testbed.up``)."""
        return None  # most providers boot the base image as it is

    @abstractmethod
    def create(self, base: BaseImage) -> None:
        """Boot every node of the topology from ``base``, wired as the topology says."""

    @abstractmethod
    def destroy(self) -> list[str]:
        """Remove everything ``state`` records (idempotent); return what was removed."""

    @abstractmethod
    def node(self, name: str) -> Node:
        """A handle on a running node; raises NodeGoneError when it is not running."""

    def running(self, name: str) -> bool:
        """Whether node ``name`` is running (by default: the provider hands out a handle)."""
        try:
            self.node(name)
        except FlatbedError:
            return False
        return True

    @abstractmethod
    def leftovers(self) -> list[str]:
        """Resources of this run still present on the host (empty after destroy)."""

    def facts(self) -> list[str]:
        """Short provider facts for ``flatbed status`` (where the nodes run, how)."""
        return []

    # --- run-tagged resources without a state file (``flatbed clean``, ``flatbed leaks``) ----------

    @classmethod
    def scan(cls) -> dict[str, list[str]]:
        """Run id -> this provider's run-tagged resources present on the host, whether or not a
        state file records them (network namespaces and mounts under the state root are
        flatbed's own and listed by :mod:`flatbed.leftovers`)."""
        return {}

    @classmethod
    def sweep(cls, run_id: str) -> list[str]:
        """Remove this provider's resources tagged ``run_id`` with no state file to go by; return
        what was removed. Runs before the run's namespaces are removed."""
        return []

    @classmethod
    def recorded_in(cls, run_id: str) -> Path | None:
        """The state root this provider's live processes of ``run_id`` name, if they name one
        (a run of another ``FLATBED_STATE`` whose state file is not beside ours)."""
        return None
