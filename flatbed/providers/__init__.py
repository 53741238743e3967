"""Providers by name, imported lazily (testinfra's registry style); one package each.

``auto`` picks the first suitable one in PREFERENCE order: VMs (vagrant) where vagrant-libvirt
is installed and a kernel really boots under KVM, containers (nspawn) otherwise. It says which
it picked and why the ones before it were passed over. ``flatbed clean`` and ``flatbed leaks``
ask every registered provider for its run-tagged resources (:func:`classes`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from flatbed.errors import FlatbedError, UsageError
from flatbed.providers.base import Provider

if TYPE_CHECKING:
    from flatbed.images.guest import GuestImage

REGISTRY = {
    "nspawn": "flatbed.providers.nspawn:NspawnProvider",
    "vagrant": "flatbed.providers.vagrant:VagrantProvider",
}
PREFERENCE = ("vagrant", "nspawn")
CHOICES = ("auto", *REGISTRY)


def register(name: str, target: str) -> None:
    """Add a provider (``"package.module:Class"``) beside the built-in ones."""
    REGISTRY[name] = target


def get(name: str) -> type[Provider]:
    """The provider class registered as ``name``."""
    if name not in REGISTRY:
        raise UsageError(f"unknown provider {name!r} (choose from {', '.join(CHOICES)})")
    module, cls_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls_name)


def classes() -> list[type[Provider]]:
    """Every registered provider class (each lists and sweeps its own run-tagged resources)."""
    return [get(name) for name in REGISTRY]


def auto(guest: GuestImage, progress: Callable[[str], None] | None = None) -> type[Provider]:
    """The provider ``auto`` stands for here, judged with the images already built (``guest``)."""
    return pick_auto([(candidate, get(candidate)) for candidate in PREFERENCE], guest, progress)


def pick_auto(candidates: list[tuple[str, type[Provider]]], guest: GuestImage,
              progress: Callable[[str], None] | None = None) -> type[Provider]:
    """The first candidate without an ``auto_unsuitable()`` reason; says which, and why not the others."""
    reasons = []
    for name, cls in candidates:
        why = cls.auto_unsuitable(guest)
        if why is None:
            if progress:
                passed = f" (passed over: {'; '.join(reasons)})" if reasons else ""
                progress(f"provider auto: {name}{passed}")
            return cls
        reasons.append(f"{name}: {why}")
    raise FlatbedError(f"no usable provider ({'; '.join(reasons)})")
