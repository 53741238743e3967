"""The libvirt driver of nova-compute: spawn and destroy instances, read their console.

As Essex: an instance directory ``<instances_path>/instance-%08x/`` holds ``libvirt.xml`` (the
domain actually defined) and ``console.log`` (the serial port, written by qemu); kernel and
ramdisk are copied next to them from the image cache ``_base/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid as uuidlib
from pathlib import Path

import libvirt

from nova.virt.libvirt.config import DomainSpec, domain_xml

URI = "qemu:///system"


def _quiet(_ctx, _err) -> None:
    """libvirt prints every error to stderr by default; we raise them as exceptions instead."""


libvirt.registerErrorHandler(_quiet, None)


class LibvirtDriver:
    def __init__(self, instances_path: str, virt_type: str = "qemu"):
        self.instances_path = Path(instances_path)
        self.virt_type = virt_type
        self._conn: libvirt.virConnect | None = None

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None or not self._conn.isAlive():
            self._conn = libvirt.open(URI)
        return self._conn

    def instance_dir(self, name: str) -> Path:
        return self.instances_path / name

    def spawn(self, instance: dict, network: dict, image_dir: str) -> str:
        """Define and start the domain of ``instance``; returns its XML."""
        name = instance["name"]
        idir = self.instance_dir(name)
        idir.mkdir(parents=True, exist_ok=True)
        image = json.loads((Path(image_dir) / "image.json").read_text())
        console = idir / "console.log"
        console.touch()
        kernel = ramdisk = disk = None
        if image["kind"] == "initramfs":
            kernel, ramdisk = idir / "kernel", idir / "ramdisk"
            shutil.copyfile(Path(image_dir) / "kernel", kernel)
            shutil.copyfile(Path(image_dir) / "ramdisk", ramdisk)
        else:
            # A copy-on-write overlay on the cached base, as nova's qcow2 images.
            disk = idir / "disk"
            if not disk.exists():
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                                "-b", str(Path(image_dir) / "disk"), str(disk)], check=True)
        spec = DomainSpec(name=name, uuid=instance.get("uuid") or str(uuidlib.uuid4()),
                          memory_mb=int(instance["memory_mb"]), vcpus=int(instance.get("vcpus", 1)),
                          virt_type=self.virt_type, console_log=str(console), mac=network["mac"],
                          bridge=network["bridge"], kernel=str(kernel) if kernel else None,
                          ramdisk=str(ramdisk) if ramdisk else None, cmdline=image.get("cmdline", ""),
                          disk=str(disk) if disk else None)
        xml = domain_xml(spec)
        (idir / "libvirt.xml").write_text(xml)
        self._undefine(name)  # a redefinition without the old uuid fails; start from a clean slate
        dom = self.conn.defineXML(xml)
        dom.create()
        return xml

    def _undefine(self, name: str) -> bool:
        try:
            dom = self.conn.lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise
        if dom.isActive():
            dom.destroy()
        dom.undefine()
        return True

    def destroy(self, name: str, cleanup: bool = True) -> None:
        self._undefine(name)
        if cleanup:
            shutil.rmtree(self.instance_dir(name), ignore_errors=True)

    def is_running(self, name: str) -> bool:
        try:
            return bool(self.conn.lookupByName(name).isActive())
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise

    def get_console_output(self, name: str) -> str:
        path = self.instance_dir(name) / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""


def probe_virt_type() -> str:
    """``kvm`` only where /dev/kvm is usable (the compute issue replaces this with a boot probe)."""
    return "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) and os.environ.get("FLATBED_TRY_KVM") else "qemu"
