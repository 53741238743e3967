"""The node base root filesystem: Debian bookworm with libvirt, qemu and nova-network's tools.

Built once with ``debootstrap --variant=minbase`` and shared read-only by every node (nspawn
overlays it; the VM provider packs it into a disk). Nodes never reach the internet, so every tool
the stack or the tests run inside a node must be in :data:`PACKAGES`. The project's own stack code
is not baked in: provisioning pushes it, so editing it never invalidates this image.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flatbed.images import apt
from flatbed.images.cache import build_cached
from flatbed.images.hashing import input_hash
from flatbed.images.progress import Progress, Stopwatch, default_progress

KIND = "base"
SUITE = "bookworm"
# Bump when the build steps below change in a way that changes the result.
RECIPE = "base-1"

# Explicit --include list; debootstrap adds their Depends (not Recommends).
PACKAGES: tuple[str, ...] = (
    # init and the system bus; libpam-systemd or polkitd (libvirt's dep) fails to configure.
    "systemd", "systemd-sysv", "dbus", "libpam-systemd",
    # networking as nova-network drives it (ensure_bridge, iptables/ebtables managers).
    "ifupdown", "iproute2", "bridge-utils", "iptables", "ebtables", "kmod",
    # nova-network's dnsmasq and its dhcp_release.
    "dnsmasq-base", "dnsmasq-utils",
    # the reference greps /var/log/syslog for dnsmasq's lines.
    "rsyslog",
    # hypervisor; qemu-system-x86 Depends on seabios and ipxe-qemu (the firmware and the
    # virtio-net option ROM), qemu-utils is only a Recommends so it is listed.
    "libvirt-daemon-system", "libvirt-clients", "qemu-system-x86", "qemu-utils",
    "python3", "python3-libvirt",
    "openssh-server", "openssh-client",
    # test tools used from inside nodes.
    "iputils-ping", "iputils-arping", "net-tools", "procps", "tcpdump", "curl", "less",
)


@dataclass(frozen=True)
class BaseImage:
    """A finished base root: ``root`` is the root filesystem directory."""

    root: Path
    hash: str
    packages: dict[str, str]


def base_hash(packages: dict[str, str], mirror: str) -> str:
    """Input hash of the base image (pure; see :func:`flatbed.images.hashing.input_hash`)."""
    return input_hash(RECIPE, packages, SUITE, mirror)


def ensure_base(mirror: str | None = None, progress: Progress = default_progress) -> BaseImage:
    """Return the cached base root for the current inputs, building it when missing.

    ``mirror`` overrides ``$FLATBED_MIRROR`` and the host's apt sources.
    """
    watch = Stopwatch()
    mirror = apt.detect_mirror(mirror)
    progress(f"base: resolving {len(PACKAGES)} package versions in {SUITE}/main from the host's apt lists")
    versions = apt.resolve_suite_versions(PACKAGES, SUITE, mirror)
    digest = base_hash(versions, mirror)

    def build(tmp: Path) -> None:
        _build(tmp, versions, mirror, digest, progress)

    path, cached = build_cached(KIND, digest, build, progress,
                                outputs=("manifest.json", "root/usr/lib/systemd/systemd"))
    if cached:
        progress(f"base: cached {path} (hash {digest[:16]})")
    else:
        progress(f"base: built {path} in {watch.elapsed():.1f} s")
    return BaseImage(root=path / "root", hash=digest, packages=versions)


def _build(tmp: Path, versions: dict[str, str], mirror: str, digest: str, progress: Progress) -> None:
    root = tmp / "root"
    watch = Stopwatch()
    progress(f"base: debootstrap --variant=minbase {SUITE} from {mirror} into {root} (takes minutes)")
    cmd = [
        "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
        SUITE, str(root), mirror,
    ]
    log = tmp / "debootstrap.log"
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"debootstrap failed (rc {rc}); last lines:\n{tail}")
    progress(f"base: debootstrap done in {watch.elapsed():.1f} s")
    post_configure(root, digest)
    installed = installed_versions(root)
    manifest = {
        "kind": KIND, "hash": digest, "recipe": RECIPE, "suite": SUITE, "mirror": mirror,
        "packages": versions, "installed": installed,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    progress(f"base: post-configured; {len(installed)} packages installed")
    stale = sorted(p for p, v in versions.items() if installed.get(p) != v)
    if stale:
        # The hash was computed from the host's lists; debootstrap read the mirror's own.
        progress(f"base: note: the host's apt lists disagree with the mirror for {' '.join(stale)}; "
                 "run 'apt-get update' so the cache key follows the mirror")


def post_configure(root: Path, digest: str) -> None:
    """Make the debootstrapped tree a clean, node-neutral template."""
    # Empty (not missing) machine-id: systemd then generates one per boot/container.
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    # debootstrap copies the host's hostname; nodes set their own.
    (root / "etc/hostname").write_text("localhost\n")
    # libvirt's NATed 'default' network (virbr0, 192.168.122.0/24) must never start in a node.
    for rel in ("etc/libvirt/qemu/networks/autostart/default.xml",
                "etc/libvirt/qemu/networks/default.xml"):
        (root / rel).unlink(missing_ok=True)
    _qemu_conf_root(root / "etc/libvirt/qemu.conf")
    _lock_root_password(root / "etc/shadow")
    _clean_apt(root)
    (root / "etc/flatbed-base").write_text(f"{digest}\n")


def _qemu_conf_root(path: Path) -> None:
    # Without user/group root every define stalls ~56 s (the QEMU capability probe sees KVM,
    # then the unprivileged user cannot use it); see the machine notes.
    text = path.read_text() if path.exists() else ""
    text = re.sub(r'^\s*(user|group)\s*=.*\n', "", text, flags=re.M)
    path.write_text(text.rstrip("\n") + '\n\n# flatbed: run qemu as root\nuser = "root"\ngroup = "root"\n')


def _lock_root_password(shadow: Path) -> None:
    lines = shadow.read_text().splitlines()
    out = []
    for line in lines:
        fields = line.split(":")
        if fields[0] == "root" and not fields[1].startswith("!"):
            fields[1] = "!" + fields[1]
        out.append(":".join(fields))
    shadow.write_text("\n".join(out) + "\n")


def _clean_apt(root: Path) -> None:
    # Nodes never install packages (no internet), so lists and downloaded .debs are dead weight.
    for pattern in ("var/lib/apt/lists/*_*", "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin"):
        for path in root.glob(pattern):
            if path.is_file():
                path.unlink()


def installed_versions(root: Path) -> dict[str, str]:
    """``package -> version`` of everything dpkg has installed in ``root``."""
    text = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f=${Package} ${Version}\\n"],
        check=True, capture_output=True, text=True,
    ).stdout
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
