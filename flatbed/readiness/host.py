"""What the readiness checks read about this machine, each fact probed once.

The checks in :mod:`flatbed.readiness.checks` only ever see a ``Host``; unit tests hand them a
fake one whose facts they set (testinfra's host modules, in miniature).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from flatbed import state
from flatbed.images.cache import CachedImage, cache_dir, list_images


@dataclass(frozen=True)
class KvmAnswer:
    """The KVM boot probe's answer (``usable`` only when a kernel reached userspace under KVM)."""

    usable: bool
    reason: str


@dataclass(frozen=True)
class LibvirtAnswer:
    """What a libvirt connection said: its version, domain types, and whether the CPU a VM gets
    there offers svm/vmx (guests nested inside the VMs can then use KVM)."""

    error: str | None = None          # why it did not answer
    version: str = ""
    domain_types: tuple[str, ...] = ()
    nested_cpu: dict[str, bool] = field(default_factory=dict)  # domain type -> svm/vmx offered


class Host:
    """This machine, probed lazily; every method's answer is cached for the run of ``flatbed check``."""

    def euid(self) -> int:
        return os.geteuid()

    def which(self, tool: str) -> str | None:
        return shutil.which(tool)

    def cgroup2(self) -> bool:
        """A cgroup v2 hierarchy (unified, or hybrid's ``unified`` mount) for the containers' cgroups."""
        return Path("/sys/fs/cgroup/cgroup.procs").exists() or Path("/sys/fs/cgroup/unified/cgroup.procs").exists()

    @functools.cache  # noqa: B019 - one Host per `flatbed check`
    def kvm(self) -> KvmAnswer | None:
        """Boot the guest kernel under ``-accel kvm``: the provider's own probe with the provider's
        kernel (so they share its answer, cached per host boot); None when no guest image is cached
        yet (a check builds nothing the first run would not)."""
        if newest_complete("guest", self.images()) is None:
            return None
        from flatbed.images.guest import ensure_guest
        from flatbed.providers.vagrant import kvm

        guest = ensure_guest(progress=lambda _m: None)  # resolves its inputs; cached unless they changed
        answer = kvm.probe_guest(guest)
        return KvmAnswer(answer.usable, answer.reason)

    def kvm_nested_parameter(self) -> str | None:
        """``Y``/``N`` (or ``1``/``0``) from the KVM module's ``nested`` parameter, None without one."""
        for module in ("kvm_intel", "kvm_amd"):
            path = Path(f"/sys/module/{module}/parameters/nested")
            if path.exists():
                return path.read_text().strip()
        return None

    @functools.cache  # noqa: B019
    def vagrant_version(self) -> str | None:
        """``2.3.4`` from ``vagrant --version``; None when vagrant does not run."""
        if not self.which("vagrant"):
            return None
        out = _output(["vagrant", "--version"])
        match = re.search(r"(\d+(?:\.\d+)+)", out or "")
        return match.group(1) if match else None

    @functools.cache  # noqa: B019
    def vagrant_plugins(self) -> dict[str, str]:
        """Installed Vagrant plugins: name -> version (``vagrant plugin list``)."""
        if not self.which("vagrant"):
            return {}
        return parse_plugin_list(_output(["vagrant", "plugin", "list"]) or "")

    @functools.cache  # noqa: B019
    def libvirt(self, uri: str | None) -> LibvirtAnswer:
        """Ask libvirt at ``uri``; without one, a throw-away private libvirtd like a testbed's."""
        from flatbed.readiness import libvirt_probe

        return libvirt_probe.ask(uri)

    def mem_available(self) -> int:
        """Bytes of memory available for new work (``MemAvailable``)."""
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
        return 0

    def disk_free(self, path: Path) -> int:
        """Bytes free on the file system that holds ``path`` (or its nearest existing parent)."""
        return shutil.disk_usage(_existing(path)).free

    def same_filesystem(self, a: Path, b: Path) -> bool:
        return _existing(a).stat().st_dev == _existing(b).stat().st_dev

    @functools.cache  # noqa: B019
    def images(self) -> tuple[CachedImage, ...]:
        return tuple(list_images())

    def state_root(self) -> Path:
        return state.state_root()

    def cache_root(self) -> Path:
        return cache_dir()


def newest_complete(kind: str, images: tuple[CachedImage, ...]) -> CachedImage | None:
    found = [i for i in images if i.kind == kind and i.complete]
    return max(found, key=lambda i: i.path.stat().st_mtime) if found else None


def parse_plugin_list(text: str) -> dict[str, str]:
    """``vagrant-libvirt (0.11.2, system)`` lines -> ``{"vagrant-libvirt": "0.11.2"}``."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^(\S+) \((\d[^,)]*)", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def _output(argv: list[str]) -> str | None:
    env = {**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_NO_COLOR": "1"}
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
