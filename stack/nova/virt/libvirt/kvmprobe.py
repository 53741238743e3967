"""nova-compute's ``libvirt_type`` (``kvm`` or ``qemu``, i.e. TCG), decided from facts once per boot.

Essex took ``--libvirt_type`` as given (default ``kvm``). flatbed's computes run where KVM is
missing (containers), nested (compute VMs) or broken (hosts whose KVM hangs every stock kernel
right after its decompressor), so an empty flag is decided here:

1. ``--libvirt_type`` set (the topology's ``[nova]`` table): that, no probe.
2. ``/dev/kvm`` missing or not accessible: ``qemu``.
3. Otherwise a probe boot under ``-accel kvm``: the node's own kernel and initramfs (the VM box
   ships them in :data:`PROBE_DIRS`), else the image cached in ``_base`` (kernel and ramdisk, or a
   disk booted with ``-snapshot``). It is judged by progress, not by a fixed time, so that a busy
   host slows it down without changing its answer: ``kvm`` once the kernel hands over to
   userspace; ``qemu`` when QEMU reports a KVM error or exits, when the console stays silent for
   :data:`STALL_TIMEOUT` seconds (a hung kernel prints nothing more), or after
   :data:`PROBE_LIMIT` seconds in all.
4. Nothing to boot yet: undecided; nova-compute asks again at its first instance, whose image is
   then cached.

The choice is kept in :data:`RESULT` (``/run`` is per boot), so a restarted nova-compute does not
probe again, and ``flatbed status`` and provisioning read it from there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

LOG = logging.getLogger("nova.virt.libvirt.kvmprobe")

RESULT = Path("/run/nova/libvirt_type.json")
# The node's own kernel and initramfs to probe with (flatbed's VM box, flatbed/images/box.py).
PROBE_DIRS = (Path("/usr/lib/flatbed/kvm-probe"),)
# The kernel's line when it starts the initramfs' init (KERN_INFO: loglevel 7 lets it reach the serial port).
USERSPACE = re.compile(rb"Run \S+ as init process")
# What QEMU prints when KVM cannot run the guest (machine notes: a PVM-style KVM).
KVM_FAILED = re.compile(rb"KVM internal error|failed to set MSR|kvm run failed")
# A booting kernel under KVM prints a line every second or so even on a loaded TCG host (nested
# KVM in a busy compute VM; without earlyprintk the longest silence was 34 s, until the console came up).
STALL_TIMEOUT = 90.0
PROBE_LIMIT = 600.0


@dataclass(frozen=True)
class Choice:
    libvirt_type: str      # kvm | qemu | "" (undecided: probed at the first instance)
    reason: str
    source: str            # flag | device | probe | pending
    seconds: float = 0.0

    @property
    def fell_back(self) -> bool:
        """TCG although /dev/kvm is there: what bring-up warns about."""
        return self.libvirt_type == "qemu" and self.source == "probe"

    def describe(self) -> str:
        return f"{self.libvirt_type or 'undecided'} ({self.reason})"


def decide(flag: str, instances_path: str, *, result: Path = RESULT, kvm_device: str = "/dev/kvm",
           qemu: str = "qemu-system-x86_64", probe_dirs: tuple[Path, ...] = PROBE_DIRS,
           stall: float = STALL_TIMEOUT, limit: float = PROBE_LIMIT) -> Choice:
    """The choice for this boot of the node (probing only when no earlier one is recorded)."""
    if flag:
        return _record(Choice(flag, "--libvirt_type in nova.conf", "flag"), result)
    earlier = recorded(result)
    if earlier is not None and earlier.source in ("device", "probe"):
        return earlier
    if not os.access(kvm_device, os.R_OK | os.W_OK):
        return _record(Choice("qemu", f"{kvm_device} is missing or not accessible", "device"), result)
    boot = probe_boot(instances_path, probe_dirs)
    if boot is None:
        return _record(Choice("", "no kernel to probe KVM with yet; probed at the first instance", "pending"),
                       result)
    what, args = boot
    LOG.info("KVM probe: booting %s under -accel kvm", what)
    return _record(probe([qemu, "-accel", "kvm", *args], what, stall=stall, limit=limit), result)


def recorded(result: Path = RESULT) -> Choice | None:
    try:
        return Choice(**json.loads(result.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _record(choice: Choice, result: Path) -> Choice:
    result.parent.mkdir(parents=True, exist_ok=True)
    tmp = result.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(choice)) + "\n")
    tmp.replace(result)
    (LOG.info if choice.libvirt_type != "qemu" else LOG.warning)("libvirt_type=%s", choice.describe())
    return choice


def probe_boot(instances_path: str, probe_dirs: tuple[Path, ...] = PROBE_DIRS) -> tuple[str, list[str]] | None:
    """(what, QEMU arguments) of something to boot: the node's kernel, else a cached image."""
    serial = ["-m", "128", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"]
    # earlyprintk: the kernel's first lines come at once, not when its console registers.
    append = ["-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1 loglevel=7"]
    for where in probe_dirs:
        if (where / "vmlinuz").is_file() and (where / "initrd.img").is_file():
            return (f"the node's kernel ({where})",
                    [*serial, "-kernel", str(where / "vmlinuz"), "-initrd", str(where / "initrd.img"), *append])
    for meta in sorted(Path(instances_path, "_base").glob("*/image.json")):
        files = meta.parent
        if (files / "kernel").is_file() and (files / "ramdisk").is_file():
            return (f"the cached image {files.name[:16]}",
                    [*serial, "-kernel", str(files / "kernel"), "-initrd", str(files / "ramdisk"), *append])
        if (files / "disk").is_file():  # its bootloader and its own kernel command line; never written to
            return (f"the cached disk image {files.name[:16]}",
                    [*serial, "-snapshot", "-drive", f"file={files / 'disk'},format=qcow2,if=virtio"])
    return None


def probe(argv: list[str], what: str, *, stall: float = STALL_TIMEOUT, limit: float = PROBE_LIMIT) -> Choice:
    """Boot ``argv`` and judge it by its console's progress (see the module doc)."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        return Choice("qemu", f"the KVM probe could not run {argv[0]}: {exc.strerror}", "probe")
    seen, last_output = b"", started
    try:
        assert proc.stdout is not None
        while True:
            now = time.monotonic()
            if now - started > limit:
                return Choice("qemu", f"{what} did not reach userspace under KVM within {limit:g} s", "probe",
                              now - started)
            if now - last_output > stall:
                return Choice("qemu", f"{what} hung under KVM: no console output for {stall:g} s "
                                      f"after {last_output - started:.0f} s", "probe", now - started)
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                proc.wait()
                return Choice("qemu", f"QEMU exited ({proc.returncode}) under KVM before {what} reached "
                                      "userspace", "probe", time.monotonic() - started)
            seen, last_output = (seen + chunk)[-65536:], time.monotonic()
            if KVM_FAILED.search(seen):
                line = next(ln for ln in seen.decode(errors="replace").splitlines() if KVM_FAILED.search(ln.encode()))
                return Choice("qemu", f"KVM cannot run {what}: {line.strip()[:120]}", "probe",
                              time.monotonic() - started)
            if USERSPACE.search(seen):
                took = time.monotonic() - started
                return Choice("kvm", f"{what} reached userspace under KVM in {took:.0f} s", "probe", took)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
