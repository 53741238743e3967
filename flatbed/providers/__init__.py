"""Providers by name, imported lazily (testinfra's registry style).

``auto`` picks the first usable one in PREFERENCE order; the vagrant provider joins it once it
has its KVM/Vagrant probe.
"""

from __future__ import annotations

import importlib

from flatbed.errors import FlatbedError
from flatbed.providers.base import Provider

REGISTRY = {
    "nspawn": "flatbed.providers.nspawn:NspawnProvider",
    "vagrant": "flatbed.providers.vagrant:VagrantProvider",
}
PREFERENCE = ("nspawn",)
CHOICES = ("auto", *REGISTRY)


def get(name: str) -> type[Provider]:
    """The provider class for ``name``; ``auto`` resolves to the first usable one."""
    if name == "auto":
        reasons = []
        for candidate in PREFERENCE:
            cls = get(candidate)
            why = cls.unusable()
            if why is None:
                return cls
            reasons.append(f"{candidate}: {why}")
        raise FlatbedError(f"no usable provider ({'; '.join(reasons)})")
    if name not in REGISTRY:
        raise FlatbedError(f"unknown provider {name!r} (choose from {', '.join(CHOICES)})")
    module, cls_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls_name)
