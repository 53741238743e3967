"""A bootable disk image in cirros' layout, made from the cirros-compatible guest: what
``--cirros-image`` is tested with, since real cirros images cannot be downloaded here.

The layout is cirros 0.3's ``disk.img`` (``bin/bundle`` and ``bin/part2disk`` at tag 0.3.0): an
MBR with one bootable Linux partition, an ext3 file system labelled ``cirros-rootfs`` holding
the whole root with the kernel and initramfs in ``/boot`` (``/vmlinuz`` and ``/initrd.img`` link
to them), and a bootloader in the MBR that boots ``root=LABEL=cirros-rootfs ro`` with the serial
console. The root and the initramfs are the guest's own; the initramfs finds the labelled file
system and switches to it (``guest/init``), as cirros' initramfs does. So the guest boots from
its disk through the BIOS like a real cirros, not by libvirt's direct kernel boot.

Where it differs: GRUB 2 (``i386-pc`` images from Debian's ``grub-pc-bin``, ``core.img`` in the
gap after the MBR, ``/boot/grub/grub.cfg``) where cirros 0.3 installed GRUB legacy, whose shell
is a 32-bit program; the partition starts at 1 MiB (cirros: at cylinder 1).

Built without loop devices or mounts: the guest's initramfs unpacked (the cpio reader), the
file system written at the partition's offset with ``mkfs.ext3 -d``, the partition table and
GRUB's boot sector and core image written into the raw file, then ``qemu-img convert -O qcow2``.
``grub-mkimage`` comes from Debian's ``grub-common`` (``dpkg-deb -x``, not installed) and runs
on the host's libraries (liblzma, libdevmapper: there with qemu and libvirt). Cached like the
other images, by the guest's hash, the GRUB packages' versions and the layout below.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

from flatbed.images import apt
from flatbed.images.cache import build_cached
from flatbed.images.cpio import extract_archive
from flatbed.images.guest import GuestImage, ensure_guest, host_sources_key
from flatbed.images.hashing import input_hash
from flatbed.images.progress import Progress, Stopwatch, default_progress

KIND = "cirros"
SUITE = "bookworm"
# Bump when the build steps below change in a way that changes the result.
RECIPE = "cirros-disk-1"

GRUB_PACKAGES = ("grub-common", "grub-pc-bin")
GRUB_MODULES = ("biosdisk", "part_msdos", "ext2", "normal", "linux")
LABEL = "cirros-rootfs"  # cirros' FS_LABEL
# cirros 0.3.0's menu.lst: "kernel /vmlinuz LABEL=cirros-rootfs ro console=tty0 console=ttyS0
# console=hvc0"; no hvc0 here (libvirt's serial console is ttyS0, the last one is /dev/console).
CMDLINE = f"root=LABEL={LABEL} ro console=tty0 console=ttyS0"
DISK_MIB = 64
SECTOR = 512
PART_START = 2048           # sectors: 1 MiB, room for GRUB's core image after the MBR
FS_BLOCK = 4096
DISK_FILE = "cirros-disk.qcow2"


def disk_hash(guest_hash: str, packages: dict[str, str], mirror: str) -> str:
    """Input hash of the disk image (pure)."""
    extra = {"guest": guest_hash, "cmdline": CMDLINE, "label": LABEL, "disk_mib": str(DISK_MIB),
             "part_start": str(PART_START), "grub_modules": ",".join(GRUB_MODULES)}
    return input_hash(RECIPE, packages, SUITE, mirror, {}, extra)


def ensure_cirros_disk(guest: GuestImage | None = None, progress: Progress = default_progress) -> Path:
    """The qcow2 disk image made from ``guest`` (the cirros-compatible guest by default), built
    when the cache lacks it. The result is what ``--cirros-image`` takes."""
    watch = Stopwatch()
    guest = guest or ensure_guest(progress)
    if guest.kind != "initramfs" or guest.kernel is None or guest.initrd is None:
        raise ValueError("a cirros disk is made from the initramfs guest, not from a disk image")
    versions = apt.resolve_candidates(list(GRUB_PACKAGES))
    digest = disk_hash(guest.hash, versions, host_sources_key())

    def build(tmp: Path) -> None:
        _build(tmp, guest, versions, digest, progress)

    path, cached = build_cached(KIND, digest, build, progress, outputs=("manifest.json", DISK_FILE))
    if cached:
        progress(f"cirros disk: cached {path} (hash {digest[:16]})")
    else:
        progress(f"cirros disk: built {path} in {watch.elapsed():.1f} s")
    return path / DISK_FILE


# --- the partition table (pure) ------------------------------------------------------------


def chs(lba: int, heads: int = 255, sectors: int = 63) -> bytes:
    """A partition entry's CHS address of ``lba`` (BIOS geometry; past cylinder 1023: the max)."""
    cylinder, rest = divmod(lba, heads * sectors)
    head, sector = divmod(rest, sectors)
    if cylinder > 1023:
        return b"\xfe\xff\xff"
    return bytes([head, ((cylinder >> 2) & 0xC0) | (sector + 1), cylinder & 0xFF])


def mbr(boot_code: bytes, start: int, count: int, part_type: int = 0x83) -> bytes:
    """Sector 0: ``boot_code`` (at most 440 bytes), one bootable partition of ``count`` sectors
    at ``start`` (the other three entries empty) and the 0x55AA signature."""
    if len(boot_code) > 440:
        raise ValueError(f"boot code is {len(boot_code)} bytes; an MBR has room for 440")
    entry = (bytes([0x80]) + chs(start) + bytes([part_type]) + chs(start + count - 1)
             + struct.pack("<II", start, count))
    return boot_code.ljust(446, b"\0") + entry + bytes(48) + b"\x55\xaa"


def grub_cfg(kver: str) -> str:
    """``/boot/grub/grub.cfg``: the one entry cirros' menu has, without a menu (timeout 0)."""
    return (f"# flatbed's cirros disk (flatbed/images/cirros_disk.py): the guest's kernel and initramfs;\n"
            f"# the initramfs mounts the file system labelled {LABEL} and switches to it.\n"
            f"set default=0\nset timeout=0\n"
            f"menuentry 'CirrOS' {{\n"
            f"\tlinux /boot/vmlinuz-{kver} {CMDLINE}\n"
            f"\tinitrd /boot/initrd.img-{kver}\n"
            f"}}\n")


# --- build --------------------------------------------------------------------------------


def _build(tmp: Path, guest: GuestImage, versions: dict[str, str], digest: str, progress: Progress) -> None:
    assert guest.kernel is not None and guest.initrd is not None
    debs, grub, root = tmp / "debs", tmp / "grub", tmp / "root"
    for d in (debs, grub, root):
        d.mkdir()
    wanted = [f"{name}={ver}" for name, ver in sorted(versions.items())]
    progress(f"cirros disk: apt-get download {' '.join(wanted)}")
    subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *wanted],
                   cwd=debs, check=True, stdout=subprocess.DEVNULL)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(grub)], check=True)

    manifest = json.loads((guest.initrd.parent / "manifest.json").read_text())
    kver = manifest["kernel"]
    extract_archive(gzip.decompress(guest.initrd.read_bytes()), root)
    boot = root / "boot"
    (boot / "grub").mkdir(parents=True)
    shutil.copyfile(guest.kernel, boot / f"vmlinuz-{kver}")
    shutil.copyfile(guest.initrd, boot / f"initrd.img-{kver}")
    (root / "vmlinuz").symlink_to(f"boot/vmlinuz-{kver}")
    (root / "initrd.img").symlink_to(f"boot/initrd.img-{kver}")
    (boot / "grub/grub.cfg").write_text(grub_cfg(kver))

    raw = tmp / "disk.raw"
    total = DISK_MIB * 2**20 // SECTOR
    with open(raw, "wb") as fh:
        fh.truncate(total * SECTOR)
    blocks = (total - PART_START) * SECTOR // FS_BLOCK
    subprocess.run(["mkfs.ext3", "-q", "-F", "-L", LABEL, "-b", str(FS_BLOCK), "-d", str(root),
                    "-E", f"offset={PART_START * SECTOR}", str(raw), str(blocks)], check=True)

    core = tmp / "core.img"
    lib = grub / "usr/lib/grub/i386-pc"
    subprocess.run([str(grub / "usr/bin/grub-mkimage"), "-O", "i386-pc", "-d", str(lib), "-o", str(core),
                    "-p", "(hd0,msdos1)/boot/grub", *GRUB_MODULES], check=True)
    core_bytes = core.read_bytes()
    if len(core_bytes) > (PART_START - 1) * SECTOR:
        raise RuntimeError(f"GRUB's core image ({len(core_bytes)} bytes) does not fit before the partition")
    with open(raw, "r+b") as fh:
        # boot.img loads the core image from sector 1 (its default), and the core image's first
        # sector the rest from sector 2 on (grub-mkimage sets the length): no grub-install needed.
        fh.write(mbr((lib / "boot.img").read_bytes()[:440], PART_START, total - PART_START))
        fh.seek(SECTOR)
        fh.write(core_bytes)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(tmp / DISK_FILE)], check=True)
    for path in (raw, core):
        path.unlink()
    for d in (debs, grub, root):
        shutil.rmtree(d)
    (tmp / "manifest.json").write_text(json.dumps({
        "kind": KIND, "hash": digest, "recipe": RECIPE, "guest": guest.hash, "packages": versions,
        "kernel": kver, "cmdline": CMDLINE, "label": LABEL, "disk_mib": DISK_MIB, "part_start": PART_START,
        "grub_modules": list(GRUB_MODULES),
        "login": {"user": guest.login_user, "password": guest.login_password},
    }, indent=2, sort_keys=True) + "\n")
    size = os.path.getsize(tmp / DISK_FILE)
    progress(f"cirros disk: {DISK_FILE} {size / 2**20:.1f} MiB ({DISK_MIB} MiB virtual), kernel {kver}")
