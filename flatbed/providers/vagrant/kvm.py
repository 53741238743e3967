"""Is KVM usable for VM nodes? Boot a tiny kernel under ``-accel kvm`` and see whether it gets anywhere.

``/dev/kvm`` existing (even ``KVM_CREATE_VM`` succeeding) proves nothing: on some hosts stock
kernels hang right after the decompressor (machine notes). So the probe boots the guest image's
kernel and initramfs with QEMU and waits for the kernel to hand over to userspace. The answer
is cached per host boot (``<cache>/kvm-probe.json``), keyed by everything that could change it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from flatbed.images.cache import cache_dir
from flatbed.images.guest import GuestImage

# The kernel prints this when it starts /init from the initramfs: userspace is reached.
USERSPACE_MARKER = b"Run /init as init process"
PROBE_TIMEOUT = 20.0  # TCG reaches the marker in ~2 s here; a working KVM in well under one
QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class KvmProbe:
    usable: bool
    reason: str
    seconds: float


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_key(kernel: Path, initrd: Path) -> str:
    """What the answer depends on: this boot of the host, the kernel booted, the QEMU binary."""
    parts = [_boot_id(), str(kernel), str(kernel.stat().st_mtime_ns), str(initrd.stat().st_mtime_ns)]
    try:
        parts.append(str(os.stat(f"/usr/bin/{QEMU}").st_mtime_ns))
    except OSError:
        parts.append("no-qemu")
    return "|".join(parts)


def probe(kernel: Path, initrd: Path, timeout: float = PROBE_TIMEOUT, use_cache: bool = True) -> KvmProbe:
    """Boot ``kernel``+``initrd`` under KVM; usable when userspace is reached within ``timeout``."""
    if not Path("/dev/kvm").exists():
        return KvmProbe(False, "/dev/kvm does not exist", 0.0)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return KvmProbe(False, "/dev/kvm is not accessible", 0.0)
    cache = cache_dir() / "kvm-probe.json"
    key = probe_key(kernel, initrd)
    if use_cache:
        try:
            cached = json.loads(cache.read_text())
            if cached.get("key") == key:
                return KvmProbe(**cached["result"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    result = _boot(kernel, initrd, timeout)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "result": asdict(result)}) + "\n")
        tmp.replace(cache)
    except OSError:
        pass
    return result


def _boot(kernel: Path, initrd: Path, timeout: float, accel: str = "kvm") -> KvmProbe:
    """One boot under ``accel`` (``tcg`` is the control: the same kernel must pass there)."""
    argv = [QEMU, "-accel", accel, "-m", "128", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", "stdio", "-nic", "none", "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", "console=ttyS0 panic=-1"]
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except OSError as e:
        return KvmProbe(False, f"cannot run {QEMU}: {e.strerror}", 0.0)
    seen = b""
    fd = proc.stdout.fileno()
    try:
        while (left := timeout - (time.monotonic() - started)) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            chunk = os.read(fd, 65536) if ready else b""
            seen += chunk
            if USERSPACE_MARKER in seen:
                took = time.monotonic() - started
                return KvmProbe(True, f"a kernel reached userspace under {accel.upper()} in {took:.1f} s", took)
            if ready and not chunk:  # EOF: QEMU exited
                proc.wait()
                last = seen.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                return KvmProbe(False, f"QEMU exited {proc.returncode} under {accel.upper()}: {last[0][:160]}",
                                time.monotonic() - started)
        return KvmProbe(False, f"a kernel did not reach userspace under {accel.upper()} within {timeout:g} s "
                               "(stock kernels hang on this host's KVM)", timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def probe_guest(guest: GuestImage) -> KvmProbe:
    """The probe with the guest image's kernel (already built: probing never builds an image)."""
    if guest.kernel is None or guest.initrd is None:
        return KvmProbe(False, "no kernel to probe with (the guest is a disk image)", 0.0)
    return probe(guest.kernel, guest.initrd)
