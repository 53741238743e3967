"""The cirros-layout disk image (flatbed/images/cirros_disk.py): its partition table, its file
system, and a boot of it through the BIOS and GRUB under TCG, checked like any cirros console.

The pure parts run anywhere; the image is built (or taken from the cache) and booted only where
root, qemu and dnsmasq are (tests/guestboot.py).
"""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from guestboot import SKIP, boot

from flatbed.checks.cirros import Expected, Facts, check_console
from flatbed.images import cirros_disk
from flatbed.images.cirros_disk import CMDLINE, LABEL, PART_START, SECTOR, chs, grub_cfg, mbr

needs_image = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


def test_chs_of_the_first_sectors_and_past_cylinder_1023() -> None:
    assert chs(0) == bytes([0, 1, 0])
    assert chs(2048) == bytes([32, 33, 0])          # 2048 = 32 heads * 63 + 32 -> head 32, sector 33
    assert chs(255 * 63 * 1024) == b"\xfe\xff\xff"


def test_mbr_has_one_bootable_linux_partition_and_the_signature() -> None:
    sector = mbr(b"\xeb\x63" + b"\x90" * 438, PART_START, 129024)
    assert len(sector) == 512 and sector[:2] == b"\xeb\x63" and sector[510:] == b"\x55\xaa"
    entry = sector[446:462]
    assert entry[0] == 0x80 and entry[4] == 0x83
    assert struct.unpack("<II", entry[8:16]) == (PART_START, 129024)
    assert sector[462:510] == bytes(48)


def test_mbr_refuses_boot_code_over_the_partition_table() -> None:
    with pytest.raises(ValueError, match="room for 440"):
        mbr(bytes(446), PART_START, 100)


def test_grub_boots_the_label_read_only_on_the_serial_console() -> None:
    cfg = grub_cfg("6.1.0-57-cloud-amd64")
    assert "\tlinux /boot/vmlinuz-6.1.0-57-cloud-amd64 root=LABEL=cirros-rootfs ro console=tty0 console=ttyS0\n" in cfg
    assert "\tinitrd /boot/initrd.img-6.1.0-57-cloud-amd64\n" in cfg
    assert CMDLINE.split()[-1] == "console=ttyS0"  # the last console= is /dev/console: libvirt logs ttyS0


def test_hash_follows_the_guest_and_the_grub_packages() -> None:
    base = cirros_disk.disk_hash("g" * 64, {"grub-pc-bin": "2.06-13"}, "http://deb.debian.org/debian")
    assert base != cirros_disk.disk_hash("h" * 64, {"grub-pc-bin": "2.06-13"}, "http://deb.debian.org/debian")
    assert base != cirros_disk.disk_hash("g" * 64, {"grub-pc-bin": "2.06-14"}, "http://deb.debian.org/debian")


@pytest.fixture(scope="module")
def disk() -> Path:
    return cirros_disk.ensure_cirros_disk(progress=lambda line: print(line, file=sys.stderr))


@pytest.fixture(scope="module")
def raw(disk: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("cirrosdisk") / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk), str(out)], check=True)
    head = out.read_bytes()[: PART_START * SECTOR + 4096]
    out.unlink()
    return head


@needs_image
def test_disk_is_qcow2(disk: Path) -> None:
    assert disk.read_bytes()[:4] == b"QFI\xfb"


@needs_image
def test_partition_holds_ext3_labelled_cirros_rootfs(raw: bytes) -> None:
    entry = raw[446:462]
    assert raw[510:512] == b"\x55\xaa" and entry[0] == 0x80 and entry[4] == 0x83
    assert struct.unpack("<I", entry[8:12])[0] == PART_START
    sb = raw[PART_START * SECTOR + 1024:]
    assert struct.unpack("<H", sb[56:58])[0] == 0xEF53            # ext2/3/4 magic
    assert sb[120:136].rstrip(b"\0").decode() == LABEL
    compat, incompat = struct.unpack("<I", sb[92:96])[0], struct.unpack("<I", sb[96:100])[0]
    assert compat & 0x4 and not incompat & 0x40                    # a journal, no extents: ext3


@needs_image
def test_grub_is_in_the_mbr_and_the_gap(raw: bytes) -> None:
    assert b"GRUB " in raw[:440]            # boot.img's messages ("GRUB ", "Geom", "Hard Disk"...)
    assert raw[SECTOR:SECTOR + 2] != b"\0\0"  # diskboot.img, the core image's first sector


@pytest.fixture(scope="module")
def booted(disk: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    work = tmp_path_factory.mktemp("diskboot")
    overlay = work / "disk.qcow2"  # the cached image stays as built
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(disk), str(overlay)],
                   check=True)
    with boot(work, ["-drive", f"file={overlay},if=virtio,format=qcow2"], "disk") as out:
        yield out


@needs_image
def test_boots_from_its_disk_through_grub(booted: tuple[str, str]) -> None:
    console, _ = booted
    # BOOT_IMAGE= is what GRUB puts first on the command line (qemu's -kernel does not).
    assert "Command line: BOOT_IMAGE=/boot/vmlinuz-" in console and CMDLINE in console, console[:3000]
    assert "\ninitramfs: loading root from /dev/vda1\n" in console, console[-3000:]
    assert "running as ramdisk" not in console


@needs_image
def test_console_shows_the_facts_of_the_030_generation(booted: tuple[str, str]) -> None:
    console, _ = booted
    facts = check_console(console, Expected(ip="10.0.0.2", lease_time=120, ec2_id="i-00000009"))
    assert isinstance(facts, Facts), f"{facts}\n{console[-3000:]}"
    assert facts.generation == "0.3.0" and facts.metadata_tries == 1
