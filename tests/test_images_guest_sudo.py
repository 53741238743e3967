"""The guest's sudo: what the image holds (files, modes, policy) and that it really gives root.

The pure part (which packages are shipped) runs anywhere. The rest reads the built guest's
initramfs back (building it when the cache lacks it: needs root and the host's apt) and runs its
sudo in a chroot of the unpacked archive as the cirros user, in a network namespace of its own
for the address it adds.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from flatbed.images import guest
from flatbed.images.cpio import Entry, extract_archive, read_archive

NEEDED = ("apt-get", "chroot", "unshare")
needs_image = pytest.mark.skipif(os.geteuid() != 0 or any(shutil.which(t) is None for t in NEEDED),
                                 reason=f"needs root and {', '.join(NEEDED)} to build and run the guest's files")
# cirros' src/etc/sudoers.d/90-cirros-user, the same at every tag from 0.3.0 to 0.6.x.
CIRROS_USER_RULE = "# cirros user needs passwordless sudo\ncirros ALL=(ALL) NOPASSWD:ALL\n"


def test_maintainer_script_helpers_are_not_shipped() -> None:
    depends = {"sudo": ["libpam0g", "init-system-helpers"], "init-system-helpers": ["usrmerge"],
               "usrmerge": ["perl-base"], "libpam0g": ["debconf", "libaudit1"], "debconf": ["perl-base"]}
    assert guest.shipped_closure(["sudo"], depends) == ["sudo", "libpam0g", "libaudit1"]


@pytest.fixture(scope="module")
def initrd() -> bytes:
    image = guest.ensure_guest(progress=lambda _: None)
    assert image.initrd is not None
    return gzip.decompress(image.initrd.read_bytes())


@pytest.fixture(scope="module")
def entries(initrd: bytes) -> dict[str, Entry]:
    return {e.name: e for e in read_archive(initrd)}


@pytest.fixture
def root(initrd: bytes, tmp_path: Path) -> Path:
    out = tmp_path / "root"
    out.mkdir()
    extract_archive(initrd, out)
    return out


@needs_image
def test_sudo_is_setuid_root(entries: dict[str, Entry]) -> None:
    sudo = entries["usr/bin/sudo"]
    assert (stat.S_IMODE(sudo.mode), sudo.uid, sudo.gid) == (0o4755, 0, 0)


@needs_image
def test_policy_is_cirros_and_only_root_reads_it(entries: dict[str, Entry]) -> None:
    assert entries["etc/sudoers.d/90-cirros-user"].data.decode() == CIRROS_USER_RULE
    assert "\n#includedir /etc/sudoers.d\n" in entries["etc/sudoers"].data.decode()
    for name in ("etc/sudoers", "etc/sudoers.d/90-cirros-user"):
        assert (stat.S_IMODE(entries[name].mode), entries[name].uid) == (0o440, 0), name


@needs_image
def test_plugin_and_pam_modules_are_where_sudo_looks(entries: dict[str, Entry]) -> None:
    pam = entries["etc/pam.d/sudo"].data.decode()
    modules = {line.split()[2] for line in pam.splitlines() if line and not line.startswith("#")}
    assert modules == {"pam_deny.so", "pam_permit.so"}
    for name in ("usr/libexec/sudo/sudoers.so", *(f"lib/{guest.MULTIARCH}/security/{m}" for m in modules)):
        assert stat.S_ISREG(entries[name].mode), name


def _as_cirros(root: Path, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by the guest's busybox sh as uid/gid 1000, chrooted, in a new network namespace."""
    return subprocess.run(["unshare", "--net", "chroot", "--userspec=1000:1000", str(root), "/bin/sh", "-c", script],
                          capture_output=True, text=True, timeout=30,
                          env={"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "HOME": "/home/cirros"})


@needs_image
def test_cirros_gets_root_without_a_password(root: Path) -> None:
    result = _as_cirros(root, "id -u; sudo -n id -u")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1000", "0"]


@needs_image
def test_sudo_ip_addr_add_works(root: Path) -> None:
    result = _as_cirros(root, "sudo -n ip link set lo up && sudo -n ip addr add 10.9.9.9/32 dev lo"
                              " && ip -4 addr show lo")
    assert result.returncode == 0, result.stderr
    assert "inet 10.9.9.9/32" in result.stdout


@needs_image
def test_without_cirros_rule_sudo_refuses(root: Path) -> None:
    (root / "etc/sudoers.d/90-cirros-user").unlink()
    result = _as_cirros(root, "sudo -n id -u")
    assert result.returncode != 0 and result.stdout == ""
    assert "password is required" in result.stderr
