"""The VM box builder's pure parts (module order, apt simulation, hashing) and the KVM probe's boot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from flatbed.images.box import (
    BOX_SRC,
    box_hash,
    module_load_order,
    parse_modules_dep,
    parse_simulated_installs,
)
from flatbed.images.hashing import hash_tree
from flatbed.providers.vagrant import kvm as kvmprobe

MODULES_DEP = """\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko \
kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/drivers/virtio/virtio_ring.ko \
kernel/drivers/virtio/virtio.ko
kernel/arch/x86/kvm/kvm-amd.ko: kernel/arch/x86/kvm/kvm.ko
kernel/arch/x86/kvm/kvm.ko:
""".replace("\\\n", "")


def test_modules_dep_names_use_underscores():
    depends, paths = parse_modules_dep(MODULES_DEP)
    assert depends["kvm_amd"] == ["kvm"]
    assert paths["kvm_amd"] == "kernel/arch/x86/kvm/kvm-amd.ko"


def test_load_order_puts_dependencies_first_once():
    depends, _ = parse_modules_dep(MODULES_DEP)
    order = module_load_order(("virtio_pci", "virtio_blk", "virtio_net"), depends, builtin=set())
    assert len(order) == len(set(order))
    for name in order:
        for dep in depends[name]:
            assert order.index(dep) < order.index(name), (dep, name)
    assert order[-4:] == ["virtio_blk", "failover", "net_failover", "virtio_net"]


def test_builtin_modules_are_not_loaded():
    depends, _ = parse_modules_dep(MODULES_DEP)
    order = module_load_order(("virtio_blk",), depends, builtin={"virtio", "virtio_ring"})
    assert order == ["virtio_blk"]


def test_a_module_nobody_ships_is_an_error():
    with pytest.raises(RuntimeError, match="neither built in nor shipped"):
        module_load_order(("ext9",), {}, builtin=set())


def test_simulated_installs_are_the_inst_lines():
    text = ("NOTE: This is only a simulation!\n"
            "Inst qemu-guest-agent (1:7.2+dfsg-7 Debian:12.15/oldstable [amd64])\n"
            "Inst udev (252.39-1~deb12u2 Debian:12.15/oldstable [amd64])\n"
            "Conf qemu-guest-agent (1:7.2+dfsg-7 Debian:12.15/oldstable [amd64])\n")
    assert parse_simulated_installs(text) == ["qemu-guest-agent", "udev"]


def test_box_hash_follows_base_packages_and_box_files():
    files = hash_tree(BOX_SRC)
    packages = {"udev": "252.39-1~deb12u2"}
    reference = box_hash("b" * 64, packages, "http://deb.debian.org/debian bookworm", files)
    assert box_hash("c" * 64, packages, "http://deb.debian.org/debian bookworm", files) != reference
    assert box_hash("b" * 64, {"udev": "252.40"}, "http://deb.debian.org/debian bookworm", files) != reference
    edited = dict(files, init="x" + "0" * 64)
    assert box_hash("b" * 64, packages, "http://deb.debian.org/debian bookworm", edited) != reference
    assert box_hash("b" * 64, dict(packages), "http://deb.debian.org/debian bookworm", dict(files)) == reference


def test_box_sources_are_executable_where_they_must_be():
    for rel in ("init", "rootfs/usr/local/sbin/flatbed-boot"):
        assert os.access(BOX_SRC / rel, os.X_OK), rel


def _cached_guest() -> Path | None:
    from flatbed.images.cache import cache_dir

    for path in sorted(cache_dir().glob("guest-*")):
        if (path / ".complete").exists() and (path / "vmlinuz").exists():
            return path
    return None


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None or _cached_guest() is None,
                    reason="needs qemu-system-x86_64 and a built guest image")
def test_probe_boot_reaches_userspace_under_tcg():
    """The control for the KVM probe: the same boot under TCG must see the kernel start /init."""
    guest = _cached_guest()
    result = kvmprobe._boot(guest / "vmlinuz", guest / "initrd.img", timeout=60, accel="tcg")
    assert result.usable, result.reason
    assert "under TCG" in result.reason


def test_probe_without_dev_kvm_says_so(monkeypatch, tmp_path):
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self: False if str(self) == "/dev/kvm" else real_exists(self))
    result = kvmprobe.probe(tmp_path / "vmlinuz", tmp_path / "initrd.img")
    assert not result.usable and result.reason == "/dev/kvm does not exist"
