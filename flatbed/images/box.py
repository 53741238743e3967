"""The VM node box: the base root made bootable and packaged as a vagrant-libvirt box.

Built from the same base root the containers use, plus what only a VM needs:

- the Debian cloud kernel's modules (``dpkg-deb -x``; the kernel boots directly, so the kernel
  package is not registered and no bootloader or initramfs-tools is installed);
- ``udev`` and ``qemu-guest-agent``, installed with ``dpkg -i`` in a chroot of the root behind a
  ``policy-rc.d`` that refuses to start services; vagrant-libvirt learns each
  VM's management address from the agent, since the management network has no DHCP;
- ``box/rootfs/`` (the boot-time identity unit, fstab, module lists, no MAC policy of udev's
  own for bridges, one ed25519 host key made at first boot, the ``multi-user`` target and the
  units the document does not need masked: each costs seconds of TCG at every boot) and no SSH
  host keys;
- the kernel and initramfs once more, under :data:`PROBE_DIR`: what nova-compute boots under
  ``-accel kvm`` to decide its ``libvirt_type`` before any image is cached.

Booting is libvirt direct kernel boot: ``vmlinuz`` plus a small busybox initramfs made from
``box/init`` that loads the virtio disk/NIC modules, names the NICs by MAC and switches to the
root. The disk is one ext4 file system made with ``mkfs.ext4 -d`` (no loop device, no
partition table), converted to qcow2. Kernel and initramfs travel inside the box; its own
Vagrantfile points vagrant-libvirt at them.

The box is cached by the base hash, the package versions, ``box/`` and :data:`RECIPE`, and
added to flatbed's Vagrant box store (``<cache>/vagrant.d``) as ``flatbed-node-<hash16>``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from flatbed.images import apt
from flatbed.images.base import BaseImage
from flatbed.images.cache import build_cached, cache_dir, kind_lock, overlay
from flatbed.images.cpio import DeviceNode, archive_tree
from flatbed.images.guest import KERNEL_META, host_sources_key
from flatbed.images.hashing import SHORT, hash_tree, input_hash
from flatbed.images.progress import Progress, Stopwatch, default_progress

KIND = "box"
SUITE = "bookworm"
# Bump when the build steps below change in a way that changes the result.
RECIPE = "box-2"

BOX_SRC = Path(__file__).resolve().parents[2] / "box"
BUSYBOX = "busybox-static"
# Installed into the root with dpkg (the base has everything else a node runs).
EXTRA_PACKAGES = ("udev", "qemu-guest-agent")
# What the initramfs loads before it can find the root disk and name the NICs.
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "virtio_net")
DISK_GIB = 10
ROOT_LABEL = "flatbed-root"
BOX_PREFIX = "flatbed-node"
# Base command line; the project's Vagrantfile adds the per-node flatbed.* parameters.
KERNEL_CMDLINE = "root=/dev/vda ro console=ttyS0 net.ifnames=0"
BOX_FILES = ("metadata.json", "Vagrantfile", "box.img", "vmlinuz", "initrd.img")
# Inside the root: the kernel and initramfs nova-compute's KVM probe boots (stack/nova/virt/libvirt/kvmprobe.py).
PROBE_DIR = "usr/lib/flatbed/kvm-probe"


@dataclass(frozen=True)
class Box:
    """A built box: ``box_file`` is the archive ``vagrant box add`` takes."""

    name: str
    hash: str
    path: Path
    box_file: Path
    cmdline: str
    disk_gib: int

    @property
    def vagrant_home(self) -> Path:
        return vagrant_home()


def vagrant_home() -> Path:
    """flatbed's own Vagrant home (box store), beside the image cache: users' stores stay untouched."""
    return cache_dir() / "vagrant.d"


def box_name(digest: str) -> str:
    return f"{BOX_PREFIX}-{digest[:SHORT]}"


def resolve_packages(base: BaseImage) -> dict[str, str]:
    """Name -> version of every package the box adds to the base (candidates of the host's lists).

    The extra packages' dependencies are resolved against the base's own dpkg status, so only
    what the base lacks is added (today: exactly ``udev`` and ``qemu-guest-agent``).
    """
    deps = apt.candidate_depends([KERNEL_META])
    kernel = [d for d in deps.get(KERNEL_META, []) if d.startswith("linux-image-")]
    if not kernel:
        raise apt.AptError(f"{KERNEL_META} does not depend on a linux-image-* package")
    extra = missing_in_root(base.root, EXTRA_PACKAGES)
    return apt.resolve_candidates([KERNEL_META, kernel[0], BUSYBOX, *extra])


def missing_in_root(root: Path, packages: tuple[str, ...]) -> list[str]:
    """Packages apt would install into ``root`` for ``packages`` (simulated against its status)."""
    apt.ensure_lists()
    out = subprocess.run(
        ["apt-get", "-s", "-o", f"Dir::State::status={root}/var/lib/dpkg/status",
         "--no-install-recommends", "install", *packages],
        check=True, capture_output=True, text=True,
    ).stdout
    return parse_simulated_installs(out)


def parse_simulated_installs(text: str) -> list[str]:
    """Package names of the ``Inst NAME (...)`` lines of ``apt-get -s install`` (pure)."""
    return [line.split()[1] for line in text.splitlines() if line.startswith("Inst ")]


def box_hash(base_hash: str, packages: dict[str, str], mirror: str, files: dict[str, str]) -> str:
    """Input hash of the box (pure)."""
    extra = {"base": base_hash, "cmdline": KERNEL_CMDLINE, "disk_gib": str(DISK_GIB),
             "modules": ",".join(INITRAMFS_MODULES)}
    return input_hash(RECIPE, packages, SUITE, mirror, files, extra)


def ensure_box(base: BaseImage, progress: Progress = default_progress) -> Box:
    """Return the box for ``base`` and the current inputs, building and adding it when missing."""
    watch = Stopwatch()
    progress("box: resolving kernel, busybox and the VM-only packages from the host's apt lists")
    versions = resolve_packages(base)
    files = hash_tree(BOX_SRC)
    digest = box_hash(base.hash, versions, host_sources_key(), files)

    def build(tmp: Path) -> None:
        _build(tmp, base, versions, files, digest, progress)

    path, cached = build_cached(KIND, digest, build, progress,
                                outputs=("manifest.json", "flatbed-node.box", "vmlinuz", "initrd.img"))
    if cached:
        progress(f"box: cached {path} (hash {digest[:16]})")
    else:
        progress(f"box: built {path} in {watch.elapsed():.1f} s")
    box = Box(name=box_name(digest), hash=digest, path=path, box_file=path / f"{BOX_PREFIX}.box",
              cmdline=KERNEL_CMDLINE, disk_gib=DISK_GIB)
    add_to_store(box, progress)
    return box


def store_dir(box: Box) -> Path:
    """Where ``vagrant box add`` puts the box (version 0, provider libvirt)."""
    return vagrant_home() / "boxes" / box.name / "0" / "libvirt"


def add_to_store(box: Box, progress: Progress) -> None:
    """``vagrant box add`` once; the store is shared by runs, so it is locked like the cache."""
    if (store_dir(box) / "box.img").exists():
        return
    with kind_lock("vagrant-store"):
        if (store_dir(box) / "box.img").exists():
            return
        watch = Stopwatch()
        env = dict(os.environ, VAGRANT_HOME=str(vagrant_home()), VAGRANT_CHECKPOINT_DISABLE="1")
        proc = subprocess.run(["vagrant", "box", "add", "--force", "--name", box.name, str(box.box_file)],
                              env=env, capture_output=True, text=True, cwd="/")
        if proc.returncode != 0:
            raise RuntimeError(f"vagrant box add {box.name} failed: {(proc.stderr or proc.stdout).strip()}")
        progress(f"box: added {box.name} to the box store {vagrant_home()} in {watch.elapsed():.1f} s")


# --- build --------------------------------------------------------------------------------


def _build(tmp: Path, base: BaseImage, versions: dict[str, str], files: dict[str, str], digest: str,
           progress: Progress) -> None:
    debs, kernel_dir, root = tmp / "debs", tmp / "kernel", tmp / "root"
    debs.mkdir()
    watch = Stopwatch()
    wanted = [f"{name}={ver}" for name, ver in sorted(versions.items()) if name != KERNEL_META]
    progress(f"box: apt-get download {' '.join(wanted)}")
    subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *wanted],
                   cwd=debs, check=True, stdout=subprocess.DEVNULL)

    # A real copy, not hard links: dpkg and the overlay below must never write into the base.
    subprocess.run(["cp", "-a", str(base.root), str(root)], check=True)
    progress(f"box: copied the base root in {watch.elapsed():.1f} s")

    extra = [debs / _deb_name(debs, name) for name in versions if name in _extra_names(versions)]
    if extra:
        _dpkg_install(root, extra)
        progress(f"box: installed {' '.join(p.name.split('_')[0] for p in extra)} into the root")

    kernel_deb = next(debs.glob("linux-image-*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(kernel_deb), str(kernel_dir)], check=True)
    kver = _kernel_version(kernel_dir)
    modules_dir = root / "usr/lib/modules"
    modules_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(str(kernel_dir / "lib/modules" / kver), str(modules_dir / kver))
    subprocess.run(["chroot", str(root), "depmod", kver], check=True)
    shutil.copyfile(kernel_dir / "boot" / f"vmlinuz-{kver}", tmp / "vmlinuz")
    shutil.rmtree(kernel_dir)

    overlay(BOX_SRC / "rootfs", root)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/flatbed-box").write_text(f"{digest}\n")

    modules = _initramfs(tmp, debs, root, kver)
    progress(f"box: kernel {kver}, initramfs modules {' '.join(modules)}")
    probe = root / PROBE_DIR
    probe.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        shutil.copyfile(tmp / name, probe / name)

    watch = Stopwatch()
    raw = tmp / "disk.raw"
    with open(raw, "wb") as fh:
        fh.truncate(DISK_GIB * 2**30)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(root), str(raw)], check=True)
    shutil.rmtree(root)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(tmp / "box.img")], check=True)
    raw.unlink()
    progress(f"box: disk made (mkfs.ext4 -d, qemu-img convert) in {watch.elapsed():.1f} s")

    (tmp / "metadata.json").write_text(json.dumps(
        {"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_GIB}) + "\n")
    shutil.copyfile(BOX_SRC / "Vagrantfile", tmp / "Vagrantfile")
    # Uncompressed: the disk is already sparse qcow2 and gzip would cost a minute per build.
    with tarfile.open(tmp / f"{BOX_PREFIX}.box", "w") as tar:
        for name in BOX_FILES:
            tar.add(tmp / name, arcname=name)
    (tmp / "box.img").unlink()
    shutil.rmtree(debs)
    manifest = {"kind": KIND, "hash": digest, "recipe": RECIPE, "base": base.hash, "packages": versions,
                "kernel": kver, "initramfs_modules": modules, "files": files, "cmdline": KERNEL_CMDLINE,
                "disk_gib": DISK_GIB, "name": box_name(digest)}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    size = (tmp / f"{BOX_PREFIX}.box").stat().st_size
    progress(f"box: {BOX_PREFIX}.box is {size / 2**20:.0f} MiB ({DISK_GIB} GiB virtual)")


def _extra_names(versions: dict[str, str]) -> set[str]:
    return {n for n in versions if n not in (KERNEL_META, BUSYBOX) and not n.startswith("linux-image-")}


def _deb_name(debs: Path, package: str) -> str:
    found = sorted(debs.glob(f"{package}_*.deb"))
    if len(found) != 1:
        raise RuntimeError(f"expected one downloaded .deb of {package}, found {[p.name for p in found]}")
    return found[0].name


POLICY_RC_D = "#!/bin/sh\n# flatbed box build: never start services in the build chroot\nexit 101\n"


def _dpkg_install(root: Path, debs: list[Path]) -> None:
    """``dpkg -i`` run inside a chroot of ``root`` behind a ``policy-rc.d`` that starts nothing.

    Not ``dpkg --root``: that resolves the root's stat overrides (``crontab`` group) against the
    host's group database and aborts on a host without cron.
    """
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    inbox = root / "tmp/flatbed-debs"
    inbox.mkdir()
    try:
        for deb in debs:
            shutil.copyfile(deb, inbox / deb.name)
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        proc = subprocess.run(["chroot", str(root), "dpkg", "--force-unsafe-io", "-i",
                               *(f"/tmp/flatbed-debs/{deb.name}" for deb in debs)],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise RuntimeError(f"dpkg -i in the box root failed (rc {proc.returncode}):\n{tail}")
    finally:
        policy.unlink()
        shutil.rmtree(inbox)
    for path in (root / "var/cache/apt").glob("*.bin"):
        path.unlink()


def _kernel_version(kernel_dir: Path) -> str:
    kernels = sorted((kernel_dir / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise RuntimeError(f"expected one kernel in the kernel package, found {kernels}")
    return kernels[0].name.removeprefix("vmlinuz-")



def module_load_order(wanted: tuple[str, ...], depends: dict[str, list[str]], builtin: set[str]) -> list[str]:
    """Modules to insmod for ``wanted``, dependencies first, built-in ones left out (pure).

    ``depends`` maps a module name to the names of the modules it needs (from modules.dep).
    """
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in order or name in builtin:
            return
        if name in trail:
            raise RuntimeError(f"module dependency cycle: {' -> '.join(trail + (name,))}")
        if name not in depends:
            raise RuntimeError(f"module {name} is neither built in nor shipped")
        for dep in depends[name]:
            visit(dep, trail + (name,))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order


def parse_modules_dep(text: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``modules.dep`` -> (module -> dependencies, module -> relative .ko path) (pure)."""
    depends: dict[str, list[str]] = {}
    paths: dict[str, str] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, _, deps = line.partition(":")
        name = _module_name(path)
        paths[name] = path
        depends[name] = [_module_name(d) for d in deps.split()]
    return depends, paths


def _module_name(path: str) -> str:
    # kernel/drivers/virtio/virtio_pci.ko(.xz) -> virtio_pci; modprobe treats - and _ alike.
    name = Path(path).name.split(".ko")[0]
    return name.replace("-", "_")


def _initramfs(tmp: Path, debs: Path, root: Path, kver: str) -> list[str]:
    """Busybox + the virtio modules + ``box/init``, as a gzip'd newc archive (``initrd.img``)."""
    moddir = root / "usr/lib/modules" / kver
    depends, paths = parse_modules_dep((moddir / "modules.dep").read_text())
    builtin = {_module_name(p) for p in (moddir / "modules.builtin").read_text().split()}
    order = module_load_order(INITRAMFS_MODULES, depends, builtin)

    busybox = tmp / "busybox"
    subprocess.run(["dpkg-deb", "-x", str(next(debs.glob(f"{BUSYBOX}_*.deb"))), str(busybox)], check=True)
    initrd = tmp / "initramfs"
    for rel in ("bin", "sbin", "proc", "sys", "dev", "newroot", "lib/modules", "etc"):
        (initrd / rel).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox / "bin/busybox", initrd / "bin/busybox")
    applets = subprocess.run([str(busybox / "bin/busybox"), "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (initrd / "bin" / applet).symlink_to("busybox")
    for name in order:
        src = moddir / paths[name]
        if src.suffix != ".ko":
            raise RuntimeError(f"{src}: compressed modules are not supported by the initramfs builder")
        shutil.copyfile(src, initrd / "lib/modules" / f"{name}.ko")
    (initrd / "etc/modules").write_text("\n".join(order) + "\n")
    shutil.copy2(BOX_SRC / "init", initrd / "init")
    os.chmod(initrd / "init", 0o755)
    archive = archive_tree(initrd, devices=[DeviceNode("dev/console", stat.S_IFCHR | 0o600, 5, 1)])
    (tmp / "initrd.img").write_bytes(gzip.compress(archive, compresslevel=6, mtime=0))
    shutil.rmtree(initrd)
    shutil.rmtree(busybox)
    return order
