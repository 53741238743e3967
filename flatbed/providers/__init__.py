"""Providers by name, imported lazily (testinfra's registry style).

``auto`` picks the first suitable one in PREFERENCE order: VMs (vagrant) where vagrant-libvirt
is installed and a kernel really boots under KVM, containers (nspawn) otherwise. It says which
it picked and why the ones before it were passed over.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from flatbed.errors import FlatbedError
from flatbed.providers.base import Provider

REGISTRY = {
    "nspawn": "flatbed.providers.nspawn:NspawnProvider",
    "vagrant": "flatbed.providers.vagrant:VagrantProvider",
}
PREFERENCE = ("vagrant", "nspawn")
CHOICES = ("auto", *REGISTRY)


def get(name: str, progress: Callable[[str], None] | None = None) -> type[Provider]:
    """The provider class for ``name``; ``auto`` resolves to the first suitable one (told to ``progress``)."""
    if name == "auto":
        return pick_auto([(candidate, get(candidate)) for candidate in PREFERENCE], progress)
    if name not in REGISTRY:
        raise FlatbedError(f"unknown provider {name!r} (choose from {', '.join(CHOICES)})")
    module, cls_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls_name)


def pick_auto(candidates: list[tuple[str, type[Provider]]],
              progress: Callable[[str], None] | None = None) -> type[Provider]:
    """The first candidate without an ``auto_unsuitable()`` reason; says which, and why not the others."""
    reasons = []
    for name, cls in candidates:
        why = cls.auto_unsuitable()
        if why is None:
            if progress:
                passed = f" (passed over: {'; '.join(reasons)})" if reasons else ""
                progress(f"provider auto: {name}{passed}")
            return cls
        reasons.append(f"{name}: {why}")
    raise FlatbedError(f"no usable provider ({'; '.join(reasons)})")
