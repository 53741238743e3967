"""Nodes as real VMs through the Vagrantfile and vagrant-libvirt (not built yet).

The interface is reserved so that ``--provider vagrant`` fails with one clear line instead of
a traceback until the vagrant provider lands.
"""

from __future__ import annotations

from flatbed.errors import FlatbedError
from flatbed.providers.base import Provider


class VagrantProvider(Provider):
    name = "vagrant"

    @classmethod
    def unusable(cls) -> str | None:
        return "the vagrant provider is not implemented yet (use --provider nspawn)"

    def create(self, base):
        raise FlatbedError(self.unusable())

    def destroy(self):
        return []

    def node(self, name):
        raise FlatbedError(self.unusable())

    def leftovers(self):
        return []
