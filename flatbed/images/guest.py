"""The cirros-compatible guest: Debian's cloud kernel plus a busybox/dropbear initramfs.

Real CirrOS images cannot be downloaded here, so the guest re-creates CirrOS 0.3.0's boot
behaviour (``guest/`` holds its init and rc scripts) from Debian packages: the kernel and virtio
modules from ``linux-image-*-cloud-amd64``, userland from ``busybox-static``, sshd from
``dropbear-bin`` and ``sudo`` (cirros' is buildroot's sudo; Debian's comes with PAM) plus the
shared libraries they link. Packages are fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x`` into a staging dir; nothing is installed on the host.

A user who has a real CirrOS disk image passes it as ``cirros_image`` and gets it back as a
``disk`` guest instead.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flatbed.errors import FlatbedError, UsageError
from flatbed.images import apt
from flatbed.images.cache import build_cached, overlay
from flatbed.images.cpio import DeviceNode, archive_tree
from flatbed.images.hashing import hash_file, hash_tree, input_hash
from flatbed.images.progress import Progress, Stopwatch, default_progress

KIND = "guest"
SUITE = "bookworm"
# Bump when the build steps below change in a way that changes the result.
RECIPE = "guest-4"

# The guest's own files (init, rc scripts), baked into the initramfs and hashed.
GUEST_SRC = Path(__file__).resolve().parents[2] / "guest"

KERNEL_META = "linux-image-cloud-amd64"
BUSYBOX = "busybox-static"
DROPBEAR = "dropbear-bin"
# Dropbear programs copied in; dbclient doubles as "ssh" for guest-to-guest checks.
DROPBEAR_PROGRAMS = ("usr/sbin/dropbear", "usr/bin/dropbearkey", "usr/bin/dbclient")
SUDO = "sudo"
# sudo, its policy plugin (sudo.conf's default path) and the PAM modules guest/etc/pam.d/sudo names.
SUDO_FILES = ("usr/bin/sudo", "usr/libexec/sudo/sudoers.so",
              "lib/x86_64-linux-gnu/security/pam_permit.so", "lib/x86_64-linux-gnu/security/pam_deny.so")
# Dependencies that only serve maintainer scripts (sudo's init-system-helpers, PAM's debconf):
# nothing of them is copied into the guest, so they are not downloaded.
NOT_SHIPPED = ("init-system-helpers", "debconf")
# sudo refuses a policy file that others can write; 0440 root as cirros' makedevs.list sets.
SUDOERS_FILES = ("etc/sudoers", "etc/sudoers.d/90-cirros-user")

# CirrOS 0.3.x's login (src/etc/issue); 0.4+ images use "gocubsgo".
LOGIN_USER = "cirros"
LOGIN_PASSWORD = "cubswin:)"
CIRROS_UID = 1000

# The kernel command line the initramfs guest expects (serial console, which libvirt logs), and
# no_timer_check: under TCG, guests booted in bulk on loaded cores fail the kernel's IO-APIC timer
# check and panic ("IO-APIC + timer doesn't work!"); virtualized cloud images skip that check too.
KERNEL_CMDLINE = "console=ttyS0 no_timer_check"

MULTIARCH = "x86_64-linux-gnu"


@dataclass(frozen=True)
class GuestImage:
    """A bootable guest: ``initramfs`` (kernel + initrd, direct kernel boot) or ``disk``."""

    kind: Literal["initramfs", "disk"]
    kernel: Path | None
    initrd: Path | None
    disk: Path | None
    hash: str
    login_user: str
    login_password: str
    # Kernel command line for direct kernel boot (empty for disk images, which boot their own).
    cmdline: str = ""


def guest_hash(packages: dict[str, str], mirror: str, files: dict[str, str]) -> str:
    """Input hash of the initramfs guest (pure)."""
    extra = {"login": f"{LOGIN_USER}:{LOGIN_PASSWORD}", "cmdline": KERNEL_CMDLINE}
    return input_hash(RECIPE, packages, SUITE, mirror, files, extra)


def host_sources_key() -> str:
    """The host's apt sources as one string: ``apt-get download`` fetches from all of them."""
    return " ".join(sorted({f"{s.uri} {','.join(s.suites)}" for s in apt.host_sources()}))


def resolve_packages() -> dict[str, str]:
    """Name -> candidate version of every package the guest is made from.

    The kernel meta package only names the versioned image package, which holds the files;
    the dependency closures of dropbear and sudo provide their shared libraries and PAM modules.
    """
    deps = apt.candidate_depends([KERNEL_META])
    kernel = [d for d in deps.get(KERNEL_META, []) if d.startswith("linux-image-")]
    if not kernel:
        raise apt.AptError(f"{KERNEL_META} does not depend on a linux-image-* package")
    # The whole closure: libraries have libraries of their own (libtomcrypt -> libgmp).
    return apt.resolve_candidates([KERNEL_META, kernel[0], BUSYBOX, *shipped_closure(
        [DROPBEAR, SUDO], apt.candidate_depends([DROPBEAR, SUDO], recurse=True))])


def shipped_closure(roots: list[str], depends: dict[str, list[str]]) -> list[str]:
    """``roots`` and what they depend on, leaving out :data:`NOT_SHIPPED` and its own closure (pure)."""
    pruned = {name: [d for d in deps if d not in NOT_SHIPPED] for name, deps in depends.items()}
    return apt.closure_of(roots, pruned)


QCOW2_MAGIC = b"QFI\xfb"
MBR_SIGNATURE = b"\x55\xaa"   # bytes 510-511 of a raw disk with a partition table (MBR or GPT's protective MBR)


def check_disk_image(cirros_image: Path) -> Path:
    """The resolved path of a ``--cirros-image`` that is a disk image (qcow2, or raw with a
    partition table, as cirros ships both); FlatbedError (one line) otherwise."""
    path = Path(cirros_image).resolve()
    if not path.is_file():
        raise UsageError(f"--cirros-image {cirros_image}: no such file")
    try:
        with open(path, "rb") as image:
            head = image.read(512)
    except OSError as e:
        raise FlatbedError(f"--cirros-image {cirros_image}: cannot read it ({e.strerror})") from None
    if head[:4] != QCOW2_MAGIC and head[510:512] != MBR_SIGNATURE:
        raise UsageError(f"--cirros-image {cirros_image}: not a disk image (neither qcow2 nor a raw disk with a "
                           f"partition table)")
    return path


def ensure_guest(
    progress: Progress = default_progress,
    cirros_image: Path | None = None,
    cirros_password: str | None = None,
) -> GuestImage:
    """Return the guest to boot, building the initramfs guest when it is not cached.

    With ``cirros_image`` (a real CirrOS qcow2/raw file) no build happens: the file is returned
    as a ``disk`` guest, hashed by content. Its password is ``cirros_password`` or 0.3.x's
    ``cubswin:)`` (0.4 and later use ``gocubsgo``).
    """
    watch = Stopwatch()
    if cirros_image is not None:
        path = check_disk_image(cirros_image)
        progress(f"guest: using the supplied cirros disk {path}")
        digest = hash_file(path)
        progress(f"guest: hashed {path.name} in {watch.elapsed():.1f} s")
        return GuestImage("disk", None, None, path, digest, LOGIN_USER, cirros_password or LOGIN_PASSWORD)

    progress("guest: resolving kernel, busybox, dropbear and sudo versions from the host's apt lists")
    versions = resolve_packages()
    files = hash_tree(GUEST_SRC)
    digest = guest_hash(versions, host_sources_key(), files)

    def build(tmp: Path) -> None:
        _build(tmp, versions, files, digest, progress)

    path, cached = build_cached(KIND, digest, build, progress, outputs=("manifest.json", "vmlinuz", "initrd.img"))
    if cached:
        progress(f"guest: cached {path} (hash {digest[:16]})")
    else:
        progress(f"guest: built {path} in {watch.elapsed():.1f} s")
    return GuestImage(
        "initramfs", path / "vmlinuz", path / "initrd.img", None, digest,
        LOGIN_USER, LOGIN_PASSWORD, KERNEL_CMDLINE,
    )


# --- build --------------------------------------------------------------------------------


def _build(tmp: Path, versions: dict[str, str], files: dict[str, str], digest: str,
           progress: Progress) -> None:
    debs, staging, rootfs = tmp / "debs", tmp / "staging", tmp / "rootfs"
    for d in (debs, staging, rootfs):
        d.mkdir()
    wanted = [f"{name}={ver}" for name, ver in sorted(versions.items()) if name != KERNEL_META]
    progress(f"guest: apt-get download {' '.join(wanted)}")
    subprocess.run(
        # The sandbox user _apt cannot write into the root-only build dir; downloads are still
        # verified against the signed lists.
        ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *wanted],
        cwd=debs, check=True, stdout=subprocess.DEVNULL,
    )
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
    progress(f"guest: unpacked {len(list(debs.glob('*.deb')))} packages into a staging dir")

    kver = _kernel_version(staging)
    shutil.copyfile(staging / "boot" / f"vmlinuz-{kver}", tmp / "vmlinuz")
    _skeleton(rootfs)
    _install_busybox(staging, rootfs)
    overlay(GUEST_SRC, rootfs)  # files replace busybox links of the same name
    modules = _install_modules(staging, rootfs, kver)
    libs = _install_dropbear(staging, rootfs)
    sudo_libs = _install_sudo(staging, rootfs)
    _write_shadow(staging, rootfs)
    (rootfs / "etc/flatbed-guest").write_text(f"{digest}\n")
    progress(f"guest: kernel {kver}, modules {' '.join(modules) or '(all built in)'}, "
             f"dropbear libs {' '.join(libs)}, sudo libs {' '.join(sudo_libs)}")

    archive = archive_tree(
        rootfs,
        owners={f"home/{LOGIN_USER}": (CIRROS_UID, CIRROS_UID)},
        # The kernel opens /dev/console for /init's stdio before devtmpfs is mounted.
        devices=[DeviceNode("dev/console", stat.S_IFCHR | 0o600, 5, 1)],
    )
    (tmp / "initrd.img").write_bytes(gzip.compress(archive, compresslevel=9, mtime=0))
    manifest = {
        "kind": KIND, "hash": digest, "recipe": RECIPE, "packages": versions, "kernel": kver,
        "modules": modules, "libraries": sorted(set(libs) | set(sudo_libs)), "files": files, "cmdline": KERNEL_CMDLINE,
        "login": {"user": LOGIN_USER, "password": LOGIN_PASSWORD},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for d in (debs, staging, rootfs):
        shutil.rmtree(d)
    size = (tmp / "initrd.img").stat().st_size
    progress(f"guest: initramfs {size / 1e6:.1f} MB ({len(archive) / 1e6:.1f} MB unpacked)")


def _kernel_version(staging: Path) -> str:
    kernels = sorted((staging / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise RuntimeError(f"expected one kernel in the staging dir, found {kernels}")
    return kernels[0].name.removeprefix("vmlinuz-")


def _skeleton(rootfs: Path) -> None:
    for rel in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run",
                "var/lib/cloud", "var/log", "root", f"home/{LOGIN_USER}", "etc/dropbear",
                "lib/modules", f"lib/{MULTIARCH}", "lib64"):
        (rootfs / rel).mkdir(parents=True, exist_ok=True)
    os.chmod(rootfs / "tmp", 0o1777)
    os.chmod(rootfs / "root", 0o700)
    (rootfs / "var/run").symlink_to("../run")


def _install_busybox(staging: Path, rootfs: Path) -> None:
    """Copy the static busybox and link every applet, like ``busybox --install -s``.

    setuid root, as cirros' busybox: ``ping`` (a raw socket) works for the cirros user while the
    other applets drop the privilege (Debian's busybox is built with FEATURE_SUID).
    """
    shutil.copy2(staging / "bin/busybox", rootfs / "bin/busybox")
    os.chmod(rootfs / "bin/busybox", 0o4755)
    listing = subprocess.run(
        [str(staging / "bin/busybox"), "--list-full"], check=True, capture_output=True, text=True
    ).stdout
    for rel in listing.split():
        link = rootfs / rel
        if rel == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")



def _install_modules(staging: Path, rootfs: Path, kver: str) -> list[str]:
    """Copy the modules named in ``etc/modules`` that the kernel does not have built in."""
    moddir = staging / "lib/modules" / kver
    builtin = {Path(line).stem for line in (moddir / "modules.builtin").read_text().split()}
    found = {p.stem: p for p in (moddir / "kernel").rglob("*.ko")}
    shipped: list[str] = []
    for line in (rootfs / "etc/modules").read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if not name or name in builtin:
            continue
        if name not in found:
            raise RuntimeError(f"module {name} is neither built into {kver} nor shipped as .ko")
        shutil.copyfile(found[name], rootfs / "lib/modules" / f"{name}.ko")
        shipped.append(name)
    return shipped


_LDD_LINE = re.compile(r"^\s*(\S+)(?: => (\S+))? \(0x[0-9a-f]+\)$")


def _install_dropbear(staging: Path, rootfs: Path) -> list[str]:
    """Dropbear's programs with their libraries; ``ssh`` is dbclient."""
    libs = _install_elf(staging, rootfs, DROPBEAR_PROGRAMS)
    (rootfs / "usr/bin/ssh").symlink_to("dbclient")
    return libs


def _install_sudo(staging: Path, rootfs: Path) -> list[str]:
    """sudo as cirros has it: setuid root, policy in ``/etc/sudoers`` (+ ``sudoers.d``), 0440.

    Debian's sudo is built with PAM; ``guest/etc/pam.d/sudo`` lets account and session pass (as
    cirros' PAM-less sudo) and denies passwords, which nobody here has to type (cirros: NOPASSWD).
    """
    libs = _install_elf(staging, rootfs, SUDO_FILES)
    os.chmod(rootfs / "usr/bin/sudo", 0o4755)
    for rel in SUDOERS_FILES:
        os.chmod(rootfs / rel, 0o440)
    return libs


def _install_elf(staging: Path, rootfs: Path, files: tuple[str, ...]) -> list[str]:
    """Copy ELF ``files`` (same paths) and, from the staged packages only, the shared libraries
    they need, into ``/lib/<multiarch>``; returns the libraries' sonames."""
    # sudo finds libsudo_util through its RUNPATH; in the guest it sits on the default path.
    libdirs = [staging / "lib" / MULTIARCH, staging / "usr/lib" / MULTIARCH, staging / "usr/libexec/sudo"]
    loader = staging / "lib" / MULTIARCH / "ld-linux-x86-64.so.2"
    needed: dict[str, Path] = {}
    for rel in files:
        (rootfs / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(staging / rel, rootfs / rel)
        # The staged loader resolves the closure against the staged libraries first.
        out = subprocess.run(
            [str(loader), "--library-path", ":".join(map(str, libdirs)), "--list", str(staging / rel)],
            check=False, capture_output=True, text=True,
        )
        if out.returncode != 0 and "statically linked" not in out.stdout + out.stderr:
            raise RuntimeError(f"ld.so --list {rel} failed: {(out.stderr or out.stdout).strip()}")
        for line in out.stdout.splitlines():
            match = _LDD_LINE.match(line)
            if not match or match.group(1).startswith("linux-vdso"):
                continue
            soname, resolved = match.group(1), match.group(2)
            if resolved is None or soname.startswith("/"):  # the loader itself, copied below
                continue
            path = Path(resolved)
            if staging not in path.parents:
                raise RuntimeError(f"{rel} needs {soname}, which none of the downloaded packages has")
            needed[soname] = path
    for soname, path in sorted(needed.items()):
        shutil.copyfile(path.resolve(), rootfs / "lib" / MULTIARCH / soname)
    # copy2 keeps the loader's exec bit: the kernel refuses a PT_INTERP without it (EACCES).
    shutil.copy2(loader.resolve(), rootfs / "lib" / MULTIARCH / loader.name)
    link = rootfs / "lib64" / loader.name
    if not link.is_symlink():
        link.symlink_to(f"/lib/{MULTIARCH}/{loader.name}")
    return sorted(needed)


def _write_shadow(staging: Path, rootfs: Path) -> None:
    """Root's password is locked (key login only); cirros gets the documented password."""
    crypted = subprocess.run(
        [str(staging / "bin/busybox"), "mkpasswd", "-m", "sha512", LOGIN_PASSWORD],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    shadow = rootfs / "etc/shadow"
    shadow.write_text(f"root:*:19000:0:99999:7:::\n{LOGIN_USER}:{crypted}:19000:0:99999:7:::\n")
    os.chmod(shadow, 0o600)

